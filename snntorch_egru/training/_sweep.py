"""Accuracy against activity (``snntorch-egru train --activity-targets``): one EGRU run per activity target,
the same-size GRU once, and the sweep's ``metrics.json``, ``accuracy_vs_activity.png`` and ``.csv``.

A target's run (or each of its seeds' runs) whose folder already holds a finished ``metrics.json``
made with the same settings is reused, so an interrupted sweep continues when the same command is
given again, and runs made one by one can be assembled into a sweep.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import io
import json
import os
from typing import Any, Callable, Dict, List, Optional, Tuple

from .. import _io
from . import _distributed as D
from ._cli import UsageError, _flag
from ._compare import over_seeds, spread
from ._records import _pyplot, _save_png, _write_metrics
from ._tasks import TrainConfig

__all__ = ["FIGURES", "target_folder", "over_targets", "PLOT_FILE", "CSV_FILE"]

#: the figures the sweep reports for every target (and the GRU), each as mean, sd and per-seed values
FIGURES = ("test_accuracy", "activity_sparsity", "effective_mac_fraction", "valid_accuracy")
PLOT_FILE = "accuracy_vs_activity.png"
CSV_FILE = "accuracy_vs_activity.csv"

#: settings that do not change what a run learns: a finished run that differs only in these is reused
_RUN_CONTROL = frozenset(
    {
        "out",
        "data_dir",
        "download",
        "progress",
        "nir",
        "plot",
        "threads",
        "stop_after",
        "num_workers",
        "device",
        "backend",
        "seeds",
        "baseline",
        "activity_targets",
    }
)
#: settings a dense GRU does not use: no regularisers, and none of the EGRU layer's own options
#: (``GRUClassifier`` is built from the sizes, the front end and the readout only)
_GRU_UNUSED = frozenset(
    {
        "activity_reg",
        "activity_target",
        "voltage_reg",
        "voltage_target",
        "reg_form",
        "zoneout",
        "dropconnect",
        "thr_mean",
        "learn_threshold",
        "dampening_factor",
        "pseudo_derivative_support",
        "init",
        "layer_grad_clip",
    }
)

#: ``run_one(config, command)`` trains, tests and records one run folder and returns its metrics
RunOne = Callable[[TrainConfig, str], Dict[str, Any]]


def _t(t: float) -> str:
    """A target as text: short (``0.05``) where that reads back as the same number."""
    text = f"{t:g}"
    return text if float(text) == t else repr(float(t))


def target_folder(out: str, target: float) -> str:
    """The run folder of one activity target in the sweep folder ``out``.

    Example::

        >>> from snntorch_egru.training._sweep import target_folder
        >>> target_folder("runs/sweep", 0.05).replace("\\\\", "/")
        'runs/sweep/target-0.05'
    """
    return os.path.join(out, f"target-{_t(target)}")


# ----------------------------------------------------------------------------- reuse of finished runs
def _finished(c: TrainConfig) -> Tuple[Optional[Dict[str, Any]], str]:
    """``(metrics, note)``: the metrics of a finished run in ``c.out`` made with ``c``'s settings (else None),
    and what to print about the folder. A finished run with other settings raises :class:`UsageError`."""
    path = os.path.join(c.run_dir, "metrics.json")
    if not os.path.isfile(path):
        return None, ""
    try:
        with open(path, encoding="utf-8") as f:
            m = json.load(f)
    except (OSError, ValueError) as err:
        return None, f"{path}: unreadable ({type(err).__name__}); training that run again"
    if isinstance(m, dict) and "seeds" in m and "test_accuracy" not in m:
        raise UsageError(
            f"--activity-targets: {path!r} holds a --seeds run (seed-<s>/ folders) and this sweep "
            "has no --seeds; give the same --seeds or another --out"
        )
    if isinstance(m, dict) and m.get("finished") is False and "test_accuracy" not in m:
        return None, ""  # the progress of an interrupted run: the runner continues it from its checkpoint
    if not isinstance(m, dict) or not isinstance(m.get("config"), dict) or "test_accuracy" not in m:
        return None, f"{path}: not the metrics of a finished classification run; training that run again"
    if m.get("epochs_completed") != m.get("epochs"):
        return None, ""  # stopped early (--stop-after): the runner continues it from its checkpoint
    saved, want = m["config"], c.to_dict()
    ignore = _RUN_CONTROL | (_GRU_UNUSED if c.model == "gru" else frozenset())
    differ = [k for k in want if k not in ignore and k in saved and saved[k] != want[k]]
    if differ:
        shown = ", ".join(f"{_flag(k)} {saved[k]!r} (this sweep: {want[k]!r})" for k in differ[:4])
        more = f" and {len(differ) - 4} more" if len(differ) > 4 else ""
        raise UsageError(
            f"--activity-targets: {path!r} holds a finished run made with other settings: {shown}{more}; "
            "remove that folder or give another --out"
        )
    return m, f"{c.out}: reusing the finished run (metrics.json)"


def _single_run_in(c: TrainConfig) -> Tuple[None, str]:
    """For a ``--seeds`` folder: refuse one that holds a single run (its metrics.json would be replaced)."""
    path = os.path.join(c.run_dir, "metrics.json")
    try:
        with open(path, encoding="utf-8") as f:
            m = json.load(f)
        single = isinstance(m, dict) and "epochs_completed" in m
    except (OSError, ValueError):
        single = False
    if single:
        raise UsageError(
            f"--activity-targets: {path!r} holds a single run and this sweep has --seeds (seed-<s>/ "
            "folders); drop --seeds or give another --out"
        )
    return None, ""


def _on_main(check: Callable[[TrainConfig], Tuple[Any, str]], c: TrainConfig, info: Any) -> Tuple[Any, str]:
    """``check(c)`` on the main process, its answer (or its :class:`UsageError`) on every process."""
    found: Tuple[Any, str, Optional[str]] = (None, "", None)
    if info.is_main:
        try:
            found = (*check(c), None)
        except UsageError as err:
            found = (None, "", str(err))
    value, note, error = D.broadcast_object(found, info)
    if error is not None:
        raise UsageError(error)
    return value, note


def _reuse_or_run(c: TrainConfig, info: Any, run_one: RunOne, command: str) -> Dict[str, Any]:
    """The finished run in ``c.out`` (decided on the main process), else ``run_one(c, command)``."""
    m, note = _on_main(_finished, c, info)
    if note and info.is_main:
        print(note, flush=True)
    return m if m is not None else run_one(c, command)


def _runs_of(c: TrainConfig, info: Any, run_one: RunOne, command: str) -> List[Dict[str, Any]]:
    """The metrics of ``c``'s run, or of each seed's run when ``c.seeds`` is given (``seed-<s>/``)."""
    runs: List[Dict[str, Any]] = []

    def leaf(lc: TrainConfig) -> Dict[str, Any]:
        m = _reuse_or_run(lc, info, run_one, command)
        runs.append(m)
        return m

    if c.seeds:
        _on_main(_single_run_in, c, info)
        over_seeds(c, info, command, leaf)
    else:
        leaf(c)
    return runs


def _figures(runs: List[Dict[str, Any]], folder: str) -> Dict[str, Any]:
    out: Dict[str, Any] = {
        k: spread([float(r[k]) for r in runs]) for k in FIGURES if all(r.get(k) is not None for r in runs)
    }
    out["seeds"] = [r["config"]["seed"] for r in runs]
    out["run_dir"] = folder
    out["runs"] = [r["run_dir"] for r in runs]
    # a run stopped early (--stop-after) reports the figures of its last completed epoch: say so wherever shown
    out["epochs_completed"] = [r.get("epochs_completed") for r in runs]
    out["finished"] = all(r.get("epochs_completed") == r.get("epochs") for r in runs)
    return out


def _unfinished(m: Dict[str, Any]) -> List[str]:
    """The labels (``target 0.05``, ``GRU``) of the sweep's entries with a run stopped before its last epoch."""
    out = [f"target {_t(r['activity_target'])}" for r in m["per_target"] if not r.get("finished", True)]
    if "gru" in m and not m["gru"].get("finished", True):
        out.append("GRU")
    return out


# ----------------------------------------------------------------------------- the sweep
def over_targets(cfg: TrainConfig, info: Any, command: str, run_one: RunOne) -> Dict[str, Any]:
    """One EGRU run per ``cfg.activity_targets`` entry in ``cfg.out/target-<t>`` (each over ``cfg.seeds``
    if given) and, with ``cfg.baseline == "gru"``, the same-size GRU once in ``cfg.out/gru``; writes
    ``cfg.out/metrics.json``, ``accuracy_vs_activity.csv`` and (``cfg.plot``) ``accuracy_vs_activity.png``
    and returns the metrics."""
    targets = [float(t) for t in (cfg.activity_targets or [])]
    base = dataclasses.replace(cfg, activity_targets=None, baseline="none")
    rows = []
    for t in targets:
        tcfg = dataclasses.replace(base, activity_target=t, out=target_folder(cfg.run_dir, t))
        rows.append(
            {
                "activity_target": t,
                **_figures(_runs_of(tcfg, info, run_one, f"{command}  # target {_t(t)}"), tcfg.run_dir),
            }
        )
    gru = None
    if cfg.baseline == "gru":
        gcfg = dataclasses.replace(base, model="gru", out=os.path.join(cfg.run_dir, "gru"))
        gru = {
            "model": "gru",
            **_figures(_runs_of(gcfg, info, run_one, f"{command}  # its GRU baseline"), gcfg.run_dir),
        }
    m: Dict[str, Any] = {
        "task": cfg.task,
        "model": "egru",
        "hidden_size": cfg.hidden_size,
        "num_layers": cfg.num_layers,
        "activity_reg": cfg.activity_reg,
        "targets": targets,
        "seeds": cfg.seeds,
        "per_target": rows,
    }
    if gru is not None:
        m["gru"] = gru
    m["finished"] = not _unfinished(m)
    m.update(
        {
            "command": command,
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "run_dir": cfg.out,
            "config": cfg.to_dict(),
        }
    )
    if info.is_main:
        m = _write_sweep(cfg, m)
        print(_sweep_line(m), flush=True)
    D.barrier(info)
    return m


def _write_sweep(cfg: TrainConfig, m: Dict[str, Any]) -> Dict[str, Any]:
    """accuracy_vs_activity.csv, the plot (unless ``--no-plot``; skipped with a note without matplotlib),
    then metrics.json; returns what metrics.json holds."""
    os.makedirs(cfg.run_dir, exist_ok=True)
    csv_path = os.path.join(cfg.run_dir, CSV_FILE)
    files: Dict[str, Optional[str]] = {"csv": csv_path}
    _io.atomic_write_text(csv_path, _csv_text(m["per_target"], m.get("gru")))
    if cfg.plot:
        h = cfg.hidden_size
        title = f"{cfg.task}: accuracy vs activity, EGRU({h})" + (f" vs GRU({h})" if "gru" in m else "")
        if not m["finished"]:
            title += " (UNFINISHED)"
        files["plot"] = _plot_sweep(os.path.join(cfg.run_dir, PLOT_FILE), m["per_target"], m.get("gru"), title)
        if files["plot"] is None:
            m["absent"] = {"plot": "matplotlib is not installed"}
            print(f"{PLOT_FILE} not written: matplotlib is not installed (pip install matplotlib)", flush=True)
    m["files"] = files
    return _write_metrics(os.path.join(cfg.run_dir, "metrics.json"), m)


def _pct(fig: Optional[Dict[str, Any]], key: str) -> str:
    return "" if fig is None else repr(100 * fig[key])


def _csv_text(rows: List[Dict[str, Any]], gru: Optional[Dict[str, Any]]) -> str:
    """The plotted figures, in percent: one line per target (in the order given), then the GRU's."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "model",
            "activity_target",
            "activity_sparsity_pct",
            "activity_sparsity_sd_pct",
            "test_accuracy_pct",
            "test_accuracy_sd_pct",
            "effective_mac_fraction",
            "valid_accuracy_pct",
            "seeds",
            "finished",
            "run_dir",
        ]
    )
    for r in rows + ([gru] if gru is not None else []):
        sp, acc = r.get("activity_sparsity"), r["test_accuracy"]
        mac, va = r.get("effective_mac_fraction"), r.get("valid_accuracy")
        w.writerow(
            [
                r.get("model", "egru"),
                r.get("activity_target", ""),
                _pct(sp, "mean"),
                _pct(sp, "sd"),
                _pct(acc, "mean"),
                _pct(acc, "sd"),
                "" if mac is None else repr(mac["mean"]),
                _pct(va, "mean"),
                " ".join(map(str, r["seeds"])),
                str(bool(r.get("finished", True))).lower(),
                r["run_dir"],
            ]
        )
    return buf.getvalue()


def _plot_sweep(path: str, rows: List[Dict[str, Any]], gru: Optional[Dict[str, Any]], title: str) -> Optional[str]:
    """Test accuracy against activity sparsity, one point per target joined in sparsity order, the GRU as a
    dashed line (its ± sd band with several seeds); None if matplotlib is missing."""
    plt = _pyplot()
    if plt is None:
        return None
    pts = sorted(rows, key=lambda r: r["activity_sparsity"]["mean"])
    x = [100 * r["activity_sparsity"]["mean"] for r in pts]
    y = [100 * r["test_accuracy"]["mean"] for r in pts]
    several = any(len(r["test_accuracy"]["per_seed"]) > 1 for r in pts)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    if several:
        ax.errorbar(
            x,
            y,
            xerr=[100 * r["activity_sparsity"]["sd"] for r in pts],
            yerr=[100 * r["test_accuracy"]["sd"] for r in pts],
            fmt="o-",
            capsize=3,
            label="EGRU (mean ± sd)",
        )
    else:
        ax.plot(x, y, "o-", label="EGRU")
    stopped = [(xi, yi) for xi, yi, r in zip(x, y, pts) if not r.get("finished", True)]
    if stopped:  # a run stopped early (--stop-after): its point is not a result, mark it
        ax.plot(
            *zip(*stopped),
            "o",
            markersize=11,
            markerfacecolor="white",
            markeredgecolor="tab:orange",
            zorder=0,
            label="unfinished run (stopped early)",
        )
    for i, (xi, yi, r) in enumerate(zip(x, y, pts)):  # labels alternate above / below: neighbours can be close
        note = "" if r.get("finished", True) else " (unfinished)"
        ax.annotate(
            f"target {_t(r['activity_target'])}{note}",
            (xi, yi),
            textcoords="offset points",
            xytext=(4, 6 if i % 2 == 0 else -14),
            fontsize=8,
        )
    if gru is not None:
        g = gru["test_accuracy"]
        ax.axhline(
            100 * g["mean"],
            linestyle="--",
            color="tab:red",
            label="GRU (dense)" + ("" if gru.get("finished", True) else ", unfinished run"),
        )
        if len(g["per_seed"]) > 1:
            ax.axhspan(100 * (g["mean"] - g["sd"]), 100 * (g["mean"] + g["sd"]), color="tab:red", alpha=0.15)
    ax.set_xlabel("activity sparsity (% of units silent per step)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return _save_png(plt, fig, path)


def _sweep_line(m: Dict[str, Any]) -> str:
    """The one-line summary of a sweep."""

    def acc(fig: Dict[str, Any]) -> str:
        a = fig["test_accuracy"]
        return f"{100 * a['mean']:.2f}" + (f" ± {100 * a['sd']:.2f}" if len(a["per_seed"]) > 1 else "") + "%"

    parts = [f"{m['task']}, activity targets {','.join(_t(t) for t in m['targets'])}"]
    parts.append(
        "EGRU test accuracy "
        + "; ".join(
            f"target {_t(r['activity_target'])}: {acc(r)} at {100 * r['activity_sparsity']['mean']:.1f}% silent"
            for r in m["per_target"]
        )
    )
    if "gru" in m:
        parts.append(f"GRU test accuracy {acc(m['gru'])}")
    stopped = _unfinished(m)
    if stopped:
        parts.append(f"UNFINISHED ({', '.join(stopped)} stopped early: give the same command again to continue)")
    parts.append(f"-> {m['run_dir']}")
    return " | ".join(parts)
