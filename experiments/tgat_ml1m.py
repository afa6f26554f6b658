"""tgat on ml-1m (leave-one-out by time, full ranking), beside SASRec's 0.1821 NDCG@10.

    stjax data fetch ml-1m
    stjax train --config experiments/tgat_ml1m.py --workdir runs/tgat_ml1m
    stjax train --config experiments/tgat_ml1m.py:tiny --workdir /tmp/tgat_ml1m-tiny   # the test-sized variant

At this config (length 200, all windows) not measured yet: hours on a 2-core CPU (README status).
At the README's CPU protocol (length 50, window=last; scripts/ml1m_graph_table.sh): test NDCG@10 0.1292.
"""

from stjax.config import base_config, variant


def get_config(arg=None):
    config = base_config("tgat", source="ml-1m")
    config.data.max_length = 200
    config.data.window = "all"
    config.train.batch_size = 128
    config.train.num_epochs = 100
    config.train.learning_rate = 1e-3
    config.train.eval_every_epochs = 10
    config.model.history = 50
    return variant(config, arg)
