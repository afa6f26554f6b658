"""Mult-VAE on ML-1M with injected shilling attackers and bots (`stjax data attack`), every rating
kept (the attack profiles are ratings of every value), for the README's anomaly table:

    stjax data attack ml-1m --out data/ml-1m-attacked.csv --truth data/ml-1m-attacked-truth.tsv
    stjax train --config experiments/multvae_ml1m_attacked.py --workdir runs/multvae_ml1m_attacked
    stjax anomalies --workdir runs/multvae_ml1m_attacked --truth data/ml-1m-attacked-truth.tsv

Protocol: Mult-VAE's held-out users (600 + 600) with min_value 0; the paper's training.
"""

from stjax.config import base_config, mult_vae_protocol, mult_vae_training, tiny_held_out, variant


def get_config(arg=None):
    config = mult_vae_training(mult_vae_protocol(base_config("multvae", source="data/ml-1m-attacked.csv"),
                                                 held_out=600))
    config.data.format = "csv"
    config.data.min_value = 0.0
    return variant(config, arg, {"tiny": tiny_held_out})
