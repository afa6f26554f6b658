"""The training engine end to end on tiny configs: resume after kill -9, determinism,
evaluate == results.json, recommend for an unseen user, NaN guard, CLI errors."""

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from stjax.cli import main
from stjax.config import ConfigError, load_config
from stjax.train import TrainingError, train_and_evaluate

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = str(ROOT / "experiments" / "sasrec_synthetic.py") + ":tiny"
OVERRIDES = ["--config.train.num_epochs=8", "--config.train.eval_every_epochs=1"]


def _strip(results):
    return {part: {k: v for k, v in results[part].items()} for part in ("valid", "test")} | {
        "best_step": results["best_step"], "steps": results["steps"]}


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("reference")
    config = load_config(EXPERIMENT, OVERRIDES)
    results = train_and_evaluate(config, workdir, log=lambda m: None, progress=False)
    return workdir, results


def test_one_compile_each_and_results_file(reference_run):
    workdir, results = reference_run
    assert results["timings"]["train_step_compiles"] == 1
    assert results["timings"]["eval_step_compiles"] == 1
    on_disk = json.loads((workdir / "results.json").read_text())
    assert set(on_disk) >= {"valid", "test", "config", "timings"}
    assert on_disk["protocols"] == {"ranking": "ranking: full ranking, one target per user"}
    assert all(isinstance(value, (int, float)) for value in on_disk["test"].values())  # numbers only
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines if "eval" in line] == list(range(4, 33, 4))
    assert any((workdir / "tb").iterdir())


def test_same_seed_twice_gives_identical_metrics(reference_run, tmp_path):
    _, results = reference_run
    again = train_and_evaluate(load_config(EXPERIMENT, OVERRIDES), tmp_path, log=lambda m: None, progress=False)
    assert _strip(again) == _strip(results)


def test_kill_and_resume_matches_uninterrupted(reference_run, tmp_path):
    _, results = reference_run
    command = [sys.executable, "-m", "stjax.cli", "train", "--config", EXPERIMENT, "--workdir", str(tmp_path),
               *OVERRIDES]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
    last = tmp_path / "checkpoints"
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            steps = [p for p in last.iterdir() if p.name.isdigit()] if last.exists() else []
            if len(steps) >= 2:
                break
            if process.poll() is not None:
                pytest.fail("the run finished before it could be killed")
            time.sleep(0.05)
        else:
            pytest.fail("no checkpoint appeared in time")
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert not (tmp_path / "results.json").exists()
    finished = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "resumed from step" in finished.stdout
    resumed = json.loads((tmp_path / "results.json").read_text())
    assert _strip(resumed) == _strip(results)


def test_evaluate_equals_results(reference_run):
    workdir, results = reference_run
    output = CliRunner().invoke(main, ["evaluate", "--workdir", str(workdir)])
    assert output.exit_code == 0, output.output
    recomputed = json.loads(output.output.strip().splitlines()[-1])
    assert recomputed["valid"] == results["valid"] and recomputed["test"] == results["test"]
    assert recomputed["protocols"] == results["protocols"]


def test_recommend_for_unseen_user(reference_run, tmp_path):
    workdir, _ = reference_run
    vocab = json.loads((workdir / "vocab.json").read_text())
    history = tmp_path / "history.jsonl"
    seen = vocab["items"][1:4]
    history.write_text(json.dumps({"user": "brand-new", "items": seen + ["never-seen-item"],
                                   "timestamps": [1_700_000_000, 1_700_000_100, 1_700_000_200, 1_700_000_300]}) + "\n")
    result = CliRunner().invoke(main, ["recommend", "--workdir", str(workdir), "--history", str(history), "--k", "5"])
    assert result.exit_code == 0, result.output
    row = json.loads([line for line in result.output.splitlines() if line.startswith("{")][0])
    assert row["user"] == "brand-new" and len(row["items"]) == 5
    assert not set(row["items"]) & set(seen)
    assert row["scores"] == sorted(row["scores"], reverse=True)
    assert "skipped: 1" in result.output


def test_nan_guard_stops_with_clear_error(tmp_path):
    config = load_config(EXPERIMENT, ["--config.train.learning_rate=1e38", "--config.train.clip_norm=0.0",
                                      "--config.train.warmup_steps=0", "--config.train.log_every=1"])
    with pytest.raises(TrainingError, match="non-finite loss"):
        train_and_evaluate(config, tmp_path, log=lambda m: None, progress=False)


def test_config_errors():
    with pytest.raises(ConfigError, match="unknown config key 'model.hiden': 'hiden' is not in model; valid keys: "):
        load_config(EXPERIMENT, ["--config.model.hiden=3"])
    with pytest.raises(ConfigError, match="config key 'train.batch_size' expects an integer, got 'big'"):
        load_config(EXPERIMENT, ["--config.train.batch_size=big"])
    with pytest.raises(ConfigError, match="config file nope.py does not exist"):
        load_config("nope.py")


def test_cli_errors_are_one_line(reference_run, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["train", "--config", EXPERIMENT, "--config.model.hiden=3"])
    assert result.exit_code == 2 and "unknown config key" in result.output and "Traceback" not in result.output
    workdir, _ = reference_run
    other = str(ROOT / "experiments" / "gru4rec_ml100k.py") + ":tiny"
    result = runner.invoke(main, ["train", "--config", other, "--workdir", str(workdir)])
    assert result.exit_code == 2 and "holds a run of model 'sasrec', not 'gru4rec'" in result.output
    result = runner.invoke(main, ["evaluate", "--workdir", str(tmp_path)])
    assert result.exit_code == 2 and "not a run folder" in result.output


def test_missing_and_unknown_keys_in_a_config_file(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("from stjax.config import base_config\n\ndef get_config(arg=None):\n"
                      "    config = base_config('sasrec')\n    del config.train['batch_size']\n    return config\n")
    with pytest.raises(ConfigError, match="missing config key 'train.batch_size'"):
        load_config(str(broken))
    extra = tmp_path / "extra.py"
    extra.write_text("from stjax.config import base_config\n\ndef get_config(arg=None):\n"
                     "    config = base_config('sasrec')\n    config.train.batchsize = 3\n    return config\n")
    with pytest.raises(ConfigError, match="unknown config key 'train.batchsize'; valid keys in train: "):
        load_config(str(extra))


def test_every_experiment_config_is_complete():
    for path in sorted((ROOT / "experiments").glob("*.py")):
        for arg in ("", ":tiny"):
            config = load_config(str(path) + arg)
            assert config.model.name in path.stem


@pytest.mark.slow  # tests/test_sharding.py checks the sharded step exactly; this runs the CLI end to end
def test_data_parallel_on_8_cpu_devices_matches_one_device(reference_run, tmp_path):
    """The same step sharded over 8 host devices (own process) reaches the same metrics."""
    _, results = reference_run
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=8")
    command = [sys.executable, "-m", "stjax.cli", "train", "--config", EXPERIMENT, "--workdir", str(tmp_path),
               *OVERRIDES]
    finished = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    sharded = json.loads((tmp_path / "results.json").read_text())
    probe = subprocess.run([sys.executable, "-c", "import jax; print(jax.device_count())"], capture_output=True,
                           text=True, env=env, timeout=60)
    assert probe.stdout.strip() == "8"
    for part in ("valid", "test"):
        for name in ("ndcg@10", "hr@10"):
            assert abs(sharded[part][name] - results[part][name]) < 0.03, (part, name)
    assert sharded["timings"]["train_step_compiles"] == 1


def test_recommend_reads_csv_histories_and_reports_bad_rows(reference_run, tmp_path):
    workdir, _ = reference_run
    vocab = json.loads((workdir / "vocab.json").read_text())
    good = tmp_path / "history.csv"
    good.write_text("user,item,timestamp\n" + "".join(f"alice,{item},{1_700_000_000 + i}\n"
                                                         for i, item in enumerate(vocab["items"][1:6])))
    result = CliRunner().invoke(main, ["recommend", "--workdir", str(workdir), "--history", str(good), "--k", "3"])
    assert result.exit_code == 0, result.output
    row = json.loads([line for line in result.output.splitlines() if line.startswith("{")][0])
    assert row["user"] == "alice" and row["known_history"] == 5 and len(row["items"]) == 3
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item,timestamp\nbob,x,yesterday\n")
    result = CliRunner().invoke(main, ["recommend", "--workdir", str(workdir), "--history", str(bad)])
    assert result.exit_code == 2
    assert "bad.csv:2: field 'timestamp': expected integer seconds, found 'yesterday'" in result.output


def test_train_metrics_are_fetched_one_step_late(tmp_path, monkeypatch):
    """A log step's metrics are read only after the next step is dispatched (the device never idles on
    the host); at an evaluation the loss is read before the state is evaluated and saved."""
    import jax

    import stjax.train.loop as loop

    events = []
    make_step, device_get = loop.make_train_step, jax.device_get

    def recording_make_train_step(*args, **kwargs):
        step = make_step(*args, **kwargs)

        @functools.wraps(step)  # the run counts compiles by the step's name
        def dispatch(state, batch, context):
            events.append("dispatch")
            return step(state, batch, context)

        return dispatch

    def recording_device_get(tree):
        if isinstance(tree, dict) and "loss" in tree:
            events.append("fetch")
        return device_get(tree)

    monkeypatch.setattr(loop, "make_train_step", recording_make_train_step)
    monkeypatch.setattr(jax, "device_get", recording_device_get)
    config = load_config(EXPERIMENT, ["--config.train.num_epochs=4", "--config.train.eval_every_epochs=2",
                                      "--config.train.log_every=2"])
    train_and_evaluate(config, tmp_path, log=lambda m: None, progress=False)
    dispatched, fetched_at = 0, []
    for event in events:
        dispatched += event == "dispatch"
        if event == "fetch":
            fetched_at.append(dispatched)
    logged = [line["step"] for line in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())
              if "eval" not in line]
    evals = {8, 16}
    assert dispatched == 16 and logged == [2, 4, 6, 8, 10, 12, 14, 16]
    assert fetched_at == [step if step in evals else step + 1 for step in logged]
