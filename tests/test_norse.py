"""Norse flavour: EGRURecurrentCell / EGRURecurrent against the snnTorch flavour, a reference,
Norse's own composition modules and threshold functions; import without Norse; errors."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from typing import NamedTuple

import pytest
import torch
from egru_reference import psi, ref_layer, ref_triangle
from flavour_helpers import B, D, H, I, T
from flavour_helpers import randomize as _randomize
from flavour_helpers import x_seq as _x

import snntorch_egru as se
from snntorch_egru import interop
from snntorch_egru.norse import (
    NORSE_METHODS,
    EGRUParameters,
    EGRURecurrent,
    EGRURecurrentCell,
    EGRURecurrentState,
    NorseThreshold,
    spike_function,
)

NAMES = interop.PARAMETER_NAMES


def _norse_threshold():
    pytest.importorskip("norse")
    from norse.torch.functional.threshold import threshold

    return threshold


def _grads(module: torch.nn.Module) -> dict:
    return {n: p.grad.clone() for n, p in module.named_parameters()}


# --------------------------------------------------------------------------------------------
# One math: equal to the snnTorch flavour and to an independent reference
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
def test_cell_equals_reference_and_egrucell(reset):
    cell = EGRURecurrentCell(I, H, EGRUParameters(reset=reset)).to(D)
    _randomize(cell, 3)
    snn_cell = se.EGRUCell(I, H, reset_mechanism=reset).to(D)
    snn_cell.load_state_dict(cell.state_dict())  # identical parameter names
    x = _x()
    xn, xs = x.clone().requires_grad_(), x.clone().requires_grad_()
    state, ys, cs = None, [], []
    for t in range(T):
        y, state = cell(xn[t], state)
        ys.append(y)
        cs.append(state.c)
    ys, cs = torch.stack(ys), torch.stack(cs)
    assert 0.05 < (ys != 0).double().mean() < 0.7  # a genuinely sparse regime
    ys2 = torch.stack([snn_cell(xs[t])[0] for t in range(T)])
    torch.testing.assert_close(ys, ys2, rtol=1e-14, atol=1e-14)
    # independent reference (tests/egru_reference.py), paper triangle gamma 0.7, eps 1
    zeros = torch.zeros(B, H, dtype=D)
    ref = ref_layer(
        x, zeros, zeros, zeros, {n: getattr(cell, n).detach() for n in NAMES}, reset=reset, spike=ref_triangle(0.7, 1.0)
    )
    torch.testing.assert_close(ys, ref["y"], rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(cs, ref["c"], rtol=1e-13, atol=1e-13)
    # gradients w.r.t. every parameter and the input equal the snnTorch flavour's
    w = torch.randn(T, B, H, generator=torch.Generator().manual_seed(9), dtype=D)
    (ys * w).sum().backward()
    (ys2 * w).sum().backward()
    for n in NAMES:
        torch.testing.assert_close(getattr(cell, n).grad, getattr(snn_cell, n).grad, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(xn.grad, xs.grad, rtol=1e-12, atol=1e-13)
    assert cell.threshold.grad.abs().sum() > 0  # thresholds are trainable Parameters


@pytest.mark.parametrize("backend", ["reference", "auto"])
def test_recurrent_layer_equals_egru_layer(backend):
    layer = EGRURecurrent(I, H, record_states=True, backend=backend).to(D)
    _randomize(layer, 5)
    egru = se.EGRU(I, H, backend=backend).to(D)
    egru.load_state_dict(interop.cell_to_layer_state_dict(layer.state_dict()))
    g = torch.Generator().manual_seed(2)
    y0, c0 = 0.3 * torch.randn(B, H, generator=g, dtype=D), 0.3 * torch.randn(B, H, generator=g, dtype=D)
    x = _x(4)
    out, rec = layer(x, EGRURecurrentState(y0, c0))
    out2, st2, rec2 = egru(x, se.EGRUState(y0[None], c0[None], torch.zeros(1, B, H, dtype=D)), return_internals=True)
    torch.testing.assert_close(out, out2, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(rec.c, rec2.c[0], rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(rec.y[-1], st2.y[0], rtol=0, atol=0)
    # final-state mode returns the last recorded step
    layer.record_states = False
    _, final = layer(x, EGRURecurrentState(y0, c0))
    torch.testing.assert_close(final.c, rec.c[-1], rtol=0, atol=0)
    w = torch.randn(T, B, H, generator=torch.Generator().manual_seed(8), dtype=D)
    (layer(x, EGRURecurrentState(y0, c0))[0] * w).sum().backward()
    (out2 * w).sum().backward()
    for n in NAMES:
        torch.testing.assert_close(getattr(layer, n).grad, getattr(egru, f"{n}_l0").grad, rtol=1e-11, atol=1e-12)


def test_recurrent_layer_unbatched_and_empty():
    layer = EGRURecurrent(I, H).to(D)
    _randomize(layer, 6)
    x = _x(5, batch=1)
    out_b, st_b = layer(x)
    out_u, st_u = layer(x[:, 0])
    torch.testing.assert_close(out_u, out_b[:, 0], rtol=0, atol=0)
    torch.testing.assert_close(st_u.c, st_b.c[0], rtol=0, atol=0)
    cell = EGRURecurrentCell(I, H).to(D)
    cell.load_state_dict(layer.state_dict())
    y_u, s_u = cell(x[0, 0])
    torch.testing.assert_close(y_u, out_b[0, 0], rtol=0, atol=0)
    out0, st0 = layer(x[:0], st_b)  # T = 0 keeps the state
    assert out0.shape == (0, 1, H) and st0.c is st_b.c


# --------------------------------------------------------------------------------------------
# Norse composition: SequentialState and Lift
# --------------------------------------------------------------------------------------------


def _snn_pair(seed=7):
    torch.manual_seed(seed)
    lin_in, lin_out = torch.nn.Linear(I, 4).to(D), torch.nn.Linear(H, 2).to(D)
    cell = EGRURecurrentCell(4, H).to(D)
    _randomize(cell, seed)
    return lin_in, cell, lin_out


def test_sequential_state_equals_snntorch_flavour():
    norse = pytest.importorskip("norse.torch")
    lin_in, cell, lin_out = _snn_pair()
    model = norse.SequentialState(lin_in, cell, lin_out)
    snn_cell = se.EGRUCell(4, H).to(D)
    snn_cell.load_state_dict(cell.state_dict())
    x = _x(11, steps=2 * T)
    # stepped with the state list carried across calls
    state, outs = None, []
    for t in range(2 * T):
        o, state = model(x[t], state)
        outs.append(o)
    outs = torch.stack(outs)
    assert isinstance(state[1], EGRURecurrentState) and state[0] is None and state[2] is None
    ref = torch.stack([lin_out(snn_cell(lin_in(x[t]))[0]) for t in range(2 * T)])
    torch.testing.assert_close(outs, ref, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(state[1].y, snn_cell.y, rtol=1e-13, atol=1e-13)
    # whole sequences with the time layer, continued across two calls, equal the EGRU layer
    layer = EGRURecurrent(4, H).to(D)
    layer.load_state_dict(cell.state_dict())
    seq_model = norse.SequentialState(lin_in, layer, lin_out)
    o1, s = seq_model(x[:T])
    o2, s = seq_model(x[T:], s)
    egru = se.EGRU(4, H).to(D)
    egru.load_state_dict(interop.cell_to_layer_state_dict(cell.state_dict()))
    torch.testing.assert_close(torch.cat([o1, o2]), lin_out(egru(lin_in(x))[0]), rtol=1e-13, atol=1e-13)


def test_lift_equals_egru_layer():
    norse = pytest.importorskip("norse.torch")
    cell = EGRURecurrentCell(I, H).to(D)
    _randomize(cell, 12)
    lifted = norse.Lift(cell)
    assert lifted.is_stateful  # duck typing: forward has a parameter named "state"
    x = _x(13)
    out, state = lifted(x)
    egru = se.EGRU(I, H).to(D)
    egru.load_state_dict(interop.cell_to_layer_state_dict(cell.state_dict()))
    ref, ref_state = egru(x)
    torch.testing.assert_close(out, ref, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(state.c, ref_state.c[0], rtol=1e-13, atol=1e-13)


# --------------------------------------------------------------------------------------------
# Threshold methods: the gradient Norse's own function gives
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", [m for m in NORSE_METHODS if m != "heaviside"])
@pytest.mark.parametrize("alpha", [2.0, 7.5])
def test_norse_method_gradient_equals_norse(method, alpha):
    threshold = _norse_threshold()
    v = torch.linspace(-1.3, 1.3, 27, dtype=D)  # includes v = 0
    v1, v2 = v.clone().requires_grad_(), v.clone().requires_grad_()
    fn = spike_function(EGRUParameters(method=method, alpha=alpha))
    assert fn == NorseThreshold(method, alpha)
    o1 = fn(v1)
    o2 = threshold(v2, method, alpha)
    torch.testing.assert_close(o1, (v > 0).to(D), rtol=0, atol=0)
    torch.testing.assert_close(o1, o2, rtol=0, atol=0)
    o1.backward(torch.arange(27, dtype=D))
    o2.backward(torch.arange(27, dtype=D))
    torch.testing.assert_close(v1.grad, v2.grad, rtol=0, atol=0)
    assert v1.grad.abs().sum() > 0


@pytest.mark.parametrize("method", ["super", "triangle", "tanh", "circ", "heavi_erfc"])
def test_norse_method_in_cell_gradient_equals_norse(method):
    """Whole-cell gradients with method=<norse name> equal EGRUCell driven by Norse's function itself."""
    threshold = _norse_threshold()
    alpha = 3.0
    cell = EGRURecurrentCell(I, H, EGRUParameters(method=method, alpha=alpha)).to(D)
    _randomize(cell, 21)
    snn_cell = se.EGRUCell(I, H, spike_grad=lambda v: threshold(v, method, alpha)).to(D)
    snn_cell.load_state_dict(cell.state_dict())
    x = _x(22)
    state, ys = None, []
    for t in range(T):
        y, state = cell(x[t], state)
        ys.append(y)
    ys2 = [snn_cell(x[t])[0] for t in range(T)]
    w = torch.randn(T, B, H, generator=torch.Generator().manual_seed(3), dtype=D)
    (torch.stack(ys) * w).sum().backward()
    (torch.stack(ys2) * w).sum().backward()
    for n in NAMES:
        torch.testing.assert_close(getattr(cell, n).grad, getattr(snn_cell, n).grad, rtol=1e-12, atol=1e-13)
    # and differs from the default "egru" surrogate (the method really is used)
    default = EGRURecurrentCell(I, H).to(D)
    default.load_state_dict(cell.state_dict())
    state, ys3 = None, []
    for t in range(T):
        y, state = default(x[t], state)
        ys3.append(y)
    (torch.stack(ys3) * w).sum().backward()
    assert not torch.allclose(default.threshold.grad, cell.threshold.grad)


def test_heaviside_method_has_no_surrogate_gradient():
    threshold = _norse_threshold()
    v = torch.linspace(-1, 1, 9, dtype=D, requires_grad=True)
    o = spike_function(EGRUParameters(method="heaviside"))(v)
    torch.testing.assert_close(o, threshold(v, "heaviside", 1.0), rtol=0, atol=0)
    assert not o.requires_grad
    cell = EGRURecurrentCell(I, H, EGRUParameters(method="heaviside")).to(D)
    _randomize(cell, 2)
    y, _ = cell(_x(2)[0])
    y.sum().backward()
    # the threshold only reaches y through H(.), which has no gradient here
    assert cell.threshold.grad is None or torch.count_nonzero(cell.threshold.grad) == 0
    assert cell.weight_ih.grad.abs().sum() > 0  # y = o * c_hat still carries c_hat's gradient


@pytest.mark.parametrize("gamma,eps", [(0.7, 1.0), (3.6, 3.6), (0.7, 2.18)])
def test_egru_method_equals_scaled_norse_triangle(gamma, eps):
    """psi(v) = threshold(eps * v, "triangle", gamma / eps) (egru-model.md 2.3)."""
    threshold = _norse_threshold()
    v = torch.linspace(-1.2, 1.2, 49, dtype=D)
    v1, v2 = v.clone().requires_grad_(), v.clone().requires_grad_()
    fn = spike_function(EGRUParameters(method="egru", dampening_factor=gamma, pseudo_derivative_support=eps))
    o1, o2 = fn(v1), threshold(eps * v2, "triangle", gamma / eps)
    torch.testing.assert_close(o1, o2, rtol=0, atol=0)
    o1.sum().backward()
    o2.sum().backward()
    torch.testing.assert_close(v1.grad, v2.grad, rtol=1e-15, atol=1e-15)
    torch.testing.assert_close(v1.grad, psi(v, gamma, eps), rtol=1e-15, atol=1e-15)


def test_callable_method_and_pickle():
    import snntorch.surrogate as ss

    atan = ss.atan(alpha=2.0)
    cell = EGRURecurrentCell(I, H, EGRUParameters(method=atan)).to(D)
    assert cell.spike_grad is atan
    snn_cell = se.EGRUCell(I, H, spike_grad=atan).to(D)
    _randomize(cell, 4)
    snn_cell.load_state_dict(cell.state_dict())
    x = _x(6)
    y1, _ = cell(x[0])
    torch.testing.assert_close(y1, snn_cell(x[0])[0], rtol=0, atol=0)
    # Norse-method and "egru" modules pickle whole (no local closures inside)
    for p in (EGRUParameters(), EGRUParameters(method="tanh", alpha=4.0)):
        if p.method != "egru":
            pytest.importorskip("norse")
        m = EGRURecurrent(I, H, p).to(D)
        _randomize(m, 8)
        buf = io.BytesIO()
        torch.save(m, buf)
        buf.seek(0)
        m2 = torch.load(buf, weights_only=False)
        torch.testing.assert_close(m2(x)[0], m(x)[0], rtol=0, atol=0)
        assert m2.p == p


def test_replacing_p_changes_the_spike_function():
    cell = EGRURecurrentCell(I, H)
    assert cell.spike_grad == se.surrogate.EGRUSurrogate(0.7, 1.0)
    cell.p = cell.p._replace(dampening_factor=2.0, reset="zero")
    assert cell.spike_grad == se.surrogate.EGRUSurrogate(2.0, 1.0)
    assert cell.reset_mechanism == "zero"


# --------------------------------------------------------------------------------------------
# Without Norse
# --------------------------------------------------------------------------------------------


def test_import_without_norse():
    """``import snntorch_egru`` never imports Norse; with Norse absent, "egru" works and a Norse
    method raises an ImportError naming the extra."""
    code = textwrap.dedent(
        """
        import sys
        import torch, snntorch_egru, snntorch_egru.norse, snntorch_egru.interop
        print("imported norse:", "norse" in sys.modules)
        for name in ("norse", "norse.torch", "norse.torch.functional", "norse.torch.functional.threshold"):
            sys.modules[name] = None      # as if Norse were not installed
        from snntorch_egru.norse import EGRURecurrentCell, EGRUParameters
        y, s = EGRURecurrentCell(3, 4)(torch.randn(2, 3))
        print("ok", tuple(y.shape))
        try:
            EGRURecurrentCell(3, 4, EGRUParameters(method="super"))
        except ImportError as e:
            print("ERR", e)
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "imported norse: False" in res.stdout
    assert "ok (2, 4)" in res.stdout
    assert "ERR" in res.stdout and "pip install snntorch-egru[norse]" in res.stdout
    assert "'super'" in res.stdout


def test_norse_method_call_without_norse_raises_clear_importerror(monkeypatch):
    fn = NorseThreshold("triangle", 1.0) if _has_norse() else None
    monkeypatch.setitem(sys.modules, "norse.torch.functional.threshold", None)
    with pytest.raises(ImportError, match=r"pip install snntorch-egru\[norse\]"):
        NorseThreshold("triangle", 1.0)
    with pytest.raises(ImportError, match=r"'tanh'.*need Norse: pip install snntorch-egru\[norse\]"):
        EGRURecurrent(3, 4, EGRUParameters(method="tanh"))
    if fn is not None:  # a module built while Norse was there fails clearly when it is gone
        with pytest.raises(ImportError, match=r"pip install snntorch-egru\[norse\]"):
            fn(torch.zeros(2))


def _has_norse() -> bool:
    try:
        import norse.torch.functional.threshold  # noqa: F401
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# Errors: wrong flavour, shape, dtype, parameters
# --------------------------------------------------------------------------------------------


class _OtherState(NamedTuple):
    v: torch.Tensor
    i: torch.Tensor


@pytest.mark.parametrize("module_cls", [EGRURecurrentCell, EGRURecurrent])
def test_wrong_state_flavour_errors(module_cls):
    m = module_cls(I, H)
    x = torch.randn(B, I) if module_cls is EGRURecurrentCell else torch.randn(T, B, I)
    z = torch.zeros(B, H)
    with pytest.raises(
        TypeError, match=r"state must be snntorch_egru\.norse\.EGRURecurrentState\(y, c, trace\).*got a single Tensor"
    ):
        m(x, z)
    with pytest.raises(
        TypeError,
        match=r"got snntorch_egru\.EGRUState\(y, c, trace\) of the sequence layer.*"
        r"interop\.norse_state_from_layer",
    ):
        m(x, se.EGRUState(z[None], z[None], z[None]))
    with pytest.raises(TypeError, match=r"got _OtherState\('v', 'i'\)"):
        m(x, _OtherState(z, z))
    with pytest.raises(TypeError, match=r"got tuple of length 3"):
        m(x, (z, z, z))
    with pytest.raises(ValueError, match=r"state\.y must have shape \[3, 6\].*got \[12, 3, 6\]"):
        m(x, EGRURecurrentState(torch.zeros(T, B, H), z))  # e.g. a record_states result passed back
    with pytest.raises(ValueError, match=r"state\.c must have shape \[3, 6\].*got \[3, 5\]"):
        m(x, EGRURecurrentState(z, torch.zeros(B, 5)))
    with pytest.raises(
        TypeError, match=r"state\.y has dtype torch\.float64 but the module's parameters are torch\.float32"
    ):
        m(x, EGRURecurrentState(z.double(), z))
    # a plain (y, c) tuple is accepted and equals the NamedTuple
    torch.testing.assert_close(m(x, (z, z))[0], m(x, EGRURecurrentState(z, z))[0], rtol=0, atol=0)


def test_input_errors():
    cell, layer = EGRURecurrentCell(I, H), EGRURecurrent(I, H)
    with pytest.raises(TypeError, match=r"input_tensor must be a torch\.Tensor of shape \[B, input_size\]"):
        cell([1.0] * I)
    with pytest.raises(ValueError, match=r"input_tensor must have input_size=5 features.*got shape \(3, 4\)"):
        cell(torch.randn(3, 4))
    with pytest.raises(ValueError, match=r"input_tensor must have 2 or 3 dimensions \(\[T, B, input_size\]"):
        layer(torch.randn(I))


def test_parameter_errors():
    with pytest.raises(TypeError, match=r"p must be snntorch_egru\.norse\.EGRUParameters.*got dict"):
        EGRURecurrentCell(I, H, {"method": "egru"})
    with pytest.raises(
        ValueError, match=r"p\.method must be 'egru', one of Norse's 'heaviside', 'super'.*got 'sigmoid'"
    ):
        EGRURecurrentCell(I, H, EGRUParameters(method="sigmoid"))
    with pytest.raises(TypeError, match=r"p\.method must be 'egru', a Norse method name or a callable.*got int 3"):
        EGRURecurrentCell(I, H, EGRUParameters(method=3))
    with pytest.raises(ValueError, match=r"alpha must be a finite float > 0, got -1\.0"):
        EGRURecurrentCell(I, H, EGRUParameters(alpha=-1.0))
    with pytest.raises(TypeError, match=r"alpha must be a positive float, got str 'x'"):
        EGRURecurrentCell(I, H, EGRUParameters(alpha="x"))
    with pytest.raises(ValueError, match=r"p\.dampening_factor must be a finite float > 0, got 0\.0"):
        EGRURecurrentCell(I, H, EGRUParameters(dampening_factor=0.0))
    with pytest.raises(ValueError, match=r"p\.pseudo_derivative_support must be a finite float > 0"):
        EGRURecurrentCell(I, H, EGRUParameters(pseudo_derivative_support=float("inf")))
    with pytest.raises(ValueError, match=r"p\.reset must be one of 'subtract', 'zero', 'none', got 'half'"):
        EGRURecurrent(I, H, EGRUParameters(reset="half"))
    with pytest.raises(ValueError, match=r"method must be one of 'heaviside', 'super'.*got 'egru'"):
        NorseThreshold("egru", 1.0)
    with pytest.raises(TypeError, match=r"record_states must be a bool, got int 1"):
        EGRURecurrent(I, H, record_states=1)
    with pytest.raises(ValueError, match=r"backend must be 'auto' or one of .*got 'nope'"):
        EGRURecurrent(I, H, backend="nope")
    with pytest.raises(ValueError, match=r"hidden_size must be a positive int \(> 0\), got 0"):
        EGRURecurrentCell(I, 0)


# --------------------------------------------------------------------------------------------
# The Norse state carries the trace (issue 20); the former name is a deprecated alias
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["reference", "auto"])
def test_state_carries_the_trace_like_the_reference(backend):
    cell = EGRURecurrentCell(I, H).to(D)
    _randomize(cell, 12)
    layer = EGRURecurrent(I, H, record_states=True, backend=backend).to(D)
    layer.load_state_dict(cell.state_dict())
    g = torch.Generator().manual_seed(4)
    y0, c0, tr0 = (0.3 * torch.randn(B, H, generator=g, dtype=D) for _ in range(3))
    x = _x(13)
    ref = ref_layer(
        x, y0, c0, tr0, {n: getattr(cell, n).detach() for n in NAMES}, reset="subtract", spike=ref_triangle(0.7, 1.0)
    )
    assert 0.05 < (ref["y"] != 0).double().mean() < 0.7
    state, traces = EGRURecurrentState(y0, c0, tr0), []
    for t in range(T):
        _, state = cell(x[t], state)
        traces.append(state.trace)
    torch.testing.assert_close(torch.stack(traces), ref["trace"], rtol=1e-13, atol=1e-13)
    _, rec = layer(x, EGRURecurrentState(y0, c0, tr0))
    torch.testing.assert_close(rec.trace, ref["trace"], rtol=1e-13, atol=1e-13)
    # continuing from a returned state continues the trace too
    layer.record_states = False
    _, s = layer(x[:5], EGRURecurrentState(y0, c0, tr0))
    _, s = layer(x[5:], s)
    torch.testing.assert_close(s.trace, ref["trace"][-1], rtol=1e-13, atol=1e-13)
    # no trace (the former two-field state, or a plain (y, c) tuple) means a zero trace
    _, s2 = layer(x, EGRURecurrentState(y0, c0))
    _, s3 = layer(x, (y0, c0))
    ref0 = ref_layer(
        x,
        y0,
        c0,
        torch.zeros(B, H, dtype=D),
        {n: getattr(cell, n).detach() for n in NAMES},
        reset="subtract",
        spike=ref_triangle(0.7, 1.0),
    )
    torch.testing.assert_close(s2.trace, ref0["trace"][-1], rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(s3.trace, s2.trace, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"state\.trace must have shape \[3, 6\].*got \[6\]"):
        layer(x, EGRURecurrentState(y0, c0, tr0[0]))


def test_trace_survives_conversion_to_and_from_the_layer_state():
    rnn = se.EGRU(I, H, num_layers=2).to(D)
    _randomize(rnn, 14)
    _, s = rnn(_x(15))
    assert s.trace.abs().sum() > 0
    norse_states = [interop.norse_state_from_layer(s, k) for k in range(2)]
    assert torch.equal(norse_states[1].trace, s.trace[1])
    back = interop.layer_state_from_norse(norse_states)
    for a, b in zip(back, s):
        assert torch.equal(a, b)


def test_former_state_name_is_a_deprecated_alias():
    import snntorch_egru.norse as norse_flavour

    with pytest.warns(DeprecationWarning, match="EGRUState is deprecated: use snntorch_egru.norse.EGRURecurrentState"):
        old = norse_flavour.EGRUState
    assert old is EGRURecurrentState
    assert "EGRUState" not in norse_flavour.__all__ and "EGRURecurrentState" in norse_flavour.__all__
    assert EGRURecurrentState is not se.EGRUState  # one name per thing
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        norse_flavour.nope  # noqa: B018  (the attribute access is what raises)
    import pickle

    s = EGRURecurrentState(torch.zeros(2), torch.ones(2), None)
    assert pickle.loads(pickle.dumps(s)).c.tolist() == [1.0, 1.0]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(hidden_size=0),
        dict(bias="yes"),
        dict(thr_mean=1.0),
        dict(learn_threshold=1),
        dict(init="xavier"),
        dict(threshold_clamp=None),
    ],
)
def test_setup_checks_are_the_same_in_every_flavour(kwargs):
    # one table checks the constructor arguments of EGRUCell, EGRU and the Norse flavour
    args = dict(input_size=I, hidden_size=H)
    args.update(kwargs)
    messages = set()
    for cls in (se.EGRUCell, se.EGRU, EGRURecurrentCell, EGRURecurrent):
        with pytest.raises((TypeError, ValueError)) as err:
            cls(**args)
        messages.add((err.type, str(err.value)))
    assert len(messages) == 1, messages
    ((_, msg),) = messages
    assert msg.startswith(next(iter(kwargs)))
