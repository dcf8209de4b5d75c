"""Diagnostics for the "cupy" backend: ``python -m snntorch_egru.cuda [--tables]``.

The first line is the verdict: whether the CuPy kernels can run here and, if not, what to install.
Then the versions, the kernel sources, the NVRTC/nvcc compilers found, and on a GPU a small float64
forward/backward comparison of the kernels with the reference. ``--tables`` also compiles every
kernel with every compiler to PTX, and to cubin for sm_80/sm_90 with the ptxas register/spill table
against the budget (no GPU needed; a minute or more). Exit status 0 when everything checked works
(a machine without a GPU is not a failure).
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional, Tuple, cast


def verdict(cupy_ok: bool, cuda_ok: bool, cuda_version: Optional[str]) -> Tuple[bool, str]:
    """(usable, one line): whether the kernels can run, and if not, the fix."""
    extra = "cuda13" if (cuda_version or "").startswith("13") else "cuda12"
    pip = (
        f"pip install snntorch-egru[{extra}]"
        if cuda_version
        else "pip install snntorch-egru[cuda12] (CUDA 12.x) or snntorch-egru[cuda13] (CUDA 13.x)"
    )
    if cupy_ok and cuda_ok:
        return True, "CuPy kernels usable: EGRU(..., backend='auto') runs CUDA tensors with the 'cupy' backend"
    if not cupy_ok and not cuda_ok:
        return False, (
            "No CUDA GPU and CuPy not installed: the 'cupy' backend cannot run here (the CPU backend "
            f"'torch' is used). On a machine with an NVIDIA GPU: {pip}"
        )
    if not cupy_ok:
        return False, f"CUDA GPU found but CuPy not installed: {pip}"
    return False, (
        "CuPy installed but torch.cuda.is_available() is False (no NVIDIA GPU, or a CPU-only torch "
        "build): install a CUDA build of torch on a GPU machine (https://pytorch.org/get-started)"
    )


def _compile_tables() -> bool:
    from ._nvrtc import REGISTER_BUDGET, SPILL_BUDGET, find_compilers, format_table, resource_table
    from ._sources import VARIANTS, kernel_files, kernel_source, variant_options

    ok = True
    comps = find_compilers()
    if not comps:
        print("compile check skipped: no compiler")
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
            print(
                f"ptxas resource usage ({comps[0]}; budget: <= {REGISTER_BUDGET} registers, spill bytes "
                f"{SPILL_BUDGET}):\n{format_table(rows)}"
            )
            over = [bad for *_, bad in rows if bad is not None]
            if over:
                ok = False
                print("register/spill budget: FAILED\n  " + "\n  ".join(over))
        except Exception as e:
            ok = False
            print(f"cubin check with {comps[0]}: FAILED\n{e}")
    return ok


def _gpu_self_test() -> bool:
    """Kernels against the reference backend (outputs and gradients, float64) on a small layer."""
    import torch

    from ..backends import LayerCall, get_backend
    from ..surrogate import EGRUSurrogate
    from . import run

    g = torch.Generator().manual_seed(0)
    T, B, I, H = 6, 3, 5, 70

    def r(*s):
        return (0.5 * torch.randn(*s, generator=g, dtype=torch.float64)).cuda().requires_grad_()

    call = LayerCall(
        r(T, B, I),
        r(B, H),
        r(B, H),
        r(B, H),
        r(3 * H, I),
        r(3 * H, H),
        r(3 * H),
        r(3 * H),
        (0.3 * torch.rand(H, generator=g, dtype=torch.float64)).cuda().requires_grad_(),
        EGRUSurrogate(0.7, 1.5),
    )
    ins = cast(
        List[torch.Tensor],
        [
            call.x,
            call.y0,
            call.c0,
            call.trace0,
            call.weight_ih,  # none is None here
            call.weight_hh,
            call.bias_ih,
            call.bias_hh,
            call.threshold,
        ],
    )
    res = []
    for fn in (get_backend("reference").run, run):
        out = fn(call)
        loss = cast(torch.Tensor, sum((o * (k + 1)).sum() for k, o in enumerate(out)))  # sum() starts at 0
        res.append(list(out) + list(torch.autograd.grad(loss, ins)))
    err = max((a - b).abs().max().item() for a, b in zip(*res))
    good = err < 1e-9
    print(
        f"GPU self-test on {torch.cuda.get_device_name()}: max |kernels - reference| = {err:.2e} "
        f"({'ok' if good else 'FAILED'})"
    )
    return good


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m snntorch_egru.cuda", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--tables",
        "--verbose",
        action="store_true",
        dest="tables",
        help="also compile every kernel variant and print the ptxas register/spill tables (slow)",
    )
    args = p.parse_args(argv)

    import torch

    from . import cupy_available
    from ._nvrtc import find_compilers
    from ._sources import kernel_dir, kernel_files

    usable, line = verdict(cupy_available(), torch.cuda.is_available(), torch.version.cuda)
    print(line, flush=True)
    print(
        f"torch {torch.__version__} (CUDA build: {torch.version.cuda or 'no'}); CuPy importable: "
        f"{cupy_available()}; torch.cuda.is_available(): {torch.cuda.is_available()}"
    )
    print(f"kernel sources: {kernel_dir()} ({', '.join(f.name for f in kernel_files())})")
    comps = find_compilers()
    print(
        "compilers: "
        + (", ".join(map(str, comps)) if comps else "none found (install nvidia-cuda-nvrtc-cu12 or a CUDA toolkit)")
    )
    ok = True
    if args.tables:
        ok = _compile_tables()
    else:
        print("(compile check and ptxas register tables: python -m snntorch_egru.cuda --tables)")
    if usable:
        ok &= _gpu_self_test()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
