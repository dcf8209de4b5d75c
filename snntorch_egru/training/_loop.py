"""The training loop of ``snntorch-egru train``: parse, build, train, evaluate, record."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import shlex
import sys
import pickle
import time
import zipfile
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from torch.utils.data.distributed import DistributedSampler

from .. import _io
from . import _distributed as D
from ._data import batchify, collate_time_first, load_classification, load_corpus
from ._dvs import CNNS, build_frontend
from ._lm import DROPOUT_SHARES, BestCheckpoint, awd_windows, lr_scale
from ..modules import EGRU
from ..state import EGRUState
from ._models import (LM_STATES, READOUT_DROPOUTS, READOUTS, FrameCNN, LanguageModel, SequenceClassifier,
                      build_egru, clip_layer_gradients, layer_gradient_groups, zero_state)
from ._tasks import TASKS, TrainConfig, preset

__all__ = ["build_parser", "parse_config", "run", "main", "load_checkpoint", "UsageError"]


class UsageError(ValueError):
    """A user error (bad flag value, bad file, incompatible resume): one line, exit status 2."""


#: settings a ``--resume`` refuses to change: they define the model and its parameters, the data
#: (and its order), or the optimiser's state layout. Every other flag is applied from the resumed
#: epoch on and recorded (``resumes`` in the checkpoint and in metrics.json).
RESUME_REFUSED = frozenset({
    "task", "hidden_size", "num_layers", "hidden_sizes", "emb_size", "input_encoder", "readout", "init",
    "learn_threshold", "thr_mean", "cnn", "frame_size", "polarity", "time_bins", "optimizer", "seed",
    "limit_train", "batch_size",
})
_NOT_RECORDED = ("stop_after", "progress")

LM_TASKS = ("ptb", "wikitext2")

_HELP = {
    "data_dir": "folder with the dataset files (MNIST/, DVSGesture/, SHD/, ptb.*.txt, wiki.*.tokens)",
    "out": "run folder (default runs/<task>-<timestamp>)",
    "download": "allow torchvision/tonic to download missing datasets",
    "hidden_sizes": "LM: size of every EGRU layer (the last one is the embedding size)",
    "input_encoder": "width of a Linear encoder before the EGRU (0 = none)",
    "readout": "'last' trace, 'mean' trace over steps, 'rate' (Linear on the events y at every step, logits "
                "averaged over steps), or final internal 'state' c",
    "readout_steps": "'rate' readout: average the logits over the last N steps only (0 = all steps)",
    "schedule": "none | cosine | step | cosine_tail",
    "activity_reg": "weight of (mean(o) - activity_target)^2, differentiable through the surrogate",
    "voltage_reg": "weight of mean((c - voltage_target)^2)",
    "limit_train": "use only the first N training samples (0 = all)",
    "limit_test": "use only the first N test samples (0 = all)",
    "stop_after": "stop after N epochs of this invocation, as if interrupted (resume later)",
    "device": "cpu or cuda",
    "lm_state": "LM state passed between BPTT windows: 'y' (EvNN: last events only, c and trace restart at 0) "
                "or 'full' (y, c, trace)",
    "test_batch_size": "batch of the final test (0 = --eval-batch-size; the LM recipe tests at 1)",
    "test_drop_last": "drop the last partial test batch (EvNN's DVS loader); default: every sample counts",
    "layer_grad_clip": "clip each EGRU layer's own gradients (and its initial-state gradient) to this norm "
                       "before --grad-clip (EvNN's in-op clip; 0 = off)",
    "readout_dropout": "'pooled': dropout once on the pooled readout input; 'step': at every step, logits "
                       "averaged (EvNN DVS)",
    "reg_form": "'smooth': differentiable activity + quadratic voltage terms; 'evnn': EvNN DVS forms "
                "(count-based activity without gradient, linear c - (theta - voltage_target))",
    "bptt_lr_scale": "variable windows: lr * seq_len / 'nominal' window length (EvNN) or / 'bptt' (AWD-LSTM)",
    "cnn": "dvsgesture front end: 'alexnet' (the recipe's, 127-190 px frames), 'alexnet-gap' or 'small'",
}


# Value checks of the numeric and choice flags (used at parse time and by run() for Python callers):
# field -> (description of what is expected, predicate)
def _pos_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _nonneg_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


_EXPECT: Dict[str, Tuple[str, Callable[[Any], bool]]] = {}
for _n in ("epochs", "batch_size", "eval_batch_size", "hidden_size", "num_layers", "bptt", "emb_size",
           "frame_size", "time_bins", "step_size"):
    _EXPECT[_n] = ("a positive integer (>= 1)", _pos_int)
for _n in ("limit_train", "limit_test", "stop_after", "num_workers", "input_encoder", "readout_steps", "seed"):
    _EXPECT[_n] = ("an integer >= 0 (0 = off / all)" if _n.startswith(("limit", "stop", "input", "readout"))
                   else "an integer >= 0", _nonneg_int)
for _n in ("lr", "dampening_factor", "pseudo_derivative_support", "step_gamma"):
    _EXPECT[_n] = ("a finite number > 0", lambda v: _num(v) and v > 0)
for _n in ("weight_decay", "grad_clip", "activity_reg", "voltage_reg"):
    _EXPECT[_n] = ("a finite number >= 0", lambda v: _num(v) and v >= 0)
for _n in ("dropout", "dropconnect", "zoneout", "dropout_emb", "dropout_words", "dropout_out", "beta1"):
    _EXPECT[_n] = ("a number in [0, 1)", lambda v: _num(v) and 0 <= v < 1)
for _n in ("cosine_start", "activity_target"):
    _EXPECT[_n] = ("a number in [0, 1]", lambda v: _num(v) and 0 <= v <= 1)
_EXPECT["thr_mean"] = ("a number in (0, 1) (mean of Beta-distributed thresholds)", lambda v: _num(v) and 0 < v < 1)
_EXPECT["voltage_target"] = ("a finite number", _num)
_EXPECT["test_batch_size"] = ("an integer >= 0 (0 = --eval-batch-size)", _nonneg_int)
_EXPECT["layer_grad_clip"] = ("a finite number >= 0 (0 = off)", lambda v: _num(v) and v >= 0)

_CHOICES: Dict[str, Tuple[str, ...]] = {
    "readout": READOUTS, "schedule": ("none", "cosine", "step", "cosine_tail"),
    "optimizer": ("adam", "adamw", "sgd"), "device": ("cpu", "cuda"), "init": ("evnn", "torch"),
    "cnn": CNNS, "polarity": ("mean", "separate"), "dropout_mask": DROPOUT_SHARES,
    "lm_state": LM_STATES, "readout_dropout": READOUT_DROPOUTS, "bptt_lr_scale": ("nominal", "bptt"),
    "reg_form": ("smooth", "evnn"),
}


def _choices(name: str) -> Tuple[str, ...]:
    if name == "backend":  # registered backends included
        from ..backends import available_backends

        return ("auto",) + tuple(available_backends())
    return _CHOICES[name]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse_type(name: str, base: type) -> Callable[[str], Any]:
    what, ok = _EXPECT[name]

    def convert(text: str) -> Any:
        try:
            value = base(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    convert.__name__ = name
    return convert


def build_parser() -> argparse.ArgumentParser:
    """Argument parser; every :class:`TrainConfig` field is a flag (default: the task's preset)."""
    from ..cli import OneLineErrorParser

    p = OneLineErrorParser(
        prog="snntorch-egru train",
        description="Train an EGRU on a task (default: scikit-learn digits, offline). Every setting "
                    "defaults to the task's preset (the paper's recipe) and can be overridden.",
        epilog="Errors in flags, files and folders print one line and exit with status 2 (--debug shows the "
               "traceback). --resume continues a run: flags that change the model, its data or the optimiser "
               f"type ({', '.join(_flag(n) for n in sorted(RESUME_REFUSED))}) are refused; every other flag given "
               "(e.g. --lr, --weight-decay, --epochs) is applied from the resumed epoch on and recorded in "
               "metrics.json ('resumes').",
    )
    p.add_argument("--task", choices=TASKS, default=argparse.SUPPRESS, help="task (default: digits)")
    p.add_argument("--resume", default=None, metavar="PATH",
                   help="continue from a run folder or checkpoint.pt (its settings, plus any flags given; "
                        "see below for the flags a resume refuses)")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show the Python traceback of an error instead of one line")
    for f in dataclasses.fields(TrainConfig):
        if f.name == "task":
            continue
        flag = _flag(f.name)
        help_ = _HELP.get(f.name, "")
        default = f.default
        if isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_)
        elif f.name == "hidden_sizes":
            p.add_argument(flag, type=_parse_type("hidden_size", int), nargs="+", default=argparse.SUPPRESS,
                           help=help_)
        elif f.name in _CHOICES or f.name == "backend":
            p.add_argument(flag, choices=_choices(f.name), default=argparse.SUPPRESS, help=help_)
        elif f.name in _EXPECT:
            p.add_argument(flag, type=_parse_type(f.name, type(default)), default=argparse.SUPPRESS, help=help_)
        else:
            typ = str if default is None else type(default)
            p.add_argument(flag, type=typ, default=argparse.SUPPRESS, help=help_)
    return p


def parse_config(argv: Sequence[str]) -> Tuple[TrainConfig, Optional[str], Dict[str, Any]]:
    """``(config, resume_path, explicit_flags)`` from command-line arguments.

    The config is the task's preset with every given flag applied. Values that make no
    sense (a negative limit, a non-finite learning rate, ...) are refused here, as a
    usage error (``SystemExit(2)`` with a one-line message).

    Example::

        >>> from snntorch_egru.training import parse_config
        >>> cfg, resume, given = parse_config(["--task", "psmnist", "--lr", "3e-3"])
        >>> cfg.hidden_size, cfg.lr, resume, sorted(given)
        (590, 0.003, None, ['lr', 'task'])
    """
    ns = vars(build_parser().parse_args(list(argv)))
    resume = ns.pop("resume", None)
    ns.pop("debug", None)
    task = ns.get("task", "digits")
    cfg = preset(task)
    for k, v in ns.items():
        setattr(cfg, k, v)
    return cfg, resume, ns


def _check_types(cfg: TrainConfig) -> None:
    """Strict types for Python callers: a string where a bool or number is expected raises."""
    for f in dataclasses.fields(TrainConfig):
        v, default = getattr(cfg, f.name), f.default
        if f.name == "hidden_sizes":
            if v is not None and (not isinstance(v, (list, tuple)) or not v or not all(_pos_int(h) for h in v)):
                raise UsageError(f"--hidden-sizes must be a non-empty list of positive integers, got {v!r}")
        elif f.name in ("out", "data_dir"):
            if not (v is None and f.name == "out") and not isinstance(v, (str, os.PathLike)):
                raise UsageError(f"{_flag(f.name)} must be a folder path (str), got {type(v).__name__} {v!r}")
        elif isinstance(default, bool):
            if not isinstance(v, bool):
                raise UsageError(f"{_flag(f.name)} must be a bool (True/False), got {type(v).__name__} {v!r}")
        elif isinstance(default, float):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise UsageError(f"{_flag(f.name)} must be a number, got {type(v).__name__} {v!r}")
        elif isinstance(default, int):
            if isinstance(v, bool) or not isinstance(v, int):
                raise UsageError(f"{_flag(f.name)} must be an integer, got {type(v).__name__} {v!r}")
        elif isinstance(default, str):
            if not isinstance(v, str):
                raise UsageError(f"{_flag(f.name)} must be a string, got {type(v).__name__} {v!r}")


def _validate(cfg: TrainConfig, world: int) -> None:
    if cfg.task not in TASKS:
        raise UsageError(f"--task must be one of {', '.join(TASKS)}, got {cfg.task!r}")
    _check_types(cfg)
    for name, (what, ok) in _EXPECT.items():
        v = getattr(cfg, name)
        if not ok(v):
            raise UsageError(f"{_flag(name)} must be {what}, got {v!r}")
    for name in list(_CHOICES) + ["backend"]:
        v, choices = getattr(cfg, name), _choices(name)
        if v not in choices:
            raise UsageError(f"{_flag(name)} must be one of {', '.join(map(str, choices))}, got {v!r}")
    if cfg.batch_size % world:
        raise UsageError(
            f"--batch-size is the global batch and must be divisible by the number of processes ({world}), "
            f"got {cfg.batch_size}"
        )
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was given but torch.cuda.is_available() is False on this machine")
    if cfg.backend == "cupy":
        if cfg.device != "cuda" or not torch.cuda.is_available():
            raise UsageError(f"--backend cupy runs on CUDA only: it needs --device cuda and a GPU, got --device "
                             f"{cfg.device} (torch.cuda.is_available() is {torch.cuda.is_available()})")
        import importlib.util

        if importlib.util.find_spec("cupy") is None:
            raise UsageError("--backend cupy needs CuPy, which is not installed (pip install 'snntorch-egru[cuda12]')")
    if cfg.out is not None and os.path.exists(cfg.out) and not os.path.isdir(cfg.out):
        raise UsageError(f"--out {str(cfg.out)!r} is a file; expected a run folder (existing or to create)")


# ----------------------------------------------------------------------------- building blocks
def _lr_factor(cfg: TrainConfig):
    E = cfg.epochs

    def factor(epoch: int) -> float:
        if cfg.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * min(epoch, E) / E))
        if cfg.schedule == "step":
            return cfg.step_gamma ** (epoch // max(cfg.step_size, 1))
        if cfg.schedule == "cosine_tail":
            start = int(cfg.cosine_start * E)
            if epoch < start:
                return 1.0
            return 0.5 * (1 + math.cos(math.pi * min(epoch - start, E - start) / max(E - start, 1)))
        return 1.0

    return factor


def _optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, 0.999), weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.beta1, 0.999), weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.beta1, weight_decay=cfg.weight_decay)


def regularisers(cfg: TrainConfig, records: Sequence[Any], model: Optional[nn.Module] = None) -> torch.Tensor:
    """The activity and voltage regularisers over all layers' records.

    ``reg_form="smooth"``: ``activity_reg * (mean(o) - activity_target)^2`` (through the surrogate)
    plus ``voltage_reg * mean((c - voltage_target)^2)``.
    ``reg_form="evnn"`` (the EvNN DVS code): ``activity_reg * (mean(1[o != 0]) - activity_target)^2``,
    built from a comparison and so without gradient (it only shifts the loss), plus
    ``voltage_reg * sum_layers mean(c - (theta.detach() - voltage_target))``, linear in ``c``
    (``model`` gives the thresholds; one record per EGRU module, in module order).
    """
    total = records[0].o.new_zeros(())
    if cfg.reg_form == "evnn":
        if cfg.activity_reg:
            with torch.no_grad():
                act = torch.cat([(r.o != 0).float().reshape(-1) for r in records]).mean()
            total = total + cfg.activity_reg * (act - cfg.activity_target) ** 2
        if cfg.voltage_reg:
            if model is None:
                raise ValueError("reg_form 'evnn' needs the model (its thresholds) for the voltage term")
            egrus = [m for m in model.modules() if isinstance(m, EGRU)]
            for egru, r in zip(egrus, records):
                theta = torch.stack([egru.layer_tensors(k)["threshold"].detach() for k in range(egru.num_layers)])
                total = total + cfg.voltage_reg * (r.c - (theta[:, None, None, :] - cfg.voltage_target)).mean(
                    dim=(1, 2, 3)).sum()
        return total
    if cfg.activity_reg:
        o = torch.cat([r.o.reshape(-1) for r in records])
        total = total + cfg.activity_reg * (o.mean() - cfg.activity_target) ** 2
    if cfg.voltage_reg:
        c = torch.cat([r.c.reshape(-1) for r in records])
        total = total + cfg.voltage_reg * ((c - cfg.voltage_target) ** 2).mean()
    return total


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


def _plot(path: str, raster: Optional[torch.Tensor], history: List[Dict[str, Any]], title: str) -> Optional[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
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
    try:
        with _io.atomic_open(path, "wb") as f:
            fig.savefig(f, format="png", dpi=100)
    finally:
        plt.close(fig)
    return path


#: files of a run folder; the last three describe the checkpoint beside them (written at the end of a run)
_RUN_FILES = ("checkpoint.pt", "best.pt", "metrics.json", "model.nir", "activity.png")
_FINAL_FILES = ("metrics.json", "model.nir", "activity.png")


def _apply_optimizer_settings(r: "_Run", cfg: TrainConfig) -> None:
    """After loading a checkpoint's optimiser and scheduler: use this invocation's lr, weight decay and
    beta1 (momentum for SGD) from the resumed epoch on (the schedule's factor at that epoch applies)."""
    factor = r.scheduler.lr_lambdas[0](r.scheduler.last_epoch)
    r.scheduler.base_lrs = [cfg.lr for _ in r.optimizer.param_groups]
    for g in r.optimizer.param_groups:
        g["initial_lr"] = cfg.lr
        g["lr"] = cfg.lr * factor
        g["weight_decay"] = cfg.weight_decay
        if "betas" in g:
            g["betas"] = (cfg.beta1, g["betas"][1])
        if "momentum" in g:
            g["momentum"] = cfg.beta1
    r.scheduler._last_lr = [g["lr"] for g in r.optimizer.param_groups]


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


# ----------------------------------------------------------------------------- the run
class _Run:
    def __init__(self, cfg: TrainConfig, info: D.DistInfo, command: str) -> None:
        self.cfg, self.info, self.command = cfg, info, command
        if cfg.device == "cuda":
            self.device = torch.device("cuda", info.local_rank if info.enabled else torch.cuda.current_device())
        else:
            self.device = torch.device("cpu")
        self.is_lm = cfg.task in LM_TASKS
        self.raster: Optional[torch.Tensor] = None

    # -- data and model ------------------------------------------------------------------------
    def build(self) -> None:
        cfg, info = self.cfg, self.info
        torch.manual_seed(cfg.seed)
        if self.is_lm:
            corpus = load_corpus(cfg.task, cfg.data_dir)
            self.corpus = corpus
            model: nn.Module = LanguageModel(cfg, len(corpus.vocab))
            lb = cfg.batch_size // info.world_size
            train = batchify(corpus.train, cfg.batch_size)
            self.train_data = train[:, info.rank * lb:(info.rank + 1) * lb]
            self.valid_data = self._eval_columns(batchify(corpus.valid, cfg.eval_batch_size))
            self.test_data = self._eval_columns(batchify(corpus.test, cfg.test_batch_size or cfg.eval_batch_size))
            self.sample_step = torch.zeros(1, cfg.emb_size)
        else:
            data = load_classification(cfg.task, cfg.data_dir, frame_size=cfg.frame_size,
                                       time_bins=cfg.time_bins, download=cfg.download,
                                       polarity=cfg.polarity, augment=cfg.augment)
            train, test = data.train, data.test
            if cfg.limit_train:
                train = Subset(train, range(min(cfg.limit_train, len(train))))
            if cfg.limit_test:
                test = Subset(test, range(min(cfg.limit_test, len(test))))
            self.sampler = DistributedSampler(train, num_replicas=info.world_size, rank=info.rank,
                                              shuffle=True, seed=cfg.seed, drop_last=False)
            self.train_loader = DataLoader(train, batch_size=cfg.batch_size // info.world_size,
                                           sampler=self.sampler, collate_fn=collate_time_first,
                                           num_workers=cfg.num_workers)
            shard = Subset(test, range(info.rank, len(test), info.world_size))
            self.test_loader = DataLoader(shard, batch_size=cfg.test_batch_size or cfg.eval_batch_size, shuffle=False,
                                          collate_fn=collate_time_first, num_workers=cfg.num_workers,
                                          drop_last=cfg.test_drop_last)
            self.n_train, self.n_test = len(train), len(test)
            self.valid_loader = None  # model selection on a held-out part of the training data
            if data.valid is not None:
                valid = data.valid
                if cfg.limit_test:
                    valid = Subset(valid, range(min(cfg.limit_test, len(valid))))
                self.valid_loader = DataLoader(Subset(valid, range(info.rank, len(valid), info.world_size)),
                                               batch_size=cfg.eval_batch_size, shuffle=False,
                                               collate_fn=collate_time_first, num_workers=cfg.num_workers)
                self.n_valid = len(valid)
            frontend: Optional[nn.Module] = None
            in_size = int(torch.tensor(data.input_shape).prod())
            if len(data.input_shape) == 3:  # frames
                frontend = build_frontend(cfg.cnn, data.input_shape[0], data.input_shape[-1], cfg.dropout)
                in_size = frontend.features
            elif cfg.input_encoder:
                frontend = nn.Linear(in_size, cfg.input_encoder)
                in_size = cfg.input_encoder
            egru = build_egru(cfg, in_size, cfg.hidden_size, cfg.num_layers)
            model = SequenceClassifier(egru, data.num_classes, frontend=frontend, readout=cfg.readout,
                                       dropout=cfg.dropout, readout_steps=cfg.readout_steps,
                                       readout_dropout=cfg.readout_dropout)
            self.sample_step = torch.zeros((1,) + tuple(data.input_shape))
        self.model = model.to(self.device)
        self.net: nn.Module = self.model
        if info.enabled:
            ids = [info.local_rank] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.optimizer = _optimizer(cfg, [p for p in self.model.parameters() if p.requires_grad])
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_factor(cfg))
        self.select_split = "valid" if self.is_lm or self.valid_loader is not None else "test"
        self.best = (BestCheckpoint(os.path.join(cfg.out, "best.pt"), "min" if self.is_lm else "max")
                     if self.select_split == "valid" else None)

    def _eval_columns(self, data: torch.Tensor) -> torch.Tensor:
        return data[:, self.info.rank::self.info.world_size]

    # -- epochs ----------------------------------------------------------------------------------
    def _bar(self, it, total: int, desc: str):
        from tqdm.auto import tqdm

        return tqdm(it, total=total, desc=desc, leave=False, dynamic_ncols=True,
                    disable=not (self.cfg.progress and self.info.is_main))

    def _step(self, loss: torch.Tensor, initial_states: Optional[List[Any]] = None) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.layer_grad_clip > 0:  # EvNN's in-op clip of each EGRU layer, before the global clip
            clip_layer_gradients(layer_gradient_groups(self.model, initial_states), self.cfg.layer_grad_clip)
        if self.cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()

    def train_epoch(self, epoch: int) -> Dict[str, float]:
        cfg = self.cfg
        self.net.train()
        torch.manual_seed(cfg.seed + 7919 * (epoch + 1) + self.info.rank)  # exact resume, per-rank masks
        sums = [0.0, 0.0, 0.0, 0.0]  # loss*n, correct (or tokens), activity*n, n
        desc = f"epoch {epoch + 1}/{cfg.epochs}"
        if self.is_lm:
            data = self.train_data
            states = None
            if cfg.variable_bptt:  # AWD windows, identical on every rank (seeded by seed and epoch only)
                windows = awd_windows(data.shape[0], cfg.bptt,
                                      torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch), with_nominal=True)
            else:
                windows = [(i, min(cfg.bptt, data.shape[0] - 1 - i), cfg.bptt)
                           for i in range(0, data.shape[0] - 1, cfg.bptt)]
            bar = self._bar(windows, len(windows), desc)
            base_lrs = [g["lr"] for g in self.optimizer.param_groups]
            for i, seq, nominal in bar:
                x = data[i:i + seq].to(self.device)
                y = data[i + 1:i + 1 + seq].to(self.device)
                if states is not None:
                    states = [s.detach() for s in states]  # truncated BPTT: carry the state, cut the graph
                if cfg.layer_grad_clip > 0:  # the initial events become leaves: their gradient enters the clip
                    states = [EGRUState(s.y.detach().requires_grad_(), s.c, s.trace)
                              for s in (states if states is not None else self.model.zero_states(x.shape[1]))]
                start = states
                logits, states, recs = self.net(x, states)
                ce = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
                for g, lr in zip(self.optimizer.param_groups, base_lrs):
                    g["lr"] = (lr * lr_scale(seq, nominal if cfg.bptt_lr_scale == "nominal" else cfg.bptt)
                               if cfg.variable_bptt else lr)
                self._step(ce + regularisers(cfg, recs, self.model), start)
                n = y.numel()
                act = torch.cat([r.o.detach().reshape(-1) for r in recs]).mean().item()
                sums[0] += ce.item() * n
                sums[2] += act * n
                sums[3] += n
                bar.set_postfix(loss=f"{ce.item():.3f}", ppl=f"{math.exp(min(ce.item(), 50)):.1f}",
                                act=f"{act:.3f}")
            for g, lr in zip(self.optimizer.param_groups, base_lrs):
                g["lr"] = lr
        else:
            self.sampler.set_epoch(epoch)
            bar = self._bar(self.train_loader, len(self.train_loader), desc)
            for x, y in bar:
                x, y = x.to(self.device), y.to(self.device)
                start = (zero_state(self.model.egru, x.shape[1], requires_grad=True)
                         if cfg.layer_grad_clip > 0 else None)
                logits, rec = self.net(x) if start is None else self.net(x, start)
                ce = nn.functional.cross_entropy(logits, y)
                self._step(ce + regularisers(cfg, [rec], self.model), [start])
                n = y.numel()
                act = rec.o.detach().mean().item()
                sums[0] += ce.item() * n
                sums[1] += (logits.argmax(1) == y).sum().item()
                sums[2] += act * n
                sums[3] += n
                bar.set_postfix(loss=f"{ce.item():.3f}", acc=f"{sums[1] / sums[3]:.3f}", act=f"{act:.3f}")
        self.scheduler.step()
        s = D.all_reduce_sum(sums, self.info, self.device)
        out = {"train_loss": s[0] / s[3], "train_activity": s[2] / s[3]}
        if not self.is_lm:
            out["train_accuracy"] = s[1] / s[3]
        return out

    @torch.no_grad()
    def evaluate(self, split: str = "test", keep_raster: bool = False) -> Dict[str, float]:
        cfg = self.cfg
        self.net.eval()
        sums = [0.0, 0.0, 0.0, 0.0]
        if self.is_lm:
            data = self.valid_data if split == "valid" else self.test_data
            states = None
            for i in range(0, data.shape[0] - 1 if data.shape[1] else 0, cfg.bptt):  # no columns on this rank: skip
                seq = min(cfg.bptt, data.shape[0] - 1 - i)
                x = data[i:i + seq].to(self.device)
                y = data[i + 1:i + 1 + seq].to(self.device)
                logits, states, recs = self.model(x, states)
                n = y.numel()
                sums[0] += nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                                                       reduction="sum").item()
                sums[2] += torch.cat([r.o.reshape(-1) for r in recs]).mean().item() * n
                sums[3] += n
                if keep_raster and self.raster is None and data.shape[1] > 0:
                    self.raster = recs[-1].o[-1, :, 0].cpu()
        else:
            for x, y in (self.valid_loader if split == "valid" else self.test_loader):
                x, y = x.to(self.device), y.to(self.device)
                logits, rec = self.model(x)
                n = y.numel()
                sums[0] += nn.functional.cross_entropy(logits, y, reduction="sum").item()
                sums[1] += (logits.argmax(1) == y).sum().item()
                sums[2] += rec.o.mean().item() * n
                sums[3] += n
                if keep_raster and self.raster is None:
                    self.raster = rec.o[-1, :, 0].cpu()
        s = D.all_reduce_sum(sums, self.info, self.device)
        n = max(s[3], 1.0)
        out = {"loss": s[0] / n, "activity": s[2] / n}
        if self.is_lm:
            out["perplexity"] = math.exp(min(out["loss"], 50.0))
        else:
            out["accuracy"] = s[1] / n
        return out

    def efficiency(self) -> Tuple[Dict[str, Any], Dict[str, str]]:
        """Tracker figures on the test set, reduced over ranks (weighted by samples)."""
        try:
            from .. import metrics
        except ImportError as err:
            reason = f"snntorch_egru.metrics is not available ({err})"
            return {}, {k: reason for k in ("backward_sparsity", "effective_macs", "dense_macs")}
        with metrics.track(self.model) as tracker:
            self.evaluate("test", keep_raster=True)
        summ = tracker.summary()
        keys = ("activity", "batch_union_activity", "backward_sparsity", "effective_macs", "dense_macs",
                "backward_macs", "dense_backward_macs")
        calls = sum(layer.get("samples", 1) for layer in summ.get("layers", [])) or 1
        reduced = D.all_reduce_sum([summ[k] * calls for k in keys] + [calls], self.info, self.device)
        out = {k: reduced[i] / reduced[-1] for i, k in enumerate(keys)}
        out["layers"] = summ.get("layers", [])
        return out, {}


def _protocols(r: "_Run", final: Dict[str, float], last_test: Optional[Dict[str, float]],
               history: List[Dict[str, Any]], best_epoch: int, completed: int) -> Tuple[str, Dict[str, Any]]:
    """Label of the reported test number and the number the EvNN code's protocol gives, labelled."""
    if r.is_lm:
        tb = r.cfg.test_batch_size or r.cfg.eval_batch_size
        label = f"best validation epoch, tested once at batch {tb}"
        same = "same protocol" if tb == 1 else f"this run tested at batch {tb}, not the recipe's 1"
        return label, {"label": f"EvNN LM code: best validation-loss checkpoint, test batch 1 ({same})",
                       "test_perplexity": final["perplexity"], "epoch": best_epoch}
    if r.best is not None:
        rec = {"label": "EvNN sMNIST code: the final epoch's model on the test set (validation only printed)",
               "test_accuracy": (last_test or final)["accuracy"], "epoch": completed}
        return "best validation epoch, tested once", rec
    if r.cfg.task != "dvsgesture":
        return "last epoch (no validation split), tested once", {"label": "no EvNN recipe for this task"}
    if not history:
        return "last epoch (no validation split)", {"label": "no epoch trained", "epoch": 0}
    accs = [h["eval_accuracy"] for h in history]
    k = max(range(len(accs)), key=accs.__getitem__)
    rec = {"label": "EvNN DVS code: best test accuracy over the epochs (the test set doubles as validation: "
                    "optimistic, not a held-out figure; how the paper's 97.8 % was selected)",
           "test_accuracy": accs[k], "epoch": history[k]["epoch"]}
    return "last epoch (no validation split), tested once", rec


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


def run(cfg: TrainConfig, resume: Optional[str] = None, explicit: Optional[Dict[str, Any]] = None,
        command: str = "snntorch-egru train") -> Dict[str, Any]:
    """Train, evaluate and record one run; returns the metrics written to ``metrics.json``.

    Args:
        cfg: the settings (a preset plus overrides).
        resume: a run folder or checkpoint file to continue from; its saved settings are
            used, updated with ``explicit`` (the flags given on this command line).
        explicit: flags given on the command line (used with ``resume``).
        command: the command line recorded in ``metrics.json``.

    Example::

        >>> import tempfile
        >>> from snntorch_egru.training import TrainConfig, run
        >>> cfg = TrainConfig(hidden_size=4, epochs=1, limit_train=16, limit_test=16, progress=False,
        ...                   nir=False, plot=False, out=tempfile.mkdtemp())
        >>> m = run(cfg)  # doctest: +ELLIPSIS
        digits: test accuracy ...
        >>> m["epochs_completed"], m["dense_macs"] == 64 * 3 * 4 * (1 + 4)
        (1, True)
    """
    t_start = time.perf_counter()
    ckpt = None
    resume_changes: Dict[str, Any] = {}
    if resume is not None:
        path = os.path.join(resume, "checkpoint.pt") if os.path.isdir(resume) else resume
        ckpt = load_checkpoint(path)
        try:
            saved = TrainConfig.from_dict(ckpt["config"])
        except TypeError as err:
            raise UsageError(f"--resume: {path!r} has an unreadable 'config' entry ({err})") from err
        cfg = dataclasses.replace(saved, stop_after=0)  # an interruption is not a setting: run to --epochs
        for k, v in (explicit or {}).items():
            old = getattr(saved, k, None)
            if k in RESUME_REFUSED and v != old:
                raise UsageError(
                    f"--resume: {_flag(k)} {v!r} differs from the checkpoint's {old!r}, and a resume cannot change "
                    f"{_flag(k)} (it defines the model, its data or the optimiser); drop the flag or start a new "
                    "run in another folder"
                )
            if v != old and k not in _NOT_RECORDED:
                resume_changes[k] = {"from": old, "to": v}
            setattr(cfg, k, v)
        if not (explicit or {}).get("out"):
            cfg.out = os.path.dirname(os.path.abspath(path))
        if isinstance(cfg.epochs, int) and ckpt["epoch"] > cfg.epochs:
            raise UsageError(f"--epochs {cfg.epochs} is less than the {ckpt['epoch']} epochs the checkpoint "
                             "has already completed; give --epochs >= that number")
    info = D.setup(cfg.device)
    try:
        _validate(cfg, info.world_size)
        if cfg.out is None:
            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            cfg.out = D.broadcast_object(os.path.join("runs", f"{cfg.task}-{stamp}"), info)
        if info.is_main:
            os.makedirs(cfg.out, exist_ok=True)
            _io.remove_stale_temporaries(cfg.out, _RUN_FILES)  # left by a killed write
        r = _Run(cfg, info, command)
        r.build()
        history: List[Dict[str, Any]] = []
        start_epoch, wall_before = 0, 0.0
        resumes: List[Dict[str, Any]] = []
        if ckpt is not None:
            try:
                r.model.load_state_dict(ckpt["model"])
                r.optimizer.load_state_dict(ckpt["optimizer"])
                r.scheduler.load_state_dict(ckpt["scheduler"])
                if r.best is not None and ckpt.get("best"):
                    r.best.load_state_dict(ckpt["best"])
            except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as err:
                first = " ".join(str(err).split())[:300]
                raise UsageError(f"--resume: the checkpoint does not match the model and optimiser built from its "
                                 f"settings (written by another version?): {type(err).__name__}: {first}") from err
            history = list(ckpt["history"])
            start_epoch = int(ckpt["epoch"])
            wall_before = float(ckpt.get("wall_time_s", 0.0))
            _apply_optimizer_settings(r, cfg)
            resumes = list(ckpt.get("resumes") or [])
            resumes.append({"at_epoch": start_epoch, "changed": resume_changes})
        t_run = time.perf_counter()
        ckpt_path = os.path.join(cfg.out, "checkpoint.pt")
        done_here = 0
        finals_removed = False
        for epoch in range(start_epoch, cfg.epochs):
            if cfg.stop_after and done_here >= cfg.stop_after:
                break
            t_epoch = time.perf_counter()
            tr = r.train_epoch(epoch)
            ev = r.evaluate(r.select_split)
            if r.best is not None:
                r.best.update(ev["perplexity"] if r.is_lm else ev["accuracy"], r.model, epoch + 1,
                              write=info.is_main)
            row = {"epoch": epoch + 1, **tr, "eval_loss": ev["loss"], "eval_activity": ev["activity"],
                   "lr": r.optimizer.param_groups[0]["lr"], "time_s": time.perf_counter() - t_epoch,
                   "eval_split": r.select_split}
            row.update({"eval_accuracy": ev["accuracy"]} if "accuracy" in ev else {"eval_perplexity": ev["perplexity"]})
            history.append(row)
            done_here += 1
            if info.is_main:
                msg = f"epoch {epoch + 1}/{cfg.epochs}: train loss {tr['train_loss']:.4f}"
                msg += (f", {r.select_split} acc {100 * ev['accuracy']:.2f}%" if "accuracy" in ev
                        else f", valid ppl {ev['perplexity']:.2f}")
                msg += f", activity {100 * ev['activity']:.1f}%"
                if cfg.progress:
                    print(msg, flush=True)
                if not finals_removed:
                    # metrics.json, model.nir and activity.png of an earlier invocation describe the checkpoint
                    # about to be replaced: remove them first, so the folder never pairs them with a newer one
                    for name in _FINAL_FILES:
                        _io.remove_durably(os.path.join(cfg.out, name))
                    finals_removed = True
                _save_checkpoint(ckpt_path, {
                    "config": cfg.to_dict(), "epoch": epoch + 1, "model": r.model.state_dict(),
                    "optimizer": r.optimizer.state_dict(), "scheduler": r.scheduler.state_dict(),
                    "history": history, "wall_time_s": wall_before + time.perf_counter() - t_run,
                    "best": r.best.state_dict() if r.best is not None else None, "resumes": resumes,
                })
            D.barrier(info)
        completed = history[-1]["epoch"] if history else 0
        wall = wall_before + time.perf_counter() - t_run
        best_epoch = completed
        last_test = None
        if r.best is not None and not r.is_lm and history:  # the recipe's protocol: the final epoch's model
            last_test = r.evaluate("test")
        if r.best is not None and r.best.restore(r.model):  # test the best validation epoch's model
            best_epoch = r.best.epoch
        final = r.evaluate("test")
        eff, absent = r.efficiency()
        if r.raster is None:
            r.evaluate("test", keep_raster=True)
        metrics: Dict[str, Any] = {"task": cfg.task}
        if r.is_lm:
            metrics["test_perplexity"] = final["perplexity"]
            if r.best is not None and r.best.value is not None:
                metrics["valid_perplexity"] = r.best.value
        else:
            metrics["test_accuracy"] = final["accuracy"]
            if r.best is not None and r.best.value is not None:
                metrics["valid_accuracy"] = r.best.value
        metrics["selected_epoch"] = best_epoch
        metrics["selected_on"] = r.select_split if r.best is not None else "last epoch (no validation split)"
        metrics["protocol"], metrics["recipe_protocol"] = _protocols(r, final, last_test, history, best_epoch,
                                                                     completed)
        metrics["test_loss"] = final["loss"]
        metrics["activity"] = eff.get("activity", final["activity"])
        metrics["activity_sparsity"] = 1.0 - metrics["activity"]
        for k in ("batch_union_activity", "backward_sparsity", "effective_macs", "dense_macs", "backward_macs",
                  "dense_backward_macs"):
            metrics[k] = eff.get(k)
        if eff.get("dense_macs"):
            metrics["effective_mac_fraction"] = eff["effective_macs"] / eff["dense_macs"]
        metrics["layers"] = eff.get("layers", [])
        metrics.update({
            "epochs_completed": completed, "epochs": cfg.epochs,
            "parameters": sum(p.numel() for p in r.model.parameters()),
            "wall_time_s": wall, "process_time_s": time.perf_counter() - t_start,
            "command": command, "argv": sys.argv, "world_size": info.world_size, "device": str(r.device),
            "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "run_dir": cfg.out, "history": history, "config": cfg.to_dict(), "resumes": resumes,
        })
        if not r.is_lm:
            metrics.update({"train_samples": r.n_train, "test_samples": r.n_test})
            if r.valid_loader is not None:
                metrics["valid_samples"] = r.n_valid
        files: Dict[str, Optional[str]] = {"checkpoint": ckpt_path if completed else None}
        if info.is_main:
            if cfg.nir:
                nir_path, why = _export_nir(r.model, r.sample_step, os.path.join(cfg.out, "model.nir"))
                files["nir"] = nir_path
                if why:
                    absent["nir"] = why
                else:
                    metrics["nir_note"] = "per-step graph: " + _nir_note(cfg, r.is_lm)
            if cfg.plot:
                files["plot"] = _plot(os.path.join(cfg.out, "activity.png"), r.raster, history,
                                      f"{cfg.task}: EGRU({cfg.hidden_size})")
        metrics["files"] = files
        if absent:
            metrics["absent"] = absent
        if info.is_main:
            _write_metrics(os.path.join(cfg.out, "metrics.json"), metrics)
            print(_summary_line(cfg.task, metrics), flush=True)
        return metrics
    finally:
        D.cleanup(info)


def main(argv: Optional[List[str]] = None) -> int:
    """``snntorch-egru train [options]``; returns the exit status (0, 2 for a user error, 130 on Ctrl-C)."""
    from ..cli import error_line

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        cfg, resume, explicit = parse_config(argv)
    except SystemExit as stop:  # --help (0) or a usage error (2, already printed as one line)
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 2)
    except KeyboardInterrupt:
        if debug:
            raise
        print("snntorch-egru train: interrupted", file=sys.stderr)
        return 130
    command = "snntorch-egru train" + ("" if not argv else " " + shlex.join(argv))
    try:
        run(cfg, resume=resume, explicit=explicit, command=command)
    except KeyboardInterrupt:
        if debug:
            raise
        folder = cfg.out or resume
        where = f" (continue with --resume {shlex.quote(str(folder))})" if folder else ""
        print(f"snntorch-egru train: interrupted; the run folder keeps the last completed epoch{where}",
              file=sys.stderr)
        return 130
    except (ValueError, OSError, ImportError) as err:
        if debug:
            raise
        print(f"snntorch-egru train: error: {error_line(err)}", file=sys.stderr)
        return 2
    return 0
