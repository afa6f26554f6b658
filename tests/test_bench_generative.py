"""The stjax-vs-RecBole generative benchmark's pure parts: the atomic files RecBole reads hold
exactly stjax's training pairs, the worker's command loop answers and refuses as it should
(against a stand-in torch, so no torch is needed), and the spread / ratio / equal-work arithmetic
agrees with the numbers worked by hand."""

import importlib.util
import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

SCRIPTS = Path(__file__).parent.parent / "scripts"


def _load(name):
    if str(SCRIPTS) not in sys.path:  # the scripts import their siblings, as they do when run
        sys.path.insert(0, str(SCRIPTS))
    spec = importlib.util.spec_from_file_location(f"stjax_scripts_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _FakeTorch:
    """The one call the command loop makes: torch.is_anomaly_enabled (plus the switch for time_steps)."""

    def __init__(self, anomaly):
        self.anomaly = anomaly

    def is_anomaly_enabled(self):
        return self.anomaly


def _bags(users=5, width=7, num_items=11, seed=0):
    """Left-aligned, 0-padded bags of distinct items of odd sizes; item num_items never used."""
    rng = np.random.default_rng(seed)
    bag = np.zeros((users, width), np.int32)
    for row, size in enumerate([7, 3, 1, 5, 2][:users]):
        bag[row, :size] = rng.choice(np.arange(1, num_items), size=size, replace=False)
    return np.arange(1, users + 1, dtype=np.int32) * 3, bag  # user indices that are not row numbers


def test_atomic_files_round_trip_the_training_pairs(tmp_path):
    runner = _load("recbole_generative")
    assert "torch" not in runner.__dict__  # importing the worker needs no torch
    users, bag = _bags()
    num_items = 11
    written = runner.write_atomic(tmp_path, "heldout", users, bag, num_items)
    expected = [(str(u), str(i)) for u, row in zip(users, bag) for i in row if i > 0]  # written another way
    assert runner.read_inter(written["train"]) == expected
    assert written["pairs"] == len(expected) == int((bag > 0).sum())
    # valid: the placeholder pair plus every item no training bag holds, so RecBole's vocabulary has num_items
    unseen = sorted(set(range(1, num_items + 1)) - set(bag[bag > 0].tolist()))
    assert num_items in unseen and written["unseen_items"] == len(unseen)
    valid = runner.read_inter(written["valid"])
    assert valid[0] == expected[0] and [int(i) for _, i in valid[1:]] == unseen
    assert {u for u, _ in valid} == {str(users[0])}  # no held-out user: RecBole's epochs walk every user
    assert runner.read_inter(written["test"]) == expected[:1]
    all_items = {i for path in (written["train"], written["valid"]) for _, i in runner.read_inter(path)}
    assert all_items == {str(i) for i in range(1, num_items + 1)}
    assert Path(written["train"]).name == "heldout.train.inter"  # RecBole's benchmark_filename naming


def test_read_inter_rejects_a_file_without_the_header(tmp_path):
    runner = _load("recbole_generative")
    path = tmp_path / "bad.inter"
    path.write_text("1\t2\n")
    with pytest.raises(ValueError, match="bad.inter:1: expected the header"):
        runner.read_inter(path)


def test_config_keeps_recbole_defaults_but_the_multvae_sizes():
    runner = _load("recbole_generative")
    paper = runner.config_dict("/data", "MultiVAE")
    assert paper["latent_dimension"] == 400  # halved by RecBole into 200 means and 200 log-variances
    assert "latent_dimension" not in runner.config_dict("/data", "MultiVAE", "recbole")
    for model in ("RecVAE", "EASE"):  # nothing of the model's own is overridden
        config = runner.config_dict("/data", model)
        assert not {"latent_dimension", "hidden_dimension", "train_batch_size", "learning_rate", "reg_weight"} & set(config)
    with pytest.raises(ValueError, match="sizes"):
        runner.config_dict("/data", "MultiVAE", "large")


def test_command_loop_answers_refuses_and_quits():
    runner = _load("recbole_generative")
    answers, epochs = [], []

    def train_epoch():
        epochs.append(len(epochs))
        return {"epoch_s": 0.5 + len(epochs)}

    lines = ["train_epoch\n", "\n", "train_epoch\n"]  # a blank line ends the loop, as `quit` does
    count = runner.serve_commands(iter(lines), {"train_epoch": train_epoch}, _FakeTorch(False), answers.append)
    assert count == 1 and epochs == [0] and answers == [{"epoch_s": 1.5, "anomaly_detection": False}]
    answers.clear()
    lines = ["fit 3\n", "train_epoch\n", "quit\n", "train_epoch\n"]
    count = runner.serve_commands(iter(lines), {"train_epoch": train_epoch}, _FakeTorch(False), answers.append)
    assert count == 1 and len(epochs) == 2
    assert "unknown command 'fit'" in answers[0]["error"] and "train_epoch, quit" in answers[0]["error"]
    assert answers[1]["epoch_s"] == 2.5


def test_timing_refuses_with_anomaly_detection_on():
    runner = _load("recbole_generative")
    calls = []
    with pytest.raises(AssertionError, match="anomaly"):
        runner.timed(_FakeTorch(True), lambda: calls.append(1))
    assert calls == []
    assert runner.timed(_FakeTorch(False), lambda: calls.append(1)) >= 0.0 and calls == [1]


def test_json_worker_reads_past_logging_and_refuses_anomaly_detection(tmp_path):
    """bench_common.JsonWorker against a stand-in worker script in this Python."""
    common = _load("bench_common")
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent("""
        import json, sys
        anomaly = sys.argv[1] == "on"
        print("RecBole says hello")  # logging on stdout is skipped
        print(json.dumps({"ready": True, "anomaly_detection": anomaly}), flush=True)
        for line in sys.stdin:
            if line.split() == ["quit"]:
                break
            print(json.dumps({"echo": line.strip(), "anomaly_detection": line.startswith("bad")}), flush=True)
    """))
    worker = common.JsonWorker([sys.executable, str(script), "off"])
    assert worker.info == {"ready": True, "anomaly_detection": False}
    assert worker.ask("train_epoch")["echo"] == "train_epoch"
    with pytest.raises(RuntimeError, match="anomaly detection on"):
        worker.ask("bad epoch")
    worker.close()
    assert worker.process.returncode == 0
    with pytest.raises(RuntimeError, match="anomaly detection on"):
        common.JsonWorker([sys.executable, str(script), "on"]).close()


def test_spread_and_ratios_by_hand():
    common = _load("bench_common")
    assert common.spread([3.0, 1.0, 2.0]) == {"median": 2.0, "best": 1.0, "worst": 3.0, "repeats": [3.0, 1.0, 2.0]}
    # per repeat: 6/2 = 3, 9/3 = 3, 4/4 = 1 -> median 3 (not the ratio of the medians, 6/3 = 2)
    assert common.ratios([6.0, 9.0, 4.0], [2.0, 3.0, 4.0]) == {"median": 3.0, "min": 1.0, "max": 3.0}


def test_equal_work_per_user_pass():
    bench = _load("bench_generative")
    # RecBole's RecVAE: 4 passes of 5 users in 40 s -> 2 s per user per pass; stjax: 2 passes in 10 s -> 1
    assert bench.per_user_pass([40.0], users=5, passes=4) == [2.0]
    assert bench.per_user_pass([10.0, 20.0], users=5, passes=2) == [1.0, 2.0]
    side = bench.summary([10.0, 30.0, 20.0], users=8, passes=2)  # median 20 s: 8 / 20 users/s, 20 / 16 s
    assert side["epoch_s"]["median"] == 20.0 and side["users_per_s"] == 0.4
    assert side["per_user_pass_us"] == 1.25e6 and side["passes_per_epoch"] == 2
    assert set(bench.MODELS) == {"multvae", "recvae", "ease"}
    assert json.dumps(bench.MODELS)  # plain data: the JSON names them
