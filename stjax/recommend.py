"""Top-K recommendation for histories given by original ids (users may be new).

Histories come from a CSV (`user,item,timestamp`, header required) or JSONL
(`{"user": ..., "items": [...], "timestamps": [...]}`). Items the model never saw are skipped
and counted. History items are excluded from the recommendations.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from stjax.data.errors import DataError, Issue


def read_histories(path: str) -> dict[str, list[tuple[str, int]]]:
    """user -> [(item, timestamp)] sorted by time."""
    file = Path(path)
    if not file.exists():
        raise DataError(f"{path}: no such file")
    histories: dict[str, list[tuple[str, int]]] = {}
    if file.suffix in (".jsonl", ".json"):
        for number, line in enumerate(file.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                items = [str(i) for i in row["items"]]
                times = [int(t) for t in row.get("timestamps", range(len(items)))]
                user = str(row.get("user", f"user-{number}"))
            except (ValueError, KeyError, TypeError) as err:
                raise DataError([Issue(path, number, None, f"expected {{user, items, timestamps}} JSON ({err})")]) from None
            if len(times) != len(items):
                raise DataError([Issue(path, number, "timestamps", "expected one timestamp per item")])
            histories.setdefault(user, []).extend(zip(items, times))
    else:
        with open(file, newline="") as handle:
            reader = csv.DictReader(handle)
            for required in ("user", "item"):
                if required not in (reader.fieldnames or []):
                    raise DataError([Issue(path, 1, required, "missing required column")])
            for row in reader:
                try:
                    stamp = int(float(row.get("timestamp") or 0))
                except ValueError:
                    raise DataError([Issue(path, reader.line_num, "timestamp",
                                           f"expected integer seconds, found {row['timestamp']!r}")]) from None
                histories.setdefault(row["user"], []).append((row["item"], stamp))
    for user in histories:
        histories[user].sort(key=lambda pair: pair[1])
    return histories


def recommend(run, params, histories: dict, vocab: dict, k: int) -> tuple[list[dict], dict]:
    items = vocab["items"]
    index = {token: i for i, token in enumerate(items)}
    origin = int(vocab["time_origin"])
    length = run.prepared.sequences.max_length
    users = list(histories)
    unknown = 0
    rows_items = np.zeros((len(users), length), np.int32)
    rows_times = np.zeros((len(users), length), np.int32)
    excluded = []
    for row, user in enumerate(users):
        known = [(index[i], t) for i, t in histories[user] if i in index]
        unknown += len(histories[user]) - len(known)
        recent = known[-length:]
        if recent:
            rows_items[row, -len(recent):] = [i for i, _ in recent]
            rows_times[row, -len(recent):] = [max(0, t - origin) for _, t in recent]
        excluded.append({i for i, _ in known})
    scores = np.asarray(run.spec.score(run.module, {"params": params},
                                       {"items": jnp.asarray(rows_items), "timestamps": jnp.asarray(rows_times)}))
    out = []
    for row, user in enumerate(users):
        row_scores = scores[row].copy()
        row_scores[list(excluded[row])] = -np.inf
        row_scores[0] = -np.inf
        top = np.argsort(-row_scores, kind="stable")[:k]
        out.append({"user": user, "items": [items[i] for i in top], "scores": [round(float(row_scores[i]), 5) for i in top],
                    "known_history": len(excluded[row])})
    return out, {"unknown_items": unknown}
