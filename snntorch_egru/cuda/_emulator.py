"""A PyTorch emulation of the CUDA kernels' index scheme (runs on any device).

Each function mirrors one phase of the kernels in ``snntorch_egru/cuda/kernels/``, with
the per-thread work of one block vectorised over its threads: the grid-stride
loop over items, the (k-group, unit) thread layout, the tiled ballot/prefix-sum
compaction of the active inputs, the per-k-group accumulation order and the
fixed-order reductions, the carried buffers of the backward and the
recurrent product of the in-G rows with the partial sums of the kernel's scalar path
and its xor-butterfly reduction. Launch geometry (grid, block, units, tile) is a
parameter so that small tests exercise several chunks, tiles and k-groups.

It is slow (Python loops over steps, blocks and items) and tests the *algorithm*
of the kernels, never the ``.cu`` files themselves: those are executed on the CPU
by the C++ harness in ``tests/harness`` (``tests/test_kernel_harness.py``), which
compiles the ``.cu`` files unchanged and runs them through the real launcher.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..functional import TRACE_DECAY
from ._function import KernelConfig

__all__ = ["EmulatorLauncher", "block_compact"]

_GAIN = 1.0 - TRACE_DECAY


def block_compact(src: torch.Tensor, gbase: int, block: int, tile: int):
    """Mirror of ``block_compact`` (egru_common.cuh): non-zero entries of ``src`` in index order."""
    n = src.numel()
    assert n <= tile
    nwarps = block // 32
    s_idx = torch.full((tile,), -1, dtype=torch.long)
    s_val = src.new_zeros(tile)
    total = 0
    warp = torch.arange(block) // 32
    for off in range(0, n, block):
        k = off + torch.arange(block)
        inb = k < n
        v = torch.where(inb, src[k.clamp(max=n - 1)], src.new_zeros(()))
        flag = v != 0
        fw = flag.view(nwarps, 32).long()
        popc = fw.sum(1)  # __popc(ballot) per warp
        lanes_below = (torch.cumsum(fw, 1) - fw).view(-1)  # __popc(ballot & lanemask_lt)
        s_scan = torch.cumsum(popc, 0) - popc  # exclusive scan by thread 0
        pos = total + s_scan[warp] + lanes_below
        pos, kk, vv = pos[flag], k[flag], v[flag]
        assert (pos.numel() == 0 or int(pos.max()) < tile) and len(set(pos.tolist())) == pos.numel()
        s_idx[pos] = gbase + kk
        s_val[pos] = vv
        total += int(popc.sum())
    return s_idx, s_val, total


@dataclass
class EmulatorLauncher:
    """Runs the kernels' algorithm in PyTorch with the given launch geometry."""

    grid: int = 3
    block: int = 256
    units: int = 32
    tile: int = 2048
    dense: bool = False  # mirrors the launcher's dense mode (cuBLAS recurrent products)

    # ------------------------------------------------------------------ forward
    def forward(self, cfg: KernelConfig, t: dict) -> None:
        T, B, H3 = t["gi"].shape
        H = H3 // 3
        units = self.units
        assert self.block % units == 0 and units % 32 == 0
        nchunk = (H + units - 1) // units
        wr = t["whh_t"].to(t["gi"].dtype)  # the kernel converts each stored weight on load (wload)
        for step in range(T):
            for blk in range(self.grid):  # grid-stride loop over the items (b, chunk)
                for item in range(blk, B * nchunk, self.grid):
                    b, chunk = divmod(item, nchunk)
                    yprev = t["y0"][b] if step == 0 else t["y"][step - 1, b]
                    ii = chunk * units + torch.arange(units)
                    ok = ii < H
                    h = (yprev @ wr).view(3, H)[:, ii[ok]] if self.dense else self._gather(yprev, wr, chunk)[:, ok]
                    _forward_pointwise(cfg, t, step, b, ii[ok], h)

    def _gather(self, yprev: torch.Tensor, wr: torch.Tensor, chunk: int) -> torch.Tensor:
        """``[3, units]`` recurrent sums of one item: compaction tiles, then k-group g of thread
        (g, u) visits the active inputs k = g, g + KSPLIT, ... in order; k-groups added in order."""
        H = yprev.numel()
        block, units = self.block, self.units
        ksplit = block // units
        tid = torch.arange(block)
        u, g = tid % units, tid // units
        i = chunk * units + u
        valid, ic = i < H, i.clamp(max=H - 1)
        acc = torch.zeros(3, block, dtype=wr.dtype)
        for base in range(0, H, self.tile):
            s_idx, s_val, count = block_compact(yprev[base : base + min(self.tile, H - base)], base, block, self.tile)
            n_m = (count + ksplit - 1) // ksplit
            if n_m == 0:
                continue
            k = g.unsqueeze(0) + ksplit * torch.arange(n_m).unsqueeze(1)  # [M, block]
            kk = k.clamp(max=count - 1)
            v = torch.where(valid & (k < count), s_val[kk], torch.zeros((), dtype=wr.dtype))
            cols = torch.stack([ic, H + ic, 2 * H + ic])  # [3, block]
            prod = v.unsqueeze(0) * wr[s_idx[kk].unsqueeze(0), cols.unsqueeze(1)]  # [3, M, block]
            for m in range(n_m):  # the kernel's order m = 0, 1, ...
                acc += prod[:, m]
        red = acc.view(3, ksplit, units)
        h = torch.zeros(3, units, dtype=wr.dtype)
        for gg in range(ksplit):  # fixed-order reduction over k-groups, done by k-group 0
            h += red[:, gg]
        return h

    # ------------------------------------------------------------------ backward
    def backward(self, cfg: KernelConfig, t: dict) -> None:
        T, B, H = t["y"].shape
        nchunk = (H + self.block - 1) // self.block
        for step in range(T - 1, -1, -1):
            for blk in range(self.grid):  # phase 1: thread per (b, i), grid-stride over (b, chunk)
                for item in range(blk, B * nchunk, self.grid):
                    b, chunk = divmod(item, nchunk)
                    ii = chunk * self.block + torch.arange(self.block)
                    _backward_pointwise(cfg, t, step, b, ii[ii < H])
            if step >= 1 and self.dense:  # host GEMMs instead of phase 2
                w_eff = t["whh_t"].to(t["y"].dtype).t()
                t["dy"].copy_(t["ga"][step, :, : 2 * H] @ w_eff[: 2 * H] + t["gqn"][step] @ w_eff[2 * H :])
            elif step >= 1:
                t["dy"].copy_(_recurrent_dy(cfg, t, step))


def _forward_pointwise(cfg: KernelConfig, t: dict, step: int, b: int, ii: torch.Tensor, h: torch.Tensor) -> None:
    """k-group 0 of one forward item: gates, threshold, reset, zoneout, trace of units ``ii``."""
    gi, H = t["gi"], t["y"].shape[2]
    if t["bhh"] is not None:
        h = h + t["bhh"].view(3, H)[:, ii]
    hr, hz, hn = h
    r = torch.sigmoid(gi[step, b, ii] + hr)
    z = torch.sigmoid(gi[step, b, H + ii] + hz)
    n = torch.tanh(gi[step, b, 2 * H + ii] + r * hn)
    cp = t["c0"][b, ii] if step == 0 else t["c"][step - 1, b, ii]
    tp = t["tr0"][b, ii] if step == 0 else t["tr"][step - 1, b, ii]
    ch = n + z * (cp - n)
    if t["zmask"] is not None:
        ch = cp + t["zmask"][step, b, ii] * (ch - cp)
    elif cfg.zoneout_p > 0:
        ch = cfg.zoneout_p * cp + (1.0 - cfg.zoneout_p) * ch
    th = t["theta"][ii]
    ov = (ch - th > 0).to(ch.dtype)
    yv = ov * ch
    cv = {0: ch - ov * th, 1: ch * (1 - ov)}.get(cfg.reset_mode, ch)
    t["y"][step, b, ii], t["c"][step, b, ii], t["o"][step, b, ii] = yv, cv, ov
    t["tr"][step, b, ii] = TRACE_DECAY * tp + _GAIN * yv
    if t["s_r"] is not None:
        t["s_r"][step, b, ii], t["s_z"][step, b, ii] = r, z
        t["s_n"][step, b, ii], t["s_hn"][step, b, ii] = n, hn


def _backward_pointwise(cfg: KernelConfig, t: dict, step: int, b: int, ii: torch.Tensor) -> None:
    """Phase 1 for units ``ii`` of sample ``b``: carries, gate gradients, threshold gradient."""
    y, c, o, H = t["y"], t["c"], t["o"], t["y"].shape[2]
    zero = torch.zeros((), dtype=y.dtype)

    def up(name):
        return zero if t[name] is None else t[name][step, b, ii]

    th, ov = t["theta"][ii], o[step, b, ii]
    ch = torch.where(ov != 0, y[step, b, ii], c[step, b, ii])
    lin = 1 - cfg.eps * (ch - th).abs()
    psi = torch.where(lin > 0, cfg.gamma * lin, zero)
    tbar = up("g_tr") + TRACE_DECAY * t["tb"][b, ii]
    t["tb"][b, ii] = tbar
    Y = up("g_y") + t["dy"][b, ii] + _GAIN * tbar
    C = up("g_c") + t["dc"][b, ii]
    ko, kc = {0: (-th, 1.0), 1: (-ch, 1 - ov)}.get(cfg.reset_mode, (zero, 1.0))
    S = psi * (up("g_o") + ch * Y + ko * C)
    t["dth"][b, ii] += -S - ov * C if cfg.reset_mode == 0 else -S
    Chat = ov * Y + S + kc * C
    if t["zmask"] is not None:
        m = t["zmask"][step, b, ii]
        Chat0, dcp = m * Chat, (1 - m) * Chat
    elif cfg.zoneout_p > 0:
        Chat0, dcp = (1.0 - cfg.zoneout_p) * Chat, cfg.zoneout_p * Chat
    else:
        Chat0, dcp = Chat, torch.zeros_like(Chat)
    r, z = t["s_r"][step, b, ii], t["s_z"][step, b, ii]
    n, hn = t["s_n"][step, b, ii], t["s_hn"][step, b, ii]
    cp = t["c0"][b, ii] if step == 0 else c[step - 1, b, ii]
    t["dc"][b, ii] = dcp + z * Chat0
    an = (1 - n * n) * ((1 - z) * Chat0)
    ar = r * (1 - r) * (hn * an)
    az = z * (1 - z) * ((cp - n) * Chat0)
    t["ga"][step, b, ii], t["ga"][step, b, H + ii], t["ga"][step, b, 2 * H + ii] = ar, az, an
    t["gqn"][step, b, ii] = r * an


def _recurrent_dy(cfg: KernelConfig, t: dict, step: int, depth: int = 2) -> torch.Tensor:
    """Phase 2: ``dy[b, j] = q_t[b] . W_eff^T[j]`` for (b, j) in G_{t-1}, else 0. Order of the
    kernel's scalar path: lane l, partial d sums k = l + 32 d + 32 depth m (m = 0, 1, ...), the
    partials are added in order, then the lanes by the xor butterfly."""
    y, c, o, theta = t["y"], t["c"], t["o"], t["theta"]
    T, B, H = y.shape
    real = y.dtype
    ov, yp, cp = o[step - 1], y[step - 1], c[step - 1]
    ch = torch.where(ov != 0, yp, cp)
    in_g = (ov != 0) | ((cfg.gamma > 0) & (1 - cfg.eps * (ch - theta).abs() > 0))  # [B, H]
    H3, span = 3 * H, 32 * depth
    nblk = (H3 + span - 1) // span
    q = torch.zeros(B, nblk * span, dtype=real)
    q[:, : 2 * H], q[:, 2 * H : H3] = t["ga"][step, :, : 2 * H], t["gqn"][step]  # q_t = [a_r, a_z | q_n]
    w = torch.zeros(H, nblk * span, dtype=real)
    w[:, :H3] = t["whh_t"].to(real)
    q, w = q.view(B, 1, nblk, depth, 32), w.view(1, H, nblk, depth, 32)
    part = torch.zeros(B, H, depth, 32, dtype=real)  # [b, j, partial d, lane]
    for m in range(nblk):
        part += q[:, :, m] * w[:, :, m]
    lanes = part[:, :, 0]
    for d in range(1, depth):
        lanes = lanes + part[:, :, d]
    for off in (16, 8, 4, 2, 1):  # __shfl_xor_sync butterfly
        lanes = lanes + lanes[..., torch.arange(32) ^ off]
    return torch.where(in_g, lanes[..., 0], torch.zeros((), dtype=real))
