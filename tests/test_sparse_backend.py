"""The fused event-driven "torch" backend against the step-by-step autograd reference."""

from __future__ import annotations

import sys
import warnings

import pytest
import torch

import snntorch_egru as se
from snntorch_egru import _cpu_backward, _engine, backends, sparse
from snntorch_egru import functional as F
from snntorch_egru.bench import calibrate_thresholds
from snntorch_egru.state import EGRUState

T, B, I, H = 9, 3, 5, 8


@pytest.fixture(params=["native-seq", "native-step", "gather", "dense"])
def path(request, monkeypatch):
    """Force one of the recurrent-product paths of the fused backend."""
    if request.param.startswith("native"):
        if sparse.native_library() is None:
            pytest.skip("no C compiler: native helpers unavailable")
        monkeypatch.setattr(sparse, "NATIVE_MAX_FRACTION", float(B))  # always take the native gather
        monkeypatch.setattr(sparse, "SMALL_WEIGHT_BYTES", 0)
        # native-seq: the whole forward loop in C; native-step: torch loop with a C gather per step
        monkeypatch.setattr(sparse, "NATIVE_SEQ_MAX_BATCH", B if request.param == "native-seq" else 0)
    elif request.param == "gather":
        monkeypatch.setattr(_engine, "_USE_NATIVE", False)
        monkeypatch.setattr(sparse, "SMALL_WEIGHT_BYTES", 0)
        monkeypatch.setattr(sparse, "GATHER_MAX_FRACTION", 1.0)  # always gather rows in torch
        monkeypatch.setattr(sparse, "CSR_MAX_DENSITY", 1.0)  # CSR products for the event operands
    else:
        monkeypatch.setattr(_engine, "_FORCE_DENSE", True)
    # backward coefficient chunks of 1, 2, 4 or all steps
    chunk = {"native-seq": 1, "native-step": 2, "gather": 4, "dense": 1000}[request.param]
    monkeypatch.setattr(_cpu_backward, "_BACKWARD_CHUNK_ELEMENTS", chunk * B * H)
    return request.param


def _pair(
    dtype=torch.float64,
    *,
    layers=1,
    reset="subtract",
    activity=0.3,
    bias=True,
    spike_grad=None,
    surrogate_disable=False,
    dropconnect=0.0,
    zoneout=0.0,
    dropout=0.0,
    eps=1.3,
    seed=0,
):
    torch.manual_seed(seed)
    kw = dict(
        num_layers=layers,
        reset_mechanism=reset,
        bias=bias,
        spike_grad=spike_grad,
        surrogate_disable=surrogate_disable,
        dropconnect=dropconnect,
        zoneout=zoneout,
        dropout=dropout,
        pseudo_derivative_support=eps,
        threshold_clamp=False,
        init="torch",
    )
    fused = se.EGRU(I, H, backend="torch", **kw).to(dtype)
    ref = se.EGRU(I, H, backend="reference", **kw).to(dtype)
    with torch.no_grad():
        for p in fused.parameters():
            p.mul_(2.0)  # livelier dynamics than the uniform init
        calibrate_thresholds(fused, torch.randn(T, B, I, dtype=dtype), activity)
    ref.load_state_dict(fused.state_dict())
    return fused, ref


def _inputs(dtype, layers, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, I, generator=g, dtype=dtype)
    y0 = torch.randn(layers, B, H, generator=g, dtype=dtype) * (torch.rand(layers, B, H, generator=g) < 0.4)
    c0 = 0.3 * torch.randn(layers, B, H, generator=g, dtype=dtype)
    tr0 = 0.3 * torch.randn(layers, B, H, generator=g, dtype=dtype)
    up = [torch.randn(layers, T, B, H, generator=g, dtype=dtype) for _ in range(4)]
    return x, (y0, c0, tr0), up


def _run(model, x, state, up, seed=7):
    x = x.clone().requires_grad_(True)
    state = [s.clone().requires_grad_(True) for s in state]
    torch.manual_seed(seed)  # same dropconnect / zoneout / dropout masks for both backends
    out, new_state, rec = model(x, EGRUState(*state), return_internals=True)
    loss = sum((r * u).sum() for r, u in zip(rec, up)) + (out**2).sum() + (new_state.c**2).sum()
    params = [p for p in model.parameters()]
    grads = torch.autograd.grad(loss, [x, *state, *params], allow_unused=True)
    return out, new_state, rec, grads


def _assert_same(a, b, rtol, atol):
    out_a, st_a, rec_a, g_a = a
    out_b, st_b, rec_b, g_b = b
    assert torch.equal(rec_a.o, rec_b.o)  # identical event masks
    torch.testing.assert_close(out_a, out_b, rtol=rtol, atol=atol)
    for u, v in zip(st_a, st_b):
        torch.testing.assert_close(u, v, rtol=rtol, atol=atol)
    for u, v in zip(rec_a, rec_b):
        torch.testing.assert_close(u, v, rtol=rtol, atol=atol)
    for u, v in zip(g_a, g_b):
        if u is None or v is None:
            assert u is None and v is None
        else:
            torch.testing.assert_close(u, v, rtol=rtol, atol=atol)


@pytest.mark.parametrize("reset", F.RESET_MECHANISMS)
@pytest.mark.parametrize("layers", [1, 3])
def test_fused_equals_reference_float64(path, reset, layers):
    fused, ref = _pair(layers=layers, reset=reset)
    x, state, up = _inputs(torch.float64, layers)
    a, b = _run(fused, x, state, up), _run(ref, x, state, up)
    _assert_same(a, b, rtol=1e-10, atol=1e-10)
    assert 0.1 < a[2].o.mean().item() < 0.6  # the comparison is not vacuous: events and silence


@pytest.mark.parametrize("activity", [0.01, 0.1, 0.5, 0.9])
def test_fused_equals_reference_across_activities(path, activity):
    fused, ref = _pair(layers=2, activity=activity, seed=3)
    x, state, up = _inputs(torch.float64, 2, seed=4)
    a, b = _run(fused, x, state, up), _run(ref, x, state, up)
    _assert_same(a, b, rtol=1e-10, atol=1e-10)
    assert a[2].o[0].sum() > 0


@pytest.mark.parametrize("reset", F.RESET_MECHANISMS)
def test_zoneout_dropconnect_dropout_training(path, reset):
    fused, ref = _pair(layers=2, reset=reset, dropconnect=0.3, zoneout=0.25, dropout=0.2)
    fused.train(), ref.train()
    x, state, up = _inputs(torch.float64, 2)
    a, b = _run(fused, x, state, up), _run(ref, x, state, up)
    _assert_same(a, b, rtol=1e-10, atol=1e-10)
    # the dropconnect mask was used: the weight gradient has exact zeros where the mask dropped
    w_grad = a[3][4 + 1]  # weight_hh_l0 (order: weight_ih, weight_hh, bias_ih, bias_hh, threshold)
    assert (w_grad == 0).sum() > 0.1 * w_grad.numel()


def test_eval_zoneout(path):
    fused, ref = _pair(layers=1, zoneout=0.4)
    fused.eval(), ref.eval()
    x, state, up = _inputs(torch.float64, 1)
    _assert_same(_run(fused, x, state, up), _run(ref, x, state, up), rtol=1e-10, atol=1e-10)


def test_no_bias_and_gradient_free_heaviside(path):
    fused, ref = _pair(layers=2, bias=False, surrogate_disable=True)
    x, state, up = _inputs(torch.float64, 2)
    a, b = _run(fused, x, state, up), _run(ref, x, state, up)
    _assert_same(a, b, rtol=1e-10, atol=1e-10)


class _Atan64(torch.autograd.Function):
    """An atan surrogate that keeps the input dtype (snnTorch's returns float32 events)."""

    @staticmethod
    def forward(ctx, v):
        ctx.save_for_backward(v)
        return (v > 0).to(v.dtype)

    @staticmethod
    def backward(ctx, g):
        (v,) = ctx.saved_tensors
        return g / (1.0 + (torch.pi * v) ** 2)


def test_unbounded_surrogate_dense_fallback_exact():
    fused, ref = _pair(layers=2, spike_grad=_Atan64.apply)
    x, state, up = _inputs(torch.float64, 2)
    a, b = _run(fused, x, state, up), _run(ref, x, state, up)
    _assert_same(a, b, rtol=1e-10, atol=1e-10)
    assert a[3][-1].abs().min() > 0  # every unit's threshold gets gradient (unbounded support)


def test_snntorch_atan_surrogate():
    snn_surrogate = pytest.importorskip("snntorch.surrogate")
    fused, ref = _pair(layers=2, spike_grad=snn_surrogate.atan(alpha=2.0))
    x, state, up = _inputs(torch.float64, 2)
    a, b = _run(fused, x, state, up), _run(ref, x, state, up)
    # snnTorch's atan returns float32 events, so the float64 reference carries float32 rounding
    _assert_same(a, b, rtol=1e-5, atol=1e-6)
    assert a[3][-1].abs().sum() > 0


@pytest.mark.parametrize("reset", F.RESET_MECHANISMS)
def test_float32_matches_float32_reference(reset):
    fused, ref = _pair(torch.float32, layers=2, reset=reset)
    x, state, up = _inputs(torch.float32, 2)
    a, b = _run(fused, x, state, up), _run(ref, x, state, up)
    _assert_same(a, b, rtol=1e-4, atol=1e-5)
    # and float32 is float64 to float32 rounding
    f64 = _pair(torch.float64, layers=2, reset=reset)[0]
    f64.load_state_dict({k: v.double() for k, v in fused.state_dict().items()})
    c = _run(f64, x.double(), [s.double() for s in state], [u.double() for u in up])
    torch.testing.assert_close(a[0].double(), c[0], rtol=1e-4, atol=1e-5)


def test_auto_backend_is_torch_on_cpu_and_no_grad_path_matches():
    rnn = se.EGRU(I, H)
    x = torch.randn(T, B, I)
    call_x = x
    call = backends.LayerCall(
        x=call_x,
        y0=torch.zeros(B, H),
        c0=torch.zeros(B, H),
        trace0=torch.zeros(B, H),
        weight_ih=rnn.weight_ih_l0,
        weight_hh=rnn.weight_hh_l0,
        bias_ih=rnn.bias_ih_l0,
        bias_hh=rnn.bias_hh_l0,
        threshold=rnn.threshold_l0,
        spike_fn=rnn.spike_grad,
    )
    assert backends.resolve_backend("auto", call).name == "torch"
    with torch.no_grad():
        out_ng, _ = rnn(x)
    out_g, _ = rnn(x)
    assert out_g.grad_fn is not None
    torch.testing.assert_close(out_ng, out_g, rtol=0, atol=0)


def test_weight_cache_follows_in_place_updates():
    fused, ref = _pair(layers=1)
    x = torch.randn(T, B, I, dtype=torch.float64)
    with torch.no_grad():
        fused(x)  # fills the cache of W_hh^T
        fused.weight_hh_l0.data.mul_(-0.5)  # bypasses the version counter
        ref.weight_hh_l0.data.mul_(-0.5)
        torch.testing.assert_close(fused(x)[0], ref(x)[0], rtol=1e-10, atol=1e-10)
        fused.weight_hh_l0.add_(0.25)  # through the version counter
        ref.weight_hh_l0.add_(0.25)
        torch.testing.assert_close(fused(x)[0], ref(x)[0], rtol=1e-10, atol=1e-10)


def test_empty_sequence_and_bad_arguments():
    w = dict(
        weight_ih=torch.randn(3 * H, I),
        weight_hh=torch.randn(3 * H, H),
        bias_ih=None,
        bias_hh=None,
        threshold=torch.zeros(H),
    )
    s = torch.zeros(B, H)
    out = sparse.egru_sequence_fused(torch.randn(0, B, I), s, s, s, *w.values())
    assert out.y.shape == (0, B, H)
    with pytest.raises(ValueError, match="reset must be one of"):
        sparse.egru_sequence_fused(torch.randn(T, B, I), s, s, s, *w.values(), reset="hard")
    with pytest.raises(ValueError, match=r"x must be \[T, B, I\], got shape \(4, 5\)"):
        sparse.egru_sequence_fused(torch.randn(4, 5), s, s, s, *w.values())


def test_saved_memory_below_reference():
    """Bytes saved for backward (packed by autograd) are well below the reference's tape."""

    def saved_bytes(model, x):
        total = [0]

        def pack(t):
            total[0] += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(x)[0].sum().backward()
        return total[0]

    fused, ref = _pair(torch.float32, layers=2)
    x = torch.randn(40, B, I)
    fb, rb = saved_bytes(fused, x), saved_bytes(ref, x)
    assert fb < 0.5 * rb, (fb, rb)


def _fresh_loader(monkeypatch, module=None):
    monkeypatch.setattr(_engine, "_native_tried", False)
    monkeypatch.setattr(_engine, "_lib", None)
    if module is not None:
        monkeypatch.setattr(_engine, "_NATIVE_MODULE", module)


@pytest.mark.parametrize("damage", ["missing", "truncated", "not-a-library"])
def test_unusable_enginerary_warns_once_and_falls_back(monkeypatch, tmp_path, damage):
    """Not built (no compiler at install), a truncated or a foreign file: one warning, correct results."""
    import importlib.machinery
    import sys

    pkg = tmp_path / "egru_fake_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    if damage == "truncated" and sparse.native_library() is not None:
        real = sparse.native_library()._name
        with open(real, "rb") as f:
            (pkg / f"_egru_native{suffix}").write_bytes(f.read()[:300])
    elif damage == "not-a-library":
        (pkg / f"_egru_native{suffix}").write_bytes(b"\x7fELF planted garbage")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("egru_fake_pkg", None)
    sys.modules.pop("egru_fake_pkg._egru_native", None)
    _fresh_loader(monkeypatch, "egru_fake_pkg._egru_native")
    with pytest.warns(RuntimeWarning, match="native CPU helper is unavailable.*pure-PyTorch path"):
        assert sparse.native_library() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # only once
        assert sparse.native_library() is None
        fused, ref = _pair(layers=2)
        x, state, up = _inputs(torch.float64, 2)
        _assert_same(_run(fused, x, state, up), _run(ref, x, state, up), rtol=1e-10, atol=1e-10)
    _fresh_loader(monkeypatch)  # let later tests find the real library again


def test_native_opt_out_is_silent(monkeypatch):
    monkeypatch.setenv("SNNTORCH_EGRU_NATIVE", "0")
    _fresh_loader(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sparse.native_library() is None
    assert "SNNTORCH_EGRU_NATIVE=0" in _engine._native_reason
    monkeypatch.delenv("SNNTORCH_EGRU_NATIVE")
    _fresh_loader(monkeypatch)


def test_enginerary_is_loaded_from_the_package_only():
    lib = sparse.native_library()
    if lib is None:
        pytest.skip("native helper not built in this environment")
    import os

    assert os.path.dirname(lib._name) == os.path.join(os.path.dirname(sparse.__file__), "_native")


def test_density_switch_mixing_gather_and_dense_steps(monkeypatch):
    """Near the crossover some steps gather rows and others (with hysteresis) go dense."""
    monkeypatch.setattr(_engine, "_USE_NATIVE", False)
    monkeypatch.setattr(sparse, "SMALL_WEIGHT_BYTES", 0)
    monkeypatch.setattr(sparse, "GATHER_MAX_FRACTION", 0.4)
    monkeypatch.setattr(sparse, "DENSE_HOLD_STEPS", 2)
    fused, ref = _pair(layers=2, activity=0.35, seed=5)
    x, state, up = _inputs(torch.float64, 2, seed=6)
    _assert_same(_run(fused, x, state, up), _run(ref, x, state, up), rtol=1e-10, atol=1e-10)


def test_backward_twice_with_retain_graph():
    fused, ref = _pair(layers=2)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    out, _ = fused(x)
    (g1,) = torch.autograd.grad(out.sum(), x, retain_graph=True)
    (g2,) = torch.autograd.grad(out.sum(), x)
    (g_ref,) = torch.autograd.grad(ref(x)[0].sum(), x)
    torch.testing.assert_close(g1, g2, rtol=0, atol=0)
    torch.testing.assert_close(g1, g_ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_transpose_helper_is_exact(dtype):
    w = torch.randn(3 * 37, 37, dtype=dtype)
    native = sparse._native_fns(dtype)
    for fns in ([native] if native is not None else []) + [None]:
        assert torch.equal(_engine._transpose(w, fns), w.t())


@pytest.mark.parametrize("parts", [2, 3, 5])
@pytest.mark.parametrize("zoneout", [0.0, 0.3])
def test_native_time_loop_cut_into_parts_on_two_threads_equals_one_thread(monkeypatch, parts, zoneout):
    """Each step of the native forward loop cut into ranges of units, some run by the helper thread, gives the
    very numbers of one range on one thread (outputs, saved internals, every gradient), and those equal the
    step-by-step reference in float64."""
    if sparse.native_library() is None:
        pytest.skip("no C compiler: native helpers unavailable")
    monkeypatch.setattr(sys.modules[__name__], "H", 40)  # 2-3 ranges of whole cache lines (16 units each)
    monkeypatch.setattr(sparse, "NATIVE_SEQ_MAX_BATCH", B)
    fused, ref = _pair(layers=2, zoneout=zoneout, activity=0.2)
    x, state, up = _inputs(torch.float64, 2)
    fused.train(zoneout > 0)
    ref.train(zoneout > 0)
    monkeypatch.setattr(_engine, "native_split", lambda units: (1, 1))
    one = _run(fused, x, state, up)
    assert 0.02 < one[2].o.double().mean().item() < 0.9  # real activity
    monkeypatch.setattr(_engine, "native_split", lambda units: (2, parts))
    cut = _run(fused, x, state, up)
    _assert_same(one, cut, rtol=0, atol=0)
    _assert_same(cut, _run(ref, x, state, up), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("density", [0.0, 0.04, 0.15])
def test_native_product_with_transposed_events_equals_float64(dtype, density, monkeypatch):
    """dW_hh = Y^T Q from the events' nonzeros (native, column blocks of larger matrices as the backward passes
    them, sizes that leave a partial chunk), on one and on two threads, equals the float64 product; events
    denser than NATIVE_EVENTS_MAX_DENSITY are left to the dense GEMM (nothing written)."""
    if sparse.native_library() is None:
        pytest.skip("no C compiler: native helpers unavailable")
    g = torch.Generator().manual_seed(3)
    n, h = 37, 50
    y = torch.randn(n, h, generator=g, dtype=dtype) * (torch.rand(n, h, generator=g) < density)
    q = torch.randn(n, 3 * h + 7, generator=g, dtype=dtype)[:, 3:-4]  # row stride 3h + 7, offset 3
    want = y.double().t() @ q.double()
    outs = []
    for threads in (1, 2):
        monkeypatch.setattr(torch, "get_num_threads", lambda t=threads: t)
        out = torch.full((h, 3 * h + 5), float("nan"), dtype=dtype)
        blocks = (out[:, : 2 * h], out[:, 2 * h : 3 * h])
        assert _engine._native_events_t_mm(y.t(), (q[:, : 2 * h], q[:, 2 * h :]), blocks)
        assert torch.isnan(out[:, 3 * h :]).all()  # nothing outside the blocks is written
        got = out[:, : 3 * h]
        tol = 1e-12 if dtype == torch.float64 else 1e-4
        torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol)
        outs.append(got)
    assert torch.equal(outs[0], outs[1])  # the same numbers on two threads
    dense = y.clone()
    dense[dense == 0] = 1.0  # every element an event
    out = torch.full((h, 3 * h), 7.0, dtype=dtype)
    assert not _engine._native_events_t_mm(dense.t(), (q,), (out,))
    assert (out == 7.0).all()
    assert torch.equal(_engine._sparse_left_mm(y.t(), q), _engine._sparse_left_mm(y.t(), q))
    torch.testing.assert_close(_engine._sparse_left_mm(y.t(), q).double(), want, rtol=1e-4, atol=1e-4)
