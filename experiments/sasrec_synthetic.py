"""sasrec on synthetic.

    stjax train --config experiments/sasrec_synthetic.py --workdir runs/sasrec_synthetic
    stjax train --config experiments/sasrec_synthetic.py:tiny --workdir /tmp/sasrec_synthetic-tiny   # the test-sized variant

Result: see the README's accuracy table (filled from results.json of the command above).
"""

from stjax.config import base_config, variant


def get_config(arg=None):
    config = base_config("sasrec", source="synthetic")
    config.data.max_length = 50
    config.train.batch_size = 256
    config.train.num_epochs = 100
    config.train.learning_rate = 1e-3
    config.train.eval_every_epochs = 10
    return variant(config, arg)
