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
/* The two-thread jobs need POSIX threads and C11 atomics, the 8-row input product GCC/Clang vector types:
 * elsewhere (or with -DEGRU_PORTABLE) every job runs its parts in order on the calling thread and the
 * input product is plain C, with the same numbers. */
#if !defined(EGRU_PORTABLE) && (defined(_WIN32) || !defined(__GNUC__))
#define EGRU_PORTABLE 1
#endif
#ifndef EGRU_PORTABLE
#include <stdatomic.h>
#define EGRU_FLAG _Atomic int
#define FLAG_SET(p) atomic_store_explicit((p), 1, memory_order_relaxed)
#define FLAG_GET(p) atomic_load(p)
#else
#define EGRU_FLAG int
#define FLAG_SET(p) (*(p) = 1)
#define FLAG_GET(p) (*(p))
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
/* The gates of len units of one sample, in place over the recurrent pre-activations g: g[i] = r,
 * g[h + i] = z, g[2h + i] = n, from the input pre-activations q (same layout; one loop the compiler
 * vectorizes). */
#define GATES(T, SUF)                                                                       \
EGRU_INLINE void gates_##SUF(int64_t len, int64_t h, const T* restrict q, T* restrict g) { \
    _Pragma("omp simd")                                                                   \
    for (int64_t i = 0; i < len; ++i) {                                                   \
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
EGRU_INLINE int probe_rows_##SUF(const T* w, int64_t r0, int64_t r1, int64_t cols, T* probe, int write) { \
    if (r1 <= r0 || cols <= 0) return 0;                                                  \
    const int64_t width = cols < PROBE_WIDTH ? cols : PROBE_WIDTH;                        \
    const int64_t groups = cols / width;                                                  \
    int stale = 0;                                                                        \
    int64_t grp = (r0 % groups) * 5 % groups;  /* (k * 5) mod groups, kept without a division per row */ \
    for (int64_t k = r0; k < r1; ++k, grp += 5) {                                         \
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
    return probe_rows_##SUF(w, 0, rows, cols, probe, 1);                                  \
}
PROBE(float, f32, uint32_t)
PROBE(double, f64, uint64_t)



/* q[k] = bias[k] + w[k, :] . x for k in [k0, k1) (w [rows, in] row-major; bias may be NULL): the input
 * product of the per-step cell. Each row's products are summed in 8 lanes (i mod 8), the lanes in a fixed
 * tree ((0+1)+(2+3))+((4+5)+(6+7)), then the in mod 8 last products and the bias: the same order for a row
 * whether it is one of a block of 8 rows summed together in vector registers (float: no horizontal sum per
 * row) or alone, so the result of a row does not depend on the range it belongs to. */
#ifndef EGRU_PORTABLE
typedef float v8sf __attribute__((vector_size(32)));
typedef int32_t v8si __attribute__((vector_size(32)));
#if defined(__clang__)
#define SHUF8(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define SHUF8(a, b, ...) __builtin_shuffle(a, b, (v8si){__VA_ARGS__})
#endif
#endif
#define ROWS_DOT_ONE(T)                                                                     \
    T lane[8] = {0};                                                                      \
    for (int64_t i = 0; i < iv; i += 8)                                                   \
        for (int l = 0; l < 8; ++l) lane[l] += wr[i + l] * x[i + l];                       \
    T t = ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
EGRU_INLINE void rows_dot_f64(const double* w, int64_t in, const double* x, const double* bias, int64_t k0,
                              int64_t k1, double* q) {
    const int64_t iv = in / 8 * 8;
    for (int64_t k = k0; k < k1; ++k) {
        const double* wr = w + k * in;
        ROWS_DOT_ONE(double)
        for (int64_t i = iv; i < in; ++i) t += wr[i] * x[i];
        q[k] = (bias ? bias[k] : 0.0) + t;
    }
}
EGRU_INLINE void rows_dot_f32(const float* w, int64_t in, const float* x, const float* bias, int64_t k0,
                              int64_t k1, float* q) {
    const int64_t iv = in / 8 * 8;
    int64_t k = k0;
#ifndef EGRU_PORTABLE
    for (; k + 8 <= k1; k += 8) {  /* 8 rows at once: lanes in registers, one tree for all 8 */
        const float* w0 = w + k * in;
        v8sf a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, a4 = {0}, a5 = {0}, a6 = {0}, a7 = {0};
        for (int64_t i = 0; i < iv; i += 8) {
            v8sf xv, v0, v1, v2, v3, v4, v5, v6, v7;
            memcpy(&xv, x + i, sizeof xv);
            memcpy(&v0, w0 + i, sizeof v0);
            memcpy(&v1, w0 + in + i, sizeof v1);
            memcpy(&v2, w0 + 2 * in + i, sizeof v2);
            memcpy(&v3, w0 + 3 * in + i, sizeof v3);
            memcpy(&v4, w0 + 4 * in + i, sizeof v4);
            memcpy(&v5, w0 + 5 * in + i, sizeof v5);
            memcpy(&v6, w0 + 6 * in + i, sizeof v6);
            memcpy(&v7, w0 + 7 * in + i, sizeof v7);
            a0 += v0 * xv;
            a1 += v1 * xv;
            a2 += v2 * xv;
            a3 += v3 * xv;
            a4 += v4 * xv;
            a5 += v5 * xv;
            a6 += v6 * xv;
            a7 += v7 * xv;
        }
        const v8sf s01 = SHUF8(a0, a1, 0, 8, 2, 10, 4, 12, 6, 14) + SHUF8(a0, a1, 1, 9, 3, 11, 5, 13, 7, 15);
        const v8sf s23 = SHUF8(a2, a3, 0, 8, 2, 10, 4, 12, 6, 14) + SHUF8(a2, a3, 1, 9, 3, 11, 5, 13, 7, 15);
        const v8sf s45 = SHUF8(a4, a5, 0, 8, 2, 10, 4, 12, 6, 14) + SHUF8(a4, a5, 1, 9, 3, 11, 5, 13, 7, 15);
        const v8sf s67 = SHUF8(a6, a7, 0, 8, 2, 10, 4, 12, 6, 14) + SHUF8(a6, a7, 1, 9, 3, 11, 5, 13, 7, 15);
        const v8sf t03 = SHUF8(s01, s23, 0, 1, 8, 9, 4, 5, 12, 13) + SHUF8(s01, s23, 2, 3, 10, 11, 6, 7, 14, 15);
        const v8sf t47 = SHUF8(s45, s67, 0, 1, 8, 9, 4, 5, 12, 13) + SHUF8(s45, s67, 2, 3, 10, 11, 6, 7, 14, 15);
        const v8sf tot = SHUF8(t03, t47, 0, 1, 2, 3, 8, 9, 10, 11) + SHUF8(t03, t47, 4, 5, 6, 7, 12, 13, 14, 15);
        float sums[8];
        memcpy(sums, &tot, sizeof sums);
        for (int r = 0; r < 8; ++r) {
            const float* wr = w + (k + r) * in;
            float t = sums[r];
            for (int64_t i = iv; i < in; ++i) t += wr[i] * x[i];
            q[k + r] = (bias ? bias[k + r] : 0.0f) + t;
        }
    }
#endif
    for (; k < k1; ++k) {
        const float* wr = w + k * in;
        ROWS_DOT_ONE(float)
        for (int64_t i = iv; i < in; ++i) t += wr[i] * x[i];
        q[k] = (bias ? bias[k] : 0.0f) + t;
    }
}

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

/* Parts of a job (ranges of units of a step, rows of the weight probe, column chunks of a product) run on
 * two threads (pool_run): in one parallel region of torch's OpenMP runtime when it was found (below),
 * otherwise with the helper's own worker thread, which takes parts while the calling thread works on the
 * others.
 * The caller never waits for the worker to start: it claims parts itself from the same counter, and
 * waits only for parts the worker has claimed and is running. So a worker that sleeps, is not
 * scheduled, could not be started or does not exist (a child after fork) costs no latency: the caller
 * then runs every part. Each part writes its own outputs with the same arithmetic in the same order
 * as one thread, so results do not depend on who ran which part.
 *
 * The current job is (fn, arg, n) with a ticket (seq << 8) | next part; between jobs the next part is
 * 255 (nothing to claim). A part is claimed by a compare-and-swap of the ticket it was read under, so a
 * claim succeeds only for the job whose parameters were read (they are rewritten only after every part
 * of the job before is done). The worker spins about SPIN_NS after its last part, then sleeps on a
 * condition variable until the next job. Jobs come from one thread at a time (job_lock; a caller that
 * finds it taken runs its parts alone). */
#ifndef EGRU_PORTABLE
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <sched.h>
typedef void (*part_fn)(void* arg, int part);
#define POOL_IDLE 255u
#define SPIN_NS 300000
static struct {
    _Atomic uint64_t ticket;
    _Atomic int done, sleeping, started;  /* started: 0 not yet, 1 running, -1 could not start */
    _Atomic(part_fn) fn;
    _Atomic(void*) arg;
    _Atomic int n;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_mutex_t job_lock;
} pool = {POOL_IDLE, 0, 0, 0, NULL, NULL, 0, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
          PTHREAD_MUTEX_INITIALIZER};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}
static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
/* Claim and run one part of the job under ticket t (read by the caller); 1 when one ran. */
static int pool_try_part(uint64_t t) {
    const int n = atomic_load_explicit(&pool.n, memory_order_relaxed);
    const part_fn fn = atomic_load_explicit(&pool.fn, memory_order_relaxed);
    void* arg = atomic_load_explicit(&pool.arg, memory_order_relaxed);
    const int k = (int)(t & 0xffu);
    if (k >= n || !fn) return 0;
    if (!atomic_compare_exchange_strong_explicit(&pool.ticket, &t, t + 1, memory_order_acq_rel,
                                                 memory_order_acquire)) return 1;  /* lost: look again */
    fn(arg, k);
    atomic_fetch_add_explicit(&pool.done, 1, memory_order_release);
    return 1;
}
static void* pool_worker(void* unused) {
    (void)unused;
    for (;;) {
        int64_t idle_since = now_ns();
        unsigned spins = 0;
        uint64_t t;
        for (;;) {
            t = atomic_load_explicit(&pool.ticket, memory_order_acquire);
            if (pool_try_part(t)) { idle_since = 0; spins = 0; continue; }
            if (!idle_since) idle_since = now_ns();
            cpu_relax();
            if ((++spins & 63u) == 0) {
                if (now_ns() - idle_since > SPIN_NS) break;
                if ((spins & 1023u) == 0) sched_yield();  /* let a runnable thread of this core go first */
            }
        }
        pthread_mutex_lock(&pool.mu);
        atomic_store(&pool.sleeping, 1);
        while (atomic_load(&pool.ticket) == t) pthread_cond_wait(&pool.cv, &pool.mu);
        atomic_store(&pool.sleeping, 0);
        pthread_mutex_unlock(&pool.mu);
    }
    return NULL;
}
typedef void (*gomp_parallel_t)(void (*)(void*), void*, unsigned, unsigned);
static _Atomic(gomp_parallel_t) gomp_parallel = NULL;
static int atfork_registered = 0;  /* pool_after_fork is registered (a child inherits it and this flag) */
static void pool_after_fork(void) {  /* the child has no worker: start afresh (lazily) */
    /* nor the OpenMP runtime's threads: a parallel region of GNU libgomp in a child forked after the
     * parent ran one never returns, so the child runs its parts with its own worker */
    atomic_store(&gomp_parallel, NULL);
    pthread_mutex_init(&pool.mu, NULL);
    pthread_cond_init(&pool.cv, NULL);
    pthread_mutex_init(&pool.job_lock, NULL);
    atomic_store(&pool.ticket, (uint64_t)POOL_IDLE);
    atomic_store(&pool.sleeping, 0);
    atomic_store(&pool.started, 0);
}
static int pool_start(void) {  /* called with job_lock held */
    int st = atomic_load(&pool.started);
    if (st) return st > 0;
    if (!atfork_registered) atfork_registered = pthread_atfork(NULL, NULL, pool_after_fork) == 0;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);  /* the worker takes no signals: they stay with Python */
    pthread_attr_t at;
    pthread_t th;
    int ok = pthread_attr_init(&at) == 0;
    ok = ok && pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED) == 0;
    ok = ok && pthread_create(&th, &at, pool_worker, NULL) == 0;
    pthread_attr_destroy(&at);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    atomic_store(&pool.started, ok ? 1 : -1);
    return ok;
}
/* The OpenMP runtime torch itself runs on (set by pool_use_openmp): when known, a job runs as one
 * parallel region of its threads (GOMP_parallel, exported by GNU libgomp and, for compatibility, by
 * LLVM's libomp and Intel's libiomp5), so it takes the very threads torch's own parallel ops use and
 * keep spinning between them, rather than competing with them for the cores as a thread of our own
 * would. The threads of the region claim parts from a counter; the region ends when every part ran. */
#include <dlfcn.h>
int pool_use_openmp(const char* path) {
    void* lib = path ? dlopen(path, RTLD_LAZY | RTLD_NOLOAD) : NULL;  /* only a runtime already loaded */
    gomp_parallel_t f = lib ? (gomp_parallel_t)dlsym(lib, "GOMP_parallel") : NULL;
    pthread_mutex_lock(&pool.job_lock);
    if (f && !atfork_registered) atfork_registered = pthread_atfork(NULL, NULL, pool_after_fork) == 0;
    atomic_store(&gomp_parallel, atfork_registered ? f : NULL);
    pthread_mutex_unlock(&pool.job_lock);
    return atomic_load(&gomp_parallel) != NULL;
}
typedef struct {
    part_fn fn;
    void* arg;
    int n;
    _Atomic int next;
} omp_job;
static void omp_body(void* data) {
    omp_job* J = (omp_job*)data;
    for (int k; (k = atomic_fetch_add_explicit(&J->next, 1, memory_order_relaxed)) < J->n;) J->fn(J->arg, k);
}

/* Run parts 0..n-1 of fn (n <= 64), on up to threads threads: in one parallel region of torch's OpenMP
 * runtime when pool_use_openmp found it, else with the worker above. */
static void pool_run(part_fn fn, void* arg, int n, int threads) {
    const gomp_parallel_t par = atomic_load_explicit(&gomp_parallel, memory_order_relaxed);
    if (par && threads >= 2 && n >= 2) {
        omp_job J = {fn, arg, n, 0};
        par(omp_body, &J, (unsigned)(threads < n ? threads : n), 0);
        return;
    }
    if (threads < 2 || n < 2 || pthread_mutex_trylock(&pool.job_lock) != 0) {
        for (int k = 0; k < n; ++k) fn(arg, k);
        return;
    }
    if (!pool_start()) {
        pthread_mutex_unlock(&pool.job_lock);
        for (int k = 0; k < n; ++k) fn(arg, k);
        return;
    }
    const uint64_t seq = (atomic_load(&pool.ticket) >> 8) + 1;
    atomic_store_explicit(&pool.fn, fn, memory_order_relaxed);
    atomic_store_explicit(&pool.arg, arg, memory_order_relaxed);
    atomic_store_explicit(&pool.n, n, memory_order_relaxed);
    atomic_store_explicit(&pool.done, 0, memory_order_relaxed);
    atomic_store(&pool.ticket, seq << 8);  /* publish (seq_cst: pairs with the worker's sleeping flag) */
    if (atomic_load(&pool.sleeping)) {
        pthread_mutex_lock(&pool.mu);
        pthread_cond_signal(&pool.cv);
        pthread_mutex_unlock(&pool.mu);
    }
    for (;;) {
        const uint64_t t = atomic_load_explicit(&pool.ticket, memory_order_acquire);
        if ((t & 0xffu) >= (uint64_t)n) break;
        pool_try_part(t);
    }
    while (atomic_load_explicit(&pool.done, memory_order_acquire) < n) cpu_relax();
    atomic_store(&pool.ticket, (seq << 8) | POOL_IDLE);
    pthread_mutex_unlock(&pool.job_lock);
}
#else
typedef void (*part_fn)(void* arg, int part);
int pool_use_openmp(const char* path) {
    (void)path;
    return 0;
}
static void pool_run(part_fn fn, void* arg, int n, int threads) {
    (void)threads;
    for (int k = 0; k < n; ++k) fn(arg, k);
}
#endif

/* The forward time loop of one layer (the sequence path, inside the operator): for each step t,
 *   gh = b_hh + sum over units j that fired at t - 1 of y[t-1, j] * W^T[j, :]   (each row read once for all
 *        samples that use it), then the gates, zoneout, threshold, reset and trace of every unit;
 * with rz_out, the gates r, z, n and W_hn h are saved for the backward. Each step is cut into ranges of
 * units (parts; the helper thread takes some when threads > 1, see pool_run): a part accumulates its
 * units' segments of gh over the same rows in the same order as one range would, so the numbers do not
 * depend on the cut. gh is scratch [b, 3H]. */
typedef struct {
    int64_t t, b, h, chunk;
    const void *gi, *y0, *c0, *tr0, *w, *bhh, *theta, *zo;
    double zo_p, decay, gain;
    int reset;
    void *ys, *cs, *os, *trs, *rz_out, *n_out, *hn_out, *gh;
} seq_args;
#define SEQ(T, SUF)                                                                         \
EGRU_HOT static void seq_part_##SUF(void* arg, int part) {                                  \
    const seq_args* A = (const seq_args*)arg;                                             \
    const int64_t t = A->t, b = A->b, h = A->h, g3 = 3 * h;                               \
    const int64_t i0 = part * A->chunk, i1 = i0 + A->chunk < h ? i0 + A->chunk : h, len = i1 - i0; \
    if (len <= 0) return;                                                                 \
    T *ys = (T*)A->ys, *cs = (T*)A->cs, *trs = (T*)A->trs, *gh = (T*)A->gh;               \
    const T* yp = t ? ys + (t - 1) * b * h : (const T*)A->y0;                             \
    const T* cp = t ? cs + (t - 1) * b * h : (const T*)A->c0;                             \
    const T* tp = t ? trs + (t - 1) * b * h : (const T*)A->tr0;                           \
    const T *w = (const T*)A->w, *bhh = (const T*)A->bhh, *gi = (const T*)A->gi;          \
    const T p = (T)A->zo_p, keep = (T)(1.0 - A->zo_p), dec = (T)A->decay, inc = (T)A->gain; \
    for (int64_t s = 0; s < b; ++s)                                                       \
        for (int64_t c = 0; c < 3; ++c)                                                   \
            memcpy(gh + s * g3 + c * h + i0, bhh + c * h + i0, (size_t)len * sizeof(T));  \
    for (int64_t j = 0; j < h; ++j) {                                                     \
        const T* restrict row = w + j * g3 + i0;                                          \
        for (int64_t s = 0; s < b; ++s) {                                                 \
            const T a = yp[s * h + j];                                                    \
            if (a == 0) continue;                                                         \
            for (int64_t c = 0; c < 3; ++c) {                                             \
                T* restrict g = gh + s * g3 + c * h + i0;                                 \
                const T* restrict rw = row + c * h;                                       \
                for (int64_t k = 0; k < len; ++k) g[k] += a * rw[k];                      \
            }                                                                             \
        }                                                                                 \
    }                                                                                     \
    for (int64_t s = 0; s < b; ++s) {                                                     \
        T* restrict g = gh + s * g3 + i0;                                                 \
        const int64_t base = (t * b + s) * h + i0;                                        \
        if (A->hn_out) memcpy((T*)A->hn_out + base, g + 2 * h, (size_t)len * sizeof(T)); \
        gates_##SUF(len, h, gi + (t * b + s) * g3 + i0, g);                               \
        if (A->rz_out) {                                                                  \
            T* rz = (T*)A->rz_out + (t * b + s) * 2 * h + i0;                             \
            memcpy(rz, g, (size_t)len * sizeof(T));                                       \
            memcpy(rz + h, g + h, (size_t)len * sizeof(T));                               \
            memcpy((T*)A->n_out + base, g + 2 * h, (size_t)len * sizeof(T));              \
        }                                                                                 \
        const T* zm = A->zo ? (const T*)A->zo + base : NULL;                              \
        const T *cq = cp + s * h + i0, *tq = tp + s * h + i0, *th = (const T*)A->theta + i0; \
        T *yo = ys + base, *co = cs + base, *oo = (T*)A->os + base, *to = trs + base;     \
        if (zm) update_##SUF(len, g + h, g + 2 * h, cq, tq, th, zm, 1, 0, p, keep, 0, 0, A->reset, \
                             dec, inc, yo, co, to, oo, 1);                                \
        else update_##SUF(len, g + h, g + 2 * h, cq, tq, th, NULL, 0, A->zo_p > 0, p, keep, 0, 0, \
                          A->reset, dec, inc, yo, co, to, oo, 1);                         \
    }                                                                                     \
}                                                                                         \
EGRU_HOT void egru_fwd_##SUF(int64_t tn, int64_t b, int64_t h, const T* gi, const T* y0,          \
        const T* c0, const T* tr0, const T* w, const T* bhh, const T* theta, const T* zo, \
        double zo_p, int reset, double decay, double gain, T* ys, T* cs, T* os, T* trs,    \
        T* rz_out, T* n_out, T* hn_out, T* gh, int threads, int parts) {                  \
    seq_args A = {0, b, h, 0, gi, y0, c0, tr0, w, bhh, theta, zo, zo_p, decay, gain, reset, ys, cs, \
                  os, trs, rz_out, n_out, hn_out, gh};                                    \
    if (parts < 1) parts = 1;                                                             \
    if (parts > 64) parts = 64;                                                           \
    A.chunk = (h + parts - 1) / parts;                                                    \
    A.chunk = (A.chunk + 15) / 16 * 16;  /* whole cache lines of float and double */      \
    const int n = (int)((h + A.chunk - 1) / A.chunk);                                     \
    for (int64_t t = 0; t < tn; ++t) {                                                    \
        A.t = t;                                                                          \
        pool_run(seq_part_##SUF, &A, n, threads);                                         \
    }                                                                                     \
}
SEQ(float, f32)
SEQ(double, f64)

/* out[j, 0:g] = sum over rows r of e[r, j] * q[r, 0:g] for every j < h: e^T q with e [n, h] mostly zeros
 * (the events; the backward's dW_hh = Y^T Q). The nonzeros of e are listed by column (rows ascending);
 * the columns of q and out are cut into chunks of EVT_LANES * 8 elements, the parts of one job (see
 * pool_run): for each j, eight vector registers sum the chunk over the nonzeros of e's column j (a
 * chunk of q, n rows, stays in the cache while every j reads it) and out is written once. Each element
 * sums its terms in the order of r, whichever thread runs its chunk. Several products with the same e
 * share one list (desc: per product the address of q, g, q's row stride, the address of out, out's row
 * stride; column blocks of larger matrices, unit column strides). Returns 1 (nothing written) when e
 * holds more than max_nnz nonzeros (a dense GEMM is faster then), 2 when their list cannot be
 * allocated, else 0. */
typedef struct {
    int64_t h, g, ldq, ldo;
    const int64_t* cstart;  /* column j's nonzeros: rows[cstart[j] .. cstart[j + 1]) */
    const int64_t* rows;
    const void *val, *q;
    void* out;
} evt_args;
#define EVT(T, SUF, LANES)                                                                  \
typedef T v_##SUF __attribute__((vector_size(LANES * sizeof(T))));                          \
EGRU_HOT static void evt_part_##SUF(void* arg, int part) {                                  \
    const evt_args* A = (const evt_args*)arg;                                             \
    const int64_t CH = 8 * LANES, k0 = (int64_t)part * CH;                                \
    const int64_t len = k0 + CH <= A->g ? CH : A->g - k0;                                 \
    const T *val = (const T*)A->val, *q = (const T*)A->q + k0;                            \
    T* out = (T*)A->out + k0;                                                             \
    for (int64_t j = 0; j < A->h; ++j) {                                                  \
        const int64_t e0 = A->cstart[j], e1 = A->cstart[j + 1];                           \
        T* o = out + j * A->ldo;                                                          \
        if (len == CH) {                                                                  \
            v_##SUF acc[8];                                                               \
            memset(acc, 0, sizeof acc);                                                   \
            for (int64_t e = e0; e < e1; ++e) {                                           \
                const T* qr = q + A->rows[e] * A->ldq;                                    \
                const T v = val[e];                                                       \
                for (int u = 0; u < 8; ++u) {                                             \
                    v_##SUF x;                                                            \
                    memcpy(&x, qr + u * LANES, sizeof x);                                 \
                    acc[u] += v * x;                                                      \
                }                                                                         \
            }                                                                             \
            memcpy(o, acc, sizeof acc);                                                   \
        } else {  /* the last, partial chunk */                                           \
            for (int64_t k = 0; k < len; ++k) o[k] = 0;                                   \
            for (int64_t e = e0; e < e1; ++e) {                                           \
                const T* qr = q + A->rows[e] * A->ldq;                                    \
                const T v = val[e];                                                       \
                for (int64_t k = 0; k < len; ++k) o[k] += v * qr[k];                      \
            }                                                                             \
        }                                                                                 \
    }                                                                                     \
}                                                                                         \
EGRU_HOT int events_t_mm_##SUF(const T* e, int64_t n, int64_t h, int64_t pairs, const int64_t* desc, \
                               int64_t max_nnz, int threads) {                            \
    /* desc: per product (q address, g, ldq, out address, ldo); one list of nonzeros serves them all */ \
    int64_t* cstart = (int64_t*)calloc((size_t)(h + 1), sizeof(int64_t));                 \
    if (!cstart) return 2;                                                                \
    int64_t nnz = 0;                                                                      \
    for (int64_t r = 0; r < n; ++r)                                                       \
        for (int64_t j = 0; j < h; ++j)                                                   \
            if (e[r * h + j] != 0) { ++cstart[j + 1]; ++nnz; }                            \
    if (nnz > max_nnz) { free(cstart); return 1; }                                        \
    int64_t* rows = (int64_t*)malloc((size_t)(nnz ? nnz : 1) * sizeof(int64_t));          \
    T* val = (T*)malloc((size_t)(nnz ? nnz : 1) * sizeof(T));                             \
    int64_t* fill = (int64_t*)malloc((size_t)(h ? h : 1) * sizeof(int64_t));              \
    if (!rows || !val || !fill) { free(cstart); free(rows); free(val); free(fill); return 2; } \
    for (int64_t j = 0; j < h; ++j) cstart[j + 1] += cstart[j];                           \
    memcpy(fill, cstart, (size_t)h * sizeof(int64_t));                                    \
    for (int64_t r = 0; r < n; ++r)                                                       \
        for (int64_t j = 0; j < h; ++j)                                                   \
            if (e[r * h + j] != 0) { rows[fill[j]] = r; val[fill[j]] = e[r * h + j]; ++fill[j]; } \
    free(fill);                                                                           \
    const int64_t CH = 8 * LANES;                                                         \
    for (int64_t p = 0; p < pairs; ++p) {                                                 \
        const T* q = (const T*)(uintptr_t)desc[5 * p];                                    \
        const int64_t g = desc[5 * p + 1], ldq = desc[5 * p + 2], ldo = desc[5 * p + 4];   \
        T* out = (T*)(uintptr_t)desc[5 * p + 3];                                          \
        const int64_t chunks = (g + CH - 1) / CH;                                         \
        for (int64_t c0 = 0; c0 < chunks; c0 += 64) {  /* at most 64 parts per job */     \
            const int nc = (int)(chunks - c0 < 64 ? chunks - c0 : 64);                    \
            evt_args A = {h, g - c0 * CH, ldq, ldo, cstart, rows, val, q + c0 * CH, out + c0 * CH}; \
            pool_run(evt_part_##SUF, &A, nc, threads);                                    \
        }                                                                                 \
    }                                                                                     \
    free(cstart);                                                                         \
    free(rows);                                                                           \
    free(val);                                                                            \
    return 0;                                                                             \
}
EVT(float, f32, 8)
EVT(double, f64, 4)

/* One inference step of one layer for a few samples (the per-step cell under no_grad):
 *   gh = b_hh + sum over units j that fired of y_prev[j] * W_hh^T[j, :]    (rows of active units only)
 *   gi = b_ih + W_ih x                                                      (W_ih [3H, I] row-major)
 * then the gates, threshold, reset and trace as in egru_fwd. With clamp, theta is clamped to [0, 1] here
 * (the modules' threshold_clamp); a NaN threshold makes its unit's y, c and trace NaN, as the torch step
 * does (snntorch_egru._layer_setup.nan_threshold_propagates).
 * With whh (the row-major W_hh [3H, H] that wt was copied from) and probe (its weight_probe), the
 * step also checks the probe and returns 1 when it differs (the copy wt is stale; the outputs are then
 * to be thrown away); otherwise it returns 0.
 * The work is cut into parts: ranges of units (each computes its units' segments of gh, gi, the gates
 * and the update, for every sample) and ranges of probe rows; with threads > 1 the helper thread takes
 * some of them (see pool_run). gi and gh are the calling thread's scratch [b, 3H] (2 is returned when
 * it cannot be allocated); y, c, tr are written (they may not alias the inputs). */
#define STEP_MAX_PARTS 16
typedef struct {
    int64_t b, h, in, chunk, nunit, nprobe;
    const void *x, *wih, *bih, *y0, *c0, *tr0, *wt, *bhh, *theta, *whh;
    void *probe, *ys, *cs, *trs, *gi, *gh;
    int clamp, reset, use_p;
    double zo_p, decay, gain;
    EGRU_FLAG stale;
} step_args;
#define STEP(T, SUF, BITS)                                                                  \
EGRU_HOT static void step_part_##SUF(void* arg, int part) {                                          \
    step_args* A = (step_args*)arg;                                                       \
    const int64_t b = A->b, h = A->h, in = A->in, g3 = 3 * h;                             \
    if (part >= A->nunit) {  /* a range of probe rows */                                  \
        const int64_t k = part - A->nunit, per = (g3 + A->nprobe - 1) / A->nprobe;        \
        const int64_t r0 = k * per, r1 = r0 + per < g3 ? r0 + per : g3;                   \
        if (r0 < r1 && probe_rows_##SUF((const T*)A->whh, r0, r1, h, (T*)A->probe, 0))    \
            FLAG_SET(&A->stale);                                                          \
        return;                                                                           \
    }                                                                                     \
    const int64_t i0 = part * A->chunk, i1 = i0 + A->chunk < h ? i0 + A->chunk : h;       \
    const int64_t len = i1 - i0;                                                          \
    if (len <= 0) return;                                                                 \
    const T *x = (const T*)A->x, *wih = (const T*)A->wih, *bih = (const T*)A->bih;        \
    const T *y0 = (const T*)A->y0, *wt = (const T*)A->wt, *bhh = (const T*)A->bhh;        \
    const T p = (T)A->zo_p, keep = (T)(1.0 - A->zo_p), dec = (T)A->decay, inc = (T)A->gain; \
    for (int64_t s = 0; s < b; ++s) {                                                     \
        T* restrict g = (T*)A->gh + s * g3;                                               \
        T* restrict q = (T*)A->gi + s * g3;                                               \
        for (int64_t c = 0; c < 3; ++c) {                                                 \
            if (bhh) memcpy(g + c * h + i0, bhh + c * h + i0, (size_t)len * sizeof(T));   \
            else memset(g + c * h + i0, 0, (size_t)len * sizeof(T));                      \
        }                                                                                 \
        const T* ys = y0 + s * h;                                                         \
        for (int64_t j = 0; j < h; ++j) {                                                 \
            const T a = ys[j];                                                            \
            if (a == 0) continue;                                                         \
            const T* restrict row = wt + j * g3;                                          \
            for (int64_t c = 0; c < 3; ++c) {                                             \
                T* restrict o = g + c * h + i0;                                           \
                const T* restrict rw = row + c * h + i0;                                  \
                for (int64_t k = 0; k < len; ++k) o[k] += a * rw[k];                      \
            }                                                                             \
        }                                                                                 \
        for (int64_t c = 0; c < 3; ++c)                                                   \
            rows_dot_##SUF(wih, in, x + s * in, bih, c * h + i0, c * h + i1, q);          \
        gates_##SUF(len, h, q + i0, g + i0);                                              \
        update_##SUF(len, g + h + i0, g + 2 * h + i0, (const T*)A->c0 + s * h + i0,       \
                     (const T*)A->tr0 + s * h + i0, (const T*)A->theta + i0, NULL, 0, A->use_p, \
                     p, keep, A->clamp, 1, A->reset, dec, inc, (T*)A->ys + s * h + i0,    \
                     (T*)A->cs + s * h + i0, (T*)A->trs + s * h + i0, NULL, 0);           \
    }                                                                                     \
}                                                                                         \
EGRU_HOT int egru_step_##SUF(int64_t b, int64_t h, int64_t in, const T* x, const T* wih,           \
        const T* bih, const T* y0, const T* c0, const T* tr0, const T* wt, const T* bhh,  \
        const T* theta, int clamp, double zo_p, int reset, double decay, double gain,      \
        T* ys, T* cs, T* trs, const T* whh, T* probe, int threads, int nunit) {           \
    const int64_t g3 = 3 * h;                                                             \
    T* buf = (T*)scratch_bytes((size_t)(2 * b * g3) * sizeof(T));                         \
    if (!buf) return 2;                                                                   \
    if (nunit < 1) nunit = 1;                                                             \
    if (nunit > STEP_MAX_PARTS - 2) nunit = STEP_MAX_PARTS - 2;                           \
    step_args A = {b, h, in, 0, 0, 0, x, wih, bih, y0, c0, tr0, wt, bhh, theta, whh, probe, ys, cs, \
                   trs, buf, buf + b * g3, clamp, reset, zo_p > 0, zo_p, decay, gain, 0};  \
    A.chunk = (h + nunit - 1) / nunit;                                                    \
    A.chunk = (A.chunk + 15) / 16 * 16;  /* whole cache lines of float and double */      \
    A.nunit = (h + A.chunk - 1) / A.chunk;                                                \
    A.nprobe = whh && probe ? 2 : 0;                                                      \
    const int n = (int)(A.nunit + A.nprobe);                                              \
    pool_run(step_part_##SUF, &A, n, threads);                                            \
    return FLAG_GET(&A.stale) ? 1 : 0;                                                    \
}
STEP(float, f32, uint32_t)
STEP(double, f64, uint64_t)

/* Ask the kernel to back the whole 2 MiB pages inside [p, p + n) with huge pages (MADV_HUGEPAGE, then,
 * with collapse, MADV_COLLAPSE for pages already touched; Linux only, best effort: an error changes
 * nothing). The per-step cell reads one group from each of the 3H rows of W_hh and a few rows of the
 * large W_hh^T copy per step: with 4 KiB pages nearly every such read also misses the TLB. The data
 * is not changed. Returns the number of bytes advised. */
#if defined(__linux__)
#include <sys/mman.h>
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
#endif
int64_t advise_huge(void* p, int64_t n, int collapse) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    const uintptr_t huge = (uintptr_t)1 << 21;
    const uintptr_t s = ((uintptr_t)p + huge - 1) & ~(huge - 1), e = ((uintptr_t)p + (uintptr_t)n) & ~(huge - 1);
    if (n <= 0 || e <= s) return 0;
    if (madvise((void*)s, e - s, MADV_HUGEPAGE) != 0) return 0;
    if (collapse) (void)madvise((void*)s, e - s, MADV_COLLAPSE);
    return (int64_t)(e - s);
#else
    (void)p; (void)n; (void)collapse;
    return 0;
#endif
}

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
 * ys, cs, trs, whh, probe, threads, parts), every pointer a Python int (or None) -> the step's return
 * code. The caller (snntorch_egru._cell_fast) checked every tensor. */
static void* arg_ptr(PyObject* o) { return o == Py_None ? NULL : PyLong_AsVoidPtr(o); }
#define PYSTEP_ARGS 24
#define PYSTEP(T, SUF)                                                                      \
static PyObject* py_egru_step_##SUF(PyObject* self, PyObject* const* a, Py_ssize_t n) {    \
    (void)self;                                                                           \
    if (n != PYSTEP_ARGS) {                                                               \
        PyErr_Format(PyExc_TypeError, "egru_step_" #SUF " takes %d arguments (%zd given)", \
                     PYSTEP_ARGS, n);                                                     \
        return NULL;                                                                      \
    }                                                                                     \
    void* q[PYSTEP_ARGS] = {NULL};                                                        \
    for (int i = 3; i < 22; ++i)                                                          \
        if (i < 12 || i > 16) q[i] = arg_ptr(a[i]);                                       \
    const int64_t b = PyLong_AsLongLong(a[0]), h = PyLong_AsLongLong(a[1]);               \
    const int64_t in = PyLong_AsLongLong(a[2]);                                           \
    const int clamp = (int)PyLong_AsLong(a[12]), reset = (int)PyLong_AsLong(a[14]);       \
    const double zo_p = PyFloat_AsDouble(a[13]);                                          \
    const double decay = PyFloat_AsDouble(a[15]), gain = PyFloat_AsDouble(a[16]);         \
    const int threads = (int)PyLong_AsLong(a[22]), parts = (int)PyLong_AsLong(a[23]);     \
    if (PyErr_Occurred()) return NULL;                                                    \
    int rc;                                                                               \
    Py_BEGIN_ALLOW_THREADS                                                                \
    rc = egru_step_##SUF(b, h, in, q[3], q[4], q[5], q[6], q[7], q[8], q[9], q[10], q[11], \
                         clamp, zo_p, reset, decay, gain, q[17], q[18], q[19], q[20], q[21], \
                         threads, parts);                                                 \
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
