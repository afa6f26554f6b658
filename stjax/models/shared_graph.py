"""What the graph models share: star graphs for neighbour attention, interval buckets, the
relation and geography context, and the distance prior over candidate places. Not a model.

A "window graph" turns a batch of queries, each with up to K neighbours among given nodes, into
one `jraph.GraphsTuple`: node q (0..Q-1) is query q, edge (q, j) comes from its j-th neighbour,
and a last zero node receives the edges of padding neighbours so that they never touch a real
query. A "star graph" is the window graph of the queries followed by one copy of each neighbour.
The graph layers of `stjax.layers.graph` then attend over exactly the real neighbours.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph

from stjax.graphs.context import (
    RelationReport,
    item_geography,
    neighbour_table,
    relation_edges,
    temporal_lists,
)
from stjax.layers.encodings import EARTH_RADIUS_KM

Array = jax.Array
INTERVAL_BUCKETS = 24  # log2 minutes: 1 minute .. ~16 years


def window_graph(nodes: Array, sources: Array, mask: Array) -> jraph.GraphsTuple:
    """nodes float[N, D] (the Q queries first, N >= Q); sources int32[Q, S] (rows of nodes);
    mask bool[Q, S] (True = real neighbour). Edge (q, j): nodes[sources[q, j]] -> query q.

    Edges in (q, j) order, so the layer's attention [Q*S, H] reshapes to [Q, S, H]; padding
    edges point at a trailing zero node, so they never touch a real query. Neighbours that are
    themselves nodes (a row's own earlier positions, or rows of a small table such as the users)
    are indexed, not copied: the graph has N + 1 nodes, and a layer's per-node work is done once
    per distinct node."""
    Q, S = sources.shape
    padding = nodes.shape[0]
    receivers = jnp.where(mask.reshape(-1), jnp.repeat(jnp.arange(Q, dtype=jnp.int32), S), padding)
    return jraph.GraphsTuple(nodes=jnp.concatenate([nodes, jnp.zeros((1, nodes.shape[1]), nodes.dtype)]),
                             edges=None, senders=sources.reshape(-1).astype(jnp.int32), receivers=receivers,
                             n_node=jnp.asarray([padding + 1]), n_edge=jnp.asarray([Q * S]), globals=None)


def star_graph(queries: Array, neighbours: Array, mask: Array) -> jraph.GraphsTuple:
    """queries float[Q, D]; neighbours float[Q, K, D] (a copy per edge); mask bool[Q, K]: the
    `window_graph` of the queries followed by the copies (node Q + q*K + j is query q's j-th)."""
    Q, K, D = neighbours.shape
    copies = Q + jnp.arange(Q * K, dtype=jnp.int32).reshape(Q, K)
    return window_graph(jnp.concatenate([queries, neighbours.reshape(Q * K, D)]), copies, mask)


def interval_buckets(timestamps: Array) -> Array:
    """int32[B, T] -> int32[B, T]: 0 at padding and at a sequence's first event, else
    1 + floor(log2(1 + minutes since the previous event)), capped at INTERVAL_BUCKETS."""
    previous = jnp.concatenate([timestamps[:, :1], timestamps[:, :-1]], axis=1)
    minutes = jnp.maximum(timestamps - previous, 0).astype(jnp.float32) / 60.0
    bucket = 1 + jnp.floor(jnp.log2(1.0 + minutes)).astype(jnp.int32)
    return jnp.minimum(bucket, INTERVAL_BUCKETS)


def first_positions(items: Array) -> Array:
    """bool[B, T]: the first real position of each left-padded row (no previous event)."""
    real = items > 0
    previous_real = jnp.concatenate([jnp.zeros_like(real[:, :1]), real[:, :-1]], axis=1)
    return real & ~previous_real


def unit_vectors(latitude: Array, longitude: Array) -> Array:
    """Degrees -> float[..., 3] points on the unit sphere."""
    lat, lon = jnp.radians(latitude), jnp.radians(longitude)
    return jnp.stack([jnp.cos(lat) * jnp.cos(lon), jnp.cos(lat) * jnp.sin(lon), jnp.sin(lat)], axis=-1)


class DistancePrior(nn.Module):
    """A learned power-law prior over the distance d between the current place and each candidate
    place: bias = w log(1 + d / 1 km), w learned from 0 (check-ins decay with distance roughly as a
    power law; Ye et al., SIGIR 2011). d is the chord between unit vectors (equal to the
    great-circle distance within 0.1% up to 500 km) from their coordinate differences (a dot
    product would lose city distances to float32 rounding: 1 - cos is 1e-8 at 1 km), one fused
    elementwise pass over [..., W]; the gradient of w is one reduction. Zero for an unknown
    location on either side. __call__(origin float[..., 3], origin_known bool[...], places
    float[W, 3], places_known bool[W]) -> float[..., W]."""

    @nn.compact
    def __call__(self, origin, origin_known, places, places_known):
        weight = self.param("log_distance_weight", nn.initializers.zeros, ())
        squared = sum((origin[..., k, None] - places[:, k]) ** 2 for k in range(3))  # [..., W]
        chord_km = EARTH_RADIUS_KM * jnp.sqrt(squared)
        bias = weight * jnp.log1p(chord_km)
        return jnp.where(origin_known[..., None] & places_known, bias, 0.0)


def relation_context(prepared, info, model_config) -> dict:
    """neighbours int32[U+1, K]: each user's K strongest relation neighbours (model.relation,
    model.relation_file, model.relation_window_s, model.relation_radius_km; 'none' -> all 0)."""
    report = RelationReport(model_config.relation)
    senders, receivers, weights = relation_edges(
        prepared.split, model_config.relation, file=model_config.get("relation_file", ""),
        window_s=model_config.get("relation_window_s", 86_400),
        radius_km=model_config.get("relation_radius_km", 1.0), report=report)
    if model_config.relation != "none":
        report.announce()
    return {"neighbours": neighbour_table(senders, receivers, weights, info.num_users,
                                          max(1, int(model_config.num_neighbours)))}


def history_context(prepared) -> dict:
    """Each user's training events by time (`temporal_lists(by='user')`): user_offsets,
    user_items, user_times."""
    lists = temporal_lists(prepared.split, "user")
    return {"user_offsets": lists["offsets"], "user_items": lists["values"], "user_times": lists["times"]}


def geography_context(prepared, info, resolution: int) -> dict:
    """Per item row: latitude, longitude, located, cell (`item_geography`)."""
    return item_geography(prepared.split, info.item_rows, resolution)


def scatter_item_scores(items, weights, num_columns: int, dtype):
    """Directly scored items as a score table: items int32[B, T, N] (0 = none, its weight is 0),
    weights float[B, T, N] -> float[B, T, num_columns], each item's weights summed in its column."""
    B, T, N = items.shape
    rows = jnp.broadcast_to(jnp.arange(B * T)[:, None], (B * T, N))
    table = jnp.zeros((B * T, num_columns), dtype).at[rows, items.reshape(B * T, N)].add(
        weights.reshape(B * T, N).astype(dtype))
    return table.reshape(B, T, num_columns)


def next_query_times(batch):
    """When each position's next item is asked for, int32[B, T]: the next event's time; for the
    last position the target's time when the batch has one (evaluation), else the last event's."""
    timestamps = batch["timestamps"]
    last = batch.get("target_timestamps", timestamps[:, -1])
    return jnp.concatenate([timestamps[:, 1:], jnp.asarray(last, timestamps.dtype)[:, None]], axis=1)
