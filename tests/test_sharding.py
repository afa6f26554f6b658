"""Sharding on 8 host devices, in a process of its own (tests/sharding_check.py): the sharded step
equals the one-device step for SASRec, a two-group model and LightGCN (its dense user-item
propagation, the item table split by rows), the item table's rows are spread over
the `model` axis, evaluation agrees, and a checkpoint written on a (4, 2) mesh restores on one
device and on (2, 4) with identical parameters."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def report():
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=8")
    finished = subprocess.run([sys.executable, str(ROOT / "tests" / "sharding_check.py")], capture_output=True,
                              text=True, env=env, cwd=ROOT, timeout=500)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return json.loads(finished.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("model", ["sasrec", "adversarial_mf", "lightgcn"])  # lightgcn: dense propagation
def test_sharded_step_equals_one_device(report, model):
    assert report["devices"] == 8
    result = report[model]
    assert result["mesh"] == {"data": 4, "model": 2}
    assert result["compiles"] == 1
    for one, sharded in zip(result["losses_one"], result["losses_sharded"]):
        assert abs(one - sharded) <= 1e-5 * max(1.0, abs(one)), result
    assert result["max_grad_diff"] < 1e-6, result
    assert result["max_param_diff"] < 5e-5, result  # 1% of one Adam step (lr 5e-3) after 3 steps
    assert result["zero_gradient_leaves"] <= (2 if model == "sasrec" else 0)  # SASRec: the blocks' key biases


def test_item_table_rows_are_spread_over_the_model_axis(report):
    result = report["sasrec"]
    rows = result["table_shape"][0]
    assert rows % 8 == 0
    assert result["table_spec"] == "P('model', None)"
    assert result["table_shards"] == [[0, rows // 2], [rows // 2, rows]]
    assert result["eval_diff"] < 1e-6


def test_checkpoint_restores_on_other_meshes(report):
    restored = report["sasrec"]["checkpoint"]
    assert restored["one_device"]["identical"] and restored["one_device"]["devices"] == 1
    assert restored["mesh_2x4"]["identical"] and restored["mesh_2x4"]["devices"] == 8
    assert restored["mesh_2x4"]["mesh"] == {"data": 2, "model": 4}
    assert restored["mesh_2x4"]["spec"] == "P('model', None)"
    assert restored["one_device"]["record"] == {"note": "sharded"}
