"""lstm_gat on Foursquare NYC check-ins (TSMC 2014 as published with STAN; next venue, leave-one-out
by time, full ranking over all 5,135 venues; Acc@K = HR@K).

    stjax data fetch foursquare-nyc --mirror ../shared/data     # or from GitHub when reachable
    stjax train --config experiments/lstm_gat_foursquare.py --workdir runs/lstm_gat_foursquare
    stjax train --config experiments/lstm_gat_foursquare.py:tiny --workdir /tmp/lstm_gat-tiny   # the test-sized variant

Result: the README's Foursquare NYC table (`scripts/foursquare_table.sh` runs every row).
"""

from stjax.config import base_config, foursquare_protocol, variant


def get_config(arg=None):
    config = foursquare_protocol(base_config("lstm_gat", source="foursquare-nyc"))
    # Relation: users who checked in at the same venue within a day (training check-ins only).
    config.model.relation = "co_interaction"
    config.model.relation_window_s = 86_400
    config.model.cell_resolution = 8  # H3 cells of ~0.7 km2 over New York
    return variant(config, arg)
