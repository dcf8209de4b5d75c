"""Truncated back-propagation through time over any EGRU / snnTorch / Norse model.

Public through :mod:`snntorch_egru.interop` (:func:`truncated_bptt`, :class:`TBPTTResult`).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, List, NamedTuple, Optional, Tuple

import torch
from torch import nn

from . import utils
from .modules import EGRU
from .norse import EGRURecurrent

__all__ = ["TBPTTResult", "truncated_bptt"]


class TBPTTResult(NamedTuple):
    """What :func:`truncated_bptt` returns.

    Attributes:
        outputs: the model's outputs over the whole sequence, concatenated along
            time and detached (a tensor, or a tuple of tensors when the model
            returns several per step, e.g. ``snn.Leaky(output=True)``).
        state: the explicit state after the last window (``None`` for models that
            keep their state on themselves), detached.
        losses: the loss of every window (Python floats), empty without ``loss_fn``.

    Example::

        >>> import torch, snntorch_egru as se
        >>> from snntorch_egru.interop import truncated_bptt
        >>> res = truncated_bptt(se.EGRU(3, 8), torch.randn(30, 2, 3), window=10)
        >>> res.outputs.shape, res.state.c.shape, res.losses
        (torch.Size([30, 2, 8]), torch.Size([1, 2, 8]), [])
    """

    outputs: Any
    state: Any
    losses: List[float]


_SEQUENCE_TYPES: Tuple[type, ...] = (EGRU, EGRURecurrent, nn.RNNBase)
_MODES = ("auto", "step", "sequence")


def _takes_state(model: nn.Module) -> bool:
    # Norse's duck typing: a module is stateful when its forward has a parameter named ``state``.
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without signature
        return False
    return "state" in params or isinstance(model, nn.RNNBase)


def _cat(chunks: List[Any]) -> Any:
    first = chunks[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(chunks)
    return tuple(torch.cat([c[i] for c in chunks]) for i in range(len(first)))


def _stack(steps: List[Any]) -> Any:
    first = steps[0]
    if isinstance(first, torch.Tensor):
        return torch.stack(steps)
    return tuple(torch.stack([s[i] for s in steps]) for i in range(len(first)))


def _detach(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return out.detach()
    return tuple(o.detach() for o in out)


def _check_args(
    model: Any, inputs: Any, window: Any, mode: Any, loss_fn: Any, optimizer: Any, targets: Any, per_step_targets: bool
) -> str:
    """Check the arguments of :func:`truncated_bptt`; returns the resolved ``mode``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(inputs, torch.Tensor) or inputs.dim() < 1:
        raise TypeError(f"inputs must be a time-first torch.Tensor [T, B, ...], got {type(inputs).__name__}")
    if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
        raise ValueError(f"window must be a positive int (steps per window), got {window!r}")
    if mode not in _MODES:
        raise ValueError(f"mode must be one of 'auto', 'step', 'sequence', got {mode!r}")
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable or None, got {type(loss_fn).__name__}")
    if optimizer is not None and loss_fn is None:
        raise ValueError("optimizer was given without loss_fn: pass loss_fn to train, or drop the optimizer")
    T = inputs.shape[0]
    if per_step_targets:
        if not isinstance(targets, torch.Tensor) or targets.dim() < 1 or targets.shape[0] != T:
            got = list(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__
            raise ValueError(
                f"with per_step_targets=True, targets must be a tensor with {T} steps in dimension 0 "
                f"(like inputs), got {got}"
            )
    if mode == "auto":
        return "sequence" if isinstance(model, _SEQUENCE_TYPES) else "step"
    return mode


def _call(model: nn.Module, x: torch.Tensor, state: Any, stateful: bool) -> Tuple[Any, Any]:
    """``(out, state)`` of one call: ``model(x, state)`` for explicit-state models, else ``model(x)``."""
    if stateful:
        return model(x, state)
    return model(x), state


def _forward_window(model: nn.Module, xw: torch.Tensor, state: Any, mode: str, stateful: bool) -> Tuple[Any, Any]:
    """One window: a single call (``"sequence"``) or one call per step, stacked along time (``"step"``)."""
    if mode == "sequence":
        return _call(model, xw, state, stateful)
    steps = []
    for x_t in xw:
        o, state = _call(model, x_t, state, stateful)
        steps.append(o)
    return _stack(steps), state


def _train_window(
    out: Any,
    loss_fn: Callable[..., torch.Tensor],
    targets: Any,
    has_targets: bool,
    optimizer: Optional[torch.optim.Optimizer],
) -> float:
    """Back-propagate one window's loss (and step the optimizer); returns the loss value."""
    loss = loss_fn(out, targets) if has_targets else loss_fn(out)
    if optimizer is not None:
        optimizer.zero_grad()
    loss.backward()
    if optimizer is not None:
        optimizer.step()
    return float(loss.detach())


def truncated_bptt(
    model: nn.Module,
    inputs: torch.Tensor,
    window: int,
    *,
    loss_fn: Optional[Callable[..., torch.Tensor]] = None,
    targets: Any = None,
    per_step_targets: bool = False,
    optimizer: Optional[torch.optim.Optimizer] = None,
    state: Any = None,
    mode: str = "auto",
    reset: bool = True,
) -> TBPTTResult:
    """Run a long time-first sequence in windows of ``window`` steps, cutting gradients between windows.

    After every window the stored state of every :class:`~snntorch_egru.EGRUCell` and snnTorch neuron in
    ``model`` is detached (:func:`snntorch_egru.utils.detach_hidden`, model-local, nested modules included),
    and so is the explicit state passed between calls (``EGRU``, Norse-flavour modules,
    ``norse.torch.SequentialState``). The values carry over, so the outputs equal one long run; only the
    gradient stops at the border.

    With ``loss_fn`` each window's loss is back-propagated at once; with an ``optimizer`` the update is
    ``zero_grad(); backward(); step()`` per window, without one the gradients of all windows accumulate in
    ``.grad``.

    Args:
        model: the network. ``mode="step"`` calls it once per step (``model(x_t)`` for snnTorch-style
            models keeping their own state, or ``model(x_t, state) -> (out, state)`` when its ``forward``
            has a ``state`` parameter, e.g. Norse cells or ``SequentialState`` of cells); ``mode="sequence"``
            calls it once per window with ``[window, B, ...]`` (``model(x_w, state) -> (out, state)``, or
            ``model(x_w)``).
        inputs: ``[T, B, ...]`` time-first input.
        window: number of steps per window (the last window may be shorter).
        loss_fn: ``loss_fn(outputs_window, targets_window)`` (or ``loss_fn(outputs_window)`` when
            ``targets`` is None) returning a scalar; snnTorch's losses such as
            ``snntorch.functional.ce_rate_loss()`` fit.
        targets: passed to ``loss_fn`` whole for every window, or sliced along
            dimension 0 with ``per_step_targets=True``.
        per_step_targets: slice ``targets[t0:t1]`` for each window. Default: False.
        optimizer: stepped once per window. Default: None (gradients accumulate).
        state: initial explicit state (``None`` = the model's default).
        mode: ``"auto"`` (``"sequence"`` for ``EGRU``, ``EGRURecurrent`` and ``torch.nn.RNNBase``, else
            ``"step"``), ``"step"`` or ``"sequence"``.
        reset: zero the stored state of every EGRU cell and snnTorch neuron first
            (:func:`snntorch_egru.utils.reset`). Default: True.

    Returns:
        :class:`TBPTTResult` ``(outputs, state, losses)``.

    Example::

        >>> import torch, snntorch as snn, snntorch_egru as se
        >>> from snntorch_egru.interop import truncated_bptt
        >>> net = torch.nn.Sequential(se.EGRUCell(3, 16, init_hidden=True), torch.nn.Linear(16, 2),
        ...                           snn.Leaky(beta=0.9, init_hidden=True, output=True))
        >>> opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        >>> x, labels = torch.randn(40, 8, 3), torch.randint(0, 2, (8,))
        >>> loss_fn = lambda out, tgt: torch.nn.functional.cross_entropy(out[1].sum(0), tgt)
        >>> res = truncated_bptt(net, x, window=10, loss_fn=loss_fn, targets=labels, optimizer=opt)
        >>> len(res.losses), res.outputs[0].shape
        (4, torch.Size([40, 8, 2]))
    """
    mode = _check_args(model, inputs, window, mode, loss_fn, optimizer, targets, per_step_targets)
    stateful = _takes_state(model)
    if reset:
        utils.reset(model)
    T = inputs.shape[0]
    outputs: List[Any] = []
    losses: List[float] = []
    for t0 in range(0, T, window):
        t1 = min(t0 + window, T)
        out, state = _forward_window(model, inputs[t0:t1], state, mode, stateful)
        if loss_fn is not None:
            tw = targets[t0:t1] if per_step_targets else targets
            losses.append(_train_window(out, loss_fn, tw, targets is not None, optimizer))
        outputs.append(_detach(out))
        utils.detach_hidden(model)
        state = utils.detach_state(state)
    result = _cat(outputs) if outputs else inputs.new_zeros((0,))
    return TBPTTResult(result, state, losses)
