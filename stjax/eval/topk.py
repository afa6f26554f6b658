"""Exact top-k over all items when the item columns are split over the `model` mesh axis.

`top_k(scores, k, mesh)` equals `jax.lax.top_k(scores, k)`, ties included (the lower index first),
but with a row-sharded item table it never gathers a [B, W] score matrix onto one device: each
shard keeps its own top k, then the shards' [B, k] candidates are gathered and merged. On a mesh
whose `model` axis has one device it is `jax.lax.top_k` itself.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

Array = jax.Array


def top_k(scores: Array, k: int, mesh: Mesh | None = None, axis: str = "model") -> tuple[Array, Array]:
    """(values float[B, k], indices int32[B, k]) of the k largest scores of each row, best first.

    scores: float[B, W] (W >= k). With a `mesh` whose `axis` has more than one device, the columns
    are split over `axis` (`sharded_top_k`); otherwise this is `jax.lax.top_k`."""
    if mesh is None or mesh.shape.get(axis, 1) == 1:
        return jax.lax.top_k(scores, k)
    return sharded_top_k(scores, k, mesh, axis)


def sharded_top_k(scores: Array, k: int, mesh: Mesh, axis: str = "model") -> tuple[Array, Array]:
    """`top_k` with the W columns split into `mesh.shape[axis]` contiguous shards (the layout of a
    row-sharded item table's scores); the rows are split over the mesh's other axes when they divide B.

    Each shard takes the top min(k, W / shards) of its columns (`jax.lax.top_k`, indices shifted
    to global columns), the shards' candidates are all-gathered ([B, shards * k], shard order), and
    one more `top_k` merges them. The result equals `jax.lax.top_k(scores, k)` exactly: every item
    of the global top k is in its shard's top k, and among equal values the candidates lie in
    global column order, so the merge breaks ties by the lower index as `lax.top_k` does.
    W not divisible by the shards is padded with -inf columns at the end (never picked while k <= W).
    scores: float[B, W] -> (float[B, k], int32[B, k])."""
    shards = mesh.shape[axis]
    rows, width = scores.shape
    if k > width:
        raise ValueError(f"top_k: k={k} is more than the {width} columns")
    pad = -width % shards
    if pad:
        scores = jnp.pad(scores, ((0, 0), (0, pad)), constant_values=-jnp.inf)
    local_width = (width + pad) // shards
    local_k = min(k, local_width)
    others = tuple(name for name in mesh.axis_names if name != axis)
    row_devices = math.prod(mesh.shape[name] for name in others)
    row_axes = others if others and row_devices > 1 and rows % row_devices == 0 else None

    def merge(block):  # block: [b, W / shards], this shard's columns
        values, indices = jax.lax.top_k(block, local_k)  # [b, k']
        indices = indices + jax.lax.axis_index(axis) * local_width
        values = jax.lax.all_gather(values, axis, axis=1, tiled=True, to="invarying")  # [b, shards * k']
        indices = jax.lax.all_gather(indices, axis, axis=1, tiled=True, to="invarying")
        best, position = jax.lax.top_k(values, k)  # [b, k]
        return best, jnp.take_along_axis(indices, position, axis=1).astype(jnp.int32)

    return jax.shard_map(merge, mesh=mesh, in_specs=P(row_axes, axis),
                         out_specs=(P(row_axes, None), P(row_axes, None)))(scores)
