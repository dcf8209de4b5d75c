"""Mackey-Glass (tau = 17) forecasting as NeuroBench's example runs it: the series, the split, the repeats.

The protocol is that of NeuroBench 2.3's ``examples/mackey_glass`` (LSTM and ESN scripts):

- the series comes from NeuroBench's own :class:`neurobench.datasets.MackeyGlass` generator
  (``jitcdde``; ``tau = 17``, ``beta = 0.2``, ``gamma = 0.1``, ``n = 10``, constant past
  ``0.7206597``, Lyapunov time 197 sampled at 75 points);
- repeat ``k`` (of 30) starts ``k * 0.5`` Lyapunov times (``int(37.5 k)`` points) into the
  series and uses 10 Lyapunov times (750 points) to train and the next 10 (750 points) to test,
  one step ahead (``target[i] = series[i + 1]``), through NeuroBench's loader
  (``MackeyGlass(file_path, start_offset=..., bin_window=1)``, ``ind_train`` / ``ind_test``);
- the test is autonomous: the model is warmed on the training inputs, gets the first test
  input, and then feeds its own predictions back for 749 steps; NeuroBench's ``SMAPE``
  compares the 750 predictions with the truth.

NeuroBench's authors note that ``jitcdde`` solutions differ slightly between machines (the
official ``mg_17.npy`` is a download), so every model compared here runs on the same series,
generated once per cache file.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Tuple

import numpy as np
import torch

LYAPTIME = 197
PTS_PER_LYAPTIME = 75
TRAIN_LYAP = 10.0
TEST_LYAP = 10.0
REPEATS = 30
OFFSET_LYAP = 0.5  # start of repeat k: k * OFFSET_LYAP Lyapunov times into the series
SERIES_FILE = "mg_17_jitcdde.npy"
CONSTANT_PAST = 0.7206597  # NeuroBench's default initial history


def start_offsets(repeats: int = REPEATS) -> List[float]:
    """Start offsets (in points) of the repeats, as NeuroBench's example computes them.

    Example::

        >>> from snntorch_egru.training._mackey_glass import start_offsets
        >>> start_offsets(4)
        [0.0, 37.5, 75.0, 112.5]
    """
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    return [k * OFFSET_LYAP * PTS_PER_LYAPTIME for k in range(repeats)]


def points_needed(repeats: int = REPEATS) -> int:
    """Series length the repeats read: the last offset plus train + test + 1 points."""
    window = round(TRAIN_LYAP * PTS_PER_LYAPTIME) + round(TEST_LYAP * PTS_PER_LYAPTIME) + 1
    return int(start_offsets(repeats)[-1]) + window


def _nb_mackey_glass():
    try:
        from neurobench.datasets import MackeyGlass
    except ImportError as exc:
        raise ImportError(
            "the mackey-glass task needs NeuroBench's MackeyGlass generator and jitcdde: "
            f'pip install "snntorch-egru[neurobench]" (jitcdde); importing it failed with: {exc}'
        ) from exc
    return MackeyGlass


def generate_series(n_points: int, constant_past: float = CONSTANT_PAST) -> np.ndarray:
    """``n_points`` samples of Mackey-Glass tau = 17 from NeuroBench's own generator (``jitcdde``).

    NeuroBench's ``MackeyGlass.generate_data`` is run with the equation's default parameters
    and train/test lengths that cover ``n_points`` (its constructor would load a file instead,
    so it is built on a placeholder file and then asked to generate). Takes seconds to minutes:
    ``jitcdde`` compiles the equation to C first. Another ``constant_past`` (the initial history)
    gives another trajectory of the same attractor (used to tune models away from the test series).
    """
    if not isinstance(n_points, int) or n_points < 3:
        raise ValueError(f"n_points must be an int >= 3, got {n_points!r}")
    MackeyGlass = _nb_mackey_glass()
    test_pts = 1
    train_pts = n_points - test_pts - 1
    with tempfile.TemporaryDirectory() as tmp:
        placeholder = os.path.join(tmp, "placeholder.npy")
        np.save(placeholder, np.zeros(n_points))
        mg = MackeyGlass(
            file_path=placeholder,
            constant_past=constant_past,
            traintime=train_pts / PTS_PER_LYAPTIME,
            testtime=test_pts / PTS_PER_LYAPTIME,
            download=False,
        )
    if mg.maxtime_pts != n_points:  # pragma: no cover - guards a change of NeuroBench's rounding
        raise RuntimeError(f"NeuroBench's generator would give {mg.maxtime_pts} points, expected {n_points}")
    mg.generate_data()
    return mg.mackeyglass_soln[:, 0].numpy().copy()


def cached_series(data_dir: str, repeats: int = REPEATS, log=print) -> Path:
    """Path of the cached series under ``data_dir``; generated (and said so) when missing or too short."""
    path = Path(data_dir) / "mackey_glass" / SERIES_FILE
    need = points_needed(repeats)
    if path.exists():
        have = np.load(path, mmap_mode="r").shape[0]
        if have >= need:
            return path
        log(f"mackey-glass: {path} holds {have} points, {need} are needed: regenerating")
    log(
        f"mackey-glass: regenerating the tau=17 series ({need} points) with NeuroBench's generator "
        "(jitcdde); solvers differ slightly between machines, so compare only models run on this file"
    )
    series = generate_series(need)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, series)
    os.replace(tmp, path)
    log(f"mackey-glass: series written to {path}")
    return path


@dataclass
class Split:
    """One repeat of the protocol: float64 tensors ``[N, 1]`` of inputs and next-step targets."""

    offset: float
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    dataset: Any  # NeuroBench's MackeyGlass instance (for its test Subset)


def load_split(path: Path, offset: float) -> Split:
    """Repeat at ``offset`` points through NeuroBench's loader (``bin_window = 1``), as its example."""
    MackeyGlass = _nb_mackey_glass()
    from torch.utils.data import Subset

    mg = MackeyGlass(file_path=str(path), start_offset=offset, bin_window=1, download=False)
    need = mg.maxtime_pts
    if mg.mackeyglass_soln.shape[0] < need:
        raise ValueError(f"series {path} is too short for offset {offset}: needs {int(offset) + need} points")
    train_x, train_y = Subset(mg, mg.ind_train)[:]
    test_x, test_y = Subset(mg, mg.ind_test)[:]
    return Split(offset, train_x[:, 0], train_y, test_x[:, 0], test_y, mg)


def windows(x: torch.Tensor, width: int) -> torch.Tensor:
    """Rolling windows ``[N, width]`` of a series ``[N, 1]``: row ``i`` ends with ``x[i]``, zeros before the start.

    This is the input the example's LSTM builds step by step in its ``inp`` buffer.

    Example::

        >>> import torch
        >>> from snntorch_egru.training._mackey_glass import windows
        >>> windows(torch.tensor([[1.], [2.], [3.]]), 2).tolist()
        [[0.0, 1.0], [1.0, 2.0], [2.0, 3.0]]
    """
    pad = torch.cat([x.new_zeros(width - 1, 1), x], 0)[:, 0]
    return pad.unfold(0, width, 1)


def smape(pred: torch.Tensor, target: torch.Tensor) -> float:
    """NeuroBench's sMAPE formula (a hand computation, for checks): ``200 mean |p - t| / (|p| + |t|)``."""
    return float(200 * torch.mean((pred - target).abs() / (pred.abs() + target.abs())))


def mean_sd(values: List[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0
