"""Plain helpers and constants shared by the test modules (fixtures live in conftest.py).

Test modules import from here, never from one another or from conftest. Heavy libraries (torch,
duckdb, micn) are imported inside the functions that use them, so conftest can import this module
before anything imports Prefect.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import numpy as np
    import torch

    from micn.data.batch import Batch

REPO = Path(__file__).resolve().parents[1]
AMAZON = REPO.parent / "shared" / "data" / "amazon"

requires_shared = pytest.mark.skipif(
    not AMAZON.is_dir(),
    reason=f"real Amazon samples not found at {AMAZON} (they sit beside the repository only in the project's workspace and CI)",
)

TINY_PIPELINE = {  # the whole pipeline in about a minute: the tiny world, 2 epochs
    "generate": {"profile": "tiny"},
    "train": {"epochs": 2},
}


def raw_files(world: Path) -> tuple[Path, Path]:
    """(reviews file, metadata file) of a generated world, whatever its format."""
    reviews = next(p for p in world.glob("*_5.json.gz"))
    meta = next(world.glob("meta_*.json.gz"))
    return reviews, meta


def copy_repo(dst: Path, **params) -> Path:
    """The repository's files as git sees them (tracked + new, not ignored; no data, no lock) in a
    fresh git repository at `dst`, with `params` merged into params.yaml (section -> {key: value})."""
    import shutil
    import subprocess

    import yaml

    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    generated = ("data/", "dvc.lock", "metrics/", "reports/", "models/")
    for rel in filter(None, files):
        if (REPO / rel).is_file() and (not rel.startswith(generated) or rel.endswith(".gitignore")):
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dst / rel)
    values = yaml.safe_load((dst / "params.yaml").read_text())
    for section, updates in params.items():
        for key, value in updates.items():
            node = values[section]
            *path, last = key.split(".")
            for part in path:
                node = node[part]
            node[last] = value
    (dst / "params.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "PATH": os.environ["PATH"]}
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        subprocess.run(cmd, cwd=dst, env=env, check=True, capture_output=True)
    return dst


def add_oracle_inputs(samples: Path, warehouse: Path, world: Path, dst: Path) -> Path:
    """`samples` as the samples stage writes them for synthetic data: with `oracle/` (the world's
    ground truth) and `negative_sampler.parquet`. Returns `samples` itself when it has them."""
    import json
    import shutil

    import duckdb

    fmap = json.loads((samples / "feature_map.json").read_text())  # the plain file: its keys are rewritten below
    if fmap.get("oracle") is not None and (samples / "negative_sampler.parquet").is_file():
        return samples
    shutil.copytree(samples, dst)
    shutil.copytree(world / "ground_truth", dst / "oracle")
    with duckdb.connect(str(warehouse), read_only=True) as con:
        con.execute("copy (select item_id, count(*) as count from reviews where dataset = $d group by item_id "
                    f"order by item_id) to '{dst / 'negative_sampler.parquet'}' (format parquet)", {"d": fmap["dataset"]})
    fmap["oracle"] = "oracle"
    (dst / "feature_map.json").write_text(json.dumps(fmap, indent=2))
    return dst


# --- synthetic batches for the model tests --------------------------------------------------------

N_ITEMS, N_CATEGORIES, N_USERS = 500, 30, 80
NAMES = ["wide_deep", "din", "dien"]


def make_batch(B: int, T: int, seed: int = 0, lengths: torch.Tensor | None = None) -> Batch:
    """Left-padded random batch; real ids >= 2; lengths uniform in 0..T unless given."""
    import torch

    from micn.data.batch import random_batch

    return random_batch(B, T, N_USERS, N_ITEMS, N_CATEGORIES, torch.Generator().manual_seed(seed), lengths=lengths)


def repad(batch: Batch, T: int) -> Batch:
    """The same batch with histories left-padded to length T (>= the current length)."""
    import dataclasses

    from torch.nn import functional as F

    def pad(x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (T - x.shape[1], 0))

    return dataclasses.replace(
        batch,
        hist_items=pad(batch.hist_items),
        hist_categories=pad(batch.hist_categories),
        hist_neg_items=pad(batch.hist_neg_items),
        hist_neg_categories=pad(batch.hist_neg_categories),
    )


# --- MICN models on those batches -----------------------------------------------------------------


def build_micn(name: str, seed: int = 0, **micn_kwargs):
    """Backbone `name` with MICN joined (item and category widths 18), MICNConfig(**micn_kwargs), built
    after seeding torch with `seed`."""
    import torch

    from micn.models.micn_aux import MICNConfig
    from micn.models.with_micn import build_with_micn

    torch.manual_seed(seed)
    return build_with_micn(name, N_USERS, N_ITEMS, N_CATEGORIES, 18, 18, MICNConfig(**micn_kwargs))


def main_loss(out, label: torch.Tensor) -> torch.Tensor:
    """BCE plus the backbone's own auxiliary losses (everything but MICN's), weight 1."""
    from torch.nn import functional as F

    from micn.models.with_micn import AUX_NAME

    return F.binary_cross_entropy_with_logits(out.logits, label) + sum(
        v for k, v in out.aux_losses.items() if k != AUX_NAME
    )


def planted_batch(B: int = 40, T: int = 16, seed: int = 0) -> tuple[Batch, np.ndarray]:
    """Users whose histories mix two topics; item topic = item index mod 2 (items 2..N_ITEMS−1)."""
    import numpy as np
    import torch

    from micn.data.batch import Batch

    g = torch.Generator().manual_seed(seed)
    hist = torch.randint(2, N_ITEMS, (B, T), generator=g)
    topics = np.full(N_ITEMS, -1)
    topics[2:] = np.arange(2, N_ITEMS) % 2
    batch = Batch(user=torch.randint(2, N_USERS, (B,), generator=g), item=torch.randint(2, N_ITEMS, (B,), generator=g),
                  category=torch.randint(2, N_CATEGORIES, (B,), generator=g), hist_items=hist,
                  hist_categories=hist % 2 + 2, hist_neg_items=hist, hist_neg_categories=hist % 2 + 2,
                  hist_len=torch.full((B,), T), label=torch.ones(B))
    return batch, topics


# --- per-run result files for the report tests (tests/test_report_*.py) ---------------------------


def record(dataset, backbone, variant, seed, auc, max_len=20, phi=None, experiments=("table2",), status="ok",
           **evidence) -> dict:
    """A run record as the grid writes it (metrics/runs/<dataset>/<run>.json); `evidence` adds metrics."""
    name = f"{backbone}-{variant}{'' if phi is None else f'-phi{phi:g}'}-len{max_len}-seed{seed}"
    r = {"run_id": f"{dataset}/{name}", "dataset": dataset, "protocol": "dien", "backbone": backbone,
         "variant": variant, "seed": seed, "max_len": max_len, "phi": phi, "experiments": list(experiments),
         "status": status, "error": None, "attempts": 1,
         "params": {"train": {"lr": 1e-3, "batch_size": 256, "epochs": 5}, "micn": None, "max_len": max_len,
                    "samples_seed": 2022},
         "metrics": None if auc is None else {"auc": auc, "gauc": auc - 0.01, "logloss": 0.5, "oracle_auc": 0.94,
                                              "valid_auc": auc, **evidence},
         "epochs": 3, "best_epoch": 2, "train_seconds": 10.0, "samples_per_s": 5000.0, "device": "cpu",
         "git_revision": "abc", "started": "2026-11-27T10:00:00+00:00", "finished": "2026-11-27T10:01:00+00:00"}
    if status == "failed":
        r.update(metrics=None, error="RuntimeError: boom", attempts=2, epochs=None)
    return r


def write_run(metrics_dir: Path, r: dict, epochs: int = 3) -> None:
    """Record `r` under metrics_dir/runs/ and, for an ok run, a per-epoch learning curve under history/."""
    import json

    path = metrics_dir / "runs" / f"{r['run_id']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(r))
    if r["status"] == "ok":
        h = metrics_dir / "history" / f"{r['run_id']}.json"
        h.parent.mkdir(parents=True, exist_ok=True)
        h.write_text(json.dumps([{"epoch": e, "samples": 100, "seconds": 1.0, "samples_per_s": 100.0,
                                  "train_loss": 0.6, "valid_auc": 0.5 + 0.01 * e, "valid_gauc": 0.5,
                                  "valid_logloss": 0.6} for e in range(1, epochs + 1)]))


def capsule_run(d: Path, seed, purity, shuffled, overlap, backbone="din", phi=0.3, steps=True) -> dict:
    """A synthetic MICN run with capsule evidence in its record and (per evaluation) in its history;
    with `steps`, four evaluations at optimizer steps 100..400, the first during the warm-up."""
    import json

    r = record("synthetic", backbone, "micn", seed, 0.8 + 0.001 * seed, phi=phi, micn_recall=0.3,
               popularity_recall=0.1, capsule_purity=purity, capsule_purity_shuffled=shuffled, capsule_overlap=overlap)
    r["best_step"] = 200 if steps else None
    write_run(d, r)
    rows = [{"epoch": 1 + i // 2, **({"step": 100 * (i + 1), "warmup": i == 0} if steps else {}),
             "valid_auc": 0.7 + 0.01 * i, "valid_capsule_purity": purity - 0.01 * (3 - i),
             "valid_capsule_purity_shuffled": shuffled, "valid_capsule_overlap": overlap} for i in range(4)]
    (d / "history" / f"{r['run_id']}.json").write_text(json.dumps(rows))
    return r


def mechanism_run(d: Path, kappa, backbone, variant, seed, auc, ablation=None, supervision=None) -> None:
    """A run of the mechanism experiment in the world of interest signal `kappa` (κ = 1: also Table 2's);
    a micn run predicts `supervision` (None: the paper's `target`)."""
    dataset = "synthetic" if kappa == 1.0 else f"synthetic-kappa{kappa:g}".replace(".", "p")
    phi = None if variant == "base" else 0.3
    r = record(dataset, backbone, variant, seed, auc, phi=phi,
               experiments=("mechanism", "table2") if kappa == 1.0 and ablation is None else ("mechanism",),
               history_only_auc=0.9 - 0.01 * kappa, **({"micn_recall": 0.3, "popularity_recall": 0.2}
                                                        if variant == "micn" else {}))
    if ablation:
        r["run_id"] = r["run_id"].replace("-base-", f"-base-{ablation}-")
    if supervision == "history":
        r["run_id"] = r["run_id"].replace("-micn-", "-micn-history-")
    r.update(kappa=kappa, ablation=ablation, supervision=(supervision or "target") if variant == "micn" else None)
    r["metrics"]["oracle_auc"] = 0.95 - 0.02 * kappa
    write_run(d, r)


def t_interval(diffs: np.ndarray) -> tuple:
    """(mean, low, high) of paired differences with the 95 % t interval, each as pytest.approx."""
    import numpy as np
    from scipy import stats

    half = stats.t.ppf(0.975, len(diffs) - 1) * diffs.std(ddof=1) / np.sqrt(len(diffs))
    return pytest.approx(diffs.mean()), pytest.approx(diffs.mean() - half), pytest.approx(diffs.mean() + half)


# --- the samples tests: a hand-made warehouse, and reading a samples folder -----------------------
#
# user  behaviors (item@ts)                         what it exercises
# u1    a@100 b@200 c@300 f@400                     plain sequence; the only user who reviewed f
# u2    b@100 c@100 a@200                           two behaviors share a ts before the target
# u3    c@50                                        < 2 behaviors: dropped
# u4    a@10  d@20  b@20  -> ordered a, b, d        the target shares its ts with b: b leaves its history
# u5    e@5   a@5                                   all at one ts: dropped (nothing strictly before)
# u6    a@1 b@2 c@3 e@4 d@5 a@6                     longer than max_len=3; reviewed every item but f
HAND = {
    "u1": [("a", 100), ("b", 200), ("c", 300), ("f", 400)],
    "u2": [("b", 100), ("c", 100), ("a", 200)],
    "u3": [("c", 50)],
    "u4": [("a", 10), ("d", 20), ("b", 20)],
    "u5": [("e", 5), ("a", 5)],
    "u6": [("a", 1), ("b", 2), ("c", 3), ("e", 4), ("d", 5), ("a", 6)],
}
HAND_CATEGORIES = {"a": "X", "b": "X", "c": "Y", "d": "Y", "e": None, "f": "Z", "z": "W"}  # e: no metadata; z: never reviewed
HAND_MAX_LEN = 3
HAND_FRACTIONS = {"valid_frac": 0.25, "test_frac": 0.25}
HAND_DROPPED = {"fewer than 2 behaviors": 1, "all behaviors at one timestamp": 1}


def make_warehouse(path: Path, sequences: dict, categories: dict, dataset: str = "hand") -> Path:
    """A warehouse with the ingest schema, filled by plain inserts."""
    import duckdb

    from micn.data.sql import run_script

    with duckdb.connect(str(path)) as con:
        run_script(con, "ingest/schema")
        reviewed = {item for seq in sequences.values() for item, _ in seq}
        for user, seq in sequences.items():
            for item, ts in seq:
                con.execute("insert into reviews values ($d, $u, $i, 5.0, $t)", {"d": dataset, "u": user, "i": item, "t": ts})
        for item, category in categories.items():
            if category is None and item not in reviewed:
                continue
            con.execute("insert into items values ($d, $i, $c, null, null, null, $m)",
                        {"d": dataset, "i": item, "c": category or "default_cat", "m": category is not None})
    return path


def read_split(out: Path, split: str):
    """The samples of one split (train / valid / test) as a Polars DataFrame."""
    import polars as pl

    return pl.read_parquet(out / f"{split}.parquet")


def read_vocab(out: Path, name: str) -> dict[str, int]:
    """raw id -> index of one vocabulary (user / item / category) of a samples folder."""
    import polars as pl

    key = {"user": "user_id", "item": "item_id", "category": "category"}[name]
    df = pl.read_parquet(out / f"vocab_{name}.parquet")
    return dict(zip(df[key].to_list(), df["index"].to_list()))


def file_hashes(out: Path) -> dict[str, str]:
    """sha256 of every file below `out` (oracle/ included), by relative path."""
    import hashlib

    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.rglob("*"))
            if p.is_file()}


# --- the ingest tests: raw lines, and reading the warehouse ---------------------------------------

REVIEW = {"reviewerID": "A1", "asin": "B1", "reviewerName": "x", "helpful": [0, 0], "reviewText": "ok",
          "overall": 5.0, "summary": "s", "unixReviewTime": 1163980800, "reviewTime": "11 20, 2006"}

# A hand-built 2014 metadata fixture (no public real sample exists): Python dict literals as
# `str(dict)` writes them, with apostrophes, unicode, \xe9-style escapes, nested related /
# salesRank, several category paths and missing fields.
META_2014_LINES = [
    "{'asin': 'B1', 'title': \"Sony's Caf\\xe9 Headphones\", 'price': 12.5, 'imUrl': 'http://x/1.jpg', "
    "'related': {'also_bought': ['B2', 'B3'], 'also_viewed': ['B4'], 'bought_together': ['B2']}, "
    "'salesRank': {'Electronics': 1234}, 'brand': 'Sony', "
    "'categories': [['Electronics', 'Audio', 'Headphones'], ['Electronics', 'Accessories']]}",
    "{'asin': 'B2', 'title': 'Über “quoted” cable ™', 'categories': [['Electronics', 'Cables']]}",
    "{'asin': 'B3', 'categories': [['Electronics']]}",  # no title, no price
    "{'asin': 'B4', 'title': 'no categories at all'}",
    "{'asin': 'B5', 'title': 'empty path', 'categories': [[]]}",
]


def write_lines(path: Path, lines: list[str | bytes], gz: bool = False) -> Path:
    """`lines` as a file, one per line (gzip-compressed when `gz`)."""
    import gzip

    data = b"".join((ln if isinstance(ln, bytes) else ln.encode()) + b"\n" for ln in lines)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def review_line(**changes) -> str:
    """A 2014 review as a JSON line: REVIEW with `changes` (a value of `...` drops the key)."""
    import json

    r = {**REVIEW, **changes}
    return json.dumps({k: v for k, v in r.items() if v is not ...})


# One bad review line per reason; each reason is the start of what `rejects.reason` says.
BAD_REVIEW_LINES = {
    "malformed JSON": '{"reviewerID": "A9", "asin": "B1", "overall": 4.0, "unixReviewTime": 2000',
    "a JSON array": '["A9", "B1", 4.0, 2000]',
    "a Python dict literal": "{'reviewerID': 'A9', 'asin': 'B1', 'overall': 4.0, 'unixReviewTime': 2000}",
    "reviewerID missing": review_line(reviewerID=...),
    "reviewerID missing, null": review_line(reviewerID=None),
    "reviewerID missing, null or empty": review_line(reviewerID=""),
    "asin missing": review_line(asin=...),
    "asin missing, null": review_line(asin=None),
    "asin missing, null or empty": review_line(asin="  "),
    "unixReviewTime missing": review_line(unixReviewTime=...),
    'unixReviewTime is a string ("yesterday"); expected an integer': review_line(unixReviewTime="yesterday"),
    "invalid UTF-8": review_line(reviewerName="PLACEHOLDER").encode().replace(b"PLACEHOLDER", b"caf\xe9"),
}


def db_rows(db: Path, sql: str) -> list[tuple]:
    """The rows of `sql` on the warehouse `db`, opened read-only."""
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        return con.sql(sql).fetchall()


def warehouse_snapshot(db: Path) -> dict[str, list[tuple]]:
    """Every row of reviews, items and rejects, sorted: equal snapshots = an unchanged dataset."""
    return {t: db_rows(db, f"select * from {t} order by all") for t in ("reviews", "items", "rejects")}


def only_reject(db: Path) -> tuple[int, str, str]:
    """(line_no, reason, raw_line) of the warehouse's one reject (fails if there are several)."""
    [row] = db_rows(db, "select line_no, reason, raw_line from rejects")
    return row


def assert_accounting(report) -> None:
    """Nothing vanishes: for every file, lines read = accepted + rejected + duplicates."""
    for f in report.files:
        assert f.lines_read == f.accepted + f.rejected + f.duplicates, f


def all_rejected_reviews(tmp_path: Path, n: int = 10) -> Path:
    """A reviews file that still looks like reviews (so it passes the sniffer) but whose every line is a reject."""
    return write_lines(tmp_path / "broken.json",
                       [review_line(reviewerID=f"A{i}", unixReviewTime="yesterday") for i in range(n)])


# Words that tell a file's history instead of what it is: in code and SQL comments, and (stricter)
# in the prose of the README and docs. Built from pieces, so that this module does not match them.
HISTORY_IN_CODE = re.compile("|".join((
    r"\bissue" + r"s? \d+", r"DESIGN" + r"(\.md| §)", r"\.\./" + r"shared/docs", r"docs/" + r"research/",
    r"earlier " + r"(runs?|release|version)", r"previous " + r"(release|version)", r"old " + r"importers",
    r"re-" + r"exported", r"no " + r"longer")), re.IGNORECASE)
HISTORY_IN_DOCS = re.compile(r"\bissue" + r"s?\s+#?\d+|\bprevious " + r"release\b|\bear" + r"lier\b|\bn" + r"ow\b|"
                             r"\bno " + r"longer\b|\bused " + r"to\b|\bold " + r"(?:behaviou?r|flag|default|form)",
                             re.IGNORECASE)
OUTSIDE_THE_CLONE = ("../" + "shared", "DESIGN" + ".md", "/wo" + "rk/")  # paths a user's clone does not have


# The synthetic world's files (tests/test_synthetic*.py)

RECORDED_WORLDS = json.loads((REPO / "tests" / "data" / "synthetic_hashes.json").read_text())["worlds"]  # sha256 per file


def read_lines(path: Path) -> list[str]:
    """The lines of a gzip text file."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return f.read().splitlines()


def world_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def sha256_files(root: Path) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in world_files(root).items()}


def generate_parser() -> argparse.ArgumentParser:
    """`micn generate`'s argument parser."""
    from flows.generate import add_arguments

    parser = argparse.ArgumentParser(prog="micn generate")
    add_arguments(parser, "generate")
    return parser
