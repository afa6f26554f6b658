"""EASE (Steck, WWW 2019) on ml-1m under Mult-VAE's protocol (Liang et al., WWW 2018).

    stjax train --config experiments/ease_ml1m.py --workdir runs/ease_ml1m
    python scripts/tune_ease.py --config experiments/ease_ml1m.py --workdir runs/ease_ml1m_grid

Ratings >= 4 are positives, users with >= 5 positives; 600 validation and 600 test users are held
out, 80% of each one's items are folded in and the rest are targets; NDCG@100 and Recall@K
normalised by min(K, targets) (`capped_recall`). model.l2 is chosen on validation
(scripts/tune_ease.py). Result: the README's generative-models table.
"""

from stjax.config import base_config, mult_vae_protocol, tiny_held_out, variant


def get_config(arg=None):
    config = mult_vae_protocol(base_config("ease", source="ml-1m"), held_out=600)
    config.model.l2 = 500.0
    config.train.num_steps = 1  # the closed form is computed from the training bags; nothing to step
    config.train.warmup_steps = 0
    return variant(config, arg, {"tiny": tiny_held_out})
