"""The `micn` console script: a table of commands, each run by its stage module `flows/<stage>.py`.

Why a table and lazy imports: `micn --help` imports no stage (fast), and `micn <command>` imports
only that command's module, so a stage's code (and its DVC dependencies) is its own module and
what it imports. Each stage module provides

    DESCRIPTION: str                                   # the paragraph of `micn <command> --help`
    add_arguments(parser: ArgumentParser, command: str) -> None
    run(args: Namespace) -> None                       # typed config from args, the flow, printed result

and raises MicnError for what the user should fix.

The dispatcher also owns what every command shares: Prefect's environment (set before Prefect is
imported, flows/_prefect.py) and how a failure is shown (flows/_errors.py): one paragraph and exit
status 2 for anything the user can cause or fix, a traceback only with `micn --debug <command>`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Command:
    name: str
    module: str  # flows.<stage>, imported only when this command runs
    help: str  # the one line of `micn --help`
    prefect: bool = True  # runs a flow, so it needs a Prefect API (the shared local server if none is set)


COMMANDS = (
    Command("generate", "flows.generate", "write a synthetic Amazon world (raw review + metadata files and ground truth)"),
    Command("ingest", "flows.ingest", "load raw Amazon review + metadata files into the DuckDB warehouse"),
    Command("samples", "flows.samples", "build train/valid/test CTR samples (behavior sequences, negatives, "
            "vocabularies) from the warehouse"),
    Command("train", "flows.train", "train and evaluate one backbone on one dataset's samples"),
    Command("interests", "flows.interests", "show a user's interest capsules from a run trained with MICN", prefect=False),
    Command("grid", "flows.grid", "train every run of the enabled experiments (datasets x backbones x variants x seeds) "
            "as one Prefect flow"),
    Command("report", "flows.report", "build metrics/metrics.duckdb from the per-run files and write reports/report.md "
            "with plots"),
    Command("scales", "flows.scales", "put several studies' Table 2 lifts side by side with the paper's (database, "
            "scales.md, one figure)"),
    Command("serve", "flows.pipeline", "register the scheduled pipeline deployment and run its flow runs (needs "
            "`prefect server start`)", prefect=False),
    Command("pipeline", "flows.pipeline", "run the pipeline flow once: check inputs, `dvc repro`, summarise the metrics"),
)
BY_NAME = {c.name: c for c in COMMANDS}


def _parser(chosen: Command | None) -> tuple[argparse.ArgumentParser, ModuleType | None]:
    """The top-level parser; only the chosen command's sub-parser gets its arguments (and its module)."""
    p = argparse.ArgumentParser(
        prog="micn",
        description="MICN: interest-based item representations for CTR models. Each command runs one pipeline "
        "stage as a Prefect flow; `dvc repro` runs them all in order.",
    )
    p.add_argument("--debug", action="store_true",
                   help="show full tracebacks (also Prefect's) instead of the one-paragraph error")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    module = None
    for c in COMMANDS:
        if c is not chosen:
            sub.add_parser(c.name, help=c.help, add_help=False)
            continue
        module = importlib.import_module(c.module)
        description = getattr(module, "DESCRIPTIONS", {}).get(c.name) or getattr(module, "DESCRIPTION", None)
        module.add_arguments(sub.add_parser(c.name, help=c.help, description=description), c.name)
    return p, module


def _chosen(argv: Sequence[str]) -> Command | None:
    """The command named on the command line (the first word that is one), before any parsing."""
    for word in argv:
        if word in BY_NAME:
            return BY_NAME[word]
        if not word.startswith("-"):
            return None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    from flows import _errors, _prefect
    from micn.kernels import pin_cpu_kernels

    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = _chosen(argv)
    debug = "--debug" in (argv[: argv.index(chosen.name)] if chosen else argv)
    pin_cpu_kernels()  # before anything imports torch: the same numbers on any AVX2+ CPU
    _prefect.prepare_environment(debug=debug)  # before any module imports Prefect
    _errors.stop_on_sigterm(chosen.name if chosen else None)
    return _errors.run_guarded(lambda: _dispatch(argv, chosen, debug), chosen.name if chosen else None, debug=debug)


def _dispatch(argv: list[str], chosen: Command | None, debug: bool) -> None:
    from flows import _prefect

    parser, module = _parser(chosen)
    args = parser.parse_args(argv)  # exits 2 with argparse's one-line message, or 0 after --help
    assert chosen is not None and module is not None  # parse_args requires a command
    _prefect.quiet_console(debug=debug)
    with _prefect.api(chosen.prefect):
        module.run(args)


if __name__ == "__main__":
    sys.exit(main())
