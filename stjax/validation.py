"""Config validation in one place: every key has a type and a domain, checked before any data loads.

`validate(config)` raises `ConfigError` with one line naming the key, the value found and what is
allowed. This module checks the engine's keys (data, train, eval); the model's own keys are checked
by its `ModelSpec.config_checks` (`check_model`; the shared names such as `hidden`, `num_heads`,
`dropout` in `stjax.models.base.SHARED`). Checks that need the data (K at most the catalogue size) are
in `check_against_data`.
"""

from __future__ import annotations

import ml_collections

from stjax.models.base import BadKey, Check, boolean, integer, nonempty_text, number, one_of, text


class ConfigError(Exception):
    """A bad config file, key, value or override (a user error)."""


def _pattern(value):
    if not isinstance(value, str) or (value and (set(value) - {"0", "1"} or "1" not in value)):
        return "a cycle of 0 and 1 with at least one 1 (e.g. '1110'), or '' for every step"
    return None


def _any_integer(value):
    return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"


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
        "seed": integer(0),
        "data.source": nonempty_text, "data.data_dir": text, "data.format": one_of("", *FORMATS),
        "data.columns": text, "data.dedup": boolean, "data.user_k": integer(0), "data.item_k": integer(0),
        "data.min_length": integer(0), "data.split": one_of("leave_one_out", "temporal", "held_out_users", "series"),
        "data.valid_fraction": number(0.0, 1.0), "data.test_fraction": number(0.0, 1.0, low_open=True),
        "data.seed": integer(0), "data.max_length": integer(1), "data.window": one_of("last", "all"),
        "data.max_bag": integer(0), "data.num_negatives": integer(1), "data.max_targets": integer(0),
        "data.fold_in_fraction": number(0.0, 1.0, low_open=True), "data.low_memory": boolean,
        "data.min_value": number(0.0), "data.valid_users": integer(0), "data.test_users": integer(0),
        "data.synthetic_users": integer(2), "data.synthetic_items": integer(2),
        "data.synthetic_events": integer(1), "data.synthetic_influence": number(0.0, 1.0, high_open=False),
        "data.synthetic_influencer_region": one_of("same", "any"),
        "data.series_cutoff": _any_integer, "data.series_horizon": integer(1), "data.series_min_events": integer(1), "eval.exclude_history": boolean,
        "train.batch_size": integer(1), "train.num_epochs": integer(1), "train.num_steps": integer(0),
        "train.optimizer": one_of("adam", "adamw"), "train.learning_rate": number(0.0, low_open=True),
        "train.warmup_steps": integer(0), "train.schedule": one_of("cosine", "constant"),
        "train.final_lr_ratio": number(0.0, 1.0, high_open=False), "train.weight_decay": number(0.0),
        "train.clip_norm": number(0.0), "train.log_every": integer(1), "train.eval_every": integer(0),
        "train.eval_every_epochs": integer(1), "train.patience": integer(0),
        "train.keep_checkpoints": integer(1), "train.async_checkpoints": boolean,
        "train.num_devices": integer(0), "train.model_parallel": integer(1),
        "train.item_rows_multiple": integer(1), "train.logical_axis_rules": _rules,
        "train.groups.*.learning_rate": number(0.0), "train.groups.*.every": integer(1),
        "train.groups.*.optimizer": one_of("", "adam", "adamw", "sgd"),
        "train.groups.*.schedule": one_of("", "cosine", "constant"), "train.groups.*.pattern": _pattern,
        "eval.evaluators": _subset_of(*EVALUATORS.keys()), "eval.ks": _ks, "eval.metric": nonempty_text,
        "eval.batch_size": integer(1), "eval.max_score_block": integer(0),
        "eval.mode": one_of("full", "sampled"), "eval.num_negatives": integer(1),
        "eval.negative_sampling": one_of("uniform", "popularity"),
        # The model's own keys are checked by its ModelSpec.config_checks (see check_model).
        "model.name": nonempty_text,
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
    from stjax.eval.evaluator import metric_problem

    rules = schema()
    for key, value in _flatten(config):
        check = _lookup(rules, key)
        allowed = check(value) if check is not None else None
        if allowed:
            raise _fail(key, value, allowed)
    check_model(config)
    train, data, evaluation = config.train, config.data, config.eval
    if data.split != "leave_one_out" and data.valid_fraction + data.test_fraction >= 1.0:
        raise _fail("data.valid_fraction", data.valid_fraction,
                    f"valid_fraction + test_fraction < 1 (test_fraction is {data.test_fraction})")
    problem = metric_problem(evaluation)  # any metric one of the configured evaluators reports
    if problem:
        raise _fail("eval.metric", evaluation.metric, problem)
    if num_devices is not None:
        used = train.num_devices or num_devices
        if train.num_devices > num_devices:
            raise _fail("train.num_devices", train.num_devices, f"at most the {num_devices} available devices")
        if used % train.model_parallel:
            raise _fail("train.model_parallel", train.model_parallel, f"a divisor of the {used} devices used")
        check_batch_size(config, used // train.model_parallel)


def check_batch_size(config, data_parallel: int) -> None:
    """The global batch splits evenly over the data-parallel devices."""
    if config.train.batch_size % data_parallel:
        raise _fail("train.batch_size", config.train.batch_size,
                    f"a multiple of the {data_parallel} data-parallel devices")


def check_model(config) -> None:
    """The model's own keys, by its `ModelSpec.config_checks`: before any data loads (`validate`)
    and before the module is built (`build_model`), one check in one place."""
    from stjax.models import get

    try:
        spec = get(config.model.name)
    except KeyError as err:
        raise ConfigError(str(err.args[0])) from None
    try:
        spec.config_checks(config.model)
    except BadKey as err:
        raise ConfigError(str(err)) from None
    except ValueError as err:  # a setting the model cannot build (an unknown fusion, parts, ...)
        raise ConfigError(f"model config: {err}") from None


def check_against_data(config, num_items: int) -> None:
    """Checks that need the catalogue: every K in 1..number of items."""
    for k in config.eval.ks:
        if k > num_items:
            raise _fail("eval.ks", tuple(config.eval.ks), f"cut-offs in 1..{num_items} (the number of items)")
