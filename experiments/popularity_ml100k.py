"""popularity on ml-100k.

    stjax train --config experiments/popularity_ml100k.py --workdir runs/popularity_ml100k
    stjax train --config experiments/popularity_ml100k.py:tiny --workdir /tmp/popularity_ml100k-tiny   # the test-sized variant

Result: see the README's accuracy table (filled from results.json of the command above).
"""

from stjax.config import base_config, variant


def get_config(arg=None):
    config = base_config("popularity", source="ml-100k")
    config.data.max_length = 50
    config.train.batch_size = 256
    config.train.num_epochs = 30
    config.train.learning_rate = 5e-2
    config.train.eval_every_epochs = 10
    return variant(config, arg)
