"""`stjax export`: a trained model's user vectors (`ModelSpec.encode`) as Parquet, for profiling and
analysis outside stjax.

Every user of the run folder (its `histories.npz`: the user's most recent events as the model reads
them), in fixed-size batches on the device (one compile), written as they come: columns `user`
(original id) and `vector` (list<float32>, the model's user vector).
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from stjax.devices import fetch, put_global
from stjax.runs import RunFolder
from stjax.serving.recommend import (
    RecommendError,
    build_batch,
    histories_from_run,
    round_batch_size,
)


def check_output(out: str | Path) -> Path:
    """The output file's path, once its name is checked (before any model is loaded)."""
    if Path(out).suffix != ".parquet":
        raise RecommendError(f"--out {out}: expected a .parquet file name")
    if Path(out).is_dir():
        raise RecommendError(f"--out {out}: is a folder; expected a .parquet file name")
    return Path(out)


def export_users(model, workdir: str | Path, out: str | Path, batch_size: int = 512) -> dict:
    """Writes every user's vector to `out` (.parquet; its folder is created when missing). The
    rows go to a temporary file beside it, renamed to `out` once complete, so an export that
    fails leaves no partial file. Returns {"users", "dimensions"}."""
    spec = model.spec
    if spec.encode is None:
        raise RecommendError(f"model '{spec.name}' defines no encode(): it has no user vectors to export")
    out = check_output(out)
    vocab = RunFolder(workdir).vocab()
    histories = histories_from_run(workdir, vocab)
    params, context = model.state.params, model.context
    scoring = spec.prepare_scoring(model.module, {"params": params}, context=context)
    encode = jax.jit(lambda p, b, s: spec.encode(model.module, {"params": p}, b, context=context, scoring=s))
    batch_size = round_batch_size(batch_size, model)
    partial = out.with_name(out.name + ".partial")
    writer, dimensions = None, 0
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        for start in range(0, len(histories), batch_size):
            batch = build_batch(histories, start, batch_size, spec.batch_kind, model.info.max_length,
                                max(1, histories.longest), max(1, int(model.info.max_bag)))
            vectors = np.asarray(fetch(encode(params, put_global(batch, model.shardings.batch), scoring)),
                                 np.float32)[: min(batch_size, len(histories) - start)]
            dimensions = vectors.shape[1]
            table = pa.table({"user": pa.array(histories.users[start:start + len(vectors)].astype(str)),
                              "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dimensions)})
            if writer is None:
                writer = pq.ParquetWriter(str(partial), table.schema)
            writer.write_table(table)
        if writer is not None:
            writer.close()
            writer = None
            os.replace(partial, out)
    except OSError as err:
        raise RecommendError(f"--out {out}: cannot write it ({err.strerror or err})") from None
    finally:
        if writer is not None:
            writer.close()
        if partial.exists():  # (exists() is False, not an error, when a folder in the path is a file)
            partial.unlink()
    return {"users": len(histories), "dimensions": dimensions}
