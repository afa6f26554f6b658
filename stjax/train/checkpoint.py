"""Orbax checkpoints of a run: one `CheckpointManager` that keeps the last N steps and the best.

Each checkpoint holds the train state (params, optimizer state, step), a JSON record (data-
iterator position, best-metric record, early-stopping counter) and, as Orbax metrics, the
validation value that ranks it. The PRNG state is (seed, step): keys are folded from them.
Restores read into an abstract state whose leaves carry the CURRENT mesh's shardings, so a
checkpoint written on one mesh (say 4 x 2 devices) restores on another (1 device, 2 x 4).
"""

from __future__ import annotations

from pathlib import Path

import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import AnyPreservationPolicy, BestN, LatestN


def _value(metrics) -> float:
    return float(metrics["value"])


class Checkpoints:
    def __init__(self, workdir: Path, keep: int = 2, async_save: bool = True):
        root = Path(workdir).absolute() / "checkpoints"
        policy = AnyPreservationPolicy([LatestN(n=max(1, keep)), BestN(get_metric_fn=_value, reverse=False, n=1)])
        options = ocp.CheckpointManagerOptions(create=True, preservation_policy=policy, best_fn=_value,
                                               best_mode="max", enable_async_checkpointing=async_save)
        self.manager = ocp.CheckpointManager(root, options=options)

    def save(self, step: int, state, record: dict, value: float) -> None:
        """Saves `state` at `step`, ranked by `value` (higher is better)."""
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                        record=ocp.args.JsonSave(record)),
                          metrics={"value": float(value)})

    def _restore(self, step: int, abstract):
        """abstract: a pytree of jax.ShapeDtypeStruct with shardings (`stjax.train.state.abstract_state`)."""
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), record=ocp.args.JsonRestore()))
        return restored.state, restored.record

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        return self.manager.best_step()

    def restore_latest(self, abstract):
        return self._restore(self.latest_step(), abstract)

    def restore_best(self, abstract):
        return self._restore(self.best_step(), abstract)

    def steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()
