"""Graph builders, temporal sampling and bucket padding against brute-force references.

Every builder is compared with a Python loop over events or pairs written from its docstring;
leakage is checked edge by edge against the split; sampling is exact against a per-query loop;
padding is checked by counting jit compiles.
"""

from collections import Counter, defaultdict

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import jraph
import numpy as np
import pytest
from hypothesis import given, settings

from stjax.compiles import CompileCounter
from stjax.data import TEST, TRAIN, VALID, make_log, make_split, preprocess
from stjax.data.geo import haversine_km
from stjax.data.synthetic import SyntheticConfig, generate
from stjax.graphs import (
    InteractionGraph,
    geometric_buckets,
    graphs_tuple,
    interaction_graph,
    item_node,
    item_transition_graph,
    normalized_adjacency,
    pad_to_bucket,
    place_graph,
    sample_neighbours,
    temporal_adjacency,
    temporal_csr,
    user_relation_graph,
)
from stjax.layers import GAT, lightgcn_propagate


@pytest.fixture(scope="module")
def synthetic():
    log, truth = generate(3, SyntheticConfig(num_users=45, num_items=31, num_events=900, num_regions=3))
    return preprocess(log), truth


@pytest.fixture(scope="module")
def split(synthetic):
    return make_split(synthetic[0])


def small_log():
    """A hand-made log: ties in time, repeats, missing coordinates, regions with ties."""
    rows = [  # user, item, time, lat, lon, region
        ("a", "x", 10, 40.0, -74.0, "r1"), ("a", "y", 20, 40.01, -74.0, "r1"), ("a", "x", 30, np.nan, np.nan, "r2"),
        ("a", "z", 40, 40.02, -74.01, "r2"), ("a", "y", 50, 40.0, -74.0, "r1"),
        ("b", "x", 12, 40.0, -74.001, "r2"), ("b", "y", 12, 40.001, -74.0, "r1"), ("b", "w", 25, 41.0, -75.0, "r1"),
        ("b", "x", 60, 40.0, -74.0, "r2"),
        ("c", "x", 15, 48.85, 2.35, "r3"), ("c", "z", 45, 48.86, 2.34, "r3"), ("c", "w", 70, 48.85, 2.35, ""),
        ("c", "y", 80, 48.85, 2.36, "r3"),
        ("d", "w", 26, 40.0, -74.0, "r1"), ("d", "x", 33, 40.0, -74.0, "r1"), ("d", "x", 90, 40.0, -74.0, "r1"),
        ("e", "y", 5, np.nan, np.nan, ""), ("e", "z", 41, np.nan, np.nan, ""), ("e", "y", 95, np.nan, np.nan, ""),
    ]
    user, item, time, lat, lon, region = map(list, zip(*rows))
    return preprocess(make_log(user, item, time, latitude=lat, longitude=lon, region=region,
                               behaviour=["view", "click"] * 9 + ["view"]))


def train_events(split):
    """(user, item, time, behaviour, lat, lon, region) per training event, in log order."""
    log = split.log
    return [(int(log.user[e]), int(log.item[e]), int(log.timestamp[e]), int(log.behaviour[e]),
             float(log.latitude[e]), float(log.longitude[e]), int(log.region[e]))
            for e in range(len(log)) if split.part[e] == TRAIN]


def edge_set(senders, receivers, weights=None):
    weights = np.ones(len(senders)) if weights is None else weights
    return {(int(s), int(r)): float(w) for s, r, w in zip(senders, receivers, weights)}


def assert_symmetric_simple(senders, receivers, weights):
    assert senders.dtype == np.int32 and receivers.dtype == np.int32 and weights.dtype == np.float32
    pairs = list(zip(senders.tolist(), receivers.tolist()))
    assert len(pairs) == len(set(pairs)), "duplicate edges"
    assert all(s != r for s, r in pairs), "self loop"
    lookup = edge_set(senders, receivers, weights)
    assert all(lookup.get((r, s)) == w for (s, r), w in lookup.items()), "not symmetric"
    assert pairs == sorted(pairs)


# --- interaction graph and leakage -----------------------------------------------------------


@pytest.mark.parametrize("method,kwargs", [("leave_one_out", {}), ("temporal", {}),
                                           ("held_out_users", {"valid_fraction": 0.2, "test_fraction": 0.2})])
def test_interaction_graph_has_training_events_only(synthetic, method, kwargs):
    split = make_split(synthetic[0], method, **kwargs)
    graph = interaction_graph(split)
    assert (split.part != TRAIN).any() and (split.part == TRAIN).any()
    # Each edge is matched to a distinct training event; none can come from validation or test.
    unused = Counter((u, i, t, b) for u, i, t, b, *_ in train_events(split))
    for edge in zip(graph.users.tolist(), graph.items.tolist(), graph.timestamps.tolist(), graph.behaviour.tolist()):
        assert unused[edge] > 0, f"edge {edge} is not an unused training event"
        unused[edge] -= 1
    assert sum(unused.values()) == 0
    # Per user, no edge is as late as that user's first held-out event (the splits hold out a
    # suffix of each history, or whole users).
    first_held_out = {}
    for u, t, p in zip(split.log.user.tolist(), split.log.timestamp.tolist(), split.part.tolist()):
        if p != TRAIN:
            first_held_out[u] = min(t, first_held_out.get(u, t))
    for u, t in zip(graph.users.tolist(), graph.timestamps.tolist()):
        assert t <= first_held_out.get(u, t)
    if method == "temporal":
        assert graph.timestamps.max() < split.valid_start
    if method == "held_out_users":
        assert not set(graph.users.tolist()) & (set(split.users_in(VALID).tolist()) | set(split.users_in(TEST).tolist()))
    assert np.all(np.diff(graph.timestamps) >= 0)
    assert (graph.users.dtype, graph.items.dtype, graph.timestamps.dtype, graph.behaviour.dtype,
            graph.distance_km.dtype) == (np.int32, np.int32, np.int64, np.int8, np.float32)
    assert (graph.num_users, graph.num_items) == (split.log.num_users, split.log.num_items)


def test_interaction_graph_distances_equal_loop():
    split = make_split(small_log())
    graph = interaction_graph(split)
    expected = {}
    previous = {}
    for u, i, t, b, lat, lon, _ in train_events(split):
        key = (u, i, t, b)
        if u in previous:
            plat, plon = previous[u]
            distance = haversine_km(plat, plon, lat, lon) if np.isfinite([plat, plon, lat, lon]).all() else np.nan
        else:
            distance = np.nan
        expected[key] = float(distance)
        previous[u] = (lat, lon)
    assert len(expected) == len(graph.users)  # keys are unique in this log
    for u, i, t, b, d in zip(graph.users, graph.items, graph.timestamps, graph.behaviour, graph.distance_km):
        np.testing.assert_allclose(d, expected[(int(u), int(i), int(t), int(b))], rtol=1e-6, atol=1e-6)
    assert np.isnan(graph.distance_km).sum() == sum(np.isnan(list(expected.values())))
    assert np.isfinite(graph.distance_km).any()


# --- normalised adjacency --------------------------------------------------------------------


def dense_normalized(graph, num_users, num_items):
    n = num_users + num_items + 2
    adjacency = np.zeros((n, n))
    for u, i in zip(graph.users, graph.items):
        adjacency[u, num_users + 1 + i] = adjacency[num_users + 1 + i, u] = 1.0
    degree = adjacency.sum(1)
    inverse = np.zeros(n)
    inverse[degree > 0] = degree[degree > 0] ** -0.5
    return inverse[:, None] * adjacency * inverse[None, :]


@pytest.mark.parametrize("which", ["small", "synthetic"])
def test_normalized_adjacency_equals_dense(split, which):
    if which == "small":
        split = make_split(small_log())
    graph = interaction_graph(split)
    U, num_items = graph.num_users, graph.num_items
    senders, receivers, weights = normalized_adjacency(graph, U, num_items)
    assert senders.dtype == receivers.dtype == np.int32 and weights.dtype == np.float32
    pairs = list(zip(senders.tolist(), receivers.tolist()))
    assert len(pairs) == len(set(pairs))
    rebuilt = np.zeros((U + num_items + 2, U + num_items + 2))
    rebuilt[receivers, senders] = weights
    expected = dense_normalized(graph, U, num_items)
    np.testing.assert_allclose(rebuilt, expected, rtol=1e-6)
    np.testing.assert_allclose(rebuilt, rebuilt.T)
    for padding in (0, item_node(0, U)):
        assert padding not in senders and padding not in receivers
    # The same operator as the LightGCN layer's own normalisation of these edges.
    embeddings = np.random.default_rng(0).normal(size=(U + num_items + 2, 5))
    _, layers = lightgcn_propagate(jnp.asarray(embeddings, jnp.float32), senders, receivers, 1)
    np.testing.assert_allclose(layers[1], expected @ embeddings, atol=1e-5)


def test_normalized_adjacency_counts_repeats_once():
    graph = InteractionGraph(2, 2, np.asarray([1, 1, 1, 2], np.int32), np.asarray([1, 1, 2, 2], np.int32),
                             np.arange(4, dtype=np.int64), np.ones(4, np.int8), np.full(4, np.nan, np.float32))
    senders, receivers, weights = normalized_adjacency(graph, 2, 2)
    lookup = edge_set(senders, receivers, weights)
    # user 1: items 1, 2 (deg 2); user 2: item 2 (deg 1); item 1 (node 4): deg 1; item 2 (node 5): deg 2.
    np.testing.assert_allclose(lookup[(1, 4)], 1 / np.sqrt(2 * 1))
    np.testing.assert_allclose(lookup[(1, 5)], 1 / np.sqrt(2 * 2))
    np.testing.assert_allclose(lookup[(2, 5)], 1 / np.sqrt(1 * 2))
    assert len(lookup) == 6


# --- user relations --------------------------------------------------------------------------


def test_given_relation(split, synthetic):
    truth = synthetic[1]
    # A self loop and a repeated pair on top of the planted influence edges.
    senders = np.concatenate([truth.influence_senders, [3, truth.influence_senders[0]]])
    receivers = np.concatenate([truth.influence_receivers, [3, truth.influence_receivers[0]]])
    s, r, w = user_relation_graph(split, "given", senders=senders, receivers=receivers)
    assert_symmetric_simple(s, r, w)
    expected = Counter()
    for a, b in zip(senders.tolist(), receivers.tolist()):
        if a != b:
            expected[(a, b)] += 1
            expected[(b, a)] += 1
    assert edge_set(s, r, w) == {k: float(v) for k, v in expected.items()}
    with pytest.raises(ValueError, match="expected user ids in 1.."):
        user_relation_graph(split, "given", senders=[0], receivers=[1])


def brute_co_interaction(split, window_s, cap):
    """Pairs of training events per item, nearest later events first, cut at `cap` per item."""
    events = sorted(((i, t, u) for u, i, t, *_ in train_events(split)), key=lambda e: (e[0], e[1]))
    by_item = defaultdict(list)
    for item, time, user in events:
        by_item[item].append((time, user))
    counts, found, kept = Counter(), 0, 0
    for item_events in by_item.values():
        pairs = []
        for a in range(len(item_events)):
            for b in range(a + 1, len(item_events)):
                if item_events[b][0] - item_events[a][0] <= window_s:
                    pairs.append((b - a, a, b))
        pairs.sort()
        found += len(pairs)
        for _, a, b in pairs[:cap]:
            kept += 1
            u, v = item_events[a][1], item_events[b][1]
            if u != v:
                counts[(u, v)] += 1
                counts[(v, u)] += 1
    return {k: float(v) for k, v in counts.items()}, found, found - kept


@pytest.mark.parametrize("window_s,cap", [(0, 10**9), (86_400 * 3, 10**9), (86_400 * 20, 7), (86_400 * 60, 0),
                                          (10**12, 5)])
def test_co_interaction_equals_brute_force(split, window_s, cap):
    stats = {}
    s, r, w = user_relation_graph(split, "co_interaction", stats=stats, window_s=window_s, max_pairs_per_item=cap)
    assert_symmetric_simple(s, r, w)
    expected, found, capped = brute_co_interaction(split, window_s, cap)
    assert edge_set(s, r, w) == expected
    assert stats == {"co_interaction_pairs": found, "co_interaction_capped": capped}
    if cap == 7:
        assert capped > 0 and len(expected) > 0


def test_co_interaction_on_small_log():
    split = make_split(small_log())
    s, r, w = user_relation_graph(split, "co_interaction", window_s=5)
    assert edge_set(s, r, w) == brute_co_interaction(split, 5, 10**9)[0]
    assert len(s) > 0


def test_region_relation_equals_brute_force(split):
    for current in (split, make_split(small_log())):
        s, r, w = user_relation_graph(current, "region")
        assert_symmetric_simple(s, r, w)
        counts = defaultdict(Counter)
        for u, *_, region in train_events(current):
            if region > 0:
                counts[u][region] += 1
        home = {u: min(c, key=lambda region, c=c: (-c[region], region)) for u, c in counts.items()}
        expected = {(a, b): 1.0 for a in home for b in home if a != b and home[a] == home[b]}
        assert edge_set(s, r, w) == expected
    with pytest.raises(ValueError, match="exceed max_edges"):
        user_relation_graph(split, "region", max_edges=3)


def test_proximity_relation_equals_brute_force(split):
    for current, radius in ((split, 40.0), (make_split(small_log()), 5.0)):
        s, r, w = user_relation_graph(current, "proximity", radius_km=radius)
        assert_symmetric_simple(s, r, w)
        vectors = defaultdict(list)
        for u, _, _, _, lat, lon, _ in train_events(current):
            if np.isfinite(lat) and np.isfinite(lon):
                la, lo = np.radians(lat), np.radians(lon)
                vectors[u].append([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])
        centre = {}
        for u, rows in vectors.items():
            x, y, z = np.mean(rows, axis=0)
            centre[u] = (np.degrees(np.arctan2(z, np.hypot(x, y))), np.degrees(np.arctan2(y, x)))
        expected = {(a, b): 1.0 for a in centre for b in centre
                    if a != b and haversine_km(*centre[a], *centre[b]) <= radius}
        assert edge_set(s, r, w) == expected
        assert len(expected) > 0


def test_user_relation_errors(split):
    with pytest.raises(ValueError, match="unknown user relation 'social'"):
        user_relation_graph(split, "social")
    with pytest.raises(TypeError, match="its parameters are radius_km"):
        user_relation_graph(split, "proximity", radius=3)


# --- item transitions and places -------------------------------------------------------------


@pytest.mark.parametrize("self_loops", [True, False])
def test_item_transitions_equal_loop(split, self_loops):
    for current in (split, make_split(small_log())):
        s, r, w = item_transition_graph(current, self_loops=self_loops)
        expected = Counter()
        previous = {}
        for u, i, *_ in train_events(current):
            if u in previous and (self_loops or previous[u] != i):
                expected[(previous[u], i)] += 1
            previous[u] = i
        assert edge_set(s, r, w) == {k: float(v) for k, v in expected.items()}
        assert list(zip(s.tolist(), r.tolist())) == sorted(expected)


def brute_places(lat, lon, radius):
    expected = {}
    for a in range(len(lat)):
        for b in range(len(lat)):
            if a != b and np.isfinite([lat[a], lon[a], lat[b], lon[b]]).all():
                d = float(haversine_km(lat[a], lon[a], lat[b], lon[b]))
                if d <= radius:
                    expected[(a, b)] = d
    return expected


@pytest.mark.parametrize("seed,radius", [(0, 0.0), (1, 1.0), (2, 25.0), (3, 300.0), (4, 20_000.0)])
def test_place_graph_equals_brute_force(seed, radius):
    rng = np.random.default_rng(seed)
    # Clusters (a city, the antimeridian, a pole) plus scattered places, exact duplicates and NaNs.
    centres = np.asarray([[40.7, -74.0], [-17.8, 179.99], [89.99, 0.0], [0.0, 0.0]])
    which = rng.integers(0, len(centres), 150)
    lat = np.clip(centres[which, 0] + rng.normal(0, 0.05, 150), -90, 90)
    lon = (centres[which, 1] + rng.normal(0, 0.05, 150) + 180) % 360 - 180
    lat = np.concatenate([lat, rng.uniform(-90, 90, 40), lat[:5], [np.nan, 10.0]])
    lon = np.concatenate([lon, rng.uniform(-180, 180, 40), lon[:5], [3.0, np.nan]])
    s, r, d = place_graph(lat, lon, radius)
    assert_symmetric_simple(s, r, np.ones(len(s), np.float32))
    expected = brute_places(lat, lon, radius)
    assert set(zip(s.tolist(), r.tolist())) == set(expected)
    np.testing.assert_allclose(d, [expected[(a, b)] for a, b in zip(s.tolist(), r.tolist())], rtol=1e-6, atol=1e-6)
    assert len(expected) > 0  # at least the exact duplicates


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(-90, 90), st.floats(-180, 180)), min_size=0, max_size=25),
       st.floats(0.0, 5000.0))
def test_place_graph_property(points, radius):
    lat = np.asarray([p[0] for p in points], dtype=np.float64)
    lon = np.asarray([p[1] for p in points], dtype=np.float64)
    s, r, d = place_graph(lat, lon, radius)
    expected = brute_places(lat, lon, radius)
    assert set(zip(s.tolist(), r.tolist())) == set(expected)


# --- temporal neighbour sampling -------------------------------------------------------------


def brute_neighbours(nodes, neighbours, times, queries, query_times, k, num_nodes):
    """Per query: all entries of its node strictly before t, in (time, entry order)."""
    rows = []
    for q, t in zip(queries, query_times):
        before = [(times[m], m) for m in range(len(nodes)) if nodes[m] == q and times[m] < t]
        before.sort()
        rows.append([(int(neighbours[m]), int(times[m]), m) for _, m in before])
    return rows


def check_recent(result, reference, k):
    for row, expected in enumerate(reference):
        latest = expected[-k:] if expected else []
        count = len(latest)
        assert result.mask[row].tolist() == [True] * count + [False] * (k - count)
        assert result.neighbours[row, :count].tolist() == [n for n, _, _ in latest]
        assert result.edge_times[row, :count].tolist() == [t for _, t, _ in latest]
        assert result.edge_ids[row, :count].tolist() == [m for _, _, m in latest]
        assert not result.neighbours[row, count:].any() and not result.edge_times[row, count:].any()
        assert (result.edge_ids[row, count:] == -1).all()


def random_temporal_entries(rng, num_nodes, num_entries, time_range):
    nodes = rng.integers(0, num_nodes, num_entries)
    neighbours = rng.integers(0, num_nodes, num_entries)
    times = rng.integers(0, time_range, num_entries)  # small range: many ties
    return nodes, neighbours, times


@pytest.mark.parametrize("k", [1, 3, 8])
def test_recent_neighbours_equal_brute_force(k):
    rng = np.random.default_rng(k)
    nodes, neighbours, times = random_temporal_entries(rng, 9, 120, 30)
    adjacency = temporal_csr(nodes, neighbours, times, 9)
    queries, query_times = rng.integers(0, 9, 200), rng.integers(-2, 34, 200)
    result = sample_neighbours(adjacency, queries, query_times, k)
    assert result.neighbours.shape == (200, k) and result.neighbours.dtype == np.int32
    assert result.edge_times.dtype == np.int64 and result.mask.dtype == bool
    check_recent(result, brute_neighbours(nodes, neighbours, times, queries, query_times, k, 9), k)


def test_recent_neighbours_without_composite_key():
    """Times spanning ~2^61 s overflow the (node, time) key: the binary-search path must agree."""
    rng = np.random.default_rng(7)
    nodes, neighbours, _ = random_temporal_entries(rng, 5, 80, 1)
    times = rng.integers(-2**61, 2**61, 80)
    times[:10] = times[10:20]  # ties
    adjacency = temporal_csr(nodes, neighbours, times, 5)
    queries = rng.integers(0, 5, 60)
    query_times = np.concatenate([times[rng.integers(0, 80, 40)], rng.integers(-2**62, 2**62, 20)])
    result = sample_neighbours(adjacency, queries, query_times, 4)
    check_recent(result, brute_neighbours(nodes, neighbours, times, queries, query_times, 4, 5), 4)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(0, 40), st.integers(1, 50), st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_sampling_property(num_nodes, num_entries, time_range, k, seed):
    rng = np.random.default_rng(seed)
    nodes, neighbours, times = random_temporal_entries(rng, num_nodes, num_entries, time_range)
    adjacency = temporal_csr(nodes, neighbours, times, num_nodes)
    queries, query_times = rng.integers(0, num_nodes, 15), rng.integers(-1, time_range + 2, 15)
    reference = brute_neighbours(nodes, neighbours, times, queries, query_times, k, num_nodes)
    recent = sample_neighbours(adjacency, queries, query_times, k)
    uniform = sample_neighbours(adjacency, queries, query_times, k, "uniform", np.random.default_rng(seed))
    for result in (recent, uniform):
        # Nothing at or after the query time; the right number of real entries.
        assert np.all(np.where(result.mask, result.edge_times < query_times[:, None], True))
        assert result.mask.sum(1).tolist() == [min(k, len(expected)) for expected in reference]
        for row, expected in enumerate(reference):
            ids = result.edge_ids[row][result.mask[row]].tolist()
            assert len(set(ids)) == len(ids) and set(ids) <= {m for _, _, m in expected}
            assert np.all(np.diff(result.edge_times[row][result.mask[row]]) >= 0)
    check_recent(recent, reference, k)  # exactly the k latest


def test_uniform_neighbours_are_uniform_subsets():
    times = np.asarray([5, 1, 3, 2, 4, 9, 6])  # entries of node 0; 6 of them before t = 7
    adjacency = temporal_csr(np.zeros(7, int), np.arange(7) + 1, times, 1)
    queries = np.zeros(30_000, int)
    result = sample_neighbours(adjacency, queries, np.full(30_000, 7), 2, "uniform", np.random.default_rng(0))
    assert result.mask.all()
    subsets = Counter(tuple(sorted(row)) for row in result.edge_ids.tolist())
    assert set(subsets) == {(a, b) for a in range(7) for b in range(a + 1, 7) if a != 5 and b != 5}
    frequencies = np.asarray(list(subsets.values())) / 30_000
    np.testing.assert_allclose(frequencies, 1 / 15, atol=0.006)  # about 4 standard deviations
    again = sample_neighbours(adjacency, queries, np.full(30_000, 7), 2, "uniform", np.random.default_rng(0))
    np.testing.assert_array_equal(again.edge_ids, result.edge_ids)
    with pytest.raises(ValueError, match="needs rng"):
        sample_neighbours(adjacency, queries[:2], np.full(2, 7), 2, "uniform")


def test_sampling_on_interaction_graph(split):
    graph = interaction_graph(split)
    U = graph.num_users
    adjacency = temporal_adjacency(graph)
    assert adjacency.num_nodes == U + graph.num_items + 2
    # The reference works from the graph's edges directly, both directions.
    nodes = np.concatenate([graph.users, item_node(graph.items, U)])
    neighbours = np.concatenate([item_node(graph.items, U), graph.users])
    times = np.concatenate([graph.timestamps, graph.timestamps])
    rng = np.random.default_rng(0)
    pick = rng.integers(0, len(graph.users), 40)
    queries = np.concatenate([graph.users[pick], item_node(graph.items[pick], U)])
    query_times = np.concatenate([graph.timestamps[pick], graph.timestamps[pick] + 1])
    result = sample_neighbours(graph, queries, query_times, 5)
    reference = brute_neighbours(nodes, neighbours, times, queries, query_times, 5, adjacency.num_nodes)
    for rows in reference:  # entry m of the reference is edge m % E
        rows[:] = [(n, t, m % len(graph.users)) for n, t, m in rows]
    check_recent(result, reference, 5)
    # edge_ids gather edge features of the sampled neighbours.
    real = result.mask
    np.testing.assert_array_equal(graph.timestamps[result.edge_ids[real]], result.edge_times[real])


def test_sampling_errors():
    adjacency = temporal_csr([0, 1], [1, 0], [3, 4], 2)
    with pytest.raises(ValueError, match="unknown strategy"):
        sample_neighbours(adjacency, [0], [5], 2, "oldest")
    with pytest.raises(ValueError, match="expected 0..1"):
        sample_neighbours(adjacency, [2], [5], 2)
    empty = temporal_csr([], [], [], 3)
    result = sample_neighbours(empty, [0, 2], [5, 9], 2)
    assert not result.mask.any() and (result.edge_ids == -1).all()


# --- padding to buckets ----------------------------------------------------------------------


@pytest.mark.slow  # 35-65 s each on 2 cores; `make test-slow` (issue 26: the suite under 20 min)
def test_pad_to_bucket_bounds_compiles():
    node_buckets, edge_buckets = (8, 16, 32), (16, 48, 96)
    layer = GAT(features=4, num_heads=2)
    rng = np.random.default_rng(0)

    def random_graph(num_nodes, num_edges):
        return graphs_tuple(rng.integers(0, num_nodes, num_edges), rng.integers(0, num_nodes, num_edges),
                            rng.normal(size=(num_nodes, 3)).astype(np.float32),
                            edges=rng.normal(size=(num_edges, 2)).astype(np.float32))

    params = layer.init(jax.random.key(0), random_graph(5, 7))

    def readout(params, graph):
        out, _ = layer.apply(params, graph)
        mask = jraph.get_node_padding_mask(graph)
        graph_index = jnp.repeat(jnp.arange(len(graph.n_node)), graph.n_node, total_repeat_length=out.nodes.shape[0])
        per_graph = jax.ops.segment_sum(jnp.where(mask[:, None], out.nodes, 0.0), graph_index, len(graph.n_node))
        return per_graph[0], out.nodes

    compiles = CompileCounter()
    jitted = jax.jit(readout)
    shapes = set()
    for _ in range(40):
        num_nodes, num_edges = int(rng.integers(1, 32)), int(rng.integers(0, 97))
        graph = random_graph(num_nodes, num_edges)
        padded = pad_to_bucket(graph, node_buckets, edge_buckets)
        assert padded.nodes.shape[0] in node_buckets and padded.senders.shape[0] in edge_buckets
        shapes.add((padded.nodes.shape[0], padded.senders.shape[0]))
        summed, nodes = jitted(params, padded)
        reference, _ = layer.apply(params, graph)
        np.testing.assert_allclose(nodes[:num_nodes], reference.nodes, atol=1e-5)
        np.testing.assert_allclose(summed, reference.nodes.sum(0), atol=1e-4)
    assert compiles.count(jitted) == len(shapes) <= len(node_buckets) * len(edge_buckets)
    with pytest.raises(ValueError, match="the graph needs 40 nodes"):
        pad_to_bucket(random_graph(39, 3), node_buckets, edge_buckets)


def test_pad_to_bucket_batches_and_graph_buckets():
    rng = np.random.default_rng(1)
    graphs = [graphs_tuple(rng.integers(0, n, 2 * n), rng.integers(0, n, 2 * n), np.ones((n, 2), np.float32))
              for n in (3, 5, 2)]
    batch = jraph.batch_np(graphs)
    padded = pad_to_bucket(batch, (16, 32), (32,), graph_buckets=(4, 8))
    assert padded.n_node.tolist() == [3, 5, 2, 6] and padded.n_edge.tolist() == [6, 10, 4, 12]
    assert jraph.get_graph_padding_mask(padded).tolist() == [True, True, True, False]
    assert geometric_buckets(16, 1000, 5) == (16, 45, 127, 356, 1000)
    assert geometric_buckets(4, 4, 3) == (4,)


@pytest.mark.parametrize("centre,radius", [((40.7, -74.0), 1.0), ((-33.9, 151.2), 0.3), ((64.1, -21.9), 2.0), ((35.7, 139.7), 1.0), ((-23.5, -46.6), 1.0)])
def test_place_graph_dense_box_equals_vectorised_brute_force(centre, radius):
    """Thousands of places over a few cells per axis: pairs across every kind of neighbouring cell."""
    rng = np.random.default_rng(int(radius * 10))
    span = 12 * radius / 111.0
    lat = centre[0] + rng.uniform(0, span, 2500)
    lon = centre[1] + rng.uniform(0, span / np.cos(np.radians(centre[0])), 2500)
    s, r, d = place_graph(lat, lon, radius)
    distance = haversine_km(lat[:, None], lon[:, None], lat[None, :], lon[None, :])  # [P, P]
    expected = (distance <= radius) & ~np.eye(len(lat), dtype=bool)
    found = np.zeros_like(expected)
    found[s, r] = True
    np.testing.assert_array_equal(found, expected)
    np.testing.assert_allclose(d, distance[s, r], rtol=1e-6)


@pytest.mark.slow
def test_sampling_at_ml1m_scale_equals_brute_force_on_a_sample():
    """Every event of an ML-1M-sized log (Zipf-skewed users and items, ML-1M's time span) queried
    at once, k = 20: a random sample of the queries checked against brute force (its speed is a
    benchmark, scripts/bench_graphs.py, not a test)."""
    rng = np.random.default_rng(0)
    num_users, num_items, num_edges, k = 6040, 3706, 1_000_209, 20
    users = (rng.zipf(1.3, num_edges) % num_users + 1).astype(np.int64)
    items = (rng.zipf(1.2, num_edges) % num_items + 1).astype(np.int64)
    times = np.sort(rng.integers(956_703_932, 1_046_454_590, num_edges))
    adjacency = temporal_csr(users, items, times, num_users + 1)
    recent = sample_neighbours(adjacency, users, times, k)
    uniform = sample_neighbours(adjacency, users, times, k, "uniform", np.random.default_rng(1))
    assert recent.mask.shape == uniform.mask.shape == (num_edges, k)
    for row in rng.choice(num_edges, 300, replace=False):
        before = np.flatnonzero((users == users[row]) & (times < times[row]))
        before = before[np.lexsort((before, times[before]))]  # by (time, entry order)
        check_recent(_rows(recent, [row]), [[(int(items[m]), int(times[m]), int(m)) for m in before]], k)
        count = min(k, len(before))
        chosen = uniform.edge_ids[row][uniform.mask[row]]
        assert len(chosen) == count and len(set(chosen.tolist())) == count and set(chosen.tolist()) <= set(before.tolist())


def _rows(result, rows):
    """The sampled rows `rows` of a TemporalNeighbours (for check_recent)."""
    return type(result)(*(field[rows] for field in result))
