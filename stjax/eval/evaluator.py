"""Evaluators listed in the config (`eval.evaluators`), run on the device, shared by every model.

`ranking`: the split's validation/test users, each with its history and up to M targets, in
full-ranking mode (every item is a candidate) or labelled sampled mode (M = 1). `fold_in`: the
same metrics for held-out users, whose input is 80% of their events (see `fold_in_examples`).
Users go in fixed-size batches split over the mesh axis `data` (the score block is batch x W x M
and never larger than `max_score_block`); history items are masked except the targets; per-row
metrics are summed on the device and fetched once at the end. `prepare_scoring` runs once per
evaluation, not per batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from stjax import distributed
from stjax.data.batching import eval_batches
from stjax.data.kinds import get_kind
from stjax.devices import fetch, put_global
from stjax.eval.metrics import METRICS, mask_scores, rank_metrics, target_ranks
from stjax.models.shared import mask_non_items


class EvaluationError(ValueError):
    """An evaluator that cannot run on this data or config (a user error)."""


def eval_batch_size(config, width: int, targets: int = 1, multiple: int = 1) -> int:
    """Rows per batch: eval.batch_size, lowered so that rows x width x targets <= max_score_block,
    and a multiple of the data-parallel devices."""
    size = int(config.batch_size)
    block = int(config.max_score_block)
    if block:
        size = max(1, min(size, block // (width * max(1, targets))))
    return max(multiple, size // multiple * multiple)


def make_eval_step(spec, module, ks, num_items: int, mode: str = "full", exclude_history: bool = True,
                   per_row: bool = False):
    """jit-compiled (params, batch, context, scoring) -> dict of summed metrics; one compile per run.
    exclude_history: mask the user's history items other than the targets (RecBole's protocol);
    False ranks every item (next-POI protocols, where revisits are targets like any other).
    per_row: the step returns each row's target ranks int32[B, M] and their validity instead
    (sampled mode: one rank among the negatives), for breakdowns of accuracy."""

    def ranks_of(params, batch, context, scoring):
        scores = spec.score(module, {"params": params}, batch, context=context, scoring=scoring).astype(jnp.float32)
        scores = mask_non_items(scores, num_items)  # padding and the table's padded rows: never items
        targets = batch["targets"]
        if mode == "full":
            exclude = batch["exclude"] if exclude_history else jnp.zeros_like(batch["exclude"][:, :1])
            ranks = target_ranks(mask_scores(scores, exclude), targets)  # mask_scores masks item 0
        else:
            candidates = jnp.concatenate([targets[:, :1], batch["negatives"]], axis=1)
            candidate_scores = jnp.take_along_axis(scores, candidates, axis=1)
            # Ties: the target ranks behind negatives with the same score (pessimistic).
            ranks = jnp.sum(candidate_scores[:, 1:] >= candidate_scores[:, :1], axis=1)[:, None]
            targets = targets[:, :1]
        return ranks, targets > 0

    def eval_step(params, batch, context, scoring):
        ranks, valid = ranks_of(params, batch, context, scoring)
        rows = rank_metrics(ranks, valid, ks)
        weights = batch["weights"]
        return {name: jnp.sum(values * weights) for name, values in rows.items()} | {"count": jnp.sum(weights)}

    return jax.jit(ranks_of if per_row else eval_step)


def sample_negatives(examples: dict, num_items: int, count: int, strategy: str, popularity: np.ndarray | None,
                     seed: int) -> np.ndarray:
    """count negatives per row, never a target or a history item; int32[rows, count]."""
    rng = np.random.default_rng(seed)
    targets = np.asarray(examples["targets"]).reshape(len(examples["targets"]), -1)
    rows = len(targets)
    out = np.zeros((rows, count), np.int32)
    if strategy == "popularity":
        p = popularity[1:num_items + 1].astype(np.float64)
        p = p / p.sum()
    for row in range(rows):
        seen = set(examples["exclude"][row].tolist()) | set(targets[row].tolist()) | {0}
        chosen: list[int] = []
        if num_items + 1 - len(seen) <= 2 * count:
            # Few items left: take them all in random order; missing slots stay 0 (padding,
            # scored -inf, so the row simply has fewer negatives).
            candidates = np.setdiff1d(np.arange(1, num_items + 1), np.fromiter(seen, np.int64))
            chosen = rng.permutation(candidates)[:count].tolist()
            out[row, : len(chosen)] = chosen
            continue
        while len(chosen) < count:
            draw = (rng.choice(num_items, 2 * count, p=p) + 1) if strategy == "popularity" else \
                rng.integers(1, num_items + 1, 2 * count)
            for item in draw.tolist():
                if item not in seen:
                    seen.add(item)
                    chosen.append(item)
                    if len(chosen) == count:
                        break
        out[row] = chosen
    return out


def device_batches(examples: dict, batch_size: int, shardings=None):
    """The fixed-size batches of evaluation examples on the devices (split over `data` when sharded)."""
    for batch in eval_batches(examples, batch_size):
        yield put_global(batch, shardings.batch) if shardings is not None else \
            {k: jnp.asarray(v) for k, v in batch.items()}


def summed(step, params, batches, context=None, scoring=None) -> dict | None:
    """An evaluation step's outputs summed over batches on the device, fetched once (None: no batch)."""
    context = {} if context is None else context
    totals = None
    previous = None
    for batch in batches:
        result = step(params, batch, context, scoring)
        totals = result if totals is None else jax.tree_util.tree_map(jnp.add, totals, result)
        distributed.beat(after=previous)  # the previous batch is done (this one is dispatched)
        previous = result
    return None if totals is None else fetch(totals)


class Evaluator:
    """Ranking metrics of one model on the valid or test examples (`SequenceData.valid/test`).

    shardings: a `stjax.train.state.Shardings` (batches along `data`); None = default device.
    """

    def __init__(self, spec, module, sequences, config, popularity: np.ndarray | None = None, seed: int = 0,
                 shardings=None, width: int | None = None, name: str = "ranking"):
        self.spec, self.module, self.config, self.name = spec, module, config, name
        if spec.score is None:
            raise EvaluationError(f"model '{spec.name}' ranks no items; eval.evaluators '{name}' needs scores "
                                  f"(choose an evaluator of what it predicts)")
        self.ks = tuple(int(k) for k in config.ks)
        self.mode = config.mode
        self.num_items = sequences.num_items
        self.examples = {"valid": dict(sequences.valid), "test": dict(sequences.test)}
        missing = [field for field in get_kind(spec.batch_kind).eval_fields if field not in self.examples["valid"]]
        if missing:
            raise EvaluationError(f"model '{spec.name}' reads {', '.join(missing)} from its evaluation examples "
                                  f"('{spec.batch_kind}' batches), which these examples do not hold")
        self.max_targets = max(self.examples["valid"]["targets"].shape[1], self.examples["test"]["targets"].shape[1])
        if self.mode == "sampled":
            if self.max_targets > 1:
                raise EvaluationError(f"eval.mode=sampled ranks one target among sampled negatives, but the split "
                                      f"gives up to {self.max_targets} targets per user; use eval.mode=full")
            for index, part in enumerate(("valid", "test")):
                self.examples[part]["negatives"] = sample_negatives(
                    self.examples[part], self.num_items, int(config.num_negatives), config.negative_sampling,
                    popularity, seed + index)
        self.shardings = shardings
        multiple = shardings.mesh.shape["data"] if shardings is not None else 1
        self.batch_size = eval_batch_size(config, width or self.num_items + 1, self.max_targets, multiple)
        self.about = {part: dict(getattr(sequences, "about", {}).get(part, {})) for part in ("valid", "test")}
        self.step = make_eval_step(spec, module, self.ks, self.num_items, self.mode,
                                   bool(config.get("exclude_history", True)))
        self._rank_step = None

    @property
    def description(self) -> str:
        targets = "one target per user" if self.max_targets == 1 else f"up to {self.max_targets} targets per user"
        if self.mode == "sampled":
            return (f"{self.name}: sampled, {self.config.num_negatives} {self.config.negative_sampling} negatives, "
                    f"{targets}")
        history = "" if self.config.get("exclude_history", True) else ", history items ranked too"
        return f"{self.name}: full ranking, {targets}{history}"

    def _device_batches(self, part: str):
        return device_batches(self.examples[part], self.batch_size, self.shardings)

    def evaluate(self, params, part: str, context=None, scoring=None) -> dict[str, float]:
        totals = summed(self.step, params, self._device_batches(part), context, scoring)
        if totals is None:
            return {}
        count = float(totals.pop("count"))
        metrics = {name: float(value) / max(count, 1.0) for name, value in totals.items()}
        metrics["num_users"] = int(count)
        return metrics

    def per_row(self, params, part: str, context=None, scoring=None) -> dict[str, np.ndarray]:
        """Each row of `part`: users int32[R], targets, ranks int32[R, M] (0-based; the rank among
        the negatives in sampled mode), valid bool[R, M], every metric float32[R] (their means are
        `evaluate`'s numbers) and what the row is about (`SequenceData.about`)."""
        context = {} if context is None else context
        if self._rank_step is None:  # compiled on first use: breakdowns are asked for once per run
            self._rank_step = make_eval_step(self.spec, self.module, self.ks, self.num_items, self.mode,
                                             bool(self.config.get("exclude_history", True)), per_row=True)
        count = len(self.examples[part]["targets"])
        ranks, valid = [], []
        for batch in self._device_batches(part):
            r, v = fetch(self._rank_step(params, batch, context, scoring))
            ranks.append(np.asarray(r))
            valid.append(np.asarray(v))
            distributed.beat()
        width = 1 if self.mode == "sampled" else self.examples[part]["targets"].shape[1]
        ranks_all = np.concatenate(ranks)[:count] if ranks else np.zeros((0, width), np.int32)
        valid_all = np.concatenate(valid)[:count] if valid else np.zeros((0, width), bool)
        metrics = {name: np.asarray(values, np.float32) for name, values in
                   jax.device_get(rank_metrics(jnp.asarray(ranks_all), jnp.asarray(valid_all), self.ks)).items()}
        targets = self.examples[part]["targets"][:, :width]
        return {"users": np.asarray(self.examples[part]["users"], np.int32), "targets": targets,
                "ranks": ranks_all.astype(np.int32), "valid": valid_all, **metrics,
                **{f"about/{name}": value for name, value in self.about[part].items()}}


# ----------------------------------------------------------------------------- the registry


@dataclasses.dataclass(frozen=True)
class EvalSetup:
    """What an evaluator is built from: the model, the prepared sequences (valid/test examples),
    the `eval` config section, the data split's name, item popularity, the seed and shardings."""

    spec: object
    module: object
    sequences: object
    config: object
    split: str
    popularity: np.ndarray | None = None
    seed: int = 0
    shardings: object = None
    width: int | None = None


@dataclasses.dataclass(frozen=True)
class EvaluatorSpec:
    """One kind of evaluator in `eval.evaluators`.

    make(setup) -> an object with `name`, `description`, `step` (its jitted step, for compile
    counts) and `evaluate(params, part, context, scoring) -> {metric: value}`.
    splits: the `data.split` values it applies to. metrics(eval_config): the names it reports
    (each a valid `eval.metric`); lower_is_better(name): the direction of one of them (early
    stopping and the best checkpoint follow it); metric_help(eval_config): what a valid name looks
    like, for the one-line error."""

    name: str
    make: Callable[[EvalSetup], object]
    splits: tuple[str, ...]
    metrics: Callable[[object], tuple[str, ...]]
    lower_is_better: Callable[[str], bool] = lambda name: False
    metric_help: Callable[[object], str] | None = None


EVALUATORS: dict[str, EvaluatorSpec] = {}


def register_evaluator(spec: EvaluatorSpec) -> EvaluatorSpec:
    EVALUATORS[spec.name] = spec
    return spec


def _ranking_metrics(config) -> tuple[str, ...]:
    return tuple(f"{name}@{int(k)}" for name in METRICS for k in config.ks)


def _ranking_help(config) -> str:
    return f"NAME@K with NAME in {', '.join(METRICS)} and K in eval.ks {tuple(config.ks)}"


def _make_ranking(setup: EvalSetup, name: str) -> Evaluator:
    return Evaluator(setup.spec, setup.module, setup.sequences, setup.config, setup.popularity, seed=setup.seed,
                     shardings=setup.shardings, width=setup.width, name=name)


register_evaluator(EvaluatorSpec("ranking", lambda setup: _make_ranking(setup, "ranking"),
                                 ("leave_one_out", "temporal"), _ranking_metrics, metric_help=_ranking_help))
register_evaluator(EvaluatorSpec("fold_in", lambda setup: _make_ranking(setup, "fold_in"), ("held_out_users",),
                                 _ranking_metrics, metric_help=_ranking_help))


def metric_names(config) -> dict[str, tuple[str, bool]]:
    """Every valid `eval.metric` of an `eval` config: name -> (evaluator, lower is better). The
    first evaluator's names are plain (`ndcg@10`), later ones prefixed (`fold_in/ndcg@10`)."""
    names = {}
    for index, evaluator in enumerate(config.evaluators):
        spec = EVALUATORS[evaluator]
        prefix = "" if index == 0 else f"{evaluator}/"
        names |= {prefix + name: (evaluator, bool(spec.lower_is_better(name))) for name in spec.metrics(config)}
    return names


def metric_problem(config) -> str | None:
    """What a valid `eval.metric` looks like when the config's is not one (None when it is)."""
    names = metric_names(config)
    if config.metric in names:
        return None
    prefix = str(config.metric).rpartition("/")[0]
    spec = EVALUATORS[prefix if prefix in config.evaluators else config.evaluators[0]]
    if spec.metric_help is not None:
        return spec.metric_help(config)
    return "one of " + ", ".join(sorted(names))


def check_split(names, split: str) -> str | None:
    """A one-line problem when an evaluator of `names` does not apply to `data.split`."""
    for name in names:
        if name not in EVALUATORS:
            return f"eval.evaluators: unknown evaluator '{name}'; expected {', '.join(EVALUATORS)}"
        if split not in EVALUATORS[name].splits:
            fitting = [other for other, spec in EVALUATORS.items() if split in spec.splits]
            return (f"eval.evaluators: '{name}' does not apply to data.split={split} "
                    f"({' or '.join(fitting) or 'none'} does)")
    return None


def make_evaluators(setup: EvalSetup) -> Evaluators:
    """The evaluators of `setup.config.evaluators`, run together."""
    return Evaluators([EVALUATORS[name].make(setup) for name in setup.config.evaluators], setup.spec,
                      setup.module, setup.config)


class Evaluators:
    """The evaluators of `eval.evaluators`, run together: `prepare_scoring` once, then each one.

    Metric names of the first evaluator are plain (`ndcg@10`); later ones are prefixed (`fold_in/ndcg@10`).
    """

    def __init__(self, evaluators: list, spec, module, config=None):
        self.evaluators, self.spec, self.module = evaluators, spec, module
        self.directions = {name: lower for name, (_, lower) in metric_names(config).items()} if config else {}
        self._prepare = jax.jit(lambda params, context: spec.prepare_scoring(
            module, {"params": params}, context=context))

    @property
    def protocols(self) -> dict[str, str]:
        return {evaluator.name: evaluator.description for evaluator in self.evaluators}

    def higher_is_better(self, metric: str) -> bool:
        """The direction of `metric` (as its evaluator declares it; ranking metrics: higher)."""
        return not self.directions.get(metric, False)

    @property
    def steps(self) -> list:
        return [evaluator.step for evaluator in self.evaluators]

    def evaluate(self, params, part: str, context=None) -> dict[str, float]:
        context = {} if context is None else context
        scoring = self._prepare(params, context)
        metrics = {}
        for index, evaluator in enumerate(self.evaluators):
            prefix = "" if index == 0 else f"{evaluator.name}/"
            metrics |= {prefix + name: value for name, value in evaluator.evaluate(params, part, context, scoring).items()}
        return metrics

    def per_row(self, params, part: str, context=None) -> dict[str, np.ndarray]:
        """The first evaluator's rows of `part` with their ranks, metrics and what they are about
        (`Evaluator.per_row`), plus its `protocol` and `evaluator` name, for `RunFolder.write_rows`;
        None when that evaluator gives no rows."""
        context = {} if context is None else context
        evaluator = self.evaluators[0]
        if not hasattr(evaluator, "per_row"):
            return None
        rows = evaluator.per_row(params, part, context, self._prepare(params, context))
        return rows | {"evaluator": np.asarray(evaluator.name), "protocol": np.asarray(evaluator.description)}
