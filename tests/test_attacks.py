"""Injected shilling attacks and bots (`stjax.data.attacks`, `stjax data attack`): each profile as
the literature defines it, checked against the log it was injected into; the command end to end
with `stjax anomalies --truth` on a run trained on the attacked log."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from stjax.cli import main
from stjax.config import load_config
from stjax.data.attacks import AttackError, inject
from stjax.data.table import make_log
from stjax.train import train_and_evaluate

ROOT = Path(__file__).resolve().parents[1]


def rating_log(users=300, items=200, per_user=30, seed=1):
    rng = np.random.default_rng(seed)
    quality = rng.normal(3.5, 0.7, items)
    popularity = rng.zipf(1.5, items).astype(float)
    rows = []
    for user in range(users):
        chosen = rng.choice(items, per_user, replace=False, p=popularity / popularity.sum())
        times = np.sort(rng.integers(10**9, 10**9 + 10**7, per_user))
        for item, time in zip(chosen, times):
            rows.append((f"u{user}", f"i{item}", int(time), float(np.clip(np.round(quality[item] + rng.normal(0, 0.8)), 1, 5))))
    users_, items_, times_, values = zip(*rows)
    return make_log(list(users_), list(items_), list(times_), value=list(values)), rows


def profiles(log, truth):
    tokens = log.user_vocab.tokens
    out = {}
    for index in range(1, log.num_users + 1):
        name = str(tokens[index])
        if name in truth:
            rows = log.user == index
            out[name] = (log.item_vocab.tokens[log.item[rows]].astype(str), log.value[rows], log.timestamp[rows])
    return out


def test_each_profile_is_what_the_literature_defines():
    log, rows = rating_log()
    attacked, truth = inject(log, fraction=0.03, filler=0.05, selected=0.02, bot_period_s=60, seed=4)
    assert {kind: list(truth.values()).count(kind) for kind in set(truth.values())} == {
        "random": 9, "average": 9, "bandwagon": 9, "bot": 9}
    assert len(attacked) == len(log) + sum(len(p[0]) for p in profiles(attacked, truth).values())
    values = np.array([r[3] for r in rows])
    by_item = {}
    for _, item, _, value in rows:
        by_item.setdefault(item, []).append(value)
    popular = sorted(by_item, key=lambda item: (-len(by_item[item]), item))

    def the_most_popular(chosen, count):  # ties at the cut may go either way
        cut = len(by_item[popular[count - 1]])
        return {i for i in popular if len(by_item[i]) > cut} <= set(chosen) and \
            all(len(by_item[i]) >= cut for i in chosen) and len(chosen) == count
    genuine_times = {r[2] for r in rows}
    targets = {}
    for name, (items, ratings, times) in profiles(attacked, truth).items():
        kind = truth[name]
        assert len(set(items)) == len(items) and set(np.unique(ratings)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
        if kind == "bot":
            assert the_most_popular(list(items), 10) and (ratings == np.median(values)).all()
            assert (np.diff(np.sort(times)) == 60).all()
            continue
        assert set(times.tolist()) <= genuine_times  # a genuine user's own timing
        target = [i for i, r in zip(items, ratings) if r == 5.0 and i not in popular[:4]]
        targets.setdefault(kind, []).append(set(target))
        filler = 10 + (4 if kind == "bandwagon" else 0) + 1
        assert len(items) <= filler and len(items) >= filler - 4
        if kind == "bandwagon":
            cut = len(by_item[popular[3]])
            top = [i for i, r in zip(items, ratings) if r == 5.0 and len(by_item.get(i, [])) >= cut]
            assert {i for i in popular if len(by_item[i]) > cut} <= set(top)
    for kind, sets in targets.items():  # one pushed item shared by every attacker of a kind
        assert set.intersection(*sets), kind
    # Average attackers rate like each item's mean; random attackers do not.
    means = {item: np.mean(v) for item, v in by_item.items()}
    gaps = {kind: [] for kind in ("random", "average")}
    for name, (items, ratings, _) in profiles(attacked, truth).items():
        if truth[name] in gaps:
            gaps[truth[name]].extend(abs(r - means[i]) for i, r in zip(items, ratings) if i in means)
    assert np.mean(gaps["average"]) < np.mean(gaps["random"])
    again, truth_again = inject(log, fraction=0.03, filler=0.05, selected=0.02, seed=4)
    assert truth_again == truth and np.array_equal(again.value, attacked.value)
    with pytest.raises(AttackError, match="no ratings"):
        inject(make_log(["a", "b"], ["x", "y"], [1, 2]))
    with pytest.raises(AttackError, match="unknown attack"):
        inject(log, kinds=("sybil",))


def test_attack_command_and_anomalies_against_its_truth(tmp_path):
    log, rows = rating_log(users=120, items=80, per_user=20)
    source = tmp_path / "ratings.csv"
    source.write_text("user,item,timestamp,value\n" + "".join(f"{u},{i},{t},{v}\n" for u, i, t, v in rows))
    runner = CliRunner()
    result = runner.invoke(main, ["data", "attack", str(source), "--out", str(tmp_path / "attacked.csv"), "--truth",
                                  str(tmp_path / "truth.tsv"), "--fraction", "0.05", "--filler", "0.1"])
    assert result.exit_code == 0, result.output
    truth = dict(line.split("\t") for line in (tmp_path / "truth.tsv").read_text().splitlines())
    assert len(truth) == 24 and set(truth.values()) == {"random", "average", "bandwagon", "bot"}
    config = load_config(str(ROOT / "experiments" / "multvae_synthetic.py") + ":tiny",
                         [f"--config.data.source={tmp_path / 'attacked.csv'}", "--config.data.format=csv"])
    train_and_evaluate(config, tmp_path / "run", log=lambda m: None, progress=False)
    result = runner.invoke(main, ["anomalies", "--workdir", str(tmp_path / "run"), "--truth", str(tmp_path / "truth.tsv")])
    assert result.exit_code == 0, result.output
    output = json.loads((tmp_path / "run" / "analysis" / "anomalies.json").read_text())
    assert output["evaluation"]["isolation_forest"]["anomalous"] == 24
    assert set(output["evaluation_by_kind"]) == {"random", "average", "bandwagon", "bot"}
    # The bots are a crawler at a fixed period: the behaviour features single them out.
    assert output["evaluation_by_kind"]["bot"]["isolation_forest"]["roc_auc"] >= 0.9
    assert "value_spread" in output["features"]
    bad = tmp_path / "bad.tsv"
    bad.write_text("\tbot\n")
    result = runner.invoke(main, ["anomalies", "--workdir", str(tmp_path / "run"), "--truth", str(bad)])
    assert result.exit_code == 2 and "bad.tsv:1: expected user<TAB>kind" in result.output
