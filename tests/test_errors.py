"""Every bad input of issue 2 item 6 raises ValueError/TypeError naming the argument, the expected
and the given value."""

from __future__ import annotations

import re

import pytest
import torch

import snntorch_egru as se
from snntorch_egru import functional as F

I, H, L, T, B = 5, 7, 2, 6, 4


def _egru(**kw):
    return se.EGRU(I, H, num_layers=L, **kw)


def _state(batch=B, dtype=torch.float32, device="cpu", layers=L):
    z = torch.zeros(layers, batch, H, dtype=dtype, device=device)
    return se.EGRUState(z, z.clone(), z.clone())


# ---------------------------------------------------------------------------- constructor


@pytest.mark.parametrize("cls", [se.EGRU, se.EGRUCell])
@pytest.mark.parametrize(
    "arg,value,exc,msg",
    [
        ("input_size", 0, ValueError, r"input_size must be a positive int \(> 0\), got 0"),
        ("input_size", -3, ValueError, r"input_size must be a positive int \(> 0\), got -3"),
        ("input_size", 2.5, TypeError, r"input_size must be a positive int, got float 2.5"),
        ("hidden_size", 0, ValueError, r"hidden_size must be a positive int \(> 0\), got 0"),
        ("hidden_size", True, TypeError, r"hidden_size must be a positive int, got bool True"),
    ],
)
def test_bad_sizes(cls, arg, value, exc, msg):
    kw = {"input_size": I, "hidden_size": H, arg: value}
    with pytest.raises(exc, match=msg):
        cls(**kw)


@pytest.mark.parametrize(
    "value,exc,msg",
    [
        (0, ValueError, r"num_layers must be a positive int \(> 0\), got 0"),
        (-1, ValueError, r"num_layers must be a positive int \(> 0\), got -1"),
        ("2", TypeError, r"num_layers must be a positive int, got str '2'"),
    ],
)
def test_bad_num_layers(value, exc, msg):
    with pytest.raises(exc, match=msg):
        se.EGRU(I, H, num_layers=value)


@pytest.mark.parametrize("cls", [se.EGRU, se.EGRUCell])
@pytest.mark.parametrize("arg", ["dropconnect", "zoneout"])
@pytest.mark.parametrize("value", [1.0, -0.1, 1.5])
def test_bad_probabilities(cls, arg, value):
    with pytest.raises(ValueError, match=rf"{arg} must be a probability in \[0, 1\), got {re.escape(repr(value))}"):
        cls(I, H, **{arg: value})


@pytest.mark.parametrize("value", [1.0, -0.5])
def test_bad_dropout(value):
    with pytest.raises(ValueError, match=rf"dropout must be a probability in \[0, 1\), got {re.escape(repr(value))}"):
        se.EGRU(I, H, dropout=value)
    with pytest.raises(TypeError, match=r"dropout must be a float in \[0, 1\), got str '0.1'"):
        se.EGRU(I, H, dropout="0.1")


@pytest.mark.parametrize("cls", [se.EGRU, se.EGRUCell])
@pytest.mark.parametrize("value", [0.0, 1.0, -0.2, 1.3])
def test_bad_thr_mean(cls, value):
    with pytest.raises(ValueError, match=rf"thr_mean must lie strictly between 0 and 1, got {re.escape(repr(value))}"):
        cls(I, H, thr_mean=value)


def test_bad_thr_mean_functional():
    with pytest.raises(ValueError, match=r"thr_mean must lie strictly between 0 and 1, got 1.0"):
        F.beta_threshold_init(4, 1.0)


@pytest.mark.parametrize("cls", [se.EGRU, se.EGRUCell])
@pytest.mark.parametrize("value", ["reset", "Subtract", None, 0])
def test_bad_reset_mechanism(cls, value):
    with pytest.raises(
        ValueError, match=rf"reset_mechanism must be one of 'subtract', 'zero', 'none', got {re.escape(repr(value))}"
    ):
        cls(I, H, reset_mechanism=value)


def test_bad_reset_in_functional():
    with pytest.raises(ValueError, match=r"reset_mechanism must be one of .*got 'boom'"):
        F.apply_reset(torch.zeros(2), torch.zeros(2), torch.zeros(2), "boom")


@pytest.mark.parametrize("cls", [se.EGRU, se.EGRUCell])
@pytest.mark.parametrize("value,name", [(3, "int"), ("atan", "str")])
def test_bad_spike_grad(cls, value, name):
    with pytest.raises(TypeError, match=rf"spike_grad must be None or a callable f\(v\) -> H\(v\).*got {name}"):
        cls(I, H, spike_grad=value)


@pytest.mark.parametrize(
    "arg,value,exc,msg",
    [
        ("dampening_factor", 0.0, ValueError, r"dampening_factor must be a finite float > 0, got 0.0"),
        (
            "pseudo_derivative_support",
            -1.0,
            ValueError,
            r"pseudo_derivative_support must be a finite float > 0, got -1.0",
        ),
        (
            "pseudo_derivative_support",
            float("inf"),
            ValueError,
            r"pseudo_derivative_support must be a finite float > 0, got inf",
        ),
        ("dampening_factor", "0.7", TypeError, r"dampening_factor must be a positive float, got str '0.7'"),
        ("init", "xavier", ValueError, r"init must be one of 'evnn', 'torch', got 'xavier'"),
        ("bias", 1, TypeError, r"bias must be a bool, got int 1"),
    ],
)
def test_bad_other_options(arg, value, exc, msg):
    for cls in (se.EGRU, se.EGRUCell):
        with pytest.raises(exc, match=msg):
            cls(I, H, **{arg: value})
    with pytest.raises(TypeError, match=r"batch_first must be a bool, got str 'yes'"):
        se.EGRU(I, H, batch_first="yes")


def test_bad_surrogate_parameters():
    with pytest.raises(ValueError, match=r"gamma must be a finite float > 0, got -1.0"):
        se.surrogate.EGRUSurrogate(gamma=-1.0)
    with pytest.raises(ValueError, match=r"epsilon must be a finite float > 0, got 0.0"):
        se.surrogate.pseudo_derivative(0.7, 0.0)
    with pytest.raises(TypeError, match=r"gamma must be a positive float, got NoneType None"):
        se.surrogate.EGRUSurrogate(gamma=None)


# ---------------------------------------------------------------------------- forward: EGRU


def test_wrong_rank():
    m = _egru()
    with pytest.raises(
        ValueError,
        match=r"x must have 2 or 3 dimensions \(\[T, B, input_size\].*got 4 dimensions with shape \(6, 4, 1, 5\)",
    ):
        m(torch.zeros(T, B, 1, I))
    with pytest.raises(ValueError, match=r"x must have 2 or 3 dimensions.*got 1 dimensions with shape \(5,\)"):
        m(torch.zeros(I))
    with pytest.raises(ValueError, match=r"x must have 2 or 3 dimensions \(\[B, T, input_size\]"):
        _egru(batch_first=True)(torch.zeros(1, T, B, I))


def test_wrong_feature_size():
    with pytest.raises(
        ValueError, match=r"x must have input_size=5 features in its last dimension .*got shape \(6, 4, 3\)"
    ):
        _egru()(torch.zeros(T, B, 3))
    with pytest.raises(ValueError, match=r"x must have input_size=5 features .*got shape \(6, 8\)"):
        _egru()(torch.zeros(T, 8))


def test_not_a_tensor():
    with pytest.raises(TypeError, match=r"x must be a torch.Tensor of shape \[T, B, input_size\].*got list"):
        _egru()([[0.0] * I])


def test_batch_mismatch_between_input_and_state():
    m = _egru()
    with pytest.raises(
        ValueError,
        match=r"state.y must have shape \[2, 4, 7\] to match the input's batch size and hidden_size, got \[2, 3, 7\]",
    ):
        m(torch.zeros(T, B, I), _state(batch=3))
    with pytest.raises(ValueError, match=r"state.y must have shape \[2, 7\].*got \[2, 4, 7\]"):
        m(torch.zeros(T, I), _state())  # unbatched input, batched state
    with pytest.raises(ValueError, match=r"state.y must have shape \[2, 4, 7\].*got \[1, 4, 7\]"):
        m(torch.zeros(T, B, I), _state(layers=1))
    good = _state()
    with pytest.raises(ValueError, match=r"state.c must have shape \[2, 4, 7\].*got \[2, 5, 7\]"):
        m(torch.zeros(T, B, I), se.EGRUState(good.y, torch.zeros(L, 5, H), good.trace))
    # batch_first: B is the first dimension of x
    with pytest.raises(ValueError, match=r"state.y must have shape \[2, 6, 7\].*got \[2, 4, 7\]"):
        _egru(batch_first=True)(torch.zeros(T, B, I), _state())


def test_wrong_state_type():
    m = _egru()
    x = torch.zeros(T, B, I)
    with pytest.raises(
        TypeError, match=r"state must be an EGRUState\(y, c, trace\), got a single Tensor.*from_gru_hidden"
    ):
        m(x, torch.zeros(L, B, H))
    with pytest.raises(TypeError, match=r"state must be an EGRUState\(y, c, trace\) \(or None\), got tuple"):
        m(x, (torch.zeros(L, B, H), torch.zeros(L, B, H)))
    with pytest.raises(TypeError, match=r"state must be an EGRUState\(y, c, trace\) \(or None\), got dict"):
        m(x, {"y": 0})
    with pytest.raises(TypeError, match=r"state.trace must be a torch.Tensor of shape \[2, 4, 7\], got float"):
        m(x, se.EGRUState(torch.zeros(L, B, H), torch.zeros(L, B, H), 0.0))


def test_mixed_dtypes():
    m = _egru()
    with pytest.raises(TypeError, match=r"x has dtype torch.float64 but the module's parameters are torch.float32"):
        m(torch.zeros(T, B, I, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"x must be a floating-point tensor \(torch.float32\), got dtype torch.int64"):
        m(torch.zeros(T, B, I, dtype=torch.long))
    with pytest.raises(
        TypeError, match=r"state.y has dtype torch.float64 but the module's parameters are torch.float32"
    ):
        m(torch.zeros(T, B, I), _state(dtype=torch.float64))
    with pytest.raises(
        TypeError, match=r"input_ has dtype torch.float64 but the module's parameters are torch.float32"
    ):
        se.EGRUCell(I, H)(torch.zeros(B, I, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"y has dtype torch.float16 but the module's parameters are torch.float32"):
        se.EGRUCell(I, H)(torch.zeros(B, I), torch.zeros(B, H, dtype=torch.float16))


def test_mixed_devices():
    m = _egru()
    with pytest.raises(ValueError, match=r"x is on device meta but the module's parameters are on cpu"):
        m(torch.zeros(T, B, I, device="meta"))
    with pytest.raises(ValueError, match=r"state.c is on device meta but the module's parameters are on cpu"):
        s = _state()
        m(torch.zeros(T, B, I), se.EGRUState(s.y, torch.zeros(L, B, H, device="meta"), s.trace))
    with pytest.raises(ValueError, match=r"input_ is on device meta but the module's parameters are on cpu"):
        se.EGRUCell(I, H)(torch.zeros(B, I, device="meta"))
    with pytest.raises(ValueError, match=r"c is on device meta but the module's parameters are on cpu"):
        se.EGRUCell(I, H)(torch.zeros(B, I), None, torch.zeros(B, H, device="meta"))


# ---------------------------------------------------------------------------- forward: EGRUCell


def test_cell_bad_inputs():
    cell = se.EGRUCell(I, H)
    with pytest.raises(
        ValueError,
        match=r"input_ must have 1 or 2 dimensions \(\[B, input_size\] or \[input_size\]\), got 3 dimensions with shape \(6, 4, 5\)",
    ):
        cell(torch.zeros(T, B, I))
    with pytest.raises(ValueError, match=r"input_ must have input_size=5 features .*got shape \(4, 2\)"):
        cell(torch.zeros(B, 2))
    with pytest.raises(
        ValueError, match=r"y must have shape \[4, 7\] to match the input's batch size and hidden_size, got \[3, 7\]"
    ):
        cell(torch.zeros(B, I), torch.ones(3, H))  # (an all-zero state of another batch size starts from zeros)
    with pytest.raises(ValueError, match=r"c must have shape \[4, 7\].*got \[4, 6\]"):
        cell(torch.zeros(B, I), torch.zeros(B, H), torch.zeros(B, 6))
    with pytest.raises(TypeError, match=r"y must be a torch.Tensor of shape \[4, 7\], got list"):
        cell(torch.zeros(B, I), [0.0])
    with pytest.raises(TypeError, match=r"input_ must be a torch.Tensor.*got ndarray"):
        import numpy as np

        cell(np.zeros((B, I), dtype=np.float32))
    with pytest.raises(TypeError, match=r"init_hidden=True keeps its own state: call it as cell\(input_\)"):
        se.EGRUCell(I, H, init_hidden=True)(torch.zeros(B, I), torch.zeros(B, H))


def test_convert_bad_inputs():
    from snntorch_egru.convert import evnn_to_torch, load_evnn_state_dict

    good = {
        "kernel": torch.zeros(I, 3 * H),
        "recurrent_kernel": torch.zeros(H, 3 * H),
        "bias": torch.zeros(3 * H),
        "recurrent_bias": torch.zeros(3 * H),
        "thr": torch.zeros(H),
    }
    with pytest.raises(ValueError, match=r"evnn_layers must hold 2 layers, got 1"):
        load_evnn_state_dict(_egru(), [good])
    with pytest.raises(ValueError, match=r"an EGRUCell takes one EvNN layer, got 2"):
        load_evnn_state_dict(se.EGRUCell(I, H), [good, good])
    with pytest.raises(TypeError, match=r"module must be an EGRU or EGRUCell, got GRU"):
        load_evnn_state_dict(torch.nn.GRU(I, H), [good])
    with pytest.raises(
        ValueError, match=r"recurrent_kernel must have a last dimension of 3\*hidden_size, got shape \(7, 20\)"
    ):
        evnn_to_torch(dict(good, recurrent_kernel=torch.zeros(H, 20)))
    with pytest.raises(KeyError, match=r"missing \['recurrent_bias'\]"):
        evnn_to_torch({k: v for k, v in good.items() if k != "recurrent_bias"})


def test_norse_state_passed_to_layer_points_to_converter():
    from snntorch_egru.norse import EGRURecurrentState as NorseState

    layer = se.EGRU(3, 4)
    s = NorseState(torch.zeros(1, 2, 4), torch.zeros(1, 2, 4))
    with pytest.raises(
        TypeError, match=r"Norse-flavour EGRURecurrentState\(y, c, trace\).*interop\.layer_state_from_norse"
    ):
        layer(torch.randn(5, 2, 3), s)


def test_unregister_reference_backend_refused():
    with pytest.raises(ValueError, match="'reference' backend cannot be unregistered"):
        se.backends.unregister_backend("reference")
    with pytest.raises(ValueError, match="backend must be 'auto' or one of"):
        se.backends.unregister_backend("no-such-backend")
