"""The dispatcher: a table of commands importing only the chosen stage, and failures shown once."""

from __future__ import annotations

import errno
import socket
import subprocess
import sys
import time

import pytest

from flows import _errors
from flows._prefect import answers, healthy
from flows.cli import COMMANDS
from micn.errors import MicnError
from tests.helpers import REPO


def test_every_command_module_follows_the_protocol():
    import importlib

    for c in COMMANDS:
        module = importlib.import_module(c.module)
        assert callable(module.add_arguments) and callable(module.run), c.module
        description = getattr(module, "DESCRIPTIONS", {}).get(c.name) or getattr(module, "DESCRIPTION", None)
        assert description and len(c.help) < 120, c.name


def test_top_level_help_imports_no_stage(tmp_path):
    code = ("import sys; from flows.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith(('flows.', 'prefect', 'torch', 'micn.')) "
            "and m not in ('flows.cli', 'flows._errors', 'flows._prefect', 'micn.errors', 'micn.kernels')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_a_command_imports_only_its_own_stage_module(tmp_path):
    code = ("import sys; from flows.cli import main\ntry:\n    main(['report', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m in "
            f"{sorted({c.module for c in COMMANDS})!r}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "['flows.report']"


@pytest.mark.parametrize(
    "error, status, needle",
    [
        (MicnError("params.yaml: train.lr: expected a number"), 2, "params.yaml: train.lr"),
        (OSError(errno.ENOSPC, "No space left on device", "/out/train.parquet"), 2, "disk full writing /out/train.parquet"),
        (OSError(errno.EROFS, "Read-only file system", "/ro/x.json"), 2, "cannot write /ro/x.json: the file system is read-only"),
        (PermissionError(errno.EACCES, "Permission denied", "/root/x"), 2, "cannot write /root/x: permission denied"),
        (RecursionError("maximum recursion depth exceeded"), 2, "nested too deeply"),
        (KeyError("oops"), 1, "internal error: KeyError"),
    ],
)
def test_failures_become_one_paragraph(capsys, error, status, needle):
    def fail() -> None:
        raise error

    assert _errors.run_guarded(fail, "train") == status
    err = capsys.readouterr().err
    assert err.startswith("micn train: error: ") and needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    if status == 1:
        assert "micn --debug train" in err


def test_a_wrapped_cause_is_found_and_debug_adds_the_traceback(capsys):
    def fail() -> None:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/out/model.pt")
        except OSError as e:
            raise RuntimeError("task failed") from e

    assert _errors.run_guarded(fail, "grid", debug=True) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1] == "micn grid: error: disk full writing /out/model.pt; " \
        "free some space (or point the output elsewhere) and rerun."


def test_duckdb_lock_is_named():
    import duckdb

    status, message = _errors.describe(duckdb.IOException('Could not set lock on file "/w.duckdb": Conflicting lock'))
    assert status == 2 and "another process" in message and "/w.duckdb" in message


def test_api_checks_are_bounded_by_their_timeout(silent_listener):
    """A loopback listener that accepts and never answers: the checks give up within the timeout."""
    port, _ = silent_listener
    url = f"http://127.0.0.1:{port}/api"
    for check in (healthy, answers):
        start = time.monotonic()
        assert check(url, 1.0) is False
        assert time.monotonic() - start < 3.0


def test_a_configured_api_that_never_answers_stops_the_command(tmp_path):
    """PREFECT_API_URL naming a silent listener: exit 2 with one paragraph within the timeout, no hang."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/api"
        env = {**__import__("os").environ, "PREFECT_API_URL": url, "MICN_PREFECT_TIMEOUT_S": "2"}
        start = time.monotonic()
        out = subprocess.run([sys.executable, "-m", "flows.cli", "report", "--metrics", str(tmp_path / "m"),
                              "--db", str(tmp_path / "m.duckdb"), "--out", str(tmp_path / "r")],
                             cwd=tmp_path, env={**env, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                             timeout=120)
        elapsed = time.monotonic() - start
    assert out.returncode == 2, out.stderr
    assert "does not answer within 2 s" in out.stderr and "Traceback" not in out.stderr
    assert elapsed < 60  # python + Prefect import, then 2 s, not Prefect's own minutes of retries
