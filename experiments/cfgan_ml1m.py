"""CFGAN (Chae et al., CIKM 2018) on ml-1m under Mult-VAE's held-out-users protocol (600 + 600 held-out users).

    stjax train --config experiments/cfgan_ml1m.py --workdir runs/cfgan_ml1m
    stjax train --config experiments/cfgan_ml1m.py:loo --workdir runs/cfgan_ml1m_loo   # leave-one-out, full ranking

Protocol: `stjax.config.mult_vae_protocol`. Training: the authors' ML-1M settings (their
`parameters.py`: G 300 and D 250 hidden units, L2 0.001 on G and 5e-5 on D, ZR and PM over 90%
of the unpurchased items, ZR weight 0.03, batches of 256 users, D's rate half G's), both players
stepping together every batch, but at 4x their rates (Adam at 4e-4 for G, 2e-4 for D) for up to
400 epochs rather than 1e-4 / 5e-5 for 1,500, so that a run fits an hour of a 2-core CPU
(`--config.train.groups.generator.learning_rate=1e-4 --config.train.groups.discriminator.learning_rate=5e-5
--config.train.num_epochs=1500` is theirs); validation NDCG@100 every 10 epochs, patience 5.
Result (2026-12-03, the 2-core CPU with other jobs beside it, load 7-15): early stopping fired at
epoch 330 (best epoch 280), 2,117 s of training; valid NDCG@100 0.2261, test NDCG@100 0.2293,
Recall@20 0.1844, Recall@50 0.2342, far below EASE on the same split (0.4310 / 0.3634 / 0.4861).
Tried on validation: `--config.train.groups.discriminator.every=4 --config.train.num_epochs=200`
(valid 0.1751, stopped at epoch 70). D wins the game as training goes on (its mean probability of
a generated vector fell from 0.25 to 0.07).
"""

from stjax.config import base_config, cfgan_variants, mult_vae_protocol, variant


def get_config(arg=None):
    config = mult_vae_protocol(base_config("cfgan", source="ml-1m"), held_out=600)
    train = config.train
    train.batch_size = 256
    train.num_epochs = 400
    train.schedule = "constant"
    train.warmup_steps = 0
    train.clip_norm = 0.0
    train.eval_every_epochs = 10
    train.patience = 5
    train.groups.generator.learning_rate = 4e-4
    train.groups.discriminator.learning_rate = 2e-4
    return variant(config, arg, cfgan_variants())

