"""LightGCN (He et al., SIGIR 2020): user and item embeddings smoothed over the user-item graph,
and its social variant, which adds a user-user relation graph to the propagation (`model.relation`).

E^(k+1) = D^-1/2 A D^-1/2 E^(k) over the training interactions (no weights, no nonlinearity); the
final embedding is the mean of E^(0..K). Trained with BPR on (user, item, sampled negative) pairs
plus L2 on the batch's layer-0 embeddings. The graph is the run-wide context (training events
only); at evaluation the propagation runs once (`prepare_scoring`), not per batch.

`model.propagation` picks how the graph is held: 'edges' (gathers and scatters over the edge
list), 'dense' (the user-item block as a dense matrix: each layer two matmuls,
`lightgcn_propagate_bipartite`; same result) or 'auto' (dense when the U x I matrix has at most
2^26 cells and at least 2% of them are training pairs, where the two cross on CPU:
scripts/bench_lightgcn_propagation.py; on ML-1M a training step is 1.4x faster, Foursquare's
sparser graph stays on edges).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from stjax.graphs import interaction_graph, normalized_adjacency
from stjax.graphs.context import RelationReport, relation_edges
from stjax.layers import lightgcn_propagate, lightgcn_propagate_bipartite
from stjax.models.base import ModelSpec, config_keys
from stjax.models.shared import item_embedding


def default_config() -> ml_collections.ConfigDict:
    # relation: 'none' (plain LightGCN) or a user-user graph added to the propagation (the social
    # variant): 'given' (a trust edge list, `user user [weight]`, in relation_file), 'co_interaction'
    # (same item within relation_window_s), 'region' (same most frequent region) or 'proximity'
    # (mean locations within relation_radius_km); see stjax.graphs. propagation: auto | dense | edges.
    return ml_collections.ConfigDict(dict(name="lightgcn", hidden=64, num_layers=3, reg_weight=1e-4, relation="none",
                                          relation_file="", relation_window_s=86_400, relation_radius_km=1.0,
                                          propagation="auto"))


PROPAGATIONS = ("auto", "dense", "edges")
DENSE_MAX_CELLS = 2**26
DENSE_MIN_FILL = 0.02


class LightGCN(nn.Module):
    num_users: int
    num_items: int
    item_rows: int
    hidden: int = 64
    num_layers: int = 3

    def setup(self):
        init = nn.with_logical_partitioning(nn.initializers.normal(0.1), ("users", "embed"))
        self.user_embedding = nn.Embed(self.num_users + 1, self.hidden, embedding_init=init)
        self.item_embedding = item_embedding(self.item_rows, self.hidden, std=0.1)

    def propagate(self, graph: dict):
        """graph: the run's context, either senders, receivers int32[E] over nodes users 0..U then
        items U+1+(0..W-1) ('edges'), or pair_users int32[P] (0..U), pair_items int32[P] (0..W-1)
        and optional social_senders, social_receivers int32[S] (0..U) ('dense').
        Returns (users float[U+1, D], items float[W, D])."""
        users, items = self.user_embedding.embedding, self.item_embedding.embedding
        if "pair_users" in graph:
            return lightgcn_propagate_bipartite(users, items, graph["pair_users"], graph["pair_items"],
                                                self.num_layers, graph.get("social_senders"),
                                                graph.get("social_receivers"))
        final, _ = lightgcn_propagate(jnp.concatenate([users, items]), graph["senders"], graph["receivers"],
                                      self.num_layers)
        return final[: self.num_users + 1], final[self.num_users + 1:]

    def ego(self, users, items):
        """Layer-0 embeddings: users int32[...] -> float[..., D]; items int32[...] -> float[..., D]."""
        return self.user_embedding(users), self.item_embedding(items)

    def __call__(self, users, items, graph):
        user_table, item_table = self.propagate(graph)
        return user_table[users], item_table[items]


def _settings(config) -> None:
    if config.propagation not in PROPAGATIONS:
        raise ValueError(f"model.propagation={config.propagation!r}; expected one of {', '.join(PROPAGATIONS)}")


def make(config, info) -> nn.Module:
    return LightGCN(num_users=info.num_users, num_items=info.num_items, item_rows=info.item_rows,
                    hidden=config.hidden, num_layers=config.num_layers)


def dense_propagation(propagation: str, num_pairs: int, user_rows: int, item_rows: int) -> bool:
    """Whether `propagation` ('auto' | 'dense' | 'edges') holds the user-item block densely."""
    if propagation == "auto":
        cells = user_rows * item_rows
        return cells <= DENSE_MAX_CELLS and num_pairs >= DENSE_MIN_FILL * cells
    return propagation == "dense"


def make_context(prepared, info, config) -> dict:
    """The training user-item graph (`stjax.graphs`), deduplicated, and the relation graph if any:
    'edges': senders, receivers int32[2P + S] (both directions, then the relation's edges) over
    users 0..U then items U+1+i; 'dense': pair_users, pair_items int32[P] and, with a relation,
    social_senders, social_receivers int32[S] (see `LightGCN.propagate`)."""
    senders, receivers, _ = normalized_adjacency(interaction_graph(prepared.split), info.num_users, info.num_items)
    model = config.model
    social_senders = social_receivers = np.zeros(0, np.int32)
    if model.relation != "none":
        report = RelationReport(model.relation)
        social_senders, social_receivers, _ = relation_edges(
            prepared.split, model.relation, file=model.relation_file, window_s=model.relation_window_s,
            radius_km=model.relation_radius_km, report=report)
        report.announce()
    num_pairs = len(senders) // 2    # normalized_adjacency lists user -> item first, then the reverse
    if dense_propagation(model.propagation, num_pairs, info.num_users + 1, info.item_rows):
        context = {"pair_users": senders[:num_pairs].astype(np.int32),
                   "pair_items": (receivers[:num_pairs] - (info.num_users + 1)).astype(np.int32)}
        if model.relation != "none":
            context.update(social_senders=social_senders.astype(np.int32),
                           social_receivers=social_receivers.astype(np.int32))
        return context
    # User nodes keep their ids (0..U): the relation edges join the user side of the graph.
    return {"senders": np.concatenate([senders, social_senders]).astype(np.int32),
            "receivers": np.concatenate([receivers, social_receivers]).astype(np.int32)}


def init(module, rng, batch, *, context):
    return module.init(rng, batch["users"], batch["items"], context)


def losses(module, variables, batch, *, rng, step, context, config):
    """BPR: -log sigmoid(u.i - u.j) with the first sampled negative j, + reg_weight * L2 / 2 of the
    batch's layer-0 embeddings, both averaged over the batch's real rows."""
    users, items, negatives = batch["users"], batch["items"], batch["negatives"][:, 0]
    user_table, item_table = module.apply(variables, context, method="propagate")
    u, i, j = user_table[users], item_table[items], item_table[negatives]
    margin = jnp.sum(u * i, -1) - jnp.sum(u * j, -1)
    ego_u, ego_i = module.apply(variables, users, items, method="ego")
    _, ego_j = module.apply(variables, users, negatives, method="ego")
    l2 = 0.5 * (jnp.sum(ego_u**2, -1) + jnp.sum(ego_i**2, -1) + jnp.sum(ego_j**2, -1))
    weights = batch["weights"]
    count = weights.sum()
    bpr = jnp.sum(jax.nn.softplus(-margin) * weights) / jnp.maximum(count, 1.0)
    reg = jnp.sum(l2 * weights) / jnp.maximum(count, 1.0)
    return {"model": bpr + config.reg_weight * reg}, {"targets": count, "bpr": bpr}


def prepare_scoring(module, variables, *, context):
    user_table, item_table = module.apply(variables, context, method="propagate")
    return {"users": user_table, "items": item_table}


def encode(module, variables, batch, *, context, scoring):
    return scoring["users"][batch["users"]]


def score(module, variables, batch, *, context, scoring):
    return encode(module, variables, batch, context=context, scoring=scoring) @ scoring["items"].T


SPEC = ModelSpec("lightgcn", default_config, make, losses, score, batch_kind="pairs", init=init,
                 prepare_scoring=prepare_scoring, encode=encode, make_context=make_context,
                 config_checks=config_keys(then=_settings))
