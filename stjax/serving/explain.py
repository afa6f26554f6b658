"""`stjax explain`: why a graph model recommends what it does, from its own attention.

For one user of a run folder: the top-k recommendations (as `stjax recommend` gives them) and
the model's attention behind the user's current state (`ModelSpec.explain`): the relation
neighbours and their GAT weights, the past items and their temporal-attention weights, the
places those carry, and the fusion weights of the model's parts. The weights are the model's
own (averaged over heads), not a post-hoc proxy; entries naming the same id are summed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stjax.devices import fetch, put_global
from stjax.runs import RunFolder
from stjax.serving.recommend import (
    RecommendError,
    build_batch,
    histories_from_run,
    make_recommend_step,
    round_batch_size,
)

KIND_TOKENS = {"neighbours": "users", "items": "items", "places": "items", "recalled": "items"}


def _ranked(ids: np.ndarray, weights: np.ndarray, tokens, top: int) -> list[dict]:
    """Sums the weights of repeated ids (0 = none), highest first."""
    totals: dict[int, float] = {}
    for identifier, weight in zip(ids.tolist(), weights.tolist()):
        if identifier > 0 and weight > 0:
            totals[identifier] = totals.get(identifier, 0.0) + float(weight)
    ranked = sorted(totals.items(), key=lambda pair: (-pair[1], pair[0]))[:top]
    return [{"id": str(tokens[i]), "weight": round(w, 6)} for i, w in ranked]


def explain_user(model, workdir: str | Path, user: str, k: int = 10, top: int = 5) -> dict:
    """The explanation of `user` (an original id of the run's log). Returns a JSON-ready dict:
    user, history (events the model read), recommendations [{item, score}], and per kind of
    attention (neighbours, items, places, recalled) the `top` entries [{id, weight}], and parts {name: weight}."""
    spec = model.spec
    if spec.explain is None:
        with_attention = sorted(name for name, s in _registry().items() if s.explain is not None)
        raise RecommendError(f"model '{spec.name}' has no graph attention to explain; `stjax explain` reads the attention "
                             f"of {', '.join(with_attention)}")
    vocab = RunFolder(workdir).vocab()
    histories = histories_from_run(workdir, vocab)
    positions = {str(token): index for index, token in enumerate(histories.users)}
    if str(user) not in positions:
        examples = ", ".join(str(u) for u in histories.users[:3])
        raise RecommendError(f"--user {user}: no such user in the run's log (its ids look like {examples})")
    index = positions[str(user)]
    batch_size = round_batch_size(1, model)
    batch = build_batch(histories, index, batch_size, spec.batch_kind, model.info.max_length,
                        max(1, histories.longest), max(1, int(model.info.max_bag)))
    params, context = model.state.params, model.context
    scoring = spec.prepare_scoring(model.module, {"params": params}, context=context)
    step = make_recommend_step(model, k)
    scores, items, _ = fetch(step(params, put_global(batch, model.shardings.batch), context, scoring))
    inputs = {name: value[:1] for name, value in batch.items() if name != "exclude"}
    attention = spec.explain(model.module, {"params": params}, inputs, context=context, scoring=scoring)
    item_tokens, user_tokens = vocab["items"], vocab["users"]
    out = {"user": str(user), "model": spec.name,
           "history": int(histories.offsets[index + 1] - histories.offsets[index]),
           "recommendations": [{"item": str(item_tokens[i]), "score": round(float(s), 6)}
                               for i, s in zip(items[0].tolist(), scores[0].tolist())]}
    for kind, (ids, weights) in attention.items():
        if kind == "parts":
            out["parts"] = {name: round(float(w), 6) for name, w in zip(ids, np.asarray(weights)[0])}
            continue
        tokens = user_tokens if KIND_TOKENS[kind] == "users" else item_tokens
        out[kind] = _ranked(np.asarray(ids)[0], np.asarray(weights)[0], tokens, top)
    return out


def _registry():
    from stjax import models

    return models.REGISTRY
