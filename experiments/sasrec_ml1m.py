"""sasrec on ml-1m.

    stjax train --config experiments/sasrec_ml1m.py --workdir runs/sasrec_ml1m
    stjax train --config experiments/sasrec_ml1m.py:tiny --workdir /tmp/sasrec_ml1m-tiny   # the test-sized variant

Measured (NVIDIA H200, 200 epochs, 33 s of training): test NDCG@10 0.1821, HR@10 0.3146,
MRR@10 0.1418 (full ranking, leave-one-out by time; best validation step 11560).
"""

from stjax.config import base_config, variant


def get_config(arg=None):
    config = base_config("sasrec", source="ml-1m")
    config.data.max_length = 200
    config.data.window = "all"  # every training event is a target, not only the last 200
    config.train.batch_size = 128
    config.train.num_epochs = 200
    config.train.learning_rate = 1e-3
    config.train.eval_every_epochs = 10
    return variant(config, arg)
