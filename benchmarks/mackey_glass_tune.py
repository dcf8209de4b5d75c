"""Diagnose the mackey-glass EGRU on a separate trajectory (another initial history), not on the test series.

NeuroBench's generator with ``constant_past=0.9`` gives an independent trajectory of the same
attractor; each configuration is trained and benchmarked on the protocol's first ``--offsets``
repeats of that trajectory. Usage (about 30 s per configuration and offset on one CPU thread)::

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/mackey_glass_tune.py --offsets 2 --lstm \
        --out benchmarks/results/mackey-glass-2026-12-06/diagnostic-cp0.9.json
"""

import argparse
import json
import os
import tempfile

import numpy as np
import torch

from snntorch_egru.training import _mackey_glass as MG
from snntorch_egru.training import _run_regress as R

CONFIGS = [  # window, hidden, thr_mean, activity_reg, activity_target, lr, epochs
    (1, 64, 0.3, 1.0, 0.1, 5e-3, 200),  # the preset
    (1, 64, 0.3, 1.0, 0.1, 5e-3, 600),  # 3x the training budget
    (8, 64, 0.3, 1.0, 0.1, 5e-3, 200),  # a window spanning the delay tau = 17 (8 x 2.63 time units)
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--offsets", type=int, default=3)
    ap.add_argument("--lstm", action="store_true", help="also the example LSTM, for reference")
    ap.add_argument("--out", default="benchmarks/results/mackey-glass-tune.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    path = os.path.join(tempfile.gettempdir(), "mg_tune_cp0.9.npy")
    if not os.path.exists(path):
        np.save(path, MG.generate_series(MG.points_needed(args.offsets), constant_past=0.9))
    rows = []
    specs = [
        dict(
            kind="egru",
            window=w,
            hidden=h,
            thr_mean=t,
            activity_reg=r,
            activity_target=a,
            lr=lr,
            epochs=e,
            weight_decay=1e-3,
        )
        for w, h, t, r, a, lr, e in CONFIGS
    ]
    if args.lstm:
        specs.insert(0, dict(kind="lstm", **R.EXAMPLE))
    for spec in specs:
        res = []
        for k, off in enumerate(MG.start_offsets(args.offsets)):
            torch.manual_seed(k)
            split = MG.load_split(path, off)
            model = R.train_model(split=split, **spec)
            r = R.benchmark(model, split)
            forecast = torch.tensor(r.pop("forecast"))
            r["train_mse"] = model.train_mse
            r["amplitude_ratio"] = float(forecast.std() / split.test_y[:, 0].std())  # < 1: a damped forecast
            res.append(r)
        s = R.summarise(res)
        s["amplitude_ratio"] = sum(r["amplitude_ratio"] for r in res) / len(res)
        rows.append({"spec": spec, **{k: v for k, v in s.items()}})
        print(
            spec,
            f"sMAPE {s['sMAPE_mean']:.2f} +- {s['sMAPE_sd']:.2f}  sparsity {s['activation_sparsity']:.3f}  "
            f"MACs {s['effective_macs']:.0f}  train MSE {s['train_mse']:.2e}  "
            f"amplitude {s['amplitude_ratio']:.2f}",
            flush=True,
        )
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
