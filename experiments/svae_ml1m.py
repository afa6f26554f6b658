"""SVAE (Sachdeva et al., WSDM 2019) on ML-1M, leave-one-out by time, full ranking, at the CPU-sized
protocol of the README's graph table (length 50, each user's last window, batch 128).

    stjax train --config experiments/svae_ml1m.py --workdir runs/svae_ml1m
    stjax train --config experiments/svae_ml1m.py:tiny --workdir /tmp/svae_ml1m-tiny   # the test-sized variant

48 steps an epoch, learning rate 2e-3, up to 200 epochs, validation every 10 with patience 5;
beta = min(0.2, step / 12,000) reaches its cap at step 2,400 (epoch 50). Not run to the end
yet: a 24-step probe (2026-12-03, 2-core CPU shared with other jobs) took 1.27 s a step, about
61 s an epoch, so up to 200 epochs is about 3.5 h here. Dropout 0.5 as chosen on ml-100k.
"""

from stjax.config import base_config, variant


def get_config(arg=None):
    config = base_config("svae", source="ml-1m")
    config.data.max_length = 50
    config.data.window = "last"
    config.train.batch_size = 128
    config.train.num_epochs = 200
    config.train.learning_rate = 2e-3
    config.train.eval_every_epochs = 10
    config.model.anneal_steps = 12_000
    config.model.dropout = 0.5
    return variant(config, arg)
