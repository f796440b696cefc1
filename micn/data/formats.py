"""Recognise an Amazon review/metadata file from its content, not its name.

Four formats (DESIGN §3.1):
    reviews-2014  JSON lines with reviewerID, asin, helpful, overall, unixReviewTime, ...
    reviews-2018  JSON lines with reviewerID, asin, overall, verified, vote?, style?, ...
    meta-2014     one Python dict literal per line (single quotes): needs ast.literal_eval
    meta-2018     JSON lines with asin, category (a path), title, also_buy, main_cat, ...
Plain or gzip (recognised by its magic bytes, whatever the extension).
"""

from __future__ import annotations

import ast
import gzip
import json
import zlib
from collections import Counter
from pathlib import Path
from typing import BinaryIO

from micn.errors import MicnError

GZIP_MAGIC = b"\x1f\x8b"
REVIEW_FORMATS = ("reviews-2014", "reviews-2018")
META_FORMATS = ("meta-2014", "meta-2018")
SNIFF_LINES = 50

_EXPECTED = (
    "Amazon review data: JSON lines with reviewerID/asin (reviews, 2014 or 2018 release), "
    "JSON lines with asin/category (2018 metadata) or Python dict literals with asin/categories (2014 metadata)"
)


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def open_binary(path: Path) -> BinaryIO:
    """Open plain or gzip content for reading bytes."""
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")


def classify_record(line: bytes) -> str | None:
    """The format one line belongs to, or None when it fits none."""
    text = line.decode("utf-8", errors="replace").strip()
    if not text.startswith("{"):
        return None
    try:
        record = json.loads(text)
        literal = False
    except json.JSONDecodeError:
        try:
            record = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
        literal = True
    if not isinstance(record, dict):
        return None
    if "reviewerID" in record:
        if literal:
            return None
        return "reviews-2014" if "helpful" in record else "reviews-2018"
    if "asin" in record:
        if literal or "categories" in record:
            return "meta-2014"
        return "meta-2018"
    return None


def sniff_format(path: Path) -> str:
    """Majority format of the first non-blank lines; a clear error when none is recognised."""
    votes: Counter[str] = Counter()
    seen = 0
    try:
        with open_binary(path) as f:
            for line in f:
                if not line.strip():
                    continue
                seen += 1
                fmt = classify_record(line)
                if fmt:
                    votes[fmt] += 1
                if seen >= SNIFF_LINES:
                    break
    except (OSError, EOFError, zlib.error) as e:
        if seen == 0:
            raise MicnError(f"{path}: cannot read the file ({e}); expected plain or gzip {_EXPECTED}.") from e
        # A truncated gzip may still show its first lines; the full read reports the truncation.
    if seen == 0:
        raise MicnError(f"{path}: the file is empty; expected {_EXPECTED}.")
    if not votes:
        raise MicnError(f"{path}: unknown format: none of the first {seen} non-blank lines is {_EXPECTED}.")
    return votes.most_common(1)[0][0]
