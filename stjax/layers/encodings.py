"""Temporal and spatial encodings: Time2Vec, TGAT time encoding, calendar, distances, geo cells.

All take plain arrays (seconds, degrees) and are pure; shapes are in each docstring.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Dtype = Any
Array = jax.Array
EARTH_RADIUS_KM = 6371.0088


def _p(init, names):
    return nn.with_logical_partitioning(init, names)


class Time2Vec(nn.Module):
    """Time2Vec (Kazemi et al., 2019): [ω_0 τ + φ_0, sin(ω_i τ + φ_i) for i = 1..k-1].

    __call__(times float[...]) -> float[..., features]
    """

    features: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, times: Array) -> Array:
        omega = self.param("frequency", _p(nn.initializers.normal(1.0), ("embed",)), (self.features,), self.param_dtype)
        phi = self.param("phase", _p(nn.initializers.zeros, ("embed",)), (self.features,), self.param_dtype)
        z = times[..., None].astype(self.dtype) * omega.astype(self.dtype) + phi.astype(self.dtype)
        return jnp.concatenate([z[..., :1], jnp.sin(z[..., 1:])], axis=-1)


class FunctionalTimeEncoding(nn.Module):
    """TGAT's functional time encoding (Xu et al., ICLR 2020): cos(ω Δt + b).

    ω starts at 1 / 10^linspace(0, 9, d) so that the encoding spans seconds to decades.
    __call__(intervals float[...]) -> float[..., features]
    """

    features: int
    learnable: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, intervals: Array) -> Array:
        base = (1.0 / 10 ** np.linspace(0, 9, self.features)).astype(np.float32)
        if self.learnable:
            omega = self.param("frequency", lambda *_: jnp.asarray(base, self.param_dtype))
            bias = self.param("phase", nn.initializers.zeros, (self.features,), self.param_dtype)
        else:
            omega, bias = jnp.asarray(base), jnp.zeros(self.features)
        return jnp.cos(intervals[..., None].astype(self.dtype) * omega.astype(self.dtype) + bias.astype(self.dtype))


def hour_and_weekday(timestamps: Array, utc_offset_minutes: Array | int = 0) -> tuple[Array, Array]:
    """Hour of day (0..23) and day of week (0 = Monday .. 6) of int seconds since the epoch."""
    local = timestamps.astype(jnp.int64 if jax.config.jax_enable_x64 else jnp.int32) + utc_offset_minutes * 60
    days = jnp.floor_divide(local, 86_400)
    hour = jnp.floor_divide(jnp.mod(local, 86_400), 3600)
    weekday = jnp.mod(days + 3, 7)  # 1970-01-01 was a Thursday
    return hour.astype(jnp.int32), weekday.astype(jnp.int32)


class CalendarEmbedding(nn.Module):
    """Sum of hour-of-day and day-of-week embeddings. __call__(timestamps int[...]) -> float[..., features].

    Pass absolute seconds since the epoch (add the data set's `time_origin` to relative times).
    """

    features: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, timestamps: Array, utc_offset_minutes: Array | int = 0) -> Array:
        hour, weekday = hour_and_weekday(timestamps, utc_offset_minutes)
        embed = lambda n, name: nn.Embed(n, self.features, dtype=self.dtype, param_dtype=self.param_dtype,  # noqa: E731
                                         embedding_init=_p(nn.initializers.normal(0.02), (None, "embed")), name=name)
        return embed(24, "hour")(hour) + embed(7, "weekday")(weekday)


def haversine(lat1: Array, lon1: Array, lat2: Array, lon2: Array) -> Array:
    """Great-circle distance in km between points in degrees (broadcasting)."""
    lat1, lon1, lat2, lon2 = (jnp.radians(v) for v in (lat1, lon1, lat2, lon2))
    a = jnp.sin((lat2 - lat1) / 2) ** 2 + jnp.cos(lat1) * jnp.cos(lat2) * jnp.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_KM * jnp.arcsin(jnp.sqrt(jnp.clip(a, 0.0, 1.0)))


def distance_buckets(distance_km: Array, edges_km: tuple = (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)) -> Array:
    """Bucket index int32[...] in 0..len(edges): bucket b holds edges[b-1] <= d < edges[b]."""
    return jnp.searchsorted(jnp.asarray(edges_km, jnp.float32), distance_km.astype(jnp.float32), side="right").astype(jnp.int32)


class DistanceBucketEmbedding(nn.Module):
    """Embedding of the log-spaced bucket of a distance in km. __call__(float[...]) -> float[..., features]"""

    features: int
    edges_km: tuple = (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, distance_km: Array) -> Array:
        return nn.Embed(len(self.edges_km) + 1, self.features, dtype=self.dtype, param_dtype=self.param_dtype,
                        embedding_init=_p(nn.initializers.normal(0.02), (None, "embed")))(
            distance_buckets(distance_km, self.edges_km))


class GeoCellEmbedding(nn.Module):
    """Embedding of geo-cell (or region) codes; 0 is padding/unknown and maps to zeros.

    __call__(cells int32[...]) -> float[..., features]; the table is sharded by rows ('vocab').
    """

    num_cells: int
    features: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, cells: Array) -> Array:
        out = nn.Embed(self.num_cells + 1, self.features, dtype=self.dtype, param_dtype=self.param_dtype,
                       embedding_init=_p(nn.initializers.normal(0.02), ("vocab", "embed")))(cells)
        return out * (cells > 0)[..., None].astype(out.dtype)


def sinusoidal_latlon(latitude: Array, longitude: Array, features: int, min_scale_deg: float = 0.01,
                      max_scale_deg: float = 360.0) -> Array:
    """Multi-scale sin/cos of latitude and longitude: float[..., features] (features % 4 == 0).

    Wavelengths are geometric between min_scale_deg and max_scale_deg, so nearby points get
    similar codes at coarse scales and distinct ones at fine scales.
    """
    if features % 4:
        raise ValueError(f"features must be a multiple of 4, got {features}")
    scales = np.geomspace(min_scale_deg, max_scale_deg, features // 4).astype(np.float32)
    angles = []
    for value in (latitude, longitude):
        phase = 2 * np.pi * value[..., None].astype(jnp.float32) / scales
        angles += [jnp.sin(phase), jnp.cos(phase)]
    return jnp.concatenate(angles, axis=-1)
