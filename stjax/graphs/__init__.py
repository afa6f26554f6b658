"""Graphs built from interaction logs, temporal neighbour sampling and padding to size buckets.

Every graph comes from the TRAINING events of a `stjax.data.Split` only, so propagation can
never see a validation or test interaction. Builders return NumPy arrays (edge lists as
senders, receivers, weights); the layers in `stjax.layers.graph` consume them as
`jraph.GraphsTuple`s, padded with `pad_to_bucket` so that jit compiles once per bucket.
User-item graphs use one joint node numbering: user u is node u, item i is node U + 1 + i
(`item_node`), and nodes 0 and U + 1 are padding.
"""

from stjax.graphs.build import (
    InteractionGraph,
    interaction_graph,
    item_node,
    item_transition_graph,
    mean_locations,
    normalized_adjacency,
    place_graph,
    symmetric_edges,
    training_rows,
    user_relation_graph,
)
from stjax.graphs.padding import geometric_buckets, graphs_tuple, pad_to_bucket
from stjax.graphs.sampling import (
    TemporalAdjacency,
    TemporalNeighbours,
    sample_neighbours,
    temporal_adjacency,
    temporal_csr,
)

__all__ = [
    "InteractionGraph", "interaction_graph", "item_node", "item_transition_graph", "mean_locations",
    "normalized_adjacency", "place_graph", "symmetric_edges", "training_rows", "user_relation_graph",
    "geometric_buckets", "graphs_tuple", "pad_to_bucket", "TemporalAdjacency", "TemporalNeighbours",
    "sample_neighbours", "temporal_adjacency", "temporal_csr",
]
