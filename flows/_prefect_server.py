"""Supervisor of the shared local Prefect server (started detached by flows/_prefect.py).

    python -m flows._prefect_server --dir $PREFECT_HOME/micn-server --idle 600

Starts the Prefect API on a free loopback port (the same uvicorn app Prefect's temporary server
runs), writes state.json {pid, server_pid, port, url} once it answers, and stops it when no
registered `micn` process (clients/<pid>) has been alive for `--idle` seconds, when the server
dies, or on SIGTERM. It removes state.json on the way out, so a stale file never points anywhere.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

POLL_S = 2.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m flows._prefect_server")
    p.add_argument("--dir", required=True, type=Path)
    p.add_argument("--idle", type=float, default=600.0)
    args = p.parse_args(argv)
    folder: Path = args.dir
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    server = _start(port)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        if not _wait_healthy(url, server, timeout_s=300.0):
            return 1
        _write_state(folder, {"pid": os.getpid(), "server_pid": server.pid, "port": port, "url": url,
                              "started": time.time()})
        print(f"shared Prefect server at {url} (pid {server.pid}); idle shutdown after {args.idle:.0f} s", flush=True)
        last_busy = time.monotonic()
        while not stopping and server.poll() is None:
            if _live_clients(folder / "clients"):
                last_busy = time.monotonic()
            elif time.monotonic() - last_busy > args.idle and _stop_if_still_idle(folder, server):
                print("idle: stopped", flush=True)
                break
            time.sleep(POLL_S)
    finally:
        _shutdown(folder, server)
    return 0


def _stop_if_still_idle(folder: Path, server: subprocess.Popen) -> bool:
    """Stop the server if still no client uses it, under the lock that clients take to pick it up,
    so none can find it healthy between this check and the stop. False: busy again, or the lock was
    held (a client is starting or checking); the caller tries again on a later poll."""
    from flows._prefect import LOCK_TIMEOUT_S, _locked

    try:
        with _locked(folder / "lock", LOCK_TIMEOUT_S):
            if _live_clients(folder / "clients"):
                return False
            _shutdown(folder, server)
            return True
    except (OSError, TimeoutError):
        return False


def _shutdown(folder: Path, server: subprocess.Popen) -> None:
    """Stop the server first, then remove state.json: while the file exists, its URL may answer;
    once it is gone, nothing answers there. Idempotent."""
    _terminate(server)
    with contextlib.suppress(OSError, ValueError):
        state = json.loads((folder / "state.json").read_text())
        if state.get("pid") == os.getpid():
            (folder / "state.json").unlink()


def _start(port: int) -> subprocess.Popen:
    import prefect

    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "0",
           "PREFECT__SERVER_EPHEMERAL": "1"}
    env.pop("PREFECT_API_URL", None)
    return subprocess.Popen(  # noqa: S603 - Prefect's own server app, as its temporary server runs it
        [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(prefect.__file__).parent.parent), "--factory",
         "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "error", "--lifespan", "on"],
        env=env, stdin=subprocess.DEVNULL,
    )


def _wait_healthy(url: str, server: subprocess.Popen, timeout_s: float) -> bool:
    from flows._prefect import healthy

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            print(f"the server exited with status {server.returncode}", flush=True)
            return False
        if healthy(url):
            return True
        time.sleep(0.2)
    print(f"no answer from {url} within {timeout_s:.0f} s", flush=True)
    return False


def _live_clients(clients: Path) -> list[int]:
    """Pids of registered `micn` processes still running; files of dead ones are removed."""
    alive = []
    for f in clients.glob("*") if clients.is_dir() else ():
        try:
            pid = int(f.name)
            os.kill(pid, 0)
            alive.append(pid)
        except (ValueError, ProcessLookupError):
            f.unlink(missing_ok=True)
        except PermissionError:
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
