// EGRU forward pass over a whole sequence: event-driven recurrent gather,
// gates, threshold, reset and trace, one launch for all steps.
//
// Work decomposition (mirrored line by line by snntorch_egru/cuda/_emulator.py):
//   item   = (b, chunk): sample b, units [chunk*EGRU_UNITS, (chunk+1)*EGRU_UNITS)
//   thread = (g, u) with u = tid % EGRU_UNITS (unit in the chunk),
//            g = tid / EGRU_UNITS (k-group, 0 .. EGRU_KSPLIT-1)
// For every step t in [t_begin, t_end) each block takes items blockIdx.x,
// blockIdx.x + gridDim.x, ... and
//   1. compacts the non-zero entries of y_{t-1}[b, :] (y0 when t == 0) into
//      shared memory, EGRU_TILE entries at a time, in ascending index order;
//   2. k-group g accumulates, for the active inputs k = g, g + KSPLIT, ...,
//      value * W_hh^T[j, {i, H+i, 2H+i}] (three contiguous, coalesced rows
//      of the transposed recurrent weights: only rows of units that fired are read);
//   3. the k-group partial sums are added in fixed order (deterministic);
//   4. k-group 0 evaluates the gates, threshold, reset, zoneout and trace of
//      unit i and writes y, c, o, trace (and r, z, n, h_n for the backward).
// Persistent mode (barrier != 0, cooperative launch): a grid-wide barrier
// separates steps. Step mode (barrier == 0): the host launches one step per
// launch (t_end = t_begin + 1); stream order separates steps.
// Dense mode (gh != 0, step mode only; for large batches, where nearly every
// recurrent row is needed by some sample): the host computes
// gh = y_{t-1} W_hh^T ([B, 3H], one cuBLAS GEMM) before each launch and
// steps 1-3 are skipped.
#include "egru_common.cuh"

extern "C" __global__ void __launch_bounds__(EGRU_BLOCK)
egru_forward(const real* __restrict__ gi,       // [T, B, 3H]  x W_ih^T + b_ih
             const wstore* __restrict__ whh_t,  // [H, 3H]     (masked W_hh)^T
             const real* __restrict__ bhh,      // [3H] or null
             const real* __restrict__ theta,    // [H]
             const real* __restrict__ y0,       // [B, H]
             const real* __restrict__ c0,       // [B, H]
             const real* __restrict__ tr0,      // [B, H]
             const real* __restrict__ zmask,    // [T, B, H] or null (training zoneout)
             const real zo_p,                   // eval zoneout probability (0 = off)
             const real zo_keep,                // 1 - zo_p
             const int reset_mode,              // 0 subtract, 1 zero, 2 none
             const real tr_decay,               // 0.9
             const real tr_gain,                // 1 - 0.9
             real* y, real* c, real* o, real* tr,          // [T, B, H]
             real* s_r, real* s_z, real* s_n, real* s_hn,  // [T, B, H] or all null
             const int T, const int B, const int H,
             const int t_begin, const int t_end,
             const real* gh,                    // [B, 3H] dense recurrent product or null
             unsigned int* barrier) {
    __shared__ real s_val[EGRU_TILE];
    __shared__ real s_red[3 * EGRU_BLOCK];
    __shared__ int s_idx[EGRU_TILE];
    __shared__ int s_scan[EGRU_NWARPS + 1];

    const int tid = threadIdx.x;
    const int u = tid % EGRU_UNITS;
    const int g = tid / EGRU_UNITS;
    const int nchunk = (H + EGRU_UNITS - 1) / EGRU_UNITS;
    const int nitems = B * nchunk;
    const size_t BH = (size_t)B * H;
    const size_t H3 = (size_t)3 * H;
    unsigned int nbar = 0;

    for (int t = t_begin; t < t_end; ++t) {
        for (int item = blockIdx.x; item < nitems; item += gridDim.x) {
            const int b = item / nchunk;
            const int chunk = item - b * nchunk;
            const int i = chunk * EGRU_UNITS + u;
            const bool valid = i < H;
            const real* yprev = (t == 0) ? (y0 + (size_t)b * H)
                                         : (y + ((size_t)(t - 1) * B + b) * H);
            // loads that do not depend on the gather, issued before it (their latency overlaps
            // the compaction and the gather instead of following them): gate inputs, biases,
            // threshold and the unit's own previous state
            const size_t row3 = ((size_t)t * B + b) * H3;
            const size_t idx = ((size_t)t * B + b) * H + i;
            const size_t bi = (size_t)b * H + i;
            real pre[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0};  // gi r/z/n, bhh r/z/n, theta, c_{t-1}, trace_{t-1}
            if (g == 0 && valid) {
                pre[0] = gi[row3 + i];
                pre[1] = gi[row3 + H + i];
                pre[2] = gi[row3 + 2 * H + i];
                if (bhh != 0) {
                    pre[3] = bhh[i];
                    pre[4] = bhh[H + i];
                    pre[5] = bhh[2 * H + i];
                }
                pre[6] = theta[i];
                // c_{t-1}, trace_{t-1} of (b, i): written by this same thread (persistent mode)
                // or by the previous launch (step mode), so plain loads are coherent.
                pre[7] = (t == 0) ? c0[bi] : c[idx - BH];
                pre[8] = (t == 0) ? tr0[bi] : tr[idx - BH];
            }
            real acc_r = 0, acc_z = 0, acc_n = 0;
            for (int base = 0; gh == 0 && base < H; base += EGRU_TILE) {  // gh: uniform
                const int len = min(EGRU_TILE, H - base);
                const int count = block_compact(yprev + base, len, base, s_idx, s_val, s_scan);
                if (valid) {
#pragma unroll 4
                    for (int k = g; k < count; k += EGRU_KSPLIT) {
                        const real v = s_val[k];
                        const wstore* row = whh_t + (size_t)s_idx[k] * H3;
                        acc_r += v * wload(row + i);
                        acc_z += v * wload(row + H + i);
                        acc_n += v * wload(row + 2 * H + i);
                    }
                }
                __syncthreads();  // s_idx / s_val are overwritten by the next tile
            }
            s_red[tid] = acc_r;
            s_red[EGRU_BLOCK + tid] = acc_z;
            s_red[2 * EGRU_BLOCK + tid] = acc_n;
            __syncthreads();
            if (g == 0 && valid) {
                real hr = 0, hz = 0, hn = 0;
                if (gh == 0) {
                    for (int gg = 0; gg < EGRU_KSPLIT; ++gg) {
                        const int s = gg * EGRU_UNITS + u;
                        hr += s_red[s];
                        hz += s_red[EGRU_BLOCK + s];
                        hn += s_red[2 * EGRU_BLOCK + s];
                    }
                } else {
                    const real* ghb = gh + (size_t)b * H3;
                    hr = ghb[i];
                    hz = ghb[H + i];
                    hn = ghb[2 * H + i];
                }
                if (bhh != 0) {
                    hr += pre[3];
                    hz += pre[4];
                    hn += pre[5];
                }
                const real r = egru_sigmoid(pre[0] + hr);
                const real z = egru_sigmoid(pre[1] + hz);
                const real n = egru_tanh(pre[2] + r * hn);
                const real cp = pre[7];
                const real tp = pre[8];
                real ch = n + z * (cp - n);
                if (zmask != 0) {
                    ch = cp + zmask[idx] * (ch - cp);
                } else if (zo_p > (real)0) {
                    ch = zo_p * cp + zo_keep * ch;
                }
                const real th = pre[6];
                const real ov = (ch - th > (real)0) ? (real)1 : (real)0;
                const real yv = ov * ch;
                real cv;
                if (reset_mode == 0) {
                    cv = ch - ov * th;
                } else if (reset_mode == 1) {
                    cv = ch * ((real)1 - ov);
                } else {
                    cv = ch;
                }
                y[idx] = yv;
                c[idx] = cv;
                o[idx] = ov;
                tr[idx] = tr_decay * tp + tr_gain * yv;
                if (s_r != 0) {
                    s_r[idx] = r;
                    s_z[idx] = z;
                    s_n[idx] = n;
                    s_hn[idx] = hn;
                }
            }
            __syncthreads();  // s_red is rewritten by the next item
        }
        if (barrier != 0 && t + 1 < t_end) {
            grid_barrier(barrier, ++nbar);
        }
    }
}
