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


def _context(relation):
    config = tiny(base_config("lightgcn"))
    config.model.relation = relation
    run = build_run(config, log=lambda m: None)
    return run, {key: np.asarray(value) for key, value in run.context.items()}


@pytest.mark.parametrize("relation", ["none", "co_interaction"])
def test_graph_holds_training_pairs_and_the_relation(relation):
    run, context = _context(relation)
    users = run.info.num_users
    senders, receivers = context["senders"], context["receivers"]
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


def test_social_variant_trains_and_evaluates(tmp_path):
    config = load_config(str(ROOT / "experiments" / "lightgcn_ml100k.py") + ":tiny",
                         ["--config.model.relation=region", "--config.train.num_epochs=2"])
    results = train_and_evaluate(config, tmp_path, log=lambda m: None, progress=False)
    assert 0.0 <= results["test"]["ndcg@10"] <= 1.0 and results["timings"]["train_step_compiles"] == 1
