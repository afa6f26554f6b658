"""Evaluation: full-ranking and sampled metrics, shared by every model."""

from stjax.eval.evaluator import Evaluator
from stjax.eval.metrics import METRICS, rank_metrics, target_rank

__all__ = ["Evaluator", "METRICS", "rank_metrics", "target_rank"]
