"""Side-by-side runs of ``snntorch-egru train``: the EGRU and a same-size dense GRU (``--baseline gru``),
and several seeds (``--seeds 0,1,2``) reported as mean and standard deviation."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import statistics
from typing import Any, Callable, Dict, List, Optional

from ._records import _write_metrics
from ._tasks import TrainConfig

__all__ = ["BRIEF_KEYS", "brief", "spread"]

#: the figures of a run that a comparison repeats
BRIEF_KEYS = (
    "test_accuracy",
    "test_correct",
    "test_samples",
    "valid_accuracy",
    "selected_epoch",
    "activity",
    "activity_sparsity",
    "effective_macs",
    "dense_macs",
    "effective_mac_fraction",
    "parameters",
    "wall_time_s",
    "run_dir",
)

RunOne = Callable[..., Dict[str, Any]]


def brief(m: Dict[str, Any]) -> Dict[str, Any]:
    """The comparison figures of one run's metrics (those it has)."""
    return {k: m[k] for k in BRIEF_KEYS if k in m}


def spread(values: List[float]) -> Dict[str, Any]:
    """``{"mean", "sd", "per_seed"}`` (sample standard deviation; 0.0 for one value).

    Example::

        >>> from snntorch_egru.training._compare import spread
        >>> import statistics
        >>> spread([0.5, 0.7])["sd"] == statistics.stdev([0.5, 0.7])
        True
    """
    return {
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
        "per_seed": list(values),
    }


def _fmt_model(name: str, m: Dict[str, Any]) -> str:
    text = f"{name} test accuracy {100 * m['test_accuracy']:.2f}%"
    text += f", activity {100 * m['activity']:.1f}%"
    if m.get("effective_mac_fraction") is not None:
        text += f", effective MACs {m['effective_mac_fraction']:.2f}x of a dense GRU"
    return text


def with_baseline(
    cfg: TrainConfig,
    info: Any,
    ckpt: Optional[Dict[str, Any]],
    changes: Dict[str, Any],
    command: str,
    run_one: RunOne,
    resume_gru: Callable[[TrainConfig], Any],
) -> Dict[str, Any]:
    """Train the EGRU in ``cfg.out`` and a same-size GRU in ``cfg.out/gru`` (same data, budget, seed);
    the EGRU's metrics.json gains ``baseline`` and ``comparison``."""
    m = run_one(cfg, info, ckpt, changes, command, quiet=True)
    gcfg = dataclasses.replace(cfg, model="gru", baseline="none", seeds=None, out=os.path.join(cfg.run_dir, "gru"))
    gckpt, gchanges = None, {}
    if ckpt is not None and os.path.exists(os.path.join(gcfg.run_dir, "checkpoint.pt")):
        gcfg, gckpt, gchanges = resume_gru(gcfg)
    g = run_one(gcfg, info, gckpt, gchanges, command + "  # its GRU baseline", quiet=True)
    m["baseline"] = {"model": "gru", **brief(g)}
    if "test_accuracy" in m and "test_accuracy" in g:
        m["comparison"] = {
            "egru_minus_gru_accuracy_points": 100 * (m["test_accuracy"] - g["test_accuracy"]),
            "egru_activity_sparsity": m["activity_sparsity"],
        }
    if info.is_main:
        m = _write_metrics(os.path.join(cfg.run_dir, "metrics.json"), m)
        wall = m["wall_time_s"] + g["wall_time_s"]
        print(f"{cfg.task}: {_fmt_model('EGRU', m)} | {_fmt_model('GRU', g)} | {wall:.0f} s -> {cfg.out}", flush=True)
    return m


def over_seeds(
    cfg: TrainConfig, info: Any, command: str, run_seed: Callable[[TrainConfig], Dict[str, Any]]
) -> Dict[str, Any]:
    """One run per seed in ``cfg.out/seed-<s>``; ``cfg.out/metrics.json`` holds mean, sd and per-seed figures."""
    seeds = list(cfg.seeds or [cfg.seed])
    runs = [
        run_seed(dataclasses.replace(cfg, seed=s, seeds=None, out=os.path.join(cfg.run_dir, f"seed-{s}")))
        for s in seeds
    ]
    agg: Dict[str, Any] = {
        "task": cfg.task,
        "seeds": seeds,
        "command": command,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "run_dir": cfg.out,
        "runs": [r["run_dir"] for r in runs],
        "config": cfg.to_dict(),
    }
    models = {cfg.model: runs}  # "egru", or "gru" for a --model gru run (the GRU of a sweep)
    if cfg.baseline == "gru":
        models["gru"] = [r["baseline"] for r in runs]
    for name, ms in models.items():
        agg[name] = {
            k: spread([float(x[k]) for x in ms])
            for k in ("test_accuracy", "activity", "activity_sparsity", "effective_mac_fraction", "wall_time_s")
            if all(x.get(k) is not None for x in ms)
        }
    if info.is_main:
        agg = _write_metrics(os.path.join(cfg.run_dir, "metrics.json"), agg)
        print(_seeds_line(agg), flush=True)
    return agg


def _seeds_line(agg: Dict[str, Any]) -> str:
    parts = [f"{agg['task']}, seeds {','.join(map(str, agg['seeds']))}"]
    for name in ("egru", "gru"):
        if name not in agg:
            continue
        a = agg[name]
        acc = a["test_accuracy"]
        per = ", ".join(f"{100 * v:.2f}" for v in acc["per_seed"])
        text = (
            f"{name.upper()} test accuracy {100 * acc['mean']:.2f} ± {100 * acc['sd']:.2f}% ({per}), "
            f"activity {100 * a['activity']['mean']:.1f}%"
        )
        if "effective_mac_fraction" in a:
            text += f", effective MACs {a['effective_mac_fraction']['mean']:.2f}x of a dense GRU"
        parts.append(text)
    parts.append(f"-> {agg['run_dir']}")
    return " | ".join(parts)
