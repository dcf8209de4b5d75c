/* Native helpers of the event-driven CPU path of snntorch-egru (see snntorch_egru/sparse.py).
 *
 * Built at install time by setuptools as the optional extension snntorch_egru._native._egru_native
 * (setup.py). Python loads the functions below with ctypes from that module's own file; every
 * shape, dtype, stride and device is checked in Python (snntorch_egru._op.check_native_args)
 * before a pointer reaches these functions, which trust their arguments.
 *
 * Portable code generation: no -march=native. On x86-64 with GCC/Clang the hot loops are cloned
 * for AVX2+FMA (x86-64-v3) and the baseline; the loader picks the variant at run time (ifunc).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(EGRU_NO_CLONES) && defined(__linux__)
#define EGRU_HOT __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define EGRU_HOT
#endif
#if defined(__GNUC__)
#define EGRU_INLINE static inline __attribute__((always_inline))  /* inlined into each clone of its caller */
#else
#define EGRU_INLINE static inline
#endif

#define DEFINE(T, SUF)                                                                      \
/* o[0:n] += sum over j with ys[j] != 0 of ys[j] * w[j, 0:n]: the rows of the units that fired */\
EGRU_INLINE void axpy_rows_##SUF(const T* ys, int64_t h, const T* restrict w, int64_t n,  \
                                 T* restrict o) {                                        \
    for (int64_t j = 0; j < h; ++j) {                                                    \
        const T a = ys[j];                                                               \
        if (a != 0) {                                                                    \
            const T* restrict row = w + j * n;                                           \
            for (int64_t k = 0; k < n; ++k) o[k] += a * row[k];                          \
        }                                                                                \
    }                                                                                    \
}                                                                                        \
EGRU_HOT int gather_axpy_##SUF(const T* y, int64_t b, int64_t h, const T* w, int64_t n,          \
                      const T* bias, T* out, int64_t max_nnz) {                           \
    int64_t nnz = 0;                                                                      \
    for (int64_t i = 0; i < b * h; ++i) nnz += (y[i] != 0);                               \
    if (nnz > max_nnz) return 1;                                                          \
    for (int64_t s = 0; s < b; ++s) {                                                     \
        T* restrict o = out + s * n;                                                      \
        memcpy(o, bias, (size_t)n * sizeof(T));                                           \
        axpy_rows_##SUF(y + s * h, h, w, n, o);                                          \
    }                                                                                     \
    return 0;                                                                             \
}                                                                                         \
EGRU_HOT int masked_rowdot_##SUF(const T* q, const uint8_t* mask, int64_t b, int64_t h,           \
                        const T* w, int64_t n, T* out, int64_t max_nnz) {                 \
    int64_t nnz = 0;                                                                      \
    for (int64_t i = 0; i < b * h; ++i) nnz += (mask[i] != 0);                            \
    if (nnz > max_nnz) return 1;                                                          \
    for (int64_t s = 0; s < b; ++s) {                                                     \
        const T* restrict qs = q + s * n;                                                 \
        for (int64_t j = 0; j < h; ++j) {                                                 \
            T acc = 0;                                                                    \
            if (mask[s * h + j]) {                                                        \
                const T* restrict row = w + j * n;                                        \
                _Pragma("omp simd reduction(+:acc)")                                      \
                for (int64_t k = 0; k < n; ++k) acc += row[k] * qs[k];                    \
            }                                                                             \
            out[s * h + j] = acc;                                                         \
        }                                                                                 \
    }                                                                                     \
    return 0;                                                                             \
}
DEFINE(float, f32)
DEFINE(double, f64)
#define SEQ(T, SUF, EXP, TANH)                                                              \
EGRU_HOT void egru_fwd_##SUF(int64_t tn, int64_t b, int64_t h, const T* gi, const T* y0,          \
        const T* c0, const T* tr0, const T* w, const T* bhh, const T* theta, const T* zo, \
        double zo_p, int reset, double decay, double gain, T* ys, T* cs, T* os, T* trs,    \
        T* rz_out, T* n_out, T* hn_out, T* gh) {                                          \
    const int64_t g3 = 3 * h;                                                             \
    const T p = (T)zo_p, keep = (T)(1.0 - zo_p), dec = (T)decay, inc = (T)gain;           \
    for (int64_t t = 0; t < tn; ++t) {                                                    \
        const T* yp = t ? ys + (t - 1) * b * h : y0;                                      \
        const T* cp = t ? cs + (t - 1) * b * h : c0;                                      \
        const T* tp = t ? trs + (t - 1) * b * h : tr0;                                    \
        for (int64_t s = 0; s < b; ++s) memcpy(gh + s * g3, bhh, (size_t)g3 * sizeof(T)); \
        /* each row of an active unit is read once and applied to every sample using it */ \
        for (int64_t j = 0; j < h; ++j) {                                                 \
            const T* restrict row = w + j * g3;                                           \
            for (int64_t s = 0; s < b; ++s) {                                             \
                const T a = yp[s * h + j];                                                \
                if (a != 0) {                                                             \
                    T* restrict g = gh + s * g3;                                          \
                    for (int64_t k = 0; k < g3; ++k) g[k] += a * row[k];                  \
                }                                                                         \
            }                                                                             \
        }                                                                                 \
        for (int64_t s = 0; s < b; ++s) {                                                 \
            const T* restrict g = gh + s * g3;                                            \
            const int64_t base = (t * b + s) * h;                                         \
            const T* gib = gi + (t * b + s) * g3;                                         \
            for (int64_t i = 0; i < h; ++i) {                                             \
                const T r = (T)1 / ((T)1 + EXP(-(gib[i] + g[i])));                        \
                const T z = (T)1 / ((T)1 + EXP(-(gib[h + i] + g[h + i])));                \
                const T hn = g[2 * h + i];                                                \
                const T n = TANH(gib[2 * h + i] + r * hn);                                \
                const T cprev = cp[s * h + i];                                            \
                T ch = n + z * (cprev - n);                                               \
                if (zo) { const T m = zo[base + i]; ch = cprev + m * (ch - cprev); }      \
                else if (zo_p > 0) ch = p * cprev + keep * ch;                            \
                const T th = theta[i];                                                    \
                const T o = (ch - th) > 0 ? (T)1 : (T)0;                                  \
                const T y = o * ch;                                                       \
                os[base + i] = o;                                                         \
                ys[base + i] = y;                                                         \
                cs[base + i] = reset == 0 ? ch - o * th : (reset == 1 ? ch * ((T)1 - o) : ch); \
                trs[base + i] = tp[s * h + i] * dec + inc * y;                            \
                if (rz_out) {                                                             \
                    rz_out[(t * b + s) * 2 * h + i] = r;                                  \
                    rz_out[(t * b + s) * 2 * h + h + i] = z;                              \
                    n_out[base + i] = n;                                                  \
                    hn_out[base + i] = hn;                                                \
                }                                                                         \
            }                                                                             \
        }                                                                                 \
    }                                                                                     \
}
SEQ(float, f32, expf, tanhf)
SEQ(double, f64, exp, tanh)


/* One inference step of one layer for a few samples (the per-step cell under no_grad):
 *   gh = b_hh + sum over units j that fired of y_prev[j] * W_hh^T[j, :]    (rows of active units only)
 *   gi = b_ih + W_ih x                                                      (W_ih [3H, I] row-major)
 * then the gates, threshold, reset and trace as in egru_fwd. With clamp, theta is clamped to [0, 1] here
 * (the modules' threshold_clamp); a NaN threshold makes its unit's y, c and trace NaN, as the torch step
 * does (snntorch_egru._layer_setup.nan_threshold_propagates).
 * gi and gh are scratch [b, 3H]; y, c, tr are written (they may not alias the inputs). */
#define STEP(T, SUF, EXP, TANH)                                                             \
EGRU_HOT void egru_step_##SUF(int64_t b, int64_t h, int64_t in, const T* x, const T* wih,        \
        const T* bih, const T* y0, const T* c0, const T* tr0, const T* wt, const T* bhh,  \
        const T* theta, int clamp, double zo_p, int reset, double decay, double gain,      \
        T* ys, T* cs, T* trs, T* gi, T* gh) {                                             \
    const int64_t g3 = 3 * h;                                                             \
    const T p = (T)zo_p, keep = (T)(1.0 - zo_p), dec = (T)decay, inc = (T)gain;           \
    for (int64_t s = 0; s < b; ++s) {                                                     \
        T* restrict g = gh + s * g3;                                                      \
        if (bhh) memcpy(g, bhh, (size_t)g3 * sizeof(T)); else memset(g, 0, (size_t)g3 * sizeof(T)); \
        axpy_rows_##SUF(y0 + s * h, h, wt, g3, g);                                       \
        T* restrict q = gi + s * g3;                                                      \
        const T* restrict xs = x + s * in;                                                \
        for (int64_t k = 0; k < g3; ++k) {                                                \
            const T* restrict wr = wih + k * in;                                          \
            T acc = bih ? bih[k] : (T)0;                                                  \
            _Pragma("omp simd reduction(+:acc)")                                          \
            for (int64_t i = 0; i < in; ++i) acc += wr[i] * xs[i];                        \
            q[k] = acc;                                                                   \
        }                                                                                 \
        for (int64_t i = 0; i < h; ++i) {                                                 \
            const T r = (T)1 / ((T)1 + EXP(-(q[i] + g[i])));                              \
            const T z = (T)1 / ((T)1 + EXP(-(q[h + i] + g[h + i])));                      \
            const T n = TANH(q[2 * h + i] + r * g[2 * h + i]);                            \
            const T cprev = c0[s * h + i];                                                \
            T ch = n + z * (cprev - n);                                                   \
            if (zo_p > 0) ch = p * cprev + keep * ch;                                     \
            T th = theta[i];                                                              \
            if (clamp) th = th < 0 ? (T)0 : (th > 1 ? (T)1 : th);  /* NaN stays NaN */     \
            const T o = (ch - th) > 0 ? (T)1 : (T)0;                                      \
            const T y = o * ch;                                                           \
            if (th != th) {  /* NaN threshold */                                          \
                ys[s * h + i] = cs[s * h + i] = trs[s * h + i] = th;                      \
                continue;                                                                 \
            }                                                                             \
            ys[s * h + i] = y;                                                            \
            cs[s * h + i] = reset == 0 ? ch - o * th : (reset == 1 ? ch * ((T)1 - o) : ch); \
            trs[s * h + i] = tr0[s * h + i] * dec + inc * y;                              \
        }                                                                                 \
    }                                                                                     \
}
STEP(float, f32, expf, tanhf)
STEP(double, f64, exp, tanh)

/* dst[cols, rows] = src[rows, cols]^T in 32 x 32 tiles (a plain strided copy of a large matrix
 * misses the cache on every element of one side). */
#define TRANSPOSE(T, SUF)                                                                   \
EGRU_HOT void transpose_##SUF(const T* src, int64_t rows, int64_t cols, T* dst) {          \
    const int64_t TILE = 32;                                                              \
    for (int64_t i0 = 0; i0 < rows; i0 += TILE) {                                         \
        const int64_t i1 = i0 + TILE < rows ? i0 + TILE : rows;                           \
        for (int64_t j0 = 0; j0 < cols; j0 += TILE) {                                     \
            const int64_t j1 = j0 + TILE < cols ? j0 + TILE : cols;                       \
            for (int64_t j = j0; j < j1; ++j)  /* contiguous writes, reads within the tile */ \
                for (int64_t i = i0; i < i1; ++i) dst[j * rows + i] = src[i * cols + j];  \
        }                                                                                 \
    }                                                                                     \
}
TRANSPOSE(float, f32)
TRANSPOSE(double, f64)

/* A module with no Python-level functions: importing it only proves the file is a complete,
 * loadable build for this interpreter; the functions above are reached through ctypes. */
static struct PyModuleDef egru_native_module = {PyModuleDef_HEAD_INIT, "_egru_native",
    "Native helpers of snntorch-egru (loaded through ctypes).", -1, NULL};
PyMODINIT_FUNC PyInit__egru_native(void) { return PyModule_Create(&egru_native_module); }
