"""Checks of config values, for the engine's keys (`stjax.validation`) and each model's own
(`ModelSpec.config_checks`). A check returns None when the value is fine, else what is allowed.

A model's `config_checks(model_config)` raises `BadKey(key, value, allowed)` for one bad value
(shown as "config key 'model.KEY': found V; expected ALLOWED") or `ValueError` for a setting its
module cannot build (shown as "model config: MESSAGE"). `keys(...)` builds the common part: the
checks of the shared model keys a model's config has, by name.
"""

from __future__ import annotations

from collections.abc import Callable

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
    "mask_probability": number(0.0, 1.0, low_open=True), "loss": one_of("ce", "bce"),
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


def keys(own: dict[str, Check] | None = None, then: Callable | None = None) -> Callable:
    """A model's `config_checks`: the shared keys' checks, its `own` key checks (which win), the
    heads-divide-hidden relation, then `then(config)` for settings only the model knows."""
    rules = SHARED | (own or {})

    def config_checks(config) -> None:
        check_values(config, rules)
        heads_divide_hidden(config)
        if then is not None:
            then(config)

    return config_checks


common = keys()
