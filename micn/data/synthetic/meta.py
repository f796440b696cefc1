"""Metadata lines of both releases: per-item fields drawn once, and one line shape per release.

Every per-item field is drawn for ALL items in index order, whichever release is written and
whichever items lack metadata, so the draw stream never depends on either. Rendering is per
item in Python (the one place that is): 2014 lines are Python dict literals (`repr`), 2018
lines are strict JSON. Dimensions: I items, M metadata lines (I minus the planted missing ones).
"""

from __future__ import annotations

import datetime as _dt
import html
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from micn.data.synthetic.ids import B64, digits, fixed_width
from micn.data.synthetic.profiles import DAY0, N_DAYS
from micn.data.synthetic.sink import GzipSink
from micn.data.synthetic.vocab import MONTHS, PRICE_JUNK, SENTENCES
from micn.data.synthetic.world import World


@dataclass(frozen=True, eq=False)
class MetaFields:
    """Per-item metadata fields (draw stream `meta_fields`), all (I,) unless noted."""

    brand_idx: np.ndarray  # index into vocab["brands"]
    odd_idx: np.ndarray  # index into vocab["odd_brands"] (non-ASCII brands)
    mod_idx: np.ndarray  # index into vocab["modifiers"]
    unit_idx: np.ndarray  # index into vocab["units"]
    model_no: np.ndarray  # int, model number in the title
    size_no: np.ndarray  # int, size in the title
    shape: np.ndarray  # float in [0, 1): the title's shape (apostrophe / inch mark / non-ASCII / plain)
    has_price: np.ndarray  # bool (2014)
    price: np.ndarray  # float, dollars with cents
    has_brand: np.ndarray  # bool
    has_related: np.ndarray  # bool (2014)
    has_rank: np.ndarray  # bool (2014)
    rank_value: np.ndarray  # int, sales rank (popular items rank first)
    second_path: np.ndarray  # bool, a second category path [main, "Other"] (2014)
    n_related: np.ndarray  # (I, 3) int, how many also-bought / also-viewed / bought-together to keep
    related: np.ndarray  # (I, 18) int, candidate related items of the same category (3 blocks of 8, 8, 2+)
    img: np.ndarray  # S10, image id (2014 imUrl)
    price_kind_2018: np.ndarray  # float in [0, 1): "$x.yy", "" or CSS junk (2018)
    rank_is_list: np.ndarray  # bool, rank as a list of two strings (2018)
    date_day: np.ndarray  # int, day of the "date" field (2018)
    order: np.ndarray  # (M,) item indices with metadata, in asin order: the line order


@dataclass(frozen=True)
class ItemText:
    """What both releases say about one item, in release-neutral form."""

    asin: str
    title: str
    brand: str
    path: list[str]  # [main, topic, ("Accessories",) category]: the last element is the category
    also_bought: list[str]
    also_viewed: list[str]
    bought_together: list[str]


MetaRenderer = Callable[[World, MetaFields, int, ItemText], str]


def draw_meta_fields(world: World, rng: np.random.Generator) -> MetaFields:
    """Draw every per-item field (all items, index order), then fix the line order."""
    I = world.profile.n_items
    vocab, cat = world.catalogue.vocab, world.catalogue
    brand_idx = rng.integers(len(vocab["brands"]), size=I)
    odd_idx = rng.integers(len(vocab["odd_brands"]), size=I)
    mod_idx = rng.integers(len(vocab["modifiers"]), size=I)
    unit_idx = rng.integers(len(vocab["units"]), size=I)
    model_no = rng.integers(10, 9999, size=I)
    size_no = rng.integers(2, 65, size=I)
    shape = rng.random(I)
    has_price = rng.random(I) < 0.75
    cents = np.where(rng.random(I) < 0.5, 0.99, rng.integers(0, 100, size=I) / 100)  # half end in .99
    price = np.round(np.floor(np.exp(rng.normal(3.0, 1.0, size=I))) + cents, 2)
    has_brand = rng.random(I) < 0.6
    has_related = rng.random(I) < 0.8
    has_rank = rng.random(I) < 0.85
    rank_value = 1 + np.argsort(np.argsort(-(cat.topic_pop[cat.cat_topic[cat.item_cat]] * cat.p_item))) * 7
    rank_value = rank_value + rng.integers(0, 7, size=I)
    second_path = rng.random(I) < 0.3
    n_related = rng.integers(0, 9, size=(I, 3)) * (rng.random((I, 3)) < [0.7, 0.8, 0.4])
    n_related[:, 2] = np.minimum(n_related[:, 2], 2)
    # Related items: popular items of the same category, drawn through the same inverse CDF.
    related = np.searchsorted(cat.item_cdf, cat.item_cat[:, None] + rng.random((I, 18)), side="right")
    img = fixed_width(b"", digits(rng.integers(0, 2**63, size=I, dtype=np.uint64), 10, B64))
    price_kind_2018 = rng.random(I)
    rank_is_list = rng.random(I) < 0.5
    date_day = rng.integers(0, N_DAYS, size=I)
    order = np.argsort(world.ids.item_rank)  # asin order
    order = order[~world.missing_meta[order]]
    _force_title_shapes(shape, order)
    return MetaFields(
        brand_idx=brand_idx, odd_idx=odd_idx, mod_idx=mod_idx, unit_idx=unit_idx, model_no=model_no,
        size_no=size_no, shape=shape, has_price=has_price, price=price, has_brand=has_brand,
        has_related=has_related, has_rank=has_rank, rank_value=rank_value, second_path=second_path,
        n_related=n_related, related=related, img=img, price_kind_2018=price_kind_2018,
        rank_is_list=rank_is_list, date_day=date_day, order=order,
    )  # fmt: skip


def _force_title_shapes(shape: np.ndarray, order: np.ndarray) -> None:
    """Guarantee the shapes readers must cope with, whatever the seed: the first three lines carry an
    apostrophe, a non-ASCII character, and both quote kinds (in place)."""
    for k, forced in zip(range(min(3, len(order))), (0.02, 0.14, 0.07)):
        shape[order[k]] = forced


def item_text(world: World, f: MetaFields, i: int, asins: list[str]) -> ItemText:
    """Item `i`'s title, category path and related-item lists (shared by both releases)."""
    cat, vocab, main = world.catalogue, world.catalogue.vocab, world.profile.main_category
    c = int(cat.item_cat[i])
    t = int(cat.cat_topic[c])
    brand = vocab["brands"][f.brand_idx[i]]
    path = [main, cat.topic_names[t]] + (["Accessories"] if cat.cat_has_mid[c] else [])
    path.append(cat.cat_names[c])
    rel = f.related[i]
    nb, nv, nt = f.n_related[i]
    # dict.fromkeys: de-duplicate while keeping the draw order (real lists never repeat an asin).
    return ItemText(
        asin=asins[i],
        title=_title(f, i, brand, cat.cat_noun[c], vocab),
        brand=brand,
        path=path,
        also_bought=[asins[j] for j in dict.fromkeys(rel[:nb].tolist()) if j != i],
        also_viewed=[asins[j] for j in dict.fromkeys(rel[8 : 8 + nv].tolist()) if j != i],
        bought_together=[asins[j] for j in dict.fromkeys(rel[16 : 16 + nt].tolist()) if j != i],
    )


def _title(f: MetaFields, i: int, brand: str, noun: str, vocab: dict[str, list[str]]) -> str:
    """A product title whose shape (`f.shape[i]`) exercises the readers' quoting."""
    mod, unit, s = vocab["modifiers"][f.mod_idx[i]], vocab["units"][f.unit_idx[i]], f.shape[i]
    if s < 0.05:
        return f"{brand}'s {mod} {noun} {f.model_no[i]}"  # apostrophe -> repr uses double quotes
    if s < 0.09:
        return f"{brand} {f.size_no[i]}\" {noun} for Kids' Rooms"  # both quote kinds -> repr escapes
    if s < 0.12:
        return f"{brand} {f.size_no[i]}\" {mod} {noun}"  # an inch mark
    if s < 0.18:
        return f"{vocab['odd_brands'][f.odd_idx[i]]} {mod} {noun}™ {f.model_no[i]}"  # non-ASCII
    return f"{brand} {mod} {noun} {f.model_no[i]} ({f.size_no[i]} {unit})"


def meta_line_2014(world: World, f: MetaFields, i: int, item: ItemText) -> str:
    """A 2014 metadata line: a Python dict literal (parse with `ast.literal_eval`), optional keys omitted."""
    main = world.profile.main_category
    d: dict[str, Any] = {"asin": item.asin, "title": item.title}
    if f.has_price[i]:
        d["price"] = float(f.price[i])
    d["imUrl"] = f"http://ecx.images-amazon.com/images/I/{f.img[i].decode()}._SY300_.jpg"
    if f.has_related[i]:
        related = {"also_bought": item.also_bought, "also_viewed": item.also_viewed,
                   "bought_together": item.bought_together}  # fmt: skip
        d["related"] = {key: value for key, value in related.items() if value}
    if f.has_rank[i]:
        d["salesRank"] = {main: int(f.rank_value[i])}
    if f.has_brand[i]:
        d["brand"] = item.brand
    d["categories"] = [item.path, [main, "Other"]] if f.second_path[i] else [item.path]
    return repr(d)


def meta_line_2018(world: World, f: MetaFields, i: int, item: ItemText) -> str:
    """A 2018 metadata line: strict JSON with every key always present (empty when unknown), HTML-escaped
    category path except its last element, string price and rank, as in the 2018 dumps."""
    main, s, pk, rank = world.profile.main_category, f.shape[i], f.price_kind_2018[i], int(f.rank_value[i])
    price = f"${f.price[i]:.2f}" if pk < 0.6 else ("" if pk < 0.95 else PRICE_JUNK)
    rank_s = f">#{rank:,} in {main} (See Top 100 in {main})"
    path = [html.escape(p, quote=False) for p in item.path[:-1]] + [item.path[-1]]
    d = {
        "category": path,
        "tech1": "",
        "description": [f"{item.title}. {SENTENCES[i % len(SENTENCES)]}"] if s < 0.5 else [],
        "fit": "",
        "title": item.title.replace('"', "&quot;"),
        "also_buy": item.also_bought,
        "image": [],
        "tech2": "",
        "brand": item.brand if f.has_brand[i] else "",
        "feature": [],
        "rank": [rank_s, f">#{rank // 50 + 1:,} in {main} > {path[-1]}"] if f.rank_is_list[i] else rank_s,
        "also_view": item.also_viewed,
        "details": {},
        "main_cat": main,
        "similar_item": "",
        "date": _long_date(int(f.date_day[i])) if s > 0.7 else "",
        "price": price,
        "asin": item.asin,
    }
    return json.dumps(d)


def write_meta_lines(path: Path, world: World, fields: MetaFields, render: MetaRenderer) -> int:
    """Write one `render`ed line per item with metadata, in asin order. Returns the number of lines."""
    asins = [a.decode() for a in world.ids.item]
    lines = [render(world, fields, i, item_text(world, fields, i, asins)) for i in fields.order.tolist()]
    with GzipSink(path) as sink:
        sink.write(("\n".join(lines) + "\n").encode("utf-8") if lines else b"")
    return len(lines)


def _long_date(day: int) -> str:
    """Day index -> "March 5, 2009" (the 2018 dumps' date field)."""
    d = DAY0 + _dt.timedelta(days=day)
    return f"{MONTHS[d.month - 1]} {d.day}, {d.year}"
