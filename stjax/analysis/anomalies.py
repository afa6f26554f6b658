"""Users whose behaviour does not fit: per-user behaviour features, an isolation forest over them
(scikit-learn), and, for a run of a model with per-example scores (Mult-VAE, Mult-DAE), the
model's own surprise at each user (reconstruction error per item, and for the VAE the KL of the
user's latent from the prior). From the run folder alone.

Features (one row per user, from `histories.npz`):

  events          number of events                       (volume)
  active_days     distinct days with an event
  gap_cv          std / mean of the gaps between events  (regular bots: ~0)
  gap_mode_share  share of gaps equal to the most common gap, to the minute (bots: ~1)
  burst_share     the largest share of the user's events within one hour (bursts: ~1)
  breadth         distinct items / events                (catalogue breadth)
  popularity      mean log popularity of the user's items (mainstream vs niche)
  value_spread    std of the user's values (ratings), where the data have them
  value_mean_gap  mean |value - the item's mean value|    (ratings unlike everyone's)

Users are ranked by one method (`rank_by`: the isolation forest by default, a model score, or
`combined`, the mean over methods of each user's rank percentile: 0 = most usual, 1 = most
unusual); every method's scores are kept. `reasons` names the features furthest from the median
in robust z (median and MAD over users).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from stjax.data.kinds import serving_batch
from stjax.data.pipeline import load_source

FEATURES = ("events", "active_days", "gap_cv", "gap_mode_share", "burst_share", "breadth", "popularity",
            "value_spread", "value_mean_gap")


class AnomalyError(ValueError):
    """An anomaly analysis that cannot run on this run folder (a user error)."""


def behaviour_features(offsets: np.ndarray, items: np.ndarray, timestamps: np.ndarray,
                       values: np.ndarray | None = None) -> tuple[list[str], np.ndarray]:
    """(names, float64[U, F]) for users 0..U-1 whose events are offsets[u]:offsets[u+1]; a feature
    the data cannot give (no values) is left out."""
    offsets = np.asarray(offsets, np.int64)
    items = np.asarray(items, np.int64)
    times = np.asarray(timestamps, np.int64)
    counts = np.diff(offsets)
    users = len(counts)
    popularity = np.log1p(np.bincount(items))
    has_values = values is not None and np.isfinite(values).any()
    item_means = None
    if has_values:
        finite = np.isfinite(values)
        sums = np.bincount(items[finite], weights=values[finite], minlength=len(popularity))
        seen = np.bincount(items[finite], minlength=len(popularity))
        item_means = sums / np.maximum(seen, 1)
    columns = {name: np.zeros(users) for name in FEATURES}
    columns["events"] = counts.astype(float)
    for user in range(users):
        start, end = offsets[user], offsets[user + 1]
        if end <= start:
            continue
        t = times[start:end]
        it = items[start:end]
        columns["active_days"][user] = len(np.unique(t // 86_400))
        gaps = np.diff(t)
        if len(gaps):
            mean = gaps.mean()
            columns["gap_cv"][user] = gaps.std() / mean if mean > 0 else 0.0
            _, gap_counts = np.unique(gaps // 60, return_counts=True)
            columns["gap_mode_share"][user] = gap_counts.max() / len(gaps)
        # Most events inside any one-hour window: a sliding window over the sorted times.
        ends = np.searchsorted(t, t + 3600, side="left")
        columns["burst_share"][user] = (ends - np.arange(len(t))).max() / len(t)
        columns["breadth"][user] = len(np.unique(it)) / len(it)
        columns["popularity"][user] = popularity[it].mean()
        if has_values:
            v = values[start:end]
            ok = np.isfinite(v)
            if ok.sum() > 1:
                columns["value_spread"][user] = v[ok].std()
                columns["value_mean_gap"][user] = np.abs(v[ok] - item_means[it[ok]]).mean()
    names = [name for name in FEATURES if has_values or not name.startswith("value_")]
    return names, np.stack([columns[name] for name in names], axis=1)


def robust_z(features: np.ndarray) -> np.ndarray:
    """(x - median) / (1.4826 MAD) per column; a column without spread gets z = 0."""
    median = np.median(features, axis=0)
    mad = 1.4826 * np.median(np.abs(features - median), axis=0)
    spread = np.where(mad > 0, mad, features.std(axis=0))
    return np.where(spread > 0, (features - median) / np.where(spread > 0, spread, 1.0), 0.0)


def isolation_scores(features: np.ndarray, seed: int = 0, trees: int = 300) -> np.ndarray:
    """scikit-learn's isolation forest on the robust z of log1p(features): higher = more anomalous."""
    from sklearn.ensemble import IsolationForest

    forest = IsolationForest(n_estimators=trees, random_state=seed)
    z = robust_z(np.log1p(np.maximum(features, 0.0)))
    forest.fit(z)
    return -forest.score_samples(z)


def percentiles(scores: np.ndarray) -> np.ndarray:
    """Rank percentiles in [0, 1] (ties share their mean rank)."""
    from scipy.stats import rankdata

    return (rankdata(scores) - 1) / max(len(scores) - 1, 1)


def model_scores(model, histories, batch_size: int = 256) -> dict[str, np.ndarray]:
    """The model's per-user surprise for every user of `histories` (its `example_scores` on serving
    batches): `reconstruction` (loss per item) and, when the model gives it, `latent_kl`. {} when
    the model has no per-example scores or its batches carry no targets of their own."""
    spec = model.spec
    if spec.example_scores is None or spec.batch_kind != "bag":
        return {}
    step = jax.jit(lambda params, batch: spec.example_scores(model.module, {"params": params}, batch,
                                                             context=model.context, config=model.config.model))
    count = len(histories)
    width = max(1, int(model.info.max_bag) or int(np.diff(histories.offsets).max(initial=1)))
    out: dict[str, list] = {}
    for start in range(0, count, batch_size):
        batch = serving_batch(spec.batch_kind, histories, start, batch_size, model.info.max_length, 1, width)
        real = min(batch_size, count - start)
        batch["weights"] = (np.arange(batch_size) < real).astype(np.float32)
        scores = jax.device_get(step(model.state.params, {k: jnp.asarray(v) for k, v in batch.items()}))
        for name, values in scores.items():
            out.setdefault(name, []).append(np.asarray(values)[:real])
    merged = {name: np.concatenate(parts) for name, parts in out.items()}
    result = {"reconstruction": merged["loss"] / np.maximum(merged["targets"], 1.0)}
    if "kl" in merged:
        result["latent_kl"] = merged["kl"]
    return result


def detect(users: np.ndarray, names: list[str], features: np.ndarray, methods: dict[str, np.ndarray],
           top: int = 20, reasons: int = 3, rank_by: str = "isolation_forest") -> dict:
    """The JSON-ready result: the `top` users by `rank_by` (a method, or `combined`) with every
    method's score and the features furthest from usual, and every user's score of each method."""
    if len(users) < 10:
        raise AnomalyError(f"{len(users)} users: too few to say who is unusual (10 or more are needed)")
    methods = dict(methods)
    if len(methods) > 1:
        methods["combined"] = np.mean([percentiles(scores) for scores in methods.values()], axis=0)
    if rank_by not in methods:
        raise AnomalyError(f"--rank-by {rank_by}: this run has the methods {', '.join(methods)}")
    combined = methods[rank_by]
    z = robust_z(features)
    order = np.argsort(-combined, kind="stable")
    listed = []
    for index in order[:top]:
        strongest = np.argsort(-np.abs(z[index]), kind="stable")[:reasons]
        listed.append({
            "user": str(users[index]), "score": round(float(combined[index]), 6),
            "methods": {name: round(float(scores[index]), 6) for name, scores in methods.items()},
            "off": [{"feature": names[f], "value": round(float(features[index, f]), 6),
                     "median": round(float(np.median(features[:, f])), 6), "z": round(float(z[index, f]), 3)}
                    for f in strongest if abs(z[index, f]) > 0],
        })
    return {"analysis": "anomalies", "users": len(users), "methods": list(methods), "rank_by": rank_by,
            "features": names, "top": listed,
            "scores": {name: {str(u): round(float(v), 6) for u, v in zip(users, scores)}
                       for name, scores in methods.items()}}


def evaluate(scores: np.ndarray, truth: np.ndarray, ks: tuple[int, ...] = (10, 20, 50)) -> dict:
    """precision@k and recall@k of the k highest scores, R-precision (precision at k = the number of
    anomalous users), ROC-AUC and PR-AUC (average precision) against truth (bool[U], True =
    planted or injected)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    truth = np.asarray(truth, bool)
    if truth.all() or not truth.any():
        raise AnomalyError("the truth needs both anomalous and usual users")
    order = np.argsort(-scores, kind="stable")
    out = {"roc_auc": float(roc_auc_score(truth, scores)), "pr_auc": float(average_precision_score(truth, scores)),
           "anomalous": int(truth.sum())}
    out["r_precision"] = int(truth[order[:int(truth.sum())]].sum()) / int(truth.sum())
    for k in ks:
        hits = int(truth[order[:k]].sum())
        out[f"precision@{k}"] = hits / k
        out[f"recall@{k}"] = hits / int(truth.sum())
    return out


def against_truth(output: dict, truth: dict[str, str]) -> dict:
    """`detect`'s output with every method measured against `truth` ({user: kind}): `evaluation`
    over all known anomalous users, `evaluation_by_kind` (each kind against the genuine users
    alone) when there are several kinds, and `known` on each listed user."""
    output = dict(output)
    users = list(next(iter(output["scores"].values())))
    anomalous = np.asarray([user in truth for user in users])
    output["evaluation"] = {name: evaluate(np.asarray([scores[u] for u in users]), anomalous)
                            for name, scores in output["scores"].items()}
    kinds = sorted(set(truth.values()))
    if len(kinds) > 1:
        output["evaluation_by_kind"] = {}
        for kind in kinds:
            keep = [user for user in users if truth.get(user, kind) == kind]
            labels = np.asarray([user in truth for user in keep])
            output["evaluation_by_kind"][kind] = {
                name: evaluate(np.asarray([scores[u] for u in keep]), labels) for name, scores in output["scores"].items()}
    output["top"] = [row | {"known": row["user"] in truth} for row in output["top"]]
    return output


def analyse_run(folder, model=None, top: int = 20, seed: int = 0, rank_by: str = "isolation_forest") -> dict:
    """`detect` on a run folder (`stjax.runs.RunFolder`): behaviour features of every user of its
    log, the isolation forest, and `model`'s own scores when given (see `model_scores`)."""
    histories = folder.histories()
    names, features = behaviour_features(histories.offsets, histories.items, histories.timestamps,
                                         folder.history_values())
    methods = {"isolation_forest": isolation_scores(features, seed)}
    if model is not None:
        methods |= model_scores(model, histories)
    output = detect(histories.users, names, features, methods, top, rank_by=rank_by)
    output["model"] = folder.record().get("model")
    return output


def synthetic_truth(config) -> set[str] | None:
    """The original ids of the users the synthetic generator made anomalous, for a run on the
    synthetic data (its `data` config regenerates them); None for other data."""
    if config.data.source != "synthetic":
        return None
    log, _, truth = load_source(config.data, log=lambda message: None)
    return {str(token) for token in log.user_vocab.tokens[truth.anomalous_users]}
