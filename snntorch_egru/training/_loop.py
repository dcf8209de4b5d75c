"""The training loop of ``snntorch-egru train``: resume, train the epochs, test once, record.

:func:`run` trains one model (or, with ``baseline="gru"``, the EGRU and a same-size dense GRU,
and with ``seeds``, each seed) and writes the run folder. The runners live in
:mod:`._run_classify` and :mod:`._run_lm`, the command line in :mod:`._cli`, the files in
:mod:`._records` and the ``--resume`` machinery in :mod:`._resume`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
import shlex
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

import torch

from .. import _io
from . import _distributed as D
from ._cli import UsageError, _validate, build_parser, parse_config
from ._lm import awd_windows
from ._models import layer_gradient_groups
from ._records import (
    CHECKPOINT_FORMAT,
    FINAL_FILES,
    RUN_FILES,
    _export_nir,
    _plot,
    _save_checkpoint,
    _summary_line,
    _write_metrics,
    load_checkpoint,
    plot_title,
    write_progress,
)
from ._resume import _check_unchanged, _restore, _resume_config, _resume_line
from ._run_base import EFFICIENCY_KEYS, FinalTest, _lr_factor, _Run, regularisers
from ._run_classify import _ClassifyRun
from ._run_lm import _LMRun
from ._tasks import LM_TASKS, REGRESS_TASKS, TrainConfig

__all__ = ["build_parser", "parse_config", "run", "main", "load_checkpoint", "UsageError"]

# names other modules and tests reach through this module
_REEXPORTED = (awd_windows, layer_gradient_groups, regularisers, _lr_factor, _export_nir, _save_checkpoint)


def _model_words(r: _Run) -> str:
    """``EGRU(256)``, ``EGRU(1350/1350/750)``, ``2-layer EGRU(64)`` or ``dense GRU(256)``, and the parameter count."""
    n = sum(p.numel() for p in r.model.parameters())
    return f"{r.model_words()}, {n:,} parameters"


def _n(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _header(cfg: TrainConfig, r: _Run) -> str:
    """The line printed when a run starts: task, model and size, epochs, batch, threads, run folder."""
    return (
        f"snntorch-egru train: task {cfg.task}, {_model_words(r)}, {_n(cfg.epochs, 'epoch')}, batch "
        f"{cfg.batch_size}, {_n(torch.get_num_threads(), 'thread')}, device {cfg.device}, run folder {cfg.out}"
    )


def _epochs_note(cfg: TrainConfig, given: Dict[str, Any]) -> Optional[str]:
    """A note when ``--epochs`` is below the task preset's (its learning-rate schedule and accuracy)."""
    from ._tasks import preset

    full = preset(cfg.task)
    if "epochs" not in given or cfg.epochs >= full.epochs:
        return None
    sched = (
        f"the {cfg.schedule} learning-rate schedule is compressed into {cfg.epochs} epochs, "
        if cfg.schedule != "none"
        else ""
    )
    return (
        f"note: --epochs {cfg.epochs} is below the {cfg.task} preset's {full.epochs}: {sched}so expect less than "
        "the preset's accuracy (see docs/guide/training.md)"
    )


def make_run(cfg: TrainConfig, info: D.DistInfo, command: str) -> _Run:
    """The runner of ``cfg``'s kind of task: a language-model run or a classification run."""
    return (_LMRun if cfg.task in LM_TASKS else _ClassifyRun)(cfg, info, command)


# ----------------------------------------------------------------------------- the epochs
def _epoch_message(r: _Run, epoch: int, tr: Dict[str, float], ev: Dict[str, float]) -> str:
    msg = f"epoch {epoch + 1}/{r.cfg.epochs}: train loss {tr['train_loss']:.4f}"
    msg += r.epoch_words(ev)
    if r.cfg.model == "gru":
        return msg + " (dense GRU)"
    return msg + f", activity {100 * ev['activity']:.1f}%"


def _train_epochs(
    r: _Run, history: List[Dict[str, Any]], start_epoch: int, wall_before: float, resumes: List[Dict[str, Any]]
) -> float:
    """Train from ``start_epoch`` (checkpoint after every epoch); returns the run's total wall time."""
    cfg, info = r.cfg, r.info
    t_run = time.perf_counter()
    done_here = 0
    for epoch in range(start_epoch, cfg.epochs):
        if cfg.stop_after and done_here >= cfg.stop_after:
            break
        t_epoch = time.perf_counter()
        tr = r.train_epoch(epoch)
        ev = r.evaluate(r.select_split)
        if info.is_main:
            # metrics.json, model.nir and activity.png (of an earlier invocation, or the previous epoch's progress)
            # describe the checkpoint (and best.pt) about to be replaced: remove them first, so the folder never
            # pairs them with newer ones; write_progress writes them again after the checkpoint
            for name in FINAL_FILES:
                _io.remove_durably(os.path.join(cfg.run_dir, name))
        if r.best is not None:
            r.best.update(ev[r.best_metric], r.model, epoch + 1, write=info.is_main)
        row = {
            "epoch": epoch + 1,
            **tr,
            "eval_loss": ev["loss"],
            "eval_activity": ev["activity"],
            "lr": r.optimizer.param_groups[0]["lr"],
            "time_s": time.perf_counter() - t_epoch,
            "eval_split": r.select_split,
        }
        row[f"eval_{r.best_metric}"] = ev[r.best_metric]
        history.append(row)
        done_here += 1
        if info.is_main:
            if cfg.progress:
                print(_epoch_message(r, epoch, tr, ev), flush=True)
            _save_checkpoint(
                os.path.join(cfg.run_dir, "checkpoint.pt"),
                {
                    "format": CHECKPOINT_FORMAT,
                    "config": cfg.to_dict(),
                    "epoch": epoch + 1,
                    "spec": r.spec,
                    "model": r.model.state_dict(),
                    "optimizer": r.optimizer.state_dict(),
                    "scheduler": r.scheduler.state_dict(),
                    "history": history,
                    "wall_time_s": wall_before + time.perf_counter() - t_run,
                    "best": r.best.state_dict() if r.best is not None else None,
                    "resumes": resumes,
                },
            )
            write_progress(r, history, resumes)
        D.barrier(info)
    return wall_before + time.perf_counter() - t_run


# ----------------------------------------------------------------------------- the report
def _test_once(r: _Run, history: List[Dict[str, Any]]) -> FinalTest:
    """The final test: the selected model (best validation epoch, else the last), one pass over the test
    split; also the final epoch's model where the task's EvNN protocol tests that one."""
    completed = history[-1]["epoch"] if history else 0
    if r.best is not None and history:
        r.keep_final_epoch_model()
    best_epoch = r.best.epoch if r.best is not None and r.best.restore(r.model) else completed
    final, eff, absent = r.final_test()
    last_test = r.shadow_figures()
    return FinalTest(final, eff, absent, last_test, best_epoch, completed)


def _metrics(
    r: _Run, t: FinalTest, history: List[Dict[str, Any]], wall: float, t_start: float, resumes: List[Dict[str, Any]]
) -> Dict[str, Any]:
    cfg, final, eff = r.cfg, t.final, t.eff
    m: Dict[str, Any] = {"task": cfg.task, "model": cfg.model}
    m.update(r.test_figures(final))
    m["selected_epoch"] = t.best_epoch
    m["selected_on"] = r.select_split if r.best is not None else "last epoch (no validation split)"
    m["validation"] = r.validation
    m["protocol"], m["recipe_protocol"] = r.protocols(t, history)
    m["test_loss"] = final["loss"]
    m["activity"] = eff.get("activity", final["activity"])
    m["activity_sparsity"] = 1.0 - m["activity"]
    for k in EFFICIENCY_KEYS:
        m[k] = eff.get(k)
    if eff.get("dense_macs"):
        m["effective_mac_fraction"] = eff["effective_macs"] / eff["dense_macs"]
    m["layers"] = eff.get("layers", [])
    m.update(
        {
            "finished": t.completed == cfg.epochs,
            "epochs_completed": t.completed,
            "epochs": cfg.epochs,
            "parameters": sum(p.numel() for p in r.model.parameters()),
            "wall_time_s": wall,
            "process_time_s": time.perf_counter() - t_start,
            "command": r.command,
            "argv": sys.argv,
            "world_size": r.info.world_size,
            "device": str(r.device),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "run_dir": cfg.out,
            "history": history,
            "config": cfg.to_dict(),
            "resumes": resumes,
        }
    )
    m.update(r.sample_counts())
    return m


def _write_files(r: _Run, m: Dict[str, Any], absent: Dict[str, str], history: List[Dict[str, Any]]) -> None:
    """model.nir and activity.png (main process), then metrics.json and the summary line."""
    cfg = r.cfg
    files: Dict[str, Optional[str]] = {
        "checkpoint": os.path.join(cfg.run_dir, "checkpoint.pt") if m["epochs_completed"] else None
    }
    if r.info.is_main:
        if cfg.nir and cfg.model == "gru":
            absent["nir"] = "a dense torch.nn.GRU is not exported (NIR has no GRU node)"
        elif cfg.nir:
            nir_path, why = _export_nir(r.model, r.sample_step, os.path.join(cfg.run_dir, "model.nir"))
            files["nir"] = nir_path
            if why:
                absent["nir"] = why
            else:
                m["nir_note"] = "per-step graph: " + r.nir_note()
        if cfg.plot:
            files["plot"] = _plot(os.path.join(cfg.run_dir, "activity.png"), r.raster, history, plot_title(cfg))
            if files["plot"] is None:
                absent["plot"] = "matplotlib is not installed"
                print(
                    "activity.png not written: matplotlib is not installed (pip install matplotlib, or "
                    "pip install 'snntorch-egru[data]'); --no-plot silences this",
                    flush=True,
                )
    m["files"] = files
    if absent:
        m["absent"] = absent
    if r.info.is_main:
        _write_metrics(os.path.join(cfg.run_dir, "metrics.json"), m)


def _run_one(
    cfg: TrainConfig,
    info: D.DistInfo,
    ckpt: Optional[Dict[str, Any]],
    changes: Dict[str, Any],
    command: str,
    quiet: bool = False,
) -> Dict[str, Any]:
    """Train, test and record one model in ``cfg.out``; returns its metrics."""
    t_start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        _take_folder(cfg, info, ckpt, stack)
        r = make_run(cfg, info, command)
        r.build()
        history: List[Dict[str, Any]] = []
        start_epoch, wall_before = 0, 0.0
        resumes: List[Dict[str, Any]] = []
        if ckpt is not None:
            history, start_epoch, wall_before, resumes = _restore(r, ckpt, changes)
        if info.is_main:
            print(_header(cfg, r), flush=True)
            if ckpt is not None:
                print(_resume_line(cfg, ckpt), flush=True)
        wall = _train_epochs(r, history, start_epoch, wall_before, resumes)
        t = _test_once(r, history)
        m = _metrics(r, t, history, wall, t_start, resumes)
        _write_files(r, m, t.absent, history)
        if info.is_main and not quiet:
            print(_summary_line(cfg.task, m), flush=True)
        return m


def _take_folder(
    cfg: TrainConfig, info: D.DistInfo, ckpt: Optional[Dict[str, Any]], stack: contextlib.ExitStack
) -> None:
    """Main process: create ``cfg.out`` and hold its lock (in ``stack``) for the run; a refusal reaches every
    process (so the other ranks stop too instead of waiting for the main one)."""
    failure: Optional[BaseException] = None
    if info.is_main:
        try:
            os.makedirs(cfg.run_dir, exist_ok=True)
            stack.enter_context(_io.folder_lock(cfg.run_dir, "another snntorch-egru train", "run folder"))
            if ckpt is not None:
                _check_unchanged(ckpt)
            _io.remove_stale_temporaries(cfg.run_dir, RUN_FILES)  # left by a killed write
        except (ValueError, OSError) as err:
            failure = err
    text = D.broadcast_object(None if failure is None else str(failure), info)
    if failure is not None:
        raise failure
    if text is not None:
        raise UsageError(text)


# ----------------------------------------------------------------------------- entry points
def run(
    cfg: TrainConfig,
    resume: Optional[str] = None,
    explicit: Optional[Dict[str, Any]] = None,
    command: str = "snntorch-egru train",
) -> Dict[str, Any]:
    """Train, evaluate and record a run; returns the metrics written to ``metrics.json``.

    With ``cfg.baseline == "gru"`` a same-size dense GRU is trained next to the EGRU (folder
    ``gru/``; the EGRU's metrics gain ``baseline`` and ``comparison``); with ``cfg.seeds`` every
    seed runs in ``seed-<s>/`` and the returned (and top-level) metrics hold mean, sd and the
    per-seed figures; with ``cfg.activity_targets`` one EGRU run per target in ``target-<t>/`` (the
    GRU once, in ``gru/``) and the sweep's accuracy against activity (metrics.json,
    ``accuracy_vs_activity.png`` and ``.csv``).

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
        snntorch-egru train: task digits, EGRU(4), ... parameters, 1 epoch, batch 32, ... run folder ...
        digits: test accuracy ...
        >>> m["epochs_completed"], m["dense_macs"] == 8 * 3 * 4 * (8 + 4)  # 8 rows of 8 pixels
        (1, True)
    """
    ckpt: Optional[Dict[str, Any]] = None
    changes: Dict[str, Any] = {}
    given = explicit or {}
    if given.get("activity_targets") is not None and "activity_target" in given:
        raise UsageError(
            f"--activity-target {given['activity_target']!r} and --activity-targets "
            f"{','.join(map(str, given['activity_targets']))} were both given; the sweep sets each run's "
            "target from --activity-targets, so give one of the two"
        )
    if resume is not None:
        if cfg.activity_targets is not None or (explicit or {}).get("activity_targets") is not None:
            raise UsageError(
                "--resume continues one run folder; an --activity-targets sweep has one per target: "
                "give the sweep's command again without --resume (finished target runs are reused, "
                "interrupted ones continued)"
            )
        cfg, ckpt, changes = _resume_config(cfg, resume, explicit)
        if cfg.seeds:
            raise UsageError(
                "--resume continues one run folder; a --seeds run has one per seed: resume its "
                "seed-<s> folders one by one"
            )
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.task in REGRESS_TASKS:  # regression (NeuroBench's Mackey-Glass protocol): its own runner
        from . import _run_regress

        cfg.out = cfg.out or os.path.join("runs", f"{cfg.task}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}")
        return _run_regress.run(cfg, command)
    info = D.setup(cfg.device)
    try:
        _validate(cfg, info.world_size)
        if cfg.out is None:
            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            cfg.out = D.broadcast_object(os.path.join("runs", f"{cfg.task}-{stamp}"), info)
        note = _epochs_note(cfg, given)
        if note and info.is_main:
            print(note, flush=True)
        return _dispatch(cfg, info, ckpt, changes, explicit, command)
    finally:
        D.cleanup(info)


def _dispatch(
    cfg: TrainConfig,
    info: D.DistInfo,
    ckpt: Optional[Dict[str, Any]],
    changes: Dict[str, Any],
    explicit: Optional[Dict[str, Any]],
    command: str,
) -> Dict[str, Any]:
    from . import _compare

    def resume_gru(gcfg: TrainConfig) -> Tuple[TrainConfig, Dict[str, Any], Dict[str, Any]]:
        keep = {k: v for k, v in (explicit or {}).items() if k not in ("out", "baseline", "seeds")}
        g, gckpt, gchanges = _resume_config(gcfg, gcfg.run_dir, keep)
        return g, gckpt, gchanges

    def one_seed(
        c: TrainConfig, ck: Optional[Dict[str, Any]] = None, ch: Optional[Dict[str, Any]] = None
    ) -> Dict[str, Any]:
        if c.baseline == "gru":
            return _compare.with_baseline(c, info, ck, ch or {}, command, _run_one, resume_gru)
        return _run_one(c, info, ck, ch or {}, command)

    if cfg.activity_targets is not None:
        from . import _sweep

        return _sweep.over_targets(cfg, info, command, lambda c, cmd: _sweep_run(c, info, cmd))
    if cfg.seeds:
        return _compare.over_seeds(cfg, info, command, one_seed)
    return one_seed(cfg, ckpt, changes)


def _sweep_run(c: TrainConfig, info: D.DistInfo, command: str) -> Dict[str, Any]:
    """One run of an ``--activity-targets`` sweep: continued from the checkpoint an interruption left in its
    folder (with the sweep's settings), else trained from the start."""
    ckpt: Optional[Dict[str, Any]] = None
    changes: Dict[str, Any] = {}
    if os.path.isfile(os.path.join(c.run_dir, "checkpoint.pt")):
        try:
            c, ckpt, changes = _resume_config(c, c.run_dir, c.to_dict())
        except UsageError as err:
            raise UsageError(
                f"--activity-targets: cannot continue the interrupted run in {c.out!r} ({err}); "
                "remove that folder or give another --out"
            ) from err
        if info.is_main:
            print(f"{c.out}: continuing from epoch {ckpt['epoch']} of {c.epochs}", flush=True)
    return _run_one(c, info, ckpt, changes, command)


def main(argv: Optional[List[str]] = None) -> int:
    """``snntorch-egru train [options]``; returns the exit status (0, 2 for a user error, 130 on Ctrl-C)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        cfg, resume, explicit = parse_config(argv)
    except SystemExit as stop:  # --help (0) or a usage error (2, already printed as one line)
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 2)
    except KeyboardInterrupt as err:
        return _exit_status(err, debug, started=False, folder=None)
    command = "snntorch-egru train" + ("" if not argv else " " + shlex.join(argv))
    try:
        run(cfg, resume=resume, explicit=explicit, command=command)
    except (KeyboardInterrupt, ValueError, OSError, ImportError) as err:
        return _exit_status(err, debug, started=True, folder=cfg.out or resume)
    return 0


def _exit_status(err: BaseException, debug: bool, started: bool, folder: Optional[str]) -> int:
    """Print the one line of an interruption (status 130) or a user error (status 2); ``--debug`` re-raises."""
    if debug:
        raise err
    if isinstance(err, KeyboardInterrupt):
        if not started:
            print("snntorch-egru train: interrupted", file=sys.stderr)
        else:
            where = f" (continue with --resume {shlex.quote(str(folder))})" if folder else ""
            print(
                f"snntorch-egru train: interrupted; the run folder keeps the last completed epoch{where}",
                file=sys.stderr,
            )
        return 130
    from ..cli import error_line

    print(f"snntorch-egru train: error: {error_line(err)}", file=sys.stderr)
    return 2
