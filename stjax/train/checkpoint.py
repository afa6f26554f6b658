"""Orbax checkpoints of a run: the last N (resume) and the best (evaluate, recommend).

Each checkpoint holds the train state (params, optimizer state, step) and a JSON record:
data-iterator position, best-metric record, early-stopping counter and the config.
The PRNG state is (seed, step): keys are folded from them, so nothing else is needed.
"""

from __future__ import annotations

from pathlib import Path

import jax
import orbax.checkpoint as ocp


class Checkpoints:
    def __init__(self, workdir: Path, keep: int = 2, async_save: bool = True):
        root = Path(workdir).absolute() / "checkpoints"
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=async_save)
        self.last = ocp.CheckpointManager(root / "last", options=options)
        best_options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True, enable_async_checkpointing=async_save)
        self.best = ocp.CheckpointManager(root / "best", options=best_options)

    @staticmethod
    def _save(manager, step: int, state, record: dict) -> None:
        manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), record=ocp.args.JsonSave(record)))

    def save(self, step: int, state, record: dict, is_best: bool) -> None:
        self._save(self.last, step, state, record)
        if is_best:
            self._save(self.best, step, state, record)

    def save_best(self, step: int, state, record: dict) -> None:
        self._save(self.best, step, state, record)
        self.best.wait_until_finished()

    @staticmethod
    def _restore(manager, step, template):
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, template)
        restored = manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), record=ocp.args.JsonRestore()))
        return restored.state, restored.record

    def latest_step(self) -> int | None:
        return self.last.latest_step()

    def restore_latest(self, template):
        return self._restore(self.last, self.last.latest_step(), template)

    def best_step(self) -> int | None:
        return self.best.latest_step()

    def restore_best(self, template):
        return self._restore(self.best, self.best.latest_step(), template)

    def wait(self) -> None:
        self.last.wait_until_finished()
        self.best.wait_until_finished()

    def close(self) -> None:
        self.last.close()
        self.best.close()
