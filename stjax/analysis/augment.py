"""Augmenting sparse users with a trained generator, measured on a downstream sequential model.

The experiment (`stjax analyze augment`), each step a function here:

  1. sparse users are made (`make_sparse_users`): under leave-one-out by time (a user's last event
     is the test event, the one before it the validation event, the rest are training events), a
     share of the users with more than `keep` training events, drawn with `default_rng(draw_seed)`
     over their original ids in sorted order, keep only their last `keep` training events and their
     validation and test events; their earlier events are removed from the data altogether. The
     sparse users are then every user with 1 to `keep` training events and a validation event (the
     drawn ones and any that were sparse already);
  2. a generator (Mult-VAE, `experiments/multvae_ml100k.py`) is trained on the training events of
     that truncated log only (`generator_events`: no validation or test event of any user; every
     event a positive, `data.min_value=0`, as the downstream model reads them; its protocol trains
     on users with at least `data.min_length` = 5 such events, so at `keep` < 5 the sparse users
     are scored but not trained on);
  3. each sparse user's bag of training events is scored by the generator's run
     (`stjax.serving.recommend`), and its top `add` items, the user's history excluded, are
     prepended as pseudo-prior events (`augment`; "reverse augmentation", Liu et al., SIGIR 2021):
     the generator's r-th item at the user's first timestamp minus r seconds, so the best-scored
     item is next to the real history and every pseudo-prior event precedes every real event;
  4. the downstream model (SASRec, `experiments/sasrec_ml100k.py`, leave-one-out, full ranking) is
     trained with and without augmentation, once per seed (the seed sets its initialisation and
     shuffling; the draw of sparse users and the generator stay fixed; `overrides`, the command's
     --config.KEY=VALUE, change its config in both arms alike), and NDCG@K / HR@K of the real test
     events are measured for the sparse users and for everyone, under two masks: `same_mask` leaves
     out of the ranking the user's real history only, in both arms (`masked_ranks`); `history_masked`
     is the engine's own protocol (each run's test rows), which in the augmented arm also leaves out
     the pseudo-prior items: the generator's best guesses, so removing them from the competition
     raises the target's rank without the model having learnt anything.

What a reader must know: the pseudo-prior events come before the first real event, so the last two
events of every user, the validation and test targets, are the same real events in both arms;
augmented events are training events only. Finished runs under OUT are reused, interrupted ones
resume.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from stjax.data.splits import TEST, TRAIN, VALID, leave_one_out
from stjax.data.table import InteractionLog


class AugmentError(ValueError):
    """An experiment that cannot run with these options or in this folder (a user error)."""


# ----------------------------------------------------------------------------- sparse users


def user_positions(log: InteractionLog) -> tuple[np.ndarray, np.ndarray]:
    """Of a log sorted by (user, time): (position of each event within its user's events, int64[E];
    the user's number of training events under leave-one-out, int64[E])."""
    part = leave_one_out(log).part
    starts = np.searchsorted(log.user, log.user, side="left")
    position = np.arange(len(log)) - starts
    train_count = np.bincount(log.user[part == TRAIN], minlength=len(log.user_vocab))[log.user]
    return position.astype(np.int64), train_count.astype(np.int64)


def draw_users(log: InteractionLog, share: float, keep: int, seed: int) -> list[str]:
    """The original ids of the users made sparse: round(share x n) of the n users with more than
    `keep` training events, a permutation by `default_rng(seed)` of their ids in sorted order (so the
    draw depends only on the ids and the seed, and a larger share contains a smaller one)."""
    if not 0.0 <= share <= 1.0:
        raise AugmentError(f"--sparse-share {share}: expected a share between 0 and 1")
    if keep < 1:
        raise AugmentError(f"--keep {keep}: expected at least 1 training event")
    log = log.sort_by_user_time()
    _, train_count = user_positions(log)
    counts = np.zeros(len(log.user_vocab), np.int64)
    counts[log.user] = train_count
    eligible = sorted(str(log.user_vocab.tokens[u]) for u in np.flatnonzero(counts > keep))
    order = np.random.default_rng(seed).permutation(len(eligible))
    return sorted(eligible[i] for i in order[:int(round(share * len(eligible)))])


def make_sparse_users(log: InteractionLog, users, keep: int) -> InteractionLog:
    """`log` (sorted by user and time, ids compacted) in which each of `users` (original ids) keeps only
    its last `keep` training events and its validation and test events."""
    log = log.sort_by_user_time()
    position, train_count = user_positions(log)
    chosen = np.zeros(len(log.user_vocab), bool)
    chosen[log.user_vocab.lookup(list(users), missing=0)] = True
    chosen[0] = False
    # Training events are each user's first train_count events (validation and test are the last).
    dropped = chosen[log.user] & (position < train_count - keep)
    return log.select(~dropped).compact().sort_by_user_time()


def sparse_users(log: InteractionLog, keep: int) -> list[str]:
    """Original ids of the users with 1 to `keep` training events and a validation event (a user with
    two events has none; prepending events would turn its training event into one, so that its
    evaluation would differ between the arms)."""
    log = log.sort_by_user_time()
    part = leave_one_out(log).part
    _, train_count = user_positions(log)
    has_valid = np.zeros(len(log.user_vocab), bool)
    has_valid[log.user[part == VALID]] = True
    users = np.unique(log.user[(train_count >= 1) & (train_count <= keep) & has_valid[log.user]])
    return sorted(str(token) for token in log.user_vocab.tokens[users])


def generator_events(log: InteractionLog) -> InteractionLog:
    """The training events of `log` under leave-one-out (no validation or test event of any user):
    what the generator may learn from."""
    log = log.sort_by_user_time()
    return log.select(leave_one_out(log).part == TRAIN).compact().sort_by_user_time()


# ----------------------------------------------------------------------------- augmentation


def user_events(log: InteractionLog, users) -> dict[str, list[tuple[str, int]]]:
    """{original user id: [(original item id, timestamp), ...] in time order} for `users`."""
    log = log.sort_by_user_time()
    wanted = set(map(str, users))
    out: dict[str, list[tuple[str, int]]] = {}
    user_tokens, item_tokens = log.user_vocab.tokens, log.item_vocab.tokens
    for user, item, stamp in zip(log.user.tolist(), log.item.tolist(), log.timestamp.tolist()):
        token = str(user_tokens[user])
        if token in wanted:
            out.setdefault(token, []).append((str(item_tokens[item]), int(stamp)))
    return out


def pseudo_priors(generator_run: str | Path, histories: dict[str, list[tuple[str, int]]], count: int) -> dict:
    """{user: the generator's top `count` items, best first} for each user of `histories` (their
    training events only: the caller passes them), the history excluded (`stjax.serving.recommend`)."""
    from stjax.runs import RunFolder
    from stjax.serving.recommend import recommend_rows
    from stjax.train.build import load_model

    folder = RunFolder(generator_run)
    model, _ = load_model(folder.path)
    rows, _ = recommend_rows(model, histories, folder.vocab(), count)
    return {row["user"]: list(row["items"]) for row in rows}


def augment(log: InteractionLog, priors: dict[str, list[str]]) -> tuple[InteractionLog, np.ndarray]:
    """`log` with each user's pseudo-prior items prepended: item r (1-based, best first) of a user at
    the user's first timestamp minus r seconds, behaviour the log's first, no value or place.
    Returns the augmented log (sorted by user and time) and pseudo: bool[events], True on the
    added events. Every item must be an item of `log`."""
    log = log.sort_by_user_time()
    first = np.full(len(log.user_vocab), np.iinfo(np.int64).max, np.int64)
    np.minimum.at(first, log.user, log.timestamp)
    users, items, stamps = [], [], []
    for user, ranked in priors.items():
        code = log.user_vocab.index.get(str(user))
        if code is None or code == 0:
            raise AugmentError(f"augment: user {user!r} is not in the log")
        codes = log.item_vocab.lookup(ranked)
        if (codes <= 0).any():
            raise AugmentError(f"augment: user {user!r}: items {[i for i, c in zip(ranked, codes) if c <= 0]} "
                               f"are not in the log")
        users.extend([code] * len(codes))
        items.extend(codes.tolist())
        stamps.extend(first[code] - np.arange(1, len(codes) + 1))
    added = len(users)
    columns = {
        "user": np.asarray(users, np.int32), "item": np.asarray(items, np.int32),
        "timestamp": np.asarray(stamps, np.int64), "behaviour": np.ones(added, np.int8),
        "value": np.full(added, np.nan, np.float32), "latitude": np.full(added, np.nan, np.float32),
        "longitude": np.full(added, np.nan, np.float32), "region": np.zeros(added, np.int32)}
    merged = dataclasses.replace(log, **{name: np.concatenate([columns[name], getattr(log, name)])
                                         for name in InteractionLog.EVENT_COLUMNS})
    pseudo = np.concatenate([np.ones(added, bool), np.zeros(len(log), bool)])
    order = np.lexsort((merged.timestamp, merged.user))  # stable: real ties keep their order
    return merged.select(order), pseudo[order]


def write_log(log: InteractionLog, path: Path) -> Path:
    """The log as Parquet (original ids; rows in the log's order, which a reload keeps for ties)."""
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    pq.write_table(log.to_arrow(), partial)
    partial.replace(path)
    return path


# ----------------------------------------------------------------------------- measuring


def user_metrics(run: str | Path, names: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """{original user id: {metric: value}} of a run's test rows (test_rows.npz, one row per user)."""
    from stjax.runs import RunFolder

    folder = RunFolder(run)
    rows = folder.rows("test")
    if rows is None:
        raise AugmentError(f"{run}: no test_rows.npz (run stjax evaluate --workdir {run})")
    users = folder.vocab()["users"]
    missing = [name for name in names if name not in rows]
    if missing:
        raise AugmentError(f"{run}: its test rows have no {', '.join(missing)} (eval.ks must include the cut-off)")
    return {str(users[u]): {name: float(rows[name][row]) for name in names} for row, u in enumerate(rows["users"])}


def masked_ranks(run: str | Path, inputs: dict[str, list[tuple[str, int]]], targets: dict[str, str],
                 masked: dict[str, set[str]], batch_size: int = 256) -> dict[str, int]:
    """{user: 0-based rank of the user's target item} when the run's model reads `inputs` (each
    user's events before the target, in time order) and every item of `masked[user]` other than the
    target is left out of the ranking; ties broken by item id, as the engine's evaluation does.
    With masked = the items of `inputs` this is the engine's own test protocol (the check of this
    function); with masked = the real events alone, both arms of the experiment rank under one mask."""
    import jax
    import jax.numpy as jnp

    from stjax.data.histories import histories_from_dict
    from stjax.data.kinds import serving_batch
    from stjax.devices import put_global
    from stjax.models.shared import mask_non_items
    from stjax.runs import RunFolder
    from stjax.train.build import load_model

    folder = RunFolder(run)
    model, _ = load_model(folder.path)
    vocab = folder.vocab()
    item_index = {str(token): i for i, token in enumerate(vocab["items"]) if i > 0}
    spec, module, info = model.spec, model.module, model.info
    params, context = model.state.params, model.context
    scoring = spec.prepare_scoring(module, {"params": params}, context=context)

    @jax.jit
    def scores_of(params, batch, context, scoring):
        fields = {name: value for name, value in batch.items() if name != "exclude"}
        scores = spec.score(module, {"params": params}, fields, context=context, scoring=scoring)
        return mask_non_items(scores.astype(jnp.float32), info.num_items)  # [B, W]

    users = [user for user in inputs if targets.get(user) in item_index]
    histories = histories_from_dict({user: inputs[user] for user in users}, vocab)
    ranks = {}
    for start in range(0, len(users), batch_size):
        batch = serving_batch(spec.batch_kind, histories, start, batch_size, info.max_length, 1,
                              max(1, int(info.max_bag)))
        scores = np.asarray(jax.device_get(scores_of(params, put_global(batch, model.shardings.batch), context,
                                                     scoring)))
        for row, user in enumerate(users[start:start + batch_size]):
            target = item_index[targets[user]]
            line = scores[row].copy()
            left_out = [item_index[item] for item in masked.get(user, ()) if item in item_index]
            line[left_out] = -np.inf
            value = scores[row, target]
            ids = np.arange(len(line))
            ranks[user] = int((line > value).sum() + ((line == value) & (ids < target)).sum())
    return ranks


def rank_metrics(ranks: dict[str, int], k: int) -> dict[str, dict[str, float]]:
    """{user: {ndcg@k, hr@k}} of one target per user at 0-based rank r: hit = [r < k], NDCG = hit / log2(r + 2)."""
    return {user: {f"ndcg@{k}": float(rank < k) / float(np.log2(rank + 2)), f"hr@{k}": float(rank < k)}
            for user, rank in ranks.items()}


def summarise(values: list[float]) -> dict:
    """mean and sample standard deviation (ddof 1; None with one value)."""
    array = np.asarray(values, np.float64)
    return {"mean": float(array.mean()) if len(array) else None,
            "std": float(array.std(ddof=1)) if len(array) > 1 else None, "values": [float(v) for v in array]}


def group_means(per_user: dict[str, dict[str, float]], users: list[str] | None, names) -> dict[str, float]:
    """Mean of each metric over `users` (None: every user with a test row)."""
    chosen = list(per_user) if users is None else [u for u in users if u in per_user]
    return {name: float(np.mean([per_user[u][name] for u in chosen])) if chosen else float("nan")
            for name in names} | {"users": len(chosen)}


# ----------------------------------------------------------------------------- the driver


@dataclasses.dataclass(frozen=True)
class Settings:
    """What an experiment folder holds; a rerun with other settings in the same folder is refused."""

    data: str
    seeds: int = 3
    sparse_share: float = 0.3
    keep: int = 5
    add: int = 10
    draw_seed: int = 0
    generator: str = "experiments/multvae_ml100k.py"
    downstream: str = "experiments/sasrec_ml100k.py"
    epochs: int = 400
    k: int = 10
    overrides: tuple[str, ...] = ()  # --config.KEY=VALUE of the downstream runs


def _train(config, workdir: Path, log, progress: bool) -> dict:
    """train_and_evaluate in `workdir`, or its results when a run of this very config finished there."""
    from stjax.config import to_json
    from stjax.train import train_and_evaluate

    done = workdir / "results.json"
    if done.exists():
        results = json.loads(done.read_text())
        if results.get("config") != json.loads(to_json(config)):
            raise AugmentError(f"{workdir} holds a run of another config; use another --out")
        return results
    log(f"training {config.model.name} in {workdir}")
    return train_and_evaluate(config, workdir, log=lambda m: None, progress=progress)


def _config(spec: str, source: Path, what: str, overrides=()):
    from stjax.config import ConfigError, load_config

    for text in overrides:
        if text.split("=")[0] in ("--config.data.source", "--config.data.format", "--config.data.columns",
                                  "--config.data.split", "--config.seed", "--config.train.num_epochs"):
            raise AugmentError(f"{text}: the experiment sets this key itself (--data, --seeds, --epochs)")
    try:
        config = load_config(spec, list(overrides))
    except ConfigError as err:
        raise AugmentError(f"--{what} {spec}: {err}") from None
    config.data.source = str(source)
    config.data.format = "parquet"
    config.data.columns = ""
    return config


def run_experiment(interactions: InteractionLog, settings: Settings, out: str | Path, log=print,
                   progress: bool = False) -> dict:
    """The module docstring's experiment in `out` (reusing what is there); returns augment.json's numbers."""
    out = Path(out)
    if settings.seeds < 1 or settings.add < 1 or settings.epochs < 1 or settings.k < 1:
        raise AugmentError("expected --seeds, --add, --epochs and --k of at least 1")
    out.mkdir(parents=True, exist_ok=True)
    recorded = out / "settings.json"
    if recorded.exists() and json.loads(recorded.read_text()) != json.loads(json.dumps(dataclasses.asdict(settings))):
        raise AugmentError(f"{out} holds an experiment with other settings ({recorded.read_text().strip()}); "
                           f"use another --out")
    recorded.write_text(json.dumps(dataclasses.asdict(settings)))
    _config(settings.downstream, out, "downstream", settings.overrides)  # a bad override fails before training

    chosen = draw_users(interactions, settings.sparse_share, settings.keep, settings.draw_seed)
    if not chosen:
        raise AugmentError(f"no user has more than {settings.keep} training events to make sparse, or "
                           f"--sparse-share {settings.sparse_share} draws none")
    truncated = make_sparse_users(interactions, chosen, settings.keep)
    sparse = sparse_users(truncated, settings.keep)
    training = generator_events(truncated)
    write_log(truncated, out / "data" / "truncated.parquet")
    write_log(training, out / "data" / "generator.parquet")

    generator = _config(settings.generator, out / "data" / "generator.parquet", "generator")
    generator.data.min_value = 0.0  # every training event is a positive, as the downstream model reads it
    generator_results = _train(generator, out / "generator", log, progress)
    priors = pseudo_priors(out / "generator", user_events(training, sparse), settings.add)
    augmented, pseudo = augment(truncated, priors)
    write_log(augmented, out / "data" / "augmented.parquet")

    names = (f"ndcg@{settings.k}", f"hr@{settings.k}")
    targets = _test_items(truncated)
    found = [targets.get(u) in set(priors.get(u, ())) for u in sparse]
    logs = {"plain": truncated, "augmented": augmented}
    # Each user's events before the test event, as the model reads them, and the real ones alone (the
    # one mask under which both arms rank: the pseudo-prior items stay rankable in the augmented arm).
    inputs = {arm: {user: events[:-1] for user, events in user_events(logs[arm], targets).items()} for arm in logs}
    real = {user: {item for item, _ in events} for user, events in inputs["plain"].items()}
    runs = {arm: [] for arm in logs}
    for seed in range(settings.seeds):
        for arm in logs:
            config = _config(settings.downstream, out / "data" / f"{'truncated' if arm == 'plain' else arm}.parquet",
                             "downstream", settings.overrides)
            config.data.split = "leave_one_out"
            config.seed = seed
            config.train.num_epochs = settings.epochs
            workdir = out / "runs" / f"{arm}-seed{seed}"
            results = _train(config, workdir, log, progress)
            engine = user_metrics(workdir, names)  # the engine's protocol: the whole (augmented) history masked
            same = rank_metrics(masked_ranks(workdir, inputs[arm], targets, real), settings.k)
            runs[arm].append({"seed": seed, "run": str(workdir),
                              "same_mask": {"sparse": group_means(same, sparse, names),
                                            "all": group_means(same, None, names)},
                              "history_masked": {"sparse": group_means(engine, sparse, names),
                                                 "all": group_means(engine, None, names)},
                              "best_step": results["best_step"], "steps": results["steps"],
                              "epochs": results.get("epochs"), "stopped_early": bool(results["stopped_early"]),
                              "train_s": results["timings"]["train_s"]})
    table = {}
    for protocol in ("same_mask", "history_masked"):
        for group in ("sparse", "all"):
            for name in names:
                plain = [r[protocol][group][name] for r in runs["plain"]]
                added = [r[protocol][group][name] for r in runs["augmented"]]
                table[f"{protocol}/{group}/{name}"] = {
                    "plain": summarise(plain), "augmented": summarise(added),
                    "difference": summarise([a - p for a, p in zip(added, plain)])}
    return {"analysis": "augment", "settings": dataclasses.asdict(settings),
            "users": {"all": int(truncated.num_users), "drawn_sparse": len(chosen), "sparse": len(sparse)},
            "events": {"original": len(interactions), "truncated": len(truncated), "generator": len(training),
                       "pseudo_prior": int(pseudo.sum()), "augmented": len(augmented)},
            "generator": {"model": generator.model.name, "run": str(out / "generator"),
                          "best_step": generator_results["best_step"], "steps": generator_results["steps"],
                          "stopped_early": bool(generator_results["stopped_early"]),
                          "valid": generator_results["valid"], "test": generator_results["test"],
                          "sparse_test_item_in_pseudo_priors": float(np.mean(found)) if found else None},
            "protocols": {"same_mask": "full ranking; the user's real history (training and validation events) "
                                       "left out, the pseudo-prior items ranked: one mask for both arms",
                          "history_masked": "the engine's test protocol: every history item left out, the "
                                            "pseudo-prior items included (they cannot be recommended)"},
            "runs": runs, "table": table, "method": " ".join(" ".join(__doc__.split("\n\n")[2:4]).split())}


def _test_items(log: InteractionLog) -> dict[str, str]:
    """{user: original id of the test item} under leave-one-out."""
    log = log.sort_by_user_time()
    part = leave_one_out(log).part
    rows = np.flatnonzero(part == TEST)
    return {str(log.user_vocab.tokens[log.user[r]]): str(log.item_vocab.tokens[log.item[r]]) for r in rows}
