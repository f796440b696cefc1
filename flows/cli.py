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
    g.add_argument("--profile", required=True, choices=sorted(PROFILES), help="size of the world: " + ", ".join(
        f"{n} ({pr.n_users:,} users, {pr.n_items:,} items, {pr.n_reviews:,} reviews)" for n, pr in PROFILES.items()))
    g.add_argument("--out", required=True, metavar="DIR", help="output directory (created if missing)")
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
    i.add_argument("--dataset", required=True, metavar="NAME", help="dataset name in the warehouse, e.g. electronics")
    i.add_argument("--reviews", required=True, nargs="+", metavar="FILE", help="one or more review files (JSON lines)")
    i.add_argument("--meta", required=True, nargs="+", metavar="FILE",
                   help="one or more metadata files (2014 Python-literal lines or 2018 JSON lines)")
    i.add_argument("--db", required=True, metavar="PATH", help="DuckDB warehouse file (created if missing)")
    s = sub.add_parser(
        "samples",
        help="build train/valid/test CTR samples (behavior sequences, negatives, vocabularies) from the warehouse",
        description="Build one dataset's samples from the DuckDB warehouse (read-only): per-user behavior "
        "sequences, sampled negatives, user-disjoint (dien) or leave-last-out (din) splits, vocabularies fitted on "
        "train. Writes train/valid/test.parquet, feature_map.json, vocab_*.parquet and samples_summary.parquet.",
    )
    s.add_argument("--dataset", required=True, metavar="NAME", help="dataset name in the warehouse")
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
    return p


def _generate(args: argparse.Namespace) -> None:
    from flows.generate import generate_flow

    s = generate_flow(args.profile, args.out, seed=args.seed, fmt=args.fmt, name=args.name)
    print(f"wrote {s.n_reviews:,} reviews of {s.n_users:,} users on {s.n_items:,} items in {s.seconds:.1f} s:")
    for path in (s.reviews_path, s.meta_path):
        print(f"  {path}")


def _ingest(args: argparse.Namespace) -> None:
    from flows.ingest import ingest_flow
    from micn.data.ingest import check_inputs

    check_inputs(args.dataset, args.reviews, args.meta)  # fail fast, before Prefect starts
    r = ingest_flow(args.dataset, args.reviews, args.meta, args.db)
    print(f"{'file':<50} {'format':<13} {'read':>10} {'accepted':>10} {'rejected':>9} {'dups':>7} {'sec':>6}")
    for f in r.files:
        print(f"{f.source_file[-50:]:<50} {f.format:<13} {f.lines_read:>10,} {f.accepted:>10,} {f.rejected:>9,} "
              f"{f.duplicates:>7,} {f.seconds:>6.2f}")
    print(f"dataset {r.dataset!r} in {r.db}: {r.reviews:,} reviews, {r.users:,} users, {r.items:,} items "
          f"({r.items_without_meta:,} without metadata → 'default_cat'), {r.rejects:,} rejects; {r.seconds:.1f} s")


def _samples(args: argparse.Namespace) -> None:
    from flows.samples import samples_flow
    from micn.data.samples import check_arguments

    check_arguments(args.dataset, args.protocol, args.max_len, args.seed, args.valid_frac, args.test_frac)
    r = samples_flow(args.db, args.dataset, args.out, protocol=args.protocol, max_len=args.max_len, seed=args.seed,
                     valid_frac=args.valid_frac, test_frac=args.test_frac)
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


def _interests(args: argparse.Namespace) -> None:
    from micn.interests import describe_user

    print(describe_user(args.run, args.user, args.samples, items_shown=args.items))


COMMANDS = {"generate": _generate, "ingest": _ingest, "samples": _samples, "train": _train, "interests": _interests}


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
