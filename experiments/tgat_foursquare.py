"""tgat on Foursquare NYC check-ins (TSMC 2014 as published with STAN; next venue, leave-one-out
by time, full ranking over all 5,135 venues; Acc@K = HR@K).

    stjax data fetch foursquare-nyc --mirror ../shared/data     # or from GitHub when reachable
    stjax train --config experiments/tgat_foursquare.py --workdir runs/tgat_foursquare
    stjax train --config experiments/tgat_foursquare.py:tiny --workdir /tmp/tgat-tiny   # the test-sized variant

Result: the README's Foursquare NYC table (`scripts/foursquare_table.sh` runs every row).
"""

from stjax.config import base_config, variant


def get_config(arg=None):
    config = base_config("tgat", source="foursquare-nyc")
    config.data.max_length = 50
    config.data.window = "all"  # every check-in is a target once (users average 137 check-ins)
    config.train.batch_size = 128
    config.train.num_epochs = 20
    config.train.learning_rate = 1e-3
    config.train.eval_every_epochs = 2
    config.train.patience = 3
    config.eval.ks = (1, 5, 10, 20)

    return variant(config, arg)
