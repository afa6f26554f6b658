"""Train state, optimizer and the one jitted train step.

The step is pure: `state, metrics = train_step(state, batch)`. Its PRNG key is
`fold_in(key(seed), step)`, so a resumed run draws exactly the same dropout and negatives.
The state is donated; the batch is sharded over the mesh axis 'data' and the state is
replicated (the distributed work swaps these shardings, not the step).
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.linen import meta
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any


def create_optimizer(config, total_steps: int) -> optax.GradientTransformation:
    """adam / adamw with linear warm-up then cosine decay, and global-norm clipping."""
    lr = float(config.learning_rate)
    warmup = int(config.get("warmup_steps", 0))
    if config.get("schedule", "cosine") == "cosine":
        schedule = optax.warmup_cosine_decay_schedule(
            0.0 if warmup else lr, lr, max(warmup, 1) if warmup else 1, max(total_steps, warmup + 1),
            end_value=lr * float(config.get("final_lr_ratio", 0.1)))
    else:
        schedule = optax.join_schedules([optax.linear_schedule(0.0, lr, max(warmup, 1)), optax.constant_schedule(lr)],
                                        [warmup]) if warmup else lr
    name = config.get("optimizer", "adam")
    if name == "adamw":
        base = optax.adamw(schedule, b1=0.9, b2=0.98, weight_decay=float(config.get("weight_decay", 0.0)))
    elif name == "adam":
        base = optax.adam(schedule, b1=0.9, b2=0.98)
    else:
        raise ValueError(f"unknown optimizer {name!r}; expected adam or adamw")
    clip = float(config.get("clip_norm", 0.0) or 0.0)
    return optax.chain(optax.clip_by_global_norm(clip), base) if clip else base


def make_mesh(num_devices: int | None = None) -> Mesh:
    devices = jax.devices()[: num_devices or len(jax.devices())]
    return Mesh(np.asarray(devices), ("data",))


def init_params(module, sample_batch: dict, seed: int):
    variables = module.init(jax.random.key(seed), jnp.asarray(sample_batch["items"]),
                            jnp.asarray(sample_batch["timestamps"]))
    return meta.unbox(variables)["params"]


def make_train_step(spec, module, tx, model_config, seed: int, mesh: Mesh):
    """The jitted step with explicit shardings; the state argument is donated."""
    replicated = NamedSharding(mesh, P())
    data = NamedSharding(mesh, P("data"))
    base_key = jax.random.key(seed)

    def train_step(state: TrainState, batch: dict):
        rng = jax.random.fold_in(base_key, state.step)

        def loss_fn(params):
            return spec.loss(module, {"params": params}, batch, rng, model_config)

        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": loss, "targets": aux["targets"], "grad_norm": optax.tree.norm(grads)}
        return TrainState(state.step + 1, params, opt_state), metrics

    return jax.jit(train_step, donate_argnums=0, in_shardings=(replicated, data), out_shardings=(replicated, replicated))
