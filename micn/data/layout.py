"""Where the pipeline keeps one dataset's raw files and samples.

    raw      `<raw_root>/<dataset>/`; the mechanism experiment's synthetic worlds (datasets
             `synthetic-kappa<κ>`) live inside the generate stage's output, in
             `<raw_root>/synthetic/kappa/<dataset>/`
    samples  `<root>/data/samples/<dataset>/len<max_len>`

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


SYNTHETIC = "synthetic"  # the dataset the generate stage writes to data/raw/synthetic
KAPPA_PREFIX = "synthetic-kappa"  # datasets of the mechanism experiment's worlds
KAPPA_SUBDIR = "kappa"  # below the synthetic world's folder


def kappa_dataset(kappa: float) -> str:
    """The dataset name of the synthetic world at interest signal κ: `synthetic` (the default world)
    at κ = 1, else `synthetic-kappa<κ>` with the point written `p` (0.5 -> synthetic-kappa0p5)."""
    return SYNTHETIC if kappa == 1.0 else KAPPA_PREFIX + f"{kappa:g}".replace(".", "p")


def is_synthetic(dataset: str) -> bool:
    """Whether the generate stage writes this dataset (the default world or a κ world)."""
    return dataset == SYNTHETIC or dataset.startswith(KAPPA_PREFIX)


def raw_dir(raw_root: str | Path, dataset: str) -> Path:
    """The folder of one dataset's raw files (see the module docstring)."""
    if dataset.startswith(KAPPA_PREFIX):
        return Path(raw_root) / SYNTHETIC / KAPPA_SUBDIR / dataset
    return Path(raw_root) / dataset
