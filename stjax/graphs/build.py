"""Graphs built from a split's training events: user-item, user-user, item-item and place graphs.

Only events labelled `TRAIN` in the split ever become edges, so a model that propagates over
these graphs cannot see a validation or test interaction. Every builder returns plain NumPy
arrays; ids follow the log (users 1..U, items 1..I, 0 = padding) unless a docstring says
otherwise.
"""

from __future__ import annotations

import inspect
import itertools
from typing import NamedTuple

import numpy as np

from stjax.data.geo import haversine_km
from stjax.data.splits import TRAIN, Split

EARTH_RADIUS_KM = 6371.0088  # the radius `stjax.data.geo.haversine_km` uses


class InteractionGraph(NamedTuple):
    """The bipartite user-item graph of the training events, one edge per event, sorted by time.

    num_users, num_items: vocabulary sizes of the log (padding excluded)
    users: int32[E] in 1..num_users;  items: int32[E] in 1..num_items
    timestamps: int64[E] seconds;  behaviour: int8[E] codes of the log's behaviour vocabulary
    distance_km: float32[E], great-circle distance from the same user's previous training event;
      NaN for a user's first training event or when either event has no coordinates
    """

    num_users: int
    num_items: int
    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray
    behaviour: np.ndarray
    distance_km: np.ndarray


def training_rows(split: Split) -> np.ndarray:
    """Indices int64[E] of the training events of `split.log` (sorted by user, then time)."""
    return np.flatnonzero(split.part == TRAIN)


def _same_user_as_previous(users: np.ndarray) -> np.ndarray:
    """bool[E]: event e and event e-1 belong to the same user (users sorted)."""
    same = np.zeros(len(users), dtype=bool)
    same[1:] = users[1:] == users[:-1]
    return same


def interaction_graph(split: Split) -> InteractionGraph:
    """The user-item interaction graph of the training events of `split` (see `InteractionGraph`)."""
    log = split.log
    rows = training_rows(split)
    users = log.user[rows].astype(np.int32)
    latitude = log.latitude[rows].astype(np.float64)
    longitude = log.longitude[rows].astype(np.float64)
    # The log is sorted by (user, time), so the training rows are too: the previous row of the
    # same user is that user's previous training event.
    distance = np.full(len(rows), np.nan, dtype=np.float32)
    previous = np.flatnonzero(_same_user_as_previous(users))
    if len(previous):
        distance[previous] = haversine_km(latitude[previous - 1], longitude[previous - 1],
                                          latitude[previous], longitude[previous])
    order = np.argsort(log.timestamp[rows], kind="stable")  # ties keep (user, time) order
    return InteractionGraph(
        num_users=log.num_users,
        num_items=log.num_items,
        users=users[order],
        items=log.item[rows][order].astype(np.int32),
        timestamps=log.timestamp[rows][order].astype(np.int64),
        behaviour=log.behaviour[rows][order].astype(np.int8),
        distance_km=distance[order],
    )


def item_node(items, num_users: int) -> np.ndarray:
    """Node index of items in the joint user-item numbering (users 0..U, then items 0..I at U+1..)."""
    return np.asarray(items, dtype=np.int64) + num_users + 1


def normalized_adjacency(graph: InteractionGraph, num_users: int | None = None,
                         num_items: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LightGCN's symmetric normalisation D^-1/2 A D^-1/2 of the user-item graph, as edges.

    Nodes: N = U + 1 + I + 1; user u is node u, item i is node U + 1 + i (`item_node`); node 0 and
    node U + 1 are the padding user and item and stay isolated. A user-item pair seen several
    times is one edge. Both directions are listed, user -> item edges first, each half sorted.
    Returns senders int32[2P], receivers int32[2P], weights float32[2P] = 1 / sqrt(deg_s deg_r).
    """
    num_users = graph.num_users if num_users is None else num_users
    num_items = graph.num_items if num_items is None else num_items
    num_nodes = num_users + num_items + 2
    pairs = np.unique(graph.users.astype(np.int64) * (num_items + 1) + graph.items.astype(np.int64))
    user_nodes = pairs // (num_items + 1)
    item_nodes = item_node(pairs % (num_items + 1), num_users)
    degree = np.bincount(user_nodes, minlength=num_nodes) + np.bincount(item_nodes, minlength=num_nodes)
    weights = 1.0 / np.sqrt(degree[user_nodes].astype(np.float64) * degree[item_nodes])
    senders = np.concatenate([user_nodes, item_nodes]).astype(np.int32)
    receivers = np.concatenate([item_nodes, user_nodes]).astype(np.int32)
    return senders, receivers, np.concatenate([weights, weights]).astype(np.float32)


def symmetric_edges(senders, receivers, weights=None, num_nodes: int | None = None,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Undirected version of an edge list: self loops dropped, both directions, one edge per pair.

    A pair listed several times (in either direction) gets the sum of its weights (1 each by
    default). Returns senders, receivers int32[E'] sorted by (sender, receiver), weights float32[E'].
    """
    senders = np.asarray(senders, dtype=np.int64)
    receivers = np.asarray(receivers, dtype=np.int64)
    weights = np.ones(len(senders)) if weights is None else np.asarray(weights, dtype=np.float64)
    keep = senders != receivers
    low = np.minimum(senders, receivers)[keep]
    high = np.maximum(senders, receivers)[keep]
    if num_nodes is None:
        num_nodes = int(high.max()) + 1 if len(high) else 1
    pair_keys, inverse = np.unique(low * num_nodes + high, return_inverse=True)
    pair_weights = np.bincount(inverse.reshape(-1), weights=weights[keep], minlength=len(pair_keys))
    low, high = pair_keys // num_nodes, pair_keys % num_nodes
    all_senders = np.concatenate([low, high])
    all_receivers = np.concatenate([high, low])
    order = np.argsort(all_senders * num_nodes + all_receivers)
    return (all_senders[order].astype(np.int32), all_receivers[order].astype(np.int32),
            np.concatenate([pair_weights, pair_weights])[order].astype(np.float32))


def user_relation_graph(split: Split, method: str, stats: dict | None = None, **params,
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A user-user graph: senders, receivers int32[E] (user ids), weights float32[E].

    Always symmetric, without self loops, one edge per ordered pair, sorted by (sender, receiver).
    Methods and their parameters:
      given(senders, receivers, weights=None): an external edge list of user ids (a social
        network); weight = the sum of the pair's listed weights (1 each when None), in either
        direction.
      co_interaction(window_s, max_pairs_per_item=10_000): users whose training events on the same
        item are at most `window_s` seconds apart; weight = number of such event pairs. Each event
        is paired with its nearest later events on the item first; an item yielding more than
        `max_pairs_per_item` event pairs keeps that many; when a `stats` dict is given, the pairs
        found and those left out are counted in stats['co_interaction_pairs'] and
        stats['co_interaction_capped'].
      region(max_edges=50_000_000): users whose most frequent training region (codes > 0; ties go to
        the smaller code) is the same; weight 1. Regions are cliques, so the edge count is checked
        against `max_edges` before anything is built.
      proximity(radius_km): users whose mean training location (the normalised mean of unit vectors,
        so the antimeridian is harmless) is within `radius_km`; weight 1.
    """
    methods = {"given": _given, "co_interaction": _co_interaction, "region": _region, "proximity": _proximity}
    if method not in methods:
        raise ValueError(f"unknown user relation {method!r}; expected one of {', '.join(methods)}")
    builder = methods[method]
    try:
        inspect.signature(builder).bind(split, stats=stats, **params)
    except TypeError as error:
        valid = [name for name in inspect.signature(builder).parameters if name not in ("split", "stats")]
        raise TypeError(f"user_relation_graph(method={method!r}): {error}; its parameters are "
                        f"{', '.join(valid)}") from None
    return builder(split, stats=stats, **params)


def _given(split: Split, senders, receivers, weights=None, stats=None):
    num_users = split.log.num_users
    senders = np.asarray(senders, dtype=np.int64)
    receivers = np.asarray(receivers, dtype=np.int64)
    for name, ids in (("senders", senders), ("receivers", receivers)):
        bad = (ids < 1) | (ids > num_users)
        if bad.any():
            raise ValueError(f"given user relation: {name}[{int(np.argmax(bad))}] = {int(ids[bad][0])}; "
                             f"expected user ids in 1..{num_users}")
    return symmetric_edges(senders, receivers, weights, num_nodes=num_users + 1)


def _co_interaction(split: Split, window_s: int, max_pairs_per_item: int = 10_000, stats=None):
    log = split.log
    rows = training_rows(split)
    order = np.lexsort((log.timestamp[rows], log.item[rows]))
    items = log.item[rows][order].astype(np.int64)
    times = log.timestamp[rows][order].astype(np.int64)
    users = log.user[rows][order].astype(np.int64)
    n = len(items)
    if window_s < 0 or max_pairs_per_item < 0:
        raise ValueError(f"co_interaction: window_s = {window_s}, max_pairs_per_item = {max_pairs_per_item}; "
                         "expected both >= 0")
    if n == 0:
        return symmetric_edges([], [], num_nodes=log.num_users + 1)
    # end[e] = first event after e that is on another item or more than window_s later: events
    # e+1 .. end[e]-1 pair with e. A composite (item, time) key makes this one searchsorted.
    group = np.concatenate([[0], np.cumsum(items[1:] != items[:-1])])
    span = int(times.max() - times.min()) + int(window_s) + 1
    if (int(group[-1]) + 1) * span >= 2**62:
        raise ValueError(f"co_interaction: {group[-1] + 1} items x {span} s overflows the int64 sort key")
    key = group * span + (times - times.min())
    end = np.searchsorted(key, key + int(window_s), side="right")
    available = end - np.arange(n) - 1  # pairs (e, later) per event e, by increasing offset
    group_size = np.bincount(group)
    # Largest offset limit k per item with sum_e min(available_e, k) <= cap (binary search, all
    # items at once), then the first events with more pairs take one more pair each to fill the cap.
    low = np.zeros(len(group_size), dtype=np.int64)
    high = group_size.astype(np.int64)  # offsets never exceed the item's event count
    while np.any(low < high):
        middle = (low + high + 1) // 2
        fits = np.bincount(group, weights=np.minimum(available, middle[group]), minlength=len(low)) <= max_pairs_per_item
        low = np.where(fits, middle, low)
        high = np.where(fits, high, middle - 1)
    taken = np.minimum(available, low[group])
    room = max_pairs_per_item - np.bincount(group, weights=taken, minlength=len(low)).astype(np.int64)
    extra = available > taken
    extra_before = np.cumsum(extra) - extra  # events with pairs left before e, all items
    item_start = np.flatnonzero(np.concatenate([[True], group[1:] != group[:-1]]))
    extra &= (extra_before - extra_before[item_start][group]) < room[group]
    taken = taken + extra
    if stats is not None:
        stats["co_interaction_pairs"] = int(available.sum())
        stats["co_interaction_capped"] = int(available.sum() - taken.sum())
    first = np.repeat(np.arange(n), taken)
    offset = np.arange(len(first)) - np.repeat(np.cumsum(taken) - taken, taken) + 1
    return symmetric_edges(users[first], users[first + offset], num_nodes=log.num_users + 1)


def _region(split: Split, max_edges: int = 50_000_000, stats=None):
    log = split.log
    rows = training_rows(split)
    regions = log.region[rows].astype(np.int64)
    users = log.user[rows].astype(np.int64)
    known = regions > 0
    num_regions = len(log.region_vocab)
    counts = np.bincount(users[known] * num_regions + regions[known],
                         minlength=(log.num_users + 1) * num_regions).reshape(log.num_users + 1, num_regions)
    home = np.argmax(counts, axis=1)  # first maximum: ties go to the smaller code
    home[counts.max(axis=1) == 0] = 0
    members = np.flatnonzero(home > 0)
    members = members[np.argsort(home[members], kind="stable")]
    sizes = np.bincount(home[members], minlength=num_regions)
    num_edges = int((sizes * (sizes - 1)).sum())
    if num_edges > max_edges:
        raise ValueError(f"region user relation: {num_edges} edges exceed max_edges={max_edges}; "
                         "raise max_edges or use a finer region")
    # Every ordered pair within each region block: block b spans members[start_b : start_b + size_b].
    starts = np.cumsum(sizes) - sizes
    block_of = np.repeat(np.arange(num_regions), sizes)
    repeats = sizes[block_of]
    position = np.repeat(np.arange(len(members)), repeats)
    other = starts[block_of[position]] + np.arange(len(position)) - np.repeat(np.cumsum(repeats) - repeats, repeats)
    once = members[position] < members[other]  # symmetric_edges mirrors each pair
    return symmetric_edges(members[position][once], members[other][once], num_nodes=log.num_users + 1)


def mean_locations(users, latitudes, longitudes, num_users: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean location per user as the normalised mean of unit vectors (float64[num_users + 1] each).

    NaN for users without located events, and for users whose locations cancel out exactly.
    """
    latitudes = np.radians(np.asarray(latitudes, dtype=np.float64))
    longitudes = np.radians(np.asarray(longitudes, dtype=np.float64))
    known = np.isfinite(latitudes) & np.isfinite(longitudes)
    users = np.asarray(users, dtype=np.int64)[known]
    latitudes, longitudes = latitudes[known], longitudes[known]
    xyz = np.stack([np.cos(latitudes) * np.cos(longitudes), np.cos(latitudes) * np.sin(longitudes),
                    np.sin(latitudes)], axis=1)
    total = np.stack([np.bincount(users, weights=xyz[:, axis], minlength=num_users + 1) for axis in range(3)], 1)
    norm = np.linalg.norm(total, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        unit = total / norm[:, None]
    unit[norm < 1e-12] = np.nan
    return np.degrees(np.arcsin(np.clip(unit[:, 2], -1, 1))), np.degrees(np.arctan2(unit[:, 1], unit[:, 0]))


def _proximity(split: Split, radius_km: float, stats=None):
    log = split.log
    rows = training_rows(split)
    latitude, longitude = mean_locations(log.user[rows], log.latitude[rows], log.longitude[rows], log.num_users)
    senders, receivers, _ = place_graph(latitude, longitude, radius_km)
    return senders, receivers, np.ones(len(senders), dtype=np.float32)


def item_transition_graph(split: Split, self_loops: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Directed item -> next item edges from consecutive training events of each user.

    One edge per distinct (previous item, next item) pair; weight = how many times it occurs.
    `self_loops=False` drops repeats of the same item. Returns senders, receivers int32[E]
    (item ids) sorted by (sender, receiver) and weights float32[E].
    """
    log = split.log
    rows = training_rows(split)
    users, items = log.user[rows], log.item[rows].astype(np.int64)
    follows = np.flatnonzero(_same_user_as_previous(users))
    previous, following = items[follows - 1], items[follows]
    if not self_loops:
        keep = previous != following
        previous, following = previous[keep], following[keep]
    width = log.num_items + 1
    pairs, counts = np.unique(previous * width + following, return_counts=True)
    return (pairs // width).astype(np.int32), (pairs % width).astype(np.int32), counts.astype(np.float32)


def place_graph(latitudes, longitudes, radius_km: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of places within `radius_km` of each other (great-circle), both directions.

    latitudes, longitudes: float[P] degrees; places with NaN coordinates get no edges.
    Returns senders, receivers int32[E] (indices into the inputs, sorted by (sender, receiver), no
    self loops) and distance_km float32[E].

    Vectorised with a grid on unit vectors: two places within r are within the chord
    c = 2 sin(r / 2R) in 3-D, so each place only meets the places of its 27 neighbouring cubes of
    side >= c; the candidates are then filtered with the haversine distance. The loop runs over
    14 cube offsets (each unordered pair of cubes once), never over places. 200k places in a
    1 x 1 degree box at 0.5 km (3.3M edges) take about 2 s on 2 shared CPU cores.
    """
    latitudes = np.asarray(latitudes, dtype=np.float64)
    longitudes = np.asarray(longitudes, dtype=np.float64)
    if radius_km < 0:
        raise ValueError(f"place_graph: radius_km = {radius_km}; expected >= 0")
    index = np.flatnonzero(np.isfinite(latitudes) & np.isfinite(longitudes))
    empty = (np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32))
    if len(index) < 2:
        return empty
    lat, lon = np.radians(latitudes[index]), np.radians(longitudes[index])
    xyz = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)
    chord = 2 * np.sin(min(radius_km / (2 * EARTH_RADIUS_KM), np.pi / 2))
    extent = xyz.max(0) - xyz.min(0)
    # A slightly larger side keeps pairs at exactly r; a side of at least extent / 2^20 keeps the
    # cell key below 2^63.
    side = max(chord * (1 + 1e-6) + 1e-12, float(extent.max()) / 2**20)
    cell = np.floor((xyz - xyz.min(0)) / side).astype(np.int64) + 1  # 1.. so that cell - 1 >= 0
    shape = cell.max(0) + 2

    strides = np.asarray([shape[1] * shape[2], shape[2], 1])
    keys = cell @ strides  # injective: the +1 border keeps every neighbour inside the box
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    positions = np.arange(len(order))
    senders, receivers = [], []
    # Half of the 26 neighbouring offsets (the lexicographically positive ones) plus the cell
    # itself meet every unordered pair exactly once. Needles sorted_keys + shift are sorted too.
    for offset in itertools.product((-1, 0, 1), repeat=3):
        if offset < (0, 0, 0):
            continue
        needles = sorted_keys + int(np.dot(offset, strides))
        start = np.searchsorted(sorted_keys, needles, side="left")
        count = np.searchsorted(sorted_keys, needles, side="right") - start
        if offset == (0, 0, 0):  # within a cell: only the later places
            start, count = positions + 1, start + count - positions - 1
        place = np.repeat(positions, count)
        other = np.repeat(start - (np.cumsum(count) - count), count) + np.arange(len(place))
        senders.append(order[place])
        receivers.append(order[other])
    senders, receivers = np.concatenate(senders), np.concatenate(receivers)
    distance = haversine_km(latitudes[index[senders]], longitudes[index[senders]],
                            latitudes[index[receivers]], longitudes[index[receivers]])
    near = distance <= radius_km
    senders, receivers, distance = index[senders[near]], index[receivers[near]], distance[near]
    all_senders = np.concatenate([senders, receivers])
    all_receivers = np.concatenate([receivers, senders])
    order = np.argsort(all_senders * len(latitudes) + all_receivers)
    return (all_senders[order].astype(np.int32), all_receivers[order].astype(np.int32),
            np.concatenate([distance, distance])[order].astype(np.float32))
