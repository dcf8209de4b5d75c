"""The EGRU math: pure functions on tensors (no modules, no parameters held).

Every module of the package (:class:`~snntorch_egru.EGRUCell`,
:class:`~snntorch_egru.EGRU`, the Norse flavour and the NIR importer) calls the
functions here, so there is exactly one implementation of the model.

Convention (``torch.nn.GRU`` layout, gate order r, z, n)::

    r  = sigmoid(W_ir x + b_ir + W_hr y_prev + b_hr)
    z  = sigmoid(W_iz x + b_iz + W_hz y_prev + b_hz)
    n  = tanh(W_in x + b_in + r * (W_hn y_prev + b_hn))
    c^ = (1 - z) * n + z * c_prev              (zoneout blends c_prev and c^ here)
    o  = H(c^ - theta)          with H(0) = 0 (surrogate gradient in backward)
    y  = o * c^                                 (graded event)
    c  = c^ - o * theta   ("subtract", default)
    c  = c^ * (1 - o)     ("zero")
    c  = c^               ("none")
    trace = 0.9 * trace_prev + 0.1 * y

The recurrent input is the event output ``y``, not ``c``.

Example::

    >>> import torch
    >>> from snntorch_egru import functional as F
    >>> T, B, I, H = 5, 2, 3, 4
    >>> w_ih, w_hh = torch.randn(3 * H, I), torch.randn(3 * H, H)
    >>> b_ih, b_hh, theta = torch.zeros(3 * H), torch.zeros(3 * H), torch.full((H,), 0.1)
    >>> zeros = torch.zeros(B, H)
    >>> y, c, o, tr = F.egru_sequence(torch.randn(T, B, I), zeros, zeros, zeros,
    ...                               w_ih, w_hh, b_ih, b_hh, theta)
    >>> y.shape
    torch.Size([5, 2, 4])
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Union

import torch

from ._checks import RESET_MECHANISMS as _RESET_NAMES
from ._checks import reset_mechanism as _check_reset
from .surrogate import EGRUSurrogate

__all__ = [
    "RESET_MECHANISMS",
    "TRACE_DECAY",
    "LAYER_TENSOR_NAMES",
    "EGRUStepOutput",
    "input_projection",
    "egru_step",
    "egru_step_projected",
    "egru_sequence",
    "apply_reset",
    "pre_reset_state",
    "beta_threshold_init",
    "dropconnect_mask",
    "zoneout_masks",
]

#: Reset mechanisms understood by the EGRU: subtract theta, zero the state, or none
#: (the keys of the package's one reset table, ``snntorch_egru._checks.RESET_CODES``).
RESET_MECHANISMS = _RESET_NAMES

#: The five tensors of one EGRU layer, in the order the functions here take them
#: (``torch.nn.GRU`` names plus the thresholds); modules, checkpoints and NIR nodes use these names.
LAYER_TENSOR_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "threshold")

#: Decay of the output trace (``trace = 0.9 * trace + 0.1 * y``), fixed as in the paper's code.
TRACE_DECAY = 0.9

SpikeFn = Callable[[torch.Tensor], torch.Tensor]


class EGRUStepOutput(NamedTuple):
    """Result of one EGRU step, each ``[B, H]`` (or ``[H]`` unbatched).

    Attributes:
        y: graded events ``o * c_hat`` (the output and the recurrent input).
        c: internal state after the reset.
        o: binary events ``H(c_hat - theta)``.
        trace: exponential moving average of ``y``.

    :func:`egru_sequence` returns the same tuple with ``[T, B, H]`` fields.

    Example::

        >>> import torch
        >>> from snntorch_egru import functional as F
        >>> s = torch.zeros(2, 4)
        >>> out = F.egru_step(torch.randn(2, 3), s, s, s, torch.randn(12, 3), torch.randn(12, 4),
        ...                   None, None, torch.full((4,), 0.2))
        >>> out._fields
        ('y', 'c', 'o', 'trace')
        >>> y, c, o, trace = out                     # unpacks like a tuple
        >>> torch.equal(y, o * (c + o * 0.2))        # y = o * c_hat, c = c_hat - o * theta
        True
    """

    y: torch.Tensor
    c: torch.Tensor
    o: torch.Tensor
    trace: torch.Tensor


def input_projection(x: torch.Tensor, weight_ih: torch.Tensor, bias_ih: Optional[torch.Tensor]) -> torch.Tensor:
    """Input half of the gate pre-activations, ``x W_ih^T + b_ih``.

    Args:
        x: input ``[..., I]`` (one step ``[B, I]`` or a whole sequence ``[T, B, I]``).
        weight_ih: ``[3H, I]`` input weights, rows in gate order (r, z, n).
        bias_ih: ``[3H]`` input bias or ``None``.

    Returns:
        ``[..., 3H]`` projections; computing them for all steps at once with one
        matrix product is how the sequence functions use it.

    Example::

        >>> import torch
        >>> from snntorch_egru.functional import input_projection
        >>> x, w, b = torch.randn(5, 2, 3), torch.randn(12, 3), torch.randn(12)
        >>> gi = input_projection(x, w, b)          # all T = 5 steps at once
        >>> gi.shape
        torch.Size([5, 2, 12])
        >>> torch.allclose(gi[0], x[0] @ w.T + b)
        True
    """
    return torch.nn.functional.linear(x, weight_ih, bias_ih)


def apply_reset(c_hat: torch.Tensor, o: torch.Tensor, threshold: torch.Tensor, reset: str) -> torch.Tensor:
    """Internal state after an event: subtract ``theta``, zero, or keep ``c_hat``.

    Args:
        c_hat: pre-reset state ``[B, H]``.
        o: binary events ``[B, H]``.
        threshold: ``[H]`` thresholds.
        reset: one of :data:`RESET_MECHANISMS`.

    Returns:
        ``[B, H]`` internal state after the reset.

    Raises:
        ValueError: ``reset`` is not one of :data:`RESET_MECHANISMS`.

    Example::

        >>> import torch
        >>> from snntorch_egru.functional import apply_reset
        >>> c_hat, o, theta = torch.tensor([0.8, 0.2]), torch.tensor([1.0, 0.0]), torch.tensor([0.5, 0.5])
        >>> apply_reset(c_hat, o, theta, "subtract")
        tensor([0.3000, 0.2000])
        >>> apply_reset(c_hat, o, theta, "zero")
        tensor([0.0000, 0.2000])
        >>> apply_reset(c_hat, o, theta, "none")
        tensor([0.8000, 0.2000])
    """
    if reset == "subtract":
        return c_hat - o * threshold
    if reset == "zero":
        return c_hat * (1.0 - o)
    if reset == "none":
        return c_hat
    _check_reset(reset)  # raises: not a reset name
    raise AssertionError("unreachable")  # pragma: no cover


def pre_reset_state(y: torch.Tensor, c: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
    """The pre-reset state ``c_hat`` recovered from a step's recorded ``(y, c, o)``.

    A unit that fired sent ``y = c_hat``; one that did not kept ``c = c_hat`` (no reset
    happened). So ``c_hat = where(o > 0, y, c)``, whatever the reset mechanism; backward
    passes and counters use it instead of storing ``c_hat``.

    Args:
        y: graded events, any shape.
        c: internal state after the reset, same shape as ``y``.
        o: binary events, same shape as ``y``.

    Returns:
        ``c_hat``, shaped like ``y``.

    Example::

        >>> import torch
        >>> from snntorch_egru import functional as F
        >>> s = torch.zeros(2, 4)
        >>> theta = torch.full((4,), 0.1)
        >>> gi, w_hh = torch.randn(2, 12), torch.randn(12, 4)
        >>> out = F.egru_step_projected(gi, s, s, s, w_hh, None, theta)
        >>> c_hat = F.pre_reset_state(out.y, out.c, out.o)
        >>> torch.allclose(out.c, F.apply_reset(c_hat, out.o, theta, "subtract"))
        True
    """
    return torch.where(o > 0, y, c)


def egru_step_projected(
    gi: torch.Tensor,
    y_prev: torch.Tensor,
    c_prev: torch.Tensor,
    trace_prev: torch.Tensor,
    weight_hh: torch.Tensor,
    bias_hh: Optional[torch.Tensor],
    threshold: torch.Tensor,
    *,
    spike_fn: Optional[SpikeFn] = None,
    reset: str = "subtract",
    zoneout_mask: Optional[torch.Tensor] = None,
    zoneout_p: float = 0.0,
) -> EGRUStepOutput:
    """One EGRU step given the input projection ``gi = x W_ih^T + b_ih``.

    Args:
        gi: ``[B, 3H]`` input projection of this step (see :func:`input_projection`).
        y_prev: ``[B, H]`` previous events (the recurrent input).
        c_prev: ``[B, H]`` previous internal state (after its reset).
        trace_prev: ``[B, H]`` previous trace.
        weight_hh: ``[3H, H]`` recurrent weights (rows r, z, n), already masked
            when DropConnect is used.
        bias_hh: ``[3H]`` recurrent bias or ``None``.
        threshold: ``[H]`` thresholds ``theta``.
        spike_fn: Heaviside with a surrogate gradient, called on ``c_hat - theta``;
            default: the paper's triangle with gamma 0.7, epsilon 1.0.
        reset: ``"subtract"``, ``"zero"`` or ``"none"``.
        zoneout_mask: training-mode zoneout: ``[B, H]`` 0/1 mask; 1 takes the
            update, 0 keeps ``c_prev``. Takes precedence over ``zoneout_p``.
        zoneout_p: eval-mode zoneout probability: ``c_hat = p c_prev + (1-p) c_hat``.

    Returns:
        :class:`EGRUStepOutput` ``(y, c, o, trace)``.

    Example::

        >>> import torch
        >>> from snntorch_egru import functional as F
        >>> x, s = torch.randn(2, 3), torch.zeros(2, 4)
        >>> w_ih, w_hh, theta = torch.randn(12, 3), torch.randn(12, 4), torch.full((4,), 0.2)
        >>> gi = F.input_projection(x, w_ih, None)
        >>> out = F.egru_step_projected(gi, s, s, s, w_hh, None, theta)
        >>> ref = F.egru_step(x, s, s, s, w_ih, w_hh, None, None, theta)
        >>> out.y.shape, torch.allclose(out.y, ref.y)
        (torch.Size([2, 4]), True)
    """
    if spike_fn is None:
        spike_fn = _DEFAULT_SPIKE
    gh = torch.nn.functional.linear(y_prev, weight_hh, bias_hh)
    i_r, i_z, i_n = gi.chunk(3, dim=-1)
    h_r, h_z, h_n = gh.chunk(3, dim=-1)
    r = torch.sigmoid(i_r + h_r)
    z = torch.sigmoid(i_z + h_z)
    n = torch.tanh(i_n + r * h_n)
    c_hat = n + z * (c_prev - n)  # (1 - z) n + z c_prev
    if zoneout_mask is not None:
        c_hat = c_prev + zoneout_mask * (c_hat - c_prev)
    elif zoneout_p > 0.0:
        c_hat = zoneout_p * c_prev + (1.0 - zoneout_p) * c_hat
    o = spike_fn(c_hat - threshold)
    if o.dtype != c_hat.dtype:  # snnTorch surrogates return float32 whatever the input dtype
        o = o.to(c_hat.dtype)
    y = o * c_hat
    c = apply_reset(c_hat, o, threshold, reset)
    trace = TRACE_DECAY * trace_prev + (1.0 - TRACE_DECAY) * y
    return EGRUStepOutput(y, c, o, trace)


def layer_step(
    weight_hh: torch.Tensor, bias_hh: Optional[torch.Tensor], threshold: torch.Tensor, *,
    spike_fn: Optional[SpikeFn] = None, reset: str = "subtract", zoneout_p: float = 0.0,
) -> Callable[..., EGRUStepOutput]:  # fmt: skip
    """:func:`egru_step_projected` with one layer's recurrent weights and options bound: a function
    ``(gi, y_prev, c_prev, trace_prev, zoneout_mask=None) -> EGRUStepOutput`` (what every loop over time
    runs: :func:`egru_step`, :func:`egru_sequence` and the exporters' scan)."""

    def step(
        gi: torch.Tensor,
        y: torch.Tensor,
        c: torch.Tensor,
        tr: torch.Tensor,
        zoneout_mask: Optional[torch.Tensor] = None,
    ) -> EGRUStepOutput:
        return egru_step_projected(
            gi,
            y,
            c,
            tr,
            weight_hh,
            bias_hh,
            threshold,
            spike_fn=spike_fn,
            reset=reset,
            zoneout_mask=zoneout_mask,
            zoneout_p=zoneout_p,
        )

    return step


def egru_step(
    x: torch.Tensor, y_prev: torch.Tensor, c_prev: torch.Tensor, trace_prev: torch.Tensor, weight_ih: torch.Tensor,
    weight_hh: torch.Tensor, bias_ih: Optional[torch.Tensor], bias_hh: Optional[torch.Tensor], threshold: torch.Tensor,
    *, spike_fn: Optional[SpikeFn] = None, reset: str = "subtract", zoneout_mask: Optional[torch.Tensor] = None,
    zoneout_p: float = 0.0,
) -> EGRUStepOutput:  # fmt: skip
    """One EGRU step from the raw input ``x`` ``[B, I]``.

    Same as :func:`egru_step_projected` after ``gi = input_projection(x, weight_ih, bias_ih)``.

    Example::

        >>> import torch
        >>> from snntorch_egru.functional import egru_step
        >>> H, I = 4, 3
        >>> s = torch.zeros(2, H)
        >>> out = egru_step(torch.randn(2, I), s, s, s, torch.randn(3 * H, I),
        ...                 torch.randn(3 * H, H), None, None, torch.full((H,), 0.2))
        >>> out.y.shape, out.o.dtype
        (torch.Size([2, 4]), torch.float32)
    """
    step = layer_step(weight_hh, bias_hh, threshold, spike_fn=spike_fn, reset=reset, zoneout_p=zoneout_p)
    return step(input_projection(x, weight_ih, bias_ih), y_prev, c_prev, trace_prev, zoneout_mask)


def egru_sequence(
    x: torch.Tensor, y0: torch.Tensor, c0: torch.Tensor, trace0: torch.Tensor, weight_ih: torch.Tensor,
    weight_hh: torch.Tensor, bias_ih: Optional[torch.Tensor], bias_hh: Optional[torch.Tensor], threshold: torch.Tensor,
    *, spike_fn: Optional[SpikeFn] = None, reset: str = "subtract", zoneout_mask: Optional[torch.Tensor] = None,
    zoneout_p: float = 0.0,
) -> EGRUStepOutput:  # fmt: skip
    """Run one EGRU layer over a sequence, step by step (the reference path).

    Autograd records every step; this is the plain PyTorch reference that every
    fast backend is checked against.

    Args:
        x: ``[T, B, I]`` time-first input.
        y0, c0, trace0: ``[B, H]`` initial events, internal state and trace.
        weight_ih, weight_hh, bias_ih, bias_hh, threshold: as in :func:`egru_step`;
            ``weight_hh`` already DropConnect-masked if used.
        zoneout_mask: ``[T, B, H]`` training-mode zoneout masks (1 = update).
        zoneout_p: eval-mode zoneout probability (used when no mask is given).

    Returns:
        :class:`EGRUStepOutput` whose fields are ``[T, B, H]`` sequences of
        ``y``, ``c``, ``o`` and ``trace`` (the final state is the last step).

    Example::

        >>> import torch
        >>> from snntorch_egru import functional as F
        >>> T, B, I, H = 6, 2, 3, 4
        >>> z = torch.zeros(B, H)
        >>> w_ih = torch.randn(3 * H, I, requires_grad=True)
        >>> out = F.egru_sequence(torch.randn(T, B, I), z, z, z, w_ih, torch.randn(3 * H, H),
        ...                       None, None, torch.full((H,), 0.2))
        >>> out.y.shape, set(out.o.unique().tolist()) <= {0.0, 1.0}
        (torch.Size([6, 2, 4]), True)
        >>> out.y.sum().backward()                   # gradients flow through every step
        >>> w_ih.grad.shape
        torch.Size([12, 3])
    """
    gi_all = input_projection(x, weight_ih, bias_ih)
    y, c, tr = y0, c0, trace0
    ys, cs, os_, trs = [], [], [], []
    run_step = layer_step(weight_hh, bias_hh, threshold, spike_fn=spike_fn, reset=reset, zoneout_p=zoneout_p)
    for t in range(x.shape[0]):
        step = run_step(gi_all[t], y, c, tr, None if zoneout_mask is None else zoneout_mask[t])
        y, c, tr = step.y, step.c, step.trace
        ys.append(y)
        cs.append(c)
        os_.append(step.o)
        trs.append(tr)
    if not ys:
        empty = x.new_zeros((0,) + tuple(y0.shape))
        return EGRUStepOutput(empty, empty, empty, empty)
    return EGRUStepOutput(torch.stack(ys), torch.stack(cs), torch.stack(os_), torch.stack(trs))


def beta_threshold_init(
    hidden_size: int,
    thr_mean: float = 0.3,
    *,
    dtype: Optional[torch.dtype] = None,
    device: Optional[Union[torch.device, str]] = None,
) -> torch.Tensor:
    """Thresholds drawn from Beta(alpha, 3) with mean ``thr_mean`` (the official code's init).

    ``alpha = 3 thr_mean / (1 - thr_mean)`` so that ``E[theta] = thr_mean``; all
    values lie in [0, 1].

    Args:
        hidden_size: number of units ``H``.
        thr_mean: mean threshold, strictly between 0 and 1.
        dtype: dtype of the result. Default: ``torch.get_default_dtype()``.
        device: device of the result (drawn on the CPU, then moved; on ``"meta"`` nothing is
            drawn). Default: the default device (``torch.device`` context or
            ``torch.set_default_device``), the CPU unless set.

    Returns:
        ``[H]`` tensor of thresholds (drawn from torch's global random generator).

    Raises:
        ValueError: ``thr_mean`` is not strictly between 0 and 1.

    Example::

        >>> import torch
        >>> from snntorch_egru.functional import beta_threshold_init
        >>> _ = torch.manual_seed(0)
        >>> theta = beta_threshold_init(1000, thr_mean=0.3)
        >>> theta.shape, bool(((theta >= 0) & (theta <= 1)).all())
        (torch.Size([1000]), True)
        >>> round(theta.mean().item(), 1)
        0.3
    """
    if not 0.0 < thr_mean < 1.0:
        raise ValueError(f"thr_mean must lie strictly between 0 and 1, got {thr_mean!r}")
    dtype = torch.get_default_dtype() if dtype is None else dtype
    device = torch.empty(0).device if device is None else torch.device(device)
    if device.type == "meta":  # shapes only (as torch.nn.GRU's parameters on "meta")
        return torch.empty(hidden_size, dtype=dtype, device=device)
    alpha = 3.0 * thr_mean / (1.0 - thr_mean)
    cpu = torch.device("cpu")  # drawn on the CPU whatever the default device: one seed, one draw
    dist = torch.distributions.Beta(
        torch.tensor(alpha, dtype=torch.float64, device=cpu), torch.tensor(3.0, dtype=torch.float64, device=cpu)
    )
    theta = dist.sample((hidden_size,))
    return theta.to(dtype=dtype, device=device)


def dropconnect_mask(weight_hh: torch.Tensor, p: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """DropConnect mask for ``weight_hh``: Bernoulli(1 - p) entries scaled by ``1 / (1 - p)``.

    Drawn once per forward call and shared by all steps and batch elements.
    Multiply it into ``weight_hh`` (``weight_hh * mask``); the scaling keeps the
    expected masked weight equal to ``weight_hh``.

    Args:
        weight_hh: ``[3H, H]`` recurrent weights (only shape, dtype and device are used).
        p: drop probability, in ``[0, 1)``.
        generator: optional ``torch.Generator`` for reproducible masks.

    Returns:
        Mask shaped like ``weight_hh`` with entries ``0`` or ``1 / (1 - p)``.

    Example::

        >>> import torch
        >>> from snntorch_egru.functional import dropconnect_mask
        >>> g = torch.Generator().manual_seed(0)
        >>> mask = dropconnect_mask(torch.ones(12, 4), p=0.5, generator=g)
        >>> mask.shape, sorted(mask.unique().tolist())
        (torch.Size([12, 4]), [0.0, 2.0])
    """
    # drawn row-major whatever the weight's storage layout, so a seed gives one mask
    keep = torch.empty(weight_hh.shape, dtype=weight_hh.dtype, device=weight_hh.device)
    keep.bernoulli_(1.0 - p, generator=generator)
    return keep / (1.0 - p)


def zoneout_masks(
    shape: tuple[int, ...],
    p: float,
    *,
    dtype: torch.dtype,
    device: torch.device,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Training-mode zoneout masks: 1 (take the update) with probability ``1 - p``.

    A 0 entry keeps the unit's previous internal state at that step (see the
    ``zoneout_mask`` argument of :func:`egru_step_projected`).

    Args:
        shape: mask shape, usually ``(T, B, H)`` for :func:`egru_sequence`.
        p: zoneout probability, in ``[0, 1]``.
        dtype: dtype of the masks.
        device: device of the masks.
        generator: optional ``torch.Generator`` for reproducible masks.

    Returns:
        Tensor of ``shape`` with entries 0 or 1 (not rescaled).

    Example::

        >>> import torch
        >>> from snntorch_egru.functional import zoneout_masks
        >>> g = torch.Generator().manual_seed(0)
        >>> m = zoneout_masks((10, 2, 4), 0.25, dtype=torch.float32, device=torch.device("cpu"), generator=g)
        >>> m.shape, sorted(m.unique().tolist())
        (torch.Size([10, 2, 4]), [0.0, 1.0])
    """
    return torch.empty(shape, dtype=dtype, device=device).bernoulli_(1.0 - p, generator=generator)


_DEFAULT_SPIKE = EGRUSurrogate(0.7, 1.0)
