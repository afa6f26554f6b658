"""LightGCN (He et al., SIGIR 2020): user and item embeddings smoothed over the user-item graph,
and its social variant, which adds a user-user relation graph to the propagation (`model.relation`).

E^(k+1) = D^-1/2 A D^-1/2 E^(k) over the training interactions (no weights, no nonlinearity); the
final embedding is the mean of E^(0..K). Trained with BPR on (user, item, sampled negative) pairs
plus L2 on the batch's layer-0 embeddings. The graph is the run-wide context (training events
only); at evaluation the propagation runs once (`prepare_scoring`), not per batch.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from stjax.graphs import interaction_graph, normalized_adjacency
from stjax.graphs.context import RelationReport, relation_edges
from stjax.layers import lightgcn_propagate
from stjax.models.base import ModelSpec
from stjax.models.shared import item_embedding


def default_config() -> ml_collections.ConfigDict:
    # relation: 'none' (plain LightGCN) or a user-user graph added to the propagation (the social
    # variant): 'given' (a trust edge list, `user user [weight]`, in relation_file), 'co_interaction'
    # (same item within relation_window_s), 'region' (same most frequent region) or 'proximity'
    # (mean locations within relation_radius_km); see stjax.graphs.
    return ml_collections.ConfigDict(dict(name="lightgcn", hidden=64, num_layers=3, reg_weight=1e-4, relation="none",
                                          relation_file="", relation_window_s=86_400, relation_radius_km=1.0))


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

    def propagate(self, senders, receivers):
        """senders, receivers: int32[E] over nodes users 0..U then items U+1+(0..W-1).
        Returns (users float[U+1, D], items float[W, D])."""
        nodes = jnp.concatenate([self.user_embedding.embedding, self.item_embedding.embedding])
        final, _ = lightgcn_propagate(nodes, senders, receivers, self.num_layers)
        return final[: self.num_users + 1], final[self.num_users + 1:]

    def ego(self, users, items):
        """Layer-0 embeddings: users int32[...] -> float[..., D]; items int32[...] -> float[..., D]."""
        return self.user_embedding(users), self.item_embedding(items)

    def __call__(self, users, items, senders, receivers):
        user_table, item_table = self.propagate(senders, receivers)
        return user_table[users], item_table[items]


def make(config, info) -> nn.Module:
    return LightGCN(num_users=info.num_users, num_items=info.num_items, item_rows=info.item_rows,
                    hidden=config.hidden, num_layers=config.num_layers)


def make_context(prepared, info, config) -> dict:
    """The training user-item graph (`stjax.graphs`), deduplicated, both directions: senders,
    receivers int32[2E] over users 0..U then items U+1+i."""
    senders, receivers, _ = normalized_adjacency(interaction_graph(prepared.split), info.num_users, info.num_items)
    model = config.model
    if model.relation != "none":
        report = RelationReport(model.relation)
        social_senders, social_receivers, _ = relation_edges(
            prepared.split, model.relation, file=model.relation_file, window_s=model.relation_window_s,
            radius_km=model.relation_radius_km, report=report)
        report.announce()
        # User nodes keep their ids (0..U): the relation edges join the user side of the graph.
        senders = np.concatenate([senders, social_senders])
        receivers = np.concatenate([receivers, social_receivers])
    return {"senders": senders.astype(np.int32), "receivers": receivers.astype(np.int32)}


def init(module, rng, batch, *, context):
    return module.init(rng, batch["users"], batch["items"], context["senders"], context["receivers"])


def losses(module, variables, batch, *, rng, step, context, config):
    """BPR: -log sigmoid(u.i - u.j) with the first sampled negative j, + reg_weight * L2 / 2 of the
    batch's layer-0 embeddings, both averaged over the batch's real rows."""
    users, items, negatives = batch["users"], batch["items"], batch["negatives"][:, 0]
    user_table, item_table = module.apply(variables, context["senders"], context["receivers"], method="propagate")
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
    user_table, item_table = module.apply(variables, context["senders"], context["receivers"], method="propagate")
    return {"users": user_table, "items": item_table}


def encode(module, variables, batch, *, context, scoring):
    return scoring["users"][batch["users"]]


def score(module, variables, batch, *, context, scoring):
    return encode(module, variables, batch, context=context, scoring=scoring) @ scoring["items"].T


SPEC = ModelSpec("lightgcn", default_config, make, losses, score, batch_kind="pairs", init=init,
                 prepare_scoring=prepare_scoring, encode=encode, make_context=make_context)
