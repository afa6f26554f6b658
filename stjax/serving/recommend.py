"""Top-K recommendation, streamed: users in fixed-size batches, one jitted step per batch.

Users come from a history file of original ids (CSV `user,item,timestamp` with a header, or
JSONL `{"user", "items", "timestamps"}`; new users welcome, items the model never saw are
skipped and counted) or from the run's own log (`histories.npz`, every training user). The
step scores all items, masks padding and every item of the user's history (all of it, not only
the last max_length events the model reads) and keeps the top k on the device: only [B, k] ids
and scores come back, and rows are written as they come (JSONL or Parquet), so memory grows
with the batch size, never with the number of users.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from stjax.data.histories import (  # noqa: F401  (re-exported: the histories recommend serves)
    Histories,
    HistoryFile,
    histories_from_dict,
    parse_seconds,
    read_histories,
)
from stjax.data.kinds import get_kind, serving_batch
from stjax.data.kinds import recent_distinct as _recent_distinct  # noqa: F401  (re-exported)
from stjax.devices import fetch, put_global
from stjax.eval.topk import top_k
from stjax.models.shared import mask_non_items
from stjax.progress import rate_bar
from stjax.runs import RunError, RunFolder, is_writer

OUTPUT_SUFFIXES = (".jsonl", ".json", ".parquet")
ROWS_PER_GROUP = 65_536  # Parquet rows per row group: one group is what the writer holds in memory


class RecommendError(ValueError):
    """A request that cannot be served (k out of range, a model kind without a recommend batch, a bad
    output name): a one-line message for the user."""


def histories_from_run(workdir: str | Path, vocab: dict) -> Histories:
    """Every user of the run's training log (histories.npz), with all of their events."""
    try:
        return RunFolder(workdir).histories(vocab)
    except RunError as err:
        raise RecommendError(str(err)) from None


def build_batch(histories: Histories, start: int, batch_size: int, batch_kind: str, max_length: int,
                exclude_width: int, bag_width: int = 1) -> dict:
    """The model batch of users start..start+batch_size (see `stjax.data.kinds.serving_batch`)."""
    return serving_batch(batch_kind, histories, start, batch_size, max_length, exclude_width, bag_width)


# ----------------------------------------------------------------------------- the device step


class Recommendations(NamedTuple):
    """One batch of results. users: str[b]; items: int32[b, k] (model ids, best first); scores:
    float32[b, k]; counts: int32[b], the leading entries of each row that are real (an entry past it
    had score -inf: fewer than k items were left); known_history: int32[b], distinct known items."""

    users: np.ndarray
    items: np.ndarray
    scores: np.ndarray
    counts: np.ndarray
    known_history: np.ndarray

    def rows(self, item_tokens) -> Iterator[dict]:
        """Row dicts with original ids: {user, items, scores (rounded to 5 places), known_history}."""
        scores = np.round(self.scores.astype(np.float64), 5).tolist()
        items = self.items.tolist()
        for row, (user, count, known) in enumerate(zip(self.users, self.counts.tolist(),
                                                       self.known_history.tolist())):
            yield {"user": str(user), "items": [str(item_tokens[i]) for i in items[row][:count]],
                   "scores": scores[row][:count], "known_history": known}


def check_k(k: int, num_items: int) -> int:
    """k must be >= 1; above the catalogue it is clamped to num_items (the caller warns)."""
    if k < 1:
        raise RecommendError(f"--k {k} is out of range: expected 1..{num_items} (the model's items)")
    return min(k, num_items)


def make_recommend_step(model, k: int):
    """jit-compiled (params, batch, context, scoring) -> (scores float32[B, k], items int32[B, k],
    known_history int32[B]): score every item, -inf at padding, at the table's padding rows and at
    the history (`batch['exclude']`, int32[B, S]), then the exact top k (`stjax.eval.topk.top_k`: per
    shard, then merged, when the item table is split over the mesh's `model` axis; `lax.top_k` on one
    model shard). One compile per batch shape."""
    spec, module, num_items = model.spec, model.module, model.info.num_items
    mesh = model.shardings.mesh
    k = check_k(k, num_items)

    def recommend_step(params, batch, context, scoring):
        exclude = batch["exclude"]
        inputs = {name: value for name, value in batch.items() if name != "exclude"}
        scores = spec.score(module, {"params": params}, inputs, context=context, scoring=scoring)
        scores = mask_non_items(scores.astype(jnp.float32), num_items)  # [B, W]
        rows = jnp.arange(scores.shape[0])[:, None]
        scores = scores.at[rows, exclude].set(-jnp.inf)  # exclude 0 hits column 0, already -inf
        top_scores, top_items = top_k(scores, k, mesh)  # [B, k]
        ordered = jnp.sort(exclude, axis=1)
        distinct = (ordered > 0) & jnp.concatenate(
            [jnp.ones_like(ordered[:, :1], bool), ordered[:, 1:] != ordered[:, :-1]], axis=1)
        return top_scores, top_items.astype(jnp.int32), distinct.sum(axis=1, dtype=jnp.int32)

    return jax.jit(recommend_step)


def check_batch_kind(spec, histories: Histories | None = None) -> None:
    """Recommend serves the kinds that build batches from histories (`BatchKind.serve`); a model with
    one row per trained user (`known_users_only`, e.g. LightGCN) scores only users it was trained on."""
    kind = get_kind(spec.batch_kind)
    if spec.score is None:
        raise RecommendError(f"model '{spec.name}' ranks no items (it predicts values: stjax evaluate reports "
                             f"its metrics); recommend serves models that score items")
    if kind.serve is None:
        raise RecommendError(f"model '{spec.name}' reads '{spec.batch_kind}' batches; recommend serves models "
                             f"that read a history as a sequence or a bag of items, or known users")
    if kind.known_users_only and isinstance(histories, HistoryFile):
        if histories.unknown_users:
            raise RecommendError(f"model '{spec.name}' scores only the users it was trained on; "
                                 f"{histories.unknown_users} of the given users are unknown to it (e.g. "
                                 f"'{histories.first_unknown_user}')")
    elif kind.known_users_only and histories is not None and len(histories):
        unknown = np.flatnonzero(histories.user_ids == 0)
        if len(unknown):
            raise RecommendError(f"model '{spec.name}' scores only the users it was trained on; {len(unknown)} of "
                                 f"the given users are unknown to it (e.g. '{histories.users[unknown[0]]}')")


def round_batch_size(batch_size: int, model) -> int:
    """batch_size rounded up to a multiple of the mesh's data-parallel devices."""
    devices = model.shardings.mesh.shape["data"]
    return max(devices, -(-int(batch_size) // devices) * devices)


def recommend_batches(model, histories: Histories, k: int, batch_size: int = 512, step=None,
                      exclude_width: int | None = None) -> Iterator[Recommendations]:
    """Top-k for every user of `histories`, one `Recommendations` per batch, in order.

    model: a `stjax.train.loop.Model` (see `load_model`). batch_size is rounded up to a multiple of
    the data-parallel devices; every batch has that size (the last is padded), so the step compiles
    once. `prepare_scoring` runs once. Batch i+1 is dispatched before batch i is fetched, so the host
    builds and writes while the device scores. step: a `make_recommend_step(model, k)` to reuse;
    exclude_width: the history window to mask (default: the longest history of `histories`)."""
    spec, info = model.spec, model.info
    check_batch_kind(spec, histories)
    step = step or make_recommend_step(model, k)
    batch_size = round_batch_size(batch_size, model)
    params, context = model.state.params, model.context
    scoring = spec.prepare_scoring(model.module, {"params": params}, context=context)
    exclude_width = max(1, histories.longest if exclude_width is None else exclude_width)
    bag_width = max(1, int(info.max_bag))

    def fetch_batch(start, result) -> Recommendations:
        top_scores, top_items, known = fetch(result)  # gathered when split across processes
        stop = min(start + batch_size, len(histories))
        top_scores, top_items = top_scores[:stop - start], top_items[:stop - start]
        counts = np.isfinite(top_scores).sum(axis=1).astype(np.int32)  # -inf entries come last
        return Recommendations(histories.users[start:stop], top_items, top_scores, counts,
                               known[:stop - start])

    pending = None
    for start in range(0, len(histories), batch_size):
        batch = build_batch(histories, start, batch_size, spec.batch_kind, info.max_length, exclude_width,
                            bag_width)
        result = step(params, put_global(batch, model.shardings.batch), context, scoring)
        if pending is not None:
            yield fetch_batch(*pending)
        pending = (start, result)
    if pending is not None:
        yield fetch_batch(*pending)


# ----------------------------------------------------------------------------- writing


class JsonlWriter:
    """One JSON object per line: {"user", "items", "scores", "known_history"}. out: a path or a text stream."""

    def __init__(self, out, item_tokens):
        self.tokens = [str(token) for token in item_tokens]
        self.own = not hasattr(out, "write")
        self.handle = open(out, "w") if self.own else out

    def write(self, batch: Recommendations) -> None:
        self.handle.write("".join(json.dumps(row) + "\n" for row in batch.rows(self.tokens)))

    def close(self) -> None:
        if self.own:
            self.handle.close()
        else:
            self.handle.flush()


class ParquetWriter:
    """Columns user string, items list<string>, scores list<float>, known_history int32; one row group
    per ROWS_PER_GROUP users, built from the batch arrays without a per-user loop."""

    def __init__(self, out, item_tokens, rows_per_group: int = ROWS_PER_GROUP):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.pa = pa
        self.tokens = pa.array([str(token) for token in item_tokens], pa.string())
        self.schema = pa.schema([("user", pa.string()), ("items", pa.list_(pa.string())),
                                 ("scores", pa.list_(pa.float32())), ("known_history", pa.int32())])
        self.writer = pq.ParquetWriter(out, self.schema)
        self.rows_per_group = rows_per_group
        self.chunk: list = []
        self.chunk_rows = 0

    def write(self, batch: Recommendations) -> None:
        pa = self.pa
        real = np.arange(batch.items.shape[1])[None, :] < batch.counts[:, None]  # [b, k]
        offsets = pa.array(np.concatenate([[0], np.cumsum(batch.counts)]).astype(np.int32))
        items = pa.ListArray.from_arrays(offsets, self.tokens.take(pa.array(batch.items[real])))
        scores = pa.ListArray.from_arrays(offsets, pa.array(np.round(batch.scores[real], 5).astype(np.float32)))
        users = pa.array(batch.users, pa.string())
        self.chunk.append(pa.RecordBatch.from_arrays(
            [users, items, scores, pa.array(batch.known_history, pa.int32())], schema=self.schema))
        self.chunk_rows += len(batch.users)
        if self.chunk_rows >= self.rows_per_group:
            self.flush()

    def flush(self) -> None:
        if self.chunk:
            self.writer.write_table(self.pa.Table.from_batches(self.chunk, self.schema),
                                    row_group_size=max(self.chunk_rows, 1))
        self.chunk, self.chunk_rows = [], 0

    def close(self) -> None:
        self.flush()
        self.writer.close()


class _NoWriter:
    """The output of processes other than 0 in a multi-process run: nothing."""

    def write(self, batch: Recommendations) -> None:
        pass

    def close(self) -> None:
        pass


def check_output(out: str) -> None:
    if out != "-" and Path(out).suffix.lower() not in OUTPUT_SUFFIXES:
        raise RecommendError(f"--out {out}: expected a .jsonl, .json or .parquet file name, or - for stdout")


def open_writer(out: str, item_tokens, stdout=None):
    """A JsonlWriter or ParquetWriter chosen by the name's suffix; "-" = JSONL on `stdout`."""
    check_output(out)
    if out == "-":
        return JsonlWriter(stdout or sys.stdout, item_tokens)
    suffix = Path(out).suffix.lower()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    return ParquetWriter(out, item_tokens) if suffix == ".parquet" else JsonlWriter(out, item_tokens)


def _progress_bar(total: int):
    return rate_bar("recommending", total, "users", rate_format=",.0f", stderr=True, transient=True)


def recommend(model, histories: Histories, item_tokens, k: int, out: str = "-", batch_size: int = 512,
              progress: bool = False, stdout=None) -> dict:
    """Streams the top-k of every user of `histories` to `out` (.jsonl/.json/.parquet, "-" = stdout).

    histories: a `Histories` (held in memory) or a `HistoryFile` (read in chunks of users: memory
    does not grow with the file; every chunk masks the same history width, so one compile). item_tokens: the original item ids by model id (vocab.json "items"). Returns a summary: users,
    unknown_items (skipped history items), seconds, users_per_s, batch_size."""
    k = check_k(k, model.info.num_items)
    check_batch_kind(model.spec, histories)
    # Several processes score every batch together; process 0 writes the output and shows the bar.
    writer = open_writer(out, item_tokens, stdout) if is_writer() else _NoWriter()
    bar = _progress_bar(len(histories)) if progress and is_writer() else None
    tick = time.perf_counter()
    done = 0
    try:
        if bar:
            bar[0].start()
        chunks = histories.chunks() if isinstance(histories, HistoryFile) else [histories]
        step = make_recommend_step(model, k)
        for chunk in chunks:
            for batch in recommend_batches(model, chunk, k, batch_size, step=step, exclude_width=histories.longest):
                writer.write(batch)
                done += len(batch.users)
                if bar:
                    bar[0].update(bar[1], completed=done)
    finally:
        if bar:
            bar[0].stop()
        writer.close()
    seconds = time.perf_counter() - tick
    return {"users": done, "unknown_items": histories.unknown_items, "seconds": round(seconds, 3),
            "users_per_s": round(done / seconds, 1) if seconds > 0 else None,
            "batch_size": round_batch_size(batch_size, model)}


def summary_line(summary: dict) -> str:
    """users, skipped history items, time and rate, on one line."""
    return (f"{summary['users']:,} users; history items unknown to the model and skipped: "
            f"{summary['unknown_items']:,}; {summary['seconds']:.1f} s, {summary['users_per_s'] or 0:,.0f} users/s")


def recommend_rows(model, histories: dict[str, list[tuple[str, int]]], vocab: dict, k: int,
                   batch_size: int = 512) -> tuple[list[dict], dict]:
    """In memory, for a few users: (rows, {"unknown_items"}) from `read_histories`-style histories."""
    arrays = histories_from_dict(histories, vocab)
    rows = [row for batch in recommend_batches(model, arrays, k, batch_size) for row in batch.rows(vocab["items"])]
    return rows, {"unknown_items": arrays.unknown_items}


