"""EGRU layer: torch.nn.GRU equivalence, parameter names, whole-model pickling, utils."""

from __future__ import annotations

import pytest
import snntorch as snn
import torch
from conftest import backend_names, randomize_, skip_if_unavailable

import snntorch_egru as se
from snntorch_egru import utils

D = torch.float64


@pytest.mark.parametrize("backend", backend_names())
@pytest.mark.parametrize("batch_first", [False, True])
def test_from_gru_matches_torch_gru(batch_first, backend):
    torch.manual_seed(0)
    T, B, I, H, L = 11, 3, 5, 16, 2
    gru = torch.nn.GRU(I, H, num_layers=L, batch_first=batch_first)
    egru = se.EGRU.from_gru(gru, backend=backend)
    assert egru.reset_mechanism == "none" and egru.batch_first == batch_first and egru.num_layers == L
    x = torch.randn((B, T, I) if batch_first else (T, B, I))
    skip_if_unavailable(backend, x if not batch_first else x.transpose(0, 1), egru)
    h0 = 0.9 * (2 * torch.rand(L, B, H) - 1)
    xg, xe = x.clone().requires_grad_(), x.clone().requires_grad_()
    h0g, h0e = h0.clone().requires_grad_(), h0.clone().requires_grad_()
    out_g, h_g = gru(xg, h0g)
    out_e, st = egru(xe, se.EGRUState.from_gru_hidden(h0e))
    torch.testing.assert_close(out_e, out_g, rtol=1e-5, atol=2e-6)
    torch.testing.assert_close(st.y, h_g, rtol=1e-5, atol=2e-6)
    torch.testing.assert_close(st.c, h_g, rtol=1e-5, atol=2e-6)
    w = torch.randn(out_g.shape)
    ((out_g * w).sum() + h_g.sum()).backward()
    ((out_e * w).sum() + st.y.sum()).backward()
    for name, p in gru.named_parameters():
        torch.testing.assert_close(
            getattr(egru, name).grad, p.grad, rtol=1e-4, atol=1e-5, msg=lambda s: f"grad of {name}: {s}"
        )
        assert p.grad.abs().sum() > 0
    for k in range(L):
        assert torch.all(getattr(egru, f"threshold_l{k}").grad == 0)
    torch.testing.assert_close(xe.grad, xg.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(h0e.grad, h0g.grad, rtol=1e-4, atol=1e-5)


def test_from_gru_float64_exact_and_bias_false():
    torch.manual_seed(1)
    gru = torch.nn.GRU(3, 6, num_layers=2, bias=False).double()
    egru = se.EGRU.from_gru(gru)
    assert egru.bias is False and egru.bias_ih_l0 is None
    x = torch.randn(7, 2, 3, dtype=D)
    torch.testing.assert_close(egru(x)[0], gru(x)[0], rtol=1e-13, atol=1e-13)
    with pytest.raises(TypeError, match="gru must be a torch.nn.GRU, got LSTM"):
        se.EGRU.from_gru(torch.nn.LSTM(3, 6))
    with pytest.raises(ValueError, match="bidirectional"):
        se.EGRU.from_gru(torch.nn.GRU(3, 6, bidirectional=True))


def test_state_dict_names():
    m = se.EGRU(4, 6, num_layers=3)
    expected = {f"{n}_l{k}" for k in range(3) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "threshold")}
    assert set(m.state_dict()) == expected
    shapes = {
        "weight_ih_l0": (18, 4),
        "weight_ih_l1": (18, 6),
        "weight_hh_l2": (18, 6),
        "bias_ih_l1": (18,),
        "bias_hh_l0": (18,),
        "threshold_l2": (6,),
    }
    for k, s in shapes.items():
        assert tuple(m.state_dict()[k].shape) == s
    assert {n for n, _ in m.named_parameters()} == expected
    nb = se.EGRU(4, 6, num_layers=2, bias=False, learn_threshold=False)
    assert set(nb.state_dict()) == {
        "weight_ih_l0",
        "weight_hh_l0",
        "threshold_l0",
        "weight_ih_l1",
        "weight_hh_l1",
        "threshold_l1",
    }
    assert {n for n, _ in nb.named_parameters()} == {"weight_ih_l0", "weight_hh_l0", "weight_ih_l1", "weight_hh_l1"}
    cell = se.EGRUCell(4, 6)
    assert set(cell.state_dict()) == {"weight_ih", "weight_hh", "bias_ih", "bias_hh", "threshold"}
    # gamma and epsilon are config, not parameters (unlike the official code)
    assert all("dampening" not in n and "support" not in n for n in cell.state_dict())
    # an nn.GRU state dict (plus thresholds) loads into an EGRU
    gru = torch.nn.GRU(4, 6, num_layers=3)
    sd = dict(gru.state_dict())
    sd.update({f"threshold_l{k}": torch.full((6,), 0.2) for k in range(3)})
    m.load_state_dict(sd)
    torch.testing.assert_close(m.weight_hh_l1, gru.weight_hh_l1)


def test_torch_save_whole_models_roundtrip(tmp_path):
    torch.manual_seed(0)
    egru = se.EGRU(3, 8, num_layers=2, dropout=0.2, zoneout=0.1, reset_mechanism="zero", thr_mean=0.05).eval()
    cell = se.EGRUCell(3, 8, spike_grad=se.surrogate.pseudo_derivative(0.5, 2.0), thr_mean=0.05)
    seq = torch.nn.Sequential(
        torch.nn.Linear(3, 5), se.EGRUCell(5, 8, init_hidden=True, thr_mean=0.05), se.EGRU(8, 4, thr_mean=0.05)
    )
    x = 3 * torch.randn(6, 4, 3)
    for name, model in (("egru", egru), ("cell", cell), ("seq", seq)):
        path = tmp_path / f"{name}.pt"
        torch.save(model, path)
        loaded = torch.load(path, weights_only=False)
        assert type(loaded) is type(model)
        if name == "egru":
            a, b = model(x)[0], loaded(x)[0]
        elif name == "cell":
            a = torch.stack([model(xt)[0] for xt in x])
            b = torch.stack([loaded(xt)[0] for xt in x])
        else:
            utils.reset(model)
            utils.reset(loaded)
            a = model[2](torch.stack([model[0:2](xt) for xt in x]))[0]
            b = loaded[2](torch.stack([loaded[0:2](xt) for xt in x]))[0]
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        for (n1, p1), (n2, p2) in zip(model.state_dict().items(), loaded.state_dict().items()):
            assert n1 == n2 and torch.equal(p1, p2)
    assert loaded_spike_equal(tmp_path / "cell.pt", cell)


def loaded_spike_equal(path, cell) -> bool:
    return torch.load(path, weights_only=False).spike_grad == cell.spike_grad


def test_utils_reset_nested_cells_and_snntorch_neurons():
    import snntorch.utils as su

    torch.manual_seed(0)
    cell = se.EGRUCell(3, 6, init_hidden=True, thr_mean=0.1)
    leaky = snn.Leaky(beta=0.8, init_hidden=True)
    net = torch.nn.Sequential(torch.nn.Sequential(cell, torch.nn.Linear(6, 4)), torch.nn.Sequential(leaky))
    for _ in range(5):
        net(torch.randn(2, 3) * 3)
    assert cell.c.abs().sum() > 0 and leaky.mem.abs().sum() > 0
    se.registration.unregister()
    try:
        su.reset(net)  # snnTorch's own reset looks at direct children only
        assert cell.c.abs().sum() > 0 and leaky.mem.abs().sum() > 0
    finally:
        se.registration.register()
    su.reset(net)  # registered: the nested EGRU cell is reset; snnTorch's behaviour for its neuron is unchanged
    assert cell.c.abs().sum() == 0 and leaky.mem.abs().sum() > 0
    for _ in range(5):
        net(torch.randn(2, 3) * 3)
    out = utils.reset(net)
    assert out is net
    for t in (cell.y, cell.c, cell.trace, leaky.mem):
        assert t.abs().sum() == 0
    assert set(map(id, utils.stateful_modules(net))) == {id(cell), id(leaky)}


def test_utils_detach_hidden_and_detach_state():
    torch.manual_seed(0)
    cell = se.EGRUCell(3, 6, init_hidden=True, thr_mean=0.1)
    leaky = snn.Leaky(beta=0.8, init_hidden=True)
    net = torch.nn.Sequential(cell, torch.nn.Sequential(leaky))
    for _ in range(3):
        net(torch.randn(2, 3) * 3)
    before = [t.clone() for t in (cell.y, cell.c, cell.trace, leaky.mem)]
    assert cell.c.requires_grad and leaky.mem.requires_grad
    utils.detach_hidden(net)
    after = (cell.y, cell.c, cell.trace, leaky.mem)
    for a, b in zip(after, before):
        assert not a.requires_grad
        torch.testing.assert_close(a, b)
    # truncated BPTT: the next window's gradient does not reach the previous window
    y = net(torch.randn(2, 3))
    y.sum().backward()
    st = se.EGRUState(*(torch.ones(2, 3, requires_grad=True) * 2 for _ in range(3)))
    ds = utils.detach_state(st)
    assert isinstance(ds, se.EGRUState) and not any(t.requires_grad for t in ds)
    assert utils.detach_state({"a": [st.y]})["a"][0].requires_grad is False
    assert not any(t.requires_grad for t in st.detach())


def test_clamp_thresholds_only_touches_egru_thresholds():
    egru = se.EGRU(3, 4, num_layers=2)
    cell = se.EGRUCell(3, 4)
    leaky = snn.Leaky(beta=0.9, threshold=2.5, learn_threshold=True)
    net = torch.nn.ModuleDict({"egru": egru, "cell": cell, "leaky": leaky, "lin": torch.nn.Linear(3, 3)})
    with torch.no_grad():
        egru.threshold_l0.copy_(torch.tensor([-1.0, 0.5, 2.0, 0.2]))
        egru.threshold_l1.fill_(3.0)
        cell.threshold.copy_(torch.tensor([1.5, -0.1, 0.3, 0.9]))
        w = net["lin"].weight.clone()
    assert utils.clamp_thresholds_(net) is net
    torch.testing.assert_close(egru.threshold_l0.detach(), torch.tensor([0.0, 0.5, 1.0, 0.2]))
    torch.testing.assert_close(egru.threshold_l1.detach(), torch.ones(4))
    torch.testing.assert_close(cell.threshold.detach(), torch.tensor([1.0, 0.0, 0.3, 0.9]))
    assert leaky.threshold.item() == 2.5  # an snnTorch neuron's threshold is not an EGRU threshold
    torch.testing.assert_close(net["lin"].weight, w)
    utils.clamp_thresholds_(egru, -0.5, 0.5)
    assert egru.threshold_l1.max() == 0.5


def test_auto_backend_and_unknown_backend_name():
    m = se.EGRU(3, 4)
    assert m.backend == "auto"
    with pytest.raises(ValueError, match=r"backend must be 'auto' or one of .*'reference'.*got 'nope'"):
        se.EGRU(3, 4, backend="nope")


@pytest.mark.parametrize("backend", backend_names())
def test_float32_backend_agrees_with_float64_reference(backend):
    """float32 results agree with a float64 run of the same model (within float32 rounding)."""
    torch.manual_seed(0)
    m = se.EGRU(5, 7, num_layers=2, backend=backend)
    randomize_(m, 3)
    x = torch.randn(9, 4, 5, generator=torch.Generator().manual_seed(1))
    skip_if_unavailable(backend, x, m)
    m64 = se.EGRU(5, 7, num_layers=2, backend="reference").double()
    m64.load_state_dict(m.state_dict())
    out, st, rec = m(x, return_internals=True)
    out64, st64, rec64 = m64(x.double(), return_internals=True)
    assert torch.equal(rec.o.double(), rec64.o)
    torch.testing.assert_close(out.double(), out64, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("batch_first", [False, True])
def test_packed_sequence_equals_per_sequence_runs_and_nn_gru(batch_first):
    from torch.nn.utils.rnn import pack_sequence, pad_packed_sequence

    torch.manual_seed(0)
    egru = se.EGRU(3, 7, num_layers=2, batch_first=batch_first, thr_mean=0.1).double()
    lengths = [5, 9, 2, 7]
    seqs = [torch.randn(n, 3, dtype=torch.float64) for n in lengths]
    packed = pack_sequence(seqs, enforce_sorted=False)
    out, state = egru(packed)
    assert isinstance(out, torch.nn.utils.rnn.PackedSequence)
    assert torch.equal(out.batch_sizes, packed.batch_sizes) and torch.equal(out.sorted_indices, packed.sorted_indices)
    padded, out_len = pad_packed_sequence(out, batch_first=batch_first)
    assert out_len.tolist() == lengths
    events = 0.0
    for b, s in enumerate(seqs):
        ref_out, ref_state = egru(s)  # unbatched run of that sequence alone
        got = padded[b, : len(s)] if batch_first else padded[: len(s), b]
        torch.testing.assert_close(got, ref_out, rtol=1e-12, atol=1e-12)
        for f in ("y", "c", "trace"):
            torch.testing.assert_close(getattr(state, f)[:, b], getattr(ref_state, f), rtol=1e-12, atol=1e-12)
        events += ref_out.ne(0).double().mean().item()
    assert 0.05 < events / len(seqs) < 0.95
    # torch.nn.GRU's habit: EGRU.from_gru on packed input equals the GRU on the same packed input
    gru = torch.nn.GRU(3, 7, num_layers=2, batch_first=batch_first).double()
    from_gru = se.EGRU.from_gru(gru)
    g_out, g_h = gru(packed)
    e_out, e_state = from_gru(packed)
    torch.testing.assert_close(e_out.data, g_out.data, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(e_state.y, g_h, rtol=1e-12, atol=1e-12)


def test_autocast_linear_into_egru_is_accepted_like_nn_gru():
    # nn.GRU takes the bfloat16 output of an autocast Linear; so does EGRU (recurrence in float32)
    torch.manual_seed(0)
    lin, rnn = torch.nn.Linear(4, 8), se.EGRU(8, 16, thr_mean=0.1)
    x = torch.randn(10, 3, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = lin(x)
        out, _ = rnn(h)
    assert h.dtype == torch.bfloat16 and out.dtype == torch.float32
    ref, _ = rnn(h.float())  # the same computation on the rounded input, outside autocast
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    assert 0 < out.ne(0).float().mean() < 1


def test_clamp_thresholds_covers_the_norse_flavour():
    from snntorch_egru.norse import EGRURecurrent, EGRURecurrentCell

    net = torch.nn.ModuleList([EGRURecurrentCell(3, 4), EGRURecurrent(3, 4)])
    with torch.no_grad():
        for m in net:
            m.threshold.copy_(torch.tensor([-1.0, 0.5, 2.0, 0.2]))
    utils.clamp_thresholds_(net)
    for m in net:
        torch.testing.assert_close(m.threshold.detach(), torch.tensor([0.0, 0.5, 1.0, 0.2]))
