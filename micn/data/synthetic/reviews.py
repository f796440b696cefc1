"""Review lines of both releases: the per-review fields, their order, and one line shape per release.

The lines are assembled by Polars string expressions over pools of pre-encoded fragments (a
reviewer's name, a text, a style), chunk by chunk, and gzip-compressed in a background thread,
so the `electronics` profile (1.7M reviews) writes in seconds. Dimensions: U users, N reviews,
R lines (R = N, plus the planted style duplicates in the 2018 release).
"""

from __future__ import annotations

import datetime as _dt
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from micn.data.synthetic.profiles import DAY0, N_DAYS, SECONDS_PER_DAY, UNIX_DAY0
from micn.data.synthetic.sink import GzipSink
from micn.data.synthetic.vocab import FIRST_NAMES, LAST_NAMES, NICKNAMES, SENTENCES, STYLES, SUMMARIES
from micn.data.synthetic.world import World

CHUNK_ROWS = 1 << 19  # review lines built and compressed per chunk (bounds peak memory)
_OVERALL = pl.Series([f"{r}.0" for r in range(1, 6)])  # rating 1..5 -> the dumps' float text
_REVIEW_TIME = pl.Series(  # day -> "MM D, YYYY", the dumps' reviewTime
    [f"{d.month:02d} {d.day}, {d.year}" for d in (DAY0 + _dt.timedelta(days=k) for k in range(N_DAYS))]
)


@dataclass(frozen=True, eq=False)
class ReviewFields:
    """What a review line says besides its user, item, day and rating (draw stream `review_fields`).

    Pools hold JSON fragments encoded once; index 0 of an optional field's pool is "" (absent)."""

    names: pl.Series  # (1 + 400,) ', "reviewerName": ...' fragments
    user_name: np.ndarray  # (U,) index into `names` (~1% of users have none)
    texts: pl.Series  # (1 + 500,) ', "reviewText": ...' fragments
    text_idx: np.ndarray  # (N,) index into `texts`
    summaries: pl.Series  # (5 * width,) JSON strings, rating-major
    summary_idx: np.ndarray  # (N,) index into `summaries`, within the review's rating block
    helpful_total: np.ndarray  # (N,) int, votes cast
    helpful_yes: np.ndarray  # (N,) int, helpful votes, <= helpful_total
    verified: np.ndarray  # (N,) bool
    styles: pl.Series  # (1 + S,) ', "style": {...}' fragments
    style_idx: np.ndarray  # (N,) index into `styles`

    @property
    def n_styles(self) -> int:
        return len(self.styles) - 1


def draw_review_fields(world: World, rng: np.random.Generator) -> ReviewFields:
    """Per-user and per-review fields, drawn in index order so that the bytes depend only on the seed."""
    N, U = world.profile.n_reviews, world.profile.n_users
    name_pool = _names(rng, 400)
    user_name = np.where(rng.random(U) < 0.01, 0, 1 + rng.integers(len(name_pool), size=U))  # ~1% have no name
    text_pool = _texts(rng, 500)
    text_idx = np.where(rng.random(N) < 0.001, 0, 1 + rng.integers(len(text_pool), size=N))
    width = max(len(v) for v in SUMMARIES.values())
    summaries = _json_pool([SUMMARIES[r][k % len(SUMMARIES[r])] for r in range(1, 6) for k in range(width)])
    summary_idx = (world.reviews.rating.astype(np.int64) - 1) * width + rng.integers(width, size=N)
    helpful_total = np.where(rng.random(N) < 0.35, rng.geometric(0.25, size=N), 0)
    helpful_total = np.where(rng.random(N) < 0.003, rng.integers(1000, 5000, size=N), helpful_total)  # a few viral ones
    helpful_yes = rng.binomial(helpful_total, 0.75)
    verified = rng.random(N) < 0.8
    styles = STYLES.get(world.profile.main_category, STYLES["Electronics"])
    style_idx = np.where(rng.random(N) < 0.45, 0, 1 + rng.integers(len(styles), size=N))
    return ReviewFields(
        names=_fragments("reviewerName", name_pool),
        user_name=user_name,
        texts=_fragments("reviewText", text_pool),
        text_idx=text_idx,
        summaries=summaries,
        summary_idx=summary_idx,
        helpful_total=helpful_total,
        helpful_yes=helpful_yes,
        verified=verified,
        styles=_fragments("style", styles),
        style_idx=style_idx,
    )


def item_grouped_order(world: World) -> np.ndarray:
    """(N,) review indices ordered by (asin, reviewerID, time), like the item-grouped real dumps."""
    r, U = world.reviews, world.profile.n_users
    key = (world.ids.item_rank[r.item].astype(np.int64) * U + world.ids.user_rank[r.user]) * N_DAYS + r.day
    return np.argsort(key, kind="stable")


def with_style_duplicates(
    order: np.ndarray, fields: ReviewFields, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(rows, row_style), each (R,): a planted `fraction` of the reviews repeated once, right after
    itself, with another style, as the 2018 dumps repeat a review once per style variant."""
    dup = rng.random(len(order)) < fraction
    rows = np.repeat(order, 1 + dup[order])
    is_copy = np.zeros(len(rows), dtype=bool)
    is_copy[np.flatnonzero(np.diff(rows) == 0) + 1] = True
    row_style = fields.style_idx[rows].copy()
    row_style[is_copy] = 1 + (row_style[is_copy] % fields.n_styles)  # never absent, never the same
    return rows, row_style


def line_2014() -> pl.Expr:
    """A 2014 review line (JSON, the 2014 key order) from the columns of `_chunk_frame`."""
    return pl.concat_str(
        pl.lit('{"reviewerID": "'), "uid", pl.lit('", "asin": "'), "asin", pl.lit('"'), "name",
        pl.lit(', "helpful": ['), pl.col("hy").cast(pl.String), pl.lit(", "), pl.col("ht").cast(pl.String),
        pl.lit("]"), "text", pl.lit(', "overall": '), "overall", pl.lit(', "summary": '), "summary",
        pl.lit(', "unixReviewTime": '), pl.col("unix").cast(pl.String), pl.lit(', "reviewTime": "'),
        "rtime", pl.lit('"}'),
    )  # fmt: skip


def line_2018() -> pl.Expr:
    """A 2018 review line (JSON, the 2018 key order; votes as "1,234" strings, `verified`, `style`)."""
    vote = (
        pl.when(pl.col("ht") >= 2)
        .then(pl.concat_str(pl.lit(', "vote": "'), _thousands(pl.col("ht")), pl.lit('"')))
        .otherwise(pl.lit(""))
    )
    return pl.concat_str(
        pl.lit('{"overall": '), "overall", vote, pl.lit(', "verified": '),
        pl.when(pl.col("verified")).then(pl.lit("true")).otherwise(pl.lit("false")),
        pl.lit(', "reviewTime": "'), "rtime", pl.lit('", "reviewerID": "'), "uid", pl.lit('", "asin": "'),
        "asin", pl.lit('"'), "style", "name", "text", pl.lit(', "summary": '), "summary",
        pl.lit(', "unixReviewTime": '), pl.col("unix").cast(pl.String), pl.lit("}"),
    )  # fmt: skip


def write_review_lines(
    path: Path, world: World, fields: ReviewFields, rows: np.ndarray, row_style: np.ndarray, line: pl.Expr
) -> int:
    """Write one `line` per entry of `rows` (review indices, (R,)) with the styles `row_style` (R,).
    Returns the number of lines written."""
    with GzipSink(path) as sink:
        for lo in range(0, len(rows), CHUNK_ROWS):
            frame = _chunk_frame(world, fields, rows[lo : lo + CHUNK_ROWS], row_style[lo : lo + CHUNK_ROWS])
            buf = io.BytesIO()
            frame.select(line.alias("line")).write_csv(buf, include_header=False, quote_style="never")
            sink.write(buf.getvalue())
    return len(rows)


def _chunk_frame(world: World, fields: ReviewFields, r: np.ndarray, style: np.ndarray) -> pl.DataFrame:
    """The columns the line expressions read, for the review indices `r` (n,)."""
    rev = world.reviews
    u, day = rev.user[r], rev.day[r]
    return pl.DataFrame(
        {
            "uid": world.ids.user_pl.gather(u),
            "asin": world.ids.item_pl.gather(rev.item[r]),
            "name": fields.names.gather(fields.user_name[u]),
            "text": fields.texts.gather(fields.text_idx[r]),
            "summary": fields.summaries.gather(fields.summary_idx[r]),
            "overall": _OVERALL.gather(rev.rating[r].astype(np.int64) - 1),
            "unix": UNIX_DAY0 + day * SECONDS_PER_DAY,
            "rtime": _REVIEW_TIME.gather(day),
            "hy": fields.helpful_yes[r],
            "ht": fields.helpful_total[r],
            "verified": fields.verified[r],
            "style": fields.styles.gather(style),
        }
    )


def _thousands(col: pl.Expr) -> pl.Expr:
    """Integer -> "1,234" (the 2018 dumps' vote strings); values here stay below one million."""
    s = col.cast(pl.String)
    return (
        pl.when(col >= 1000)
        .then(pl.concat_str(s.str.slice(0, s.str.len_chars() - 3), pl.lit(","), s.str.slice(-3)))
        .otherwise(s)
    )


def _fragments(key: str, values: list) -> pl.Series:
    """Pool of optional-field fragments `, "key": <json>`; index 0 is "" (the field is absent)."""
    return pl.Series([""] + [f", {json.dumps(key)}: {json.dumps(v)}" for v in values])


def _json_pool(values: list[str]) -> pl.Series:
    """JSON-encode a small pool of strings once (ASCII-escaped like the real dumps); rows then gather from it."""
    return pl.Series([json.dumps(v) for v in values], dtype=pl.String)


def _names(rng: np.random.Generator, n: int) -> list[str]:
    """Reviewer display names: plain, initials, and the real dumps' `Name "nickname"` shape."""
    out = []
    for _ in range(n):
        first = FIRST_NAMES[rng.integers(len(FIRST_NAMES))]
        last = LAST_NAMES[rng.integers(len(LAST_NAMES))]
        kind = rng.integers(6)
        if kind == 0:
            out.append(f"{first} {last[0]}.")
        elif kind == 1:
            out.append(f'{first} {last} "{NICKNAMES[rng.integers(len(NICKNAMES))]}"')
        elif kind == 2:
            out.append(first)
        else:
            out.append(f"{first} {last}")
    return out


def _texts(rng: np.random.Generator, n: int) -> list[str]:
    return [" ".join(rng.choice(SENTENCES, size=int(rng.integers(1, 4)), replace=False)) for _ in range(n)]
