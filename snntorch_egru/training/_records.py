"""Files of a ``snntorch-egru train`` run folder: checkpoint, metrics.json, model.nir, activity.png."""

from __future__ import annotations

import json
import math
import os
import pickle
import zipfile
from typing import Any, Dict, List, Optional, Tuple

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
        if isinstance(model, SequenceClassifier):
            self.front = model.frontend.net if isinstance(model.frontend, FrameCNN) else model.frontend
            self.egrus = nn.ModuleList([model.egru])
            self.head = model.head
        else:  # LanguageModel: the EGRU stack only (embedding and tied decoder stay in PyTorch)
            self.front = None
            self.egrus = model.layers
            self.head = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.front is not None:
            x = self.front(x)
        for m in self.egrus:
            x = m(x)[0]
        if self.head is not None:
            x = self.head(x)
        return x


def _nir_note(cfg: TrainConfig, is_lm: bool) -> str:
    if is_lm:
        return "the EGRU stack only (embedding and tied decoder stay in PyTorch)"
    if cfg.readout == "rate":
        steps = f"the last {cfg.readout_steps} steps" if cfg.readout_steps else "all steps"
        return ("front end -> EGRU -> readout Linear applied to the events y; the trained model's logits are "
                f"this graph's outputs averaged over {steps} (faithful)")
    what = "internal state c" if cfg.readout == "state" else "trace"
    return ("front end -> EGRU -> readout Linear applied to the events y "
            f"(training read out the {cfg.readout!r} {what}, which this graph does not represent)")


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


def _plot(path: str, raster: Optional[torch.Tensor], history: List[Dict[str, Any]], title: str) -> Optional[str]:
    plt = _pyplot()
    if plt is None:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    if raster is not None:
        t, u = torch.nonzero(raster > 0, as_tuple=True)
        axes[0].scatter(t.numpy(), u.numpy(), s=2, marker="|", color="k")
        axes[0].set_xlim(-0.5, raster.shape[0] - 0.5)
        axes[0].set_ylim(-0.5, raster.shape[1] - 0.5)
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("unit (last EGRU layer)")
    axes[0].set_title("events of one test sample")
    ep = [h["epoch"] for h in history]
    axes[1].plot(ep, [100 * h["train_activity"] for h in history], "o-", label="train")
    axes[1].plot(ep, [100 * h["eval_activity"] for h in history], "s-", label="eval")
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("units active per step (%)")
    axes[1].set_title("activity")
    axes[1].legend()
    fig.suptitle(title)
    fig.tight_layout()
    return _save_png(plt, fig, path)


#: files of a run folder; the last three describe the checkpoint beside them (written at the end of a run)
RUN_FILES = ("checkpoint.pt", "best.pt", "metrics.json", "model.nir", "activity.png")
FINAL_FILES = ("metrics.json", "model.nir", "activity.png")


def _save_checkpoint(path: str, state: Dict[str, Any]) -> None:
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
        clean["non_finite"] = {"note": "these values were NaN or infinite (training diverged?) and are "
                                       "written as null", "values": non_finite}
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
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, AttributeError, ImportError) as err:
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
    if not isinstance(ckpt["config"], dict) or not isinstance(ckpt["history"], list):
        raise UsageError(f"--resume: {path!r} has a malformed 'config' or 'history' entry")
    if not isinstance(ckpt["epoch"], int) or ckpt["epoch"] < 0:
        raise UsageError(f"--resume: {path!r} has an invalid epoch {ckpt['epoch']!r}")
    return ckpt


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
