"""SIGTERM ends a command with one line and exit status 143, and the same command then resumes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from micn.record import read_record
from tests.helpers import REPO

pytestmark = pytest.mark.integration


def test_sigterm_stops_training_in_one_line_and_the_rerun_resumes(tiny_samples, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text((REPO / "params.yaml").read_text().replace("epochs: 5", "epochs: 40")
                      .replace("patience: 5", "patience: 1000"))
    micn = Path(sys.executable).parent / "micn"
    command = [str(micn), "train", "--dataset", "tiny", "--samples", str(tiny_samples), "--backbone", "wide_deep",
               "--seed", "1", "--out", "run", "--params", str(params)]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)  # the first epoch is done: there is something to resume
    assert process.poll() is None, f"training ended before it could be stopped: {process.communicate()}"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143
    lines = [line.strip() for line in stderr.replace("\r", "\n").splitlines() if line.strip()]
    assert lines[-1] == "micn train: stopped (SIGTERM); rerun the same command to resume"
    assert not any(line.startswith("micn") for line in lines[:-1]) and "Traceback" not in stderr  # progress bars only
    assert not (tmp_path / "run" / "metrics.json").exists()

    resumed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert read_record(tmp_path / "run" / "metrics.json").epochs == 40
