"""Shared fixtures. Prefect gets a private, throw-away home before anything imports it."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
from pathlib import Path

os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="micn-test-prefect-")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# `micn` subprocesses share one local Prefect server in that home (flows/_prefect.py); it stops
# after a minute without use, and pytest_sessionfinish stops it at once.
os.environ.setdefault("MICN_PREFECT_IDLE_S", "60")
os.environ.pop("PREFECT_API_URL", None)  # never the developer's own server

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
AMAZON = REPO.parent / "shared" / "data" / "amazon"


def pytest_sessionfinish(session, exitstatus) -> None:
    """Stop the shared Prefect server the session's `micn` subprocesses started, if any."""
    from flows._prefect import stop_shared_server

    stop_shared_server(Path(os.environ["PREFECT_HOME"]))


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


TINY_PIPELINE = {  # the whole pipeline in about a minute: the tiny world, 2 epochs
    "generate": {"profile": "tiny"},
    "train": {"epochs": 2},
}


@pytest.fixture()
def silent_listener():
    """(port, accepted connections) of a TCP listener on 127.0.0.1 that accepts every connection and
    never sends a byte: the peer that makes an unbounded network wait hang. Loopback only."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()
