"""The EGRU custom operator (snntorch_egru::egru_layer) as PyTorch sees it: torch.compile,
torch.export, jit.trace, ONNX, autocast, and hostile inputs (issue 19)."""

from __future__ import annotations

import io
import pickle
import warnings

import pytest
import torch
import torch.utils._pytree as pytree

import snntorch_egru as se
from snntorch_egru import _engine, backends, cuda, sparse
from snntorch_egru import functional as F
from snntorch_egru.bench import calibrate_thresholds
from snntorch_egru.cuda._emulator import EmulatorLauncher
from snntorch_egru.surrogate import EGRUSurrogate

T, B, I, H = 7, 3, 5, 16


def _pair(layers=2, dtype=torch.float32, seed=0, **kw):
    torch.manual_seed(seed)
    fast = se.EGRU(I, H, num_layers=layers, backend="torch", threshold_clamp=False, init="torch", **kw).to(dtype)
    with torch.no_grad():
        for p in fast.parameters():
            p.mul_(2.0)
        calibrate_thresholds(fast, torch.randn(T, B, I, dtype=dtype), 0.3)
    ref = se.EGRU(I, H, num_layers=layers, backend="reference", threshold_clamp=False, init="torch", **kw)
    ref = ref.to(dtype)
    ref.load_state_dict(fast.state_dict())
    return fast, ref


def _loss_and_grads(model, x, state=None):
    model.zero_grad()
    out, st = model(x, state)
    loss = (out * torch.linspace(0.5, 1.5, out.numel()).view_as(out)).sum() + st.c.sum() + 0.3 * st.trace.sum()
    loss.backward()
    return out.detach(), st, {n.replace("_orig_mod.", ""): p.grad.clone() for n, p in model.named_parameters()}


def _assert_equal_runs(a, b, rtol=1e-5, atol=1e-6):
    torch.testing.assert_close(a[0], b[0], rtol=rtol, atol=atol)
    for u, v in zip(a[1], b[1]):
        torch.testing.assert_close(u.detach(), v.detach(), rtol=rtol, atol=atol)
    assert a[2].keys() == b[2].keys()
    for k in a[2]:
        torch.testing.assert_close(a[2][k], b[2][k], rtol=rtol, atol=atol, msg=k)


# ------------------------------------------------------------------------------------------
# the operator itself


def test_opcheck_schema_fake_and_autograd_registration():
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    args = (
        r(T, B, I).requires_grad_(),
        r(B, H),
        r(B, H),
        r(B, H),
        r(3 * H, I).requires_grad_(),
        r(3 * H, H).requires_grad_(),
        r(3 * H).requires_grad_(),
        r(3 * H),
        torch.full((H,), 0.2, dtype=torch.float64),
        None,
        0.0,
        0,
        0.7,
        1.0,
        False,
        True,
    )
    torch.library.opcheck(
        torch.ops.snntorch_egru.egru_layer.default,
        args,
        test_utils=("test_schema", "test_autograd_registration", "test_faketensor"),
    )


def test_op_matches_reference_float64_all_gradients():
    fast, ref = _pair(dtype=torch.float64, dropconnect=0.0, zoneout=0.0)
    x = torch.randn(T, B, I, dtype=torch.float64)
    _assert_equal_runs(_loss_and_grads(fast, x), _loss_and_grads(ref, x), rtol=1e-10, atol=1e-10)


def test_double_backward_raises_a_clear_error():
    fast, _ = _pair()
    out, _ = fast(torch.randn(T, B, I))
    with pytest.raises(RuntimeError, match="not differentiable.*backend='reference'"):
        torch.autograd.grad(out.sum(), fast.weight_hh_l0, create_graph=True)


def test_kernel_launcher_path_is_once_differentiable():
    """The emulator drives the real operator (the path a GPU run takes): values equal the reference, and a
    double backward through it is refused with the operator's clear error."""
    torch.manual_seed(0)
    z = torch.zeros(B, H, dtype=torch.float64)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    w_ih = torch.randn(3 * H, I, dtype=torch.float64, requires_grad=True)
    w_hh = (0.3 * torch.randn(3 * H, H, dtype=torch.float64)).requires_grad_()
    theta = torch.full((H,), 0.1, dtype=torch.float64)
    call = backends.LayerCall(x, z, z, z, w_ih, w_hh, None, None, theta, EGRUSurrogate())
    y, c, o, tr = cuda.run(call, launcher=EmulatorLauncher())
    ref = F.egru_sequence(x, z, z, z, w_ih, w_hh, None, None, theta)
    torch.testing.assert_close(y, ref.y, rtol=1e-10, atol=1e-10)
    with pytest.raises(RuntimeError, match="not differentiable.*backend='reference'"):
        torch.autograd.grad(y.sum(), x, create_graph=True)


# ------------------------------------------------------------------------------------------
# torch.compile / torch.export / jit.trace / ONNX


@pytest.mark.parametrize("fullgraph", [False, True])
def test_compile_egru_forward_backward_equal_eager_repeatedly(fullgraph):
    fast, _ = _pair(dropout=0.0)
    xs = [torch.randn(T, B, I, generator=torch.Generator().manual_seed(k)) for k in range(10)]
    eager = [_loss_and_grads(fast, x) for x in xs]
    torch._dynamo.reset()
    # the default (inductor) without fullgraph; fullgraph=True with aot_eager (same graph capture,
    # quicker for CI). Inductor's on-disk caches are off: their key does not cover the operator's
    # fake implementation, so an entry from another version of this package could be reused.
    import torch._inductor.config as inductor_config

    with inductor_config.patch({"fx_graph_cache": False, "autotune_local_cache": False}):
        compiled = torch.compile(fast, fullgraph=fullgraph, backend="aot_eager" if fullgraph else "inductor")
        for x, e in zip(xs, eager):  # 10 calls per mode, 20 in all
            _assert_equal_runs(_loss_and_grads(compiled, x), e)
    torch._dynamo.reset()


def test_compile_egru_training_options_and_recompiles():
    """DropConnect/zoneout masks (drawn outside the op), eval mode and a batch-size change."""
    torch.manual_seed(3)
    fast = se.EGRU(I, H, num_layers=2, dropconnect=0.3, zoneout=0.2, dropout=0.2)
    ref = se.EGRU(I, H, num_layers=2, dropconnect=0.3, zoneout=0.2, dropout=0.2, backend="reference")
    ref.load_state_dict(fast.state_dict())
    torch._dynamo.reset()
    compiled = torch.compile(fast, fullgraph=True, backend="aot_eager")
    for k, (train, batch) in enumerate([(True, B), (False, B), (True, 2)]):
        fast.train(train)
        ref.train(train)
        x = torch.randn(T, batch, I)
        torch.manual_seed(100 + k)
        a = _loss_and_grads(compiled, x)
        torch.manual_seed(100 + k)
        b = _loss_and_grads(ref, x)
        _assert_equal_runs(a, b, rtol=1e-4, atol=1e-5)
    torch._dynamo.reset()


@pytest.mark.parametrize("fullgraph", [False, True])
def test_compile_egru_cell_loop(fullgraph):
    torch.manual_seed(1)
    cell = se.EGRUCell(I, H)
    xs = torch.randn(4, B, I)

    def run(c, x):
        y = torch.zeros(B, H)
        h = torch.zeros(B, H)
        outs = []
        for t in range(x.shape[0]):
            y, h = c(x[t], y, h)
            outs.append(y)
        return torch.stack(outs)

    cell.reset_mem()
    out = run(cell, xs)
    out.sum().backward()
    g = cell.weight_hh.grad.clone()
    torch._dynamo.reset()
    compiled = torch.compile(run, fullgraph=fullgraph, backend="aot_eager")
    for _ in range(3):
        cell.zero_grad()
        cell.reset_mem()
        out2 = compiled(cell, xs)
        out2.sum().backward()
        torch.testing.assert_close(out2, out)
        torch.testing.assert_close(cell.weight_hh.grad, g)
    torch._dynamo.reset()


@pytest.mark.parametrize("fullgraph", [False, True])
def test_compile_norse_flavour_and_sequential_state(fullgraph):
    norse = pytest.importorskip("norse.torch")
    from snntorch_egru.norse import EGRURecurrent

    torch.manual_seed(2)
    model = norse.SequentialState(EGRURecurrent(I, H), torch.nn.Linear(H, 4), EGRURecurrent(4, H))
    xs = [torch.randn(T, B, I) for _ in range(3)]

    def step(x):
        model.zero_grad()
        out, state = model(x)
        out.sum().backward()
        return out.detach(), [p.grad.clone() for p in model.parameters()]

    eager = [step(x) for x in xs]
    torch._dynamo.reset()
    compiled_model = torch.compile(model, fullgraph=fullgraph, backend="aot_eager")
    for x, (o, gs) in zip(xs, eager):
        model.zero_grad()
        out, _ = compiled_model(x)
        out.sum().backward()
        torch.testing.assert_close(out, o)
        for p, gref in zip(model.parameters(), gs):
            torch.testing.assert_close(p.grad, gref, rtol=1e-5, atol=1e-6)
    torch._dynamo.reset()


def test_export_egru_and_norse():
    from snntorch_egru.norse import EGRURecurrent

    fast, _ = _pair()
    fast.eval()
    x = torch.randn(T, B, I)
    ep = torch.export.export(fast, (x,))
    assert "snntorch_egru.egru_layer" in str(ep.graph)
    x2 = torch.randn(T, B, I)
    out, st = ep.module()(x2)
    ref_out, ref_st = fast(x2)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(st.y, ref_st.y)
    layer = EGRURecurrent(I, H)
    ep2 = torch.export.export(layer, (x,))
    torch.testing.assert_close(ep2.module()(x2)[0], layer(x2)[0])


@pytest.mark.parametrize("grad", [False, True])
def test_jit_trace_records_the_operator(grad):
    fast, ref = _pair()
    x = torch.randn(T, B, I)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # jit.trace is deprecated upstream
        with torch.set_grad_enabled(grad):
            traced = torch.jit.trace(fast, (x,), check_trace=False)
        buf = io.BytesIO()
        torch.jit.save(traced, buf)
        buf.seek(0)
        loaded = torch.jit.load(buf)
    assert "snntorch_egru::egru_layer" in str(traced.graph)
    x2 = torch.randn(T, B, I)
    with torch.no_grad():
        expect = ref(x2)
        for m in (traced, loaded):
            out, st = m(x2)
            torch.testing.assert_close(out, expect[0])
            torch.testing.assert_close(st[1], expect[1].c)


def test_onnx_export_runs_in_onnxruntime_equal_to_eager(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = se.EGRU(I, H, num_layers=2)
            self.fc = torch.nn.Linear(H, 3)

        def forward(self, x):
            out, st = self.rnn(x)
            return self.fc(out), st.c

    torch.manual_seed(4)
    net = Net().eval()
    x = torch.randn(T, B, I)
    path = tmp_path / "egru.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (x,), str(path), dynamo=True, verbose=False)
    sess = ort.InferenceSession(str(path))
    assert len(sess.get_inputs()) == 1
    x2 = torch.randn(T, B, I)  # a new input: a graph that folded the example into constants fails here
    got = sess.run(None, {sess.get_inputs()[0].name: x2.numpy()})
    with torch.no_grad():
        want = net(x2)
    assert float(want[0].abs().sum()) > 0
    torch.testing.assert_close(torch.from_numpy(got[0]), want[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.from_numpy(got[1]), want[1], rtol=1e-4, atol=1e-5)


def test_positional_return_internals_gets_a_clear_message():
    rnn = se.EGRU(I, H)
    with pytest.raises(TypeError, match="return_internals is keyword-only"):
        rnn(torch.randn(T, B, I), None, True)
    with pytest.raises(TypeError, match="return_internals must be a bool"):
        rnn(torch.randn(T, B, I), return_internals="yes")


# ------------------------------------------------------------------------------------------
# autocast


@pytest.mark.parametrize("backend", ["torch", "reference"])
def test_autocast_bf16_cpu_runs_float32_and_matches(backend):
    fast, _ = _pair(layers=2)
    model = fast if backend == "torch" else _pair(layers=2)[1]
    x = torch.randn(T, B, I)
    xb = x.bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, st, rec = model(xb, return_internals=True)
    assert out.dtype == torch.float32 and st.c.dtype == torch.float32
    (out.sum() + st.c.sum()).backward()
    g_ac = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    # the policy: exactly the float32 computation on the (bf16-rounded) input
    out32, st32, rec32 = model(xb.float(), return_internals=True)
    (out32.sum() + st32.c.sum()).backward()
    torch.testing.assert_close(out, out32, rtol=0, atol=0)
    for n, p in model.named_parameters():
        torch.testing.assert_close(g_ac[n], p.grad, rtol=0, atol=0)
    # and close to the float32 run on the unrounded input, with the same events wherever the
    # state is not within the input's rounding error of the threshold
    model.zero_grad()
    out_f, _, rec_f = model(x, return_internals=True)
    theta = torch.stack([model.threshold_l0, model.threshold_l1]).view(2, 1, 1, H)
    margin = (rec_f.c + rec_f.o * theta - theta).abs()
    far = margin > 0.05
    assert float(far.float().mean()) > 0.5
    assert torch.equal(rec.o[far], rec_f.o[far])
    assert 0.05 < float(rec_f.o.detach().mean()) < 0.9


def test_autocast_cell_and_norse():
    from snntorch_egru.norse import EGRURecurrent

    cell = se.EGRUCell(I, H)
    layer = EGRURecurrent(I, H)
    x = torch.randn(T, B, I)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, c = cell(x[0].bfloat16())
        out, st = layer(x.bfloat16())
    assert y.dtype == c.dtype == out.dtype == torch.float32
    torch.testing.assert_close(out, layer(x.bfloat16().float())[0], rtol=0, atol=0)
    out.sum().backward()
    assert layer.weight_hh.grad is not None


# ------------------------------------------------------------------------------------------
# hostile inputs: a clear error or the correct output, never a crash or garbage


def test_wrong_shaped_recurrent_weight_through_data_at_h4096():
    rnn = se.EGRU(2, 4096)
    rnn.weight_hh_l0.data = torch.randn(3 * 4096, 1)
    for grad in (True, False):
        with torch.set_grad_enabled(grad), pytest.raises(ValueError, match=r"weight_hh must have shape"):
            rnn(torch.randn(3, 1, 2))


@pytest.mark.parametrize(
    "name,value,match",
    [
        ("bias_hh_l0", lambda: torch.randn(3 * H - 1), r"bias_hh must have shape \[48\]"),
        ("bias_ih_l0", lambda: torch.randn(3 * H + 5), r"bias_ih must have shape \[48\]"),
        ("threshold_l0", lambda: torch.rand(H - 3), r"threshold must have shape \[16\]"),
        ("threshold_l0", lambda: torch.rand(2, H), r"threshold must have shape \[16\]"),
        ("weight_ih_l0", lambda: torch.randn(3 * H, I + 1), r"weight_ih must have shape \[48, 5\]"),
        ("weight_hh_l0", lambda: torch.randn(3 * H, H, dtype=torch.float64), r"weight_hh has dtype|dtype"),
    ],
)
@pytest.mark.parametrize("backend", ["torch", "reference"])
def test_bad_parameter_data_is_a_clear_error(name, value, match, backend):
    rnn = se.EGRU(I, H, backend=backend)
    getattr(rnn, name).data = value()
    x = torch.randn(T, B, I)
    for grad in (True, False):
        with torch.set_grad_enabled(grad), pytest.raises((ValueError, TypeError), match=match):
            rnn(x)


@pytest.mark.parametrize("shape", [(), (1,)])
def test_scalar_threshold_broadcasts_like_the_reference(shape):
    fast, ref = _pair(layers=1, dtype=torch.float64)
    for m in (fast, ref):
        m.threshold_l0 = torch.nn.Parameter(torch.full(shape, 0.15, dtype=torch.float64))
    x = torch.randn(T, B, I, dtype=torch.float64)
    a, b = _loss_and_grads(fast, x), _loss_and_grads(ref, x)
    _assert_equal_runs(a, b, rtol=1e-10, atol=1e-10)
    assert a[2]["threshold_l0"].shape == shape


def test_data_edits_after_a_forward_are_seen():
    fast, ref = _pair(layers=1, dtype=torch.float64)
    x = torch.randn(T, B, I, dtype=torch.float64)
    with torch.no_grad():
        fast(x)
        for m in (fast, ref):
            m.weight_hh_l0[:, 1:] *= 3  # an in-place edit (version bump), element 0 unchanged
        torch.testing.assert_close(fast(x)[0], ref(x)[0], rtol=1e-10, atol=1e-10)
        for m in (fast, ref):
            m.weight_hh_l0.data[:, 1:] *= 3  # no version bump: flatten_parameters() drops the copies
            m.flatten_parameters()
        torch.testing.assert_close(fast(x)[0], ref(x)[0], rtol=1e-10, atol=1e-10)
    for m in (fast, ref):
        m.weight_hh_l0.data = m.weight_hh_l0.data.t().contiguous().t() * 0.5  # new storage, strided
    torch.testing.assert_close(fast(x)[0], ref(x)[0], rtol=1e-10, atol=1e-10)


def test_non_contiguous_parameters_are_handled():
    fast, ref = _pair(layers=1, dtype=torch.float64)
    for m in (fast, ref):
        # a strided view of a larger buffer (neither layout) and a column-major input weight
        m.weight_hh_l0.data = torch.zeros(3 * H, 2 * H, dtype=torch.float64)[:, ::2].copy_(m.weight_hh_l0.data)
        m.weight_ih_l0.data = m.weight_ih_l0.data.t().contiguous().t()
    assert not fast.weight_hh_l0.is_contiguous() and not sparse.fast_layout(fast.weight_hh_l0)
    x = torch.randn(B, T, I, dtype=torch.float64).transpose(0, 1)  # non-contiguous input
    _assert_equal_runs(_loss_and_grads(fast, x), _loss_and_grads(ref, x), rtol=1e-10, atol=1e-10)


def test_module_built_under_inference_mode_runs():
    with torch.inference_mode():
        fast = se.EGRU(I, H, num_layers=2)
        ref = se.EGRU(I, H, num_layers=2, backend="reference")
        ref.load_state_dict(fast.state_dict())
        x = torch.randn(T, B, I)
        out, st = fast(x)
        torch.testing.assert_close(out, ref(x)[0])
    with torch.no_grad():
        torch.testing.assert_close(fast(x)[0], out)


def test_public_fused_function_checks_everything():
    s = torch.zeros(B, H)
    w_ih, w_hh, th = torch.randn(3 * H, I), torch.randn(3 * H, H), torch.full((H,), 0.1)
    fused = sparse.egru_sequence_fused
    with pytest.raises(ValueError, match=r"weight_hh must have shape"):
        fused(torch.randn(T, B, I), s, s, s, w_ih, torch.randn(3 * H, 1), None, None, th)
    with pytest.raises(ValueError, match=r"y0 must have shape \[3, 16\]"):
        fused(torch.randn(T, B, I), torch.zeros(B + 1, H), s, s, w_ih, w_hh, None, None, th)
    with pytest.raises(ValueError, match=r"bias_hh must have shape \[48\]"):
        fused(torch.randn(T, B, I), s, s, s, w_ih, w_hh, None, torch.zeros(7), th)
    with pytest.raises(ValueError, match=r"zoneout_mask must have shape"):
        fused(torch.randn(T, B, I), s, s, s, w_ih, w_hh, None, None, th, zoneout_mask=torch.ones(T, B, 2))
    with pytest.raises(TypeError, match=r"c0 has dtype torch.float64"):
        fused(torch.randn(T, B, I), s, s.double(), s, w_ih, w_hh, None, None, th)
    with pytest.raises(TypeError, match=r"x must be a torch.Tensor"):
        fused([1.0], s, s, s, w_ih, w_hh, None, None, th)
    with pytest.raises(ValueError, match=r"dense \(strided\)"):
        fused(torch.randn(T, B, I).to_sparse(), s, s, s, w_ih, w_hh, None, None, th)


def test_native_forward_guard_refuses_mismatched_buffers():
    gi = torch.zeros(T, B, 3 * H)
    s = torch.zeros(B, H)
    w_t = torch.zeros(H, 3 * H)
    outs = [torch.zeros(T, B, H) for _ in range(4)]
    good = dict(
        gi=gi,
        y0=s,
        c0=s,
        tr0=s,
        w_t=w_t,
        b_hh=torch.zeros(3 * H),
        theta=torch.zeros(H),
        zo=None,
        outs=outs,
        saved=(None, None, None),
        gh=torch.zeros(B, 3 * H),
    )
    sparse.check_native_forward(**good)
    for key, bad in [
        ("w_t", torch.zeros(H, 1)),
        ("theta", torch.zeros(1)),
        ("b_hh", torch.zeros(3 * H - 1)),
        ("y0", torch.zeros(H, B).t()),
        ("gh", torch.zeros(B, 3 * H, dtype=torch.float64)),
    ]:
        with pytest.raises(RuntimeError, match=key):
            sparse.check_native_forward(**{**good, key: bad})


def test_generic_spike_function_runs_the_reference_decomposition():
    snn = pytest.importorskip("snntorch")
    torch.manual_seed(5)
    kw = dict(spike_grad=snn.surrogate.atan(), threshold_clamp=False)
    fast = se.EGRU(I, H, num_layers=2, **kw)
    ref = se.EGRU(I, H, num_layers=2, backend="reference", **kw)
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(T, B, I)
    _assert_equal_runs(_loss_and_grads(fast, x), _loss_and_grads(ref, x), rtol=0, atol=0)


# ------------------------------------------------------------------------------------------
# module-level GRU idioms (issue 14 item 5, issue 19 item 6)


def test_egru_state_indexing_raises_but_fields_unpacking_and_pytrees_work():
    rnn = se.EGRU(I, H, num_layers=2)
    _, st = rnn(torch.randn(T, B, I))
    for idx in (-1, 0, slice(None)):
        with pytest.raises(TypeError, match=r"state\.y\[-1\].*h_n\[-1\]"):
            st[idx]
    y, c, tr = st
    assert y is st.y and c is st.c and tr is st.trace and len(st) == 3
    leaves, spec = pytree.tree_flatten(st)
    assert len(leaves) == 3 and pytree.tree_unflatten(leaves, spec) == st
    assert isinstance(st._replace(y=st.c), se.EGRUState)
    again = pickle.loads(pickle.dumps(st.detach()))
    assert torch.equal(again.c, st.c)
    assert "EGRUState(y=" in repr(st)
    out2, st2 = rnn(torch.randn(T, B, I), st.detach())  # continuing from it still works
    assert st2.y.shape == (2, B, H)


def test_dropout_with_one_layer_warns_like_nn_gru():
    with pytest.warns(UserWarning, match="non-zero dropout expects num_layers greater than 1"):
        se.EGRU(I, H, dropout=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        se.EGRU(I, H, num_layers=2, dropout=0.5)


@pytest.mark.parametrize("flag", ["bias", "batch_first", "learn_threshold", "surrogate_disable", "threshold_clamp"])
def test_string_flags_are_type_errors(flag):
    with pytest.raises(TypeError, match=f"{flag} must be a bool"):
        se.EGRU(I, H, **{flag: "False"})


def test_string_flags_are_type_errors_cell_and_norse():
    from snntorch_egru.norse import EGRURecurrent

    for kw in ({"init_hidden": "yes"}, {"output": 1}, {"learn_threshold": "no"}):
        with pytest.raises(TypeError, match="must be a bool"):
            se.EGRUCell(I, H, **kw)
    with pytest.raises(TypeError, match="record_states must be a bool"):
        EGRURecurrent(I, H, record_states="True")


@pytest.mark.parametrize("backend", ["torch", "reference"])
def test_zero_length_sequence_output_has_grad_fn(backend):
    rnn = se.EGRU(I, H, num_layers=2, backend=backend)
    out, st = rnn(torch.randn(0, B, I))
    assert out.shape == (0, B, H) and out.grad_fn is not None
    out.sum().backward()
    assert rnn.weight_ih_l0.grad is not None and float(rnn.weight_ih_l0.grad.abs().sum()) == 0.0


@pytest.mark.parametrize("use_native", [True, False])
@pytest.mark.parametrize("layout", ["row-major", "transposed"])
def test_recurrent_weight_copy_is_cached_and_never_stale(monkeypatch, use_native, layout):
    """weight_hh is stored row-major (torch.nn.GRU's layout); the CPU event path reads W_hh^T from a copy
    made once per weight version (every torch edit is seen); a weight stored transposed is read in place."""
    monkeypatch.setattr(sparse, "SMALL_WEIGHT_BYTES", 0)  # the event path even for these small weights
    monkeypatch.setattr(_engine, "_USE_NATIVE", use_native)
    calls = []
    real_transpose = _engine._transpose
    monkeypatch.setattr(_engine, "_transpose", lambda w, n: calls.append(1) or real_transpose(w, n))
    fast, ref = _pair(layers=2, dtype=torch.float64)
    sparse.clear_transposed_cache()
    calls.clear()  # (_pair's threshold calibration ran the layer)
    assert all(getattr(fast, f"weight_hh_l{k}").is_contiguous() for k in range(2))
    if layout == "transposed":
        for m in (fast, ref):
            for k in range(2):
                w = getattr(m, f"weight_hh_l{k}")
                w.data = w.data.t().contiguous().t()
    x = torch.randn(T, B, I, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(fast(x)[0], ref(x)[0], rtol=1e-10, atol=1e-10)
        first = len(calls)
        torch.testing.assert_close(fast(x)[0], ref(x)[0], rtol=1e-10, atol=1e-10)
        assert len(calls) == first  # unchanged weights: the cached copies
        for m in (fast, ref):
            m.weight_hh_l0[:, 1:] *= 3  # in place, element 0 unchanged
            m.weight_hh_l1[-1, -1] += 1e-12  # one element, a tiny change
        torch.testing.assert_close(fast(x)[0], ref(x)[0], rtol=1e-10, atol=1e-10)
    with torch.inference_mode():
        for m in (fast, ref):
            m.weight_hh_l0.add_(0.01)
        torch.testing.assert_close(fast(x)[0], ref(x)[0], rtol=1e-10, atol=1e-10)
    _assert_equal_runs(_loss_and_grads(fast, x), _loss_and_grads(ref, x), rtol=1e-10, atol=1e-10)
    if layout == "transposed":
        assert calls == []
    else:
        assert first == 2 and len(calls) == 2 + 2 + 1  # one copy per layer, then one per edited version
        torch.optim.SGD(fast.parameters(), lr=0.1).step()  # bumps every version: the next call copies again
        ref.load_state_dict(fast.state_dict())
        with torch.no_grad():
            torch.testing.assert_close(fast(x)[0], ref(x)[0], rtol=1e-10, atol=1e-10)
        assert len(calls) == 5 + 2


def test_recurrent_storage_survives_the_usual_module_operations():
    """state_dict round trips, .to(dtype), deepcopy, an optimizer step and gradients keep weight_hh
    contiguous (torch.nn.GRU's layout): view(-1) and parameters_to_vector work."""
    import copy

    rnn = se.EGRU(I, H, num_layers=2)
    other = se.EGRU(I, H, num_layers=2)
    other.load_state_dict(rnn.state_dict())
    opt = torch.optim.Adam(rnn.parameters(), lr=1e-3)
    rnn(torch.randn(T, B, I))[0].sum().backward()
    opt.step()
    assert rnn.weight_hh_l0.grad.shape == (3 * H, H)
    for m in (rnn, other, copy.deepcopy(rnn), copy.deepcopy(rnn).double()):
        assert all(getattr(m, f"weight_hh_l{k}").is_contiguous() for k in range(2))
        vec = torch.nn.utils.parameters_to_vector(m.parameters())
        assert vec.numel() == sum(p.numel() for p in m.parameters())
        assert torch.equal(m.weight_hh_l1.view(-1), m.weight_hh_l1.reshape(-1))
    assert rnn.weight_hh_l0.shape == (3 * H, H)
