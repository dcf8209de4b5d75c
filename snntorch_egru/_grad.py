"""The weight, bias, input and initial-state gradients of one EGRU layer (private).

Every launcher's backward loop (CPU: ``_cpu_backward``; CUDA: the backward kernels; the kernel
emulator) ends in per-step gate gradients; :func:`grad_products` turns them into the nine
gradients of the operator's inputs with a few large matrix products. It is written once here,
below the operator and the CUDA package, which both call it.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch

from . import functional as F
from ._engine import _sparse_left_mm, _sparse_left_mm_into


def grad_products(
    ga: torch.Tensor,
    gqn: torch.Tensor,
    dc: torch.Tensor,
    tb: torch.Tensor,
    dth: torch.Tensor,
    x: torch.Tensor,
    y0: torch.Tensor,
    ys: torch.Tensor,
    w_ih: torch.Tensor,
    w_t: torch.Tensor,
    need: Sequence[bool],
    input_is_events: bool,
) -> List[Optional[torch.Tensor]]:
    """Gradients of ``(x, y0, c0, trace0, w_ih, w_hh_eff, b_ih, b_hh, theta)`` from a backward loop.

    Args:
        ga: ``[T, B, 3H]`` input-side gate gradients ``(a_r, a_z, a_n)``.
        gqn: ``[T, B, H]`` recurrent-side n-gate gradient (``q = (a_r, a_z, q_n)``).
        dc: ``[B, H]`` gradient at ``c0``; tb: ``[B, H]`` carried trace gradient;
        dth: ``[H]`` or per-sample ``[B, H]`` threshold gradient.
        x: ``[T, B, I]`` layer input; y0: ``[B, H]``; ys: ``[T, B, H]`` events;
        w_ih: ``[3H, I]``; w_t: ``[H, 3H]`` = effective ``W_hh^T``.
        need: which of the nine gradients are needed.
    """
    T, B, H = gqn.shape
    I = x.shape[-1]
    ga2 = ga.reshape(T * B, 3 * H)
    gqn2 = gqn.reshape(T * B, H)
    out: List[Optional[torch.Tensor]] = [None] * 9
    if need[0]:
        out[0] = (ga2 @ w_ih).view(T, B, I)
    if need[1]:  # q_0 W_eff with q = (a_r, a_z | q_n), W_eff = w_t^T
        out[1] = ga[0, :, : 2 * H] @ w_t[:, : 2 * H].t() + gqn[0] @ w_t[:, 2 * H :].t()
    if need[2]:
        out[2] = dc
    if need[3]:
        out[3] = F.TRACE_DECAY * tb
    if need[4]:
        x2 = x.reshape(T * B, I)
        # [3H, I]; from the events (CSR) for a lower layer's output: a transposed view [I, 3H]^T
        out[4] = _sparse_left_mm(x2.t(), ga2).t() if input_is_events else ga2.t() @ x2
    if need[5]:
        # sum_t y_{t-1}^T q_t with q = (a_r, a_z | q_n), y_{-1} = y0: step 0 and the two column blocks apart,
        # written into the result, so neither y_prev nor q is stacked (4 T*B*H fewer elements); from the
        # events only, CSR when sparse (one conversion for both blocks). [3H, H] as a transposed view of
        # [H, 3H]: the copy into .grad's layout is AccumulateGrad's; transposing here would cost it again.
        n = (T - 1) * B
        g = torch.empty(H, 3 * H, dtype=ga.dtype, device=ga.device)
        rz, cand = g[:, : 2 * H], g[:, 2 * H :]
        _sparse_left_mm_into(
            ys[:-1].reshape(n, H).t(), (ga[1:, :, : 2 * H].reshape(n, 2 * H), gqn[1:].reshape(n, H)), (rz, cand)
        )
        rz.addmm_(y0.t(), ga[0, :, : 2 * H])
        cand.addmm_(y0.t(), gqn[0])
        out[5] = g.t()
    if need[6]:
        out[6] = ga2.sum(0)
    if need[7]:
        out[7] = torch.cat([ga2[:, : 2 * H].sum(0), gqn2.sum(0)])
    if need[8]:
        out[8] = dth.sum(0) if dth.dim() == 2 else dth
    return out
