"""Backward loop of the CPU launcher of the EGRU operator (private).

``egru-model.md`` section 3, written out by hand. Inside a unit everything is a linear map
of the two carried gradients (on ``y_t`` and ``c_t``) whose coefficients depend only on the
saved forward values, so the backward builds those coefficients for a chunk of time steps
with a few vectorised ops (:func:`_coefficients`) and then runs a short sequential loop per
step (:func:`_backward_chunk`): a few element-wise ops plus ``delta_y_{t-1} = q_t W_hh``
restricted to the units that can absorb gradient (``G = {fired} U {|c_hat - theta| <
support}``, :func:`_recurrent_grad`). The large weight products are formed afterwards, once,
by :func:`snntorch_egru._grad.grad_products` from the per-step gate gradients returned here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Tuple

import torch

from . import _engine
from . import functional as F
from ._checks import RESET_CODES
from ._engine import _native_fns, _native_ok, _Switch, _weights_small

SUBTRACT, ZERO = RESET_CODES["subtract"], RESET_CODES["zero"]

#: The backward builds its per-unit coefficients for this many (step, sample, unit) elements
#: at a time, which bounds its temporary memory.
_BACKWARD_CHUNK_ELEMENTS = 1 << 17


def _psi(gamma: float, eps: float, v: torch.Tensor) -> Optional[torch.Tensor]:
    """The triangle pseudo-derivative ``gamma * max(0, 1 - eps |v|)`` (``None`` for gamma = 0: no gradient)."""
    if gamma == 0.0:
        return None
    return gamma * torch.clamp(1.0 - eps * v.abs(), min=0.0)


@dataclass
class _Saved:
    """The forward values the backward reads (all ``[T, B, H]`` unless noted)."""

    ys: torch.Tensor
    cs: torch.Tensor
    os_: torch.Tensor
    rz: torch.Tensor  # [T, B, 2H]
    n: torch.Tensor
    hn: torch.Tensor
    c0: torch.Tensor  # [B, H]
    theta: torch.Tensor  # [H]
    zo_mask: Optional[torch.Tensor]


@dataclass
class _Coefficients:
    """Per-unit linear maps of one chunk of steps ``[start, end)`` (``None`` means 1 or absent).

    ``cbar = a_y * Y + a_c * C + e`` is the gradient at ``c_hat`` from the carried gradients
    ``Y`` (on ``y_t``) and ``C`` (on ``c_t``); ``dc_{t-1} = k_c * cbar``; the recurrent
    pre-activation gradient is ``q_t = k_q * cbar``.
    """

    reset: int  # reset code (_checks.RESET_CODES)
    absorb: torch.Tensor  # [L + 1 or L, B, H] units that take gradient, from step lo
    chat: torch.Tensor
    o: torch.Tensor
    psi: Optional[torch.Tensor]
    kappa_o: Optional[torch.Tensor]
    a_y: torch.Tensor
    a_c: Optional[torch.Tensor]
    e: Optional[torch.Tensor]
    k_c: torch.Tensor
    k_n: torch.Tensor
    k_q: torch.Tensor  # [L, B, 3, H]


def _coefficients(
    sv: _Saved, go: torch.Tensor, start: int, end: int, gamma: float, eps: float, reset: int, zoneout_p: float
) -> _Coefficients:
    """Build the chunk's coefficients with vectorised ops."""
    H = sv.ys.shape[-1]
    lo = max(0, start - 1)  # one step more: the absorbing set of step start - 1
    fired = sv.os_[lo:end] > 0
    chat = F.pre_reset_state(sv.ys[lo:end], sv.cs[lo:end], sv.os_[lo:end])
    psi = _psi(gamma, eps, chat - sv.theta)
    absorb = fired if psi is None else (fired | (psi != 0))
    k0 = start - lo  # index of step `start` inside the slice
    chat, o = chat[k0:], sv.os_[start:end]
    if psi is not None:
        psi = psi[k0:]
    r, z = sv.rz[start:end, :, :H], sv.rz[start:end, :, H:]
    n, hn = sv.n[start:end], sv.hn[start:end]
    cs = sv.cs
    c_prev = cs[start - 1 : end - 1] if start > 0 else torch.cat([sv.c0.unsqueeze(0), cs[: end - 1]], 0)
    kappa_o = {SUBTRACT: -sv.theta, ZERO: -chat}.get(reset)  # d c / d o (None: no reset)
    kappa_c = 1.0 - o if reset == ZERO else None  # d c / d c_hat (None means 1)
    a_y = o if psi is None else o + psi * chat
    if psi is None or kappa_o is None:
        a_c = kappa_c
    else:
        a_c = (1.0 if kappa_c is None else kappa_c) + psi * kappa_o
    e = None if psi is None else psi * go[start:end]
    m = sv.zo_mask[start:end] if sv.zo_mask is not None else (1.0 - zoneout_p if zoneout_p > 0.0 else None)
    k_c = z if m is None else (1.0 - m) + z * m
    k_n = (1.0 - n * n) * (1.0 - z)
    k_z = z * (1.0 - z) * (c_prev - n)
    if m is not None:
        k_n, k_z = k_n * m, k_z * m
    k_q = torch.stack([r * (1.0 - r) * hn * k_n, k_z, r * k_n], 2)  # [L, B, 3, H]
    return _Coefficients(reset, absorb, chat, o, psi, kappa_o, a_y, a_c, e, k_c, k_n, k_q)


class _Carry:
    """The gradients carried backwards through time (``[B, H]`` each) and the outputs."""

    def __init__(self, sv: _Saved, need_theta: bool) -> None:
        T, B, H = sv.ys.shape
        new = sv.ys.new_empty
        self.q_all = new(T, B, 3, H)  # q_t, the recurrent pre-activation gradients
        self.a_n = new(T, B, H)  # input-side n block: a_n = q_n / r
        self.gth = torch.zeros_like(sv.theta) if need_theta else None
        self.dy = torch.zeros_like(sv.c0)
        self.dc = torch.zeros_like(sv.c0)
        self.tacc = torch.zeros_like(sv.c0)
        self.Y = torch.empty_like(sv.c0)
        self.C = torch.empty_like(sv.c0)


def _backward_chunk(
    cf: _Coefficients,
    cr: _Carry,
    grads: Tuple[torch.Tensor, ...],
    start: int,
    end: int,
    w_t: torch.Tensor,
    dense: bool,
    native: Optional[Tuple[Any, ...]],
    switch: _Switch,
) -> None:
    """The sequential part of one chunk, steps ``end - 1`` down to ``start``."""
    gy, gc, go, gtr = grads
    lo = max(0, start - 1)
    L, B, H = cf.o.shape
    decay, gain = F.TRACE_DECAY, 1.0 - F.TRACE_DECAY
    gth = cr.gth
    y_tot = cf.o.new_empty(L, B, H) if gth is not None else None
    c_tot = cf.o.new_empty(L, B, H) if gth is not None else None
    cbar = cf.o.new_empty(L, B, H)
    for t in range(end - 1, start - 1, -1):
        k = t - start
        torch.add(gtr[t], cr.tacc, alpha=decay, out=cr.tacc)  # trace gradient
        torch.add(gy[t], cr.tacc, alpha=gain, out=cr.Y).add_(cr.dy)
        torch.add(gc[t], cr.dc, out=cr.C)
        if y_tot is not None and c_tot is not None:
            y_tot[k].copy_(cr.Y)
            c_tot[k].copy_(cr.C)
        cb = torch.mul(cf.a_y[k], cr.Y, out=cbar[k])
        if cf.a_c is None:
            cb.add_(cr.C)
        else:
            cb.addcmul_(cf.a_c[k], cr.C)
        if cf.e is not None:
            cb.add_(cf.e[k])
        cr.dc = cf.k_c[k] * cb
        q = torch.mul(cf.k_q[k], cb.unsqueeze(1), out=cr.q_all[t]).view(B, 3 * H)
        if t > 0:  # the gradient at y0 comes from q_0 in grad_products
            cr.dy = _recurrent_grad(q, w_t, cf.absorb[t - 1 - lo], dense, native, switch)
    torch.mul(cf.k_n, cbar, out=cr.a_n[start:end])
    if gth is not None and y_tot is not None and c_tot is not None:
        _theta_grad(cf, gth, go[start:end], y_tot, c_tot)


def _theta_grad(
    cf: _Coefficients, gth: torch.Tensor, go: torch.Tensor, y_tot: torch.Tensor, c_tot: torch.Tensor
) -> None:
    """Accumulate the chunk's threshold gradient into ``gth``."""
    if cf.psi is not None:
        o_bar = torch.addcmul(go, cf.chat, y_tot)
        if cf.kappa_o is not None:
            o_bar.addcmul_(cf.kappa_o, c_tot)
        gth.sub_((cf.psi * o_bar).sum((0, 1)))
    if cf.reset == SUBTRACT:
        gth.sub_((cf.o * c_tot).sum((0, 1)))


def cpu_backward(
    gamma: float,
    eps: float,
    reset: int,
    zoneout_p: float,
    gy: torch.Tensor,
    gc: torch.Tensor,
    go: torch.Tensor,
    gtr: torch.Tensor,
    y0: torch.Tensor,
    c0: torch.Tensor,
    theta: torch.Tensor,
    zo_mask: Optional[torch.Tensor],
    ys: torch.Tensor,
    cs: torch.Tensor,
    os_: torch.Tensor,
    rz: torch.Tensor,
    n_all: torch.Tensor,
    hn_all: torch.Tensor,
    w_t: torch.Tensor,
    need_theta: bool,
) -> Tuple[torch.Tensor, ...]:
    """Backward loop of the CPU launcher.

    Args:
        gamma, eps: the triangle pseudo-derivative (``gamma = 0``: Heaviside, no gradient).
        reset, zoneout_p: as in the forward (``reset``: its code, ``_checks.RESET_CODES``).
        gy, gc, go, gtr: ``[T, B, H]`` output gradients.
        y0, c0: ``[B, H]`` initial state; theta: ``[H]``; zo_mask: ``[T, B, H]`` or ``None``.
        ys, cs, os_, rz, n_all, hn_all: the forward's outputs and saved gates.
        w_t: ``[H, 3H]`` effective ``W_hh^T``. need_theta: form the threshold gradient.

    Returns:
        ``(ga [T, B, 3H], gqn [T, B, H], dc0 [B, H], trace gradient [B, H], dtheta [H])``, the
        inputs of :func:`snntorch_egru._grad.grad_products`.
    """
    T, B, H = ys.shape
    dense = _engine._FORCE_DENSE or _weights_small(w_t)
    native = _native_fns(ys.dtype) if ys.device.type == "cpu" else None
    sv = _Saved(ys, cs, os_, rz, n_all, hn_all, c0, theta, zo_mask)
    cr = _Carry(sv, need_theta)
    # chunks of time (backwards): only one chunk's coefficients are alive at once
    chunk = max(1, min(T, _BACKWARD_CHUNK_ELEMENTS // max(1, B * H)))
    switch = _Switch()
    end = T
    while end > 0:
        start = max(0, end - chunk)
        cf = _coefficients(sv, go, start, end, gamma, eps, reset, zoneout_p)
        _backward_chunk(cf, cr, (gy, gc, go, gtr), start, end, w_t, dense, native, switch)
        end = start
    gqn = cr.q_all[:, :, 2].contiguous()  # recurrent n block q_n
    cr.q_all[:, :, 2].copy_(cr.a_n)  # now the input-side gradient a_t = (a_r, a_z, a_n)
    gth = cr.gth if cr.gth is not None else torch.zeros_like(theta)
    return cr.q_all.view(T, B, 3 * H), gqn, cr.dc, cr.tacc, gth


def _recurrent_grad(
    q: torch.Tensor,
    w_t: torch.Tensor,
    absorb: torch.Tensor,
    dense: bool,
    native: Optional[Tuple[Any, ...]] = None,
    switch: Optional[_Switch] = None,
) -> torch.Tensor:
    """``q @ W_hh`` ([B, 3H] x [3H, H]) computed only on the units in ``absorb`` [B, H] (others 0)."""
    B, H = absorb.shape
    if switch is not None and switch.go_dense():
        return _dense_recurrent_grad(q, w_t)
    if switch is not None:
        switch.sparse_steps += 1
    if native is not None and not _engine._FORCE_DENSE:
        out = q.new_empty(B, H)
        if not (
            tuple(w_t.shape) == (H, q.shape[1])
            and q.shape[0] == B
            and absorb.dtype == torch.bool
            and absorb.is_contiguous()
            and _native_ok(q, w_t, out)
        ):
            raise RuntimeError("internal error: native row-product arguments do not match")
        if (
            native[1](
                q.data_ptr(),
                absorb.data_ptr(),
                B,
                H,
                w_t.data_ptr(),
                w_t.shape[1],
                out.data_ptr(),
                int(_engine.NATIVE_MAX_FRACTION * H),
            )
            == 0
        ):
            return out
    if not dense:
        idx = (absorb[0] if B == 1 else absorb.any(0)).nonzero().squeeze(1)
        k = idx.numel()
        if k == 0:
            return q.new_zeros(B, H)
        if k <= _engine.GATHER_MAX_FRACTION * H:
            out = q.new_zeros(B, H)
            out[:, idx] = torch.mm(q, w_t.index_select(0, idx).t())
            return out
    if switch is not None and not dense:
        switch.sparse_steps -= 1
        switch.failed()
    return _dense_recurrent_grad(q, w_t)


def _dense_recurrent_grad(q: torch.Tensor, w_t: torch.Tensor) -> torch.Tensor:
    """``q @ W_hh`` [B, H] on every unit, as ``(W_hh^T q^T)^T``: with the large ``W_hh^T`` as the left operand
    (its rows contiguous along the reduction) MKL's GEMM is faster than ``q @ W_hh^T.t()`` at small B
    (B = 16, H = 1024 on the 2-core dev machine: the whole backward 246 ms against 276 ms; equal to rounding)."""
    return torch.mm(w_t, q.t()).t().contiguous()
