"""Roofline of one EGRU against one dense GRU on THIS machine's CPU (for ``snntorch-egru bench --events``
and ``benchmarks/roofline.py``).

Measures the memory bandwidth (read of a working set the size of the weights the step streams, so a
working set that fits in the cache gets the cache's bandwidth) and the GEMM throughput; :func:`roofline`
then gives the ideal time per step of ``torch.nn.GRU`` and of an event-driven EGRU, and their ratio, for
given ``H``, ``I``, ``B`` and activity ``s``. Every measured EGRU/GRU ratio can be stated as a fraction of
this ideal ratio.

Cost model (fp32, per time step; ``u = 1 - (1 - s)**B`` is the batch-union activity):

* dense GRU: the recurrent product reads ``12 H^2`` bytes of ``W_hh`` and does ``6 B H^2`` FLOPs; the
  input product reads ``12 H I`` bytes and does ``6 B H I`` FLOPs (per step when stepping one call per step;
  hoisted into one GEMM over all ``T`` steps for a whole sequence, which also reads the ``[T B, I]`` input
  and writes the ``[T B, 3H]`` result: ``4 T B (I + 3H)`` more bytes).
* event EGRU: the recurrent product reads only the rows of units that fired, ``u 12 H^2`` bytes and
  ``6 s B H^2`` FLOPs (nothing at all when no unit fires); the input product is the same as the GRU's.
* pointwise gates: about ``GATE_BYTES`` = 40 bytes per unit and sample (inference), both models.

Each part costs ``max(bytes / bandwidth(bytes), flops / gemm_rate)``; the ideal is the sum. Given the
bandwidth function and the GEMM rate, :func:`roofline` is a pure function (the tests check it exactly).
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

GATE_BYTES = 40.0  # bytes per unit and sample for the pointwise part (inference)
MODES = ("step", "sequence")

#: measured read bandwidths (bytes/s) by log2 of the working-set size, in the order measured
_MEASURED: Dict[int, float] = {}


def _median_time(fn: Callable[[], object], repeats: int = 7, inner: int = 3) -> float:
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
    at least 64 KiB; measured once per size and process), fp32."""
    log2_bytes = max(16, math.ceil(math.log2(max(nbytes, 1.0))))
    if log2_bytes not in _MEASURED:
        n = 2**log2_bytes // 4
        buf = torch.rand(n, generator=torch.Generator().manual_seed(0))  # the global RNG is left alone
        # the sum reads every element once; repeat so a small, cached working set is timed reliably
        inner = max(1, int(64e6 // (4 * n)))
        _MEASURED[log2_bytes] = 4.0 * n / _median_time(lambda: buf.sum(), repeats=15, inner=inner)
    return _MEASURED[log2_bytes]


def measured_bandwidths() -> List[Tuple[int, float]]:
    """``(working-set bytes, bytes/s)`` of every bandwidth measured so far in this process, smallest first."""
    return [(2**k, _MEASURED[k]) for k in sorted(_MEASURED)]


@functools.lru_cache(maxsize=None)
def gemm_rate(n: int = 1024) -> float:
    """Dense fp32 GEMM throughput in FLOP/s (square ``n x n`` matrices; measured once per ``n`` and process)."""
    g = torch.Generator().manual_seed(0)  # the global RNG is left alone (a benchmark's seeded inputs)
    a, b = torch.rand(n, n, generator=g), torch.rand(n, n, generator=g)
    return 2.0 * n**3 / _median_time(lambda: a @ b)


@dataclass
class Roofline:
    """Ideal per-step times (seconds) of a dense GRU and an event EGRU, and their ratio."""

    gru: float
    egru: float

    @property
    def ratio(self) -> float:
        """The ideal speed-up of the EGRU over the GRU (``gru / egru``)."""
        return self.gru / self.egru


def _check_size(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int (> 0), got {value!r}")


def roofline(
    hidden: int,
    inp: int,
    batch: int,
    activity: float,
    mode: str = "step",
    rate: Optional[float] = None,
    steps: int = 200,
    *,
    bandwidth_of: Optional[Callable[[float], float]] = None,
) -> Roofline:
    """Ideal time per step of ``torch.nn.GRU`` and of an event-driven EGRU (see the module's cost model).

    ``mode="step"``: one call per step; ``"sequence"``: ``steps`` steps with the input product hoisted
    into one GEMM. ``rate`` (FLOP/s) defaults to :func:`gemm_rate`, ``bandwidth_of`` (bytes -> bytes/s) to
    :func:`bandwidth`; with both given nothing is measured.

    Raises:
        ValueError: a size that is not a positive int, ``activity`` outside [0, 1], an unknown ``mode``
            or a ``rate`` that is not positive.
    """
    for name, value in (("hidden", hidden), ("inp", inp), ("batch", batch), ("steps", steps)):
        _check_size(name, value)
    if not 0.0 <= activity <= 1.0:
        raise ValueError(f"activity must be in [0, 1], got {activity}")
    if mode not in MODES:
        raise ValueError(f"mode must be 'step' or 'sequence', got {mode!r}")
    if rate is not None and not rate > 0:
        raise ValueError(f"rate must be a positive GEMM rate in FLOP/s, got {rate}")
    flops_rate = gemm_rate() if rate is None else float(rate)
    bw = bandwidth if bandwidth_of is None else bandwidth_of

    def part(nbytes: float, flops: float) -> float:
        return max(nbytes / bw(nbytes), flops / flops_rate)

    H, I, B = hidden, inp, batch
    u = 1.0 - (1.0 - activity) ** B
    if mode == "step":
        t_in = part(12.0 * H * I, 6.0 * B * H * I)
    else:  # one [T*B, I] x [I, 3H] GEMM shared by all steps
        t_in = part(12.0 * H * I + 4.0 * steps * B * (I + 3 * H), 6.0 * steps * B * H * I) / steps
    t_gate = B * H * GATE_BYTES / bw(B * H * GATE_BYTES)
    gru = t_in + part(12.0 * H * H, 6.0 * B * H * H) + t_gate
    rec = u * 12.0 * H * H
    egru = t_in + (part(rec, 6.0 * activity * B * H * H) if rec > 0 else 0.0) + t_gate
    return Roofline(gru=gru, egru=egru)


def machine_line(rate: float) -> str:
    """One line with the GEMM rate and every bandwidth measured so far (for the reports)."""
    bws = ", ".join(f"{_size(n)} {b / 1e9:.1f} GB/s" for n, b in measured_bandwidths())
    return f"GEMM fp32: {rate / 1e9:.1f} GFLOP/s; read bandwidth: {bws or 'not measured'}"


def _size(nbytes: int) -> str:
    return f"{nbytes // 2**20} MiB" if nbytes >= 2**20 else f"{nbytes // 2**10} KiB"


CONFIGS = [  # (mode, H, I, B, activity): the configurations of the CPU speed targets
    ("step", 1024, 64, 1, 0.1),
    ("step", 256, 64, 1, 0.1),
    ("sequence", 1024, 64, 1, 0.1),
    ("sequence", 1024, 1024, 1, 0.1),
    ("sequence", 1024, 1024, 16, 0.1),
]


def _parser() -> argparse.ArgumentParser:
    from .cli import OneLineErrorParser

    p = OneLineErrorParser(
        prog="benchmarks/roofline.py",
        description="Roofline of one EGRU against one dense GRU on this machine's CPU: the ideal time per step of "
        "each and their ratio (the cost model is in snntorch_egru/_roofline.py).",
    )
    p.add_argument("--hidden", type=int, help="H (default: the table of target configurations)")
    p.add_argument("--input", type=int, default=64, help="I (default 64)")
    p.add_argument("--batch", type=int, default=1, help="B (default 1)")
    p.add_argument("--activity", type=float, default=0.1, help="fraction of units firing per step (default 0.1)")
    p.add_argument("--mode", choices=MODES, default="step", help="one call per step, or a sequence")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's default)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Print this machine's GEMM rate, bandwidths and the ideal EGRU/GRU table; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.threads < 0:
            raise ValueError(f"--threads must be a positive integer (0: torch's default), got {args.threads}")
        one = (args.mode, args.hidden, args.input, args.batch, args.activity)
        configs = CONFIGS if args.hidden is None else [one]
        for _, H, I, B, s in configs:
            for flag, v in (("--hidden", H), ("--input", I), ("--batch", B)):
                if v < 1:
                    raise ValueError(f"{flag} must be a positive integer (>= 1), got {v}")
            if not 0.0 <= s <= 1.0:
                raise ValueError(f"--activity must lie in [0, 1], got {s}")
    except ValueError as err:
        print(f"roofline.py: error: {err}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    rate = gemm_rate()
    for n in (2**20, 12 * 2**20, 256 * 2**20):
        bandwidth(n)
    print(f"# roofline on {os.cpu_count()} cores, {torch.get_num_threads()} torch threads")
    print(machine_line(rate))
    print("| mode | H | I | B | activity | ideal GRU µs/step | ideal EGRU µs/step | ideal EGRU/GRU speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    for mode, H, I, B, s in configs:
        r = roofline(H, I, B, s, mode, rate)
        print(f"| {mode} | {H} | {I} | {B} | {s:g} | {r.gru * 1e6:.1f} | {r.egru * 1e6:.1f} | {r.ratio:.2f}x |")
    return 0
