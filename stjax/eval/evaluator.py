"""Full-ranking (and labelled sampled-negative) evaluation on the device.

Users go in fixed-size batches (the score block is batch x (I+1) floats and never larger
than `max_score_block`); already-seen history items are masked except the target; the
per-row metrics are summed on the device and fetched once at the end.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from stjax.data.batching import eval_batches
from stjax.eval.metrics import mask_scores, rank_metrics, target_rank


def eval_batch_size(config, num_items: int) -> int:
    size = int(config.batch_size)
    block = int(config.get("max_score_block", 0) or 0)
    if block:
        size = max(1, min(size, block // (num_items + 1)))
    return size


def make_eval_step(spec, module, ks, mode: str = "full"):
    """jit-compiled (params, batch) -> dict of summed metrics; one compile per run."""

    def step(params, batch):
        scores = spec.score(module, params, batch).astype(jnp.float32)
        if mode == "full":
            scores = mask_scores(scores, batch["exclude"])
            ranks = target_rank(scores, batch["targets"])
        else:
            candidates = jnp.concatenate([batch["targets"][:, None], batch["negatives"]], axis=1)
            candidate_scores = jnp.take_along_axis(scores, candidates, axis=1)
            target_score = candidate_scores[:, :1]
            # Ties: the target ranks behind negatives with the same score (pessimistic).
            ranks = jnp.sum(candidate_scores[:, 1:] >= target_score, axis=1)
        per_row = rank_metrics(ranks, ks)
        weights = batch["weights"]
        return {name: jnp.sum(values * weights) for name, values in per_row.items()} | {"count": jnp.sum(weights)}

    return jax.jit(step)


def sample_negatives(examples: dict, num_items: int, count: int, strategy: str, popularity: np.ndarray | None,
                     seed: int) -> np.ndarray:
    """count negatives per row, never the target or a history item; int32[rows, count]."""
    rng = np.random.default_rng(seed)
    rows = len(examples["targets"])
    out = np.zeros((rows, count), np.int32)
    if strategy == "popularity":
        p = popularity[1:].astype(np.float64)
        p = p / p.sum()
    for row in range(rows):
        seen = set(examples["exclude"][row].tolist()) | {int(examples["targets"][row]), 0}
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


class Evaluator:
    """Evaluates one model on the valid or test examples of a `SequenceData`."""

    def __init__(self, spec, module, sequences, config, popularity: np.ndarray | None = None, seed: int = 0):
        self.config = config
        self.ks = tuple(int(k) for k in config.ks)
        self.mode = config.get("mode", "full")
        self.num_items = sequences.num_items
        self.batch_size = eval_batch_size(config, self.num_items)
        self.examples = {"valid": dict(sequences.valid), "test": dict(sequences.test)}
        if self.mode == "sampled":
            for index, part in enumerate(("valid", "test")):
                self.examples[part]["negatives"] = sample_negatives(
                    self.examples[part], self.num_items, int(config.num_negatives), config.negative_sampling,
                    popularity, seed + index)
        self.step = make_eval_step(spec, module, self.ks, self.mode)

    def evaluate(self, params, part: str) -> dict[str, float]:
        totals = None
        for batch in eval_batches(self.examples[part], self.batch_size):
            batch = {k: jnp.asarray(v) for k, v in batch.items()}
            result = self.step({"params": params}, batch)
            totals = result if totals is None else jax.tree_util.tree_map(jnp.add, totals, result)
        if totals is None:
            return {}
        totals = jax.device_get(totals)
        count = float(totals.pop("count"))
        metrics = {name: float(value) / max(count, 1.0) for name, value in totals.items()}
        metrics["num_targets"] = int(count)
        if self.mode == "sampled":
            metrics["protocol"] = f"sampled: {self.config.num_negatives} {self.config.negative_sampling} negatives"
        else:
            metrics["protocol"] = "full ranking"
        return metrics
