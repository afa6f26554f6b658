"""How far users' vectors move between two models, for users with and without events in between.

    python scripts/movement_by_activity.py --before A.parquet --after B.parquet --events PERIOD.parquet

A and B are `stjax export --what users` outputs of two models; PERIOD holds the events between
them (any format stjax reads). The movement is `stjax analyze drift --vectors`' (cosine distance
after orthogonal Procrustes over the shared users, `stjax.analysis.drift.vector_movement`); here it
is split by whether a user has events in PERIOD, with bootstrap 95% intervals: users without new
events show what retraining alone moves (the noise floor), users with them what their behaviour adds.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pyarrow.parquet as pq

from stjax.analysis.drift import vector_movement
from stjax.data.formats import load


def read(path):
    table = pq.read_table(path, columns=["user", "vector"])
    return np.asarray(table["user"].to_pylist(), dtype=object), np.asarray(table["vector"].to_pylist(), np.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", required=True)
    parser.add_argument("--events", required=True)
    parser.add_argument("--bootstrap", type=int, default=500)
    args = parser.parse_args()
    log = load(args.events).log
    active = {str(log.user_vocab.tokens[u]) for u in np.unique(log.user)}
    # Groups as regions: vector_movement reports each group's mean and interval.
    (before_ids, before), (after_ids, after) = read(args.before), read(args.after)
    groups = {str(user): "with events" if str(user) in active else "without events" for user in before_ids}
    step = vector_movement([("before", before_ids, before), ("after", after_ids, after)], groups,
                           bootstrap=args.bootstrap)["steps"][0]
    print(json.dumps({"users": step["users"], "everyone": [step["mean"], step["low"], step["high"]],
                      **{name: [entry["users"], entry["mean"], entry["low"], entry["high"]]
                         for name, entry in step["regions"].items()}}, indent=1))


if __name__ == "__main__":
    main()
