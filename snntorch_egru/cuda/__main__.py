"""Diagnostics for the "cupy" backend: ``python -m snntorch_egru.cuda``.

Prints where the kernel sources are, which NVRTC/nvcc compilers are found
(and compiles every kernel with them to PTX, and to cubin for sm_80/sm_90 with
the ptxas register/spill table against the budget; no GPU needed), whether CuPy and a GPU are
usable, and on a GPU runs a small float64 forward/backward comparison of the
kernels with the reference. Exit status 0 when everything available works.
"""

from __future__ import annotations

import sys


def main() -> int:
    import torch

    from . import cupy_available
    from ._nvrtc import REGISTER_BUDGET, SPILL_BUDGET, find_compilers, format_table, resource_table
    from ._sources import VARIANTS, kernel_dir, kernel_files, kernel_source, variant_options

    ok = True
    print(f"kernel sources: {kernel_dir()} ({', '.join(f.name for f in kernel_files())})")
    comps = find_compilers()
    if not comps:
        print("compilers: none found (install nvidia-cuda-nvrtc-cu12 or a CUDA toolkit); compile check skipped")
    for comp in comps:
        try:
            for f in kernel_files():
                for v in VARIANTS:
                    for arch in (80, 90):
                        comp.compile_ptx(kernel_source(f.name), f.name, arch, variant_options(*v))
            print(f"compile check with {comp}: ok")
        except Exception as e:  # report and go on
            ok = False
            print(f"compile check with {comp}: FAILED\n{e}")
    if comps:  # cubin (ptxas) resource usage against the budget, first compiler only
        try:
            rows = resource_table(comps[0])
            print(f"ptxas resource usage ({comps[0]}; budget: <= {REGISTER_BUDGET} registers, spill bytes "
                  f"{SPILL_BUDGET}):\n{format_table(rows)}")
            over = [bad for *_, bad in rows if bad is not None]
            if over:
                ok = False
                print("register/spill budget: FAILED\n  " + "\n  ".join(over))
        except Exception as e:
            ok = False
            print(f"cubin check with {comps[0]}: FAILED\n{e}")
    print(f"CuPy importable: {cupy_available()}; torch.cuda.is_available(): {torch.cuda.is_available()}")
    if cupy_available() and torch.cuda.is_available():
        from ..backends import LayerCall, get_backend
        from ..surrogate import EGRUSurrogate
        from . import run

        g = torch.Generator().manual_seed(0)
        T, B, I, H = 6, 3, 5, 70

        def r(*s):
            return (0.5 * torch.randn(*s, generator=g, dtype=torch.float64)).cuda().requires_grad_()

        call = LayerCall(r(T, B, I), r(B, H), r(B, H), r(B, H), r(3 * H, I), r(3 * H, H), r(3 * H), r(3 * H),
                         (0.3 * torch.rand(H, generator=g, dtype=torch.float64)).cuda().requires_grad_(),
                         EGRUSurrogate(0.7, 1.5))
        ins = [call.x, call.y0, call.c0, call.trace0, call.weight_ih, call.weight_hh, call.bias_ih, call.bias_hh,
               call.threshold]
        res = []
        for fn in (get_backend("reference").run, run):
            out = fn(call)
            loss = sum((o * (k + 1)).sum() for k, o in enumerate(out))
            res.append(list(out) + list(torch.autograd.grad(loss, ins)))
        err = max((a - b).abs().max().item() for a, b in zip(*res))
        good = err < 1e-9
        ok &= good
        print(f"GPU self-test on {torch.cuda.get_device_name()}: max |kernels - reference| = {err:.2e} "
              f"({'ok' if good else 'FAILED'})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
