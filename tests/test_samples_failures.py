"""Failures a user of `micn samples` can meet, each one clear error before or without damage:
degenerate data, a missing or foreign warehouse file, a locked warehouse, a full disk, a read-only
folder, a staging folder left by a killed build; and the warehouse is never written."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest

from micn.data.samples.build import build_samples
from micn.data.samples.publish import writing
from micn.data.sql import run_script
from micn.errors import MicnError
from tests.helpers import HAND, HAND_CATEGORIES, HAND_FRACTIONS, HAND_MAX_LEN, file_hashes, make_warehouse


# --- degenerate data ---------------------------------------------------------------------------


def test_missing_warehouse_and_empty_dataset(tmp_path):
    with pytest.raises(MicnError, match="no such warehouse file"):
        build_samples(tmp_path / "missing.duckdb", "hand", tmp_path / "out")
    db = tmp_path / "w.duckdb"
    with duckdb.connect(str(db)) as con:
        run_script(con, "ingest/schema")
        con.execute("insert into items values ('empty', 'a', 'X', null, null, null, true)")
    with pytest.raises(MicnError, match="dataset='empty' has no reviews"):
        build_samples(db, "empty", tmp_path / "out")


def test_every_user_with_one_behavior_gives_a_clear_error(tmp_path):
    db = make_warehouse(tmp_path / "w.duckdb", {"u1": [("a", 1)], "u2": [("b", 2)], "u3": [("a", 3)]},
                        {"a": "X", "b": "Y"})
    with pytest.raises(MicnError, match=r"none of its 3 users can give a sample \(3 users: fewer than 2 behaviors\), "
                                        r"so no samples can be built"):
        build_samples(db, "hand", tmp_path / "out")


def test_too_few_users_for_a_training_split(tmp_path):
    db = make_warehouse(tmp_path / "w.duckdb", {"u1": [("a", 1), ("b", 2)], "u2": [("b", 1), ("a", 2)]}, {"a": "X", "b": "Y"})
    with pytest.raises(MicnError, match=r"the training split is empty \(2 usable users, protocol='dien'"):
        build_samples(db, "hand", tmp_path / "out")


def test_warehouse_is_not_written(hand_db, dien_build):
    before = hand_db.stat().st_mtime_ns, hashlib.sha256(hand_db.read_bytes()).hexdigest()
    build_samples(hand_db, "hand", hand_db.parent / "again", max_len=HAND_MAX_LEN, **HAND_FRACTIONS)
    assert (hand_db.stat().st_mtime_ns, hashlib.sha256(hand_db.read_bytes()).hexdigest()) == before


# --- failures a user can meet ------------------------------------------------------------------


def test_a_file_that_is_no_duckdb_warehouse_is_a_clear_error(tmp_path):
    text = tmp_path / "notes.duckdb"
    text.write_text("hello\nworld\n")
    empty = tmp_path / "empty.duckdb"
    empty.touch()
    for path, what in ((text, r"a file of 12 bytes without DuckDB's header"), (empty, "an empty file")):
        with pytest.raises(MicnError, match=rf"{path.name}: not a DuckDB database file \({what}\); give the warehouse"):
            build_samples(path, "hand", tmp_path / "out")
    with pytest.raises(MicnError, match=r": is a directory, not a warehouse file"):
        build_samples(tmp_path, "hand", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_micn_samples_on_a_text_file_prints_one_paragraph_and_exits_2(tmp_path):
    text = tmp_path / "warehouse.duckdb"
    text.write_text("not a database\n")
    done = subprocess.run([sys.executable, "-m", "flows.cli", "samples", "--db", str(text), "--dataset", "tiny",
                           "--out", str(tmp_path / "out")], cwd=Path(__file__).resolve().parents[1],
                          env={**os.environ, "MICN_PREFECT_SERVER": "temporary"}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    assert done.stderr.strip().splitlines() == [
        f"micn samples: error: {text}: not a DuckDB database file (a file of 15 bytes without DuckDB's header); "
        "give the warehouse written by `micn ingest` (e.g. data/warehouse.duckdb)."]
    assert not (tmp_path / "out").exists()


def test_a_warehouse_locked_by_another_process_is_a_clear_error(tmp_path):
    db = make_warehouse(tmp_path / "w.duckdb", HAND, HAND_CATEGORIES)
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; con = duckdb.connect(sys.argv[1]); "
                               "print('holding', flush=True); time.sleep(60)", str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(MicnError, match=r"another process holds this warehouse open for writing"):
            build_samples(db, "hand", tmp_path / "out", max_len=HAND_MAX_LEN, **HAND_FRACTIONS)
    finally:
        holder.kill()
        holder.wait()


@contextmanager
def small_disk(path: Path, size: str):
    """A tmpfs of `size` mounted at `path` (root only; skipped elsewhere with the reason)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs needs root")
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_full_disk_is_one_error_naming_the_file_and_keeps_the_existing_samples(hand_db, tiny_warehouse, tmp_path):
    with small_disk(tmp_path / "disk", "96k") as disk:
        out = disk / "samples"
        build_samples(hand_db, "hand", out, max_len=HAND_MAX_LEN, **HAND_FRACTIONS)
        before = file_hashes(out)
        with pytest.raises(MicnError, match=rf"{out}/\S+: cannot write the samples \(the disk is full: free some space "
                                            r"and rerun\); no partial file is left and the previous samples, if any, "
                                            r"are unchanged\.") as caught:
            build_samples(tiny_warehouse, "tiny", out, max_len=10, seed=11)
        assert "\n" not in str(caught.value)
        assert file_hashes(out) == before
        assert sorted(p.name for p in out.iterdir()) == sorted(before)  # no staging folder left behind


def test_read_only_output_folder_is_one_error_and_writes_nothing(hand_db, tmp_path):
    with small_disk(tmp_path / "disk", "1m") as disk:
        out = disk / "samples"
        build_samples(hand_db, "hand", out, max_len=HAND_MAX_LEN, **HAND_FRACTIONS)
        before = file_hashes(out)
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        for target in (out, disk / "new" / "samples"):
            with pytest.raises(MicnError, match=r": cannot write the samples \(the file system is read-only"):
                build_samples(hand_db, "hand", target, max_len=HAND_MAX_LEN, seed=4, **HAND_FRACTIONS)
        assert file_hashes(out) == before and not (disk / "new").exists()


def test_a_staging_folder_left_by_a_killed_build_is_removed(hand_db, tmp_path):
    out = tmp_path / "out"
    stale = out / ".micn-samples-killed"
    stale.mkdir(parents=True)
    (stale / "train.parquet").write_bytes(b"half")
    (out / "mine.txt").write_text("a user's file")
    build_samples(hand_db, "hand", out, max_len=HAND_MAX_LEN, **HAND_FRACTIONS)
    assert not stale.exists() and (out / "mine.txt").read_text() == "a user's file"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_a_failed_write_names_the_file_it_cannot_write(tmp_path):
    missing = tmp_path / "no" / "such" / "samples_summary.parquet"
    with pytest.raises(MicnError, match=rf"{missing}: cannot write the samples"):
        with writing(missing):
            missing.write_bytes(b"summary")
    assert not missing.parent.exists()
