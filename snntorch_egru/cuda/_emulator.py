"""A PyTorch emulation of the CUDA kernels' index scheme (runs on any device).

Each function mirrors one kernel of ``kernels/`` statement by statement, with
the per-thread work of one block vectorised over its threads: the grid-stride
loop over items, the (k-group, unit) thread layout, the tiled ballot/prefix-sum
compaction of the active inputs, the per-k-group accumulation order and the
fixed-order reductions, the carried buffers of the backward and the
warp-per-(sample, unit) recurrent product with its lane-strided partial sums and
xor-butterfly reduction. Launch geometry (grid, block, units, tile) is a
parameter so that small tests exercise several chunks, tiles and k-groups.

It is slow (Python loops over steps, blocks and items) and tests the *algorithm*
of the kernels, never the ``.cu`` files themselves: those are executed on the CPU
by the C++ harness in ``tests/harness`` (``tests/test_kernel_harness.py``), which
compiles ``kernels/*.cu`` unchanged and runs them through the real launcher.
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
    lane = torch.arange(block) % 32
    warp = torch.arange(block) // 32
    for off in range(0, n, block):
        k = off + torch.arange(block)
        inb = k < n
        v = torch.where(inb, src[k.clamp(max=n - 1)], src.new_zeros(()))
        flag = v != 0
        fw = flag.view(nwarps, 32).long()
        popc = fw.sum(1)                                   # __popc(ballot) per warp
        lanes_below = (torch.cumsum(fw, 1) - fw).view(-1)  # __popc(ballot & lanemask_lt)
        s_scan = torch.cumsum(popc, 0) - popc              # exclusive scan by thread 0
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

    def forward(self, cfg: KernelConfig, t: dict) -> None:
        gi, w, bhh, theta = t["gi"], t["whh_t"], t["bhh"], t["theta"]
        y0, c0, tr0, zmask = t["y0"], t["c0"], t["tr0"], t["zmask"]
        y, c, o, tr = t["y"], t["c"], t["o"], t["tr"]
        T, B, H3 = gi.shape
        H = H3 // 3
        real = gi.dtype
        block, units = self.block, self.units
        ksplit = block // units
        assert block % units == 0 and units % 32 == 0
        nchunk = (H + units - 1) // units
        nitems = B * nchunk
        tid = torch.arange(block)
        u, g = tid % units, tid // units
        wr = w.to(real)  # the kernel converts each stored weight on load (wload)
        zo_p, zo_keep = cfg.zoneout_p, 1.0 - cfg.zoneout_p
        for step in range(T):
            for blk in range(self.grid):
                for item in range(blk, nitems, self.grid):
                    b, chunk = divmod(item, nchunk)
                    i = chunk * units + u
                    valid = i < H
                    ic = i.clamp(max=H - 1)
                    yprev = y0[b] if step == 0 else y[step - 1, b]
                    acc = torch.zeros(3, block, dtype=real)
                    for base in range(0, H if not self.dense else 0, self.tile):
                        ln = min(self.tile, H - base)
                        s_idx, s_val, count = block_compact(yprev[base:base + ln], base, block, self.tile)
                        # thread (g, u) visits k = g, g + KSPLIT, ... (m = 0, 1, ...): all
                        # products at once, then added in the kernel's order m = 0, 1, ...
                        n_m = (count + ksplit - 1) // ksplit
                        if n_m == 0:
                            continue
                        k = g.unsqueeze(0) + ksplit * torch.arange(n_m).unsqueeze(1)  # [M, block]
                        act = valid & (k < count)
                        kk = k.clamp(max=count - 1)
                        v = torch.where(act, s_val[kk], torch.zeros((), dtype=real))
                        cols = torch.stack([ic, H + ic, 2 * H + ic])  # [3, block]
                        wv = wr[s_idx[kk].unsqueeze(0), cols.unsqueeze(1)]  # [3, M, block]
                        prod = v.unsqueeze(0) * wv
                        for m in range(n_m):
                            acc += prod[:, m]
                    # fixed-order reduction over k-groups, done by k-group 0
                    red = acc.view(3, ksplit, units)
                    h = torch.zeros(3, units, dtype=real)
                    for gg in range(ksplit):
                        h += red[:, gg]
                    ii = chunk * units + torch.arange(units)
                    ok = ii < H
                    ii = ii[ok]
                    h = h[:, ok]
                    if self.dense:  # gh = y_{t-1} W_hh^T computed by the host for the whole batch
                        gh = yprev @ w.to(real)
                        h = torch.stack([gh[ii], gh[H + ii], gh[2 * H + ii]])
                    if bhh is not None:
                        h = h + torch.stack([bhh[ii], bhh[H + ii], bhh[2 * H + ii]])
                    hr, hz, hn = h
                    r = torch.sigmoid(gi[step, b, ii] + hr)
                    z = torch.sigmoid(gi[step, b, H + ii] + hz)
                    n = torch.tanh(gi[step, b, 2 * H + ii] + r * hn)
                    cp = c0[b, ii] if step == 0 else c[step - 1, b, ii]
                    tp = tr0[b, ii] if step == 0 else tr[step - 1, b, ii]
                    ch = n + z * (cp - n)
                    if zmask is not None:
                        ch = cp + zmask[step, b, ii] * (ch - cp)
                    elif zo_p > 0:
                        ch = zo_p * cp + zo_keep * ch
                    th = theta[ii]
                    ov = (ch - th > 0).to(real)
                    yv = ov * ch
                    if cfg.reset_mode == 0:
                        cv = ch - ov * th
                    elif cfg.reset_mode == 1:
                        cv = ch * (1 - ov)
                    else:
                        cv = ch
                    y[step, b, ii], c[step, b, ii], o[step, b, ii] = yv, cv, ov
                    tr[step, b, ii] = TRACE_DECAY * tp + _GAIN * yv
                    if t["s_r"] is not None:
                        t["s_r"][step, b, ii], t["s_z"][step, b, ii] = r, z
                        t["s_n"][step, b, ii], t["s_hn"][step, b, ii] = n, hn

    def backward(self, cfg: KernelConfig, t: dict) -> None:
        w, theta, c0, zmask = t["whh_t"], t["theta"], t["c0"], t["zmask"]
        y, c, o = t["y"], t["c"], t["o"]
        ga, gqn, dy, dc, tb, dth = t["ga"], t["gqn"], t["dy"], t["dc"], t["tb"], t["dth"]
        T, B, H = y.shape
        real = y.dtype
        block = self.block
        nchunk = (H + block - 1) // block
        nitems = B * nchunk
        zo_p, zo_keep = cfg.zoneout_p, 1.0 - cfg.zoneout_p
        gamma, eps = cfg.gamma, cfg.eps
        zero = torch.zeros((), dtype=real)

        def up(name, step, b, ii):
            g = t[name]
            return zero if g is None else g[step, b, ii]

        for step in range(T - 1, -1, -1):
            # phase 1: thread per (b, i)
            for blk in range(self.grid):
                for item in range(blk, nitems, self.grid):
                    b, chunk = divmod(item, nchunk)
                    ii = chunk * block + torch.arange(block)
                    ii = ii[ii < H]
                    th = theta[ii]
                    ov = o[step, b, ii]
                    ch = torch.where(ov != 0, y[step, b, ii], c[step, b, ii])
                    v = ch - th
                    lin = 1 - eps * v.abs()
                    psi = torch.where(lin > 0, gamma * lin, zero)
                    tbar = up("g_tr", step, b, ii) + TRACE_DECAY * tb[b, ii]
                    tb[b, ii] = tbar
                    Y = up("g_y", step, b, ii) + dy[b, ii] + _GAIN * tbar
                    C = up("g_c", step, b, ii) + dc[b, ii]
                    if cfg.reset_mode == 0:
                        ko, kc = -th, torch.ones_like(ch)
                    elif cfg.reset_mode == 1:
                        ko, kc = -ch, 1 - ov
                    else:
                        ko, kc = torch.zeros_like(ch), torch.ones_like(ch)
                    Ob = up("g_o", step, b, ii) + ch * Y + ko * C
                    S = psi * Ob
                    dtheta = -S
                    if cfg.reset_mode == 0:
                        dtheta = dtheta - ov * C
                    dth[b, ii] += dtheta
                    Chat = ov * Y + S + kc * C
                    if zmask is not None:
                        m = zmask[step, b, ii]
                        Chat0, dcp = m * Chat, (1 - m) * Chat
                    elif zo_p > 0:
                        Chat0, dcp = zo_keep * Chat, zo_p * Chat
                    else:
                        Chat0, dcp = Chat, torch.zeros_like(Chat)
                    r, z = t["s_r"][step, b, ii], t["s_z"][step, b, ii]
                    n, hn = t["s_n"][step, b, ii], t["s_hn"][step, b, ii]
                    cp = c0[b, ii] if step == 0 else c[step - 1, b, ii]
                    dc[b, ii] = dcp + z * Chat0
                    nb = (1 - z) * Chat0
                    zb = (cp - n) * Chat0
                    an = (1 - n * n) * nb
                    rb = hn * an
                    ar = r * (1 - r) * rb
                    az = z * (1 - z) * zb
                    ga[step, b, ii], ga[step, b, H + ii], ga[step, b, 2 * H + ii] = ar, az, an
                    gqn[step, b, ii] = r * an
            if step >= 1 and self.dense:  # host GEMMs instead of phase 2
                w_eff = w.to(real).t()
                dy.copy_(ga[step, :, :2 * H] @ w_eff[:2 * H] + gqn[step] @ w_eff[2 * H:])
            # phase 2: warp per (b, j), grid-stride over the B * H pairs
            elif step >= 1:
                pairs = torch.arange(B * H)  # grid-stride: pair p is handled by warp p % (grid * warps)
                bb, jj = pairs // H, pairs % H
                ov = o[step - 1, bb, jj]
                ch = torch.where(ov != 0, y[step - 1, bb, jj], c[step - 1, bb, jj])
                lin = 1 - eps * (ch - theta[jj]).abs()
                in_g = (ov != 0) | ((gamma > 0) & (lin > 0))
                H3 = 3 * H
                nblk = (H3 + 31) // 32
                q = torch.zeros(B, nblk * 32, dtype=real)
                q[:, :2 * H] = ga[step, :, :2 * H]  # q_t = [a_r, a_z | q_n]
                q[:, 2 * H:H3] = gqn[step]
                wt = torch.zeros(H, nblk * 32, dtype=real)
                wt[:, :H3] = w.to(real)
                lanes = torch.zeros(B * H, 32, dtype=real)
                for kb in range(nblk):  # lane l sums k = l, l + 32, ... in increasing order
                    sl = slice(kb * 32, kb * 32 + 32)
                    lanes += q[bb, sl] * wt[jj, sl]
                for off in (16, 8, 4, 2, 1):  # __shfl_xor_sync butterfly
                    lanes = lanes + lanes[:, torch.arange(32) ^ off]
                acc = torch.where(in_g, lanes[:, 0], zero)
                dy.view(-1)[:] = acc
