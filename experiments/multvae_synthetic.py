"""Mult-VAE on the synthetic default data (1,000 users, 100k events, 2% planted anomalous users):
the held-out-users protocol with 100 + 100 held-out users, every event a positive (the synthetic
events carry no ratings). Its run is what `stjax anomalies` scores against the planted truth.

    stjax train --config experiments/multvae_synthetic.py --workdir runs/multvae_synthetic
    stjax anomalies --workdir runs/multvae_synthetic

Result: the README's anomaly table.
"""

from stjax.config import base_config, mult_vae_protocol, mult_vae_training, tiny_held_out, variant


def get_config(arg=None):
    config = mult_vae_training(mult_vae_protocol(base_config("multvae", source="synthetic"), held_out=100))
    config.data.min_value = 0.0
    config.train.batch_size = 100
    config.train.num_epochs = 100
    return variant(config, arg, {"tiny": tiny_held_out})
