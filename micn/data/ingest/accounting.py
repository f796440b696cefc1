"""What an ingest read, kept and refused: per file (`FileReport`) and per dataset (`IngestReport`).

Nothing vanishes: for every file, lines read = accepted + rejected + duplicates
(`sql/ingest/intermediate/int_file_counts.sql`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from micn.data.sql import create_table_as


@dataclass(frozen=True)
class FileReport:
    source_file: str
    kind: str  # reviews | meta
    format: str
    lines_read: int
    accepted: int
    rejected: int
    duplicates: int
    seconds: float


@dataclass(frozen=True)
class IngestReport:
    dataset: str
    db: str
    files: list[FileReport]
    reviews: int
    users: int
    items: int
    items_without_meta: int
    rejects: int
    seconds: float


def file_reports(con, paths: list[Path], formats: dict[Path, str], seconds: dict[int, float]) -> list[FileReport]:
    """One report per staged file (by index in `paths`), counted by `int_file_counts`."""
    create_table_as(con, "file_counts", "ingest/intermediate/int_file_counts")
    counts = {row[0]: row[1:] for row in con.execute("select * from file_counts").fetchall()}
    reports = []
    for i, path in enumerate(paths):
        lines_read, rejected, duplicates = counts.get(i, (0, 0, 0))
        fmt = formats[path]
        reports.append(
            FileReport(str(path), fmt.split("-")[0], fmt, lines_read, lines_read - rejected - duplicates, rejected,
                       duplicates, round(seconds.get(i, 0.0), 3))
        )
    return reports
