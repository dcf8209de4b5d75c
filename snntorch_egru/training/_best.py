"""The parameters of the best validation epoch of a run (in memory and in ``best.pt``).

:class:`BestCheckpoint` keeps the model of the epoch with the best validation metric, so that the
final test uses that model; the runner (:class:`~._run_base._Run`) says which metric and in which
direction (``"min"`` for perplexity, ``"max"`` for accuracy).
"""

from __future__ import annotations

import copy
from typing import Any, Dict, Optional

import torch
from torch import nn

__all__ = ["BestCheckpoint"]


class BestCheckpoint:
    """The parameters of the best validation epoch so far.

    Args:
        path: file written (``torch.save``) each time the metric improves (None: memory only).
        mode: ``"min"`` (perplexity, loss) or ``"max"`` (accuracy).
    """

    def __init__(self, path: Optional[str], mode: str = "min") -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.path, self.mode = path, mode
        self.value: Optional[float] = None
        self.epoch: Optional[int] = None
        self.model_state: Optional[Dict[str, Any]] = None

    def better(self, value: float) -> bool:
        if self.value is None:
            return True
        return value < self.value if self.mode == "min" else value > self.value

    def update(self, value: float, model: nn.Module, epoch: int, write: bool = True) -> bool:
        """Record ``model`` if ``value`` beats the best so far; returns whether it did."""
        if not self.better(value):
            return False
        self.value, self.epoch = float(value), int(epoch)
        self.model_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if write and self.path is not None:
            from .._io import atomic_save

            state = {"epoch": self.epoch, "value": self.value, "model": self.model_state}
            atomic_save(self.path, lambda f: torch.save(state, f))
        return True

    def restore(self, model: nn.Module) -> bool:
        """Load the best parameters into ``model``; False when nothing was recorded."""
        if self.model_state is None:
            return False
        model.load_state_dict(self.model_state)
        return True

    def state_dict(self) -> Dict[str, Any]:
        return {"value": self.value, "epoch": self.epoch, "mode": self.mode, "model": self.model_state}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.value, self.epoch = state.get("value"), state.get("epoch")
        self.mode = state.get("mode", self.mode)
        self.model_state = copy.deepcopy(state.get("model"))
