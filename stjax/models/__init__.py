"""Registered models: every module of this package that defines `SPEC = ModelSpec(...)`.

Adding a model is adding one file here; `shared.py` and `shared_graph.py` hold what several models use.
"""

import importlib
import pkgutil

from stjax.models.base import REGISTRY, DataInfo, ModelSpec, get, register

_NOT_MODELS = {"base", "shared", "shared_graph"}


def _discover() -> None:
    for found in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if found.name in _NOT_MODELS or found.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{found.name}")
        spec = getattr(module, "SPEC", None)
        if isinstance(spec, ModelSpec):
            register(spec)


_discover()

__all__ = ["REGISTRY", "DataInfo", "ModelSpec", "get", "register"]
