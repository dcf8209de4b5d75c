"""``snntorch-egru train --task mackey-glass``: train, benchmark with NeuroBench's harness, record.

Each repeat of NeuroBench's protocol (:mod:`._mackey_glass`) trains the EGRU and, unless
``--baseline none``, the LSTM of NeuroBench's example (window 50, 40 units, Adam 5e-3, weight
decay 1e-3, 200 full-batch epochs, MSE, float64) and a GRU of the same size and budget, all on
the same cached series with the repeat's seed (``seed + k``, the example seeds with ``k``).
Every trained model is then warmed on the training inputs, switched to autonomous mode and
run through NeuroBench's ``Benchmark`` with ``Footprint``, ``ConnectionSparsity`` (the
package's, which also counts EGRU weights), ``SMAPE``, ``ActivationSparsity`` and
``SynapticOperations`` (per test step), wrapped by :class:`snntorch_egru.neurobench.TorchModel`.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Dict, List

import torch
from torch.nn import functional as F

from . import _mackey_glass as MG
from ._mg_models import Forecaster
from ._tasks import config_options

#: NeuroBench's example LSTM configuration (examples/mackey_glass/lstm_benchmark.py defaults)
EXAMPLE = dict(window=50, hidden=40, epochs=200, lr=0.005, weight_decay=0.001)
#: the :func:`train_model` arguments of the EGRU that come from the config under their own names
EGRU_TRAINING = ("epochs", "lr", "weight_decay", "thr_mean", "activity_reg", "activity_target")
#: NeuroBench 2.3 leaderboard, Mackey-Glass tau=17 (official mg_17.npy), for reference only
LEADERBOARD = {
    "LSTM": {"sMAPE": 13.37, "activation_sparsity": 0.530, "effective_macs": 6.03e4},
    "ESN": {"sMAPE": 14.79, "connection_sparsity": 0.876, "effective_macs": 4.37e3},
}


def train_model(
    kind: str,
    split: MG.Split,
    window: int,
    hidden: int,
    epochs: int,
    lr: float,
    weight_decay: float,
    thr_mean: float = 0.3,
    activity_reg: float = 0.0,
    activity_target: float = 0.1,
) -> Forecaster:
    """Train one forecaster teacher-forced on ``split``'s 750 training steps (full batch, Adam, MSE)."""
    model = Forecaster(kind, window, hidden, thr_mean=thr_mean)
    if kind == "egru":
        model.shift.fill_(float(split.train_x.mean()))
        model.scale.fill_(float(split.train_x.std()))
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    wins = MG.windows(split.train_x, window)
    model.train()
    for _ in range(epochs):
        pred, rec = model.sequence(wins, return_internals=True)
        loss = F.mse_loss(pred, split.train_y)
        model.train_mse = float(loss.detach())  # the last epoch's teacher-forced training error (before its step)
        if rec is not None and activity_reg:
            loss = loss + activity_reg * (rec.o.mean() - activity_target) ** 2
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def benchmark(model: Forecaster, split: MG.Split) -> Dict[str, Any]:
    """Warm ``model`` on the training inputs and run NeuroBench's benchmark on the autonomous test.

    Returns NeuroBench's results plus ``"forecast"``: the 750 predictions (list of floats).
    """
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.static import Footprint
    from neurobench.metrics.workload import SMAPE, ActivationSparsity, SynapticOperations
    from torch.utils.data import DataLoader, Subset

    from ..neurobench import ConnectionSparsity, TorchModel

    model.eval()
    model.warm(split.train_x)
    model.mode = "autonomous"
    mg = split.dataset
    loader = DataLoader(Subset(mg, mg.ind_test), batch_size=mg.testtime_pts, shuffle=False)
    seen: List[torch.Tensor] = []
    handle = model.register_forward_hook(lambda m, a, out: seen.append(out.detach()))
    try:
        bench = Benchmark(
            TorchModel(model),
            loader,
            [],
            [],
            [[Footprint, ConnectionSparsity], [SMAPE, ActivationSparsity, SynapticOperations]],
        )
        with torch.no_grad():
            res = bench.run(quiet=True)
        bench.workload_metric_manager.cleanup_hooks(bench.model)
    finally:
        handle.remove()
        model.mode = "single_step"
    res["forecast"] = torch.cat(seen)[:, 0].tolist()
    return res


def _model_specs(cfg: Any) -> Dict[str, Dict[str, Any]]:
    specs = {"EGRU": dict(kind="egru", window=cfg.window, hidden=cfg.hidden_size, **config_options(cfg, EGRU_TRAINING))}
    if cfg.baseline != "none":
        base = dict(EXAMPLE, epochs=cfg.epochs)  # the example's configuration, at the run's epoch budget
        specs["LSTM"] = dict(kind="lstm", **base)
        specs["GRU"] = dict(kind="gru", **base)
    return specs


def summarise(per_repeat: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Mean (and sd of sMAPE) over the repeats of one model's NeuroBench results."""
    smapes = [r["SMAPE"] for r in per_repeat]
    mean, sd = MG.mean_sd(smapes)

    def avg(get: Callable[[Dict[str, Any]], float]) -> float:
        return float(sum(get(r) for r in per_repeat) / len(per_repeat))

    return {
        "repeats": len(per_repeat),
        "sMAPE_mean": mean,
        "sMAPE_sd": sd,
        "sMAPE": smapes,
        "activation_sparsity": avg(lambda r: r["ActivationSparsity"]),
        "effective_macs": avg(lambda r: r["SynapticOperations"]["Effective_MACs"]),
        "effective_acs": avg(lambda r: r["SynapticOperations"]["Effective_ACs"]),
        "dense_ops": avg(lambda r: r["SynapticOperations"]["Dense"]),
        "footprint_bytes": avg(lambda r: r["Footprint"]),
        "connection_sparsity": avg(lambda r: r["ConnectionSparsity"]),
        "train_mse": avg(lambda r: r.get("train_mse", float("nan"))),
    }


def run(cfg: Any, command: str = "snntorch-egru train --task mackey-glass", log=print) -> Dict[str, Any]:
    """Run the task; writes ``metrics.json``, ``results.md`` and ``forecast.png`` under ``cfg.out``."""
    _check(cfg)
    os.makedirs(cfg.out, exist_ok=True)
    path = MG.cached_series(cfg.data_dir, cfg.repeats, log=log)
    specs = _model_specs(cfg)
    results: Dict[str, List[Dict[str, Any]]] = {name: [] for name in specs}
    forecasts: Dict[str, List[float]] = {}
    metrics: Dict[str, Any] = {}
    started = time.time()
    for k, offset in enumerate(MG.start_offsets(cfg.repeats)):
        split = MG.load_split(path, offset)
        for name, spec in specs.items():
            torch.manual_seed(cfg.seed + k)
            t0 = time.time()
            model = train_model(split=split, **spec)
            res = benchmark(model, split)
            res["train_mse"] = model.train_mse
            if k == 0:
                forecasts[name] = res["forecast"]
            res.pop("forecast")
            res["train_and_bench_s"] = round(time.time() - t0, 1)
            results[name].append(res)
            log(
                f"mackey-glass repeat {k} (offset {offset:g}): {name} sMAPE {res['SMAPE']:.2f}, activation sparsity "
                f"{res['ActivationSparsity']:.3f}, effective MACs {res['SynapticOperations']['Effective_MACs']:.0f}"
            )
        metrics = _write(cfg, command, path, specs, results, k + 1, started)  # after every repeat
        if k == 0 and cfg.plot:
            plot_forecast(split, forecasts, os.path.join(cfg.out, "forecast.png"))
    log(table(metrics["summary"], cfg.repeats))
    return metrics


def _write(
    cfg: Any,
    command: str,
    path: Any,
    specs: Dict[str, Any],
    results: Dict[str, List[Dict[str, Any]]],
    done: int,
    started: float,
) -> Dict[str, Any]:
    """Write ``metrics.json`` and ``results.md`` for the ``done`` repeats completed so far."""
    summary = {name: summarise(rs) for name, rs in results.items()}
    metrics = {
        "task": "mackey-glass",
        "command": command,
        "series": str(path),
        "repeats": cfg.repeats,
        "repeats_completed": done,
        "offsets": MG.start_offsets(done),
        "wall_s": round(time.time() - started, 1),
        "config": specs,
        "summary": summary,
        "per_repeat": results,
        "leaderboard_official_series": LEADERBOARD,
    }
    with open(os.path.join(cfg.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=1)
    with open(os.path.join(cfg.out, "results.md"), "w") as f:
        f.write(table(summary, done))
    return metrics


def table(summary: Dict[str, Dict[str, Any]], repeats: int) -> str:
    """Markdown table of the summaries, with the official leaderboard rows for reference."""
    rows = [
        "| model | sMAPE (mean +- sd) | activation sparsity | effective MACs / step | effective ACs / step "
        "| dense ops / step | footprint (bytes) | connection sparsity |",
        "|" + "---|" * 8,
    ]
    for name, s in summary.items():
        rows.append(
            f"| {name} (this series, {repeats} repeats) | {s['sMAPE_mean']:.2f} +- {s['sMAPE_sd']:.2f} | "
            f"{s['activation_sparsity']:.3f} | {s['effective_macs']:.0f} | {s['effective_acs']:.0f} | "
            f"{s['dense_ops']:.0f} | {s['footprint_bytes']:.0f} | {s['connection_sparsity']:.3f} |"
        )
    lb = LEADERBOARD
    rows.append(f"| LSTM (leaderboard, official mg_17.npy) | {lb['LSTM']['sMAPE']:.2f} | 0.530 | 6.03e4 | | | | |")
    rows.append(f"| ESN (leaderboard, official mg_17.npy) | {lb['ESN']['sMAPE']:.2f} | | 4.37e3 | | | | 0.876 |")
    return "\n".join(rows) + "\n"


def plot_forecast(split: MG.Split, forecasts: Dict[str, List[float]], path: str) -> None:
    """Plot repeat 0's autonomous forecasts against the truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.2))
    steps = range(len(split.test_y))
    ax.plot(steps, split.test_y[:, 0].numpy(), color="black", lw=1.5, label="truth")
    for name, pred in forecasts.items():
        ax.plot(steps, pred, lw=1, label=name)
    ax.set_xlabel("test step (75 steps = 1 Lyapunov time)")
    ax.set_ylabel("x(t)")
    ax.set_title("Mackey-Glass tau=17, autonomous forecast, repeat 0")
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _check(cfg: Any) -> None:
    for name in ("repeats", "window", "hidden_size", "epochs"):
        v = getattr(cfg, name)
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive int for mackey-glass, got {v!r}")
    if cfg.repeats > MG.REPEATS:
        raise ValueError(f"--repeats must be at most {MG.REPEATS} (NeuroBench's protocol), got {cfg.repeats}")
    if cfg.baseline not in ("none", "gru", "lstm"):
        raise ValueError(f"--baseline must be 'none' or 'gru' for mackey-glass, got {cfg.baseline!r}")
    if cfg.out is None:
        raise ValueError("--out must be set")
