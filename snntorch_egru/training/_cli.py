"""Command line of ``snntorch-egru train``: the parser, the value checks and the usage error."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, TypeVar

import torch

from ..init import THRESHOLD_INITS
from ._dvs import CNNS
from ._lm import DROPOUT_SHARES
from ._models import LM_STATES, MODELS, READOUT_DROPOUTS, READOUTS
from ._tasks import LM_TASKS, TASKS, TrainConfig, preset

__all__ = ["UsageError", "build_parser", "parse_config", "parse_seeds", "parse_targets", "RESUME_REFUSED"]

T = TypeVar("T")


class UsageError(ValueError):
    """A user error (bad flag value, bad file, incompatible resume): one line, exit status 2."""


#: settings a ``--resume`` refuses to change: they define the model and its parameters, the data
#: (and its order), or the optimiser's state layout. Every other flag is applied from the resumed
#: epoch on and recorded (``resumes`` in the checkpoint and in metrics.json).
RESUME_REFUSED = frozenset(
    {
        "task",
        "hidden_size",
        "num_layers",
        "hidden_sizes",
        "emb_size",
        "input_encoder",
        "readout",
        "init",
        "learn_threshold",
        "thr_mean",
        "cnn",
        "frame_size",
        "polarity",
        "time_bins",
        "optimizer",
        "seed",
        "limit_train",
        "batch_size",
        "model",
        "valid_fraction",
    }
)

_HELP = {
    "data_dir": "folder with the dataset files (MNIST/, DVSGesture/, SHD/, ptb.*.txt, wiki.*.tokens)",
    "out": "run folder (default runs/<task>-<timestamp>)",
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
    "model": "'egru', or 'gru': a dense torch.nn.GRU of the same size in the same classifier (no regularisers)",
    "baseline": "'gru': also train a same-size dense GRU on the same data, budget and seed (run folder gru/); "
    "metrics.json and the summary report both",
    "seeds": "comma-separated seeds, e.g. 0,1,2: one run per seed (sub-folders seed-<s>), mean and sd reported",
    "activity_targets": "comma-separated activity targets in [0, 1], e.g. 0.02,0.05,0.1,0.2: one EGRU run per "
    "target (sub-folders target-<t>, finished ones reused; with --baseline gru one GRU in "
    "gru/), accuracy against activity in metrics.json, accuracy_vs_activity.png and .csv; "
    "needs --activity-reg > 0",
    "valid_fraction": "fraction of the training set held out (fixed split, seed 42) for model selection; the test "
    "split is read once at the end (0: no validation, the last epoch is tested; MNIST tasks: "
    "EvNN's fixed 48k/12k split)",
    "threshold_init": "'calibrated' (digits, row-mnist, shd presets): on one training batch each layer's "
    "input drive is scaled to std 1 and each unit's threshold set so that it fires at "
    "--activity-target (snntorch_egru.init.calibrate_thresholds); 'beta': the Beta draw of mean "
    "--thr-mean only (the EvNN code's init and the earlier default; the smnist, psmnist, "
    "dvsgesture and LM presets)",
    "threads": "torch.set_num_threads for this run (0: torch's default)",
    "window": "mackey-glass: past values of the series the EGRU reads per step",
    "repeats": "mackey-glass: repeats of NeuroBench's protocol, each 0.5 Lyapunov times later (at most 30)",
    "download": "fetch missing datasets (MNIST: from the usual mirrors, checksums checked; others: torchvision/tonic)",
    "hidden_size": "units of each EGRU (or GRU) layer of a classifier",
    "num_layers": "number of stacked EGRU layers of a classifier",
    "emb_size": "LM: size of the (tied) word embedding",
    "dampening_factor": "height gamma of the surrogate (pseudo-)derivative of the event function",
    "pseudo_derivative_support": "half-width eps of the surrogate derivative around the threshold",
    "thr_mean": "mean of the Beta-distributed initial thresholds, in (0, 1)",
    "learn_threshold": "train the thresholds (--no-learn-threshold keeps them at their initial values)",
    "init": "weight initialisation: 'evnn' (EvNN's) or 'torch' (torch.nn.GRU's uniform)",
    "dropout": "dropout between layers and before the readout",
    "dropconnect": "DropConnect probability on the recurrent weights",
    "zoneout": "zoneout probability of the internal state",
    "dropout_emb": "LM: dropout on the embedding output",
    "dropout_words": "LM: probability of dropping a whole word (embedding row)",
    "dropout_out": "LM: dropout on the last layer's output, before the decoder",
    "frame_size": "dvsgesture: frame width and height in pixels",
    "polarity": "dvsgesture: event polarities averaged into one channel ('mean') or kept ('separate')",
    "augment": "dvsgesture: random crop, perspective and rotation of training frames",
    "time_bins": "shd: number of time bins (steps) per recording",
    "backend": "EGRU implementation: 'auto' or a registered backend",
    "epochs": "number of training epochs (the learning-rate schedule spans them)",
    "batch_size": "training batch (global: divided among torchrun processes)",
    "eval_batch_size": "batch of validation and test passes",
    "optimizer": "adam | adamw | sgd",
    "lr": "learning rate",
    "weight_decay": "weight decay of the optimiser",
    "beta1": "Adam's beta1 (SGD: momentum)",
    "step_size": "'step' schedule: epochs between learning-rate drops",
    "step_gamma": "'step' schedule: factor of each drop",
    "cosine_start": "'cosine_tail' schedule: fraction of the epochs at constant learning rate",
    "grad_clip": "clip the global gradient norm to this value (0 = off)",
    "bptt": "LM: length of a truncated-BPTT window (steps)",
    "variable_bptt": "LM: AWD-style random window lengths (learning rate scaled by the window length)",
    "dropout_mask": "LM: variational dropout mask shared over 'time' (AWD) or over the 'batch' (EvNN code)",
    "activity_target": "target fraction of units active per step of the activity regulariser",
    "voltage_target": "target of the voltage regulariser",
    "seed": "random seed (initialisation, data order, dropout masks)",
    "num_workers": "DataLoader worker processes",
    "progress": "progress bars and one line per epoch (--no-progress: the header and summary lines only)",
    "nir": "export the trained model as model.nir",
    "plot": "write activity.png (event raster, activity, loss and accuracy per epoch)",
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
for _n in (
    "epochs",
    "batch_size",
    "eval_batch_size",
    "hidden_size",
    "num_layers",
    "bptt",
    "emb_size",
    "frame_size",
    "time_bins",
    "step_size",
):
    _EXPECT[_n] = ("a positive integer (>= 1)", _pos_int)
for _n in (
    "limit_train",
    "limit_test",
    "stop_after",
    "num_workers",
    "input_encoder",
    "readout_steps",
    "seed",
    "threads",
):
    _EXPECT[_n] = (
        "an integer >= 0 (0 = off / all)"
        if _n.startswith(("limit", "stop", "input", "readout"))
        else "an integer >= 0",
        _nonneg_int,
    )
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
_EXPECT["valid_fraction"] = ("a number in [0, 1) (0 = no validation split)", lambda v: _num(v) and 0 <= v < 1)
_EXPECT["layer_grad_clip"] = ("a finite number >= 0 (0 = off)", lambda v: _num(v) and v >= 0)

_CHOICES: Dict[str, Tuple[str, ...]] = {
    "readout": READOUTS,
    "schedule": ("none", "cosine", "step", "cosine_tail"),
    "optimizer": ("adam", "adamw", "sgd"),
    "device": ("cpu", "cuda"),
    "init": ("evnn", "torch"),
    "cnn": CNNS,
    "polarity": ("mean", "separate"),
    "dropout_mask": DROPOUT_SHARES,
    "lm_state": LM_STATES,
    "readout_dropout": READOUT_DROPOUTS,
    "bptt_lr_scale": ("nominal", "bptt"),
    "reg_form": ("smooth", "evnn"),
    "model": MODELS,
    "baseline": ("none", "gru"),
    "threshold_init": THRESHOLD_INITS,
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


def _shown(value: Any) -> str:
    """A preset value as the help text shows it (``%`` escaped for argparse)."""
    if value is None:
        text = "none"
    elif isinstance(value, (list, tuple)):
        text = ",".join(map(str, value))
    elif isinstance(value, bool):
        text = "on" if value else "off"
    else:
        text = str(value)
    return text.replace("%", "%%")


def _task_in(argv: Sequence[str]) -> str:
    """The ``--task`` given in ``argv`` (for the help's preset values), else ``digits``."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--task", default="digits")
    try:
        ns, _ = pre.parse_known_args(list(argv))
    except SystemExit:  # pragma: no cover - "--task" without a value: the real parser reports it
        return "digits"
    return ns.task if ns.task in TASKS else "digits"


def build_parser(task: str = "digits") -> argparse.ArgumentParser:
    """Argument parser; every :class:`TrainConfig` field is a flag (default: the task's preset).

    Every flag's help ends with the value of ``task``'s preset (``--task smnist --help`` shows the
    sMNIST values). Flags are never abbreviated (``--epoch`` is refused, not taken as ``--epochs``).

    Example::

        >>> from snntorch_egru.training import build_parser
        >>> "(smnist preset: 200)" in build_parser("smnist").format_help().replace("\n", " ")
        True
    """
    from ..cli import OneLineErrorParser

    defaults = preset(task if task in TASKS else "digits")

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
    p.add_argument(
        "--task",
        choices=TASKS,
        default=argparse.SUPPRESS,
        help="task whose preset gives every default (default: digits; --task T --help shows T's values)",
    )
    p.add_argument(
        "--resume",
        default=None,
        metavar="PATH",
        help="continue from a run folder or checkpoint.pt (its settings, plus any flags given; "
        "see below for the flags a resume refuses)",
    )
    p.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the Python traceback of an error instead of one line",
    )
    for f in dataclasses.fields(TrainConfig):
        if f.name == "task":
            continue
        flag = _flag(f.name)
        help_ = f"{_HELP[f.name]} ({defaults.task} preset: {_shown(getattr(defaults, f.name))})"
        default = f.default
        if isinstance(default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_)
        elif f.name == "seeds":
            p.add_argument(flag, type=parse_seeds, default=argparse.SUPPRESS, metavar="S,S,...", help=help_)
        elif f.name == "activity_targets":
            p.add_argument(flag, type=parse_targets, default=argparse.SUPPRESS, metavar="T,T,...", help=help_)
        elif f.name == "hidden_sizes":
            p.add_argument(flag, type=_parse_type("hidden_size", int), nargs="+", default=argparse.SUPPRESS, help=help_)
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
    ns = vars(build_parser(_task_in(argv)).parse_args(list(argv)))
    resume = ns.pop("resume", None)
    ns.pop("debug", None)
    task = ns.get("task", "digits")
    cfg = preset(task)
    for k, v in ns.items():
        setattr(cfg, k, v)
    return cfg, resume, ns


def parse_seeds(text: str) -> List[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]`` (distinct integers >= 0); an argparse type of ``--seeds``.

    Example::

        >>> from snntorch_egru.training._cli import parse_seeds
        >>> parse_seeds("0, 1,2")
        [0, 1, 2]
    """
    return _parse_list(
        text,
        int,
        lambda v: all(x >= 0 for x in v) and len(set(v)) == len(v),
        "expected comma-separated integers >= 0 such as 0,1,2",
        "expected distinct integers >= 0 such as 0,1,2",
    )


def _targets_ok(v: Any) -> bool:
    return (
        isinstance(v, (list, tuple))
        and len(v) > 0
        and all(_num(t) and 0 <= t <= 1 for t in v)
        and len(set(v)) == len(v)
    )


def parse_targets(text: str) -> List[float]:
    """``"0.02,0.05"`` -> ``[0.02, 0.05]`` (distinct numbers in [0, 1]); an argparse type of ``--activity-targets``.

    Example::

        >>> from snntorch_egru.training._cli import parse_targets
        >>> parse_targets("0.02, 0.05,0.1")
        [0.02, 0.05, 0.1]
    """
    expected = "expected distinct comma-separated numbers in [0, 1] such as 0.02,0.05,0.1,0.2"
    return _parse_list(text, float, _targets_ok, expected, expected)


def _parse_list(
    text: str, convert: Callable[[str], T], ok: Callable[[List[T]], bool], unreadable: str, refused: str
) -> List[T]:
    """``text`` split at commas and converted item by item (an argparse type): ``unreadable`` when an item
    does not convert, ``refused`` when the list fails ``ok`` (each message ends with the text given)."""
    try:
        values = [convert(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{unreadable}, got {text!r}") from None
    if not ok(values):
        raise argparse.ArgumentTypeError(f"{refused}, got {text!r}")
    return values


def _check_types(cfg: TrainConfig) -> None:
    """Strict types for Python callers: a string where a bool or number is expected raises."""
    for f in dataclasses.fields(TrainConfig):
        v, default = getattr(cfg, f.name), f.default
        if f.name == "hidden_sizes":
            if v is not None and (not isinstance(v, (list, tuple)) or not v or not all(_pos_int(h) for h in v)):
                raise UsageError(f"--hidden-sizes must be a non-empty list of positive integers, got {v!r}")
        elif f.name == "seeds":
            if v is not None and (
                not isinstance(v, (list, tuple)) or not v or not all(_nonneg_int(s) for s in v) or len(set(v)) != len(v)
            ):
                raise UsageError(f"--seeds must be a non-empty list of distinct integers >= 0, got {v!r}")
        elif f.name == "activity_targets":
            if v is not None and not _targets_ok(v):
                raise UsageError(
                    f"--activity-targets must be a non-empty list of distinct numbers in [0, 1], got {v!r}"
                )
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


def _validate_sweep(cfg: TrainConfig) -> None:
    """The settings an ``--activity-targets`` sweep needs: an EGRU classifier with an activity regulariser."""
    if cfg.task in LM_TASKS:
        raise UsageError(f"--activity-targets is for classification tasks; task {cfg.task!r} is a language model")
    if cfg.model != "egru":
        raise UsageError(
            f"--activity-targets sweeps the EGRU's activity regulariser target and needs --model egru, "
            f"got --model {cfg.model} (add --baseline gru for the GRU's accuracy as a line)"
        )
    if not cfg.activity_reg:
        raise UsageError(
            f"--activity-targets needs an activity regulariser, but --activity-reg is "
            f"{cfg.activity_reg!r} (task {cfg.task!r}); give --activity-reg > 0, e.g. --activity-reg 0.5"
        )


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
    if cfg.task in LM_TASKS and (cfg.model != "egru" or cfg.baseline != "none"):
        raise UsageError(
            f"--model gru and --baseline gru are for classification tasks; task {cfg.task!r} is a "
            f"language model (got --model {cfg.model}, --baseline {cfg.baseline})"
        )
    if cfg.model == "gru" and cfg.baseline != "none":
        raise UsageError("--baseline gru trains a GRU next to the EGRU and needs --model egru, got --model gru")
    if cfg.activity_targets is not None:
        _validate_sweep(cfg)
    if cfg.batch_size % world:
        raise UsageError(
            f"--batch-size is the global batch and must be divisible by the number of processes ({world}), "
            f"got {cfg.batch_size}"
        )
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was given but torch.cuda.is_available() is False on this machine")
    if cfg.backend == "cupy":
        if cfg.device != "cuda" or not torch.cuda.is_available():
            raise UsageError(
                f"--backend cupy runs on CUDA only: it needs --device cuda and a GPU, got --device "
                f"{cfg.device} (torch.cuda.is_available() is {torch.cuda.is_available()})"
            )
        import importlib.util

        if importlib.util.find_spec("cupy") is None:
            raise UsageError("--backend cupy needs CuPy, which is not installed (pip install 'snntorch-egru[cuda12]')")
    _check_paths(cfg)


def _check_paths(cfg: TrainConfig) -> None:
    """``--out`` is a folder (or can be created: no file, no dangling link in its place); ``--data-dir`` is a
    folder where the task reads one."""
    out = cfg.out
    if out is not None:
        if os.path.islink(out) and not os.path.exists(out):
            raise UsageError(
                f"--out {str(out)!r} is a symbolic link to {os.readlink(out)!r}, which does not exist; "
                "create that folder or give another --out"
            )
        if os.path.exists(out) and not os.path.isdir(out):
            raise UsageError(f"--out {str(out)!r} is a file; expected a run folder (existing or to create)")
    if cfg.task != "digits":  # digits are bundled with scikit-learn; the other tasks read --data-dir
        d = cfg.data_dir
        if os.path.islink(d) and not os.path.exists(d):
            raise UsageError(
                f"--data-dir {str(d)!r} is a symbolic link to {os.readlink(d)!r}, which does not "
                "exist; expected the folder holding the dataset files"
            )
        if os.path.exists(d) and not os.path.isdir(d):
            raise UsageError(
                f"--data-dir {str(d)!r} is a file; expected the folder holding the dataset files "
                f"of task {cfg.task!r} (see --help for the layout)"
            )
