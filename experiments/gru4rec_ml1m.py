"""gru4rec on ml-1m.

    stjax train --config experiments/gru4rec_ml1m.py --workdir runs/gru4rec_ml1m
    stjax train --config experiments/gru4rec_ml1m.py:tiny --workdir /tmp/gru4rec_ml1m-tiny   # the test-sized variant

Measured (NVIDIA H200, 200 epochs, 72 s of training): test NDCG@10 0.1754, HR@10 0.3058.
"""

from stjax.config import base_config, variant


def get_config(arg=None):
    config = base_config("gru4rec", source="ml-1m")
    config.data.max_length = 200
    config.train.batch_size = 128
    config.train.num_epochs = 200
    config.train.learning_rate = 2e-3
    config.train.eval_every_epochs = 10
    return variant(config, arg)
