"""Shared fixtures. Prefect gets a private, throw-away home before anything imports it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="micn-test-prefect-")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
AMAZON = REPO.parent / "shared" / "data" / "amazon"

requires_shared = pytest.mark.skipif(
    not AMAZON.is_dir(),
    reason=f"real Amazon samples not found at {AMAZON} (they sit beside the repository only in the project's workspace and CI)",
)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    """The `tiny` synthetic world in the 2014 format, generated once per test session."""
    from micn.data.synthetic import generate_world

    out = tmp_path_factory.mktemp("tiny_world")
    generate_world("tiny", out, seed=7)
    return out


def raw_files(world: Path) -> tuple[Path, Path]:
    """(reviews file, metadata file) of a generated world, whatever its format."""
    reviews = next(p for p in world.glob("*_5.json.gz"))
    meta = next(world.glob("meta_*.json.gz"))
    return reviews, meta


@pytest.fixture(scope="session")
def tiny_warehouse(tiny_world, tmp_path_factory) -> Path:
    """The tiny world ingested into a DuckDB warehouse, dataset 'tiny'."""
    from micn.data.ingest import ingest

    reviews, meta = raw_files(tiny_world)
    db = tmp_path_factory.mktemp("tiny_warehouse") / "warehouse.duckdb"
    ingest("tiny", [reviews], [meta], db)
    return db


@pytest.fixture(scope="session")
def tiny_samples(tiny_warehouse, tmp_path_factory) -> Path:
    """`dien`-protocol samples of the tiny world (max_len 10)."""
    from micn.data.samples import build_samples

    out = tmp_path_factory.mktemp("tiny_samples")
    build_samples(tiny_warehouse, "tiny", out, protocol="dien", max_len=10, seed=1)
    return out
