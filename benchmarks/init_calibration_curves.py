"""Learning curves of the calibrated threshold init against the Beta init, from finished ``train`` run folders.

Usage::

    python benchmarks/init_calibration_curves.py OUT_STEM LABEL=RUN_FOLDER [LABEL=RUN_FOLDER ...]

Each ``RUN_FOLDER`` is the ``--out`` of ``snntorch-egru train``: either one run (``metrics.json`` with its
``history``) or a ``--seeds`` run (its ``seed-<s>/metrics.json``). Writes ``OUT_STEM.csv`` (label, seed,
epoch, validation accuracy, train loss, train activity, eval activity) and ``OUT_STEM.png`` (validation
accuracy per epoch; mean over seeds as a line, each seed as dots), and prints a markdown table.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import sys
from typing import Dict, List, Tuple


def _histories(folder: str) -> List[Tuple[int, List[dict]]]:
    seeds = sorted(glob.glob(os.path.join(folder, "seed-*", "metrics.json")))
    files = seeds or [os.path.join(folder, "metrics.json")]
    out = []
    for path in files:
        with open(path) as f:
            m = json.load(f)
        out.append((int(m.get("config", {}).get("seed", 0)), m["history"]))
    return out


def main(argv: List[str]) -> int:
    stem, pairs = argv[0], [a.split("=", 1) for a in argv[1:]]
    rows: List[Dict[str, object]] = []
    for label, folder in pairs:
        for seed, hist in _histories(folder):
            for h in hist:
                rows.append(
                    {
                        "label": label,
                        "seed": seed,
                        "epoch": h["epoch"],
                        "valid_accuracy": h["eval_accuracy"],
                        "train_loss": h["train_loss"],
                        "train_activity": h["train_activity"],
                        "eval_activity": h["eval_activity"],
                    }
                )
    with open(stem + ".csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    epochs = sorted({r["epoch"] for r in rows})
    print("| epoch | " + " | ".join(f"{lab} valid acc (mean over seeds)" for lab, _ in pairs) + " |")
    print("|---|" + "---|" * len(pairs))
    means: Dict[str, List[float]] = {}
    for lab, _ in pairs:
        means[lab] = []
        for e in epochs:
            v = [float(r["valid_accuracy"]) for r in rows if r["label"] == lab and r["epoch"] == e]
            means[lab].append(sum(v) / len(v) if v else float("nan"))
    for i, e in enumerate(epochs):
        print(f"| {e} | " + " | ".join(f"{100 * means[lab][i]:.1f} %" for lab, _ in pairs) + " |")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return 0
    fig, ax = plt.subplots(figsize=(6, 4))
    for lab, _ in pairs:
        (line,) = ax.plot(epochs, [100 * v for v in means[lab]], "-", label=lab)
        pts = [(r["epoch"], 100 * float(r["valid_accuracy"])) for r in rows if r["label"] == lab]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], ".", color=line.get_color(), alpha=0.5)
    ax.set_xlabel("epoch")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(os.path.basename(stem))
    ax.legend()
    fig.tight_layout()
    fig.savefig(stem + ".png", dpi=100)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
