"""The graph models' context (stjax.graphs.context, stjax.models.shared_graph) against references
written another way: per-query loops, brute-force neighbour rankings, haversine, hand-built graphs."""

import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import jraph
import numpy as np
import pytest
from hypothesis import example, given, settings

from stjax.data import TRAIN, make_split, preprocess
from stjax.data.errors import DataError
from stjax.data.geo import haversine_km
from stjax.data.synthetic import SyntheticConfig, generate
from stjax.graphs import sample_neighbours, temporal_csr
from stjax.graphs.context import (
    RelationReport,
    given_edges,
    item_geography,
    neighbour_table,
    recent_before,
    relation_edges,
    temporal_lists,
)
from stjax.layers import GAT, TemporalGraphAttention
from stjax.models.shared_graph import (
    DistancePrior,
    interval_buckets,
    star_graph,
    unit_vectors,
    window_graph,
)


@pytest.fixture(scope="module")
def split():
    log, _ = generate(5, SyntheticConfig(num_users=40, num_items=30, num_events=800, num_regions=3))
    return make_split(preprocess(log))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 6))
@example(seed=7333, k=1)  # a graph without any entry (once an out-of-range gather)
def test_recent_before_equals_a_per_query_loop_and_never_reaches_t(seed, k):
    rng = np.random.default_rng(seed)
    num_nodes, entries = int(rng.integers(1, 8)), int(rng.integers(0, 60))
    nodes = rng.integers(0, num_nodes, entries)
    times = rng.integers(0, 30, entries)  # many ties
    csr = temporal_csr(nodes, rng.integers(1, 99, entries), times, num_nodes)
    queries = rng.integers(0, num_nodes, 25)
    query_times = rng.integers(0, 32, 25)
    offsets = np.append(csr.offsets, csr.offsets[-1]).astype(np.int32)  # the N+2 layout of temporal_lists
    positions, mask = recent_before(offsets, csr.times.astype(np.int32), jnp.asarray(queries, jnp.int32),
                                    jnp.asarray(query_times, jnp.int32), k)
    positions, mask = np.asarray(positions), np.asarray(mask)
    for q, (node, t) in enumerate(zip(queries, query_times)):
        row = range(csr.offsets[node], csr.offsets[node + 1])
        before = [p for p in row if csr.times[p] < t]  # each row is sorted by time
        expected = before[-k:]
        got = positions[q][mask[q]].tolist()
        assert got == expected, (node, t)
        assert all(csr.times[p] < t for p in got)
        assert not mask[q][: k - len(expected)].any()  # real entries are right-aligned
    reference = sample_neighbours(csr, queries, query_times, k)
    assert (reference.mask.sum(1) == mask.sum(1)).all()


def test_neighbour_table_ranks_by_weight_then_id():
    senders = np.array([2, 3, 4, 5, 1, 3])
    receivers = np.array([1, 1, 1, 1, 2, 2])
    weights = np.array([1.0, 5.0, 5.0, 2.0, 1.0, 1.0])
    table = neighbour_table(senders, receivers, weights, num_users=5, k=3)
    assert table.shape == (6, 3)
    assert table[1].tolist() == [3, 4, 5]  # weight 5 (ties: smaller id), then 2
    assert table[2].tolist() == [1, 3, 0]
    assert not table[[0, 3, 4, 5]].any()
    brute = {}
    for s, r, w in zip(senders, receivers, weights):
        brute.setdefault(r, []).append((-w, s))
    for r, pairs in brute.items():
        assert table[r][: min(3, len(pairs))].tolist() == [s for _, s in sorted(pairs)[:3]]


def test_given_relation_maps_ids_and_counts_what_it_drops(split, tmp_path):
    tokens = split.log.user_vocab.tokens
    path = tmp_path / "trust.txt"
    path.write_text(f"{tokens[1]} {tokens[2]}\n{tokens[2]} {tokens[1]}\n{tokens[3]} {tokens[3]}\n"
                    f"{tokens[4]} nobody\n{tokens[5]} {tokens[6]}\n")
    report = RelationReport("given")
    senders, receivers, weights = given_edges(path, split.log.user_vocab, report)
    assert senders.tolist() == [1, 2, 5] and receivers.tolist() == [2, 1, 6]
    assert (report.listed, report.unknown_users, report.self_loops) == (5, 1, 1)
    s, r, w = relation_edges(split, "given", file=str(path), report=report)
    assert sorted(zip(s.tolist(), r.tolist())) == [(1, 2), (2, 1), (5, 6), (6, 5)]
    assert w.tolist() == [2.0, 2.0, 1.0, 1.0]  # (1, 2) was listed in both directions
    assert "dropped 1 pairs naming a user absent from the log and 1 self-loops" in report.describe()
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2\n3\n")
    with pytest.raises(DataError) as error:
        relation_edges(split, "given", file=str(bad))
    assert str(error.value) == f"{bad}:2: expected 2 fields, found 1"
    with pytest.raises(ValueError, match="needs model.relation_file"):
        relation_edges(split, "given")


def test_given_relation_reads_weights_and_runs_of_blanks(split, tmp_path):
    """Weights rank a user's neighbours (a pair listed twice sums them); fields may be separated by
    several spaces or tabs; bad weights and paths fail naming the file, line and field."""
    tokens = split.log.user_vocab.tokens
    path = tmp_path / "trust.tsv"
    path.write_text(f"  {tokens[1]}  \t {tokens[2]} 0.5\n{tokens[1]}\t{tokens[3]}\t4\n"
                    f"{tokens[2]} {tokens[1]}   2.5  \n{tokens[1]} {tokens[4]} 1\n")
    s, r, w = relation_edges(split, "given", file=str(path))
    assert dict(zip(zip(s.tolist(), r.tolist()), w.tolist())) == {
        (1, 2): 3.0, (2, 1): 3.0, (1, 3): 4.0, (3, 1): 4.0, (1, 4): 1.0, (4, 1): 1.0}
    assert neighbour_table(s, r, w, split.log.num_users, 3)[1].tolist() == [3, 2, 4]
    for text, message in ((f"{tokens[1]} {tokens[2]} 1\n{tokens[1]} {tokens[3]} -2\n",
                           "2: field 'weight': expected a positive weight, found -2"),
                          (f"{tokens[1]} {tokens[2]} 1\n{tokens[1]} {tokens[3]} x\n",
                           "2: field 'weight': expected a number, found 'x'"),
                          ("a b c d\n", "1: expected 2 or 3 fields (user user [weight]), found 4")):
        path.write_text(text)
        with pytest.raises(DataError) as error:
            relation_edges(split, "given", file=str(path))
        assert str(error.value) == f"{path}:{message}"
    with pytest.raises(DataError) as error:
        relation_edges(split, "given", file=str(tmp_path))
    assert str(error.value) == f"{tmp_path}: is a directory, expected a file"


def test_temporal_lists_hold_exactly_the_training_events(split):
    log = split.log
    train = split.part == TRAIN
    for by, keys, values in (("user", log.user, log.item), ("item", log.item, log.user)):
        lists = temporal_lists(split, by)
        offsets, stored, times = lists["offsets"], lists["values"], lists["times"]
        relative = log.timestamp - log.timestamp.min()
        for key in range(1, len(offsets) - 1):
            rows = np.flatnonzero(train & (keys == key))
            expected = sorted(zip(relative[rows].tolist(), values[rows].tolist()))
            got = list(zip(times[offsets[key]:offsets[key + 1]].tolist(), stored[offsets[key]:offsets[key + 1]].tolist()))
            assert sorted(got) == expected
            assert got == sorted(got, key=lambda pair: pair[0])
        held_out = set(zip(keys[~train].tolist(), values[~train].tolist(), relative[~train].tolist()))
        kept = {(key, v, t) for key in range(1, len(offsets) - 1)
                for v, t in zip(stored[offsets[key]:offsets[key + 1]].tolist(), times[offsets[key]:offsets[key + 1]].tolist())}
        assert not (held_out & kept)  # no validation or test event is ever a neighbour


def test_item_geography_is_the_mean_training_location(split):
    log = split.log
    geography = item_geography(split, rows=log.num_items + 3, resolution=5)
    assert geography["latitude"].shape == (log.num_items + 3,) and geography["cell"][0] == 0
    train = split.part == TRAIN
    for item in (1, 2, 7):
        rows = train & (log.item == item)
        assert geography["located"][item] == rows.any()
        if rows.any():  # items of the synthetic log sit at one place: the mean is that place
            assert abs(geography["latitude"][item] - log.latitude[rows].mean()) < 1e-3
    codes = geography["cell"][geography["located"]]
    assert codes.min() >= 1 and codes.max() == len(np.unique(codes))


def test_star_graph_attention_equals_gat_on_the_real_edges_only():
    rng = np.random.default_rng(0)
    Q, K, D = 4, 3, 8
    queries = jnp.asarray(rng.normal(size=(Q, D)), jnp.float32)
    neighbours = jnp.asarray(rng.normal(size=(Q, K, D)), jnp.float32)
    mask = jnp.asarray([[1, 1, 0], [0, 0, 0], [1, 0, 1], [1, 1, 1]], bool)
    layer = GAT(4, num_heads=2)
    graph = star_graph(queries, neighbours, mask)
    params = layer.init(jax.random.PRNGKey(0), graph)
    out, attention = layer.apply(params, graph)
    # The same queries on a graph listing only the real edges.
    senders, receivers = [], []
    for q in range(Q):
        for j in range(K):
            if mask[q, j]:
                senders.append(Q + q * K + j)
                receivers.append(q)
    nodes = jnp.concatenate([queries, neighbours.reshape(Q * K, D)])
    plain = jraph.GraphsTuple(nodes=nodes, edges=None, senders=jnp.asarray(senders), receivers=jnp.asarray(receivers),
                              n_node=jnp.asarray([Q + Q * K]), n_edge=jnp.asarray([len(senders)]), globals=None)
    reference, _ = layer.apply(params, plain)
    np.testing.assert_allclose(out.nodes[:Q], reference.nodes[:Q], rtol=1e-5, atol=1e-6)
    # Each query's attention (real neighbours + its self-loop) sums to 1: padding edges went elsewhere.
    real = np.asarray(attention[: Q * K]).reshape(Q, K, 2) * np.asarray(mask)[..., None]
    loops = np.asarray(attention[Q * K + np.arange(Q)])  # GAT appends one self-loop per node
    np.testing.assert_allclose(real.sum(1) + loops, 1.0, rtol=1e-5)


@pytest.mark.parametrize("extra", [0, 5])
def test_window_graph_equals_the_star_graph_of_copied_neighbours(extra):
    """Neighbours that are query nodes themselves (extra = 0: a row's earlier positions) or rows
    of a table after the queries (extra = 5: tgat's users): indexing them gives TGAT's attention
    the same outputs and weights as a star graph of copies."""
    rng = np.random.default_rng(2)
    Q, S, D = 6, 4, 8
    nodes = jnp.asarray(rng.normal(size=(Q + extra, D)), jnp.float32)
    sources = jnp.asarray(rng.integers(0, Q + extra, size=(Q, S)), jnp.int32)
    mask = jnp.asarray(rng.random((Q, S)) < 0.7).at[1].set(False)  # query 1 has no neighbour
    ages = jnp.asarray(rng.uniform(0, 1e6, size=Q * S), jnp.float32)
    layer = TemporalGraphAttention(D, num_heads=2, time_features=4)
    star = star_graph(nodes[:Q], nodes[sources], mask)
    params = layer.init(jax.random.PRNGKey(0), star, ages)
    expected, expected_attention = layer.apply(params, star, ages)
    graph = window_graph(nodes, sources, mask)
    assert graph.nodes.shape == (Q + extra + 1, D)
    out, attention = layer.apply(params, graph, ages)
    np.testing.assert_allclose(out.nodes[:Q], expected.nodes[:Q], rtol=1e-5, atol=1e-6)
    real = np.asarray(mask).reshape(-1)
    np.testing.assert_allclose(np.asarray(attention)[real], np.asarray(expected_attention)[real], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(attention).reshape(Q, S, 2)[np.asarray(mask)].sum() / 2,
                               np.asarray(mask).any(1).sum(), rtol=1e-5)  # each query with neighbours sums to 1


def test_distance_prior_is_a_log_distance_term():
    rng = np.random.default_rng(1)
    lat, lon = rng.uniform(40.5, 41.0, 50), rng.uniform(-74.2, -73.7, 50)
    places = unit_vectors(jnp.asarray(lat, jnp.float32), jnp.asarray(lon, jnp.float32))
    known = jnp.asarray(rng.random(50) > 0.1)
    prior = DistancePrior()
    params = {"params": {"log_distance_weight": jnp.asarray(-0.7)}}
    bias = np.asarray(prior.apply(params, places[:5], known[:5], places, known))
    expected = -0.7 * np.log1p(haversine_km(lat[:5, None], lon[:5, None], lat[None], lon[None]))
    both = np.asarray(known[:5])[:, None] & np.asarray(known)[None]
    np.testing.assert_allclose(bias[both], expected[both], rtol=2e-3, atol=2e-3)
    assert (bias[~both] == 0).all()


def test_interval_buckets_are_log2_minutes():
    times = jnp.asarray([[0, 0, 100, 160, 160 + 3600 * 24]], jnp.int32)
    buckets = np.asarray(interval_buckets(times))[0]
    assert buckets[2:].tolist() == [1 + int(np.floor(np.log2(1 + 100 / 60))), 1 + 1, 1 + int(np.log2(1 + 24 * 60))]


def test_social_lightgcn_reads_a_given_trust_file(tmp_path):
    """LightGCN's social variant reads a given trust list: its graph holds the trust pairs."""
    from stjax.config import base_config, tiny
    from stjax.train.loop import build_run
    from tests.test_lightgcn import graph_edges

    config = tiny(base_config("lightgcn"))
    log, truth = generate(0, SyntheticConfig(num_users=64, num_items=50, num_events=3000))
    path = tmp_path / "trust.txt"
    tokens = log.user_vocab.tokens
    path.write_text("".join(f"{tokens[s]}\t{tokens[r]}\n" for s, r in zip(truth.influence_senders,
                                                                             truth.influence_receivers)))
    with config.unlocked():
        config.model.relation = "given"
        config.model.relation_file = str(path)
    run = build_run(config, log=lambda m: None)
    users = run.info.num_users
    senders, receivers = graph_edges({key: np.asarray(value) for key, value in run.context.items()}, users)
    social = {(s, r) for s, r in zip(senders.tolist(), receivers.tolist()) if s <= users and r <= users}
    index = run.prepared.log.user_vocab.index
    planted = {(index[tokens[s]], index[tokens[r]]) for s, r in zip(truth.influence_senders, truth.influence_receivers)}
    assert social == planted | {(r, s) for s, r in planted}
