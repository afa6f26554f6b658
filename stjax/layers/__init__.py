"""stjax.layers: pure Flax Linen modules and functions for user-behaviour models.

Imports only jax, flax, jraph and numpy. Parameters carry logical axis names (`vocab`,
`embed`, `heads`, `kv`, `mlp`, `hidden`, `length`) that a rules table maps onto a mesh.
"""

from stjax.layers.attention import (
    FeedForward,
    MultiHeadSelfAttention,
    PositionEmbedding,
    TimeIntervalAttention,
    TimeIntervalBlock,
    TransformerBlock,
    attention_mask,
    masked_softmax,
    sinusoidal_positions,
    time_interval_matrix,
)
from stjax.layers.encodings import (
    CalendarEmbedding,
    DistanceBucketEmbedding,
    FunctionalTimeEncoding,
    GeoCellEmbedding,
    Time2Vec,
    distance_buckets,
    haversine,
    hour_and_weekday,
    sinusoidal_latlon,
)
from stjax.layers.generative import (
    MLP,
    Discriminator,
    Generator,
    VAEDecoder,
    VAEEncoder,
    beta_schedule,
    gan_losses,
    gaussian_kl,
    gradient_penalty,
    multinomial_log_likelihood,
    reparameterize,
)
from stjax.layers.graph import (
    GAT,
    GATv2,
    GraphSAGE,
    TemporalGraphAttention,
    add_self_loops,
    lightgcn_propagate,
    lightgcn_propagate_bipartite,
    segment_softmax,
)
from stjax.layers.recurrent import RNN, RecurrentLayer

__all__ = [
    "FeedForward", "MultiHeadSelfAttention", "PositionEmbedding", "TimeIntervalAttention", "TimeIntervalBlock",
    "TransformerBlock", "attention_mask", "masked_softmax", "sinusoidal_positions", "time_interval_matrix",
    "CalendarEmbedding", "DistanceBucketEmbedding", "FunctionalTimeEncoding", "GeoCellEmbedding", "Time2Vec",
    "distance_buckets", "haversine", "hour_and_weekday", "sinusoidal_latlon", "MLP", "Discriminator", "Generator",
    "VAEDecoder", "VAEEncoder", "beta_schedule", "gan_losses", "gaussian_kl", "gradient_penalty",
    "multinomial_log_likelihood", "reparameterize", "GAT", "GATv2", "GraphSAGE", "TemporalGraphAttention",
    "add_self_loops", "lightgcn_propagate", "lightgcn_propagate_bipartite", "segment_softmax", "RNN", "RecurrentLayer",
]
