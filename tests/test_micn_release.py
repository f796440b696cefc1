"""MICN's capsule-only ablation (`post_layers: []`, no user profile, k_max 4) against the capsule-only
MICN of a reference commit, bit for bit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import REPO

pytestmark = pytest.mark.usefixtures("one_thread")


REFERENCE_COMMIT = "78c8957"  # its `micn` package is the capsule-only MICN the ablation must match

# Builds every backbone with MICN's capsule-only ablation (the trainer's own-generator set-up), runs
# three Adam steps and one evaluation and saves every number: run once on the reference commit's code
# and once on this tree, the two files must be equal to the last bit.
OUTPUTS_SCRIPT = """
import sys, torch
from torch.nn import functional as F
from micn.config import MICNConfig
from micn.data.batch import random_batch
from micn.models.with_micn import build_with_micn
torch.set_num_threads(1)
out = {}
for name in ("wide_deep", "din", "dien"):
    torch.manual_seed(3)
    # the capsule-only ablation, spelled so both trees accept it (the reference's MICNConfig has
    # no post_layers or user_profile field: there it is the only form)
    fields = MICNConfig.__dataclass_fields__
    ablation = {k: v for k, v in dict(n_neg=40, k_max=4, post_layers=(), user_profile=False).items() if k in fields}
    model = build_with_micn(name, 80, 500, 30, 18, 18, MICNConfig(**ablation),
                            generator=torch.Generator().manual_seed(11))
    batch = random_batch(64, 12, 80, 500, 30, torch.Generator().manual_seed(5), alternating_labels=True)
    out[name + "/keys"] = list(model.state_dict())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(3):
        res = model(batch)
        loss = F.binary_cross_entropy_with_logits(res.logits, batch.label) + sum(res.aux_losses.values())
        out[f"{name}/{step}/logits"] = res.logits.detach().clone()
        for k, v in res.aux_losses.items():
            out[f"{name}/{step}/{k}"] = v.detach().clone()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        out[name + "/eval"] = model(batch).logits
    out[name + "/rng"] = model.rng_state()
torch.save(out, sys.argv[1])
"""


def _outputs_of(code_root: Path, tmp_path: Path, tag: str) -> dict:
    script, result = tmp_path / "outputs.py", tmp_path / f"{tag}.pt"
    script.write_text(OUTPUTS_SCRIPT)
    env = {"PYTHONPATH": str(code_root), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(script), str(result)], check=True, cwd=code_root, env=env, timeout=300)
    return torch.load(result, weights_only=True)


def test_capsule_only_ablation_matches_the_reference_commit_bit_for_bit(tmp_path: Path) -> None:
    """The ablation flag `post_layers: []` (no profile, k_max 4) is the reference commit's capsule-only
    MICN: its code and this tree give the same module tree, logits, L_micn, DIEN aux loss and
    generator state, step by step, bit for bit (so runs of either give the same numbers)."""
    reference = tmp_path / "reference"
    reference.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", REFERENCE_COMMIT, "micn"], capture_output=True)
    if archive.returncode != 0:
        pytest.skip(f"no git history with {REFERENCE_COMMIT} here: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(reference)], input=archive.stdout, check=True)
    expected, got = _outputs_of(reference, tmp_path, "reference"), _outputs_of(REPO, tmp_path, "tree")
    assert expected.keys() == got.keys()
    for key in expected:
        if key.endswith("/keys"):
            assert expected[key] == got[key], key
        else:
            assert torch.equal(expected[key], got[key]), key
