"""Geography: postal codes to coordinates and regions, coordinates to H3 cells.

US ZIP codes resolve offline through the `zipcodes` package (its bundled gazetteer);
codes it does not know (foreign, retired, malformed) are counted, never guessed.
Cells come from Uber's H3 at a configurable resolution.
"""

from __future__ import annotations

import dataclasses
import functools

import h3
import numpy as np


@dataclasses.dataclass(frozen=True)
class PostalLookup:
    """Coordinates and state of each postal code; NaN / '' where unmatched.

    latitude, longitude: float64[codes]; state: object[codes]; matched: bool[codes]
    """

    latitude: np.ndarray
    longitude: np.ndarray
    state: np.ndarray
    matched: np.ndarray

    @property
    def num_unmatched(self) -> int:
        return int((~self.matched).sum())


@functools.cache
def _zip_table() -> dict[str, tuple[float, float, str]]:
    import zipcodes

    table = {}
    for entry in zipcodes.list_all():
        try:
            table[entry["zip_code"]] = (float(entry["lat"]), float(entry["long"]), entry["state"])
        except (TypeError, ValueError):
            continue
    return table


def lookup_postal_codes(codes) -> PostalLookup:
    """US ZIP (5 digits, ZIP+4 accepted) -> latitude, longitude, state."""
    table = _zip_table()
    codes = [str(c).strip() for c in codes]
    lat = np.full(len(codes), np.nan)
    lon = np.full(len(codes), np.nan)
    state = np.full(len(codes), "", dtype=object)
    for index, code in enumerate(codes):
        key = code.split("-")[0]
        hit = table.get(key) if len(key) == 5 and key.isdigit() else None
        if hit is not None:
            lat[index], lon[index], state[index] = hit
    return PostalLookup(lat, lon, state, np.isfinite(lat))


def h3_cells(latitude: np.ndarray, longitude: np.ndarray, resolution: int) -> np.ndarray:
    """H3 cell id strings (object[n]); '' where the coordinates are missing.

    Coordinates repeat a lot in check-in logs, so each distinct pair is indexed once.
    """
    latitude = np.asarray(latitude, dtype=np.float64)
    longitude = np.asarray(longitude, dtype=np.float64)
    cells = np.full(len(latitude), "", dtype=object)
    known = np.isfinite(latitude) & np.isfinite(longitude)
    if not known.any():
        return cells
    pairs = np.stack([latitude[known], longitude[known]], axis=1)
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    names = np.asarray([h3.latlng_to_cell(a, b, resolution) for a, b in unique], dtype=object)
    cells[known] = names[inverse.reshape(-1)]
    return cells


def haversine_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Great-circle distance in km (NumPy; the JAX layer lives in stjax.layers)."""
    lat1, lon1, lat2, lon2 = (np.radians(np.asarray(x, dtype=np.float64)) for x in (lat1, lon1, lat2, lon2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0088 * np.arcsin(np.sqrt(np.clip(a, 0, 1)))
