"""The EGRU layer as one PyTorch custom operator (private; used by every fast backend).

``torch.ops.snntorch_egru.egru_layer`` runs one layer over a whole sequence and
``torch.ops.snntorch_egru.egru_layer_backward`` is its backward. Both are
registered with :mod:`torch.library` (schema, fake/meta implementation, autograd
formula, autocast rule), so ``torch.compile`` (also ``fullgraph=True``),
``torch.export`` and ``torch.jit.trace`` see two opaque nodes with the right
shapes and never trace into the native helper or the CuPy kernels.

Layout of one call::

    wrapper (egru_layer_call)     ordinary torch ops: checks, DropConnect mask, threshold clamp
        |                         and broadcast, autocast -> float32, spike function -> (gamma, eps)
        v
    egru_layer (custom op)        launcher ``impl``: IMPL_TORCH = the CPU launcher (sparse.py: native
        |                         helper or torch ops), IMPL_CUPY = the CuPy kernels, 2.. = a kernel
        |                         launcher registered in cuda/_function.py (the emulator)
        |  returns y, c, o, trace and the saved gates (r|z, n, W_hn y + b_hn); W_eff^T is
        |  not an output (the backward rebuilds it from the saved w_hh: _engine.transposed_weight)
        v
    egru_layer_backward           a *launcher* runs the sequential backward loop and writes the
                                  per-step gate gradients ``ga`` [T, B, 3H] (input side),
                                  ``gqn`` [T, B, H] (recurrent n block), the carried ``dc``,
                                  trace gradient and ``dtheta``; :func:`grad_products` turns
                                  them into every parameter/input gradient (written once for
                                  all launchers).

The backends ``"torch"`` and ``"cupy"`` are registered here (``cuda/`` never imports this module);
each names one launcher.

Spike functions: the op covers the paper's triangle (``gamma > 0``) and the
gradient-free Heaviside (``gamma = 0``); any other spike function runs the
step-by-step reference (:func:`snntorch_egru.functional.egru_sequence`).
"""

from __future__ import annotations

import collections
import inspect
import sys
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor

from . import functional as F
from . import sparse
from ._cpu_backward import cpu_backward
from ._engine import exporting_to_onnx, real_dtype, transposed_weight, under_transform
from ._grad import grad_products
from ._onnx import egru_sequence_export
from .backends import LayerCall, check_layer_args, register_backend, zero_length
from .cuda import _function as _kernels  # (a module: the tests spy on its launch functions)
from .cuda import available as cupy_available_for
from .cuda import kernel_launcher as launcher
from .cuda import supports as cupy_supports
from .cuda._function import IMPL_CUPY, IMPL_TORCH, KernelConfig, requested_impl
from .surrogate import kernel_params as surrogate_params

# ------------------------------------------------------------------------------------------
# launchers behind the op: CPU (sparse.py: native helper or pure torch) and CUDA (CuPy)


def _cpu_forward(x, y0, c0, tr0, w_ih, w_hh, b_ih, b_hh, theta, zo, zoneout_p, reset, input_is_events, need_saved):
    real = real_dtype(x.dtype)
    # below autograd (inside the op): conversions only where needed, each a no-op call otherwise
    args = [
        t if t is None or (t.dtype is real and t.is_contiguous()) else t.to(real).contiguous()
        for t in (x, y0, c0, tr0, w_ih, b_ih, b_hh, theta, zo)
    ]
    x, y0, c0, tr0, w_ih, b_ih, b_hh, theta, zo = args
    w_hh = w_hh if w_hh.dtype is real else w_hh.to(real)  # any layout: W_hh^T cached (_engine.transposed_weight)
    H = w_hh.shape[1]
    if b_ih is None:
        b_ih = x.new_zeros(3 * H)
    if b_hh is None:
        b_hh = x.new_zeros(3 * H)
    return sparse._run_forward(
        reset, zoneout_p, input_is_events, x, y0, c0, tr0, w_ih, w_hh, b_ih, b_hh, theta, zo, need_cache=need_saved
    )


def _kernel_forward(impl, x, y0, c0, tr0, w_ih, w_hh, b_ih, b_hh, theta, zo, zoneout_p, reset, gamma, eps, need_saved):
    cfg = KernelConfig(reset_mode=int(reset), zoneout_p=float(zoneout_p), gamma=float(gamma), eps=float(eps))
    t = _kernels.kernel_forward(launcher(impl), cfg, x, y0, c0, tr0, w_ih, w_hh, b_ih, b_hh, theta, zo, need_saved)
    if need_saved:
        rz = torch.cat([t["s_r"], t["s_z"]], -1)
        return t["y"], t["c"], t["o"], t["tr"], rz, t["s_n"], t["s_hn"]
    return t["y"], t["c"], t["o"], t["tr"]


def _empty(ref: torch.Tensor) -> torch.Tensor:
    return ref.new_empty(0)


_OpOut = Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]
_GradOut = Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]
OptTensor = Optional[Tensor]


# The operators' signatures are their schemas (torch.library reads the annotations); the fake kernels and
# the autograd context read the same arguments by name through tuples built from these signatures.
def _egru_layer(
    x: Tensor, y0: Tensor, c0: Tensor, trace0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: OptTensor,
    b_hh: OptTensor, theta: Tensor, zoneout_mask: OptTensor, zoneout_p: float, reset: int, gamma: float, eps: float,
    input_is_events: bool, need_saved: bool, impl: int = 0,
) -> _OpOut:  # fmt: skip
    """One EGRU layer over ``[T, B, I]`` -> ``(y, c, o, trace, rz, n, hn, w_t)`` (rz, n, hn: saved state;
    w_t: always empty, kept in the schema). ``impl``: ``IMPL_TORCH`` (the CPU launcher: torch ops on any
    device, the native helper on the CPU), ``IMPL_CUPY`` or a registered kernel launcher (``cuda._function``)."""
    tensors = (x, y0, c0, trace0, w_ih, w_hh, b_ih, b_hh, theta, zoneout_mask)
    if impl == IMPL_TORCH:
        res = _cpu_forward(*tensors, zoneout_p, reset, input_is_events, need_saved)
    else:
        res = _kernel_forward(impl, *tensors, zoneout_p, reset, gamma, eps, need_saved)
    dt = x.dtype
    y, c, o, tr = (t.to(dt) for t in res[:4])
    if need_saved:
        # W_hh^T is not an output (it may be a view of w_hh or a cached copy, and an op output may
        # alias neither): the backward takes it from the saved w_hh (_engine.transposed_weight)
        return (y, c, o, tr, res[4], res[5], res[6], _empty(res[4]))
    e = _empty(res[0])
    return y, c, o, tr, e, e.clone(), e.clone(), e.clone()


def _egru_layer_backward(
    g_y: OptTensor, g_c: OptTensor, g_o: OptTensor, g_tr: OptTensor, x: Tensor, y0: Tensor, c0: Tensor,
    w_ih: Tensor, theta: Tensor, zoneout_mask: OptTensor, y: Tensor, c: Tensor, o: Tensor, rz: Tensor, n: Tensor,
    hn: Tensor, w_t: Tensor, zoneout_p: float, reset: int, gamma: float, eps: float, input_is_events: bool,
    need: List[bool], impl: int = 0,
) -> _GradOut:  # fmt: skip
    """Gradients of ``egru_layer`` w.r.t. ``(x, y0, c0, trace0, w_ih, w_hh, b_ih, b_hh, theta)``.

    Missing upstream gradients are ``None`` (the CUDA kernels skip them; the CPU loop gets
    zeros). Entries not in ``need`` are empty tensors."""
    real = w_t.dtype
    g_y, g_c, g_o, g_tr, zo = (_optional_in(t, real) for t in (g_y, g_c, g_o, g_tr, zoneout_mask))
    xr, y0r, c0r, w_ihr, thr, yr, cr, or_ = (_in(t, real) for t in (x, y0, c0, w_ih, theta, y, c, o))
    if impl == IMPL_TORCH:
        g_y, g_c, g_o, g_tr = (torch.zeros_like(yr) if g is None else g for g in (g_y, g_c, g_o, g_tr))
        ga, gqn, dc, tb, dth = cpu_backward(
            gamma, eps, reset, zoneout_p, g_y, g_c, g_o, g_tr, y0r, c0r, thr, zo, yr, cr, or_, rz, n, hn, w_t, need[8]
        )
    else:
        cfg = KernelConfig(reset_mode=int(reset), zoneout_p=float(zoneout_p), gamma=float(gamma), eps=float(eps))
        H = w_t.shape[0]
        s_r, s_z = rz[..., :H].contiguous(), rz[..., H:].contiguous()
        saved = (yr, cr, or_, s_r, s_z, n, hn)
        ga, gqn, dc, tb, dth = _kernels.kernel_backward(
            launcher(impl), cfg, w_t, thr, c0r, zo, *saved, g_y, g_c, g_o, g_tr
        )
    grads = grad_products(ga, gqn, dc, tb, dth, xr, y0r, yr, w_ihr, w_t, need, input_is_events)
    dtypes = (x.dtype, y0.dtype, c0.dtype, y0.dtype, w_ih.dtype, w_ih.dtype, w_ih.dtype, w_ih.dtype, theta.dtype)
    # strides as the fake declares: dW_hh (and dW_ih from events) are transposed views
    transposed = {5} | ({4} if input_is_events else set())
    return tuple(  # type: ignore[return-value]
        _empty(x) if g is None else _layout(g.to(dt), k in transposed) for k, (g, dt) in enumerate(zip(grads, dtypes))
    )


def _argument_tuple(fn: Callable[..., Any]) -> Any:
    """A named tuple of ``fn``'s parameters (with its defaults): the op's arguments by name."""
    params = inspect.signature(fn).parameters.values()
    defaults = [p.default for p in params if p.default is not inspect.Parameter.empty]
    return collections.namedtuple(f"{fn.__name__}_args", [p.name for p in params], defaults=defaults)


_LayerArgs = _argument_tuple(_egru_layer)
_GradArgs = _argument_tuple(_egru_layer_backward)
egru_layer_op = torch.library.custom_op("snntorch_egru::egru_layer", mutates_args=())(_egru_layer)
egru_layer_backward_op = torch.library.custom_op("snntorch_egru::egru_layer_backward", mutates_args=())(
    _egru_layer_backward
)


def _in(t: Tensor, real: torch.dtype) -> Tensor:
    """``t`` detached, in ``real`` and contiguous (the backward's working copy)."""
    return t.detach().to(real).contiguous()


def _optional_in(t: OptTensor, real: torch.dtype) -> OptTensor:
    """:func:`_in` of a tensor that may be missing (``None`` stays ``None``)."""
    return None if t is None else _in(t, real)


@egru_layer_op.register_fake
def _(*args: Any, **kwargs: Any) -> _OpOut:
    a = _LayerArgs(*args, **kwargs)
    x = a.x
    T, B, _ = x.shape
    H = a.w_hh.shape[1]
    real = real_dtype(x.dtype)
    outs = [x.new_empty(T, B, H) for _ in range(4)]
    if a.need_saved:
        shapes: List[Tuple[int, ...]] = [(T, B, 2 * H), (T, B, H), (T, B, H), (0,)]
    else:
        shapes = [(0,)] * 4
    return (*outs, *(x.new_empty(s, dtype=real) for s in shapes))


def _layout(g: Tensor, transposed: bool) -> Tensor:
    if transposed:
        return g if g.t().is_contiguous() else g.t().contiguous().t()
    return g.contiguous()


@egru_layer_backward_op.register_fake
def _(*args: Any, **kwargs: Any) -> _GradOut:
    a = _GradArgs(*args, **kwargs)
    T, B, I = a.x.shape
    H = a.y0.shape[-1]
    shapes = [(T, B, I), (B, H), (B, H), (B, H), (3 * H, I), (3 * H, H), (3 * H,), (3 * H,), (H,)]
    refs = [a.x, a.y0, a.c0, a.y0, a.w_ih, a.w_ih, a.w_ih, a.w_ih, a.theta]
    transposed = {5} | ({4} if a.input_is_events else set())
    return tuple(
        (r.new_empty(s[::-1]).t() if i in transposed else r.new_empty(s)) if k else r.new_empty(0)
        for i, (s, r, k) in enumerate(zip(shapes, refs, a.need))
    )


def _setup_context(ctx: Any, inputs: Tuple[Any, ...], output: Tuple[Tensor, ...]) -> None:
    a = _LayerArgs(*inputs)
    y, c, o, tr, rz, n, hn, w_t = output
    if not a.need_saved:
        ctx.unusable = True
        return
    ctx.unusable = False
    ctx.save_for_backward(a.x, a.y0, a.c0, a.w_ih, a.theta, a.zoneout_mask, y, c, o, rz, n, hn, a.w_hh)
    ctx.scalars = (a.zoneout_p, a.reset, a.gamma, a.eps, a.input_is_events)
    ctx.impl = a.impl
    ctx.has_bias = (a.b_ih is not None, a.b_hh is not None)
    ctx.set_materialize_grads(False)  # missing sequence gradients reach the backward op as None


def _saved_w_t(w_hh: Tensor, real: torch.dtype) -> Tensor:
    """Contiguous ``W_hh^T`` [H, 3H] in ``real`` of the saved weight (the forward's cached copy on the CPU)."""
    if w_hh.device.type == "cpu" and w_hh.dtype == real:
        return transposed_weight(w_hh)
    return w_hh.detach().to(real).t().contiguous()


def _backward(ctx: Any, g_y: OptTensor, g_c: OptTensor, g_o: OptTensor, g_tr: OptTensor, *_saved: Any) -> Tuple:
    if ctx.unusable:
        raise RuntimeError(
            "snntorch_egru::egru_layer was called with need_saved=False; its outputs cannot be differentiated"
        )
    if torch.is_grad_enabled():
        raise RuntimeError(
            "the EGRU operator's backward is not differentiable (double backward / create_graph=True); "
            "use EGRU(..., backend='reference') for higher-order gradients"
        )
    x, y0, c0, w_ih, theta, zoneout_mask, y, c, o, rz, n, hn, w_hh = ctx.saved_tensors
    w_t = _saved_w_t(w_hh, rz.dtype)
    need = [bool(k) for k in ctx.needs_input_grad[:9]]
    need[6] = need[6] and ctx.has_bias[0]
    need[7] = need[7] and ctx.has_bias[1]
    grads = torch.ops.snntorch_egru.egru_layer_backward(
        g_y, g_c, g_o, g_tr, x, y0, c0, w_ih, theta, zoneout_mask, y, c, o, rz, n, hn, w_t, *ctx.scalars, need, ctx.impl
    )
    out = [g if k else None for g, k in zip(grads, need)]
    return (*out, *([None] * (len(_LayerArgs._fields) - len(out))))


egru_layer_op.register_autograd(_backward, setup_context=_setup_context)
# Under autocast the recurrence runs in float32 (as torch.nn.GRU does on the CPU) and returns float32.
for _dev in ("cpu", "cuda"):
    torch.library.register_autocast("snntorch_egru::egru_layer", _dev, torch.float32)
    torch.library.register_autocast("snntorch_egru::egru_layer_backward", _dev, torch.float32)


# ------------------------------------------------------------------------------------------
# the wrapper the backends call


def _dynamo_off_when_loaded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``torch._dynamo.disable(fn)``, but without importing ``torch._dynamo`` while nothing has loaded it.

    torch wraps every custom-op kernel in ``torch._disable_dynamo``, which imports ``torch._dynamo``
    (~500 modules, ~0.5 s, ~160 MiB) on the first eager call. Dynamo's frame hook can only be
    installed by ``torch._dynamo`` itself, so while that module is not loaded the disable is a no-op
    and ``fn`` runs directly; once it is (``torch.compile``, ``torch.export``) every call goes through
    the real ``torch._dynamo.disable``, exactly as torch would.
    """
    disabled: list = []

    def call(*args: Any, **kwargs: Any) -> Any:
        if "torch._dynamo" not in sys.modules:
            return fn(*args, **kwargs)
        if not disabled:
            import torch._dynamo

            disabled.append(torch._dynamo.disable(fn, True, wrapping=False))
        return disabled[0](*args, **kwargs)

    return call


def _eager_calls_without_dynamo(op: Any) -> None:
    """Pre-fill the cache of torch's lazy ``_disable_dynamo`` wrapper around each kernel of ``op``.

    Relies on torch internals (``CustomOpDef._backend_fns``, ``functools.wraps``' ``__wrapped__`` and the
    ``__dynamo_disable`` cache attribute of ``torch/_compile.py``); if they change, nothing is done and
    the first eager call imports ``torch._dynamo`` as before (``tests/test_cold_start.py`` notices).
    """
    for kernel in getattr(op, "_backend_fns", {}).values():
        inner = getattr(kernel, "__wrapped__", None)
        if inner is not None and getattr(inner, "__dynamo_disable", None) is None:
            setattr(inner, "__dynamo_disable", _dynamo_off_when_loaded(inner))


_eager_calls_without_dynamo(egru_layer_op)
_eager_calls_without_dynamo(egru_layer_backward_op)


def egru_layer_call(call: LayerCall, impl: int = IMPL_TORCH) -> F.EGRUStepOutput:
    """Checked entry point: one layer call through the operator with launcher ``impl`` (or the reference math
    where the operator cannot run it: another spike function, another device, a ``torch.func`` transform)."""
    reset = call.reset_code  # ValueError naming "reset" for an unknown mechanism
    check_layer_args(call)
    x, y0, c0, trace0 = call.x, call.y0, call.c0, call.trace0
    w_ih, b_ih, b_hh = call.weight_ih, call.bias_ih, call.bias_hh
    w_hh = call.weight_hh
    H = w_hh.shape[1]
    if call.dropconnect_mask is not None:
        w_hh = w_hh * call.dropconnect_mask.to(w_hh.dtype)
    th = call.threshold
    theta = th.reshape(-1).expand(H) if th.dim() == 0 or th.numel() == 1 else th
    zo = None if call.zoneout_mask is None else call.zoneout_mask.to(x.dtype)
    zo_p = 0.0 if zo is not None else float(call.zoneout_p)
    if x.shape[0] == 0:
        return zero_length(x, y0, w_ih, call.weight_hh)
    params = call.kernel_params if call.kernel_params is not None else surrogate_params(call.spike_fn)
    tensors = (x, y0, c0, trace0, w_ih, w_hh, b_ih, b_hh, theta)
    options: Dict[str, Any] = {"spike_fn": call.spike_fn, "reset": call.reset, "zoneout_mask": zo, "zoneout_p": zo_p}
    if exporting_to_onnx():  # one scan over time: the ONNX graph keeps a dynamic sequence length
        return egru_sequence_export(*tensors, **options)
    if (
        params is None
        or x.device.type not in ("cpu", "cuda")
        or (impl != IMPL_TORCH and x.shape[1] == 0)
        or under_transform(*tensors)
    ):
        # any other spike function, another device, no samples for a kernel, or a torch.func transform /
        # forward-mode AD (the operator has a backward formula only): the step-by-step decomposition
        return F.egru_sequence(*tensors, **options)
    need_saved = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    input_is_events = bool(call.input_is_events)
    res = torch.ops.snntorch_egru.egru_layer(
        *tensors, zo, zo_p, reset, params[0], params[1], input_is_events, need_saved, impl
    )
    return F.EGRUStepOutput(res[0], res[1], res[2], res[3])


# ------------------------------------------------------------------------------------------
# the backends that run the operator: one name per launcher


def _run_torch(call: LayerCall) -> F.EGRUStepOutput:
    return egru_layer_call(call, IMPL_TORCH)


def _run_cupy(call: LayerCall) -> F.EGRUStepOutput:
    impl = requested_impl()  # a launcher passed to snntorch_egru.cuda.run (the emulator), else the kernels
    if impl is None:
        reason = cupy_supports(call)
        if reason is not None:
            raise RuntimeError(reason)
        impl = IMPL_CUPY
    return egru_layer_call(call, impl)


# "torch": the CPU launcher (the native helper on the CPU; its torch ops on any device when named explicitly)
register_backend(
    "torch", _run_torch, available=lambda call: call.x.device.type == "cpu", priority=10, device_type="cpu"
)
# "cupy": the CuPy kernels (CUDA tensors; a launcher given to snntorch_egru.cuda.run on any device)
register_backend("cupy", _run_cupy, available=cupy_available_for, priority=20, device_type="cuda")
