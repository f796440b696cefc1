"""Every `micn` command pins torch's CPU kernels to their AVX2 paths (micn/kernels.py), so a run's
record is the same to the last digit whichever kernels the machine (or the environment) offers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from micn.kernels import PINNED
from tests.helpers import REPO

pytestmark = pytest.mark.integration

TIMINGS = {"started", "finished", "train_seconds", "samples_per_s", "seconds", "git_revision"}


def train(samples: Path, out: Path, params: Path, **env: str) -> tuple[dict, list]:
    micn = Path(sys.executable).parent / "micn"
    environ = {k: v for k, v in os.environ.items() if k not in PINNED} | env
    done = subprocess.run([str(micn), "train", "--dataset", "tiny", "--samples", str(samples), "--backbone", "dien",
                           "--variant", "micn", "--seed", "1", "--out", str(out), "--params", str(params)],
                          capture_output=True, text=True, timeout=600, env=environ)
    assert done.returncode == 0, done.stderr
    record = {k: v for k, v in json.loads((out / "metrics.json").read_text()).items() if k not in TIMINGS}
    history = [{k: v for k, v in row.items() if k not in TIMINGS}
               for row in json.loads((out / "history.json").read_text())]
    return record, history


def test_a_run_is_the_same_under_every_kernel_set_the_machine_offers(tiny_samples, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text((REPO / "params.yaml").read_text().replace("epochs: 5", "epochs: 1"))
    capabilities = ["", "default", "avx2", "avx512"]  # "" leaves the variable unset: the CPU's best
    results = [train(tiny_samples, tmp_path / f"run-{c or 'unset'}", params, **({"ATEN_CPU_CAPABILITY": c} if c else {}))
               for c in capabilities]
    for capability, result in zip(capabilities[1:], results[1:]):
        assert result == results[0], f"ATEN_CPU_CAPABILITY={capability} changed the run"
    assert results[0][0]["metrics"]["auc"] is not None
