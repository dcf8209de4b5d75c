// Shared definitions for the EGRU CUDA kernels (compiled at run time with NVRTC).
//
// The loader (snntorch_egru/cuda/_sources.py) inlines this file into every kernel
// source before compiling, so the kernels need no include path and no CUDA
// toolkit headers. Compile-time configuration (set with -D by the loader):
//   EGRU_REAL    float | double      arithmetic and state type (default float)
//   EGRU_WSTORE  0 | 1 | 2           storage of the recurrent weights:
//                                    0 = EGRU_REAL, 1 = fp16, 2 = bf16 (always
//                                    converted to EGRU_REAL before use)
//   EGRU_UNITS   32 | 64 | 128 | 256 units per block in the forward gather
//   EGRU_HOST_BUILD  defined only by the CPU execution harness (tests/harness/cuda_host.h),
//                which compiles these files unchanged as C++20: it selects host bodies for
//                the three inline-PTX helpers below. NVRTC/nvcc never define it.
// Block size is fixed: EGRU_BLOCK = 256 threads (8 warps).
#ifndef EGRU_COMMON_CUH
#define EGRU_COMMON_CUH

#ifndef EGRU_REAL
#define EGRU_REAL float
#endif
#ifndef EGRU_WSTORE
#define EGRU_WSTORE 0
#endif
#ifndef EGRU_UNITS
#define EGRU_UNITS 32
#endif

#define EGRU_BLOCK 256
#define EGRU_NWARPS (EGRU_BLOCK / 32)
#define EGRU_KSPLIT (EGRU_BLOCK / EGRU_UNITS)
// Maximum number of recurrent inputs compacted into shared memory at once.
#define EGRU_TILE 2048

#if (EGRU_TILE % EGRU_BLOCK) != 0
#error "EGRU_TILE must be a multiple of EGRU_BLOCK"
#endif
#if (EGRU_BLOCK % EGRU_UNITS) != 0 || (EGRU_UNITS % 32) != 0
#error "EGRU_UNITS must be a multiple of 32 that divides EGRU_BLOCK"
#endif

typedef EGRU_REAL real;

// Alignment of a (shared) variable: __align__ for NVRTC/nvcc, the GCC attribute for the host build.
#ifdef EGRU_HOST_BUILD
#define EGRU_ALIGN(n) __attribute__((aligned(n)))
#else
#define EGRU_ALIGN(n) __align__(n)
#endif

// ---------------------------------------------------------------- weights
// wconv: one stored weight -> real; wload: *p converted.
#if EGRU_WSTORE == 0
typedef real wstore;
__device__ __forceinline__ real wconv(wstore w) { return w; }
#elif EGRU_WSTORE == 1
typedef unsigned short wstore;
__device__ __forceinline__ real wconv(wstore h) {
    float f;
#ifdef EGRU_HOST_BUILD
    f = egru_host_half_to_float(h);
#else
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
#endif
    return (real)f;
}
#elif EGRU_WSTORE == 2
typedef unsigned short wstore;
__device__ __forceinline__ real wconv(wstore h) {
    return (real)__uint_as_float(((unsigned int)h) << 16);
}
#else
#error "EGRU_WSTORE must be 0, 1 or 2"
#endif
__device__ __forceinline__ real wload(const wstore* p) { return wconv(*p); }

// Four consecutive values in one (vector) load: ld.global.nc.v4 for float weights, v2 pairs for
// double, one 64-bit load for fp16/bf16. The address must be a multiple of sizeof(egru_vec4<T>).
template <class T>
struct alignas(4 * sizeof(T)) egru_vec4 {
    T v[4];
};

// ---------------------------------------------------------------- math
__device__ __forceinline__ float egru_exp(float x) { return expf(x); }
__device__ __forceinline__ double egru_exp(double x) { return exp(x); }
__device__ __forceinline__ float egru_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double egru_tanh(double x) { return tanh(x); }
__device__ __forceinline__ float egru_abs(float x) { return fabsf(x); }
__device__ __forceinline__ double egru_abs(double x) { return fabs(x); }
__device__ __forceinline__ real egru_sigmoid(real x) { return (real)1 / ((real)1 + egru_exp(-x)); }

// Loads of values written by OTHER blocks during the same (persistent) launch
// bypass L1 (".cg" = cache in L2 only), so a stale L1 line can never be read.
#ifdef EGRU_HOST_BUILD
__device__ __forceinline__ float ld_cg(const float* p) { return egru_host_load_cg(p); }
__device__ __forceinline__ double ld_cg(const double* p) { return egru_host_load_cg(p); }
#else
__device__ __forceinline__ float ld_cg(const float* p) {
    float v;
    asm volatile("ld.global.cg.f32 %0, [%1];" : "=f"(v) : "l"(p));
    return v;
}
__device__ __forceinline__ double ld_cg(const double* p) {
    double v;
    asm volatile("ld.global.cg.f64 %0, [%1];" : "=d"(v) : "l"(p));
    return v;
}
#endif

// The barrier counter as seen by the polling thread (volatile: re-read every iteration).
__device__ __forceinline__ unsigned int barrier_poll(const unsigned int* counter) {
#ifdef EGRU_HOST_BUILD
    return egru_host_poll(counter);
#else
    return *((const volatile unsigned int*)counter);
#endif
}

// Grid-wide barrier for persistent launches (cuLaunchCooperativeKernel
// guarantees all blocks are resident). `counter` starts at 0 for the launch and
// only grows: the k-th barrier (k = 1, 2, ...) waits until it reaches
// k * gridDim.x. Both are unsigned 32-bit and may wrap (after 2^32 / gridDim.x
// barriers, i.e. ~4 M backward steps at grid 528): the wait compares the signed
// difference, which is exact while the blocks are fewer than 2^31 arrivals apart
// (they are never more than one barrier, gridDim.x arrivals, apart).
// Release/acquire through __threadfence around the counter; the CTA barriers
// extend the ordering to the whole block.
__device__ __forceinline__ void grid_barrier(unsigned int* counter, unsigned int k) {
    __syncthreads();
    if (threadIdx.x == 0) {
        const unsigned int target = k * gridDim.x;
        __threadfence();
        atomicAdd(counter, 1u);
        while ((int)(barrier_poll(counter) - target) < 0) {
#ifdef EGRU_HOST_BUILD
            egru_host_pause();
#elif __CUDA_ARCH__ >= 700
            __nanosleep(32);
#endif
        }
        __threadfence();
    }
    __syncthreads();
}

// Block-wide stream compaction of src[0:len) (len <= EGRU_TILE): writes the
// indices (offset by gbase) and values of the non-zero entries, in ascending
// index order, to s_idx / s_val and returns their number (the same value in
// every thread). Must be called by all threads of the block (uniform control
// flow). Ends with __syncthreads(), so the lists are ready on return.
// s_scan needs EGRU_NWARPS + 1 ints.
__device__ __forceinline__ int block_compact(const real* src, int len, int gbase,
                                             int* s_idx, real* s_val, int* s_scan) {
    const int tid = threadIdx.x;
    const int lane = tid & 31;
    const int warp = tid >> 5;
    // Issue all loads of the tile first (one latency instead of one per round).
    real vals[EGRU_TILE / EGRU_BLOCK];
#pragma unroll
    for (int r = 0; r < EGRU_TILE / EGRU_BLOCK; ++r) {
        const int k = r * EGRU_BLOCK + tid;
        vals[r] = (k < len) ? ld_cg(src + k) : (real)0;
    }
    int total = 0;
#pragma unroll
    for (int r = 0; r < EGRU_TILE / EGRU_BLOCK; ++r) {
        const int off = r * EGRU_BLOCK;
        if (off >= len) break;  // uniform across the block
        const int k = off + tid;
        const real v = vals[r];
        const bool flag = (v != (real)0);
        const unsigned int mask = __ballot_sync(0xffffffffu, flag);
        if (lane == 0) s_scan[warp] = __popc(mask);
        __syncthreads();
        if (tid == 0) {
            int acc = 0;
            for (int w = 0; w < EGRU_NWARPS; ++w) {
                const int cnt = s_scan[w];
                s_scan[w] = acc;
                acc += cnt;
            }
            s_scan[EGRU_NWARPS] = acc;
        }
        __syncthreads();
        if (flag) {
            const int pos = total + s_scan[warp] + __popc(mask & ((1u << lane) - 1u));
            s_idx[pos] = gbase + k;
            s_val[pos] = v;
        }
        total += s_scan[EGRU_NWARPS];
        __syncthreads();
    }
    return total;
}

#endif  // EGRU_COMMON_CUH
