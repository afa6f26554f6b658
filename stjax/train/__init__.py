"""Training: the train state, the one jitted step, checkpoints and the loop."""

from stjax.train.loop import TrainingError, build_run, train_and_evaluate

__all__ = ["TrainingError", "build_run", "train_and_evaluate"]
