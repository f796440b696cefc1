"""One writer per Amazon release format: the reviews file and the metadata file of a world.

    2014 (McAuley et al.): `reviews_<Name>_5.json.gz`, JSON lines in the 2014 key order, and
          `meta_<Name>.json.gz`, one Python dict literal per line (parse with `ast.literal_eval`).
    2018 (Ni et al.):      `<Name>_5.json.gz`, JSON lines in the 2018 key order, a planted fraction
          repeated once per style variant, and `meta_<Name>.json.gz`, strict JSON lines.

Both releases draw the same fields from the same streams; only the line shapes and the 2018
style duplicates differ. Lines are ordered by (asin, reviewerID, time) like the item-grouped dumps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from micn.data.synthetic.meta import draw_meta_fields, meta_line_2014, meta_line_2018, write_meta_lines
from micn.data.synthetic.reviews import (
    draw_review_fields,
    item_grouped_order,
    line_2014,
    line_2018,
    with_style_duplicates,
    write_review_lines,
)
from micn.data.synthetic.world import RandomStreams, World
from micn.names import FORMATS


@dataclass(frozen=True)
class ReleaseFiles:
    """The two raw files a writer produced, with their line counts."""

    reviews_path: Path
    meta_path: Path
    n_review_lines: int
    n_meta_lines: int


def write_2014(world: World, out_dir: Path, name: str, streams: RandomStreams) -> ReleaseFiles:
    """The 2014 release: JSON-lines reviews and dict-literal metadata."""
    reviews_path, meta_path = out_dir / f"reviews_{name}_5.json.gz", out_dir / f"meta_{name}.json.gz"
    fields = draw_review_fields(world, streams.review_fields)
    rows = item_grouped_order(world)
    n_review_lines = write_review_lines(reviews_path, world, fields, rows, fields.style_idx[rows], line_2014())
    meta_fields = draw_meta_fields(world, streams.meta_fields)
    n_meta_lines = write_meta_lines(meta_path, world, meta_fields, meta_line_2014)
    return ReleaseFiles(reviews_path, meta_path, n_review_lines, n_meta_lines)


def write_2018(world: World, out_dir: Path, name: str, streams: RandomStreams) -> ReleaseFiles:
    """The 2018 release: JSON-lines reviews with style duplicates, and JSON-lines metadata."""
    reviews_path, meta_path = out_dir / f"{name}_5.json.gz", out_dir / f"meta_{name}.json.gz"
    fields = draw_review_fields(world, streams.review_fields)
    rows, row_style = with_style_duplicates(
        item_grouped_order(world), fields, world.profile.duplicate_fraction_2018, streams.review_fields
    )
    n_review_lines = write_review_lines(reviews_path, world, fields, rows, row_style, line_2018())
    meta_fields = draw_meta_fields(world, streams.meta_fields)
    n_meta_lines = write_meta_lines(meta_path, world, meta_fields, meta_line_2018)
    return ReleaseFiles(reviews_path, meta_path, n_review_lines, n_meta_lines)


WRITERS: dict[str, Callable[[World, Path, str, RandomStreams], ReleaseFiles]] = {"2014": write_2014, "2018": write_2018}
assert tuple(WRITERS) == FORMATS, "every release format in micn.names.FORMATS needs its writer here"
