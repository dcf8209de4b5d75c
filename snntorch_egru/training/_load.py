"""Loading a run folder of ``snntorch-egru train`` back into the trained PyTorch model."""

from __future__ import annotations

import os
from typing import Any, Dict, Tuple

import torch
from torch import nn

from ._cli import UsageError
from ._records import check_state_dtypes, config_from_checkpoint, load_checkpoint
from ._tasks import LM_TASKS, TrainConfig

__all__ = ["load_run"]

_WHICH = ("selected", "last")


def _build(cfg: TrainConfig, spec: Dict[str, Any]) -> nn.Module:
    if cfg.task in LM_TASKS:
        from ._models import LanguageModel

        return LanguageModel(cfg, int(spec["vocab_size"]))
    from ._run_classify import classifier_model

    return classifier_model(cfg, [int(d) for d in spec["input_shape"]], int(spec["num_classes"]))


def _spec_from_data(cfg: TrainConfig) -> Dict[str, Any]:
    """The model's data-given sizes, for checkpoints written before they were saved: read from the data."""
    if cfg.task in LM_TASKS:
        from ._data import load_corpus

        return {"vocab_size": len(load_corpus(cfg.task, cfg.data_dir).vocab)}
    from ._data import load_task_classification

    data = load_task_classification(cfg, download=False)
    return {"input_shape": list(data.input_shape), "num_classes": data.num_classes}


def load_run(folder: str, which: str = "selected", device: Any = "cpu") -> Tuple[nn.Module, TrainConfig]:
    """The trained model of a ``snntorch-egru train`` run folder, and the run's settings.

    The model is rebuilt from the settings saved in ``checkpoint.pt`` (no dataset is read for
    runs of this version) and its trained parameters are loaded; it is returned in eval mode.
    A classifier maps ``[T, B, *input]`` to ``(logits [B, classes], record)``; a language
    model maps tokens ``[T, B]`` (and states) to ``(logits, states, records)``.

    Args:
        folder: the run folder (or its ``checkpoint.pt``).
        which: ``"selected"``: the model the run tested (the best validation epoch's, else the
            last epoch's); ``"last"``: the last completed epoch's.
        device: where to put the model.

    Returns:
        ``(model, config)``: the :class:`torch.nn.Module` and the :class:`TrainConfig` it was trained with.

    Raises:
        ValueError: the folder holds no readable checkpoint (the message names the file and what is wrong),
            or ``which`` is unknown.

    Example::

        >>> import json, os, tempfile, torch
        >>> from snntorch_egru.training import TrainConfig, load_run, run
        >>> out = tempfile.mkdtemp()
        >>> _ = run(TrainConfig(hidden_size=4, epochs=1, limit_train=16, limit_test=16, progress=False,
        ...                     nir=False, plot=False, out=out))  # doctest: +ELLIPSIS
        snntorch-egru train: ...
        >>> model, cfg = load_run(out)
        >>> logits, _ = model(torch.zeros(8, 2, 8))  # 8 rows of 8 pixels, batch 2
        >>> cfg.hidden_size, tuple(logits.shape)
        (4, (2, 10))
    """
    if which not in _WHICH:
        raise ValueError(f"load_run: which must be one of {', '.join(_WHICH)}, got {which!r}")
    try:
        return _load(os.fspath(folder), which, device)
    except UsageError as err:
        msg = str(err)
        raise UsageError("load_run: " + (msg[len("--resume: ") :] if msg.startswith("--resume: ") else msg)) from None


def _load(folder: str, which: str, device: Any) -> Tuple[nn.Module, TrainConfig]:
    path = os.path.join(folder, "checkpoint.pt") if os.path.isdir(folder) else folder
    ckpt = load_checkpoint(path)
    cfg = config_from_checkpoint(ckpt["config"], path)
    spec = ckpt.get("spec") or _spec_from_data(cfg)
    model = _build(cfg, spec)
    best = ckpt.get("best") or {}
    state = best["model"] if which == "selected" and best.get("model") is not None else ckpt["model"]
    check_state_dtypes(model, state, "model")
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError) as err:
        first = " ".join(str(err).split())[:300]
        raise UsageError(f"the parameters in {path!r} do not fit the model built from its settings: {first}") from err
    return model.to(torch.device(device)).eval(), cfg
