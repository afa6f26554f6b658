"""What graph models keep as their run-wide context: fixed-size arrays built once from the
training events, and the device-side lookups that read them inside a jitted step.

Everything here comes from TRAINING events only (`stjax.graphs.build.training_rows`). Times are
the batches' relative int32 seconds (`stjax.data.batching.relative_times`), so a query at a
batch position's timestamp compares with stored event times directly.

  relation_edges      the user-user graph a config asks for (given file or derived)
  neighbour_table     int32[U+1, K]: each user's K strongest relation neighbours (0 = none)
  temporal_lists      CSR of each user's (or item's) training events sorted by time
  recent_before       on device: the k most recent entries of a CSR row strictly before t
  item_geography      per item: mean location and a dense geo-cell code
"""

from __future__ import annotations

import dataclasses
import sys

import jax
import jax.numpy as jnp
import numpy as np

from stjax.data.batching import relative_times
from stjax.data.geo import h3_cells
from stjax.data.splits import Split
from stjax.graphs.build import mean_locations, training_rows, user_relation_graph

RELATIONS = ("none", "given", "co_interaction", "region", "proximity")


@dataclasses.dataclass
class RelationReport:
    """What building a relation graph kept and dropped (printed by the models that use it)."""

    method: str
    edges: int = 0
    listed: int = 0
    unknown_users: int = 0
    self_loops: int = 0

    def announce(self) -> None:
        """One line on stderr (stdout may carry a command's output)."""
        print(self.describe(), file=sys.stderr)

    def describe(self) -> str:
        text = f"user relation '{self.method}': {self.edges} directed edges"
        if self.method == "given":
            text += (f" from {self.listed} listed pairs; dropped {self.unknown_users} pairs naming a user "
                     f"absent from the log and {self.self_loops} self-loops")
        return text


def given_edges(path, user_vocab, report: RelationReport | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A trust/social edge list file (`user user [weight]`, tab or space separated; see
    `stjax.data.formats.load_edges`, whose errors name the file, line and field) mapped to the
    log's user ids. Pairs naming a user the log does not have, and self-loops, are dropped and
    counted in `report`. Returns senders, receivers int64[E] and weights float32[E] (directed)."""
    from stjax.data.formats import load

    edges = load(path, "edges").edges
    senders = user_vocab.lookup(edges.senders)
    receivers = user_vocab.lookup(edges.receivers)
    known = (senders > 0) & (receivers > 0)
    loops = known & (senders == receivers)
    keep = known & ~loops
    if report is not None:
        report.listed = len(senders)
        report.unknown_users = int((~known).sum())
        report.self_loops = int(loops.sum())
    return senders[keep], receivers[keep], edges.weight[keep]


def relation_edges(split: Split, method: str, *, file: str = "", window_s: int = 86_400, radius_km: float = 1.0,
                   report: RelationReport | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The user-user graph `method` names (see `RELATIONS`; 'none' gives no edges): senders,
    receivers int32[E] (user ids, symmetric, no self loops) and weights float32[E]."""
    if method not in RELATIONS:
        raise ValueError(f"unknown user relation {method!r}; expected one of {', '.join(RELATIONS)}")
    report = report if report is not None else RelationReport(method)
    if method == "none":
        empty = np.zeros(0, np.int32)
        return empty, empty.copy(), np.zeros(0, np.float32)
    if method == "given":
        if not file:
            raise ValueError("user relation 'given' needs model.relation_file (a `user user [weight]` edge list)")
        senders, receivers, weights = given_edges(file, split.log.user_vocab, report)
        result = user_relation_graph(split, "given", senders=senders, receivers=receivers, weights=weights)
    else:
        params = {"co_interaction": {"window_s": int(window_s)}, "proximity": {"radius_km": float(radius_km)}}
        result = user_relation_graph(split, method, **params.get(method, {}))
    report.edges = len(result[0])
    return result


def neighbour_table(senders, receivers, weights, num_users: int, k: int) -> np.ndarray:
    """Each user's k strongest neighbours: int32[num_users + 1, k], sorted by weight (ties: the
    smaller id first), 0-padded. senders -> receivers edges; the row of a receiver lists its senders."""
    table = np.zeros((num_users + 1, k), np.int32)
    if len(senders) == 0 or k == 0:
        return table
    receivers = np.asarray(receivers, np.int64)
    senders = np.asarray(senders, np.int64)
    order = np.lexsort((senders, -np.asarray(weights, np.float64), receivers))
    receivers, senders = receivers[order], senders[order]
    first = np.searchsorted(receivers, receivers, side="left")
    rank = np.arange(len(receivers)) - first
    keep = rank < k
    table[receivers[keep], rank[keep]] = senders[keep]
    return table


def temporal_lists(split: Split, by: str) -> dict:
    """The training events grouped by user (`by='user'`: the values are items) or by item
    (`by='item'`: the values are users), each group sorted by time:
    offsets int32[N + 2] (row n is offsets[n]:offsets[n+1], N users or items), values int32[E],
    times int32[E] relative seconds."""
    log = split.log
    rows = training_rows(split)
    times, _ = relative_times(log)
    if by == "user":
        keys, values, size = log.user[rows], log.item[rows], log.num_users
    elif by == "item":
        keys, values, size = log.item[rows], log.user[rows], log.num_items
    else:
        raise ValueError(f"temporal_lists: by={by!r}; expected 'user' or 'item'")
    keys = np.asarray(keys, np.int64)
    order = np.lexsort((np.asarray(times[rows], np.int64), keys))
    counts = np.bincount(keys, minlength=size + 1)
    offsets = np.zeros(size + 2, np.int64)
    np.cumsum(counts, out=offsets[1:])
    if offsets[-1] >= 2**31:
        raise ValueError("temporal_lists: more than 2^31 training events do not fit int32 offsets")
    return {"offsets": offsets.astype(np.int32), "values": np.asarray(values, np.int32)[order],
            "times": np.asarray(times[rows], np.int32)[order]}


def recent_before(offsets, times, nodes, query_times, k: int, max_degree: int | None = None):
    """On device: for each query (node, t), the CSR positions of the k most recent entries of the
    node's row with time < t, oldest first, real entries last (right-aligned).

    offsets int32[N+2], times int32[E] (each row sorted), nodes / query_times int32[...].
    Returns (positions int32[..., k], clipped into range; mask bool[..., k], True = real).
    A vectorised binary search of ceil(log2(max_degree + 1)) halvings (max_degree defaults to
    the number of entries, a bound known from the shapes): no Python per query, no host round
    trip; exact against `stjax.graphs.sample_neighbours(strategy='recent')`.
    """
    offsets, times = jnp.asarray(offsets), jnp.asarray(times)
    nodes = jnp.asarray(nodes)
    if times.shape[0] == 0:  # static: no entries at all (nothing to gather from)
        shape = (*nodes.shape, k)
        return jnp.zeros(shape, jnp.int32), jnp.zeros(shape, bool)
    max_degree = times.shape[0] if max_degree is None else max_degree
    start = offsets[nodes]
    low, high = start, offsets[nodes + 1]
    for _ in range(max(1, int(np.ceil(np.log2(max_degree + 1))))):
        middle = (low + high) // 2
        before = times[jnp.clip(middle, 0, times.shape[0] - 1)] < query_times
        active = low < high
        low = jnp.where(active & before, middle + 1, low)
        high = jnp.where(active & ~before, middle, high)
    end = low  # first entry at or after t
    columns = jnp.arange(k, dtype=end.dtype) - k  # -k .. -1
    positions = end[..., None] + columns
    mask = positions >= start[..., None]
    return jnp.clip(positions, 0, max(times.shape[0] - 1, 0)), mask


def item_geography(split: Split, rows: int, resolution: int = 7) -> dict:
    """Per item row (0..rows-1, padding rows included): latitude, longitude float32[rows] (the
    mean location of the item's training events; 0 where unknown), located bool[rows], and
    cell int32[rows], a dense code (1..C) of the H3 cell at `resolution` holding that mean (0 =
    unknown; C <= number of items, so a table of `rows` rows holds every code)."""
    log = split.log
    train = training_rows(split)
    latitude, longitude = mean_locations(log.item[train], log.latitude[train], log.longitude[train], log.num_items)
    located = np.isfinite(latitude) & np.isfinite(longitude)
    names = h3_cells(latitude, longitude, resolution)
    distinct = sorted({name for name in names if name})
    code = {name: i + 1 for i, name in enumerate(distinct)}
    cells = np.asarray([code.get(name, 0) for name in names], np.int32)

    def padded(values, dtype):
        out = np.zeros(rows, dtype)
        out[: len(values)] = values
        return out

    return {"latitude": padded(np.where(located, latitude, 0.0), np.float32),
            "longitude": padded(np.where(located, longitude, 0.0), np.float32),
            "located": padded(located, bool), "cell": padded(cells, np.int32)}


def gather_rows(table: jax.Array, positions: jax.Array, mask: jax.Array, fill=0):
    """table[positions] with `fill` where mask is False (for CSR values and times)."""
    table = jnp.asarray(table)
    if table.shape[0] == 0:  # static: an empty list has only padding
        return jnp.full(positions.shape, fill, table.dtype)
    return jnp.where(mask, table[positions], fill)
