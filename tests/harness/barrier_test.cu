// Harness-only test kernel for grid_barrier (egru_common.cuh) across a wrap of its 32-bit
// counter: the host presets *counter = (k0 - 1) * gridDim.x (mod 2^32), as if k0 - 1 barriers
// had already run, and the kernel runs `steps` more barriers k0, k0 + 1, ... Thread 0 of block 0
// arrives last every time: it waits until the counter shows every other block's arrival at this
// barrier, then 100 ms more, so that a block released early has long left the barrier (it left
// before the later blocks even arrived) and is seen: after barrier s, every block must find every
// other block's arrival mark >= s. Waiting on the counter, not a fixed sleep from the previous
// barrier, keeps this independent of how fast the host schedules its threads (a fixed 20 ms was
// too short on a loaded 2-core machine). The number of violations goes to *bad. Compiled only
// into builds made with -DEGRU_HOST_BARRIER_TEST.
#include "egru_common.cuh"

#include <time.h>

extern "C" __global__ void egru_barrier_test(unsigned int* counter, const unsigned int k0, const int steps,
                                             int* arrived, int* bad) {
    for (int s = 0; s < steps; ++s) {
        if (threadIdx.x == 0) {
            if (blockIdx.x == 0) {
                // the counter before this barrier's first arrival (mod 2^32, as the barrier counts)
                const unsigned int before = (k0 + (unsigned int)s - 1u) * gridDim.x;
                const timespec poll{0, 200000};  // 0.2 ms
                for (int i = 0; i < 50000 &&  // at most 10 s: a broken barrier must not hang here
                     __atomic_load_n(counter, __ATOMIC_ACQUIRE) - before < gridDim.x - 1u; ++i) {
                    nanosleep(&poll, nullptr);
                }
                const timespec ts{0, 100000000};  // 100 ms more: early leavers have checked by then
                nanosleep(&ts, nullptr);
            }
            __atomic_store_n(&arrived[blockIdx.x], s, __ATOMIC_RELAXED);
        }
        grid_barrier(counter, k0 + (unsigned int)s);
        if (threadIdx.x == 0) {
            for (unsigned int b = 0; b < gridDim.x; ++b) {
                if (__atomic_load_n(&arrived[b], __ATOMIC_RELAXED) < s) __atomic_fetch_add(bad, 1, __ATOMIC_RELAXED);
            }
        }
    }
}
