"""popularity on Foursquare NYC check-ins (TSMC 2014 as published with STAN; next venue, leave-one-out
by time, full ranking over all 5,135 venues; Acc@K = HR@K).

    stjax data fetch foursquare-nyc --mirror ../shared/data     # or from GitHub when reachable
    stjax train --config experiments/popularity_foursquare.py --workdir runs/popularity_foursquare
    stjax train --config experiments/popularity_foursquare.py:tiny --workdir /tmp/popularity-tiny   # the test-sized variant

Result: the README's Foursquare NYC table (`scripts/foursquare_table.sh` runs every row).
"""

from stjax.config import base_config, foursquare_protocol, variant


def get_config(arg=None):
    config = foursquare_protocol(base_config("popularity", source="foursquare-nyc"))
    config.train.learning_rate = 5e-2
    config.train.num_epochs = 10
    config.train.eval_every_epochs = 5
    return variant(config, arg)
