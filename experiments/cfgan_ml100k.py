"""CFGAN (Chae et al., CIKM 2018) on ml-100k under Mult-VAE's held-out-users protocol (50 + 50 held-out users).

    stjax train --config experiments/cfgan_ml100k.py --workdir runs/cfgan_ml100k
    stjax train --config experiments/cfgan_ml100k.py:loo --workdir runs/cfgan_ml100k_loo   # leave-one-out, full ranking

Protocol: `stjax.config.mult_vae_protocol`. Training: the authors' ML100K settings (their
`parameters.py`: G 400 and D 125 hidden units, Adam at 1e-4 for both, L2 0.001 on G and none on
D, ZR and PM over 70% of the unpurchased items, ZR weight 0.03, four generator steps per
discriminator step: `train.groups.discriminator.every=4`), batches of 64 users, up to 1,000
epochs, validation NDCG@100 every 20 epochs with patience 5.
Result (2026-12-03, the 2-core CPU with other jobs beside it, load 10-16): early stopping fired at
epoch 880 (best epoch 780), 680 s of training; valid NDCG@100 0.4246, test NDCG@100 0.3973,
Recall@20 0.3364, Recall@50 0.5080 (EASE on the same split: 0.4534 / 0.4036 / 0.6020).
Tried on validation: 4x the rates (`--config.train.groups.generator.learning_rate=4e-4
--config.train.groups.discriminator.learning_rate=4e-4 --config.train.num_epochs=250
--config.train.eval_every_epochs=10`): valid 0.3936 at epoch 200, so the authors' rates stay.
Result of `:loo` (2026-12-03, load about 5): test NDCG@10 0.0543, HR@10 0.1103, MRR@10 0.0374, early
stopping fired at epoch 420 (best step 4,800), 154 s of training (SASRec at that protocol: 0.0876).
"""

from stjax.config import base_config, cfgan_variants, mult_vae_protocol, variant


def get_config(arg=None):
    config = mult_vae_protocol(base_config("cfgan", source="ml-100k"), held_out=50)
    train = config.train
    model = config.model
    model.generator_hidden, model.discriminator_hidden = 400, 125
    model.zr_ratio = model.pm_ratio = 0.7
    model.discriminator_l2 = 0.0
    train.batch_size = 64
    train.num_epochs = 1000
    train.schedule = "constant"
    train.warmup_steps = 0
    train.clip_norm = 0.0
    train.eval_every_epochs = 20
    train.patience = 5
    train.groups.generator.learning_rate = 1e-4
    train.groups.discriminator.learning_rate = 1e-4
    train.groups.discriminator.every = 4
    return variant(config, arg, cfgan_variants())

