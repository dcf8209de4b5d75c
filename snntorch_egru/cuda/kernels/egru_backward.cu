// EGRU backward pass (sparse BPTT, egru-model.md section 3), one launch for all
// steps, walking t = t_begin-1 down to t_end.
//
// Per step t two phases (mirrored by snntorch_egru/cuda/_emulator.py):
//   phase 1 (pointwise, thread per (b, i), items (b, chunk of EGRU_BLOCK units)):
//     reads the carried gradients dy[b, i] (= delta y_t, written by phase 2 of
//     step t+1), dc[b, i] (delta c_t), tb[b, i] (trace carry) and the upstream
//     gradients; writes the gate gradients a_t = [a_r, a_z, a_n] ([T, B, 3H])
//     and q_n = r * a_n ([T, B, H]; the recurrent-side gradient is
//     q_t = [a_r, a_z, q_n]), delta c_{t-1} into dc, the trace
//     carry into tb and accumulates the threshold gradient of (b, i) into dth
//     (each (b, i) is owned by one thread for the whole launch: no atomics,
//     deterministic; the host sums dth over b).
//   phase 2 (warp per (b, j), only when t >= 1): if unit j of sample b was in
//     G_{t-1} (fired, or |c_hat - theta| inside the surrogate support),
//     dy[b, j] = sum_k q_t[b, k] * W_hh[k, j] (row j of W_hh^T, coalesced,
//     fixed-order shuffle reduction); otherwise dy[b, j] = 0 (never needed:
//     it is multiplied by o = 0 and psi = 0).
// Weight, bias and input gradients are dense GEMMs / reductions over a and q_n
// done by the host after the loop; grad y0 = q_0 W_hh likewise.
// Persistent mode: grid barriers between phases; step mode: the host launches
// phase 1 and phase 2 of one step separately (phases = 1 or 2). Dense mode
// (large batches): the host replaces phase 2 by dy = q_t W_hh (two GEMMs,
// all units), which is equal on G_{t-1} and harmless elsewhere.
#include "egru_common.cuh"

extern "C" __global__ void __launch_bounds__(EGRU_BLOCK)
egru_backward(const wstore* __restrict__ whh_t,  // [H, 3H] (masked W_hh)^T
              const real* __restrict__ theta,    // [H]
              const real* __restrict__ c0,       // [B, H]
              const real* __restrict__ zmask,    // [T, B, H] or null
              const real zo_p, const real zo_keep,
              const int reset_mode,              // 0 subtract, 1 zero, 2 none
              const real gamma, const real eps,  // surrogate psi(v) = gamma max(0, 1 - eps |v|)
              const real tr_decay, const real tr_gain,
              const real* __restrict__ y,        // [T, B, H] forward outputs
              const real* __restrict__ c,
              const real* __restrict__ o,
              const real* __restrict__ s_r,      // [T, B, H] saved gates
              const real* __restrict__ s_z,
              const real* __restrict__ s_n,
              const real* __restrict__ s_hn,
              const real* __restrict__ g_y,      // [T, B, H] upstream gradients or null
              const real* __restrict__ g_c,
              const real* __restrict__ g_o,
              const real* __restrict__ g_tr,
              real* ga,                          // [T, B, 3H] out: a_t
              real* gqn,                         // [T, B, H]  out: q_n = r * a_n
              real* dy,                          // [B, H] carry (zero at start)
              real* dc,                          // [B, H] carry (zero at start); grad c0 at the end
              real* tb,                          // [B, H] trace carry (zero at start)
              real* dth,                         // [B, H] threshold-gradient accumulator (zero at start)
              const int T, const int B, const int H,
              const int t_begin, const int t_end,  // steps t_begin-1 down to t_end
              const int phases,                  // bit 0: phase 1, bit 1: phase 2
              unsigned int* barrier) {
    const int tid = threadIdx.x;
    const int lane = tid & 31;
    const int nchunk = (H + EGRU_BLOCK - 1) / EGRU_BLOCK;
    const int nitems = B * nchunk;
    const size_t BH = (size_t)B * H;
    const size_t H3 = (size_t)3 * H;
    const int warps_total = gridDim.x * EGRU_NWARPS;
    const int warp_global = blockIdx.x * EGRU_NWARPS + (tid >> 5);
    unsigned int nbar = 0;

    for (int t = t_begin - 1; t >= t_end; --t) {
        if (phases & 1) {
            for (int item = blockIdx.x; item < nitems; item += gridDim.x) {
                const int b = item / nchunk;
                const int i = (item - b * nchunk) * EGRU_BLOCK + tid;
                if (i >= H) continue;
                const size_t idx = ((size_t)t * B + b) * H + i;
                const size_t bi = (size_t)b * H + i;
                const real th = theta[i];
                const real ov = o[idx];
                const real ch = (ov != (real)0) ? y[idx] : c[idx];  // exact c_hat
                const real v = ch - th;
                const real lin = (real)1 - eps * egru_abs(v);
                const real psi = (lin > (real)0) ? gamma * lin : (real)0;
                const real tbar = (g_tr != 0 ? g_tr[idx] : (real)0) + tr_decay * tb[bi];
                tb[bi] = tbar;
                const real Y = (g_y != 0 ? g_y[idx] : (real)0) + ld_cg(dy + bi) + tr_gain * tbar;
                const real C = (g_c != 0 ? g_c[idx] : (real)0) + dc[bi];
                real kappa_o, kappa_c;
                if (reset_mode == 0) {
                    kappa_o = -th;
                    kappa_c = (real)1;
                } else if (reset_mode == 1) {
                    kappa_o = -ch;
                    kappa_c = (real)1 - ov;
                } else {
                    kappa_o = (real)0;
                    kappa_c = (real)1;
                }
                const real Ob = (g_o != 0 ? g_o[idx] : (real)0) + ch * Y + kappa_o * C;
                const real S = psi * Ob;
                real dtheta = -S;
                if (reset_mode == 0) dtheta -= ov * C;
                dth[bi] += dtheta;
                const real Chat = ov * Y + S + kappa_c * C;
                real Chat0, dcp;
                if (zmask != 0) {
                    const real m = zmask[idx];
                    Chat0 = m * Chat;
                    dcp = ((real)1 - m) * Chat;
                } else if (zo_p > (real)0) {
                    Chat0 = zo_keep * Chat;
                    dcp = zo_p * Chat;
                } else {
                    Chat0 = Chat;
                    dcp = (real)0;
                }
                const real r = s_r[idx];
                const real z = s_z[idx];
                const real n = s_n[idx];
                const real hn = s_hn[idx];
                const real cp = (t == 0) ? c0[bi] : c[idx - BH];
                dc[bi] = dcp + z * Chat0;
                const real nb = ((real)1 - z) * Chat0;
                const real zb = (cp - n) * Chat0;
                const real an = ((real)1 - n * n) * nb;
                const real rb = hn * an;
                const real ar = r * ((real)1 - r) * rb;
                const real az = z * ((real)1 - z) * zb;
                const size_t row3 = ((size_t)t * B + b) * H3;
                ga[row3 + i] = ar;
                ga[row3 + H + i] = az;
                ga[row3 + 2 * H + i] = an;
                gqn[idx] = r * an;
            }
        }
        if (barrier != 0) grid_barrier(barrier, ++nbar);
        if ((phases & 2) && t >= 1) {
            for (int p = warp_global; p < B * H; p += warps_total) {
                const int b = p / H;
                const int j = p - b * H;
                const size_t idx = ((size_t)(t - 1) * B + b) * H + j;
                const real ov = o[idx];
                const real ch = (ov != (real)0) ? y[idx] : c[idx];
                const real lin = (real)1 - eps * egru_abs(ch - theta[j]);
                const bool in_g = (ov != (real)0) || (gamma > (real)0 && lin > (real)0);
                real acc = 0;
                if (in_g) {  // warp-uniform branch
                    const wstore* row = whh_t + (size_t)j * H3;
                    // q_t[b, :] = [a_r, a_z | q_n]: the first 2H entries from ga, the last H from gqn
                    const real* qa = ga + ((size_t)t * B + b) * H3;
                    const real* qn = gqn + ((size_t)t * B + b) * H;
                    const size_t H2 = (size_t)2 * H;
#pragma unroll 4
                    for (size_t k = lane; k < H3; k += 32) {
                        const real qk = (k < H2) ? ld_cg(qa + k) : ld_cg(qn + (k - H2));
                        acc += qk * wload(row + k);
                    }
                    for (int off = 16; off > 0; off >>= 1) {
                        acc += __shfl_xor_sync(0xffffffffu, acc, off);
                    }
                }
                if (lane == 0) dy[(size_t)b * H + j] = acc;
            }
        }
        if (barrier != 0 && t - 1 >= t_end) grid_barrier(barrier, ++nbar);
    }
}
