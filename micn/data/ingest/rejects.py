"""The rejects of an ingest: every refused line with its file, line number, raw text and reason.

Staging flags a refused line by its record number (`rec_no`, DuckDB's count of non-blank lines)
and a short reason. Here one streaming pass over each file with flagged lines finds their
physical line numbers and raw bytes, and words the reasons that need the raw text ("invalid
UTF-8", "JSON array", an over-long line's size). The 2014 metadata rejects arrive from
`micn.data.ingest.meta`.

A reason quotes a value as the line writes it (`quote_values`): the staging models and
`micn.data.formats` mark each quoted value with its path in the record, and the mark is replaced
by that value's text in the line; DuckDB's reader re-writes numbers (1e10 as 10000000000.0) and
strings (\\u0041 as A), Python's parser too (1e10 as 10000000000.0).
"""

from __future__ import annotations

import codecs
import json
import re
from collections import deque
from itertools import groupby
from operator import itemgetter
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import pyarrow as pa

from micn.data.formats import RAW_LINE_BYTES, LongLine, explain_unparseable, line_bytes, shown_text, strip_bom, too_long
from micn.data.ingest.json_lines import raw_lines
from micn.data.sql import execute
from micn.errors import MicnError

REJECTS_SCHEMA = pa.schema(
    [("file_idx", pa.int64()), ("line_no", pa.int64()), ("reason", pa.string()), ("raw_line", pa.string())]
)
_MARK = re.compile("\x1f([^\x1f]*)\x1f([^\x1f]*)\x1f")  # formats.marked(path, shown); macros.sql json_quoted
_PATH = re.compile(r"([A-Za-z_]\w*)((?:\[(?:-1|\d+)\])*)")
# One token of a JSON object or a Python dict literal: a string (with its prefix), a bracket, a
# colon or comma, a run of anything else (a number, true, None, ...), or white space.
_TOKEN = re.compile(r"""[bBrRuU]{0,2}(?:"[^"\\]*(?:\\.[^"\\]*)*"|'[^'\\]*(?:\\.[^'\\]*)*')|[\[\](){}:,]|[^\[\](){}:,'"\s]+|\s+""")
_OPEN, _CLOSE = "[({", "])}"


def raw_text(line: bytes | LongLine) -> str:
    """The raw line as `rejects.raw_line` keeps it: whole up to RAW_LINE_BYTES, else its head."""
    if isinstance(line, bytes) and line_bytes(line) <= RAW_LINE_BYTES:
        return line.decode("utf-8", errors="backslashreplace").rstrip("\r\n")
    head, length = (line.head, line.length) if isinstance(line, LongLine) else (line, line_bytes(line))
    # an incremental decoder keeps back a character the cut splits in two
    shown = codecs.getincrementaldecoder("utf-8")(errors="backslashreplace").decode(head[:RAW_LINE_BYTES])
    return shown + f"... [cut: the line has {length:,} bytes]"


BATCH_ROWS = 20_000  # rejects held in Python at a time: a file of millions of bad lines stays in bounded memory


def create_rejects_table(con, name: str) -> None:
    """An empty temp table `name` of REJECTS_SCHEMA (file_idx, line_no, reason, raw_line)."""
    con.register("empty_rejects", REJECTS_SCHEMA.empty_table())
    con.execute(f"create or replace temp table {name} as select * from empty_rejects")
    con.unregister("empty_rejects")


def append_rejects(con, name: str, rows: list[tuple]) -> None:
    """Append (file_idx, line_no, reason, raw_line) rows to the temp table `name`."""
    if rows:
        con.register("rejects_batch", rows_to_rejects_table(rows))
        con.execute(f"insert into {name} select * from rejects_batch")
        con.unregister("rejects_batch")


def collect_rejects(con, paths: list[Path]) -> None:
    """Every reject with line number, raw line and a precise reason into the temp table
    `new_rejects` (the 2014 literal rejects already in `literal_rejects`, then each flagged
    record located in its file), BATCH_ROWS at a time."""
    create_rejects_table(con, "new_rejects")
    con.execute("insert into new_rejects select * from literal_rejects")
    con.execute(
        "create or replace temp table flagged as select row_number() over (order by file_idx, rec_no) as k, * from ("
        "select file_idx, rec_no, reject_reason from stg_reviews where reject_reason is not null "
        "union all select file_idx, rec_no, reject_reason from stg_meta where reject_reason is not null)"
    )
    rows: list[tuple] = []
    for file_idx, flagged in groupby(_flagged(con), key=itemgetter(0)):  # rows come in file, then record order
        records = ((rec_no, reason) for _, rec_no, reason in flagged)
        for rec_no, reason, line_no, line in _locate(paths[file_idx], records, con, file_idx):
            rows.append((file_idx, line_no, _worded(reason, line), raw_text(line)))
            if len(rows) >= BATCH_ROWS:
                append_rejects(con, "new_rejects", rows)
                rows = []
    append_rejects(con, "new_rejects", rows)


def _flagged(con) -> Iterator[tuple[int, int, str]]:
    """(file_idx, rec_no, reason) of the temp table `flagged` in order, a page of BATCH_ROWS at a time
    (each page read whole, so the connection is free for the inserts between pages)."""
    after = 0
    while page := execute(con, "select k, file_idx, rec_no, reject_reason from flagged where k > $after order by k "
                               "limit $n", {"after": after, "n": BATCH_ROWS}).fetchall():
        after = page[-1][0]
        yield from (row[1:] for row in page)


def _worded(reason: str, line: bytes | LongLine) -> str:
    if isinstance(line, LongLine):  # DuckDB read it as `{}` (json_lines.Readable)
        return too_long(line)
    if reason == "unparseable line":
        reason = explain_unparseable(line)
    return quote_values(reason, line, first_key_wins=True)


def rows_to_rejects_table(rows: list[tuple]) -> pa.Table:
    """(file_idx, line_no, reason, raw_line) rows as a REJECTS_SCHEMA table, by file then line."""
    rows = sorted(rows, key=lambda r: (r[0], r[1]))
    return pa.table({f.name: [r[k] for r in rows] for k, f in enumerate(REJECTS_SCHEMA)}, schema=REJECTS_SCHEMA)


def _locate(path: Path, wanted: Iterator[tuple[int, str]], con,
            file_idx: int) -> Iterator[tuple[int, str, int, bytes | LongLine]]:
    """(rec_no, reason, physical line number, line) of the wanted records ((rec_no, reason) in
    record order; rec_no counts DuckDB's non-blank lines), one at a time; then checks that DuckDB
    staged as many records as the file has."""
    rec_no = 0
    want = next(wanted, None)
    for line_no, line in enumerate(raw_lines(path), start=1):
        if isinstance(line, bytes) and not line.strip():
            continue
        rec_no += 1
        if want is not None and want[0] == rec_no:
            yield rec_no, want[1], line_no, line
            want = next(wanted, None)
    staged = execute(
        con,
        "select count(*) from (select file_idx from stg_reviews union all select file_idx from stg_meta) "
        "where file_idx = $file_idx",
        {"file_idx": file_idx},
    ).fetchall()[0][0]
    if staged != rec_no:
        raise MicnError(
            f"{path}: DuckDB read {staged} records but the file has {rec_no} non-blank lines, so rejected lines cannot "
            "be located; nothing was written. Please report this file."
        )


# --- a value as the line writes it -----------------------------------------------------------------


def quote_values(reason: str, line: bytes | LongLine, *, first_key_wins: bool) -> str:
    """`reason` with each marked value replaced by its text in `line` (at most 40 characters), or
    by the mark's own text when the line does not have it. DuckDB keeps a repeated key's first
    value, Python's parsers its last: `first_key_wins` says which one the reason is about."""
    if "\x1f" not in reason:
        return reason
    text = None
    if isinstance(line, bytes):
        try:
            text = strip_bom(line).decode("utf-8")
        except UnicodeDecodeError:
            pass

    def quoted(mark: re.Match) -> str:
        found = raw_value(text, mark.group(1), first_key_wins) if text is not None else None
        return mark.group(2) if found is None else shown_text(found)

    return _MARK.sub(quoted, reason)


def raw_value(text: str, path: str, first_key_wins: bool = True) -> str | None:
    """The text of the value at `path` ("key", "key[1]", "key[0][-1]": [-1] the last element) in
    one JSON object or Python dict literal, as written; None when it is not there. A pass over
    tokens that builds no value: bounded memory and no recursion, whatever the nesting."""
    parsed = _PATH.fullmatch(path)
    if parsed is None:
        return None
    steps: list[str | int] = [parsed.group(1), *(int(i) for i in re.findall(r"-?\d+", parsed.group(2)))]
    try:
        start, end = next(_tokens(text, 0)).start(), len(text)
        for step in steps:
            if text[start] not in ("{" if isinstance(step, str) else "[("):
                return None
            spans = ((a, b) for key, a, b in _members(text, start) if not isinstance(step, str) or _key_is(key, step))
            if step == -1 or isinstance(step, str) and not first_key_wins:
                last = deque(spans, maxlen=1)
                chosen = last[0] if last else None
            else:
                chosen = next(islice(spans, step if isinstance(step, int) else 0, None), None)
            if chosen is None:
                return None
            start, end = chosen
        return text[start:end]
    except (StopIteration, ValueError):
        return None


def _tokens(text: str, pos: int) -> Iterator[re.Match]:
    """The tokens of `text` from `pos`, white space left out; ValueError at a character no token
    starts with (an unclosed string)."""
    end = pos
    for token in _TOKEN.finditer(text, pos):
        if token.start() != end:
            raise ValueError(f"no token at {end}")
        end = token.end()
        if not token.group().isspace():
            yield token


def _members(text: str, start: int) -> Iterator[tuple[str | None, int, int]]:
    """(key text, value start, value end) of each member of the container that opens at `start`
    (key None in a list or tuple)."""
    depth, key, first, last = 0, None, None, None
    for token in _tokens(text, start + 1):
        t = token.group()
        if depth == 0 and (t == "," or t in _CLOSE):
            if first is not None:
                yield key, first, last
            if t != ",":
                return
            key, first = None, None
            continue
        if depth == 0 and t == ":" and text[start] == "{" and key is None:
            key, first = text[first:last] if first is not None else "", None
            continue
        depth += (t in _OPEN) - (t in _CLOSE)
        first = token.start() if first is None else first
        last = token.end()
    raise ValueError("the container does not close")


def _key_is(key: str | None, name: str) -> bool:
    if key is None or len(key) > 10 * len(name) + 4:  # an escape takes at most 10 characters for one
        return False
    if key.startswith('"'):
        try:
            return json.loads(key) == name
        except ValueError:
            return False
    return key in (f"'{name}'", f'"{name}"')
