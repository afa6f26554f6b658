"""Putting host arrays on the mesh: the one path for every global batch (training, evaluation,
serving) and for run-wide arrays, so that a multi-process run needs no second one.

`put_local(batch, sharding)`: each process holds its own slice of the global batch (the training
iterator builds process p's rows); `put_global(batch, sharding)`: every process holds the whole
global batch (evaluation examples and serving batches, built the same way on every process).
With one process both are a `jax.device_put`. `fetch(tree)` is the way back: whole host arrays on
every process.
"""

from __future__ import annotations

import jax
import numpy as np


def put_local(batch, sharding):
    """This process's slice of a global batch onto the mesh, split along `data`. Several
    processes: each contributes its rows to one global array."""
    if jax.process_count() == 1:
        return jax.device_put(batch, sharding)
    return jax.tree_util.tree_map(lambda rows: jax.make_array_from_process_local_data(sharding, rows), batch)


def put_global(batch, sharding):
    """A global batch that every process holds whole (or a replicated run-wide array) onto the mesh;
    each process places only the shards its devices own."""
    if jax.process_count() == 1:
        return jax.device_put(batch, sharding)

    def place(values):
        values = np.asarray(values)
        return jax.make_array_from_callback(values.shape, sharding, lambda index: values[index])

    return jax.tree_util.tree_map(place, batch)


def fetch(tree):
    """Host copies of device arrays, whole: `jax.device_get`, except that an array split over the
    devices of several processes (an evaluation's per-row ranks, a serving batch's top-K) is first
    gathered to every process."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils

    def get(value):
        if isinstance(value, jax.Array) and not value.is_fully_addressable and not value.is_fully_replicated:
            return np.asarray(multihost_utils.process_allgather(value, tiled=True))
        return jax.device_get(value)

    return jax.tree_util.tree_map(get, tree)
