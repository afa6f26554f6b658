"""RecBole 1.2.1's SASRec, run by RecBole's own Python (a separate venv) for the peer benchmarks.

    PY scripts/recbole_sasrec.py serve DATA_DIR DATASET [THREADS]   # timing worker: commands on stdin
    PY scripts/recbole_sasrec.py fit DATA_DIR DATASET [THREADS]     # RecBole's recommended run, early stopping
    PY scripts/recbole_sasrec.py test DATA_DIR DATASET CHECKPOINT   # a saved model of `fit` on the test split

The one thing to know: `import recbole.model.sequential_recommender` imports sine.py, which calls
`torch.autograd.set_detect_anomaly(True)` at import time and so slows every backward pass
(1.4-1.5x for SASRec on a 2-core CPU). RecBole's users who import `SASRec` directly, or run
`run_recbole`, get that too; we switch it off after the imports (`anomaly_detection_off`) and
`time_steps` refuses to time while it is on. Importing this module needs no torch (the tests
check the two functions against a stand-in torch).

A second thing: RecBole 1.2.1 reloads its best checkpoint with `torch.load(file)`, which PyTorch
>= 2.6 refuses (`weights_only=True` became the default, and RecBole's checkpoint holds its config
object), so `fit` ended with an UnpicklingError after training. The checkpoints are RecBole's own,
written by this process, so we set PyTorch's documented switch TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD
before importing torch.

`serve` keeps the dataset and model in memory and answers one line of JSON per command
(`train STEPS`, `eval SPLIT`, `quit`), so the caller can interleave RecBole and stjax repeats.
"""

from __future__ import annotations

import json
import os
import sys
import time


def anomaly_detection_off(torch) -> bool:
    """Switches PyTorch's autograd anomaly detection off and asserts that it is off.

    Returns whether it had been on (True after RecBole's imports)."""
    was_on = bool(torch.is_anomaly_enabled())
    torch.autograd.set_detect_anomaly(False)
    assert not torch.is_anomaly_enabled(), "PyTorch autograd anomaly detection is still on after switching it off"
    return was_on


def time_steps(torch, step, batches, warmup: int, repeats: int, steps: int) -> list[float]:
    """Seconds per step of `repeats` timed runs of `steps` calls `step(next(batches))`, after `warmup`.

    Refuses (AssertionError) while anomaly detection is on: that would time PyTorch's debugging mode."""
    assert not torch.is_anomaly_enabled(), "refusing to time RecBole with PyTorch autograd anomaly detection on"
    for _ in range(warmup):
        step(next(batches))
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step(next(batches))
        seconds.append((time.perf_counter() - start) / steps)
    return seconds


def config_dict(data_path: str, benchmark: bool) -> dict:
    """The protocol shared with stjax (leave-one-out by time, full ranking, NDCG@10 / HR@10 / MRR@10).

    benchmark=True fixes the benchmark's sizes (those of RecBole's SASRec defaults, batch 256 for
    one step); False keeps RecBole's own recommended training settings (SASRec.yaml and
    overall.yaml: batch 2048, lr 1e-3, dropout 0.5, up to 300 epochs, stopping after 10 epochs
    without a better validation NDCG@10)."""
    config = {
        "data_path": data_path, "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
        "metrics": ["Hit", "NDCG", "MRR"], "topk": [10], "valid_metric": "NDCG@10",
        "loss_type": "CE", "train_neg_sample_args": None, "device": "cpu", "use_gpu": False,
        "show_progress": False, "checkpoint_dir": "/tmp/recbole_ckpt", "eval_batch_size": 256,
    }
    if benchmark:
        config |= {"hidden_size": 64, "inner_size": 256, "n_layers": 2, "n_heads": 2, "MAX_ITEM_LIST_LENGTH": 50,
                   "train_batch_size": 256, "epochs": 1}
    return config


def _load(data_dir: str, dataset: str, benchmark: bool):
    os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"  # RecBole's own checkpoints (see the docstring)
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    was_on = anomaly_detection_off(torch)
    config = Config(model="SASRec", dataset=dataset, config_dict=config_dict(data_dir, benchmark))
    init_seed(config["seed"], config["reproducibility"])
    data = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, data)
    model = SASRec(config, train_data.dataset).to(config["device"])
    trainer = Trainer(config, model)
    anomaly_detection_off(torch)  # RecBole's init code may import more of itself
    info = {"torch": torch.__version__, "threads": torch.get_num_threads(), "anomaly_detection_was_on": was_on,
            "anomaly_detection": bool(torch.is_anomaly_enabled()), "batches_per_epoch": len(train_data),
            "train_batch_size": config["train_batch_size"]}
    return torch, config, model, trainer, train_data, valid_data, test_data, info


def _forever(loader):
    while True:
        yield from loader


def serve(data_dir: str, dataset: str, threads: str = "0") -> None:
    torch, config, model, trainer, train_data, valid_data, test_data, info = _load(data_dir, dataset, True)
    if int(threads):
        torch.set_num_threads(int(threads))
        info["threads"] = torch.get_num_threads()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = _forever(train_data)

    def step(interaction):
        optimizer.zero_grad()
        loss = model.calculate_loss(interaction)
        loss.backward()
        optimizer.step()

    print(json.dumps({"ready": True, **info}), flush=True)
    for line in sys.stdin:
        command = line.split()
        if not command or command[0] == "quit":
            break
        if command[0] == "train":
            warmup, steps = int(command[1]), int(command[2])
            model.train()
            (seconds,) = time_steps(torch, step, batches, warmup=warmup, repeats=1, steps=steps)
            print(json.dumps({"step_s": seconds, "anomaly_detection": bool(torch.is_anomaly_enabled())}), flush=True)
        elif command[0] == "eval":
            loader = test_data if command[1] == "test" else valid_data
            assert not torch.is_anomaly_enabled()
            start = time.perf_counter()
            result = trainer.evaluate(loader, load_best_model=False, show_progress=False)
            print(json.dumps({"pass_s": time.perf_counter() - start, "ndcg@10": float(result["ndcg@10"])}),
                  flush=True)


def fit(data_dir: str, dataset: str, threads: str = "0") -> None:
    """RecBole's own run: fit with early stopping on validation NDCG@10, then test the best model.
    Times from before the imports (the caller adds the process start-up it measures itself)."""
    start = time.perf_counter()
    torch, config, model, trainer, train_data, valid_data, test_data, info = _load(data_dir, dataset, False)
    if int(threads):
        torch.set_num_threads(int(threads))
        info["threads"] = torch.get_num_threads()
    setup_s = time.perf_counter() - start
    history = []  # one entry per validation (RecBole validates after every epoch by default)
    validate = trainer._valid_epoch

    def recorded(*args, **kwargs):
        score, result = validate(*args, **kwargs)
        history.append({"s": round(time.perf_counter() - start, 2), "valid_ndcg@10": float(score)})
        print("EPOCH " + json.dumps(history[-1]), flush=True)  # a caller that stops us early keeps these
        return score, result

    trainer._valid_epoch = recorded
    best_valid, best_valid_result = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    fit_s = time.perf_counter() - start
    test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    total_s = time.perf_counter() - start
    best = max(range(len(history)), key=lambda index: history[index]["valid_ndcg@10"])
    settings = {key: config[key] for key in ("train_batch_size", "learning_rate", "epochs", "stopping_step",
                                             "hidden_dropout_prob", "attn_dropout_prob", "hidden_size", "inner_size",
                                             "n_layers", "n_heads", "MAX_ITEM_LIST_LENGTH", "eval_step", "seed")}
    print("RESULT " + json.dumps({
        **info, "settings": settings, "setup_s": setup_s, "fit_s": fit_s, "total_s": total_s,
        "epochs_run": len(history), "best_epoch": best + 1, "best_epoch_s": history[best]["s"],
        "best_valid_ndcg@10": float(best_valid), "valid": {k: float(v) for k, v in best_valid_result.items()},
        "test": {k: float(v) for k, v in test.items()}, "history": history}), flush=True)


def test(data_dir: str, dataset: str, checkpoint: str) -> None:
    """The test split scored by a model `fit` saved (RecBole's best-validation checkpoint), with
    the time of that evaluation alone (loading the checkpoint included)."""
    torch, config, model, trainer, train_data, valid_data, test_data, info = _load(data_dir, dataset, False)
    start = time.perf_counter()
    result = trainer.evaluate(test_data, load_best_model=True, model_file=checkpoint, show_progress=False)
    print("RESULT " + json.dumps({**info, "checkpoint": checkpoint, "test_s": time.perf_counter() - start,
                                  "test": {k: float(v) for k, v in result.items()}}), flush=True)


if __name__ == "__main__":
    mode, data_dir, dataset, *rest = sys.argv[1:]
    {"serve": serve, "fit": fit, "test": test}[mode](data_dir, dataset, *rest)
