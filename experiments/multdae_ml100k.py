"""multdae on ml-100k under Mult-VAE's held-out-users protocol (see `stjax.config.mult_vae_protocol`).

    stjax train --config experiments/multdae_ml100k.py --workdir runs/multdae_ml100k

The paper's training: Adam at 1e-3, batches of 500 users, input dropout 0.5, up to 200 epochs;
validation NDCG@100 every 5 epochs with patience 5 picks the checkpoint. Result: the README's
held-out-users table.
"""

from stjax.config import base_config, mult_vae_protocol, tiny_held_out, variant


def get_config(arg=None):
    config = mult_vae_protocol(base_config("multdae", source="ml-100k"), held_out=50)
    config.train.batch_size = 500
    config.train.num_epochs = 200
    config.train.learning_rate = 1e-3
    config.train.schedule = "constant"
    config.train.warmup_steps = 0
    config.train.eval_every_epochs = 5
    config.train.patience = 5
    return variant(config, arg, {"tiny": tiny_held_out})
