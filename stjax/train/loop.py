"""`train_and_evaluate(config, workdir)`: the training loop of every model.

A run is a folder: config.json, vocab.json, metrics.jsonl, tb/ (TensorBoard), checkpoints/
and results.json. Running again in the same folder resumes from the last checkpoint and
ends with exactly the metrics of an uninterrupted run: batches come from the saved
iterator position and keys from (seed, step). Metrics accumulate on the device and are
fetched every `log_every` steps, one step late (after the next step is dispatched); nothing
else syncs with the host inside the loop except evaluations.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from stjax import models
from stjax.config import ConfigError, to_json
from stjax.data.batching import BatchIterator
from stjax.data.pipeline import prepare
from stjax.eval.evaluator import Evaluator
from stjax.train.checkpoint import Checkpoints
from stjax.train.state import TrainState, create_optimizer, init_params, make_mesh, make_train_step


class TrainingError(Exception):
    """Training cannot go on (non-finite loss, incompatible workdir): a clear message, exit 2."""


@dataclasses.dataclass
class Run:
    config: object
    prepared: object
    spec: object
    module: object
    tx: object
    state: TrainState
    iterator: BatchIterator
    total_steps: int
    mesh: object


def build_run(config, log=print) -> Run:
    """Data, model, optimizer and a fresh state for `config` (no training)."""
    try:
        spec = models.get(config.model.name)
    except KeyError as err:
        raise ConfigError(str(err.args[0])) from None
    prepared = prepare(config.data, log=log)
    sequences = prepared.sequences
    if len(sequences.train["items"]) == 0:
        raise TrainingError("no training sequences: every user has fewer than two training events")
    mesh = make_mesh(config.train.get("num_devices", 0) or None)
    batch_size = int(config.train.batch_size)
    if batch_size % mesh.size:
        raise ConfigError(f"train.batch_size {batch_size} is not divisible by the {mesh.size} devices")
    module = spec.make(config.model, sequences.num_items, sequences.max_length)
    iterator = BatchIterator(sequences.train, batch_size, seed=int(config.seed))
    total_steps = int(config.train.get("num_steps", 0) or 0) or int(config.train.num_epochs) * iterator.steps_per_epoch
    tx = create_optimizer(config.train, total_steps)
    params = init_params(module, iterator.batch(0, 0), int(config.seed))
    state = TrainState(jnp.asarray(0, jnp.int32), params, tx.init(params))
    state = jax.device_put(state, NamedSharding(mesh, P()))
    return Run(config, prepared, spec, module, tx, state, iterator, total_steps, mesh)


def _popularity(prepared) -> np.ndarray:
    return np.bincount(prepared.sequences.train["targets"].ravel(), minlength=prepared.sequences.num_items + 1)


def make_evaluator(run: Run) -> Evaluator:
    return Evaluator(run.spec, run.module, run.prepared.sequences, run.config.eval, _popularity(run.prepared),
                     seed=int(run.config.seed))


def _write_vocab(workdir: Path, prepared) -> None:
    log = prepared.log
    (workdir / "vocab.json").write_text(json.dumps({
        "items": log.item_vocab.tokens.tolist(), "users": log.user_vocab.tokens.tolist(),
        "time_origin": prepared.sequences.time_origin}))


def _check_workdir(workdir: Path, config) -> None:
    saved = workdir / "config.json"
    if not saved.exists():
        return
    old = json.loads(saved.read_text())
    new = json.loads(to_json(config))
    if old.get("model", {}).get("name") != new["model"]["name"]:
        raise TrainingError(f"{workdir} holds a run of model '{old.get('model', {}).get('name')}', not "
                            f"'{new['model']['name']}'; use another --workdir")
    for section in ("model", "data"):
        if old.get(section) != new.get(section):
            raise TrainingError(f"{workdir} holds a run with a different '{section}' config; resume needs the same "
                                f"config (use another --workdir)")


def _truncate_metrics(path: Path, step: int) -> None:
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line).get("step", 0) <= step]
    path.write_text("".join(line + "\n" for line in kept))


def train_and_evaluate(config, workdir: str | Path, log=print, progress: bool = True) -> dict:
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    _check_workdir(workdir, config)
    timings = {}
    start = time.perf_counter()
    run = build_run(config, log=log)
    timings["data_s"] = round(sum(run.prepared.timings.values()), 3)
    timings["setup_s"] = round(time.perf_counter() - start, 3)
    (workdir / "config.json").write_text(to_json(config))
    _write_vocab(workdir, run.prepared)
    train = config.train
    evaluator = make_evaluator(run)
    train_step = make_train_step(run.spec, run.module, run.tx, config.model, int(config.seed), run.mesh)
    batch_sharding = NamedSharding(run.mesh, P("data"))
    checkpoints = Checkpoints(workdir, keep=int(train.get("keep_checkpoints", 2)),
                              async_save=bool(train.get("async_checkpoints", True)))
    metric_name = config.eval.metric
    steps_per_epoch = run.iterator.steps_per_epoch
    eval_every = int(train.get("eval_every", 0) or 0) or steps_per_epoch * int(train.get("eval_every_epochs", 1))
    log_every = max(1, int(train.get("log_every", 50)))
    patience = int(train.get("patience", 0) or 0)
    record = {"best": None, "bad_evals": 0, "iterator": run.iterator.get_state(), "stopped_early": False}
    state = run.state
    step = 0
    if checkpoints.latest_step() is not None:
        state, record = checkpoints.restore_latest(state)
        state = jax.device_put(state, NamedSharding(run.mesh, P()))
        step = int(checkpoints.latest_step())
        run.iterator.set_state(record["iterator"])
        _truncate_metrics(workdir / "metrics.jsonl", step)
        best = record.get("best")
        if best and best["step"] == step and checkpoints.best_step() != step:
            # Killed between the two saves of an improving evaluation: the state is the best one.
            checkpoints.save_best(step, state, record)
        log(f"resumed from step {step} in {workdir}")
    metrics_file = open(workdir / "metrics.jsonl", "a")
    writer = _tensorboard(workdir)
    window = None
    window_steps = 0
    train_seconds = 0.0
    eval_seconds = 0.0
    compile_seconds = None
    targets_done = 0.0
    bar = _progress(progress, run.total_steps, step)
    pending = None  # (summed metrics on the device, steps in the sum, last step): fetched one step late

    def flush():
        """Fetch the pending metric window, check it, log it. Syncs with the host; called one step late."""
        nonlocal pending, targets_done
        sums, count, at = pending
        pending = None
        values = jax.device_get(sums)
        loss = float(values["loss"]) / count
        if not math.isfinite(loss):
            good = checkpoints.latest_step()
            raise TrainingError(f"non-finite loss ({loss}) between steps {at - count + 1} and {at}; "
                                f"stopped. The last good checkpoint is step {good} in {workdir}/checkpoints "
                                f"(lower train.learning_rate or set train.clip_norm)")
        targets_done += float(values["targets"])
        line = {"step": at, "epoch": round(at / steps_per_epoch, 3), "loss": round(loss, 6),
                "grad_norm": round(float(values["grad_norm"]) / count, 6), "targets": int(values["targets"])}
        metrics_file.write(json.dumps(line) + "\n")
        metrics_file.flush()
        if writer:
            writer.add_scalar("train/loss", loss, at)
        if bar:
            bar[0].update(bar[1], completed=at, description=f"loss {loss:.4f}")

    try:
        while step < run.total_steps and not record["stopped_early"]:
            tick = time.perf_counter()
            batch = jax.device_put(next(run.iterator), batch_sharding)
            state, metrics = train_step(state, batch)
            if compile_seconds is None:
                jax.block_until_ready(metrics)
                compile_seconds = time.perf_counter() - tick
                tick = time.perf_counter()
            if pending is not None:  # the previous window, while this step runs on the device
                flush()
            window = metrics if window is None else jax.tree_util.tree_map(jnp.add, window, metrics)
            window_steps += 1
            step += 1
            evaluating = step % eval_every == 0 or step == run.total_steps
            if evaluating or step % log_every == 0:
                pending = (window, window_steps, step)
                window, window_steps = None, 0
            if evaluating:
                flush()  # the loss must be checked before this state is evaluated and saved
            train_seconds += time.perf_counter() - tick
            if evaluating:
                tick = time.perf_counter()
                valid = evaluator.evaluate(state.params, "valid")
                eval_seconds += time.perf_counter() - tick
                value = valid.get(metric_name)
                if value is None:
                    raise ConfigError(f"eval.metric '{metric_name}' is not computed; choose one of "
                                      f"{', '.join(k for k in valid if '@' in k)}")
                improved = record["best"] is None or value > record["best"]["value"]
                if improved:
                    record["best"] = {"step": step, "value": value, "valid": valid}
                    record["bad_evals"] = 0
                else:
                    record["bad_evals"] += 1
                    if patience and record["bad_evals"] >= patience:
                        record["stopped_early"] = True
                metrics_file.write(json.dumps({"step": step, "eval": "valid", **valid}) + "\n")
                metrics_file.flush()
                if writer:
                    for name, number in valid.items():
                        if isinstance(number, float):
                            writer.add_scalar(f"valid/{name}", number, step)
                record["iterator"] = run.iterator.get_state()
                checkpoints.save(step, state, record, improved)
        checkpoints.wait()
    finally:
        metrics_file.close()
        if writer:
            writer.close()
        if bar:
            bar[0].stop()
    best_state, best_record = checkpoints.restore_best(state)
    best_state = jax.device_put(best_state, NamedSharding(run.mesh, P()))
    checkpoints.close()
    tick = time.perf_counter()
    results = {
        "valid": evaluator.evaluate(best_state.params, "valid"),
        "test": evaluator.evaluate(best_state.params, "test"),
    }
    eval_seconds += time.perf_counter() - tick
    steps_run = step
    results["best_step"] = best_record["best"]["step"]
    results["steps"] = steps_run
    results["stopped_early"] = record["stopped_early"]
    results["config"] = json.loads(to_json(config))
    results["timings"] = {
        **timings,
        "compile_s": round(compile_seconds or 0.0, 3),
        "train_s": round(train_seconds, 3),
        "eval_s": round(eval_seconds, 3),
        "train_targets_per_s": round(targets_done / train_seconds, 1) if train_seconds else None,
        "train_step_compiles": train_step._cache_size(),
        "eval_step_compiles": evaluator.step._cache_size(),
    }
    (workdir / "results.json").write_text(json.dumps(results, indent=2))
    return results


def _tensorboard(workdir: Path):
    try:
        from tensorboardX import SummaryWriter
    except ImportError:  # optional at run time
        return None
    return SummaryWriter(str(workdir / "tb"))


def _progress(enabled: bool, total: int, done: int):
    if not enabled:
        return None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    class StepRate(TextColumn):
        def __init__(self):
            super().__init__("")

        def render(self, task):
            from rich.text import Text

            speed = task.speed
            return Text(f"{speed:.1f} steps/s" if speed else "")

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), StepRate(),
                   TimeRemainingColumn(), transient=False)
    task = bar.add_task("training", total=total, completed=done)
    bar.start()
    return bar, task
