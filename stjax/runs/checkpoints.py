"""Orbax checkpoints of a run: one `CheckpointManager` that keeps the last N steps and the best.

Each checkpoint holds the train state (params, optimizer state, step), a JSON record (data-
iterator position, best-metric record, early-stopping counter) and, as Orbax metrics, the
validation value that ranks it. The PRNG state is (seed, step): keys are folded from them.
Restores read into an abstract state whose leaves carry the CURRENT mesh's shardings, so a
checkpoint written on one mesh (say 4 x 2 devices) restores on another (1 device, 2 x 4).

What goes wrong on real machines is reported in one line (`CheckpointError`): a damaged step is
moved aside to `checkpoints/damaged-<step>` and the newest intact step is used instead; a save
that fails (disk full, permissions) stops the run at that save, naming the path and the free
space, and the previous checkpoints stay intact; temporary folders of a killed save are removed
on start.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import AnyPreservationPolicy, BestN, LatestN


class CheckpointError(Exception):
    """A checkpoint cannot be written or no intact one can be read (a clear message, exit 2)."""


def _value(metrics) -> float:
    return float(metrics["value"])


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{err.__class__.__name__}: {text[0] if text else ''}".rstrip(": ")


class Checkpoints:
    """higher_is_better: the direction of the metric that ranks checkpoints (the best one is kept);
    Orbax ranks by `value` saved as the metric itself, or its negation when lower is better."""

    def __init__(self, workdir: Path, keep: int = 2, async_save: bool = True, log=print,
                 higher_is_better: bool = True):
        self.root = Path(workdir).absolute() / "checkpoints"
        self.keep, self.async_save, self.log = keep, async_save, log
        self.sign = 1.0 if higher_is_better else -1.0
        self._saving: int | None = None
        self.manager = self._open()

    def _open(self):
        policy = AnyPreservationPolicy([LatestN(n=max(1, self.keep)), BestN(get_metric_fn=_value, reverse=False, n=1)])
        options = ocp.CheckpointManagerOptions(create=True, preservation_policy=policy, best_fn=_value,
                                               best_mode="max", enable_async_checkpointing=self.async_save,
                                               cleanup_tmp_directories=True)
        try:
            return ocp.CheckpointManager(self.root, options=options)
        except Exception as err:  # unreadable folder, garbage metadata, permissions
            raise CheckpointError(f"{self.root}: cannot open the checkpoints ({_first_line(err)})") from None

    def save(self, step: int, state, record: dict, value: float) -> None:
        """Saves `state` at `step`, ranked by `value` (in the direction given). With async saves the write
        goes on in the background; `check()` (called at every log step) reports a failure."""
        self.check()
        self._saving = step
        try:
            self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                            record=ocp.args.JsonSave(record)),
                              metrics={"value": self.sign * float(value)})
        except Exception as err:
            raise self._save_error(err) from None

    def check(self) -> None:
        """Raises CheckpointError if a background save failed (at the latest one log step after it)."""
        if self._saving is None:
            return
        try:
            self.manager.check_for_errors()
        except Exception as err:
            raise self._save_error(err) from None

    def _save_error(self, err: BaseException) -> CheckpointError:
        try:  # let earlier saves still in flight finish, so that they are intact when the run stops
            self.manager.wait_until_finished()
        except Exception:  # noqa: S110  (the error being reported is `err`)
            pass
        try:
            free = f"{shutil.disk_usage(self.root).free / 2**20:,.0f} MiB free on that disk"
        except OSError:
            free = "free space unknown"
        intact = [step for step in self.manager.all_steps() if step != self._saving]
        previous = f"step {max(intact)} is intact" if intact else "no earlier checkpoint exists"
        return CheckpointError(f"saving checkpoint step {self._saving} to {self.root} failed ({_first_line(err)}; "
                               f"{free}); {previous}: free space or fix permissions and rerun to resume")

    def _restore(self, step: int, abstract):
        """abstract: a pytree of jax.ShapeDtypeStruct with shardings (`stjax.train.state.abstract_state`)."""
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), record=ocp.args.JsonRestore()))
        if not isinstance(restored.record, dict):
            raise ValueError("the JSON record is not an object")
        return restored.state, restored.record

    def _set_aside(self, step: int, err: BaseException) -> None:
        self.log(f"checkpoint step {step} in {self.root} is damaged ({_first_line(err)}); "
                 f"moved to damaged-{step}, using the newest intact step")
        source = self.root / str(step)
        if source.exists():
            target = self.root / f"damaged-{step}"
            if target.exists():
                shutil.rmtree(target)
            source.rename(target)
        self.manager.close()
        self.manager = self._open()

    def restore_intact(self, abstract, prefer_best: bool = False) -> tuple[object, dict, int]:
        """The newest intact checkpoint (the best one first when `prefer_best`): (state, record, step).

        A step that cannot be read is set aside with a one-line note; CheckpointError when none is left."""
        while True:
            steps = sorted(self.manager.all_steps(), reverse=True)
            if not steps:
                raise CheckpointError(f"{self.root}: no intact checkpoint")
            best = self.manager.best_step()
            step = best if prefer_best and best is not None else steps[0]
            try:
                state, record = self._restore(step, abstract)
                return state, record, step
            except Exception as err:  # truncated arrays, missing folders, garbage JSON or metadata
                self._set_aside(step, err)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        return self.manager.best_step()

    def restore_latest(self, abstract):
        state, record, _ = self.restore_intact(abstract)
        return state, record

    def restore_best(self, abstract):
        state, record, _ = self.restore_intact(abstract, prefer_best=True)
        return state, record

    def wait(self) -> None:
        try:
            self.manager.wait_until_finished()
        except Exception as err:
            raise self._save_error(err) from None
        self.check()

    def close(self) -> None:
        self.manager.close()
