"""Each graph model beside itself with a part ablated, on the synthetic default data.

    python scripts/graph_ablations.py                        # every row, writes bench_results/graph_ablations.json
    python scripts/graph_ablations.py --rows lstm_gat lstm_gat-no-geo --influence 0.3 --influencer-region any

The generator plants an influence graph (each user copies the latest item of one of 4
influencers with probability --influence), regional tastes and item locations; the relation
rows read that planted graph as a given trust list (tgat finds its neighbours in the temporal
graph instead). Every row trains the same way (hidden 32, length 30, all windows, Adam 3e-3,
batch 128, 12 epochs; fusion 48 epochs: after 12 its LightGCN view alone is far from LightGCN's
own result, 0.076 against 0.28 NDCG@10; LightGCN: 60 epochs, batch 1024) and
reports test / validation NDCG@10 under leave-one-out full ranking.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from stjax.config import base_config
from stjax.data.synthetic import SyntheticConfig, generate
from stjax.train.loop import train_and_evaluate

ROWS = {
    "lstm_gat": ("lstm_gat", {"relation": "given"}),
    "lstm_gat-no-relation": ("lstm_gat", {"relation": "none"}),
    "lstm_gat-no-geo": ("lstm_gat", {"relation": "given", "use_geo": False}),
    "tgat": ("tgat", {}),
    "tgat-no-graph": ("tgat", {"num_neighbours": 0}),
    "tgat-item-residual": ("tgat", {"item_residual": True}),
    "fusion": ("fusion", {}),
    "fusion-no-gnn": ("fusion", {"parts": "ae,rnn"}),
    "fusion-no-ae": ("fusion", {"parts": "rnn,gnn"}),
    "fusion-gat": ("fusion", {"gnn": "gat"}),
    "lightgcn": ("lightgcn", {}),
    "lightgcn-social": ("lightgcn", {"relation": "given"}),
    "lightgcn-no-graph": ("lightgcn", {"num_layers": 0}),
}


def planted_trust_file(users: int, items: int, events: int, influence: float, region: str, path: Path) -> Path:
    """The generator's influence graph as a `user user` edge list of the log's user ids."""
    log, truth = generate(0, SyntheticConfig(num_users=users, num_items=items, num_events=events,
                                             influence_probability=influence, influencer_region=region))
    tokens = log.user_vocab.tokens
    path.write_text("".join(f"{tokens[s]}\t{tokens[r]}\n" for s, r in zip(truth.influence_senders,
                                                                           truth.influence_receivers)))
    return path


def row_config(row: str, users: int, items: int, events: int, influence: float, region: str, trust: Path,
               epochs: int | None = None, learning_rate: float = 3e-3):
    name, model = ROWS[row]
    epochs = epochs or (48 if name == "fusion" else 12)
    config = base_config(name)
    with config.unlocked():
        data = config.data
        data.synthetic_users, data.synthetic_items, data.synthetic_events = users, items, events
        data.synthetic_influence, data.synthetic_influencer_region = influence, region
        data.max_length, data.window = 30, "all"
        for key, value in model.items():
            config.model[key] = value
        if model.get("relation") == "given":
            config.model.relation_file = str(trust)
        if "hidden" in config.model:
            config.model.hidden = 32
        train = config.train
        if name == "lightgcn":
            train.batch_size, train.num_epochs, train.eval_every_epochs = 1024, 5 * epochs, 10
        else:
            train.batch_size, train.num_epochs, train.eval_every_epochs = 128, epochs, 3
        train.patience, train.warmup_steps, train.learning_rate, train.log_every = 0, 0, learning_rate, 1000
    return config


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--influence", type=float, default=0.1)
    parser.add_argument("--influencer-region", default="same", choices=["same", "any"])
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs of every row (default 12, fusion 48; LightGCN runs 5x as many)")
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--out", default="bench_results/graph_ablations.json")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp())
    trust = planted_trust_file(args.users, args.items, args.events, args.influence, args.influencer_region,
                               folder / "trust.tsv")
    results = {"settings": vars(args) | {"rows": args.rows}, "rows": {}}
    for row in args.rows:
        config = row_config(row, args.users, args.items, args.events, args.influence, args.influencer_region, trust,
                            args.epochs, args.learning_rate)
        start = time.perf_counter()
        result = train_and_evaluate(config, folder / row, log=lambda m: None, progress=False)
        results["rows"][row] = {"test_ndcg@10": result["test"]["ndcg@10"], "valid_ndcg@10": result["valid"]["ndcg@10"],
                                "test_hr@10": result["test"]["hr@10"], "seconds": round(time.perf_counter() - start, 1)}
        print(row, json.dumps(results["rows"][row]), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
