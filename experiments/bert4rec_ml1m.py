"""bert4rec on ml-1m.

    stjax train --config experiments/bert4rec_ml1m.py --workdir runs/bert4rec_ml1m
    stjax train --config experiments/bert4rec_ml1m.py:tiny --workdir /tmp/bert4rec_ml1m-tiny   # the test-sized variant

Measured (NVIDIA H200, 400 epochs = 27200 steps, 68 s of training): test NDCG@10 0.1552,
HR@10 0.2869 (full ranking, leave-one-out by time).
"""

from stjax.config import base_config, variant


def get_config(arg=None):
    config = base_config("bert4rec", source="ml-1m")
    config.data.max_length = 200
    config.data.window = "all"  # every training event is a target, not only the last 200
    config.train.batch_size = 128
    config.train.num_epochs = 400
    config.train.learning_rate = 1e-3
    config.train.eval_every_epochs = 20
    return variant(config, arg)
