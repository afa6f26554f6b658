"""`train_and_evaluate(config, workdir)`: the training loop of every model.

Read like the flax examples' `train_and_evaluate`: build the run (`stjax.train.build`), write the
run folder (`stjax.runs.RunFolder`), restore the latest checkpoint, then step; every `log_every`
steps the metric window goes to the sinks (`MetricsLog`: metrics.jsonl, TensorBoard, progress),
every evaluation to the best record (`Best`: the metric's direction, patience) and a checkpoint.
Running again in the same folder resumes and ends with exactly the metrics of an uninterrupted
run: batches come from the saved iterator position and keys from (seed, step). Metrics
accumulate on the device and are fetched one step late (after the next step is dispatched);
nothing else syncs with the host inside the loop except evaluations.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from stjax import distributed
from stjax.compiles import CompileCounter
from stjax.config import ConfigError, to_json
from stjax.progress import rate_bar
from stjax.runs import RunError, RunFolder, WorkdirLock, is_writer, read_json  # noqa: F401  (re-exported)
from stjax.train.build import (  # noqa: F401  (re-exported: the run-building API)
    Model,
    Run,
    TrainingError,
    build_model,
    build_run,
    load_model,
    make_evaluators,
)
from stjax.train.state import make_train_step, put_batch


def read_context(workdir: str | Path) -> dict | None:
    """The run-wide arrays a run trained with (its context.npz), or None when it has none."""
    return RunFolder(workdir).context()


class Best:
    """The best evaluation so far and early stopping: `update(step, value, valid)` says whether
    `value` improves on the best in the metric's direction; `patience` evaluations without
    improvement stop the run (0 = never). `record` is what a checkpoint saves (and resume restores)."""

    def __init__(self, record: dict, higher_is_better: bool, patience: int):
        self.record, self.higher, self.patience = record, higher_is_better, patience

    def improves(self, value: float) -> bool:
        best = self.record["best"]
        if best is None:
            return True
        return value > best["value"] if self.higher else value < best["value"]

    def update(self, step: int, value: float, valid: dict) -> bool:
        improved = self.improves(value)
        if improved:
            self.record["best"] = {"step": step, "value": value, "valid": valid}
            self.record["bad_evals"] = 0
        else:
            self.record["bad_evals"] += 1
            if self.patience and self.record["bad_evals"] >= self.patience:
                self.record["stopped_early"] = True
        return improved

    @property
    def stopped(self) -> bool:
        return bool(self.record["stopped_early"])


class MetricsLog:
    """Where metrics go: a line per log step and per evaluation in metrics.jsonl, TensorBoard
    scalars, and the progress bar (or a plain line to `log`). Only process 0 writes."""

    def __init__(self, folder: RunFolder, step: int, total_steps: int, steps_per_epoch: int, log, progress: bool):
        self.log, self.total_steps, self.steps_per_epoch = log, total_steps, steps_per_epoch
        writer = is_writer()
        self.file = open(folder.metrics_path, "a") if writer else None
        self.tensorboard = _tensorboard(folder.path, step) if writer else None
        self.bar = _progress(progress and writer, total_steps, step)

    def train(self, at: int, count: int, values: dict) -> tuple[float, float]:
        """A fetched window of `count` steps ending at step `at`: (mean loss, targets)."""
        loss = float(values["loss"]) / count
        if not math.isfinite(loss):
            return loss, 0.0
        targets = float(values.pop("targets", 0.0))
        line = {"step": at, "epoch": round(at / self.steps_per_epoch, 3), "loss": round(loss, 6)}
        # Every other metric (grad_norm, per-group losses, the model's aux scalars) is a mean over the window.
        line |= {name: round(float(value) / count, 6) for name, value in values.items() if name != "loss"}
        line["targets"] = int(targets)
        self._write(line)
        if self.tensorboard:
            for name, value in line.items():
                if name not in ("step", "epoch"):
                    self.tensorboard.add_scalar(f"train/{name}", value, at)
        if self.bar:
            self.bar[0].update(self.bar[1], completed=at, description=f"loss {loss:.4f}")
        else:
            self.log(f"step {at}/{self.total_steps} epoch {line['epoch']:.2f} loss {loss:.4f} "
                     f"grad_norm {line['grad_norm']:.3f}")
        return loss, targets

    def valid(self, step: int, valid: dict, metric: str, value: float, best: dict) -> None:
        self._write({"step": step, "eval": "valid", **valid})
        if not self.bar:
            self.log(f"step {step}: valid {metric} {value:.4f} (best {best['value']:.4f} at step {best['step']})")
        if self.tensorboard:
            for name, number in valid.items():
                if isinstance(number, float):
                    self.tensorboard.add_scalar(f"valid/{name}", number, step)

    def _write(self, line: dict) -> None:
        if self.file:
            self.file.write(json.dumps(line) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file:
            self.file.close()
        if self.tensorboard:
            self.tensorboard.close()
        if self.bar:
            self.bar[0].stop()


def train_and_evaluate(config, workdir: str | Path, log=print, progress: bool = True) -> dict:
    """Trains and evaluates `config` in `workdir` (resuming what is there); returns results.json's content.

    progress: a live progress bar; without it a plain line per log step and per evaluation goes to `log`."""
    folder = RunFolder(workdir)
    folder.path.mkdir(parents=True, exist_ok=True)
    with folder.lock():
        return _train_and_evaluate(config, folder, log, progress)


def _train_and_evaluate(config, folder: RunFolder, log, progress: bool) -> dict:
    folder.check_resumable(config)
    timings = {}
    start = time.perf_counter()
    run = build_run(config, log=log)
    timings["data_s"] = round(sum(run.prepared.timings.values()), 3)
    timings["setup_s"] = round(time.perf_counter() - start, 3)
    folder.write(run.config, run.spec, run.info, run.prepared.log, run.prepared.sequences.time_origin, run.context)
    train = config.train
    compiles = CompileCounter()
    evaluators = make_evaluators(run)
    higher = evaluators.higher_is_better(config.eval.metric)
    checkpoints = folder.checkpoints(keep=int(train.keep_checkpoints), async_save=bool(train.async_checkpoints),
                                     log=log, higher_is_better=higher)
    best = Best({"best": None, "bad_evals": 0, "iterator": run.iterator.get_state(), "stopped_early": False},
                higher, int(train.patience))
    state, step = run.state, 0
    if checkpoints.latest_step() is not None:
        with distributed.paused():
            state, best.record, step = checkpoints.restore_intact(run.abstract_state())
        try:
            run.iterator.set_state(best.record["iterator"])
        except ValueError as err:  # its batches were built in blocks these processes cannot share
            raise RunError(f"{folder}: cannot resume here: {err}") from None
        log(f"resumed from step {step} in {folder}")
    folder.truncate_metrics(step, log)
    fitted = fit(run, folder, evaluators, checkpoints, best, state, step, log=log, progress=progress)
    best_state, best_record = checkpoints.restore_best(run.abstract_state())
    checkpoints.close()
    tick = time.perf_counter()
    results = {
        "valid": evaluators.evaluate(best_state.params, "valid", run.context),
        "test": evaluators.evaluate(best_state.params, "test", run.context),
        "protocols": evaluators.protocols,
    }
    folder.write_rows(evaluators.per_row(best_state.params, "test", run.context))
    fitted.clock["eval"] += time.perf_counter() - tick
    results["best_step"] = best_record["best"]["step"]
    results["steps"] = fitted.step
    results["epochs"] = round(fitted.step / run.iterator.steps_per_epoch, 2)  # steps trained, in epochs
    results["stopped_early"] = best.stopped
    results["config"] = json.loads(to_json(config))
    results["timings"] = {**timings, **fitted.timings(compiles, evaluators)}
    folder.write_results(results)
    return results


@dataclasses.dataclass
class Fitted:
    """What `fit` ends with: the last state and step, its clocks (seconds of training, evaluation and the
    first step's compile; targets trained) and its jitted step (for compile counts)."""

    state: object
    step: int
    clock: dict
    train_step: object

    def timings(self, compiles: CompileCounter, evaluators) -> dict:
        clock = self.clock
        return {
            "compile_s": round(clock["compile"] or 0.0, 3),
            "train_s": round(clock["train"], 3),
            "eval_s": round(clock["eval"], 3),
            "train_targets_per_s": round(clock["targets"] / clock["train"], 1) if clock["train"] else None,
            "train_step_compiles": compiles.count(self.train_step),
            "eval_step_compiles": compiles.count(*evaluators.steps),
        }


def fit(run, folder: RunFolder, evaluators, checkpoints, best: Best, state, step: int, *, log, progress: bool,
        origin: int = 0) -> Fitted:
    """Steps `state` from `step` to `run.total_steps` on `run.iterator`'s batches: a metric window to the
    sinks every `train.log_every` steps, an evaluation on "valid" (into `best`) and a checkpoint every
    `train.eval_every` steps (or `eval_every_epochs` epochs) counted from `origin`, and at the last step.
    `train_and_evaluate` fits from step 0 (or where it resumes); `stjax.train.update` from the run's last
    step, with `origin` there."""
    config = run.config
    train = config.train
    metric_name = config.eval.metric
    train_step = make_train_step(run.spec, run.module, run.tx, config.model, int(config.seed), run.shardings)
    steps_per_epoch = run.iterator.steps_per_epoch
    eval_every = int(train.eval_every) or steps_per_epoch * int(train.eval_every_epochs)
    log_every = max(1, int(train.log_every))
    sink = MetricsLog(folder, step, run.total_steps, steps_per_epoch, log, progress)
    clock = {"train": 0.0, "eval": 0.0, "compile": None, "targets": 0.0}

    def flush(window):
        """Fetch a metric window, check its loss, log it. Syncs with the host; called one step late."""
        sums, count, at = window
        loss, targets = sink.train(at, count, jax.device_get(sums))
        if not math.isfinite(loss):
            raise TrainingError(f"non-finite loss ({loss}) between steps {at - count + 1} and {at}; "
                                f"stopped. The last good checkpoint is step {checkpoints.latest_step()} in "
                                f"{checkpoints.root} (lower train.learning_rate or set train.clip_norm)")
        clock["targets"] += targets
        checkpoints.check()  # a failed background save stops the run here, not one evaluation later

    try:
        with distributed.watching():  # several processes: a peer that stops stepping ends this one
            state, step = _steps(run, train_step, evaluators, checkpoints, best, sink, flush, clock, state, step,
                                 origin, eval_every, log_every, metric_name)
        checkpoints.wait()
    finally:
        sink.close()
    return Fitted(state, step, clock, train_step)


def _steps(run, train_step, evaluators, checkpoints, best, sink, flush, clock, state, step, origin, eval_every,
           log_every, metric_name):
    """`fit`'s loop: the steps, the metric windows, the evaluations and checkpoints."""
    window, window_steps, pending = None, 0, None  # pending: a window fetched one step late
    previous = None  # the last step's metrics: a multi-process watchdog beat waits for them
    while step < run.total_steps and not best.stopped:
        tick = time.perf_counter()
        if clock["compile"] is None:  # compiling may take long: the watchdog waits
            with distributed.paused():
                state, metrics = train_step(state, put_batch(next(run.iterator), run.shardings.batch),
                                            run.context)
                jax.block_until_ready(metrics)
            clock["compile"] = time.perf_counter() - tick
            tick = time.perf_counter()
        else:
            state, metrics = train_step(state, put_batch(next(run.iterator), run.shardings.batch), run.context)
        distributed.beat(after=previous)  # the previous step is done (this one is dispatched)
        previous = metrics
        if pending is not None:  # the previous window, while this step runs on the device
            flush(pending)
            pending = None
        window = metrics if window is None else jax.tree_util.tree_map(jnp.add, window, metrics)
        window_steps += 1
        step += 1
        evaluating = (step - origin) % eval_every == 0 or step == run.total_steps
        if evaluating or step % log_every == 0:
            pending, window, window_steps = (window, window_steps, step), None, 0
        if evaluating:
            flush(pending)  # the loss must be checked before this state is evaluated and saved
            pending = None
        clock["train"] += time.perf_counter() - tick
        if evaluating:
            tick = time.perf_counter()
            if clock["eval"] == 0.0:  # the first evaluation compiles its step: the watchdog waits
                with distributed.paused():
                    valid = evaluators.evaluate(state.params, "valid", run.context)
            else:
                valid = evaluators.evaluate(state.params, "valid", run.context)
            clock["eval"] += time.perf_counter() - tick
            value = valid.get(metric_name)
            if value is None:
                raise ConfigError(f"eval.metric '{metric_name}' is not computed; choose one of "
                                  f"{', '.join(k for k in valid if k != 'num_users')}")
            best.update(step, value, valid)
            sink.valid(step, valid, metric_name, value, best.record["best"])
            best.record["iterator"] = run.iterator.get_state()
            with distributed.paused():  # a save may wait for the previous one to finish writing
                checkpoints.save(step, state, best.record, value)
            distributed.set_context(f"the checkpoints are in {checkpoints.root} (the last one at step {step}, "
                                    f"if its save completed); the same command resumes")
    return state, step


def _tensorboard(workdir: Path, step: int):
    """Event files; from scratch old events go, on resume events after `step` are purged."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:  # optional at run time
        return None
    if step == 0 and (workdir / "tb").exists():
        shutil.rmtree(workdir / "tb")
    return SummaryWriter(str(workdir / "tb"), purge_step=step or None)


def _progress(enabled: bool, total: int, done: int):
    if not enabled:
        return None
    bar = rate_bar("training", total, "steps", completed=done)
    bar[0].start()
    return bar
