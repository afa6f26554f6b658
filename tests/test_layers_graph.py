"""Graph layers against dense-adjacency NumPy formulas, jraph.GAT, padding and permutations."""

import jax
import jax.numpy as jnp
import jraph
import numpy as np
import pytest
from flax.linen import meta
from jax.test_util import check_grads

from stjax.layers import (
    GAT,
    GATv2,
    GraphSAGE,
    TemporalGraphAttention,
    add_self_loops,
    lightgcn_propagate,
    lightgcn_propagate_bipartite,
    segment_softmax,
)

N, E, F, FE = 7, 19, 5, 3


def random_graph(seed=0, edge_features=True, n=N, e=E):
    rng = np.random.default_rng(seed)
    pairs = set()
    while len(pairs) < e:  # distinct edges so that the dense adjacency is exact
        s, r = rng.integers(0, n, 2)
        if s != r:
            pairs.add((int(s), int(r)))
    senders, receivers = map(np.asarray, zip(*sorted(pairs)))
    return jraph.GraphsTuple(
        nodes=rng.normal(size=(n, F)).astype(np.float32),
        edges=rng.normal(size=(e, FE)).astype(np.float32) if edge_features else None,
        senders=senders.astype(np.int32), receivers=receivers.astype(np.int32),
        n_node=np.asarray([n]), n_edge=np.asarray([e]), globals=None)


def graph_of(output):
    """GAT-style layers return (graph, attention); GraphSAGE returns the graph."""
    return output if isinstance(output, jraph.GraphsTuple) else output[0]


def leaky(x, slope=0.2):
    return np.where(x > 0, x, slope * x)


def dense_gat(params, graph, heads, channels, concat, self_loops, version=1):
    """GAT by the formula over a dense adjacency: softmax over the neighbours j of each i."""
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
    x = graph.nodes.astype(np.float64)
    n = x.shape[0]
    adjacency = np.zeros((n, n), bool)
    edge_of = {}
    for index, (s, r) in enumerate(zip(graph.senders, graph.receivers)):
        adjacency[r, s] = True
        edge_of[(r, s)] = graph.edges[index] if graph.edges is not None else None
    if self_loops:
        for i in range(n):
            adjacency[i, i] = True
            edge_of[(i, i)] = np.zeros(FE) if graph.edges is not None else None
    out = np.zeros((n, heads, channels))
    for h in range(heads):
        if version == 1:
            z = x @ p["projection"]["kernel"][:, h]
        else:
            zs = x @ p["sender_projection"]["kernel"][:, h]
            zr = x @ p["receiver_projection"]["kernel"][:, h]
        for i in range(n):
            neighbours = np.flatnonzero(adjacency[i])
            if len(neighbours) == 0:
                continue
            logits = []
            for j in neighbours:
                if version == 1:
                    e = z[i] @ p["attention_receiver"][h] + z[j] @ p["attention_sender"][h]
                    if graph.edges is not None:
                        e += (edge_of[(i, j)] @ p["edge_projection"]["kernel"][:, h]) @ p["attention_edge"][h]
                    logits.append(leaky(e))
                else:
                    hidden = zr[i] + zs[j]
                    if graph.edges is not None:
                        hidden = hidden + edge_of[(i, j)] @ p["edge_projection"]["kernel"][:, h]
                    logits.append(leaky(hidden) @ p["attention"][h])
            logits = np.asarray(logits)
            w = np.exp(logits - logits.max())
            w /= w.sum()
            values = z[neighbours] if version == 1 else zs[neighbours]
            out[i, h] = w @ values
    out = out.reshape(n, heads * channels) if concat else out.mean(1)
    return out + p["bias"]


@pytest.mark.parametrize("heads,concat", [(1, True), (3, True), (3, False)])
@pytest.mark.parametrize("edge_features", [True, False])
@pytest.mark.parametrize("self_loops", [True, False])
def test_gat_equals_dense_formula(heads, concat, edge_features, self_loops):
    graph = random_graph(1, edge_features)
    layer = GAT(features=4, num_heads=heads, concat=concat, self_loops=self_loops)
    params = meta.unbox(layer.init(jax.random.key(0), graph))["params"]
    params = jax.tree_util.tree_map(lambda a: a + 0.1 * np.random.default_rng(2).normal(size=a.shape).astype(a.dtype), params)
    out, alpha = layer.apply({"params": params}, graph)
    np.testing.assert_allclose(out.nodes, dense_gat(params, graph, heads, 4, concat, self_loops), atol=1e-5)
    assert alpha.shape == (E + (N if self_loops else 0), heads)
    sums = jax.ops.segment_sum(alpha, jnp.concatenate([graph.receivers, jnp.arange(N)]) if self_loops else graph.receivers, N)
    has_in = np.bincount(graph.receivers, minlength=N) > 0
    np.testing.assert_allclose(np.asarray(sums)[has_in | self_loops], 1.0, atol=1e-6)


@pytest.mark.parametrize("heads", [1, 2])
def test_gatv2_equals_dense_formula(heads):
    graph = random_graph(3)
    layer = GATv2(features=4, num_heads=heads)
    params = meta.unbox(layer.init(jax.random.key(1), graph))["params"]
    out, _ = layer.apply({"params": params}, graph)
    np.testing.assert_allclose(out.nodes, dense_gat(params, graph, heads, 4, True, True, version=2), atol=1e-5)


def test_single_head_gat_equals_jraph_gat():
    graph = random_graph(4, edge_features=False)
    layer = GAT(features=6, num_heads=1, self_loops=False)
    params = meta.unbox(layer.init(jax.random.key(2), graph))["params"]
    kernel = params["projection"]["kernel"][:, 0]
    a_s, a_r = params["attention_sender"][0], params["attention_receiver"][0]
    reference = jraph.GAT(
        attention_query_fn=lambda nodes: nodes @ kernel,
        attention_logit_fn=lambda sent, received, edges: jax.nn.leaky_relu(sent @ a_s + received @ a_r, 0.2)[:, None],
        node_update_fn=lambda nodes: nodes,
    )(graph)
    out, _ = layer.apply({"params": params}, graph)
    np.testing.assert_allclose(out.nodes - params["bias"], reference.nodes, atol=1e-5)


def test_padding_never_changes_real_outputs():
    graph = random_graph(5)
    padded = jraph.pad_with_graphs(graph, n_node=N + 4, n_edge=E + 6, n_graph=2)
    for layer in (GAT(4, 2), GATv2(4, 2), GraphSAGE(4)):
        params = layer.init(jax.random.key(0), graph)
        a = layer.apply(params, graph)
        b = layer.apply(params, padded)
        a, b = graph_of(a), graph_of(b)
        np.testing.assert_allclose(b.nodes[:N], a.nodes, atol=1e-5)


def test_permutation_invariance():
    graph = random_graph(6)
    rng = np.random.default_rng(0)
    node_perm = rng.permutation(N)
    inverse = np.argsort(node_perm)
    edge_perm = rng.permutation(E)
    permuted = graph._replace(nodes=graph.nodes[node_perm], senders=inverse[graph.senders][edge_perm],
                              receivers=inverse[graph.receivers][edge_perm], edges=graph.edges[edge_perm])
    for layer in (GAT(4, 3), GATv2(4, 2), GraphSAGE(4)):
        params = layer.init(jax.random.key(0), graph)
        a = layer.apply(params, graph)
        b = layer.apply(params, permuted)
        a, b = graph_of(a), graph_of(b)
        np.testing.assert_allclose(b.nodes, a.nodes[node_perm], atol=1e-5)


def test_graphsage_equals_numpy():
    graph = random_graph(7, edge_features=False)
    layer = GraphSAGE(4)
    params = meta.unbox(layer.init(jax.random.key(0), graph))["params"]
    out = layer.apply({"params": params}, graph).nodes
    x = graph.nodes
    expected = []
    for i in range(N):
        neighbours = graph.senders[graph.receivers == i]
        mean = x[neighbours].mean(0) if len(neighbours) else np.zeros(F)
        expected.append(x[i] @ params["self"]["kernel"] + params["self"]["bias"] + mean @ params["neighbours"]["kernel"])
    np.testing.assert_allclose(out, np.asarray(expected), atol=1e-5)


def test_lightgcn_equals_dense_powers():
    graph = random_graph(8, edge_features=False)
    senders = np.concatenate([graph.senders, graph.receivers])
    receivers = np.concatenate([graph.receivers, graph.senders])
    pairs = set(zip(senders.tolist(), receivers.tolist()))
    senders, receivers = map(np.asarray, zip(*sorted(pairs)))
    adjacency = np.zeros((N, N))
    adjacency[receivers, senders] = 1
    degree = adjacency.sum(1)
    inv = np.where(degree > 0, 1 / np.sqrt(np.maximum(degree, 1e-12)), 0)
    normalized = inv[:, None] * adjacency * inv[None, :]
    embeddings = np.random.default_rng(0).normal(size=(N, F))
    mean, layers = lightgcn_propagate(jnp.asarray(embeddings, jnp.float32), senders, receivers, 3)
    expected = [np.linalg.matrix_power(normalized, k) @ embeddings for k in range(4)]
    np.testing.assert_allclose(layers, np.stack(expected), atol=1e-5)
    np.testing.assert_allclose(mean, np.mean(expected, 0), atol=1e-5)
    # Padding edges (mask False) change nothing.
    pad_s = np.concatenate([senders, [0, 1]])
    pad_r = np.concatenate([receivers, [1, 0]])
    mask = np.concatenate([np.ones(len(senders), bool), [False, False]])
    padded_mean, _ = lightgcn_propagate(jnp.asarray(embeddings, jnp.float32), pad_s, pad_r, 3, mask)
    np.testing.assert_allclose(padded_mean, mean, atol=1e-6)


def test_lightgcn_bipartite_equals_edge_form_values_and_gradients():
    # A user-item graph with a repeated pair, isolated users and items, and directed user-user
    # edges: the dense-biadjacency form must give lightgcn_propagate's result over the same edges
    # listed in both directions (and the user-user ones once), and the same gradients.
    rng = np.random.default_rng(3)
    num_users, num_items, features = 7, 9, 4
    pair_users = np.array([1, 1, 2, 3, 3, 3, 5, 1, 6], np.int32)
    pair_items = np.array([0, 4, 4, 2, 5, 8, 8, 0, 1], np.int32)   # (1, 0) twice
    social_senders = np.array([1, 2, 5, 6], np.int32)
    social_receivers = np.array([2, 1, 3, 0], np.int32)            # 6 -> 0 only one way
    user_x = jnp.asarray(rng.normal(size=(num_users, features)), jnp.float32)
    item_x = jnp.asarray(rng.normal(size=(num_items, features)), jnp.float32)
    senders = np.concatenate([pair_users, pair_items + num_users, social_senders])
    receivers = np.concatenate([pair_items + num_users, pair_users, social_receivers])

    def edge_form(user_x, item_x):
        mean, _ = lightgcn_propagate(jnp.concatenate([user_x, item_x]), senders, receivers, 3)
        return mean[:num_users], mean[num_users:]

    def dense_form(user_x, item_x):
        return lightgcn_propagate_bipartite(user_x, item_x, pair_users, pair_items, 3, social_senders,
                                            social_receivers)

    for got, want in zip(dense_form(user_x, item_x), edge_form(user_x, item_x)):
        np.testing.assert_allclose(got, want, atol=1e-5)
    weights = jnp.asarray(rng.normal(size=(num_users + num_items, features)), jnp.float32)

    def loss(form):
        return lambda u, i: jnp.sum(jnp.concatenate(form(u, i)) ** 2 * weights)

    got = jax.grad(loss(dense_form), argnums=(0, 1))(user_x, item_x)
    want = jax.grad(loss(edge_form), argnums=(0, 1))(user_x, item_x)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-5)
    # Without user-user edges: the plain bipartite graph, checked the same way.
    plain = lightgcn_propagate_bipartite(user_x, item_x, pair_users, pair_items, 2)
    mean, _ = lightgcn_propagate(jnp.concatenate([user_x, item_x]), senders[:-4], receivers[:-4], 2)
    np.testing.assert_allclose(jnp.concatenate(plain), mean, atol=1e-5)


def test_temporal_graph_attention_weights_and_time_sensitivity():
    graph = random_graph(9)
    ages = np.random.default_rng(1).uniform(0, 1e5, E).astype(np.float32)
    layer = TemporalGraphAttention(features=8, num_heads=2, time_features=6)
    params = layer.init(jax.random.key(0), graph, ages)
    out, alpha = layer.apply(params, graph, ages)
    assert out.nodes.shape == (N, 8) and alpha.shape == (E, 2)
    sums = np.asarray(jax.ops.segment_sum(alpha, graph.receivers, N))
    has_in = np.bincount(graph.receivers, minlength=N) > 0
    np.testing.assert_allclose(sums[has_in], 1.0, atol=1e-6)
    older, _ = layer.apply(params, graph, ages * 3)
    assert np.abs(np.asarray(older.nodes - out.nodes)).max() > 1e-5


@pytest.mark.parametrize("edge_features", [True, False])
def test_temporal_graph_attention_equals_the_tgat_formula_per_receiver(edge_features):
    """TGAT's layer written the plain way, one receiver at a time in float64 NumPy:
    q_i = [h_i ‖ Φ(0)] W_q + b_q, k_ij = [h_j ‖ x_ij ‖ Φ(age_ij)] W_k + b_k (v likewise),
    a_ij = softmax_j(q_i · k_ij / sqrt(C)) per head, h'_i = W_o relu(W_m [h_i ‖ Σ_j a_ij v_ij] + b_m) + b_o."""
    graph = random_graph(11, edge_features=edge_features)
    # Ages of up to a minute: float32 keeps ω·age to ~1e-6 there (at 1e6 s the float32 argument
    # of the cosine is off by ~0.06 in any implementation).
    ages = np.random.default_rng(2).uniform(0, 60, E).astype(np.float32)
    layer = TemporalGraphAttention(features=8, num_heads=2, time_features=6)
    params = meta.unbox(layer.init(jax.random.key(3), graph, ages))
    # Non-zero phases so that Φ's bias is exercised too.
    params["params"]["time"]["phase"] = jnp.linspace(-1.0, 1.0, 6)
    out, alpha = layer.apply(params, graph, ages)
    p = jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64), params["params"])
    H, C = 2, 4

    def phi(age):
        return np.cos(age * p["time"]["frequency"] + p["time"]["phase"])

    def dense(name, x):
        kernel, bias = p[name]["kernel"], p[name]["bias"]
        return np.tensordot(x, kernel, axes=1) + bias

    h = np.asarray(graph.nodes, np.float64)
    expected = np.zeros((N, 8))
    expected_alpha = np.zeros((E, H))
    for i in range(N):
        edges = np.flatnonzero(np.asarray(graph.receivers) == i)
        q = dense("query", np.concatenate([h[i], phi(0.0)]))  # [H, C]
        attended = np.zeros(H * C)
        if len(edges):
            rows = [np.concatenate([h[graph.senders[e]]]
                                   + ([np.asarray(graph.edges[e], np.float64)] if edge_features else [])
                                   + [phi(float(ages[e]))]) for e in edges]
            k, v = dense("key", np.stack(rows)), dense("value", np.stack(rows))  # [n, H, C]
            logits = np.einsum("hc,nhc->nh", q, k) / np.sqrt(C)
            a = np.exp(logits - logits.max(0))
            a /= a.sum(0)
            expected_alpha[edges] = a
            attended = np.einsum("nh,nhc->hc", a, v).reshape(-1)
        hidden = np.maximum(dense("merge", np.concatenate([h[i], attended])), 0.0)
        expected[i] = dense("out", hidden)
    np.testing.assert_allclose(np.asarray(out.nodes), expected, rtol=2e-4, atol=2e-5)
    np.testing.assert_allclose(np.asarray(alpha), expected_alpha, rtol=2e-4, atol=2e-6)


def test_segment_softmax_stable_for_large_logits():
    logits = jnp.asarray([1000.0, 1001.0, -1000.0])
    out = segment_softmax(logits, jnp.asarray([0, 0, 1]), 3)
    np.testing.assert_allclose(out, [1 / (1 + np.e), np.e / (1 + np.e), 1.0], atol=1e-6)


def test_graph_layer_gradients_and_jit():
    with jax.enable_x64(True):
        graph = random_graph(10, n=4, e=6)
        graph = graph._replace(nodes=jnp.asarray(graph.nodes, jnp.float64), edges=jnp.asarray(graph.edges, jnp.float64))
        ages = jnp.linspace(0.0, 10.0, 6)
        for layer, args in ((GAT(3, 2, dtype=jnp.float64, param_dtype=jnp.float64), ()),
                            (GATv2(3, 2, dtype=jnp.float64, param_dtype=jnp.float64), ()),
                            (GraphSAGE(3, dtype=jnp.float64, param_dtype=jnp.float64), ()),
                            (TemporalGraphAttention(4, 2, 4, dtype=jnp.float64, param_dtype=jnp.float64), (ages,))):
            params = meta.unbox(layer.init(jax.random.key(0), graph, *args))

            def total(p, nodes, layer=layer, args=args):
                out = layer.apply(p, graph._replace(nodes=nodes), *args)
                return graph_of(out).nodes.sum()

            check_grads(total, (params, graph.nodes), order=1, modes=["rev"], atol=1e-4, rtol=1e-4)
            np.testing.assert_allclose(jax.jit(total)(params, graph.nodes), total(params, graph.nodes), rtol=1e-10)


# GATv2 options: projection biases (GATv2 paper; PyG GATv2Conv(bias=True) gives lin_l and lin_r
# biases) and self-loops whose edge features are the mean of the incoming ones (PyG
# add_self_loops(fill_value='mean')). The reference below loops over edges, not over a dense
# adjacency, and builds the loops itself.


def edge_loop_gatv2(params, graph, heads, channels, concat, self_loops, fill, version=2):
    """GATv2 (or GAT, version=1) by a Python loop over edges; softmax per receiver from per-edge logits."""
    p = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params)
    x = np.asarray(graph.nodes, np.float64)
    n = x.shape[0]
    attributes = None if graph.edges is None else np.asarray(graph.edges, np.float64)
    edges = [(int(s), int(r), None if attributes is None else attributes[e])
             for e, (s, r) in enumerate(zip(graph.senders, graph.receivers))]
    if self_loops:
        loops = []
        for i in range(n):
            incoming = [a for s, r, a in edges if r == i]
            if attributes is None:
                loops.append((i, i, None))
            elif fill == "mean":
                loops.append((i, i, np.mean(incoming, axis=0) if incoming else np.zeros(attributes.shape[1])))
            else:
                loops.append((i, i, np.full(attributes.shape[1], fill)))
        edges = edges + loops

    def project(name, vector, h):
        layer = p[name]
        value = vector @ layer["kernel"][:, h]
        return value + layer["bias"][h] if "bias" in layer else value

    out = np.zeros((n, heads, channels))
    for h in range(heads):
        logits = {i: [] for i in range(n)}
        for s, r, a in edges:
            if version == 1:
                zr, zs = project("projection", x[r], h), project("projection", x[s], h)
                score = zr @ p["attention_receiver"][h] + zs @ p["attention_sender"][h]
                if a is not None:
                    score = score + (a @ p["edge_projection"]["kernel"][:, h]) @ p["attention_edge"][h]
                logits[r].append((leaky(score), zs))
                continue
            hidden = project("receiver_projection", x[r], h) + project("sender_projection", x[s], h)
            if a is not None:
                hidden = hidden + a @ p["edge_projection"]["kernel"][:, h]
            logits[r].append((leaky(hidden) @ p["attention"][h], project("sender_projection", x[s], h)))
        for i in range(n):
            if not logits[i]:
                continue
            scores = np.asarray([score for score, _ in logits[i]])
            weights = np.exp(scores - scores.max())
            weights /= weights.sum()
            out[i, h] = sum(w * value for w, (_, value) in zip(weights, logits[i]))
    out = out.reshape(n, heads * channels) if concat else out.mean(1)
    return out + p["bias"]


def graph_with_isolated_receiver(seed):
    """A random graph where node 0 receives no edge (its mean-filled loop must be zeros)."""
    graph = random_graph(seed)
    keep = graph.receivers != 0
    return graph._replace(senders=graph.senders[keep], receivers=graph.receivers[keep], edges=graph.edges[keep],
                          n_edge=np.asarray([int(keep.sum())]))


def perturbed(params, seed=2):
    """Parameters with noise, so that zero-initialised biases matter."""
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda a: a + 0.3 * rng.normal(size=a.shape).astype(a.dtype), params)


def test_add_self_loops_mean_fill_equals_loop():
    graph = graph_with_isolated_receiver(11)
    looped = add_self_loops(graph, "mean")
    num_edges = len(graph.senders)
    np.testing.assert_array_equal(looped.senders[num_edges:], np.arange(N))
    np.testing.assert_array_equal(looped.receivers[num_edges:], np.arange(N))
    for i in range(N):
        incoming = [graph.edges[e] for e in range(num_edges) if graph.receivers[e] == i]
        expected = np.mean(incoming, axis=0) if incoming else np.zeros(FE)
        np.testing.assert_allclose(looped.edges[num_edges + i], expected, atol=1e-6)
    np.testing.assert_array_equal(looped.edges[:num_edges], graph.edges)
    np.testing.assert_allclose(add_self_loops(graph, 0.5).edges[num_edges:], 0.5)
    with pytest.raises(ValueError, match="expected a number or 'mean'"):
        add_self_loops(graph, "max")


@pytest.mark.parametrize("projection_bias", [False, True])
@pytest.mark.parametrize("fill", [0.0, 0.5, "mean"])
@pytest.mark.parametrize("heads,concat", [(1, True), (3, False)])
def test_gatv2_options_equal_edge_loop(projection_bias, fill, heads, concat):
    graph = graph_with_isolated_receiver(12)
    layer = GATv2(features=4, num_heads=heads, concat=concat, projection_bias=projection_bias, self_loop_fill=fill)
    params = perturbed(meta.unbox(layer.init(jax.random.key(3), graph))["params"])
    for name in ("sender_projection", "receiver_projection"):
        assert ("bias" in params[name]) == projection_bias
        if projection_bias:
            assert params[name]["bias"].shape == (heads, 4)
    out, alpha = layer.apply({"params": params}, graph)
    expected = edge_loop_gatv2(params, graph, heads, 4, concat, True, fill)
    np.testing.assert_allclose(out.nodes, expected, atol=1e-5)
    assert alpha.shape == (len(graph.senders) + N, heads)


@pytest.mark.parametrize("fill", [0.0, 0.5, "mean"])
def test_gat_self_loop_fill_equals_edge_loop(fill):
    """GAT (v1) takes the same self-loop fill option, checked against the same edge loop."""
    graph = graph_with_isolated_receiver(13)
    layer = GAT(features=4, num_heads=2, self_loop_fill=fill)
    params = perturbed(meta.unbox(layer.init(jax.random.key(4), graph))["params"])
    out, _ = layer.apply({"params": params}, graph)
    np.testing.assert_allclose(out.nodes, edge_loop_gatv2(params, graph, 2, 4, True, True, fill, version=1), atol=1e-5)
    if fill == "mean":
        zero_fill, _ = GAT(features=4, num_heads=2).apply({"params": params}, graph)
        assert np.abs(np.asarray(zero_fill.nodes - out.nodes)).max() > 1e-4


def test_gatv2_options_are_off_by_default_and_change_outputs():
    graph = graph_with_isolated_receiver(13)
    plain = GATv2(features=4, num_heads=2)
    params = perturbed(meta.unbox(plain.init(jax.random.key(4), graph))["params"])
    assert "bias" not in params["sender_projection"] and "bias" not in params["receiver_projection"]
    out, _ = plain.apply({"params": params}, graph)
    mean_out, _ = GATv2(features=4, num_heads=2, self_loop_fill="mean").apply({"params": params}, graph)
    assert np.abs(np.asarray(mean_out.nodes - out.nodes)).max() > 1e-4
    # Zero projection biases reproduce the layer without them.
    biased = GATv2(features=4, num_heads=2, projection_bias=True)
    with_bias = {**params, **{name: {**params[name], "bias": np.zeros((2, 4), np.float32)}
                              for name in ("sender_projection", "receiver_projection")}}
    zero_bias_out, _ = biased.apply({"params": with_bias}, graph)
    np.testing.assert_allclose(zero_bias_out.nodes, out.nodes, atol=1e-6)


def test_gatv2_options_ignore_padding():
    graph = graph_with_isolated_receiver(14)
    padded = jraph.pad_with_graphs(graph, n_node=N + 3, n_edge=len(graph.senders) + 5, n_graph=2)
    layer = GATv2(4, 2, projection_bias=True, self_loop_fill="mean")
    params = perturbed(meta.unbox(layer.init(jax.random.key(5), graph))["params"])
    a, _ = layer.apply({"params": params}, graph)
    b, _ = layer.apply({"params": params}, padded)
    np.testing.assert_allclose(b.nodes[:N], a.nodes, atol=1e-5)


def test_gatv2_options_gradients_and_jit():
    with jax.enable_x64(True):
        graph = random_graph(15, n=5, e=8)
        nodes = jnp.asarray(graph.nodes, jnp.float64)
        edges = jnp.asarray(graph.edges, jnp.float64)
        layer = GATv2(3, 2, projection_bias=True, self_loop_fill="mean", dtype=jnp.float64, param_dtype=jnp.float64)
        params = perturbed(meta.unbox(layer.init(jax.random.key(6), graph._replace(nodes=nodes, edges=edges))))

        def total(p, nodes, edges):
            out, _ = layer.apply(p, graph._replace(nodes=nodes, edges=edges))
            return jnp.sum(jnp.tanh(out.nodes))

        check_grads(total, (params, nodes, edges), order=1, modes=["rev"], atol=1e-4, rtol=1e-4)
        grads = jax.grad(total, argnums=(0, 1, 2))(params, nodes, edges)
        for leaf in jax.tree_util.tree_leaves(grads):
            assert np.all(np.isfinite(leaf))
        assert np.abs(grads[0]["params"]["sender_projection"]["bias"]).max() > 0
        assert np.abs(grads[2]).max() > 0  # loop features depend on the incoming edge features
        np.testing.assert_allclose(jax.jit(total)(params, nodes, edges), total(params, nodes, edges), rtol=1e-10)
        eager_out, eager_alpha = layer.apply(params, graph._replace(nodes=nodes, edges=edges))
        jit_out, jit_alpha = jax.jit(layer.apply)(params, graph._replace(nodes=nodes, edges=edges))
        np.testing.assert_allclose(jit_out.nodes, eager_out.nodes, rtol=1e-10)
        np.testing.assert_allclose(jit_alpha, eager_alpha, rtol=1e-10)
