"""Injected kernel bugs for the mutation test: each is one exact text edit of a COPY of
``snntorch_egru/cuda/kernels/`` (the edit must match exactly once, so a changed kernel makes the test fail
loudly instead of silently testing nothing)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from .hostkernels import KERNELS


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    old: str
    new: str
    caught_by: str  # "values" (reference comparison), "tsan" (race report), "hang" (watchdog)


MUTANTS = [
    Mutant(
        "wrong_gate_offset",
        "egru_forward.cu",
        "acc_n += v * wload(row + 2 * H + i);",
        "acc_n += v * wload(row + H + i);",
        "values",
    ),
    Mutant(
        "wrong_time_index",
        "egru_backward.cu",
        "const size_t idx = ((size_t)(t - 1) * B + b) * H + j;",
        "const size_t idx = ((size_t)t * B + b) * H + j;",
        "values",
    ),
    Mutant(
        "no_compaction_round_barrier",
        "egru_common.cuh",
        "        total += s_scan[EGRU_NWARPS];\n        __syncthreads();\n",
        "        total += s_scan[EGRU_NWARPS];\n",
        "tsan",
    ),
    Mutant(
        "no_reduction_barrier",
        "egru_forward.cu",
        "            s_red[2 * EGRU_BLOCK + tid] = acc_n;\n            __syncthreads();\n",
        "            s_red[2 * EGRU_BLOCK + tid] = acc_n;\n",
        "tsan",
    ),
    Mutant(
        "no_phase_grid_barrier",
        "egru_backward.cu",
        "        if (barrier != 0) grid_barrier(barrier, ++nbar);\n",
        "\n",
        "tsan",
    ),
    Mutant(
        "no_staging_barrier",
        "egru_backward.cu",
        "                    egru_stage(qn + (size_t)b * H + (base - 2 * H), split, len, s_q);\n"
        "                    __syncthreads();\n",
        "                    egru_stage(qn + (size_t)b * H + (base - 2 * H), split, len, s_q);\n",
        "tsan",
    ),
    Mutant(
        "grid_barrier_skipped_by_block_0",
        "egru_forward.cu",
        "if (barrier != 0 && t + 1 < t_end) {",
        "if (barrier != 0 && t + 1 < t_end && blockIdx.x != 0) {",
        "hang",
    ),
]


def make_mutant(m: Mutant, dest: Path) -> Path:
    """Copy the kernel sources to ``dest`` and apply ``m``; returns ``dest``."""
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(KERNELS, dest)
    f = dest / m.file
    text = f.read_text()
    n = text.count(m.old)
    if n != 1:
        raise AssertionError(f"mutant {m.name}: the text to replace occurs {n} times in {m.file} (expected 1)")
    f.write_text(text.replace(m.old, m.new))
    return dest
