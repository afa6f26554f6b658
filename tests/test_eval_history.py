"""Full ranking with and without the user's history masked (eval.exclude_history), against a
brute-force count of the items scored above the target."""

import types

import jax.numpy as jnp
import numpy as np

from stjax.eval.evaluator import make_eval_step


def test_exclude_history_false_ranks_every_item():
    rng = np.random.default_rng(0)
    B, num_items = 6, 12
    scores = rng.normal(size=(B, num_items + 1)).astype(np.float32)
    targets = rng.integers(1, num_items + 1, (B, 1)).astype(np.int32)
    exclude = rng.integers(0, num_items + 1, (B, 4)).astype(np.int32)
    spec = types.SimpleNamespace(score=lambda module, variables, batch, context, scoring: jnp.asarray(scores))
    batch = {"targets": jnp.asarray(targets), "exclude": jnp.asarray(exclude), "weights": jnp.ones(B)}
    for masked in (True, False):
        step = make_eval_step(spec, None, (1, 5, 10), num_items, "full", exclude_history=masked)
        result = step({}, batch, {}, None)
        hits = 0
        for row in range(B):
            target = targets[row, 0]
            hidden = set(exclude[row].tolist()) - {target} if masked else set()
            above = sum(1 for i in range(1, num_items + 1) if i != target and i not in hidden and scores[row, i] > scores[row, target])
            hits += above < 5
        assert float(result["hr@5"]) == hits, masked
