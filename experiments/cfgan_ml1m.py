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

from stjax.config import base_config, mult_vae_protocol, tiny_held_out, variant


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
    return variant(config, arg, {"tiny": tiny, "loo": leave_one_out, "tiny_loo": lambda c: tiny(leave_one_out(c))})


def tiny(config):
    config = tiny_held_out(config)
    config.model.generator_hidden = config.model.discriminator_hidden = 16
    config.train.groups.generator.learning_rate = config.train.groups.discriminator.learning_rate = 0.0
    return config


def leave_one_out(config):
    """Every user trains on all but their last two ratings (all ratings, as the sequence models'
    experiments) and is ranked on the last (test) and second to last (validation) over all items."""
    config.data.split = "leave_one_out"
    config.data.min_value = 0.0
    config.data.min_length = 0
    config.data.valid_users = config.data.test_users = 0
    config.eval.evaluators = ("ranking",)
    config.eval.ks = (5, 10, 20)
    config.eval.metric = "ndcg@10"
    return config
