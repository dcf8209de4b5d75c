"""Backends that run one EGRU layer over a whole sequence.

Every backend implements the same contract as
:func:`snntorch_egru.functional.egru_sequence` and is checked against it in
float64. ``"reference"`` is that function itself (autograd through every step).
Faster backends register themselves here with :func:`register_backend`.

``EGRU(..., backend=...)`` picks one by name; ``"auto"`` asks each registered
backend's ``available(x)`` predicate in priority order and falls back to
``"reference"``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch

from . import functional as F

__all__ = ["LayerCall", "register_backend", "get_backend", "available_backends", "resolve_backend"]


@dataclass
class LayerCall:
    """Everything one layer of one forward call needs (shapes time-first, batched).

    Attributes:
        x: ``[T, B, I]`` layer input.
        y0, c0, trace0: ``[B, H]`` initial state.
        weight_ih, weight_hh, bias_ih, bias_hh, threshold: the layer's tensors
            (``threshold`` already clamped if the module clamps it).
        spike_fn: Heaviside with surrogate gradient.
        reset: reset mechanism.
        dropconnect_mask: ``[3H, H]`` scaled mask multiplied into ``weight_hh`` or ``None``.
        zoneout_mask: ``[T, B, H]`` training masks (1 = update) or ``None``.
        zoneout_p: eval-mode zoneout probability.
        input_is_events: the input is the (sparse) event output of a lower EGRU layer.
        layer_index: index of the layer in its stack (for counters).
        counters: a :class:`snntorch_egru.metrics`-style recorder or ``None``.
    """

    x: torch.Tensor
    y0: torch.Tensor
    c0: torch.Tensor
    trace0: torch.Tensor
    weight_ih: torch.Tensor
    weight_hh: torch.Tensor
    bias_ih: Optional[torch.Tensor]
    bias_hh: Optional[torch.Tensor]
    threshold: torch.Tensor
    spike_fn: Callable[[torch.Tensor], torch.Tensor]
    reset: str = "subtract"
    dropconnect_mask: Optional[torch.Tensor] = None
    zoneout_mask: Optional[torch.Tensor] = None
    zoneout_p: float = 0.0
    input_is_events: bool = False
    layer_index: int = 0
    counters: Optional[object] = None


BackendFn = Callable[[LayerCall], F.EGRUStepOutput]


@dataclass
class _Backend:
    name: str
    run: BackendFn
    available: Callable[[LayerCall], bool]
    priority: int


_REGISTRY: Dict[str, _Backend] = {}


def register_backend(
    name: str, run: BackendFn, available: Optional[Callable[[LayerCall], bool]] = None, priority: int = 0
) -> None:
    """Register a backend under ``name``.

    Args:
        name: the string users pass as ``EGRU(..., backend=name)``.
        run: function ``LayerCall -> EGRUStepOutput`` of ``[T, B, H]`` sequences.
        available: predicate telling ``"auto"`` whether this backend handles a call.
        priority: ``"auto"`` tries higher priorities first.
    """
    _REGISTRY[name] = _Backend(name, run, available or (lambda call: True), priority)


def get_backend(name: str) -> _Backend:
    """The registered backend ``name`` (``ValueError`` listing the known names otherwise)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"backend must be 'auto' or one of {sorted(_REGISTRY)}, got {name!r}"
        ) from None


def available_backends() -> List[str]:
    """Names of the registered backends."""
    return sorted(_REGISTRY)


def resolve_backend(name: str, call: LayerCall) -> _Backend:
    """The backend that runs ``call``: ``name`` itself, or the best available one for ``"auto"``."""
    if name != "auto":
        return get_backend(name)
    for backend in sorted(_REGISTRY.values(), key=lambda b: -b.priority):
        if backend.name != "reference" and backend.available(call):
            return backend
    return _REGISTRY["reference"]


def _run_reference(call: LayerCall) -> F.EGRUStepOutput:
    w_hh = call.weight_hh if call.dropconnect_mask is None else call.weight_hh * call.dropconnect_mask
    return F.egru_sequence(
        call.x, call.y0, call.c0, call.trace0,
        call.weight_ih, w_hh, call.bias_ih, call.bias_hh, call.threshold,
        spike_fn=call.spike_fn, reset=call.reset,
        zoneout_mask=call.zoneout_mask, zoneout_p=call.zoneout_p,
    )


register_backend("reference", _run_reference, priority=-1)
