"""NIR export / import of EGRU models (issue 6).

Round trips go through a real HDF5 file: export -> write -> read -> import, and the
imported step module is compared step by step with the original model (outputs and
states). The EGRU node module is also checked against the independent float64
reference in ``egru_reference.py``.
"""

from __future__ import annotations

import warnings

import h5py
import nir
import numpy as np
import pytest
import snntorch as snn
import torch
from conftest import randomize_
from egru_reference import ref_heaviside_nograd, ref_layer
from torch import nn

import snntorch_egru as se
from snntorch_egru import nir as senir
from snntorch_egru.state import EGRUState

T = 24
B = 3


def _roundtrip(graph: nir.NIRGraph, tmp_path) -> tuple[nir.NIRGraph, senir.NIRStepModule]:
    path = tmp_path / "model.nir"
    senir.write(path, graph)
    back = senir.read(path)
    return back, senir.import_from_nir(path)


def _egru_nodes(graph: nir.NIRGraph, prefix: str = "") -> dict:
    out = {}
    for name, node in graph.nodes.items():
        if isinstance(node, senir.EGRU):
            out[prefix + name] = node
        elif isinstance(node, nir.NIRGraph):
            out.update(_egru_nodes(node, prefix + name + "/"))
    return out


def _inputs(seed: int, *shape: int, scale: float = 1.5) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------
# Acceptance round trips
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reset,zoneout", [("subtract", 0.0), ("zero", 0.3), ("none", 0.0)])
def test_roundtrip_linear_egrucell_linear(tmp_path, reset, zoneout):
    torch.manual_seed(1)
    cell = se.EGRUCell(6, 10, init_hidden=True, reset_mechanism=reset, zoneout=zoneout)
    randomize_(cell, seed=3)
    with torch.no_grad():
        cell.threshold[0] = 1.7  # outside [0, 1]: the export must carry the clamped value
    net = nn.Sequential(nn.Linear(5, 6), cell, nn.Linear(10, 4)).eval()
    x = _inputs(0, T, B, 5)

    graph = export_to_nir_checked(net, x[0])
    back, step = _roundtrip(graph, tmp_path)
    egru_name = next(iter(_egru_nodes(back)))
    node = back.nodes[egru_name]
    assert node.reset == reset and node.zoneout == pytest.approx(zoneout) and node.threshold[0] == 1.0

    se.utils.reset(net)
    state = None
    events = []
    for t in range(T):
        y_ref = net(x[t])
        y, state = step(x[t], state)
        torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-6)
        s = state[egru_name]
        assert isinstance(s, EGRUState)
        torch.testing.assert_close(s.y, cell.y, rtol=0, atol=1e-6)
        torch.testing.assert_close(s.c, cell.c, rtol=0, atol=1e-6)
        torch.testing.assert_close(s.trace, cell.trace, rtol=0, atol=1e-6)
        events.append((cell.y != 0).float())
    activity = torch.stack(events).mean().item()
    assert 0.0 < activity < 1.0


def export_to_nir_checked(net: nn.Module, x0: torch.Tensor) -> nir.NIRGraph:
    """Export and check the graph is well formed (types inferred, one Input and Output)."""
    graph = senir.export_to_nir(net, x0)
    kinds = [type(n).__name__ for n in graph.nodes.values()]
    assert kinds.count("Input") == 1 and kinds.count("Output") == 1
    return graph


class _SeqEGRU(nn.Module):
    def __init__(self, bias: bool = True) -> None:
        super().__init__()
        self.egru = se.EGRU(5, 9, num_layers=2, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.egru(x)[0]


@pytest.mark.parametrize("bias", [True, False])
def test_roundtrip_two_layer_egru(tmp_path, bias):
    model = _SeqEGRU(bias).eval()
    randomize_(model.egru, seed=7)
    x = _inputs(1, T, B, 5)
    graph = export_to_nir_checked(model, x[0])
    assert isinstance(graph.nodes["egru"], nir.NIRGraph)
    assert graph.nodes["egru"].edges == [("input", "l0"), ("l0", "l1"), ("l1", "output")]
    back, step = _roundtrip(graph, tmp_path)
    assert set(back.nodes) == set(graph.nodes) and sorted(back.edges) == sorted(graph.edges)
    sub = back.nodes["egru"]
    assert isinstance(sub.nodes["l0"], senir.EGRU) and isinstance(sub.nodes["l1"], senir.EGRU)
    assert sub.metadata["num_layers"] == 2

    with torch.no_grad():
        out, _, rec = model.egru(x, return_internals=True)
    state = None
    for t in range(T):
        y, state = step(x[t], state)
        torch.testing.assert_close(y, out[t], rtol=0, atol=1e-5)
        for k in range(2):
            s = state["egru"][f"l{k}"]
            torch.testing.assert_close(s.y, rec.y[k, t], rtol=0, atol=1e-5)
            torch.testing.assert_close(s.c, rec.c[k, t], rtol=0, atol=1e-5)
            torch.testing.assert_close(s.trace, rec.trace[k, t], rtol=0, atol=1e-5)
    for k in range(2):
        activity = rec.o[k].mean().item()
        assert 0.0 < activity < 1.0, (k, activity)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_bare_egru_module_export(tmp_path, num_layers):
    """The model is the EGRU module itself (nirtorch's leaf case): still a complete graph."""
    model = se.EGRU(4, 6, num_layers=num_layers).eval()
    randomize_(model, seed=21)
    x = _inputs(10, T, B, 4)
    graph = senir.export_to_nir(model, x[0])
    kinds = sorted(type(n).__name__ for n in graph.nodes.values())
    assert kinds.count("EGRU") == num_layers and {"Input", "Output"} <= set(kinds)
    assert graph.metadata["producer"] == "snntorch_egru"
    _, step = _roundtrip(graph, tmp_path)
    with torch.no_grad():
        out, _, rec = model(x, return_internals=True)
    state = None
    for t in range(T):
        y, state = step(x[t], state)
        torch.testing.assert_close(y, out[t], rtol=0, atol=1e-5)
    assert 0.0 < rec.o.mean().item() < 1.0


class _LeakyEGRULinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lif = snn.Leaky(
            beta=torch.linspace(0.6, 0.95, 7),
            threshold=0.8,
            init_hidden=True,
            reset_mechanism="zero",
            reset_delay=False,
        )
        self.egru = se.EGRU(7, 8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.egru(self.lif(x))[0])


def test_roundtrip_leaky_egru_linear(tmp_path):
    """A sequence-layer EGRU is stepped once per call in the imported module."""
    model = _LeakyEGRULinear().eval()
    randomize_(model.egru, seed=11)
    x = _inputs(2, T, B, 7, scale=1.0).abs()
    graph = export_to_nir_checked(model, x[0])
    assert isinstance(graph.nodes["lif"], nir.LIF) and isinstance(graph.nodes["egru"], senir.EGRU)
    _, step = _roundtrip(graph, tmp_path)

    # Original: the neuron stepped in time, the EGRU over the whole spike sequence, then the readout.
    model.lif.reset_mem()
    spikes, mems = [], []
    with torch.no_grad():
        for t in range(T):
            spikes.append(model.lif(x[t]))
            mems.append(model.lif.mem.clone())
        spk = torch.stack(spikes)
        h, _, rec = model.egru(spk, return_internals=True)
        out = model.fc(h)
    state = None
    for t in range(T):
        y, state = step(x[t], state)
        torch.testing.assert_close(state["lif"]["v"], mems[t], rtol=0, atol=1e-5)
        s = state["egru"]
        torch.testing.assert_close(s.y, rec.y[0, t], rtol=0, atol=1e-5)
        torch.testing.assert_close(s.c, rec.c[0, t], rtol=0, atol=1e-5)
        torch.testing.assert_close(y, out[t], rtol=0, atol=1e-5)
    assert 0.0 < spk.mean().item() < 1.0
    assert 0.0 < rec.o.mean().item() < 1.0


def test_parameters_float32_exact_and_metadata(tmp_path):
    model = _LeakyEGRULinear()
    randomize_(model.egru, seed=5)
    graph = senir.export_to_nir(
        model, torch.rand(2, 7), metadata={"author": "lab", "epochs": 3, "flag": True, "tags": ["a", "bc"]}
    )
    back, _ = _roundtrip(graph, tmp_path)
    node = back.nodes["egru"]
    tensors = model.egru.layer_tensors(0)
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        arr = getattr(node, name)
        assert arr.dtype == np.float32
        assert np.array_equal(arr, tensors[name].detach().numpy())
    assert np.array_equal(node.threshold, tensors["threshold"].detach().clamp(0, 1).numpy())
    assert back.nodes["fc"].weight.dtype == np.float32
    assert np.array_equal(back.nodes["fc"].bias, model.fc.bias.detach().numpy())
    assert np.array_equal(back.nodes["lif"].v_threshold, np.full(7, 0.8, dtype=np.float32))
    assert node.input_type["input"].tolist() == [7] and node.output_type["output"].tolist() == [8]
    # graph metadata, with NIR's HDF5 coercions: int -> np.int64, bool -> np.bool_, list of str -> bytes array
    md = back.metadata
    assert md["producer"] == "snntorch_egru" and md["author"] == "lab"
    assert md["dt"] == 1e-4 and isinstance(md["dt"], np.floating)
    assert md["epochs"] == 3 and isinstance(md["epochs"], np.integer)
    assert md["flag"] == True and isinstance(md["flag"], np.bool_)  # noqa: E712
    assert [t.decode() if isinstance(t, bytes) else t for t in md["tags"]] == ["a", "bc"]
    assert md["egru_spec_version"] == senir.SPEC_VERSION
    # node metadata (training-only hyper-parameters, informational)
    assert node.metadata["dampening_factor"] == pytest.approx(0.7)
    assert bool(node.metadata["threshold_clamped"]) is True


def test_standard_graph_imports_in_snntorch(tmp_path):
    """Without EGRU nodes the graph is stock NIR: snnTorch's own importer runs it identically."""
    from snntorch.import_nir import import_from_nir as snn_import

    torch.manual_seed(4)
    net = nn.Sequential(
        nn.Linear(6, 12),
        snn.Leaky(beta=0.85, threshold=0.5, init_hidden=True, reset_mechanism="zero"),
        nn.Linear(12, 4),
    )
    x = _inputs(3, T, B, 6)
    graph = senir.export_to_nir(net, x[0])
    path = tmp_path / "std.nir"
    senir.write(path, graph)
    stock = nir.read(path)  # stock reader, no registration needed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = snn_import(stock)
    ours = senir.import_from_nir(path)
    spk_all = []
    net[1].register_forward_hook(lambda m, i, o: spk_all.append(o.detach().clone()))
    se.utils.reset(net)
    state_ours = state_theirs = None
    for t in range(T):
        with torch.no_grad():
            ref = net(x[t])
            y_theirs, state_theirs = theirs(x[t], state_theirs)
            y_ours, state_ours = ours(x[t], state_ours)
        torch.testing.assert_close(y_theirs, ref, rtol=0, atol=1e-5)
        torch.testing.assert_close(y_ours, ref, rtol=0, atol=1e-5)
    layer_spikes = torch.stack(spk_all).mean().item()
    assert 0.0 < layer_spikes < 1.0


def test_snntorch_importer_refuses_egru_nodes_loudly_without_registration():
    """A foreign importer must fail, not silently run a different network (registration off)."""
    from snntorch.import_nir import import_from_nir as snn_import

    net = nn.Sequential(nn.Linear(3, 4), se.EGRUCell(4, 5, init_hidden=True))
    graph = senir.export_to_nir(net, torch.zeros(2, 3))
    se.registration.unregister()
    try:
        with pytest.raises(ValueError, match="Unknown node type .*snntorch_egru.nir.EGRU"):
            snn_import(graph)
    finally:
        se.registration.register()
    stepper = snn_import(graph)  # registered: the EGRU node is built (tests/test_registration.py compares values)
    out, _ = stepper(torch.zeros(2, 3))
    assert out.shape == (2, 5)


def test_synaptic_and_rleaky_roundtrip(tmp_path):
    torch.manual_seed(6)
    net = nn.Sequential(
        nn.Linear(5, 8),
        snn.Synaptic(alpha=0.7, beta=0.8, threshold=0.6, init_hidden=True, reset_mechanism="zero", reset_delay=False),
        nn.Linear(8, 6),
        snn.RLeaky(
            beta=0.9, linear_features=6, threshold=0.7, init_hidden=True, reset_mechanism="zero", reset_delay=False
        ),
    )
    x = _inputs(4, T, B, 5)
    graph = senir.export_to_nir(net, x[0])
    assert isinstance(graph.nodes["_1"], nir.CubaLIF)
    sub = graph.nodes["_3"]
    assert isinstance(sub, nir.NIRGraph) and isinstance(sub.nodes["w_rec"], nir.Affine)
    _, step = _roundtrip(graph, tmp_path)
    se.utils.reset(net)
    state = None
    outs = []
    for t in range(T):
        with torch.no_grad():
            ref = net(x[t])
            y, state = step(x[t], state)
        assert torch.equal(y, ref), t
        torch.testing.assert_close(state["_1"]["v"], net[1].mem, rtol=0, atol=1e-5)
        torch.testing.assert_close(state["_1"]["i"], net[1].syn, rtol=0, atol=1e-5)
        torch.testing.assert_close(state["_3"]["lif"]["v"], net[3].mem, rtol=0, atol=1e-5)
        outs.append(ref)
    assert 0.0 < torch.stack(outs).mean().item() < 1.0


def test_egru_step_matches_float64_reference_trace_output():
    """The imported node module (output="trace", eval zoneout) against the independent reference."""
    g = np.random.default_rng(0)
    H, I = 6, 4
    f = lambda *s, sc=0.8: (sc * g.standard_normal(s)).astype(np.float32)  # noqa: E731
    theta = g.uniform(0.05, 0.45, H).astype(np.float32)
    node = senir.EGRU(
        f(3 * H, I),
        f(3 * H, H),
        f(3 * H, sc=0.3),
        f(3 * H, sc=0.3),
        theta,
        reset="subtract",
        zoneout=0.2,
        output="trace",
    )
    step = senir.EGRUStep(node)
    x = _inputs(5, T, B, I)
    p = {
        n: torch.as_tensor(getattr(node, n)).double()
        for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "threshold")
    }
    z = torch.zeros(B, H, dtype=torch.float64)
    ref = ref_layer(x.double(), z, z, z, p, reset="subtract", spike=ref_heaviside_nograd, zo_p=0.2)
    state = None
    for t in range(T):
        out, state = step(x[t], state)
        torch.testing.assert_close(out.double(), ref["trace"][t], rtol=0, atol=1e-5)
        assert torch.equal(state.y != 0, ref["o"][t] > 0)
    assert 0.0 < ref["o"].mean().item() < 1.0


def test_conv_flatten_and_tuple_cell_roundtrip(tmp_path):
    """Conv2d -> Flatten -> Linear -> EGRUCell (returning (y, c), unpacked) -> Linear."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 3, padding=1, stride=2)
            self.flat = nn.Flatten()
            self.fc = nn.Linear(3 * 4 * 4, 10)
            self.cell = se.EGRUCell(10, 6)
            self.out = nn.Linear(6, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y, c = self.cell(self.fc(self.flat(self.conv(x))))
            return self.out(y)

    torch.manual_seed(2)
    net = Net().eval()
    randomize_(net.cell, seed=4)
    x = _inputs(9, T, B, 2, 8, 8)
    graph = senir.export_to_nir(net, x[0])
    assert isinstance(graph.nodes["conv"], nir.Conv2d) and isinstance(graph.nodes["flat"], nir.Flatten)
    assert graph.nodes["flat"].output_type["output"].tolist() == [48]
    _, step = _roundtrip(graph, tmp_path)
    net.cell.reset_mem()
    state = None
    fired = []
    for t in range(T):
        with torch.no_grad():
            ref = net(x[t])
        y, state = step(x[t], state)
        torch.testing.assert_close(y, ref, rtol=0, atol=1e-5)
        torch.testing.assert_close(state["cell"].c, net.cell.c, rtol=0, atol=1e-5)
        fired.append((net.cell.y != 0).float())
    assert 0.0 < torch.stack(fired).mean().item() < 1.0


def test_spec_document_reference_matches_importer():
    """The NumPy reference printed in docs/nir_egru_spec.md is the semantics the importer runs."""
    import re
    from pathlib import Path

    doc = Path(__file__).resolve().parents[1] / "docs" / "nir_egru_spec.md"
    code = re.search(r"```python\n(.*?)```", doc.read_text(), re.S).group(1)
    ns: dict = {}
    exec(code, ns)
    g = np.random.default_rng(1)
    H, I = 5, 3
    f = lambda *s: (0.8 * g.standard_normal(s)).astype(np.float32)  # noqa: E731
    for reset in ("subtract", "zero", "none"):
        for out in ("y", "trace"):
            node = senir.EGRU(
                f(3 * H, I),
                f(3 * H, H),
                f(3 * H),
                f(3 * H),
                g.uniform(0.05, 0.4, H).astype(np.float32),
                reset=reset,
                zoneout=0.25,
                output=out,
            )
            step = senir.EGRUStep(node)
            st = None
            y = c = tr = np.zeros((2, H), np.float32)
            n_events = 0
            for _ in range(T):
                x = g.standard_normal((2, I)).astype(np.float32)
                o_ref, y, c, tr = ns["egru_node_step"](node, x, y, c, tr)
                o, st = step(torch.from_numpy(x), st)
                np.testing.assert_allclose(o.numpy(), o_ref, rtol=0, atol=1e-5)
                n_events += int((y != 0).sum())
            assert 0 < n_events < T * 2 * H


class _DuckCell(nn.Module):
    """A cell of another flavour: only the attribute names are shared (duck typing)."""

    def __init__(self, i: int, h: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(9)
        self.weight_ih = nn.Parameter(0.8 * torch.randn(3 * h, i, generator=g))
        self.weight_hh = nn.Parameter(0.8 * torch.randn(3 * h, h, generator=g))
        self.bias_ih = nn.Parameter(0.3 * torch.randn(3 * h, generator=g))
        self.bias_hh = nn.Parameter(0.3 * torch.randn(3 * h, generator=g))
        self.threshold = nn.Parameter(0.1 + 0.3 * torch.rand(h, generator=g))
        self.reset_mechanism = "zero"

    def forward(self, x: torch.Tensor, state=None):
        if state is None:
            z = x.new_zeros(x.shape[0], self.threshold.shape[0])
            state = (z, z, z)
        s = se.functional.egru_step(
            x,
            *state,
            self.weight_ih,
            self.weight_hh,
            self.bias_ih,
            self.bias_hh,
            self.threshold,
            reset=self.reset_mechanism,
        )
        return s.y, (s.y, s.c, s.trace)


class _DuckNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cell = _DuckCell(4, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cell(x)[0]


def test_duck_typed_cell_roundtrip(tmp_path):
    net = _DuckNet()
    x = _inputs(6, T, B, 4)
    graph = senir.export_to_nir(net, x[0])
    node = graph.nodes["cell"]
    assert isinstance(node, senir.EGRU) and node.reset == "zero"
    _, step = _roundtrip(graph, tmp_path)
    st = state = None
    fired = []
    for t in range(T):
        with torch.no_grad():
            ref, st = net.cell(x[t], st)
        y, state = step(x[t], state)
        # this cell keeps W_hh row-major, the imported step in the package layers' layout (transpose
        # contiguous): BLAS may round the two products differently (MKL on AVX-512 does), so the values
        # agree to float32 rounding, the events exactly
        assert torch.equal(y != 0, ref != 0)
        torch.testing.assert_close(y, ref, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(state["cell"].c, st[1], rtol=1e-6, atol=1e-6)
        fired.append((ref != 0).float())
    assert 0.0 < torch.stack(fired).mean().item() < 1.0


def test_norse_flavour_roundtrip(tmp_path):
    from snntorch_egru.norse import EGRUParameters, EGRURecurrent, EGRURecurrentCell

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cell = EGRURecurrentCell(4, 6, p=EGRUParameters(reset="zero"))
            self.seq = EGRURecurrent(6, 5)
            self.fc = nn.Linear(5, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.seq(self.cell(x)[0])[0])

    net = Net().eval()
    randomize_(net, seed=12)
    x = _inputs(8, T, B, 4)
    graph = senir.export_to_nir(net, x[0])
    assert isinstance(graph.nodes["cell"], senir.EGRU) and graph.nodes["cell"].reset == "zero"
    assert isinstance(graph.nodes["seq"], senir.EGRU) and graph.nodes["seq"].reset == "subtract"
    _, step = _roundtrip(graph, tmp_path)
    st = state = None
    ys = []
    with torch.no_grad():
        for t in range(T):
            y_cell, st = net.cell(x[t], st)
            ys.append(y_cell)
        seq_out, _ = net.seq(torch.stack(ys))
        out = net.fc(seq_out)
    for t in range(T):
        y, state = step(x[t], state)
        torch.testing.assert_close(state["cell"].y, ys[t], rtol=0, atol=1e-6)
        torch.testing.assert_close(y, out[t], rtol=0, atol=1e-5)
    activity = (torch.stack(ys) != 0).float().mean().item()
    assert 0.0 < activity < 1.0
    assert 0.0 < (seq_out != 0).float().mean().item() < 1.0


# ---------------------------------------------------------------------------------------------
# Registration with stock nir.read
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def clean_registry():
    registry = nir.ir.__dict__["__all_ir"]
    saved = list(registry)
    had = "EGRU" in nir.ir.__dict__
    old = nir.ir.__dict__.get("EGRU")
    registry[:] = [n for n in registry if n != "EGRU"]
    if had:
        delattr(nir.ir, "EGRU")
    yield
    registry[:] = saved
    if had:
        nir.ir.EGRU = old
    elif "EGRU" in nir.ir.__dict__:
        delattr(nir.ir, "EGRU")


def _small_graph() -> nir.NIRGraph:
    z = np.zeros
    return nir.NIRGraph.from_list(
        nir.Affine(np.ones((3, 2), np.float32), np.zeros(3, np.float32)),
        senir.EGRU(
            z((6, 3), np.float32),
            z((6, 2), np.float32),
            z(6, np.float32),
            z(6, np.float32),
            np.full(2, 0.5, np.float32),
        ),
    )


def test_stock_read_needs_registration(tmp_path, clean_registry):
    path = tmp_path / "g.nir"
    senir.write(path, _small_graph())
    with pytest.raises(AssertionError):
        nir.read(path)
    senir.register_nir_extension()
    senir.register_nir_extension()  # idempotent
    g = nir.read(path)
    assert isinstance(g.nodes["egru"], senir.EGRU)


def test_registration_refuses_taken_name(clean_registry):
    class EGRU:  # a foreign node of the same name
        pass

    nir.ir.EGRU = EGRU
    with pytest.raises(RuntimeError, match="refusing to shadow"):
        senir.register_nir_extension()


# ---------------------------------------------------------------------------------------------
# Error paths
# ---------------------------------------------------------------------------------------------


def test_error_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        senir.read(tmp_path / "nope.nir")
    bad = tmp_path / "bad.nir"
    bad.write_bytes(b"this is not an HDF5 file" * 10)
    with pytest.raises(ValueError, match="not a readable NIR file"):
        senir.read(bad)
    with pytest.raises(ValueError, match="not a readable NIR file"):
        senir.import_from_nir(bad)
    empty = tmp_path / "empty.nir"
    with h5py.File(empty, "w") as f:
        f.create_dataset("version", data="1.0.8")
    with pytest.raises(ValueError, match="has no 'node' group"):
        senir.read(empty)
    path = tmp_path / "g.nir"
    senir.write(path, _small_graph())
    with h5py.File(path, "a") as f:
        del f["node/nodes/egru/type"]
    with pytest.raises(ValueError, match="node 'node/egru' has no 'type' entry"):
        senir.read(path)


def test_error_unknown_node_type(tmp_path):
    path = tmp_path / "g.nir"
    senir.write(path, _small_graph())
    with h5py.File(path, "a") as f:
        del f["node/nodes/affine/type"]
        f["node/nodes/affine"].create_dataset("type", data="Sigmoid", dtype=h5py.string_dtype())
    with pytest.raises(ValueError, match="unknown NIR node type 'Sigmoid' at node 'node/affine'"):
        senir.read(path)


def test_error_bad_fields_in_file(tmp_path):
    path = tmp_path / "g.nir"
    senir.write(path, _small_graph())
    with h5py.File(path, "a") as f:
        del f["node/nodes/egru/spec_version"]
        f["node/nodes/egru"].create_dataset("spec_version", data=2)
    with pytest.raises(ValueError, match="spec_version must be one of .*got 2.*newer"):
        senir.read(path)
    with h5py.File(path, "a") as f:
        del f["node/nodes/egru/spec_version"]
        f["node/nodes/egru"].create_dataset("spec_version", data=1)
        f["node/nodes/egru"].create_dataset("leak", data=0.5)
    with pytest.raises(ValueError, match=r"node 'node/egru': EGRU node has unknown fields \['leak'\]"):
        senir.read(path)
    # a stock node with a missing field
    with h5py.File(path, "a") as f:
        del f["node/nodes/affine/bias"]
    with pytest.raises(ValueError, match="cannot build node 'node/affine' of type 'Affine'"):
        senir.read(path)


def test_error_foreign_node_on_import():
    graph = nir.NIRGraph.from_list(
        nir.LI(tau=np.ones(3, np.float32), r=np.ones(3, np.float32), v_leak=np.zeros(3, np.float32))
    )
    with pytest.raises(ValueError, match="cannot import NIR node 'graph/li' of type LI; supported: .*EGRU"):
        senir.import_from_nir(graph)
    with pytest.raises(TypeError, match="graph_or_path must be a nir.NIRGraph or a file path, got int"):
        senir.import_from_nir(3)


def test_error_shape_mismatch(tmp_path):
    z = np.zeros
    egru = senir.EGRU(
        z((6, 4), np.float32), z((6, 2), np.float32), z(6, np.float32), z(6, np.float32), np.full(2, 0.5, np.float32)
    )
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(np.array([3])),
            "fc": nir.Affine(np.ones((5, 3), np.float32), np.zeros(5, np.float32)),
            "egru": egru,
            "output": nir.Output(np.array([2])),
        },
        edges=[("input", "fc"), ("fc", "egru"), ("egru", "output")],
        type_check=False,
    )
    with pytest.raises(
        ValueError,
        match=r"shape mismatch on edge 'fc' -> 'egru': 'fc' outputs \[5\] "
        r"but 'egru' expects \[4\]",
    ):
        senir.import_from_nir(graph)
    path = tmp_path / "mismatch.nir"
    senir.write(path, graph)
    with pytest.raises(ValueError, match=r"type mismatch: fc.output: \[\[5\]\] -> egru.input: \[\[4\]\]"):
        senir.import_from_nir(path)
    ok = nir.NIRGraph.from_list(egru)
    step = senir.import_from_nir(ok)
    with pytest.raises(ValueError, match=r"input must have shape \[B, 4\], got \[2, 3\]"):
        step(torch.zeros(2, 3))


def test_error_malformed_graphs():
    w = np.eye(2, dtype=np.float32)
    no_input = nir.NIRGraph(
        nodes={"a": nir.Linear(w), "output": nir.Output(np.array([2]))}, edges=[("a", "output")], type_check=False
    )
    with pytest.raises(ValueError, match=r"exactly one Input and one Output node, got inputs \[\] and outputs"):
        senir.import_from_nir(no_input)
    cycle = nir.NIRGraph(
        nodes={
            "input": nir.Input(np.array([2])),
            "a": nir.Linear(w),
            "b": nir.Linear(w),
            "output": nir.Output(np.array([2])),
        },
        edges=[("input", "a"), ("a", "b"), ("b", "a"), ("b", "output")],
        type_check=False,
    )
    with pytest.raises(ValueError, match=r"cycle without a stateful node .* among \['a', 'b', 'output'\]"):
        senir.import_from_nir(cycle)
    dangling = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([2])), "output": nir.Output(np.array([2]))},
        edges=[("input", "ghost")],
        type_check=False,
    )
    with pytest.raises(ValueError, match=r"edge \('input', 'ghost'\) refers to a node that does not exist"):
        senir.import_from_nir(dangling)


def test_error_unsupported_module():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), se.EGRUCell(4, 5, init_hidden=True))
    with pytest.raises(
        ValueError,
        match=r"unsupported module\(s\) 1 \(torch.nn.modules.activation.ReLU\); "
        r"supported: torch.nn.Linear.*snntorch_egru.EGRUCell",
    ):
        senir.export_to_nir(net, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="one time step .*got shape \\[3\\]"):
        senir.export_to_nir(nn.Sequential(nn.Linear(3, 4)), torch.zeros(3))


def test_error_lossy_snntorch_reset():
    net = nn.Sequential(nn.Linear(3, 4), snn.Leaky(beta=0.9, init_hidden=True))  # subtract reset
    with pytest.raises(ValueError, match="reset_mechanism='subtract'.*not exactly expressible.*allow_lossy=True"):
        senir.export_to_nir(net, torch.zeros(2, 3))
    with pytest.warns(UserWarning, match="exported anyway"):
        g = senir.export_to_nir(net, torch.zeros(2, 3), allow_lossy=True)
    assert isinstance(g.nodes["_1"], nir.LIF)
    syn = nn.Sequential(snn.Synaptic(alpha=0.5, beta=0.9, init_hidden=True, reset_mechanism="zero"))
    with pytest.raises(
        ValueError, match="Synaptic with reset_delay=True .*reset_delay=False and snnTorch.s default spike options"
    ):
        senir.export_to_nir(syn, torch.zeros(2, 3))
    rl = nn.Sequential(snn.RLeaky(beta=0.9, linear_features=3, init_hidden=True, reset_mechanism="zero"))
    with pytest.raises(ValueError, match="reset_delay=True"):
        senir.export_to_nir(rl, torch.zeros(2, 3))
    no_leak = nn.Sequential(snn.Leaky(beta=1.0, init_hidden=True, reset_mechanism="zero"))
    with pytest.raises(ValueError, match="Leaky.beta = 1 .*infinite NIR time constant"):
        senir.export_to_nir(no_leak, torch.zeros(2, 3))
    graded = nn.Sequential(snn.Leaky(beta=0.9, init_hidden=True, reset_mechanism="zero", graded_spikes_factor=2.0))
    with pytest.raises(ValueError, match="graded_spikes_factor != 1"):
        senir.export_to_nir(graded, torch.zeros(2, 3))


def _arrays(H: int = 2, I: int = 3) -> dict:
    z = np.zeros
    return dict(
        weight_ih=z((3 * H, I), np.float32),
        weight_hh=z((3 * H, H), np.float32),
        bias_ih=z(3 * H, np.float32),
        bias_hh=z(3 * H, np.float32),
        threshold=np.full(H, 0.3, np.float32),
    )


@pytest.mark.parametrize(
    "change,exc,message",
    [
        ({"reset": "reflect"}, ValueError, r"field reset must be one of \('subtract', 'zero', 'none'\), got 'reflect'"),
        ({"output": "spikes"}, ValueError, r"field output must be one of \('y', 'trace'\), got 'spikes'"),
        ({"gate_order": "zrn"}, ValueError, r"field gate_order must be 'rzn'.*got 'zrn'"),
        ({"zoneout": 1.0}, ValueError, r"field zoneout must be a float in \[0, 1\), got 1.0"),
        ({"spec_version": 7}, ValueError, r"field spec_version must be one of \(1,\).*got 7"),
        (
            {"weight_hh": np.zeros((6, 3), np.float32)},
            ValueError,
            r"field weight_hh must have shape \[6, 2\].*got \[6, 3\]",
        ),
        (
            {"weight_ih": np.zeros((5, 3), np.float32)},
            ValueError,
            r"field weight_ih must have shape \[3H, I\] = \[6, I\]",
        ),
        ({"bias_ih": np.zeros(5, np.float32)}, ValueError, r"field bias_ih must have shape \[6\].*got \[5\]"),
        ({"threshold": np.zeros((2, 1), np.float32)}, ValueError, r"field threshold must have shape \[H\]"),
        ({"threshold": np.array([0.3, np.nan], np.float32)}, ValueError, r"field threshold must contain only finite"),
        ({"weight_ih": np.zeros((6, 3))}, TypeError, r"field weight_ih must have dtype float32, got float64"),
        ({"bias_hh": torch.zeros(6)}, TypeError, r"field bias_hh must be a numpy.ndarray of dtype float32, got Tensor"),
    ],
)
def test_error_bad_node_fields(change, exc, message):
    kwargs = _arrays()
    kwargs.update(change)
    with pytest.raises(exc, match=message):
        senir.EGRU(**kwargs)


def test_egru_node_missing_field_from_dict():
    d = {k: v for k, v in _arrays().items() if k != "bias_hh"}
    d["type"] = "EGRU"
    with pytest.raises(ValueError, match=r"missing the fields \['bias_hh'\]"):
        senir.EGRU.from_dict(d)
