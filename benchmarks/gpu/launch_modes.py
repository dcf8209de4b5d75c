"""Persistent (one cooperative launch, grid barriers) vs per-step launches vs the
dense mode (cuBLAS recurrent products, per-step launches), all vs cuDNN ``torch.nn.GRU``: median µs per step, forward and forward+backward.

    python benchmarks/gpu/launch_modes.py [--steps 500] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import os

import torch

import snntorch_egru as se


def timed(fn, repeats=20, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b) * 1e3)
    times.sort()
    return times[len(times) // 2]


def calibrate(rnn, x, activity):
    """Per-unit thresholds at the (1 - activity) quantile of c_hat from a probe run."""
    with torch.no_grad():
        rnn.threshold_clamp = False
        rnn.threshold_l0.fill_(-10.0)  # every unit fires: y = c_hat
        rnn.reset_mechanism = "none"
        _, _, rec = rnn(x, return_internals=True)
        rnn.threshold_l0.copy_(torch.quantile(rec.y[0].reshape(-1, rnn.hidden_size), 1 - activity, dim=0))
        rnn.reset_mechanism = "subtract"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--input-size", type=int, default=64)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    rows = [
        "| H | B | activity | mode | fwd µs/step | fwd+bwd µs/step | measured activity |",
        "|---|---|---|---|---|---|---|",
    ]
    for H, B, act in [
        (1024, 1, 0.1),
        (2048, 1, 0.1),
        (1024, 16, 0.1),
        (1024, 32, 0.1),
        (1024, 128, 0.1),
        (256, 1, 0.1),
        (1024, 1, 0.02),
    ]:
        T = a.steps
        x = torch.randn(T, B, a.input_size, device="cuda")
        gru = torch.nn.GRU(a.input_size, H).cuda()
        fw = timed(lambda: gru(x)) / T
        xg = x.clone().requires_grad_()
        fb = timed(lambda: gru(xg)[0].sum().backward()) / T
        rows.append(f"| {H} | {B} | - | cuDNN GRU | {fw:.2f} | {fb:.2f} | - |")
        rnn = se.EGRU(a.input_size, H, backend="cupy").cuda()
        calibrate(rnn, x, act)
        for mode, dense in (("persistent", "off"), ("step", "off"), ("step", "on")):
            os.environ["SNNTORCH_EGRU_CUPY_LAUNCH"] = mode
            os.environ["SNNTORCH_EGRU_CUPY_DENSE"] = dense
            mode = f"{mode}, dense {dense}"
            with torch.no_grad():
                fw = timed(lambda: rnn(x)) / T
                measured = rnn(x, return_internals=True)[2].o.mean().item()
            fb = timed(lambda: rnn(xg)[0].sum().backward()) / T
            rows.append(f"| {H} | {B} | {act} | cupy {mode} | {fw:.2f} | {fb:.2f} | {measured:.3f} |")
        print("\n".join(rows[-4:]), flush=True)
    text = (
        f"device: {torch.cuda.get_device_name()}, T = {a.steps}, I = {a.input_size}, fp32, TF32 "
        f"{'on' if torch.backends.cudnn.allow_tf32 else 'off'} for cuDNN\n\n" + "\n".join(rows) + "\n"
    )
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
