"""Roofline of one EGRU against one dense GRU on THIS machine's CPU.

Measures the memory bandwidth (read of a working set the size of the weights the step streams, so a
working set that fits in the cache gets the cache's bandwidth) and the GEMM throughput, then prints
the ideal time per step of ``torch.nn.GRU`` and of an event-driven EGRU, and their ratio, for given
``H``, ``I``, ``B`` and activity ``s``. Every measured EGRU/GRU ratio in ``benchmarks/results/`` can be
stated as a fraction of this ideal ratio.

Cost model (fp32, per time step; ``u = 1 - (1 - s)**B`` is the batch-union activity):

* dense GRU: the recurrent product reads ``12 H^2`` bytes of ``W_hh`` and does ``6 B H^2`` FLOPs; the
  input product reads ``12 H I`` bytes and does ``6 B H I`` FLOPs (per step when stepping one call per step;
  hoisted into one GEMM over all ``T`` steps for a whole sequence).
* event EGRU: the recurrent product reads only the rows of units that fired, ``u 12 H^2`` bytes and
  ``6 s B H^2`` FLOPs; the input product is the same as the GRU's.
* pointwise gates: about 40 bytes per unit and sample (inference), both models.

Each part costs ``max(bytes / bandwidth(bytes), flops / gemm_rate)``; the ideal is the sum. Usage::

    python benchmarks/roofline.py                       # the issue's configurations
    python benchmarks/roofline.py --hidden 1024 --input 64 --batch 1 --activity 0.1 --mode step
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import time
from dataclasses import dataclass

import torch

GATE_BYTES = 40.0  # bytes per unit and sample for the pointwise part (inference)


def _median_time(fn, repeats: int = 7, inner: int = 3) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t0) / inner)
    times.sort()
    return times[len(times) // 2]


def bandwidth(nbytes: float) -> float:
    """Read bandwidth in bytes/s for a working set of about ``nbytes`` (rounded up to a power of two,
    at least 64 KiB; measured once per size), fp32."""
    return _bandwidth(max(16, math.ceil(math.log2(max(nbytes, 1.0)))))


@functools.lru_cache(maxsize=None)
def _bandwidth(log2_bytes: int) -> float:
    n = 2**log2_bytes // 4
    buf = torch.rand(n)
    # the sum reads every element once; repeat so a small, cached working set is timed reliably
    inner = max(1, int(64e6 // (4 * n)))
    t = _median_time(lambda: buf.sum(), repeats=15, inner=inner)
    return 4.0 * n / t


def gemm_rate(n: int = 1024) -> float:
    """Dense fp32 GEMM throughput in FLOP/s (square ``n x n`` matrices)."""
    a, b = torch.rand(n, n), torch.rand(n, n)
    t = _median_time(lambda: a @ b)
    return 2.0 * n**3 / t


@dataclass
class Roofline:
    """Ideal per-step times (seconds) of a dense GRU and an event EGRU, and their ratio."""

    gru: float
    egru: float

    @property
    def ratio(self) -> float:
        return self.gru / self.egru


def _part(nbytes: float, flops: float, rate: float) -> float:
    return max(nbytes / bandwidth(nbytes), flops / rate)


def roofline(
    hidden: int, inp: int, batch: int, activity: float, mode: str = "step", rate: float = 0.0, steps: int = 200
) -> Roofline:
    """Ideal time per step (``mode="step"``: one call per step; ``"sequence"``: ``steps`` steps, the input
    product hoisted into one GEMM) of ``torch.nn.GRU`` and an event-driven EGRU."""
    if not 0.0 <= activity <= 1.0:
        raise ValueError(f"activity must be in [0, 1], got {activity}")
    if mode not in ("step", "sequence"):
        raise ValueError(f"mode must be 'step' or 'sequence', got {mode!r}")
    rate = rate or gemm_rate()
    H, I, B = hidden, inp, batch
    u = 1.0 - (1.0 - activity) ** B
    if mode == "step":
        t_in = _part(12.0 * H * I, 6.0 * B * H * I, rate)
    else:  # one [T*B, I] x [I, 3H] GEMM shared by all steps
        t_in = _part(12.0 * H * I + 4.0 * steps * B * (I + 3 * H), 6.0 * steps * B * H * I, rate) / steps
    t_gate = B * H * GATE_BYTES / bandwidth(B * H * GATE_BYTES)
    gru = t_in + _part(12.0 * H * H, 6.0 * B * H * H, rate) + t_gate
    rec = u * 12.0 * H * H
    egru = t_in + (_part(rec, 6.0 * activity * B * H * H, rate) if rec > 0 else 0.0) + t_gate
    return Roofline(gru=gru, egru=egru)


CONFIGS = [  # (mode, H, I, B, activity): the configurations of the CPU speed targets
    ("step", 1024, 64, 1, 0.1),
    ("step", 256, 64, 1, 0.1),
    ("sequence", 1024, 64, 1, 0.1),
    ("sequence", 1024, 1024, 1, 0.1),
    ("sequence", 1024, 1024, 16, 0.1),
]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--hidden", type=int, help="H (default: the table of target configurations)")
    p.add_argument("--input", type=int, default=64, help="I (default 64)")
    p.add_argument("--batch", type=int, default=1, help="B (default 1)")
    p.add_argument("--activity", type=float, default=0.1, help="fraction of units firing per step (default 0.1)")
    p.add_argument("--mode", choices=("step", "sequence"), default="step", help="one call per step, or a sequence")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's default)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    rate = gemm_rate()
    print(f"# roofline on {os.cpu_count()} cores, {torch.get_num_threads()} torch threads")
    print(
        f"GEMM fp32: {rate / 1e9:.1f} GFLOP/s; read bandwidth: 1 MiB {bandwidth(2**20) / 1e9:.1f} GB/s, "
        f"12 MiB {bandwidth(12 * 2**20) / 1e9:.1f} GB/s, 256 MiB {bandwidth(256 * 2**20) / 1e9:.1f} GB/s"
    )
    configs = [(a.mode, a.hidden, a.input, a.batch, a.activity)] if a.hidden else CONFIGS
    print("| mode | H | I | B | activity | ideal GRU µs/step | ideal EGRU µs/step | ideal EGRU/GRU speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    for mode, H, I, B, s in configs:
        r = roofline(H, I, B, s, mode, rate)
        print(f"| {mode} | {H} | {I} | {B} | {s:g} | {r.gru * 1e6:.1f} | {r.egru * 1e6:.1f} | {r.ratio:.2f}x |")


if __name__ == "__main__":
    main()
