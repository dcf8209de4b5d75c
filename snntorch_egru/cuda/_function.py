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

from ..functional import TRACE_DECAY

__all__ = ["KernelConfig", "Launcher", "EGRUKernelFunction", "RESET_CODES", "check_tensor"]

RESET_CODES = {"subtract": 0, "zero": 1, "none": 2}
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


class EGRUKernelFunction(torch.autograd.Function):
    """``(x, y0, c0, trace0, w_ih, w_hh, b_ih, b_hh, theta, dc_mask, zo_mask) -> (y, c, o, trace)``.

    Same contract as :func:`snntorch_egru.functional.egru_sequence` (with the
    DropConnect mask applied inside); all four outputs are differentiable.
    """

    @staticmethod
    def forward(ctx: Any, x, y0, c0, tr0, w_ih, w_hh, b_ih, b_hh, theta, dc_mask, zo_mask,  # type: ignore[override]
                cfg: KernelConfig, launcher: Launcher):
        T, B, _ = x.shape
        H = w_hh.shape[1]
        real = _real_dtype(x.dtype)
        store = x.dtype if x.dtype in _STORE_CODES else real
        w_eff = w_hh.detach() if dc_mask is None else w_hh.detach() * dc_mask
        gi = torch.nn.functional.linear(x.detach().to(real), w_ih.detach().to(real), _c(b_ih, real))
        needs_grad = any(ctx.needs_input_grad[:9])
        t = {
            "gi": gi.contiguous(),
            "whh_t": w_eff.to(real).t().contiguous().to(store),
            "bhh": _c(b_hh, real), "theta": _c(theta, real),
            "y0": _c(y0, real), "c0": _c(c0, real), "tr0": _c(tr0, real), "zmask": _c(zo_mask, real),
        }
        for k in ("y", "c", "o", "tr"):
            t[k] = gi.new_empty((T, B, H))
        for k in ("s_r", "s_z", "s_n", "s_hn"):
            t[k] = gi.new_empty((T, B, H)) if needs_grad else None
        check_forward_args(t, T, B, H, real, store)
        launcher.forward(cfg, t)
        ctx.cfg, ctx.launcher = cfg, launcher
        ctx.dtypes = [None if a is None else a.dtype for a in (x, y0, c0, tr0, w_ih, w_hh, b_ih, b_hh, theta)]
        ctx.real, ctx.store, ctx.T, ctx.B, ctx.H = real, store, T, B, H
        if needs_grad:
            ctx.save_for_backward(x, w_ih, t["whh_t"], dc_mask, t["theta"], t["y0"], t["c0"], t["zmask"],
                                  t["y"], t["c"], t["o"], t["s_r"], t["s_z"], t["s_n"], t["s_hn"])
        out_dtype = x.dtype
        return tuple(t[k].to(out_dtype) for k in ("y", "c", "o", "tr"))

    @staticmethod
    def backward(ctx: Any, g_y, g_c, g_o, g_tr):  # type: ignore[override]
        (x, w_ih, whh_t, dc_mask, theta, y0, c0, zmask, y, c, o, s_r, s_z, s_n, s_hn) = ctx.saved_tensors
        real, T, B, H = ctx.real, ctx.T, ctx.B, ctx.H
        t = {
            "whh_t": whh_t, "theta": theta, "c0": c0, "zmask": zmask, "y": y, "c": c, "o": o,
            "s_r": s_r, "s_z": s_z, "s_n": s_n, "s_hn": s_hn,
            "g_y": _c(g_y, real), "g_c": _c(g_c, real), "g_o": _c(g_o, real), "g_tr": _c(g_tr, real),
            "ga": y.new_empty((T, B, 3 * H)), "gqn": y.new_empty((T, B, H)),
            "dy": y.new_zeros((B, H)), "dc": y.new_zeros((B, H)), "tb": y.new_zeros((B, H)),
            "dth": y.new_zeros((B, H)),
        }
        check_backward_args(t, T, B, H, real, ctx.store)
        ctx.launcher.backward(ctx.cfg, t)
        need = ctx.needs_input_grad
        ga = t["ga"].reshape(T * B, 3 * H)
        gqn = t["gqn"].reshape(T * B, H)
        # recurrent-side gate gradient q = [a_r, a_z, q_n]: used as two blocks, never concatenated
        w_eff = whh_t.to(real).t()  # [3H, H]
        grads: list = [None] * 13
        if need[0]:
            grads[0] = ga @ w_ih.detach().to(real)
            grads[0] = grads[0].reshape(T, B, -1)
        if need[1]:
            grads[1] = t["ga"][0, :, :2 * H] @ w_eff[:2 * H] + t["gqn"][0] @ w_eff[2 * H:]
        if need[2]:
            grads[2] = t["dc"]
        if need[3]:
            grads[3] = TRACE_DECAY * t["tb"]
        if need[4]:
            grads[4] = ga.t() @ x.detach().to(real).reshape(T * B, -1)
        if need[5]:
            y_prev = torch.cat([y0.unsqueeze(0), y[:-1]], 0).reshape(T * B, H)
            gw = torch.cat([ga[:, :2 * H].t() @ y_prev, gqn.t() @ y_prev], 0)
            grads[5] = gw if dc_mask is None else gw * dc_mask
        if need[6]:
            grads[6] = ga.sum(0)
        if need[7]:
            grads[7] = torch.cat([ga[:, :2 * H].sum(0), gqn.sum(0)])
        if need[8]:
            grads[8] = t["dth"].sum(0)
        for k, dt in enumerate(ctx.dtypes):
            if grads[k] is not None and dt is not None:
                grads[k] = grads[k].to(dt)
        return tuple(grads)
