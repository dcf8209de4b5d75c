"""EGRU (every registered backend) against the independent float64 reference of issue 2.

Forward outputs, final states, the per-step record and the gradients of the input, the initial
state and every parameter (thresholds included) must agree, with upstream gradients on all of
``out``, ``state.y/c/trace`` and the record at once.
"""

from __future__ import annotations

import pytest
import torch
from conftest import (
    backend_device,
    backend_names,
    clear_grads,
    grads_of,
    layer_params,
    on_device,
    param_grads,
    randomize_,
    skip_if_unavailable,
)
from egru_reference import c_hat_from, psi, ref_stack, ref_triangle

import snntorch_egru as se
from snntorch_egru import functional as F

D = torch.float64
T, B, I, H = 9, 4, 5, 7
GAMMA, EPS = 0.7, 1.3
RESETS = ("subtract", "zero", "none")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _make(L: int, reset: str, backend: str = "auto", seed: int = 0, **kw) -> se.EGRU:
    torch.manual_seed(seed)
    m = se.EGRU(
        I,
        H,
        num_layers=L,
        reset_mechanism=reset,
        dampening_factor=GAMMA,
        pseudo_derivative_support=EPS,
        backend=backend,
        **kw,
    ).to(D)
    randomize_(m, 10 + L)
    return m


def _inputs(L: int, seed: int = 1, batch: int = B, steps: int = T):
    g = _gen(seed)
    x = torch.randn(steps, batch, I, generator=g, dtype=D).requires_grad_()
    y0 = (0.3 * torch.randn(L, batch, H, generator=g, dtype=D)).requires_grad_()
    c0 = (0.3 * torch.randn(L, batch, H, generator=g, dtype=D)).requires_grad_()
    tr0 = (0.1 * torch.randn(L, batch, H, generator=g, dtype=D)).requires_grad_()
    return x, y0, c0, tr0


def _weights(shapes, seed: int = 7):
    g = _gen(seed)
    return [torch.randn(s, generator=g, dtype=D) for s in shapes]


def _loss(tensors, weights):
    return sum((t * w).sum() for t, w in zip(tensors, weights))


def _check_meaningful(rec_o: torch.Tensor, c_hat: torch.Tensor, thresholds: torch.Tensor) -> None:
    """5-60 % of units fire in every layer and no c_hat sits within 1e-6 of its threshold."""
    act = rec_o.mean(dim=(1, 2, 3))
    assert ((act >= 0.05) & (act <= 0.60)).all(), f"activity per layer {act.tolist()} outside [5 %, 60 %]"
    margin = (c_hat - thresholds[:, None, None, :]).abs().min().item()
    assert margin > 1e-6, f"c_hat within {margin} of a threshold: event masks could flip"


def _cpu(t):
    return t.cpu() if isinstance(t, torch.Tensor) else t


@pytest.mark.parametrize("backend", backend_names())
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("L", [1, 2, 3])
def test_egru_equals_reference(backend, reset, L):
    m = _make(L, reset, backend)
    x, y0, c0, tr0 = _inputs(L)
    dev = backend_device(backend, x, m)
    md = on_device(m, dev)  # GPU backends run on a copy; the reference stays on the CPU
    leaves = [x, y0, c0, tr0]
    out, st, rec = md(x.to(dev), se.EGRUState(y0.to(dev), c0.to(dev), tr0.to(dev)), return_internals=True)
    mod_tensors = [_cpu(t) for t in (out, st.y, st.c, st.trace, rec.y, rec.c, rec.o, rec.trace)]
    w = _weights([t.shape for t in mod_tensors])
    _loss(mod_tensors, w).backward()
    g_mod = grads_of(leaves) + param_grads(md)
    clear_grads(leaves + list(md.parameters()))

    r_out, (ry, rc, rtr), rrec = ref_stack(x, layer_params(m), y0, c0, tr0, reset=reset, spike=ref_triangle(GAMMA, EPS))
    thetas = torch.stack([p["threshold"] for p in layer_params(m)]).detach()
    _check_meaningful(rrec["o"], rrec["c_hat"].detach(), thetas)
    ref_tensors = [r_out, ry, rc, rtr, rrec["y"], rrec["c"], rrec["o"], rrec["trace"]]
    rec_o, rec_y, rec_c = mod_tensors[6], mod_tensors[4], mod_tensors[5]
    assert torch.equal(rec_o, rrec["o"]), "event masks differ"
    torch.testing.assert_close(c_hat_from(rec_y, rec_c, rec_o), rrec["c_hat"], rtol=1e-12, atol=1e-12)
    for a, b in zip(mod_tensors, ref_tensors):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    _loss(ref_tensors, w).backward()
    g_ref = grads_of(leaves) + param_grads(m)
    names = ["x", "y0", "c0", "trace0"] + [n for n, _ in m.named_parameters()]
    for n, a, b in zip(names, g_mod, g_ref):
        assert b.abs().sum() > 0 or n == "trace0", f"reference gradient of {n} is zero: test not meaningful"
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-11, msg=lambda s: f"grad of {n}: {s}")


@pytest.mark.parametrize("backend", backend_names())
def test_threshold_gradient_nonzero_and_default_state(backend):
    """Default (zero) state path and the threshold gradient are exercised for each backend."""
    m = _make(2, "subtract", backend)
    x = _inputs(2)[0]
    skip_if_unavailable(backend, x.detach(), m)
    out, st = m(x)
    (out.sum() + st.c.sum()).backward()
    g = [m.threshold_l0.grad.clone(), m.threshold_l1.grad.clone(), x.grad.clone()]
    clear_grads([x, m.threshold_l0, m.threshold_l1])
    z = torch.zeros(2, B, H, dtype=D)
    r_out, (_, rc, _), _ = ref_stack(x, layer_params(m), z, z, z, reset="subtract", spike=ref_triangle(GAMMA, EPS))
    torch.testing.assert_close(out, r_out, rtol=1e-12, atol=1e-12)
    (r_out.sum() + rc.sum()).backward()
    for a, b in zip(g, [m.threshold_l0.grad, m.threshold_l1.grad, x.grad]):
        assert b.abs().sum() > 0
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-11)


# ------------------------------------------------------------------------------- regularisation


def _record_masks(monkeypatch):
    """Wrap the functional mask samplers so the masks the module draws are recorded."""
    seen = {"dc": [], "zo": []}
    real_dc, real_zo = F.dropconnect_mask, F.zoneout_masks

    def dc(*a, **k):
        mask = real_dc(*a, **k)
        seen["dc"].append(mask.clone())
        return mask

    def zo(*a, **k):
        mask = real_zo(*a, **k)
        seen["zo"].append(mask.clone())
        return mask

    monkeypatch.setattr(F, "dropconnect_mask", dc)
    monkeypatch.setattr(F, "zoneout_masks", zo)
    return seen


@pytest.mark.parametrize("backend", backend_names())
@pytest.mark.parametrize("reset", RESETS)
def test_train_mode_dropconnect_zoneout_dropout(backend, reset, monkeypatch):
    L, p_dc, p_zo, p_do = 2, 0.3, 0.25, 0.4
    m = _make(L, reset, backend, dropconnect=p_dc, zoneout=p_zo, dropout=p_do).train()
    x, y0, c0, tr0 = _inputs(L)
    dev = backend_device(backend, x, m)
    md = on_device(m, dev)
    seen = _record_masks(monkeypatch)
    do_mask = (torch.rand(T, B, H, generator=_gen(99), dtype=D) > p_do).to(D) / (1 - p_do)
    drop_calls = []

    def fake_dropout(inp, p=0.5, training=True, inplace=False):
        drop_calls.append((p, training))
        return inp * do_mask.to(inp.device)

    monkeypatch.setattr(torch.nn.functional, "dropout", fake_dropout)
    torch.manual_seed(123)
    out, st, rec = md(x.to(dev), se.EGRUState(y0.to(dev), c0.to(dev), tr0.to(dev)), return_internals=True)
    assert drop_calls == [(p_do, True)], "inter-layer dropout must be applied once, between the layers"
    assert len(seen["dc"]) == L and len(seen["zo"]) == L
    seen = {k: [mk.cpu() for mk in v] for k, v in seen.items()}
    for mk in seen["dc"]:
        assert mk.shape == (3 * H, H)
        assert set(torch.unique(mk).tolist()) <= {0.0, 1.0 / (1 - p_dc)}
    for mk in seen["zo"]:
        assert mk.shape == (T, B, H) and set(torch.unique(mk).tolist()) <= {0.0, 1.0}
        assert 0.5 < mk.mean() < 0.95
    leaves = [x, y0, c0, tr0]
    mod = [_cpu(t) for t in (out, st.y, st.c, st.trace, rec.y, rec.c, rec.o, rec.trace)]
    w = _weights([t.shape for t in mod])
    _loss(mod, w).backward()
    g_mod = grads_of(leaves) + param_grads(md)
    clear_grads(leaves + list(md.parameters()))
    r_out, (ry, rc, rtr), rrec = ref_stack(
        x,
        layer_params(m),
        y0,
        c0,
        tr0,
        reset=reset,
        spike=ref_triangle(GAMMA, EPS),
        zo_masks=seen["zo"],
        dc_masks=seen["dc"],
        dropout_masks=[do_mask, None],
    )
    ref = [r_out, ry, rc, rtr, rrec["y"], rrec["c"], rrec["o"], rrec["trace"]]
    assert torch.equal(mod[6], rrec["o"])
    for a, b in zip(mod, ref):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    _loss(ref, w).backward()
    for a, b in zip(g_mod, grads_of(leaves) + param_grads(m)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-11)
    # the masks really change the result (the test would catch them being ignored)
    r_plain, _, _ = ref_stack(x, layer_params(m), y0, c0, tr0, reset=reset, spike=ref_triangle(GAMMA, EPS))
    assert not torch.allclose(r_plain, r_out)


@pytest.mark.parametrize("backend", backend_names())
def test_eval_mode_zoneout_is_expectation(backend):
    p_zo = 0.3
    m = _make(2, "subtract", backend, zoneout=p_zo, dropconnect=0.5, dropout=0.5).eval()
    x, y0, c0, tr0 = _inputs(2)
    skip_if_unavailable(backend, x.detach(), m)
    out, st, rec = m(x, se.EGRUState(y0, c0, tr0), return_internals=True)
    r_out, (ry, rc, rtr), rrec = ref_stack(
        x, layer_params(m), y0, c0, tr0, reset="subtract", spike=ref_triangle(GAMMA, EPS), zo_p=p_zo
    )
    for a, b in zip([out, st.y, st.c, st.trace, rec.o], [r_out, ry, rc, rtr, rrec["o"]]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    out.sum().backward()
    g = x.grad.clone()
    x.grad = None
    r_out.sum().backward()
    torch.testing.assert_close(g, x.grad, rtol=1e-10, atol=1e-11)
    # explicit check of c_hat = p c_prev + (1-p) c_hat0 on the first step of layer 0
    from egru_reference import ref_step

    p = layer_params(m)[0]
    _, _, _, _, ch0 = ref_step(
        x[0],
        y0[0],
        c0[0],
        tr0[0],
        p["weight_ih"],
        p["weight_hh"],
        p["bias_ih"],
        p["bias_hh"],
        p["threshold"],
        reset="subtract",
        spike=ref_triangle(),
    )
    torch.testing.assert_close(rrec["c_hat"][0, 0], p_zo * c0[0] + (1 - p_zo) * ch0)


def test_dropconnect_mask_drawn_once_per_call_and_only_in_training(monkeypatch):
    m = _make(1, "subtract", dropconnect=0.5)
    seen = _record_masks(monkeypatch)
    x = _inputs(1)[0].detach()
    m.train()
    m(x)
    m(x)
    assert len(seen["dc"]) == 2 and not torch.equal(seen["dc"][0], seen["dc"][1])
    m.eval()
    m(x)
    assert len(seen["dc"]) == 2


def test_zoneout_mask_sampler_statistics():
    g = _gen(3)
    mk = F.zoneout_masks((200, 50, 20), 0.3, dtype=D, device=torch.device("cpu"), generator=g)
    assert abs(mk.mean().item() - 0.7) < 0.01
    w = torch.ones(300, 100, dtype=D)
    dc = F.dropconnect_mask(w, 0.25, generator=g)
    assert set(torch.unique(dc).tolist()) == {0.0, 1.0 / 0.75}
    assert abs(dc.mean().item() - 1.0) < 0.02  # unbiased: E[mask] = 1


# ------------------------------------------------------------------------- streaming / shapes


@pytest.mark.parametrize("backend", backend_names())
@pytest.mark.parametrize("reset", RESETS)
def test_split_sequence_equals_one_call(backend, reset):
    m = _make(2, reset, backend)
    x, y0, c0, tr0 = _inputs(2, steps=12)
    skip_if_unavailable(backend, x.detach(), m)
    leaves = [x, y0, c0, tr0] + list(m.parameters())
    out, st = m(x, se.EGRUState(y0, c0, tr0))
    w = _weights([out.shape, st.y.shape, st.c.shape, st.trace.shape])
    _loss([out, st.y, st.c, st.trace], w).backward()
    g1 = grads_of(leaves)
    clear_grads(leaves)
    o1, s1 = m(x[:5], se.EGRUState(y0, c0, tr0))
    o2, s2 = m(x[5:], s1)
    out2 = torch.cat([o1, o2])
    torch.testing.assert_close(out2, out, rtol=1e-13, atol=1e-13)
    for a, b in zip(s2, st):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)
    _loss([out2, s2.y, s2.c, s2.trace], w).backward()
    for a, b in zip(g1, grads_of(leaves)):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-12)


def test_split_sequence_batch_first_and_state_carries_c_and_trace():
    m = _make(2, "subtract", batch_first=True)
    x = _inputs(2)[0].detach().transpose(0, 1).contiguous()
    out, st = m(x)
    o1, s1 = m(x[:, :4])
    o2, s2 = m(x[:, 4:], s1)
    torch.testing.assert_close(torch.cat([o1, o2], 1), out, rtol=1e-13, atol=1e-13)
    # carrying only y (c, trace = 0, as the official code does) is a different model
    o3, _ = m(x[:, 4:], se.EGRUState(s1.y, torch.zeros_like(s1.c), torch.zeros_like(s1.trace)))
    assert not torch.allclose(o3, o2)


@pytest.mark.parametrize("batch_first", [False, True])
def test_unbatched_equals_batch_of_one(batch_first):
    m = _make(2, "zero", batch_first=batch_first)
    x, y0, c0, tr0 = _inputs(2, batch=1)
    x1 = x.detach()[:, 0].clone().requires_grad_()
    st1 = se.EGRUState(y0.detach()[:, 0], c0.detach()[:, 0], tr0.detach()[:, 0])
    out_u, st_u, rec_u = m(x1, st1, return_internals=True)
    assert out_u.shape == (T, H) and st_u.c.shape == (2, H) and rec_u.o.shape == (2, T, H)
    xb = x.detach().transpose(0, 1) if batch_first else x.detach()
    xb = xb.clone().requires_grad_()
    out_b, st_b, rec_b = m(xb, se.EGRUState(y0.detach(), c0.detach(), tr0.detach()), return_internals=True)
    out_b1 = out_b[0] if batch_first else out_b[:, 0]
    torch.testing.assert_close(out_u, out_b1, rtol=0, atol=0)
    for a, b in zip(st_u, st_b):
        torch.testing.assert_close(a, b[:, 0], rtol=0, atol=0)
    rec_o_b = rec_b.o[:, 0] if batch_first else rec_b.o[:, :, 0]
    torch.testing.assert_close(rec_u.o, rec_o_b)
    out_u.sum().backward()
    out_b.sum().backward()
    gb = xb.grad[0] if batch_first else xb.grad[:, 0]
    torch.testing.assert_close(x1.grad, gb, rtol=1e-13, atol=1e-13)


def test_batch_first_record_layout():
    m = _make(2, "subtract", batch_first=True)
    x = _inputs(2)[0].detach()
    out_tf, st_tf, rec_tf = _make(2, "subtract")(x, return_internals=True)
    out, st, rec = m(x.transpose(0, 1), return_internals=True)
    torch.testing.assert_close(out, out_tf.transpose(0, 1))
    torch.testing.assert_close(rec.c, rec_tf.c.transpose(1, 2))
    torch.testing.assert_close(st.trace, st_tf.trace)


def test_empty_sequence_returns_input_state():
    m = _make(2, "subtract")
    _, y0, c0, tr0 = _inputs(2)
    out, st = m(torch.zeros(0, B, I, dtype=D), se.EGRUState(y0, c0, tr0))
    assert out.shape == (0, B, H)
    for a, b in zip(st, (y0, c0, tr0)):
        torch.testing.assert_close(a, b)


# ------------------------------------------------------------------------ surrogates / threshold


@pytest.mark.parametrize("backend", backend_names())
@pytest.mark.parametrize("which", ["atan", "fast_sigmoid"])
def test_snntorch_surrogates_in_layer_match_reference(backend, which):
    import snntorch.surrogate as ss

    spike = ss.atan() if which == "atan" else ss.fast_sigmoid(slope=5)
    m = _make(2, "subtract", backend, spike_grad=spike)
    assert m.spike_grad is spike
    x, y0, c0, tr0 = _inputs(2)
    skip_if_unavailable(backend, x.detach(), m)
    leaves = [x] + list(m.parameters())
    out, st, rec = m(x, se.EGRUState(y0, c0, tr0), return_internals=True)
    assert out.dtype == rec.o.dtype == D
    (out.sum() + st.c.sum()).backward()
    g = grads_of(leaves)
    clear_grads(leaves)
    r_out, (_, rc, _), _ = ref_stack(x, layer_params(m), y0, c0, tr0, reset="subtract", spike=spike)
    torch.testing.assert_close(out, r_out, rtol=1e-12, atol=1e-12)
    (r_out.sum() + rc.sum()).backward()
    g_ref = grads_of(leaves)
    # a different surrogate gives a different gradient (so this comparison can fail)
    clear_grads(leaves)
    r2, (_, rc2, _), _ = ref_stack(x, layer_params(m), y0, c0, tr0, reset="subtract", spike=ref_triangle(GAMMA, EPS))
    (r2.sum() + rc2.sum()).backward()
    assert (grads_of(leaves)[0] - g_ref[0]).abs().max() > 1e-2
    # snnTorch's surrogates return float32 spikes, so autograd rounds the incoming gradient to
    # float32 inside them: agreement is to float32 precision even in a float64 model.
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("backend", backend_names())
def test_snntorch_surrogate_keeps_low_precision_dtype(backend):
    """snnTorch surrogates return float32; a bfloat16 model must stay bfloat16 (and not crash)."""
    import snntorch.surrogate as ss

    torch.manual_seed(0)
    m = se.EGRU(I, H, num_layers=2, spike_grad=ss.atan(), thr_mean=0.1, backend=backend).to(torch.bfloat16)
    x = torch.randn(T, B, I, dtype=torch.bfloat16)
    skip_if_unavailable(backend, x, m)
    out, st, rec = m(x, return_internals=True)
    assert out.dtype == st.c.dtype == rec.o.dtype == torch.bfloat16
    cell = se.EGRUCell(I, H, spike_grad=ss.atan(), thr_mean=0.1).to(torch.bfloat16)
    y, c = cell(x[0])
    assert y.dtype == c.dtype == torch.bfloat16
    c_before = cell.c.clone()
    cell(x[1])
    # the stored state was used (not re-zeroed because of a dtype change)
    fresh = se.EGRUCell(I, H, spike_grad=ss.atan()).to(torch.bfloat16)
    fresh.load_state_dict(cell.state_dict())
    assert c_before.abs().sum() > 0 and not torch.equal(cell.c, fresh(x[1])[1])


@pytest.mark.parametrize("backend", backend_names())
def test_surrogate_disable_in_layer(backend):
    from egru_reference import ref_heaviside_nograd

    m = _make(1, "subtract", backend, surrogate_disable=True)
    x, y0, c0, tr0 = _inputs(1)
    skip_if_unavailable(backend, x.detach(), m)
    leaves = [x] + list(m.parameters())
    _, _, rec = m(x, se.EGRUState(y0, c0, tr0), return_internals=True)
    if rec.o.requires_grad:  # no gradient flows through the events
        grads = torch.autograd.grad(rec.o.sum(), leaves, allow_unused=True)
        assert all(gr is None or torch.all(gr == 0) for gr in grads)
    out, st, rec = m(x, se.EGRUState(y0, c0, tr0), return_internals=True)
    (out.sum() + st.c.sum()).backward()
    g = grads_of(leaves)
    clear_grads(leaves)
    r_out, (_, rc, _), _ = ref_stack(x, layer_params(m), y0, c0, tr0, reset="subtract", spike=ref_heaviside_nograd)
    torch.testing.assert_close(out, r_out, rtol=1e-12, atol=1e-12)
    (r_out.sum() + rc.sum()).backward()
    for a, b in zip(g, grads_of(leaves)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-11)


def test_surrogate_values_pickle_and_support():
    import pickle

    s = se.surrogate.pseudo_derivative(dampening_factor=0.9, support=2.5)
    v = torch.linspace(-1, 1, 41, dtype=D).requires_grad_()
    o = s(v)
    torch.testing.assert_close(o, (v > 0).to(D))
    assert o[20].item() == 0.0  # H(0) = 0
    o.backward(torch.ones_like(o))
    expected = psi(v.detach(), 0.9, 2.5)
    torch.testing.assert_close(v.grad, expected)
    torch.testing.assert_close(s.derivative(v.detach()), expected)
    hand = torch.tensor([0.9 * max(0.0, 1 - 2.5 * abs(t)) for t in v.detach().tolist()], dtype=D)
    torch.testing.assert_close(v.grad, hand)
    s2 = pickle.loads(pickle.dumps(s))
    assert s2 == s and s2.gamma == 0.9 and s2.epsilon == 2.5
    assert se.surrogate.surrogate_support(s) == pytest.approx(0.4)
    assert se.surrogate.surrogate_support(se.surrogate.heaviside()) == 0.0
    import snntorch.surrogate as ss

    assert se.surrogate.surrogate_support(ss.atan()) is None
    assert se.surrogate.triangle(0.9, 2.5) == s
    h = se.surrogate.heaviside()
    vv = torch.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    torch.testing.assert_close(h(vv), torch.tensor([0.0, 0.0, 1.0]))
    assert pickle.loads(pickle.dumps(h))(vv).tolist() == [0.0, 0.0, 1.0]


def test_threshold_beta_init_statistics():
    torch.manual_seed(0)
    for mean in (0.1, 0.3, 0.7):
        th = F.beta_threshold_init(200_000, mean, dtype=D)
        assert th.min() >= 0 and th.max() <= 1
        assert abs(th.mean().item() - mean) < 0.003
        a = 3 * mean / (1 - mean)
        var = a * 3 / ((a + 3) ** 2 * (a + 4))
        assert abs(th.var().item() - var) < 0.003
    m = se.EGRU(2, 1000, num_layers=2, thr_mean=0.3)
    for k in range(2):
        th = getattr(m, f"threshold_l{k}")
        assert th.min() >= 0 and th.max() <= 1 and abs(th.mean().item() - 0.3) < 0.025
    assert abs(se.EGRUCell(2, 2000, thr_mean=0.6).threshold.mean().item() - 0.6) < 0.025


def test_threshold_clamp_in_forward_and_documented():
    assert "clamp" in se.EGRU.__doc__ and "[0, 1]" in se.EGRU.__doc__
    m = _make(1, "subtract")
    with torch.no_grad():
        m.threshold_l0[0] = 1.7
        m.threshold_l0[1] = -0.4
    stored = m.threshold_l0.detach().clone()
    x, y0, c0, tr0 = _inputs(1)
    out, st = m(x, se.EGRUState(y0, c0, tr0))
    torch.testing.assert_close(m.threshold_l0.detach(), stored)  # parameter not mutated
    (out.sum() + st.c.sum()).backward()
    g = m.threshold_l0.grad.clone()
    assert g[0] == 0 and g[1] == 0 and g[2:].abs().sum() > 0
    p = layer_params(m)[0]
    pc = dict(p, threshold=p["threshold"].clamp(0, 1))
    clear_grads([m.threshold_l0])
    r_out, (_, rc, _), _ = ref_stack(x, [pc], y0, c0, tr0, reset="subtract", spike=ref_triangle(GAMMA, EPS))
    torch.testing.assert_close(out, r_out, rtol=1e-12, atol=1e-12)
    (r_out.sum() + rc.sum()).backward()
    torch.testing.assert_close(g, m.threshold_l0.grad, rtol=1e-10, atol=1e-11)
    # without the clamp the raw threshold is used
    m.threshold_clamp = False
    out_nc, _ = m(x, se.EGRUState(y0, c0, tr0))
    r_nc, _, _ = ref_stack(x, layer_params(m), y0, c0, tr0, reset="subtract", spike=ref_triangle(GAMMA, EPS))
    torch.testing.assert_close(out_nc, r_nc, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(out_nc, out)


def test_functional_step_matches_reference_step():
    """The package's single-step function agrees with the reference step (all resets)."""
    from egru_reference import ref_step

    g = _gen(5)
    x = torch.randn(B, I, generator=g, dtype=D)
    y, c, tr = (0.4 * torch.randn(B, H, generator=g, dtype=D) for _ in range(3))
    w_ih, w_hh = torch.randn(3 * H, I, generator=g, dtype=D), torch.randn(3 * H, H, generator=g, dtype=D)
    b_ih, b_hh = torch.randn(3 * H, generator=g, dtype=D), torch.randn(3 * H, generator=g, dtype=D)
    th = torch.rand(H, generator=g, dtype=D) * 0.5
    for reset in RESETS:
        got = F.egru_step(x, y, c, tr, w_ih, w_hh, b_ih, b_hh, th, reset=reset)
        ref = ref_step(x, y, c, tr, w_ih, w_hh, b_ih, b_hh, th, reset=reset, spike=ref_triangle())
        for a, b in zip(got, ref[:4]):
            torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)
        got_nb = F.egru_step(x, y, c, tr, w_ih, w_hh, None, None, th, reset=reset)
        ref_nb = ref_step(x, y, c, tr, w_ih, w_hh, None, None, th, reset=reset, spike=ref_triangle())
        torch.testing.assert_close(got_nb.y, ref_nb[0], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("backend", backend_names())
def test_backward_twice_with_retain_graph(backend, request):
    """Two backward passes through one forward (retain_graph=True) give the same gradients."""
    m = _make(2, "subtract", backend)
    x = _inputs(2)[0]
    skip_if_unavailable(backend, x.detach(), m)
    out, st = m(x)
    out.sum().backward(retain_graph=True)
    g1 = x.grad.clone()
    x.grad = None
    try:
        out.sum().backward()
    except (AttributeError, RuntimeError) as exc:  # known defect of a backend, reported to the lead
        if backend == "torch":
            pytest.xfail(f"backend 'torch' cannot backward twice (retain_graph=True): {exc}")
        raise
    torch.testing.assert_close(x.grad, g1, rtol=0, atol=0)


def test_pre_reset_state_recovers_c_hat_for_every_reset():
    """functional.pre_reset_state(y, c, o) is the reference step's own c_hat, with real activity."""
    from egru_reference import ref_step

    g = _gen(6)
    x = torch.randn(B, I, generator=g, dtype=D)
    y, c, tr = (0.4 * torch.randn(B, H, generator=g, dtype=D) for _ in range(3))
    w_ih, w_hh = torch.randn(3 * H, I, generator=g, dtype=D), torch.randn(3 * H, H, generator=g, dtype=D)
    th = torch.rand(H, generator=g, dtype=D) * 0.5
    for reset in RESETS:
        out = F.egru_step(x, y, c, tr, w_ih, w_hh, None, None, th, reset=reset)
        ref = ref_step(x, y, c, tr, w_ih, w_hh, None, None, th, reset=reset, spike=ref_triangle())
        assert 0.0 < out.o.mean().item() < 1.0  # some fired, some did not
        torch.testing.assert_close(F.pre_reset_state(out.y, out.c, out.o), ref[4], rtol=1e-13, atol=1e-13)
        if reset != "none":  # where a unit fired, c alone is not c_hat
            assert not torch.allclose(out.c, ref[4])


def test_spike_functions_tell_the_backends_their_gradient():
    """support / kernel_params describe exactly the gradient autograd computes (triangle or none)."""
    import pickle

    import snntorch.surrogate as ss

    from snntorch_egru import surrogate as S

    v = torch.linspace(-1.5, 1.5, 61, dtype=D)
    for spike in (S.EGRUSurrogate(0.9, 2.5), S.pseudo_derivative(0.5, 0.8)):
        gamma, eps = S.kernel_params(spike)
        vv = v.clone().requires_grad_()
        spike(vv).sum().backward()
        torch.testing.assert_close(vv.grad, psi(v, gamma, eps))  # the kernels' triangle is the gradient
        nonzero = vv.grad != 0
        assert bool((v[nonzero].abs() < S.surrogate_support(spike)).all())
        assert not bool((v[~nonzero].abs() < S.surrogate_support(spike) - 1e-12).any())
    h = S.heaviside()
    assert isinstance(h, S.HeavisideNoGrad) and isinstance(h, S.SpikeFunction)
    assert S.kernel_params(h) == (0.0, 1.0) and S.surrogate_support(h) == 0.0  # gamma 0: no gradient
    vv = v.clone().requires_grad_()
    assert not h(vv).requires_grad
    torch.testing.assert_close(h(vv), (v > 0).to(D))
    assert S._HeavisideNoGrad is S.HeavisideNoGrad  # the old private name still works
    assert pickle.loads(pickle.dumps(h)) == h
    for other in (ss.atan(), ss.fast_sigmoid(), lambda t: (t > 0).to(t.dtype)):
        assert S.kernel_params(other) is None and S.surrogate_support(other) is None
