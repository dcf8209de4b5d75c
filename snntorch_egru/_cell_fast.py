"""The event path of one EGRU step without autograd (private): the per-step cell under ``no_grad``.

One call of the native helper ``egru_step`` does the whole step for a few samples: the recurrent
product over the rows of ``W_hh^T`` of the units that fired (:func:`snntorch_egru.sparse.transposed_weight`),
the input product, the gates, the threshold, the reset and the trace. It is reached only in eager
mode, with gradients off, on contiguous CPU float32/float64 tensors of the checked shapes, with a
spike function whose forward is the strict Heaviside step (:class:`~snntorch_egru.surrogate.SpikeFunction`)
and no random masks (training-mode zoneout/DropConnect): everything else, and every trace, compile
or export, runs the plain torch step :func:`snntorch_egru.functional.egru_step`, which this path equals
(checked in float64 by ``tests/test_cell_fast.py``).
"""

from __future__ import annotations

from typing import Any, Optional, cast

import torch

from . import _engine
from ._checks import RESET_CODES
from ._engine import native_library, transposed_weight
from .functional import TRACE_DECAY
from .surrogate import SpikeFunction

#: Largest batch the per-sample event loop serves (larger batches: the dense torch step is faster).
MAX_BATCH = 8

_FLOATS = (torch.float32, torch.float64)


def tracing() -> bool:
    """Whether a trace, ``torch.compile`` or ``torch.export`` is recording (the plain torch step runs then)."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting()


def step_function(dtype: torch.dtype) -> Optional[Any]:
    """The native ``egru_step`` for ``dtype``, or ``None`` (no helper, an old build, another dtype)."""
    if dtype not in _FLOATS:
        return None
    if not _engine._USE_NATIVE:
        return None
    lib = native_library()
    if lib is None:
        return None
    return getattr(lib, "egru_step_f32" if dtype == torch.float32 else "egru_step_f64", None)


#: ``egru_step`` per dtype, looked up once (kept here, not on the modules: ctypes objects do not pickle).
_STEP_FNS: dict[torch.dtype, Any] = {}
_UNKNOWN = object()


def _ok(t: Optional[torch.Tensor], shape: tuple[int, ...], dtype: torch.dtype) -> bool:
    return t is None or (t.shape == shape and t.dtype == dtype and t.device.type == "cpu" and t.is_contiguous())


def try_step(cell: Any, x: torch.Tensor, y: Optional[torch.Tensor], c: Optional[torch.Tensor]) -> Optional[Any]:
    """One step of ``cell`` (an :class:`~snntorch_egru.EGRUCell`) on the native event path, or ``None``
    when this call needs the torch step (gradients on, tracing, training masks, a spike function other
    than the strict Heaviside step, a first call or a new batch size, another dtype, layout or device).

    It reads and writes the cell's parameters and state buffers directly (no module attribute
    machinery per step) and returns what :meth:`EGRUCell.forward` returns. Every tensor's shape,
    dtype, device and contiguity is checked here before a pointer reaches the native helper.
    """
    if torch.is_grad_enabled() or type(x) is not torch.Tensor or cell._layer_observers:
        return None
    if (y is None) != (c is None) or (y is not None and cell.init_hidden):
        return None  # the torch step gives the error
    if not _engine._USE_NATIVE:  # switched off (tests cover the torch path so)
        return None
    fn = _STEP_FNS.get(x.dtype, _UNKNOWN)
    if fn is _UNKNOWN:
        fn = _STEP_FNS[x.dtype] = step_function(x.dtype)
    if fn is None:
        return None
    if (
        (cell.training and (cell.zoneout > 0.0 or cell.dropconnect > 0.0))
        or not isinstance(cell.spike_grad, SpikeFunction)
        or tracing()
    ):
        return None
    params, bufs = cell._parameters, cell._buffers
    w_ih, w_hh, b_ih, b_hh = params["weight_ih"], params["weight_hh"], params.get("bias_ih"), params.get("bias_hh")
    theta = params["threshold"] if "threshold" in params else bufs["threshold"]
    dt = x.dtype
    unbatched = x.dim() == 1
    if unbatched:
        x = x.unsqueeze(0)
    if x.dim() != 2 or x.shape[0] > MAX_BATCH:
        return None
    b, i = x.shape
    h = cell.hidden_size
    state = (y, c, bufs["trace"]) if y is not None else (bufs["y"], bufs["c"], bufs["trace"])
    sshape = (h,) if unbatched else (b, h)
    g3 = torch.Size((3 * h,))
    if not (
        _ok(x, (b, i), dt)
        and _ok(w_ih, (3 * h, i), dt)
        and _ok(w_hh, (3 * h, h), dt)
        and _ok(theta, (h,), dt)
        and _ok(b_ih, g3, dt)
        and _ok(b_hh, g3, dt)
        and all(isinstance(t, torch.Tensor) and _ok(t, sshape, dt) for t in state)
    ):
        return None  # the torch step checks, sizes a new state or raises the clear error
    # the raw threshold, read by the native step itself (clamped there as _effective_threshold does;
    # a NaN propagates as in the torch step): nothing cached, so an edit through .data is seen
    # each entry of state is a Tensor (the isinstance check above); the cast tells mypy so
    y0, c0, tr0 = (cast(torch.Tensor, t).view(b, h) for t in state)
    yn, cn, trn = inference_step(
        fn,
        x,
        y0,
        c0,
        tr0,
        w_ih,
        w_hh,
        b_ih,
        b_hh,
        theta,
        cell.reset_mechanism,
        cell.zoneout if not cell.training else 0.0,
        clamp=cell.threshold_clamp,
    )
    if unbatched:
        yn, cn, trn = yn.view(h), cn.view(h), trn.view(h)
    bufs["y"], bufs["c"], bufs["trace"] = yn, cn, trn
    if cell.init_hidden and not cell.output:
        return yn
    return yn, cn


def inference_step(
    fn: Any, x: torch.Tensor, y: torch.Tensor, c: torch.Tensor, trace: torch.Tensor, w_ih: torch.Tensor,
    w_hh: torch.Tensor, b_ih: Optional[torch.Tensor], b_hh: Optional[torch.Tensor], theta: torch.Tensor, reset: str,
    zoneout_p: float, w_t: Optional[torch.Tensor] = None, clamp: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """``(y, c, trace)`` after one step, from tensors whose shapes, dtype, device and contiguity the
    caller checked (:func:`try_step`, :class:`~snntorch_egru.Streamer`); new tensors, the
    inputs are not written. ``theta`` is clamped to [0, 1] in the step with ``clamp``; a NaN threshold
    makes its unit's outputs NaN. ``w_t`` is a contiguous
    ``W_hh^T`` the caller keeps (default: :func:`~snntorch_egru.sparse.transposed_weight`)."""
    b, h = y.shape
    if w_t is None:
        w_t = transposed_weight(w_hh)
    y_new, c_new, tr_new = torch.empty_like(y), torch.empty_like(y), torch.empty_like(y)
    scratch = torch.empty((2, b, 3 * h), dtype=y.dtype)
    fn(
        b,
        h,
        x.shape[1],
        x.data_ptr(),
        w_ih.data_ptr(),
        b_ih.data_ptr() if b_ih is not None else None,
        y.data_ptr(),
        c.data_ptr(),
        trace.data_ptr(),
        w_t.data_ptr(),
        b_hh.data_ptr() if b_hh is not None else None,
        theta.data_ptr(),
        int(clamp),
        float(zoneout_p),
        RESET_CODES[reset],
        TRACE_DECAY,
        1.0 - TRACE_DECAY,
        y_new.data_ptr(),
        c_new.data_ptr(),
        tr_new.data_ptr(),
        scratch[0].data_ptr(),
        scratch[1].data_ptr(),
    )
    return y_new, c_new, tr_new
