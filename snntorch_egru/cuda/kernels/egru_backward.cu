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
//   phase 2 (only when t >= 1; items (b, tile of EGRU_NWARPS rows), warp w of the block owns
//     row j = tile * EGRU_NWARPS + w): if unit j of sample b was in G_{t-1} (fired, or
//     |c_hat - theta| inside the surrogate support), dy[b, j] = sum_k q_t[b, k] * W_hh[k, j];
//     otherwise dy[b, j] = 0 (never needed: it is multiplied by o = 0 and psi = 0).
//     The block stages q_t[b, :] = [a_r, a_z | q_n] in shared memory, EGRU_QCHUNK entries at a
//     time (the [0, 2H) and [2H, 3H) segments copied by separate loops, all loads issued
//     before the stores), and skips the staging when none of its rows is in G. Each in-G
//     warp then streams its row of W_hh^T (contiguous, coalesced) with vector loads of 4
//     values when H % 4 == 0 and the weights are aligned (scalar loads otherwise), EGRU_BDEPTH
//     loads in flight per lane and EGRU_BDEPTH independent partial sums, added in fixed
//     order and then by a fixed xor-shuffle butterfly (deterministic).
// Weight, bias and input gradients are dense GEMMs / reductions over a and q_n
// done by the host after the loop; grad y0 = q_0 W_hh likewise.
// Persistent mode: grid barriers between phases; step mode: the host launches
// phase 1 and phase 2 of one step separately (phases = 1 or 2). Dense mode
// (large batches): the host replaces phase 2 by dy = q_t W_hh (two GEMMs,
// all units), which is equal on G_{t-1} and harmless elsewhere.
#include "egru_common.cuh"

// (guarded: the CPU harness includes this file once per block slot)
#ifndef EGRU_BACKWARD_HELPERS
#define EGRU_BACKWARD_HELPERS
// Entries of q_t[b, :] staged in shared memory at once (12 KB float, 24 KB double).
#define EGRU_QCHUNK 3072
// Vector loads in flight per lane in the phase-2 dot product (and independent partial sums).
#define EGRU_BDEPTH 2
// q loads per thread issued before their shared-memory stores (4 float / 2 double: register budget)
#define EGRU_QSTAGE (sizeof(real) == 8 ? 2 : 4)
#if (EGRU_QCHUNK % (4 * EGRU_BLOCK)) != 0
#error "EGRU_QCHUNK must be a multiple of 4 * EGRU_BLOCK"
#endif

// s_q[k] = src[k] for k in [lo, hi) (all threads of the block), EGRU_QSTAGE loads per
// thread issued before their stores (src was written by other blocks: L2-coherent loads).
__device__ __forceinline__ void egru_stage(const real* src, int lo, int hi, real* s_q) {
    for (int k0 = lo; k0 < hi; k0 += EGRU_QSTAGE * EGRU_BLOCK) {  // uniform
        real v[4];
#pragma unroll
        for (int r = 0; r < EGRU_QSTAGE; ++r) {
            const int k = k0 + r * EGRU_BLOCK + threadIdx.x;
            v[r] = (k < hi) ? ld_cg(src + k) : (real)0;
        }
#pragma unroll
        for (int r = 0; r < EGRU_QSTAGE; ++r) {
            const int k = k0 + r * EGRU_BLOCK + threadIdx.x;
            if (k < hi) s_q[k] = v[r];
        }
    }
}

// Lane `lane`'s share of sum_k sq[k] * wr[k] over k in [0, len), added into p[0 .. EGRU_BDEPTH).
// vec: wr and len are multiples of 4 values (4-wide loads); sq is 4-value aligned.
__device__ __forceinline__ void egru_row_dot(const real* sq, const wstore* wr, int len, int lane, bool vec,
                                             real* p) {
    const int D = EGRU_BDEPTH;
    if (vec) {
        const int step = 128 * D;  // D vectors of 4 per lane, 32 lanes
        int k = 4 * lane;
        for (; k + 128 * (D - 1) < len; k += step) {
            egru_vec4<wstore> w[EGRU_BDEPTH];
#pragma unroll
            for (int d = 0; d < D; ++d) w[d] = *reinterpret_cast<const egru_vec4<wstore>*>(wr + k + 128 * d);
#pragma unroll
            for (int d = 0; d < D; ++d) {
                const egru_vec4<real> q = *reinterpret_cast<const egru_vec4<real>*>(sq + k + 128 * d);
#pragma unroll
                for (int e = 0; e < 4; ++e) p[d] += q.v[e] * wconv(w[d].v[e]);
            }
        }
        for (; k < len; k += 128) {  // fewer than D vectors left
            const egru_vec4<wstore> w = *reinterpret_cast<const egru_vec4<wstore>*>(wr + k);
            const egru_vec4<real> q = *reinterpret_cast<const egru_vec4<real>*>(sq + k);
#pragma unroll
            for (int e = 0; e < 4; ++e) p[0] += q.v[e] * wconv(w.v[e]);
        }
    } else {
        int k = lane;
        for (; k + 32 * (D - 1) < len; k += 32 * D) {
            wstore w[EGRU_BDEPTH];
#pragma unroll
            for (int d = 0; d < D; ++d) w[d] = wr[k + 32 * d];
#pragma unroll
            for (int d = 0; d < D; ++d) p[d] += sq[k + 32 * d] * wconv(w[d]);
        }
        for (; k < len; k += 32) p[0] += sq[k] * wload(wr + k);
    }
}

#endif  // EGRU_BACKWARD_HELPERS

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
    __shared__ EGRU_ALIGN(32) real s_q[EGRU_QCHUNK];
    __shared__ int s_need[EGRU_NWARPS];
    const int warp = tid >> 5;
    const int ntile = (H + EGRU_NWARPS - 1) / EGRU_NWARPS;
    const int nitems2 = B * ntile;
    // 4-wide loads: every row start (j * 3H) and chunk start a multiple of 4, the weights aligned
    const bool vec = (H % 4 == 0) && ((size_t)whh_t % sizeof(egru_vec4<wstore>) == 0);
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
            const real* qa = ga + (size_t)t * B * H3;  // + b * H3: [a_r, a_z | a_n] of step t
            const real* qn = gqn + (size_t)t * BH;     // + b * H: q_n of step t
            for (int item = blockIdx.x; item < nitems2; item += gridDim.x) {
                const int b = item / ntile;
                const int j = (item - b * ntile) * EGRU_NWARPS + warp;
                bool in_g = false;
                if (j < H) {
                    const size_t idx = ((size_t)(t - 1) * B + b) * H + j;
                    const real ov = o[idx];
                    const real ch = (ov != (real)0) ? y[idx] : c[idx];
                    const real lin = (real)1 - eps * egru_abs(ch - theta[j]);
                    in_g = (ov != (real)0) || (gamma > (real)0 && lin > (real)0);  // warp-uniform
                }
                if (lane == 0) s_need[warp] = in_g ? 1 : 0;
                __syncthreads();
                bool any = false;
                for (int w = 0; w < EGRU_NWARPS; ++w) any = any || (s_need[w] != 0);  // block-uniform
                real p[EGRU_BDEPTH];
                for (int d = 0; d < EGRU_BDEPTH; ++d) p[d] = (real)0;
                const wstore* row = whh_t + (size_t)(j < H ? j : 0) * H3;
                for (int base = 0; any && base < (int)H3; base += EGRU_QCHUNK) {
                    const int len = min(EGRU_QCHUNK, (int)H3 - base);
                    // stage q_t[b, base : base + len): the a_r, a_z part from ga, the q_n part from gqn
                    const int split = min(max(2 * H - base, 0), len);
                    egru_stage(qa + (size_t)b * H3 + base, 0, split, s_q);
                    egru_stage(qn + (size_t)b * H + (base - 2 * H), split, len, s_q);
                    __syncthreads();
                    if (in_g) egru_row_dot(s_q, row + base, len, lane, vec, p);  // warp-uniform
                    __syncthreads();  // s_q is rewritten by the next chunk / item
                }
                if (!any) __syncthreads();  // s_need is rewritten by the next item
                real acc = p[0];
                for (int d = 1; d < EGRU_BDEPTH; ++d) acc += p[d];
                if (in_g) {
                    for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
                }
                if (j < H && lane == 0) dy[(size_t)b * H + j] = in_g ? acc : (real)0;
            }
        }
        if (barrier != 0 && t - 1 >= t_end) grid_barrier(barrier, ++nbar);
    }
}
