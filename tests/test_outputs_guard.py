"""Every command writes only what it made (micn/outputs.py): a file it did not write is refused in
one paragraph naming it and left byte-identical, a link is followed (written in place) or refused
(replaced by a rename), never turned into a regular file, and the command's own earlier output is
replaced as before."""

from __future__ import annotations

import argparse
import gzip
import hashlib
import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from micn.config import DatasetSpec, ExperimentSpec, GenerateConfig, GridConfig, MICNConfig, TrainConfig
from micn.data.layout import samples_dir
from micn.errors import MicnError
from micn.experiment import Experiment, plan_runs
from micn.outputs import claim, parquet_with
from tests.helpers import HAND_FRACTIONS, HAND_MAX_LEN, file_hashes, review_line, write_lines

USERS_PARQUET = pa.table({"region": ["north"], "sales": [3]})  # a user's own Parquet file


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def one_paragraph(e: pytest.ExceptionInfo, path: Path) -> str:
    message = str(e.value)
    assert str(path) in message and "\n" not in message
    return message


# --- micn/outputs.py --------------------------------------------------------------------------------


def test_a_parquet_file_cut_short_is_taken_for_an_interrupted_write(tmp_path):
    whole = tmp_path / "users.parquet"
    pq.write_table(pa.table({"user_id": ["a"]}), whole)
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(whole.read_bytes()[:20])
    check = parquet_with("user_id")
    assert check(whole) is None and check(cut) is None
    other = tmp_path / "other.parquet"
    pq.write_table(USERS_PARQUET, other)
    assert check(other) == "a Parquet file without the column(s) user_id"
    text = tmp_path / "text.parquet"
    text.write_text("not parquet")
    assert check(text) == "something other than a Parquet file"
    with pytest.raises(MicnError, match="is a directory where `micn x` writes y"):
        claim(tmp_path, check, what="y", command="x", fix="z")


# --- micn generate ----------------------------------------------------------------------------------


def generate_args(out: Path, **flags) -> argparse.Namespace:
    values = {"params": None, "profile": "tiny", "out": str(out), "raw": "data/raw", "seed": None, "format": None,
              "name": None, "kappa": None, **flags}
    return argparse.Namespace(**values)


def test_generate_refuses_a_users_raw_file_and_leaves_it_byte_identical(tmp_path):
    from flows.generate import run

    out = tmp_path / "raw"
    out.mkdir()
    theirs = out / "reviews_Tiny_5.json.gz"  # a download: gzip stamps a time and the file name
    with gzip.GzipFile(theirs, "wb", mtime=1_400_000_000) as f:
        f.write(review_line().encode() + b"\n")
    before = digest(theirs)
    with pytest.raises(MicnError) as e:
        run(generate_args(out))
    assert "not a synthetic world's file as `micn generate` writes it" in one_paragraph(e, theirs)
    assert digest(theirs) == before and sorted(p.name for p in out.iterdir()) == ["reviews_Tiny_5.json.gz"]


def test_generate_follows_links_to_its_own_world_and_refuses_one_to_a_users_file(tmp_path):
    from flows.generate import check_world_files
    from micn.data.synthetic import generate_world

    config = GenerateConfig(profile="tiny", seed=7)
    world = tmp_path / "world"
    first = generate_world("tiny", world, seed=7)
    assert (first.reviews_file, first.meta_file) == ("reviews_Tiny_5.json.gz", "meta_Tiny.json.gz")
    hashes = file_hashes(world)
    check_world_files(config, world)  # the command's own world: rewritten in place, the same bytes
    generate_world("tiny", world, seed=7)
    assert file_hashes(world) == hashes

    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "reviews_Tiny_5.json.gz").symlink_to(world / "reviews_Tiny_5.json.gz")
    check_world_files(config, linked)  # a link to a world's own file is followed
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    (linked / "meta_Tiny.json.gz").symlink_to(notes)
    with pytest.raises(MicnError) as e:
        check_world_files(config, linked)
    assert "holds something other than a gzip file as micn writes it" in one_paragraph(e, notes)
    assert (linked / "meta_Tiny.json.gz").is_symlink() and notes.read_text() == "my notes\n"


@pytest.mark.parametrize("format", ["2014", "2018"])
def test_the_checked_paths_are_every_file_generate_writes(tmp_path, format):
    from flows.generate import world_files
    from micn.data.synthetic import generate_world

    generate_world("tiny", tmp_path, seed=7, format=format, name="Cables")
    written = {p for p in tmp_path.rglob("*") if p.is_file()}
    assert set(world_files(GenerateConfig(profile="tiny", seed=7, format=format, name="Cables"), tmp_path)) == written


def test_generate_refuses_a_users_ground_truth_table(tmp_path):
    from flows.generate import check_world_files

    truth = tmp_path / "world" / "ground_truth"
    truth.mkdir(parents=True)
    pq.write_table(USERS_PARQUET, truth / "users.parquet")
    before = digest(truth / "users.parquet")
    with pytest.raises(MicnError, match="holds a Parquet file without the column.s. user_id"):
        check_world_files(GenerateConfig(profile="tiny"), tmp_path / "world")
    assert digest(truth / "users.parquet") == before


# --- micn ingest ------------------------------------------------------------------------------------


def test_ingest_refuses_a_duckdb_database_it_did_not_make(tmp_path, meta_2014):
    from micn.data.ingest.load import ingest

    theirs = tmp_path / "mine.duckdb"
    with duckdb.connect(str(theirs)) as con:
        con.execute("create table notes as select 'keep me' as text")
    before = digest(theirs)
    reviews = write_lines(tmp_path / "r.json", [review_line()])
    with pytest.raises(MicnError) as e:
        ingest("d", [reviews], [meta_2014], theirs)
    assert "a DuckDB database that `micn ingest` did not make (it holds notes" in one_paragraph(e, theirs)
    assert digest(theirs) == before and not Path(f"{theirs}.wal").exists()


def test_ingest_follows_a_link_to_its_warehouse_and_refuses_one_to_another_database(tmp_path, meta_2014):
    from micn.data.ingest.load import ingest

    reviews = write_lines(tmp_path / "r.json", [review_line(reviewerID=f"A{i}") for i in range(3)])
    ours = tmp_path / "warehouse.duckdb"
    ingest("d", [reviews], [meta_2014], ours)
    link = tmp_path / "link.duckdb"
    link.symlink_to(ours)
    again = ingest("d", [reviews], [meta_2014], link)  # the warehouse's own file, through the link
    assert again.reviews == 3 and link.is_symlink() and link.resolve() == ours.resolve()

    theirs = tmp_path / "theirs.duckdb"
    with duckdb.connect(str(theirs)) as con:
        con.execute("create table reviews as select 1 as stars")  # a table of the same name is not a warehouse
    before = digest(theirs)
    to_theirs = tmp_path / "to-theirs.duckdb"
    to_theirs.symlink_to(theirs)
    with pytest.raises(MicnError, match="did not make"):
        ingest("d", [reviews], [meta_2014], to_theirs)
    assert to_theirs.is_symlink() and digest(theirs) == before


# --- micn samples -----------------------------------------------------------------------------------


def build_hand(db: Path, out: Path):
    from micn.data.samples.build import build_samples

    return build_samples(db, "hand", out, max_len=HAND_MAX_LEN, **HAND_FRACTIONS)


def test_samples_refuse_a_users_parquet_file_and_write_nothing(hand_db, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    pq.write_table(USERS_PARQUET, out / "train.parquet")
    before = file_hashes(out)
    with pytest.raises(MicnError) as e:
        build_hand(hand_db, out)
    message = one_paragraph(e, out / "train.parquet")
    assert "holds a Parquet file without the column(s) user, item, label, hist_items" in message
    assert file_hashes(out) == before and [p.name for p in out.iterdir()] == ["train.parquet"]

    from flows.samples import run  # the command refuses before its flow starts

    args = argparse.Namespace(params=None, dataset="hand", db=str(hand_db), out=str(out), protocol="dien",
                              max_len=HAND_MAX_LEN, seed=0, **HAND_FRACTIONS)
    with pytest.raises(MicnError, match="train.parquet: holds a Parquet file without"):
        run(args)
    assert file_hashes(out) == before


def test_samples_check_every_name_a_build_writes():
    from micn.data.samples.files import ORACLE_DIR, OWN, output_names

    assert {name.split("/")[0] for name in output_names(has_oracle=True)} == {*OWN, ORACLE_DIR}


def test_samples_refuse_a_link_and_a_foreign_oracle_folder_and_rebuild_their_own(hand_db, dien_build, tmp_path):
    _, built = dien_build
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.parquet").symlink_to(built / "train.parquet")
    with pytest.raises(MicnError) as e:
        build_hand(hand_db, out)
    assert "is a symbolic link" in one_paragraph(e, out / "train.parquet")
    assert (out / "train.parquet").is_symlink() and len(list(out.iterdir())) == 1

    (out / "train.parquet").unlink()
    (out / "oracle").mkdir()
    (out / "oracle" / "notes.md").write_text("my notes")
    with pytest.raises(MicnError, match=r"oracle: holds entries micn does not write there \(notes.md\)"):
        build_hand(hand_db, out)
    assert (out / "oracle" / "notes.md").read_text() == "my notes"

    shutil.rmtree(out / "oracle")
    (out / "mine.txt").write_text("a user's file beside the samples")
    build_hand(hand_db, out)
    first = file_hashes(out)
    build_hand(hand_db, out)  # over its own samples: rebuilt, the same bytes
    assert file_hashes(out) == first and (out / "mine.txt").read_text() == "a user's file beside the samples"


# --- micn grid and micn train -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def grid_run(tiny_samples, tmp_path_factory):
    """(root, spec) of one finished one-epoch grid run on the tiny samples."""
    from micn.grid import run_one

    root = tmp_path_factory.mktemp("grid-root")
    target = samples_dir(root, "tiny", 10)
    target.parent.mkdir(parents=True)
    target.symlink_to(tiny_samples, target_is_directory=True)
    exp = Experiment(datasets={"tiny": DatasetSpec(enabled=True, max_len=10)},
                     experiments={"table2": ExperimentSpec(enabled=True, backbones=("din",), variants=("base",))},
                     grid=GridConfig(seeds=(1,)), train=TrainConfig(epochs=1, batch_size=64, threads=1),
                     micn=MICNConfig(n_neg=20))
    spec = plan_runs(exp)[0]
    assert run_one(spec, exp, root).record.status == "ok"
    return root, spec


def copy_run(root: Path, spec, dst: Path) -> Path:
    for path in (spec.metrics_path(root), spec.history_path(root), spec.model_dir(root)):
        to = dst / path.relative_to(root)
        to.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if path.is_dir() else shutil.copyfile)(path, to)
    return dst


def test_grid_accepts_its_own_runs_and_refuses_a_users_file_or_a_link(grid_run, tmp_path):
    from micn.grid import check_outputs

    root, spec = grid_run
    check_outputs(root, [spec])  # its own finished run: reused or retrained as before
    copy = copy_run(root, spec, tmp_path / "copy")
    record = spec.metrics_path(copy)
    record.write_text("my summary of this run\n")
    with pytest.raises(MicnError) as e:
        check_outputs(copy, [spec])
    assert "holds something other than a JSON object" in one_paragraph(e, record)
    assert record.read_text() == "my summary of this run\n"

    shutil.copyfile(spec.metrics_path(root), record)
    model = spec.model_dir(copy) / "model.pt"
    model.unlink()
    model.symlink_to(spec.model_dir(root) / "model.pt")
    with pytest.raises(MicnError, match="is a symbolic link"):
        check_outputs(copy, [spec])
    assert model.is_symlink()


def test_grid_refuses_the_record_of_another_run_at_a_runs_path(grid_run, tmp_path):
    from micn.grid import check_outputs

    root, spec = grid_run
    copy = copy_run(root, spec, tmp_path / "copy")
    record = spec.metrics_path(copy)
    record.write_text(record.read_text().replace(spec.run_id, "tiny/din-base-len10-seed9"))
    with pytest.raises(MicnError, match=r"a JSON object with run_id 'tiny/din-base-len10-seed9'"):
        check_outputs(copy, [spec])


def test_grid_never_writes_its_lock_through_a_link(tmp_path):
    from micn.grid import LOCK_FILE, holding_root

    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    (tmp_path / LOCK_FILE).symlink_to(notes)
    with pytest.raises(MicnError, match=r"cannot create the grid's lock file \(it is a symbolic link; remove it\)"):
        with holding_root(tmp_path):
            pass
    assert notes.read_text() == "my notes\n" and (tmp_path / LOCK_FILE).is_symlink()


def train_job(out: Path, replace: bool = False):
    from flows.train import TrainJob
    from micn.run import RunConfig, RunPaths

    run = RunConfig(backbone="din", variant="base", seed=1, train=TrainConfig(epochs=1), dataset="tiny")
    return TrainJob(run, RunPaths(samples_dir=Path("unused"), out_dir=out), replace)


def test_train_refuses_a_users_model_file_unless_replace_and_a_link_always(grid_run, tmp_path):
    from flows.train import check_run_files

    root, spec = grid_run
    out = tmp_path / "run"
    shutil.copytree(spec.model_dir(root), out)
    shutil.copyfile(spec.history_path(root), out / "history.json")
    check_run_files(train_job(out))  # a run's own files: resumed or replaced as before

    model = out / "model.pt"
    model.write_text("my model notes\n")
    with pytest.raises(MicnError) as e:
        check_run_files(train_job(out))
    assert "holds something other than a torch file" in one_paragraph(e, model) and "--replace" in str(e.value)
    assert model.read_text() == "my model notes\n"
    check_run_files(train_job(out, replace=True))  # told to replace

    (out / "history.json").unlink()
    (out / "history.json").symlink_to(spec.history_path(root))
    for replace in (False, True):
        with pytest.raises(MicnError, match="history.json: is a symbolic link"):
            check_run_files(train_job(out, replace))
    assert (out / "history.json").is_symlink()


# --- micn report ------------------------------------------------------------------------------------


def test_report_refuses_a_users_report_and_replaces_its_own(report_metrics_dir, tmp_path):
    from flows.report import check_report_files
    from micn.report import write_report
    from micn.report.database import build_metrics_db

    d, _ = report_metrics_dir
    db = tmp_path / "metrics.duckdb"
    build_metrics_db(d, db)
    out = tmp_path / "reports"
    write_report(db, out)
    check_report_files(out)  # its own report, figures and auc.json: rewritten as before
    elsewhere = tmp_path / "published" / "report.md"
    elsewhere.parent.mkdir()
    (out / "report.md").rename(elsewhere)
    (out / "report.md").symlink_to(elsewhere)
    check_report_files(out)  # a link to its own report is followed
    write_report(db, out)
    assert (out / "report.md").is_symlink() and elsewhere.read_text().startswith("# MICN experiment report\n")

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.md").write_text("# My quarterly report\n")
    (mine / "auc.json").write_text('{"budget": 3}\n')
    with pytest.raises(MicnError) as e:
        check_report_files(mine)
    assert "first line is not '# MICN experiment report'" in one_paragraph(e, mine / "report.md")
    (mine / "report.md").unlink()
    with pytest.raises(MicnError, match=r"auc.json: holds something other than a JSON array"):
        check_report_files(mine)
    assert (mine / "auc.json").read_text() == '{"budget": 3}\n'

    (mine / "auc.json").unlink()
    (mine / "figures").mkdir()
    (mine / "figures" / "mechanism.png").symlink_to(out / "figures" / "auc_by_backbone.png")
    with pytest.raises(MicnError, match="mechanism.png: is a symbolic link"):
        check_report_files(mine)

