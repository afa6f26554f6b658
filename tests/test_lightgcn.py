"""LightGCN's graph context: training interactions only, and the social variant's user-user edges."""

from pathlib import Path

import numpy as np
import pytest

from stjax.config import base_config, load_config, tiny
from stjax.data.splits import TRAIN
from stjax.graphs import user_relation_graph
from stjax.train import train_and_evaluate
from stjax.train.loop import build_run

ROOT = Path(__file__).resolve().parents[1]


def _context(relation, propagation="auto"):
    config = tiny(base_config("lightgcn"))
    config.model.relation = relation
    config.model.propagation = propagation
    run = build_run(config, log=lambda m: None)
    return run, {key: np.asarray(value) for key, value in run.context.items()}


def graph_edges(context, users):
    """The directed edge list either context form stands for (users 0..U, items U+1+i)."""
    if "senders" in context:
        return context["senders"], context["receivers"]
    pair_users, pair_items = context["pair_users"], context["pair_items"] + users + 1
    social_senders = context.get("social_senders", np.zeros(0, np.int32))
    social_receivers = context.get("social_receivers", np.zeros(0, np.int32))
    return (np.concatenate([pair_users, pair_items, social_senders]),
            np.concatenate([pair_items, pair_users, social_receivers]))


@pytest.mark.parametrize("propagation", ["dense", "edges"])
@pytest.mark.parametrize("relation", ["none", "co_interaction"])
def test_graph_holds_training_pairs_and_the_relation(relation, propagation):
    run, context = _context(relation, propagation)
    assert ("pair_users" in context) == (propagation == "dense")
    users = run.info.num_users
    senders, receivers = graph_edges(context, users)
    split = run.prepared.split
    rows = split.part == TRAIN
    training = set(zip(split.log.user[rows].tolist(), (split.log.item[rows] + users + 1).tolist()))
    user_item = {(s, r) for s, r in zip(senders.tolist(), receivers.tolist()) if s <= users < r}
    assert user_item == training  # every training pair once, nothing from validation or test
    item_user = {(r, s) for s, r in zip(senders.tolist(), receivers.tolist()) if r <= users < s}
    assert item_user == training  # both directions
    user_user = sorted((s, r) for s, r in zip(senders.tolist(), receivers.tolist()) if s <= users and r <= users)
    if relation == "none":
        assert user_user == []
    else:
        expected_senders, expected_receivers, _ = user_relation_graph(split, "co_interaction", window_s=86_400)
        assert user_user == sorted(zip(expected_senders.tolist(), expected_receivers.tolist()))
        assert len(user_user) > 0


@pytest.mark.parametrize("relation", ["none", "co_interaction"])
def test_dense_and_edge_propagation_give_the_same_tables(relation):
    """The two context forms hold the same graph: with the same parameters, the propagated user and
    item tables (what training and scoring read) are equal."""
    import jax

    from stjax.models import lightgcn

    tables = {}
    for propagation in ("dense", "edges"):
        run, context = _context(relation, propagation)
        variables = {"params": run.state.params}
        tables[propagation] = run.module.apply(variables, context, method="propagate")
    for dense, edges in zip(tables["dense"], tables["edges"]):
        np.testing.assert_allclose(np.asarray(dense), np.asarray(edges), atol=1e-5)
    assert jax.tree.structure(tables["dense"]) == jax.tree.structure(tables["edges"])
    # 'auto': dense for a matrix of at most 2^26 cells with at least 2% filled, else edges.
    assert lightgcn.dense_propagation("auto", 990_000, 6041, 3707)          # ML-1M: 4.4% filled
    assert not lightgcn.dense_propagation("auto", 80_000, 1084, 5136)       # 1.4% filled: edges
    assert not lightgcn.dense_propagation("auto", 10**8, 200_000, 50_000)   # too many cells
    assert lightgcn.dense_propagation("dense", 1, 10**6, 10**6)
    assert not lightgcn.dense_propagation("edges", 10, 2, 5)


def test_social_variant_trains_and_evaluates(tmp_path):
    config = load_config(str(ROOT / "experiments" / "lightgcn_ml100k.py") + ":tiny",
                         ["--config.model.relation=region", "--config.train.num_epochs=2"])
    results = train_and_evaluate(config, tmp_path, log=lambda m: None, progress=False)
    assert 0.0 <= results["test"]["ndcg@10"] <= 1.0 and results["timings"]["train_step_compiles"] == 1
