"""Registered models, one file each, all behind `ModelSpec` (see base.py)."""

from stjax.models import bert4rec, gru4rec, lstm, popularity, sasrec, tisasrec  # noqa: F401
from stjax.models.base import REGISTRY, ModelSpec, get, register

__all__ = ["REGISTRY", "ModelSpec", "get", "register"]
