// CPU execution harness for the EGRU CUDA kernels: the CUDA built-ins the kernels use,
// for compiling snntorch_egru/cuda/kernels/*.cu UNCHANGED as C++20 with g++/clang++ (one OS thread per
// CUDA thread). Included before the kernel sources by host_runtime.cpp; the kernels'
// inline-PTX helpers take their host bodies from egru_common.cuh under EGRU_HOST_BUILD.
//
// Semantics modelled (sm_70+):
//   * __syncthreads: per-block counting barrier; threads that exited the kernel drop out.
//   * __ballot_sync / __shfl_xor_sync: per-warp rendezvous of the lanes named by `mask`;
//     every lane must use the same operation and mask, none of the named lanes may have
//     exited, and the caller must be in the mask (violations abort the launch with a message).
//   * atomicAdd: acq_rel read-modify-write; __threadfence: seq_cst fence; the grid-barrier
//     poll: acquire load (so ThreadSanitizer sees the happens-before edges the barrier gives).
//   * __shared__: `static` (function-local); the runtime compiles one copy of every kernel
//     per concurrently running block ("slot"), so blocks alive at once never share it.
//   * a watchdog turns any wait that makes no progress for EGRU_HOST_TIMEOUT seconds into a
//     reported hang instead of a frozen process.
#ifndef EGRU_CUDA_HOST_H
#define EGRU_CUDA_HOST_H

#define EGRU_HOST_BUILD 1

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <math.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 {
    unsigned int x = 1, y = 1, z = 1;
};

extern thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace egru_host {
void syncthreads();
std::uint64_t warp_op(int op, unsigned int mask, std::uint64_t value, int arg);
unsigned int poll_acquire(const unsigned int* p);
void spin_pause();
enum { OP_BALLOT = 1, OP_SHFL_XOR = 2 };
}  // namespace egru_host

inline void __syncthreads() { egru_host::syncthreads(); }

inline unsigned int __ballot_sync(unsigned int mask, int pred) {
    return (unsigned int)egru_host::warp_op(egru_host::OP_BALLOT, mask, pred ? 1u : 0u, 0);
}

template <class T>
inline T __shfl_xor_sync(unsigned int mask, T v, int lane_mask, int width = 32) {
    static_assert(sizeof(T) <= 8, "__shfl_xor_sync: at most 64-bit values");
    std::uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    if (width != 32) lane_mask |= 1 << 30;  // flagged: only width 32 is modelled
    bits = egru_host::warp_op(egru_host::OP_SHFL_XOR, mask, bits, lane_mask);
    T out;
    std::memcpy(&out, &bits, sizeof(T));
    return out;
}

inline int __popc(unsigned int x) { return std::popcount(x); }

inline unsigned int atomicAdd(unsigned int* p, unsigned int v) {
    return __atomic_fetch_add(p, v, __ATOMIC_ACQ_REL);
}

inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

inline float __uint_as_float(unsigned int u) { return std::bit_cast<float>(u); }

template <class T>
inline T min(T a, T b) { return b < a ? b : a; }
template <class T>
inline T max(T a, T b) { return a < b ? b : a; }

// ---- host bodies of the kernels' inline-PTX helpers (used by egru_common.cuh)
// ld.global.cg: a relaxed atomic load (the value another block wrote; ordering comes from the
// barriers, and ThreadSanitizer reports the race if a barrier is missing).
template <class T>
inline T egru_host_load_cg(const T* p) {
    T v;
    __atomic_load(p, &v, __ATOMIC_RELAXED);
    return v;
}

// cvt.f32.f16 (IEEE binary16 -> binary32, exact, subnormals and inf/nan included).
inline float egru_host_half_to_float(unsigned short h) {
    const unsigned int sign = (unsigned int)(h & 0x8000u) << 16;
    unsigned int exp = (h >> 10) & 0x1fu;
    unsigned int man = h & 0x3ffu;
    unsigned int bits;
    if (exp == 0x1fu) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else {  // subnormal: normalise
        exp = 113u;
        while ((man & 0x400u) == 0) {
            man <<= 1;
            --exp;
        }
        bits = sign | (exp << 23) | ((man & 0x3ffu) << 13);
    }
    return std::bit_cast<float>(bits);
}

inline unsigned int egru_host_poll(const unsigned int* p) { return egru_host::poll_acquire(p); }
inline void egru_host_pause() { egru_host::spin_pause(); }

#endif  // EGRU_CUDA_HOST_H
