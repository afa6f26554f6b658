"""Building a run: the model of a config on the data's sizes (`build_model`), a run with its data
and iterator (`build_run`), the evaluators (`make_evaluators`), and the model of a run folder
with its best checkpoint, without the data (`load_model`).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import jax
import numpy as np

from stjax import models
from stjax.config import ConfigError
from stjax.data.batching import BatchIterator
from stjax.data.kinds import sample_batch
from stjax.data.pipeline import prepare
from stjax.devices import put_global
from stjax.eval.evaluator import EvalSetup, EvaluationError, Evaluators, check_split
from stjax.eval.evaluator import make_evaluators as _make_evaluators
from stjax.models.base import DataInfo
from stjax.runs import RunError, RunFolder
from stjax.train.state import (
    Shardings,
    TrainState,
    abstract_state,
    create_optimizer,
    create_state,
    make_mesh,
    rules_from_config,
)
from stjax.validation import check_against_data, check_batch_size, check_model

TrainingError = RunError  # training cannot go on (non-finite loss, no training examples, a run folder in use)


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
    check_batch_size(config, mesh.shape["data"])
    check_model(config)
    module = spec.make(config.model, info)
    context = {} if context is None else context
    batch = sample_batch(spec.batch_kind, batch_size, info.max_length, info.max_bag,
                         int(config.data.num_negatives), max(1, info.horizon))
    state, tx, shardings = create_state(
        spec, module, lambda params: create_optimizer(train, total_steps, spec, params), batch, context,
        int(config.seed), mesh, rules_from_config(train.logical_axis_rules))
    return Model(config, spec, module, info, tx, state, shardings, put_global(context, shardings.replicated))


def _mesh(config):
    if jax.process_count() > 1:  # each process feeds B/P rows to its own devices (put_local)
        local, model = jax.local_device_count(), int(config.train.model_parallel)
        if int(config.train.num_devices) not in (0, jax.device_count()) or local % model:
            raise ConfigError(f"train.num_devices {config.train.num_devices} / train.model_parallel {model}: with "
                              f"{jax.process_count()} processes the mesh must use every device and the model axis "
                              f"must stay inside a process ({local} devices each)")
    try:
        return make_mesh(int(config.train.num_devices), int(config.train.model_parallel))
    except ValueError as err:
        raise ConfigError(str(err)) from None


def build_run(config, log=print, context: dict | None = None) -> Run:
    """Data, model, optimizer and a fresh state for `config` (no training). context: the run-wide
    arrays to use instead of building them from the data (a run folder's, see `read_context`)."""
    spec = _spec(config)
    split = config.data.split
    problem = check_split(config.eval.evaluators, split)
    if problem:
        raise ConfigError(problem)
    mesh = _mesh(config)
    try:
        prepared = prepare(config.data, log=log, batch_kind=spec.batch_kind)
    except ValueError as err:  # a data config the pipeline cannot use (unknown split, bad columns, ...)
        raise ConfigError(f"data config: {err}") from None
    sequences = prepared.sequences
    if prepared.split is not None:  # forecasters rank no items
        check_against_data(config, sequences.num_items)
    if prepared.train_source.num_rows == 0:
        raise TrainingError(f"no training examples for batch kind '{spec.batch_kind}' (for sequences: every "
                            f"user has fewer than two training events)")
    info = DataInfo(num_users=sequences.num_users, num_items=sequences.num_items, max_length=sequences.max_length,
                    item_shards=math.lcm(mesh.shape["model"], int(config.train.item_rows_multiple)),
                    max_bag=int(prepared.bags["bag"].shape[1]) if prepared.bags is not None else 0,
                    horizon=int(getattr(sequences, "horizon", 0)))
    try:
        iterator = BatchIterator(prepared.train_source, int(config.train.batch_size), seed=int(config.seed),
                                 process_index=jax.process_index(), process_count=jax.process_count(),
                                 blocks=int(config.train.get("batch_blocks", 0)))
    except ValueError as err:  # a batch size the processes or blocks cannot share
        raise ConfigError(f"train.batch_size / train.batch_blocks: {err}") from None
    total_steps = int(config.train.num_steps or 0) or int(config.train.num_epochs) * iterator.steps_per_epoch
    try:
        context = spec.make_context(prepared, info, config) if context is None else context
    except ValueError as err:  # e.g. an unknown model.relation, or 'given' without a relation_file
        raise ConfigError(f"model config: {err}") from None
    model = build_model(config, info, context, total_steps, mesh)
    return Run(**{f.name: getattr(model, f.name) for f in dataclasses.fields(Model)}, prepared=prepared,
               iterator=iterator, total_steps=total_steps)


def _popularity(prepared) -> np.ndarray | None:
    if prepared.split is None:  # forecasters: series, no items
        return None
    return np.bincount(prepared.sequences.train["targets"].ravel(), minlength=prepared.sequences.num_items + 1)


def make_evaluators(run: Run) -> Evaluators:
    """The evaluators of the run's `eval.evaluators` (see `stjax.eval.evaluator.EVALUATORS`)."""
    setup = EvalSetup(run.spec, run.module, run.prepared.sequences, run.config.eval, run.config.data.split,
                      _popularity(run.prepared), seed=int(run.config.seed), shardings=run.shardings,
                      width=run.info.item_rows)
    try:
        return _make_evaluators(setup)
    except EvaluationError as err:
        raise ConfigError(str(err)) from None


def load_model(workdir: str | Path, num_devices: int = 0, model_parallel: int = 1) -> tuple[Model, dict]:
    """The model of a run folder with its best checkpoint, on a mesh of this process's devices,
    without the data. Returns (model, run.json with `best_step`)."""
    folder = RunFolder(workdir)
    config = folder.config()
    record = folder.record()
    with config.unlocked():
        config.train.num_devices, config.train.model_parallel = num_devices, model_parallel
    mesh = _mesh(config)
    info = DataInfo.from_dict(record["info"])  # the saved row count: the checkpoint's shapes
    if info.item_shards % mesh.shape["model"]:
        raise ConfigError(f"{workdir}: the item table was padded for {info.item_shards} shards, which "
                          f"{mesh.shape['model']} model-parallel devices do not divide (train with "
                          f"train.item_rows_multiple set to a multiple of both)")
    model = build_model(config, info, folder.context() or {}, mesh=mesh)
    model.state, _, record["best_step"] = folder.restore(model.abstract_state(), prefer_best=True)
    return model, record
