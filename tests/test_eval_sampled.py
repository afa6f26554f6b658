"""The sampled-negatives protocol: never samples the target or history, and says so in its output."""

import jax.numpy as jnp
import numpy as np

from stjax.config import base_config, tiny
from stjax.eval.evaluator import Evaluator, sample_negatives
from stjax.train.loop import build_run


def test_sample_negatives_exclude_target_and_history():
    rng = np.random.default_rng(0)
    examples = {"targets": rng.integers(1, 30, 9), "exclude": rng.integers(0, 30, (9, 12))}
    for strategy in ("uniform", "popularity"):
        negatives = sample_negatives(examples, 29, 10, strategy, np.arange(30) + 1.0, seed=3)
        assert negatives.shape == (9, 10)
        for row in range(9):
            forbidden = set(examples["exclude"][row].tolist()) | {int(examples["targets"][row]), 0}
            assert not forbidden & set(negatives[row].tolist())
            assert len(set(negatives[row].tolist())) == 10


def test_sampled_mode_is_labelled_and_easier_than_full_ranking():
    config = tiny(base_config("popularity"))
    run = build_run(config, log=lambda m: None)
    popularity = np.bincount(run.prepared.sequences.train["targets"].ravel(), minlength=run.prepared.sequences.num_items + 1)
    params = dict(run.state.params)
    params["item_bias"] = jnp.log(jnp.asarray(popularity, jnp.float32) + 1.0)
    with config.unlocked():
        config.eval.num_negatives = 20
        full_evaluator = Evaluator(run.spec, run.module, run.prepared.sequences, config.eval)
        full = full_evaluator.evaluate(params, "test")
        config.eval.mode = "sampled"
        sampled_evaluator = Evaluator(run.spec, run.module, run.prepared.sequences, config.eval, popularity)
        sampled = sampled_evaluator.evaluate(params, "test")
    assert sampled_evaluator.description == "ranking: sampled, 20 uniform negatives, one target per user"
    assert full_evaluator.description == "ranking: full ranking, one target per user"
    assert sampled["hr@10"] >= full["hr@10"]


def test_sample_negatives_when_few_items_are_left():
    examples = {"targets": np.asarray([1]), "exclude": np.asarray([[2, 3, 4, 5]])}
    negatives = sample_negatives(examples, 7, 5, "uniform", None, seed=0)
    assert sorted(negatives[0].tolist()) == [0, 0, 0, 6, 7]
