"""tisasrec on ml-100k.

    stjax train --config experiments/tisasrec_ml100k.py --workdir runs/tisasrec_ml100k
    stjax train --config experiments/tisasrec_ml100k.py:tiny --workdir /tmp/tisasrec_ml100k-tiny   # the test-sized variant

Result: see the README's accuracy table (filled from results.json of the command above).
"""

from stjax.config import base_config, variant


def get_config(arg=None):
    config = base_config("tisasrec", source="ml-100k")
    config.data.max_length = 50
    config.train.batch_size = 256
    config.train.num_epochs = 150
    config.train.learning_rate = 1e-3
    config.train.eval_every_epochs = 10
    return variant(config, arg)
