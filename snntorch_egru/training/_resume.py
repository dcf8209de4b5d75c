"""``--resume`` of ``snntorch-egru train``: the settings of a resumed run, its checkpoint loaded into the
built runner, the line that says what is continued, and the check that the checkpoint was not replaced.

:mod:`._loop` uses (and re-exports) these.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, List, Optional, Tuple

from ._cli import RESUME_REFUSED, UsageError, _flag
from ._records import SOURCE_KEY, check_state_dtypes, config_from_checkpoint, load_checkpoint
from ._run_base import _apply_optimizer_settings, _Run
from ._tasks import LM_TASKS, TrainConfig

__all__: List[str] = []

#: run-control flags a resume applies without recording them as changed settings
_NOT_RECORDED = ("stop_after", "progress", "threads")


def _resume_config(
    cfg: TrainConfig, resume: str, explicit: Optional[Dict[str, Any]]
) -> Tuple[TrainConfig, Dict[str, Any], Dict[str, Any]]:
    """``(config, checkpoint, changes)`` of a resumed run: the saved settings with the flags given now."""
    path = os.path.join(resume, "checkpoint.pt") if os.path.isdir(resume) else resume
    st = os.stat(path) if os.path.isfile(path) else None
    ckpt = load_checkpoint(path)
    if st is not None:
        ckpt[SOURCE_KEY] = (path, (st.st_ino, st.st_size, st.st_mtime_ns))
    saved = config_from_checkpoint(ckpt["config"], path)
    cfg = dataclasses.replace(saved, stop_after=0)  # an interruption is not a setting: run to --epochs
    changes: Dict[str, Any] = {}
    for k, v in (explicit or {}).items():
        old = getattr(saved, k, None)
        if k in RESUME_REFUSED and v != old:
            raise UsageError(
                f"--resume: {_flag(k)} {v!r} differs from the checkpoint's {old!r}, and a resume cannot change "
                f"{_flag(k)} (it defines the model, its data or the optimiser); drop the flag or start a new "
                "run in another folder"
            )
        if v != old and k not in _NOT_RECORDED:
            changes[k] = {"from": old, "to": v}
        setattr(cfg, k, v)
    if not (explicit or {}).get("out"):
        cfg.out = os.path.dirname(os.path.abspath(path))
    if isinstance(cfg.epochs, int) and ckpt["epoch"] > cfg.epochs:
        raise UsageError(
            f"--epochs {cfg.epochs} is less than the {ckpt['epoch']} epochs the checkpoint "
            "has already completed; give --epochs >= that number"
        )
    return cfg, ckpt, changes


def _resume_line(cfg: TrainConfig, ckpt: Dict[str, Any]) -> str:
    """What a ``--resume`` continues: the folder, the epochs done of how many, the best value so far."""
    line = f"resuming {cfg.out}: epoch {ckpt['epoch']} of {cfg.epochs} completed"
    best = ckpt.get("best") or {}
    if best.get("value") is not None:
        what = "valid perplexity {:.2f}" if cfg.task in LM_TASKS else "valid accuracy {:.2%}"
        line += f", best {what.format(best['value'])} (epoch {best.get('epoch')})"
    elif ckpt["history"]:
        last = ckpt["history"][-1]
        if "eval_accuracy" in last:
            line += f", last {last.get('eval_split', 'eval')} accuracy {last['eval_accuracy']:.2%}"
        elif "eval_perplexity" in last:
            line += f", last valid perplexity {last['eval_perplexity']:.2f}"
    return line


def _restore(
    r: _Run, ckpt: Dict[str, Any], changes: Dict[str, Any]
) -> Tuple[List[Dict[str, Any]], int, float, List[Dict[str, Any]]]:
    """Load a checkpoint into the built run; ``(history, start epoch, wall time so far, resumes)``."""
    check_state_dtypes(r.model, ckpt["model"], "model")
    if ckpt.get("best") and ckpt["best"].get("model") is not None:
        check_state_dtypes(r.model, ckpt["best"]["model"], "best.model")
    try:
        r.model.load_state_dict(ckpt["model"])
        r.optimizer.load_state_dict(ckpt["optimizer"])
        r.scheduler.load_state_dict(ckpt["scheduler"])
        if r.best is not None and ckpt.get("best"):
            r.best.load_state_dict(ckpt["best"])
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as err:
        first = " ".join(str(err).split())[:300]
        raise UsageError(
            f"--resume: the checkpoint does not match the model and optimiser built from its "
            f"settings (written by another version?): {type(err).__name__}: {first}"
        ) from err
    _apply_optimizer_settings(r, r.cfg)
    resumes = list(ckpt.get("resumes") or [])
    resumes.append({"at_epoch": int(ckpt["epoch"]), "changed": changes})
    return list(ckpt["history"]), int(ckpt["epoch"]), float(ckpt.get("wall_time_s", 0.0)), resumes


def _check_unchanged(ckpt: Dict[str, Any]) -> None:
    """After taking the folder's lock: the checkpoint a resume loaded is still the one on disk (not replaced
    by another process between loading and locking)."""
    path, stat = ckpt.get(SOURCE_KEY, (None, None))
    if path is None:
        return
    try:
        now = os.stat(path)
    except OSError:
        now = None
    if now is None or (now.st_ino, now.st_size, now.st_mtime_ns) != stat:
        raise UsageError(
            f"--resume: {path!r} was replaced while this run was starting (by another process "
            "training in that folder?); give the command again"
        )
