"""LSTM + GAT geo fusion: a spatio-temporal next-item (next-place) recommender.

Three parts, fused at every position p of the user's sequence:
  sequence  the items through an LSTM or GRU whose inputs carry the interval since the previous
            event (log2-minute buckets);
  social    multi-head GAT (`stjax.layers.GAT`, on a jraph star graph) from the sequence state
            over the user's K strongest relation neighbours (`model.relation`: given trust file,
            co-interaction, same region or proximity; training events only), each neighbour's
            state being its user embedding plus the mean of its L most recent training items
            strictly before the time of position p (read on device from a time-sorted CSR), in
            the spirit of DGRec (Song et al., WSDM 2019);
  geo       where position p happened: `sinusoidal_latlon` of the item's location, an H3-cell
            embedding and the distance band from the previous place;
fused by concatenation, gating or attention over the parts (`model.fusion`). Scores are dot
products with the tied item table plus, for located data, a learned prior over the distance
band from the current place to each candidate (`model.distance_term`). Ablations: relation
'none' drops the social part, use_geo=False the geo part and the distance prior.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from stjax.graphs.context import gather_rows, recent_before
from stjax.layers import GAT, RNN, DistanceBucketEmbedding, GeoCellEmbedding, sinusoidal_latlon
from stjax.layers.encodings import haversine
from stjax.models.base import ModelSpec, config_keys
from stjax.models.shared import TiedItemOutput, full_softmax_loss, item_embedding
from stjax.models.shared_graph import (
    INTERVAL_BUCKETS,
    DistancePrior,
    first_positions,
    geography_context,
    history_context,
    interval_buckets,
    next_query_times,
    relation_context,
    scatter_item_scores,
    star_graph,
    unit_vectors,
)

FUSIONS = ("concat", "gate", "attention")


def default_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(
        name="lstm_gat", hidden=64, cell="lstm", num_heads=2, dropout=0.2,
        # social part: relation in none|given|co_interaction|region|proximity (stjax.graphs);
        # relation_file: the trust edge list for 'given'.
        relation="co_interaction", relation_file="", relation_window_s=86_400, relation_radius_km=1.0,
        # social_copy: each neighbour's recent items also score directly with its GAT weight (a
        # pointer to what the neighbours just did, scaled by a learned factor).
        num_neighbours=8, neighbour_items=3, social_copy=True,
        # geo part and the distance prior over candidates; cells are H3 at cell_resolution.
        use_geo=True, distance_term=True, cell_resolution=7, latlon_features=32,
        fusion="gate"))


class LSTMGAT(TiedItemOutput, nn.Module):
    num_users: int
    num_items: int
    item_rows: int
    hidden: int = 64
    cell: str = "lstm"
    num_heads: int = 2
    dropout: float = 0.2
    use_graph: bool = True
    num_neighbours: int = 8
    neighbour_items: int = 3
    use_geo: bool = True
    distance_term: bool = True
    social_copy: bool = True
    latlon_features: int = 32
    fusion: str = "gate"

    def setup(self):
        D = self.hidden
        self.item_embedding = item_embedding(self.item_rows, D)
        self.interval_embedding = nn.Embed(INTERVAL_BUCKETS + 1, D, embedding_init=nn.initializers.normal(0.02))
        self.rnn = RNN(cell=self.cell, hidden=D, forget_bias=1.0 if self.cell == "lstm" else 0.0)
        self.input_dropout = nn.Dropout(self.dropout)
        if self.use_graph:
            self.user_embedding = nn.Embed(self.num_users + 1, D, embedding_init=nn.initializers.normal(0.02))
            self.gat = GAT(D // self.num_heads, num_heads=self.num_heads, concat=True, self_loops=True)
            if self.social_copy:
                # exp(log scale): Adam moves a log scale multiplicatively, so the term can reach the
                # size of the logits within a few hundred steps; it starts at 10 (a boost of ~0.4
                # logits per item for K = 8, L = 3).
                self.copy_log_scale = self.param("copy_log_scale", nn.initializers.constant(np.log(10.0)), ())
        if self.use_geo:
            self.latlon = nn.Dense(D)
            self.cells = GeoCellEmbedding(self.item_rows, D)
            self.step_distance = DistanceBucketEmbedding(D)
            if self.distance_term:
                self.distance_prior = DistancePrior()
        parts = 1 + self.use_graph + self.use_geo
        if parts > 1:
            if self.fusion == "concat":
                self.fuse = nn.Dense(D)
            elif self.fusion == "gate":
                self.gates = [nn.Dense(D) for _ in range(parts - 1)]
            else:
                self.query = nn.Dense(D)
                self.keys = nn.Dense(D)

    def social(self, state, items, timestamps, users, context, deterministic):
        """GAT over each position's relation neighbours and what they did before `timestamps`
        (the query times: when the next item is asked for). state float[B, T, D] ->
        (float[B, T, D], attention float[B, T, K, H], neighbours int32[B, T, K], their recent
        items int32[B, T, K, L])."""
        B, T, D = state.shape
        neighbours = context["neighbours"][users][:, : self.num_neighbours]  # [B, K]
        K = neighbours.shape[1]
        nodes = jnp.broadcast_to(neighbours[:, None, :], (B, T, K))
        times = jnp.broadcast_to(timestamps[:, :, None], (B, T, K))
        positions, recent = recent_before(context["user_offsets"], context["user_times"], nodes, times,
                                          self.neighbour_items)  # [B, T, K, L]
        recent_items = gather_rows(context["user_items"], positions, recent & (nodes[..., None] > 0))
        count = (recent_items > 0).sum(-1, keepdims=True)
        summary = self.item_embedding(recent_items).sum(-2) / jnp.maximum(count, 1)
        neighbour_states = self.user_embedding(nodes) + summary  # [B, T, K, D]
        mask = (nodes > 0) & (items[..., None] > 0)
        graph = star_graph(state.reshape(B * T, D), neighbour_states.reshape(B * T, K, D), mask.reshape(B * T, K))
        out, attention = self.gat(graph, deterministic=deterministic)
        attention = attention[: B * T * K].reshape(B, T, K, -1)
        return out.nodes[: B * T].reshape(B, T, D), attention, nodes, recent_items

    def geo(self, items, context):
        """Where each position happened: float[B, T, D] (zeros where the item has no location)."""
        latitude, longitude = context["latitude"][items], context["longitude"][items]
        known = context["located"][items] & (items > 0)
        previous_known = jnp.concatenate([jnp.zeros_like(known[:, :1]), known[:, :-1]], axis=1)
        previous_lat = jnp.concatenate([latitude[:, :1], latitude[:, :-1]], axis=1)
        previous_lon = jnp.concatenate([longitude[:, :1], longitude[:, :-1]], axis=1)
        step = haversine(previous_lat, previous_lon, latitude, longitude)
        step_code = self.step_distance(step) * (known & previous_known)[..., None]
        features = self.latlon(sinusoidal_latlon(latitude, longitude, self.latlon_features))
        return (features + self.cells(context["cell"][items]) + step_code) * known[..., None]

    def combine(self, parts):
        """Fuses [sequence, *others] (each float[B, T, D]) -> (float[B, T, D], weights float[B, T, P] or None)."""
        if len(parts) == 1:
            return parts[0], None
        if self.fusion == "concat":
            return self.fuse(jnp.concatenate(parts, -1)), None
        if self.fusion == "gate":
            joined = jnp.concatenate(parts, -1)
            gates = [jax.nn.sigmoid(gate(joined)) for gate in self.gates]
            return parts[0] + sum(g * part for g, part in zip(gates, parts[1:])), jnp.stack(
                [jnp.ones(parts[0].shape[:-1])] + [g.mean(-1) for g in gates], -1)
        stacked = jnp.stack(parts, -2)  # [B, T, P, D]
        logits = jnp.einsum("btd,btpd->btp", self.query(parts[0]), self.keys(stacked)) / jnp.sqrt(self.hidden)
        weights = jax.nn.softmax(logits, -1)
        return jnp.einsum("btp,btpd->btd", weights, stacked), weights

    def __call__(self, items, timestamps, users, context, deterministic: bool = True, query_times=None,
                 last_only: bool = False):
        """items, timestamps int32[B, T] (left-padded), users int32[B] -> (fused float[B, T, D],
        details: the attention weights, neighbours and their recent items). query_times int32[B, T]: when the
        item after each position is asked for (default: the position's own time); neighbours'
        training events strictly before it feed the social part. last_only: the social, geo and
        fusion parts only at the last position (T = 1 in the outputs), all that scoring reads."""
        context = jax.tree_util.tree_map(jnp.asarray, context)  # NumPy at init, device arrays after
        padding = items > 0
        intervals = jnp.where(first_positions(items), 0, interval_buckets(timestamps)) * padding
        x = self.item_embedding(items) + self.interval_embedding(intervals)
        x = self.input_dropout(x, deterministic=deterministic)
        state, _ = self.rnn(x, padding, deterministic)
        query_times = timestamps if query_times is None else jnp.maximum(query_times, timestamps)
        geo = self.geo(items, context) if self.use_geo else None  # reads the previous position too
        if last_only:
            state, items, query_times, padding = state[:, -1:], items[:, -1:], query_times[:, -1:], padding[:, -1:]
            geo = None if geo is None else geo[:, -1:]
        parts, details = [state], {}
        if self.use_graph:
            social, attention, neighbours, recent = self.social(state, items, query_times, users, context,
                                                                deterministic)
            parts.append(social)
            details |= {"neighbour_attention": attention, "neighbours": neighbours, "neighbour_items": recent}
        if geo is not None:
            parts.append(geo)
        fused, weights = self.combine(parts)
        if weights is not None:
            details["part_weights"] = weights
        return fused * padding[..., None], details

    def logits_at_every_position(self, items, timestamps, users, context, deterministic: bool = True,
                                 query_times=None):
        """float[B, T, W]: what training needs (and what init traces, so every parameter exists)."""
        hidden, details = self(items, timestamps, users, context, deterministic, query_times=query_times)
        return self.scores(hidden, items, context, details)

    def scores(self, hidden, items, context, details):
        """hidden float[B, T, D], the current places items int32[B, T], the details of __call__
        -> float[B, T, W]: dot products with the item table, + the distance prior, + the social
        copy term (each neighbour's recent items get its GAT weight / L, times a learned scale)."""
        context = jax.tree_util.tree_map(jnp.asarray, context)
        logits = self.logits(hidden)
        if self.use_graph and self.social_copy:
            B, T, W = logits.shape
            recent = details["neighbour_items"]  # [B, T, K, L]
            weights = details["neighbour_attention"].mean(-1)  # [B, T, K]
            share = jnp.where(recent > 0, weights[..., None] / recent.shape[-1], 0.0)
            copy = scatter_item_scores(recent.reshape(B, T, -1), share.reshape(B, T, -1), W, logits.dtype)
            logits = logits + jnp.exp(self.copy_log_scale) * copy
        if self.use_geo and self.distance_term:
            places = unit_vectors(context["latitude"], context["longitude"])  # [W, 3]
            origin = places[items]
            logits = logits + self.distance_prior(origin, context["located"][items] & (items > 0), places,
                                                  context["located"])
        return logits


def _settings(config) -> None:
    """What `make` can build (ValueError otherwise); `config_checks` runs it before any data loads."""
    if config.fusion not in FUSIONS:
        raise ValueError(f"model.fusion={config.fusion!r}; expected one of {', '.join(FUSIONS)}")
    if config.latlon_features % 4:
        raise ValueError(f"model.latlon_features={config.latlon_features}; expected a multiple of 4 (sin and cos "
                         f"of latitude and longitude)")
    if config.cell_resolution > 15:
        raise ValueError(f"model.cell_resolution={config.cell_resolution}; H3 resolutions are 0..15")


def make(config, info) -> nn.Module:
    return LSTMGAT(num_users=info.num_users, num_items=info.num_items, item_rows=info.item_rows,
                   hidden=config.hidden, cell=config.cell, num_heads=config.num_heads, dropout=config.dropout,
                   use_graph=config.relation != "none", num_neighbours=config.num_neighbours,
                   neighbour_items=config.neighbour_items, use_geo=config.use_geo,
                   distance_term=config.distance_term, social_copy=config.social_copy, latlon_features=config.latlon_features, fusion=config.fusion)


def make_context(prepared, info, config) -> dict:
    model = config.model
    return (relation_context(prepared, info, model) | history_context(prepared)
            | geography_context(prepared, info, int(model.cell_resolution)))


def init(module, rng, batch, *, context):
    return module.init(rng, batch["items"], batch["timestamps"], batch["users"], context,
                       method="logits_at_every_position")


def losses(module, variables, batch, *, rng, step, context, config):
    logits = module.apply(variables, batch["items"], batch["timestamps"], batch["users"], context,
                          deterministic=False, rngs={"dropout": rng}, method="logits_at_every_position",
                          query_times=batch["target_times"])
    loss, count = full_softmax_loss(logits, batch["targets"], batch["weights"], module.num_items)
    return {"model": loss}, {"targets": count}


def encode(module, variables, batch, *, context, scoring=None):
    return module.apply(variables, batch["items"], batch["timestamps"], batch["users"], context,
                        query_times=next_query_times(batch), last_only=True)[0][:, -1]


def score(module, variables, batch, *, context, scoring=None):
    hidden, details = module.apply(variables, batch["items"], batch["timestamps"], batch["users"], context,
                                   query_times=next_query_times(batch), last_only=True)
    logits = module.apply(variables, hidden, batch["items"][:, -1:], context, details, method="scores")[:, 0]
    return logits.astype(jnp.float32)


def explain(module, variables, batch, *, context, scoring=None) -> dict:
    """The attention behind the last position: neighbours (user ids [B, K] and GAT weights
    averaged over heads [B, K]; 0 where absent), the places those neighbours visited recently
    (item ids [B, K*L], each carrying its neighbour's weight / L), and the fusion weights of the
    parts (sequence, social, geo) when the fusion is attention or gating."""
    _, details = module.apply(variables, batch["items"], batch["timestamps"], batch["users"], context,
                              query_times=next_query_times(batch), last_only=True)
    out = {}
    if "neighbours" in details:
        weights = details["neighbour_attention"][:, -1].mean(-1)  # [B, K]
        neighbours = details["neighbours"][:, -1]
        weights = jnp.where(neighbours > 0, weights, 0.0)
        recent = details["neighbour_items"][:, -1]  # [B, K, L]
        L = recent.shape[-1]
        out["neighbours"] = (neighbours, weights)
        out["places"] = (recent.reshape(recent.shape[0], -1),
                         jnp.where(recent > 0, weights[..., None] / L, 0.0).reshape(recent.shape[0], -1))
    if "part_weights" in details:
        out["parts"] = (("sequence", "social", "geo")[: details["part_weights"].shape[-1]] if module.use_graph
                        else ("sequence", "geo"), details["part_weights"][:, -1])
    return out


SPEC = ModelSpec("lstm_gat", default_config, make, losses, score, init=init, encode=encode, explain=explain,
                 make_context=make_context, config_checks=config_keys(then=_settings))
