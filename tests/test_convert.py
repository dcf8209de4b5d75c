"""Converter between the official code's (EvNN) checkpoint layout and ours."""

from __future__ import annotations

import pytest
import torch
from egru_reference import evnn_layer

import snntorch_egru as se
from snntorch_egru.convert import evnn_to_torch, load_evnn_state_dict, torch_to_evnn

D = torch.float64


def _evnn_layer_tensors(I, H, seed, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    t = {
        "kernel": 0.6 * torch.randn(I, 3 * H, generator=g, dtype=D),
        "recurrent_kernel": 0.6 * torch.randn(H, 3 * H, generator=g, dtype=D),
        "bias": 0.3 * torch.randn(3 * H, generator=g, dtype=D),
        "recurrent_bias": 0.3 * torch.randn(3 * H, generator=g, dtype=D),
        "thr": 0.05 + 0.4 * torch.rand(H, generator=g, dtype=D),
    }
    if requires_grad:
        for v in t.values():
            v.requires_grad_()
    return t


@pytest.mark.parametrize("I,H", [(3, 4), (5, 1), (2, 9)])
def test_roundtrip_bit_exact(I, H):
    evnn = _evnn_layer_tensors(I, H, 0)
    ours = evnn_to_torch(evnn)
    assert ours["weight_ih"].shape == (3 * H, I) and ours["weight_hh"].shape == (3 * H, H)
    back = torch_to_evnn(ours)
    assert set(back) == set(evnn)
    for k in evnn:
        assert torch.equal(back[k], evnn[k]), k
    # and the other way round
    again = evnn_to_torch(back, suffix="_l3")
    for k, v in ours.items():
        assert torch.equal(again[k + "_l3"], v)


def test_gate_mapping_explicit():
    """z block of EvNN = rows H:2H of ours (torch's z), r block = rows 0:H, g = n."""
    H, I = 2, 3
    kernel = torch.cat([torch.full((I, H), 1.0), torch.full((I, H), 2.0), torch.full((I, H), 3.0)], 1)  # [z|r|g]
    evnn = {
        "kernel": kernel,
        "recurrent_kernel": torch.zeros(H, 3 * H),
        "bias": torch.arange(6.0),
        "recurrent_bias": torch.zeros(6),
        "thr": torch.zeros(H),
    }
    ours = evnn_to_torch(evnn)
    assert torch.all(ours["weight_ih"][:H] == 2.0)  # r
    assert torch.all(ours["weight_ih"][H : 2 * H] == 1.0)  # z
    assert torch.all(ours["weight_ih"][2 * H :] == 3.0)  # n
    assert ours["bias_ih"].tolist() == [2.0, 3.0, 0.0, 1.0, 4.0, 5.0]


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
def test_evnn_forward_equals_converted_egru(reset):
    I, H, T, B = 4, 6, 10, 3
    layers = [_evnn_layer_tensors(I, H, 1, True), _evnn_layer_tensors(H, H, 2, True)]
    m = se.EGRU(I, H, num_layers=2, reset_mechanism=reset).to(D)
    load_evnn_state_dict(m, [{k: v.detach() for k, v in lay.items()} for lay in layers])
    g = torch.Generator().manual_seed(3)
    x = torch.randn(T, B, I, generator=g, dtype=D)
    y0 = 0.3 * torch.randn(2, B, H, generator=g, dtype=D)
    # EvNN forces c0 = 0 and trace0 = 0; only y0 is seeded
    out, st, rec = m(x, se.EGRUState(y0, torch.zeros_like(y0), torch.zeros_like(y0)), return_internals=True)
    assert 0.05 < rec.o.mean() < 0.6
    inp = x
    cs = []
    for k, lay in enumerate(layers):
        inp, c = evnn_layer(
            inp,
            y0[k],
            torch.zeros(B, H, dtype=D),
            lay["kernel"],
            lay["recurrent_kernel"],
            lay["bias"],
            lay["recurrent_bias"],
            lay["thr"],
            reset=reset,
        )
        cs.append(c)
    torch.testing.assert_close(out, inp, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rec.c, torch.stack(cs), rtol=1e-12, atol=1e-12)
    # gradients map through the same conversion
    w = torch.randn(out.shape, generator=g, dtype=D)
    (out * w).sum().backward()
    (inp * w).sum().backward()
    for k, lay in enumerate(layers):
        ours_grad = {
            n: getattr(m, f"{n}_l{k}").grad for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "threshold")
        }
        conv = torch_to_evnn(ours_grad)
        for name, t in lay.items():
            assert t.grad.abs().sum() > 0
            torch.testing.assert_close(conv[name], t.grad, rtol=1e-10, atol=1e-11)


def test_thr_reparam_and_cell_loading_and_prefix():
    H, I = 5, 3
    evnn = _evnn_layer_tensors(I, H, 4)
    raw = torch.randn(H, dtype=D)
    v01 = {f"rnn.{k}": v for k, v in evnn.items() if k != "thr"}
    v01["rnn.thr_reparam"] = raw
    ours = evnn_to_torch(v01, prefix="rnn.")
    torch.testing.assert_close(ours["threshold"], torch.sigmoid(raw))
    cell = se.EGRUCell(I, H).to(D)
    load_evnn_state_dict(cell, [evnn])
    assert torch.equal(cell.threshold.detach(), evnn["thr"])
    assert torch.equal(cell.weight_hh.detach(), evnn_to_torch(evnn)["weight_hh"])
    with pytest.raises(KeyError, match="neither rnn.thr nor rnn.thr_reparam"):
        evnn_to_torch({k: v for k, v in v01.items() if k != "rnn.thr_reparam"}, prefix="rnn.")


def _evnn_layer(I=3, H=4):
    return {
        "kernel": torch.randn(I, 3 * H),
        "recurrent_kernel": torch.randn(H, 3 * H),
        "bias": torch.randn(3 * H),
        "recurrent_bias": torch.randn(3 * H),
        "thr": torch.rand(H),
    }


@pytest.mark.parametrize(
    "key, shape, message",
    [
        ("kernel", (3, 15), r"kernel must have shape \[3, 12\]"),  # 3H' = 15 != 12: was truncated
        ("kernel", (12,), "kernel must be a 2-D tensor"),
        ("recurrent_kernel", (5, 12), r"recurrent_kernel must have shape \[4, 12\]"),
        ("bias", (15,), r"bias must have shape \[12\]"),
        ("recurrent_bias", (9,), r"recurrent_bias must have shape \[12\]"),
        ("thr", (5,), r"thr must have shape \[4\]"),
    ],
)
def test_evnn_shape_mismatch_is_refused_not_truncated(key, shape, message):
    """Issue 14: mismatching EvNN tensors used to be sliced silently to fit; now they are refused."""
    layer = _evnn_layer()
    layer[key] = torch.randn(*shape)
    with pytest.raises(ValueError, match=message):
        evnn_to_torch(layer)


@pytest.mark.parametrize(
    "key, shape, message",
    [
        ("weight_ih", (15, 3), r"weight_ih must have shape \[12, 3\]"),
        ("weight_hh", (12, 5), r"weight_hh must have shape \[15, 5\]"),
        ("bias_hh", (13,), r"bias_hh must have shape \[12\]"),
        ("threshold", (3,), r"threshold must have shape \[4\]"),
    ],
)
def test_torch_to_evnn_shape_mismatch_is_refused(key, shape, message):
    ours = evnn_to_torch(_evnn_layer())
    ours[key] = torch.randn(*shape)
    with pytest.raises(ValueError, match=message):
        torch_to_evnn(ours)
    del ours[key]
    with pytest.raises(KeyError, match="missing"):
        torch_to_evnn(ours)
