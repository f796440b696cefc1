"""`micn generate`: the synthetic Amazon world (docs/architecture.md, "Synthetic world"), its command line and its Prefect flow.

    micn generate --params params.yaml --out data/raw/synthetic          # the pipeline's world (dvc.yaml)
    micn generate --profile tiny --out /tmp/world --seed 7 --format 2018   # one world by hand
    micn generate --profile default --out /tmp/world --kappa 0.5            # items carry interest signal

Both modes build the same typed `GenerateConfig` (micn.config: the `generate` section of
params.yaml), so a world made by hand and the pipeline's differ only in the values. The command
protocol (DESCRIPTION, add_arguments, run) is the one flows/cli.py dispatches to.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from micn.config import GenerateConfig, from_mapping, seed_argument
from micn.names import FORMATS, PROFILE_NAMES
from micn.data.layout import KAPPA_SUBDIR
from micn.data.synthetic import check_kappa, check_name, generate_world
from micn.data.synthetic.profiles import PROFILES
from micn.data.synthetic.summary import GROUND_TRUTH_DIR, WORLD_JSON, WorldSummary
from micn.errors import MicnError
from micn.outputs import MICN_GZIP_HEADER, Check, anything, claim, json_object_with, parquet_with, starts_with

DESCRIPTION = (
    "Write a seeded synthetic Amazon world with planted multi-interest users: reviews_<Name>_5.json.gz + "
    "meta_<Name>.json.gz (2014 format) or <Name>_5.json.gz + meta_<Name>.json.gz (2018 format), plus "
    "ground_truth/ for the oracle scorer. The same profile, seed, format, name and kappa always give "
    "byte-identical files."
)
_DEFAULTS = GenerateConfig()  # flag mode's defaults are the section's (except the profile, which is required)
_WORLD_FLAGS = ("profile", "seed", "format", "name", "kappa")  # what --params takes from the file instead
_TRUTH_KEYS = {"users": "user_id", "items": "item_id", "categories": "category"}  # ground_truth/<table>.parquet


def add_arguments(parser: argparse.ArgumentParser, command: str = "generate") -> None:
    """The `generate` options. World flags default to None so that --params can refuse them when given."""
    sizes = ", ".join(f"{n} ({p.n_users:,} users, {p.n_items:,} items, {p.n_reviews:,} reviews)"
                      for n, p in PROFILES.items())  # fmt: skip
    parser.add_argument("--params", default=None, metavar="FILE",
                        help="pipeline mode: take profile, seed, format, name and kappa from the file's `generate` "
                        "section, after checking that every enabled dataset's raw files are present (fail before "
                        "any work)")
    parser.add_argument("--profile", choices=PROFILE_NAMES, help=f"size of the world: {sizes}")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory (created if missing)")
    parser.add_argument("--raw", default="data/raw", metavar="DIR",
                        help="with --params: folder of the real datasets' raw files, data/raw/<dataset>/ "
                        "(default data/raw)")
    parser.add_argument("--seed", type=seed_argument, default=None, metavar="N",
                        help=f"random seed; the same seed gives identical files (default {_DEFAULTS.seed})")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help=f"raw file format of the Amazon release to imitate (default {_DEFAULTS.format})")
    parser.add_argument("--name", default=None, metavar="NAME",
                        help="category name in the file names (default: the profile name, title-cased)")
    parser.add_argument("--kappa", type=kappa_argument, default=None, metavar="K",
                        help="probability in [0, 1] that an item serves its category's topic; otherwise it serves "
                        "a topic drawn by popularity, so item ids carry interest signal beyond the category "
                        "(default: the profile's, 1.0, the world without that signal)")  # fmt: skip


def kappa_argument(text: str) -> float:
    """argparse `type=` for --kappa: a number in [0, 1]; argparse prints the message, exit 2."""
    try:
        return check_kappa(float(text))
    except (ValueError, MicnError):
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}") from None


def config_from_args(args: argparse.Namespace) -> GenerateConfig:
    """The typed config of either mode (the file's `generate` section, or the flags), checked before
    Prefect starts so that a user error costs no server start."""
    config = _from_params(args) if args.params else _from_flags(args)
    if config.name is not None:
        check_name(config.name)  # the one rule the section type does not know: a file-name piece
    return config


def _from_params(args: argparse.Namespace) -> GenerateConfig:
    given = [f"--{flag}" for flag in _WORLD_FLAGS if getattr(args, flag) is not None]
    if given:
        raise MicnError(f"micn generate: {', '.join(given)} cannot be combined with --params {args.params}, "
                        "which takes profile, seed, format, name and kappa from its `generate` section; "
                        "drop --params to make one world by hand, or edit the file.")  # fmt: skip
    from micn.config import load_section
    from micn.experiment import check_raw_data, load_experiment

    check_raw_data(load_experiment(args.params), args.raw)  # fail before any work, not at the ingest stage
    return load_section(args.params, "generate", GenerateConfig)


def _from_flags(args: argparse.Namespace) -> GenerateConfig:
    if args.profile is None:
        raise MicnError("micn generate: give --profile (one world by hand) or --params FILE (the pipeline's "
                        "`generate` section), e.g. `micn generate --profile tiny --out /tmp/world`.")  # fmt: skip
    values = {flag: getattr(args, flag) for flag in _WORLD_FLAGS if getattr(args, flag) is not None}
    return from_mapping(GenerateConfig, values, where="micn generate")


@task(cache_policy=NO_CACHE)  # DVC decides what reruns, not Prefect's cache
def write_world(config: GenerateConfig, out: str) -> WorldSummary:
    return generate_world(config.profile, out, seed=config.seed, format=config.format, name=config.name,
                          kappa=config.kappa)


@flow(name="generate")
def generate_flow(config: GenerateConfig, out: str) -> WorldSummary:
    summary = write_world(config, out)
    get_run_logger().info("synthetic world %r (seed %d, format %s, kappa %g) written to %s in %.1f s",
                          config.profile, config.seed, config.format, summary.kappa, out, summary.seconds)  # fmt: skip
    return summary


def kappa_worlds(args: argparse.Namespace) -> list[tuple[str, float]]:
    """With --params: the mechanism experiment's κ < 1 worlds, (dataset, κ), written beside the default
    world in OUT/kappa/<dataset>/ (micn.data.layout.raw_dir); none without --params."""
    if not args.params:
        return []
    from micn.experiment import load_experiment

    return load_experiment(args.params).kappa_worlds()


def world_files(config: GenerateConfig, out: Path) -> dict[Path, Check]:
    """The paths `generate_world` writes for `config` in `out` (the raw files' names are the release
    writers', micn/data/synthetic/releases.py), each with how a world's own file is recognised: the
    raw files by the header of micn's gzip writer, the ground truth by its columns and keys."""
    name = config.name or PROFILES[config.profile].name.title()
    reviews = f"reviews_{name}_5.json.gz" if config.format == "2014" else f"{name}_5.json.gz"
    raw = starts_with(MICN_GZIP_HEADER, "a gzip file as micn writes it (no file name, time 0)")
    truth = out / GROUND_TRUTH_DIR
    return {out / reviews: raw, out / f"meta_{name}.json.gz": raw,
            **{truth / f"{table}.parquet": parquet_with(key) for table, key in _TRUTH_KEYS.items()},
            truth / WORLD_JSON: json_object_with("profile_params", "fmt", "files")}


def check_world_files(config: GenerateConfig, out: Path) -> None:
    """Every path the world writes is absent or a world's own (files are written in place, so a link
    is followed and its target checked); else a MicnError naming it, before any work."""
    fix = "choose another --out (a new folder, or one `micn generate` wrote)"
    claim(out / GROUND_TRUTH_DIR, anything, what="a synthetic world's ground truth folder", command="generate",
          follow_links=True, folder=True, fix=fix)
    for path, check in world_files(config, out).items():
        claim(path, check, what="a synthetic world's file", command="generate", follow_links=True, fix=fix)


def run(args: argparse.Namespace) -> None:
    """Build the config, run the flow (once per world), print what was written."""
    config = config_from_args(args)
    worlds = [(Path(args.out), config)] + [(Path(args.out) / KAPPA_SUBDIR / dataset, replace(config, kappa=kappa))
                                           for dataset, kappa in kappa_worlds(args)]
    for out, world in worlds:
        check_world_files(world, out)
    for out, world in worlds:
        s = generate_flow(world, str(out))
        print(f"wrote {s.n_reviews:,} reviews of {s.n_users:,} users on {s.n_items:,} items (kappa {s.kappa:g}) "
              f"in {s.seconds:.1f} s:")
        for path in (s.reviews_path, s.meta_path):
            print(f"  {path}")
