"""Event-driven EGRU on CPU: a fused sequence function with a hand-written sparse backward.

This module registers the ``"torch"`` backend (priority 10), which
``EGRU(backend="auto")`` uses by default for CPU tensors. One
:class:`torch.autograd.Function` covers a whole layer sequence, so autograd
records a single node per layer instead of a tape of ~20 ops per step.

Forward:
    * the input projection ``x W_ih^T + b_ih`` for all steps in one matrix product
      (a sparse-CSR product when the input is a lower layer's events and they are
      sparse enough);
    * per step, the recurrent product uses only the rows of ``W_hh^T`` (kept as a
      contiguous ``[H, 3H]`` copy, so one active unit = one row) of the units that
      fired: per sample at batch 1, over the batch union of active units above,
      or a plain dense product when the active fraction exceeds a measured
      crossover (:data:`GATHER_MAX_FRACTION`) or the weights are small enough to
      stay in cache (:data:`SMALL_WEIGHT_BYTES`).

Backward (``egru-model.md`` section 3, written out by hand):
    everything inside a unit is a precomputed linear map of the two carried
    gradients (on ``y_t`` and ``c_t``), so each step costs a few element-wise ops
    plus ``delta_y_{t-1} = q_t W_hh`` restricted to the units that can absorb
    gradient (``G = {fired} U {|c_hat - theta| < support}``); weight and bias
    gradients are large products after the loop, ``dW_hh`` from the events
    ``y_{t-1}`` (sparse CSR product when they are sparse).

Saved for backward: the returned sequences (no extra memory), plus ``r, z``
(``[T, B, 2H]``), ``n`` and ``h_n = W_hn y + b_hn`` (``[T, B, H]`` each); the
pre-reset state is rebuilt as ``where(o, y, c)``.

Surrogates: :class:`~snntorch_egru.surrogate.EGRUSurrogate` (triangle, compact
support) and :func:`~snntorch_egru.surrogate.heaviside` take the sparse path.
Any other spike function (e.g. ``snntorch.surrogate.atan()``, whose gradient
never vanishes) falls back to a dense recurrent backward, with the
pseudo-derivative obtained by differentiating the spike function itself
(``torch.autograd.grad`` on ``spike_fn(v)``, so it must act element-wise); its
forward is also the spike function's own output.

Example::

    >>> import torch, snntorch_egru as se
    >>> rnn = se.EGRU(8, 16, backend="torch").double()
    >>> x = torch.randn(20, 3, 8, dtype=torch.float64)
    >>> out, state = rnn(x)
    >>> ref = se.EGRU(8, 16, backend="reference").double()
    >>> _ = ref.load_state_dict(rnn.state_dict())
    >>> torch.allclose(out, ref(x)[0])
    True
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Tuple

import torch

from . import functional as F
from .backends import LayerCall, register_backend
from .surrogate import EGRUSurrogate, surrogate_support

__all__ = [
    "egru_sequence_fused",
    "GATHER_MAX_FRACTION",
    "SMALL_WEIGHT_BYTES",
    "CSR_MAX_DENSITY",
    "force_dense",
]

#: Gather only when at most this fraction of the ``H`` rows is needed. Measured on the
#: 2-vCPU Xeon dev machine (torch 2.14, 1 thread, H = 1024, fp32): ``index_select`` of the
#: active rows + ``addmm`` costs 100 us at 10 % (dense 440 us), 426 us at 29 % and 728 us at
#: 52 % (batch 1); batch 16 union 26 %: 520 us vs dense 1013 us, union 82 %: 1800 us vs 1020 us.
#: Break-even is near 30 %; 0.25 keeps a margin for noise.
GATHER_MAX_FRACTION = 0.25

#: Below this size of ``W_hh`` (bytes) the dense product wins at every activity (the
#: matrix stays in cache; measured at H = 256: dense matvec 9 us, gather at 2 % 18 us).
SMALL_WEIGHT_BYTES = 1_500_000

#: Products with event matrices (stacked input projection, ``dW_hh`` and ``dW_ih``) use a
#: sparse CSR operand only at densities up to this value (measured, T*B = 300, 1024 x 3072:
#: CSR 3.0 ms vs dense 11-16 ms at 1 %, CSR slower from ~10 %).
CSR_MAX_DENSITY = 0.03

_FORCE_DENSE = False


class force_dense:
    """Context manager that disables every sparse product of the ``"torch"`` backend.

    The numbers are unchanged (up to rounding); it is the "dense EGRU" baseline of
    ``snntorch-egru bench``.

    Example::

        >>> import torch, snntorch_egru as se
        >>> from snntorch_egru.sparse import force_dense
        >>> rnn = se.EGRU(4, 8, backend="torch")
        >>> with force_dense():
        ...     out, _ = rnn(torch.randn(5, 2, 4))
    """

    def __enter__(self) -> "force_dense":
        global _FORCE_DENSE
        self._prev = _FORCE_DENSE
        _FORCE_DENSE = True
        return self

    def __exit__(self, *exc: object) -> None:
        global _FORCE_DENSE
        _FORCE_DENSE = self._prev


# ------------------------------------------------------------------------------------------
# helpers


def _weights_small(w_t: torch.Tensor) -> bool:
    return w_t.numel() * w_t.element_size() < SMALL_WEIGHT_BYTES


def _sparse_left_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` with ``a`` 2-D and mostly zeros: CSR product when sparse enough, else dense."""
    if not _FORCE_DENSE and a.device.type == "cpu" and a.shape[0] > 0 and a.shape[1] > 0:
        nnz = int(torch.count_nonzero(a))
        if nnz <= CSR_MAX_DENSITY * a.numel():
            if nnz == 0:
                return a.new_zeros(a.shape[0], b.shape[1])
            return torch.sparse.mm(a.to_sparse_csr(), b)
    return a @ b


class _Cfg:
    __slots__ = ("spike_fn", "reset", "zoneout_p", "input_is_events", "kind", "has_bias_ih", "has_bias_hh")

    def __init__(self, spike_fn: Callable, reset: str, zoneout_p: float, input_is_events: bool) -> None:
        self.spike_fn = spike_fn
        self.reset = reset
        self.zoneout_p = float(zoneout_p)
        self.input_is_events = bool(input_is_events)
        support = surrogate_support(spike_fn)
        if isinstance(spike_fn, EGRUSurrogate):
            self.kind = "triangle"
        elif support == 0.0:
            self.kind = "none"  # gradient-free Heaviside
        else:
            self.kind = "generic"  # unknown support: dense fallback, autograd of spike_fn


def _psi(cfg: _Cfg, v: torch.Tensor) -> Optional[torch.Tensor]:
    """Pseudo-derivative of the spike function at ``v`` (``None`` = identically zero)."""
    if cfg.kind == "triangle":
        return cfg.spike_fn.derivative(v)
    if cfg.kind == "none":
        return None
    with torch.enable_grad():
        vv = v.detach().requires_grad_(True)
        out = cfg.spike_fn(vv)
        if not out.requires_grad:
            return None
        (g,) = torch.autograd.grad(out, vv, torch.ones_like(out), allow_unused=True)
    return g


def _recurrent(y_prev: torch.Tensor, w_t: torch.Tensor, b_hh: torch.Tensor, dense: bool,
               out: torch.Tensor) -> None:
    """``out = b_hh + y_prev @ w_t`` over the active rows of ``w_t`` [H, 3H] only."""
    if not dense:
        B, H = y_prev.shape
        if B == 1:
            idx = y_prev[0].nonzero().squeeze(1)
        else:
            idx = (y_prev != 0).any(0).nonzero().squeeze(1)
        k = idx.numel()
        if k == 0:
            out.copy_(b_hh.expand_as(out))
            return
        if k <= GATHER_MAX_FRACTION * H:
            torch.addmm(b_hh, y_prev.index_select(1, idx), w_t.index_select(0, idx), out=out)
            return
    torch.addmm(b_hh, y_prev, w_t, out=out)


def _run_forward(cfg: _Cfg, x: torch.Tensor, y0: torch.Tensor, c0: torch.Tensor, trace0: torch.Tensor,
                 w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor, b_hh: torch.Tensor,
                 theta: torch.Tensor, zo_mask: Optional[torch.Tensor], need_cache: bool
                 ) -> Tuple[torch.Tensor, ...]:
    T, B, I = x.shape
    H = y0.shape[-1]
    H2 = 2 * H
    x2 = x.reshape(T * B, I)
    if cfg.input_is_events:
        gi = _sparse_left_mm(x2, w_ih.t()).add_(b_ih).view(T, B, 3 * H)
    else:
        gi = torch.addmm(b_ih, x2, w_ih.t()).view(T, B, 3 * H)
    w_t = w_hh.t().contiguous()  # [H, 3H]: one unit = one contiguous row
    dense = _FORCE_DENSE or _weights_small(w_t)
    new = x.new_empty
    ys, cs, os_, trs = new(T, B, H), new(T, B, H), new(T, B, H), new(T, B, H)
    if need_cache:
        rz_all, n_all, hn_all = new(T, B, H2), new(T, B, H), new(T, B, H)
    gh = new(B, 3 * H)
    chat = new(B, H)
    tmp = new(B, H)
    rz_s, n_s = new(B, H2), new(B, H)
    generic = cfg.kind == "generic"
    zo_p = cfg.zoneout_p
    y_prev, c_prev, tr_prev = y0, c0, trace0
    for t in range(T):
        _recurrent(y_prev, w_t, b_hh, dense, gh)
        g = gi[t]
        rz = rz_all[t] if need_cache else rz_s
        n = n_all[t] if need_cache else n_s
        torch.add(g[:, :H2], gh[:, :H2], out=rz)
        rz.sigmoid_()
        r, z = rz[:, :H], rz[:, H:]
        hn = gh[:, H2:]
        if need_cache:
            hn_all[t].copy_(hn)
        torch.addcmul(g[:, H2:], r, hn, out=n)
        n.tanh_()
        torch.sub(c_prev, n, out=tmp)
        torch.addcmul(n, z, tmp, out=chat)
        if zo_mask is not None:
            torch.sub(chat, c_prev, out=tmp)
            torch.addcmul(c_prev, zo_mask[t], tmp, out=chat)
        elif zo_p > 0.0:
            chat.mul_(1.0 - zo_p).add_(c_prev, alpha=zo_p)  # p c_prev + (1 - p) c_hat
        o = os_[t]
        torch.sub(chat, theta, out=tmp)
        if generic:
            o.copy_(cfg.spike_fn(tmp))
        else:
            torch.gt(tmp, 0, out=o)  # writes 0/1 in o's dtype
        torch.mul(o, chat, out=ys[t])
        c = cs[t]
        if cfg.reset == "subtract":
            torch.mul(o, theta, out=tmp)
            torch.sub(chat, tmp, out=c)
        elif cfg.reset == "zero":
            torch.neg(o, out=tmp).add_(1.0)
            torch.mul(chat, tmp, out=c)
        else:
            c.copy_(chat)
        tr = trs[t]
        torch.mul(tr_prev, F.TRACE_DECAY, out=tr)
        tr.add_(ys[t], alpha=1.0 - F.TRACE_DECAY)
        y_prev, c_prev, tr_prev = ys[t], c, tr
    if need_cache:
        return ys, cs, os_, trs, rz_all, n_all, hn_all, w_t
    return ys, cs, os_, trs


class _FusedEGRU(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, cfg: _Cfg, x: torch.Tensor, y0: torch.Tensor, c0: torch.Tensor,  # type: ignore[override]
                trace0: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor,
                b_hh: torch.Tensor, theta: torch.Tensor, zo_mask: Optional[torch.Tensor]):
        ys, cs, os_, trs, rz, n, hn, w_t = _run_forward(
            cfg, x, y0, c0, trace0, w_ih, w_hh, b_ih, b_hh, theta, zo_mask, need_cache=True)
        ctx.cfg = cfg
        ctx.w_t = w_t
        ctx.save_for_backward(x, y0, c0, w_ih, w_hh, theta, zo_mask, ys, cs, os_, rz, n, hn)
        return ys, cs, os_, trs

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, gy: torch.Tensor, gc: torch.Tensor, go: torch.Tensor, gtr: torch.Tensor):  # type: ignore[override]
        cfg: _Cfg = ctx.cfg
        x, y0, c0, w_ih, w_hh, theta, zo_mask, ys, cs, os_, rz, n, hn = ctx.saved_tensors
        w_t = ctx.w_t
        ctx.w_t = None
        T, B, I = x.shape
        H = y0.shape[-1]
        need = ctx.needs_input_grad  # (cfg, x, y0, c0, trace0, w_ih, w_hh, b_ih, b_hh, theta, zo_mask)
        # ---- per-unit linear maps (vectorised over all steps) -----------------------------
        fired = os_ > 0
        chat = torch.where(fired, ys, cs)
        v = chat - theta
        psi = _psi(cfg, v)
        r, z = rz[..., :H], rz[..., H:]
        c_prev = torch.cat([c0.unsqueeze(0), cs[:-1]], 0)
        if cfg.reset == "subtract":
            kappa_o = -theta.expand_as(chat)
            kappa_c = None  # 1
        elif cfg.reset == "zero":
            kappa_o = -chat
            kappa_c = 1.0 - os_
        else:
            kappa_o = None
            kappa_c = None
        a_y = os_ if psi is None else os_ + psi * chat
        if psi is None or kappa_o is None:
            a_c = torch.ones_like(chat) if kappa_c is None else kappa_c
        else:
            a_c = (1.0 if kappa_c is None else kappa_c) + psi * kappa_o
        e = None if psi is None else psi * go
        if zo_mask is not None:
            m = zo_mask
        elif cfg.zoneout_p > 0.0:
            m = torch.full_like(z, 1.0 - cfg.zoneout_p)
        else:
            m = None
        k_c = z if m is None else (1.0 - m) + z * m
        k_n = (1.0 - n * n) * (1.0 - z)
        if m is not None:
            k_n = k_n * m
        k_r = r * (1.0 - r) * hn * k_n
        k_z = z * (1.0 - z) * (c_prev - n)
        if m is not None:
            k_z = k_z * m
        k_q = torch.cat([k_r, k_z, r * k_n], -1).view(T, B, 3, H)
        # trace: T_t = g_t + 0.9 T_{t+1}; the gradient on y_t gets 0.1 T_t
        tbar = torch.empty_like(gtr)
        acc = torch.zeros_like(gtr[0]) if T > 0 else None
        for t in range(T - 1, -1, -1):
            acc = torch.add(gtr[t], acc, alpha=F.TRACE_DECAY)
            tbar[t] = acc
        p_y = torch.add(gy, tbar, alpha=1.0 - F.TRACE_DECAY)
        # where delta_y_{t-1} is needed: units that fired or sit inside the surrogate's support
        absorb = fired if psi is None else (fired | (psi != 0))
        dense = _FORCE_DENSE or _weights_small(w_t) or cfg.kind == "generic"
        # ---- sequential part ---------------------------------------------------------------
        y_tot = torch.empty_like(chat)
        c_tot = torch.empty_like(chat)
        chat_bar = torch.empty_like(chat)
        q_all = torch.empty(T, B, 3, H, dtype=chat.dtype, device=chat.device)
        dy = torch.zeros_like(y0)
        dc = torch.zeros_like(c0)
        need_y0 = need[2]
        for t in range(T - 1, -1, -1):
            Y = torch.add(p_y[t], dy, out=y_tot[t])
            C = torch.add(gc[t], dc, out=c_tot[t])
            cb = torch.mul(a_y[t], Y, out=chat_bar[t])
            cb.addcmul_(a_c[t], C)
            if e is not None:
                cb.add_(e[t])
            dc = k_c[t] * cb
            q = torch.mul(k_q[t], cb.unsqueeze(1), out=q_all[t]).view(B, 3 * H)
            if t == 0:
                dy = torch.mm(q, w_t.t()) if need_y0 else dy
                break
            dy = _recurrent_grad(q, w_t, absorb[t - 1], dense)
        # ---- after the loop: big products -------------------------------------------------
        grads: list = [None] * 11
        q2 = q_all.view(T * B, 3 * H)
        if need[1] or need[5] or need[7]:
            a_all = torch.cat([k_r, k_z, k_n], -1).view(T, B, 3, H).mul_(chat_bar.unsqueeze(2)).view(T * B, 3 * H)
            if need[1]:
                grads[1] = (a_all @ w_ih).view(T, B, I)
            if need[5]:
                x2 = x.reshape(T * B, I)
                if cfg.input_is_events:
                    grads[5] = _sparse_left_mm(x2.t(), a_all).t()
                else:
                    grads[5] = a_all.t() @ x2
            if need[7]:
                grads[7] = a_all.sum(0)
        if need[2]:
            grads[2] = dy
        if need[3]:
            grads[3] = dc
        if need[4]:
            grads[4] = F.TRACE_DECAY * tbar[0] if T > 0 else gtr.new_zeros(y0.shape)
        if need[6]:
            y_prev = torch.cat([y0.unsqueeze(0), ys[:-1]], 0).view(T * B, H)
            grads[6] = _sparse_left_mm(y_prev.t(), q2).t()  # [3H, H]
        if need[8]:
            grads[8] = q2.sum(0)
        if need[9]:
            gth = None
            if psi is not None:
                o_bar = chat * y_tot
                if go is not None:
                    o_bar = o_bar + go
                if kappa_o is not None:
                    o_bar = o_bar + kappa_o * c_tot
                gth = -(psi * o_bar).sum((0, 1))
            if cfg.reset == "subtract":
                s2 = (os_ * c_tot).sum((0, 1))
                gth = -s2 if gth is None else gth - s2
            grads[9] = gth if gth is not None else torch.zeros_like(theta)
        return tuple(grads)


def _recurrent_grad(q: torch.Tensor, w_t: torch.Tensor, absorb: torch.Tensor, dense: bool) -> torch.Tensor:
    """``q @ W_hh`` ([B, 3H] x [3H, H]) computed only on the units in ``absorb`` [B, H] (others 0)."""
    B, H = absorb.shape
    if not dense:
        if B == 1:
            idx = absorb[0].nonzero().squeeze(1)
        else:
            idx = absorb.any(0).nonzero().squeeze(1)
        k = idx.numel()
        if k == 0:
            return q.new_zeros(B, H)
        if k <= GATHER_MAX_FRACTION * H:
            out = q.new_zeros(B, H)
            out[:, idx] = torch.mm(q, w_t.index_select(0, idx).t())
            return out
    return torch.mm(q, w_t.t())


def egru_sequence_fused(
    x: torch.Tensor,
    y0: torch.Tensor,
    c0: torch.Tensor,
    trace0: torch.Tensor,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor,
    bias_ih: Optional[torch.Tensor],
    bias_hh: Optional[torch.Tensor],
    threshold: torch.Tensor,
    *,
    spike_fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    reset: str = "subtract",
    zoneout_mask: Optional[torch.Tensor] = None,
    zoneout_p: float = 0.0,
    dropconnect_mask: Optional[torch.Tensor] = None,
    input_is_events: bool = False,
) -> F.EGRUStepOutput:
    """Event-driven EGRU layer over a whole sequence with a fused sparse backward.

    Same contract and numbers as :func:`snntorch_egru.functional.egru_sequence`
    (the step-by-step reference), but one autograd node for the whole sequence.

    Args:
        x: ``[T, B, I]`` input.
        y0, c0, trace0: ``[B, H]`` initial events, internal state and trace.
        weight_ih: ``[3H, I]``; weight_hh: ``[3H, H]`` (unmasked; pass
            ``dropconnect_mask`` to apply DropConnect, its gradient goes through it).
        bias_ih, bias_hh: ``[3H]`` or ``None``. threshold: ``[H]``.
        spike_fn: Heaviside with surrogate gradient (default: the paper's triangle).
        reset: ``"subtract"``, ``"zero"`` or ``"none"``.
        zoneout_mask: ``[T, B, H]`` training masks (1 = update); zoneout_p: eval-mode probability.
        dropconnect_mask: ``[3H, H]`` scaled mask or ``None``.
        input_is_events: ``x`` is a lower EGRU layer's events (mostly zeros).

    Returns:
        :class:`~snntorch_egru.functional.EGRUStepOutput` of ``[T, B, H]`` sequences.

    Example::

        >>> import torch
        >>> from snntorch_egru.sparse import egru_sequence_fused
        >>> T, B, I, H = 6, 2, 3, 5
        >>> s = torch.zeros(B, H)
        >>> out = egru_sequence_fused(torch.randn(T, B, I), s, s, s, torch.randn(3 * H, I),
        ...                           torch.randn(3 * H, H), None, None, torch.full((H,), 0.1))
        >>> out.y.shape
        torch.Size([6, 2, 5])
    """
    if spike_fn is None:
        spike_fn = EGRUSurrogate(0.7, 1.0)
    if reset not in F.RESET_MECHANISMS:
        raise ValueError(f"reset must be one of {F.RESET_MECHANISMS}, got {reset!r}")
    if x.dim() != 3:
        raise ValueError(f"x must be [T, B, I], got shape {tuple(x.shape)}")
    H = weight_hh.shape[1]
    T, B = x.shape[0], x.shape[1]
    if T == 0:
        empty = x.new_zeros((0, B, H))
        return F.EGRUStepOutput(empty, empty, empty, empty)
    w_hh = weight_hh if dropconnect_mask is None else weight_hh * dropconnect_mask
    cfg = _Cfg(spike_fn, reset, zoneout_p if zoneout_mask is None else 0.0, input_is_events)
    b_ih = bias_ih if bias_ih is not None else x.new_zeros(3 * H)
    b_hh = bias_hh if bias_hh is not None else x.new_zeros(3 * H)
    zo = None if zoneout_mask is None else zoneout_mask.to(x.dtype)
    tensors = (x, y0, c0, trace0, weight_ih, w_hh, b_ih, b_hh, threshold)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        y, c, o, tr = _FusedEGRU.apply(cfg, x, y0, c0, trace0, weight_ih, w_hh, b_ih, b_hh, threshold, zo)
    else:
        with torch.no_grad():
            y, c, o, tr = _run_forward(cfg, x, y0, c0, trace0, weight_ih, w_hh, b_ih, b_hh, threshold, zo,
                                       need_cache=False)
    return F.EGRUStepOutput(y, c, o, tr)


def _run_backend(call: LayerCall) -> F.EGRUStepOutput:
    return egru_sequence_fused(
        call.x, call.y0, call.c0, call.trace0, call.weight_ih, call.weight_hh, call.bias_ih, call.bias_hh,
        call.threshold, spike_fn=call.spike_fn, reset=call.reset, zoneout_mask=call.zoneout_mask,
        zoneout_p=call.zoneout_p, dropconnect_mask=call.dropconnect_mask, input_is_events=call.input_is_events,
    )


def _available(call: LayerCall) -> bool:
    return call.x.device.type == "cpu"


register_backend("torch", _run_backend, available=_available, priority=10)
