"""Cross-flavour parameters and states, truncated BPTT, event recording, raster plots, and
snnTorch losses / regularisers / neurons working with the EGRU."""

from __future__ import annotations

import math

import pytest
import snntorch as snn
import snntorch.functional as SF
import torch
from egru_reference import psi
from flavour_helpers import B, D, H, I, T
from flavour_helpers import randomize as _randomize
from flavour_helpers import x_seq as _x

import snntorch_egru as se
from snntorch_egru import interop, utils
from snntorch_egru.interop import (
    EventRecorder,
    cell_to_layer_state_dict,
    copy_parameters,
    layer_state_from_norse,
    layer_to_cell_state_dict,
    norse_state_from_layer,
    raster_plot,
    to_norse,
    to_snntorch,
    truncated_bptt,
)
from snntorch_egru.norse import EGRUParameters, EGRURecurrent, EGRURecurrentCell, EGRURecurrentState

NAMES = interop.PARAMETER_NAMES


def _step_all(cell, x):
    state, ys = None, []
    for x_t in x:
        y, state = cell(x_t, state)
        ys.append(y)
    return torch.stack(ys), state


# --------------------------------------------------------------------------------------------
# state_dict across flavours
# --------------------------------------------------------------------------------------------


def test_state_dict_round_trip_cell_layer_norse():
    x = _x(2)
    cell = se.EGRUCell(I, H).to(D)
    _randomize(cell, 1)
    ref = torch.stack([cell(x_t)[0] for x_t in x])
    assert 0.05 < (ref != 0).double().mean() < 0.7

    # cell -> layer
    layer = se.EGRU(I, H).to(D)
    sd = cell_to_layer_state_dict(cell.state_dict())
    assert sorted(sd) == sorted(f"{n}_l0" for n in NAMES)
    layer.load_state_dict(sd)
    torch.testing.assert_close(layer(x)[0], ref, rtol=1e-13, atol=1e-13)
    # layer -> norse cell and norse time layer
    ncell, nlayer = EGRURecurrentCell(I, H).to(D), EGRURecurrent(I, H).to(D)
    ncell.load_state_dict(layer_to_cell_state_dict(layer.state_dict()))
    nlayer.load_state_dict(layer_to_cell_state_dict(layer.state_dict()))
    torch.testing.assert_close(_step_all(ncell, x)[0], ref, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(nlayer(x)[0], ref, rtol=1e-13, atol=1e-13)
    # norse -> layer -> cell (the other way round)
    _randomize(ncell, 2)
    ref2 = _step_all(ncell, x)[0]
    layer2 = se.EGRU(I, H).to(D)
    layer2.load_state_dict(cell_to_layer_state_dict(ncell.state_dict()))
    torch.testing.assert_close(layer2(x)[0], ref2, rtol=1e-13, atol=1e-13)
    cell2 = se.EGRUCell(I, H).to(D)
    cell2.load_state_dict(layer_to_cell_state_dict(layer2.state_dict()))
    torch.testing.assert_close(torch.stack([cell2(x_t)[0] for x_t in x]), ref2, rtol=1e-13, atol=1e-13)
    # norse -> snnTorch cell directly (same names)
    cell3 = se.EGRUCell(I, H).to(D)
    cell3.load_state_dict(ncell.state_dict())
    for n in NAMES:
        assert torch.equal(getattr(cell3, n), getattr(ncell, n))


def test_state_dict_upper_layer_and_prefix():
    torch.manual_seed(0)
    rnn = se.EGRU(I, H, num_layers=3).to(D)
    _randomize(rnn, 3)
    x = _x(3)
    _, _, rec = rnn(x, return_internals=True)
    top = EGRURecurrent(H, H).to(D)
    top.load_state_dict(layer_to_cell_state_dict(rnn.state_dict(), layer=1))
    torch.testing.assert_close(top(rec.y[0])[0], rec.y[1], rtol=1e-13, atol=1e-13)
    # cell -> a chosen layer index inside a larger model, with prefixes; other keys untouched
    src = torch.nn.Sequential(torch.nn.Linear(4, I), EGRURecurrentCell(H, H)).to(D)  # an upper layer
    sd0 = src.state_dict()
    sd = cell_to_layer_state_dict(sd0, layer=2, prefix="1.")
    assert sorted(sd) == sorted(["0.weight", "0.bias"] + [f"1.{n}_l2" for n in NAMES])
    back = layer_to_cell_state_dict(sd, layer=2, prefix="1.")
    assert sorted(back) == sorted(sd0)
    for k, v in sd0.items():
        assert back[k] is v  # renamed, not copied
    big = torch.nn.Sequential(torch.nn.Linear(4, I), se.EGRU(I, H, num_layers=3)).to(D)
    missing, unexpected = big.load_state_dict(sd, strict=False)
    assert unexpected == [] and sorted(missing) == sorted(f"1.{n}_l{k}" for n in NAMES for k in (0, 1))
    assert torch.equal(big[1].weight_hh_l2, src[1].weight_hh)
    # picking one layer drops the others' EGRU tensors
    assert sorted(layer_to_cell_state_dict(rnn.state_dict(), layer=2)) == sorted(NAMES)


def test_copy_parameters_all_pairs():
    rnn = se.EGRU(I, H, num_layers=2).to(D)
    _randomize(rnn, 4)
    x = _x(4)
    _, _, rec = rnn(x, return_internals=True)
    top = copy_parameters(EGRURecurrentCell(H, H).to(D), rnn, src_layer=1)
    torch.testing.assert_close(_step_all(top, rec.y[0])[0], rec.y[1], rtol=1e-13, atol=1e-13)
    cell = copy_parameters(se.EGRUCell(H, H).to(D), top)
    rnn2 = copy_parameters(se.EGRU(I, H, num_layers=2).to(D), cell, dst_layer=1)
    rnn2 = copy_parameters(rnn2, EGRURecurrent(I, H).to(D))
    copy_parameters(rnn2, rnn, dst_layer=0, src_layer=0)
    for k, v in rnn.state_dict().items():
        assert torch.equal(rnn2.state_dict()[k], v), k


def test_state_dict_and_copy_errors():
    rnn = se.EGRU(I, H, num_layers=2)
    with pytest.raises(
        KeyError, match=r"layer 3 not found: the state_dict has EGRU layer tensors .* for layers \[0, 1\]"
    ):
        layer_to_cell_state_dict(rnn.state_dict(), layer=3)
    with pytest.raises(
        KeyError, match=r"not an EGRU cell state_dict: missing \['weight_ih', 'weight_hh', 'threshold'\]"
    ):
        cell_to_layer_state_dict(rnn.state_dict())
    with pytest.raises(ValueError, match=r"layer must be a non-negative int, got -1"):
        cell_to_layer_state_dict(se.EGRUCell(I, H).state_dict(), layer=-1)
    with pytest.raises(TypeError, match=r"layer must be a non-negative int, got str '0'"):
        layer_to_cell_state_dict(rnn.state_dict(), layer="0")
    with pytest.raises(TypeError, match=r"prefix must be a str"):
        layer_to_cell_state_dict(rnn.state_dict(), prefix=1)
    with pytest.raises(ValueError, match=r"weight_ih: dst expects shape \[18, 4\] but src has \[18, 5\]"):
        copy_parameters(se.EGRUCell(4, H), rnn)
    with pytest.raises(ValueError, match=r"bias_ih: dst has no bias but src has a bias"):
        copy_parameters(se.EGRUCell(I, H, bias=False), rnn)
    with pytest.raises(ValueError, match=r"layer must be < num_layers=2 of the EGRU, got 2"):
        copy_parameters(se.EGRUCell(I, H), rnn, src_layer=2)
    with pytest.raises(ValueError, match=r"layer must be 0 for a single-layer EGRURecurrentCell, got 1"):
        copy_parameters(rnn, EGRURecurrentCell(H, H), src_layer=1, dst_layer=1)
    with pytest.raises(
        TypeError, match=r"module must be an EGRU, EGRUCell, EGRURecurrentCell or EGRURecurrent, got GRU"
    ):
        copy_parameters(se.EGRUCell(I, H), torch.nn.GRU(I, H))


def test_to_norse_from_gru_equals_torch_gru():
    """EGRU.from_gru (theta = -2, reset "none", no clamp) -> Norse twin still equals torch.nn.GRU."""
    torch.manual_seed(5)
    gru = torch.nn.GRU(I, H, num_layers=2).to(D)
    egru = se.EGRU.from_gru(gru)
    x = _x(21).requires_grad_()
    ref, _ = gru(x)
    _, _, rec = egru(x, return_internals=True)
    bottom = to_norse(egru, time_layer=True)
    top = to_norse(egru, layer=1)
    assert bottom.p == EGRUParameters(reset="none") and not top.threshold_clamp
    assert isinstance(bottom, EGRURecurrent) and isinstance(top, EGRURecurrentCell)
    h1, _ = bottom(x)
    out, _ = _step_all(top, h1)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    g1 = torch.autograd.grad(out.sum(), x)[0]
    g2 = torch.autograd.grad(ref.sum(), x)[0]
    torch.testing.assert_close(g1, g2, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("spike", ["paper", "tanh", "nograd"])
def test_to_norse_and_back_keeps_outputs_and_gradients(spike):
    kw = {
        "paper": dict(dampening_factor=3.6, pseudo_derivative_support=3.6),
        "nograd": dict(surrogate_disable=True),
    }.get(spike, {})
    if spike == "tanh":
        pytest.importorskip("norse")
        from snntorch_egru.norse import NorseThreshold

        kw = dict(spike_grad=NorseThreshold("tanh", 4.0))
    cell = se.EGRUCell(I, H, reset_mechanism="zero", **kw).to(D)
    _randomize(cell, 22)
    twin = to_norse(cell)
    assert twin.p.reset == "zero"
    if spike == "paper":
        assert twin.p == EGRUParameters(dampening_factor=3.6, pseudo_derivative_support=3.6, reset="zero")
    elif spike == "tanh":
        assert twin.p.method == "tanh" and twin.p.alpha == 4.0
    back = to_snntorch(twin)
    layer = to_snntorch(to_norse(cell, time_layer=True), sequence=True, batch_first=True)
    assert isinstance(back, se.EGRUCell) and isinstance(layer, se.EGRU) and layer.batch_first
    x = _x(22)
    outs = {}
    for name, m in (("cell", cell), ("twin", twin), ("back", back), ("layer", layer)):
        m.zero_grad()
        if name == "twin":
            y = _step_all(m, x)[0]
        elif name == "layer":
            y = m(x.transpose(0, 1))[0].transpose(0, 1)
        else:
            utils.reset(m)
            y = torch.stack([m(x_t)[0] for x_t in x])
        (y * torch.linspace(-1, 1, H, dtype=D)).sum().backward()
        outs[name] = (y, m.weight_hh.grad if name != "layer" else m.weight_hh_l0.grad)
    for name in ("twin", "back", "layer"):
        torch.testing.assert_close(outs[name][0], outs["cell"][0], rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(outs[name][1], outs["cell"][1], rtol=1e-11, atol=1e-12)


def test_to_norse_to_snntorch_errors():
    with pytest.raises(ValueError, match=r"no DropConnect or zoneout, but module has dropconnect=0\.0, zoneout=0\.2"):
        to_norse(se.EGRUCell(I, H, zoneout=0.2))
    with pytest.raises(TypeError, match=r"module must be an EGRU or EGRUCell, got EGRURecurrentCell"):
        to_norse(EGRURecurrentCell(I, H))
    with pytest.raises(TypeError, match=r"time_layer must be a bool, got str 'yes'"):
        to_norse(se.EGRUCell(I, H), time_layer="yes")
    with pytest.raises(TypeError, match=r"module must be an EGRURecurrentCell or EGRURecurrent, got EGRUCell"):
        to_snntorch(se.EGRUCell(I, H))
    with pytest.raises(TypeError, match=r"sequence must be a bool, got int 1"):
        to_snntorch(EGRURecurrent(I, H), sequence=1)


# --------------------------------------------------------------------------------------------
# states across flavours (streaming)
# --------------------------------------------------------------------------------------------


def test_state_conversion_streams_across_flavours():
    rnn = se.EGRU(I, H).to(D)
    _randomize(rnn, 5)
    x = _x(5, steps=18)
    full, _ = rnn(x)
    _, s = rnn(x[:6])
    nl = copy_parameters(EGRURecurrent(I, H).to(D), rnn)
    out_mid, ns = nl(x[6:12], norse_state_from_layer(s))
    torch.testing.assert_close(out_mid, full[6:12], rtol=1e-13, atol=1e-13)
    out_end, _ = rnn(x[12:], layer_state_from_norse(ns))
    torch.testing.assert_close(out_end, full[12:], rtol=1e-13, atol=1e-13)
    # two layers: one Norse state per layer, bottom first
    rnn2 = se.EGRU(I, H, num_layers=2).to(D)
    _randomize(rnn2, 6)
    full2, s2 = rnn2(x)
    st = layer_state_from_norse([norse_state_from_layer(s2, 0), norse_state_from_layer(s2, 1)], trace=s2.trace)
    for a, b in zip(st, s2):
        assert torch.equal(a, b)


def test_state_conversion_errors():
    z = torch.zeros(B, H)
    with pytest.raises(
        TypeError, match=r"state must be snntorch_egru\.EGRUState\(y, c, trace\), got EGRURecurrentState"
    ):
        norse_state_from_layer(EGRURecurrentState(z, z))
    with pytest.raises(ValueError, match=r"layer must be < 1 \(the state's number of layers\), got 1"):
        norse_state_from_layer(se.EGRUState(z[None], z[None], z[None]), layer=1)
    with pytest.raises(
        TypeError, match=r"states must be a snntorch_egru\.norse\.EGRURecurrentState\(y, c, trace\) or a non-empty list"
    ):
        layer_state_from_norse(se.EGRUState(z[None], z[None], z[None]))
    with pytest.raises(ValueError, match=r"trace must be a tensor of shape \[1, 3, 6\] or None, got \[3, 6\]"):
        layer_state_from_norse(EGRURecurrentState(z, z), trace=z)


# --------------------------------------------------------------------------------------------
# snnTorch losses, regularisers and neurons
# --------------------------------------------------------------------------------------------


def test_snntorch_losses_on_time_first_events():
    C = 4
    rnn = se.EGRU(I, C)
    _randomize(rnn, 7)
    rnn = rnn.float()
    x = _x(7).float()
    targets = torch.tensor([0, 3, 1])
    out, _, rec = rnn(x, return_internals=True)
    assert (out != 0).any()
    ce = SF.ce_rate_loss()(out, targets)
    manual = torch.stack([torch.nn.functional.cross_entropy(out[t], targets) for t in range(T)]).mean()
    torch.testing.assert_close(ce.reshape(()), manual, rtol=1e-6, atol=1e-6)
    cc = SF.ce_count_loss()(out, targets)
    torch.testing.assert_close(
        cc.reshape(()), torch.nn.functional.cross_entropy(out.sum(0), targets), rtol=1e-6, atol=1e-6
    )
    acc = SF.accuracy_rate(out, targets)
    assert acc == pytest.approx((out.sum(0).argmax(-1) == targets).float().mean().item())
    # l1_rate_sparsity on the binary events counts them; on the graded events it sums them
    lam = 1e-3
    assert SF.l1_rate_sparsity(Lambda=lam)(rec.o[0]).item() == pytest.approx(lam * (out != 0).sum().item())
    torch.testing.assert_close(SF.l1_rate_sparsity(Lambda=lam)(out), lam * out.sum())


def test_l1_rate_sparsity_gradient_reaches_threshold():
    """One step from zero state: d(lam * sum o)/d theta_j = -lam * sum_b psi(c_hat_bj - theta_j)."""
    gamma, eps, lam = 0.7, 2.0, 0.1
    rnn = se.EGRU(I, H, dampening_factor=gamma, pseudo_derivative_support=eps).to(D)
    _randomize(rnn, 8)
    x = _x(8, steps=1, batch=16)
    _, _, rec = rnn(x, return_internals=True)
    SF.l1_rate_sparsity(Lambda=lam)(rec.o).backward()
    # at t = 0 with y0 = c0 = 0, c_hat does not depend on theta; rebuild it from the record
    o = rec.o[0, 0].detach()
    c_hat = torch.where(o > 0, rec.y[0, 0].detach(), rec.c[0, 0].detach())
    expected = -lam * psi(c_hat - rnn.threshold_l0.detach(), gamma, eps).sum(0)
    torch.testing.assert_close(rnn.threshold_l0.grad, expected, rtol=1e-13, atol=1e-15)
    assert expected.abs().sum() > 0


def test_mixed_leaky_and_egrucell_trains_below_chance():
    """snn.Leaky + EGRUCell in one nn.Sequential learn a delayed-cue task (cue in steps 0-2,
    read out in the last 2 of 8 steps) in 200 Adam steps; chance is ln 4."""
    torch.manual_seed(0)
    C, Hd, Tt, Bt = 4, 16, 8, 16
    net = torch.nn.Sequential(
        torch.nn.Linear(C, Hd),
        se.EGRUCell(Hd, Hd, init_hidden=True),
        torch.nn.Linear(Hd, C),
        snn.Leaky(beta=0.8, init_hidden=True, output=True),
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1)

    def batch(n):
        y = torch.randint(0, C, (n,), generator=g)
        x = 0.5 * torch.randn(Tt, n, C, generator=g)
        x[:3] += torch.nn.functional.one_hot(y, C).float()
        return x, y

    def run(x):
        utils.reset(net)
        return torch.stack([net(x_t)[1] for x_t in x])  # Leaky membrane, [T, B, C]

    theta0 = net[1].threshold.detach().clone()
    losses = []
    for _ in range(200):
        x, y = batch(Bt)
        loss = torch.nn.functional.cross_entropy(run(x)[-2:].mean(0), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    chance = math.log(C)
    assert sum(losses[:10]) / 10 > 0.8 * chance
    assert sum(losses[-20:]) / 20 < 0.4 * chance
    with torch.no_grad():
        x, y = batch(256)
        acc = (run(x)[-2:].mean(0).argmax(-1) == y).float().mean().item()
        assert acc > 0.8
    assert not torch.equal(net[1].threshold.detach(), theta0)  # thresholds trained too


# --------------------------------------------------------------------------------------------
# Truncated BPTT
# --------------------------------------------------------------------------------------------


def _windows(total, w):
    return [(t0, min(t0 + w, total)) for t0 in range(0, total, w)]


def test_tbptt_sequence_mode_values_and_gradients():
    rnn = se.EGRU(I, H).to(D)
    _randomize(rnn, 9)
    x = _x(9)
    wts = torch.randn(T, B, H, generator=torch.Generator().manual_seed(10), dtype=D)
    full, full_state = rnn(x)
    xa = x.clone().requires_grad_()
    res = truncated_bptt(rnn, xa, window=5, loss_fn=lambda out, w: (out * w).sum(), targets=wts, per_step_targets=True)
    torch.testing.assert_close(res.outputs, full, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(res.state.c, full_state.c, rtol=1e-13, atol=1e-13)
    assert not res.outputs.requires_grad and not res.state.y.requires_grad
    assert len(res.losses) == 3
    got = {n: p.grad.clone() for n, p in rnn.named_parameters()}
    # reference by hand: every window starts from the detached full-run state at its border
    rnn.zero_grad()
    xb = x.clone().requires_grad_()
    ref_losses = []
    for t0, t1 in _windows(T, 5):
        s0 = rnn(x[:t0])[1] if t0 else None
        s0 = None if s0 is None else s0.detach()
        out, _ = rnn(xb[t0:t1], s0)
        loss = (out * wts[t0:t1]).sum()
        loss.backward()
        ref_losses.append(loss.item())
    assert res.losses == pytest.approx(ref_losses, rel=1e-12)
    for n, p in rnn.named_parameters():
        torch.testing.assert_close(got[n], p.grad, rtol=1e-11, atol=1e-12)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-11, atol=1e-12)


def test_tbptt_gradient_stops_at_window_border():
    cell = EGRURecurrentCell(I, H).to(D)  # Norse cell in step mode, explicit state
    _randomize(cell, 11)
    x = _x(11)
    mask = torch.zeros(T, B, H, dtype=D)
    mask[5:10] = 1.0  # loss only on the second window
    xa = x.clone().requires_grad_()
    res = truncated_bptt(
        cell, xa, window=5, loss_fn=lambda out, m: (out * m).sum(), targets=mask, per_step_targets=True
    )
    assert isinstance(res.state, EGRURecurrentState)
    torch.testing.assert_close(res.outputs, _step_all(cell, x)[0], rtol=0, atol=0)
    assert torch.count_nonzero(xa.grad[:5]) == 0  # cut at the border
    assert xa.grad[5:10].abs().sum() > 0  # inside the window it flows
    assert torch.count_nonzero(xa.grad[10:]) == 0  # causality
    # full BPTT does send gradient into the first window (so the cut is real)
    xf = x.clone().requires_grad_()
    (_step_all(cell, xf)[0] * mask).sum().backward()
    assert xf.grad[:5].abs().sum() > 0
    torch.testing.assert_close(xa.grad[5:10], _window_grad(cell, x, 5, 10, mask), rtol=1e-12, atol=1e-13)


def _window_grad(cell, x, t0, t1, mask):
    """Input gradient of window [t0, t1) run from the (constant) state at t0."""
    with torch.no_grad():
        _, s0 = _step_all(cell, x[:t0])
    xw = x[t0:t1].clone().requires_grad_()
    state, ys = s0, []
    for x_t in xw:
        y, state = cell(x_t, state)
        ys.append(y)
    (torch.stack(ys) * mask[t0:t1]).sum().backward()
    return xw.grad


def test_tbptt_step_mode_snntorch_net_with_optimizer():
    torch.manual_seed(3)
    C = 3

    def make():
        torch.manual_seed(3)
        net = torch.nn.Sequential(
            se.EGRUCell(I, H, init_hidden=True),
            torch.nn.Linear(H, C),
            snn.Leaky(beta=0.9, init_hidden=True, output=True, reset_delay=False),
        ).to(D)
        _randomize(net[0], 12)
        return net

    x = _x(12, steps=10)
    labels = torch.tensor([0, 2, 1])
    loss_fn = lambda out, tgt: torch.nn.functional.cross_entropy(out[1].sum(0), tgt)  # noqa: E731
    net = make()
    # outputs without training equal one long stepped run
    res0 = truncated_bptt(net, x, window=4)
    utils.reset(net)
    long = [net(x_t) for x_t in x]
    torch.testing.assert_close(res0.outputs[0], torch.stack([o[0] for o in long]), rtol=0, atol=0)
    torch.testing.assert_close(res0.outputs[1], torch.stack([o[1] for o in long]), rtol=0, atol=0)
    assert res0.state is None and res0.losses == []
    # with SGD: equals a hand-written loop that detaches EGRU and Leaky state at each border
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    res = truncated_bptt(net, x, window=4, loss_fn=loss_fn, targets=labels, optimizer=opt)
    ref = make()
    ropt = torch.optim.SGD(ref.parameters(), lr=0.1)
    utils.reset(ref)
    ref_losses = []
    for t0, t1 in _windows(10, 4):
        outs = [ref(x_t) for x_t in x[t0:t1]]
        loss = loss_fn((torch.stack([o[0] for o in outs]), torch.stack([o[1] for o in outs])), labels)
        ropt.zero_grad()
        loss.backward()
        ropt.step()
        ref_losses.append(loss.item())
        ref[0].detach_hidden()
        ref[2].mem = ref[2].mem.detach()
    assert res.losses == pytest.approx(ref_losses, rel=1e-12)
    for (n, p), q in zip(net.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-13, msg=n)
    assert not torch.equal(net[0].weight_hh, make()[0].weight_hh)  # it did train


def test_tbptt_errors():
    rnn = se.EGRU(I, H)
    x = torch.randn(T, B, I)
    with pytest.raises(ValueError, match=r"window must be a positive int \(steps per window\), got 0"):
        truncated_bptt(rnn, x, window=0)
    with pytest.raises(ValueError, match=r"mode must be one of 'auto', 'step', 'sequence', got 'time'"):
        truncated_bptt(rnn, x, window=2, mode="time")
    with pytest.raises(ValueError, match=r"optimizer was given without loss_fn"):
        truncated_bptt(rnn, x, window=2, optimizer=torch.optim.SGD(rnn.parameters(), lr=0.1))
    with pytest.raises(ValueError, match=r"targets must be a tensor with 12 steps in dimension 0.*got \[3\]"):
        truncated_bptt(rnn, x, window=2, loss_fn=lambda o, t: o.sum(), targets=torch.zeros(3), per_step_targets=True)
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module, got function"):
        truncated_bptt(lambda v: v, x, window=2)
    with pytest.raises(TypeError, match=r"inputs must be a time-first torch\.Tensor \[T, B, \.\.\.\], got list"):
        truncated_bptt(rnn, [x], window=2)
    with pytest.raises(TypeError, match=r"loss_fn must be callable or None, got int"):
        truncated_bptt(rnn, x, window=2, loss_fn=3)


# --------------------------------------------------------------------------------------------
# Event recording and raster plots
# --------------------------------------------------------------------------------------------


def test_event_recorder_cells_and_snntorch_neurons():
    torch.manual_seed(4)
    net = torch.nn.Sequential(
        torch.nn.Linear(I, 4),
        se.EGRUCell(4, H, init_hidden=True),
        torch.nn.Linear(H, 3),
        snn.Leaky(beta=0.9, init_hidden=True, output=True),
    ).to(D)
    _randomize(net[1], 13)
    x = _x(13)
    utils.reset(net)
    with EventRecorder(net) as rec:
        outs = [net(x_t) for x_t in x]
    ev = rec.events
    assert sorted(ev) == ["1", "3"]
    twin = se.EGRUCell(4, H).to(D)
    twin.load_state_dict(net[1].state_dict())
    expected = torch.stack([twin(net[0](x_t))[0] for x_t in x])
    assert (expected != 0).any()
    torch.testing.assert_close(ev["1"], expected, rtol=0, atol=0)
    torch.testing.assert_close(ev["3"], torch.stack([o[0] for o in outs]), rtol=0, atol=0)
    assert not ev["1"].requires_grad
    net(x[0])  # hooks are gone after the with-block
    assert rec.events["1"].shape[0] == T
    rec.clear()
    assert rec.events == {}


def test_event_recorder_sequence_layers():
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.egru = se.EGRU(I, H, batch_first=True)
            self.norse = EGRURecurrent(H, H)
            self.cell = EGRURecurrentCell(H, 2)

        def forward(self, x):
            out, _ = self.egru(x)
            out, _ = self.norse(out.transpose(0, 1))
            return out, _step_all(self.cell, out)[0]

    m = Model().to(D)
    for mod, seed in ((m.egru, 14), (m.norse, 15), (m.cell, 16)):
        _randomize(mod, seed)
    x = _x(14).transpose(0, 1)  # [B, T, I]
    with EventRecorder(m, include_snntorch=False) as rec:
        o1, c1 = m(x[:, :7])
        o2, c2 = m(x[:, 7:])
    ev = rec.events
    assert sorted(ev) == ["cell", "egru", "norse"]
    torch.testing.assert_close(ev["egru"], torch.cat([m.egru(x[:, :7])[0], m.egru(x[:, 7:])[0]], 1).transpose(0, 1))
    torch.testing.assert_close(ev["norse"], torch.cat([o1, o2]), rtol=0, atol=0)
    torch.testing.assert_close(ev["cell"], torch.cat([c1, c2]), rtol=0, atol=0)
    assert ev["egru"].shape == (T, B, H)


def test_raster_plot_data_equals_events():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    pytest.importorskip("pandas")  # snntorch.spikeplot imports it
    import matplotlib.pyplot as plt

    rnn = se.EGRU(I, H).to(D)
    _randomize(rnn, 17)
    with EventRecorder(rnn) as rec:
        rnn(_x(17, steps=40))
    events = rec.events["EGRU"]
    fig, ax = raster_plot(events, sample=1, s=3)
    offsets = ax.collections[0].get_offsets()
    expected = torch.nonzero(events[:, 1] != 0).numpy()
    assert len(expected) > 10
    assert offsets.shape == expected.shape
    assert (offsets == expected).all()
    assert ax.get_xlabel() == "time step" and ax.collections[0].get_sizes()[0] == 3
    # into given axes, unbatched events
    fig2, ax2 = plt.subplots()
    f, a = raster_plot(events[:, 0], ax=ax2)
    assert f is fig2 and a is ax2
    assert (a.collections[0].get_offsets() == torch.nonzero(events[:, 0] != 0).numpy()).all()
    plt.close(fig)
    plt.close(fig2)
    with pytest.raises(ValueError, match=r"sample must be an int in \[0, 3\) for events of shape \[40, 3, 6\], got 3"):
        raster_plot(events, sample=3)
    with pytest.raises(ValueError, match=r"events must have shape \[T, B, H\] or \[T, H\], got \[40\]"):
        raster_plot(events[:, 0, 0])
    with pytest.raises(TypeError, match=r"events must be a torch\.Tensor \[T, B, H\] or \[T, H\], got dict"):
        raster_plot(rec.events)
