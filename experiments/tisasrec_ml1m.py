"""tisasrec on ml-1m.

    stjax train --config experiments/tisasrec_ml1m.py --workdir runs/tisasrec_ml1m
    stjax train --config experiments/tisasrec_ml1m.py:tiny --workdir /tmp/tisasrec_ml1m-tiny   # the test-sized variant

Measured (2-core CPU, stopped early at epoch 180, 2,035 s of training): test NDCG@10 0.1684,
HR@10 0.2932, MRR@10 0.1302 (full ranking, leave-one-out by time; best validation step 6240).
"""

from stjax.config import base_config, variant


def get_config(arg=None):
    config = base_config("tisasrec", source="ml-1m")
    # Length 50, batch 128, intervals clipped at 256: the settings of the TiSASRec authors' code for
    # ML-1M (each user's last 50 events per epoch), which also makes it a CPU-sized run.
    config.data.max_length = 50
    config.train.batch_size = 128
    config.train.num_epochs = 200
    config.train.learning_rate = 1e-3
    config.train.eval_every_epochs = 10
    return variant(config, arg)
