"""The run folder, written and read in one place: `RunFolder(path)`.

A run is a folder that `evaluate`, `recommend`, `explain`, `export` (and the report and the
analyses) use without the original data:

  config.json      the resolved config            run.json      model, batch kind, DataInfo, time origin
  vocab.json       original user and item ids     histories.npz every user's events (flat arrays, offsets;
                   (and behaviour, region names)               with behaviour, coordinates and region codes)
  context.npz      the model's run-wide arrays    metrics.jsonl a line per log step and per evaluation
  tb/              TensorBoard events             results.json  final metrics, protocols, timings
  checkpoints/     Orbax steps (`Checkpoints`)    .lock         one trainer per folder
  test_rows.npz    each test row's ranks, metrics and what it is about (history length, gap,
                   revisit, region, coordinates), from the best checkpoint: the report's breakdowns
  analysis/        outputs of the analyses (`stjax analyze`, `stjax anomalies`), one JSON file each
  updates.jsonl    a line per `stjax update` (new events, sizes, steps, metrics; `stjax.train.update`)

Only process 0 of a multi-process run writes the run files and holds the lock (`is_writer`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import numpy as np

from stjax.config import saved_config, to_json
from stjax.data.batching import relative_times, user_histories
from stjax.data.histories import Histories
from stjax.data.table import PAD, InteractionLog, Vocab
from stjax.models.base import DataInfo
from stjax.runs.checkpoints import CheckpointError, Checkpoints

__all__ = ["CheckpointError", "Checkpoints", "RunError", "RunFolder", "WorkdirLock", "is_writer"]


class RunError(Exception):
    """A run folder that cannot be used (unreadable files, another model's run, a torn metrics file,
    a run that cannot go on): a clear message, exit 2."""


def is_writer() -> bool:
    """Process 0 writes run files, logs and results; the others only compute."""
    return jax.process_index() == 0


def read_json(path: Path, what: str):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunError(f"{path}: {what} is unreadable ({err.__class__.__name__}: {err}); "
                       f"delete the run folder or use another --workdir") from None


def _unflatten(flat: dict) -> dict:
    tree: dict = {}
    for key, value in flat.items():
        node = tree
        *parents, last = key.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return tree


class RunFolder:
    """Paths and readers/writers of one run folder (see the module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __str__(self) -> str:
        return str(self.path)

    def __fspath__(self) -> str:
        return str(self.path)

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def is_run(self) -> bool:
        return (self.path / "config.json").exists() and (self.path / "run.json").exists()

    # -------------------------------------------------------------------------------- writing

    def write(self, config, spec, info: DataInfo, log, time_origin: int, context) -> None:
        """What `evaluate` and `recommend` need without the data: config, sizes, vocabularies,
        histories and the model's run-wide arrays (process 0 only)."""
        if not is_writer():
            return
        (self.path / "config.json").write_text(to_json(config))
        (self.path / "run.json").write_text(json.dumps({
            "model": spec.name, "batch_kind": spec.batch_kind, "info": info.to_dict(), "time_origin": time_origin}))
        (self.path / "vocab.json").write_text(json.dumps({
            "items": log.item_vocab.tokens.tolist(), "users": log.user_vocab.tokens.tolist(),
            "time_origin": time_origin, "behaviours": log.behaviour_vocab.tokens.tolist(),
            "regions": log.region_vocab.tokens.tolist()}))
        times, _ = relative_times(log)
        # The event columns beyond items and times, so that `log()` gives back the whole log (an update
        # recomputes a model's context from it): behaviour, coordinates, region codes.
        columns = {"behaviour": log.behaviour, "latitude": log.latitude, "longitude": log.longitude,
                   "region": log.region}
        np.savez(self.path / "histories.npz", **user_histories(log, times), **columns)
        context = jax.device_get(context)
        if context:
            flat = {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(leaf)
                    for path, leaf in jax.tree_util.tree_flatten_with_path(context)[0]}
            np.savez(self.path / "context.npz", **flat)

    def write_results(self, results: dict) -> None:
        if is_writer():
            (self.path / "results.json").write_text(json.dumps(results, indent=2))

    def write_rows(self, rows: dict | None, part: str = "test") -> None:
        """`<part>_rows.npz` from `Evaluators.per_row` (plain arrays, no pickles); None writes nothing."""
        if rows is not None and is_writer():
            with open(self.path / f"{part}_rows.npz", "wb") as handle:
                np.savez(handle, **{name: np.asarray(value) for name, value in rows.items()})

    # -------------------------------------------------------------------------------- reading

    def config(self):
        """The resolved config the run trained with (keys added to stjax since: their defaults)."""
        return saved_config(read_json(self.path / "config.json", "the run's config"))

    def record(self) -> dict:
        """run.json: {model, batch_kind, info, time_origin}."""
        record = read_json(self.path / "run.json", "the run's sizes")
        if not isinstance(record, dict) or not isinstance(record.get("info"), dict):
            raise RunError(f"{self.path / 'run.json'}: the run's sizes are not a JSON object with 'info'")
        return record

    def info(self) -> DataInfo:
        return DataInfo.from_dict(self.record()["info"])

    def vocab(self) -> dict:
        """vocab.json: {items, users (index = internal id, 0 = padding), time_origin}."""
        return read_json(self.path / "vocab.json", "the run's vocabulary")

    def rows(self, part: str = "test") -> dict | None:
        """`<part>_rows.npz` as a dict of arrays, or None when the run has none (older runs:
        `stjax evaluate` writes it)."""
        path = self.path / f"{part}_rows.npz"
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as saved:
                return {name: saved[name] for name in saved.files}
        except (OSError, ValueError) as err:
            raise RunError(f"{path}: unreadable ({err}); run stjax evaluate --workdir {self.path} to write it "
                           f"again") from None

    def context(self) -> dict | None:
        """The run-wide arrays the run trained with (context.npz), or None when it has none."""
        path = self.path / "context.npz"
        return _unflatten(dict(np.load(path))) if path.exists() else None

    def histories(self, vocab: dict | None = None) -> Histories:
        """Every user of the run's training log (histories.npz), with all of their events."""
        path = self.path / "histories.npz"
        if not path.exists():
            raise RunError(f"{self.path}: no histories.npz (written by stjax train); use --history instead")
        vocab = self.vocab() if vocab is None else vocab
        with np.load(path) as saved:
            offsets, items, timestamps = saved["offsets"], saved["items"], saved["timestamps"]
        num_users = len(vocab["users"]) - 1  # id 0 is "<pad>"
        return Histories(users=np.asarray([str(user) for user in vocab["users"][1:]], dtype=object),
                         user_ids=np.arange(1, num_users + 1, dtype=np.int32),
                         offsets=np.asarray(offsets[1:num_users + 2], np.int64),
                         items=np.asarray(items, np.int32), timestamps=np.asarray(timestamps, np.int32))

    def log(self) -> InteractionLog:
        """The run's whole log (what `write` saved: every event of every user, sorted by user and time)
        with its vocabularies. Runs written before histories.npz kept behaviours, coordinates and regions
        get one behaviour, NaN coordinates and region 0 (unknown)."""
        path = self.path / "histories.npz"
        if not path.exists():
            raise RunError(f"{self.path}: no histories.npz (written by stjax train)")
        vocab = self.vocab()
        with np.load(path) as saved:
            arrays = {name: saved[name] for name in saved.files}
        counts = np.diff(arrays["offsets"]).astype(np.int64)
        events = len(arrays["items"])

        def column(name, fill, dtype):
            return np.asarray(arrays[name], dtype) if name in arrays else np.full(events, fill, dtype)

        behaviours = vocab.get("behaviours") or [PAD, "rate"]
        return InteractionLog(
            user=np.repeat(np.arange(len(counts), dtype=np.int32), counts),
            item=np.asarray(arrays["items"], np.int32),
            timestamp=np.asarray(arrays["timestamps"], np.int64) + int(vocab.get("time_origin", 0)),
            behaviour=column("behaviour", 1, np.int8), value=column("values", np.nan, np.float32),
            latitude=column("latitude", np.nan, np.float32), longitude=column("longitude", np.nan, np.float32),
            region=column("region", 0, np.int32),
            user_vocab=Vocab(np.asarray(vocab["users"], dtype=object)),
            item_vocab=Vocab(np.asarray(vocab["items"], dtype=object)),
            behaviour_vocab=Vocab(np.asarray(behaviours, dtype=object)),
            region_vocab=Vocab(np.asarray(vocab.get("regions") or [PAD], dtype=object)))

    def updates(self) -> list[dict]:
        """updates.jsonl's records, one per `stjax update` (none for a run never updated)."""
        path = self.path / "updates.jsonl"
        if not path.exists():
            return []
        try:
            return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        except ValueError as err:
            raise RunError(f"{path}: not a JSON line per update ({err})") from None

    def history_values(self) -> np.ndarray | None:
        """The values (ratings) of histories.npz's events, float32[E] in its order; None for runs
        written before values were kept."""
        path = self.path / "histories.npz"
        if not path.exists():
            return None
        with np.load(path) as saved:
            return np.asarray(saved["values"], np.float32) if "values" in saved.files else None

    # -------------------------------------------------------------------------------- checkpoints

    def checkpoints(self, **options) -> Checkpoints:
        return Checkpoints(self.path, **options)

    def restore(self, abstract_state, prefer_best: bool = True, log=print) -> tuple[object, dict, int]:
        """The best (or latest) intact checkpoint into `abstract_state` (shardings of the current mesh):
        (state, record, step)."""
        checkpoints = Checkpoints(self.path, async_save=False, log=log)
        try:
            if checkpoints.latest_step() is None:
                raise RunError(f"{self.path}: no checkpoint yet; train first")
            return checkpoints.restore_intact(abstract_state, prefer_best=prefer_best)
        finally:
            checkpoints.close()

    # -------------------------------------------------------------------------------- resuming

    def check_resumable(self, config) -> None:
        """A folder holding another model's run, or a run of a different model/data config, is refused."""
        saved = self.path / "config.json"
        if not saved.exists():
            return
        if (self.path / "updates.jsonl").exists():  # its sizes and log are no longer the config's data
            raise RunError(f"{self.path} holds a run updated on new events (updates.jsonl); training cannot "
                           f"resume it: continue it with stjax update, or use another --workdir")
        old = read_json(saved, "the run's config")
        if not isinstance(old, dict):
            raise RunError(f"{saved}: the run's config is not a JSON object; delete the run folder or use "
                           f"another --workdir")
        new = json.loads(to_json(config))
        if old.get("model", {}).get("name") == new["model"]["name"]:  # keys added since: their defaults
            old = json.loads(to_json(saved_config(old)))
        if old.get("model", {}).get("name") != new["model"]["name"]:
            raise RunError(f"{self.path} holds a run of model '{old.get('model', {}).get('name')}', not "
                           f"'{new['model']['name']}'; use another --workdir")
        for section in ("model", "data"):
            if old.get(section) != new.get(section):
                raise RunError(f"{self.path} holds a run with a different '{section}' config; resume needs the same "
                               f"config (use another --workdir)")

    def _metric_lines(self, log=None) -> list[tuple[str, dict]]:
        """(line, record) of each metrics.jsonl line; a torn last line (a kill during a write) is
        dropped (with a note to `log`); garbage elsewhere is an error naming the line."""
        path = self.metrics_path
        if not path.exists():
            return []
        lines = path.read_text(errors="replace").splitlines()
        parsed = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                if not isinstance(entry, dict):
                    raise ValueError("not an object")
            except ValueError as err:
                if number == len(lines):
                    if log is not None:
                        log(f"{path}:{number}: dropped a torn last line")
                    continue
                raise RunError(f"{path}:{number}: not a metrics record ({err}); delete the file to go on") from None
            parsed.append((line, entry))
        return parsed

    def metrics(self) -> list[dict]:
        """metrics.jsonl's records (a line per log step and per evaluation), in order."""
        return [entry for _, entry in self._metric_lines() if "step" in entry]

    def truncate_metrics(self, step: int, log) -> None:
        """Keeps the lines of steps <= `step` (all of them go when step is 0); see `_metric_lines`."""
        if not self.metrics_path.exists() or not is_writer():
            return
        kept = [line for line, entry in self._metric_lines(log) if int(entry.get("step", 0)) <= step]
        self.metrics_path.write_text("".join(line + "\n" for line in kept))

    def lock(self) -> WorkdirLock:
        return WorkdirLock(self.path)


class WorkdirLock:
    """One trainer per run folder: an advisory lock (fcntl) on `<workdir>/.lock`, held for the run by
    process 0 (the other processes of a multi-process run share the folder and take no lock).

    The kernel drops the lock when its process dies, so a lock left by a killed run is free."""

    def __init__(self, workdir: Path):
        self.path = Path(workdir) / ".lock"
        self.handle = None

    def __enter__(self):
        import fcntl

        if not is_writer():
            return self
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise RunError(f"{self.path.parent} is in use by another stjax train (pid {holder}); wait for it "
                           f"to finish or use another --workdir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self.handle = handle
        return self

    def __exit__(self, *exc):
        import fcntl

        if self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
        return False
