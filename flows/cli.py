"""The `micn` console script: one subcommand per pipeline stage, each running its Prefect flow.

The CLI lives in `flows/` (not `micn/`) because it starts flows, and `micn/` stays free of
Prefect. Errors caused by input (`MicnError`) are printed as one paragraph, exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from micn.errors import MicnError

EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    from micn.data.synthetic import PROFILES

    p = argparse.ArgumentParser(
        prog="micn",
        description="MICN: interest-based item representations for CTR models. Each subcommand runs one "
        "pipeline stage as a Prefect flow; `dvc repro` runs them all in order.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    g = sub.add_parser(
        "generate",
        help="write a synthetic Amazon world (raw review + metadata files and ground truth)",
        description="Write a seeded synthetic Amazon world with planted multi-interest users: "
        "reviews_<Name>_5.json.gz + meta_<Name>.json.gz (2014 format) or <Name>_5.json.gz + "
        "meta_<Name>.json.gz (2018 format), plus ground_truth/ for the oracle scorer.",
    )
    g.add_argument("--params", default=None, metavar="FILE",
                   help="pipeline mode: take profile, seed and format from the file's `generate` section, after "
                   "checking that every enabled dataset's raw files are present (fail before any work)")
    g.add_argument("--profile", choices=sorted(PROFILES), help="size of the world: " + ", ".join(
        f"{n} ({pr.n_users:,} users, {pr.n_items:,} items, {pr.n_reviews:,} reviews)" for n, pr in PROFILES.items()))
    g.add_argument("--out", required=True, metavar="DIR", help="output directory (created if missing)")
    g.add_argument("--raw", default="data/raw", metavar="DIR",
                   help="with --params: folder of the real datasets' raw files, data/raw/<dataset>/ (default data/raw)")
    g.add_argument("--seed", type=int, default=0, metavar="N", help="random seed; the same seed gives identical files (default 0)")
    g.add_argument("--format", dest="fmt", choices=["2014", "2018"], default="2014",
                   help="raw file format of the Amazon release to imitate (default 2014)")
    g.add_argument("--name", default=None, metavar="NAME",
                   help="category name in the file names (default: the profile name, title-cased)")

    i = sub.add_parser(
        "ingest",
        help="load raw Amazon review + metadata files into the DuckDB warehouse",
        description="Load raw Amazon files (2014 or 2018 release, plain or gzip, format detected from the content) "
        "into the DuckDB warehouse: tables reviews, items, rejects, ingest_log. Re-ingesting a dataset replaces its "
        "rows in one transaction; a failed ingest leaves the warehouse as it was.",
    )
    i.add_argument("--params", default=None, metavar="FILE",
                   help="pipeline mode: ingest every dataset enabled in the file's `datasets` section from "
                   "RAW/<dataset>/ (*_5.json[.gz] reviews, meta_*.json[.gz] metadata) instead of --dataset/--reviews/--meta")
    i.add_argument("--raw", default="data/raw", metavar="DIR", help="with --params: folder of the raw datasets (default data/raw)")
    i.add_argument("--dataset", metavar="NAME", help="dataset name in the warehouse, e.g. electronics")
    i.add_argument("--reviews", nargs="+", metavar="FILE", help="one or more review files (JSON lines)")
    i.add_argument("--meta", nargs="+", metavar="FILE",
                   help="one or more metadata files (2014 Python-literal lines or 2018 JSON lines)")
    i.add_argument("--db", required=True, metavar="PATH", help="DuckDB warehouse file (created if missing)")
    s = sub.add_parser(
        "samples",
        help="build train/valid/test CTR samples (behavior sequences, negatives, vocabularies) from the warehouse",
        description="Build one dataset's samples from the DuckDB warehouse (read-only): per-user behavior "
        "sequences, sampled negatives, user-disjoint (dien) or leave-last-out (din) splits, vocabularies fitted on "
        "train. Writes train/valid/test.parquet, feature_map.json, vocab_*.parquet and samples_summary.parquet.",
    )
    s.add_argument("--params", default=None, metavar="FILE",
                   help="pipeline mode: build OUT/<dataset>/len<max_len> for every enabled dataset and every history "
                   "length the enabled experiments train on, with the file's `samples` section")
    s.add_argument("--dataset", metavar="NAME", help="dataset name in the warehouse")
    s.add_argument("--db", required=True, metavar="PATH", help="DuckDB warehouse file written by `micn ingest`")
    s.add_argument("--out", required=True, metavar="DIR", help="output directory for this dataset's samples")
    s.add_argument("--protocol", choices=["dien", "din"], default="dien",
                   help="dien (default): last behavior per user, users split into train/valid/test; "
                   "din: every prefix is a training sample, each user's last behavior is the test pair")
    s.add_argument("--max-len", type=int, default=20, metavar="N",
                   help="history length kept (most recent N, left-padded); paper: 10 Electronics, 20 Books")
    s.add_argument("--seed", type=int, default=0, metavar="N", help="seed of splits and negatives (default 0)")
    s.add_argument("--valid-frac", type=float, default=0.1, metavar="F", help="fraction of users for validation (dien)")
    s.add_argument("--test-frac", type=float, default=0.1, metavar="F", help="fraction of users for test (dien)")

    t = sub.add_parser(
        "train",
        help="train and evaluate one backbone on one dataset's samples",
        description="Train one CTR backbone with Adam, select the best epoch on validation AUC (early stopping), "
        "and evaluate on test (AUC, GAUC, logloss, and the oracle AUC on synthetic data). Training parameters "
        "come from the `train` section of params.yaml. Resumes from OUT/checkpoint.pt when present.",
    )
    t.add_argument("--dataset", required=True, metavar="NAME", help="dataset name (must match the samples' feature map)")
    t.add_argument("--samples", required=True, metavar="DIR", help="samples directory written by `micn samples`")
    t.add_argument("--backbone", required=True, choices=["wide_deep", "din", "dien"], help="the CTR model to train")
    t.add_argument("--seed", type=int, required=True, metavar="N", help="seed of initialisation and batch order")
    t.add_argument("--out", required=True, metavar="DIR",
                   help="run directory: metrics.json, history.json, model.pt, checkpoint.pt")
    t.add_argument("--params", default="params.yaml", metavar="FILE", help="parameter file (default params.yaml)")
    t.add_argument("--micn", action=argparse.BooleanOptionalAction, default=None,
                   help="train with (--micn) or without (--no-micn) the MICN auxiliary task; default: `micn.enabled` "
                   "in the parameter file, whose `micn` section also holds d_aux, k_max, iterations, pow_p, n_neg, "
                   "sampler, lambda_micn, phi")
    t.add_argument("--variant", choices=["base", "micn"], default=None,
                   help="the same switch by name (base = --no-micn, micn = --micn), as the DVC grid spells it")

    n = sub.add_parser(
        "interests",
        help="show a user's interest capsules from a run trained with MICN",
        description="Load a run trained with MICN, route one user's history through the capsule network and print "
        "each active interest with its nearest items and dominant categories; on synthetic data also the purity "
        "of the capsules against the planted topics over the test users.",
    )
    n.add_argument("--run", required=True, metavar="DIR", help="run directory of `micn train --micn` (holds model.pt)")
    n.add_argument("--user", required=True, metavar="ID", help="raw user id (reviewerID)")
    n.add_argument("--samples", default=None, metavar="DIR",
                   help="samples directory the run was trained on (default: looked up from the run's metrics.json)")
    n.add_argument("--items", type=int, default=5, metavar="N", help="nearest items shown per capsule (default 5)")

    gr = sub.add_parser(
        "grid",
        help="train every run of the enabled experiments (datasets x backbones x ±MICN x seeds) as one Prefect flow",
        description="Train the grid of params.yaml's enabled experiments (Table 2: backbones ± MICN; Table 3: φ; "
        "Table 4: max_len) over grid.seeds, fanned out through the flow's task runner: threads, or Dask/Ray when "
        "grid.address or $MICN_GRID_ADDRESS names a cluster. Writes metrics/runs/<dataset>/<run>.json, "
        "metrics/history/<dataset>/<run>.json and models/<dataset>/<run>/. Unchanged finished runs are reused; a run "
        "that fails after its retries is recorded with its error and the others go on.",
    )
    gr.add_argument("--params", default="params.yaml", metavar="FILE", help="parameter file (default params.yaml)")
    gr.add_argument("--root", default=".", metavar="DIR", help="repository folder holding data/, metrics/, models/ (default .)")

    r = sub.add_parser(
        "report",
        help="build metrics/metrics.duckdb from the per-run files and write reports/report.md with plots",
        description="Build the metrics database (tables runs and history; views paper_table2, paper_table3, "
        "paper_table4, failed_runs) from the grid's per-run files in one step, then write the report (the three "
        "tables, PNG plots, failed runs marked) and publish the tables as Prefect artifacts.",
    )
    r.add_argument("--metrics", default="metrics", metavar="DIR", help="folder with runs/ and history/ (default metrics)")
    r.add_argument("--db", default="metrics/metrics.duckdb", metavar="PATH", help="database to (re)build (default metrics/metrics.duckdb)")
    r.add_argument("--out", default="reports", metavar="DIR", help="report folder (default reports)")

    sv = sub.add_parser(
        "serve",
        help="register the scheduled pipeline deployment and run its flow runs (needs `prefect server start`)",
        description="Create the deployment micn-pipeline/NAME, whose flow runs `dvc repro` in REPO, with a cron "
        "schedule, and execute its runs (scheduled or triggered from the UI/CLI) in this process until interrupted. "
        "Needs PREFECT_API_URL pointing at a running Prefect server.",
    )
    sv.add_argument("--repo", default=".", metavar="DIR", help="repository checkout the flow runs `dvc repro` in (default .)")
    sv.add_argument("--cron", default="0 3 * * *", metavar="EXPR", help="cron schedule (default '0 3 * * *': 03:00 daily)")
    sv.add_argument("--timezone", default="UTC", metavar="TZ", help="time zone of the schedule (default UTC)")
    sv.add_argument("--name", default="nightly", metavar="NAME", help="deployment name (default nightly)")

    pp = sub.add_parser(
        "pipeline",
        help="run the pipeline flow once: check inputs, `dvc repro`, summarise the metrics",
        description="The scheduled deployment's flow, run once in this process: check params.yaml and the raw "
        "files, `dvc repro` (or `dvc repro --force`), then summarise metrics/metrics.duckdb. Fails when a grid run failed.",
    )
    pp.add_argument("--repo", default=".", metavar="DIR", help="repository checkout (default .)")
    pp.add_argument("--force", action="store_true", help="rerun every stage (`dvc repro --force`)")
    return p


def _generate(args: argparse.Namespace) -> None:
    from flows.generate import generate_flow

    if args.params:
        from micn.config import load_section
        from micn.experiment import GenerateConfig, check_raw_data, load_experiment

        check_raw_data(load_experiment(args.params), args.raw)
        g = load_section(args.params, "generate", GenerateConfig)
        args.profile, args.seed, args.fmt, args.name = g.profile, g.seed, g.format, g.name
    elif args.profile is None:
        raise MicnError("give --profile (one world by hand) or --params (the pipeline's `generate` section).")
    s = generate_flow(args.profile, args.out, seed=args.seed, fmt=args.fmt, name=args.name)
    print(f"wrote {s.n_reviews:,} reviews of {s.n_users:,} users on {s.n_items:,} items in {s.seconds:.1f} s:")
    for path in (s.reviews_path, s.meta_path):
        print(f"  {path}")


def _ingest(args: argparse.Namespace) -> None:
    from micn.data.ingest import check_inputs

    if args.params:
        from pathlib import Path

        from micn.experiment import check_raw_data, load_experiment, raw_files

        if args.dataset or args.reviews or args.meta:
            raise MicnError("--params ingests the datasets enabled in the file; drop --dataset/--reviews/--meta.")
        exp = load_experiment(args.params)
        check_raw_data(exp, args.raw)
        jobs = [(name, *raw_files(Path(args.raw) / name)) for name in exp.enabled_datasets]
        missing = [name for name, reviews, meta in jobs if not (reviews and meta)]
        if missing:
            raise MicnError(f"{args.raw}/{missing[0]}/ has no *_5.json[.gz] review file or no meta_*.json[.gz] "
                            "file; for the synthetic dataset run the generate stage (`dvc repro generate`).")
    else:
        if not (args.dataset and args.reviews and args.meta):
            raise MicnError("give --dataset, --reviews and --meta (one dataset), or --params (every enabled dataset).")
        jobs = [(args.dataset, args.reviews, args.meta)]
    for dataset, reviews, meta in jobs:
        check_inputs(dataset, reviews, meta)  # fail fast, before Prefect starts
    for dataset, reviews, meta in jobs:
        _ingest_one(dataset, [str(p) for p in reviews], [str(p) for p in meta], args.db)


def _ingest_one(dataset: str, reviews: list[str], meta: list[str], db: str) -> None:
    from flows.ingest import ingest_flow

    r = ingest_flow(dataset, reviews, meta, db)
    print(f"{'file':<50} {'format':<13} {'read':>10} {'accepted':>10} {'rejected':>9} {'dups':>7} {'sec':>6}")
    for f in r.files:
        print(f"{f.source_file[-50:]:<50} {f.format:<13} {f.lines_read:>10,} {f.accepted:>10,} {f.rejected:>9,} "
              f"{f.duplicates:>7,} {f.seconds:>6.2f}")
    print(f"dataset {r.dataset!r} in {r.db}: {r.reviews:,} reviews, {r.users:,} users, {r.items:,} items "
          f"({r.items_without_meta:,} without metadata → 'default_cat'), {r.rejects:,} rejects; {r.seconds:.1f} s")


def _samples(args: argparse.Namespace) -> None:
    from micn.data.samples import check_arguments

    if args.params:
        from micn.experiment import load_experiment

        if args.dataset:
            raise MicnError("--params builds the samples of every enabled dataset; drop --dataset.")
        exp = load_experiment(args.params)
        c = exp.samples  # OUT/<dataset>/len<max_len>: the layout the grid reads (micn.experiment.samples_dir)
        jobs = [(d, n, f"{args.out}/{d}/len{n}", c.protocol, c.seed, c.valid_frac, c.test_frac)
                for d, n in exp.samples_needed()]
    else:
        if not args.dataset:
            raise MicnError("give --dataset (one dataset) or --params (every enabled dataset).")
        jobs = [(args.dataset, args.max_len, args.out, args.protocol, args.seed, args.valid_frac, args.test_frac)]
    for dataset, max_len, _, protocol, seed, valid_frac, test_frac in jobs:
        check_arguments(dataset, protocol, max_len, seed, valid_frac, test_frac)
    for job in jobs:
        _samples_one(args.db, *job)


def _samples_one(db, dataset, max_len, out, protocol, seed, valid_frac, test_frac) -> None:
    from flows.samples import samples_flow

    r = samples_flow(db, dataset, out, protocol=protocol, max_len=max_len, seed=seed,
                     valid_frac=valid_frac, test_frac=test_frac)
    print(f"{'subject':<8} {'outcome':<18} {'reason':<52} {'n':>10}")
    for subject, outcome, reason, n in r.summary_rows():
        print(f"{subject:<8} {outcome:<18} {reason[:52]:<52} {n:>10,}")
    print(f"samples of {r.dataset!r} ({r.protocol}) written to {r.out_dir} in {r.seconds:.1f} s")


def _train(args: argparse.Namespace) -> None:
    import dataclasses

    from flows.train import train_flow
    from micn.config import load_section
    from micn.models.micn_aux import MICNConfig
    from micn.train import TrainConfig, load_splits

    cfg = load_section(args.params, "train", TrainConfig)
    micn = load_section(args.params, "micn", MICNConfig)  # bad values are rejected here, before any work
    if args.micn is not None and args.variant is not None and args.micn != (args.variant == "micn"):
        raise MicnError(f"--{'micn' if args.micn else 'no-micn'} contradicts --variant {args.variant}; give one of them.")
    enabled = args.micn if args.micn is not None else (args.variant == "micn" if args.variant else micn.enabled)
    micn = dataclasses.replace(micn, enabled=enabled)
    load_splits(args.samples, args.dataset)  # fail fast on a missing or mismatched samples directory
    r = train_flow(args.dataset, args.samples, args.backbone, args.seed, args.out, cfg, micn)
    m = r["metrics"]
    oracle = "n/a" if m.get("oracle_auc") is None else f"{m['oracle_auc']:.4f}"
    print(f"{r['dataset']} {r['backbone']} ({r['variant']}) seed {r['seed']}: test AUC {m['auc']:.4f}  GAUC {m['gauc']:.4f}  "
          f"logloss {m['logloss']:.4f}  oracle AUC {oracle}  ({r['epochs']} epochs, best {r['best_epoch']}, "
          f"{r['samples_per_s']:,.0f} samples/s) → {args.out}/metrics.json")


def _grid(args: argparse.Namespace) -> None:
    from flows.grid import run_grid

    out = run_grid(args.params, args.root)
    runs = out["runs"]
    print(f"{'run':<52} {'status':<7} {'test AUC':>8} {'GAUC':>7} {'epochs':>6} {'train s':>8}")
    for r in runs:
        m = r.get("metrics") or {}
        auc = f"{m['auc']:.4f}" if m else "–"
        gauc = f"{m['gauc']:.4f}" if m else "–"
        status = "reused" if r.get("reused") else r["status"]
        print(f"{r['run_id']:<52} {status:<7} {auc:>8} {gauc:>7} {r.get('epochs') or '–':>6} "
              f"{r.get('train_seconds') or 0:>8.1f}")
    failed = [r for r in runs if r["status"] == "failed"]
    print(f"{len(runs) - len(failed)} of {len(runs)} runs ok" + (f"; {len(out['pruned'])} old run(s) removed" if out["pruned"] else ""))
    for r in failed:
        print(f"FAILED {r['run_id']} after {r['attempts']} attempt(s): {r['error']}", file=sys.stderr)
    if failed:
        print(f"the failures are recorded in {args.root}/metrics/runs and marked in the report; once fixed, retrain only them with "
              "`dvc repro --force --single-item train && dvc repro`", file=sys.stderr)


def _report(args: argparse.Namespace) -> None:
    from flows.report import report_flow

    r = report_flow(args.metrics, args.db, args.out)
    print(f"{args.db}: {r['ok']} runs ok, {len(r['failed'])} failed, {r['history_rows']} epochs of history")
    print(f"{r['report']} with {len(r['figures'])} figures: " + ", ".join(r["figures"]))
    for run_id in r["failed"]:
        print(f"FAILED {run_id} (marked in {r['report']})", file=sys.stderr)


def _serve(args: argparse.Namespace) -> None:
    from flows.pipeline import serve_pipeline

    serve_pipeline(args.repo, args.cron, args.timezone, args.name)


def _pipeline(args: argparse.Namespace) -> None:
    from flows.pipeline import pipeline_flow

    r = pipeline_flow(args.repo, args.force)
    print(f"stages run: {', '.join(r['stages']) or 'none (up to date)'}; {r['ok']} runs ok; metrics in {r['db']}")


def _interests(args: argparse.Namespace) -> None:
    from micn.interests import describe_user

    print(describe_user(args.run, args.user, args.samples, items_shown=args.items))


COMMANDS = {"generate": _generate, "ingest": _ingest, "samples": _samples, "train": _train, "interests": _interests,
            "grid": _grid, "report": _report, "serve": _serve, "pipeline": _pipeline}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except MicnError as e:
        print(f"micn {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
