"""The Streamer built from an imported NIR graph (``Streamer.from_nir``, a ``NIRStepModule``, an ``EGRUStep``).

Every round trip goes through a real file: model -> ``export_to_nir`` -> ``write`` -> ``Streamer.from_nir(path)``,
and the streamed outputs and final state are compared with two independent references over the same input:
the original module's forward in eval mode and the imported ``NIRStepModule`` stepped one time step at a time.
Weights are float32 values (what a NIR node stores), so the float64 runs compare to 1e-12.
"""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
from conftest import randomize_
from torch import nn

import snntorch_egru as se
from snntorch_egru import functional as F
from snntorch_egru import nir as senir
from snntorch_egru.surrogate import EGRUSurrogate

T = 30
TOL = {torch.float64: 1e-12, torch.float32: 1e-5}
GENERAL = r"import_from_nir\(\.\.\.\) \(a NIRStepModule\) runs general NIR graphs step by step"


def _float32_values_(model: nn.Module, seed: int, dtype: torch.dtype) -> nn.Module:
    """Random weights and thresholds (conftest's ranges: some units fire, not all) that are float32 values."""
    randomize_(model, seed=seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.float().double())
    return model.to(dtype).eval()


def _inputs(seed: int, *shape: int, dtype: torch.dtype) -> torch.Tensor:
    return 1.5 * torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


def _states(module: senir.NIRStepModule, state: dict) -> list:
    """The EGRUStates of a NIRStepModule's state in the order the chain runs them (nested graphs opened)."""
    out = []
    for name in module.order:
        if name in state:
            sub = state[name]
            out += _states(module.mods[module.keys[name]], sub) if isinstance(sub, dict) else [sub]
    return out


def _stream(stream: se.Streamer, x: torch.Tensor) -> torch.Tensor:
    """Step ``x`` ``[T, B, I]`` through the streamer (``[I]`` per step when B = 1): ``[T, B, H]``."""
    if stream.batch_size == 1:
        return torch.stack([stream.step(x_t[0]) for x_t in x]).unsqueeze(1)
    return torch.stack([stream.step(x_t) for x_t in x])


def _step_module(module: nn.Module, x: torch.Tensor):
    """``module`` (a NIRStepModule or an EGRUStep) stepped over ``x``: outputs ``[T, B, H]`` and the last state."""
    state, ys = None, []
    for x_t in x:
        y, state = module(x_t, state)
        ys.append(y)
    return torch.stack(ys), state


def _close(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype) -> None:
    torch.testing.assert_close(got, want, rtol=TOL[dtype], atol=TOL[dtype])


def _assert_mapped_exactly(stream: se.Streamer, nodes: list, dtype: torch.dtype) -> None:
    """Each node's arrays and attributes are the Streamer's per-layer tensors and options, exactly."""
    assert len(stream._layers) == len(nodes) and stream.dtype == dtype
    for layer, node in zip(stream._layers, nodes):
        for t, name in zip(layer.tensors, F.LAYER_TENSOR_NAMES):
            assert t is not None and t.dtype == dtype
            assert torch.equal(t, torch.as_tensor(getattr(node, name)).to(dtype)), name
        assert torch.equal(layer.w_hh_t, layer.tensors[1].t())
        assert stream._reset == node.reset and stream._zoneout == node.zoneout


class _Wrapped(nn.Module):
    """An EGRU inside a model: its export is a nested graph (``egru`` holding ``l0 -> l1``)."""

    def __init__(self, rnn: se.EGRU) -> None:
        super().__init__()
        self.egru = rnn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.egru(x)[0]


# ---------------------------------------------------------------------------------------------
# Round trips: the file's stream equals the original module and the imported step module
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype,reset,zoneout,wrapped",
    [
        (torch.float64, "subtract", 0.0, False),
        (torch.float64, "zero", 0.25, True),
        (torch.float64, "none", 0.1, False),
        (torch.float32, "subtract", 0.2, True),
    ],
)
def test_two_layer_egru_file_streams_like_the_model_and_the_step_module(tmp_path, dtype, reset, zoneout, wrapped):
    rnn = _float32_values_(se.EGRU(5, 12, num_layers=2, reset_mechanism=reset, zoneout=zoneout), 7, dtype)
    x = _inputs(1, T, 1, 5, dtype=dtype)
    with torch.no_grad():
        want, want_state, rec = rnn(x, return_internals=True)
    activity = rec.o.double().mean().item()
    assert 0.0 < activity < 1.0, activity  # real activity: some units fire, not all
    assert 0.0 < rec.o[1].double().mean().item() < 1.0  # in the second layer too

    path = tmp_path / "egru.nir"
    senir.write(path, senir.export_to_nir(_Wrapped(rnn) if wrapped else rnn, x[0]))
    stream = se.Streamer.from_nir(path, dtype=dtype)
    assert isinstance(stream.model, senir.NIRStepModule)
    assert (stream.input_size, stream.hidden_size, stream.batch_size) == (5, 12, 1)
    graph = senir.read(path)
    nodes = [graph.nodes["egru"].nodes[f"l{k}"] if wrapped else graph.nodes[f"l{k}"] for k in range(2)]
    _assert_mapped_exactly(stream, nodes, dtype)

    got = _stream(stream, x)
    _close(got, want, dtype)
    for a, b in zip(stream.state, want_state):
        _close(a, b, dtype)

    module = senir.import_from_nir(path).to(dtype)
    ys, state = _step_module(module, x)
    _close(got, ys, dtype)
    layers = _states(module, state)
    assert len(layers) == 2
    for k, s in enumerate(layers):
        for field, want_field in zip(stream.state, s):
            _close(field[k], want_field, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_egrucell_file_streams_like_the_cell_and_the_step_module(tmp_path, dtype):
    cell = _float32_values_(se.EGRUCell(4, 10, reset_mechanism="zero", zoneout=0.15), 3, dtype)
    x = _inputs(2, T, 1, 4, dtype=dtype)
    path = tmp_path / "cell.nir"
    senir.write(path, senir.export_to_nir(cell, x[0]))
    stream = se.Streamer.from_nir(path, dtype=dtype)
    _assert_mapped_exactly(stream, [senir.read(path).nodes["egru"]], dtype)

    y = c = torch.zeros(1, 10, dtype=dtype)
    want = []
    with torch.no_grad():
        for x_t in x:
            y, c = cell(x_t, y, c)
            want.append(y)
    assert 0.0 < (torch.stack(want) != 0).double().mean().item() < 1.0
    got = _stream(stream, x)
    _close(got, torch.stack(want), dtype)
    _close(stream.state.y[0], y, dtype)
    _close(stream.state.c[0], c, dtype)

    ys, state = _step_module(senir.import_from_nir(path).to(dtype), x)
    _close(got, ys, dtype)
    for a, b in zip(stream.state, state["egru"]):
        _close(a[0], b, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_single_egrustep_and_a_single_node(dtype):
    cell = _float32_values_(se.EGRUCell(3, 8, reset_mechanism="subtract", zoneout=0.3), 11, torch.float64)
    node = senir.export_to_nir(cell, torch.zeros(1, 3, dtype=torch.float64)).nodes["egru"]
    step = senir.EGRUStep(node).to(dtype)
    x = _inputs(4, T, 2, 3, dtype=dtype)
    want, want_state = _step_module(step, x)
    assert 0.0 < (want != 0).double().mean().item() < 1.0

    stream = se.Streamer(step, batch_size=2)
    _assert_mapped_exactly(stream, [node], dtype)
    got = _stream(stream, x)
    _close(got, want, dtype)
    for a, b in zip(stream.state, want_state):
        _close(a[0], b, dtype)
    assert repr(stream).startswith("Streamer(EGRUStep, layers=1, input_size=3, hidden_size=8, batch_size=2")

    from_node = se.Streamer.from_nir(node, batch_size=2, dtype=dtype)  # a bare node, not a graph
    _close(_stream(from_node, x), want, dtype)


def test_from_nir_takes_a_graph_and_steps_unbatched_input():
    rnn = _float32_values_(se.EGRU(4, 6, num_layers=3), 5, torch.float32)
    x = _inputs(3, T, 1, 4, dtype=torch.float32)
    stream = se.Streamer.from_nir(senir.export_to_nir(rnn, x[0]))
    with torch.no_grad():
        want, _ = rnn(x)
    y0 = stream.step(x[0, 0])
    assert y0.shape == (6,) and y0.dtype == torch.float32
    stream.reset()
    _close(_stream(stream, x), want, torch.float32)


# ---------------------------------------------------------------------------------------------
# State: inspection, reset, setter and refresh behave as with an EGRU source
# ---------------------------------------------------------------------------------------------


def test_state_reset_setter_and_refresh(tmp_path):
    dtype = torch.float64
    rnn = _float32_values_(se.EGRU(5, 9, num_layers=2), 13, dtype)
    x = _inputs(6, T, 2, 5, dtype=dtype)
    path = tmp_path / "egru.nir"
    senir.write(path, senir.export_to_nir(rnn, x[0]))
    stream = se.Streamer.from_nir(path, batch_size=2, dtype=dtype)
    twin = se.Streamer(rnn, batch_size=2)  # the same model from the EGRU source

    assert all(t.shape == (2, 2, 9) and t.dtype == dtype and not t.any() for t in stream.state)
    first = _stream(stream, x)
    _close(first, _stream(twin, x), dtype)
    for a, b in zip(stream.state, twin.state):
        _close(a, b, dtype)
    snapshot = stream.state
    snapshot.y.fill_(7.0)  # a copy: the stream is unchanged
    _close(stream.state.c, twin.state.c, dtype)
    assert not torch.equal(stream.state.y, snapshot.y)

    stream.reset()
    assert all(not t.any() for t in stream.state)
    torch.testing.assert_close(_stream(stream, x), first, rtol=0, atol=0)

    stream.reset()
    _stream(stream, x[:10])
    saved = stream.state
    rest = _stream(stream, x[10:])
    stream.state = saved
    torch.testing.assert_close(_stream(stream, x[10:]), rest, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"state.y must have shape \(2, 2, 9\)"):
        stream.state = se.EGRUState(torch.zeros(1, 2, 9), torch.zeros(2, 2, 9), torch.zeros(2, 2, 9))

    # refresh() reads the module's tensors and attributes again (and zeroes the state)
    module = stream.model
    assert isinstance(module, senir.NIRStepModule)
    steps = [m for m in module.modules() if isinstance(m, senir.EGRUStep)]
    with torch.no_grad():
        steps[1].threshold.mul_(0.5)
        steps[0].weight_ih.mul_(1.25)
    for s in steps:
        s.reset = "zero"
    stream.refresh()
    assert all(not t.any() for t in stream.state) and stream._reset == "zero"
    ys, state = _step_module(module, x)
    _close(_stream(stream, x), ys, dtype)
    for k, s in enumerate(_states(module, state)):
        for field, want in zip(stream.state, s):
            _close(field[k], want, dtype)
    steps[1].output = "trace"
    with pytest.raises(ValueError, match=r"node 'graph/l1' of type EGRU with output='trace': expected output='y'"):
        stream.refresh()


# ---------------------------------------------------------------------------------------------
# Graphs the Streamer cannot run: clear errors naming the node, its type and what was expected
# ---------------------------------------------------------------------------------------------


def _node(I: int, H: int, seed: int = 0, **fields) -> senir.EGRU:
    r = np.random.default_rng(seed).standard_normal
    f = lambda *s: (0.5 * r(s)).astype(np.float32)  # noqa: E731
    return senir.EGRU(f(3 * H, I), f(3 * H, H), f(3 * H), f(3 * H), np.full(H, 0.2, np.float32), **fields)


def _graph(nodes: dict, edges: list) -> nir.NIRGraph:
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _lif(H: int) -> nir.LIF:
    tau = np.full(H, 1e-3, np.float32)
    z = np.zeros(H, np.float32)
    return nir.LIF(tau=tau, r=tau / 1e-4, v_leak=z, v_threshold=np.ones(H, np.float32))


def test_a_non_egru_node_is_refused_with_a_clear_error():
    net = nn.Sequential(nn.Linear(3, 4), se.EGRUCell(4, 5, init_hidden=True))
    graph = senir.export_to_nir(net, torch.zeros(1, 3))
    affine = next(name for name, n in graph.nodes.items() if isinstance(n, nir.Affine))
    expected = r": expected an EGRU node \(or a nested graph of them\) in a chain Input -> EGRU -> \.\.\. -> EGRU"
    with pytest.raises(ValueError, match=rf"cannot run node 'graph/{affine}' of type Affine{expected}.*{GENERAL}"):
        se.Streamer.from_nir(graph)
    with pytest.raises(ValueError, match=rf"cannot run node 'graph/{affine}' of type Linear{expected}.*{GENERAL}"):
        se.Streamer(senir.import_from_nir(graph))  # the imported module: its torch type

    lif = nir.NIRGraph.from_list(_node(3, 4), _lif(4))
    with pytest.raises(ValueError, match=rf"node 'graph/lif' of type LIF{expected}.*{GENERAL}"):
        se.Streamer.from_nir(lif)
    with pytest.raises(ValueError, match=rf"node 'graph/lif' of type LIFStep{expected}"):
        se.Streamer(senir.import_from_nir(lif))
    # a node type import_from_nir does not know either: still the Streamer's error
    thr = nir.NIRGraph.from_list(_node(3, 4), nir.Threshold(np.ones(4, np.float32)))
    with pytest.raises(ValueError, match=rf"node 'graph/threshold' of type Threshold{expected}"):
        se.Streamer.from_nir(thr)
    # inside a nested graph: the path names it
    inner = nir.NIRGraph.from_list(_node(4, 4, 1), _lif(4))
    nested = _graph(
        {"input": nir.Input(np.array([3])), "a": _node(3, 4), "sub": inner, "output": nir.Output(np.array([4]))},
        [("input", "a"), ("a", "sub"), ("sub", "output")],
    )
    with pytest.raises(ValueError, match=r"node 'graph/sub/lif' of type LIF"):
        se.Streamer.from_nir(nested)


def test_branches_sums_and_loose_nodes_are_refused():
    io = {"input": nir.Input(np.array([3])), "output": nir.Output(np.array([4]))}
    branch = _graph(
        {**io, "a": _node(3, 4), "b": _node(3, 4, 1)},
        [("input", "a"), ("input", "b"), ("a", "output"), ("b", "output")],
    )
    with pytest.raises(
        ValueError, match=rf"node 'input' \(Input\) feeds \['a', 'b'\], expected exactly one.*{GENERAL}"
    ):
        se.Streamer.from_nir(branch)
    with pytest.raises(ValueError, match=r"node 'input' \(Input\) feeds \['a', 'b'\]"):
        se.Streamer(senir.import_from_nir(branch))
    skip = _graph(
        {**io, "a": _node(3, 4), "b": _node(4, 4, 1)}, [("input", "a"), ("a", "b"), ("a", "output"), ("b", "output")]
    )
    with pytest.raises(ValueError, match=r"node 'a' \(EGRU\) feeds \['b', 'output'\]"):
        se.Streamer.from_nir(skip)
    loose = _graph({**io, "a": _node(3, 4), "b": _node(4, 4, 1)}, [("input", "a"), ("a", "output")])
    with pytest.raises(ValueError, match=rf"node\(s\) \['b'\] lie off the path from 'input' to 'output'.*{GENERAL}"):
        se.Streamer.from_nir(loose)
    empty = _graph(dict(io), [("input", "output")])
    with pytest.raises(ValueError, match=r"'graph': it holds no EGRU node"):
        se.Streamer.from_nir(empty)


@pytest.mark.parametrize(
    "second,message",
    [
        ({"output": "trace"}, r"node 'graph/b' of type EGRU with output='trace': expected output='y'"),
        ({"reset": "zero"}, r"node 'graph/b' of type EGRU with reset='zero', zoneout=0.0: expected the values of "),
        (
            {"zoneout": 0.5},
            r"node 'graph/b' of type EGRU with reset='subtract', zoneout=0.5: expected the values of no",
        ),
        ({"H": 5}, r"node 'graph/b' of type EGRU with hidden size 5: expected 4, the hidden size of node 'graph/a'"),
        ({"I": 6}, r"node 'graph/b' of type EGRU with input size 6: expected 4, the hidden size of the node before"),
    ],
)
def test_egru_attributes_without_a_streamer_equivalent_are_refused(second, message):
    I, H = second.pop("I", 4), second.pop("H", 4)
    graph = _graph(
        {
            "input": nir.Input(np.array([3])),
            "a": _node(3, 4),
            "b": _node(I, H, 1, **second),
            "output": nir.Output(np.array([H])),
        },
        [("input", "a"), ("a", "b"), ("b", "output")],
    )
    with pytest.raises(ValueError, match=rf"Streamer cannot run {message}.*{GENERAL}"):
        se.Streamer.from_nir(graph)


def test_a_changed_egrustep_is_refused_and_bad_arguments():
    step = senir.EGRUStep(_node(3, 4))
    step.spike_fn = EGRUSurrogate(0.7, 1.0)
    with pytest.raises(ValueError, match=rf"node 'EGRUStep' of type EGRUStep with spike_fn EGRUSurrogate.*{GENERAL}"):
        se.Streamer(step)
    with pytest.raises(
        TypeError, match="model must be a snntorch_egru.EGRU or EGRUCell, or a module imported from NIR"
    ):
        se.Streamer(nn.GRU(3, 4))
    with pytest.raises(TypeError, match="graph_or_path must be a nir.NIRGraph, a NIR node or a file path, got int"):
        se.Streamer.from_nir(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"dtype must be torch.float32 or torch.float64, got torch.float16"):
        se.Streamer.from_nir(_node(3, 4), dtype=torch.float16)
    with pytest.raises(ValueError, match="batch_size must be a positive int, got 0"):
        se.Streamer.from_nir(_node(3, 4), batch_size=0)


def test_missing_and_corrupt_files_give_the_readers_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        se.Streamer.from_nir(tmp_path / "nope.nir")
    bad = tmp_path / "bad.nir"
    bad.write_bytes(b"this is not an HDF5 file" * 10)
    with pytest.raises(ValueError, match="not a readable NIR file"):
        se.Streamer.from_nir(bad)
    with pytest.raises(ValueError, match="not a readable NIR file"):
        se.Streamer.from_nir(str(bad))
