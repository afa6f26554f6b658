"""RecVAE (Shenbin et al., WSDM 2020) on ml-1m under Mult-VAE's held-out-users protocol (600 + 600 held-out users).

    stjax train --config experiments/recvae_ml1m.py --workdir runs/recvae_ml1m

Protocol: `stjax.config.mult_vae_protocol`; training: `stjax.config.recvae_training` (the paper's
Adam at 5e-4, batches of 500 users, gamma 0.005, alternating updates; validation every 5 epochs
with patience 5, up to 200 epochs). Result: the README's held-out-users table.
"""

from stjax.config import base_config, mult_vae_protocol, recvae_training, tiny_held_out, variant


def get_config(arg=None):
    config = recvae_training(mult_vae_protocol(base_config("recvae", source="ml-1m"), held_out=600))
    return variant(config, arg, {"tiny": tiny_held_out})
