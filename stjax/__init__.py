"""stjax: spatio-temporal user-behaviour modelling for recommender systems, in JAX."""

__version__ = "0.1.0"
