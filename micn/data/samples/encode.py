"""sample_pairs → the Parquet sample files: vocabulary lookups, left padding, fixed row groups.

Polars pads each chunk of pairs (left padding, most recent last), numpy lookup arrays map the
integer keys to vocabulary indexes, and pyarrow writes one row group per chunk of
PAIRS_PER_ROW_GROUP pairs with the fixed settings below, so the same tables give the same bytes
whatever the thread count.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from micn.names import OOV_ID, PADDING_ID

PAIRS_PER_ROW_GROUP = 65_536  # each pair is 2 rows; fixed, so row groups (and file bytes) are reproducible


def sample_schema(max_len: int) -> pa.Schema:
    """The columns of train/valid/test.parquet: one row per sample, 2 rows (label 1, 0) per pair."""
    ids = pa.list_(pa.field("item", pa.int32(), nullable=False), max_len)  # left-padded with 0, most recent last
    return pa.schema([
        pa.field("user", pa.int32(), nullable=False),
        pa.field("item", pa.int32(), nullable=False),
        pa.field("category", pa.int32(), nullable=False),
        pa.field("label", pa.int8(), nullable=False),
        pa.field("hist_items", ids, nullable=False),
        pa.field("hist_categories", ids, nullable=False),
        pa.field("hist_neg_items", ids, nullable=False),
        pa.field("hist_neg_categories", ids, nullable=False),
        pa.field("hist_len", pa.int32(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),  # raw ids, for per-user metrics and the oracle scorer
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("last_hist_item_id", pa.string(), nullable=False),
        pa.field("ts", pa.int64(), nullable=False),  # the target's (the positive's) timestamp, on both rows
    ])


# Fixed writer settings (part of the byte-identical promise). Dictionary encoding only for the raw
# id strings: on the id lists it costs time and makes the files larger.
# Statistics only where a reader can use them (not on the id lists: they cost a fifth of the write).
PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 1}
SAMPLE_DICTIONARY_COLUMNS = ["user_id", "item_id", "last_hist_item_id"]
SAMPLE_STATISTICS_COLUMNS = ["user", "item", "category", "label", "hist_len", "user_id", "item_id", "ts"]

SPLIT_QUERY = """
select user_key, user_id, ts, item_key, neg_item_key, hist_item_keys, hist_neg_keys, hist_len
from sample_pairs
where split = $split
order by user_key, pos
"""


@dataclass(frozen=True)
class Lookups:
    """Dense key -> vocabulary index arrays (key 0 = padding -> 0; keys outside the vocab -> 1)."""

    user: np.ndarray  # user key -> user index
    item: np.ndarray  # item key -> item index
    item_category: np.ndarray  # item key -> the index of the item's category
    item_id: pa.Array  # item key -> raw item id ("" at key 0)


def read_lookups(con) -> Lookups:
    """The lookup arrays of the built vocabularies (`vocab_*` and `stg_*` tables on `con`)."""

    def dense(n_keys: int, table: str, key: str) -> np.ndarray:
        index = np.full(n_keys + 1, OOV_ID, dtype=np.int32)
        index[0] = PADDING_ID
        pairs = con.sql(f"select {key}, index from {table}").fetchnumpy()
        index[pairs[key]] = pairs["index"]
        return index

    n_users, n_items, n_categories = con.execute(
        "select (select count(*) from stg_users), (select count(*) from stg_items), "
        "(select max(category_key) from stg_items)").fetchall()[0]
    items = con.sql("select item_key, category_key, item_id from stg_items order by item_key").to_arrow_table()
    if not np.array_equal(items["item_key"].to_numpy(), np.arange(1, n_items + 1)):
        raise AssertionError("stg_items: item keys must be dense from 1 (the lookup arrays index by key)")
    item_category = np.zeros(n_items + 1, dtype=np.int32)
    item_category[1:] = items["category_key"].to_numpy()
    item_id = pa.concat_arrays([pa.array([""], pa.string()), items["item_id"].combine_chunks().cast(pa.string())])
    category = dense(n_categories, "vocab_category", "category_key")
    return Lookups(dense(n_users, "vocab_user", "user_key"), dense(n_items, "vocab_item", "item_key"),
                   category[item_category], item_id)


def _left_pad(column: str, max_len: int) -> pl.Expr:
    """Variable-length list -> fixed Array(max_len), left-padded with 0, most recent last.

    Position i of the result is the list's element i - max_len counted from its end (negative
    index), or 0 where the list is shorter. (4x faster than concat_list + list.tail + to_array.)
    """
    col = pl.col(column)
    slots = [col.list.get(i - max_len, null_on_oob=True).fill_null(PADDING_ID) for i in range(max_len)]
    return pl.concat_arr(slots).alias(column)


def encode_pairs(pairs: pl.DataFrame, lookups: Lookups, max_len: int) -> pa.Table:
    """One chunk of sample_pairs -> its sample rows: each pair as (positive, negative), encoded."""
    n = pairs.height
    padded = pairs.select(_left_pad("hist_item_keys", max_len), _left_pad("hist_neg_keys", max_len))
    hist_keys = padded["hist_item_keys"].to_numpy()  # (n, T) int32 item keys, 0 = padding
    hist_neg_keys = padded["hist_neg_keys"].to_numpy()  # (n, T)
    pos_keys = pairs["item_key"].to_numpy()
    neg_keys = pairs["neg_item_key"].to_numpy()

    item_keys = np.column_stack([pos_keys, neg_keys]).reshape(-1)  # (2n,) pos0, neg0, pos1, neg1, ...

    def twice(a: np.ndarray) -> np.ndarray:  # a pair's shared columns, on its positive and its negative row
        return np.repeat(a, 2, axis=0)

    def fixed(a: np.ndarray) -> pa.Array:  # (2n, T) -> fixed-size lists
        return pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), max_len)

    columns = {
        "user": pa.array(twice(lookups.user[pairs["user_key"].to_numpy()])),
        "item": pa.array(lookups.item[item_keys]),
        "category": pa.array(lookups.item_category[item_keys]),
        "label": pa.array(np.tile(np.array([1, 0], dtype=np.int8), n)),
        "hist_items": fixed(twice(lookups.item[hist_keys])),
        "hist_categories": fixed(twice(lookups.item_category[hist_keys])),
        "hist_neg_items": fixed(twice(lookups.item[hist_neg_keys])),
        "hist_neg_categories": fixed(twice(lookups.item_category[hist_neg_keys])),
        "hist_len": pa.array(twice(pairs["hist_len"].to_numpy())),
        "user_id": pairs["user_id"].to_arrow().cast(pa.string()).take(pa.array(np.repeat(np.arange(n), 2))),
        "item_id": lookups.item_id.take(pa.array(item_keys)),
        "last_hist_item_id": lookups.item_id.take(pa.array(twice(hist_keys[:, -1]))),  # most recent = last column
        "ts": pa.array(twice(pairs["ts"].to_numpy())),
    }
    return pa.Table.from_pydict(columns, schema=sample_schema(max_len))


def fixed_chunks(reader: pa.RecordBatchReader, size: int) -> Iterator[pa.Table]:
    """Re-cut a stream of record batches into tables of exactly `size` rows (the last may be
    shorter), whatever batch sizes DuckDB hands out: row groups must not depend on threads."""
    pending: list[pa.RecordBatch] = []
    n_pending = 0
    for batch in reader:
        pending.append(batch)
        n_pending += batch.num_rows
        while n_pending >= size:
            table = pa.Table.from_batches(pending, schema=reader.schema)
            yield table.slice(0, size)
            rest = table.slice(size)
            pending, n_pending = rest.to_batches(), rest.num_rows
    if n_pending:
        yield pa.Table.from_batches(pending, schema=reader.schema)


def write_split(con, split: str, path: Path, lookups: Lookups, max_len: int) -> int:
    """Stream the split's pairs, by user then time, into one Parquet row group per chunk.

    The writer runs in a second thread (pyarrow releases the GIL), so compressing chunk k overlaps
    with Polars/numpy encoding chunk k + 1; row groups stay in order.
    """
    n_rows = 0
    reader = con.sql(SPLIT_QUERY, params={"split": split}).to_arrow_reader(PAIRS_PER_ROW_GROUP)
    writer = pq.ParquetWriter(path, sample_schema(max_len), use_dictionary=SAMPLE_DICTIONARY_COLUMNS,
                              write_statistics=SAMPLE_STATISTICS_COLUMNS, **PARQUET_OPTIONS)
    with writer, ThreadPoolExecutor(max_workers=1) as background:
        pending = None
        for chunk in fixed_chunks(reader, PAIRS_PER_ROW_GROUP):
            table = encode_pairs(pl.from_arrow(chunk), lookups, max_len)
            if pending is not None:
                pending.result()
            pending = background.submit(writer.write_table, table, row_group_size=table.num_rows)
            n_rows += table.num_rows
        if pending is not None:
            pending.result()
    return n_rows

