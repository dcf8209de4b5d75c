"""Files of a ``snntorch-egru train`` run folder: checkpoint, metrics.json, model.nir, activity.png."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
from typing import Any, Dict, List, Optional, Tuple, cast

import torch
from torch import nn

from .. import _io
from ._cli import UsageError
from ._models import FrameCNN, SequenceClassifier
from ._tasks import TrainConfig

__all__ = ["load_checkpoint", "RUN_FILES", "FINAL_FILES"]


class _EventsHead(nn.Module):
    """Per-step export view of a classifier: front end -> EGRU -> head on the events."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.front: Optional[nn.Module]
        self.egrus: nn.ModuleList
        self.head: Optional[nn.Module]
        if isinstance(model, SequenceClassifier):
            self.front = model.frontend.net if isinstance(model.frontend, FrameCNN) else model.frontend
            self.egrus = nn.ModuleList([model.egru])
            self.head = model.head
        else:  # LanguageModel: the EGRU stack only (embedding and tied decoder stay in PyTorch)
            self.front = None
            self.egrus = cast(nn.ModuleList, model.layers)
            self.head = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.front is not None:
            x = self.front(x)
        for m in self.egrus:
            x = m(x)[0]
        if self.head is not None:
            x = self.head(x)
        return x


def _export_nir(model: nn.Module, sample_step: torch.Tensor, path: str) -> Tuple[Optional[str], Optional[str]]:
    try:
        from .. import nir as se_nir
    except ImportError as err:
        return None, f"snntorch_egru.nir is not available ({err})"
    try:
        view = _EventsHead(model).cpu().eval()
        graph = se_nir.export_to_nir(view, sample_step.cpu())
        se_nir.write(path, graph)
        return path, None
    except Exception as err:  # export is a by-product: report, never fail the run
        return None, f"NIR export failed: {type(err).__name__}: {err}"


def _pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _save_png(plt: Any, fig: Any, path: str) -> str:
    """Write ``fig`` to ``path`` as PNG (atomically) and close it; returns ``path``."""
    try:
        with _io.atomic_open(path, "wb") as f:
            fig.savefig(f, format="png", dpi=100)
    finally:
        plt.close(fig)
    return path


def _epoch_axis(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _curves(ax: Any, history: List[Dict[str, Any]]) -> None:
    """Train loss (left axis) and the validation accuracy (or perplexity) per epoch (right axis)."""
    ep = [h["epoch"] for h in history]
    ax.plot(ep, [h.get("train_loss") for h in history], "o-", color="C0", label="train loss")
    ax.set_ylabel("train loss", color="C0")
    _epoch_axis(ax)
    split = history[-1].get("eval_split", "eval") if history else "eval"
    right = ax.twinx()
    if history and "eval_perplexity" in history[-1]:
        right.plot(ep, [h.get("eval_perplexity") for h in history], "s-", color="C1")
        right.set_ylabel(f"{split} perplexity", color="C1")
    else:
        right.plot(
            ep,
            [100 * h["eval_accuracy"] if h.get("eval_accuracy") is not None else None for h in history],
            "s-",
            color="C1",
        )
        right.set_ylabel(f"{split} accuracy (%)", color="C1")
    ax.set_title("loss and accuracy")


def _plot(path: str, raster: Optional[torch.Tensor], history: List[Dict[str, Any]], title: str) -> Optional[str]:
    """activity.png: the events of one test sample (after the final test), the activity per epoch, and the
    train loss with the validation accuracy (or perplexity) per epoch; None when matplotlib is missing."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    if raster is not None:
        t, u = torch.nonzero(raster > 0, as_tuple=True)
        axes[0].scatter(t.numpy(), u.numpy(), s=2, marker="|", color="k")
        axes[0].set_xlim(-0.5, raster.shape[0] - 0.5)
        axes[0].set_ylim(-0.5, raster.shape[1] - 0.5)
    else:
        axes[0].text(0.5, 0.5, "drawn after the final test", ha="center", va="center", transform=axes[0].transAxes)
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("unit (last EGRU layer)")
    axes[0].set_title("events of one test sample")
    ep = [h["epoch"] for h in history]
    axes[1].plot(ep, [100 * h["train_activity"] for h in history], "o-", label="train")
    axes[1].plot(ep, [100 * h["eval_activity"] for h in history], "s-", label="eval")
    _epoch_axis(axes[1])
    axes[1].set_ylabel("units active per step (%)")
    axes[1].set_title("activity")
    axes[1].legend()
    _curves(axes[2], history)
    fig.suptitle(title)
    fig.tight_layout()
    return _save_png(plt, fig, path)


def plot_title(cfg: TrainConfig) -> str:
    """The title of a run's activity.png."""
    return f"{cfg.task}: {'GRU' if cfg.model == 'gru' else 'EGRU'}({cfg.hidden_size})"


def write_progress(r: Any, history: List[Dict[str, Any]], resumes: List[Dict[str, Any]]) -> None:
    """After an epoch: metrics.json flagged ``"finished": false`` (the epochs so far, the settings) and the
    plot, so that an interrupted run leaves a readable folder. The final metrics.json replaces it."""
    cfg = r.cfg
    done = history[-1]["epoch"] if history else 0
    m = {
        "task": cfg.task,
        "model": cfg.model,
        "finished": False,
        "epochs_completed": done,
        "epochs": cfg.epochs,
        "note": f"unfinished: {done} of {cfg.epochs} epochs; the run is going on or was interrupted (continue "
        f"with --resume {cfg.out}); the test split is read at the end",
        "command": r.command,
        "run_dir": cfg.out,
        "history": history,
        "config": cfg.to_dict(),
        "resumes": resumes,
        "files": {"checkpoint": os.path.join(cfg.out, "checkpoint.pt")},
    }
    if cfg.plot:
        try:
            if _plot(os.path.join(cfg.out, "activity.png"), None, history, plot_title(cfg)) is not None:
                m["files"]["plot"] = os.path.join(cfg.out, "activity.png")
        except OSError:
            raise
        except Exception as err:  # the progress plot is a by-product: never stop training for it
            m["absent"] = {"plot": f"progress plot failed: {type(err).__name__}: {err}"}
    _write_metrics(os.path.join(cfg.out, "metrics.json"), m)


#: files of a run folder; the last three describe the checkpoint beside them (written at the end of a run)
RUN_FILES = ("checkpoint.pt", "best.pt", "metrics.json", "model.nir", "activity.png")
FINAL_FILES = ("metrics.json", "model.nir", "activity.png")


#: version of the checkpoint layout written by ``snntorch-egru train`` (key ``"format"``; absent: written
#: before versions were recorded, read as version 1)
CHECKPOINT_FORMAT = 1
#: key under which a resume remembers the file a checkpoint came from (never saved)
SOURCE_KEY = "__source__"


def _save_checkpoint(path: str, state: Dict[str, Any]) -> None:
    """``torch.save(state)`` to ``path`` atomically; a failed write (full disk...) raises OSError naming ``path``."""
    _io.atomic_save(path, lambda f: torch.save(state, f))


def _strict_json(obj: Any, where: str, non_finite: List[str]) -> Any:
    """``obj`` with every NaN/inf float replaced by None (its key path appended to ``non_finite``)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        non_finite.append(f"{where}={obj!r}")
        return None
    if isinstance(obj, dict):
        return {k: _strict_json(v, f"{where}.{k}" if where else str(k), non_finite) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict_json(v, f"{where}[{i}]", non_finite) for i, v in enumerate(obj)]
    return obj


def _write_metrics(path: str, metrics: Dict[str, Any]) -> Dict[str, Any]:
    """Write ``metrics`` as strict JSON (RFC 8259: no NaN/Infinity) atomically; returns what was written.

    Non-finite numbers become ``null`` and are listed under ``"non_finite"`` with their original value."""
    non_finite: List[str] = []
    clean = _strict_json(metrics, "", non_finite)
    if non_finite:
        clean["non_finite"] = {
            "note": "these values were NaN or infinite (training diverged?) and are written as null",
            "values": non_finite,
        }
    _io.atomic_write_text(path, json.dumps(clean, indent=2, allow_nan=False) + "\n")
    return clean


#: keys every checkpoint written by ``snntorch-egru train`` holds
_CKPT_KEYS = ("config", "epoch", "model", "optimizer", "scheduler", "history")


def load_checkpoint(path: str) -> Dict[str, Any]:
    """Load a checkpoint of ``snntorch-egru train`` safely (``torch.load(weights_only=True)``).

    Only tensors and plain containers are unpickled, so a crafted file cannot run code; a file
    that needs anything else is refused. Raises :class:`UsageError` naming the file for a
    missing, empty, truncated, corrupt, foreign or incomplete checkpoint.
    """
    if not os.path.exists(path):
        raise UsageError(f"--resume: no checkpoint at {path!r} (expected a run folder or a checkpoint.pt file)")
    if not os.path.isfile(path):
        raise UsageError(f"--resume: {path!r} is not a file (expected a run folder or a checkpoint.pt file)")
    if os.path.getsize(path) == 0:
        raise UsageError(f"--resume: checkpoint {path!r} is empty (0 bytes); expected a torch.save file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(
            f"--resume: refused to load {path!r}: it holds objects other than tensors and plain containers, "
            f"which weights_only loading does not execute ({first})"
        ) from err
    except Exception as err:  # torch.load of a foreign file raises many kinds (IndexError for a text file ...)
        msg = " ".join(str(err).split()) or type(err).__name__
        raise UsageError(f"--resume: {path!r} is not a readable checkpoint (truncated or corrupt?): {msg}") from err
    if not isinstance(ckpt, dict):
        raise UsageError(f"--resume: {path!r} holds a {type(ckpt).__name__}, not a snntorch-egru train checkpoint")
    missing = [k for k in _CKPT_KEYS if k not in ckpt]
    if missing:
        raise UsageError(
            f"--resume: {path!r} is not a snntorch-egru train checkpoint: missing {', '.join(missing)} "
            f"(expected keys {', '.join(_CKPT_KEYS)})"
        )
    _check_checkpoint(ckpt, path)
    return ckpt


def _bad(path: str, what: str) -> UsageError:
    return UsageError(f"--resume: {path!r} is not a valid snntorch-egru train checkpoint: {what}")


def _check_state(state: Any, path: str, key: str) -> None:
    """A model state: names -> floating-point (or integer counter) tensors."""
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise _bad(path, f"{key!r} must map parameter names to tensors")


def _check_optimizer(opt: Any, path: str) -> None:
    """An optimiser state: ``{"state": {int: {name: tensor or number}}, "param_groups": [dict, ...]}``."""
    if not (
        isinstance(opt, dict)
        and isinstance(opt.get("state"), dict)
        and isinstance(opt.get("param_groups"), list)
        and all(isinstance(g, dict) for g in opt["param_groups"])
    ):
        raise _bad(path, "'optimizer' must hold 'state' (a dict) and 'param_groups' (a list of dicts)")
    for pid, st in opt["state"].items():
        if not isinstance(st, dict):
            raise _bad(path, f"optimizer state of parameter {pid!r} is a {type(st).__name__}, expected a dict")
        for name, v in st.items():
            if not (isinstance(v, torch.Tensor) or (isinstance(v, (int, float)) and not isinstance(v, bool))):
                raise _bad(
                    path,
                    f"optimizer state {name!r} of parameter {pid!r} is {type(v).__name__} {v!r}, "
                    "expected a tensor or a number",
                )
    for g in opt["param_groups"]:
        for name in ("lr", "weight_decay"):
            if name in g and (isinstance(g[name], bool) or not isinstance(g[name], (int, float, torch.Tensor))):
                raise _bad(
                    path, f"optimizer param_groups {name!r} is {type(g[name]).__name__} {g[name]!r}, expected a number"
                )


def _check_history(history: List[Any], epoch: int, path: str) -> None:
    """One row per completed epoch, numbered 1, 2, ..., with numbers (or None, or the split name)."""
    if len(history) != epoch:
        raise _bad(path, f"'history' has {len(history)} rows for {epoch} completed epochs")
    for i, row in enumerate(history):
        if not isinstance(row, dict) or row.get("epoch") != i + 1:
            raise _bad(path, f"'history' row {i} is {str(row)[:80]!r}, expected a dict with 'epoch': {i + 1}")
        for k, v in row.items():
            if k == "eval_split":
                ok = isinstance(v, str)
            else:
                ok = v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
            if not ok:
                raise _bad(path, f"'history' row {i + 1} has {k!r} = {v!r}, expected a number")


def _check_checkpoint(ckpt: Dict[str, Any], path: str) -> None:
    fmt = ckpt.get("format", 1)
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        raise _bad(path, f"'format' is {fmt!r}, expected a positive integer")
    if fmt > CHECKPOINT_FORMAT:
        raise UsageError(
            f"--resume: {path!r} has checkpoint format {fmt}, written by a newer snntorch-egru; this "
            f"version reads format {CHECKPOINT_FORMAT}: upgrade snntorch-egru"
        )
    if not isinstance(ckpt["config"], dict) or not isinstance(ckpt["history"], list):
        raise UsageError(f"--resume: {path!r} has a malformed 'config' or 'history' entry")
    if not isinstance(ckpt["epoch"], int) or isinstance(ckpt["epoch"], bool) or ckpt["epoch"] < 0:
        raise UsageError(f"--resume: {path!r} has an invalid epoch {ckpt['epoch']!r}")
    _check_state(ckpt["model"], path, "model")
    _check_optimizer(ckpt["optimizer"], path)
    if not isinstance(ckpt["scheduler"], dict):
        raise _bad(path, f"'scheduler' is a {type(ckpt['scheduler']).__name__}, expected a dict")
    best = ckpt.get("best")
    if best is not None:
        if not isinstance(best, dict):
            raise _bad(path, f"'best' is a {type(best).__name__}, expected a dict or None")
        if best.get("model") is not None:
            _check_state(best["model"], path, "best.model")
    _check_history(ckpt["history"], ckpt["epoch"], path)


def config_from_checkpoint(d: Dict[str, Any], path: str) -> TrainConfig:
    """The :class:`TrainConfig` saved in a checkpoint; unknown settings are refused, naming them."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(str(k) for k in d if k not in names)
    if unknown:
        raise UsageError(
            f"--resume: {path!r} has settings this version does not know: {', '.join(unknown)} "
            "(written by another version of snntorch-egru?)"
        )
    try:
        return TrainConfig.from_dict(d)
    except TypeError as err:
        raise UsageError(f"--resume: {path!r} has an unreadable 'config' entry ({err})") from err


def check_state_dtypes(model: nn.Module, state: Dict[str, Any], key: str) -> None:
    """Refuse a checkpoint whose tensors have other dtypes than the model's (e.g. int64 weights)."""
    own = model.state_dict()
    for name, v in state.items():
        if name in own and isinstance(v, torch.Tensor) and v.dtype != own[name].dtype:
            raise UsageError(
                f"--resume: the checkpoint's {key} tensor {name!r} is {v.dtype}, the model's is "
                f"{own[name].dtype}; the checkpoint was not written by this model"
            )


def _summary_line(task: str, m: Dict[str, Any]) -> str:
    parts = []
    if "test_accuracy" in m:
        parts.append(f"test accuracy {100 * m['test_accuracy']:.2f}%")
        rp = m.get("recipe_protocol", {})
        if "test_accuracy" in rp and rp["test_accuracy"] != m["test_accuracy"]:
            parts.append(f"EvNN protocol {100 * rp['test_accuracy']:.2f}% (epoch {rp['epoch']}, see metrics.json)")
    if "test_perplexity" in m:
        parts.append(f"test perplexity {m['test_perplexity']:.2f}")
    parts.append(f"activity {100 * m['activity']:.1f}% of units per step")
    if m.get("backward_sparsity") is not None:
        parts.append(f"backward sparsity {100 * m['backward_sparsity']:.1f}%")
    if m.get("effective_macs") is not None and m.get("dense_macs"):
        parts.append(f"effective MACs {m['effective_macs'] / m['dense_macs']:.2f}x of a dense GRU")
    parts.append(f"{m['wall_time_s']:.0f} s")
    parts.append(f"-> {m['run_dir']}")
    return f"{task}: " + " | ".join(parts)
