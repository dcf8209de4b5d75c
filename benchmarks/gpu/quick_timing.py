"""Short GPU timing for the acceptance check (benchmarks/gpu/quick_check.sh): EGRU "cupy"
kernels vs cuDNN ``torch.nn.GRU`` (TF32 on and off) vs the per-step PyTorch loop
(``backend="reference"``), forward and forward+backward µs per step, and the peak GPU memory
of one training step (``torch.cuda.max_memory_allocated``).

    python benchmarks/gpu/quick_timing.py [--hidden 1024] [--batches 1 16 128] [--steps 200]
                                         [--activity 0.1] [--budget-s 150] [--out table.md]
    python benchmarks/gpu/quick_timing.py --dry-run   # CPU, tiny sizes: checks the script itself

Rows that would exceed ``--budget-s`` are skipped (and say so), so the script ends in time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable, List, Optional

import torch

import snntorch_egru as se


def timed(fn: Callable[[], object], device: torch.device, repeats: int = 5, warmup: int = 2) -> float:
    """Median seconds of ``fn()`` (CUDA events on a GPU, wall clock on the CPU)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            times.append(a.elapsed_time(b) * 1e-3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def peak_train_mib(step: Callable[[], object], device: torch.device) -> Optional[float]:
    """Peak GPU memory (MiB) allocated during one training step, above what was live before."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    step()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def calibrate(rnn: se.EGRU, x: torch.Tensor, activity: float) -> None:
    """Per-unit thresholds at the (1 - activity) quantile of c_hat from a probe run."""
    with torch.no_grad():
        backend, rnn.backend = rnn.backend, "reference"
        clamp, rnn.threshold_clamp = rnn.threshold_clamp, False
        reset, rnn.reset_mechanism = rnn.reset_mechanism, "none"
        rnn.threshold_l0.fill_(-10.0)  # every unit fires: y = c_hat
        _, _, rec = rnn(x, return_internals=True)
        rnn.threshold_l0.copy_(torch.quantile(rec.y[0].reshape(-1, rnn.hidden_size).float(), 1 - activity, dim=0))
        rnn.backend, rnn.threshold_clamp, rnn.reset_mechanism = backend, clamp, reset


def fmt(v: Optional[float], nd: int = 2) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16, 128])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--loop-steps", type=int, default=50, help="steps for the (slow) per-step PyTorch loop")
    p.add_argument("--input-size", type=int, default=64)
    p.add_argument("--activity", type=float, default=0.1)
    p.add_argument("--budget-s", type=float, default=150.0, help="stop starting new rows after this many seconds")
    p.add_argument("--out", default=None, help="write the Markdown table here")
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, reference backend for the kernels")
    a = p.parse_args(argv)
    if a.dry_run:
        device = torch.device("cpu")
        a.hidden, a.batches, a.steps, a.loop_steps = 32, [1, 4], 8, 4
        egru_backend = "reference"
    else:
        if not torch.cuda.is_available():
            print("quick_timing: no CUDA device (use --dry-run on a CPU)", file=sys.stderr)
            return 2
        device = torch.device("cuda")
        egru_backend = "cupy"
    t_start = time.time()
    H, I, T = a.hidden, a.input_size, a.steps
    tf32 = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    rows = [
        "| B | model | fwd µs/step | fwd+bwd µs/step | peak MiB (train step) | fwd+bwd vs cuDNN TF32 on | activity |",
        "|---|---|---|---|---|---|---|",
    ]
    status = 0
    for B in a.batches:
        if time.time() - t_start > a.budget_s:
            rows.append(f"| {B} | (skipped: time budget {a.budget_s:.0f} s spent) | | | | | |")
            continue
        torch.manual_seed(0)
        x = torch.randn(T, B, I, device=device)
        xg = x.clone().requires_grad_()
        gru = torch.nn.GRU(I, H).to(device)
        cudnn_fb = None
        for flag in (True, False):
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = flag
            with torch.no_grad():
                fw = timed(lambda: gru(x), device) / T
            fb = timed(lambda: gru(xg)[0].sum().backward(), device) / T
            mem = peak_train_mib(lambda: gru(xg)[0].sum().backward(), device)
            cudnn_fb = fb if flag else cudnn_fb
            rows.append(
                f"| {B} | cuDNN GRU, TF32 {'on' if flag else 'off'} | {fmt(fw * 1e6)} | {fmt(fb * 1e6)} | "
                f"{fmt(mem, 1)} | {fmt(cudnn_fb / fb if cudnn_fb else None)} | - |"
            )
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
        for name, backend, steps in (
            (f"EGRU {egru_backend} (launch auto)", egru_backend, T),
            ("EGRU per-step PyTorch loop", "reference", a.loop_steps),
        ):
            try:
                rnn = se.EGRU(I, H, backend=backend).to(device)
                xs, xsg = x[:steps], xg[:steps].detach().requires_grad_()
                calibrate(rnn, xs, a.activity)
                with torch.no_grad():
                    fw = timed(lambda: rnn(xs), device, repeats=3 if backend == "reference" else 5) / steps
                    act = rnn(xs, return_internals=True)[2].o.float().mean().item()
                fb = (
                    timed(lambda: rnn(xsg)[0].sum().backward(), device, repeats=3 if backend == "reference" else 5)
                    / steps
                )
                mem = peak_train_mib(lambda: rnn(xsg)[0].sum().backward(), device)
                rows.append(
                    f"| {B} | {name} | {fmt(fw * 1e6)} | {fmt(fb * 1e6)} | {fmt(mem, 1)} | "
                    f"{fmt(cudnn_fb / fb if cudnn_fb else None)} | {act:.3f} |"
                )
            except Exception as e:  # keep going: one failing row must not hide the others
                status = 1
                rows.append(f"| {B} | {name} | FAILED: {type(e).__name__}: {str(e).splitlines()[0][:120]} | | | | |")
        print("\n".join(rows[-4:]), flush=True)
    dev = torch.cuda.get_device_name() if device.type == "cuda" else "CPU (dry run)"
    text = (
        f"device: {dev}; H = {H}, I = {I}, T = {T} (per-step loop: {a.loop_steps}), target activity "
        f"{a.activity}, float32; default TF32 flags matmul/cudnn = {tf32}; "
        f"launch env {os.environ.get('SNNTORCH_EGRU_CUPY_LAUNCH', 'auto')}\n\n" + "\n".join(rows) + "\n"
    )
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    return status


if __name__ == "__main__":
    sys.exit(main())
