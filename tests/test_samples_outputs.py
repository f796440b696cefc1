"""What a samples folder holds beside the splits: the negative sampler, the oracle files, the
feature map (no path back into the warehouse or the raw folder), the summary table; and what the
folder needs (nothing else) once built."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest

from micn.data.ingest.load import ingest
from micn.data.samples.build import build_samples
from micn.data.samples.files import ORACLE_FILES, output_names
from micn.errors import MicnError
from tests.helpers import HAND_FRACTIONS, HAND_MAX_LEN, raw_files


# --- what evaluation reads beside the samples --------------------------------------------------


def test_negative_sampler_counts_equal_a_direct_sql_count(tiny_warehouse, tiny_dien, dien_build, hand_db):
    for db, dataset, out in ((tiny_warehouse, "tiny", tiny_dien[1]), (hand_db, "hand", dien_build[1])):
        table = pl.read_parquet(out / "negative_sampler.parquet")
        assert table.schema == {"item_id": pl.String, "count": pl.Int64}
        with duckdb.connect(str(db), read_only=True) as con:
            direct = con.execute("select item_id, count(*) from reviews where dataset = $d group by item_id order by item_id",
                                 {"d": dataset}).fetchall()
        assert list(table.iter_rows()) == direct
        assert table["item_id"].to_list() == sorted(table["item_id"].to_list())


def test_oracle_files_are_byte_copies_of_the_worlds_ground_truth(tiny_world, tiny_dien):
    _, out = tiny_dien
    truth = tiny_world / "ground_truth"
    assert sorted(p.name for p in (out / "oracle").iterdir()) == sorted(ORACLE_FILES)
    for name in ORACLE_FILES:
        assert (out / "oracle" / name).read_bytes() == (truth / name).read_bytes(), name
    assert json.loads((out / "feature_map.json").read_text())["oracle"] == "oracle"


def test_feature_map_holds_no_path_into_the_warehouse_or_the_raw_folder(tiny_warehouse, tiny_world, tiny_dien):
    _, out = tiny_dien
    fmap = json.loads((out / "feature_map.json").read_text())
    assert "warehouse" not in fmap and fmap["source"] == tiny_warehouse.name
    text = json.dumps(fmap)
    for path in (tiny_warehouse.resolve(), tiny_warehouse.parent.resolve(), tiny_world.resolve()):
        assert str(path) not in text
    # every file the feature map names is inside the samples folder
    named = [*fmap["splits"].values(), *fmap["vocab_files"].values(), fmap["oracle"]]
    assert all((out / name).exists() and not Path(name).is_absolute() and ".." not in Path(name).parts for name in named)


def test_samples_folder_works_without_the_warehouse_and_the_raw_folder(tiny_world, tmp_path):
    """Copy the world, build, then delete the warehouse and the raw folder: nothing the samples
    hold points back at them (what training and `micn interests` rely on)."""
    world = shutil.copytree(tiny_world, tmp_path / "world")
    reviews, meta = raw_files(world)
    db = tmp_path / "w.duckdb"
    ingest("tiny", [reviews], [meta], db)
    build_samples(db, "tiny", tmp_path / "samples", max_len=10, seed=11)
    shutil.rmtree(world)
    db.unlink()
    out = tmp_path / "samples"
    fmap = json.loads((out / "feature_map.json").read_text())
    assert (out / fmap["oracle"] / "world.json").is_file() and (out / "negative_sampler.parquet").is_file()


def test_ground_truth_missing_a_file_is_a_clear_error(tiny_world, tmp_path):
    world = shutil.copytree(tiny_world, tmp_path / "world")
    (world / "ground_truth" / "users.parquet").unlink()
    reviews, meta = raw_files(world)
    ingest("tiny", [reviews], [meta], tmp_path / "w.duckdb")
    with pytest.raises(MicnError, match=r"ground_truth: a synthetic world's ground truth without users\.parquet"):
        build_samples(tmp_path / "w.duckdb", "tiny", tmp_path / "out", max_len=10)
    assert not (tmp_path / "out").exists()


def test_real_data_over_synthetic_samples_removes_the_stale_oracle(tiny_warehouse, hand_db, tmp_path):
    out = tmp_path / "out"
    build_samples(tiny_warehouse, "tiny", out, max_len=10, seed=11)
    assert (out / "oracle").is_dir()
    build_samples(hand_db, "hand", out, max_len=HAND_MAX_LEN, **HAND_FRACTIONS)
    assert not (out / "oracle").exists()
    assert json.loads((out / "feature_map.json").read_text())["oracle"] is None
    assert sorted(p.name for p in out.iterdir()) == sorted(Path(f).name for f in output_names(False))


# --- the summary table -------------------------------------------------------------------------


def test_the_summary_table_holds_the_reports_rows(dien_build):
    report, out = dien_build
    table = pl.read_parquet(out / "samples_summary.parquet")
    assert table.columns == ["subject", "outcome", "reason", "n"]
    assert list(table.iter_rows()) == report.summary_rows()
