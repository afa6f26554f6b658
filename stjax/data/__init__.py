"""Interaction data: loading with located errors, cleaning, splits, batches, synthetic data.

Models never see this package's objects: they get plain NumPy batches (`batching`).
"""

from stjax.data.batching import (
    BatchIterator,
    EvalBatch,
    SequenceBatch,
    SequenceData,
    build_sequences,
)
from stjax.data.errors import DataError, Issue, RepairReport
from stjax.data.formats import FORMATS, Loaded, detect_format, load
from stjax.data.preprocess import deduplicate, k_core, min_history, preprocess
from stjax.data.splits import TEST, TRAIN, VALID, Split, make_split
from stjax.data.table import InteractionLog, Vocab, make_log

__all__ = [
    "BatchIterator", "EvalBatch", "SequenceBatch", "SequenceData", "build_sequences", "DataError", "Issue",
    "RepairReport", "FORMATS", "Loaded", "detect_format", "load", "deduplicate", "k_core", "min_history",
    "preprocess", "TEST", "TRAIN", "VALID", "Split", "make_split", "InteractionLog", "Vocab", "make_log",
]
