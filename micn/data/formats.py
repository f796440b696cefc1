"""Recognise an Amazon review/metadata file from its content, and read one line of it.

Four formats (the two Amazon releases, reviews and metadata each):
    reviews-2014  JSON lines with reviewerID, asin, helpful, overall, unixReviewTime, ...
    reviews-2018  JSON lines with reviewerID, asin, overall, verified, vote?, style?, ...
    meta-2014     one Python dict literal per line (single quotes): needs ast.literal_eval
    meta-2018     JSON lines with asin, category (a path), title, also_buy, main_cat, ...
Plain or gzip (recognised by its magic bytes, whatever the extension).

The JSON formats are read by DuckDB (sql/ingest/staging/); this module holds what Python must
know about single lines: how long one may be (`read_lines` never holds more of a line than
MAX_LINE_BYTES), the 2014 metadata rules (`meta_2014_row`, the same rules as `stg_meta_json.sql`
for 2018) and why a line DuckDB could not parse was refused (`explain_unparseable`). Every rule
here is listed in docs/commands.md, "micn ingest".

A reason quotes a value through `marked(path, shown)`: `micn.data.ingest.rejects` replaces the
mark by the line's own text of that value (1e10 stays 1e10), `shown` being the fallback.
"""

from __future__ import annotations

import ast
import gzip
import json
import unicodedata
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from micn.errors import MicnError

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
REVIEW_FORMATS = ("reviews-2014", "reviews-2018")
META_FORMATS = ("meta-2014", "meta-2018")
SNIFF_LINES = 50
# One line is one record; a longer line is a reject, not a refusal of the file. The longest line
# of the Amazon samples in the repository has 46 KB (2018 metadata); 4 MiB bounds what one line
# costs: DuckDB's parse of a line of small values takes ~25 bytes of memory per byte of it.
MAX_LINE_BYTES = 4 * 2**20
# A 2014 metadata line that only `ast.literal_eval` can read: its parse takes ~500 bytes of memory
# per byte of the line, so a longer one is a reject (as JSON, such a line may have MAX_LINE_BYTES).
MAX_LITERAL_BYTES = 2**20
RAW_LINE_BYTES = 64 * 1024  # `rejects.raw_line` keeps a line whole up to this size, else its head
_SKIP_BYTES = 2**20  # the rest of an over-long line is read and dropped in pieces of this size
_SHOWN_CHARS = 40  # a reason quotes at most this many characters of a value
# The plausible review times: from 1990-01-01 (before the first Amazon review) to the day after the
# ingest. A review outside it (year 3000, 0, 2^63 - 1) is a reject with its reason, never a target.
TS_MIN = 631_152_000  # 1990-01-01T00:00:00Z


def ts_window(now: float | None = None) -> dict[str, int | str]:
    """The SQL parameters of the plausible review-time window: seconds and the dates a reason shows."""
    import datetime as dt
    import time

    ts_max = int(time.time() if now is None else now) + 86_400  # tomorrow, whatever the time zone
    day = dt.datetime.fromtimestamp(ts_max, dt.timezone.utc).date().isoformat()
    return {"ts_min": TS_MIN, "ts_max": ts_max, "ts_window": f"1990-01-01 .. {day}"}

_EXPECTED = (
    "Amazon review data: JSON lines with reviewerID/asin (reviews, 2014 or 2018 release), "
    "JSON lines with asin/category (2018 metadata) or Python dict literals with asin/categories (2014 metadata)"
)
_TOO_DEEP = "nested too deeply to parse"


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def open_binary(path: Path) -> BinaryIO:
    """Open plain or gzip content for reading bytes."""
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")


class LongLine(NamedTuple):
    """A line over MAX_LINE_BYTES, never held whole: its first RAW_LINE_BYTES bytes and its length."""

    head: bytes
    length: int  # bytes, without the line break


def read_lines(f: BinaryIO) -> Iterator[bytes | LongLine]:
    """The lines of `f` with their line breaks; a line over MAX_LINE_BYTES comes as a LongLine, and
    no more than MAX_LINE_BYTES + 2 bytes of it are held at once."""
    limit = MAX_LINE_BYTES + 2  # room for the line break, which the limit does not count
    while chunk := f.readline(limit):
        if len(chunk) < limit or chunk.endswith(b"\n"):
            yield chunk if line_bytes(chunk) <= MAX_LINE_BYTES else LongLine(chunk[:RAW_LINE_BYTES], line_bytes(chunk))
            continue
        head, length, tail = chunk[:RAW_LINE_BYTES], len(chunk), chunk[-2:]
        while not tail.endswith(b"\n") and (chunk := f.readline(min(_SKIP_BYTES, limit))):
            length, tail = length + len(chunk), (tail + chunk)[-2:]
        yield LongLine(head, length - (2 if tail == b"\r\n" else 1 if tail.endswith(b"\n") else 0))


def strip_bom(line: bytes) -> bytes:
    """A UTF-8 byte-order mark some editors put at the start of a file is not part of the record."""
    return line[len(UTF8_BOM):] if line.startswith(UTF8_BOM) else line


# --- recognising a file -------------------------------------------------------------------------


def classify_record(line: bytes) -> str | None:
    """The format one line belongs to, or None when it fits none."""
    text = strip_bom(line).decode("utf-8", errors="replace").strip()
    if not text.startswith("{"):
        return None
    try:
        record, literal = _load_json_or_literal(text)
    except ValueError:
        return None
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


def _load_json_or_literal(text: str) -> tuple[Any, bool]:
    """(value, is_python_literal); ValueError when the text is neither (or nested too deeply)."""
    try:
        return json.loads(text), False
    except json.JSONDecodeError:
        pass
    except RecursionError:
        raise ValueError(_TOO_DEEP) from None
    if len(text) > MAX_LITERAL_BYTES:
        raise ValueError("too long for the literal parser")
    try:
        return ast.literal_eval(text), True
    except (ValueError, SyntaxError, MemoryError, RecursionError) as e:
        raise ValueError(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None


def sniff_format(path: Path) -> str:
    """Majority format of the first non-blank lines; a clear error when none is recognised."""
    votes: Counter[str] = Counter()
    seen, long_lines = 0, []
    try:
        with open_binary(path) as f:
            for line in read_lines(f):
                if isinstance(line, LongLine):
                    long_lines.append(line.length)
                elif not line.strip():
                    continue
                elif fmt := classify_record(line):
                    votes[fmt] += 1
                seen += 1
                if seen >= SNIFF_LINES:
                    break
    except (OSError, EOFError, zlib.error) as e:
        if seen == 0:
            raise MicnError(f"{path}: cannot read the file ({e}); expected plain or gzip {_EXPECTED}.") from e
        # A truncated gzip may still show its first lines; the full read reports the truncation.
    if seen == 0:
        raise MicnError(f"{path}: the file is empty; expected {_EXPECTED}.")
    if not votes and len(long_lines) == seen:
        what = (f"is one line of {long_lines[0]:,} bytes" if seen == 1 else
                f"{'has' if seen < SNIFF_LINES else 'starts with'} {seen} non-blank lines, each over the limit "
                f"(the longest has {max(long_lines):,} bytes)")
        raise MicnError(f"{path}: the file {what}, and one record may have at most {limit_text()}; "
                        f"expected {_EXPECTED}, one record per line.")
    if not votes:
        raise MicnError(f"{path}: unknown format: none of the first {seen} non-blank lines is {_EXPECTED}.")
    return votes.most_common(1)[0][0]


# --- one line of 2014 metadata --------------------------------------------------------------------


class LineRejected(ValueError):
    """A line that cannot be used; the message is the reject reason stored in `rejects`."""


def meta_2014_row(raw: bytes | LongLine) -> tuple[str, str | None, str | None, str | None, float | None]:
    """(item_id, category, title, brand, price) of one 2014 metadata line, or LineRejected.

    Rules (docs/commands.md, "micn ingest"): `asin` a non-empty string or an integer; `categories` absent, null
    or a list of category paths, each a list of strings; category = the last element of the
    first path (DIEN's `categories[0][-1]`), None (later 'default_cat') when there is no path.
    A reason's quoted values are `marked` (their path in the record).
    """
    if isinstance(raw, LongLine):
        raise LineRejected(too_long(raw))
    record = parse_literal(raw)
    item_id = _item_id(record.get("asin"))
    category = _first_path_leaf(record.get("categories"))
    title, brand = _text(record.get("title")), _text(record.get("brand"))
    for name, value, ids, path in (("asin", item_id, True, "asin"), ("categories", category, True, "categories[0][-1]"),
                                   ("title", title, False, "title"), ("brand", brand, False, "brand")):
        problem = _text_problem(value, ids)
        if problem:
            raise LineRejected(f"{name} {marked(path, value)} {problem}")
    return item_id, category, title, brand, _price(record.get("price"))


def _text_problem(value: str | None, is_id: bool) -> str | None:
    """Why a string of a metadata line cannot be stored (None when it can): a lone surrogate (a
    Python escape such as \\ud800 that is no Unicode character), or a control character in an id
    or a category (NUL, ESC, ...: invisible, and two ids that look the same would differ)."""
    if value is None:
        return None
    if any("\ud800" <= c <= "\udfff" for c in value):
        return "holds a lone surrogate, which is not a Unicode character"
    if is_id and any(unicodedata.category(c) == "Cc" for c in value):
        return "holds a control character"
    return None


def line_bytes(raw: bytes) -> int:
    """Length of a line without its line break: what the record limit counts."""
    return len(raw.rstrip(b"\r\n"))


def limit_text(limit: int | None = None) -> str:
    """A size limit as a reason words it: "4 MiB", or its bytes."""
    limit = MAX_LINE_BYTES if limit is None else limit
    return f"{limit // 2**20} MiB" if limit % 2**20 == 0 else f"{limit:,} bytes"


def too_long(line: LongLine) -> str:
    start = shown_text(line.head[:4 * _SHOWN_CHARS].decode("utf-8", errors="backslashreplace"))
    return f"line of {line.length:,} bytes is over the {limit_text()} limit of one record; it starts {start}"


def marked(path: str, value: object) -> str:
    """A value as a reason quotes it: `path` (a key, then [i] per list index; [-1] the last element)
    and the fallback text, between unit separators (no JSON or Python text holds one unescaped)."""
    return f"\x1f{path}\x1f{_shown(value)}\x1f"


def shown_text(text: str) -> str:
    """At most _SHOWN_CHARS characters of a value's text, control characters escaped."""
    cut = text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "..."
    return "".join(f"\\x{ord(c):02x}" if unicodedata.category(c) == "Cc" else c for c in cut)


def parse_literal(raw: bytes) -> dict:
    """One 2014 metadata line (a Python dict literal, or the same record as JSON) as a dict."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise LineRejected(f"invalid UTF-8 at byte {e.start}") from None
    if '"' not in text and "\\" not in text:
        # Fast path, same result: a `repr` line without double quotes or backslashes has only
        # '...' strings that hold neither quote nor escape, so swapping the quotes gives JSON
        # with identical values. json.loads is ~10x faster than ast.literal_eval; anything it
        # rejects (True, None, tuples, ...) falls through to literal_eval.
        try:
            record = json.loads(text.replace("'", '"'))
            if isinstance(record, dict):
                return record
        except json.JSONDecodeError:
            pass
        except RecursionError:
            raise LineRejected(f"not a Python dict literal: {_TOO_DEEP}") from None
    if len(raw) > MAX_LITERAL_BYTES:
        try:  # a line of JSON needs no literal parser
            record = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            raise LineRejected(f"line of {line_bytes(raw):,} bytes needs Python's literal parser, which is given at most "
                               f"{limit_text(MAX_LITERAL_BYTES)} (as JSON it may have {limit_text()})") from None
    else:
        try:
            record = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError) as e:
            try:  # the same records re-written as JSON (true/null) are welcome too
                record = json.loads(text)
            except (json.JSONDecodeError, RecursionError):
                raise LineRejected(f"not a Python dict literal: {type(e).__name__}: {_first_line(e)}") from None
    if not isinstance(record, dict):
        raise LineRejected(f"a Python {type(record).__name__} literal, expected a dict with 'asin' and 'categories'")
    return record


def _first_line(e: Exception) -> str:
    text = str(e)
    return text.splitlines()[0] if text else _TOO_DEEP


def _kind(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "a list",
             tuple: "a tuple", dict: "a dict", set: "a set", type(None): "None"}
    return names.get(type(value), f"a {type(value).__name__}")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "..."


def _item_id(asin: object) -> str:
    if isinstance(asin, str) and asin.strip():
        return asin.strip()
    if isinstance(asin, int) and not isinstance(asin, bool):
        return str(asin)
    if asin is None or isinstance(asin, str):
        raise LineRejected("asin missing, null or empty")
    raise LineRejected(f"asin is {_kind(asin)} ({marked('asin', asin)}); expected a string or an integer")


def _first_path_leaf(categories: object) -> str | None:
    """DIEN's rule: the last element of the first category path; every path must be a list of strings."""
    if categories is None:
        return None
    expected = "expected a list of category paths, each a list of strings"
    if not isinstance(categories, list):
        raise LineRejected(f"categories is {_kind(categories)} ({marked('categories', categories)}); {expected}")
    for i, path in enumerate(categories):
        if not isinstance(path, list):
            raise LineRejected(f"categories[{i}] is {_kind(path)} ({marked(f'categories[{i}]', path)}); {expected}")
        for j, name in enumerate(path):
            if not isinstance(name, str):
                raise LineRejected(f"categories[{i}][{j}] is {_kind(name)} ({marked(f'categories[{i}][{j}]', name)}); {expected}")
    if categories and categories[0]:
        return categories[0][-1].strip() or None
    return None


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _price(value: object) -> float | None:
    try:
        return float(str(value).replace("$", "").replace(",", "")) if value not in (None, "") else None
    except ValueError:
        return None


# --- why DuckDB could not read a JSON line ----------------------------------------------------------


def explain_unparseable(raw: bytes) -> str:
    """Why DuckDB's JSON reader returned nothing for this line (one of at most MAX_LINE_BYTES)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"invalid UTF-8 at byte {e.start}"
    try:
        value = json.loads(text)
    except RecursionError:
        return f"JSON {_TOO_DEEP} (over Python's recursion limit); expected one flat JSON object per line"
    except json.JSONDecodeError as e:
        try:
            if len(text) <= MAX_LITERAL_BYTES and isinstance(ast.literal_eval(text.strip()), dict):
                return "a Python dict literal, not JSON (single quotes?); expected one JSON object per line"
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            pass
        return f"malformed JSON: {e.msg} at column {e.colno}"
    if isinstance(value, list):
        return "a JSON array, expected one JSON object per line"
    if not isinstance(value, dict):
        return f"a JSON {type(value).__name__}, expected one JSON object per line"
    for key, field in value.items():  # a \\ud800 escape decodes to a lone surrogate, which DuckDB refuses
        for text, is_key in ((key, True), (field, False)):
            if isinstance(text, str) and _text_problem(text, is_id=False):
                shown = marked(key, text) if not is_key and key.isidentifier() else _shown(text)
                return (f"{'a key' if is_key else key} {shown} holds a lone surrogate (a \\ud800-\\udfff escape), "
                        "which is not a Unicode character")
    return "a JSON object without any of the expected fields (reviewerID, asin, overall, unixReviewTime)"
