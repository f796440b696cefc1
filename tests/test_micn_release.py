"""MICN's forms against the reference commits that define them, bit for bit: the capsule-only
ablation (`post_layers: []`, no user profile, k_max 4) against the capsule-only MICN, and the
paper's supervision (`supervision: target`, the default) against the release before the
`history` supervision existed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import REPO

pytestmark = pytest.mark.usefixtures("one_thread")


# (reference commit, the form's MICNConfig fields): the reference's `micn` package must give the same numbers
FORMS = {
    "capsule_only": ("78c8957", dict(n_neg=40, k_max=4, post_layers=(), user_profile=False)),
    "paper_supervision": ("17fba98", dict(n_neg=40, supervision="target")),
}

# Builds every backbone with one MICN form (the trainer's own-generator set-up), runs
# three Adam steps and one evaluation and saves every number: run once on the reference commit's code
# and once on this tree, the two files must be equal to the last bit.
OUTPUTS_SCRIPT = """
import json, sys, torch
from torch.nn import functional as F
from micn.config import MICNConfig
from micn.data.batch import random_batch
from micn.models.with_micn import build_with_micn
torch.set_num_threads(1)
out = {}
for name in ("wide_deep", "din", "dien"):
    torch.manual_seed(3)
    # the form, spelled so both trees accept it (a reference's MICNConfig lacks the fields it
    # predates: there the form is the only one)
    fields = MICNConfig.__dataclass_fields__
    form = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(sys.argv[2]).items() if k in fields}
    model = build_with_micn(name, 80, 500, 30, 18, 18, MICNConfig(**form),
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


def _outputs_of(code_root: Path, tmp_path: Path, tag: str, form: dict) -> dict:
    script, result = tmp_path / "outputs.py", tmp_path / f"{tag}.pt"
    script.write_text(OUTPUTS_SCRIPT)
    env = {"PYTHONPATH": str(code_root), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(script), str(result), json.dumps(form)], check=True, cwd=code_root, env=env, timeout=300)
    return torch.load(result, weights_only=True)


@pytest.mark.parametrize("form", sorted(FORMS))
def test_micn_form_matches_its_reference_commit_bit_for_bit(tmp_path: Path, form: str) -> None:
    """The form's flags on this tree are its reference commit's MICN: the two codes give the same
    module tree, logits, L_micn, DIEN aux loss and generator state, step by step, bit for bit (so
    runs of either give the same numbers)."""
    commit, fields = FORMS[form]
    reference = tmp_path / "reference"
    reference.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit, "micn"], capture_output=True)
    if archive.returncode != 0:
        pytest.skip(f"no git history with {commit} here: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(reference)], input=archive.stdout, check=True)
    expected, got = _outputs_of(reference, tmp_path, "reference", fields), _outputs_of(REPO, tmp_path, "tree", fields)
    assert expected.keys() == got.keys()
    for key in expected:
        if key.endswith("/keys"):
            assert expected[key] == got[key], key
        else:
            assert torch.equal(expected[key], got[key]), key
