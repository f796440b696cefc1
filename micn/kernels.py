"""The same numbers on any x86-64 CPU with AVX2 or newer: the numeric kernels, pinned.

torch picks its vectorised kernels (ATen), its BLAS code path (MKL) and its oneDNN code path by the
CPU it runs on, so the same run gives AUCs that differ in the 4th digit on an AVX-512 machine and an
AVX2 one (summation order, fused multiply-adds). `pin_cpu_kernels()` sets the three libraries to their
AVX2 paths, which every such CPU has; they read these variables when torch is imported, so every
`micn` command calls it first (`flows/cli.py`). The cost is measured in
docs/findings/2026-12-06-speed. `MICN_CPU_KERNELS=native` keeps each CPU's own kernels (faster on
AVX-512, numbers that only that kind of CPU reproduces).
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

PINNED = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
OPT_OUT = "MICN_CPU_KERNELS"  # "native": the CPU's own kernels


def pin_cpu_kernels(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Set `PINNED` in `environ` (overriding what is there) unless `MICN_CPU_KERNELS=native`; the
    variables set. Must run before torch is imported: torch reads them once, at import."""
    if environ.get(OPT_OUT, "pinned") == "native":
        return {}
    if environ is os.environ and "torch" in sys.modules:
        raise RuntimeError("pin_cpu_kernels() must run before torch is imported (torch reads the variables at import)")
    environ.update(PINNED)
    return dict(PINNED)
