"""Shared kernel-test fixtures: random layer calls with real activity and the comparison of
outputs, states and every input gradient against the float64 reference."""

from __future__ import annotations

import re
from typing import Callable, List, Tuple

import torch

from snntorch_egru import backends
from snntorch_egru.backends import LayerCall
from snntorch_egru.surrogate import EGRUSurrogate


def make_call(
    T=5,
    B=2,
    I=5,
    H=40,
    *,
    dtype=torch.float64,
    device="cpu",
    reset="subtract",
    zoneout=None,
    dropconnect=True,
    spike=None,
    bias=True,
    theta_scale=0.5,
    seed=0,
    w_scale=0.5,
):
    g = torch.Generator().manual_seed(seed)

    def r(*s, scale=0.5):
        return (torch.randn(*s, generator=g, dtype=torch.float64) * scale).to(dtype=dtype, device=device)

    def leaf(t):
        return t.requires_grad_()

    zmask = None
    if zoneout == "mask":
        zmask = (torch.rand(T, B, H, generator=g, dtype=torch.float64) > 0.3).to(dtype=dtype, device=device)
    dcm = None
    if dropconnect:
        dcm = ((torch.rand(3 * H, H, generator=g, dtype=torch.float64) > 0.2) / 0.8).to(dtype=dtype, device=device)
    theta = (torch.rand(H, generator=g, dtype=torch.float64) * theta_scale).to(dtype=dtype, device=device)
    return LayerCall(
        x=leaf(r(T, B, I, scale=1.0)),
        y0=leaf(r(B, H)),
        c0=leaf(r(B, H)),
        trace0=leaf(r(B, H)),
        weight_ih=leaf(r(3 * H, I)),
        weight_hh=leaf(r(3 * H, H, scale=w_scale)),
        bias_ih=leaf(r(3 * H)) if bias else None,
        bias_hh=leaf(r(3 * H)) if bias else None,
        threshold=leaf(theta),
        spike_fn=spike if spike is not None else EGRUSurrogate(0.7, 1.3),
        reset=reset,
        dropconnect_mask=dcm,
        zoneout_mask=zmask,
        zoneout_p=0.3 if zoneout == "p" else 0.0,
    )


INPUT_NAMES = ("x", "y0", "c0", "trace0", "weight_ih", "weight_hh", "bias_ih", "bias_hh", "threshold")


def outputs_and_grads(call: LayerCall, runner, seed=1):
    out = runner(call)
    g = torch.Generator().manual_seed(seed)
    ups = [torch.randn(o.shape, generator=g, dtype=torch.float64).to(o) for o in out]
    loss = sum((o * u).sum() for o, u in zip(out, ups))
    ins = [getattr(call, n) for n in INPUT_NAMES]
    present = [t for t in ins if t is not None]
    grads = iter(torch.autograd.grad(loss, present, allow_unused=True))
    return list(out), {n: (None if t is None else next(grads)) for n, t in zip(INPUT_NAMES, ins)}


def assert_match(ref, got, rtol, atol=0.0):
    (ro, rg), (go, gg) = ref, got
    for name, a, b in zip(("y", "c", "o", "trace"), ro, go):
        assert torch.equal(ro[2], go[2].to(ro[2].dtype)), "event masks differ"
        torch.testing.assert_close(b.to(a.dtype), a, rtol=rtol, atol=atol, msg=lambda m: f"{name}: {m}")
    for name in INPUT_NAMES:
        if rg[name] is None:  # unused by the reference graph: ours is None or exactly zero
            assert gg[name] is None or torch.count_nonzero(gg[name]) == 0, name
            continue
        scale = rg[name].abs().max().item() + 1e-30
        err = (gg[name].to(rg[name].dtype) - rg[name]).abs().max().item()
        assert err <= rtol * scale + atol, f"grad {name}: max err {err:.3e} vs scale {scale:.3e}"


def calibrated_call(T, B, H, activity, *, dtype, reset="subtract", seed=0, I=32, device="cuda"):
    """A call (default on CUDA) whose thresholds make about ``activity`` of the units fire."""
    call = make_call(
        T=T,
        B=B,
        I=I,
        H=H,
        dtype=torch.float64,
        device=device,
        reset=reset,
        seed=seed,
        w_scale=1.0 / H**0.5,
        dropconnect=False,
    )
    with torch.no_grad():
        probe = backends.get_backend("reference").run(call)
        c_hat = torch.where(probe.o > 0, probe.y, probe.c).reshape(-1, H)
        # + 1e-7: a quantile that lands exactly on a probe value would put that event at v = 0
        theta = torch.quantile(c_hat, 1.0 - activity, dim=0) + 1e-7
    call.threshold = theta.detach().requires_grad_()
    for n in INPUT_NAMES:
        t = getattr(call, n)
        if t is not None:
            setattr(call, n, t.detach().to(dtype).requires_grad_())
    return call


def cast_call(call: LayerCall, dtype) -> LayerCall:
    new = LayerCall(**{f: getattr(call, f) for f in call.__dataclass_fields__})
    for n in INPUT_NAMES:
        t = getattr(call, n)
        if t is not None:
            setattr(new, n, t.detach().to(dtype).requires_grad_())
    return new


def kernel_params(name: str, source: str) -> List[Tuple[str, str]]:
    """``(name, kind)`` of every parameter of ``extern "C" __global__`` kernel ``name`` in the CUDA
    ``source`` text, kind ``ptr`` / ``int`` / ``real``."""
    sig = source[source.index(f"\n{name}(") + len(name) + 2 :]
    sig = sig[: sig.index(") {")]
    sig = re.sub(r"//[^\n]*", "", sig)
    params = []
    for p in sig.split(","):
        toks = p.replace("*", " * ").split()
        kind = "ptr" if "*" in toks else ("int" if "int" in toks else "real")
        params.append((toks[-1], kind))
    return params


def module_run_vs_reference(backend_name: str, run: Callable, monkeypatch, layers: int, batch: int) -> None:
    """The EGRU module (DropConnect, zoneout, training mode) with ``run`` registered as backend
    ``backend_name`` gives the reference's outputs, states, events and parameter gradients."""
    import snntorch_egru as se

    monkeypatch.setitem(
        backends._REGISTRY,
        backend_name,
        backends._Backend(backend_name, lambda call: run(call), lambda call: False, -5),
    )
    torch.manual_seed(0)
    rnn = se.EGRU(6, 20, num_layers=layers, dropconnect=0.2, zoneout=0.2, thr_mean=0.2).double()
    x = torch.randn(4, batch, 6, dtype=torch.float64)
    res = []
    for backend in ("reference", backend_name):
        rnn.backend = backend
        rnn.zero_grad()
        torch.manual_seed(5)
        out, state, rec = rnn(x, return_internals=True)
        (out.sum() + state.c.pow(2).sum() + rec.trace.sum()).backward()
        res.append((out, state.c, rec.o, {n: p.grad.clone() for n, p in rnn.named_parameters()}))
    (o1, c1, e1, g1), (o2, c2, e2, g2) = res
    assert torch.equal(e1, e2) and 0.02 < e1.mean().item() < 0.9
    torch.testing.assert_close(o2, o1, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(c2, c1, rtol=1e-12, atol=1e-12)
    for n in g1:
        torch.testing.assert_close(g2[n], g1[n], rtol=1e-10, atol=1e-12, msg=lambda m: f"{n}: {m}")
