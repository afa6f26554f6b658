"""lightgcn on Foursquare NYC check-ins (TSMC 2014 as published with STAN; next venue, leave-one-out
by time, full ranking over all 5,135 venues; Acc@K = HR@K).

    stjax data fetch foursquare-nyc --mirror ../shared/data     # or from GitHub when reachable
    stjax train --config experiments/lightgcn_foursquare.py --workdir runs/lightgcn_foursquare
    stjax train --config experiments/lightgcn_foursquare.py:tiny --workdir /tmp/lightgcn-tiny   # the test-sized variant

Result: the README's Foursquare NYC table (`scripts/foursquare_table.sh` runs every row).
"""

from stjax.config import base_config, foursquare_protocol, variant


def get_config(arg=None):
    config = foursquare_protocol(base_config("lightgcn", source="foursquare-nyc"))
    config.train.batch_size = 2048
    config.train.num_epochs = 200
    config.train.warmup_steps = 0
    config.train.schedule = "constant"
    config.train.eval_every_epochs = 10
    return variant(config, arg)
