"""The "cupy" backend: error messages and launch checks (CPU), the kernels' algorithm
through the CPU emulator against the float64 reference (CPU), and the real CUDA
kernels against the float64 reference (GPU with CuPy only; skipped otherwise)."""

from __future__ import annotations

import os

import pytest
import torch
from kernel_cases import (
    INPUT_NAMES,
    assert_match,
    calibrated_call,
    cast_call,
    kernel_params,
    make_call,
    module_run_vs_reference,
    outputs_and_grads,
)

import snntorch_egru as se
from snntorch_egru import backends
from snntorch_egru import cuda as K
from snntorch_egru.cuda._emulator import EmulatorLauncher, block_compact
from snntorch_egru.cuda._function import check_backward_args, check_forward_args, check_tensor
from snntorch_egru.surrogate import EGRUSurrogate, heaviside

GPU = torch.cuda.is_available() and K.cupy_available()
needs_gpu = pytest.mark.skipif(not GPU, reason="needs a CUDA GPU and CuPy")


def emulated(**geometry):
    launcher = EmulatorLauncher(**geometry)
    return lambda call: K.run(call, launcher=launcher)


# ----------------------------------------------------------------------------- CPU: errors
def test_cupy_backend_is_registered_and_never_auto_on_cpu():
    assert "cupy" in backends.available_backends()
    call = make_call()
    assert backends.resolve_backend("auto", call).name != "cupy"


def test_cpu_tensor_error_says_what_to_do(monkeypatch):
    # Pretend CuPy is importable so the CUDA check (not the missing-CuPy one) is what fires,
    # whether or not CuPy is installed in this environment.
    monkeypatch.setattr(K._probe, "_CUPY", True)
    rnn = se.EGRU(4, 8, backend="cupy")
    with pytest.raises(RuntimeError, match="cupy") as info:
        rnn(torch.randn(3, 2, 4))
    msg = str(info.value)
    if not torch.cuda.is_available():
        assert "torch.cuda.is_available() is False" in msg
        assert "pip install snntorch-egru[cuda12]" in msg and "[cuda13]" in msg
    else:
        assert "runs on CUDA tensors, got x on cpu" in msg


def test_missing_cupy_error_says_how_to_install(monkeypatch):
    monkeypatch.setattr(K._probe, "_CUPY", False)
    assert not K.cupy_available()
    rnn = se.EGRU(4, 8, backend="cupy")
    with pytest.raises(RuntimeError) as info:
        rnn(torch.randn(3, 2, 4))
    msg = str(info.value)
    assert "needs CuPy, which is not installed" in msg
    assert "`pip install snntorch-egru[cuda12]` (CUDA 12.x)" in msg
    assert "`pip install snntorch-egru[cuda13]` (CUDA 13.x)" in msg


def test_unsupported_surrogate_and_dtype_messages():
    snn_surrogate = pytest.importorskip("snntorch.surrogate")
    call = make_call(spike=snn_surrogate.atan())
    assert "supports spike_grad=None" in K.supports(call)
    with pytest.raises(RuntimeError, match="use backend='reference' for other surrogates"):
        K.run(call)
    call = make_call()
    call.x = call.x.detach().to(torch.int32)
    assert K.supports(call) == "the 'cupy' backend supports float32/float64/float16/bfloat16 inputs, got torch.int32"


def test_launch_checks_name_argument_expected_and_given():
    dev = torch.device("cpu")
    good = torch.zeros(2, 3)
    check_tensor("y0", good, (2, 3), torch.float32, dev)
    check_tensor("bhh", None, (9,), torch.float32, dev, optional=True)
    with pytest.raises(TypeError, match=r"kernel argument y0 must be a tensor of shape \[2, 3\], got None"):
        check_tensor("y0", None, (2, 3), torch.float32, dev)
    with pytest.raises(TypeError, match="kernel argument y0 must be a torch.Tensor, got list"):
        check_tensor("y0", [1.0], (2, 3), torch.float32, dev)
    with pytest.raises(ValueError, match=r"kernel argument y0 must have shape \[2, 4\], got \[2, 3\]"):
        check_tensor("y0", good, (2, 4), torch.float32, dev)
    with pytest.raises(TypeError, match="kernel argument y0 must have dtype torch.float64, got torch.float32"):
        check_tensor("y0", good, (2, 3), torch.float64, dev)
    with pytest.raises(ValueError, match="kernel argument y0 must be on device meta, got cpu"):
        check_tensor("y0", good, (2, 3), torch.float32, torch.device("meta"))
    with pytest.raises(ValueError, match=r"kernel argument y0 must be contiguous \(row-major\), got strides \(1, 2\)"):
        check_tensor("y0", torch.zeros(3, 2).t(), (2, 3), torch.float32, dev)


def _forward_tensors(T=3, B=2, H=4, dt=torch.float32):
    z = lambda *s: torch.zeros(*s, dtype=dt)  # noqa: E731
    t = {
        "gi": z(T, B, 3 * H),
        "whh_t": z(H, 3 * H),
        "bhh": z(3 * H),
        "theta": z(H),
        "y0": z(B, H),
        "c0": z(B, H),
        "tr0": z(B, H),
        "zmask": None,
    }
    t.update({k: z(T, B, H) for k in ("y", "c", "o", "tr", "s_r", "s_z", "s_n", "s_hn")})
    return t


def test_forward_and_backward_argument_sets_are_checked():
    t = _forward_tensors()
    check_forward_args(t, 3, 2, 4, torch.float32, torch.float32)
    bad = dict(t, whh_t=torch.zeros(12, 4))  # W_hh instead of its transpose
    with pytest.raises(ValueError, match=r"kernel argument whh_t must have shape \[4, 12\], got \[12, 4\]"):
        check_forward_args(bad, 3, 2, 4, torch.float32, torch.float32)
    with pytest.raises(TypeError, match="kernel argument whh_t must have dtype torch.bfloat16"):
        check_forward_args(t, 3, 2, 4, torch.float32, torch.bfloat16)
    with pytest.raises(ValueError, match="s_r, s_z, s_n, s_hn must be all tensors or all None"):
        check_forward_args(dict(t, s_z=None), 3, 2, 4, torch.float32, torch.float32)
    z = lambda *s: torch.zeros(*s)  # noqa: E731
    tb = {
        "whh_t": z(4, 12),
        "theta": z(4),
        "c0": z(2, 4),
        "zmask": None,
        "g_y": None,
        "g_c": z(3, 2, 4),
        "g_o": None,
        "g_tr": None,
        "ga": z(3, 2, 12),
        "gqn": z(3, 2, 4),
    }
    tb.update({k: z(3, 2, 4) for k in ("y", "c", "o", "s_r", "s_z", "s_n", "s_hn")})
    tb.update({k: z(2, 4) for k in ("dy", "dc", "tb", "dth")})
    check_backward_args(tb, 3, 2, 4, torch.float32, torch.float32)
    with pytest.raises(ValueError, match=r"kernel argument gqn must have shape \[3, 2, 4\], got \[3, 2, 12\]"):
        check_backward_args(dict(tb, gqn=z(3, 2, 12)), 3, 2, 4, torch.float32, torch.float32)


# ----------------------------------------------------------------------------- CPU: emulated kernels
def test_block_compact_mirror():
    src = torch.tensor([0.0, 1.5, 0.0, 0.0, -2.0] + [0.0] * 60 + [3.0, 0.0, 4.0])
    idx, val, n = block_compact(src, 100, block=64, tile=128)
    assert n == 4
    assert idx[:4].tolist() == [101, 104, 165, 167]
    assert val[:4].tolist() == [1.5, -2.0, 3.0, 4.0]


GEOMETRY = dict(grid=3, block=64, units=32, tile=16)  # 3 chunks, 3 tiles, 2 k-groups at H = 40


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("zoneout", [None, "mask", "p"])
def test_emulated_kernels_match_reference_float64(reset, zoneout):
    call = make_call(reset=reset, zoneout=zoneout, T=4 if zoneout else 5)
    ref = outputs_and_grads(call, backends.get_backend("reference").run)
    got = outputs_and_grads(call, emulated(**GEOMETRY))
    activity = ref[0][2].mean().item()
    assert 0.1 < activity < 0.6
    assert_match(ref, got, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "case", ["narrow_band", "heaviside", "no_bias", "big_tiles", "grid_gt_items", "dense", "kernel_geometry"]
)
def test_emulated_kernels_sparse_backward_cases(case):
    """Narrow surrogate band (most units outside G: dy skipped), no surrogate gradient,
    no biases, and other launch geometries."""
    geometry = dict(GEOMETRY)
    kw: dict = {}
    if case == "narrow_band":
        kw["spike"] = EGRUSurrogate(0.9, 8.0)
    elif case == "heaviside":
        kw["spike"] = heaviside()
        kw["reset"] = "none"  # theta then gets no gradient at all
    elif case == "no_bias":
        kw["bias"] = False
    elif case == "big_tiles":
        geometry = dict(grid=2, block=128, units=64, tile=64)
    elif case == "dense":
        geometry = dict(GEOMETRY, dense=True)
        kw["spike"] = EGRUSurrogate(0.9, 8.0)
    elif case == "kernel_geometry":  # the constants of the CUDA build (256 threads, 2048-entry tiles)
        geometry = dict(grid=5, block=256, units=64, tile=2048)
        kw["H"] = 300
    else:
        geometry = dict(grid=50, block=64, units=64, tile=2048)
    call = make_call(**{"T": 5, "B": 3, "H": 37, **kw})
    ref = outputs_and_grads(call, backends.get_backend("reference").run)
    got = outputs_and_grads(call, emulated(**geometry))
    assert_match(ref, got, rtol=1e-12, atol=1e-12)
    if case == "heaviside":
        assert torch.count_nonzero(got[1]["threshold"]) == 0
    else:
        assert got[1]["threshold"].abs().max() > 0


def test_emulated_fp16_weight_storage():
    """Half models: weights stored in fp16, arithmetic in float32, outputs cast back."""
    call64 = make_call(T=4, B=2, H=40, dropconnect=False, seed=3)
    call16 = make_call(T=4, B=2, H=40, dropconnect=False, seed=3)
    for n in INPUT_NAMES:
        t = getattr(call16, n)
        setattr(call16, n, t.detach().half().requires_grad_())
        setattr(call64, n, t.detach().half().double().requires_grad_())  # same values, float64
    ref = backends.get_backend("reference").run(call64)
    out = emulated(**GEOMETRY)(call16)
    assert all(o.dtype == torch.float16 for o in out)
    assert torch.equal(out[2].double(), ref.o)
    torch.testing.assert_close(out[0].double(), ref.y, rtol=2e-3, atol=2e-3)
    (out[0].float().sum() + out[3].float().sum()).backward()
    assert call16.weight_hh.grad.dtype == torch.float16 and call16.weight_hh.grad.abs().sum() > 0


def test_emulated_backend_inside_egru_module(monkeypatch):
    """Two layers, DropConnect, zoneout and dropout in training mode: same masks, same result."""
    module_run_vs_reference("emulated", emulated(**GEOMETRY), monkeypatch, layers=2, batch=3)


# ----------------------------------------------------------------------------- GPU: real kernels
@needs_gpu
@pytest.mark.cuda
@pytest.mark.parametrize(
    "B,H,activity",
    [(1, 64, 0.1), (1, 1024, 0.01), (4, 2048, 0.1), (16, 256, 0.5), (128, 512, 0.9), (128, 2048, 0.05), (3, 300, 0.2)],
)
@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
def test_gpu_float64_kernels_equal_reference(B, H, activity, reset):
    call = calibrated_call(12, B, H, activity, dtype=torch.float64, reset=reset)
    ref = outputs_and_grads(call, backends.get_backend("reference").run)
    got = outputs_and_grads(call, K.run)
    assert_match(ref, got, rtol=1e-10, atol=1e-12)


@needs_gpu
@pytest.mark.cuda
@pytest.mark.parametrize("mode,dense", [("persistent", "off"), ("step", "off"), ("step", "on")])
@pytest.mark.parametrize("B,H", [(3, 300), (4, 1024)])
def test_gpu_float64_each_launch_mode(monkeypatch, mode, dense, B, H):
    """float64 equality in every launch mode; the persistent mode must really run cooperatively
    (no fallback warning: compiled without rdc, so no CUDA toolkit is needed)."""
    import warnings

    from snntorch_egru.cuda import _cupy

    monkeypatch.setenv("SNNTORCH_EGRU_CUPY_LAUNCH", mode)
    monkeypatch.setenv("SNNTORCH_EGRU_CUPY_DENSE", dense)
    call = calibrated_call(10, B, H, 0.1, dtype=torch.float64)
    ref = outputs_and_grads(call, backends.get_backend("reference").run)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        got = outputs_and_grads(call, K.run)
    assert_match(ref, got, rtol=1e-10, atol=1e-12)
    assert not _cupy._PERSISTENT_FAILED


@needs_gpu
@pytest.mark.cuda
@pytest.mark.parametrize("dense", ["on", "off"])
@pytest.mark.parametrize("B,H", [(4, 1024), (128, 512)])
def test_gpu_dense_and_sparse_recurrent_products(monkeypatch, dense, B, H):
    monkeypatch.setenv("SNNTORCH_EGRU_CUPY_DENSE", dense)
    call = calibrated_call(10, B, H, 0.1, dtype=torch.float64)
    assert_match(
        outputs_and_grads(call, backends.get_backend("reference").run),
        outputs_and_grads(call, K.run),
        rtol=1e-10,
        atol=1e-12,
    )


@needs_gpu
@pytest.mark.cuda
@pytest.mark.parametrize("zoneout", ["mask", "p"])
def test_gpu_zoneout_dropconnect_float64(zoneout):
    call = make_call(T=10, B=8, I=16, H=300, device="cuda", zoneout=zoneout, dropconnect=True, w_scale=1 / 300**0.5)
    assert_match(
        outputs_and_grads(call, backends.get_backend("reference").run),
        outputs_and_grads(call, K.run),
        rtol=1e-10,
        atol=1e-12,
    )


@needs_gpu
@pytest.mark.cuda
@pytest.mark.parametrize("B,H,activity", [(1, 1024, 0.1), (32, 2048, 0.1), (128, 256, 0.9), (7, 100, 0.01)])
def test_gpu_float32_kernels_match_float64_reference(B, H, activity):
    call64 = calibrated_call(8, B, H, activity, dtype=torch.float64)
    ref = outputs_and_grads(call64, backends.get_backend("reference").run)
    c_hat = torch.where(ref[0][2] > 0, ref[0][0], ref[0][1])
    margin = (c_hat - call64.threshold.detach()).abs().min().item()
    if margin < 1e-4:  # a float32 rounding may legitimately flip such an event
        pytest.skip(f"fixture has |c_hat - theta| = {margin:.1e} < 1e-4")
    got = outputs_and_grads(cast_call(call64, torch.float32), K.run)
    assert_match(ref, got, rtol=2e-4, atol=1e-5)


@needs_gpu
@pytest.mark.cuda
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("batch", [1, 16, 128])
def test_gpu_egru_module_layers(layers, batch):
    torch.manual_seed(0)
    rnn = se.EGRU(24, 512, num_layers=layers, thr_mean=0.1).cuda().double()
    x = torch.randn(10, batch, 24, device="cuda", dtype=torch.float64)
    res = []
    for backend in ("reference", "cupy"):
        rnn.backend = backend
        rnn.zero_grad()
        out, state, rec = rnn(x, return_internals=True)
        (out.sum() + state.c.sum() + rec.trace.pow(2).sum()).backward()
        res.append((out, rec.o, {n: p.grad.clone() for n, p in rnn.named_parameters()}))
    assert torch.equal(res[0][1], res[1][1])
    torch.testing.assert_close(res[1][0], res[0][0], rtol=1e-10, atol=1e-12)
    for n in res[0][2]:
        torch.testing.assert_close(res[1][2][n], res[0][2][n], rtol=1e-9, atol=1e-11)


@needs_gpu
@pytest.mark.cuda
def test_gpu_launch_modes_identical_and_deterministic(monkeypatch):
    call = calibrated_call(16, 8, 1024, 0.1, dtype=torch.float32)
    runs = []
    monkeypatch.setenv("SNNTORCH_EGRU_CUPY_DENSE", "off")
    for mode in ("persistent", "step", "persistent"):
        monkeypatch.setenv("SNNTORCH_EGRU_CUPY_LAUNCH", mode)
        runs.append(outputs_and_grads(call, K.run))
    for other in runs[1:]:
        for a, b in zip(runs[0][0], other[0]):
            assert torch.equal(a, b)
        for n in INPUT_NAMES:
            if runs[0][1][n] is not None:
                assert torch.equal(runs[0][1][n], other[1][n]), n


@needs_gpu
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gpu_half_storage(dtype):
    call = calibrated_call(8, 4, 512, 0.1, dtype=dtype)
    out = K.run(call)
    ref = backends.get_backend("reference").run(cast_call(call, torch.float64))
    assert all(o.dtype == dtype for o in out)
    agree = (out[2].double() == ref.o).double().mean().item()
    assert agree > 0.99
    tol = 2e-2 if dtype == torch.bfloat16 else 4e-3
    mask = out[2].double() == ref.o
    torch.testing.assert_close(out[0].double()[mask], ref.y[mask], rtol=tol, atol=tol)


@needs_gpu
@pytest.mark.cuda
def test_gpu_runs_on_current_torch_stream():
    call = calibrated_call(6, 4, 256, 0.2, dtype=torch.float32)
    ref = K.run(call)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        out = K.run(call)
    s.synchronize()
    for a, b in zip(ref, out):
        assert torch.equal(a, b)


@pytest.mark.parametrize("T,B", [(0, 2), (3, 0)])
def test_empty_sequences_or_batches_need_no_launch(T, B):
    call = make_call(T=3, B=2, H=8)
    call.x = torch.zeros(T, B, 5, dtype=torch.float64)
    call.y0, call.c0, call.trace0 = (torch.zeros(B, 8, dtype=torch.float64) for _ in range(3))
    call.zoneout_mask = None

    class NoLaunch:
        def forward(self, cfg, t):
            raise AssertionError("launched")

        backward = forward

    out = K.run(call, launcher=NoLaunch())
    assert all(o.shape == (T, B, 8) for o in out)


# ----------------------------------------------------------------------------- CPU: launch arguments
def _kernel_params(name: str) -> list:
    """(name, kind) of every parameter of ``extern "C" __global__`` kernel ``name`` as the package loads it."""
    from snntorch_egru.cuda._sources import kernel_source

    return kernel_params(name, kernel_source(f"{name}.cu"))


@pytest.mark.parametrize("mode,dense", [("persistent", "off"), ("step", "off"), ("step", "on")])
def test_cupy_launcher_arguments_match_kernel_signatures(monkeypatch, mode, dense):
    """Without a GPU: every launch passes the kernel's parameters by name, in order, with the
    right C types (pointer = uint64, int = int32, real = float32), and walks the steps right."""
    import contextlib
    import types

    import numpy as np

    from snntorch_egru.cuda import _cupy

    launches = []
    monkeypatch.setenv("SNNTORCH_EGRU_CUPY_LAUNCH", mode)
    monkeypatch.setenv("SNNTORCH_EGRU_CUPY_DENSE", dense)
    monkeypatch.setattr(
        _cupy, "get_kernel", lambda name, real, wstore, units: types.SimpleNamespace(name=name, units=units)
    )
    monkeypatch.setattr(
        _cupy, "_launch", lambda kern, grid, named, cooperative=False: launches.append((kern, grid, named, cooperative))
    )
    fake_cp = types.SimpleNamespace(cuda=types.SimpleNamespace(Device=lambda d: contextlib.nullcontext()))

    def fake_setup(self, ref, store):
        real = "double" if ref.dtype == torch.float64 else "float"
        m = os.environ["SNNTORCH_EGRU_CUPY_LAUNCH"]
        return fake_cp, 0, real, 0, m, 132, contextlib.nullcontext()

    monkeypatch.setattr(_cupy.CupyLauncher, "_setup", fake_setup)
    monkeypatch.setattr(_cupy.CupyLauncher, "_coresident", staticmethod(lambda kern, sms: 7))
    seen = {}
    for phase in ("forward", "backward"):
        orig = getattr(_cupy.CupyLauncher, phase)

        def spy(self, cfg, t, _orig=orig, _phase=phase):
            seen["egru_" + _phase] = t
            return _orig(self, cfg, t)

        monkeypatch.setattr(_cupy.CupyLauncher, phase, spy)
    T, B, H = 4, 3, 40
    call = make_call(T=T, B=B, H=H, dtype=torch.float32, zoneout="mask")
    out = K.run(call, launcher=_cupy.CupyLauncher())
    sum(o.nan_to_num().sum() for o in out).backward()

    sigs = {n: _kernel_params(n) for n in ("egru_forward", "egru_backward")}
    types_ok = {"ptr": np.uint64, "int": np.int32, "real": np.float32}
    for kern, grid, named, coop in launches:
        assert [n for n, _ in named] == [n for n, _ in sigs[kern.name]], kern.name
        for (n, v), (_, kind) in zip(named, sigs[kern.name]):
            assert type(v) is types_ok[kind], (kern.name, n, type(v))
        tensors = seen[kern.name]
        for n, v in named:  # every pointer named after a kernel tensor points at that tensor
            if n in tensors:
                assert int(v) == (0 if tensors[n] is None else tensors[n].data_ptr()), (kern.name, n)
        assert set(tensors) <= {n for n, _ in named}, kern.name
        assert coop == (mode == "persistent" and dense == "off")
        assert grid >= 1
    fwd = [dict(nm) for k, g, nm, _ in launches if k.name == "egru_forward"]
    bwd = [dict(nm) for k, g, nm, _ in launches if k.name == "egru_backward"]
    if mode == "persistent":
        assert [(a["t_begin"], a["t_end"]) for a in fwd] == [(0, T)] and fwd[0]["barrier"] != 0
        assert [(a["t_begin"], a["t_end"], a["phases"]) for a in bwd] == [(T, 0, 3)]
        # forward: min(items = B * ceil(H / 32), co-resident 7); backward: min(max(items, B*H/8 warps), 7)
        assert [g for k, g, _, _ in launches] == [6, 7]
    else:
        assert [(a["t_begin"], a["t_end"]) for a in fwd] == [(s, s + 1) for s in range(T)]
        assert all(a["barrier"] == 0 for a in fwd + bwd)
        expect = []
        for s in range(T - 1, -1, -1):
            expect.append((s + 1, s, 1))
            if s >= 1 and dense == "off":
                expect.append((s + 1, s, 2))
        assert [(a["t_begin"], a["t_end"], a["phases"]) for a in bwd] == expect
        assert all((a["gh"] != 0) == (dense == "on") for a in fwd)
    assert fwd[0]["zmask"] == call.zoneout_mask.data_ptr()
    assert all(a["s_r"] != 0 for a in fwd)  # gates saved for the backward


# ----------------------------------------------------------------------------- CPU: the CuPy loader
def _fake_cupy(monkeypatch, refuse_cooperative: bool):
    """A stand-in ``cupy`` module recording compiles and launches (no GPU needed)."""
    import contextlib
    import sys
    import types

    from snntorch_egru.cuda import _cupy

    log: dict = {"modules": [], "launches": []}

    class Kernel:
        def __init__(self, name):
            self.name = name

        def __call__(self, grid, block, args, **kw):
            if kw.get("enable_cooperative_groups") and refuse_cooperative:
                raise RuntimeError("cudaErrorCooperativeLaunchTooLarge: too many blocks in cooperative launch")
            log["launches"].append((self.name, grid[0], block[0], len(args), kw))

    class RawModule:
        def __init__(self, code, **kw):
            log["modules"].append(kw)
            self.names = [n for n in ("egru_forward", "egru_backward") if f"\n{n}(" in code]

        def get_function(self, name):
            assert name in self.names
            return Kernel(name)

    fake = types.ModuleType("cupy")
    fake.RawModule = RawModule
    fake.cuda = types.SimpleNamespace(Device=lambda d: contextlib.nullcontext())
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(_cupy, "_MODULES", {})
    monkeypatch.setattr(_cupy, "_PERSISTENT_FAILED", {})
    monkeypatch.setattr(
        _cupy.CupyLauncher,
        "_setup",
        lambda self, ref, store: (
            fake,
            0,
            "double" if ref.dtype == torch.float64 else "float",
            0,
            self.mode,
            4,
            contextlib.nullcontext(),
        ),
    )
    monkeypatch.setattr(_cupy.CupyLauncher, "_coresident", lambda self, kern, sms: 8)
    return log


def test_cupy_loader_compiles_without_rdc_and_launches_cooperatively(monkeypatch):
    """Persistent mode compiles plain device code (no ``enable_cooperative_groups`` at compile
    time: that would force -rdc and a toolkit's libcudadevrt.a) and asks for the cooperative
    launch at launch time; step mode launches normally. One module per variant."""
    from snntorch_egru.cuda import _cupy
    from snntorch_egru.cuda._sources import variant_options

    log = _fake_cupy(monkeypatch, refuse_cooperative=False)
    call = make_call(T=3, B=2, H=40, dtype=torch.float32)
    out = K.run(call, launcher=_cupy.CupyLauncher(mode="persistent", dense="off"))
    sum(o.nan_to_num().sum() for o in out).backward()
    assert log["modules"] == [{"options": variant_options("float", 0, 32)}] * 2  # forward, backward
    assert [(n, kw) for n, _, _, _, kw in log["launches"]] == [
        ("egru_forward", {"enable_cooperative_groups": True}),
        ("egru_backward", {"enable_cooperative_groups": True}),
    ]
    assert all(b == _cupy.BLOCK for _, _, b, _, _ in log["launches"])
    log["launches"].clear()
    out = K.run(call, launcher=_cupy.CupyLauncher(mode="step", dense="off"))
    sum(o.nan_to_num().sum() for o in out).backward()
    assert len(log["modules"]) == 2  # cached: the same kernels serve both modes
    assert len(log["launches"]) == 3 + 5 and all(kw == {} for *_, kw in log["launches"])


def test_cupy_persistent_failure_falls_back_to_step_with_one_warning(monkeypatch):
    import warnings

    from snntorch_egru.cuda import _cupy

    log = _fake_cupy(monkeypatch, refuse_cooperative=True)
    call = make_call(T=3, B=2, H=40, dtype=torch.float32)
    with pytest.warns(RuntimeWarning, match="falling back to launch mode 'step'") as rec:
        out = K.run(call, launcher=_cupy.CupyLauncher(mode="persistent", dense="off"))
        sum(o.nan_to_num().sum() for o in out).backward()
    msgs = [str(w.message) for w in rec if "falling back" in str(w.message)]
    assert len(msgs) == 2 and "egru_forward" in msgs[0] and "egru_backward" in msgs[1]
    assert "cudaErrorCooperativeLaunchTooLarge" in msgs[0]
    # the work ran in step mode: T forward launches, T + (T - 1) backward launches, none cooperative
    assert [n for n, *_ in log["launches"]] == ["egru_forward"] * 3 + ["egru_backward"] * 5
    log["launches"].clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning and no second cooperative attempt
        out = K.run(call, launcher=_cupy.CupyLauncher(mode="persistent", dense="off"))
        sum(o.nan_to_num().sum() for o in out).backward()
    assert len(log["launches"]) == 8 and all(kw == {} for *_, kw in log["launches"])


def test_unused_outputs_send_no_zero_gradients(monkeypatch):
    """Only y feeds the loss: the kernel backward gets None (not materialised zeros) for the
    c, o and trace gradients, and the gradients still equal the reference's."""
    from snntorch_egru.cuda import _function

    seen = {}
    orig = _function.kernel_backward

    def spy(launcher, cfg, *args):
        seen["upstream"] = args[-4:]  # g_y, g_c, g_o, g_tr
        return orig(launcher, cfg, *args)

    monkeypatch.setattr(_function, "kernel_backward", spy)
    call = make_call(T=4, B=2, H=20, seed=21)
    ref = backends.get_backend("reference").run(call)
    ins = [getattr(call, n) for n in INPUT_NAMES]
    want = torch.autograd.grad(ref.y.pow(2).sum(), ins, allow_unused=True, materialize_grads=True)
    got_y = emulated(**GEOMETRY)(call)[0]
    got = torch.autograd.grad(got_y.pow(2).sum(), ins, allow_unused=True, materialize_grads=True)
    g_y, g_c, g_o, g_tr = seen["upstream"]
    assert g_y is not None and g_c is None and g_o is None and g_tr is None
    assert want[5].abs().max() > 0 and want[8].abs().max() > 0  # W_hh and threshold gradients flow
    for name, a, b in zip(INPUT_NAMES, want, got):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12, msg=lambda m: f"{name}: {m}")
