"""Small forward + backward run of the CUDA kernels for compute-sanitizer.

Covers both launch modes and the dense mode, float32/float64/fp16 storage, zoneout masks, a hidden
size that is not a multiple of the block sizes and several tiles of compaction.
Exits non-zero if the kernels disagree with the float64 reference.

    compute-sanitizer --tool memcheck python benchmarks/gpu/sanitizer_case.py [--hidden 2100] [--steps 5]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

from snntorch_egru import backends
from snntorch_egru import cuda as K
from snntorch_egru.backends import LayerCall
from snntorch_egru.surrogate import EGRUSurrogate


def call(dtype, H=2100, B=3, T=5, I=8, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*s, scale=0.5):
        return (torch.randn(*s, generator=g, dtype=torch.float64) * scale).to(dtype).cuda().requires_grad_()

    zm = (torch.rand(T, B, H, generator=g) > 0.3).to(dtype).cuda()
    th = (torch.rand(H, generator=g, dtype=torch.float64) * 0.3).to(dtype).cuda().requires_grad_()
    return LayerCall(
        x=r(T, B, I, scale=1.0),
        y0=r(B, H),
        c0=r(B, H),
        trace0=r(B, H),
        weight_ih=r(3 * H, I),
        weight_hh=r(3 * H, H, scale=H**-0.5),
        bias_ih=r(3 * H),
        bias_hh=r(3 * H),
        threshold=th,
        spike_fn=EGRUSurrogate(0.7, 2.0),
        reset="subtract",
        zoneout_mask=zm,
    )


def run(c, fn):
    out = fn(c)
    loss = sum(o.float().sum() * (k + 1) for k, o in enumerate(out))
    ins = [c.x, c.y0, c.c0, c.trace0, c.weight_ih, c.weight_hh, c.bias_ih, c.bias_hh, c.threshold]
    return out, torch.autograd.grad(loss, ins)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--hidden", type=int, default=2100, help="> 2048: two compaction tiles")
    p.add_argument("--steps", type=int, default=5)
    a = p.parse_args()
    bad = 0
    for mode, dense in (("persistent", "off"), ("step", "off"), ("step", "on")):
        os.environ["SNNTORCH_EGRU_CUPY_LAUNCH"] = mode
        os.environ["SNNTORCH_EGRU_CUPY_DENSE"] = dense
        mode = f"{mode}/dense-{dense}"
        for dtype in (torch.float64, torch.float32, torch.float16):
            c = call(dtype, H=a.hidden, T=a.steps)
            out, grads = run(c, K.run)
            torch.cuda.synchronize()
            if dtype == torch.float64:
                ref_out, ref_grads = run(c, backends.get_backend("reference").run)
                err = max((a - b).abs().max().item() for a, b in zip(out + grads, ref_out + ref_grads))
                ok = err < 1e-9
                bad += not ok
                print(f"{mode} {dtype}: max |kernel - reference| = {err:.2e} {'ok' if ok else 'MISMATCH'}")
            else:
                print(
                    f"{mode} {dtype}: activity {out[2].float().mean().item():.3f}, "
                    f"finite {all(torch.isfinite(g).all().item() for g in grads)}"
                )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
