"""What happens to real runs: damaged checkpoints fall back, one trainer per workdir, a full disk
stops at the save with the previous checkpoint intact, garbage run files, restarts that truncate
the logs, plain log lines when not on a terminal. Each failure is one line with exit 2."""

import json
import shutil
from pathlib import Path

import orbax.checkpoint as ocp
import pytest
from click.testing import CliRunner

from stjax.cli import main
from stjax.config import load_config
from stjax.runs.checkpoints import CheckpointError
from stjax.train import train_and_evaluate
from stjax.train.loop import TrainingError, WorkdirLock

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = str(ROOT / "experiments" / "sasrec_synthetic.py") + ":tiny"
OVERRIDES = ["--config.train.num_epochs=3", "--config.train.eval_every_epochs=1", "--config.train.keep_checkpoints=3"]


def _train(workdir, log=lambda m: None):
    return train_and_evaluate(load_config(EXPERIMENT, OVERRIDES), workdir, log=log, progress=False)


def _numbers(results):
    return {part: results[part] for part in ("valid", "test")} | {"best_step": results["best_step"]}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("reference")
    return workdir, _train(workdir)


def _steps(workdir):
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


@pytest.mark.parametrize("damage", ["truncate", pytest.param("delete_state", marks=pytest.mark.slow),
                                    pytest.param("garbage_record", marks=pytest.mark.slow)])
def test_damaged_latest_step_falls_back_and_ends_like_an_uninterrupted_run(reference, tmp_path, damage):
    shutil.copytree(reference[0], tmp_path / "run")
    workdir = tmp_path / "run"
    last = _steps(workdir)[-1]
    folder = workdir / "checkpoints" / str(last)
    if damage == "truncate":
        biggest = max((p for p in (folder / "state").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
        biggest.write_bytes(biggest.read_bytes()[: biggest.stat().st_size // 3])
    elif damage == "delete_state":
        shutil.rmtree(folder / "state")
    else:
        for record in (folder / "record").rglob("*"):
            if record.is_file():
                record.write_text("{ not json")
    (workdir / "results.json").unlink()
    messages = []
    results = _train(workdir, log=messages.append)
    assert any(f"checkpoint step {last} in " in m and "is damaged" in m and f"moved to damaged-{last}" in m
               for m in messages), messages
    assert any(m.startswith("resumed from step ") for m in messages)
    assert (workdir / "checkpoints" / f"damaged-{last}").exists()
    assert _numbers(results) == _numbers(reference[1])


def test_evaluate_falls_back_from_a_damaged_best_step(reference, tmp_path):
    shutil.copytree(reference[0], tmp_path / "run")
    workdir = tmp_path / "run"
    best = reference[1]["best_step"]
    shutil.rmtree(workdir / "checkpoints" / str(best) / "state")
    result = CliRunner().invoke(main, ["evaluate", "--workdir", str(workdir)])
    assert result.exit_code == 0, result.output
    assert f"checkpoint step {best} in" in result.output and "is damaged" in result.output


def test_a_second_trainer_on_the_same_workdir_is_refused(tmp_path):
    import os

    with WorkdirLock(tmp_path):
        result = CliRunner().invoke(main, ["train", "--config", EXPERIMENT, "--workdir", str(tmp_path), *OVERRIDES])
    assert result.exit_code == 2
    assert result.output.strip() == (f"error: {tmp_path} is in use by another stjax train (pid {os.getpid()}); "
                                     "wait for it to finish or use another --workdir")
    assert not (tmp_path / "metrics.jsonl").exists()


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path):
    (tmp_path / ".lock").write_text("999999")  # left by a killed run: the kernel released its flock
    with WorkdirLock(tmp_path):
        assert (tmp_path / ".lock").read_text() == str(__import__("os").getpid())


def test_full_disk_stops_at_that_save_and_the_run_resumes(reference, tmp_path, monkeypatch):
    save = ocp.CheckpointManager.save
    failing_step = 8

    def full_disk(self, step, *args, **kwargs):
        if step == failing_step:
            raise OSError(28, "No space left on device")
        return save(self, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "save", full_disk)
    with pytest.raises(CheckpointError) as raised:
        _train(tmp_path)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(f"saving checkpoint step {failing_step} to {tmp_path}/checkpoints failed "
                              "(OSError: [Errno 28] No space left on device; ")
    assert "MiB free on that disk); step 4 is intact: free space or fix permissions and rerun to resume" in message
    assert _steps(tmp_path)[-1] == 4
    monkeypatch.setattr(ocp.CheckpointManager, "save", save)
    assert _numbers(_train(tmp_path)) == _numbers(reference[1])


def test_garbage_run_files_give_one_line(reference, tmp_path):
    shutil.copytree(reference[0], tmp_path / "run")
    workdir = tmp_path / "run"
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    (workdir / "metrics.jsonl").write_text("\n".join(lines[:3] + ["garbage"] + lines[3:]) + "\n")
    (workdir / "results.json").unlink()
    with pytest.raises(TrainingError, match=r"metrics.jsonl:4: not a metrics record"):
        _train(workdir)
    (workdir / "config.json").write_text("{ garbage")
    result = CliRunner().invoke(main, ["train", "--config", EXPERIMENT, "--workdir", str(workdir), *OVERRIDES])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert f"{workdir}/config.json: the run's config is unreadable (JSONDecodeError" in result.output
    result = CliRunner().invoke(main, ["evaluate", "--workdir", str(workdir)])
    assert result.exit_code == 2 and "config.json: the run's config is unreadable" in result.output


def test_a_torn_last_metrics_line_and_a_stale_temporary_folder_on_resume(reference, tmp_path):
    shutil.copytree(reference[0], tmp_path / "run")
    workdir = tmp_path / "run"
    with open(workdir / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 99, "lo')
    stale = workdir / "checkpoints" / "16.orbax-checkpoint-tmp-1764000000000000"  # a save killed midway
    (stale / "state").mkdir(parents=True)
    (workdir / "results.json").unlink()
    messages = []
    _train(workdir, log=messages.append)
    assert not stale.exists()
    assert any("dropped a torn last line" in m for m in messages)
    steps = [json.loads(line)["step"] for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert 99 not in steps


def test_restart_from_scratch_truncates_the_logs(reference, tmp_path):
    shutil.copytree(reference[0], tmp_path / "run")
    workdir = tmp_path / "run"
    shutil.rmtree(workdir / "checkpoints")
    (workdir / "results.json").unlink()
    _train(workdir)
    lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    train_steps = [line["step"] for line in lines if "eval" not in line]
    assert train_steps == sorted(set(train_steps))  # no step twice
    assert (workdir / "metrics.jsonl").read_text() == (reference[0] / "metrics.jsonl").read_text()
    assert len(list((workdir / "tb").iterdir())) == 1  # old event files went


def test_plain_log_lines_when_not_on_a_terminal(tmp_path):
    result = CliRunner().invoke(main, ["train", "--config", EXPERIMENT, "--workdir", str(tmp_path),
                                       "--config.train.num_epochs=2", "--config.train.eval_every_epochs=1"])
    assert result.exit_code == 0, result.output
    assert "step 2/8 epoch 0.50 loss " in result.output
    assert "step 4: valid ndcg@10 " in result.output
    assert "\x1b[" not in result.output  # no colour codes when redirected


def test_a_run_folder_from_before_an_option_existed_still_evaluates_and_resumes(reference, tmp_path):
    """Options added to stjax after a run was trained take their defaults (the behaviour before
    them) when its config.json lacks them: evaluate, recommend and resume keep working."""
    shutil.copytree(reference[0], tmp_path / "run")
    workdir = tmp_path / "run"
    config = json.loads((workdir / "config.json").read_text())
    del config["model"]["loss"], config["eval"]["exclude_history"]  # as if written before they existed
    (workdir / "config.json").write_text(json.dumps(config))
    result = CliRunner().invoke(main, ["evaluate", "--workdir", str(workdir)])
    assert result.exit_code == 0, result.output
    evaluated = json.loads(result.output.strip().splitlines()[-1])
    assert evaluated["test"]["ndcg@10"] == pytest.approx(reference[1]["test"]["ndcg@10"], abs=1e-6)
    result = CliRunner().invoke(main, ["recommend", "--workdir", str(workdir), "--users", "all", "--k", "3"])
    assert result.exit_code == 0, result.output
    messages = []
    resumed = _train(workdir, log=messages.append)  # same config, already finished: resumes, no error
    assert any(m.startswith("resumed from step ") for m in messages), messages
    assert _numbers(resumed) == _numbers(reference[1])
