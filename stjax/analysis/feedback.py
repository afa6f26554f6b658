"""The feedback loop, simulated offline: a trained recommender's top-K is shown to users simulated
by the synthetic generator, what they choose comes back as new events, and the model is updated
on them (`stjax.train.update.update_run`, as `stjax update` does) before the next round.

The simulated users are the generator's (`stjax.data.synthetic.SyntheticTruth`): user u of region
r chooses item i with the planted probability

  p_u(i) = mix_u(category(i)) x (0.75 [region(i) = r] + 0.25 / R) x q(i)
  mix_u  = 0.5 drift[r, last window] + 0.5 taste_u
  q(i)   = sqrt((k + 1) / n) - sqrt(k / n)   (item i the k-th most popular of the n items of its
                                               (category, region) group)

which is how the generator draws an event (category from the regional drift and the user's taste;
the group local with probability 0.75, else any region; the item skewed to the popular end of its
group by pick = floor(n U^2)), frozen at the log's last window. Each round every user is shown K
items and takes one: with probability `organic` one drawn from p_u over the whole catalogue (what
they would have found anyway), else one of the K shown, with probability proportional to p_u.

Tracked each round, on the lists shown (before the round's update):
  hr, recall   against the user's true top-K (the K items of highest p_u outside their history):
               hr = share of users shown at least one of them, recall = |shown & true top-K| / K
  utility      sum of p_u over the shown items / sum over the true top-K (1 = the best possible list)
  coverage     distinct items shown / catalogue size
  gini         Gini coefficient of the items' exposure (how many users were shown each item)
  regional_jsd mean Jensen-Shannon divergence (bits) between the exposure distributions of every
               pair of regions: falling means the regions are shown the same things (homogenisation)
  chosen_popularity  mean training-log popularity percentile of the chosen items

Same seed, same curves: the choices draw from `default_rng([seed, round])` and training is
deterministic in (seed, step).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from stjax.analysis.drift import js_divergence

DAY = 86_400


class FeedbackError(ValueError):
    """A simulation that cannot run on this run folder or these options (a user error)."""


def preferences(truth, num_users: int, num_items: int) -> np.ndarray:
    """p_u(i) float64[users + 1, items + 1] (see the module docstring; rows sum to 1, row 0 and
    column 0 padding)."""
    if truth.taste is None or truth.item_popularity is None:
        raise FeedbackError("the synthetic truth has no tastes or popularity (a run from before they were kept)")
    regions = truth.drift.shape[0]
    user_region = truth.user_region[1:num_users + 1]
    mix = 0.5 * truth.drift[user_region, -1] + 0.5 * truth.taste[1:num_users + 1]  # [U, C]
    category = truth.item_category[1:num_items + 1]
    region = truth.item_region[1:num_items + 1]
    popularity = truth.item_popularity[1:num_items + 1]
    q = np.zeros(num_items)
    key = category.astype(np.int64) * regions + region
    for group in np.unique(key):
        members = np.flatnonzero(key == group)
        ordered = members[np.lexsort((members, -popularity[members]))]  # most popular first, as the generator
        n = len(ordered)
        k = np.arange(n)
        q[ordered] = np.sqrt((k + 1) / n) - np.sqrt(k / n)
    locality = np.where(region[None, :] == user_region[:, None], 0.75, 0.0) + 0.25 / regions  # [U, I]
    p = mix[:, category] * locality * q[None, :]
    p /= p.sum(axis=1, keepdims=True)
    out = np.zeros((num_users + 1, num_items + 1))
    out[1:, 1:] = p
    return out


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative counts (0: all equal; near 1: all on one item)."""
    values = np.sort(np.asarray(counts, np.float64))
    if values.sum() == 0:
        return 0.0
    n = len(values)
    return float((2 * np.arange(1, n + 1) - n - 1) @ values / (n * values.sum()))


def round_metrics(shown: np.ndarray, users: np.ndarray, p: np.ndarray, history: list[set], user_region: np.ndarray,
                  num_items: int) -> dict:
    """The module docstring's measures of one round's lists. shown: int[U', K] generator item ids
    (0 = none); users: int[U'] generator user ids; history: each user's consumed item ids."""
    k = shown.shape[1]
    hits, utility = [], []
    for row, user in enumerate(users):
        scores = p[user].copy()
        scores[0] = -1.0
        scores[list(history[row])] = -1.0
        best = np.argsort(-scores, kind="stable")[:k]
        listed = shown[row][shown[row] > 0]
        hits.append(len(np.intersect1d(listed, best)))
        utility.append(p[user, listed].sum() / max(p[user, best].sum(), 1e-12))
    hits = np.asarray(hits)
    exposure = np.bincount(shown[shown > 0], minlength=num_items + 1)[1:]
    regions = np.unique(user_region[users])
    per_region = []
    for region in regions:
        rows = shown[user_region[users] == region]
        counts = np.bincount(rows[rows > 0], minlength=num_items + 1)[1:].astype(np.float64)
        per_region.append(counts / max(counts.sum(), 1.0))
    pairs = [js_divergence(per_region[a], per_region[b]) for a in range(len(regions)) for b in range(a + 1, len(regions))]
    return {"hr": float((hits > 0).mean()), "recall": float(hits.mean() / k), "utility": float(np.mean(utility)),
            "coverage": float((exposure > 0).mean()), "gini": gini(exposure),
            "regional_jsd": float(np.mean(pairs)) if pairs else float("nan")}


def simulate(workdir: str | Path, rounds: int = 10, k: int = 10, seed: int = 0, organic: float = 0.2,
             update_epochs: int = 2, log=print, progress=None) -> dict:
    """Runs (or resumes) the feedback loop on the synthetic run in `workdir`; returns the curves
    (also in WORKDIR/feedback/rounds.jsonl, a line per finished round, which a rerun continues)."""
    from stjax.data.pipeline import load_source
    from stjax.runs import RunFolder
    from stjax.serving.recommend import recommend_batches
    from stjax.train.build import load_model
    from stjax.train.update import update_run

    folder = RunFolder(workdir)
    config = folder.config()
    if config.data.source != "synthetic":
        raise FeedbackError(f"{workdir}: the feedback loop simulates the synthetic data's users; this run trained on "
                            f"{config.data.source!r}")
    if not 0.0 <= organic <= 1.0 or k < 1 or rounds < 1:
        raise FeedbackError("expected rounds >= 1, k >= 1 and 0 <= organic <= 1")
    original, _, truth = load_source(config.data, log=lambda m: None)
    num_users, num_items = len(truth.user_region) - 1, len(truth.item_category) - 1  # the generator's sizes
    p = preferences(truth, num_users, num_items)
    user_of = {str(token): index for index, token in enumerate(original.user_vocab.tokens) if index}
    item_of = {str(token): index for index, token in enumerate(original.item_vocab.tokens) if index}
    popularity = np.bincount(np.asarray(original.item, np.int64), minlength=num_items + 1)[1:]
    percentile = np.argsort(np.argsort(popularity, kind="stable"), kind="stable") / max(num_items - 1, 1)
    out = folder.path / "feedback"
    out.mkdir(exist_ok=True)
    lines_path = out / "rounds.jsonl"
    settings = {"rounds": rounds, "k": k, "seed": seed, "organic": organic, "update_epochs": update_epochs}
    done = [json.loads(line) for line in lines_path.read_text().splitlines()] if lines_path.exists() else []
    if done and done[0].get("settings") != settings:
        raise FeedbackError(f"{lines_path} holds a simulation with other settings ({done[0].get('settings')}); use "
                            "another run folder")
    for number in range(len(done), rounds + 1):  # round `rounds` only measures the last update's lists
        model, _ = load_model(folder.path)
        vocab = folder.vocab()
        histories = folder.histories(vocab)
        item_tokens = vocab["items"]
        shown_rows, users, consumed = [], [], []
        for batch in recommend_batches(model, histories, k):
            for row, user in enumerate(batch.users):
                if str(user) not in user_of:
                    continue
                users.append(user_of[str(user)])
                shown_rows.append([item_of.get(str(item_tokens[i]), 0) if c < batch.counts[row] else 0
                                   for c, i in enumerate(batch.items[row])])
        history_items = {}
        for index, user in enumerate(histories.users):
            items = histories.items[histories.offsets[index]:histories.offsets[index + 1]]
            history_items[str(user)] = {item_of[str(item_tokens[i])] for i in items if str(item_tokens[i]) in item_of}
        user_tokens = original.user_vocab.tokens
        consumed = [history_items.get(str(user_tokens[u]), set()) for u in users]
        shown = np.asarray(shown_rows, np.int64)
        users = np.asarray(users, np.int64)
        metrics = round_metrics(shown, users, p, consumed, truth.user_region, num_items)
        record = {"round": number, **metrics}
        if number == 0:
            record["settings"] = settings
        if number < rounds:
            rng = np.random.default_rng([seed, number])
            chosen = np.empty(len(users), np.int64)
            for row, user in enumerate(users):
                if rng.random() < organic:
                    chosen[row] = rng.choice(num_items + 1, p=p[user])
                else:
                    weights = p[user, shown[row]] * (shown[row] > 0)
                    chosen[row] = shown[row][rng.choice(len(weights), p=weights / weights.sum())]
            record["chosen_popularity"] = float(percentile[chosen - 1].mean())
            last = int(vocab["time_origin"]) + int(histories.timestamps.max())
            times = last + DAY + rng.integers(0, DAY, len(users))
            events = out / f"round-{number}.tsv"
            events.write_text("user\titem\ttimestamp\n" + "".join(
                f"{user_tokens[u]}\t{original.item_vocab.tokens[i]}\t{t}\n" for u, i, t in zip(users, chosen, times)))
            update = update_run(folder.path, events, format="tsv", num_epochs=update_epochs, log=lambda m: None)
            record["update"] = {key: update[key] for key in ("steps", "best_step") if key in update}
        with open(lines_path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
        done.append(record)
        log(f"round {number}: hr {metrics['hr']:.3f} recall {metrics['recall']:.3f} utility {metrics['utility']:.3f} "
            f"coverage {metrics['coverage']:.3f} gini {metrics['gini']:.3f} regional JSD {metrics['regional_jsd']:.4f}")
        if progress is not None:
            progress(number + 1, rounds + 1)
    return {"analysis": "feedback", "run": str(folder.path), "model": config.model.name, "settings": settings,
            "rounds": [{key: value for key, value in line.items() if key != "settings"} for line in done],
            "method": __doc__.split("\n\n")[1].replace("\n", " ")}
