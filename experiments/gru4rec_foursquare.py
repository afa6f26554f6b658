"""gru4rec on Foursquare NYC check-ins (TSMC 2014 as published with STAN; next venue, leave-one-out
by time, full ranking over all 5,135 venues; Acc@K = HR@K).

    stjax data fetch foursquare-nyc --mirror ../shared/data     # or from GitHub when reachable
    stjax train --config experiments/gru4rec_foursquare.py --workdir runs/gru4rec_foursquare
    stjax train --config experiments/gru4rec_foursquare.py:tiny --workdir /tmp/gru4rec-tiny   # the test-sized variant

Result: the README's Foursquare NYC table (`scripts/foursquare_table.sh` runs every row).
"""

from stjax.config import base_config, foursquare_protocol, variant


def get_config(arg=None):
    config = foursquare_protocol(base_config("gru4rec", source="foursquare-nyc"))
    return variant(config, arg)
