"""Where the pipeline keeps one dataset's samples: `<root>/data/samples/<dataset>/len<max_len>`.

Coded once, here, in a module with no heavy imports: the samples stage writes this layout, and the
grid, `micn train` and `micn interests` read it (reading `params.yaml` must stay cheap).
"""

from __future__ import annotations

from pathlib import Path

SAMPLES_ROOT = Path("data", "samples")  # below the repository root


def samples_dir(root: str | Path, dataset: str, max_len: int) -> Path:
    """`<root>/data/samples/<dataset>/len<max_len>`: one dataset's samples at one history length."""
    return Path(root) / SAMPLES_ROOT / samples_subdir(dataset, max_len)


def samples_subdir(dataset: str, max_len: int) -> Path:
    """`<dataset>/len<max_len>`: one samples folder below the samples root (`micn samples --params --out`)."""
    return Path(dataset) / f"len{max_len}"
