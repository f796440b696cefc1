"""One `micn grid` per root: a second one on the same root is refused in one paragraph naming the
holder's PID, and the first trains every run exactly once."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from micn.data.layout import samples_dir
from micn.grid import LOCK_FILE
from micn.record import read_record

pytestmark = pytest.mark.integration


def grid_root(tiny_samples: Path, root: Path, seeds: list[int], epochs: int, patience: int) -> list[str]:
    """A grid root of DIN base runs on the tiny samples; returns the `micn grid` command to run in it."""
    target = samples_dir(root, "tiny", 10)
    target.parent.mkdir(parents=True)
    target.symlink_to(tiny_samples, target_is_directory=True)
    params = {
        "datasets": {"tiny": {"enabled": True, "max_len": 10}},
        "experiments": {"table2": {"enabled": True, "backbones": ["din"], "variants": ["base"]}},
        "grid": {"seeds": seeds, "max_workers": 1},
        "train": {"epochs": epochs, "batch_size": 64, "threads": 1, "patience": patience},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return [str(Path(sys.executable).parent / "micn"), "grid", "--params", "params.yaml", "--root", "."]


def test_a_second_grid_on_the_same_root_is_refused(tiny_samples, tmp_path):
    root = tmp_path / "root"
    command = grid_root(tiny_samples, root, seeds=[1, 2], epochs=30, patience=1000)
    first = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock, deadline = root / LOCK_FILE, time.monotonic() + 240
    while first.poll() is None and time.monotonic() < deadline and not (lock.exists() and lock.read_text().strip()):
        time.sleep(0.2)
    assert first.poll() is None, f"the first grid ended before the second started: {first.communicate()}"
    assert lock.read_text().strip() == str(first.pid)

    second = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=240)
    assert second.returncode == 2
    assert f"another `micn grid` (PID {first.pid}) is training into this root" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1

    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    records = [read_record(p) for p in sorted((root / "metrics" / "runs").rglob("*.json"))]
    assert sorted(r.run_id for r in records) == ["tiny/din-base-len10-seed1", "tiny/din-base-len10-seed2"]
    assert all(r.attempts == 1 and r.epochs == 30 for r in records)
    assert out.count("din-base-len10-seed1") == 1  # the first grid's table: each run once

    again = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=240)  # the lock is free again
    assert again.returncode == 0 and again.stdout.count("reused") == 2, again.stderr


def test_sigterm_on_a_worker_thread_stops_the_grid_in_one_line(tiny_samples, tmp_path):
    """A SIGTERM the kernel hands to one of the grid's worker threads (tgkill to a thread that is
    not the main one) still stops `micn grid` at once: one line, exit 143."""
    import ctypes
    import os
    import signal

    root = tmp_path / "root"
    command = grid_root(tiny_samples, root, seeds=[1], epochs=200, patience=100000)
    grid = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while grid.poll() is None and time.monotonic() < deadline and not list((root / "models").rglob("checkpoint.pt")):
        time.sleep(0.2)
    assert grid.poll() is None, f"the grid ended before it could be stopped: {grid.communicate()}"
    worker = next(int(t) for t in os.listdir(f"/proc/{grid.pid}/task") if int(t) != grid.pid)
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.syscall(234, grid.pid, worker, signal.SIGTERM) == 0  # tgkill (x86-64): that thread only
    _, err = grid.communicate(timeout=30)
    assert grid.returncode == 143, err[-2000:]
    last = err.strip().splitlines()[-1]  # after the progress bar's last redraw, which ends no line
    assert last.endswith("micn grid: stopped (SIGTERM); rerun the same command to resume"), err[-2000:]
