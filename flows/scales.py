"""`micn scales`: several studies' run records → one cross-scale database and report, as a Prefect flow.

    micn scales --study default=metrics --study electronics=studies/electronics/metrics \
                --study books=studies/books/metrics --db studies/scales/scales.duckdb --out studies/scales

Each `--study NAME=DIR` names a metrics folder (runs/ and history/, as `micn report` reads it); the
order given is the order of the scales in the table and the figure. A study named `electronics`
or `books` is set beside the paper's Table 2 lift of that column (micn/report/scales.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from micn.errors import MicnError
from micn.outputs import anything, claim, first_line
from micn.report.scales import FIGURE, build_scales_db, write_scales_report

DESCRIPTION = (
    "Put MICN − base and MICN − control of several studies' Table 2 (each a metrics folder with runs/ and "
    "history/, checked as `micn report` checks them) side by side per backbone, next to the paper's own Table 2 "
    "lifts: the database (table scale_cells, view paper_scales), OUT/scales.md and one figure."
)
TITLE = "# Table 2 across scales"  # the first line of scales.md


def add_arguments(parser: argparse.ArgumentParser, command: str = "scales") -> None:
    parser.add_argument("--study", action="append", required=True, metavar="NAME=DIR", type=study_argument,
                        help="a study's name and metrics folder (repeat; in the order of the table)")
    parser.add_argument("--db", required=True, metavar="PATH", help="the cross-scale database to (re)build")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder of scales.md and figures/scales.png")


def study_argument(text: str) -> tuple[str, Path]:
    """`NAME=DIR` -> (NAME, DIR); NAME a plain word (letters, digits, _ and -)."""
    name, sep, folder = text.partition("=")
    if not sep or not name or not folder or not name.replace("_", "").replace("-", "").isalnum():
        raise argparse.ArgumentTypeError(f"expected NAME=DIR with NAME a plain word (e.g. books=studies/books/metrics), "
                                         f"got {text[:80]!r}")
    return name, Path(folder)


@task(cache_policy=NO_CACHE)
def build(studies: dict[str, str], db: str) -> int:
    return build_scales_db(studies, db)


@task(cache_policy=NO_CACHE)
def render(db: str, out: str) -> str:
    return str(write_scales_report(db, out))


@flow(name="scales")
def scales_flow(studies: dict[str, str], db: str, out: str) -> dict:
    rows = build(studies, db)
    return {"rows": rows, "report": render(db, out)}


def run(args: argparse.Namespace) -> None:
    studies = dict(args.study)
    if len(studies) != len(args.study):
        raise MicnError("--study: a name is given twice; give each study once (NAME=DIR).")
    out = Path(args.out)
    fix = "pass another --out"
    claim(out / "scales.md", first_line(TITLE), what="the cross-scale report", command="scales", follow_links=True,
          fix=fix)
    figures = claim(out / "figures", anything, what="the figures folder", command="scales", folder=True,
                    follow_links=True, fix=fix)
    claim(figures / FIGURE, anything, what=f"the figure {FIGURE}", command="scales", fix=fix)
    r = scales_flow({name: str(folder) for name, folder in studies.items()}, args.db, args.out)
    print(f"{args.db}: {r['rows']} MICN cells from {len(studies)} studies ({', '.join(studies)}) → {r['report']}")
