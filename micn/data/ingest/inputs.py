"""The arguments of an ingest, checked before any work: the dataset name, the files and their formats."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from micn.data.formats import META_FORMATS, REVIEW_FORMATS, sniff_format
from micn.errors import MicnError

DATASET_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")


def check_inputs(
    dataset: str, reviews: Sequence[str | Path], meta: Sequence[str | Path]
) -> tuple[list[Path], list[Path], dict[Path, str]]:
    """Validate names and files before any work; returns the paths and each file's format."""
    review_paths, meta_paths = _check_arguments(dataset, reviews, meta)
    formats = {p: sniff_format(p) for p in [*review_paths, *meta_paths]}
    _check_kinds(formats, review_paths, meta_paths)
    return review_paths, meta_paths, formats


def _check_arguments(dataset, reviews, meta) -> tuple[list[Path], list[Path]]:
    if not DATASET_NAME.match(dataset or ""):
        raise MicnError(f"dataset name {dataset!r} is not valid: use letters, digits, '_' or '-' (e.g. 'electronics').")
    if not reviews:
        raise MicnError("no reviews file given: pass at least one --reviews FILE (e.g. reviews_Electronics_5.json.gz).")
    paths = [Path(p) for p in reviews], [Path(p) for p in meta]
    for p in [*paths[0], *paths[1]]:
        if not p.is_file():
            raise MicnError(f"{p}: no such file; expected a raw Amazon reviews or metadata file (plain or .gz).")
    return paths


def _check_kinds(formats: dict[Path, str], review_paths: list[Path], meta_paths: list[Path]) -> None:
    for p in review_paths:
        if formats[p] not in REVIEW_FORMATS:
            raise MicnError(f"{p}: given as --reviews but its lines look like {formats[p]}; pass it with --meta.")
    for p in meta_paths:
        if formats[p] not in META_FORMATS:
            raise MicnError(f"{p}: given as --meta but its lines look like {formats[p]}; pass it with --reviews.")

