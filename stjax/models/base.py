"""The one model interface: `DataInfo` (what the data says), `ModelSpec` (what a model does), the registry.

A model is one file in `stjax/models/` that defines `SPEC = ModelSpec(...)`; the package finds it
(no second file to edit). The engine calls only the functions below, always with keywords:

  make(config, info) -> nn.Module
  init(module, rng, batch, context=...) -> variables        (boxed logical axes allowed)
  losses(module, variables, batch, rng=..., step=..., context=..., config=...) -> ({group: loss}, aux)
  prepare_scoring(module, variables, context=...) -> scoring  (once per evaluation / recommend pass)
  score(module, variables, batch, context=..., scoring=...) -> float[B, W]   (W >= I+1)
  encode(module, variables, batch, context=..., scoring=...) -> float[B, D]  (user vectors)
  predict(module, variables, batch, context=..., scoring=...) -> values   (optional: a model that predicts
      values rather than item scores, e.g. a forecaster of behaviour volume)
  example_scores(module, variables, batch, context=..., config=...) -> {"loss": float[B], "targets": float[B]}
      (optional) per-example loss sums and target counts, without dropout: sum(loss) / sum(targets)
      is the batch loss; loss / targets scores one user (anomaly detection)
  explain(module, variables, batch, context=..., scoring=...) -> {kind: (ids int[B, K], weights float[B, K])}
      the model's own attention behind a user's scores (`stjax explain`); kinds: 'neighbours'
      (user ids), 'items', 'places' (item ids), 'parts' (names tuple, weights)

`batch` holds the fields of the model's `batch_kind` (see `stjax.data.batching`); `context` is
the run-wide pytree from `make_context(prepared, info, config)` (graphs, features; {} for most);
`aux` holds scalars to log (`aux["targets"]`, a count, is summed; the rest are averaged). Item 0
is padding and columns above I (rows added to shard the item table) are never items: the engine
masks them, so a score may leave them as they come.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import ml_collections

from stjax.data.kinds import BATCH_KINDS  # noqa: F401  (the registry of batch kinds, re-exported)
from stjax.models import checks


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """Sizes a model is built from; saved in the run folder (run.json) so that `evaluate` and
    `recommend` can rebuild the model without the data.

    item_shards: the item table is sharded by rows over this many devices, so its row count is
    padded up to a multiple of it (`table_rows`). feature_sizes: sorted (name, size) pairs.
    """

    num_users: int
    num_items: int
    max_length: int
    item_shards: int = 1
    max_bag: int = 0
    feature_sizes: tuple[tuple[str, int], ...] = ()

    def table_rows(self, extra: int = 0) -> int:
        """Rows of an item table: padding row 0, the I items, `extra` special rows, padded to the shards."""
        rows = self.num_items + 1 + extra
        return -(-rows // self.item_shards) * self.item_shards

    @property
    def item_rows(self) -> int:
        return self.table_rows()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"feature_sizes": [list(pair) for pair in self.feature_sizes]}

    @classmethod
    def from_dict(cls, values: dict) -> DataInfo:
        values = dict(values)
        values["feature_sizes"] = tuple(tuple(pair) for pair in values.get("feature_sizes", ()))
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


def sequence_init(module, rng, batch, *, context=None):
    """Default init: the module's __call__(items, timestamps) on a training batch."""
    return module.init(rng, batch["items"], batch["timestamps"])


def no_scoring(module, variables, *, context=None):
    """Default prepare_scoring: nothing to precompute."""
    return None


def no_context(prepared, info, config):
    """Default make_context: no run-wide arrays."""
    return {}


def first_key_group(path: tuple[str, ...]) -> str:
    """Default parameter grouping for several groups: the name of the top-level submodule."""
    return path[0]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """Everything the engine knows of a model. See the module docstring for the signatures.

    groups: parameter groups, each with its own optimizer (learning rate, update period) in
    `train.groups`; `group_of(path)` names the group of a parameter from its path of keys.
    trainable=False: a model with nothing to learn (the engine still runs its loss once).
    config_checks(model_config): refuses a bad value of the model's own keys before any data loads
    (`stjax.models.checks`: BadKey for one value, ValueError for a setting `make` cannot build);
    `stjax.validation` runs it at load time and `build_model` before `make`.
    """

    name: str
    default_config: Callable[[], ml_collections.ConfigDict]
    make: Callable[..., nn.Module]
    losses: Callable[..., tuple[dict, dict]]
    score: Callable[..., Any]
    batch_kind: str = "sequence"
    groups: tuple[str, ...] = ("model",)
    group_of: Callable[[tuple[str, ...]], str] = first_key_group
    init: Callable[..., Any] = sequence_init
    prepare_scoring: Callable[..., Any] = no_scoring
    encode: Callable[..., Any] | None = None
    predict: Callable[..., Any] | None = None
    example_scores: Callable[..., Any] | None = None
    explain: Callable[..., Any] | None = None
    make_context: Callable[..., Any] = no_context
    trainable: bool = True
    config_checks: Callable[[ml_collections.ConfigDict], None] = checks.common

    def __post_init__(self):
        if self.batch_kind not in BATCH_KINDS:
            raise ValueError(f"model {self.name}: batch_kind {self.batch_kind!r} is not one of {BATCH_KINDS}")
        if not self.groups:
            raise ValueError(f"model {self.name}: at least one parameter group")


REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Adds a model defined outside `stjax/models/` (files inside are found by themselves)."""
    if spec.name in REGISTRY and REGISTRY[spec.name] is not spec:
        raise ValueError(f"two models are named {spec.name!r}")
    REGISTRY[spec.name] = spec
    return spec


def get(name: str) -> ModelSpec:
    from stjax import models  # noqa: F401  (finds every model file)

    if name not in REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]
