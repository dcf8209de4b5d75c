"""EGRU against torch.nn on the CPU, the way users run it: per-step cell, streaming, sequence, training.

Side by side in one process, interleaved repeats, medians; thresholds calibrated so the layer fires at
the given activity on the benchmark's own random input. Each EGRU/GRU ratio is printed next to the
ideal ratio of ``benchmarks/roofline.py`` for this machine, and a plot of the per-step speed-up against
activity (with the ideal curve) is written.

    python benchmarks/cpu_events.py --out benchmarks/results/cpu-events-DATE   # writes .md, .csv, .png
    python benchmarks/cpu_events.py --quick                                     # fewer repeats
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import roofline as rl  # noqa: E402

import snntorch_egru as se  # noqa: E402


def calibrate(layer: torch.nn.Module, inp: int, activity: float, steps: int = 150) -> None:
    """Set the thresholds to the per-unit quantile of the state ``c`` so about ``activity`` of the units fire."""
    cell = layer if isinstance(layer, se.EGRUCell) else None
    with torch.no_grad():
        x = torch.randn(steps, 1, inp)
        if cell is None:
            layer.threshold_l0.fill_(1.0)
            c = layer(x, return_internals=True)[2].c[0, :, 0]
            q = torch.quantile(c[steps // 4 :], 1.0 - activity, dim=0).clamp(0.0, 1.0)
            for _ in range(4):  # firing resets c, so iterate towards the target
                layer.threshold_l0.copy_(q)
                y = layer(x)[0][steps // 4 :, 0]
                got = (y != 0).double().mean().item()
                q = (q * (1.0 + 0.5 * (got - activity) / max(activity, 1e-3))).clamp(0.0, 1.0)
        else:
            ref = se.EGRU(inp, cell.hidden_size)
            ref.weight_ih_l0.copy_(cell.weight_ih)
            ref.weight_hh_l0.copy_(cell.weight_hh)
            ref.bias_ih_l0.copy_(cell.bias_ih)
            ref.bias_hh_l0.copy_(cell.bias_hh)
            calibrate(ref, inp, activity, steps)
            cell.threshold.copy_(ref.threshold_l0)


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2]


def bench_step(hidden: int, inp: int, activity: float, repeats: int, steps: int = 200) -> dict:
    """Per-step cell in a Python loop at B = 1 (the snnTorch idiom), the Streamer and nn.GRUCell, no_grad."""
    cell = se.EGRUCell(inp, hidden).eval()
    calibrate(cell, inp, activity)
    stream = se.Streamer(cell)
    gru = torch.nn.GRUCell(inp, hidden).eval()
    xs = torch.randn(steps, 1, inp)
    t_cell, t_stream, t_gru, act = [], [], [], []
    with torch.no_grad():
        for _ in range(repeats):
            cell.reset_mem()
            ys = []
            t0 = time.perf_counter()
            for x in xs:
                ys.append(cell(x)[0])
            t_cell.append((time.perf_counter() - t0) / steps)
            act.append(torch.stack(ys).ne(0).double().mean().item())
            stream.reset()
            t0 = time.perf_counter()
            for x in xs:
                stream.step(x[0])
            t_stream.append((time.perf_counter() - t0) / steps)
            h = torch.zeros(1, hidden)
            t0 = time.perf_counter()
            for x in xs:
                h = gru(x, h)
            t_gru.append((time.perf_counter() - t0) / steps)
    return {"cell": _median(t_cell), "stream": _median(t_stream), "gru": _median(t_gru), "activity": _median(act)}


def bench_sequence(
    hidden: int, inp: int, batch: int, activity: float, repeats: int, steps: int = 200, train: bool = False
) -> dict:
    """A whole sequence through EGRU and nn.GRU (forward under no_grad, or forward + backward)."""
    rnn = se.EGRU(inp, hidden)
    calibrate(rnn, inp, activity)
    gru = torch.nn.GRU(inp, hidden)
    x = torch.randn(steps, batch, inp)
    t_e, t_g, act = [], [], []
    for _ in range(repeats):
        for model, acc in ((rnn, t_e), (gru, t_g)):
            model.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            if train:
                out = model(x)[0]
                out.square().mean().backward()
            else:
                with torch.no_grad():
                    out = model(x)[0]
            acc.append(time.perf_counter() - t0)
            if model is rnn:
                act.append(out.detach().ne(0).double().mean().item())
    return {"egru": _median(t_e), "gru": _median(t_g), "activity": _median(act)}


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
            check=True,
        ).stdout.strip()
    except Exception:  # noqa: BLE001 - not a checkout
        return "unknown"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--out", help="path prefix for .md, .csv and .png (default: print only)")
    p.add_argument("--quick", action="store_true", help="3 repeats instead of 7, a shorter activity sweep")
    p.add_argument("--no-train", action="store_true", help="skip the training-step row (the slowest)")
    a = p.parse_args(argv)
    torch.manual_seed(0)
    reps = 3 if a.quick else 7
    rate = rl.gemm_rate()
    rows = []

    def add(kind: str, H: int, I: int, B: int, act: float, t_e: float, t_g: float, mode: str) -> None:
        ideal = rl.roofline(H, I, B, act, mode, rate).ratio
        ratio = t_g / t_e
        rows.append(
            dict(
                kind=kind,
                H=H,
                I=I,
                B=B,
                activity=round(act, 4),
                egru_us=round(t_e * 1e6, 1),
                torch_us=round(t_g * 1e6, 1),
                ratio=round(ratio, 2),
                ideal=round(ideal, 2),
                of_ideal=round(ratio / ideal, 2),
            )
        )
        print(
            f"{kind:28s} H={H:5d} I={I:5d} B={B:3d} act={act:.3f}  EGRU {t_e * 1e6:9.1f} us  torch "
            f"{t_g * 1e6:9.1f} us  {ratio:5.2f}x (ideal {ideal:.2f}x)",
            flush=True,
        )

    for H in (256, 1024):
        r = bench_step(H, 64, 0.1, reps)
        add("cell per step (no_grad)", H, 64, 1, r["activity"], r["cell"], r["gru"], "step")
        add("Streamer per step", H, 64, 1, r["activity"], r["stream"], r["gru"], "step")
    for I in (64, 1024):
        r = bench_sequence(1024, I, 1, 0.1, reps)
        add("sequence forward T=200", 1024, I, 1, r["activity"], r["egru"] / 200, r["gru"] / 200, "sequence")
    if not a.no_train:
        r = bench_sequence(1024, 1024, 16, 0.1, max(3, reps // 2), steps=100, train=True)
        add("training step T=100", 1024, 1024, 16, r["activity"], r["egru"] / 100, r["gru"] / 100, "sequence")
    sweep = []
    for act in (0.02, 0.1, 0.3) if a.quick else (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5):
        r = bench_step(1024, 64, act, reps, steps=100)
        ideal = rl.roofline(1024, 64, 1, r["activity"], "step", rate).ratio
        sweep.append((r["activity"], r["gru"] / r["cell"], ideal))
        print(f"sweep act={r['activity']:.3f} speed-up {r['gru'] / r['cell']:.2f}x ideal {ideal:.2f}x", flush=True)
    if not a.out:
        return
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    cmd = "python benchmarks/cpu_events.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        f"# EGRU vs torch.nn on the CPU ({datetime.date.today().isoformat()})",
        "",
        f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; commit {_commit()}",
        f"- command: `{cmd}`",
        "- medians of interleaved repeats; thresholds calibrated to the activity shown;",
        "  ideal = the roofline ratio of `benchmarks/roofline.py` on this machine",
        "",
        "| how it runs | H | I | B | activity | EGRU µs/step | torch µs/step | speed-up | ideal | of ideal |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['kind']} | {r['H']} | {r['I']} | {r['B']} | {r['activity']} | {r['egru_us']} | "
            f"{r['torch_us']} | {r['ratio']}x | {r['ideal']}x | {r['of_ideal']:.0%} |"
        )
    lines += [
        "",
        "Per-step cell, H = 1024, I = 64, B = 1, against activity:",
        "",
        "| activity | speed-up | ideal |",
        "|---|---|---|",
    ]
    lines += [f"| {s:.3f} | {r:.2f}x | {i:.2f}x |" for s, r, i in sweep]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        ax.plot([s for s, _, _ in sweep], [r for _, r, _ in sweep], "o-", label="measured (EGRUCell vs GRUCell)")
        ax.plot([s for s, _, _ in sweep], [i for _, _, i in sweep], "--", label="ideal (roofline)")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("activity (fraction of units firing per step)")
        ax.set_ylabel("speed-up over torch.nn.GRUCell")
        ax.set_title("Per-step cell, B = 1, H = 1024, I = 64")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out.with_suffix(".png"), dpi=120)
    except ImportError:
        print("matplotlib not installed: no plot written")
    print(f"wrote {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
