"""Independent float64 reference of the EGRU equations (issue 2), written from scratch for the tests.

Nothing here imports :mod:`snntorch_egru.functional`: the gates are sliced by hand, the
pseudo-derivative has its own autograd Function, and the loops are plain Python, so the package
is checked against a second implementation of the equations::

    r  = sigmoid(W_ir x + b_ir + W_hr y + b_hr)
    z  = sigmoid(W_iz x + b_iz + W_hz y + b_hz)
    n  = tanh(W_in x + b_in + r * (W_hn y + b_hn))
    c^ = (1 - z) n + z c_prev          (zoneout: c_prev + m (c^ - c_prev) / p c_prev + (1-p) c^)
    o  = H(c^ - theta), H(0) = 0
    y  = o c^
    c  = c^ - o theta | c^ (1 - o) | c^          (subtract | zero | none)
    trace = 0.9 trace + 0.1 y

``evnn_layer`` is the same model written in the official code's layout (row vectors ``x @ W``,
3H axis chunked ``[z | r | g]``) for the checkpoint-converter test.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence

import torch

Tensor = torch.Tensor
Spike = Callable[[Tensor], Tensor]


class _RefTriangle(torch.autograd.Function):
    """H(v) forward, gamma * max(0, 1 - eps |v|) backward."""

    @staticmethod
    def forward(ctx, v, gamma, eps):  # type: ignore[override]
        ctx.save_for_backward(v)
        ctx.gamma, ctx.eps = gamma, eps
        return torch.where(v > 0, torch.ones_like(v), torch.zeros_like(v))

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        (v,) = ctx.saved_tensors
        psi = ctx.gamma * torch.relu(1.0 - ctx.eps * torch.abs(v))
        return g * psi, None, None


def ref_triangle(gamma: float = 0.7, eps: float = 1.0) -> Spike:
    """The paper's pseudo-derivative as a spike function (not picklable; tests only)."""
    return lambda v: _RefTriangle.apply(v, gamma, eps)


def ref_heaviside_nograd(v: Tensor) -> Tensor:
    """Heaviside without any gradient (``surrogate_disable``)."""
    return torch.where(v.detach() > 0, 1.0, 0.0).to(v.dtype)


def psi(v: Tensor, gamma: float, eps: float) -> Tensor:
    """The pseudo-derivative itself."""
    return gamma * torch.relu(1.0 - eps * torch.abs(v))


def ref_step(
    x,
    y,
    c,
    tr,
    w_ih,
    w_hh,
    b_ih,
    b_hh,
    theta,
    *,
    reset: str,
    spike: Spike,
    zo_mask: Optional[Tensor] = None,
    zo_p: float = 0.0,
):
    """One step, returns ``(y, c, o, trace, c_hat)`` each ``[B, H]``."""
    H = theta.shape[0]
    sl = [slice(0, H), slice(H, 2 * H), slice(2 * H, 3 * H)]

    def lin(inp, w, b, k):
        out = inp @ w[sl[k]].t()
        return out if b is None else out + b[sl[k]]

    r = torch.sigmoid(lin(x, w_ih, b_ih, 0) + lin(y, w_hh, b_hh, 0))
    z = torch.sigmoid(lin(x, w_ih, b_ih, 1) + lin(y, w_hh, b_hh, 1))
    n = torch.tanh(lin(x, w_ih, b_ih, 2) + r * lin(y, w_hh, b_hh, 2))
    c_hat = (1.0 - z) * n + z * c
    if zo_mask is not None:
        c_hat = zo_mask * c_hat + (1.0 - zo_mask) * c
    elif zo_p:
        c_hat = zo_p * c + (1.0 - zo_p) * c_hat
    o = spike(c_hat - theta)
    y_new = o * c_hat
    if reset == "subtract":
        c_new = c_hat - o * theta
    elif reset == "zero":
        c_new = c_hat * (1.0 - o)
    elif reset == "none":
        c_new = c_hat
    else:
        raise AssertionError(reset)
    tr_new = 0.9 * tr + 0.1 * y_new
    return y_new, c_new, o, tr_new, c_hat


def ref_layer(
    x,
    y0,
    c0,
    tr0,
    p: Dict[str, Optional[Tensor]],
    *,
    reset: str,
    spike: Spike,
    zo_masks: Optional[Tensor] = None,
    zo_p: float = 0.0,
    dc_mask: Optional[Tensor] = None,
):
    """One layer over ``x`` [T, B, I]; returns dict of [T, B, H] sequences y, c, o, trace, c_hat."""
    w_hh = p["weight_hh"] if dc_mask is None else p["weight_hh"] * dc_mask
    y, c, tr = y0, c0, tr0
    rec: Dict[str, List[Tensor]] = {k: [] for k in ("y", "c", "o", "trace", "c_hat")}
    for t in range(x.shape[0]):
        y, c, o, tr, ch = ref_step(
            x[t],
            y,
            c,
            tr,
            p["weight_ih"],
            w_hh,
            p["bias_ih"],
            p["bias_hh"],
            p["threshold"],
            reset=reset,
            spike=spike,
            zo_mask=None if zo_masks is None else zo_masks[t],
            zo_p=zo_p,
        )
        for k, v in zip(("y", "c", "o", "trace", "c_hat"), (y, c, o, tr, ch)):
            rec[k].append(v)
    return {k: torch.stack(v) for k, v in rec.items()}


def ref_stack(
    x,
    layers: Sequence[Dict[str, Optional[Tensor]]],
    y0,
    c0,
    tr0,
    *,
    reset: str,
    spike: Spike,
    zo_masks: Optional[Sequence[Optional[Tensor]]] = None,
    zo_p: float = 0.0,
    dc_masks: Optional[Sequence[Optional[Tensor]]] = None,
    dropout_masks: Optional[Sequence[Optional[Tensor]]] = None,
):
    """A stack of layers. ``x`` [T, B, I]; ``y0/c0/tr0`` [L, B, H].

    ``dropout_masks[k]`` (already scaled by 1/(1-p)) multiplies the events of layer k before
    layer k+1. Returns ``(out, (yT, cT, trT), record)`` where record maps y, c, o, trace,
    c_hat to [L, T, B, H].
    """
    L = len(layers)
    inp = x
    recs = []
    for k in range(L):
        seq = ref_layer(
            inp,
            y0[k],
            c0[k],
            tr0[k],
            layers[k],
            reset=reset,
            spike=spike,
            zo_masks=None if zo_masks is None else zo_masks[k],
            zo_p=zo_p,
            dc_mask=None if dc_masks is None else dc_masks[k],
        )
        recs.append(seq)
        inp = seq["y"]
        if dropout_masks is not None and k < L - 1 and dropout_masks[k] is not None:
            inp = inp * dropout_masks[k]
    record = {f: torch.stack([r[f] for r in recs]) for f in recs[0]}
    final = tuple(torch.stack([r[f][-1] for r in recs]) for f in ("y", "c", "trace"))
    return inp, final, record


# ---------------------------------------------------------------------------------------------
# The official code's layout: x @ W with W [I, 3H], chunks [z | r | g]


def evnn_layer(
    x,
    y0,
    c0,
    kernel,
    recurrent_kernel,
    bias,
    recurrent_bias,
    thr,
    *,
    reset: str = "subtract",
    spike: Optional[Spike] = None,
):
    """EvNN-layout forward of one layer over ``x`` [T, B, I]; returns y [T, B, H] and c [T, B, H]."""
    spike = spike or ref_triangle()
    H = thr.shape[0]
    ys, cs = [], []
    y, c = y0, c0
    for t in range(x.shape[0]):
        gx = x[t] @ kernel + bias
        gh = y @ recurrent_kernel + recurrent_bias
        z = torch.sigmoid(gx[:, :H] + gh[:, :H])
        r = torch.sigmoid(gx[:, H : 2 * H] + gh[:, H : 2 * H])
        g = torch.tanh(gx[:, 2 * H :] + r * gh[:, 2 * H :])
        c_hat = z * c + (1.0 - z) * g
        o = spike(c_hat - thr)
        y = c_hat * o
        c = c_hat - thr * o if reset == "subtract" else (c_hat * (1 - o) if reset == "zero" else c_hat)
        ys.append(y)
        cs.append(c)
    return torch.stack(ys), torch.stack(cs)


def c_hat_from(y: Tensor, c: Tensor, o: Tensor) -> Tensor:
    """Pre-reset state from a module's record: y where an event fired, else c (true for all resets)."""
    return torch.where(o > 0, y, c)
