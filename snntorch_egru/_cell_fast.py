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

import sys
import weakref
from typing import Any, Optional, Tuple

import torch

from . import _engine
from ._checks import RESET_CODES
from ._engine import native_library
from .functional import TRACE_DECAY
from .surrogate import SpikeFunction

#: Largest batch the per-sample event loop serves (larger batches: the dense torch step is faster).
MAX_BATCH = 8

_FLOATS = (torch.float32, torch.float64)


def step_function(dtype: torch.dtype) -> Optional[Any]:
    """The native ``egru_step`` for ``dtype`` (the extension module's own Python function, not ctypes:
    it is called once per time step), or ``None`` (no helper, an old build, another dtype)."""
    if _native_function("weight_probe", dtype) is None:  # absent from a helper built before this step
        return None
    module = sys.modules.get(_engine._NATIVE_MODULE)
    return getattr(module, "egru_step_f32" if dtype == torch.float32 else "egru_step_f64", None)


def _native_function(name: str, dtype: torch.dtype) -> Optional[Any]:
    if dtype not in _FLOATS or not _engine._USE_NATIVE:
        return None
    lib = native_library()
    if lib is None:
        return None
    return getattr(lib, f"{name}_f32" if dtype == torch.float32 else f"{name}_f64", None)


#: ``(egru_step, weight_probe)`` per dtype, looked up once (kept here, not on the modules: ctypes
#: objects do not pickle); ``None`` when the helper lacks one of them.
_FNS: dict[torch.dtype, Optional[Tuple[Any, Any]]] = {}


def _functions(dtype: torch.dtype) -> Optional[Tuple[Any, Any]]:
    if dtype not in _FNS:
        step, probe = step_function(dtype), _native_function("weight_probe", dtype)
        _FNS[dtype] = None if step is None or probe is None else (step, probe)
    return _FNS[dtype]


class _Plan:
    """What the event path keeps per cell between steps: a contiguous ``W_hh^T`` copy of the weight it
    was made from (identified by object, storage address and version counter) and that weight's probe
    (one group of four elements from every row, the groups spread over the columns; ``weight_probe``
    in ``_native/egru_native.c``), which the native step compares before it reads the copy: an edit
    through ``.data`` (which keeps the version counter) of any row, of any column or of more than a
    few scattered elements makes the step copy again."""

    __slots__ = ("w_hh", "key", "wt", "probe")

    def __init__(self, w_hh: torch.Tensor, key: tuple, probe: Any) -> None:
        rows, cols = w_hh.shape
        self.w_hh, self.key = w_hh, key
        self.wt = _engine._transpose(w_hh, _engine._native_fns(w_hh.dtype))
        _engine.advise_huge_pages(w_hh)  # the probe reads one group from each of its rows, every step
        self.probe = w_hh.new_empty(rows * min(cols, 4))
        probe(w_hh.data_ptr(), rows, cols, self.probe.data_ptr())


#: One plan per cell (weakly keyed: a cell that is deleted takes its copies with it; nothing is added
#: to the cell itself, so copying or pickling a cell carries no cache).
_PLANS: "weakref.WeakKeyDictionary[Any, _Plan]" = weakref.WeakKeyDictionary()


def _ok(t: Optional[torch.Tensor], shape: tuple[int, ...], dtype: torch.dtype) -> bool:
    return t is None or (t.dtype is dtype and t.is_cpu and t.shape == shape and t.is_contiguous())


def _state_ok(t: Any, shape: tuple[int, ...], dtype: torch.dtype) -> bool:
    return type(t) is torch.Tensor and t.dtype is dtype and t.is_cpu and t.shape == shape and t.is_contiguous()


_is_tracing = torch._C._is_tracing
_is_compiling = torch.compiler.is_compiling
_is_exporting = torch.compiler.is_exporting


def try_step(cell: Any, x: torch.Tensor, y: Optional[torch.Tensor], c: Optional[torch.Tensor]) -> Optional[Any]:
    """One step of ``cell`` (an :class:`~snntorch_egru.EGRUCell`) on the native event path, or ``None``
    when this call needs the torch step (gradients on, tracing, training masks, a spike function other
    than the strict Heaviside step, a first call or a new batch size, another dtype, layout or device).

    It reads and writes the cell's parameters and state buffers directly (no module attribute
    machinery per step) and returns what :meth:`EGRUCell.forward` returns. Every tensor's shape,
    dtype, device and contiguity is checked here before a pointer reaches the native helper; the
    transposed weight copies are checked against their weights by the helper (see :class:`_Plan`).
    (Written for a low cost per call: it runs once per time step.)
    """
    if torch.is_grad_enabled() or type(x) is not torch.Tensor or cell._layer_observers or not _engine._USE_NATIVE:
        return None
    if (y is None) != (c is None) or (y is not None and cell.init_hidden):
        return None  # the torch step gives the error
    dt = x.dtype
    fns = _FNS.get(dt) or _functions(dt)
    if (
        fns is None
        or (cell.training and (cell.zoneout > 0.0 or cell.dropconnect > 0.0))
        or not isinstance(cell.spike_grad, SpikeFunction)
        or _is_compiling()  # first: torch.compile folds it (and could not trace the raw _is_tracing)
        or _is_exporting()
        or _is_tracing()
    ):
        return None
    params, bufs = cell._parameters, cell._buffers
    w_ih, w_hh, b_ih, b_hh = params["weight_ih"], params["weight_hh"], params.get("bias_ih"), params.get("bias_hh")
    theta = params["threshold"] if "threshold" in params else bufs["threshold"]
    unbatched = x.dim() == 1
    if unbatched:
        x = x.unsqueeze(0)
    if x.dim() != 2 or x.shape[0] > MAX_BATCH:
        return None
    b, i = x.shape
    h = cell.hidden_size
    y0, c0, tr0 = (y, c, bufs["trace"]) if y is not None else (bufs["y"], bufs["c"], bufs["trace"])
    sshape = (h,) if unbatched else (b, h)
    g3 = (3 * h,)
    if not (
        w_ih is not None
        and w_hh is not None
        and x.is_cpu  # its dtype is dt and its shape (b, i)
        and x.is_contiguous()
        and _ok(w_ih, (3 * h, i), dt)
        and _ok(w_hh, (3 * h, h), dt)
        and _ok(theta, (h,), dt)
        and _ok(b_ih, g3, dt)
        and _ok(b_hh, g3, dt)
        and _state_ok(y0, sshape, dt)
        and _state_ok(c0, sshape, dt)
        and _state_ok(tr0, sshape, dt)
    ):
        return None  # the torch step checks, sizes a new state or raises the clear error
    assert y0 is not None and c0 is not None and tr0 is not None  # checked above (for the type checker)
    key = (w_hh.data_ptr(), w_hh._version)
    plan = _PLANS.get(cell)
    if plan is None or plan.key != key or plan.w_hh is not w_hh:
        if w_hh.is_inference():
            return None  # no version counter to key a copy on
        plan = _PLANS[cell] = _Plan(w_hh, key, fns[1])
    # the raw threshold, read by the native step itself (clamped there as _effective_threshold does;
    # a NaN propagates as in the torch step): nothing cached, so an edit through .data is seen
    zo = cell.zoneout if not cell.training else 0.0
    args = (x, y0, c0, tr0, w_ih, b_ih, b_hh, theta, cell.reset_mechanism, zo, cell.threshold_clamp)
    out = _run(fns[0], *args, plan.wt, (w_hh, plan.probe))
    if out is None:  # the weight was edited through .data since its copy was made (the probe differs)
        plan = _PLANS[cell] = _Plan(w_hh, key, fns[1])
        out = _run(fns[0], *args, plan.wt, (w_hh, plan.probe))
        if out is None:  # the helper could not allocate its scratch: the torch step
            return None
    yn, cn, trn = out
    bufs["y"], bufs["c"], bufs["trace"] = yn, cn, trn
    if cell.init_hidden and not cell.output:
        return yn
    return yn, cn


def _run(
    fn: Any, x: torch.Tensor, y: torch.Tensor, c: torch.Tensor, trace: torch.Tensor, w_ih: torch.Tensor,
    b_ih: Optional[torch.Tensor], b_hh: Optional[torch.Tensor], theta: torch.Tensor, reset: str, zoneout_p: float,
    clamp: bool, w_hh_t: torch.Tensor, probe: Optional[Tuple[torch.Tensor, torch.Tensor]],
    outs: Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None,
) -> Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:  # fmt: skip
    """``(y, c, trace)`` (shaped as ``y``) after one step, or ``None`` when the helper found the probe
    ``(w_hh, saved)`` changed (or could not allocate its scratch); new tensors (or ``outs``, three
    tensors shaped and laid out as ``y`` that alias no input), the inputs are not written. The caller
    checked every tensor: ``x`` ``[b, I]``, the states ``b * H`` elements, ``w_ih`` ``[3H, I]``,
    ``w_hh_t`` ``[H, 3H]``, all contiguous CPU tensors of one dtype."""
    b, h = x.shape[0], w_hh_t.shape[0]
    y_new, c_new, tr_new = outs if outs is not None else (torch.empty_like(y), torch.empty_like(y), torch.empty_like(y))
    pr = (None, None) if probe is None else (probe[0].data_ptr(), probe[1].data_ptr())
    rc = fn(b, h, x.shape[1], x.data_ptr(), w_ih.data_ptr(), None if b_ih is None else b_ih.data_ptr(),
            y.data_ptr(), c.data_ptr(), trace.data_ptr(), w_hh_t.data_ptr(), None if b_hh is None else b_hh.data_ptr(),
            theta.data_ptr(), int(clamp), float(zoneout_p), RESET_CODES[reset], TRACE_DECAY, 1.0 - TRACE_DECAY,
            y_new.data_ptr(), c_new.data_ptr(), tr_new.data_ptr(), *pr, *_engine.native_split(b * h))  # fmt: skip
    return None if rc else (y_new, c_new, tr_new)


def inference_step(
    fn: Any, x: torch.Tensor, y: torch.Tensor, c: torch.Tensor, trace: torch.Tensor, w_ih: torch.Tensor,
    w_hh_t: torch.Tensor, b_ih: Optional[torch.Tensor], b_hh: Optional[torch.Tensor], theta: torch.Tensor, reset: str,
    zoneout_p: float, clamp: bool = False, outs: Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """``(y, c, trace)`` ``[b, H]`` after one step, from tensors whose shapes, dtype, device and contiguity
    the caller checked (:class:`~snntorch_egru.Streamer`): ``W_ih`` ``[3H, I]`` and a contiguous
    ``W_hh^T`` ``[H, 3H]`` the caller keeps; new tensors, or ``outs`` (the caller's own buffers, shaped and
    laid out as ``y``, aliasing no input); the inputs are not written. ``theta`` is clamped to [0, 1] in
    the step with ``clamp``; a NaN threshold makes its unit's outputs NaN."""
    out = _run(fn, x, y, c, trace, w_ih, b_ih, b_hh, theta, reset, zoneout_p, clamp, w_hh_t, None, outs)
    if out is None:
        raise MemoryError("snntorch_egru: the native step could not allocate its scratch buffer")
    return out
