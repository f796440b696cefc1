"""Supervisor of the shared local Prefect server (started detached by flows/_prefect.py).

    python -m flows._prefect_server --dir $PREFECT_HOME/micn-server --idle 600

Runs Prefect's API app under uvicorn on a free loopback port, as Prefect's temporary server runs
it, and writes state.json {pid, server_pid, port, url} once the port accepts connections (uvicorn
listens only after the app has started). It stops the server, and itself,
  - once no `micn` process registered as its client (clients/<pid>, holding its URL) has been alive
    for `--idle` seconds; the clients of a folder that is gone count as none, so a server whose
    PREFECT_HOME was deleted stops within `--idle` seconds too;
  - when the server exits, or on SIGTERM.
When state.json still names it, the idle stop happens under the lock that clients take to pick the
server up, so none can find it healthy between the check and the stop; when the folder or the
state file is gone, or names another server, no command can find it and no lock is needed. The
server gets SIGTERM if the supervisor dies (Linux), so a killed supervisor leaves no server behind.
state.json is removed on the way out while it names this supervisor, so it never points at nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from flows._prefect import _alive, _locked, _read_state

POLL_S = 1.0  # the idle clock's resolution: a server stops at most this long after its limit
START_LIMIT_S = 300.0  # the client gives up sooner (PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS) and stops us


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flows._prefect_server")
    p.add_argument("--dir", required=True, type=Path)
    p.add_argument("--idle", type=float, default=600.0)
    args = p.parse_args(argv)
    folder: Path = args.dir.absolute()
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    server = _start(port)
    stopping: list[int] = []  # the signal that asked us to stop
    signal.signal(signal.SIGTERM, lambda signum, _: stopping.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _: stopping.append(signum))
    try:
        if not _wait_listening(port, server, START_LIMIT_S, stopping):
            return 1
        _write_state(folder, {"pid": os.getpid(), "server_pid": server.pid, "port": port, "url": url,
                              "started": time.time()})
        print(f"shared Prefect server at {url} (pid {server.pid}); idle shutdown after {args.idle:.0f} s", flush=True)
        last_busy = time.monotonic()
        while not stopping and server.poll() is None:
            if _live_clients(folder / "clients", url):
                last_busy = time.monotonic()
            elif time.monotonic() - last_busy > args.idle and _stop_if_still_idle(folder, server, url):
                break
            time.sleep(POLL_S)
    finally:
        _shutdown(folder, server)
    return 0


def _stop_if_still_idle(folder: Path, server: subprocess.Popen, url: str) -> bool:
    """Stop the server if still no client uses it. While state.json names this supervisor, under the
    clients' lock; False: busy again, or the lock was held (a client is starting or checking), and
    the caller tries again on a later poll."""
    if not _findable(folder):
        print("idle, and no command can find this server (its folder or state.json is gone, or names another "
              "server): stopped", flush=True)
        return True
    try:
        with _locked(folder / "lock", POLL_S):  # held longer: a client is busy with it, ask again next poll
            if _live_clients(folder / "clients", url):
                return False
            _shutdown(folder, server)
    except (OSError, TimeoutError):
        return not _findable(folder)  # the folder went while we asked for its lock
    print("idle: stopped", flush=True)
    return True


def _findable(folder: Path) -> bool:
    """state.json names this supervisor: a `micn` command may pick the server up."""
    state = _read_state(folder)
    return state is not None and state["pid"] == os.getpid()


def _shutdown(folder: Path, server: subprocess.Popen) -> None:
    """Stop the server first, then remove state.json: while the file exists, its URL may answer;
    once it is gone, nothing answers there. Idempotent."""
    _terminate(server)
    if _findable(folder):
        with contextlib.suppress(OSError):
            (folder / "state.json").unlink()


def _start(port: int) -> subprocess.Popen:
    # Prefect's folder without importing it (0.9 s that the server's own start would wait for)
    app_dir = Path(importlib.util.find_spec("prefect").origin).parent.parent
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "0",
           "PREFECT__SERVER_EPHEMERAL": "1"}
    env.pop("PREFECT_API_URL", None)
    return subprocess.Popen(  # noqa: S603 - Prefect's own server app, as its temporary server runs it
        [sys.executable, "-m", "uvicorn", "--app-dir", str(app_dir), "--factory",
         "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "error", "--lifespan", "on"],
        env=env, stdin=subprocess.DEVNULL, preexec_fn=_dies_with(os.getpid()),  # noqa: PLW1509 - one thread here
    )


def _dies_with(parent: int):
    """A preexec_fn: the child gets SIGTERM when `parent` dies (Linux's PR_SET_PDEATHSIG; elsewhere nothing)."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None

    def arm() -> None:
        if sys.platform.startswith("linux"):
            libc.prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
            if os.getppid() != parent:  # the parent died before the call
                os.kill(os.getpid(), signal.SIGTERM)

    return arm


def _wait_listening(port: int, server: subprocess.Popen, timeout_s: float, stopping: list[int]) -> bool:
    """True once the server accepts connections on `port`; False if it exits, `timeout_s` passes or
    a signal asks us to stop."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not stopping:
        if server.poll() is not None:
            print(f"the server exited with status {server.returncode}", flush=True)
            return False
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
        time.sleep(0.05)
    print(f"the server did not listen on port {port} within {timeout_s:.0f} s", flush=True)
    return False


def _live_clients(clients: Path, url: str) -> list[int]:
    """Pids of registered `micn` processes still running that use `url` (an empty file is one being
    written: counted); files of dead ones are removed. None when the folder is gone."""
    alive = []
    with contextlib.suppress(OSError):  # the folder may go while we read it
        for f in list(clients.iterdir()) if clients.is_dir() else ():
            if not f.name.isdigit():
                continue
            if not _alive(int(f.name)):
                f.unlink(missing_ok=True)
            elif f.read_text().strip() in ("", url):
                alive.append(int(f.name))
    return alive


def _write_state(folder: Path, state: dict) -> None:
    tmp = folder / f"state.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(state))
    os.replace(tmp, folder / "state.json")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _terminate(server: subprocess.Popen) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


if __name__ == "__main__":
    sys.exit(main())
