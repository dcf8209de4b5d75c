"""NIR and ONNX as a user meets them (issue 31, items 5, 10 and 13).

* the NIR reader on valid-but-unusual files (big-endian weights, older versions) and on hostile files
  crafted here with h5py: future or missing versions, objects linked many times, many objects or chunks,
  huge declared arrays (refused before their data is read: the memory is measured), a missing spec_version;
* ``nir.write`` errors name the user's path;
* ``export_to_nir`` on Norse containers nested in ``nn.Sequential`` and ``snntorch.export_to_nir`` on the
  sequence layer: the round trip through a NIR file gives the original network's outputs;
* ``torch.onnx.export(..., dynamo=True, dynamic_shapes=...)`` of ``EGRU`` and ``EGRUCell``, run in ONNX Runtime
  at two sequence lengths and batch sizes, against eager mode (itself checked against the float64 reference).
"""

from __future__ import annotations

import tracemalloc
import warnings

import h5py
import nir
import numpy as np
import pytest
import torch

from snntorch_egru import nir as senir

H, I = 4, 3


def _graph(seed: int = 0) -> nir.NIRGraph:
    rng = np.random.default_rng(seed)
    r = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    return nir.NIRGraph.from_list(
        nir.Affine(r(I, 2), r(I)), senir.EGRU(r(3 * H, I), r(3 * H, H), r(3 * H), r(3 * H), np.abs(r(H)) * 0.3)
    )


def _written(tmp_path, name: str = "g.nir") -> str:
    path = str(tmp_path / name)
    senir.write(path, _graph())
    return path


def _replace(f: h5py.File, where: str, data, **kwargs) -> None:
    del f[where]
    f.create_dataset(where, data=data, **kwargs)


# ----------------------------------------------------------------------------- item 13: valid files
def test_big_endian_float32_weights_are_read_as_native(tmp_path):
    path = _written(tmp_path)
    with h5py.File(path, "a") as f:
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "threshold"):
            where = f"node/nodes/egru/{name}"
            value = f[where][()]
            _replace(f, where, value.astype(">f4"))
            assert f[where].dtype == np.dtype(">f4")
        _replace(f, "node/nodes/affine/weight", f["node/nodes/affine/weight"][()].astype(">f4"))
    back = senir.read(path)
    want = _graph()
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "threshold"):
        got = getattr(back.nodes["egru"], name)
        assert got.dtype == np.float32 and got.dtype.isnative
        np.testing.assert_array_equal(got, getattr(want.nodes["egru"], name))
    np.testing.assert_array_equal(back.nodes["affine"].weight, want.nodes["affine"].weight)
    x = torch.randn(5, 2, 2, generator=torch.Generator().manual_seed(1))
    a, b = senir.import_from_nir(want), senir.import_from_nir(back)
    sa = sb = None
    for t in range(5):
        ya, sa = a(x[t], sa)
        yb, sb = b(x[t], sb)
        assert torch.equal(ya, yb)
    # the node itself accepts big-endian float32 arrays as well
    node = senir.EGRU(
        *(
            getattr(want.nodes["egru"], n).astype(">f4")
            for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "threshold")
        )
    )
    assert node.weight_hh.dtype.isnative
    np.testing.assert_array_equal(node.weight_hh, want.nodes["egru"].weight_hh)


def test_what_nir_write_stores_is_read(tmp_path):
    path = str(tmp_path / "stock.nir")
    nir.write(path, nir.NIRGraph.from_list(nir.Linear(np.eye(2, dtype=np.float32))))  # the library itself
    with h5py.File(path, "r") as f:
        assert f["version"][()].decode() == nir.version
    assert isinstance(senir.read(path).nodes["linear"], nir.Linear)
    for older in ("1.0.0", b"0.9.1"):  # an older writer, a fixed-length byte string
        with h5py.File(path, "a") as f:
            _replace(f, "version", older)
        assert isinstance(senir.read(path).nodes["linear"], nir.Linear)


# ----------------------------------------------------------------------------- item 13: refused files
@pytest.mark.parametrize("version", ["9.9.9", "1.99.0"])
def test_future_version_is_refused_naming_the_fix(tmp_path, version):
    path = _written(tmp_path)
    with h5py.File(path, "a") as f:
        _replace(f, "version", version, dtype=h5py.string_dtype())
    with pytest.raises(
        ValueError,
        match=rf"written by NIR version '{version}', newer than the installed nir "
        rf"'{nir.version}'.*pip install -U nir",
    ):
        senir.read(path)


@pytest.mark.parametrize(
    "version,message",
    [
        (None, r"has no 'version' entry \(expected the NIR version string nir.write stores, such as '1\."),
        ("", r"'version' must be a NIR version such as '1\..*got ''"),
        ("banana", r"'version' must be a NIR version such as .*got 'banana'"),
        (np.arange(3), r"'version' must be a scalar string dataset"),
    ],
)
def test_missing_or_bad_version_is_refused(tmp_path, version, message):
    path = _written(tmp_path)
    with h5py.File(path, "a") as f:
        del f["version"]
        if version is not None:
            f.create_dataset("version", data=version)
    with pytest.raises(ValueError, match=message):
        senir.read(path)


def test_missing_spec_version_is_refused(tmp_path):
    path = _written(tmp_path)
    with h5py.File(path, "a") as f:
        del f["node/nodes/egru/spec_version"]
    with pytest.raises(
        ValueError,
        match=r"node 'node/egru': EGRU node is missing the field spec_version "
        r"\(expected one of \(1,\).*got no such field",
    ):
        senir.read(path)


def _skeleton(f: h5py.File) -> h5py.Group:
    """A minimal valid graph (input -> output); returns the input node's group to hang things on."""
    f.create_dataset("version", data=nir.version, dtype=h5py.string_dtype())
    node = f.create_group("node")
    node.create_dataset("type", data="NIRGraph", dtype=h5py.string_dtype())
    node.create_dataset("edges", data=np.array([["input", "output"]], dtype=object), dtype=h5py.string_dtype())
    nodes = node.create_group("nodes")
    for name, kind in (("input", "Input"), ("output", "Output")):
        g = nodes.create_group(name)
        g.create_dataset("type", data=kind, dtype=h5py.string_dtype())
        g.create_dataset("shape", data=np.array([3]))
    return nodes["input"]


def _count_object_visits(monkeypatch) -> list:
    calls = []
    real = h5py.h5o.get_info

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(h5py.h5o, "get_info", counting)
    return calls


def test_hard_link_fan_out_is_refused_after_few_objects(tmp_path, monkeypatch):
    # 40 groups, each linking the next twice: a 30 KB file that walks as 2**40 objects
    path = tmp_path / "fan.nir"
    with h5py.File(path, "w") as f:
        levels = [_skeleton(f).create_group("metadata")]
        for _ in range(40):
            levels.append(levels[-1].create_group("a"))
        for a, b in zip(levels, levels[1:]):
            a["b"] = b
    assert path.stat().st_size < 100_000
    visits = _count_object_visits(monkeypatch)
    with pytest.raises(ValueError, match=r"'node/nodes/input/metadata/a' is linked 2 times in the file"):
        senir.read(path)
    assert len(visits) < 20


def test_object_limit(tmp_path, monkeypatch):
    path = tmp_path / "many.nir"
    with h5py.File(path, "w") as f:
        meta = _skeleton(f).create_group("metadata")
        for i in range(300):
            meta.create_group(str(i))
    assert senir.DEFAULT_MAX_READ_OBJECTS == 10_000
    assert isinstance(senir.read(path, max_objects=400), nir.NIRGraph)
    visits = _count_object_visits(monkeypatch)
    with pytest.raises(ValueError, match=r"more than max_objects=100 HDF5 objects.*Pass a larger max_objects"):
        senir.read(path, max_objects=100)
    assert len(visits) <= 101
    with pytest.raises(ValueError, match="max_objects must be a positive int, got 0"):
        senir.read(path, max_objects=0)


def test_many_tiny_chunks_are_refused_before_reading(tmp_path):
    # 4 MB declared in 1-element chunks: reading the unwritten chunks alone takes seconds
    path = tmp_path / "chunks.nir"
    with h5py.File(path, "w") as f:
        _skeleton(f).create_group("metadata").create_dataset("x", shape=(1 << 20,), dtype="f4", chunks=(1,))
    with pytest.raises(ValueError, match=r"more than 131072 HDF5 chunks \(dataset 'node/nodes/input/metadata/x'"):
        senir.read(path)


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_declared_total_is_checked_before_any_array_is_read(tmp_path):
    # two 600 MB arrays (unwritten gzip chunks: a small file); the first fits max_bytes alone
    path = tmp_path / "two.nir"
    with h5py.File(path, "w") as f:
        meta = _skeleton(f).create_group("metadata")
        for name in ("a", "b"):
            meta.create_dataset(name, shape=(150_000_000,), dtype="f4", chunks=(1 << 20,), compression="gzip")
    assert path.stat().st_size < 1_000_000

    def read():
        with pytest.raises(ValueError, match=r"declares more than max_bytes=1073741824 bytes.*metadata/b"):
            senir.read(path)

    assert _peak_bytes(read) < 20_000_000


@pytest.mark.parametrize(
    "field,shape,dtype,message",
    [
        ("weight_hh", (12, 5), "f4", r"weight_hh must have shape \[12, 4\] \(H = 4 from threshold\), got \[12, 5\]"),
        ("weight_hh", (12, 4), "f8", r"weight_hh must have dtype float32, got float64"),
    ],
)
def test_invalid_egru_arrays_are_refused_before_reading(tmp_path, field, shape, dtype, message):
    # an EGRU node with an 800 MB weight_ih [12, 16.7M] (under max_bytes) and one inconsistent field
    path = _written(tmp_path)
    with h5py.File(path, "a") as f:
        g = f["node/nodes/egru"]
        del g["weight_ih"], g[field]
        g.create_dataset("weight_ih", shape=(12, 16_700_000), dtype="f4", chunks=(1, 1 << 20), compression="gzip")
        g.create_dataset(field, data=np.zeros(shape, dtype=dtype))
    assert (tmp_path / "g.nir").stat().st_size < 1_000_000

    def read():
        with pytest.raises((ValueError, TypeError), match=rf"node 'node/egru': EGRU node field {message}"):
            senir.read(path)

    assert _peak_bytes(read) < 20_000_000


def test_write_errors_name_the_users_path(tmp_path):
    target = tmp_path / "no_such_folder" / "model.nir"
    with pytest.raises(FileNotFoundError) as info:
        senir.write(target, _graph())
    assert info.value.filename == str(target) and ".tmp" not in str(info.value)
    folder = tmp_path / "taken.nir"
    folder.mkdir()
    with pytest.raises(IsADirectoryError) as info:
        senir.write(folder, _graph())
    assert str(folder) in str(info.value) and ".tmp" not in str(info.value)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_errors_inside_nir_write_name_the_users_path(tmp_path, monkeypatch):
    import errno

    def disk_full(filename, graph, **kwargs):  # what h5py raises: the file it was given, the reason
        raise OSError(errno.ENOSPC, f"Unable to create file (name = '{filename}', No space left on device)")

    monkeypatch.setattr(nir, "write", disk_full)
    target = tmp_path / "model.nir"
    with pytest.raises(OSError) as info:
        senir.write(target, _graph())
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert f"name = '{target}'" in str(info.value) and ".tmp" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- item 10: Norse and snnTorch routes
def _norse():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import norse.torch as norse_torch
    return norse_torch


def _through_file(graph: nir.NIRGraph, tmp_path) -> senir.NIRStepModule:
    path = tmp_path / "net.nir"
    senir.write(path, graph)
    return senir.import_from_nir(senir.read(path))


def _step_over(step, x: torch.Tensor) -> torch.Tensor:
    out, state = [], None
    with torch.no_grad():
        for x_t in x:
            y, state = step(x_t, state)
            out.append(y)
    return torch.stack(out)


def test_lift_inside_nn_sequential_round_trips(tmp_path):
    norse = _norse()
    from snntorch_egru.norse import EGRURecurrent

    torch.manual_seed(2)
    net = torch.nn.Sequential(
        norse.Lift(torch.nn.Linear(4, 16)), torch.nn.Sequential(EGRURecurrent(16, 8, thr_mean=0.1))
    )
    graph = senir.export_to_nir(net, torch.randn(5, 4))
    assert sorted(type(n).__name__ for n in graph.nodes.values()) == ["Affine", "EGRU", "Input", "Output"]
    x = 2 * torch.randn(20, 5, 4, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want, _ = net(x)
    assert 0.05 < float(want.ne(0).float().mean()) < 0.95
    torch.testing.assert_close(_step_over(_through_file(graph, tmp_path), x), want, rtol=1e-6, atol=1e-6)


def test_norse_containers_called_in_a_custom_forward_round_trip(tmp_path):
    norse = _norse()
    from snntorch_egru.norse import EGRURecurrent, EGRURecurrentCell

    class Lifted(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inp = norse.Lift(torch.nn.Linear(4, 16))
            self.egru = EGRURecurrent(16, 8, thr_mean=0.1)
            self.out = norse.Lift(torch.nn.Sequential(torch.nn.Linear(8, 5), torch.nn.Linear(5, 2)))

        def forward(self, x):
            y, _ = self.egru(self.inp(x))
            return self.out(y)

    class Stateful(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.seq = norse.SequentialState(torch.nn.Linear(4, 16), EGRURecurrentCell(16, 8, thr_mean=0.1))
            self.out = torch.nn.Linear(8, 3)

        def forward(self, x, state=None):
            y, state = self.seq(x, state)
            return self.out(y), state

    torch.manual_seed(5)
    x = 2 * torch.randn(20, 5, 4, generator=torch.Generator().manual_seed(6))
    lifted = Lifted()
    with torch.no_grad():
        want = lifted(x)
    step = _through_file(senir.export_to_nir(lifted, torch.randn(5, 4)), tmp_path)
    torch.testing.assert_close(_step_over(step, x), want, rtol=1e-6, atol=1e-6)
    stateful = Stateful()
    state, want = None, []
    with torch.no_grad():
        for x_t in x:
            y, state = stateful(x_t, state)
            want.append(y)
    step = _through_file(senir.export_to_nir(stateful, torch.randn(5, 4)), tmp_path)
    torch.testing.assert_close(_step_over(step, x), torch.stack(want), rtol=1e-6, atol=1e-6)


def test_untraceable_forward_names_the_supported_route():
    norse = _norse()

    class Looping(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 4)

        def forward(self, x):
            for _ in range(x.shape[0]):  # Python control flow on a shape: torch.fx cannot trace it
                x = self.fc(x)
            return x

    with pytest.raises(
        ValueError,
        match=r"cannot trace the model's forward for NIR export.*Norse's Lift and "
        r"SequentialState are exported",
    ):
        senir.export_to_nir(torch.nn.Sequential(Looping()), torch.randn(5, 4))
    with pytest.raises(ValueError, match=r"unsupported module torch.nn.modules.activation.ReLU inside Sequential"):
        senir.export_to_nir(torch.nn.Sequential(norse.Lift(torch.nn.ReLU())), torch.randn(5, 4))


def test_snntorch_export_of_the_sequence_layer_round_trips(tmp_path):
    from snntorch.export_nir import export_to_nir
    from snntorch.import_nir import import_from_nir

    import snntorch_egru as se

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc_in = torch.nn.Linear(4, 16)
            self.egru = se.EGRU(16, 8, num_layers=2, thr_mean=0.1)
            self.fc_out = torch.nn.Linear(8, 3)

        def forward(self, x):
            return self.fc_out(self.egru(self.fc_in(x))[0])

    torch.manual_seed(8)
    net = Net().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = export_to_nir(net, torch.randn(1, 4), ignore_dims=[0])
        path = tmp_path / "snn.nir"
        nir.write(path, graph)
        imported = import_from_nir(nir.read(path))
    assert sum(type(n).__name__ == "EGRU" for n in graph.nodes.values()) == 2
    x = 2 * torch.randn(20, 5, 4, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        want = net(x)
        events = net.egru(net.fc_in(x))[0]
    assert 0.05 < float(events.ne(0).float().mean()) < 0.95
    torch.testing.assert_close(_step_over(imported, x), want, rtol=1e-6, atol=1e-6)


def test_snntorch_export_of_a_lone_egru_names_the_supported_route(tmp_path):
    from snntorch.export_nir import export_to_nir
    from snntorch.import_nir import import_from_nir

    import snntorch_egru as se

    torch.manual_seed(10)
    for lone in (se.EGRU(4, 6, thr_mean=0.1), torch.nn.Sequential(se.EGRU(4, 6, thr_mean=0.1))):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(
                ValueError,
                match=r"could not export this network holding EGRU modules.*Use "
                r"snntorch_egru.nir.export_to_nir\(model, sample_input\)",
            ):
                export_to_nir(lone, torch.randn(1, 4), ignore_dims=[0])
        graph = senir.export_to_nir(lone, torch.randn(1, 4))  # the named route works, and snnTorch reads it
        path = tmp_path / "lone.nir"
        senir.write(path, graph)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            imported = import_from_nir(senir.read(path))
        x = torch.randn(15, 3, 4, generator=torch.Generator().manual_seed(11))
        with torch.no_grad():
            want = lone(x)[0]
        torch.testing.assert_close(_step_over(imported, x), want, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- item 5: ONNX with dynamic shapes
def _onnx_session(tmp_path, name: str, model, args, dynamic_shapes):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(path), dynamo=True, dynamic_shapes=dynamic_shapes, verbose=False)
    import onnx

    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    return ort.InferenceSession(str(path)), ops


def _reference_stack(rnn, x: torch.Tensor) -> torch.Tensor:
    """The float64 reference (tests/egru_reference.py) with the module's weights."""
    from egru_reference import ref_heaviside_nograd, ref_stack

    layers = [
        {k: (None if v is None else v.detach().double()) for k, v in rnn.layer_tensors(k).items()}
        for k in range(rnn.num_layers)
    ]
    z = torch.zeros(rnn.num_layers, x.shape[1], rnn.hidden_size, dtype=torch.float64)
    return ref_stack(x.double(), layers, z, z, z, reset=rnn.reset_mechanism, spike=ref_heaviside_nograd)[0]


def test_onnx_export_of_egru_with_dynamic_length_and_batch(tmp_path):
    import snntorch_egru as se

    torch.manual_seed(12)
    rnn = se.EGRU(I, 6, num_layers=2, thr_mean=0.1).eval()
    dim = torch.export.Dim.DYNAMIC
    sess, ops = _onnx_session(tmp_path, "egru", rnn, (torch.randn(4, 2, I),), ({0: dim, 1: dim},))
    assert "Scan" in ops  # one loop over time, not the example's length unrolled
    for T, B in ((7, 3), (13, 5)):
        x = 2 * torch.randn(T, B, I, generator=torch.Generator().manual_seed(T))
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
        with torch.no_grad():
            out, state = rnn(x)
        ref = _reference_stack(rnn, x)
        assert 0.05 < float(ref.ne(0).double().mean()) < 0.95
        torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(torch.from_numpy(got[0]), out, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(torch.from_numpy(got[2]), state.c, rtol=1e-5, atol=1e-5)


def test_onnx_export_of_egrucell_steps_like_eager(tmp_path):
    import snntorch_egru as se

    torch.manual_seed(13)
    cell = se.EGRUCell(I, 6, thr_mean=0.1).eval()
    dim = torch.export.Dim.DYNAMIC
    B0 = 2
    sess, _ = _onnx_session(
        tmp_path,
        "cell",
        cell,
        (torch.randn(B0, I), torch.zeros(B0, 6), torch.zeros(B0, 6)),
        ({0: dim}, {0: dim}, {0: dim}),
    )
    names = [i.name for i in sess.get_inputs()]
    assert len(names) == 3 and len(sess.get_outputs()) == 2
    for B in (3, 8):  # ten chained steps from zero state: ONNX Runtime and eager mode agree at every step
        x = 2 * torch.randn(10, B, I, generator=torch.Generator().manual_seed(B))
        y = c = torch.zeros(B, 6)
        y_o, c_o = y.numpy(), c.numpy()
        for t in range(10):
            with torch.no_grad():
                y, c = cell(x[t], y, c)
            y_o, c_o = sess.run(None, dict(zip(names, (x[t].numpy(), y_o, c_o))))
            torch.testing.assert_close(torch.from_numpy(y_o), y, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(torch.from_numpy(c_o), c, rtol=1e-5, atol=1e-5)
    # init_hidden=True exports one step from the stored (zero) state, and export leaves that state alone
    stored = se.EGRUCell(I, 6, thr_mean=0.1, init_hidden=True).eval()
    sess, _ = _onnx_session(tmp_path, "cell_ih", stored, (torch.randn(B0, I),), ({0: dim},))
    assert stored.y.shape == (0,)
    x = torch.randn(5, I)
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        want = stored(x)
    torch.testing.assert_close(torch.from_numpy(got), want, rtol=1e-5, atol=1e-5)


def test_onnx_export_through_the_strict_capture_runs_the_scan(tmp_path, monkeypatch):
    # torch.onnx falls back to torch.export(strict=True) when the non-strict capture fails; there TorchDynamo
    # folds torch.onnx.is_in_onnx_export() to False, and the custom operator (which has no ONNX translation)
    # used to be recorded: "No ONNX function found for snntorch_egru.egru_layer"
    import snntorch_egru as se

    strategies = pytest.importorskip("torch.onnx._internal.exporter._capture_strategies")
    if not hasattr(strategies, "TorchExportStrictStrategy"):
        pytest.skip("this torch has no strict capture strategy")
    monkeypatch.setattr(strategies, "CAPTURE_STRATEGIES", (strategies.TorchExportStrictStrategy,))
    torch.manual_seed(14)
    rnn = se.EGRU(I, 5, thr_mean=0.1).eval()
    dim = torch.export.Dim.DYNAMIC
    sess, ops = _onnx_session(tmp_path, "strict", rnn, (torch.randn(4, 2, I),), ({0: dim, 1: dim},))
    assert "Scan" in ops
    x = 2 * torch.randn(9, 4, I, generator=torch.Generator().manual_seed(15))
    with torch.no_grad():
        want = rnn(x)[0]
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(got), want, rtol=1e-5, atol=1e-5)
