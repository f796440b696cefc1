"""A sick or missing Prefect server is a bounded, one-paragraph event (flows/_prefect.py,
flows/_prefect_server.py): bytes that are not HTTP, an HTTP error, silence or a trickle at a URL;
an unusable PREFECT_HOME; a shared server whose folder or state file is gone.

Every peer is on 127.0.0.1. The tests that start a real server are marked `integration`; each
uses its own PREFECT_HOME under tmp_path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows._prefect import answers, healthy, stop_shared_server, use_shared_server
from flows._prefect_server import _live_clients
from micn.errors import MicnError
from tests.helpers import REPO

# A loopback peer that is not a Prefect API: argv[1] says how it answers; it prints its port.
PEER = r"""
import os, socket, sys, threading, time
kind = sys.argv[1]
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(16)
print(listener.getsockname()[1], flush=True)

def answer(conn):
    try:
        conn.recv(4096)
        if kind == "garbage":
            conn.sendall(os.urandom(2048))
        elif kind == "http404":
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found")
        elif kind == "trickle":  # a status line, then one header byte every 0.2 s, forever
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            while True:
                conn.sendall(b"y")
                time.sleep(0.2)
        elif kind == "silent":
            time.sleep(3600)
    except OSError:
        pass
    finally:
        conn.close()

while True:
    threading.Thread(target=answer, args=(listener.accept()[0],), daemon=True).start()
"""


def start_peer(kind: str, *argv: str) -> tuple[subprocess.Popen, str]:
    """(process, API URL) of a PEER answering `kind`; `argv` only shows in its command line."""
    proc = subprocess.Popen([sys.executable, "-c", PEER, kind, *argv], stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}/api"


@pytest.fixture
def peer():
    """start(kind, *argv) -> (URL, pid) of a PEER, every one stopped after the test."""
    started: list[subprocess.Popen] = []

    def start(kind: str, *argv: str) -> tuple[str, int]:
        proc, url = start_peer(kind, *argv)
        started.append(proc)
        return url, proc.pid

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def micn(home: Path | str, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    """(result, seconds) of `micn <args>` with PREFECT_HOME `home`."""
    environ = {**os.environ, "PREFECT_HOME": str(home), "MICN_PREFECT_IDLE_S": "30", **env}
    if "PREFECT_API_URL" not in env:
        environ.pop("PREFECT_API_URL", None)
    start = time.monotonic()
    out = subprocess.run([str(Path(sys.executable).parent / "micn"), *args], capture_output=True, text=True,
                         timeout=300, env=environ, cwd=REPO)
    return out, time.monotonic() - start


def generate(home: Path, out: Path, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    return micn(home, "generate", "--profile", "tiny", "--seed", "1", "--out", str(out), **env)


def one_paragraph(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and "internal error" not in stderr
    return lines[0]


def running(pid: int) -> bool:
    """`pid` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# --- the health check --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["garbage", "http404", "trickle", "silent", "refused"])
def test_health_check_is_false_within_its_timeout_whatever_answers(peer, kind):
    url = "http://127.0.0.1:9/api" if kind == "refused" else peer(kind)[0]
    start = time.monotonic()
    assert healthy(url, 1.0) is False
    assert answers(url, 1.0) is (kind == "http404")  # an HTTP error status is an answer, garbage is not
    assert time.monotonic() - start < 2 * (1.0 + 0.5) + 2.0  # two checks, each bounded; refusals retried by httpcore


@pytest.mark.parametrize("kind, words", [
    ("garbage", "answers, but not in HTTP"),
    ("http404", "answers its health check with HTTP 404"),
    ("trickle", "does not answer within 2 s"),
    ("refused", "cannot be reached"),
])
def test_a_configured_url_that_is_not_a_prefect_api_is_named_in_one_short_paragraph(peer, monkeypatch, kind, words):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = "http://127.0.0.1:9/api" if kind == "refused" else peer(kind)[0]
    monkeypatch.setenv("MICN_PREFECT_TIMEOUT_S", "2")  # Prefect's client retries a refused connection for 1.5 s
    start = time.monotonic()
    with temporary_settings(updates={PREFECT_API_URL: url}), pytest.raises(MicnError) as e:
        use_shared_server()
    assert time.monotonic() - start < 2 + 0.5 + 2.0
    message = str(e.value)
    assert message.startswith(f"the Prefect API at {url} (PREFECT_API_URL) {words}"), message
    assert f"GET {url}/health" in message and "PREFECT_API_URL" in message
    assert message.isascii() and message.isprintable() and len(message) < 400  # never the bytes it received


@pytest.mark.parametrize("kind, words", [("garbage", "answers, but not in HTTP"), ("trickle", "does not answer within 2 s")])
def test_the_grid_and_the_scheduler_wait_for_a_garbage_api_in_one_bounded_paragraph(peer, kind, words):
    """`wait_for_api` (the grid's and `micn serve`'s check of a configured API) meets garbage or a
    trickle with one printable paragraph within its timeout, never an internal error."""
    from flows._prefect import wait_for_api

    url = peer(kind)[0]
    start = time.monotonic()
    with pytest.raises(MicnError) as e:
        wait_for_api(url, 2.0)
    assert time.monotonic() - start < 2 + 0.5 + 2.0
    message = str(e.value)
    assert message.startswith(f"the Prefect API at {url} did not pass its health check: it {words}"), message
    assert message.isascii() and message.isprintable() and len(message) < 400


def test_micn_with_a_configured_url_answering_garbage_exits_2_in_one_line(peer, tmp_path):
    url, _ = peer("garbage")
    out, seconds = generate(tmp_path / "home", tmp_path / "world", PREFECT_API_URL=url, MICN_PREFECT_TIMEOUT_S="2")
    assert out.returncode == 2
    line = one_paragraph(out.stderr)
    assert line.startswith(f"micn generate: error: the Prefect API at {url} (PREFECT_API_URL) answers, but not in HTTP")
    assert len(line) < 400 and line.isprintable()
    assert seconds < 60  # python and Prefect's import, then one check: not Prefect's minute of retries
    assert not (tmp_path / "world").exists()


# --- PREFECT_HOME ------------------------------------------------------------------------------


def unusable_home(tmp_path: Path, kind: str) -> Path:
    if kind == "file":
        (tmp_path / "home").write_text("not a folder\n")
        return tmp_path / "home"
    if kind == "below a file":
        (tmp_path / "file").write_text("not a folder\n")
        return tmp_path / "file" / "home"
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o555)
    return home


@pytest.mark.parametrize("kind", [
    "file",
    "below a file",
    pytest.param("read-only", marks=pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")),
])
def test_an_unusable_prefect_home_is_one_paragraph_within_seconds(tmp_path, kind):
    home = unusable_home(tmp_path, kind)
    try:
        out, seconds = generate(home, tmp_path / "world")
    finally:
        if kind == "read-only":
            home.chmod(0o755)
    assert out.returncode == 2
    line = one_paragraph(out.stderr)
    assert line.startswith(f"micn generate: error: PREFECT_HOME {home} is not a writable folder"), line
    assert seconds < 30  # python and Prefect's import, then the check: no server start, no temporary server
    assert not (tmp_path / "world").exists()


# --- the supervisor's clients ------------------------------------------------------------------


def test_a_supervisor_counts_only_its_own_live_clients(tmp_path):
    clients, url = tmp_path / "clients", "http://127.0.0.1:1234/api"
    clients.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (clients / str(os.getpid())).write_text(url)
    (clients / str(os.getppid())).write_text("http://127.0.0.1:9999/api")  # another server's client
    (clients / dead.stdout.strip()).write_text(url)
    assert _live_clients(clients, url) == [os.getpid()]
    assert not (clients / dead.stdout.strip()).exists()  # a dead client's file is removed
    assert _live_clients(tmp_path / "gone", url) == []


# --- with a real server ------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("owner", ["a process that looks like its supervisor", "another process"])
def test_a_stale_state_whose_url_answers_garbage_is_replaced_by_a_new_server(peer, tmp_path, owner):
    """state.json naming a loopback port that answers random bytes: not our server, so the command
    starts one and replaces the state; the next command uses that one."""
    home = tmp_path / "home"
    folder = home / "micn-server"
    folder.mkdir(parents=True)
    argv = ("flows._prefect_server", "--dir", str(folder)) if owner.startswith("a process") else ()
    stale_url, stale_pid = peer("garbage", *argv)
    (folder / "state.json").write_text(json.dumps({"pid": stale_pid, "url": stale_url}))
    try:
        first, _ = generate(home, tmp_path / "w1")
        assert first.returncode == 0, first.stderr
        assert "temporary" not in first.stderr and "error" not in first.stderr.lower(), first.stderr
        state = json.loads((folder / "state.json").read_text())
        assert state["url"] != stale_url and state["pid"] != stale_pid and healthy(state["url"])
        second, _ = generate(home, tmp_path / "w2")
        assert second.returncode == 0, second.stderr
        assert json.loads((folder / "state.json").read_text()) == state
    finally:
        stop_shared_server(home)


@pytest.mark.integration
@pytest.mark.parametrize("loss", ["folder deleted", "state.json deleted", "state.json names another server"])
def test_a_server_no_command_can_find_stops_within_its_idle_limit(tmp_path, loss):
    """Start a real supervisor (idle limit 3 s), take away what commands find it by, and both the
    supervisor and its server are gone within the idle limit plus the server's shutdown."""
    home, idle = tmp_path / "home", 3.0
    folder = home / "micn-server"
    folder.mkdir(parents=True)
    env = {**os.environ, "PREFECT_HOME": str(home)}
    env.pop("PREFECT_API_URL", None)
    with (tmp_path / "supervisor.log").open("w") as log:
        supervisor = subprocess.Popen([sys.executable, "-m", "flows._prefect_server", "--dir", str(folder),
                                       "--idle", str(idle)], cwd=REPO, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 180
        while not (folder / "state.json").exists() and supervisor.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        state = json.loads((folder / "state.json").read_text())
        assert state["pid"] == supervisor.pid and healthy(state["url"])
        other = {"pid": os.getpid(), "url": "http://127.0.0.1:9/api"}
        if loss == "folder deleted":
            shutil.rmtree(home)
        elif loss == "state.json deleted":
            (folder / "state.json").unlink()
        else:
            (folder / "state.json").write_text(json.dumps(other))
        supervisor.wait(timeout=idle + 30)  # the idle limit, a poll, and the server's shutdown (10 s at most)
        assert not running(state["server_pid"])
        assert not healthy(state["url"])
        if loss == "state.json names another server":
            assert json.loads((folder / "state.json").read_text()) == other  # not ours to remove
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
    log = (tmp_path / "supervisor.log").read_text()
    assert "no command can find this server" in log, log
