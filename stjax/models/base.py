"""The one model interface: `DataInfo` (what the data says), `ModelSpec` (what a model does), the registry.

A model is one file in `stjax/models/` that defines `SPEC = ModelSpec(...)`; the package finds it
(no second file to edit). The engine calls only the functions below, always with keywords:

  make(config, info) -> nn.Module
  init(module, rng, batch, context=...) -> variables        (boxed logical axes allowed)
  losses(module, variables, batch, rng=..., step=..., context=..., config=...) -> ({group: loss}, aux)
  prepare_scoring(module, variables, context=...) -> scoring  (once per evaluation / recommend pass)
  score(module, variables, batch, context=..., scoring=...) -> float[B, W]   (W >= I+1; None for a
      model that ranks no items, such as a forecaster: it has `predict` instead)
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


@dataclasses.dataclass(frozen=True)
class DataInfo:
    """Sizes a model is built from; saved in the run folder (run.json) so that `evaluate` and
    `recommend` can rebuild the model without the data.

    item_shards: the item table is sharded by rows over this many devices, so its row count is
    padded up to a multiple of it (`table_rows`). feature_sizes: sorted (name, size) pairs.
    Forecasters (`series` batches): num_users series, max_length input days, horizon target days.
    """

    num_users: int
    num_items: int
    max_length: int
    item_shards: int = 1
    max_bag: int = 0
    feature_sizes: tuple[tuple[str, int], ...] = ()
    horizon: int = 0

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


# ----------------------------------------------------------------------------- config checks
# Checks of config values, for the engine's keys (`stjax.validation`) and each model's own
# (`ModelSpec.config_checks`). A check returns None when the value is fine, else what is allowed.
# A model's `config_checks(model_config)` raises `BadKey(key, value, allowed)` for one bad value
# (shown as "config key 'model.KEY': found V; expected ALLOWED") or `ValueError` for a setting its
# module cannot build (shown as "model config: MESSAGE"). `config_keys(...)` builds it: the checks
# of the shared model keys a model's config has, by name, then the model's own.

Check = Callable[[object], str | None]  # returns what is allowed when the value is not


class BadKey(ValueError):
    """One config value outside its domain: the key (dotted), the value and what is allowed."""

    def __init__(self, key: str, value, allowed: str):
        super().__init__(f"config key '{key}': found {value!r}; expected {allowed}")
        self.key, self.value, self.allowed = key, value, allowed


def integer(minimum: int) -> Check:
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            return f"an integer >= {minimum}"
        return None
    return check


def number(low: float, high: float | None = None, low_open: bool = False, high_open: bool = True) -> Check:
    def check(value):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            ok = (value > low if low_open else value >= low) and \
                (high is None or (value < high if high_open else value <= high))
        if not ok:
            left = "(" if low_open else "["
            right = ")" if high_open else "]"
            return f"a number in {left}{low}, {high if high is not None else 'inf'}{right}"
        return None
    return check


def one_of(*choices) -> Check:
    def check(value):
        return None if value in choices else "one of " + ", ".join(repr(c) if c == "" else str(c) for c in choices)
    return check


def boolean(value):
    return None if isinstance(value, bool) else "true or false"


def text(value):
    return None if isinstance(value, str) else "a string"


def nonempty_text(value):
    return None if isinstance(value, str) and value else "a non-empty string"


# The model keys several models share, by name: a model that reuses a name gets its check.
SHARED: dict[str, Check] = {
    "hidden": integer(1), "state": integer(1), "num_blocks": integer(0), "num_heads": integer(1),
    "num_layers": integer(1), "mlp_ratio": integer(1), "max_interval": integer(1),
    "dropout": number(0.0, 1.0), "attention_dropout": number(0.0, 1.0),
    "mask_probability": number(0.0, 1.0, low_open=True), "loss": one_of("ce", "bce", "sampled"),
    "num_sampled": integer(1), "sampler": one_of("log_uniform", "uniform", "popularity"),
    "dtype": one_of("float32", "bfloat16", "float16"), "reg_weight": number(0.0),
    "relation": one_of("none", "given", "co_interaction", "region", "proximity"), "relation_file": text,
    "relation_window_s": integer(1), "relation_radius_km": number(0.0, low_open=True),
    "cell": one_of("lstm", "gru"), "num_neighbours": integer(0), "neighbour_items": integer(1),
    "social_copy": boolean, "use_geo": boolean, "distance_term": boolean, "cell_resolution": integer(0),
    "latlon_features": integer(4), "time_features": integer(1), "history": integer(1), "learn_time": boolean,
    "parts": nonempty_text, "ae_weight": number(0.0), "two_hop": boolean, "two_hop_positions": integer(1),
    "two_hop_items": integer(1), "item_residual": boolean, "gnn_heads": integer(1),
}


def check_values(config, rules: dict[str, Check]) -> None:
    """Raises BadKey for the first key of `config` (the model section) whose value `rules` refuses."""
    for key, check in rules.items():
        if key in config:
            allowed = check(config[key])
            if allowed:
                raise BadKey(f"model.{key}", config[key], allowed)


def heads_divide_hidden(config) -> None:
    if "hidden" in config and "num_heads" in config and config.hidden % config.num_heads:
        raise BadKey("model.num_heads", config.num_heads, f"a divisor of model.hidden ({config.hidden})")


def config_keys(own: dict[str, Check] | None = None, then: Callable | None = None) -> Callable:
    """A model's `config_checks`: the shared keys' checks, its `own` key checks (which win), the
    heads-divide-hidden relation, then `then(config)` for settings only the model knows."""
    rules = SHARED | (own or {})

    def config_checks(config) -> None:
        check_values(config, rules)
        heads_divide_hidden(config)
        if then is not None:
            then(config)

    return config_checks


common_checks = config_keys()


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
    (`config_keys` below: BadKey for one value, ValueError for a setting `make` cannot build);
    `stjax.validation` runs it at load time and `build_model` before `make`.
    engine_defaults(config): sets the engine keys a model needs other defaults of in the whole
    config (`stjax.config.base_config` calls it): a forecaster's data.split and evaluator.
    """

    name: str
    default_config: Callable[[], ml_collections.ConfigDict]
    make: Callable[..., nn.Module]
    losses: Callable[..., tuple[dict, dict]]
    score: Callable[..., Any] | None = None
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
    config_checks: Callable[[ml_collections.ConfigDict], None] = common_checks
    engine_defaults: Callable[[ml_collections.ConfigDict], None] | None = None

    def __post_init__(self):
        if self.batch_kind not in BATCH_KINDS:
            raise ValueError(f"model {self.name}: batch_kind {self.batch_kind!r} is not one of {BATCH_KINDS}")
        if self.score is None and self.predict is None:
            raise ValueError(f"model {self.name}: a model scores items (score) or predicts values (predict)")
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
