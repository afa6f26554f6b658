"""Mult-VAE on ml-100k under Mult-VAE's held-out-users protocol (50 + 50 held-out users).

    stjax train --config experiments/multvae_ml100k.py --workdir runs/multvae_ml100k

Protocol: `stjax.config.mult_vae_protocol`; training: `stjax.config.mult_vae_training` (the
paper's). Result: the README's held-out-users table.
"""

from stjax.config import base_config, mult_vae_protocol, mult_vae_training, tiny_held_out, variant


def get_config(arg=None):
    config = mult_vae_training(mult_vae_protocol(base_config("multvae", source="ml-100k"), held_out=50))
    return variant(config, arg, {"tiny": tiny_held_out})
