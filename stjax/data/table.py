"""The interaction log: a columnar table of events with id vocabularies and side tables.

Original ids stay strings and map two ways to dense int32 indices; index 0 is reserved for
padding, so real users and items are numbered 1..n. Columns are NumPy arrays of equal
length; missing optional values are NaN (floats) or 0 (categorical codes).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

PAD = "<pad>"
DEFAULT_BEHAVIOURS = ("view", "click", "rate", "purchase", "check-in")


@dataclasses.dataclass(frozen=True)
class Vocab:
    """Two-way map between original string ids and dense indices; index 0 is padding.

    tokens: object[n + 1], tokens[0] == '<pad>'
    """

    tokens: np.ndarray

    @classmethod
    def from_tokens(cls, tokens) -> Vocab:
        return cls(np.asarray([PAD, *list(tokens)], dtype=object))

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def size(self) -> int:
        """Number of real tokens (padding excluded)."""
        return len(self.tokens) - 1

    @property
    def index(self) -> dict[str, int]:
        cached = self.__dict__.get("_index")
        if cached is None:
            cached = {t: i for i, t in enumerate(self.tokens)}
            object.__setattr__(self, "_index", cached)
        return cached

    def lookup(self, tokens, missing: int = -1) -> np.ndarray:
        index = self.index
        return np.asarray([index.get(str(t), missing) for t in tokens], dtype=np.int64)

    def decode(self, indices) -> np.ndarray:
        return self.tokens[np.asarray(indices)]


def encode(values: pa.Array | np.ndarray) -> tuple[np.ndarray, Vocab]:
    """Dense codes 1..n in order of first appearance, and the vocabulary."""
    if isinstance(values, np.ndarray):
        values = pa.array(values.astype(str) if values.dtype != object else values, pa.string())
    encoded = pc.dictionary_encode(values)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32)
    codes += 1
    return codes, Vocab.from_tokens(encoded.dictionary.to_pylist())


@dataclasses.dataclass
class InteractionLog:
    """Events (one row each) plus vocabularies and side tables.

    user: int32[events] in 1..num_users
    item: int32[events] in 1..num_items
    timestamp: int64[events], seconds since the epoch, UTC
    behaviour: int8[events] in 1..len(behaviours); codes index `behaviour_vocab`
    value: float32[events], rating or weight; NaN when the source has none
    latitude, longitude: float32[events] (about 1 m resolution); NaN when unknown
    region: int32[events], codes of `region_vocab`; 0 when unknown
    users, items: side tables, column -> array of length vocab size + 1 (row 0 = padding)
    """

    user: np.ndarray
    item: np.ndarray
    timestamp: np.ndarray
    behaviour: np.ndarray
    value: np.ndarray
    latitude: np.ndarray
    longitude: np.ndarray
    region: np.ndarray
    user_vocab: Vocab
    item_vocab: Vocab
    behaviour_vocab: Vocab
    region_vocab: Vocab
    users: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    items: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    name: str = "interactions"

    EVENT_COLUMNS = ("user", "item", "timestamp", "behaviour", "value", "latitude", "longitude", "region")

    def __len__(self) -> int:
        return len(self.user)

    @property
    def num_users(self) -> int:
        return self.user_vocab.size

    @property
    def num_items(self) -> int:
        return self.item_vocab.size

    def select(self, rows) -> InteractionLog:
        """A log with only the given rows (mask or indices); vocabularies are kept."""
        return dataclasses.replace(self, **{c: getattr(self, c)[rows] for c in self.EVENT_COLUMNS})

    def sort_by_user_time(self) -> InteractionLog:
        """Stable sort by (user, timestamp): ties keep their file order."""
        order = np.lexsort((self.timestamp, self.user))
        if len(order) < 2**31:
            order = order.astype(np.int32)
        return self.select(order)

    def compact(self) -> InteractionLog:
        """Renumbers users and items so that only those with events remain (1..n, order kept)."""
        log = self
        for column, vocab_name, table_name in (("user", "user_vocab", "users"), ("item", "item_vocab", "items")):
            codes = getattr(log, column)
            vocab = getattr(log, vocab_name)
            present = np.zeros(len(vocab), dtype=bool)
            present[codes] = True
            present[0] = True
            new_index = (np.cumsum(present) - 1).astype(np.int32)
            side = {k: v[present] for k, v in getattr(log, table_name).items()}
            log = dataclasses.replace(
                log,
                **{column: new_index[codes], vocab_name: Vocab(vocab.tokens[present]), table_name: side},
            )
        return log

    def to_arrow(self) -> pa.Table:
        """Events with original ids, for CSV/Parquet round trips."""
        return pa.table(
            {
                "user": pa.array(self.user_vocab.decode(self.user).tolist(), pa.string()),
                "item": pa.array(self.item_vocab.decode(self.item).tolist(), pa.string()),
                "timestamp": self.timestamp,
                "behaviour": pa.array(self.behaviour_vocab.decode(self.behaviour).tolist(), pa.string()),
                "value": self.value,
                "latitude": self.latitude,
                "longitude": self.longitude,
                "region": pa.array(
                    [None if r == 0 else t for r, t in zip(self.region, self.region_vocab.decode(self.region))],
                    pa.string(),
                ),
            }
        )


def make_log(
    user,
    item,
    timestamp,
    *,
    behaviour=None,
    value=None,
    latitude=None,
    longitude=None,
    region=None,
    default_behaviour: str = "rate",
    users: dict | None = None,
    items: dict | None = None,
    user_vocab: Vocab | None = None,
    item_vocab: Vocab | None = None,
    name: str = "interactions",
) -> InteractionLog:
    """Builds a log from original ids (strings or arrays); encodes ids and categories.

    `users` / `items` side tables map column -> values aligned with `user_vocab`/`item_vocab`
    (row 0 padding) when those vocabularies are given; otherwise they are keyed by original id
    through the special column 'id'.
    """
    n = len(timestamp)
    if user_vocab is None:
        user_codes, user_vocab = encode(_as_arrow(user))
    else:
        user_codes = np.asarray(user, dtype=np.int32)
    if item_vocab is None:
        item_codes, item_vocab = encode(_as_arrow(item))
    else:
        item_codes = np.asarray(item, dtype=np.int32)
    if behaviour is None:
        behaviour_codes = np.ones(n, dtype=np.int8)
        behaviour_vocab = Vocab.from_tokens([default_behaviour])
    else:
        codes, behaviour_vocab = encode(_as_arrow(behaviour))
        behaviour_codes = codes.astype(np.int8)
    if region is None:
        region_codes = np.zeros(n, dtype=np.int32)
        region_vocab = Vocab.from_tokens([])
    else:
        region_codes, region_vocab = encode_optional(_as_arrow(region))

    def floats(values, dtype):
        return np.full(n, np.nan, dtype) if values is None else np.asarray(values, dtype)

    log = InteractionLog(
        user=user_codes,
        item=item_codes,
        timestamp=np.asarray(timestamp, dtype=np.int64),
        behaviour=behaviour_codes,
        value=floats(value, np.float32),
        latitude=floats(latitude, np.float32),
        longitude=floats(longitude, np.float32),
        region=region_codes,
        user_vocab=user_vocab,
        item_vocab=item_vocab,
        behaviour_vocab=behaviour_vocab,
        region_vocab=region_vocab,
        name=name,
    )
    if users:
        log.users = align_side_table(users, log.user_vocab)
    if items:
        log.items = align_side_table(items, log.item_vocab)
    return log


def _as_arrow(values) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    if isinstance(values, pa.Array):
        return values
    values = np.asarray(values)
    if values.dtype.kind in "iu":
        return pc.cast(pa.array(values), pa.string())
    return pa.array(values.astype(str).tolist() if values.dtype != object else values.tolist(), pa.string())


def encode_optional(values: pa.Array) -> tuple[np.ndarray, Vocab]:
    """Codes with 0 for null/empty entries."""
    values = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)
    encoded = pc.dictionary_encode(values)
    indices = encoded.indices
    codes = pc.fill_null(pc.add(indices, 1), 0).to_numpy(zero_copy_only=False).astype(np.int32)
    return codes, Vocab.from_tokens(encoded.dictionary.to_pylist())


def align_side_table(table: dict, vocab: Vocab) -> dict[str, np.ndarray]:
    """Side table keyed by column 'id' (original ids) -> columns aligned with `vocab`.

    Ids absent from the side table get NaN / '' / 0; ids in the table but not in the
    vocabulary are ignored (they have no events).
    """
    if "id" not in table:
        return {k: np.asarray(v) for k, v in table.items()}
    ids = np.asarray(table["id"]).astype(str)
    position = vocab.lookup(ids)
    found = position >= 0
    aligned = {}
    for key, column in table.items():
        if key == "id":
            continue
        column = np.asarray(column)
        if column.dtype.kind == "f":
            out = np.full(len(vocab), np.nan, column.dtype)
        elif column.dtype.kind in "iub":
            out = np.zeros(len(vocab), column.dtype)
        else:
            out = np.full(len(vocab), "", dtype=object)
        out[position[found]] = column[found]
        aligned[key] = out
    return aligned
