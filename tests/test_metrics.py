"""Efficiency counters: exact on hand-built cases, identical for every backend."""

from __future__ import annotations

import pytest
import torch

import snntorch_egru as se
from snntorch_egru import backends, metrics

T, B, I, H = 4, 2, 2, 3


def _hand_built(backend: str) -> se.EGRU:
    """W = 0, z ~ 0: c_hat = n = tanh(b_in) every step; units 0 (fires), 1 (near threshold), 2 (far)."""
    rnn = se.EGRU(I, H, backend=backend, threshold_clamp=False, pseudo_derivative_support=1.0).double()
    with torch.no_grad():
        for p in rnn.parameters():
            p.zero_()
        rnn.bias_ih_l0[H:2 * H] = -40.0  # z = sigmoid(-40): c_hat = n up to 4e-18
        rnn.bias_ih_l0[2 * H:] = torch.tensor([1.0, 1.0, -2.0], dtype=torch.float64)  # n = .76, .76, -.96
        rnn.threshold_l0.copy_(torch.tensor([0.1, 0.9, 0.5], dtype=torch.float64))
    return rnn


def _x() -> torch.Tensor:
    x = torch.ones(T, B, I, dtype=torch.float64)
    x[0, 0, 0] = 0.0  # sample 0: 7 non-zeros, sample 1: 8
    x[2, 1, :] = 0.0  # sample 1: 6 non-zeros
    return x


@pytest.mark.parametrize("backend", ["torch", "reference"])
def test_counters_exact_on_hand_built_layer(backend):
    rnn = _hand_built(backend)
    with metrics.track(rnn) as tracker:
        out, _, rec = rnn(_x(), return_internals=True)
    assert torch.equal(rec.o[0, :, :, 0], torch.ones(T, B, dtype=torch.float64))  # unit 0 always fires
    assert rec.o[0, :, :, 1:].sum() == 0
    s = tracker.summary()
    nnz_x = (7 + 6) / 2  # mean per sample
    assert s["activity"] == pytest.approx(1 / 3)
    assert s["batch_union_activity"] == pytest.approx(1 / 3)
    assert s["backward_density"] == pytest.approx(2 / 3)  # unit 1: |0.76 - 0.9| < 1; unit 2: 1.46 > 1
    assert s["backward_sparsity"] == pytest.approx(1 / 3)
    # forward: 3H (nnz(x_t) + nnz(y_{t-1})); y_0 = 0, then one event per step
    assert s["effective_macs"] == pytest.approx(9 * (nnz_x + 3))
    assert s["dense_macs"] == 9 * (I + H) * T
    # backward: 3H (#G_{t-1} + nnz(y_{t-1}) + nnz(x_t) + I), G_0 = all 3 units, then 2 per step
    assert s["backward_macs"] == pytest.approx(9 * ((3 + 2 * 3) + 3 + nnz_x + I * T))
    assert s["dense_backward_macs"] == 9 * (2 * H + 2 * I) * T
    (layer,) = s["layers"]
    assert layer["calls"] == 1 and layer["samples"] == B and layer["layer"] == 0
    assert layer["effective_macs"] == s["effective_macs"]


def test_union_activity_and_multiple_layers_and_calls():
    o = torch.zeros(2, 2, 4)
    o[0, 0, 0] = o[0, 1, 1] = o[1, 0, 2] = o[1, 1, 2] = 1.0
    y = o * 0.5
    c = torch.zeros_like(y)
    counts = metrics.layer_counts(torch.zeros(2, 2, 3), torch.zeros(2, 4), y, c, o, torch.zeros(4), 0.0)
    assert counts["active"] == 4 and counts["union_active"] == 3 and counts["union_elements"] == 8
    assert counts["absorbing"] == 4  # support 0: only the events absorb gradient
    assert counts["effective_macs"] == 12 * 2  # no input non-zeros; step 2 sees the 2 events of step 1
    # unknown support (None): every unit absorbs
    assert metrics.layer_counts(torch.zeros(2, 2, 3), torch.zeros(2, 4), y, c, o, torch.zeros(4),
                                None)["absorbing"] == 16

    model = torch.nn.ModuleDict({"a": se.EGRU(3, 5, num_layers=2), "b": se.EGRU(5, 4)})
    with metrics.track(model) as tracker:
        model["a"](torch.randn(6, 2, 3))
        model["a"](torch.randn(6, 2, 3))
        model["b"](torch.randn(6, 2, 5))
    s = tracker.summary()
    assert [(l["name"], l["layer"], l["calls"], l["samples"]) for l in s["layers"]] == [
        ("a", 0, 2, 4), ("a", 1, 2, 4), ("b", 0, 1, 2)]
    assert s["dense_macs"] == 6 * 15 * (3 + 5) + 6 * 15 * 10 + 6 * 12 * 9
    tracker.reset()
    assert tracker.summary()["layers"] == []


def test_same_counts_for_every_backend_and_off_by_default():
    x = torch.randn(12, 3, 4, dtype=torch.float64)
    before = {name: backends.get_backend(name).run for name in backends.available_backends()}
    sums = []
    for backend in ("torch", "reference"):
        torch.manual_seed(0)
        rnn = se.EGRU(4, 6, num_layers=2, backend=backend, threshold_clamp=False).double()
        with metrics.track(rnn) as tracker:
            rnn(x)
        sums.append(tracker.summary())
        assert "_counters" not in rnn.__dict__  # removed again: no cost when off
    assert sums[0] == sums[1]
    after = {name: backends.get_backend(name).run for name in backends.available_backends()}
    assert all(after[k] is v for k, v in before.items())  # the recording wrappers are gone again


def test_track_rejects_models_without_egru():
    with pytest.raises(ValueError, match="model must contain at least one snntorch_egru.EGRU"):
        metrics.track(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got int"):
        metrics.track(3)
