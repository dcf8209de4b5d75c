"""Data-dependent initialisation: thresholds calibrated so that the first forward pass has a target activity.

The Beta threshold init draws every threshold from one distribution, whatever the operating point of the unit.
At initialisation each unit's internal state ``c`` sits near its own offset (set by the input's constant
part, e.g. an encoder's bias, and the unit's weights), which differs from unit to unit by more than the
sample-to-sample variation. So most units either fire at (almost) every step of every sample or never: the
events carry little about the input and learning stalls until the weights have moved the offsets.

:func:`calibrate_thresholds` sets each unit's threshold from one batch of data so that the unit fires at a
target fraction of (step, sample) pairs (LSUV-style: a data batch sets a statistic of every unit, here the
event rate instead of the variance). Layers are calibrated bottom-up, each by a per-unit bisection of its
thresholds with the network's actual forward pass (resets, recurrence and the layers below included).
With ``input_std`` each layer's input weights are first scaled so that its input drive has that standard
deviation on the batch (the EvNN xavier init gives a narrow input into a wide layer a weak drive, so ``c``
hardly depends on the input). ``snntorch-egru train --threshold-init calibrated`` uses both
(``benchmarks/results/init-calibration-2026-12-06.md`` has the measurements).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from .modules import EGRU

__all__ = ["calibrate_thresholds", "THRESHOLD_INITS"]

#: threshold initialisations of the ``train`` command: ``"calibrated"`` (:func:`calibrate_thresholds` on one
#: training batch) or ``"beta"`` (the Beta draw of mean ``thr_mean`` only, the official code's init)
THRESHOLD_INITS = ("calibrated", "beta")


def _check_args(model: Any, target_activity: Any, iterations: Any, bounds: Any, input_std: Any) -> Tuple[float, float]:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module holding EGRU layers, got {type(model).__name__}")
    if (
        isinstance(target_activity, bool)
        or not isinstance(target_activity, (int, float))
        or not 0.0 < float(target_activity) < 1.0
    ):
        raise ValueError(f"target_activity must be a number strictly between 0 and 1, got {target_activity!r}")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be an integer >= 1, got {iterations!r}")
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ValueError(f"bounds must be a pair of numbers (low, high), got {bounds!r}") from None
    if not lo < hi:
        raise ValueError(f"bounds must satisfy low < high, got {bounds!r}")
    if input_std is not None and (
        isinstance(input_std, bool)
        or not isinstance(input_std, (int, float))
        or not 0 < float(input_std) < float("inf")
    ):
        raise ValueError(f"input_std must be None or a finite number > 0, got {input_std!r}")
    return lo, hi


def _captured_inputs(model: nn.Module, egru: EGRU, run: Callable[[], Any]) -> Tuple[Any, Any]:
    """The ``(x, state)`` that ``egru`` receives when ``run()`` evaluates ``model``."""
    seen: List[Tuple[Any, Any]] = []

    def hook(_mod: nn.Module, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> None:
        if not seen:
            seen.append((args[0], args[1] if len(args) > 1 else kwargs.get("state")))

    handle = egru.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        run()
    finally:
        handle.remove()
    if not seen:
        raise ValueError(
            f"the forward pass of {type(model).__name__} on inputs never called its EGRU layer "
            f"({egru.input_size} -> {egru.hidden_size}); pass the inputs the model takes"
        )
    return seen[0]


def _layer_tensor(egru: EGRU, k: int, name: str) -> torch.Tensor:
    """``egru.layer_tensors(k)[name]`` for a tensor every layer has (``weight_ih``, ``threshold``)."""
    t = egru.layer_tensors(k)[name]
    assert t is not None, name
    return t


def _unit_rates(egru: EGRU, x: Any, state: Any, k: int) -> torch.Tensor:
    """Fraction of (step, sample) pairs at which each unit of layer ``k`` emits an event, ``[H]``."""
    _, _, rec = egru(x, state, return_internals=True)
    o = rec.o[k]
    return (o != 0).to(torch.float64).reshape(-1, o.shape[-1]).mean(0)


def _scale_input_weights(egru: EGRU, x: Any, state: Any, k: int, std: float) -> float:
    """Scale layer ``k``'s ``weight_ih`` so that ``weight_ih @ input`` has standard deviation ``std``; returns
    the standard deviation before."""
    if k == 0:
        inp = x.transpose(0, 1) if egru.batch_first else x
    else:
        inp = egru(x, state, return_internals=True)[2].y[k - 1]
    w = _layer_tensor(egru, k, "weight_ih")
    before = float((inp.reshape(-1, inp.shape[-1]).to(w.dtype) @ w.t()).std())
    if before > 0:
        w.mul_(std / before)
    return before


def _bisect_layer(
    egru: EGRU, x: Any, state: Any, k: int, target: float, lo: float, hi: float, iterations: int
) -> torch.Tensor:
    """Bisect every threshold of layer ``k`` (all units at once) towards ``target``; returns the rates."""
    theta = _layer_tensor(egru, k, "threshold")
    low = torch.full_like(theta, lo)
    high = torch.full_like(theta, hi)
    for _ in range(iterations):
        mid = 0.5 * (low + high)
        theta.copy_(mid)
        too_active = (_unit_rates(egru, x, state, k) > target).to(theta.device)
        low = torch.where(too_active, mid, low)  # a higher threshold lowers the rate
        high = torch.where(too_active, high, mid)
    theta.copy_(0.5 * (low + high))
    return _unit_rates(egru, x, state, k)


def _calibrate_modules(
    model: nn.Module,
    egrus: List[EGRU],
    inputs: Any,
    forward: Any,
    target: float,
    bounds: Tuple[float, float],
    iterations: int,
    input_std: Optional[float],
) -> Tuple[List[float], List[float], List[Optional[float]]]:
    """Every layer of every EGRU module in turn: input drive (optional), then thresholds."""
    lo, hi = bounds
    run = (lambda: model(inputs)) if forward is None else (lambda: forward(model, inputs))
    activity: List[float] = []
    saturated: List[float] = []
    drive: List[Optional[float]] = []
    tol = (hi - lo) * 2.0**-iterations
    for egru in egrus:
        x, state = (inputs, None) if egru is model and forward is None else _captured_inputs(model, egru, run)
        for k in range(egru.num_layers):
            drive.append(None if input_std is None else _scale_input_weights(egru, x, state, k, float(input_std)))
            rates = _bisect_layer(egru, x, state, k, target, lo, hi, iterations)
            theta = _layer_tensor(egru, k, "threshold")
            edge = (theta - lo < tol) | (hi - theta < tol)
            activity.append(float(rates.mean()))
            saturated.append(float(edge.to(torch.float64).mean()))
    return activity, saturated, drive


@torch.no_grad()
def calibrate_thresholds(
    model: nn.Module,
    inputs: Any,
    target_activity: float = 0.1,
    *,
    iterations: int = 16,
    bounds: Sequence[float] = (0.0, 1.0),
    forward: Optional[Callable[[nn.Module, Any], Any]] = None,
    input_std: Optional[float] = None,
) -> Dict[str, Any]:
    """Set every EGRU threshold of ``model`` so that each unit fires at ``target_activity`` on ``inputs``.

    Each unit's threshold is bisected in ``bounds`` until the unit emits an event at about
    ``target_activity`` of the (step, sample) pairs of ``inputs``. The forward passes run in eval mode
    (no dropout, zoneout or DropConnect: the result depends only on the model and the batch) and without
    gradient. EGRU modules are calibrated in module order and the layers of a stacked EGRU bottom-up,
    each with the input that the calibrated layers below now give it. Units whose rate cannot reach the
    target inside ``bounds`` (always firing even at ``high``, or silent even at ``low``) end at that bound.
    Only thresholds change unless ``input_std`` is given: then each layer's input weights are first scaled
    (one factor per layer, LSUV-style) so that the input drive ``weight_ih @ x`` has that standard deviation
    on ``inputs``. The EvNN (xavier-normal) init gives a layer with few inputs and many units a weak drive,
    std ``sqrt(2 / (I + 3H))`` per unit input (0.05 for I = 32, H = 256), so the state ``c`` barely
    depends on the input at the first step.

    Args:
        model: an :class:`~snntorch_egru.EGRU`, or a module holding EGRU layers (e.g. a classifier).
        inputs: one batch of data, as ``model`` takes it (``model(inputs)``, or ``forward(model, inputs)``).
        target_activity: fraction of (step, sample) pairs at which each unit should fire, in (0, 1).
            Default: 0.1.
        iterations: bisection steps per layer (each is one forward pass; the threshold is found to
            ``(high - low) / 2**iterations``). Default: 16.
        bounds: ``(low, high)`` range of the thresholds. Default: ``(0, 1)``, the Beta init's support and
            the range that ``threshold_clamp`` keeps.
        forward: how to run the model on ``inputs`` (default: ``model(inputs)``).
        input_std: if given (> 0), the standard deviation of every layer's input drive after scaling its
            ``weight_ih``. Default: None (weights unchanged).

    Returns:
        ``{"target": target_activity, "activity": [...], "saturated": [...], "input_std_before": [...]}``
        with, per calibrated layer (module order, then layer order), the measured mean activity on
        ``inputs``, the fraction of units left at a bound and the input drive's standard deviation before
        scaling (None without ``input_std``).

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: a bad argument, ``model`` holds no EGRU layer, or its forward pass never reaches one.

    Example::

        >>> import torch
        >>> from snntorch_egru import EGRU
        >>> from snntorch_egru.init import calibrate_thresholds
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> rnn = EGRU(4, 32)
        >>> x = torch.randn(50, 16, 4)                  # [T, B, I]
        >>> report = calibrate_thresholds(rnn, x, target_activity=0.2)
        >>> _, _, rec = rnn(x, return_internals=True)
        >>> abs(rec.o.mean().item() - 0.2) < 0.02       # the events of this batch, counted directly
        True
    """
    lo, hi = _check_args(model, target_activity, iterations, bounds, input_std)
    egrus = [m for m in model.modules() if isinstance(m, EGRU)]
    if not egrus:
        raise ValueError(f"model must hold at least one snntorch_egru.EGRU layer, found none in {type(model).__name__}")
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        activity, saturated, drive = _calibrate_modules(
            model, egrus, inputs, forward, float(target_activity), (lo, hi), iterations, input_std
        )
    finally:
        for m, mode in modes.items():
            m.train(mode)
    return {"target": float(target_activity), "activity": activity, "saturated": saturated, "input_std_before": drive}
