"""EGRUCell: equals the EGRU layer step by step, snnTorch conventions, training in an snnTorch loop."""

from __future__ import annotations

import pytest
import snntorch as snn
import snntorch.functional as SF
import snntorch.surrogate as ss
import torch
from conftest import PARAM_NAMES, cell_params, clear_grads, grads_of, randomize_
from egru_reference import ref_heaviside_nograd, ref_layer, ref_triangle

import snntorch_egru as se
from snntorch_egru import utils

D = torch.float64
T, B, I, H = 10, 4, 5, 7


def _pair(reset: str, **kw):
    torch.manual_seed(0)
    layer = se.EGRU(I, H, reset_mechanism=reset, **kw).to(D)
    randomize_(layer, 4)
    cell = se.EGRUCell(I, H, reset_mechanism=reset, **kw).to(D)
    cell.load_state_dict({n: getattr(layer, f"{n}_l0") for n in PARAM_NAMES})  # suffix mapping
    return layer, cell


def _x(seed=1, batch=B):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(T, batch, I, generator=g, dtype=D)


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
def test_cell_stepped_equals_layer(reset):
    layer, cell = _pair(reset)
    x = _x()
    g = torch.Generator().manual_seed(2)
    y0, c0 = 0.3 * torch.randn(B, H, generator=g, dtype=D), 0.3 * torch.randn(B, H, generator=g, dtype=D)
    xl, xc = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, st, rec = layer(xl, se.EGRUState(y0[None], c0[None], torch.zeros(1, B, H, dtype=D)), return_internals=True)
    assert 0.05 < rec.o.mean() < 0.6
    y, c = y0, c0
    ys, cs = [], []
    for t in range(T):
        y, c = cell(xc[t], y, c)
        ys.append(y)
        cs.append(c)
    ys, cs = torch.stack(ys), torch.stack(cs)
    torch.testing.assert_close(ys, out, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(cs, rec.c[0], rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(cell.trace, st.trace[0], rtol=1e-13, atol=1e-13)
    w = torch.randn(out.shape, generator=g, dtype=D)
    ((out * w).sum() + st.c.sum()).backward()
    ((ys * w).sum() + cs[-1].sum()).backward()
    torch.testing.assert_close(xc.grad, xl.grad, rtol=1e-11, atol=1e-12)
    for n in PARAM_NAMES:
        torch.testing.assert_close(getattr(cell, n).grad, getattr(layer, f"{n}_l0").grad, rtol=1e-11, atol=1e-12)


def test_cell_state_carries_without_passing_it_and_trace():
    layer, cell = _pair("subtract")
    x = _x()
    out, st = layer(x)
    utils.reset(cell)
    ys = torch.stack([cell(x[t])[0] for t in range(T)])  # init_hidden=False, state kept on the module
    torch.testing.assert_close(ys, out, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(cell.trace, st.trace[0], rtol=1e-13, atol=1e-13)


def test_cell_matches_reference_with_zoneout_and_dropconnect(monkeypatch):
    from snntorch_egru import functional as F

    layer, cell = _pair("subtract", dropconnect=0.3, zoneout=0.2)
    cell.train()
    seen = {"dc": [], "zo": []}
    real_dc, real_zo = F.dropconnect_mask, F.zoneout_masks
    monkeypatch.setattr(F, "dropconnect_mask", lambda *a, **k: seen["dc"].append(real_dc(*a, **k)) or seen["dc"][-1])
    monkeypatch.setattr(F, "zoneout_masks", lambda *a, **k: seen["zo"].append(real_zo(*a, **k)) or seen["zo"][-1])
    x = _x()
    utils.reset(cell)
    ys = torch.stack([cell(x[t])[0] for t in range(T)])
    assert len(seen["dc"]) == 1, "one DropConnect mask per sequence (until reset)"
    assert len(seen["zo"]) == T
    z = torch.zeros(B, H, dtype=D)
    ref = ref_layer(
        x,
        z,
        z,
        z,
        cell_params(cell),
        reset="subtract",
        spike=ref_triangle(),
        zo_masks=torch.stack(seen["zo"]),
        dc_mask=seen["dc"][0],
    )
    torch.testing.assert_close(ys, ref["y"], rtol=1e-13, atol=1e-13)
    utils.reset(cell)
    cell(x[0])
    assert len(seen["dc"]) == 2, "reset re-draws the DropConnect mask"
    cell.eval()
    utils.reset(cell)
    ys = torch.stack([cell(x[t])[0] for t in range(T)])
    ref = ref_layer(x, z, z, z, cell_params(cell), reset="subtract", spike=ref_triangle(), zo_p=0.2)
    torch.testing.assert_close(ys, ref["y"], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("make_spike", [ss.atan, ss.fast_sigmoid, lambda: se.surrogate.pseudo_derivative(0.5, 3.0)])
def test_cell_spike_grad_gives_reference_gradient(make_spike):
    spike = make_spike()
    torch.manual_seed(0)
    cell = se.EGRUCell(I, H, spike_grad=spike).to(D)
    randomize_(cell, 4)
    assert cell.spike_grad is spike
    x = _x().requires_grad_()
    leaves = [x] + list(cell.parameters())
    utils.reset(cell)
    ys = torch.stack([cell(x[t])[0] for t in range(T)])
    (ys.sum() + cell.c.sum()).backward()
    g = grads_of(leaves)
    clear_grads(leaves)
    z = torch.zeros(B, H, dtype=D)
    ref = ref_layer(x, z, z, z, cell_params(cell), reset="subtract", spike=spike)
    torch.testing.assert_close(ys, ref["y"], rtol=1e-13, atol=1e-13)
    (ref["y"].sum() + ref["c"][-1].sum()).backward()
    # snnTorch's surrogates return float32 spikes, so autograd rounds the gradient reaching them
    # to float32: agreement is to float32 precision for them (exact for ours).
    tol = dict(rtol=1e-10, atol=1e-12) if isinstance(spike, se.surrogate.EGRUSurrogate) else dict(rtol=1e-6, atol=1e-7)
    for a, b in zip(g, grads_of(leaves)):
        torch.testing.assert_close(a, b, **tol)
    # the default triangle gives a different gradient, so the surrogate really was used
    clear_grads(leaves)
    ref2 = ref_layer(x, z, z, z, cell_params(cell), reset="subtract", spike=ref_triangle())
    (ref2["y"].sum() + ref2["c"][-1].sum()).backward()
    assert not torch.allclose(g[0], x.grad)


def test_cell_default_surrogate_and_surrogate_disable():
    cell = se.EGRUCell(I, H, dampening_factor=0.4, pseudo_derivative_support=2.0)
    assert cell.spike_grad == se.surrogate.EGRUSurrogate(0.4, 2.0)
    off = se.EGRUCell(I, H, surrogate_disable=True).to(D)
    randomize_(off, 4)
    x = _x().requires_grad_()
    leaves = [x] + list(off.parameters())
    utils.reset(off)
    ys = torch.stack([off(x[t])[0] for t in range(T)])
    ys.sum().backward()
    g = grads_of(leaves)
    clear_grads(leaves)
    z = torch.zeros(B, H, dtype=D)
    ref = ref_layer(x, z, z, z, cell_params(off), reset="subtract", spike=ref_heaviside_nograd)
    torch.testing.assert_close(ys, ref["y"])
    ref["y"].sum().backward()
    for a, b in zip(g, grads_of(leaves)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_init_hidden_output_and_errors():
    cell = se.EGRUCell(I, H, init_hidden=True, thr_mean=0.1).to(D)
    randomize_(cell, 4)
    x = _x()
    y = cell(x[0])
    assert isinstance(y, torch.Tensor) and y.shape == (B, H)
    with pytest.raises(TypeError, match="init_hidden=True"):
        cell(x[1], torch.zeros(B, H, dtype=D))
    with pytest.raises(TypeError, match="init_hidden=True"):
        cell(x[1], None, torch.zeros(B, H, dtype=D))
    cell_o = se.EGRUCell(I, H, init_hidden=True, output=True).to(D)
    cell_o.load_state_dict(cell.state_dict())
    utils.reset(cell)
    outs = [cell_o(x[t]) for t in range(T)]
    assert all(isinstance(o, tuple) and len(o) == 2 for o in outs)
    ys = torch.stack([cell(x[t]) for t in range(T)])
    torch.testing.assert_close(torch.stack([o[0] for o in outs]), ys)
    torch.testing.assert_close(outs[-1][1], cell_o.c)


def test_state_rezeroed_on_batch_size_change():
    _, cell = _pair("subtract")
    x = _x()
    for t in range(4):
        cell(x[t])
    x5 = _x(seed=3, batch=5)
    got = torch.stack([cell(x5[t])[0] for t in range(T)])
    fresh = se.EGRUCell(I, H).to(D)
    fresh.load_state_dict(cell.state_dict())
    want = torch.stack([fresh(x5[t])[0] for t in range(T)])
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    # unbatched [I] input works and equals the batch of one
    utils.reset(cell)
    fresh2 = se.EGRUCell(I, H).to(D)
    fresh2.load_state_dict(cell.state_dict())
    y1 = torch.stack([cell(x5[t, 0])[0] for t in range(T)])
    yb = torch.stack([fresh2(x5[t, :1])[0] for t in range(T)])
    assert y1.shape == (T, H)
    torch.testing.assert_close(y1, yb[:, 0], rtol=0, atol=0)


def test_reset_mem_and_detach_hidden():
    _, cell = _pair("subtract")
    x = _x()
    y, c = cell(x[0].requires_grad_())
    assert cell.c.requires_grad
    cell.detach_hidden()
    assert not cell.c.requires_grad and torch.equal(cell.c, c.detach())
    y0, c0 = cell.reset_mem()
    assert torch.all(y0 == 0) and torch.all(c0 == 0) and torch.all(cell.trace == 0)


def test_cell_in_sequential_with_leaky_trains_with_snntorch_loss():
    torch.manual_seed(0)
    Tn, Bn, In, Hn, C = 12, 32, 6, 24, 2
    net = torch.nn.Sequential(
        se.EGRUCell(In, Hn, init_hidden=True, thr_mean=0.1),
        torch.nn.Linear(Hn, C),
        snn.Leaky(beta=0.8, init_hidden=True, output=True),
    )
    g = torch.Generator().manual_seed(0)
    # class k: channels 3k..3k+2 carry positive drive
    targets = torch.randint(0, C, (Bn,), generator=g)
    x = 0.3 * torch.randn(Tn, Bn, In, generator=g)
    for b in range(Bn):
        k = int(targets[b])
        x[:, b, 3 * k : 3 * k + 3] += 1.0
    loss_fn = SF.ce_rate_loss()
    opt = torch.optim.Adam(net.parameters(), lr=2e-2)
    losses, accs = [], []
    for _ in range(40):
        utils.reset(net)
        spk_rec = []
        for t in range(Tn):
            spk, mem = net(x[t])
            spk_rec.append(spk)
        spk_rec = torch.stack(spk_rec)
        loss = loss_fn(spk_rec, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        accs.append(SF.accuracy_rate(spk_rec, targets))
    assert net[0].threshold.grad is not None and net[0].weight_hh.grad.abs().sum() > 0
    assert sum(losses[-5:]) / 5 < 0.6 * losses[0], f"loss did not fall: {losses[0]:.3f} -> {losses[-5:]}"
    assert accs[-1] >= 0.9


def test_cell_sequential_with_egru_cell_and_mse_count_loss():
    torch.manual_seed(1)
    net = torch.nn.Sequential(
        torch.nn.Linear(4, 16),
        se.EGRUCell(16, 16, init_hidden=True, thr_mean=0.1),
        torch.nn.Linear(16, 2),
        snn.Leaky(beta=0.7, init_hidden=True, output=True),
    )
    g = torch.Generator().manual_seed(1)
    targets = torch.randint(0, 2, (16,), generator=g)
    x = torch.randn(10, 16, 4, generator=g) * 0.2 + torch.nn.functional.one_hot(targets, 2).repeat(1, 2)[None] * 1.5
    loss_fn = SF.mse_count_loss(correct_rate=0.8, incorrect_rate=0.1)
    opt = torch.optim.Adam(net.parameters(), lr=2e-2)
    losses = []
    for _ in range(30):
        utils.reset(net)
        spk = torch.stack([net(x[t])[0] for t in range(10)])
        loss = loss_fn(spk, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert min(losses[-5:]) < 0.5 * losses[0]


def test_module_spike_grad_with_surrogate_disable():
    class Step(torch.nn.Module):
        def forward(self, v):
            return (v > 0).to(v.dtype)

    cell = se.EGRUCell(3, 4, spike_grad=Step(), surrogate_disable=True)
    assert type(cell.spike_grad).__name__ != "Step"  # plain Heaviside wins, as documented
    assert isinstance(se.EGRUCell(3, 4, spike_grad=Step()).spike_grad, Step)
