// Harness-only test kernel for grid_barrier (egru_common.cuh) across a wrap of its 32-bit
// counter: the host presets *counter = (k0 - 1) * gridDim.x (mod 2^32), as if k0 - 1 barriers
// had already run, and the kernel runs `steps` more barriers k0, k0 + 1, ... Thread 0 of block 0
// arrives late every time, so a barrier that releases a block early is seen: after barrier s,
// every block must find every other block's arrival mark >= s. Block 0 thread 0 also records
// the number of violations in *bad. Compiled only into builds made with -DEGRU_HOST_BARRIER_TEST.
#include "egru_common.cuh"

#include <time.h>

extern "C" __global__ void egru_barrier_test(unsigned int* counter, const unsigned int k0, const int steps,
                                             int* arrived, int* bad) {
    for (int s = 0; s < steps; ++s) {
        if (threadIdx.x == 0) {
            if (blockIdx.x == 0) {
                const timespec ts{0, 20000000};  // 20 ms: the others reach the barrier first
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
