"""fusion (AE + RNN + GNN fusion) on the synthetic default data.

    stjax train --config experiments/fusion_synthetic.py --workdir runs/fusion_synthetic
    stjax train --config experiments/fusion_synthetic.py:tiny --workdir /tmp/fusion-tiny   # the test-sized variant
"""

from stjax.config import base_config, variant


def get_config(arg=None):
    config = base_config("fusion", source="synthetic")
    config.data.max_length = 50
    config.train.batch_size = 256
    config.train.num_epochs = 100
    config.train.learning_rate = 1e-3
    config.train.eval_every_epochs = 10
    return variant(config, arg)
