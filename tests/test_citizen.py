"""The layer and its operator under every PyTorch transform and tool a user reaches for (issue 31).

Each test is written from the user's side: the call that failed (or silently gave a wrong answer)
and what it must give instead: torch.nn.GRU's behaviour, the independent float64 reference of
``egru_reference.py``, or an error that names the argument and the fix.
"""

from __future__ import annotations

import io

import pytest
import torch
from conftest import layer_params, randomize_
from egru_reference import ref_heaviside_nograd, ref_stack, ref_triangle
from torch.func import functional_call
from torch.utils.checkpoint import checkpoint

import snntorch_egru as se

T, B, I, H = 5, 2, 3, 6
BACKENDS = ["auto", "torch", "reference"]


def _model(backend="auto", layers=1, reset="subtract", seed=0, **kw):
    rnn = se.EGRU(I, H, num_layers=layers, reset_mechanism=reset, backend=backend, **kw).double()
    randomize_(rnn, seed)  # thresholds in [0.05, 0.45]: the clamp is the identity
    return rnn


def _reference(rnn, x, params=None):
    """The float64 reference of ``rnn`` (same tensors) on ``x``: ``(out, (y, c, trace))``."""
    spike = (
        ref_heaviside_nograd
        if rnn.surrogate_disable
        else ref_triangle(rnn.dampening_factor, rnn.pseudo_derivative_support)
    )
    z = x.new_zeros(rnn.num_layers, x.shape[1], H)
    layers = layer_params(rnn)
    if params is not None:
        layers = [{n: params.get(f"{n}_l{k}", p) for n, p in layer.items()} for k, layer in enumerate(layers)]
    out, final, _ = ref_stack(x, layers, z, z, z, reset=rnn.reset_mechanism, spike=spike)
    return out, final


def _reference_jvp(f, primal, tangent):
    """``J v`` from the full reverse-mode Jacobian of ``f`` (no forward-mode AD involved)."""
    jac = torch.autograd.functional.jacobian(f, primal)
    out_shape = jac.shape[: jac.dim() - primal.dim()]
    return (jac.reshape(*out_shape, -1) @ tangent.reshape(-1)).reshape(out_shape)


# ------------------------------------------------------------------------------------------
# 1. forward-mode AD: torch.func.jvp and torch.autograd.forward_ad


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("surrogate_disable", [False, True])
def test_jvp_through_egru_equals_the_reference_jacobian(backend, surrogate_disable):
    rnn = _model(backend, layers=2, surrogate_disable=surrogate_disable)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, I, dtype=torch.float64, generator=g)
    v = torch.randn(T, B, I, dtype=torch.float64, generator=g)
    out, tangent = torch.func.jvp(lambda a: rnn(a)[0], (x,), (v,))
    expected = _reference_jvp(lambda a: _reference(rnn, a)[0], x, v)
    assert expected.abs().max() > 1e-3  # the check can fail: the tangent is not trivially zero
    torch.testing.assert_close(out, _reference(rnn, x)[0], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(tangent, expected, rtol=1e-9, atol=1e-10)
    if surrogate_disable:  # Heaviside without gradient: the tangent is the finite difference (no crossing)
        h = 1e-6
        fd = (_reference(rnn, x + h * v)[0] - _reference(rnn, x - h * v)[0]) / (2 * h)
        torch.testing.assert_close(tangent, fd, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_ad_tangents_of_input_and_weights_equal_the_reference(backend):
    fwd = torch.autograd.forward_ad
    rnn = _model(backend)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(T, B, I, dtype=torch.float64, generator=g)
    v = torch.randn(T, B, I, dtype=torch.float64, generator=g)
    with fwd.dual_level():
        out, state = rnn(fwd.make_dual(x, v))
        t_out, t_c = fwd.unpack_dual(out).tangent, fwd.unpack_dual(state.c).tangent
    torch.testing.assert_close(t_out, _reference_jvp(lambda a: _reference(rnn, a)[0], x, v), rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(t_c, _reference_jvp(lambda a: _reference(rnn, a)[1][1], x, v), rtol=1e-9, atol=1e-10)
    # a tangent on a parameter (torch.func.jvp over functional_call)
    params = {k: p.detach() for k, p in rnn.named_parameters()}
    w, dw = params["weight_hh_l0"], torch.randn(3 * H, H, dtype=torch.float64, generator=g)
    _, t_w = torch.func.jvp(lambda a: functional_call(rnn, {**params, "weight_hh_l0": a}, (x,))[0], (w,), (dw,))
    ref = _reference_jvp(lambda a: _reference(rnn, x, {"weight_hh_l0": a})[0], w, dw)
    assert ref.abs().max() > 1e-3
    torch.testing.assert_close(t_w, ref, rtol=1e-9, atol=1e-10)


def test_kernel_path_under_transforms_runs_the_reference_math():
    """The CuPy kernels (run here by their CPU emulator, through the same operator a GPU run takes) have no
    forward-mode rule: under ``torch.func`` transforms and forward-mode AD the call runs the reference math,
    so tangents equal the reference's, never zeros."""
    from snntorch_egru import cuda
    from snntorch_egru.backends import LayerCall
    from snntorch_egru.cuda._emulator import EmulatorLauncher

    z = torch.zeros(B, H)
    w_ih, w_hh = torch.randn(3 * H, I), torch.randn(3 * H, H)

    def run(a):
        call = LayerCall(a, z, z, z, w_ih, w_hh, None, None, torch.full((H,), 0.1), se.surrogate.EGRUSurrogate())
        return cuda.run(call, launcher=EmulatorLauncher())[0]

    def ref(a):
        return se.functional.egru_sequence(a, z, z, z, w_ih, w_hh, None, None, torch.full((H,), 0.1))[0]

    x = torch.randn(T, B, I)
    v = torch.randn(T, B, I)
    assert run(x).shape == (T, B, H)
    out, tangent = torch.func.jvp(run, (x,), (v,))
    want_out, want_tangent = torch.func.jvp(ref, (x,), (v,))
    torch.testing.assert_close(out, want_out)
    torch.testing.assert_close(tangent, want_tangent)
    assert tangent.abs().max() > 0  # real activity: the tangent is not trivially zero
    with torch.autograd.forward_ad.dual_level():
        dual = run(torch.autograd.forward_ad.make_dual(x, v))
        torch.testing.assert_close(torch.autograd.forward_ad.unpack_dual(dual).tangent, want_tangent)


def test_jvp_through_the_cell_equals_the_reference():
    cell = se.EGRUCell(I, H).double()
    randomize_(cell, 3)
    g = torch.Generator().manual_seed(3)
    x, v = (torch.randn(T, B, I, dtype=torch.float64, generator=g) for _ in range(2))

    def run(a):
        y, c = cell.init_egru()
        for a_t in a:
            y, c = cell(a_t, y, c)
        return y

    _, tangent = torch.func.jvp(run, (x,), (v,))
    params = {n: getattr(cell, n) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "threshold")}
    z = x.new_zeros(1, B, H)
    expected = _reference_jvp(
        lambda a: ref_stack(a, [params], z, z, z, reset="subtract", spike=ref_triangle())[0][-1], x, v
    )
    assert expected.abs().max() > 1e-3
    torch.testing.assert_close(tangent, expected, rtol=1e-9, atol=1e-10)


# ------------------------------------------------------------------------------------------
# 9. torch.func.grad / jacrev


@pytest.mark.parametrize("backend", BACKENDS)
def test_torch_func_grad_equals_autograd(backend):
    rnn = _model(backend, layers=2)
    x = torch.randn(T, B, I, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    weights = torch.linspace(0.5, 1.5, T * B * H, dtype=torch.float64).view(T, B, H)

    def loss(p):
        out, st = functional_call(rnn, p, (x,))
        return (out * weights).sum() + st.c.sum()

    params = {k: p.detach() for k, p in rnn.named_parameters()}
    grads = torch.func.grad(loss)(params)
    rnn.zero_grad()
    loss(dict(rnn.named_parameters())).backward()
    for k, p in rnn.named_parameters():
        assert p.grad.abs().max() > 0 or "threshold" in k
        torch.testing.assert_close(grads[k], p.grad, rtol=1e-10, atol=1e-12, msg=k)


# ------------------------------------------------------------------------------------------
# 2. a NaN threshold propagates (as torch.nn.GRU propagates a NaN weight)


def test_nan_weight_propagates_in_torch_gru():  # the behaviour the EGRU follows
    gru = torch.nn.GRU(I, H)
    with torch.no_grad():
        gru.weight_hh_l0[0, 0] = float("nan")
    out, h = gru(torch.randn(T, B, I))
    assert out.isnan().any() and h.isnan().any()


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("backend", ["auto", "reference"])
@pytest.mark.parametrize("clamp", [True, False])
def test_nan_threshold_propagates_for_every_reset(reset, backend, clamp):
    rnn = _model(backend, layers=2, reset=reset, threshold_clamp=clamp)
    with torch.no_grad():
        rnn.threshold_l0[2] = float("nan")
    out, state = rnn(torch.randn(T, B, I, dtype=torch.float64))
    assert out.isnan().any(), "a NaN threshold must not silence the layer"
    for field in state:
        assert field[0, :, 2].isnan().all()  # the unit with the NaN threshold, at the last step
    # finite thresholds: no NaN anywhere (the added term is exactly zero)
    with torch.no_grad():
        rnn.threshold_l0[2] = 0.2
    out, state = rnn(torch.randn(T, B, I, dtype=torch.float64))
    assert not out.isnan().any() and not any(f.isnan().any() for f in state)


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
def test_nan_threshold_propagates_in_the_cell(reset):
    cell = se.EGRUCell(I, H, reset_mechanism=reset)
    with torch.no_grad():
        cell.threshold[0] = float("nan")
    y, c = cell(torch.randn(B, I))
    assert y[:, 0].isnan().all() and c[:, 0].isnan().all()
    with torch.no_grad():  # inference steps (the native event path) too
        cell.reset_mem()
        y, c = cell(torch.randn(B, I))
    assert y[:, 0].isnan().all() and c[:, 0].isnan().all()


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
def test_nan_threshold_propagates_in_the_norse_cell(reset):
    from snntorch_egru.norse import EGRUParameters, EGRURecurrentCell

    cell = EGRURecurrentCell(I, H, p=EGRUParameters(reset=reset))
    with torch.no_grad():
        cell.threshold[0] = float("nan")
    y, state = cell(torch.randn(B, I))
    assert y[:, 0].isnan().all() and state.c[:, 0].isnan().all() and state.trace[:, 0].isnan().all()
    assert not y[:, 1:].isnan().any()


# ------------------------------------------------------------------------------------------
# 3. EGRU.from_gru refuses a configuration the GRU's weights cannot fill


def test_from_gru_refuses_other_num_layers_and_bias():
    gru = torch.nn.GRU(I, H)
    with pytest.raises(ValueError, match=r"num_layers must equal gru.num_layers=1, got num_layers=3"):
        se.EGRU.from_gru(gru, num_layers=3)
    with pytest.raises(ValueError, match=r"bias must equal gru.bias=True, got bias=False"):
        se.EGRU.from_gru(gru, bias=False)
    egru = se.EGRU.from_gru(gru, num_layers=1, bias=True, batch_first=False)  # the same values are fine
    x = torch.randn(T, B, I)
    torch.testing.assert_close(egru(x)[0], gru(x)[0], rtol=1e-5, atol=1e-6)


def test_from_gru_follows_the_gru_dtype():
    gru = torch.nn.GRU(I, H, num_layers=2).double()
    egru = se.EGRU.from_gru(gru)
    assert all(p.dtype == torch.float64 for p in egru.parameters())
    x = torch.randn(T, B, I, dtype=torch.float64)
    torch.testing.assert_close(egru(x)[0], gru(x)[0], rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------------------------
# 4. weight_hh in torch.nn.GRU's layout: prune, parameters_to_vector, view(-1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_prune_weight_hh_equals_the_masked_weight_reference(backend):
    import torch.nn.utils.prune as prune

    rnn = _model(backend, layers=2)
    prune.l1_unstructured(rnn, "weight_hh_l0", 0.6)
    mask = rnn.weight_hh_l0_mask
    assert 0.55 < float((mask == 0).double().mean()) < 0.65
    x = torch.randn(T, B, I, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    out, st = rnn(x)
    (out.sum() + st.c.sum()).backward()
    w_orig = rnn.weight_hh_l0_orig.detach().clone().requires_grad_(True)
    ref_out, ref_final = _reference(rnn, x, {"weight_hh_l0": w_orig * mask})
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-10)
    (ref_out.sum() + ref_final[1].sum()).backward()
    torch.testing.assert_close(rnn.weight_hh_l0_orig.grad, w_orig.grad, rtol=1e-9, atol=1e-10)
    assert bool((rnn.weight_hh_l0_orig.grad[mask == 0] == 0).all())
    # a second forward after an optimizer step sees the new masked weight (the cached copy is renewed)
    torch.optim.SGD([rnn.weight_hh_l0_orig], lr=0.5).step()  # (thresholds stay inside the clamp)
    with torch.no_grad():
        torch.testing.assert_close(
            rnn(x)[0], _reference(rnn, x, {"weight_hh_l0": rnn.weight_hh_l0})[0], rtol=1e-10, atol=1e-10
        )
    prune.remove(rnn, "weight_hh_l0")
    assert rnn.weight_hh_l0.is_contiguous()


def test_parameters_to_vector_and_view_work():
    rnn = _model(layers=2)
    vec = torch.nn.utils.parameters_to_vector(rnn.parameters())
    assert vec.numel() == sum(p.numel() for p in rnn.parameters())
    for k in range(2):
        w = getattr(rnn, f"weight_hh_l{k}")
        assert w.is_contiguous() and torch.equal(w.view(-1), w.reshape(-1))
    x = torch.randn(T, B, I, dtype=torch.float64)
    before = rnn(x)[0]
    torch.nn.utils.vector_to_parameters(vec * 1.5, rnn.parameters())  # replaces each .data: no stale copy
    torch.testing.assert_close(rnn(x)[0], _reference(rnn, x)[0], rtol=1e-10, atol=1e-10)
    assert not torch.allclose(rnn(x)[0], before)


def test_outputs_and_gradients_equal_the_reference_with_the_new_storage():
    rnn = _model(layers=2)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    out, st = rnn(x)
    (out.sum() + st.c.sum()).backward()
    grads = {k: p.grad.clone() for k, p in rnn.named_parameters()}
    gx = x.grad.clone()
    x.grad = None
    rnn.zero_grad()
    ref_out, ref_final = _reference(rnn, x)
    torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-10)
    (ref_out.sum() + ref_final[1].sum()).backward()
    torch.testing.assert_close(gx, x.grad, rtol=1e-9, atol=1e-10)
    for k, p in rnn.named_parameters():
        torch.testing.assert_close(grads[k], p.grad, rtol=1e-9, atol=1e-10, msg=k)


# ------------------------------------------------------------------------------------------
# 6. torch.export.save / load of an exported EGRU


@pytest.mark.parametrize("with_state", [False, True])
def test_export_save_load_runs_like_eager(with_state):
    rnn = se.EGRU(I, H, num_layers=2).eval()
    x = torch.randn(T, B, I)
    state = se.EGRUState(*(0.1 * torch.rand(2, B, H) for _ in range(3)))
    args = (x, state) if with_state else (x,)
    ep = torch.export.export(rnn, args)
    buf = io.BytesIO()
    torch.export.save(ep, buf)
    buf.seek(0)
    loaded = torch.export.load(buf)
    out, st = loaded.module()(*args)
    ref_out, ref_st = rnn(*args)
    assert isinstance(st, se.EGRUState)
    torch.testing.assert_close(out, ref_out)
    for a, b in zip(st, ref_st):
        torch.testing.assert_close(a, b)


# ------------------------------------------------------------------------------------------
# 7. the default dtype


@pytest.mark.parametrize("cls", [se.EGRU, se.EGRUCell])
def test_modules_follow_the_default_dtype(cls):
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        m = cls(I, H)
        gru = torch.nn.GRU(I, H)
        assert all(t.dtype == gru.weight_ih_l0.dtype == torch.float64 for t in m.parameters())
        x = torch.randn(T, B, I)
        if cls is se.EGRU:
            out, _ = m(x)
            ref = _reference(m, x)[0]
        else:
            out = m(x[0])[0]
            ref = None
        assert out.dtype == torch.float64
        if ref is not None:
            torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    finally:
        torch.set_default_dtype(old)


# ------------------------------------------------------------------------------------------
# 8. the meta device


@pytest.mark.parametrize("how", ["argument", "context"])
@pytest.mark.parametrize("cls", [se.EGRU, se.EGRUCell])
def test_build_on_meta_then_materialize(how, cls):
    if how == "argument":
        m = cls(I, H, device="meta")
    else:
        with torch.device("meta"):
            m = cls(I, H)
    assert all(t.is_meta for t in m.parameters())
    m.to_empty(device="cpu")
    m.reset_parameters()
    assert all(t.device.type == "cpu" and torch.isfinite(t).all() for t in m.parameters())
    assert bool(((m.threshold if cls is se.EGRUCell else m.threshold_l0) > 0).all())
    x = torch.randn(T, B, I)
    if cls is se.EGRU:
        ref = se.EGRU(I, H, backend="reference")
        ref.load_state_dict(m.state_dict())
        torch.testing.assert_close(m(x)[0], ref(x)[0])
    else:
        y, c = m(x[0])
        assert y.shape == c.shape == (B, H)


def test_dtype_argument_like_torch_gru():
    m = se.EGRU(I, H, num_layers=2, dtype=torch.float64)
    assert all(t.dtype == torch.float64 for t in m.parameters())
    m(torch.randn(T, B, I, dtype=torch.float64))


# ------------------------------------------------------------------------------------------
# 11. torch.utils.checkpoint around the cell


def _cell_loss(cell, x, ck, reentrant=False):
    y, c = cell.init_egru()
    ys = []
    for x_t in x:
        y, c = checkpoint(cell, x_t, y, c, use_reentrant=reentrant) if ck else cell(x_t, y, c)
        ys.append(y)
    w = torch.linspace(0.5, 1.5, T * B * H, dtype=x.dtype).view(T, B, H)
    return (torch.stack(ys) * w).sum() + c.sum(), c


@pytest.mark.parametrize("reentrant", [False, True])
def test_checkpoint_per_step_with_explicit_state_gives_the_same_gradients(reentrant):
    cell = se.EGRUCell(I, H).double()
    randomize_(cell, 6)
    x = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    grads = []
    for ck in (False, True):
        cell.zero_grad()
        x.grad = None
        loss, c = _cell_loss(cell, x, ck, reentrant)
        loss.backward()
        assert cell.c is c  # the stored state is the last step's, after the recomputations too
        grads.append([x.grad.clone()] + [p.grad.clone() for p in cell.parameters()])
    assert grads[0][0].abs().max() > 0
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_checkpoint_with_the_stored_state_is_a_clear_error():
    cell = se.EGRUCell(I, H, init_hidden=True)
    se.utils.reset(cell)
    x = torch.randn(T, B, I, requires_grad=True)
    ys = [checkpoint(cell, x_t, use_reentrant=False) for x_t in x]
    with pytest.raises(RuntimeError, match=r"init_hidden=False.*checkpoint\(cell, x_t, y, c"):
        torch.stack(ys).sum().backward()


# ------------------------------------------------------------------------------------------
# 14a. spike_grad checked at construction


@pytest.mark.parametrize("cls", [se.EGRU, se.EGRUCell])
def test_spike_grad_of_the_wrong_signature_is_refused_at_construction(cls):
    with pytest.raises(TypeError, match=r"spike_grad must be a callable f\(v\).*missing 1 required"):
        cls(I, H, spike_grad=lambda v, slope: v)
    with pytest.raises(TypeError, match=r"spike_grad.*returned a tensor of shape \[\]"):
        cls(I, H, spike_grad=lambda v: (v > 0).float().sum())
    with pytest.raises(TypeError, match=r"spike_grad.*returned tuple"):
        cls(I, H, spike_grad=lambda v: (v, v))
    snn = pytest.importorskip("snntorch")
    cls(I, H, spike_grad=snn.surrogate.atan())  # snnTorch's surrogates pass


# ------------------------------------------------------------------------------------------
# 16. the snn.Leaky call shape `spk, mem = cell(cur, mem)`


def test_leaky_call_shape_is_refused_where_it_can_be_seen():
    cell = se.EGRUCell(I, H)
    x = torch.randn(T, B, I)
    mem = torch.zeros(B, H)
    spk, mem = cell(x[0], mem)  # indistinguishable from passing zero events: accepted
    with pytest.raises(TypeError, match=r"passed as y is the internal state c.*y, c = cell\(input_, y, c\)"):
        cell(x[1], mem)
    with pytest.raises(TypeError, match=r"got a tuple of 2.*y, c = cell.init_egru\(\)"):
        cell(x[1], cell.init_egru())
    y, c = cell.init_egru()  # the documented loop runs
    for x_t in x:
        y, c = cell(x_t, y, c)
    ref = se.EGRUCell(I, H)
    ref.load_state_dict(cell.state_dict())
    for x_t in x:
        y_ref = ref(x_t)[0]
    torch.testing.assert_close(y, y_ref)


def test_states_load_with_torch_load_weights_only():
    """torch.load's default (weights_only=True) rebuilds the state tuples (torch.export.load relies on it)."""
    import io

    state = se.EGRUState(torch.randn(1, 2, 3), torch.randn(1, 2, 3), torch.randn(1, 2, 3))
    buf = io.BytesIO()
    torch.save({"state": state}, buf)
    buf.seek(0)
    back = torch.load(buf, weights_only=True)["state"]
    assert type(back) is se.EGRUState and all(torch.equal(a, b) for a, b in zip(back, state))
