"""Config validation in one place: every bad value is refused before any data loads, with one line
naming the key, the value and what is allowed (exit 2 from the CLI)."""

from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from stjax.cli import main
from stjax.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = str(ROOT / "experiments" / "sasrec_synthetic.py")

BAD = [
    ("train.batch_size=0", "config key 'train.batch_size': found 0; expected an integer >= 1"),
    ("train.batch_size=-1", "config key 'train.batch_size': found -1; expected an integer >= 1"),
    ("data.max_length=0", "config key 'data.max_length': found 0; expected an integer >= 1"),
    ("eval.ks=a,b", "config key 'eval.ks': found ('a', 'b'); expected a non-empty list of integers >= 1, e.g. 5,10,20"),
    ("eval.ks=0,10", "config key 'eval.ks': found (0, 10); expected a non-empty list of integers >= 1, e.g. 5,10,20"),
    ("eval.ks=-5,10", "config key 'eval.ks': found (-5, 10); expected a non-empty list of integers >= 1, e.g. 5,10,20"),
    ("train.num_epochs=0", "config key 'train.num_epochs': found 0; expected an integer >= 1"),
    ("train.optimizer=sgdx", "config key 'train.optimizer': found 'sgdx'; expected one of adam, adamw"),
    ("data.split=bogus", "config key 'data.split': found 'bogus'; expected one of leave_one_out, temporal, "
                         "held_out_users, series"),
    ("data.window=bogus", "config key 'data.window': found 'bogus'; expected one of last, all"),
    ("eval.mode=bogus", "config key 'eval.mode': found 'bogus'; expected one of full, sampled"),
    ("eval.negative_sampling=x", "config key 'eval.negative_sampling': found 'x'; expected one of uniform, "
                                 "popularity"),
    ("train.schedule=linear", "config key 'train.schedule': found 'linear'; expected one of cosine, constant"),
    ("model.num_heads=3", "config key 'model.num_heads': found 3; expected a divisor of model.hidden (16)"),
    ("train.learning_rate=-1", "config key 'train.learning_rate': found -1.0; expected a number in (0.0, inf)"),
    ("train.learning_rate=0", "config key 'train.learning_rate': found 0.0; expected a number in (0.0, inf)"),
    ("train.num_devices=3", "config key 'train.num_devices': found 3; expected at most the 1 available devices"),
    ("model.dropout=1.5", "config key 'model.dropout': found 1.5; expected a number in [0.0, 1.0)"),
    ("eval.metric=ndcg@7", "config key 'eval.metric': found 'ndcg@7'; expected NAME@K with NAME in hr, ndcg, "
                           "mrr, recall, capped_recall, precision, f1 and K in eval.ks (5, 10, 20)"),
    ("eval.evaluators=ranking,oops", "config key 'eval.evaluators': found ('ranking', 'oops'); expected a "
                                     "non-empty list of distinct names from ranking, fold_in, forecast, next_event"),
    ("train.groups.model.every=0", "config key 'train.groups.model.every': found 0; expected an integer >= 1"),
    ("data.valid_fraction=0.5", None),  # fine for leave-one-out (the fractions are unused)
]


@pytest.mark.parametrize("override,message", BAD)
def test_bad_values_are_refused_in_one_line(override, message):
    if message is None:
        load_config(EXPERIMENT + ":tiny", [f"--config.{override}"])
        return
    with pytest.raises(ConfigError) as raised:
        load_config(EXPERIMENT + ":tiny", [f"--config.{override}"])
    assert str(raised.value) == message


def test_relations_between_keys():
    with pytest.raises(ConfigError, match="config key 'data.valid_fraction': found 0.5; expected "
                                          r"valid_fraction \+ test_fraction < 1 \(test_fraction is 0.5\)"):
        load_config(EXPERIMENT + ":tiny", ["--config.data.split=temporal", "--config.data.valid_fraction=0.5",
                                           "--config.data.test_fraction=0.5"])


def test_unknown_variant_and_failing_get_config(tmp_path):
    with pytest.raises(ConfigError, match=r"^unknown config variant ':bogus'; known variants: tiny$"):
        load_config(EXPERIMENT + ":bogus")
    broken = tmp_path / "broken.py"
    broken.write_text("def get_config(arg=None):\n    raise RuntimeError('no such dataset')\n")
    with pytest.raises(ConfigError, match=r"broken.py: get_config\(''\) failed \(RuntimeError: no such dataset\)"):
        load_config(str(broken))


def test_k_above_the_catalogue_is_refused_after_loading(tmp_path):
    from stjax.train.loop import build_run

    config = load_config(EXPERIMENT + ":tiny", ["--config.eval.ks=10,100000", "--config.eval.metric=ndcg@10"])
    with pytest.raises(ConfigError, match=r"config key 'eval.ks': found \(10, 100000\); expected cut-offs in 1..50"):
        build_run(config, log=lambda m: None)


def test_cli_prints_one_line_and_exits_2():
    result = CliRunner().invoke(main, ["train", "--config", EXPERIMENT + ":tiny", "--config.train.batch_size=0"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: config key 'train.batch_size': found 0; expected an integer >= 1"


def _keys():
    config = load_config(EXPERIMENT + ":tiny")

    def walk(node, prefix):
        for key in node.keys():
            value = node[key]
            if hasattr(value, "keys"):
                yield from walk(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}"

    return sorted(walk(config, ""))


@settings(max_examples=120, deadline=None)
@given(key=st.sampled_from(_keys()),
       value=st.one_of(st.integers(-10**12, 10**12).map(str), st.floats(allow_nan=True).map(str),
                       st.sampled_from(["", "true", "none", "a,b", "0,0", "[1, 2]", "(", "ranking", "@"]),
                       st.text(max_size=12).filter(lambda t: "\x00" not in t)))
def test_random_single_key_corruptions_never_raise_anything_but_config_errors(key, value):
    try:
        load_config(EXPERIMENT + ":tiny", [f"--config.{key}={value}"])
    except ConfigError as err:
        assert "\n" not in str(err)
