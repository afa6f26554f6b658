"""The graph models end to end: no held-out event reaches a score, the CLI explains with the
model's own attention, and clear one-line errors where a model has nothing to explain."""

import json
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stjax.compiles import CompileCounter
from stjax.config import base_config, tiny
from stjax.data import TEST, VALID
from stjax.train.loop import build_run

ROOT = Path(__file__).resolve().parent.parent


def _run(name, **model):
    config = tiny(base_config(name))
    with config.unlocked():
        for key, value in model.items():
            config.model[key] = value
    return build_run(config, log=lambda m: None)


# What each graph model's context must hold (so that the checks below cannot pass vacuously).
CONTEXT_KEYS = {"lstm_gat": {"user_offsets", "neighbours", "latitude"}, "tgat": {"user_offsets", "item_offsets"},
                "fusion": {"senders"}}


@pytest.mark.parametrize("name", ["lstm_gat", "tgat", "fusion"])
def test_context_holds_no_validation_or_test_event(name):
    """Every event a graph model can read through its context is a training event: the user-time
    and item-time lists, the graph edges and lstm_gat's relation neighbours (co-interaction,
    recounted here by brute force over training event pairs) match the training part exactly."""
    run = _run(name)
    assert CONTEXT_KEYS[name] <= set(run.context)
    split, log = run.prepared.split, run.prepared.log
    held_out = (split.part == VALID) | (split.part == TEST)
    relative = log.timestamp - log.timestamp.min()
    held = set(zip(log.user[held_out].tolist(), log.item[held_out].tolist(), relative[held_out].tolist()))
    context = {key: np.asarray(value) for key, value in run.context.items()}
    events = set()
    if "user_offsets" in context:
        offsets = context["user_offsets"]
        for user in range(1, len(offsets) - 1):
            rows = slice(offsets[user], offsets[user + 1])
            events |= {(user, i, t) for i, t in zip(context["user_items"][rows].tolist(),
                                                    context["user_times"][rows].tolist())}
    if "item_offsets" in context:
        offsets = context["item_offsets"]
        for item in range(1, len(offsets) - 1):
            rows = slice(offsets[item], offsets[item + 1])
            events |= {(u, item, t) for u, t in zip(context["item_users"][rows].tolist(),
                                                    context["item_times"][rows].tolist())}
    if "user_offsets" in context or "item_offsets" in context:
        train = ~held_out
        assert events == set(zip(log.user[train].tolist(), log.item[train].tolist(), relative[train].tolist()))
        assert not events & held
    if "neighbours" in context:  # co-interaction within the window, training events only
        train = np.flatnonzero(~held_out)
        window = int(run.config.model.relation_window_s)
        weights = {}
        for item in np.unique(log.item[train]):
            rows = train[log.item[train] == item]
            for a, x in enumerate(rows):
                for y in rows[a + 1:]:
                    if log.user[x] != log.user[y] and abs(int(log.timestamp[x]) - int(log.timestamp[y])) <= window:
                        for pair in ((log.user[x], log.user[y]), (log.user[y], log.user[x])):
                            weights[pair] = weights.get(pair, 0) + 1
        table = context["neighbours"]
        K = table.shape[1]
        for user in range(1, log.num_users + 1):
            ranked = sorted((-w, s) for (s, r), w in weights.items() if r == user)[:K]
            assert table[user].tolist() == [s for _, s in ranked] + [0] * (K - len(ranked)), user
        assert np.count_nonzero(table) > log.num_users  # the tiny data gives most users several neighbours
    if "latitude" in context:  # an item sits at the mean place of its training events (unit-vector mean)
        train = ~held_out
        for item in range(1, log.num_items + 1):
            rows = train & (log.item == item) & np.isfinite(log.latitude) & np.isfinite(log.longitude)
            assert bool(context["located"][item]) == bool(rows.any()), item
            if rows.any():
                lat, lon = np.radians(log.latitude[rows]), np.radians(log.longitude[rows])
                x, y, z = (np.cos(lat) * np.cos(lon)).mean(), (np.cos(lat) * np.sin(lon)).mean(), np.sin(lat).mean()
                expected = np.degrees([np.arctan2(z, np.hypot(x, y)), np.arctan2(y, x)])
                np.testing.assert_allclose([context["latitude"][item], context["longitude"][item]], expected,
                                           atol=1e-4)
        assert context["located"][1:log.num_items + 1].sum() > log.num_items // 2
    if "senders" in context:  # the LightGCN view: user-item pairs of training events only
        users = run.info.num_users
        pairs = {(s, r - users - 1) for s, r in zip(context["senders"].tolist(), context["receivers"].tolist())
                 if s <= users < r}
        train_pairs = set(zip(log.user[~held_out].tolist(), log.item[~held_out].tolist()))
        assert pairs == train_pairs


def test_lstm_gat_scores_ignore_neighbours_events_after_the_query_time():
    """Moving a neighbour's training events to after the target time changes nothing; moving them
    before it does (the social part reads exactly the events strictly before the query time)."""
    run = _run("lstm_gat", relation="co_interaction")
    spec, module = run.spec, run.module
    variables = {"params": run.state.params}
    examples = run.prepared.sequences.test
    batch = {k: jnp.asarray(v[:8]) for k, v in examples.items()}
    context = {key: np.asarray(value).copy() for key, value in run.context.items()}
    scores = np.asarray(spec.score(module, variables, batch, context=context))
    # Events already after every query time of the batch only move further away (rows stay sorted).
    late = dict(context)
    query_max = int(max(np.asarray(batch["target_timestamps"]).max(), np.asarray(batch["timestamps"]).max()))
    late["user_times"] = np.where(context["user_times"] > query_max, context["user_times"] + 10**6,
                                  context["user_times"])
    np.testing.assert_array_equal(np.asarray(spec.score(module, variables, batch, context=late)), scores)
    early = dict(context)
    early["user_times"] = np.zeros_like(context["user_times"])  # every neighbour event now precedes t
    assert not np.allclose(np.asarray(spec.score(module, variables, batch, context=early)), scores)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "stjax.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=600)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Run folders of one-epoch tiny runs (trained in this process: the CLI is run below)."""
    from stjax.train.loop import train_and_evaluate

    folders = {}
    for name in ("lstm_gat", "tgat", "fusion"):
        workdir = tmp_path_factory.mktemp(name)
        config = tiny(base_config(name))
        with config.unlocked():
            config.train.num_epochs = 1
        train_and_evaluate(config, workdir, log=lambda m: None, progress=False)
        folders[name] = workdir
    return folders


@pytest.mark.parametrize("name", ["lstm_gat", "tgat", "fusion"])
def test_graph_models_compile_each_step_once_per_run(trained, name):
    """Fixed shapes: one epoch of many batches, validation and test compile the training step
    and the scoring step once each (the graphs ride in the run-wide context, not in batches)."""
    results = json.loads((trained[name] / "results.json").read_text())
    assert results["steps"] > 1
    assert (results["timings"]["train_step_compiles"], results["timings"]["eval_step_compiles"]) == (1, 1)


def test_explain_gives_the_models_own_attention(trained):
    from stjax.serving.explain import explain_user
    from stjax.serving.recommend import histories_from_run, recommend_batches
    from stjax.train.loop import load_model

    for name, kinds in (("lstm_gat", {"neighbours", "places", "parts"}), ("tgat", {"items", "neighbours"})):
        model, _ = load_model(trained[name])
        result = explain_user(model, trained[name], "u00003", k=5)
        assert result["user"] == "u00003" and result["model"] == name and len(result["recommendations"]) == 5
        assert kinds <= set(result)
        scores = [row["score"] for row in result["recommendations"]]
        assert scores == sorted(scores, reverse=True)
        for kind in kinds - {"parts"}:
            weights = [entry["weight"] for entry in result[kind]]
            assert weights and weights == sorted(weights, reverse=True) and all(0 < w <= 1 for w in weights)
        # The recommendations are those of `stjax recommend` for the same user.
        vocab = json.loads((trained[name] / "vocab.json").read_text())
        histories = histories_from_run(trained[name], vocab)
        rows = {row["user"]: row for batch in recommend_batches(model, histories, 5) for row in batch.rows(vocab["items"])}
        assert rows["u00003"]["items"] == [row["item"] for row in result["recommendations"]]
        if name == "tgat":  # the user layer's weights over past items sum to one; two-hop recalls listed
            assert "recalled" in result
            everything = explain_user(model, trained[name], "u00005", k=3, top=100)
            assert abs(sum(entry["weight"] for entry in everything["items"]) - 1.0) < 1e-4
    model, _ = load_model(trained["fusion"])
    from stjax.serving.recommend import RecommendError

    with pytest.raises(RecommendError, match=r"^model 'fusion' has no graph attention to explain; `stjax explain` reads "
                                             r"the attention of lstm_gat, tgat$"):
        explain_user(model, trained["fusion"], "u00003")


def _captured(model, batch, layers, **kwargs):
    """The forward pass over every position (not explain's last-position path) with the outputs
    (graph, attention) of the named graph layers captured."""
    variables = {"params": model.state.params}
    _, state = model.module.apply(variables, *kwargs.pop("args"), model.context, **kwargs,
                                  capture_intermediates=lambda module, _: module.name in layers,
                                  mutable=["intermediates"])
    return {name: state["intermediates"][name]["__call__"][0] for name in layers}


def _explained_batch(model, workdir, user):
    from stjax.serving.recommend import build_batch, histories_from_run

    vocab = json.loads((workdir / "vocab.json").read_text())
    histories = histories_from_run(workdir, vocab)
    index = [str(u) for u in histories.users].index(user)
    batch = build_batch(histories, index, 1, model.spec.batch_kind, model.info.max_length, max(1, histories.longest),
                        max(1, int(model.info.max_bag)))
    return {k: jnp.asarray(v) for k, v in batch.items() if k != "exclude"}, vocab


def _incoming(graph, attention, receiver):
    """{sender: attention averaged over heads, summed over its edges} of the edges into `receiver`."""
    receivers, senders = np.asarray(graph.receivers), np.asarray(graph.senders)
    weights = np.asarray(attention).mean(-1)
    out = {}
    for e in np.flatnonzero(receivers == receiver):
        out[int(senders[e])] = out.get(int(senders[e]), 0.0) + float(weights[e])
    return out


@pytest.mark.slow  # 35-65 s each on 2 cores; `make test-slow` (issue 26: the suite under 20 min)
def test_explained_weights_are_the_graph_layers_attention(trained):
    """explain's weights are the attention coefficients the GAT / TGAT layers computed, read from
    the layers' own outputs in a full forward pass: lstm_gat's neighbours (with the self-loop, a
    softmax per head: they sum to one), tgat's past items (user layer) and the users of the last
    item (item layer)."""
    from stjax.models.shared_graph import next_query_times
    from stjax.serving.explain import explain_user
    from stjax.train.loop import load_model

    user = "u00003"
    model, _ = load_model(trained["lstm_gat"])
    result = explain_user(model, trained["lstm_gat"], user, k=5, top=100)
    batch, vocab = _explained_batch(model, trained["lstm_gat"], user)
    T = batch["items"].shape[1]
    graph, attention = _captured(model, batch, ["gat"], args=(batch["items"], batch["timestamps"], batch["users"]),
                                 query_times=next_query_times(batch))["gat"]
    incoming = _incoming(graph, attention, T - 1)  # B = 1: query node p is position p
    self_loop = incoming.pop(T - 1)
    neighbours = np.asarray(model.context["neighbours"])[int(batch["users"][0])]
    K = min(model.module.num_neighbours, len(neighbours))
    # star graph: the K copies of position p's neighbours are nodes T + p*K .. T + p*K + K - 1
    expected = {vocab["users"][n]: incoming[T + (T - 1) * K + k] for k, n in enumerate(neighbours[:K]) if n > 0}
    assert len(expected) >= 2
    assert {e["id"]: e["weight"] for e in result["neighbours"]} == pytest.approx(expected, abs=1e-5)
    assert sum(expected.values()) + self_loop == pytest.approx(1.0, abs=1e-5)

    model, _ = load_model(trained["tgat"])
    several = 0
    for user in ("u00003", "u00005", "u00007", "u00011", "u00013"):
        result = explain_user(model, trained["tgat"], user, k=5, top=100)
        batch, vocab = _explained_batch(model, trained["tgat"], user)
        layers = _captured(model, batch, ["user_layer", "item_layer"], args=(batch["items"], batch["timestamps"]),
                           explain=True)
        past = {}  # window graph over the row's positions, p itself included
        for position, weight in _incoming(*layers["user_layer"], T - 1).items():
            item = vocab["items"][int(batch["items"][0, position])]
            past[item] = past.get(item, 0.0) + weight
        assert len(past) >= 2
        assert {e["id"]: e["weight"] for e in result["items"]} == pytest.approx(past, abs=1e-5)
        graph, attention = layers["item_layer"]
        assert graph.nodes.shape[0] == T + model.info.num_users + 2  # positions, user table, zero node
        users = {vocab["users"][sender - T]: w for sender, w in _incoming(graph, attention, T - 1).items()}
        assert users and {e["id"]: e["weight"] for e in result["neighbours"]} == pytest.approx(users, abs=1e-5)
        several += len(users) >= 2
    assert several >= 2


def test_explain_cli(trained):
    done = _cli("explain", "--workdir", str(trained["lstm_gat"]), "--user", "u00003")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "top 10 recommendations" in done.stdout and "neighbours (user: attention):" in done.stdout
    assert "parts: sequence" in done.stdout
    done = _cli("explain", "--workdir", str(trained["tgat"]), "--user", "nobody")
    assert done.returncode == 2
    assert done.stderr.strip() == ("error: --user nobody: no such user in the run's log (its ids look like u00000, "
                                   "u00001, u00002)")


@pytest.mark.parametrize("name, overrides, message", [
    ("lstm_gat", {"relation": "given"},
     "model config: user relation 'given' needs model.relation_file (a `user user [weight]` edge list)"),
    ("lstm_gat", {"latlon_features": 10},
     "model config: model.latlon_features=10; expected a multiple of 4 (sin and cos of latitude and longitude)"),
    ("lstm_gat", {"hidden": 15}, "config key 'model.num_heads': found 2; expected a divisor of model.hidden (15)"),
    ("fusion", {"fusion": "attention"}, "model config: model.fusion='attention'; expected gate or concat"),
    ("fusion", {"gnn": "gcn"}, "model config: model.gnn='gcn'; expected lightgcn or gat"),
    ("lightgcn", {"propagation": "sparse"}, "model config: model.propagation='sparse'; expected one of auto, dense, edges"),
    ("fusion", {"gnn": "gat", "gnn_heads": 3}, "model config: model.hidden=16 is not divisible by model.gnn_heads=3"),
    ("fusion", {"parts": "ae,cnn"}, "model config: model.parts='ae,cnn'; expected a comma-separated subset of ae, rnn, gnn"),
])
def test_graph_model_settings_fail_with_one_line(name, overrides, message):
    from stjax.validation import ConfigError

    with pytest.raises(ConfigError) as error:
        _run(name, **overrides)
    assert str(error.value) == message


def test_a_missing_trust_file_names_the_file(tmp_path):
    from stjax.data.errors import DataError

    with pytest.raises(DataError, match="nothing.txt"):
        _run("lstm_gat", relation="given", relation_file=str(tmp_path / "nothing.txt"))


@pytest.mark.slow  # 35-65 s each on 2 cores; `make test-slow` (issue 26: the suite under 20 min)
def test_lstm_gat_scoring_at_the_last_position_equals_the_full_forward():
    """score() computes the social, geo and fusion parts at the last position only; the same
    scores come from the forward pass over every position, read at the last one."""
    from stjax.models.shared_graph import next_query_times

    run = _run("lstm_gat", relation="co_interaction", fusion="attention")
    variables = {"params": run.state.params}
    batch = {k: jnp.asarray(v[:8]) for k, v in run.prepared.sequences.test.items()}
    hidden, details = run.module.apply(variables, batch["items"], batch["timestamps"], batch["users"], run.context,
                                       query_times=next_query_times(batch))
    last = {key: value[:, -1:] for key, value in details.items()}
    full = run.module.apply(variables, hidden[:, -1:], batch["items"][:, -1:], run.context, last,
                            method="scores")[:, 0]
    scores = run.spec.score(run.module, variables, batch, context=run.context)
    columns = slice(1, run.info.num_items + 1)
    np.testing.assert_allclose(np.asarray(scores)[:, columns], np.asarray(full)[:, columns], rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # 35-65 s each on 2 cores; `make test-slow` (issue 26: the suite under 20 min)
def test_tgat_scoring_at_the_last_position_equals_the_full_forward():
    """score() computes the two-hop term at the last position only; the scores equal the
    training forward pass over every position (same query times), read at the last one."""
    from stjax.models.shared_graph import next_query_times

    run = _run("tgat")
    variables = {"params": run.state.params}
    batch = {k: jnp.asarray(v[:8]) for k, v in run.prepared.sequences.test.items()}
    full = run.module.apply(variables, batch["items"], batch["timestamps"], batch["users"], next_query_times(batch),
                            run.context, method="logits_at_every_position")[:, -1]
    scores = run.spec.score(run.module, variables, batch, context=run.context)
    columns = slice(1, run.info.num_items + 1)
    np.testing.assert_allclose(np.asarray(scores)[:, columns], np.asarray(full)[:, columns], rtol=1e-5, atol=1e-5)


def test_tgat_two_hop_recalls_what_the_neighbours_did_last_before_the_query_time():
    """The two-hop term reads, for each of the item layer's neighbours at the last P positions
    (the user itself excluded), its last L training events strictly before the query time, with
    weight sigmoid(query(e_u) . e_v + lag bias) * scale / L: a brute force over the log agrees."""
    from stjax.models.shared_graph import next_query_times

    run = _run("tgat")
    module, params = run.module, run.state.params
    assert module.uses_two_hop and module.two_hop_items == 3
    batch = {k: jnp.asarray(v[:16]) for k, v in run.prepared.sequences.test.items()}
    _, details = module.apply({"params": params}, batch["items"], batch["timestamps"], run.context, explain=True)
    query = next_query_times(batch)
    items, weights = module.apply({"params": params}, details, batch["users"], query,
                                  jax.tree_util.tree_map(jnp.asarray, run.context), last_only=True,
                                  method="two_hop_items_and_weights")
    items, weights = np.asarray(items)[:, 0], np.asarray(weights)[:, 0]
    split, log = run.prepared.split, run.prepared.log
    train = ~((split.part == VALID) | (split.part == TEST))
    relative = (log.timestamp - log.timestamp.min())[train]
    users_train, items_train = log.user[train], log.item[train]
    embedding = np.asarray(params["user_embedding"]["embedding"])
    projection = np.asarray(params["hop_query"]["kernel"])
    bias, scale = np.asarray(params["hop_lag_bias"]), float(np.exp(params["hop_log_scale"]))
    neighbours = np.asarray(details["neighbour_users"])
    P, L = module.two_hop_positions, module.two_hop_items
    checked = 0
    for b in range(items.shape[0]):
        user, t = int(batch["users"][b]), int(query[b, -1])
        expected = []
        for lag in range(P):
            position = neighbours.shape[1] - 1 - lag
            if position < 0:
                continue
            for v in neighbours[b, position].tolist():
                if v == 0 or v == user:
                    continue
                rows = np.flatnonzero((users_train == v) & (relative < t))
                rows = rows[np.argsort(relative[rows], kind="stable")][-L:]
                w = scale / L / (1 + np.exp(-(embedding[user] @ projection @ embedding[v] + bias[lag])))
                expected += [(int(i), round(float(w), 4)) for i in items_train[rows]]
        got = [(int(i), round(float(w), 4)) for i, w in zip(items[b], weights[b]) if i > 0]
        assert sorted(got) == sorted(expected), b
        checked += len(got)
    assert checked > 0


def test_tgat_item_residual_adds_the_items_own_embedding():
    """item_residual=true: each item node is the item layer's output plus the item's own (tied)
    embedding; the same parameters without it give the layer's output alone."""
    run = _run("tgat")
    variables = {"params": run.state.params}
    batch = {k: jnp.asarray(v[:4]) for k, v in run.prepared.sequences.test.items()}
    context = jax.tree_util.tree_map(jnp.asarray, run.context)
    plain, _, _ = run.module.apply(variables, batch["items"], batch["timestamps"], context, method="item_nodes")
    residual_module = run.module.clone(item_residual=True)
    residual, _, _ = residual_module.apply(variables, batch["items"], batch["timestamps"], context, method="item_nodes")
    own = np.asarray(variables["params"]["item_embedding"]["embedding"])[np.asarray(batch["items"])]
    np.testing.assert_allclose(np.asarray(residual), np.asarray(plain) + own, rtol=1e-6, atol=1e-6)
    assert np.abs(own).max() > 0


def test_evaluate_scores_with_the_graphs_the_run_trained_with(tmp_path):
    """`stjax evaluate` reads the held-out events from the data but the graphs from the run folder:
    with the trust file deleted after training it still runs, and gives the training's test metrics."""
    from click.testing import CliRunner

    from stjax.cli import main
    from stjax.train.loop import train_and_evaluate

    trust = tmp_path / "trust.txt"
    trust.write_text("".join(f"u{a:05d} u{b:05d}\n" for a in range(0, 40, 2) for b in (a + 1, a + 3)))
    config = tiny(base_config("lstm_gat"))
    with config.unlocked():
        config.train.num_epochs = 1
        config.model.relation = "given"
        config.model.relation_file = str(trust)
    results = train_and_evaluate(config, tmp_path / "run", log=lambda m: None, progress=False)
    trust.unlink()
    done = CliRunner().invoke(main, ["evaluate", "--workdir", str(tmp_path / "run")])
    assert done.exit_code == 0, done.output
    evaluated = json.loads(done.output.strip().splitlines()[-1])
    for key in ("ndcg@10", "hr@10", "mrr@10"):
        assert evaluated["test"][key] == pytest.approx(results["test"][key], abs=1e-6)


@pytest.mark.parametrize("gnn", ["lightgcn", "gat"])
def test_fusion_propagates_once_per_evaluation(gnn, monkeypatch):
    """The gnn view's propagation (LightGCN or GAT layers) runs in prepare_scoring, once per
    evaluation, not in the per-batch scoring step; scores with the precomputed tables equal
    scores that propagate inside; a GAT-view fusion trains like the LightGCN one."""
    from stjax.models import fusion
    from stjax.train.loop import make_evaluators
    from stjax.train.state import make_train_step

    run = _run("fusion", gnn=gnn)
    calls = []
    original = fusion.Fusion.propagate
    monkeypatch.setattr(fusion.Fusion, "propagate", lambda self, *a: calls.append(1) or original(self, *a))
    variables = {"params": run.state.params}
    batch = {k: jnp.asarray(v[:6]) for k, v in run.prepared.sequences.test.items()}
    tables = fusion.prepare_scoring(run.module, variables, context=run.context)
    assert len(calls) == 1
    with_tables = fusion.score(run.module, variables, batch, context=run.context, scoring=tables)
    assert len(calls) == 1  # scoring with the tables does not propagate
    inside = fusion.score(run.module, variables, batch, context=run.context, scoring=None)
    assert len(calls) == 2
    np.testing.assert_allclose(np.asarray(with_tables)[:, 1:], np.asarray(inside)[:, 1:], rtol=1e-5, atol=1e-5)
    calls.clear()
    evaluators = make_evaluators(run)
    evaluators.evaluate(run.state.params, "valid", run.context)
    evaluators.evaluate(run.state.params, "test", run.context)
    assert len(calls) == 1  # traced once in the jitted prepare step, none in the (many-batch) scoring step
    if gnn == "gat":
        assert "gnn_layers_0" in run.state.params
        initial = jax.tree_util.tree_map(np.asarray, run.state.params["gnn_layers_0"])  # the step donates
        compiles = CompileCounter()
        step = make_train_step(run.spec, run.module, run.tx, run.config.model, 0, run.shardings)
        state, losses = run.state, []
        for index in range(12):
            state, metrics = step(state, jax.device_put(run.iterator.batch(0, index % 3), run.shardings.batch),
                                  run.context)
            losses.append(float(metrics["loss"]))
        assert losses[-1] < losses[0] and compiles.count(step) == 1, losses
        moved = jax.tree_util.tree_map(lambda a, b: float(np.abs(np.asarray(a) - b).max()),
                                       state.params["gnn_layers_0"], initial)
        assert min(jax.tree_util.tree_leaves(moved)) > 0  # the GAT layers receive gradients


@pytest.mark.parametrize("name, fusion_kind, layer", [("lstm_gat", "concat", "fuse"), ("lstm_gat", "attention", "query"),
                                                      ("fusion", "concat", "fuse")])
def test_every_fusion_kind_trains(name, fusion_kind, layer):
    """The fusion kinds other than the default gate build their own layer, train (the loss falls
    on a repeated batch, one compile) and score every item with finite values."""
    from stjax.train.state import make_train_step

    run = _run(name, fusion=fusion_kind)
    assert layer in run.state.params and not any(k.startswith("gates") for k in run.state.params)
    compiles = CompileCounter()
    step = make_train_step(run.spec, run.module, run.tx, run.config.model, 0, run.shardings)
    batch = jax.device_put(run.iterator.batch(0, 0), run.shardings.batch)
    state, losses = run.state, []
    for _ in range(30):
        state, metrics = step(state, batch, run.context)
        losses.append(float(metrics["loss"]))
    assert losses[-1] < losses[0] * 0.95 and compiles.count(step) == 1, losses
    test = {k: jnp.asarray(v[:4]) for k, v in run.prepared.sequences.test.items()}
    scoring = run.spec.prepare_scoring(run.module, {"params": state.params}, context=run.context)
    scores = np.asarray(run.spec.score(run.module, {"params": state.params}, test, context=run.context,
                                       scoring=scoring))
    assert np.isfinite(scores[:, 1:run.info.num_items + 1]).all()
