"""The ground truth beside the raw files: what `micn.data.oracle.Oracle` needs to score any next item.

users / items / categories Parquet files, each sorted by its id so that lookups can bisect.
The item table covers the whole catalogue, including items never reviewed and the ones planted
without metadata (whose true category lives only here). Its `topic` is the topic the item SERVES
(at kappa = 1 always its category's topic); at kappa < 1 it also holds `p_item_given_topic`,
P(i | topic), which the oracle uses instead of P(c | t) P(i | c) (the column is left out at
kappa = 1, where it equals that product, so that those files keep their bytes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from micn.data.synthetic.world import World


def write_ground_truth(gt_dir: Path, world: World) -> None:
    """Write `<gt_dir>/{users,items,categories}.parquet` (zstd)."""
    tables = {"users": _user_table(world), "items": _item_table(world), "categories": _category_table(world)}
    for name, table in tables.items():
        pq.write_table(table, gt_dir / f"{name}.parquet", compression="zstd")


def _user_table(world: World) -> pa.Table:
    """user_id, topics (list, slot order), weights (list, sums to 1), n_reviews; sorted by user_id."""
    users = world.users
    held = users.topics >= 0
    offsets = np.concatenate([[0], np.cumsum(users.k)]).astype(np.int32)  # (U + 1,)
    flat_topics = users.topics[held]  # row-major: each user's held topics in slot order
    flat_weights = users.weights[held]
    return pa.table(
        {
            "user_id": pa.array(world.ids.user.astype(str)),
            "topics": pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat_topics.astype(np.int32))),
            "weights": pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat_weights)),
            "n_reviews": pa.array(users.lengths),
        }
    ).take(pa.array(np.argsort(world.ids.user_rank)))


def _item_table(world: World) -> pa.Table:
    """item_id, category, topic (served), p_item_given_category, [p_item_given_topic: kappa < 1 only],
    has_meta, n_reviews; sorted by item_id."""
    cat = world.catalogue
    cat_names = np.array(cat.cat_names, dtype=object)
    columns = {
        "item_id": pa.array(world.ids.item.astype(str)),
        "category": pa.array(cat_names[cat.item_cat].tolist(), type=pa.string()),
        "topic": pa.array(cat.item_topic.astype(np.int32)),
        "p_item_given_category": pa.array(cat.p_item),
    }
    if world.profile.kappa != 1.0:
        columns["p_item_given_topic"] = pa.array(cat.p_item_topic)
    columns |= {
        "has_meta": pa.array(~world.missing_meta),
        "n_reviews": pa.array(world.item_counts.astype(np.int64)),
    }
    return pa.table(columns).take(pa.array(np.argsort(world.ids.item_rank)))


def _category_table(world: World) -> pa.Table:
    """category, topic, topic_name, p_category_given_topic, n_items; sorted by category."""
    cat = world.catalogue
    return pa.table(
        {
            "category": pa.array(cat.cat_names, type=pa.string()),
            "topic": pa.array(cat.cat_topic.astype(np.int32)),
            "topic_name": pa.array([cat.topic_names[t] for t in cat.cat_topic], type=pa.string()),
            "p_category_given_topic": pa.array(cat.p_cat),
            "n_items": pa.array(np.bincount(cat.item_cat, minlength=world.profile.n_categories).astype(np.int64)),
        }
    ).sort_by("category")
