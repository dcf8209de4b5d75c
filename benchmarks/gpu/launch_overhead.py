"""Host (Python) cost per kernel launch of the CuPy launcher, measured on the CPU.

Runs :class:`snntorch_egru.cuda._cupy.CupyLauncher` in launch mode ``step`` (one launch per step
and phase: the mode whose per-launch host work matters) with the device queries replaced by
constants and the launch itself by a no-op that still builds CuPy's argument tuple. What is
left is exactly the launcher's own Python work per launch: argument lists, pointers, scalars.
No GPU and no CuPy needed::

    python benchmarks/gpu/launch_overhead.py            # T = 200, B = 1, H = 64

Prints microseconds per launch, the best and the median of 20 runs (on a shared machine the best
is the figure to compare). On a GPU add CuPy's own launch path
(~5-10 us) and the kernel time.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
import types

import torch

from snntorch_egru.cuda import _cupy
from snntorch_egru.cuda._function import KernelConfig


class _NoDevice(_cupy.CupyLauncher):
    """The real launcher logic; device queries are constants, launches only build the tuple."""

    launches = 0

    def _setup(self, ref, store):
        cp = types.SimpleNamespace(cuda=types.SimpleNamespace(Device=lambda d: contextlib.nullcontext()))
        return cp, 0, "float", 0, "step", 132, contextlib.nullcontext()

    def _kernel(self, name, real, wstore, units):
        return name

    def _run(self, kern, grid, named, cooperative=False):
        tuple([v for _, v in named])  # what _launch hands to CuPy
        type(self).launches += 1


def tensors(T: int, B: int, H: int) -> tuple:
    z = lambda *s: torch.zeros(*s)  # noqa: E731
    fwd = {
        "gi": z(T, B, 3 * H),
        "whh_t": z(H, 3 * H),
        "bhh": z(3 * H),
        "theta": z(H),
        "y0": z(B, H),
        "c0": z(B, H),
        "tr0": z(B, H),
        "zmask": None,
    }
    fwd.update({k: z(T, B, H) for k in ("y", "c", "o", "tr", "s_r", "s_z", "s_n", "s_hn")})
    bwd = {k: fwd[k] for k in ("whh_t", "theta", "c0", "zmask", "y", "c", "o", "s_r", "s_z", "s_n", "s_hn")}
    bwd.update(
        {
            "g_y": z(T, B, H),
            "g_c": None,
            "g_o": None,
            "g_tr": None,
            "ga": z(T, B, 3 * H),
            "gqn": z(T, B, H),
            "dy": z(B, H),
            "dc": z(B, H),
            "tb": z(B, H),
            "dth": z(B, H),
        }
    )
    return fwd, bwd


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--hidden", type=int, default=64)
    a = ap.parse_args(argv)
    cfg = KernelConfig(reset_mode=0, zoneout_p=0.0, gamma=0.3, eps=1.0)
    fwd, bwd = tensors(a.steps, a.batch, a.hidden)
    launcher = _NoDevice(mode="step", dense="off")
    per = {}
    for name, call, t in (("forward", launcher.forward, fwd), ("backward", launcher.backward, bwd)):
        runs = []
        for _ in range(20):
            _NoDevice.launches = 0
            t0 = time.perf_counter()
            call(cfg, t)
            runs.append((time.perf_counter() - t0) / _NoDevice.launches * 1e6)
        per[name] = (min(runs), statistics.median(runs), _NoDevice.launches)
    for name, (best, med, n) in per.items():
        print(
            f"{name:8s}: {best:6.2f} us (median {med:6.2f}) of launcher host work per launch "
            f"({n} launches, T={a.steps})"
        )


if __name__ == "__main__":
    main()
