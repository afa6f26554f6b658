"""RecBole 1.2.1's MultiVAE, RecVAE and EASE, run by RecBole's own Python, for scripts/bench_generative.py.

    PY scripts/recbole_generative.py serve DATA_PATH DATASET MODEL [THREADS] [SIZES]   # MODEL: MultiVAE, RecVAE, EASE

The one thing to know: the data is stjax's, not RecBole's ml-1m loading. bench_generative.py writes
the training users of stjax's held-out-users split of ML-1M (ratings >= 4, users with >= 5
positives, 600 + 600 users held out; 4,834 users, 461,580 (user, item) pairs) as RecBole atomic
files with `write_atomic`: DATASET.train.inter holds exactly those pairs (stjax's user and item
indices as tokens), read through `benchmark_filename`, which also makes RecBole skip its own
filtering. DATASET.valid.inter and DATASET.test.inter are placeholders of a training user (see
`write_atomic`): RecBole wants the files and nothing here evaluates, but held-out users in them
would add empty rows to every RecBole epoch (its `UserDataLoader` walks all users).

Otherwise the models are built as `run_recbole` builds them (`Config`, `init_seed`,
`create_dataset`, `data_preparation`, `get_model`, `get_trainer`) with RecBole's defaults:
overall.yaml's Adam at 1e-3 and `train_batch_size` 2048 (users per batch for these models),
MultiVAE.yaml, RecVAE.yaml (600-200, 3 encoder passes and 1 decoder pass per epoch) and
EASE.yaml (`reg_weight` 250). One exception, SIZES=paper (the default): MultiVAE's
`latent_dimension` is 400, which RecBole halves into mean and log-variance, so that its encoder
is I-600-200 like stjax's and the paper's; RecBole's own default (128) makes it 600-64, and
SIZES=recbole keeps that.

`train_epoch` times `trainer._train_epoch`, the function RecBole's `Trainer.fit` calls for each
epoch (its "train time"); for EASE, whose fit is the closed form computed when the model is
built (then one `TraditionalTrainer` epoch of dummy losses), it times both. PyTorch's autograd
anomaly detection is switched off and checked as in scripts/recbole_sasrec.py (no RecBole module
imported here turns it on; the check stays). No checkpoint is reloaded, so recbole_sasrec.py's
TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD is not needed. Importing this module needs no torch: the tests
run `write_atomic`, `read_inter` and `serve_commands` without it.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

from recbole_sasrec import anomaly_detection_off, time_steps  # scripts/: on the path

MODELS = ("MultiVAE", "RecVAE", "EASE")
HEADER = "user_id:token\titem_id:token\n"


def write_atomic(folder: str | Path, dataset: str, users, bag, num_items: int) -> dict:
    """RecBole atomic files of stjax's training bags in folder/dataset/: dataset.train.inter, one
    row per (user, item) of users int[U] and bag int[U, L] (0 = padding), in bag order, and the
    placeholders dataset.valid.inter and dataset.test.inter: users[0]'s first item, and in valid
    also users[0] with each of the items 1..num_items no training bag holds (items only held-out
    users have), so that RecBole's item vocabulary, and so its models' output layers, has stjax's
    num_items. -> {"train", "valid", "test": paths, "pairs": training rows, "unseen_items": count}."""
    root = Path(folder) / dataset
    root.mkdir(parents=True, exist_ok=True)
    rows = [f"{user}\t{item}\n" for user, items in zip(users, bag) for item in items if item > 0]
    seen = {int(item) for items in bag for item in items if item > 0}
    unseen = [item for item in range(1, num_items + 1) if item not in seen]
    paths = {part: root / f"{dataset}.{part}.inter" for part in ("train", "valid", "test")}
    paths["train"].write_text(HEADER + "".join(rows))
    paths["valid"].write_text(HEADER + rows[0] + "".join(f"{users[0]}\t{item}\n" for item in unseen))
    paths["test"].write_text(HEADER + rows[0])
    return {**{part: str(path) for part, path in paths.items()}, "pairs": len(rows), "unseen_items": len(unseen)}


def read_inter(path: str | Path) -> list[tuple[str, str]]:
    """The (user, item) token pairs of an atomic .inter file written by `write_atomic`."""
    lines = Path(path).read_text().splitlines()
    if not lines or lines[0] + "\n" != HEADER:
        raise ValueError(f"{path}:1: expected the header {HEADER.strip()!r}, found {lines[:1]}")
    return [tuple(line.split("\t")) for line in lines[1:]]


def config_dict(data_path: str, model: str, sizes: str = "paper") -> dict:
    """RecBole's defaults for `model` on the files of `write_atomic`, plus what a benchmark needs
    (CPU, no progress bars, no checkpoints) and, for SIZES=paper, MultiVAE at 600-200."""
    if sizes not in ("paper", "recbole"):
        raise ValueError(f"sizes: 'paper' or 'recbole', found {sizes!r}")
    config = {"data_path": data_path, "benchmark_filename": ["train", "valid", "test"],
              "load_col": {"inter": ["user_id", "item_id"]}, "device": "cpu", "use_gpu": False,
              "show_progress": False, "checkpoint_dir": "/tmp/recbole_generative_ckpt", "epochs": 1}
    if model == "MultiVAE" and sizes == "paper":
        config["latent_dimension"] = 400  # RecBole splits it: 200 means, 200 log-variances
    return config


def serve_commands(lines, commands: dict, torch, write) -> int:
    """Answers one JSON line (through `write`) per command line until `quit` or the end: a known
    command `NAME ARGS...` calls commands[NAME](*ARGS) and answers its dict plus whether anomaly
    detection is on; anything else is answered {"error": ...}. -> commands answered."""
    answered = 0
    for line in lines:
        words = line.split()
        if not words or words[0] == "quit":
            break
        if words[0] not in commands:
            write({"error": f"unknown command {words[0]!r}; expected one of {', '.join([*commands, 'quit'])}"})
            continue
        write({**commands[words[0]](*words[1:]), "anomaly_detection": bool(torch.is_anomaly_enabled())})
        answered += 1
    return answered


def timed(torch, work) -> float:
    """Seconds of one call `work()`, refused (AssertionError) while anomaly detection is on."""
    (seconds,) = time_steps(torch, lambda _: work(), itertools.count(), warmup=0, repeats=1, steps=1)
    return seconds


def _load(data_path: str, dataset: str, model_name: str, sizes: str):
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    was_on = anomaly_detection_off(torch)
    config = Config(model=model_name, dataset=dataset, config_dict=config_dict(data_path, model_name, sizes))
    init_seed(config["seed"], config["reproducibility"])
    data = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, data)
    model_class, trainer_class = get_model(model_name), get_trainer(config["MODEL_TYPE"], model_name)

    def build():
        model = model_class(config, train_data.dataset).to(config["device"])
        return model, trainer_class(config, model)

    anomaly_detection_off(torch)  # in case RecBole's init code imported more of itself
    dataset_in = train_data.dataset
    info = {"torch": torch.__version__, "threads": torch.get_num_threads(), "anomaly_detection_was_on": was_on,
            "anomaly_detection": bool(torch.is_anomaly_enabled()), "model": model_name, "sizes": sizes,
            "train_batch_size": config["train_batch_size"], "batches_per_pass": len(train_data),
            "learning_rate": config["learning_rate"], "users": dataset_in.user_num - 1,
            "items": dataset_in.item_num - 1, "training_pairs": len(dataset_in.inter_feat),
            "passes_per_epoch": (config["n_enc_epochs"] + config["n_dec_epochs"]) if model_name == "RecVAE" else 1,
            "settings": {key: config[key] for key in ("mlp_hidden_size", "latent_dimension", "hidden_dimension",
                                                      "dropout_prob", "anneal_cap", "total_anneal_steps", "beta",
                                                      "gamma", "n_enc_epochs", "n_dec_epochs", "reg_weight",
                                                      "train_neg_sample_args", "seed")
                         if config[key] is not None}}
    return torch, build, train_data, info


def serve(data_path: str, dataset: str, model_name: str, threads: str = "0", sizes: str = "paper") -> None:
    if model_name not in MODELS:
        raise SystemExit(f"model: one of {', '.join(MODELS)}, found {model_name!r}")
    torch, build, train_data, info = _load(data_path, dataset, model_name, sizes)
    if int(threads):
        from threadpoolctl import threadpool_limits  # a dependency of RecBole's scikit-learn

        torch.set_num_threads(int(threads))
        threadpool_limits(int(threads))  # NumPy's BLAS too: EASE's inverse
        info["threads"] = torch.get_num_threads()
    model, trainer = build()
    info["parameters"] = sum(p.numel() for p in model.parameters())
    epochs = itertools.count()

    def train_epoch() -> dict:
        if model_name != "EASE":
            return {"epoch_s": timed(torch, lambda: trainer._train_epoch(train_data, next(epochs)))}
        built = {}  # EASE: the closed form runs in the constructor; then RecBole's one epoch of dummy losses
        fit_s = timed(torch, lambda: built.update(zip(("model", "trainer"), build())))
        loop_s = timed(torch, lambda: built["trainer"]._train_epoch(train_data, next(epochs)))
        return {"epoch_s": fit_s + loop_s, "fit_s": fit_s, "loop_s": loop_s}

    def write(answer: dict) -> None:
        print(json.dumps(answer), flush=True)

    write({"ready": True, **info})
    serve_commands(sys.stdin, {"train_epoch": train_epoch}, torch, write)


if __name__ == "__main__":
    mode, *rest = sys.argv[1:]
    {"serve": serve}[mode](*rest)
