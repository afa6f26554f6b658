"""lightgcn on ml-1m (BPR on training pairs, leave-one-out by time, full ranking), beside SASRec.

    stjax data fetch ml-1m
    stjax train --config experiments/lightgcn_ml1m.py --workdir runs/lightgcn_ml1m
    stjax train --config experiments/lightgcn_ml1m.py --config.model.relation=co_interaction   # social variant
    stjax train --config experiments/lightgcn_ml1m.py:tiny --workdir /tmp/lightgcn-tiny   # the test-sized variant

RecBole's LightGCN settings (batch 2048, Adam 1e-3, 3 layers, hidden 64, reg 1e-4), up to 200
epochs with validation every 10 and early stopping. LightGCN ignores the order of events: under
leave-one-out it is a graph baseline beside the sequential models. The social variant's relation
is lstm_gat's on ML-1M: users who rated the same movie within an hour.
Result: the README's ML-1M graph rows (`scripts/ml1m_graph_table.sh`), trained at batch 65536 and
Adam 1e-2: at batch 2048 an epoch is 483 propagations over the whole graph (~18 h for 200 epochs
on a 2-core CPU).
"""

from stjax.config import base_config, variant


def get_config(arg=None):
    config = base_config("lightgcn", source="ml-1m")
    config.train.batch_size = 2048
    config.train.num_epochs = 200
    config.train.learning_rate = 1e-3
    config.train.warmup_steps = 0
    config.train.schedule = "constant"
    config.train.eval_every_epochs = 10
    config.model.relation_window_s = 3600
    return variant(config, arg)
