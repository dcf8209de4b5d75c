"""NeuroBench adapter: NeuroBench's own Benchmark and metrics on EGRU networks, every number
checked against counts taken directly from the recorded events, states and weights."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch

pytest.importorskip("neurobench")

import snntorch as snn  # noqa: E402
from neurobench.benchmarks import Benchmark  # noqa: E402
from neurobench.metrics.static import ConnectionSparsity as NBConnectionSparsity  # noqa: E402
from neurobench.metrics.static import Footprint, ParameterCount  # noqa: E402
from neurobench.metrics.workload import (  # noqa: E402
    ActivationSparsity,
    ActivationSparsityByLayer,
    MembraneUpdates,
    SynapticOperations,
)
from neurobench.models import TorchModel as NBTorchModel  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import snntorch_egru as se  # noqa: E402
from snntorch_egru import metrics  # noqa: E402
from snntorch_egru.neurobench import ConnectionSparsity, SNNTorchModel, TorchModel, UnrolledGRU  # noqa: E402

N, T, I, H, C = 7, 12, 5, 16, 3  # samples (batches of 3: 3 + 3 + 1), steps, inputs, units, classes
STATIC = [Footprint, ParameterCount, ConnectionSparsity]
WORKLOAD = [ActivationSparsity, ActivationSparsityByLayer, SynapticOperations, MembraneUpdates]


def _loader(binary: bool = False, seed: int = 0) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(N, T, I, generator=g) < 0.3).float() if binary else torch.randn(N, T, I, generator=g)
    return DataLoader(TensorDataset(x, torch.zeros(N, dtype=torch.long)), batch_size=3)


def _prune_(w: torch.Tensor, frac: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w[torch.rand(w.shape, generator=g) < frac] = 0.0


def _products(w: torch.Tensor, x: torch.Tensor) -> int:
    """Multiplications with a non-zero weight and a non-zero input of ``x @ w.T``: for every
    input feature, its non-zero count over all samples and steps times the non-zero weights
    in its column."""
    per_feature = (x != 0).reshape(-1, x.shape[-1]).sum(0)
    per_column = (w != 0).sum(0)
    return int((per_feature * per_column).sum())


def _membrane_updates(c_prev: list, c_post: list) -> int:
    """NeuroBench's rule for one neuron layer in one batch: every unit counts at the first
    step, later only the units whose membrane (EGRU: internal state c) changed."""
    n = c_post[0].numel()
    for a, b in zip(c_prev[1:], c_post[1:]):
        n += int((a != b).sum())
    return n


def _connection_stats(tensors) -> tuple[int, int]:
    return sum(int((t == 0).sum()) for t in tensors), sum(t.numel() for t in tensors)


def _static_expected(net: torch.nn.Module, connection_tensors) -> dict:
    zeros, total = _connection_stats(connection_tensors)
    return {
        "ParameterCount": sum(p.numel() for p in net.parameters()),
        "Footprint": sum(p.numel() * p.element_size() for p in net.parameters())
        + sum(b.numel() * b.element_size() for b in net.buffers()),
        "ConnectionSparsity": round(zeros / total, 4),
    }


# ------------------------------------------------------------------------------------------
# EGRU sequence network (TorchModel)


class SeqNet(torch.nn.Module):
    def __init__(self, batch_first: bool = True, num_layers: int = 2, hidden: int = H):
        super().__init__()
        self.rnn = se.EGRU(I, hidden, num_layers=num_layers, batch_first=batch_first, thr_mean=0.2)
        self.fc = torch.nn.Linear(hidden, C)

    def forward(self, x):  # x: [B, T, I]
        if self.rnn.batch_first:
            out = self.rnn(x)[0]
        else:
            out = self.rnn(x.transpose(0, 1))[0].transpose(0, 1)
        return self.fc(out).mean(1)


def _seq_net(seed: int = 1, prune: bool = True, **kw) -> SeqNet:
    torch.manual_seed(seed)
    net = SeqNet(**kw)
    with torch.no_grad():
        for k in range(net.rnn.num_layers):  # trained-looking biases, so the units are active
            getattr(net.rnn, f"bias_ih_l{k}").normal_(0.0, 0.5)
    if prune:
        _prune_(net.rnn.weight_ih_l0, 0.3, 2)
        _prune_(net.rnn.weight_hh_l0, 0.5, 3)
        _prune_(net.fc.weight, 0.25, 4)
    return net.eval()


def _seq_expected(net: SeqNet, loader: DataLoader) -> dict:
    """All workload numbers recomputed from the layer's recorded events and the weights."""
    rnn, L = net.rnn, net.rnn.num_layers
    zeros = events = macs = dense = 0
    per_layer = {f"rnn.l{k}": [0, 0] for k in range(L)}
    mem = 0
    with torch.no_grad():
        for x, _ in loader:
            B = x.shape[0]
            xin = x if rnn.batch_first else x.transpose(0, 1)
            _, _, rec = rnn(xin, return_internals=True)
            y, c = (rec.y, rec.c) if not rnn.batch_first else (rec.y.transpose(1, 2), rec.c.transpose(1, 2))
            xt = x.transpose(0, 1)  # [T, B, I]
            assert 0 < rec.o.mean() < 1  # real activity: neither silent nor saturated
            for k in range(L):
                p = rnn.layer_tensors(k)
                layer_in = xt if k == 0 else y[k - 1]
                y_prev = torch.cat([torch.zeros(1, B, rnn.hidden_size), y[k][:-1]])
                c_prev = torch.cat([torch.zeros(1, B, rnn.hidden_size), c[k][:-1]])
                macs += _products(p["weight_ih"], layer_in) + _products(p["weight_hh"], y_prev)
                dense += T * B * 3 * rnn.hidden_size * (layer_in.shape[-1] + rnn.hidden_size)
                nz = int((y[k] != 0).sum())
                zeros += y[k].numel() - nz
                events += y[k].numel()
                per_layer[f"rnn.l{k}"][0] += y[k].numel() - nz
                per_layer[f"rnn.l{k}"][1] += y[k].numel()
                mem += _membrane_updates(list(c_prev), list(c[k]))
            macs += _products(net.fc.weight, y[-1])  # the readout sees the graded events: MACs
            dense += T * B * C * rnn.hidden_size
    return {
        "ActivationSparsity": zeros / events,
        "ActivationSparsityByLayer": {k: z / n for k, (z, n) in per_layer.items()},
        "SynapticOperations": {"Effective_MACs": macs / N, "Effective_ACs": 0.0, "Dense": dense / N},
        "MembraneUpdates": mem / N,
    }


def _check(results: dict, expected: dict) -> None:
    for key, value in expected.items():
        got = results[key]
        if isinstance(value, dict):
            assert got.keys() == value.keys(), key
            for k in value:
                assert got[k] == pytest.approx(value[k], rel=1e-12, abs=1e-12), (key, k)
        else:
            assert got == pytest.approx(value, rel=1e-12, abs=1e-12), key


@pytest.mark.parametrize("batch_first", [True, False])
def test_benchmark_on_egru_network_matches_recorded_events(batch_first):
    net = _seq_net(batch_first=batch_first)
    loader = _loader()
    results = Benchmark(TorchModel(net), loader, [], [], [STATIC, WORKLOAD]).run(quiet=True)
    rnn = net.rnn
    conn = [t for k in range(2) for n, t in rnn.layer_tensors(k).items() if n != "threshold"] + [net.fc.weight]
    _check(results, _static_expected(net, conn))
    _check(results, _seq_expected(net, loader))
    # pruning is visible: fewer products than 3H per non-zero input / event
    assert 0 < results["ConnectionSparsity"] < 1


def test_egru_numbers_agree_with_metrics_track_on_the_same_run():
    net = _seq_net(prune=False)
    loader = _loader()
    bench = Benchmark(TorchModel(net), loader, [], [], [[], WORKLOAD])
    with metrics.track(net) as tracker:
        results = bench.run(quiet=True)
    s = tracker.summary()
    # activation sparsity of the events = 1 - activity (an event is a non-zero y)
    assert results["ActivationSparsity"] == pytest.approx(1.0 - s["activity"], rel=1e-12)
    for layer in s["layers"]:
        assert results["ActivationSparsityByLayer"][f"rnn.l{layer['layer']}"] == pytest.approx(
            1.0 - layer["activity"], rel=1e-12
        )
    # with dense weights, NeuroBench's effective MACs = track's; the readout Linear is extra
    with torch.no_grad():
        readout = sum(_products(net.fc.weight, net.rnn(x, return_internals=True)[2].y[-1]) for x, _ in loader) / N
    synops = results["SynapticOperations"]
    assert synops["Effective_MACs"] - readout == pytest.approx(s["effective_macs"], rel=1e-12)
    assert synops["Dense"] - T * C * H == pytest.approx(s["dense_macs"], rel=1e-12)


def test_pruned_weights_lower_neurobench_counts_below_the_dense_weight_formula():
    # metrics.track's effective MACs, 3H (nnz(x) + nnz(y)), assume every weight is non-zero;
    # NeuroBench also skips zero weights, so on a pruned model its EGRU count is lower.
    net = _seq_net(prune=True)
    loader = _loader()
    bench = Benchmark(TorchModel(net), loader, [], [], [[], [SynapticOperations]])
    with metrics.track(net) as tracker:
        results = bench.run(quiet=True)
    with torch.no_grad():
        readout = sum(_products(net.fc.weight, net.rnn(x, return_internals=True)[2].y[-1]) for x, _ in loader) / N
    egru_part = results["SynapticOperations"]["Effective_MACs"] - readout
    assert 0 < egru_part < 0.9 * tracker.summary()["effective_macs"]


def test_hooks_leave_outputs_alone_and_are_removed():
    net = _seq_net()
    x = torch.randn(2, T, I)
    ref = net(x)
    model = TorchModel(net)
    bench = Benchmark(model, _loader(), [], [], [[], WORKLOAD])
    assert len(net.rnn._forward_hooks) == 1
    assert torch.equal(model(x), ref)  # return_internals is requested internally and stripped
    out, state, rec = net.rnn(x, return_internals=True)  # a caller's own request is kept
    assert rec.y.shape == (2, 2, T, H)
    model.reset_hooks()
    bench.workload_metric_manager.cleanup_hooks(model)
    assert len(net.rnn._forward_hooks) == 0 and len(net.rnn._forward_pre_hooks) == 0
    assert torch.equal(net(x), ref)


def test_explicit_initial_state_is_used_for_the_recurrent_count():
    class StateNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = se.EGRU(I, H, batch_first=True)

        def forward(self, x):
            y0 = torch.zeros(1, x.shape[0], H)
            y0[..., :4] = 0.5  # 4 "events" at t = 0 for every sample
            return self.rnn(x, se.EGRUState(y0, y0.clone(), torch.zeros_like(y0)))[0].sum(1)

    net = StateNet().eval()
    with torch.no_grad():
        net.rnn.weight_ih_l0.zero_()  # input product: no non-zero weights at all
    x = torch.randn(1, 1, I)
    results = Benchmark(
        TorchModel(net), DataLoader(TensorDataset(x, torch.zeros(1)), batch_size=1), [], [], [[], [SynapticOperations]]
    ).run(quiet=True)
    assert results["SynapticOperations"]["Effective_MACs"] == 4 * 3 * H  # one step, four events
    assert results["SynapticOperations"]["Dense"] == 3 * H * (I + H)


def test_training_mode_with_dropout_is_refused():
    torch.manual_seed(0)
    net = torch.nn.Sequential()
    net.rnn = se.EGRU(I, H, num_layers=2, dropout=0.5)
    model = TorchModel(net)
    bench = Benchmark(model, _loader(), [], [], [[], [ActivationSparsity]])  # registers the hooks
    net.train()
    with pytest.raises(RuntimeError, match="eval mode"):
        net.rnn(torch.randn(T, 2, I))
    del bench


# ------------------------------------------------------------------------------------------
# EGRUCell network (SNNTorchModel)


def _cell_net(seed: int = 5) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        se.EGRUCell(I, H, init_hidden=True, thr_mean=0.2),
        torch.nn.Linear(H, C),
        snn.Leaky(beta=0.8, threshold=0.3, init_hidden=True, output=True),
    )
    with torch.no_grad():
        net[0].bias_ih.normal_(0.0, 0.5)
    _prune_(net[0].weight_hh, 0.4, 6)
    return net.eval()


def _cell_expected(net: torch.nn.Sequential, loader: DataLoader, binary: bool) -> dict:
    """Replay the network step by step on a copy and count from the recorded tensors."""
    net = copy.deepcopy(net)
    cell, fc, leaky = net[0], net[1], net[2]
    zeros = acts = macs = acs = dense = mem = 0
    by_layer = {"0": [0, 0], "2": [0, 0]}
    with torch.no_grad():
        for x, _ in loader:
            se.utils.reset(net)
            B = x.shape[0]
            y_prev = torch.zeros(B, H)
            c_prev_l, c_post_l, m_prev_l, m_post_l = [], [], [], []
            for t in range(T):
                c_before, m_before = (cell.c if cell.c.shape == (B, H) else torch.zeros(B, H)), leaky.mem
                spk, _ = net(x[:, t])
                y, c = cell.y, cell.c
                in_ops = _products(cell.weight_ih, x[:, t])
                if binary:
                    acs += in_ops
                else:
                    macs += in_ops
                macs += _products(cell.weight_hh, y_prev) + _products(fc.weight, y)
                dense += B * (3 * H * (I + H) + C * H)
                for name, a in (("0", y), ("2", spk)):
                    nz = int((a != 0).sum())
                    zeros += a.numel() - nz
                    acts += a.numel()
                    by_layer[name][0] += a.numel() - nz
                    by_layer[name][1] += a.numel()
                c_prev_l.append(c_before), c_post_l.append(c)
                m_prev_l.append(m_before), m_post_l.append(leaky.mem)
                y_prev = y
            mem += _membrane_updates(c_prev_l, c_post_l) + _membrane_updates(m_prev_l, m_post_l)
    return {
        "ActivationSparsity": zeros / acts,
        "ActivationSparsityByLayer": {k: z / n for k, (z, n) in by_layer.items()},
        "SynapticOperations": {"Effective_MACs": macs / N, "Effective_ACs": acs / N, "Dense": dense / N},
        "MembraneUpdates": mem / N,
    }


@pytest.mark.parametrize("binary", [False, True], ids=["real-input", "spike-input"])
def test_benchmark_on_egru_cell_network_matches_recorded_events(binary):
    net = _cell_net()
    loader = _loader(binary=binary)
    cell = net[0]
    conn = [cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh, net[1].weight]
    static = _static_expected(net, conn)  # before any step: the cells hold no state yet
    expected = _cell_expected(net, loader, binary)
    results = Benchmark(SNNTorchModel(net), loader, [], [], [STATIC, WORKLOAD]).run(quiet=True)
    _check(results, static)
    _check(results, expected)
    assert 0 < results["ActivationSparsityByLayer"]["0"] < 1
    # binary (spike) inputs make the input product accumulate-only, as NeuroBench counts SNNs
    assert (results["SynapticOperations"]["Effective_ACs"] > 0) == binary


def test_snntorch_model_resets_egru_cells_before_each_batch():
    net = _cell_net()
    x = torch.randn(2, T, I)
    fresh = copy.deepcopy(net)
    model = SNNTorchModel(net)
    first = model(x)
    c_first = net[0].c.detach().clone()
    second = model(x)  # NeuroBench's own wrapper would continue from the old EGRU state
    assert torch.equal(second, first) and torch.equal(net[0].c, c_first)
    se.utils.reset(fresh)
    replay = torch.stack([fresh(x[:, t])[0] for t in range(T)], 1)
    assert torch.equal(replay, first) and torch.equal(fresh[0].c, c_first)


def test_egru_added_as_activation_module_does_not_break_the_metrics():
    net = _cell_net()
    expected = _cell_expected(net, _loader(), False)["ActivationSparsity"]
    model = SNNTorchModel(net)
    model.add_activation_module(se.EGRUCell)  # what NeuroBench's docs suggest for custom neurons
    r = Benchmark(model, _loader(), [], [], [[], [ActivationSparsity]]).run(quiet=True)
    assert r["ActivationSparsity"] == pytest.approx(expected, rel=1e-12)


# ------------------------------------------------------------------------------------------
# connection sparsity, the GRU baseline


def test_connection_sparsity_equals_neurobench_without_egru():
    torch.manual_seed(0)

    class Mixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 6)
            self.block = torch.nn.Sequential(torch.nn.GRUCell(6, 5), torch.nn.ReLU())
            self.gru = torch.nn.GRU(5, 7, num_layers=2)

    net = Mixed()
    for i, p in enumerate(net.parameters()):
        _prune_(p, 0.2 + 0.05 * i, i)
    model = NBTorchModel(net)
    assert ConnectionSparsity()(model) == NBConnectionSparsity()(model)
    with pytest.raises(ValueError, match="no connection layer"):
        ConnectionSparsity()(NBTorchModel(torch.nn.Sequential(torch.nn.ReLU())))


@pytest.mark.parametrize("batch_first", [True, False])
def test_unrolled_gru_equals_torch_gru(batch_first):
    torch.manual_seed(0)
    gru = torch.nn.GRU(I, H, num_layers=2, batch_first=batch_first)
    unrolled = UnrolledGRU(gru)
    x = torch.randn(3, T, I) if batch_first else torch.randn(T, 3, I)
    h0 = torch.randn(2, 3, H)
    for a, b in zip(unrolled(x, h0), gru(x, h0)):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    for a, b in zip(unrolled(x[0]), gru(x[0])):  # unbatched
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    with pytest.raises(TypeError, match="torch.nn.GRU"):
        UnrolledGRU(torch.nn.LSTM(I, H))
    with pytest.raises(ValueError, match="x must be"):
        unrolled(torch.randn(T, 3, I + 1))


def test_gru_baseline_alongside_egru():
    """The table of the guide: an EGRU and the same-size GRU, both through NeuroBench."""
    loader = _loader()
    egru_net = _seq_net(prune=False)
    torch.manual_seed(1)
    gru_net = SeqNet()
    gru_net.rnn = UnrolledGRU(torch.nn.GRU(I, H, num_layers=2, batch_first=True))
    gru_net.eval()
    e = Benchmark(TorchModel(egru_net), loader, [], [], [STATIC, WORKLOAD]).run(quiet=True)
    g = Benchmark(NBTorchModel(gru_net), loader, [], [], [STATIC, WORKLOAD]).run(quiet=True)
    # same weights, plus one threshold per unit and layer
    assert e["ParameterCount"] - g["ParameterCount"] == 2 * H
    # NeuroBench's GRUCell count adds 3H element-wise gate products per layer and step
    assert g["SynapticOperations"]["Dense"] - e["SynapticOperations"]["Dense"] == 2 * T * 3 * H
    assert g["SynapticOperations"]["Dense"] == T * (3 * H * (I + H) + 3 * H + 3 * H * 2 * H + 3 * H + C * H)
    # the GRU's hidden state is dense and never hooked; the EGRU is event-sparse
    assert g["ActivationSparsity"] == 0.0 and e["ActivationSparsity"] > 0.5
    assert e["SynapticOperations"]["Effective_MACs"] < 0.5 * g["SynapticOperations"]["Effective_MACs"]


def test_import_snntorch_egru_does_not_import_neurobench():
    code = "import sys, snntorch_egru; print('neurobench' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_unbatched_calls_count_like_batched_ones():
    class PerSample(SeqNet):
        def forward(self, x):  # the EGRU called once per sample on an unbatched [T, I] sequence
            return torch.stack([self.fc(self.rnn(s)[0]).mean(0) for s in x])

    batched = _seq_net(batch_first=False)
    unbatched = PerSample(batch_first=False)
    unbatched.load_state_dict(batched.state_dict())
    unbatched.eval()
    loader = _loader()
    run = lambda net: Benchmark(TorchModel(net), loader, [], [], [[], WORKLOAD]).run(quiet=True)  # noqa: E731
    a, b = run(batched), run(unbatched)
    for key in ("ActivationSparsity", "SynapticOperations", "ActivationSparsityByLayer"):
        assert a[key] == pytest.approx(b[key], rel=1e-6), key
    # NeuroBench counts every unit at the first step of a batch, and a unit at a later step if its
    # membrane changed; per-sample calls sit one after the other in the same hook, so sample 2's first
    # step counts if c left 0 -- here every unit does (non-zero biases), so the counts agree
    assert b["MembraneUpdates"] == a["MembraneUpdates"]


def test_bad_arguments_are_named():
    with pytest.raises(TypeError, match="net must be a torch.nn.Module"):
        TorchModel(lambda x: x)
    with pytest.raises(TypeError, match="custom_forward must be a bool"):
        SNNTorchModel(torch.nn.Linear(2, 2), custom_forward="yes")
    with pytest.raises(ValueError, match="h0 must be"):
        UnrolledGRU(torch.nn.GRU(I, H))(torch.randn(T, 2, I), torch.zeros(1, 3, H))
    # training mode is fine where it changes nothing: dropout of a single layer is unused
    net = torch.nn.Sequential()
    net.rnn = se.EGRU(I, H, dropout=0.5)
    bench = Benchmark(TorchModel(net), _loader(), [], [], [[], [ActivationSparsity]])
    net.train()
    net.rnn(torch.randn(T, 2, I))
    del bench
