"""Evaluation: full-ranking and sampled metrics, shared by every model; the forecast and
next-event evaluators of models that predict values (they register themselves on import)."""

from stjax.eval import (
    forecast,  # noqa: F401
    next_event,  # noqa: F401
)
from stjax.eval.evaluator import Evaluator
from stjax.eval.metrics import METRICS, rank_metrics, target_rank

__all__ = ["Evaluator", "METRICS", "rank_metrics", "target_rank"]
