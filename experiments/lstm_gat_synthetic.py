"""lstm_gat on the synthetic default data: LSTM + GAT over the planted influence graph + geo.

    stjax train --config experiments/lstm_gat_synthetic.py --workdir runs/lstm_gat_synthetic
    stjax train --config experiments/lstm_gat_synthetic.py:tiny --workdir /tmp/lstm_gat-tiny   # the test-sized variant

The relation graph here is derived (users with training events on the same item within a day);
`--config.model.relation=given --config.model.relation_file=FILE` reads a trust edge list instead.
"""

from stjax.config import base_config, variant


def get_config(arg=None):
    config = base_config("lstm_gat", source="synthetic")
    config.data.max_length = 50
    config.train.batch_size = 256
    config.train.num_epochs = 100
    config.train.learning_rate = 1e-3
    config.train.eval_every_epochs = 10
    return variant(config, arg)
