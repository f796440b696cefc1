"""Prefect for every `micn` command: one shared local API server, quiet terminal, no telemetry.

Why: without PREFECT_API_URL each Prefect process starts its own temporary server (5-15 s), so
`dvc repro` paid it once per stage and each stage's runs lived in a server that vanished with it.
Here the first `micn` command that runs a flow starts one loopback server, detached, recorded in
$PREFECT_HOME/micn-server/state.json; later commands (other DVC stages, other shells) find it, check
its health and use it. A small supervisor (flows/_prefect_server.py) stops it once no `micn`
process has used it for MICN_PREFECT_IDLE_S seconds (default 600). So `dvc repro` pays the start
at most once, and `prefect flow-run ls` (or the UI at the URL in state.json) shows every stage's runs.

Never in the way:
  - PREFECT_API_URL set (environment, Prefect profile or pyproject) -> that server is used as is;
  - MICN_PREFECT_SERVER=temporary -> Prefect's own per-process temporary server;
  - a server that cannot be started or reached in time -> the same fallback, with one line saying so.
Every wait is bounded: the lock (LOCK_TIMEOUT_S), the health check (HEALTH_TIMEOUT_S), the start
(Prefect's PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, at least START_TIMEOUT_S), and a
configured PREFECT_API_URL must answer within MICN_PREFECT_TIMEOUT_S (default 10 s) or the
command stops with one paragraph instead of hanging in Prefect's client.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

MODE_ENV = "MICN_PREFECT_SERVER"  # "shared" (default) | "temporary"
IDLE_ENV = "MICN_PREFECT_IDLE_S"
DEFAULT_IDLE_S = 600.0
LOCK_TIMEOUT_S = 30.0
HEALTH_TIMEOUT_S = 2.0
START_TIMEOUT_S = 60.0
CHECK_TIMEOUT_ENV = "MICN_PREFECT_TIMEOUT_S"  # how long a configured PREFECT_API_URL may take to answer
DEFAULT_CHECK_TIMEOUT_S = 10.0


def prepare_environment(*, debug: bool = False) -> None:
    """Settings read when Prefect is imported: call before anything imports it."""
    # pyproject.toml's [tool.prefect.server] turns analytics off only when run from the repository;
    # the environment also covers other working directories and the server processes we start.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if debug:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "DEBUG")


def quiet_console(*, debug: bool = False) -> None:
    """Keep tracebacks of failed task/flow runs off the terminal (they still go to the run's API log).

    The CLI prints the failure once, as one paragraph; `micn --debug` keeps Prefect's output whole.
    """
    if debug:
        return
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger()] + [lg for lg in logging.Logger.manager.loggerDict.values()
                                       if isinstance(lg, logging.Logger)]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, PrefectConsoleHandler) and not any(
                    isinstance(f, _NoFailureTracebacks) for f in handler.filters):
                handler.addFilter(_NoFailureTracebacks())


class _NoFailureTracebacks(logging.Filter):
    """Drops records that carry a traceback and the ERROR lines of failed runs (the CLI reports them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info or record.exc_text:
            return False
        if not record.name.startswith("prefect."):
            return True
        failed = record.getMessage().startswith(("Finished in state Failed", "Finished in state Crashed"))
        return record.levelno < logging.ERROR and not failed


# ---------------------------------------------------------------------------------------------
# The shared server


def state_dir(home: Path | None = None) -> Path:
    if home is None:
        home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    return Path(home) / "micn-server"


@contextlib.contextmanager
def api(command_uses_prefect: bool = True) -> Iterator[str | None]:
    """Within: Prefect talks to the shared server (its URL), or to what the user configured (None)."""
    before = os.environ.get("PREFECT_API_URL")
    url = use_shared_server() if command_uses_prefect else None
    if url is None:
        yield None
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):  # Prefect read its settings at import
            yield url
    finally:  # a caller that runs several commands in one process starts each from its own setting
        if before is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = before


def use_shared_server() -> str | None:
    """The shared server's API URL (started if needed), also exported for child processes; None
    when the user's own setting or Prefect's temporary server applies."""
    if os.environ.get(MODE_ENV, "shared") == "temporary":
        return None
    configured = _configured_api_url()
    if configured:
        _check_answers(configured)
        return None
    folder = state_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # another process may be starting the server while holding the lock: wait as long as a start may take
        with _locked(folder / "lock", _start_timeout() + LOCK_TIMEOUT_S):
            url = _healthy_server(folder) or _start_server(folder)
            if url:
                _register_client(folder)
    except (OSError, TimeoutError) as e:
        _fallback_notice(f"{folder}: {e}")
        return None
    if url is None:
        return None
    os.environ["PREFECT_API_URL"] = url  # child processes (dvc repro, Dask workers) use it too
    return url


def stop_shared_server(home: Path | None = None, timeout_s: float = 10.0) -> bool:
    """Stop the shared server of `home` (tests, `make clean-prefect`); True if one was running."""
    state = _read_state(state_dir(home))
    if not state or not _alive(state["pid"]):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(state["pid"], signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _alive(state["pid"]):
        time.sleep(0.1)
    return True


def _configured_api_url() -> str | None:
    from prefect.settings import get_current_settings

    return get_current_settings().api.url


def _healthy_server(folder: Path) -> str | None:
    state = _read_state(folder)
    if state and _alive(state.get("pid", -1)) and healthy(state["url"]):
        return state["url"]
    return None


def _check_answers(url: str) -> None:
    """A configured API that does not answer within CHECK_TIMEOUT_S is an error, not a hang."""
    timeout = float(os.environ.get(CHECK_TIMEOUT_ENV, DEFAULT_CHECK_TIMEOUT_S))
    if not answers(url, timeout):
        from micn.errors import MicnError

        raise MicnError(f"the Prefect API at {url} (PREFECT_API_URL) does not answer within {timeout:g} s; start that "
                        "server (`prefect server start`), or unset PREFECT_API_URL to let micn start a local one.")


def answers(url: str, timeout_s: float) -> bool:
    """True when anything answers HTTP at `url` within `timeout_s` (an error status is an answer)."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout_s):  # noqa: S310
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def healthy(url: str, timeout_s: float = HEALTH_TIMEOUT_S) -> bool:
    """True when the API at `url` answers its health check within `timeout_s`."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout_s) as r:  # noqa: S310 - loopback http
            return r.status == 200
    except (OSError, ValueError):
        return False


def _start_server(folder: Path) -> str | None:
    """Start the supervisor (which starts the server) detached; wait, bounded, until it answers."""
    (folder / "state.json").unlink(missing_ok=True)
    timeout = _start_timeout()
    idle = float(os.environ.get(IDLE_ENV, DEFAULT_IDLE_S))
    log = (folder / "server.log").open("ab")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    proc = subprocess.Popen(  # noqa: S603 - our own module
        [sys.executable, "-m", "flows._prefect_server", "--dir", str(folder), "--idle", str(idle)],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True,
        cwd=str(Path(__file__).resolve().parents[1]),
    )
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _fallback_notice(f"the server exited with status {proc.returncode}; see {folder / 'server.log'}")
            return None
        state = _read_state(folder)
        if state and state.get("pid") == proc.pid and healthy(state["url"]):
            return state["url"]
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    _fallback_notice(f"no answer within {timeout:.0f} s; see {folder / 'server.log'}")
    return None


def _start_timeout() -> float:
    return max(START_TIMEOUT_S, float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", 0) or 0))


def _register_client(folder: Path) -> None:
    """Mark this process as a user of the server until it exits (the supervisor's idle clock)."""
    clients = folder / "clients"
    clients.mkdir(exist_ok=True)
    mine = clients / str(os.getpid())
    mine.touch()

    def release() -> None:
        with contextlib.suppress(OSError):
            mine.unlink()
            (folder / "last_used").touch()

    atexit.register(release)


def _fallback_notice(why: str) -> None:
    print(f"micn: the shared Prefect server is not available ({why}); using a temporary one for this command.",
          file=sys.stderr)


def _read_state(folder: Path) -> dict | None:
    try:
        state = json.loads((folder / "state.json").read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and {"pid", "url"} <= state.keys() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _locked(path: Path, timeout_s: float) -> Iterator[None]:
    """An exclusive flock on `path`, waited for at most `timeout_s`."""
    with path.open("a") as f:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    raise TimeoutError(f"another micn process holds {path} for more than {timeout_s:.0f} s") from e
                time.sleep(0.1)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
