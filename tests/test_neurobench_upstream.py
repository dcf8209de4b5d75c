"""NeuroBench's *own* wrappers (``neurobench.models.TorchModel`` / ``SNNTorchModel``) and metric
``ConnectionSparsity`` on EGRU networks, and the Norse flavour through the package's wrapper: the
numbers equal the package's wrapper, the package's own counters (``metrics.track``) and counts
taken from the recorded events."""

from __future__ import annotations

import copy

import pytest
import torch

pytest.importorskip("neurobench")

import snntorch as snn  # noqa: E402
from neurobench.benchmarks import Benchmark  # noqa: E402
from neurobench.metrics.static import ConnectionSparsity as NBConnectionSparsity  # noqa: E402
from neurobench.metrics.workload import ActivationSparsity, MembraneUpdates, SynapticOperations  # noqa: E402
from neurobench.models import SNNTorchModel as NBSNNTorchModel  # noqa: E402
from neurobench.models import TorchModel as NBTorchModel  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import snntorch_egru as se  # noqa: E402
from snntorch_egru import metrics, registration  # noqa: E402
from snntorch_egru.neurobench import ConnectionSparsity, SNNTorchModel, TorchModel  # noqa: E402
from snntorch_egru.norse import EGRURecurrent, EGRURecurrentCell  # noqa: E402

N, T, I, H, C = 6, 10, 4, 12, 3
WORKLOAD = [ActivationSparsity, SynapticOperations, MembraneUpdates]


def _loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(N, T, I, generator=g), torch.zeros(N)), batch_size=4)


class SeqNet(torch.nn.Module):
    """``rnn`` over ``[T, B, I]`` (EGRU or the Norse layer), readout summed over time."""

    def __init__(self, rnn: torch.nn.Module):
        super().__init__()
        self.rnn, self.fc = rnn, torch.nn.Linear(H, C)

    def forward(self, x):  # x: [B, T, I]
        return self.fc(self.rnn(x.transpose(0, 1))[0]).sum(0)


class StepNet(torch.nn.Module):
    """The Norse cell stepped inside ``forward`` (state passed explicitly)."""

    def __init__(self, cell: torch.nn.Module):
        super().__init__()
        self.cell, self.fc = cell, torch.nn.Linear(H, C)

    def forward(self, x):
        state, outs = None, []
        for t in range(x.shape[1]):
            y, state = self.cell(x[:, t], state)
            outs.append(self.fc(y))
        return torch.stack(outs).sum(0)


def _egru(seed: int = 1) -> se.EGRU:
    torch.manual_seed(seed)
    rnn = se.EGRU(I, H, thr_mean=0.2)
    with torch.no_grad():
        rnn.bias_ih_l0.normal_(0.0, 0.5)
    return rnn


def _norse_like(rnn: se.EGRU, cls) -> torch.nn.Module:
    n = cls(I, H)
    n.load_state_dict({k[:-3]: v for k, v in rnn.state_dict().items()})  # weight_ih_l0 -> weight_ih ...
    return n


def _run(wrapper, net, metrics_=WORKLOAD, static=()) -> dict:
    return Benchmark(wrapper(net), _loader(), [], [], [list(static), list(metrics_)]).run(quiet=True)


def _products(w: torch.Tensor, x: torch.Tensor) -> int:
    return int(((x != 0).reshape(-1, x.shape[-1]).sum(0) * (w != 0).sum(0)).sum())


def test_neurobench_own_torch_model_counts_egru_like_the_recorded_events():
    net = SeqNet(_egru()).eval()
    got = _run(NBTorchModel, net, static=[NBConnectionSparsity])
    # independent count from the recorded events: 3H per non-zero input and previous event, C per event
    macs = dense = zeros = events = 0
    with torch.no_grad():
        for x, _ in _loader():
            xt = x.transpose(0, 1)
            _, _, rec = net.rnn(xt, return_internals=True)
            y = rec.y[0]
            y_prev = torch.cat([torch.zeros_like(y[:1]), y[:-1]])
            macs += 3 * H * (int((xt != 0).sum()) + int((y_prev != 0).sum())) + _products(net.fc.weight, y)
            dense += y.shape[0] * y.shape[1] * (3 * H * (I + H) + C * H)
            zeros += int((y == 0).sum())
            events += y.numel()
    syn = got["SynapticOperations"]
    assert syn["Dense"] == pytest.approx(dense / N, rel=1e-12)
    assert syn["Effective_MACs"] == pytest.approx(macs / N, rel=1e-12)
    assert got["ActivationSparsity"] == pytest.approx(zeros / events, rel=1e-12)
    assert 0 < got["ActivationSparsity"] < 1
    # ... which is what the package's own wrapper and metric report
    ours = _run(TorchModel, copy.deepcopy(net), static=[ConnectionSparsity])
    assert got == ours


def test_neurobench_own_wrappers_equal_the_package_counters():
    net = SeqNet(_egru()).eval()
    bench = Benchmark(NBTorchModel(net), _loader(), [], [], [[], WORKLOAD])
    with metrics.track(net) as tracker:
        got = bench.run(quiet=True)
    s = tracker.summary()
    with torch.no_grad():
        readout = sum(_products(net.fc.weight, net.rnn(x.transpose(0, 1))[0]) for x, _ in _loader()) / N
    assert got["SynapticOperations"]["Effective_MACs"] - readout == pytest.approx(s["effective_macs"], rel=1e-12)
    assert got["SynapticOperations"]["Dense"] - T * C * H == pytest.approx(s["dense_macs"], rel=1e-12)
    assert got["ActivationSparsity"] == pytest.approx(1.0 - s["activity"], rel=1e-12)


def _cell_net() -> torch.nn.Sequential:
    torch.manual_seed(5)
    net = torch.nn.Sequential(
        se.EGRUCell(I, H, init_hidden=True, thr_mean=0.2),
        torch.nn.Linear(H, C),
        snn.Leaky(beta=0.8, threshold=0.3, init_hidden=True, output=True),
    ).eval()
    with torch.no_grad():
        net[0].bias_ih.normal_(0.0, 0.5)
    return net


def test_neurobench_own_snntorch_model_counts_and_resets_egru_cells():
    got = _run(NBSNNTorchModel, _cell_net())
    ours = _run(SNNTorchModel, _cell_net())
    assert got == ours
    assert got["SynapticOperations"]["Dense"] > T * C * H  # not only the Linear readout


@pytest.mark.parametrize("wrapper", [NBTorchModel, TorchModel], ids=["neurobench", "package"])
@pytest.mark.parametrize("kind", ["layer", "cell"])
def test_norse_flavour_counts_like_the_same_egru(kind, wrapper):
    rnn = _egru()
    norse = SeqNet(_norse_like(rnn, EGRURecurrent)) if kind == "layer" else StepNet(_norse_like(rnn, EGRURecurrentCell))
    ref = SeqNet(rnn)
    ref.fc.load_state_dict(norse.fc.state_dict())
    got = _run(wrapper, norse.eval(), static=[NBConnectionSparsity])
    want = _run(TorchModel, ref.eval(), static=[ConnectionSparsity])
    assert got == want
    assert got["MembraneUpdates"] > 0 and got["SynapticOperations"]["Dense"] > T * C * H


def test_norse_layer_outputs_and_settings_are_left_alone():
    layer = _norse_like(_egru(), EGRURecurrent).eval()
    x = torch.randn(T, 2, I)
    y0, s0 = layer(x)
    model = TorchModel(SeqNet(layer))
    model.register_hooks()
    y1, s1 = layer(x)
    assert not layer.record_states  # switched on only inside the hooked call
    assert torch.equal(y0, y1) and all(torch.equal(a, b) for a, b in zip(s0, s1)) and s1.y.shape == (2, H)
    layer.record_states = True
    y2, s2 = layer(x[:, 0])  # unbatched, every step's state asked for
    assert layer.record_states and s2.c.shape == (T, H) and y2.shape == (T, H)
    model.cleanup_hooks()


def test_unregister_restores_neurobench_and_shows_the_undercount():
    net = SeqNet(_egru()).eval()
    full = _run(NBTorchModel, net)["SynapticOperations"]["Dense"]
    registration.unregister()
    try:
        blind = _run(NBTorchModel, net)["SynapticOperations"]["Dense"]
        assert blind == T * C * H  # NeuroBench alone sees the readout Linear only
    finally:
        registration.register()
    assert _run(NBTorchModel, net)["SynapticOperations"]["Dense"] == full > blind


class RnnOnly(torch.nn.Module):
    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x):
        return self.rnn(x.transpose(0, 1))[0].sum(0)


@pytest.mark.parametrize("cls", [se.EGRU, EGRURecurrent])
def test_two_live_benchmarks_on_one_network_both_count(cls):
    # A Benchmark keeps its hooks until it is garbage-collected: a second one on the same EGRU must nest.
    # (No Linear here: NeuroBench's own Linear hooks do not survive two live benchmarks on one layer.)
    rnn = _egru() if cls is se.EGRU else _norse_like(_egru(), EGRURecurrent)
    net = RnnOnly(rnn).eval()
    first = Benchmark(TorchModel(net), _loader(), [], [], [[], WORKLOAD])
    a = first.run(quiet=True)
    second = Benchmark(NBTorchModel(net), _loader(), [], [], [[], WORKLOAD])
    assert second.run(quiet=True) == a
    assert a["SynapticOperations"]["Dense"] == T * 3 * H * (I + H)
    out = rnn(torch.randn(T, 2, I))  # the user's call still gets what it asked for: (y, final state)
    assert len(out) == 2 and out[1].y.shape[-2:] == (2, H) and not getattr(rnn, "record_states", False)
