"""`micn interests`: a trained MICN run's interest capsules for one user (no Prefect flow: it only reads).

    micn interests --run models/tiny/din-micn --user A2SUAM1J3GNN3B [--samples DIR] [--items 5]

The run's model file names the samples it was trained on, so `--samples` is needed only when
they have moved.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

DESCRIPTION = (
    "Load a run trained with MICN (variant micn), route one user's history through the capsule network and print "
    "each active interest with its nearest items and dominant categories; on synthetic data also the purity of the "
    "capsules against the planted topics over the test users, and how often two capsules of a user share their "
    "nearest items (1: collapsed into one interest)."
)


@dataclass(frozen=True)
class InterestsQuery:
    """What `micn interests` was asked for."""

    run_dir: Path
    user: str
    samples_dir: Path | None  # None: the samples the run's model file names
    items: int  # nearest items shown per capsule, >= 1


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse turns the ValueError into a one-line usage error)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not >= 1")
    return value


def add_arguments(parser: argparse.ArgumentParser, command: str = "interests") -> None:
    parser.add_argument("--run", required=True, metavar="DIR",
                        help="run directory of `micn train --variant micn` or a grid run of variant micn (holds model.pt)")
    parser.add_argument("--user", required=True, metavar="ID", help="raw user id (reviewerID)")
    parser.add_argument("--samples", default=None, metavar="DIR",
                        help="samples directory the run was trained on (default: the one its model.pt names, or "
                        "data/samples/<dataset>/len<L> beside a grid run's models/ folder)")
    parser.add_argument("--items", type=positive_int, default=5, metavar="N",
                        help="nearest items shown per capsule, >= 1 (default 5)")


def query_from_args(args: argparse.Namespace) -> InterestsQuery:
    return InterestsQuery(Path(args.run), args.user, Path(args.samples) if args.samples else None, args.items)


def run(args: argparse.Namespace) -> None:
    from micn.interests import describe_user

    q = query_from_args(args)
    print(describe_user(q.run_dir, q.user, q.samples_dir, items_shown=q.items))
