"""Argument checks of the EGRU operator (private, lowest layer of the fast paths).

Everything a kernel or the native helper will see is checked here, in Python, before any
pointer leaves it: :func:`check_layer_args` for a layer call (clear errors naming the
argument) and :func:`check_native_forward` as the last line of defence before the native
forward loop. :func:`surrogate_params` says which spike functions the operator implements.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import torch

from ._checks import RESET_CODES
from .surrogate import kernel_params as surrogate_params  # noqa: F401 - the operator's name for it

_RESET_NAMES = {v: k for k, v in RESET_CODES.items()}
_COMPUTE_DTYPES = (torch.float32, torch.float64)
_CPU = torch.device("cpu")


# ------------------------------------------------------------------------------------------
# argument checks: everything is checked here, in Python, before any kernel sees a pointer


def _shape_err(name: str, expected: Sequence[object], t: torch.Tensor, hint: str = "") -> ValueError:
    return ValueError(f"{name} must have shape [{', '.join(str(e) for e in expected)}]{hint}, "
                      f"got {list(t.shape)}")


def check_layer_args(x: torch.Tensor, y0: torch.Tensor, c0: torch.Tensor, trace0: torch.Tensor,
                     w: Any, zoneout_mask: Optional[torch.Tensor],
                     dropconnect_mask: Optional[torch.Tensor] = None) -> None:
    """Types, shapes, dtypes and devices of one layer call (clear errors naming the argument).

    ``w`` is a :class:`snntorch_egru.backends.EGRUWeights` bundle (not imported here: the
    registry in ``backends`` calls this module, so it stays below it)."""
    named = [("x", x), ("y0", y0), ("c0", c0), ("trace0", trace0), ("weight_ih", w.w_ih),
             ("weight_hh", w.w_hh), ("bias_ih", w.b_ih), ("bias_hh", w.b_hh), ("threshold", w.threshold),
             ("zoneout_mask", zoneout_mask), ("dropconnect_mask", dropconnect_mask)]
    optional = {"bias_ih", "bias_hh", "zoneout_mask", "dropconnect_mask"}
    for name, t in named:
        if t is None and name in optional:
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
        if t.layout != torch.strided:
            raise ValueError(f"{name} must be a dense (strided) tensor, got layout {t.layout}")
    if x.dim() != 3:
        raise ValueError(f"x must be [T, B, I], got shape {tuple(x.shape)}")
    T, B, I = x.shape
    if w.w_hh.dim() != 2 or w.w_hh.shape[0] % 3 != 0 or w.w_hh.shape[0] != 3 * w.w_hh.shape[1]:
        raise ValueError(f"weight_hh must have shape [3 * hidden_size, hidden_size], got {list(w.w_hh.shape)}")
    H = w.w_hh.shape[1]
    if tuple(w.w_ih.shape) != (3 * H, I):
        raise _shape_err("weight_ih", (3 * H, I), w.w_ih, " (3 * hidden_size, input features)")
    for name, b in (("bias_ih", w.b_ih), ("bias_hh", w.b_hh)):
        if b is not None and tuple(b.shape) != (3 * H,):
            raise _shape_err(name, (3 * H,), b)
    th = w.threshold
    if tuple(th.shape) not in ((H,), (), (1,)):
        raise _shape_err("threshold", (H,), th, " (or a single value)")
    for name, s in (("y0", y0), ("c0", c0), ("trace0", trace0)):
        if tuple(s.shape) != (B, H):
            raise _shape_err(name, (B, H), s)
    if zoneout_mask is not None and tuple(zoneout_mask.shape) != (T, B, H):
        raise _shape_err("zoneout_mask", (T, B, H), zoneout_mask)
    if dropconnect_mask is not None and tuple(dropconnect_mask.shape) != (3 * H, H):
        raise _shape_err("dropconnect_mask", (3 * H, H), dropconnect_mask)
    dev = x.device
    for name, t in named:
        if t is not None and t.device != dev:
            raise ValueError(f"{name} is on device {t.device} but x is on {dev}; move them to one device")
    dtype = w.w_hh.dtype
    for name, t in named:
        if t is not None and t.dtype != dtype and name not in ("zoneout_mask", "dropconnect_mask"):
            raise TypeError(f"{name} has dtype {t.dtype} but weight_hh has {dtype}; use one dtype "
                            f"(e.g. module.to({dtype}) / {name}.to({dtype}))")


def _check_kernel_tensor(name: str, t: Optional[torch.Tensor], shape: Tuple[int, ...], dtype: torch.dtype,
                         device: torch.device, optional: bool = False) -> None:
    if t is None:
        if optional:
            return
        raise RuntimeError(f"internal error: native argument {name} missing")
    # cheap attribute checks first (this runs on every call); the message is built only on failure
    if (t.dtype is not dtype or t.shape != shape or t.device.type != device.type or t.layout is not torch.strided
            or not t.is_contiguous()):
        raise RuntimeError(
            f"internal error: native argument {name} is {list(t.shape)} {t.dtype} {t.device} "
            f"contiguous={t.is_contiguous()}, expected {list(shape)} {dtype} {device} contiguous")


def check_native_forward(gi: torch.Tensor, y0: torch.Tensor, c0: torch.Tensor, tr0: torch.Tensor,
                         w_t: torch.Tensor, b_hh: torch.Tensor, theta: torch.Tensor, zo: Optional[torch.Tensor],
                         outs: Sequence[torch.Tensor], saved: Sequence[Optional[torch.Tensor]],
                         gh: torch.Tensor) -> None:
    """Last line of defence before ``egru_fwd_*``: exact shapes, dtype, CPU, contiguous."""
    T, B, H3 = gi.shape
    H = H3 // 3
    dt, dev = gi.dtype, _CPU
    if dt not in _COMPUTE_DTYPES or gi.device.type != "cpu":
        raise RuntimeError(f"internal error: native forward got {dt} on {gi.device}")
    _check_kernel_tensor("gi", gi, (T, B, 3 * H), dt, dev)
    for n, t in (("y0", y0), ("c0", c0), ("tr0", tr0)):
        _check_kernel_tensor(n, t, (B, H), dt, dev)
    _check_kernel_tensor("w_t", w_t, (H, 3 * H), dt, dev)
    _check_kernel_tensor("b_hh", b_hh, (3 * H,), dt, dev)
    _check_kernel_tensor("theta", theta, (H,), dt, dev)
    _check_kernel_tensor("zo", zo, (T, B, H), dt, dev, optional=True)
    for n, t in zip(("y", "c", "o", "tr"), outs):
        _check_kernel_tensor(n, t, (T, B, H), dt, dev)
    if saved[0] is not None:
        _check_kernel_tensor("rz", saved[0], (T, B, 2 * H), dt, dev)
        _check_kernel_tensor("n", saved[1], (T, B, H), dt, dev)
        _check_kernel_tensor("hn", saved[2], (T, B, H), dt, dev)
    _check_kernel_tensor("gh", gh, (B, 3 * H), dt, dev)


def under_transform(*tensors: Optional[torch.Tensor]) -> bool:
    """Whether a ``torch.func`` transform (``grad``, ``jacrev``, ``jvp``, ``vmap``, ...) is active or a
    tensor carries a forward-mode tangent (``torch.autograd.forward_ad``): the operator supports neither
    (torch would give zero tangents), so the layer runs the reference math, which supports both.

    Example::

        >>> import torch
        >>> from snntorch_egru._op_checks import under_transform
        >>> x = torch.randn(3)
        >>> with torch.autograd.forward_ad.dual_level():
        ...     dual = torch.autograd.forward_ad.make_dual(x, torch.ones(3))
        ...     under_transform(x), under_transform(dual)
        (False, True)
    """
    if torch.compiler.is_compiling():  # traced graphs: the operator node (compile / export)
        return False
    if torch._C._functorch.maybe_current_level() is not None:
        return True
    fwd = torch.autograd.forward_ad
    if getattr(fwd, "_current_level", 0) < 0:  # no dual_level open: no tangents anywhere
        return False
    return any(t is not None and fwd.unpack_dual(t).tangent is not None for t in tensors)
