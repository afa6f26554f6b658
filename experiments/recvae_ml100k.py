"""RecVAE (Shenbin et al., WSDM 2020) on ml-100k under Mult-VAE's held-out-users protocol (50 + 50 held-out users).

    stjax train --config experiments/recvae_ml100k.py --workdir runs/recvae_ml100k

Protocol: `stjax.config.mult_vae_protocol`; training: the paper's Adam at 5e-4, batches of 500
users, gamma 0.005, alternating updates step by step (encoder "1110"; decoder "0001"; the prior,
a copy of the encoder, "0001" with SGD at learning rate 1), validation every 5 epochs with
patience 5, up to 200 epochs. Result: the README's held-out-users table.
"""

from stjax.config import base_config, mult_vae_protocol, mult_vae_training, tiny_held_out, variant


def get_config(arg=None):
    config = mult_vae_training(mult_vae_protocol(base_config("recvae", source="ml-100k"), held_out=50))
    config.train.learning_rate = 5e-4
    config.train.clip_norm = 0.0
    groups = config.train.groups
    groups.encoder.pattern = "1110"
    groups.decoder.pattern = "0001"
    groups.prior.pattern = "0001"
    groups.prior.optimizer = "sgd"
    groups.prior.learning_rate = 1.0
    groups.prior.schedule = "constant"
    return variant(config, arg, {"tiny": tiny_held_out})
