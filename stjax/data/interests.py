"""Interest labels of events: what a distribution of interest is over (MovieLens genres, item
categories, visited H3 areas or regions), shared by the drift, forecasting and profile analyses
and by the forecasting panels of `stjax.data.series`."""

from __future__ import annotations

import numpy as np

# Item genre fields and their separators: GroupLens' movies.dat ('|'), RecBole's atomic files
# (token_seq, space-separated: ml-1m's `genre`, ml-100k's `class`).
GENRE_FIELDS = {"genres": "|", "genre": None, "class": None}


class InterestError(ValueError):
    """Labels these data do not have (a user error)."""


def interest_labels(log, interest: str, area_resolution: int = 8) -> tuple[np.ndarray, np.ndarray, list[str], str]:
    """(event rows, label codes, label names, the interest used) — one pair per (event, label);
    `auto` takes genres, else item categories, else visited areas (H3 cells of `area_resolution`)
    when events have coordinates, else the event's region."""
    items = log.items or {}
    genres = next((key for key in GENRE_FIELDS if key in items), None)
    located = bool(np.isfinite(np.asarray(log.latitude, float)).any())
    if interest == "auto":
        interest = "genre" if genres else "category" if "category" in items else "area" if located else "region"
    if interest == "area":
        if not located:
            raise InterestError("--interest area: these events have no coordinates")
        from stjax.data.geo import h3_cells

        cells = h3_cells(log.latitude, log.longitude, area_resolution)
        rows = np.flatnonzero(cells != "")
        names, codes = np.unique(cells[rows].astype(str), return_inverse=True)
        return rows, codes.astype(np.int64), [str(name) for name in names], interest
    if interest == "genre":
        if genres is None:
            raise InterestError("--interest genre: these data have no item genres (MovieLens has them)")
        separator = GENRE_FIELDS[genres]
        per_item = [[g for g in str(value).split(separator) if g] if value else [] for value in items[genres]]
    elif interest == "category":
        if "category" not in items:
            raise InterestError("--interest category: these data have no item categories")
        per_item = [[str(value)] if value else [] for value in items["category"]]
    elif interest == "region":
        names = np.asarray(log.region_vocab.tokens, dtype=object)
        rows = np.flatnonzero(log.region > 0)
        return rows, np.asarray(log.region[rows], np.int64) - 1, [str(name) for name in names[1:]], interest
    else:
        raise InterestError(f"--interest {interest}: expected auto, genre, category, area or region")
    names = sorted({label for labels in per_item for label in labels})
    code = {name: index for index, name in enumerate(names)}
    item_rows, item_codes = [], []
    for item, labels in enumerate(per_item):
        for label in labels:
            item_rows.append(item)
            item_codes.append(code[label])
    item_rows, item_codes = np.asarray(item_rows, np.int64), np.asarray(item_codes, np.int64)
    # Events x their item's labels: sort pairs by item, then expand each event by its item's labels.
    order = np.argsort(item_rows, kind="stable")
    item_rows, item_codes = item_rows[order], item_codes[order]
    first = np.searchsorted(item_rows, np.arange(len(per_item)))
    count = np.bincount(item_rows, minlength=len(per_item))
    event_items = np.asarray(log.item, np.int64)
    repeats = count[event_items]
    rows = np.repeat(np.arange(len(event_items)), repeats)
    offsets = np.arange(len(rows)) - np.repeat(np.cumsum(repeats) - repeats, repeats)
    codes = item_codes[first[event_items[rows]] + offsets]
    if len(names) < 2:
        raise InterestError(f"--interest {interest}: the data have {len(names)} label(s); drift needs two or more")
    return rows, codes, names, interest
