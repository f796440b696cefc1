"""Prefect for every `micn` command: one shared local API server, quiet terminal, no telemetry.

Why: without PREFECT_API_URL each Prefect process starts its own temporary server (5-15 s), so
`dvc repro` paid it once per stage and each stage's runs lived in a server that vanished with it.
Here the first `micn` command that runs a flow starts one loopback server, detached, recorded in
$PREFECT_HOME/micn-server/state.json; later commands (other DVC stages, other shells) find it, check
its health and use it. A small supervisor (flows/_prefect_server.py) stops it once no `micn`
process has used it for MICN_PREFECT_IDLE_S seconds (default 600). So `dvc repro` pays the start
at most once, and `prefect flow-run ls` (or the UI at the URL in state.json) shows every stage's runs.

What Prefect provides and is used: its API app run under uvicorn exactly as its temporary server
runs it, and its client's health check (`api_healthcheck`, which returns any failure instead of
raising it, and sends the profile's API key and TLS settings). What it lacks and is kept here:
`prefect server start --background` records one pid per PREFECT_HOME in server.pid (the user's own
background server would collide with ours), does not wait until the server answers, never stops an
idle server, and costs a CLI process; `prefect server stop` is a SIGTERM to that pid. So this module
keeps the state file that later commands find, the wait for a started server, the idle stop, and
bounds on every wait (the client's health check retries for a minute by default).

Never in the way:
  - PREFECT_API_URL set (environment, Prefect profile or pyproject) -> that server is used as is,
    once it passes the health check within MICN_PREFECT_TIMEOUT_S (default 10 s); otherwise the
    command stops with one paragraph naming the URL;
  - MICN_PREFECT_SERVER=temporary -> Prefect's own per-process temporary server;
  - a server that cannot be started in time -> the same fallback, with one line saying so.
A PREFECT_HOME that is not a writable folder stops the command at once, in one paragraph, before
any server is started. A state file whose process is not our supervisor, or whose URL fails the
health check (silence, refusal, an HTTP error, bytes that are not HTTP), names no server of ours: a
new one is started and replaces it. Every wait is bounded: the lock (LOCK_TIMEOUT_S), the health
check (HEALTH_TIMEOUT_S, a hard deadline however slowly an answer trickles in), and the start
(Prefect's PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, at least START_TIMEOUT_S).
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import errno
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
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
SUPERVISOR = "flows._prefect_server"  # the module the supervisor runs as (`python -m`)


def prepare_environment(*, debug: bool = False) -> None:
    """Settings read when Prefect is imported: call before anything imports it."""
    # pyproject.toml's [tool.prefect.server] turns analytics off only when run from the repository;
    # the environment also covers other working directories and the server processes we start.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if debug:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "DEBUG")
    else:  # a home that cannot be created is reported once, in one paragraph, by use_shared_server
        warnings.filterwarnings("ignore", message="Failed to create the Prefect home directory", category=UserWarning)


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


def prefect_home() -> Path:
    """PREFECT_HOME (default ~/.prefect) as an absolute path: the supervisor runs in another folder."""
    return Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser().resolve()


def state_dir(home: Path | None = None) -> Path:
    return Path(home).resolve() / "micn-server" if home is not None else prefect_home() / "micn-server"


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
    configured = _configured_api_url()
    if configured:
        _check_configured(configured)
        return None
    home = _usable_home()  # Prefect's temporary server keeps its database there too
    if os.environ.get(MODE_ENV, "shared") == "temporary":
        return None
    folder = state_dir(home)
    try:
        folder.mkdir(exist_ok=True)
        # another process may be starting the server while holding the lock: wait as long as a start may take
        with _locked(folder / "lock", _start_timeout() + LOCK_TIMEOUT_S):
            url = _healthy_server(folder) or _start_server(folder, home)
            if url:
                _register_client(folder, url)
    except (OSError, TimeoutError) as e:
        _fallback_notice(f"{folder}: {e}")
        return None
    if url is None:
        return None
    os.environ["PREFECT_API_URL"] = url  # child processes (dvc repro, Dask workers) use it too
    return url


def stop_shared_server(home: Path | None = None, timeout_s: float = 10.0) -> bool:
    """Stop the shared server of `home` (tests, `make prefect-stop`); True if one was running."""
    folder = state_dir(home)
    state = _read_state(folder)
    if not state or not _is_supervisor(state["pid"], folder):  # never a process that reused a stale pid
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


def _usable_home() -> Path:
    """PREFECT_HOME, created if missing; one paragraph (MicnError) unless it is a writable folder."""
    home = prefect_home()
    try:
        home.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=home):
            pass
    except OSError as e:
        from micn.errors import MicnError

        if home.exists() and not home.is_dir():
            why = "it is a file"
        elif e.errno == errno.ENOTDIR:
            why = "a folder on its path is a file"
        else:
            why = (e.strerror or type(e).__name__).lower()
        raise MicnError(f"PREFECT_HOME {home} is not a writable folder ({why}); Prefect keeps its database there "
                        "and micn the shared server's state. Point PREFECT_HOME at a writable folder (or unset it "
                        "for ~/.prefect), or set PREFECT_API_URL to a running Prefect server.") from None
    return home


def _healthy_server(folder: Path) -> str | None:
    """The URL in state.json when it names this folder's live supervisor and passes the health check."""
    state = _read_state(folder)
    if state and _is_supervisor(state["pid"], folder) and healthy(state["url"]):
        return state["url"]
    return None


def _check_configured(url: str) -> None:
    """A configured API that fails the health check within CHECK_TIMEOUT_S is an error, not a hang."""
    timeout = float(os.environ.get(CHECK_TIMEOUT_ENV, DEFAULT_CHECK_TIMEOUT_S))
    problem = _in_words(_health_error(url, timeout), timeout)
    if problem:
        from micn.errors import MicnError

        url = _printable(url, 200)
        raise MicnError(f"the Prefect API at {url} (PREFECT_API_URL) {problem}; expected a Prefect server whose health "
                        f"check (GET {url.rstrip('/')}/health) answers within {timeout:g} s. Start that server "
                        "(`prefect server start`), correct PREFECT_API_URL, or unset it to let micn start a local one.")


def wait_for_api(url: str, timeout_s: float) -> None:
    """The Prefect API at `url` passes its health check within `timeout_s`, or a MicnError in one
    paragraph saying what it met instead (never the bytes it received)."""
    problem = _in_words(_health_error(url, timeout_s), timeout_s)
    if problem:
        from micn.errors import MicnError

        raise MicnError(f"the Prefect API at {_printable(url, 200)} did not pass its health check: it {problem}. "
                        "Start it (`prefect server start`), fix or unset PREFECT_API_URL, or raise "
                        "grid.connect_timeout_s.")


def healthy(url: str, timeout_s: float = HEALTH_TIMEOUT_S) -> bool:
    """True when the API at `url` passes Prefect's client health check within `timeout_s`."""
    return _health_error(url, timeout_s) is None


def answers(url: str, timeout_s: float) -> bool:
    """True when a server answers HTTP at `url` within `timeout_s`: healthy, or with an error status."""
    import httpx

    error = _health_error(url, timeout_s)
    return error is None or isinstance(error, httpx.HTTPStatusError)


def _health_error(url: str, timeout_s: float) -> BaseException | None:
    """None when GET <url>/health succeeds through Prefect's client within `timeout_s` (a hard
    deadline, without the client's retries); else what failed: TimeoutError past the deadline."""
    from prefect.client.orchestration import get_client  # imported here: not counted in the deadline
    from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    outcome: list[BaseException | None] = []

    def check() -> None:
        try:
            with temporary_settings(updates={PREFECT_API_URL: url, PREFECT_CLIENT_MAX_RETRIES: 0}):
                # httpx_settings of our own: never the client of a surrounding flow run, and the timeout
                with get_client(sync_client=True, httpx_settings={"timeout": timeout_s}) as client:
                    outcome.append(client.api_healthcheck())
        except Exception as e:  # noqa: BLE001 - a URL the client cannot even build a request for
            outcome.append(e)

    # the client's timeout bounds each read, not an answer that trickles in byte by byte: the thread's join does
    worker = threading.Thread(target=contextvars.copy_context().run, args=(check,), daemon=True)
    worker.start()
    worker.join(timeout_s + 0.5)
    return outcome[0] if outcome else TimeoutError(f"no complete answer within {timeout_s:g} s")


def _in_words(error: BaseException | None, timeout_s: float) -> str | None:
    """What a failed health check met, in a few printable words (never the bytes it received)."""
    import httpx

    if error is None:
        return None
    if isinstance(error, (TimeoutError, httpx.TimeoutException)):
        return f"does not answer within {timeout_s:g} s"
    if isinstance(error, httpx.HTTPStatusError):
        return f"answers its health check with HTTP {error.response.status_code}"
    if isinstance(error, httpx.ConnectError):
        return f"cannot be reached ({_printable(str(error), 80)})"
    if isinstance(error, (httpx.ProtocolError, httpx.DecodingError)):
        return "answers, but not in HTTP"
    return f"fails its health check ({type(error).__name__}: {_printable(str(error), 80)})"


def _printable(text: str, limit: int) -> str:
    """`text` as one line of printable ASCII, at most `limit` characters."""
    text = " ".join("".join(c if c.isascii() and c.isprintable() else " " for c in text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _start_server(folder: Path, home: Path) -> str | None:
    """Start the supervisor (which starts the server) detached; wait, bounded, until it answers."""
    (folder / "state.json").unlink(missing_ok=True)  # a server it named failed the check: no command may use it
    timeout = _start_timeout()
    idle = float(os.environ.get(IDLE_ENV, DEFAULT_IDLE_S))
    log = (folder / "server.log").open("ab")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {"PREFECT_HOME": str(home)}
    proc = subprocess.Popen(  # noqa: S603 - our own module
        [sys.executable, "-m", SUPERVISOR, "--dir", str(folder), "--idle", str(idle)],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True,
        cwd=str(Path(__file__).resolve().parents[1]),
    )
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _fallback_notice(f"the server exited with status {proc.returncode}; see {folder / 'server.log'}")
            return None
        state = _read_state(folder)  # written once the server listens
        if state and state["pid"] == proc.pid and healthy(state["url"]):
            return state["url"]
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    _fallback_notice(f"no answer within {timeout:.0f} s; see {folder / 'server.log'}")
    return None


def _start_timeout() -> float:
    return max(START_TIMEOUT_S, float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", 0) or 0))


def _register_client(folder: Path, url: str) -> None:
    """Mark this process as a user of the server at `url` until it exits (the supervisor's idle clock)."""
    clients = folder / "clients"
    clients.mkdir(exist_ok=True)
    mine = clients / str(os.getpid())
    mine.write_text(url)

    def release() -> None:
        with contextlib.suppress(OSError):
            mine.unlink()

    atexit.register(release)


def _fallback_notice(why: str) -> None:
    print(f"micn: the shared Prefect server is not available ({why}); using a temporary one for this command.",
          file=sys.stderr)


def _read_state(folder: Path) -> dict | None:
    """state.json when it holds a pid and a URL; None when missing or anything else."""
    try:
        state = json.loads((folder / "state.json").read_text())
    except (OSError, ValueError):
        return None
    ok = (isinstance(state, dict) and isinstance(state.get("pid"), int) and state["pid"] > 0
          and isinstance(state.get("url"), str))
    return state if ok else None


def _is_supervisor(pid: int, folder: Path) -> bool:
    """`pid` runs the supervisor of `folder` (where /proc can tell; elsewhere: `pid` is alive)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except FileNotFoundError:
        return not Path("/proc/self").exists() and _alive(pid)
    except OSError:
        return _alive(pid)
    return SUPERVISOR.encode() in argv and str(folder).encode() in argv


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
