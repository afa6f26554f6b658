"""Config validation in one place: every key has a type and a domain, checked before any data loads.

`validate(config)` raises `ConfigError` with one line naming the key, the value found and what is
allowed. Model keys are checked by name wherever they appear (`hidden`, `num_heads`, `dropout`, ...),
so a new model's config is covered when it reuses the names. Checks that need the data (K at most
the catalogue size) are in `check_against_data`.
"""

from __future__ import annotations

from collections.abc import Callable

import ml_collections


class ConfigError(Exception):
    """A bad config file, key, value or override (a user error)."""


Check = Callable[[object], str | None]  # returns what is allowed when the value is not


def _integer(minimum: int) -> Check:
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            return f"an integer >= {minimum}"
        return None
    return check


def _number(low: float, high: float | None = None, low_open: bool = False, high_open: bool = True) -> Check:
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


def _one_of(*choices) -> Check:
    def check(value):
        return None if value in choices else "one of " + ", ".join(repr(c) if c == "" else str(c) for c in choices)
    return check


def _boolean(value):
    return None if isinstance(value, bool) else "true or false"


def _text(value):
    return None if isinstance(value, str) else "a string"


def _nonempty_text(value):
    return None if isinstance(value, str) and value else "a non-empty string"


def _subset_of(*choices) -> Check:
    def check(value):
        items = list(value) if isinstance(value, (tuple, list)) else None
        if not items or any(item not in choices for item in items) or len(set(items)) != len(items):
            return f"a non-empty list of distinct names from {', '.join(choices)}"
        return None
    return check


def _ks(value):
    items = list(value) if isinstance(value, (tuple, list)) else None
    if not items or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in items):
        return "a non-empty list of integers >= 1, e.g. 5,10,20"
    return None


def _rules(value):
    ok = isinstance(value, (tuple, list)) and all(
        isinstance(pair, (tuple, list)) and len(pair) == 2 and isinstance(pair[0], str)
        and (pair[1] is None or pair[1] in ("data", "model", "", "none", "None")) for pair in value)
    return None if ok else "pairs (logical axis, data | model | None)"


def schema() -> dict[str, Check]:
    """key (dotted; `*` = any model or group name) -> check."""
    from stjax.data.formats import FORMATS
    from stjax.eval.evaluator import EVALUATORS

    return {
        "seed": _integer(0),
        "data.source": _nonempty_text, "data.data_dir": _text, "data.format": _one_of("", *FORMATS),
        "data.columns": _text, "data.dedup": _boolean, "data.user_k": _integer(0), "data.item_k": _integer(0),
        "data.min_length": _integer(0), "data.split": _one_of("leave_one_out", "temporal", "held_out_users"),
        "data.valid_fraction": _number(0.0, 1.0), "data.test_fraction": _number(0.0, 1.0, low_open=True),
        "data.seed": _integer(0), "data.max_length": _integer(1), "data.window": _one_of("last", "all"),
        "data.max_bag": _integer(0), "data.num_negatives": _integer(1), "data.max_targets": _integer(0),
        "data.fold_in_fraction": _number(0.0, 1.0, low_open=True), "data.low_memory": _boolean,
        "data.synthetic_users": _integer(2), "data.synthetic_items": _integer(2),
        "data.synthetic_events": _integer(1), "data.synthetic_influence": _number(0.0, 1.0, high_open=False),
        "data.synthetic_influencer_region": _one_of("same", "any"), "eval.exclude_history": _boolean,
        "train.batch_size": _integer(1), "train.num_epochs": _integer(1), "train.num_steps": _integer(0),
        "train.optimizer": _one_of("adam", "adamw"), "train.learning_rate": _number(0.0, low_open=True),
        "train.warmup_steps": _integer(0), "train.schedule": _one_of("cosine", "constant"),
        "train.final_lr_ratio": _number(0.0, 1.0, high_open=False), "train.weight_decay": _number(0.0),
        "train.clip_norm": _number(0.0), "train.log_every": _integer(1), "train.eval_every": _integer(0),
        "train.eval_every_epochs": _integer(1), "train.patience": _integer(0),
        "train.keep_checkpoints": _integer(1), "train.async_checkpoints": _boolean,
        "train.num_devices": _integer(0), "train.model_parallel": _integer(1),
        "train.item_rows_multiple": _integer(1), "train.logical_axis_rules": _rules,
        "train.groups.*.learning_rate": _number(0.0), "train.groups.*.every": _integer(1),
        "eval.evaluators": _subset_of(*EVALUATORS), "eval.ks": _ks, "eval.metric": _nonempty_text,
        "eval.batch_size": _integer(1), "eval.max_score_block": _integer(0),
        "eval.mode": _one_of("full", "sampled"), "eval.num_negatives": _integer(1),
        "eval.negative_sampling": _one_of("uniform", "popularity"),
        # Model keys, by name, for every model that uses them.
        "model.name": _nonempty_text, "model.hidden": _integer(1), "model.state": _integer(1),
        "model.num_blocks": _integer(0), "model.num_heads": _integer(1), "model.num_layers": _integer(1),
        "model.mlp_ratio": _integer(1), "model.max_interval": _integer(1),
        "model.dropout": _number(0.0, 1.0), "model.attention_dropout": _number(0.0, 1.0),
        "model.mask_probability": _number(0.0, 1.0, low_open=True), "model.loss": _one_of("ce", "bce"),
        "model.dtype": _one_of("float32", "bfloat16", "float16"),
        "model.reg_weight": _number(0.0),
        "model.relation": _one_of("none", "given", "co_interaction", "region", "proximity"),
        "model.relation_file": _text,
        "model.relation_window_s": _integer(1), "model.relation_radius_km": _number(0.0, low_open=True),
        "model.cell": _one_of("lstm", "gru"), "model.num_neighbours": _integer(0), "model.neighbour_items": _integer(1),
        "model.social_copy": _boolean, "model.use_geo": _boolean, "model.distance_term": _boolean,
        "model.cell_resolution": _integer(0), "model.latlon_features": _integer(4),
        "model.fusion": _one_of("concat", "gate", "attention"), "model.time_features": _integer(1),
        "model.history": _integer(1), "model.learn_time": _boolean, "model.parts": _nonempty_text,
        "model.ae_weight": _number(0.0), "model.two_hop": _boolean, "model.two_hop_positions": _integer(1),
        "model.two_hop_items": _integer(1), "model.item_residual": _boolean,
    }


def _lookup(rules: dict, key: str) -> Check | None:
    if key in rules:
        return rules[key]
    parts = key.split(".")
    for index in range(len(parts)):
        wildcard = ".".join(parts[:index] + ["*"] + parts[index + 1:])
        if wildcard in rules:
            return rules[wildcard]
    return None


def _flatten(config, prefix: str = ""):
    for key in config.keys():
        value = config[key]
        if isinstance(value, ml_collections.ConfigDict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _fail(key: str, value, allowed: str) -> ConfigError:
    return ConfigError(f"config key '{key}': found {value!r}; expected {allowed}")


def validate(config, num_devices: int | None = None) -> None:
    """Types and domains of every key, and the relations between keys. Raises ConfigError."""
    from stjax.eval.metrics import METRICS

    rules = schema()
    for key, value in _flatten(config):
        check = _lookup(rules, key)
        allowed = check(value) if check is not None else None
        if allowed:
            raise _fail(key, value, allowed)
    model, train, data, evaluation = config.model, config.train, config.data, config.eval
    if "hidden" in model and "num_heads" in model and model.hidden % model.num_heads:
        raise _fail("model.num_heads", model.num_heads, f"a divisor of model.hidden ({model.hidden})")
    if data.split != "leave_one_out" and data.valid_fraction + data.test_fraction >= 1.0:
        raise _fail("data.valid_fraction", data.valid_fraction,
                    f"valid_fraction + test_fraction < 1 (test_fraction is {data.test_fraction})")
    name, _, k = str(evaluation.metric).partition("@")
    names = METRICS
    base = name.rpartition("/")[2]
    if base not in names or not k.isdigit() or int(k) not in tuple(evaluation.ks):
        raise _fail("eval.metric", evaluation.metric,
                    f"NAME@K with NAME in {', '.join(names)} and K in eval.ks {tuple(evaluation.ks)}")
    if num_devices is not None:
        used = train.num_devices or num_devices
        if train.num_devices > num_devices:
            raise _fail("train.num_devices", train.num_devices, f"at most the {num_devices} available devices")
        if used % train.model_parallel:
            raise _fail("train.model_parallel", train.model_parallel, f"a divisor of the {used} devices used")
        data_parallel = used // train.model_parallel
        if train.batch_size % data_parallel:
            raise _fail("train.batch_size", train.batch_size,
                        f"a multiple of the {data_parallel} data-parallel devices")


def check_against_data(config, num_items: int) -> None:
    """Checks that need the catalogue: every K in 1..number of items."""
    for k in config.eval.ks:
        if k > num_items:
            raise _fail("eval.ks", tuple(config.eval.ks), f"cut-offs in 1..{num_items} (the number of items)")


def variant(config, arg: str | None, variants: dict[str, Callable] | None = None):
    """An experiment's `get_config(arg)`: the full config, or a named variant (`tiny` by default).
    An unknown variant name is an error listing the known ones."""
    from stjax.config import tiny

    variants = {"tiny": tiny} if variants is None else variants
    if not arg:
        return config
    if arg not in variants:
        raise ConfigError(f"unknown config variant ':{arg}'; known variants: {', '.join(sorted(variants))}")
    return variants[arg](config)
