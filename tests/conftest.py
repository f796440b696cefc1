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

from tests.helpers import raw_files  # noqa: E402


def pytest_sessionfinish(session, exitstatus) -> None:
    """Stop the shared Prefect server the session's `micn` subprocesses started, if any."""
    from flows._prefect import stop_shared_server

    stop_shared_server(Path(os.environ["PREFECT_HOME"]))


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    """The `tiny` synthetic world in the 2014 format, generated once per test session."""
    from micn.data.synthetic import generate_world

    out = tmp_path_factory.mktemp("tiny_world")
    generate_world("tiny", out, seed=7)
    return out


@pytest.fixture(scope="session")
def tiny_warehouse(tiny_world, tmp_path_factory) -> Path:
    """The tiny world ingested into a DuckDB warehouse, dataset 'tiny'."""
    from micn.data.ingest.load import ingest

    reviews, meta = raw_files(tiny_world)
    db = tmp_path_factory.mktemp("tiny_warehouse") / "warehouse.duckdb"
    ingest("tiny", [reviews], [meta], db)
    return db


@pytest.fixture(scope="session")
def tiny_samples(tiny_warehouse, tmp_path_factory) -> Path:
    """`dien`-protocol samples of the tiny world (max_len 10)."""
    from micn.data.samples.build import build_samples

    out = tmp_path_factory.mktemp("tiny_samples")
    build_samples(tiny_warehouse, "tiny", out, protocol="dien", max_len=10, seed=1)
    return out


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


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module's tests: on tiny tensors one thread is fastest, and far faster
    than two on a busy 2-core machine. Apply with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def report_metrics_dir(tmp_path) -> tuple[Path, dict]:
    """(metrics dir, AUC by (backbone, variant, seed)) of per-run files for the report: 3 seeds x
    {wide_deep, dien} x {base, micn}; dien-micn seed 3 failed; plus a φ sweep and a length sweep."""
    import numpy as np

    from tests.helpers import record, write_run

    rng = np.random.default_rng(0)
    d = tmp_path / "metrics"
    aucs = {}
    for backbone in ("wide_deep", "dien"):
        for seed in (1, 2, 3):
            base = 0.80 + rng.normal(0, 0.01)
            aucs[(backbone, "base", seed)] = base
            exps = ("table2", "table3", "table4") if backbone == "dien" else ("table2",)
            write_run(d, record("synthetic", backbone, "base", seed, base, experiments=exps))
            micn_auc = base + 0.01 + rng.normal(0, 0.005)
            failed = backbone == "dien" and seed == 3
            write_run(d, record("synthetic", backbone, "micn", seed, None if failed else micn_auc, phi=0.3,
                                experiments=exps, status="failed" if failed else "ok"))
            if not failed:
                aucs[(backbone, "micn", seed)] = micn_auc
            if backbone == "dien":
                write_run(d, record("synthetic", "dien", "micn", seed, base + 0.02, phi=0.7, experiments=("table3",)))
                for n in (10, 50):
                    write_run(d, record("synthetic", "dien", "base", seed, base - 0.01, max_len=n, experiments=("table4",)))
    return d, aucs


@pytest.fixture()
def report_control_dir(tmp_path) -> tuple[Path, dict]:
    """(metrics dir, AUC by (variant, φ, seed)) for the report: DIN over 4 seeds as base, control (φ 0.3)
    and micn (φ 0.3) in tables 2 and 3, micn at φ 0.7 in table 3 only (paired with the one control φ),
    with learning evidence; DIEN base/micn whose auxiliary loss stays at 2 ln 2."""
    import numpy as np

    from tests.helpers import record, write_run

    d = tmp_path / "metrics"
    rng = np.random.default_rng(1)
    aucs = {}
    for seed in (1, 2, 3, 4):
        base = 0.85 + rng.normal(0, 0.01)
        runs = {("base", None): base, ("control", 0.3): base + 0.004 + rng.normal(0, 0.002),
                ("micn", 0.3): base + 0.006 + rng.normal(0, 0.002), ("micn", 0.7): base + 0.002 + rng.normal(0, 0.002)}
        for (variant, phi), auc in runs.items():
            aucs[(variant, phi, seed)] = auc
            evidence = {"history_only_auc": 0.92}
            if variant == "micn":  # seed 1's capsules retrieve no better than popularity
                evidence |= {"micn_recall": 0.05 if seed == 1 else 0.2, "popularity_recall": 0.1, "grad_ratio": 2.0}
            exps = ("table3",) if phi == 0.7 else ("table2", "table3")
            write_run(d, record("synthetic", "din", variant, seed, auc, phi=phi, experiments=exps, **evidence))
        for variant, phi in (("base", None), ("micn", 0.3)):
            write_run(d, record("synthetic", "dien", variant, seed, base, phi=phi, dien_aux=1.3863,
                                history_only_auc=0.92))
    return d, aucs


# --- the samples tests: builds shared by several test modules (read, never written) -------------


@pytest.fixture(scope="session")
def hand_db(tmp_path_factory) -> Path:
    """The hand-made warehouse of `tests.helpers.HAND`, dataset 'hand'."""
    from tests.helpers import HAND, HAND_CATEGORIES, make_warehouse

    return make_warehouse(tmp_path_factory.mktemp("hand") / "w.duckdb", HAND, HAND_CATEGORIES)


@pytest.fixture(scope="session")
def dien_build(hand_db, tmp_path_factory):
    """(report, folder) of the `dien` samples of the hand-made warehouse, seed 3."""
    from micn.data.samples.build import build_samples
    from tests.helpers import HAND_FRACTIONS, HAND_MAX_LEN

    out = tmp_path_factory.mktemp("dien")
    return build_samples(hand_db, "hand", out, protocol="dien", max_len=HAND_MAX_LEN, seed=3, **HAND_FRACTIONS), out


@pytest.fixture(scope="session")
def din_build(hand_db, tmp_path_factory):
    """(report, folder) of the `din` samples of the hand-made warehouse, seed 3."""
    from micn.data.samples.build import build_samples
    from tests.helpers import HAND_FRACTIONS, HAND_MAX_LEN

    out = tmp_path_factory.mktemp("din")
    return build_samples(hand_db, "hand", out, protocol="din", max_len=HAND_MAX_LEN, seed=3, **HAND_FRACTIONS), out


@pytest.fixture(scope="session")
def tiny_dien(tiny_warehouse, tmp_path_factory):
    """(report, folder) of the `dien` samples of the tiny world (max_len 10, seed 11)."""
    from micn.data.samples.build import build_samples

    out = tmp_path_factory.mktemp("tiny_dien")
    return build_samples(tiny_warehouse, "tiny", out, protocol="dien", max_len=10, seed=11), out


# --- the ingest tests ------------------------------------------------------------------------------


@pytest.fixture
def meta_2014(tmp_path) -> Path:
    """`tests.helpers.META_2014_LINES` as a 2014 metadata file."""
    from tests.helpers import META_2014_LINES, write_lines

    return write_lines(tmp_path / "meta_Fixture.json", META_2014_LINES)
