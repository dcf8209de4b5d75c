"""The autograd Function shared by the CuPy kernels and their CPU emulator.

Everything that is not the sequential time loop happens here in PyTorch: the
input projection for all steps (one GEMM), the transposed, DropConnect-masked
recurrent weights, and after the backward loop the weight, bias, input and
initial-state gradients (dense GEMMs / reductions over the gate gradients the
kernel wrote; deterministic). A *launcher* runs the two loops: the CuPy
launcher (``_cupy.CupyLauncher``) on the GPU, or the emulator
(``_emulator.EmulatorLauncher``), which executes the kernels' index scheme in
PyTorch on any device and is what the CPU tests check against the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Protocol

import torch

from .._checks import RESET_CODES
from .._op_checks import under_transform

__all__ = ["KernelConfig", "Launcher", "EGRUKernelFunction", "RESET_CODES", "check_tensor", "kernel_forward",
           "kernel_backward"]

_STORE_CODES = {torch.float16: 1, torch.bfloat16: 2}


@dataclass(frozen=True)
class KernelConfig:
    """Scalars of one layer call (everything the kernels take besides pointers)."""

    reset_mode: int
    zoneout_p: float
    gamma: float
    eps: float


class Launcher(Protocol):
    def forward(self, cfg: KernelConfig, t: dict) -> None: ...

    def backward(self, cfg: KernelConfig, t: dict) -> None: ...


def check_tensor(name: str, x: Optional[torch.Tensor], shape: tuple, dtype: torch.dtype,
                 device: torch.device, optional: bool = False) -> None:
    """Check one kernel argument before launch: presence, shape, dtype, device, contiguity.

    Raises ``TypeError`` (not a tensor / wrong dtype) or ``ValueError`` (shape,
    device, layout), naming the argument, what was expected and what was given.
    """
    if x is None:
        if optional:
            return
        raise TypeError(f"kernel argument {name} must be a tensor of shape {list(shape)}, got None")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"kernel argument {name} must be a torch.Tensor, got {type(x).__name__}")
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"kernel argument {name} must have shape {list(shape)}, got {list(x.shape)}")
    if x.dtype != dtype:
        raise TypeError(f"kernel argument {name} must have dtype {dtype}, got {x.dtype}")
    if x.device != device:
        raise ValueError(f"kernel argument {name} must be on device {device}, got {x.device}")
    if not x.is_contiguous():
        raise ValueError(f"kernel argument {name} must be contiguous (row-major), got strides {x.stride()}")


def check_forward_args(t: dict, T: int, B: int, H: int, real: torch.dtype, store: torch.dtype) -> None:
    """Shapes, dtypes, devices and contiguity of every forward-kernel argument."""
    dev = t["gi"].device
    check_tensor("gi", t["gi"], (T, B, 3 * H), real, dev)
    check_tensor("whh_t", t["whh_t"], (H, 3 * H), store, dev)
    check_tensor("bhh", t["bhh"], (3 * H,), real, dev, optional=True)
    check_tensor("theta", t["theta"], (H,), real, dev)
    for k in ("y0", "c0", "tr0"):
        check_tensor(k, t[k], (B, H), real, dev)
    check_tensor("zmask", t["zmask"], (T, B, H), real, dev, optional=True)
    for k in ("y", "c", "o", "tr"):
        check_tensor(k, t[k], (T, B, H), real, dev)
    saved = [t[k] is None for k in ("s_r", "s_z", "s_n", "s_hn")]
    if any(saved) and not all(saved):
        raise ValueError("kernel arguments s_r, s_z, s_n, s_hn must be all tensors or all None")
    for k in ("s_r", "s_z", "s_n", "s_hn"):
        check_tensor(k, t[k], (T, B, H), real, dev, optional=True)


def check_backward_args(t: dict, T: int, B: int, H: int, real: torch.dtype, store: torch.dtype) -> None:
    """Shapes, dtypes, devices and contiguity of every backward-kernel argument."""
    dev = t["y"].device
    check_tensor("whh_t", t["whh_t"], (H, 3 * H), store, dev)
    check_tensor("theta", t["theta"], (H,), real, dev)
    check_tensor("c0", t["c0"], (B, H), real, dev)
    check_tensor("zmask", t["zmask"], (T, B, H), real, dev, optional=True)
    for k in ("y", "c", "o", "s_r", "s_z", "s_n", "s_hn"):
        check_tensor(k, t[k], (T, B, H), real, dev)
    for k in ("g_y", "g_c", "g_o", "g_tr"):
        check_tensor(k, t[k], (T, B, H), real, dev, optional=True)
    check_tensor("ga", t["ga"], (T, B, 3 * H), real, dev)
    check_tensor("gqn", t["gqn"], (T, B, H), real, dev)
    for k in ("dy", "dc", "tb", "dth"):
        check_tensor(k, t[k], (B, H), real, dev)


def _real_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _c(x: Optional[torch.Tensor], dtype: torch.dtype) -> Optional[torch.Tensor]:
    return None if x is None else x.detach().to(dtype).contiguous()


def kernel_forward(launcher: Launcher, cfg: KernelConfig, x, y0, c0, tr0, w_ih, w_eff, b_ih, b_hh, theta,
                   zo_mask, need_saved: bool) -> dict:
    """Prepare the forward-kernel tensors (input projection, ``W_eff^T``), check them, launch.

    ``w_eff`` is the effective (DropConnect-masked) recurrent weight ``[3H, H]``. Returns
    the launcher's tensor dict (``y, c, o, tr`` and, with ``need_saved``, ``s_r, s_z, s_n, s_hn``)."""
    T, B, _ = x.shape
    H = w_eff.shape[1]
    real = _real_dtype(x.dtype)
    store = x.dtype if x.dtype in _STORE_CODES else real
    gi = torch.nn.functional.linear(x.detach().to(real), w_ih.detach().to(real), _c(b_ih, real))
    t = {
        "gi": gi.contiguous(),
        "whh_t": w_eff.detach().to(real).t().contiguous().to(store),
        "bhh": _c(b_hh, real), "theta": _c(theta, real),
        "y0": _c(y0, real), "c0": _c(c0, real), "tr0": _c(tr0, real), "zmask": _c(zo_mask, real),
    }
    for k in ("y", "c", "o", "tr"):
        t[k] = gi.new_empty((T, B, H))
    for k in ("s_r", "s_z", "s_n", "s_hn"):
        t[k] = gi.new_empty((T, B, H)) if need_saved else None
    check_forward_args(t, T, B, H, real, store)
    launcher.forward(cfg, t)
    return t


def kernel_backward(launcher: Launcher, cfg: KernelConfig, whh_t, theta, c0, zmask, y, c, o, s_r, s_z, s_n,
                    s_hn, g_y, g_c, g_o, g_tr):
    """Check and launch the backward kernel; returns ``(ga, gqn, dc, tb, dth)`` for
    :func:`snntorch_egru._grad.grad_products` (the gradient products shared by every launcher)."""
    T, B, H = y.shape
    real = y.dtype
    t = {
        "whh_t": whh_t, "theta": theta, "c0": c0, "zmask": zmask, "y": y, "c": c, "o": o,
        "s_r": s_r, "s_z": s_z, "s_n": s_n, "s_hn": s_hn,
        "g_y": _c(g_y, real), "g_c": _c(g_c, real), "g_o": _c(g_o, real), "g_tr": _c(g_tr, real),
        "ga": y.new_empty((T, B, 3 * H)), "gqn": y.new_empty((T, B, H)),
        "dy": y.new_zeros((B, H)), "dc": y.new_zeros((B, H)), "tb": y.new_zeros((B, H)),
        "dth": y.new_zeros((B, H)),
    }
    check_backward_args(t, T, B, H, real, whh_t.dtype)
    launcher.backward(cfg, t)
    return t["ga"], t["gqn"], t["dc"], t["tb"], t["dth"]


class EGRUKernelFunction(torch.autograd.Function):
    """``(x, y0, c0, trace0, w_ih, w_hh, b_ih, b_hh, theta, dc_mask, zo_mask) -> (y, c, o, trace)``.

    Same contract as :func:`snntorch_egru.functional.egru_sequence` (with the
    DropConnect mask applied inside); all four outputs are differentiable (once:
    the backward is not itself differentiable). The gradient products after the
    backward loop are :func:`snntorch_egru._grad.grad_products`, shared with the
    ``snntorch_egru::egru_layer`` operator. ``torch.func`` transforms and forward-mode AD are
    refused with a clear error (the ``"cupy"`` backend itself switches to the reference math there).
    """

    @classmethod
    def apply(cls, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if under_transform(*(a for a in args if isinstance(a, torch.Tensor))):
            raise RuntimeError(
                "the EGRU kernels (and their CPU emulator) have a backward formula only, so torch.func "
                "transforms (jvp, grad, jacrev, vmap) and forward-mode AD (torch.autograd.forward_ad) cannot "
                "run through them: use EGRU(..., backend='cupy') or 'auto', which switch to the reference math "
                "under these transforms, or backend='reference'")
        return super().apply(*args, **kwargs)

    @staticmethod
    def forward(ctx: Any, x, y0, c0, tr0, w_ih, w_hh, b_ih, b_hh, theta, dc_mask, zo_mask,  # type: ignore[override]
                cfg: KernelConfig, launcher: Launcher):
        T, B, _ = x.shape
        H = w_hh.shape[1]
        real = _real_dtype(x.dtype)
        w_eff = w_hh.detach() if dc_mask is None else w_hh.detach() * dc_mask
        needs_grad = any(ctx.needs_input_grad[:9])
        t = kernel_forward(launcher, cfg, x, y0, c0, tr0, w_ih, w_eff, b_ih, b_hh, theta, zo_mask, needs_grad)
        ctx.cfg, ctx.launcher = cfg, launcher
        # outputs that get no gradient arrive as None (the kernels take null upstream gradients)
        # instead of three materialised [T, B, H] zero tensors
        ctx.set_materialize_grads(False)
        ctx.dtypes = [None if a is None else a.dtype for a in (x, y0, c0, tr0, w_ih, w_hh, b_ih, b_hh, theta)]
        ctx.real, ctx.T, ctx.B, ctx.H = real, T, B, H
        if needs_grad:
            ctx.save_for_backward(x, w_ih, t["whh_t"], dc_mask, t["theta"], t["y0"], t["c0"], t["zmask"],
                                  t["y"], t["c"], t["o"], t["s_r"], t["s_z"], t["s_n"], t["s_hn"])
        out_dtype = x.dtype
        return tuple(t[k].to(out_dtype) for k in ("y", "c", "o", "tr"))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, g_y, g_c, g_o, g_tr):  # type: ignore[override]
        from .._grad import grad_products

        (x, w_ih, whh_t, dc_mask, theta, y0, c0, zmask, y, c, o, s_r, s_z, s_n, s_hn) = ctx.saved_tensors
        real = ctx.real
        ga, gqn, dc, tb, dth = kernel_backward(ctx.launcher, ctx.cfg, whh_t, theta, c0, zmask, y, c, o,
                                               s_r, s_z, s_n, s_hn, g_y, g_c, g_o, g_tr)
        need = list(ctx.needs_input_grad[:9])
        grads = grad_products(ga, gqn, dc, tb, dth, x.detach().to(real), y0, y, w_ih.detach().to(real),
                              whh_t.to(real), need, False)
        if grads[5] is not None and dc_mask is not None:
            grads[5] = grads[5] * dc_mask
        for k, dt in enumerate(ctx.dtypes):
            if grads[k] is not None and dt is not None:
                grads[k] = grads[k].to(dt)
        return (*grads, None, None, None, None)
