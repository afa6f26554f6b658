"""lightgcn on ml-100k (BPR on training pairs, leave-one-out by time, full ranking).

    stjax train --config experiments/lightgcn_ml100k.py --workdir runs/lightgcn_ml100k
    stjax train --config experiments/lightgcn_ml100k.py:tiny --workdir /tmp/lightgcn-tiny   # the test-sized variant

LightGCN ignores the order of events: under leave-one-out it is a graph baseline beside the
sequential models. Result: see the README's accuracy table.
"""

from stjax.config import base_config, variant


def get_config(arg=None):
    config = base_config("lightgcn", source="ml-100k")
    config.train.batch_size = 2048
    config.train.num_epochs = 300
    config.train.learning_rate = 1e-3
    config.train.warmup_steps = 0
    config.train.schedule = "constant"
    config.train.eval_every_epochs = 20
    return variant(config, arg)
