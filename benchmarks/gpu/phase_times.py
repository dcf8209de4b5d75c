"""Per-phase GPU times of the "cupy" kernels, to confirm or refute the performance model
(docs/guide/sparse_bptt.md, "GPU kernels: performance model").

For one calibrated layer it runs a training step in each launch mode and times every kernel
launch with CUDA events, grouped by phase:

* ``persistent``: the whole forward launch and the whole backward launch, per step;
* ``step``: forward per step, backward phase 1 (pointwise) and phase 2 (recurrent product
  ``dy = q_t W_hh``) per step, separately;
* ``dense``: the forward pointwise kernel and backward phase 1 per step; the rest of the wall
  time of the launcher call is the per-step cuBLAS GEMMs and the Python launches.

Also the host wall time of each launcher call (Python + launches + GPU), so the host share is
visible. Markdown to stdout (and ``--out``)::

    python benchmarks/gpu/phase_times.py --hidden 1024 --batch 1 --steps 200 --activity 0.1
    python benchmarks/gpu/phase_times.py --dry-run    # CPU: checks the script (no kernels run)
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections import defaultdict
from typing import Dict, List

import torch


def _launcher_class(dry: bool):
    from snntorch_egru.cuda import _cupy

    class Timed(_cupy.CupyLauncher):
        """The real launcher; each launch is bracketed by CUDA events (recorded per phase)."""

        events: Dict[str, List] = {}

        def _run(self, kern, grid, named, cooperative=False):
            args = dict(named)
            phase = args.get("phases")
            label = {None: "", 1: " phase 1", 2: " phase 2", 3: " phases 1+2"}[None if phase is None else int(phase)]
            key = str(getattr(kern, "name", kern)) + label
            if dry:
                self.events.setdefault(key, []).append(None)
                return
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            super()._run(kern, grid, named, cooperative)
            b.record()
            self.events.setdefault(key, []).append((a, b))

        if dry:  # no device: constants for the queries, names for the kernels

            def _setup(self, ref, store):
                cp = type(
                    "cp", (), {"cuda": type("c", (), {"Device": staticmethod(lambda d: contextlib.nullcontext())})}
                )
                return (
                    cp,
                    0,
                    "float",
                    0,
                    self.mode if self.mode != "auto" else "persistent",
                    132,
                    contextlib.nullcontext(),
                )

            def _kernel(self, name, real, wstore, units):
                return type("k", (), {"name": name})()

            def _coresident(self, kernel, sms):
                return 4 * sms

    return Timed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--input-size", type=int, default=64)
    ap.add_argument("--activity", type=float, default=0.1)
    ap.add_argument("--out", default=None)
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, nothing launched")
    a = ap.parse_args(argv)
    from snntorch_egru.bench import Cell, _egru, calibrate_thresholds
    from snntorch_egru.cuda._function import KernelConfig, kernel_backward, kernel_forward

    dry = a.dry_run
    if not dry and not torch.cuda.is_available():
        print("phase_times: no CUDA device (use --dry-run on a CPU)", file=sys.stderr)
        return 2
    if dry:
        a.hidden, a.batch, a.steps = 32, 2, 8
    dev = torch.device("cpu" if dry else "cuda")
    rnn = _egru(Cell(a.hidden, a.batch, a.activity, "fwdbwd", input_size=a.input_size, steps=a.steps), dev, "reference")
    g = torch.Generator().manual_seed(1)
    x = torch.randn(a.steps, a.batch, a.input_size, generator=g).to(dev)
    calibrate_thresholds(rnn, x, a.activity)
    H = a.hidden
    z = torch.zeros(a.batch, H, device=dev)
    w_ih, w_hh, b_ih, b_hh = (p.detach() for p in (rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0))
    theta = rnn.threshold_l0.detach().reshape(-1).expand(H).contiguous()
    cfg = KernelConfig(reset_mode=0, zoneout_p=0.0, gamma=0.3, eps=1.0)
    Timed = _launcher_class(dry)
    rows = []
    for mode, dense in (("persistent", "off"), ("step", "off"), ("step", "on")):
        L = Timed(mode=mode, dense=dense)
        L.events = {}
        host = defaultdict(list)
        for rep in range(4):  # 1 warm-up + 3 timed
            L.events.clear()
            if not dry:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            t = kernel_forward(L, cfg, x, z, z, z, w_ih, w_hh, b_ih, b_hh, theta, None, True)
            if not dry:
                torch.cuda.synchronize()
            t1 = time.perf_counter()
            kernel_backward(
                L,
                cfg,
                t["whh_t"],
                t["theta"],
                t["c0"],
                None,
                t["y"],
                t["c"],
                t["o"],
                t["s_r"],
                t["s_z"],
                t["s_n"],
                t["s_hn"],
                torch.ones_like(t["y"]),
                None,
                None,
                None,
            )
            if not dry:
                torch.cuda.synchronize()
            t2 = time.perf_counter()
            if rep:
                host["forward call"].append((t1 - t0) * 1e6 / a.steps)
                host["backward call"].append((t2 - t1) * 1e6 / a.steps)
                for key, evs in L.events.items():
                    total = 0.0 if dry else sum(e0.elapsed_time(e1) for e0, e1 in evs) * 1e3
                    host[f"{key} (GPU)"].append(total / a.steps)
        label = "dense" if dense == "on" else mode
        for key, vals in host.items():
            rows.append((label, key, statistics.median(vals)))
    flags = (
        f"TF32: torch.backends.cuda.matmul.allow_tf32={torch.backends.cuda.matmul.allow_tf32}, "
        f"cudnn.allow_tf32={torch.backends.cudnn.allow_tf32}"
    )
    name = "dry run (CPU, nothing launched)" if dry else torch.cuda.get_device_name()
    lines = [
        f"Per-phase times, {name}: H={a.hidden}, B={a.batch}, T={a.steps}, I={a.input_size}, "
        f"activity {a.activity}; {flags}",
        "",
        "| mode | phase | us per step |",
        "|---|---|---|",
    ]
    lines += [f"| {m} | {k} | {v:.2f} |" for m, k, v in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
