"""One paragraph for every failure a user of `micn ingest` can meet: deeply nested lines, a --db
that is a text file or a folder, a failed first ingest (no file left), a locked warehouse, a full
disk, a read-only folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from micn.data.formats import sniff_format
from micn.data.ingest.load import ingest
from micn.errors import MicnError
from tests.helpers import META_2014_LINES, db_rows, only_reject, review_line, write_lines


# --- one paragraph for every failure a user can meet -------------------------------------------


DEEP = "[" * 100_000 + "]" * 100_000


def test_deeply_nested_json_line_is_a_reject_not_a_recursion_error(tmp_path, meta_2014):
    src = write_lines(tmp_path / "r.json", [review_line(reviewerID="A1"), DEEP, review_line(reviewerID="A2")])
    db = tmp_path / "w.duckdb"
    report = ingest("d", [src], [meta_2014], db)
    assert (report.files[0].accepted, report.files[0].rejected) == (2, 1)
    line_no, reason, _ = only_reject(db)
    assert line_no == 2 and "nested too deeply" in reason


def test_deeply_nested_2014_metadata_line_is_a_reject_not_a_recursion_error(tmp_path):
    deep = "{'asin': 'B9', 'related': " + DEEP + "}"
    meta = write_lines(tmp_path / "meta.json", [META_2014_LINES[0], deep])
    db = tmp_path / "w.duckdb"
    report = ingest("d", [write_lines(tmp_path / "r.json", [review_line()])], [meta], db)
    assert report.files[1].rejected == 1
    assert "nested too deeply" in only_reject(db)[1] or "RecursionError" in only_reject(db)[1]


def test_format_sniffer_survives_deeply_nested_lines(tmp_path):
    deep_object = '{"reviewerID": "A9", "x": ' + DEEP + "}"  # starts like a record, so the sniffer parses it
    mostly_deep = write_lines(tmp_path / "deep.json", [deep_object, deep_object, review_line()])
    assert sniff_format(mostly_deep) == "reviews-2014"
    only_deep = write_lines(tmp_path / "only_deep.json", [deep_object])
    with pytest.raises(MicnError, match="unknown format"):
        sniff_format(only_deep)


def test_db_that_is_a_text_file_is_refused_and_left_untouched(tmp_path, meta_2014):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    with pytest.raises(MicnError, match="not a DuckDB database file") as e:
        ingest("d", [write_lines(tmp_path / "r.json", [review_line()])], [meta_2014], notes)
    assert str(notes) in str(e.value)
    assert notes.read_text() == "my notes\n"


def test_db_that_is_a_directory_is_refused(tmp_path, meta_2014):
    folder = tmp_path / "warehouse"
    folder.mkdir()
    with pytest.raises(MicnError, match="is a directory") as e:
        ingest("d", [write_lines(tmp_path / "r.json", [review_line()])], [meta_2014], folder)
    assert str(folder) in str(e.value)
    assert list(folder.iterdir()) == []


def test_failed_first_ingest_leaves_no_warehouse_file(tmp_path, meta_2014):
    lines = [review_line(reviewerID=f"A{i}", unixReviewTime=1_163_980_800 + i, reviewText=f"text {i} " * 40) for i in range(5000)]
    good = write_lines(tmp_path / "good.json", lines, gz=True)
    truncated = tmp_path / "truncated.json.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    db = tmp_path / "new_folder" / "w.duckdb"
    with pytest.raises(MicnError, match="gzip"):
        ingest("d", [truncated], [meta_2014], db)
    assert not db.exists() and not Path(f"{db}.wal").exists() and not db.parent.exists()


HOLD_LOCK = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
print("holding", flush=True)
time.sleep(120)
"""


@pytest.mark.integration
def test_warehouse_locked_by_another_process_names_the_file_and_the_process(tmp_path, meta_2014):
    import subprocess
    import sys

    db = tmp_path / "w.duckdb"
    reviews = write_lines(tmp_path / "r.json", [review_line()])
    ingest("d", [reviews], [meta_2014], db)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(MicnError, match="another process") as e:
            ingest("d", [reviews], [meta_2014], db)
    finally:
        holder.kill()
        holder.wait()
    message = str(e.value)
    assert str(db) in message and f"PID {holder.pid}" in message and "\n" not in message
    assert db_rows(db, "select user_id from reviews") == [("A1",)]  # still there, unharmed


def mount_tmpfs(path: Path, options: str) -> None:
    """Mount a small tmpfs at `path` (root only); skip the test with the reason otherwise."""
    import os
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs (a full or read-only file system)")
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


@pytest.fixture
def mounts():
    import subprocess

    mounted: list[Path] = []
    yield mounted
    for path in mounted:
        subprocess.run(["umount", str(path)], check=False)


def test_full_disk_is_one_paragraph_and_keeps_the_existing_warehouse(tmp_path, meta_2014, mounts):
    import random
    import string

    disk = tmp_path / "disk"
    mount_tmpfs(disk, "size=3m")
    mounts.append(disk)
    db = disk / "w.duckdb"
    ingest("d", [write_lines(tmp_path / "small.json", [review_line(reviewerID=f"A{i}") for i in range(100)])], [meta_2014], db)
    rng = random.Random(0)  # incompressible ids so that the warehouse cannot fit in 3 MB
    big = [review_line(reviewerID="".join(rng.choices(string.ascii_letters, k=30)), asin=f"B{i % 997}", unixReviewTime=1_163_980_800 + i)
           for i in range(200_000)]
    with pytest.raises(MicnError, match="disk is full") as e:
        ingest("d", [write_lines(tmp_path / "big.json", big)], [meta_2014], db)
    message = str(e.value)
    assert str(db) in message and "cannot rollback" not in message and "\n" not in message
    assert db_rows(db, "select count(*) from reviews") == [(100,)]


def test_full_disk_on_a_first_ingest_leaves_no_warehouse_file(tmp_path, meta_2014, mounts):
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "size=200k")
    mounts.append(disk)
    with pytest.raises(MicnError, match="disk is full.*no warehouse file was left behind"):
        ingest("d", [write_lines(tmp_path / "r.json", [review_line()])], [meta_2014], disk / "w.duckdb")
    assert list(disk.iterdir()) == []


def test_read_only_folder_is_one_paragraph(tmp_path, meta_2014, mounts):
    ro = tmp_path / "ro"
    mount_tmpfs(ro, "ro,size=1m")
    mounts.append(ro)
    reviews = write_lines(tmp_path / "r.json", [review_line()])
    for db in (ro / "w.duckdb", ro / "sub" / "w.duckdb"):
        with pytest.raises(MicnError, match="cannot write") as e:
            ingest("d", [reviews], [meta_2014], db)
        assert str(db) in str(e.value) and "\n" not in str(e.value)
