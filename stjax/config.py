"""Experiment configs as code: `experiments/<name>.py` defines `get_config(arg=None)`.

`load_config("experiments/x.py:tiny", ["--config.model.hidden=128"])` imports the module,
calls `get_config("tiny")` and applies overrides. An unknown key, a value of the wrong type
or a malformed override raises `ConfigError` with one line that says what is valid.
"""

from __future__ import annotations

import ast
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path

import ml_collections

from stjax.data.pipeline import data_defaults  # noqa: F401  (re-exported: the data section's defaults)
from stjax.validation import ConfigError, validate  # noqa: F401  (re-exported)


def load_config(spec: str, overrides: list[str] | tuple = ()) -> ml_collections.ConfigDict:
    path, _, arg = spec.partition(":")
    file = Path(path)
    if not file.exists():
        raise ConfigError(f"config file {path} does not exist")
    module_spec = importlib.util.spec_from_file_location(f"stjax_experiment_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as err:  # the file is user code: report, do not crash
        raise ConfigError(f"{path}: cannot import the config ({err.__class__.__name__}: {err})") from None
    if not hasattr(module, "get_config"):
        raise ConfigError(f"{path}: defines no get_config()")
    try:
        config = module.get_config(arg) if arg else module.get_config()
    except ConfigError:
        raise
    except Exception as err:  # user code
        raise ConfigError(f"{path}: get_config({arg!r}) failed ({err.__class__.__name__}: {err})") from None
    config = ml_collections.ConfigDict(config.to_dict() if hasattr(config, "to_dict") else config)
    apply_overrides(config, overrides)
    check_complete(config, path)
    validate(config, num_devices=_device_count())
    config.lock()
    return config


def _device_count() -> int:
    import jax

    return jax.device_count()


def check_complete(config: ml_collections.ConfigDict, source: str = "the config") -> None:
    """Every key a run reads must be present, and no key may be unknown."""
    from stjax.models.base import REGISTRY, get

    name = config.get("model", {}).get("name") if isinstance(config.get("model"), ml_collections.ConfigDict) else None
    if name is None:
        raise ConfigError(f"{source}: missing config key 'model.name'")
    try:
        get(name)
    except KeyError:
        raise ConfigError(f"{source}: unknown model '{name}'; registered: {', '.join(sorted(REGISTRY))}") from None
    reference = base_config(name)

    def walk(expected, actual, prefix):
        for key in expected.keys():
            if key not in actual:
                raise ConfigError(f"{source}: missing config key '{prefix}{key}'")
            if isinstance(expected[key], ml_collections.ConfigDict):
                walk(expected[key], actual[key], f"{prefix}{key}.")
        for key in actual.keys():
            if key not in expected:
                raise ConfigError(f"{source}: unknown config key '{prefix}{key}'; valid keys"
                                  f"{' in ' + prefix[:-1] if prefix else ''}: {', '.join(sorted(expected.keys()))}")

    walk(reference, config, "")


def _parse_override(text: str) -> tuple[str, str]:
    if not text.startswith("--config."):
        raise ConfigError(f"unexpected argument {text!r}; overrides look like --config.KEY=VALUE")
    body = text[len("--config."):]
    if "=" not in body:
        raise ConfigError(f"override {text!r} has no value; write --config.KEY=VALUE")
    key, value = body.split("=", 1)
    return key, value


def _convert(key: str, text: str, current):
    if isinstance(current, bool):
        lowered = text.lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ConfigError(f"config key '{key}' expects a boolean (true/false), got {text!r}")
    if isinstance(current, int):
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"config key '{key}' expects an integer, got {text!r}") from None
    if isinstance(current, float):
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"config key '{key}' expects a number, got {text!r}") from None
    if isinstance(current, (tuple, list)):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = tuple(v.strip() for v in text.split(",") if v.strip())
        if not isinstance(value, (tuple, list)):
            value = (value,)
        return type(current)(value)
    if current is None:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
    return text


def apply_overrides(config: ml_collections.ConfigDict, overrides) -> None:
    for text in overrides:
        key, value = _parse_override(text)
        node = config
        parts = key.split(".")
        for depth, part in enumerate(parts):
            valid = sorted(node.keys())
            if part not in node:
                where = ".".join(parts[:depth]) or "the config"
                raise ConfigError(f"unknown config key '{key}': '{part}' is not in {where}; valid keys: "
                                  f"{', '.join(valid)}")
            if depth < len(parts) - 1:
                node = node[part]
                if not isinstance(node, ml_collections.ConfigDict):
                    raise ConfigError(f"config key '{'.'.join(parts[:depth + 1])}' is a value, not a group")
        current = node[parts[-1]]
        if isinstance(current, ml_collections.ConfigDict):
            raise ConfigError(f"config key '{key}' is a group; set one of its keys: {', '.join(sorted(current.keys()))}")
        with node.unlocked() if hasattr(node, "unlocked") else _null():
            node[parts[-1]] = _convert(key, value, current)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def to_json(config: ml_collections.ConfigDict) -> str:
    return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=list)


def from_json(text: str) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(json.loads(text))


def saved_config(saved: dict) -> ml_collections.ConfigDict:
    """A run folder's config.json, completed with the defaults of keys added to stjax since the run
    was trained (an option added later defaults to the behaviour before it), so that old run
    folders still evaluate, recommend and resume. Keys of the saved config win."""
    if not isinstance(saved, dict):  # left to the checks that name what is wrong
        return ml_collections.ConfigDict(saved)
    try:
        defaults = json.loads(to_json(base_config(saved.get("model", {}).get("name", ""),
                                                  saved.get("data", {}).get("source", "synthetic"))))
    except (KeyError, ValueError):  # an unknown model: left to the checks that name it
        return ml_collections.ConfigDict(saved)

    def merge(base, over):
        if isinstance(base, dict) and isinstance(over, dict):
            return {key: merge(base[key], over[key]) if key in base and key in over else over.get(key, base.get(key))
                    for key in base.keys() | over.keys()}
        return over

    return ml_collections.ConfigDict(merge(defaults, saved))


def base_config(model: str, source: str = "synthetic") -> ml_collections.ConfigDict:
    """Every field a run reads, with its default (the only place defaults live); experiments
    change what they need. The model's fields come from its `default_config()`, and
    `train.groups` has one entry per parameter group of the model."""
    from stjax.models import get

    spec = get(model)
    config = ml_collections.ConfigDict()
    config.seed = 42
    config.data = data_defaults()
    config.data.source = source
    config.model = spec.default_config()
    config.train = ml_collections.ConfigDict(dict(
        batch_size=256, num_epochs=200, num_steps=0, optimizer="adam", learning_rate=1e-3, warmup_steps=100,
        schedule="cosine", final_lr_ratio=0.1, weight_decay=0.0, clip_norm=5.0, log_every=50, eval_every=0,
        eval_every_epochs=10, patience=5, keep_checkpoints=2, async_checkpoints=True,
        # Mesh: num_devices (0 = all) split into data x model_parallel; the logical axis names of
        # the layers map to mesh axes by these rules (unlisted names are replicated).
        num_devices=0, model_parallel=1,
        # Item tables get a multiple of lcm(model_parallel, item_rows_multiple) rows, so that a
        # checkpoint restores on any mesh whose model axis divides that number.
        item_rows_multiple=1,
        # Each global batch is built in this many blocks, each with its own seed (0: one per
        # process); its draws (negatives) depend on blocks, not on the processes that build them.
        batch_blocks=0,
        logical_axis_rules=(("batch", "data"), ("vocab", "model"))))
    # One optimizer per parameter group: learning_rate 0 = train.learning_rate, optimizer and
    # schedule "" = train's; every = k applies the group's update on one step in k (k
    # discriminator steps per generator step: every=k on the generator; skipped steps cost nothing);
    # pattern, a cycle such as "1110", updates on the steps marked 1 instead (alternating groups).
    config.train.groups = ml_collections.ConfigDict(
        {group: ml_collections.ConfigDict(dict(learning_rate=0.0, optimizer="", schedule="", every=1, pattern=""))
         for group in spec.groups})
    config.eval = ml_collections.ConfigDict(dict(
        # ranking: the split's validation/test users (full or sampled mode); fold_in: held-out users.
        # exclude_history: full ranking masks the user's history items other than the targets
        # (RecBole's protocol); false ranks every item (next-POI protocols, where revisits count).
        evaluators=("ranking",), ks=(5, 10, 20), metric="ndcg@10", batch_size=256, max_score_block=4_000_000,
        mode="full", num_negatives=100, negative_sampling="uniform", exclude_history=True))
    if spec.engine_defaults is not None:
        spec.engine_defaults(config)
    return config


def mult_vae_protocol(config: ml_collections.ConfigDict, held_out: int) -> ml_collections.ConfigDict:
    """The held-out-users protocol of Mult-VAE (Liang et al., WWW 2018), shared by the generative
    experiments and EASE: ratings >= 4 are positives, users with >= 5 positives, `held_out`
    validation and as many test users (ML-1M: 600, ml-100k: 50), 80% of each held-out user's items
    folded in and the rest targets, NDCG@100 and Recall@20/50 normalised by min(K, targets)
    (`capped_recall`), model selection on validation NDCG@100."""
    config.data.min_value = 4.0
    config.data.min_length = 5
    config.data.split = "held_out_users"
    config.data.valid_users = config.data.test_users = held_out
    config.data.fold_in_fraction = 0.8
    config.eval.evaluators = ("fold_in",)
    config.eval.ks = (20, 50, 100)
    config.eval.metric = "ndcg@100"
    return config


def mult_vae_training(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The paper's training of the autoencoders (Mult-VAE, Mult-DAE): Adam at 1e-3 without
    warm-up or decay, batches of 500 users, up to 200 epochs; validation every 5 epochs with
    patience 5 picks the checkpoint."""
    config.train.batch_size = 500
    config.train.num_epochs = 200
    config.train.learning_rate = 1e-3
    config.train.schedule = "constant"
    config.train.warmup_steps = 0
    config.train.eval_every_epochs = 5
    config.train.patience = 5
    return config


def recvae_training(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """RecVAE's training (Shenbin et al., WSDM 2020) over `mult_vae_training`: Adam at 5e-4 without
    clipping, alternating updates step by step (encoder "1110"; decoder "0001"; the prior, a copy
    of the encoder, "0001" by SGD at learning rate 1: see `stjax/models/recvae.py`)."""
    config = mult_vae_training(config)
    config.train.learning_rate = 5e-4
    config.train.clip_norm = 0.0
    groups = config.train.groups
    groups.encoder.pattern = "1110"
    groups.decoder.pattern = "0001"
    groups.prior.pattern = "0001"
    groups.prior.optimizer = "sgd"
    groups.prior.learning_rate = 1.0
    groups.prior.schedule = "constant"
    return config


def tiny_held_out(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """`tiny` for a held-out-users experiment: 10 + 10 held-out synthetic users, K up to 20."""
    config = tiny(config)
    config.data.min_value = 0.0  # the synthetic events carry no ratings
    config.data.valid_users = config.data.test_users = 10
    config.eval.ks = (5, 10, 20)
    config.eval.metric = "ndcg@20"
    return config


def bag_leave_one_out(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A bag model of a held-out-users experiment under leave-one-out instead: every user trains on
    all but their last two events (every rating, as the sequence models' experiments) and is ranked
    on the last (test) and the second to last (validation) over all items."""
    config.data.split = "leave_one_out"
    config.data.min_value = 0.0
    config.data.min_length = 0
    config.data.valid_users = config.data.test_users = 0
    config.eval.evaluators = ("ranking",)
    config.eval.ks = (5, 10, 20)
    config.eval.metric = "ndcg@10"
    return config


def cfgan_variants() -> dict[str, Callable]:
    """The named variants of the CFGAN experiments: `tiny`, `loo` (bag_leave_one_out), `tiny_loo`."""
    def tiny_cfgan(config):
        config = tiny_held_out(config)
        config.model.generator_hidden = config.model.discriminator_hidden = 16
        config.train.groups.generator.learning_rate = config.train.groups.discriminator.learning_rate = 0.0
        return config

    return {"tiny": tiny_cfgan, "loo": bag_leave_one_out, "tiny_loo": lambda c: tiny_cfgan(bag_leave_one_out(c))}


def foursquare_protocol(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The protocol of the README's Foursquare NYC table, shared by its experiments: windows of
    50 check-ins, every check-in a target once (`window=all`; users average 137 check-ins),
    batch 128, up to 20 epochs at learning rate 1e-3, validation every 2 epochs with patience 3,
    Acc@1/5/10/20 (= HR@K). An experiment changes what its model needs after this call."""
    config.data.max_length = 50
    config.data.window = "all"
    config.train.batch_size = 128
    config.train.num_epochs = 20
    config.train.learning_rate = 1e-3
    config.train.eval_every_epochs = 2
    config.train.patience = 3
    config.eval.ks = (1, 5, 10, 20)
    return config


def variant(config, arg: str | None, variants: dict[str, Callable] | None = None):
    """An experiment's `get_config(arg)`: the full config, or a named variant (`tiny` by default).
    An unknown variant name is an error listing the known ones."""
    variants = {"tiny": tiny} if variants is None else variants
    if not arg:
        return config
    if arg not in variants:
        raise ConfigError(f"unknown config variant ':{arg}'; known variants: {', '.join(sorted(variants))}")
    return variants[arg](config)


def tiny(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The test-sized variant of an experiment: synthetic data, small model, a few steps."""
    config.data.source = "synthetic"
    config.data.synthetic_users = 64
    config.data.synthetic_items = 50
    config.data.synthetic_events = 3000
    config.data.max_length = 28 if config.data.split == "series" else 12  # forecasters read 4 weeks of lags
    for key, value in dict(hidden=16, state=16, num_blocks=1, num_heads=2, max_interval=16).items():
        if key in config.model:
            config.model[key] = value
    config.train.batch_size = 16
    config.train.num_epochs = 4
    config.train.eval_every = 0
    config.train.eval_every_epochs = 2
    config.train.log_every = 2
    config.train.warmup_steps = 2
    config.train.learning_rate = 5e-3
    config.train.patience = 0
    config.eval.batch_size = 32
    return config
