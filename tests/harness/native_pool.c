/* ThreadSanitizer harness of the native helper's worker thread (tests/test_native_threads.py): compiled with
 * -include snntorch_egru/_native/egru_native.c. Three threads step at once (only one may hand parts to the
 * worker; the others run theirs alone); every step cut into 1-5 parts on two threads must equal one part on
 * one thread bit for bit, a stale weight probe must be reported on every step, and the sequence loop cut
 * into parts must equal one part, and so must the product with transposed events. Exit code 0 when all
 * holds. */
#include <stdio.h>
#include <assert.h>
#define H 300
#define I 16
static float wih[3*H*I], bih[3*H], wt[H*3*H], bhh[3*H], th[H], whh[3*H*H], probe[3*H*4];
static float x[I];
typedef struct { int seed; int fails; } targ;
static float frand(unsigned* s) { *s = *s * 1103515245u + 12345u; return ((*s >> 8) & 0xffff) / 65536.0f - 0.5f; }
static void run(int threads, int parts, float* yout, unsigned seed, int use_probe, int* stale_seen) {
    float y[H] = {0}, c[H], tr[H] = {0}, yn[H], cn[H], trn[H];
    for (int i = 0; i < H; ++i) c[i] = frand(&seed);
    for (int t = 0; t < 50; ++t) {
        float xs[I];
        for (int i = 0; i < I; ++i) xs[i] = frand(&seed) * 4;
        int rc = egru_step_f32(1, H, I, xs, wih, bih, y, c, tr, wt, bhh, th, 0, 0.0, 0, 0.5, 0.5, yn, cn, trn,
                               use_probe ? whh : NULL, use_probe ? probe : NULL, threads, parts);
        if (rc == 1) ++*stale_seen;
        memcpy(y, yn, sizeof y); memcpy(c, cn, sizeof c); memcpy(tr, trn, sizeof tr);
    }
    memcpy(yout, y, sizeof y);
}
static void* thr(void* a) {
    targ* A = (targ*)a;
    float ref[H], got[H];
    int st = 0;
    for (int it = 0; it < 40; ++it) {
        run(1, 1, ref, A->seed + it, 0, &st);
        run(2, 1 + it % 5, got, A->seed + it, 1, &st);
        if (memcmp(ref, got, sizeof ref)) A->fails++;
    }
    if (st) A->fails += 1000;
    return NULL;
}
int main(void) {
    unsigned s = 1;
    for (int i = 0; i < 3*H*I; ++i) wih[i] = frand(&s);
    for (int i = 0; i < 3*H; ++i) { bih[i] = frand(&s); bhh[i] = frand(&s); }
    for (int i = 0; i < H*3*H; ++i) wt[i] = frand(&s) * 0.2f;
    for (int i = 0; i < H; ++i) th[i] = 0.05f + (frand(&s) + 0.5f) * 0.2f;
    for (int i = 0; i < 3*H*H; ++i) whh[i] = frand(&s);
    weight_probe_f32(whh, 3*H, H, probe);
    pthread_t ts[3]; targ as[3] = {{100, 0}, {200, 0}, {300, 0}};
    for (int k = 0; k < 3; ++k) pthread_create(&ts[k], NULL, thr, &as[k]);
    for (int k = 0; k < 3; ++k) pthread_join(ts[k], NULL);
    int fails = as[0].fails + as[1].fails + as[2].fails;
    /* the sequence loop cut into parts equals one part */
    {
        enum { TN = 20, B = 2 };
        static float gi[TN * B * 3 * H], ys1[TN*B*H], cs1[TN*B*H], os1[TN*B*H], tr1[TN*B*H], ys2[TN*B*H], cs2[TN*B*H], os2[TN*B*H], tr2[TN*B*H];
        static float rz1[TN*B*2*H], n1[TN*B*H], hn1[TN*B*H], rz2[TN*B*2*H], n2[TN*B*H], hn2[TN*B*H], gh[B*3*H];
        float y0[B*H] = {0}, c0[B*H] = {0}, t0[B*H] = {0};
        unsigned q = 5;
        for (int i = 0; i < TN*B*3*H; ++i) gi[i] = frand(&q) * 4;
        egru_fwd_f32(TN, B, H, gi, y0, c0, t0, wt, bhh, th, NULL, 0.0, 0, 0.5, 0.5, ys1, cs1, os1, tr1, rz1, n1, hn1, gh, 1, 1);
        for (int rep = 0; rep < 30; ++rep) {
            egru_fwd_f32(TN, B, H, gi, y0, c0, t0, wt, bhh, th, NULL, 0.0, 0, 0.5, 0.5, ys2, cs2, os2, tr2, rz2, n2, hn2, gh, 2, 2 + rep % 4);
            if (memcmp(ys1, ys2, sizeof ys1) || memcmp(cs1, cs2, sizeof cs1) || memcmp(rz1, rz2, sizeof rz1) || memcmp(hn1, hn2, sizeof hn1)) fails++;
        }
    }
    /* the product with transposed events: two threads equal one, bit for bit */
    {
        enum { N = 60, G = 3 * H };
        static float ev[N * H], q[N * G], o1[H * G], o2[H * G];
        unsigned z = 9;
        for (int i = 0; i < N * H; ++i) ev[i] = (frand(&z) > 0.4f) ? frand(&z) : 0.0f;
        for (int i = 0; i < N * G; ++i) q[i] = frand(&z);
        int64_t d1[5] = {(int64_t)(uintptr_t)q, G, G, (int64_t)(uintptr_t)o1, G};
        int64_t d2[5] = {(int64_t)(uintptr_t)q, G, G, (int64_t)(uintptr_t)o2, G};
        if (events_t_mm_f32(ev, N, H, 1, d1, (int64_t)N * H, 1) != 0) fails++;
        for (int rep = 0; rep < 10; ++rep) {
            if (events_t_mm_f32(ev, N, H, 1, d2, (int64_t)N * H, 2) != 0) fails++;
            if (memcmp(o1, o2, sizeof o1)) fails++;
        }
    }
    /* a stale probe is reported */
    int st = 0; float y[H];
    /* edit exactly a probed element: row 5, group (5*5) mod (H/4) */
    whh[5 * H + ((5 * 5) % (H / 4)) * 4] += 1.0f;
    run(2, 3, y, 7, 1, &st);
    printf("fails %d stale_steps %d\n", fails, st);
    return fails != 0 || st != 50;
}
