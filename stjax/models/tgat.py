"""Temporal evolution graph recommender: TGAT-style attention over the user-item temporal graph.

For a user's sequence, at every position p (item i_p at time t_p):
  item layer   the item node at t_p attends (`stjax.layers.TemporalGraphAttention`) over the K
               users who interacted with i_p most recently strictly before t_p (training events
               only, read on device from a time-sorted CSR), keys carrying TGAT's functional time
               encoding Φ(t_p - t_e) (Xu et al., ICLR 2020). This is the graph part: who else
               used the item lately, and how long ago.
  user layer   the user node at t_p attends over its own last `history` items up to p (its
               neighbours before t in the same graph), with Φ of their age, so the state evolves
               with the user's recent behaviour;
  then, optionally, `num_blocks` causal transformer blocks over the user states of the sequence.
  two-hop      the second hop of the same temporal graph, read at the time the next item is asked
               for: the users the item layer attended to at the last `two_hop_positions`
               positions (other users only) -> the item each of them used last (`two_hop_items`)
               strictly before that time, scored directly with a learned weight: a sigmoid of
               a bilinear affinity of the two users' embeddings plus a bias per lag, times a
               learned scale. This is how a user's behaviour follows the people
               who used the same things just before them (the planted influence of the synthetic
               data, followed friends in check-ins); the user relation is found in the temporal
               graph, not given.
Scores: dot products with the tied item table (+ the two-hop term). Ablation: num_neighbours=0
drops the graph (item nodes keep only their own embedding, no two-hop term).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from stjax.graphs.context import gather_rows, recent_before, temporal_lists
from stjax.layers import PositionEmbedding, TemporalGraphAttention, TransformerBlock
from stjax.models.base import ModelSpec
from stjax.models.shared import TiedItemOutput, full_softmax_loss, item_embedding
from stjax.models.shared_graph import (
    history_context,
    next_query_times,
    scatter_item_scores,
    star_graph,
    window_graph,
)


def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        name="tgat", hidden=64, num_heads=2, time_features=16, num_neighbours=10, history=20, num_blocks=1,
        dropout=0.2, two_hop=True, two_hop_positions=8, two_hop_items=3,
        # item_residual: item node = own embedding + the item layer's output (the layer's output
        # alone replaces the tied embedding, which revisit-heavy data such as check-ins needs).
        item_residual=False,
        # learn_time: learn the time encoding's frequencies (TGAT's default); off, they stay at
        # 1 s .. 30 years, since their gradient grows with ages in seconds and swamps the clip.
        learn_time=False))


class TGATRecommender(TiedItemOutput, nn.Module):
    num_users: int
    num_items: int
    max_length: int
    item_rows: int
    hidden: int = 64
    num_heads: int = 2
    time_features: int = 16
    num_neighbours: int = 10
    history: int = 20
    num_blocks: int = 1
    dropout: float = 0.2
    learn_time: bool = False
    two_hop: bool = True
    two_hop_positions: int = 8
    two_hop_items: int = 3
    item_residual: bool = False

    @property
    def uses_two_hop(self) -> bool:
        return bool(self.num_neighbours and self.two_hop)

    def setup(self):
        D = self.hidden
        self.item_embedding = item_embedding(self.item_rows, D)
        if self.num_neighbours:
            self.user_embedding = nn.Embed(self.num_users + 1, D, embedding_init=nn.initializers.normal(0.02))
            self.item_layer = TemporalGraphAttention(D, self.num_heads, self.time_features, self.learn_time)
        self.user_layer = TemporalGraphAttention(D, self.num_heads, self.time_features, self.learn_time)
        self.input_dropout = nn.Dropout(self.dropout)
        if self.num_blocks:
            self.positions = PositionEmbedding(self.max_length)
            self.blocks = [TransformerBlock(self.num_heads, D, self.dropout, self.dropout, causal=True, pre_norm=True)
                           for _ in range(self.num_blocks)]
        self.final_norm = nn.LayerNorm()
        if self.uses_two_hop:
            self.hop_log_scale = self.param("hop_log_scale", nn.initializers.constant(np.log(5.0)), ())
            self.hop_lag_bias = self.param("hop_lag_bias", nn.initializers.constant(-2.0), (self.two_hop_positions,))
            self.hop_query = nn.Dense(D, use_bias=False)

    def item_nodes(self, items, timestamps, context):
        """Each position's item at its time, from the users who used it just before.
        -> (float[B, T, D], attention float[B, T, K, H] or None, neighbour users int32[B, T, K] or None)."""
        x = self.item_embedding(items)
        if not self.num_neighbours:
            return x, None, None
        B, T, D = x.shape
        positions, mask = recent_before(context["item_offsets"], context["item_times"], items, timestamps,
                                        self.num_neighbours)  # [B, T, K]
        mask = mask & (items[..., None] > 0)
        users = gather_rows(context["item_users"], positions, mask)
        ages = (timestamps[..., None] - gather_rows(context["item_times"], positions, mask)).astype(jnp.float32)
        K = users.shape[-1]
        table = self.user_embedding.embedding
        if table.shape[0] <= B * T * K:  # the user table is smaller than one copy per edge: index it
            graph = window_graph(jnp.concatenate([x.reshape(B * T, D), table.astype(x.dtype)]),
                                 (B * T + users).reshape(B * T, K), mask.reshape(B * T, K))
        else:
            graph = star_graph(x.reshape(B * T, D), self.user_embedding(users).reshape(B * T, K, D),
                               mask.reshape(B * T, K))
        out, attention = self.item_layer(graph, ages.reshape(-1))
        nodes = out.nodes[: B * T].reshape(B, T, D)
        if self.item_residual:
            nodes = nodes + x
        return nodes, attention.reshape(B, T, K, -1), users

    def user_nodes(self, nodes, items, timestamps):
        """Each position's user state: attention over the `history` positions q <= p of the same
        row. nodes float[B, T, D] -> (float[B, T, D], attention float[B, T, S, H], positions int32[T, S])."""
        B, T, D = nodes.shape
        S = min(self.history, T)
        offsets = jnp.arange(S) - (S - 1)  # -(S-1) .. 0, oldest first
        source = jnp.arange(T)[:, None] + offsets[None, :]  # [T, S]
        valid = (source >= 0)[None] & (items[:, jnp.clip(source, 0)] > 0) & (items[..., None] > 0)  # [B, T, S]
        source = jnp.clip(source, 0)
        ages = (timestamps[..., None] - timestamps[:, source]).astype(jnp.float32)
        flat = jnp.arange(B)[:, None, None] * T + source[None]  # [B, T, S] rows of nodes.reshape(B * T, D)
        graph = window_graph(nodes.reshape(B * T, D), flat.reshape(B * T, S), valid.reshape(B * T, S))
        out, attention = self.user_layer(graph, ages.reshape(-1))
        return out.nodes[: B * T].reshape(B, T, D), attention.reshape(B, T, S, -1), source

    def __call__(self, items, timestamps, context, deterministic: bool = True, explain: bool = False):
        """items, timestamps int32[B, T] (left-padded) -> float[B, T, D] (and, with explain, the attention)."""
        context = jax.tree_util.tree_map(jnp.asarray, context)  # NumPy at init, device arrays after
        padding = items > 0
        nodes, item_attention, neighbour_users = self.item_nodes(items, timestamps, context)
        nodes = self.input_dropout(nodes, deterministic=deterministic) * padding[..., None]
        x, user_attention, source = self.user_nodes(nodes, items, timestamps)
        if self.num_blocks:
            x = self.positions(x) * padding[..., None]
            for block in self.blocks:
                x, _ = block(x, padding, deterministic)
        x = self.final_norm(x) * padding[..., None]
        if not explain:
            return x
        return x, {"item_attention": item_attention, "neighbour_users": neighbour_users,
                   "user_attention": user_attention, "source": source}

    def two_hop_items_and_weights(self, details, users, query_times, context, last_only: bool = False):
        """The two-hop term's items int32[B, T', P*K*L] and weights float[B, T', P*K*L] (T' = 1
        with last_only): position p reads the item layer's neighbours at positions p-P+1 .. p
        and each one's last L training items strictly before query_times[:, p]."""
        neighbours = details["neighbour_users"]  # [B, T, K]
        P, L = self.two_hop_positions, self.two_hop_items
        B = neighbours.shape[0]
        if last_only:  # the last position reads lags 0 .. P-1 only
            neighbours = neighbours[:, -P:]
        # How much this user follows each of them: a sigmoid of a bilinear affinity + a bias per lag.
        # The affinity depends on (user, neighbour) only, so it is computed once per position's
        # neighbours ([B, T, K]) and then lag-stacked like them, not once per lag ([B, T, P, K, D]).
        query = self.hop_query(self.user_embedding(users))  # [B, D]
        affinity = jnp.einsum("bd,btkd->btk", query, self.user_embedding(neighbours))
        neighbours, affinity = lag_stack(neighbours, P), lag_stack(affinity, P)  # [B, T, P, K]
        if last_only:
            neighbours, affinity, query_times = neighbours[:, -1:], affinity[:, -1:], query_times[:, -1:]
        others = (neighbours > 0) & (neighbours != users[:, None, None, None])
        times = jnp.broadcast_to(query_times[:, :, None, None], neighbours.shape)
        positions, found = recent_before(context["user_offsets"], context["user_times"], neighbours, times, L)
        items = gather_rows(context["user_items"], positions, found & others[..., None])  # [B, T', P, K, L]
        share = jax.nn.sigmoid(affinity + self.hop_lag_bias[:, None])[..., None] * jnp.exp(self.hop_log_scale) / L
        weights = jnp.where(items > 0, share, 0.0)
        return items.reshape(B, items.shape[1], -1), weights.reshape(B, items.shape[1], -1)

    def scores(self, hidden, details, users, query_times, context, last_only: bool = False):
        """hidden float[B, T', D] -> logits float[B, T', W]: the tied item table, + the two-hop term."""
        logits = self.logits(hidden)
        if not self.uses_two_hop:
            return logits
        context = jax.tree_util.tree_map(jnp.asarray, context)
        items, weights = self.two_hop_items_and_weights(details, users, query_times, context, last_only)
        return logits + scatter_item_scores(items, weights, logits.shape[-1], logits.dtype)

    def logits_at_every_position(self, items, timestamps, users, query_times, context, deterministic: bool = True):
        """float[B, T, W]: what training needs (and what init traces, so every parameter exists)."""
        hidden, details = self(items, timestamps, context, deterministic, explain=True)
        return self.scores(hidden, details, users, query_times, context)


def lag_stack(x, lags: int):
    """x[B, T, ...] -> [B, T, lags, ...]: at [:, p, j] the value of position p - j (j = 0 is p
    itself), zeros before the sequence starts."""
    B, T = x.shape[:2]
    padded = jnp.concatenate([jnp.zeros((B, lags - 1) + x.shape[2:], x.dtype), x], axis=1)
    return jnp.stack([padded[:, lags - 1 - j: lags - 1 - j + T] for j in range(lags)], axis=2)


def make(config, info) -> nn.Module:
    return TGATRecommender(num_users=info.num_users, num_items=info.num_items, max_length=info.max_length,
                           item_rows=info.item_rows, hidden=config.hidden, num_heads=config.num_heads,
                           time_features=config.time_features, num_neighbours=config.num_neighbours,
                           history=config.history, num_blocks=config.num_blocks, dropout=config.dropout,
                           learn_time=config.learn_time, two_hop=config.two_hop,
                           two_hop_positions=config.two_hop_positions, two_hop_items=config.two_hop_items,
                           item_residual=config.item_residual)


def make_context(prepared, info, config) -> dict:
    """Each item's training events by time: item_offsets, item_users, item_times (relative s);
    for the two-hop term also each user's (`history_context`)."""
    lists = temporal_lists(prepared.split, "item")
    context = {"item_offsets": lists["offsets"], "item_users": lists["values"], "item_times": lists["times"]}
    if config.model.two_hop and config.model.num_neighbours:
        context |= history_context(prepared)
    return context


def init(module, rng, batch, *, context):
    return module.init(rng, batch["items"], batch["timestamps"], batch["users"], batch["timestamps"], context,
                       method="logits_at_every_position")


def losses(module, variables, batch, *, rng, step, context, config):
    query_times = jnp.maximum(batch["target_times"], batch["timestamps"])
    logits = module.apply(variables, batch["items"], batch["timestamps"], batch["users"], query_times, context,
                          deterministic=False, rngs={"dropout": rng}, method="logits_at_every_position")
    loss, count = full_softmax_loss(logits, batch["targets"], batch["weights"], module.num_items)
    return {"model": loss}, {"targets": count}


def encode(module, variables, batch, *, context, scoring=None):
    return module.apply(variables, batch["items"], batch["timestamps"], context)[:, -1]


def score(module, variables, batch, *, context, scoring=None):
    hidden, details = module.apply(variables, batch["items"], batch["timestamps"], context, explain=True)
    logits = module.apply(variables, hidden[:, -1:], details, batch["users"], next_query_times(batch), context,
                          last_only=True, method="scores")[:, 0]
    return logits.astype(jnp.float32)


def explain(module, variables, batch, *, context, scoring=None) -> dict:
    """The attention behind the last position: past items (item ids [B, S] and the user layer's
    weights averaged over heads) and neighbours (the users who used the last item just before,
    with the item layer's weights; absent when num_neighbours = 0), and with the two-hop term the
    items it recalls (what those users did last before the query time) with their score weights."""
    _, details = module.apply(variables, batch["items"], batch["timestamps"], context, explain=True)
    items = batch["items"][:, details["source"][-1]]  # [B, S]
    weights = details["user_attention"][:, -1].mean(-1)
    out = {"items": (items, jnp.where(items > 0, weights, 0.0))}
    if details["neighbour_users"] is not None:
        users = details["neighbour_users"][:, -1]
        out["neighbours"] = (users, jnp.where(users > 0, details["item_attention"][:, -1].mean(-1), 0.0))
    if module.uses_two_hop:
        recalled, shares = module.apply(variables, details, batch["users"], next_query_times(batch),
                                        jax.tree_util.tree_map(jnp.asarray, context), last_only=True,
                                        method="two_hop_items_and_weights")
        out["recalled"] = (recalled[:, 0], shares[:, 0])
    return out


SPEC = ModelSpec("tgat", default_config, make, losses, score, init=init, encode=encode, explain=explain,
                 make_context=make_context)
