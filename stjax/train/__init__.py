"""Training: the train state, the one jitted step, checkpoints, the loop and updates on new events."""

from stjax.train.loop import TrainingError, build_run, train_and_evaluate
from stjax.train.update import UpdateError, update_run

__all__ = ["TrainingError", "UpdateError", "build_run", "train_and_evaluate", "update_run"]
