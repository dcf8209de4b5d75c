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
#include <stdlib.h>

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


/* The gates' sigmoid and tanh. float: branch-free polynomial forms that GCC vectorizes inside the
 * loops over units (8 lanes in the AVX2 clone): e^x after Cephes' expf (x = n ln2 + r, a degree-6
 * polynomial in r, 2^n built in the exponent bits; within 1 ulp of exp on [-87, 88]), and
 * tanh as Cephes' odd polynomial for |x| < 0.625, else 1 - 2 / (e^2|x| + 1) with the sign restored
 * (within 1.3 ulp of tanh, |error| < 8e-8; the sigmoid within 2.5 ulp; measured against double libm
 * over [-20, 20] in steps of 1e-5). A NaN argument gives NaN. double: libm's exp and tanh. */
EGRU_INLINE float exp_f32(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;                                       /* 2^n stays a normal float */
    float n = x * 1.44269504088896341f + 12582912.0f;                /* round to nearest (magic) */
    n -= 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;                                      /* ln 2 in two parts */
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    const int32_t bits = ((int32_t)n + 127) << 23;
    float s;
    memcpy(&s, &bits, sizeof s);
    return p * s;
}
EGRU_INLINE float sigm_f32(float x) { return 1.0f / (1.0f + exp_f32(-x)); }
EGRU_INLINE float tanh_f32(float x) {
    const float a = x < 0 ? -x : x;
    const float z = x * x;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    const float small = x + x * z * p;
    const float big = 1.0f - 2.0f / (exp_f32(2.0f * a) + 1.0f);
    const float t = a < 0.625f ? small : (x < 0 ? -big : big);
    return x != x ? x : t;
}
EGRU_INLINE double sigm_f64(double x) { return 1.0 / (1.0 + exp(-x)); }
EGRU_INLINE double tanh_f64(double x) { return tanh(x); }

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
/* The gates of one sample, in place over the recurrent pre-activations g [3H]: g[0:H] = r,
 * g[H:2H] = z, g[2H:3H] = n, from the input pre-activations q [3H] (one loop the compiler vectorizes). */
#define GATES(T, SUF)                                                                       \
EGRU_INLINE void gates_##SUF(int64_t h, const T* restrict q, T* restrict g) {              \
    _Pragma("omp simd")                                                                   \
    for (int64_t i = 0; i < h; ++i) {                                                     \
        const T r = sigm_##SUF(q[i] + g[i]);                                              \
        g[h + i] = sigm_##SUF(q[h + i] + g[h + i]);                                       \
        g[2 * h + i] = tanh_##SUF(q[2 * h + i] + r * g[2 * h + i]);                       \
        g[i] = r;                                                                         \
    }                                                                                     \
}
GATES(float, f32)
GATES(double, f64)


/* The state update of one sample from the gates z (zs) and n (ns): c_hat, zoneout (the mask zm when
 * has_zm, else the expectation p c_prev + keep c_hat when use_p), the threshold (clamped to [0, 1] with
 * clamp; a NaN threshold makes y, c and trace NaN when nan_th), the event y, the reset and the trace.
 * oo (the spikes o) is written when has_o. has_zm, has_o and nan_th are constants at each call site. */
#define UPDATE(T, SUF)                                                                      \
EGRU_INLINE void update_##SUF(int64_t h, const T* restrict zs, const T* restrict ns,       \
        const T* restrict cq, const T* restrict tq, const T* restrict theta,              \
        const T* restrict zm, int has_zm, int use_p, T p, T keep, int clamp, int nan_th,  \
        int reset, T dec, T inc, T* restrict yo, T* restrict co, T* restrict to,          \
        T* restrict oo, int has_o) {                                                      \
    _Pragma("omp simd")                                                                   \
    for (int64_t i = 0; i < h; ++i) {                                                     \
        const T n = ns[i], cprev = cq[i];                                                 \
        T ch = n + zs[i] * (cprev - n);                                                   \
        if (has_zm) ch = cprev + zm[i] * (ch - cprev);                                    \
        else ch = use_p ? p * cprev + keep * ch : ch;                                     \
        T th = theta[i];                                                                  \
        const T tc = th < 0 ? (T)0 : (th > 1 ? (T)1 : th);  /* NaN stays NaN */           \
        th = clamp ? tc : th;                                                             \
        const T o = (ch - th) > 0 ? (T)1 : (T)0;                                          \
        const T y = o * ch;                                                               \
        const T cr = reset == 0 ? ch - o * th : (reset == 1 ? ch * ((T)1 - o) : ch);      \
        const T tr = tq[i] * dec + inc * y;                                               \
        const int bad = nan_th && th != th;                                               \
        yo[i] = bad ? th : y;                                                             \
        co[i] = bad ? th : cr;                                                            \
        to[i] = bad ? th : tr;                                                            \
        if (has_o) oo[i] = o;                                                             \
    }                                                                                     \
}
UPDATE(float, f32)
UPDATE(double, f64)


/* The per-step cell's check that a weight was not edited behind its cached transposed copy: from each
 * row k of a row-major w [rows, cols], the PROBE_WIDTH elements starting at column
 * ((k * 5) mod (cols / PROBE_WIDTH)) * PROBE_WIDTH (every row, and every column group of four, is
 * sampled). With write, they are copied to probe [rows * min(cols, PROBE_WIDTH)] and 0 is returned;
 * otherwise 1 is returned when one differs from probe bit for bit, else 0. */
#define PROBE_WIDTH 4
#define PROBE(T, SUF, BITS)                                                                     \
EGRU_INLINE int probe_rows_##SUF(const T* w, int64_t rows, int64_t cols, T* probe, int write) { \
    if (rows <= 0 || cols <= 0) return 0;                                                 \
    const int64_t width = cols < PROBE_WIDTH ? cols : PROBE_WIDTH;                        \
    const int64_t groups = cols / width;                                                  \
    int stale = 0;                                                                        \
    int64_t grp = 0;  /* (k * 5) mod groups, kept without a division per row */           \
    for (int64_t k = 0; k < rows; ++k, grp += 5) {                                        \
        while (grp >= groups) grp -= groups;                                              \
        const T* src = w + k * cols + grp * width;                                        \
        for (int64_t e = 0; e < width; ++e) {                                             \
            if (write) { probe[k * width + e] = src[e]; continue; }                       \
            BITS u, v;                                                                    \
            memcpy(&u, probe + k * width + e, sizeof u);                                  \
            memcpy(&v, src + e, sizeof v);                                                \
            stale |= u != v;                                                              \
        }                                                                                 \
    }                                                                                     \
    return stale;                                                                         \
}                                                                                         \
int weight_probe_##SUF(const T* w, int64_t rows, int64_t cols, T* probe) {                \
    return probe_rows_##SUF(w, rows, cols, probe, 1);                                     \
}
PROBE(float, f32, uint32_t)
PROBE(double, f64, uint64_t)

#define SEQ(T, SUF)                                                                         \
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
            T* restrict g = gh + s * g3;                                                  \
            const int64_t base = (t * b + s) * h;                                         \
            if (hn_out) memcpy(hn_out + base, g + 2 * h, (size_t)h * sizeof(T));          \
            gates_##SUF(h, gi + (t * b + s) * g3, g);                                     \
            if (rz_out) {                                                                 \
                memcpy(rz_out + (t * b + s) * 2 * h, g, (size_t)(2 * h) * sizeof(T));     \
                memcpy(n_out + base, g + 2 * h, (size_t)h * sizeof(T));                   \
            }                                                                             \
            const T* restrict zs = g + h;                                                 \
            const T* restrict ns = g + 2 * h;                                             \
            const T* restrict cq = cp + s * h;                                            \
            const T* restrict tq = tp + s * h;                                            \
            const T* restrict zm = zo ? zo + base : NULL;                                 \
            T* restrict yo = ys + base;                                                   \
            T* restrict co = cs + base;                                                   \
            T* restrict oo = os + base;                                                   \
            T* restrict to = trs + base;                                                  \
            if (zm) update_##SUF(h, zs, ns, cq, tq, theta, zm, 1, 0, p, keep, 0, 0, reset, dec, inc, \
                                 yo, co, to, oo, 1);                                      \
            else update_##SUF(h, zs, ns, cq, tq, theta, NULL, 0, zo_p > 0, p, keep, 0, 0, reset, \
                              dec, inc, yo, co, to, oo, 1);                               \
        }                                                                                 \
    }                                                                                     \
}
SEQ(float, f32)
SEQ(double, f64)


/* Scratch of the per-step cell (gi and gh, [b, 3H] each), one buffer per thread, grown as needed (NULL
 * when out of memory). */
static _Thread_local void* scratch_buf = NULL;
static _Thread_local size_t scratch_cap = 0;
static void* scratch_bytes(size_t n) {
    if (n > scratch_cap) {
        void* p = realloc(scratch_buf, n);
        if (!p) return NULL;
        scratch_buf = p;
        scratch_cap = n;
    }
    return scratch_buf;
}

/* One inference step of one layer for a few samples (the per-step cell under no_grad):
 *   gh = b_hh + sum over units j that fired of y_prev[j] * W_hh^T[j, :]    (rows of active units only)
 *   gi = b_ih + W_ih x                                                      (W_ih [3H, I] row-major)
 * then the gates, threshold, reset and trace as in egru_fwd. With clamp, theta is clamped to [0, 1] here
 * (the modules' threshold_clamp); a NaN threshold makes its unit's y, c and trace NaN, as the torch step
 * does (snntorch_egru._layer_setup.nan_threshold_propagates).
 * With whh (the row-major W_hh [3H, H] that wt was copied from) and probe (its weight_probe), the
 * step first checks the probe and returns 1 without writing anything when it differs (the copy wt
 * is stale); otherwise it returns 0.
 * gi and gh are scratch [b, 3H] (NULL: this thread's own; 2 is returned when it cannot be allocated);
 * y, c, tr are written (they may not alias the inputs). */
#define STEP(T, SUF)                                                                        \
EGRU_HOT int egru_step_##SUF(int64_t b, int64_t h, int64_t in, const T* x, const T* wih,           \
        const T* bih, const T* y0, const T* c0, const T* tr0, const T* wt, const T* bhh,  \
        const T* theta, int clamp, double zo_p, int reset, double decay, double gain,      \
        T* ys, T* cs, T* trs, T* gi, T* gh, const T* whh, T* probe) {                     \
    if (whh && probe && probe_rows_##SUF(whh, 3 * h, h, probe, 0)) return 1;              \
    const int64_t g3 = 3 * h;                                                             \
    if (!gi || !gh) {                                                                     \
        T* buf = (T*)scratch_bytes((size_t)(2 * b * g3) * sizeof(T));                     \
        if (!buf) return 2;                                                               \
        gi = buf;                                                                         \
        gh = buf + b * g3;                                                                \
    }                                                                                     \
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
        gates_##SUF(h, q, g);                                                             \
        const T* restrict zs = g + h;                                                     \
        const T* restrict ns = g + 2 * h;                                                 \
        const T* restrict cq = c0 + s * h;                                                \
        const T* restrict tq = tr0 + s * h;                                               \
        T* restrict yo = ys + s * h;                                                      \
        T* restrict co = cs + s * h;                                                      \
        T* restrict to = trs + s * h;                                                     \
        update_##SUF(h, zs, ns, cq, tq, theta, NULL, 0, zo_p > 0, p, keep, clamp, 1, reset, dec, inc, \
                     yo, co, to, NULL, 0);                                                \
    }                                                                                     \
    return 0;                                                                             \
}
STEP(float, f32)
STEP(double, f64)

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

/* egru_step for Python without ctypes' per-call cost (the per-step cell calls it once per time step):
 * egru_step_f32(b, h, in, x, wih, bih, y0, c0, tr0, wt, bhh, theta, clamp, zo_p, reset, decay, gain,
 * ys, cs, trs, whh, probe), every pointer a Python int (or None) -> the step's return code; the scratch
 * is the thread's own. The caller (snntorch_egru._cell_fast) checked every tensor. */
static void* arg_ptr(PyObject* o) { return o == Py_None ? NULL : PyLong_AsVoidPtr(o); }
#define PYSTEP(T, SUF)                                                                      \
static PyObject* py_egru_step_##SUF(PyObject* self, PyObject* const* a, Py_ssize_t n) {    \
    (void)self;                                                                           \
    if (n != 22) {                                                                        \
        PyErr_Format(PyExc_TypeError, "egru_step_" #SUF " takes 22 arguments (%zd given)", n); \
        return NULL;                                                                      \
    }                                                                                     \
    void* q[22] = {NULL};                                                                 \
    for (int i = 3; i < 22; ++i)                                                          \
        if (i < 12 || i > 16) q[i] = arg_ptr(a[i]);                                       \
    const int64_t b = PyLong_AsLongLong(a[0]), h = PyLong_AsLongLong(a[1]);               \
    const int64_t in = PyLong_AsLongLong(a[2]);                                           \
    const int clamp = (int)PyLong_AsLong(a[12]), reset = (int)PyLong_AsLong(a[14]);       \
    const double zo_p = PyFloat_AsDouble(a[13]);                                          \
    const double decay = PyFloat_AsDouble(a[15]), gain = PyFloat_AsDouble(a[16]);         \
    if (PyErr_Occurred()) return NULL;                                                    \
    int rc;                                                                               \
    Py_BEGIN_ALLOW_THREADS                                                                \
    rc = egru_step_##SUF(b, h, in, q[3], q[4], q[5], q[6], q[7], q[8], q[9], q[10], q[11], \
                         clamp, zo_p, reset, decay, gain, q[17], q[18], q[19], NULL, NULL, \
                         q[20], q[21]);                                                   \
    Py_END_ALLOW_THREADS                                                                  \
    return PyLong_FromLong(rc);                                                           \
}
PYSTEP(float, f32)
PYSTEP(double, f64)
static PyMethodDef egru_native_methods[] = {
    {"egru_step_f32", (PyCFunction)(void (*)(void))py_egru_step_f32, METH_FASTCALL, "egru_step (float32)"},
    {"egru_step_f64", (PyCFunction)(void (*)(void))py_egru_step_f64, METH_FASTCALL, "egru_step (float64)"},
    {NULL, NULL, 0, NULL}};

/* Importing the module proves the file is a complete, loadable build for this interpreter; the
 * functions above are reached through ctypes, except egru_step (also a Python function, see PYSTEP). */
static struct PyModuleDef egru_native_module = {PyModuleDef_HEAD_INIT, "_egru_native",
    "Native helpers of snntorch-egru (loaded through ctypes).", -1, egru_native_methods};
PyMODINIT_FUNC PyInit__egru_native(void) { return PyModule_Create(&egru_native_module); }
