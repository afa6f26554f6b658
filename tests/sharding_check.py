"""Run in its own process with 8 host devices (tests/test_sharding.py starts it): sharded training,
evaluation and checkpoints on meshes of several shapes against one device. Prints one JSON line."""

import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from stjax.compiles import CompileCounter  # noqa: E402
from stjax.config import base_config, tiny  # noqa: E402
from stjax.runs.checkpoints import Checkpoints  # noqa: E402
from stjax.train.loop import build_model, build_run, make_evaluators  # noqa: E402
from stjax.train.state import make_train_step  # noqa: E402


def config_for(name, num_devices, model_parallel):
    if name == "adversarial_mf":
        import tests.test_engine_v2  # noqa: F401  (registers the two-group model)
    config = tiny(base_config(name))
    config.train.batch_size = 16
    config.train.num_devices = num_devices
    config.train.model_parallel = model_parallel
    config.train.item_rows_multiple = 8  # the same table shape on every mesh
    config.train.warmup_steps = 0
    return config


def leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.device_get(tree))]


def train_steps(run, steps=3):
    compiles = CompileCounter()
    step = make_train_step(run.spec, run.module, run.tx, run.config.model, 0, run.shardings)
    state, losses = run.state, []
    for index in range(steps):
        state, metrics = step(state, jax.device_put(run.iterator.batch(0, index), run.shardings.batch), run.context)
        losses.append(float(metrics["loss"]))
    return state, losses, compiles.count(step)


def gradients(run):
    """Gradients of the summed group losses at the initial state, on the run's mesh."""
    batch = jax.device_put(run.iterator.batch(0, 0), run.shardings.batch)

    def total(params):
        losses, _ = run.spec.losses(run.module, {"params": params}, batch, rng=jax.random.key(7), step=0,
                                    context=run.context, config=run.config.model)
        return sum(losses.values())

    return leaves(jax.jit(jax.grad(total))(run.state.params))


def compare(name):
    one = build_run(config_for(name, 1, 1), log=lambda m: None)
    sharded = build_run(config_for(name, 8, 2), log=lambda m: None)
    one_grads, sharded_grads = gradients(one), gradients(sharded)
    one_state, one_losses, _ = train_steps(one)
    sharded_state, sharded_losses, compiles = train_steps(sharded)
    # Adam turns float noise in a gradient that is zero in exact arithmetic (attention key biases:
    # softmax ignores a shift shared by all keys) into +-lr steps: those leaves are compared by
    # their gradients only.
    noise = [float(np.abs(g).max()) < 1e-6 for g in one_grads]
    params_diff = max(float(np.max(np.abs(a - b))) for a, b, skip in zip(leaves(one_state.params),
                                                                         leaves(sharded_state.params), noise)
                      if not skip)
    out = {"losses_one": one_losses, "losses_sharded": sharded_losses, "max_param_diff": params_diff,
           "max_grad_diff": max(float(np.max(np.abs(a - b))) for a, b in zip(one_grads, sharded_grads)),
           "zero_gradient_leaves": sum(noise), "compiles": compiles, "mesh": dict(sharded.mesh.shape)}
    if name == "sasrec":
        table = sharded_state.params["item_embedding"]["embedding"]
        out["table_shape"] = list(table.shape)
        out["table_shards"] = sorted({(shard.index[0].start, shard.index[0].stop)
                                      for shard in table.addressable_shards})
        out["table_spec"] = str(table.sharding.spec)
        valid_one = make_evaluators(one).evaluate(one_state.params, "valid", one.context)
        valid_sharded = make_evaluators(sharded).evaluate(sharded_state.params, "valid", sharded.context)
        out["eval_diff"] = max(abs(valid_one[k] - valid_sharded[k]) for k in valid_one)
        out["checkpoint"] = checkpoint_round_trip(sharded, sharded_state)
    return out


def checkpoint_round_trip(run, state):
    """Saved on the (4, 2) mesh; restored on 1 device and on a (2, 4) mesh."""
    with tempfile.TemporaryDirectory() as folder:
        checkpoints = Checkpoints(Path(folder), async_save=False)
        checkpoints.save(3, state, {"note": "sharded"}, 0.5)
        checkpoints.wait()
        saved = leaves(state.params)
        result = {}
        for label, (devices, model_parallel) in {"one_device": (1, 1), "mesh_2x4": (8, 4)}.items():
            config = config_for("sasrec", devices, model_parallel)
            model = build_model(config, run.info)
            restored, record = checkpoints.restore_latest(model.abstract_state())
            table = restored.params["item_embedding"]["embedding"]
            result[label] = {
                "identical": all(np.array_equal(a, b) for a, b in zip(saved, leaves(restored.params))),
                "record": record, "devices": len(table.sharding.device_set), "spec": str(table.sharding.spec),
                "mesh": dict(model.mesh.shape)}
        checkpoints.close()
        return result


if __name__ == "__main__":
    print(json.dumps({"devices": jax.device_count(), "sasrec": compare("sasrec"),
                      "adversarial_mf": compare("adversarial_mf"), "lightgcn": compare("lightgcn")}))
