// CPU execution harness: runs kernels/egru_forward.cu and egru_backward.cu (compiled
// unchanged, see cuda_host.h) with one OS thread per CUDA thread.
//
// Build (tests/harness/build.py does it, cached per source hash):
//   g++ -std=c++20 -pthread -shared -fPIC -I tests/harness -I kernels
//       -DEGRU_REAL=double -DEGRU_WSTORE=0 -DEGRU_UNITS=32 host_runtime.cpp -o egru_host.so
// With -DEGRU_HOST_MAIN it becomes an executable that replays recorded launches (for the
// ThreadSanitizer / AddressSanitizer builds, which cannot be loaded into Python).
//
// C entry point: egru_host_launch(kernel, grid, cooperative, nargs, args, err, errlen)
//   args[i]: pointer value, int (two's complement) or the bits of a double, in the kernel's
//   parameter order. A cooperative launch runs all `grid` blocks at once (the grid barrier
//   runs for real; more blocks than EGRU_HOST_SLOTS is refused like CUDA's "too large"); a
//   plain launch runs the blocks in waves of EGRU_HOST_SLOTS. Returns 0; 2 (refused, nothing ran)
//   or 1 (failed while running) with a message in err.
#include "cuda_host.h"

#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#ifndef EGRU_HOST_SLOTS
#define EGRU_HOST_SLOTS 8
#endif

thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

// ------------------------------------------------------------------ kernels, one copy per slot
// Function-local `static` (= __shared__) arrays are per copy, so concurrently running blocks
// use different copies. egru_common.cuh is include-guarded and has no __shared__ of its own.
#define egru_forward egru_forward_s0
#define egru_backward egru_backward_s0
#include "egru_forward.cu"
#include "egru_backward.cu"
#undef egru_forward
#undef egru_backward
#define egru_forward egru_forward_s1
#define egru_backward egru_backward_s1
#include "egru_forward.cu"
#include "egru_backward.cu"
#undef egru_forward
#undef egru_backward
#define egru_forward egru_forward_s2
#define egru_backward egru_backward_s2
#include "egru_forward.cu"
#include "egru_backward.cu"
#undef egru_forward
#undef egru_backward
#define egru_forward egru_forward_s3
#define egru_backward egru_backward_s3
#include "egru_forward.cu"
#include "egru_backward.cu"
#undef egru_forward
#undef egru_backward
#if EGRU_HOST_SLOTS > 4
#define egru_forward egru_forward_s4
#define egru_backward egru_backward_s4
#include "egru_forward.cu"
#include "egru_backward.cu"
#undef egru_forward
#undef egru_backward
#define egru_forward egru_forward_s5
#define egru_backward egru_backward_s5
#include "egru_forward.cu"
#include "egru_backward.cu"
#undef egru_forward
#undef egru_backward
#define egru_forward egru_forward_s6
#define egru_backward egru_backward_s6
#include "egru_forward.cu"
#include "egru_backward.cu"
#undef egru_forward
#undef egru_backward
#define egru_forward egru_forward_s7
#define egru_backward egru_backward_s7
#include "egru_forward.cu"
#include "egru_backward.cu"
#undef egru_forward
#undef egru_backward
#endif
#if EGRU_HOST_SLOTS != 4 && EGRU_HOST_SLOTS != 8
#error "EGRU_HOST_SLOTS must be 4 or 8"
#endif

#ifdef EGRU_HOST_BARRIER_TEST
#include "barrier_test.cu"
#endif

using fwd_fn = decltype(&egru_forward_s0);
using bwd_fn = decltype(&egru_backward_s0);
static const fwd_fn FWD[] = {egru_forward_s0, egru_forward_s1, egru_forward_s2, egru_forward_s3,
#if EGRU_HOST_SLOTS > 4
                             egru_forward_s4, egru_forward_s5, egru_forward_s6, egru_forward_s7
#endif
};
static const bwd_fn BWD[] = {egru_backward_s0, egru_backward_s1, egru_backward_s2, egru_backward_s3,
#if EGRU_HOST_SLOTS > 4
                             egru_backward_s4, egru_backward_s5, egru_backward_s6, egru_backward_s7
#endif
};

namespace egru_host {

struct Abort {};  // unwinds a CUDA thread after a reported error

static std::mutex g_err_mutex;
static std::string g_err;
static std::atomic<bool> g_abort{false};

static double timeout_s() {
    static const double t = [] {
        const char* e = std::getenv("EGRU_HOST_TIMEOUT");
        return e ? std::atof(e) : 60.0;
    }();
    return t;
}

static double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

[[noreturn]] static void fail(const std::string& msg) {
    {
        std::lock_guard<std::mutex> lk(g_err_mutex);
        if (g_err.empty()) g_err = msg;
    }
    g_abort.store(true);
    throw Abort{};
}

static std::string where() {
    return "block " + std::to_string(blockIdx.x) + " thread " + std::to_string(threadIdx.x);
}

struct Warp {
    std::mutex m;
    std::condition_variable cv;
    unsigned int arrived = 0, exited = 0, mask = 0;
    int op = 0, arg = 0;
    std::uint64_t gen = 0;
    std::uint64_t val[32] = {}, res[32] = {};
};

struct Block {
    std::mutex m;
    std::condition_variable cv;
    int live = 0, arrived = 0;
    std::uint64_t gen = 0;
    Warp warps[EGRU_BLOCK / 32];
};

thread_local Block* t_block = nullptr;

template <class Pred>
static void wait_until(std::unique_lock<std::mutex>& lk, std::condition_variable& cv, Pred done,
                       const char* what) {
    const double t0 = now_s();
    while (!done()) {
        cv.wait_for(lk, std::chrono::milliseconds(20));
        if (g_abort.load()) throw Abort{};
        if (!done() && now_s() - t0 > timeout_s()) {
            lk.unlock();
            fail(std::string("hang: ") + what + " waited more than " + std::to_string((int)timeout_s()) +
                 " s (" + where() + ")");
        }
    }
}

void syncthreads() {
    Block& b = *t_block;
    std::unique_lock<std::mutex> lk(b.m);
    if (g_abort.load()) throw Abort{};
    if (++b.arrived == b.live) {
        b.arrived = 0;
        ++b.gen;
        b.cv.notify_all();
        return;
    }
    const std::uint64_t g = b.gen;
    wait_until(lk, b.cv, [&] { return b.gen != g; }, "__syncthreads");
}

static void thread_exit() {
    Block& b = *t_block;
    const int lane = threadIdx.x & 31;
    Warp& w = b.warps[threadIdx.x >> 5];
    {
        std::lock_guard<std::mutex> lk(w.m);
        w.exited |= 1u << lane;
        if (w.arrived != 0 && (w.mask & (1u << lane)) && !g_abort.load()) {
            std::lock_guard<std::mutex> le(g_err_mutex);
            if (g_err.empty())
                g_err = "warp operation: lane " + std::to_string(lane) + " named in mask exited (" + where() + ")";
            g_abort.store(true);
        }
        w.cv.notify_all();
    }
    std::lock_guard<std::mutex> lk(b.m);
    --b.live;
    if (b.arrived > 0 && b.arrived == b.live) {  // exited threads drop out of __syncthreads (sm_70+)
        b.arrived = 0;
        ++b.gen;
    }
    b.cv.notify_all();
}

std::uint64_t warp_op(int op, unsigned int mask, std::uint64_t value, int arg) {
    const int lane = threadIdx.x & 31;
    const unsigned int bit = 1u << lane;
    Warp& w = t_block->warps[threadIdx.x >> 5];
    if (!(mask & bit)) fail("warp operation: calling lane " + std::to_string(lane) + " not in mask (" + where() + ")");
    if (op == OP_SHFL_XOR && (arg & (1 << 30))) fail("__shfl_xor_sync: only width 32 is modelled (" + where() + ")");
    std::unique_lock<std::mutex> lk(w.m);
    if (g_abort.load()) throw Abort{};
    if (mask & w.exited) {
        lk.unlock();
        fail("warp operation: mask names a lane that exited (" + where() + ")");
    }
    if (w.arrived == 0) {
        w.op = op;
        w.mask = mask;
        w.arg = arg;
    } else if (w.op != op || w.mask != mask || w.arg != arg) {
        lk.unlock();
        fail("warp operation: lanes of one warp disagree on the operation or mask (" + where() + ")");
    }
    w.val[lane] = value;
    w.arrived |= bit;
    if (w.arrived == mask) {
        if (op == OP_BALLOT) {
            unsigned int r = 0;
            for (int l = 0; l < 32; ++l)
                if ((mask >> l & 1u) && w.val[l]) r |= 1u << l;
            for (int l = 0; l < 32; ++l) w.res[l] = r;
        } else {
            for (int l = 0; l < 32; ++l) {
                if (!(mask >> l & 1u)) continue;
                const int src = l ^ (arg & 31);
                if (!(mask >> src & 1u)) {
                    lk.unlock();
                    fail("__shfl_xor_sync: source lane outside the mask (" + where() + ")");
                }
                w.res[l] = w.val[src];
            }
        }
        w.arrived = 0;
        ++w.gen;
        w.cv.notify_all();
        return w.res[lane];
    }
    const std::uint64_t g = w.gen;
    wait_until(lk, w.cv, [&] { return w.gen != g; }, "warp operation (a named lane never arrived)");
    return w.res[lane];
}

thread_local unsigned int t_poll_last = 0;
thread_local double t_poll_since = 0;
thread_local unsigned int t_poll_spins = 0;

unsigned int poll_acquire(const unsigned int* p) {
    if (g_abort.load()) throw Abort{};
    const unsigned int v = __atomic_load_n(p, __ATOMIC_ACQUIRE);
    if (v != t_poll_last || t_poll_spins == 0) {
        t_poll_last = v;
        t_poll_since = now_s();
    } else if ((t_poll_spins & 63u) == 0 && now_s() - t_poll_since > timeout_s()) {
        fail("hang: grid barrier counter stuck at " + std::to_string(v) + " for more than " +
             std::to_string((int)timeout_s()) + " s (" + where() + ")");
    }
    ++t_poll_spins;
    return v;
}

void spin_pause() {
    if ((t_poll_spins & 15u) != 0) {
        sched_yield();
    } else {
        const timespec ts{0, 50000};
        nanosleep(&ts, nullptr);
    }
}

// ------------------------------------------------------------------ argument conversion
template <class T>
static T conv(std::uint64_t u) {
    if constexpr (std::is_pointer_v<T>) {
        return reinterpret_cast<T>(static_cast<std::uintptr_t>(u));
    } else if constexpr (std::is_integral_v<T>) {
        return static_cast<T>(static_cast<std::int64_t>(u));
    } else {
        return static_cast<T>(std::bit_cast<double>(u));
    }
}

template <class... P, std::size_t... I>
static void call_impl(void (*f)(P...), const std::uint64_t* a, std::index_sequence<I...>) {
    f(conv<P>(a[I])...);
}

template <class... P>
static constexpr int arity(void (*)(P...)) { return sizeof...(P); }

template <class... P>
static void call(void (*f)(P...), const std::uint64_t* a) {
    call_impl(f, a, std::index_sequence_for<P...>{});
}

// ------------------------------------------------------------------ launch
struct ThreadArg {
    Block* block;
    unsigned int tid, bid, grid;
    int slot;
    int kernel;  // 0 forward, 1 backward
    const std::uint64_t* args;
};

static void* thread_main(void* p) {
    ThreadArg* a = static_cast<ThreadArg*>(p);
    threadIdx = dim3{a->tid, 1, 1};
    blockIdx = dim3{a->bid, 1, 1};
    blockDim = dim3{EGRU_BLOCK, 1, 1};
    gridDim = dim3{a->grid, 1, 1};
    t_block = a->block;
    t_poll_spins = 0;
    try {
        if (a->kernel == 0) {
            call(FWD[a->slot], a->args);
        } else if (a->kernel == 1) {
            call(BWD[a->slot], a->args);
        } else {
#ifdef EGRU_HOST_BARRIER_TEST
            call(egru_barrier_test, a->args);
#endif
        }
    } catch (const Abort&) {
    } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lk(g_err_mutex);
        if (g_err.empty()) g_err = std::string("exception in kernel thread: ") + e.what();
        g_abort.store(true);
    }
    thread_exit();
    return nullptr;
}

static int run_blocks(int kernel, int first, int count, int grid, const std::uint64_t* args) {
    std::vector<std::unique_ptr<Block>> blocks;
    std::vector<ThreadArg> targs((std::size_t)count * EGRU_BLOCK);
    std::vector<pthread_t> th((std::size_t)count * EGRU_BLOCK);
    for (int b = 0; b < count; ++b) {
        blocks.emplace_back(new Block);
        blocks.back()->live = EGRU_BLOCK;
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 1 << 20);
    std::size_t started = 0;
    for (int b = 0; b < count; ++b) {
        for (int t = 0; t < EGRU_BLOCK; ++t) {
            ThreadArg& ta = targs[(std::size_t)b * EGRU_BLOCK + t];
            ta = ThreadArg{blocks[b].get(), (unsigned)t, (unsigned)(first + b), (unsigned)grid, b, kernel, args};
            if (pthread_create(&th[started], &attr, thread_main, &ta) != 0) {
                std::lock_guard<std::mutex> lk(g_err_mutex);
                if (g_err.empty()) g_err = "pthread_create failed (too many threads?)";
                g_abort.store(true);
                // threads that never start must still drop out of their block's barriers
                Block& bl = *blocks[b];
                for (int rest = t; rest < EGRU_BLOCK; ++rest) {
                    std::lock_guard<std::mutex> lb(bl.m);
                    --bl.live;
                    bl.cv.notify_all();
                }
                for (int bb = b + 1; bb < count; ++bb) blocks[bb]->live = 0;
                b = count;
                break;
            }
            ++started;
        }
    }
    pthread_attr_destroy(&attr);
    for (std::size_t k = 0; k < started; ++k) pthread_join(th[k], nullptr);
    return g_abort.load() ? 1 : 0;
}

}  // namespace egru_host

extern "C" int egru_host_slots() { return EGRU_HOST_SLOTS; }

extern "C" int egru_host_nargs(const char* kernel) {
    const std::string k(kernel);
    if (k == "egru_forward") return egru_host::arity(FWD[0]);
    if (k == "egru_backward") return egru_host::arity(BWD[0]);
#ifdef EGRU_HOST_BARRIER_TEST
    if (k == "egru_barrier_test") return egru_host::arity(egru_barrier_test);
#endif
    return -1;
}

extern "C" int egru_host_launch(const char* kernel, int grid, int cooperative, int nargs,
                                const std::uint64_t* args, char* err, int errlen) {
    using namespace egru_host;
    auto report = [&](const std::string& msg, int rc = 2) {  // 2: refused before running, 1: failed running
        if (err && errlen > 0) std::snprintf(err, (std::size_t)errlen, "%s", msg.c_str());
        return rc;
    };
    const std::string k(kernel);
    const int kid = k == "egru_forward" ? 0 : (k == "egru_backward" ? 1 : (k == "egru_barrier_test" ? 2 : -1));
    if (kid < 0 || egru_host_nargs(kernel) < 0) return report("unknown kernel " + k);
    if (nargs != egru_host_nargs(kernel))
        return report(k + " takes " + std::to_string(egru_host_nargs(kernel)) + " arguments, got " +
                      std::to_string(nargs));
    if (grid < 1) return report("grid must be >= 1, got " + std::to_string(grid));
    if (cooperative && grid > EGRU_HOST_SLOTS)
        return report("cooperative launch too large: " + std::to_string(grid) + " blocks, at most " +
                      std::to_string(EGRU_HOST_SLOTS) + " co-resident (cudaErrorCooperativeLaunchTooLarge)");
    g_abort.store(false);
    g_err.clear();
    const int wave = cooperative ? grid : (grid < EGRU_HOST_SLOTS ? grid : EGRU_HOST_SLOTS);
    for (int first = 0; first < grid; first += wave) {
        const int count = grid - first < wave ? grid - first : wave;
        if (run_blocks(kid, first, count, grid, args) != 0) return report(g_err, 1);
    }
    return 0;
}

#ifdef EGRU_HOST_MAIN
// ------------------------------------------------------------------ replay of recorded launches
// File format (little endian), written by tests/harness/hostkernels.py (HostLauncher(record=...)):
//   "EGRULAUNCH1\n", name (u32 len + bytes), grid i32, cooperative i32, nargs i32,
//   per argument: kind u8 (0 value, 1 buffer) + u64 (value, or buffer index),
//   nbuf u32, per buffer: nbytes u64, bytes before the launch, bytes after it.
// Each buffer gets its own exactly-sized heap allocation (so AddressSanitizer sees overruns);
// the result must equal the recorded one bit for bit (the kernels are deterministic).
static bool rd(std::FILE* f, void* p, std::size_t n) { return std::fread(p, 1, n, f) == n; }

static int replay(const char* path) {
    std::FILE* f = std::fopen(path, "rb");
    if (!f) {
        std::fprintf(stderr, "%s: cannot open\n", path);
        return 2;
    }
    char magic[12];
    std::uint32_t len = 0;
    if (!rd(f, magic, 12) || std::memcmp(magic, "EGRULAUNCH1\n", 12) != 0 || !rd(f, &len, 4) || len > 64) {
        std::fprintf(stderr, "%s: not a launch record\n", path);
        return 2;
    }
    std::string name(len, '\0');
    std::int32_t grid = 0, coop = 0, nargs = 0;
    rd(f, name.data(), len);
    rd(f, &grid, 4);
    rd(f, &coop, 4);
    rd(f, &nargs, 4);
    std::vector<std::uint8_t> kind((std::size_t)nargs);
    std::vector<std::uint64_t> val((std::size_t)nargs);
    for (int i = 0; i < nargs; ++i) {
        rd(f, &kind[i], 1);
        rd(f, &val[i], 8);
    }
    std::uint32_t nbuf = 0;
    rd(f, &nbuf, 4);
    std::vector<std::unique_ptr<unsigned char[]>> bufs, want;
    std::vector<std::uint64_t> sizes;
    for (std::uint32_t b = 0; b < nbuf; ++b) {
        std::uint64_t n = 0;
        rd(f, &n, 8);
        bufs.emplace_back(new unsigned char[n]);
        want.emplace_back(new unsigned char[n]);
        sizes.push_back(n);
        if (!rd(f, bufs.back().get(), n) || !rd(f, want.back().get(), n)) {
            std::fprintf(stderr, "%s: truncated\n", path);
            return 2;
        }
    }
    std::fclose(f);
    std::vector<std::uint64_t> args((std::size_t)nargs);
    for (int i = 0; i < nargs; ++i)
        args[i] = kind[i] ? (std::uint64_t)(std::uintptr_t)bufs[val[i]].get() : val[i];
    char err[2048] = {0};
    if (egru_host_launch(name.c_str(), grid, coop, nargs, args.data(), err, sizeof err) != 0) {
        std::fprintf(stderr, "%s: %s launch failed: %s\n", path, name.c_str(), err);
        return 1;
    }
    for (std::uint32_t b = 0; b < nbuf; ++b) {
        if (std::memcmp(bufs[b].get(), want[b].get(), sizes[b]) != 0) {
            std::fprintf(stderr, "%s: %s buffer %u differs from the recorded result\n", path, name.c_str(), b);
            return 1;
        }
    }
    return 0;
}

int main(int argc, char** argv) {
    int bad = 0;
    for (int i = 1; i < argc; ++i) bad |= replay(argv[i]);
    std::printf("replayed %d launch(es): %s\n", argc - 1, bad ? "FAILED" : "ok");
    return bad;
}
#endif
