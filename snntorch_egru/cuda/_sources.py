"""Locating and preparing the CUDA C sources in ``snntorch_egru/cuda/kernels/``.

The sources are ordinary files of the package (package data, see ``pyproject.toml``),
found next to this module in a source tree, an editable install and an installed wheel alike.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Tuple

__all__ = ["kernel_dir", "kernel_files", "kernel_source", "variant_options", "VARIANTS"]

_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$', re.MULTILINE)

#: Compile-time variants: (real type, weight storage code, forward units per block).
#: Storage codes: 0 = the real type, 1 = fp16, 2 = bf16.
VARIANTS: List[Tuple[str, int, int]] = [
    ("float", 0, 32),
    ("float", 0, 256),
    ("float", 1, 32),
    ("float", 2, 64),
    ("double", 0, 128),
]


def kernel_dir() -> Path:
    """Directory holding the ``.cu`` / ``.cuh`` sources (installed or in the source tree)."""
    d = Path(__file__).resolve().parent / "kernels"
    missing = [n for n in ("egru_common.cuh", "egru_forward.cu", "egru_backward.cu") if not (d / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"the EGRU CUDA kernel sources {missing} were not found in {d} (package data of "
            "snntorch_egru.cuda); the installation is incomplete: reinstall snntorch-egru"
        )
    return d


def kernel_files() -> List[Path]:
    """All ``.cu`` sources (one per pass)."""
    return sorted(kernel_dir().glob("*.cu"))


_CACHE: Dict[str, str] = {}


def kernel_source(name: str) -> str:
    """Source of ``snntorch_egru/cuda/kernels/<name>`` with local ``#include "..."`` files inlined (once each).

    Inlining makes the text self-contained (no include path for NVRTC) and makes
    CuPy's on-disk cache key cover the headers too.
    """
    if name in _CACHE:
        return _CACHE[name]
    root = kernel_dir()
    seen: set = set()

    def expand(fname: str) -> str:
        if fname in seen:
            return ""
        seen.add(fname)
        text = (root / fname).read_text()
        return _INCLUDE.sub(lambda m: expand(m.group(1)), text)

    src = expand(name)
    _CACHE[name] = src
    return src


def variant_options(real: str, wstore: int, units: int) -> Tuple[str, ...]:
    """NVRTC ``-D`` options selecting one compile-time variant."""
    if real not in ("float", "double"):
        raise ValueError(f"real must be 'float' or 'double', got {real!r}")
    if wstore not in (0, 1, 2) or (real == "double" and wstore != 0):
        raise ValueError(f"wstore must be 0, 1 or 2 (1, 2 only with float), got {wstore!r}")
    if units not in (32, 64, 128, 256):
        raise ValueError(f"units must be 32, 64, 128 or 256, got {units!r}")
    return (f"-DEGRU_REAL={real}", f"-DEGRU_WSTORE={wstore}", f"-DEGRU_UNITS={units}", "-std=c++14")
