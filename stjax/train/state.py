"""Train state, the optimizer over parameter groups, the mesh and shardings, and the one jitted step.

The step is pure: `state, metrics = train_step(state, batch, context)`. Its PRNG key is
`fold_in(key(seed), step)`, so a resumed run draws exactly the same dropout and negatives.
The state is donated. Shardings come from data: the layers name their parameters' axes
(`vocab`, `embed`, `heads`, `mlp`, ...), `train.logical_axis_rules` maps names to the mesh axes
`data` and `model` (an unlisted name is replicated), parameters are created already sharded
(`jax.eval_shape`, then `jit(init, out_shardings=...)`), batches are split along `data`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.linen import meta
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from stjax.devices import put_local


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any


# ----------------------------------------------------------------------------- optimizer


class EveryKState(NamedTuple):
    count: jax.Array
    inner: Any


def every_k_steps(inner: optax.GradientTransformation, every: int, pattern: str = "") -> optax.GradientTransformation:
    """Applies `inner` on one step in `every` (the last of each period) and leaves parameters and
    `inner`'s state untouched on the others: k discriminator steps per generator step is the
    generator's group with every=k. `pattern` (a cycle of '1' and '0', e.g. "1110") instead applies
    it on the steps whose place in the cycle is '1': alternating updates (RecVAE's encoder "1110",
    decoder "0001"). A `lax.cond`, so a skipped step runs no update at all (its moments, clipping
    and schedule are not computed and thrown away)."""
    if pattern:
        cycle = jnp.asarray([char == "1" for char in pattern])
    elif every <= 1:
        return inner

    def init(params):
        return EveryKState(jnp.zeros([], jnp.int32), inner.init(params))

    def update(updates, state, params=None):
        def apply(operands):
            grads, inner_state = operands
            return inner.update(grads, inner_state, params)

        def skip(operands):
            grads, inner_state = operands
            return jax.tree_util.tree_map(jnp.zeros_like, grads), inner_state

        take = cycle[state.count % len(pattern)] if pattern else (state.count + 1) % every == 0
        new_updates, new_inner = jax.lax.cond(take, apply, skip, (updates, state.inner))
        return new_updates, EveryKState(state.count + 1, new_inner)

    return optax.GradientTransformation(init, update)


def _schedule(config, lr: float, total_steps: int, name: str):
    warmup = int(config.warmup_steps)
    if name == "cosine":
        return optax.warmup_cosine_decay_schedule(
            0.0 if warmup else lr, lr, max(warmup, 1), max(total_steps, max(warmup, 1) + 1),
            end_value=lr * float(config.final_lr_ratio))
    if name == "constant":
        return optax.join_schedules([optax.linear_schedule(0.0, lr, max(warmup, 1)), optax.constant_schedule(lr)],
                                    [warmup]) if warmup else lr
    raise ValueError(f"unknown schedule {name!r}; expected cosine or constant")


def group_optimizer(config, group: str, total_steps: int) -> optax.GradientTransformation:
    """adam / adamw with linear warm-up then cosine decay (or constant), global-norm clipping, for one group.

    The group's `train.groups.<group>.learning_rate` (0: `train.learning_rate`), `.optimizer` and
    `.schedule` ("": the train section's) and `.every`: groups may differ in all of them."""
    settings = config.groups[group]
    lr = float(settings.learning_rate) or float(config.learning_rate)
    schedule_name = settings.get("schedule", "") or config.schedule
    schedule = _schedule(config, lr, total_steps, schedule_name)
    name = settings.get("optimizer", "") or config.optimizer
    if name == "sgd":
        # Plain steps, never clipped: with learning rate 1 and the loss 1/2 |p - stop_gradient(q)|^2
        # a step sets p to q exactly (how RecVAE's prior keeps a copy of the encoder).
        return every_k_steps(optax.sgd(schedule), int(settings.every), settings.get("pattern", ""))
    if name == "adamw":
        base = optax.adamw(schedule, b1=0.9, b2=0.98, weight_decay=float(config.weight_decay))
    elif name == "adam":
        base = optax.adam(schedule, b1=0.9, b2=0.98)
    else:
        raise ValueError(f"unknown optimizer {name!r}; expected adam, adamw or sgd")
    clip = float(config.clip_norm or 0.0)
    tx = optax.chain(optax.clip_by_global_norm(clip), base) if clip else base
    return every_k_steps(tx, int(settings.every), settings.get("pattern", ""))


def param_labels(spec, params) -> Any:
    """The parameter group of every leaf: the only group, or `spec.group_of(path)`."""
    if len(spec.groups) == 1:
        return jax.tree_util.tree_map(lambda _: spec.groups[0], params)

    def label(path, _):
        keys = tuple(str(getattr(entry, "key", entry)) for entry in path)
        group = spec.group_of(keys)
        if group not in spec.groups:
            raise ValueError(f"model {spec.name}: parameter {'/'.join(keys)} is in group {group!r}, "
                             f"not one of {spec.groups}")
        return group

    return jax.tree_util.tree_map_with_path(label, params)


def create_optimizer(config, total_steps: int, spec, params) -> optax.GradientTransformation:
    """One `optax.multi_transform`: each parameter group gets its own optimizer."""
    transforms = {group: group_optimizer(config, group, total_steps) for group in spec.groups}
    return optax.multi_transform(transforms, param_labels(spec, params))


# ----------------------------------------------------------------------------- mesh and shardings


def make_mesh(num_devices: int = 0, model_parallel: int = 1) -> Mesh:
    """Mesh ('data', 'model') over the first `num_devices` devices (0: all).

    Axis types are Auto on purpose: under Explicit axes (jax.make_mesh's default) a gather from a
    row-sharded item table is a sharding type error; Auto lets the compiler place the collectives."""
    devices = jax.devices()[: num_devices or len(jax.devices())]
    if model_parallel < 1 or len(devices) % model_parallel:
        raise ValueError(f"train.model_parallel {model_parallel} does not divide the {len(devices)} devices")
    grid = np.asarray(devices).reshape(len(devices) // model_parallel, model_parallel)
    return Mesh(grid, ("data", "model"), axis_types=(AxisType.Auto, AxisType.Auto))


def rules_from_config(rules) -> tuple[tuple[str, str | None], ...]:
    return tuple((str(name), None if axis in (None, "", "none", "None") else str(axis)) for name, axis in rules)


@dataclasses.dataclass
class Shardings:
    """Where everything lives: the state (params with their logical axes), batches, the context."""

    mesh: Mesh
    state: Any
    logical: Any  # PartitionSpec of logical names for every parameter (kept, not unboxed away)
    batch: NamedSharding
    replicated: NamedSharding


def create_state(spec, module, tx_factory, sample_batch: dict, context, seed: int, mesh: Mesh, rules):
    """A fresh TrainState born sharded, and its `Shardings`.

    tx_factory(params) -> optax transform (the groups need the parameter tree)."""
    rng = jax.random.key(seed)
    batch = jax.tree_util.tree_map(jnp.asarray, sample_batch)

    def init_variables(key):
        return spec.init(module, key, batch, context=context)

    abstract = jax.eval_shape(init_variables, rng)
    logical = nn.get_partition_spec(abstract)["params"]
    param_shardings = nn.logical_to_mesh_sharding(logical, mesh, rules)
    params = jax.jit(lambda key: meta.unbox(init_variables(key))["params"], out_shardings=param_shardings)(rng)
    tx = tx_factory(params)
    replicated = NamedSharding(mesh, P())
    opt_shardings = _like_params(jax.eval_shape(tx.init, params), params, param_shardings, replicated)
    opt_state = jax.jit(tx.init, out_shardings=opt_shardings)(params)
    state_shardings = TrainState(replicated, param_shardings, opt_shardings)
    state = TrainState(jax.device_put(jnp.asarray(0, jnp.int32), replicated), params, opt_state)
    shardings = Shardings(mesh, state_shardings, logical, NamedSharding(mesh, P("data")), replicated)
    return state, tx, shardings


def dict_keys(path) -> tuple[str, ...]:
    """The trailing run of dict keys of a key path (a parameter's path inside an optimizer state)."""
    keys = []
    for entry in reversed(path):
        if not isinstance(entry, jax.tree_util.DictKey):
            break
        keys.append(str(entry.key))
    return tuple(reversed(keys))


def _like_params(opt_state, params, param_shardings, replicated):
    """Shardings of an optimizer state: a leaf that mirrors a parameter (Adam's mu and nu, under any
    multi_transform or masking wrapper) is sharded like it; counters and the like are replicated."""
    by_path = {}
    for (path, leaf), sharding in zip(jax.tree_util.tree_flatten_with_path(params)[0],
                                      jax.tree_util.tree_leaves(param_shardings)):
        by_path[dict_keys(path)] = (leaf.shape, sharding)

    def sharding_of(path, leaf):
        keys = dict_keys(path)
        for start in range(len(keys)):
            found = by_path.get(keys[start:])
            if found is not None and found[0] == leaf.shape:
                return found[1]
        return replicated

    return jax.tree_util.tree_map_with_path(sharding_of, opt_state)


put_batch = put_local  # training batches: each process's own rows (`stjax.devices`)


def abstract_state(state, shardings: Shardings):
    """Shapes, dtypes and target shardings of a state: what a checkpoint restores into."""
    return jax.tree_util.tree_map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state,
                                  shardings.state)


# ----------------------------------------------------------------------------- the step


def _group_gradients(spec, loss_fn, params):
    """({group: loss}, aux, grads): each group's parameters get the gradient of its own loss,
    from one forward pass (one vjp pulled back once per group)."""
    if len(spec.groups) == 1:
        group = spec.groups[0]

        def single(p):
            losses, aux = loss_fn(p)
            return losses[group], (losses, aux)

        (_, (losses, aux)), grads = jax.value_and_grad(single, has_aux=True)(params)
        return losses, aux, grads
    losses, pullback, aux = jax.vjp(loss_fn, params, has_aux=True)
    labels = param_labels(spec, params)
    per_group = {}
    for group in spec.groups:
        cotangent = {name: jnp.ones_like(value) if name == group else jnp.zeros_like(value)
                     for name, value in losses.items()}
        (per_group[group],) = pullback(cotangent)
    grads = jax.tree_util.tree_map(lambda label, *gs: gs[spec.groups.index(label)], labels,
                                   *[per_group[g] for g in spec.groups])
    return losses, aux, grads


def make_train_step(spec, module, tx, model_config, seed: int, shardings: Shardings):
    """The jitted step with explicit shardings; the state argument is donated.

    metrics: loss (sum over groups), loss/<group> with several groups, grad_norm, the aux scalars."""
    base_key = jax.random.key(seed)

    def train_step(state: TrainState, batch: dict, context):
        rng = jax.random.fold_in(base_key, state.step)

        def loss_fn(params):
            return spec.losses(module, {"params": params}, batch, rng=rng, step=state.step, context=context,
                               config=model_config)

        losses, aux, grads = _group_gradients(spec, loss_fn, state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": sum(losses.values()), "grad_norm": optax.tree.norm(grads), **aux}
        if len(losses) > 1:
            metrics |= {f"loss/{group}": value for group, value in losses.items()}
        return TrainState(state.step + 1, params, opt_state), metrics

    return jax.jit(train_step, donate_argnums=0,
                   in_shardings=(shardings.state, shardings.batch, shardings.replicated),
                   out_shardings=(shardings.state, shardings.replicated))
