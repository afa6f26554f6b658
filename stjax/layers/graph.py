"""Graph layers on `jraph.GraphsTuple`, written on segment operations.

Messages flow from `senders` to `receivers`; attention normalises over the edges that
arrive at each receiver. Letters: N nodes, E edges, F features, H heads, C per-head
channels. Padding from `jraph.pad_with_graphs` adds nodes and edges that only touch
padding nodes, so real outputs never change; `segment_softmax` is written stably here
(no call into jraph utilities that use APIs removed from current JAX).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph

Dtype = Any
Array = jax.Array


def _p(init, names):
    return nn.with_logical_partitioning(init, names)


def segment_softmax(logits: Array, segment_ids: Array, num_segments: int) -> Array:
    """Softmax of logits float[E, ...] within each segment (receiver)."""
    maxima = jax.ops.segment_max(logits, segment_ids, num_segments)
    maxima = jnp.where(jnp.isfinite(maxima), maxima, 0.0)
    shifted = jnp.exp(logits - jax.lax.stop_gradient(maxima)[segment_ids])
    totals = jax.ops.segment_sum(shifted, segment_ids, num_segments)
    return shifted / jnp.where(totals > 0, totals, 1.0)[segment_ids]


def add_self_loops(graph: jraph.GraphsTuple, edge_fill: float | str = 0.0) -> jraph.GraphsTuple:
    """Adds an edge i -> i for every node, after the existing edges.

    edge_fill: the loops' edge features; a number fills them with that value, 'mean' gives
    each loop the mean of the features of the edges arriving at its node (zeros when none
    arrive), as PyTorch Geometric's `add_self_loops(fill_value='mean')`.
    """
    if isinstance(edge_fill, str) and edge_fill != "mean":
        raise ValueError(f"add_self_loops: edge_fill={edge_fill!r}; expected a number or 'mean'")
    num_nodes = jax.tree_util.tree_leaves(graph.nodes)[0].shape[0]
    # The canonical index dtype (int32 unless x64 is on): NumPy senders are often int64.
    loops = jnp.arange(num_nodes, dtype=jnp.asarray(graph.senders).dtype)
    edges = graph.edges
    if edges is not None:
        if edge_fill == "mean":
            totals = jax.ops.segment_sum(edges, graph.receivers, num_nodes)  # [N, FE]
            counts = jax.ops.segment_sum(jnp.ones(graph.receivers.shape, edges.dtype), graph.receivers, num_nodes)
            loop_edges = totals / jnp.maximum(counts, 1.0)[:, None]
        else:
            loop_edges = jnp.full((num_nodes, edges.shape[-1]), edge_fill, edges.dtype)
        edges = jnp.concatenate([edges, loop_edges.astype(edges.dtype)])
    return graph._replace(senders=jnp.concatenate([graph.senders, loops]),
                          receivers=jnp.concatenate([graph.receivers, loops]), edges=edges,
                          n_edge=graph.n_edge + graph.n_node)


def _aggregate_heads(alpha: Array, values: Array, receivers: Array, num_nodes: int, concat: bool) -> Array:
    """Σ_j α_ij v_j per receiver and head (alpha [E, H], values [E, H, C]), then concat or mean."""
    out = jax.ops.segment_sum(alpha[..., None] * values, receivers, num_nodes)  # [N, H, C]
    return out.reshape(num_nodes, -1) if concat else out.mean(axis=1)


class GAT(nn.Module):
    """Graph attention (Veličković et al., ICLR 2018), multi-head, optional edge features.

      z_j = W h_j                         (per head, [H, C])
      e_ij = LeakyReLU(a_r · z_i + a_s · z_j + a_e · W_e x_ij)    (j sender, i receiver)
      α_ij = softmax over edges into i of e_ij
      h'_i = concat_h or mean_h of Σ_j α_ij z_j   (+ bias)

    self_loop_fill: edge features of the added self-loops, a number or 'mean' (PyTorch Geometric's
      `fill_value`; see GATv2); used only when `self_loops` is set and the graph has edge features.
    __call__(graph) -> (graph with nodes float[N, H*C or C], attention float[E', H]) where E'
    counts the added self-loops when `self_loops` is set.
    """

    features: int
    num_heads: int = 1
    concat: bool = True
    self_loops: bool = True
    negative_slope: float = 0.2
    attention_dropout: float = 0.0
    self_loop_fill: float | str = 0.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, graph: jraph.GraphsTuple, deterministic: bool = True):
        if self.self_loops:
            graph = add_self_loops(graph, self.self_loop_fill)
        nodes = graph.nodes.astype(self.dtype)
        num_nodes = nodes.shape[0]
        H, C = self.num_heads, self.features
        z = nn.DenseGeneral((H, C), use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype, name="projection",
                            kernel_init=_p(nn.initializers.xavier_uniform(), ("embed", "heads", "kv")))(nodes)
        att_receiver = self.param("attention_receiver", _p(nn.initializers.xavier_uniform(), ("heads", "kv")), (H, C),
                                  self.param_dtype).astype(self.dtype)
        att_sender = self.param("attention_sender", _p(nn.initializers.xavier_uniform(), ("heads", "kv")), (H, C),
                                self.param_dtype).astype(self.dtype)
        logits = (jnp.sum(z * att_receiver, -1)[graph.receivers] + jnp.sum(z * att_sender, -1)[graph.senders])  # [E, H]
        if graph.edges is not None:
            edge_z = nn.DenseGeneral((H, C), use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype,
                                     name="edge_projection")(graph.edges.astype(self.dtype))
            att_edge = self.param("attention_edge", _p(nn.initializers.xavier_uniform(), ("heads", "kv")), (H, C),
                                  self.param_dtype).astype(self.dtype)
            logits = logits + jnp.sum(edge_z * att_edge, -1)
        logits = jax.nn.leaky_relu(logits, self.negative_slope)
        alpha = segment_softmax(logits, graph.receivers, num_nodes)  # [E, H]
        dropped = nn.Dropout(self.attention_dropout)(alpha, deterministic=deterministic)
        out = _aggregate_heads(dropped, z[graph.senders], graph.receivers, num_nodes, self.concat)
        bias = self.param("bias", _p(nn.initializers.zeros, ("embed",)), (out.shape[-1],), self.param_dtype)
        return graph._replace(nodes=out + bias.astype(self.dtype)), alpha


class GATv2(nn.Module):
    """GATv2 (Brody et al., ICLR 2022): the attention MLP sees both ends before the nonlinearity.

      e_ij = a · LeakyReLU(W_r h_i + b_r + W_s h_j + b_s + W_e x_ij)     h'_i = agg_h Σ_j α_ij (W_s h_j + b_s)

    projection_bias: learn b_s and b_r (as in the paper and PyTorch Geometric's
      `GATv2Conv(bias=True)`, whose lin_l / lin_r carry biases); off (b = 0) by default.
    self_loop_fill: edge features of the added self-loops, a number or 'mean' (the mean of the
      node's incoming edge features, PyTorch Geometric's `fill_value='mean'`); used only when
      `self_loops` is set and the graph has edge features.
    """

    features: int
    num_heads: int = 1
    concat: bool = True
    self_loops: bool = True
    negative_slope: float = 0.2
    attention_dropout: float = 0.0
    projection_bias: bool = False
    self_loop_fill: float | str = 0.0
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, graph: jraph.GraphsTuple, deterministic: bool = True):
        if self.self_loops:
            graph = add_self_loops(graph, self.self_loop_fill)
        nodes = graph.nodes.astype(self.dtype)
        num_nodes = nodes.shape[0]
        H, C = self.num_heads, self.features
        dense = lambda name, bias=False: nn.DenseGeneral(  # noqa: E731
            (H, C), use_bias=bias, dtype=self.dtype, param_dtype=self.param_dtype, name=name,
            kernel_init=_p(nn.initializers.xavier_uniform(), ("embed", "heads", "kv")),
            bias_init=_p(nn.initializers.zeros, ("heads", "kv")))
        z_sender = dense("sender_projection", self.projection_bias)(nodes)
        z_receiver = dense("receiver_projection", self.projection_bias)(nodes)
        hidden = z_receiver[graph.receivers] + z_sender[graph.senders]
        if graph.edges is not None:
            hidden = hidden + dense("edge_projection")(graph.edges.astype(self.dtype))
        attention = self.param("attention", _p(nn.initializers.xavier_uniform(), ("heads", "kv")), (H, C),
                               self.param_dtype).astype(self.dtype)
        logits = jnp.sum(jax.nn.leaky_relu(hidden, self.negative_slope) * attention, -1)
        alpha = segment_softmax(logits, graph.receivers, num_nodes)
        dropped = nn.Dropout(self.attention_dropout)(alpha, deterministic=deterministic)
        out = _aggregate_heads(dropped, z_sender[graph.senders], graph.receivers, num_nodes, self.concat)
        bias = self.param("bias", _p(nn.initializers.zeros, ("embed",)), (out.shape[-1],), self.param_dtype)
        return graph._replace(nodes=out + bias.astype(self.dtype)), alpha


class TemporalGraphAttention(nn.Module):
    """TGAT-style neighbour attention (Xu et al., ICLR 2020) with time encodings of edge age.

      q_i = [h_i ‖ Φ(0)] W_q,   k_ij = [h_j ‖ x_ij ‖ Φ(age_ij)] W_k,   v_ij likewise with W_v
      a_ij = softmax over edges into i of q_i · k_ij / sqrt(C)
      h'_i = FFN([h_i ‖ Σ_j a_ij v_ij])

    Φ is the functional time encoding cos(ω Δt + b). ages: float[E], seconds between the
    interaction on the edge and the time of the query at the receiver (>= 0).
    time_learnable: learn ω and b (TGAT's default). With ages in seconds the gradient of ω grows
      with the age (months of seconds: ~1e7), which can swamp a global gradient-norm clip; False
      keeps ω at its geometric initialisation (1 s .. ~30 years) and b at 0.
    __call__(graph, ages) -> (graph with nodes float[N, features], attention float[E, H])
    """

    features: int
    num_heads: int = 2
    time_features: int = 16
    time_learnable: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, graph: jraph.GraphsTuple, ages: Array):
        from stjax.layers.encodings import FunctionalTimeEncoding

        nodes = graph.nodes.astype(self.dtype)
        num_nodes = nodes.shape[0]
        H = self.num_heads
        C = self.features // H
        encode = FunctionalTimeEncoding(self.time_features, self.time_learnable, dtype=self.dtype, param_dtype=self.param_dtype, name="time")
        zero_time = jnp.broadcast_to(encode(jnp.zeros(())), (num_nodes, self.time_features))
        query_in = jnp.concatenate([nodes, zero_time], -1)
        # Keys and values are linear in [h_j ‖ x_ij ‖ Φ(age)]: the node part is projected once per
        # node and gathered per edge (the edge part and Φ per edge), which is the same sum
        # without an [E, F + edge + time] input (a node is the sender of many edges in
        # windowed graphs: 50 edges per node for a user's last 50 events).
        edge_in = [encode(ages)]
        if graph.edges is not None:
            edge_in.insert(0, graph.edges.astype(self.dtype))
        edge_in = jnp.concatenate(edge_in, -1)  # [E, edge + time]
        node_in = jnp.concatenate([nodes, jnp.zeros((num_nodes, edge_in.shape[-1]), self.dtype)], -1)
        dense = lambda name: nn.DenseGeneral((H, C), dtype=self.dtype, param_dtype=self.param_dtype,  # noqa: E731
                                             name=name, kernel_init=_p(nn.initializers.xavier_uniform(),
                                                                       ("embed", "heads", "kv")))
        q = dense("query")(query_in)[graph.receivers]  # [E, H, C]

        def project(name):  # [h_j ‖ x_ij ‖ Φ] W + b for every edge
            module = dense(name)
            per_node = module(node_in)  # h W_h + b, [N, H, C]
            kernel = nn.meta.unbox(module.variables["params"]["kernel"])[nodes.shape[-1]:]
            per_edge = jnp.einsum("ef,fhc->ehc", edge_in, kernel.astype(self.dtype))
            return per_node[graph.senders] + per_edge

        k, v = project("key"), project("value")
        logits = jnp.sum(q * k, -1) / jnp.sqrt(C).astype(self.dtype)
        alpha = segment_softmax(logits, graph.receivers, num_nodes)
        attended = jax.ops.segment_sum(alpha[..., None] * v, graph.receivers, num_nodes).reshape(num_nodes, H * C)
        hidden = nn.Dense(self.features, dtype=self.dtype, param_dtype=self.param_dtype, name="merge")(
            jnp.concatenate([nodes, attended], -1))
        out = nn.Dense(self.features, dtype=self.dtype, param_dtype=self.param_dtype, name="out")(jax.nn.relu(hidden))
        return graph._replace(nodes=out), alpha


class GraphSAGE(nn.Module):
    """GraphSAGE with mean aggregation (Hamilton et al., 2017):

      h'_i = W_self h_i + W_neigh mean_{j -> i} h_j   (then optional L2 normalisation)
    Nodes without incoming edges aggregate zeros.
    """

    features: int
    normalize: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, graph: jraph.GraphsTuple) -> jraph.GraphsTuple:
        nodes = graph.nodes.astype(self.dtype)
        num_nodes = nodes.shape[0]
        total = jax.ops.segment_sum(nodes[graph.senders], graph.receivers, num_nodes)
        count = jax.ops.segment_sum(jnp.ones_like(graph.receivers, self.dtype), graph.receivers, num_nodes)
        mean = total / jnp.maximum(count, 1.0)[:, None]
        dense = lambda name, bias: nn.Dense(self.features, use_bias=bias, dtype=self.dtype,  # noqa: E731
                                            param_dtype=self.param_dtype, name=name,
                                            kernel_init=_p(nn.initializers.xavier_uniform(), ("embed", "mlp")))
        out = dense("self", True)(nodes) + dense("neighbours", False)(mean)
        if self.normalize:
            out = out / jnp.maximum(jnp.linalg.norm(out, axis=-1, keepdims=True), 1e-12)
        return graph._replace(nodes=out)


def _inverse_sqrt(degree: Array) -> Array:
    """1 / sqrt(degree), 0 where the degree is 0 (isolated or padding nodes)."""
    return jnp.where(degree > 0, jax.lax.rsqrt(jnp.maximum(degree, 1e-12)), 0.0)


def lightgcn_propagate(embeddings: Array, senders: Array, receivers: Array, num_layers: int,
                       edge_mask: Array | None = None) -> tuple[Array, Array]:
    """LightGCN propagation (He et al., SIGIR 2020): no weights, no nonlinearity.

      E^(k+1) = D^{-1/2} A D^{-1/2} E^(k)   over the given (symmetric) edges
    embeddings: float[N, F]; senders, receivers: int32[E]; edge_mask: bool[E] (False = padding).
    Returns (mean of E^(0..K) float[N, F], all layers float[K+1, N, F]).
    """
    num_nodes = embeddings.shape[0]
    weight = jnp.ones(senders.shape, embeddings.dtype) if edge_mask is None else edge_mask.astype(embeddings.dtype)
    degree = jax.ops.segment_sum(weight, receivers, num_nodes)
    inv_sqrt = _inverse_sqrt(degree)
    norm = weight * inv_sqrt[senders] * inv_sqrt[receivers]
    layers = [embeddings]
    x = embeddings
    for _ in range(num_layers):
        x = jax.ops.segment_sum(norm[:, None] * x[senders], receivers, num_nodes)
        layers.append(x)
    stacked = jnp.stack(layers)
    return stacked.mean(axis=0), stacked


def lightgcn_propagate_bipartite(user_x: Array, item_x: Array, pair_users: Array, pair_items: Array,
                                 num_layers: int, social_senders: Array | None = None,
                                 social_receivers: Array | None = None) -> tuple[Array, Array]:
    """`lightgcn_propagate` over a user-item graph with the user-item block held as a dense matrix.

    The graph: each (pair_users[p], pair_items[p]) is an undirected user-item edge (listed once; a
    repeated pair counts twice, as two edges would), plus optional directed user-user edges
    social_senders -> social_receivers; no item-item edges. Degrees and the normalisation
    1 / sqrt(deg_s deg_r) are those of `lightgcn_propagate` over the same edges in both directions,
    so the results are equal; each layer is two matmuls with the normalised [U, I] biadjacency
    (built once per call by one scatter) and a gather/scatter over the user-user edges only.
    Faster than the edge form when the user-item matrix is dense enough (on CPU, above about 2%
    of the U x I cells filled: scripts/bench_lightgcn_propagation.py; ML-1M's training pairs fill
    4.5%) and U x I fits in memory.

    user_x: float[U, F]; item_x: float[I, F]; pair_users, pair_items: int32[P] (indices into U, I);
    social_senders, social_receivers: int32[S] (indices into U) or None.
    Returns (users float[U, F], items float[I, F]): the mean of layers 0..num_layers.
    """
    num_users, num_items = user_x.shape[0], item_x.shape[0]
    dtype = user_x.dtype
    ones = jnp.ones(pair_users.shape, dtype)
    user_degree = jax.ops.segment_sum(ones, pair_users, num_users)
    item_degree = jax.ops.segment_sum(ones, pair_items, num_items)
    if social_senders is not None:
        user_degree = user_degree + jax.ops.segment_sum(jnp.ones(social_receivers.shape, dtype), social_receivers,
                                                        num_users)
    user_inv, item_inv = _inverse_sqrt(user_degree), _inverse_sqrt(item_degree)
    biadjacency = jnp.zeros((num_users, num_items), dtype).at[pair_users, pair_items].add(
        user_inv[pair_users] * item_inv[pair_items])
    if social_senders is not None:
        social_norm = (user_inv[social_senders] * user_inv[social_receivers])[:, None]
    users, items = user_x, item_x
    user_sum, item_sum = user_x, item_x
    for _ in range(num_layers):
        next_users = biadjacency @ items
        if social_senders is not None:
            next_users = next_users + jax.ops.segment_sum(social_norm * users[social_senders], social_receivers,
                                                          num_users)
        users, items = next_users, biadjacency.T @ users
        user_sum, item_sum = user_sum + users, item_sum + items
    return user_sum / (num_layers + 1), item_sum / (num_layers + 1)
