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
import shutil
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from stjax import models
from stjax.compiles import CompileCounter
from stjax.config import ConfigError, saved_config, to_json
from stjax.data.batching import BatchIterator, relative_times, sample_batch, user_histories
from stjax.data.pipeline import prepare
from stjax.eval.evaluator import EVALUATORS, EvaluationError, Evaluator, Evaluators
from stjax.models.base import DataInfo
from stjax.progress import rate_bar
from stjax.train.checkpoint import Checkpoints
from stjax.train.state import (
    Shardings,
    TrainState,
    abstract_state,
    create_optimizer,
    create_state,
    make_mesh,
    make_train_step,
    put_batch,
    rules_from_config,
)
from stjax.validation import check_against_data


class TrainingError(Exception):
    """Training cannot go on (non-finite loss, incompatible workdir): a clear message, exit 2."""


@dataclasses.dataclass
class Model:
    """A model ready to run: spec, module, sizes, mesh shardings and a state born sharded."""

    config: object
    spec: object
    module: object
    info: DataInfo
    tx: object
    state: TrainState
    shardings: Shardings
    context: object

    @property
    def mesh(self):
        return self.shardings.mesh

    def abstract_state(self):
        return abstract_state(self.state, self.shardings)


@dataclasses.dataclass
class Run(Model):
    """A Model plus its data: the prepared log, the training iterator and the step budget."""

    prepared: object = None
    iterator: BatchIterator = None
    total_steps: int = 0


def _spec(config):
    try:
        return models.get(config.model.name)
    except KeyError as err:
        raise ConfigError(str(err.args[0])) from None


def build_model(config, info: DataInfo, context=None, total_steps: int = 1, mesh=None) -> Model:
    """Module, optimizer and a fresh sharded state for `config` on `info`'s sizes (no data needed)."""
    spec = _spec(config)
    train = config.train
    mesh = mesh or _mesh(config)
    batch_size = int(train.batch_size)
    if batch_size % mesh.shape["data"]:
        raise ConfigError(f"train.batch_size {batch_size} is not divisible by the {mesh.shape['data']} "
                          f"data-parallel devices")
    try:
        module = spec.make(config.model, info)
    except ValueError as err:  # a model setting the model rejects (an unknown fusion, parts, ...)
        raise ConfigError(f"model config: {err}") from None
    context = {} if context is None else context
    batch = sample_batch(spec.batch_kind, batch_size, info.max_length, info.max_bag,
                         int(config.data.num_negatives))
    state, tx, shardings = create_state(
        spec, module, lambda params: create_optimizer(train, total_steps, spec, params), batch, context,
        int(config.seed), mesh, rules_from_config(train.logical_axis_rules))
    return Model(config, spec, module, info, tx, state, shardings, jax.device_put(context, shardings.replicated))


def _mesh(config):
    try:
        return make_mesh(int(config.train.num_devices), int(config.train.model_parallel))
    except ValueError as err:
        raise ConfigError(str(err)) from None


def build_run(config, log=print, context: dict | None = None) -> Run:
    """Data, model, optimizer and a fresh state for `config` (no training). context: the run-wide
    arrays to use instead of building them from the data (a run folder's, see `read_context`)."""
    spec = _spec(config)
    split = config.data.split
    for name in config.eval.evaluators:
        if name not in EVALUATORS:
            raise ConfigError(f"eval.evaluators: unknown evaluator '{name}'; expected {', '.join(EVALUATORS)}")
        if (name == "fold_in") != (split == "held_out_users"):
            raise ConfigError(f"eval.evaluators: '{name}' does not apply to data.split={split} "
                              f"({'fold_in' if split == 'held_out_users' else 'ranking'} does)")
    mesh = _mesh(config)
    try:
        prepared = prepare(config.data, log=log, batch_kind=spec.batch_kind)
    except ValueError as err:  # a data config the pipeline cannot use (unknown split, bad columns, ...)
        raise ConfigError(f"data config: {err}") from None
    sequences = prepared.sequences
    check_against_data(config, sequences.num_items)
    if prepared.train_source.num_rows == 0:
        raise TrainingError(f"no training examples for batch kind '{spec.batch_kind}' (for sequences: every "
                            f"user has fewer than two training events)")
    info = DataInfo(num_users=sequences.num_users, num_items=sequences.num_items, max_length=sequences.max_length,
                    item_shards=math.lcm(mesh.shape["model"], int(config.train.item_rows_multiple)),
                    max_bag=int(prepared.bags["bag"].shape[1]) if prepared.bags is not None else 0)
    iterator = BatchIterator(prepared.train_source, int(config.train.batch_size), seed=int(config.seed),
                             process_index=jax.process_index(), process_count=jax.process_count())
    total_steps = int(config.train.num_steps or 0) or int(config.train.num_epochs) * iterator.steps_per_epoch
    try:
        context = spec.make_context(prepared, info, config) if context is None else context
    except ValueError as err:  # e.g. an unknown model.relation, or 'given' without a relation_file
        raise ConfigError(f"model config: {err}") from None
    model = build_model(config, info, context, total_steps, mesh)
    return Run(**{f.name: getattr(model, f.name) for f in dataclasses.fields(Model)}, prepared=prepared,
               iterator=iterator, total_steps=total_steps)


def _popularity(prepared) -> np.ndarray:
    return np.bincount(prepared.sequences.train["targets"].ravel(), minlength=prepared.sequences.num_items + 1)


def make_evaluators(run: Run) -> Evaluators:
    try:
        evaluators = [Evaluator(run.spec, run.module, run.prepared.sequences, run.config.eval,
                                _popularity(run.prepared), seed=int(run.config.seed), shardings=run.shardings,
                                width=run.info.item_rows, name=name)
                      for name in run.config.eval.evaluators]
    except EvaluationError as err:
        raise ConfigError(str(err)) from None
    return Evaluators(evaluators, run.spec, run.module)


def write_run_files(workdir: Path, run: Run) -> None:
    """What `evaluate` and `recommend` need without the data: config, sizes, vocabularies, histories."""
    log = run.prepared.log
    (workdir / "config.json").write_text(to_json(run.config))
    (workdir / "run.json").write_text(json.dumps({
        "model": run.spec.name, "batch_kind": run.spec.batch_kind,
        "info": run.info.to_dict(), "time_origin": run.prepared.sequences.time_origin}))
    (workdir / "vocab.json").write_text(json.dumps({
        "items": log.item_vocab.tokens.tolist(), "users": log.user_vocab.tokens.tolist(),
        "time_origin": run.prepared.sequences.time_origin}))
    times, _ = relative_times(log)
    np.savez(workdir / "histories.npz", **user_histories(log, times))
    context = jax.device_get(run.context)
    if context:
        flat = {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(leaf)
                for path, leaf in jax.tree_util.tree_flatten_with_path(context)[0]}
        np.savez(workdir / "context.npz", **flat)


def _unflatten(flat: dict) -> dict:
    tree: dict = {}
    for key, value in flat.items():
        node = tree
        *parents, last = key.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return tree


def read_context(workdir: str | Path) -> dict | None:
    """The run-wide arrays a run trained with (its context.npz), or None when it has none."""
    path = Path(workdir) / "context.npz"
    return _unflatten(dict(np.load(path))) if path.exists() else None


def load_model(workdir: str | Path, num_devices: int = 0, model_parallel: int = 1) -> tuple[Model, dict]:
    """The model of a run folder with its best checkpoint, on a mesh of this process's devices,
    without the data. Returns (model, run.json)."""
    workdir = Path(workdir)
    config = saved_config(read_json(workdir / "config.json", "the run's config"))
    record = read_json(workdir / "run.json", "the run's sizes")
    if not isinstance(record, dict) or not isinstance(record.get("info"), dict):
        raise TrainingError(f"{workdir / 'run.json'}: the run's sizes are not a JSON object with 'info'")
    with config.unlocked():
        config.train.num_devices, config.train.model_parallel = num_devices, model_parallel
    mesh = _mesh(config)
    info = DataInfo.from_dict(record["info"])  # the saved row count: the checkpoint's shapes
    if info.item_shards % mesh.shape["model"]:
        raise ConfigError(f"{workdir}: the item table was padded for {info.item_shards} shards, which "
                          f"{mesh.shape['model']} model-parallel devices do not divide (train with "
                          f"train.item_rows_multiple set to a multiple of both)")
    context = read_context(workdir) or {}
    model = build_model(config, info, context, mesh=mesh)
    checkpoints = Checkpoints(workdir, async_save=False)
    if checkpoints.latest_step() is None:
        checkpoints.close()
        raise TrainingError(f"{workdir}: no checkpoint yet; train first")
    state, _, record["best_step"] = checkpoints.restore_intact(model.abstract_state(), prefer_best=True)
    checkpoints.close()
    model.state = state
    return model, record


def read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TrainingError(f"{path}: {what} is unreadable ({err.__class__.__name__}: {err}); "
                            f"delete the run folder or use another --workdir") from None


def _check_workdir(workdir: Path, config) -> None:
    saved = workdir / "config.json"
    if not saved.exists():
        return
    old = read_json(saved, "the run's config")
    if not isinstance(old, dict):
        raise TrainingError(f"{saved}: the run's config is not a JSON object; delete the run folder or use "
                            f"another --workdir")
    new = json.loads(to_json(config))
    if old.get("model", {}).get("name") == new["model"]["name"]:  # keys added since: their defaults
        old = json.loads(to_json(saved_config(old)))
    if old.get("model", {}).get("name") != new["model"]["name"]:
        raise TrainingError(f"{workdir} holds a run of model '{old.get('model', {}).get('name')}', not "
                            f"'{new['model']['name']}'; use another --workdir")
    for section in ("model", "data"):
        if old.get(section) != new.get(section):
            raise TrainingError(f"{workdir} holds a run with a different '{section}' config; resume needs the same "
                                f"config (use another --workdir)")


def _truncate_metrics(path: Path, step: int, log) -> None:
    """Keeps the lines of steps <= `step` (all of them go when step is 0). A torn last line (a kill
    during a write) is dropped with a note; garbage elsewhere is an error naming the line."""
    if not path.exists():
        return
    lines = path.read_text(errors="replace").splitlines()
    kept = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict):
                raise ValueError("not an object")
        except ValueError as err:
            if number == len(lines):
                log(f"{path}:{number}: dropped a torn last line")
                continue
            raise TrainingError(f"{path}:{number}: not a metrics record ({err}); delete the file to go on") from None
        if int(entry.get("step", 0)) <= step:
            kept.append(line)
    path.write_text("".join(line + "\n" for line in kept))


class WorkdirLock:
    """One trainer per run folder: an advisory lock (fcntl) on `<workdir>/.lock`, held for the run.

    The kernel drops the lock when its process dies, so a lock left by a killed run is free."""

    def __init__(self, workdir: Path):
        self.path = workdir / ".lock"
        self.handle = None

    def __enter__(self):
        import fcntl
        import os

        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise TrainingError(f"{self.path.parent} is in use by another stjax train (pid {holder}); wait for it "
                                f"to finish or use another --workdir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self.handle = handle
        return self

    def __exit__(self, *exc):
        import fcntl

        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()
        return False


def train_and_evaluate(config, workdir: str | Path, log=print, progress: bool = True) -> dict:
    """Trains and evaluates `config` in `workdir` (resuming what is there); returns results.json's content.

    progress: a live progress bar; without it a plain line per log step and per evaluation goes to `log`."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    with WorkdirLock(workdir):
        return _train_and_evaluate(config, workdir, log, progress)


def _train_and_evaluate(config, workdir: Path, log, progress: bool) -> dict:
    _check_workdir(workdir, config)
    timings = {}
    start = time.perf_counter()
    run = build_run(config, log=log)
    timings["data_s"] = round(sum(run.prepared.timings.values()), 3)
    timings["setup_s"] = round(time.perf_counter() - start, 3)
    write_run_files(workdir, run)
    train = config.train
    compiles = CompileCounter()
    evaluators = make_evaluators(run)
    train_step = make_train_step(run.spec, run.module, run.tx, config.model, int(config.seed), run.shardings)
    batch_sharding = run.shardings.batch
    context = run.context
    checkpoints = Checkpoints(workdir, keep=int(train.keep_checkpoints), async_save=bool(train.async_checkpoints),
                              log=log)
    metric_name = config.eval.metric
    steps_per_epoch = run.iterator.steps_per_epoch
    eval_every = int(train.eval_every) or steps_per_epoch * int(train.eval_every_epochs)
    log_every = max(1, int(train.log_every))
    patience = int(train.patience)
    record = {"best": None, "bad_evals": 0, "iterator": run.iterator.get_state(), "stopped_early": False}
    state = run.state
    step = 0
    if checkpoints.latest_step() is not None:
        state, record, step = checkpoints.restore_intact(run.abstract_state())
        run.iterator.set_state(record["iterator"])
        log(f"resumed from step {step} in {workdir}")
    _truncate_metrics(workdir / "metrics.jsonl", step, log)
    metrics_file = open(workdir / "metrics.jsonl", "a")
    writer = _tensorboard(workdir, step)
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
        targets = float(values.pop("targets", 0.0))
        targets_done += targets
        line = {"step": at, "epoch": round(at / steps_per_epoch, 3), "loss": round(loss, 6)}
        # Every other metric (grad_norm, per-group losses, the model's aux scalars) is a mean over the window.
        line |= {name: round(float(value) / count, 6) for name, value in values.items() if name != "loss"}
        line["targets"] = int(targets)
        metrics_file.write(json.dumps(line) + "\n")
        metrics_file.flush()
        if writer:
            for name, value in line.items():
                if name not in ("step", "epoch"):
                    writer.add_scalar(f"train/{name}", value, at)
        if bar:
            bar[0].update(bar[1], completed=at, description=f"loss {loss:.4f}")
        else:
            log(f"step {at}/{run.total_steps} epoch {line['epoch']:.2f} loss {loss:.4f} "
                f"grad_norm {line['grad_norm']:.3f}")
        checkpoints.check()  # a failed background save stops the run here, not one evaluation later

    try:
        while step < run.total_steps and not record["stopped_early"]:
            tick = time.perf_counter()
            batch = put_batch(next(run.iterator), batch_sharding)
            state, metrics = train_step(state, batch, context)
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
                valid = evaluators.evaluate(state.params, "valid", context)
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
                if not bar:
                    log(f"step {step}: valid {metric_name} {value:.4f} (best {record['best']['value']:.4f} at step "
                        f"{record['best']['step']})")
                if writer:
                    for name, number in valid.items():
                        if isinstance(number, float):
                            writer.add_scalar(f"valid/{name}", number, step)
                record["iterator"] = run.iterator.get_state()
                checkpoints.save(step, state, record, value)
        checkpoints.wait()
    finally:
        metrics_file.close()
        if writer:
            writer.close()
        if bar:
            bar[0].stop()
    best_state, best_record = checkpoints.restore_best(run.abstract_state())
    checkpoints.close()
    tick = time.perf_counter()
    results = {
        "valid": evaluators.evaluate(best_state.params, "valid", context),
        "test": evaluators.evaluate(best_state.params, "test", context),
        "protocols": evaluators.protocols,
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
        "train_step_compiles": compiles.count(train_step),
        "eval_step_compiles": compiles.count(*evaluators.steps),
    }
    (workdir / "results.json").write_text(json.dumps(results, indent=2))
    return results


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
