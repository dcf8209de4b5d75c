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
        rnn.bias_ih_l0[H : 2 * H] = -40.0  # z = sigmoid(-40): c_hat = n up to 4e-18
        rnn.bias_ih_l0[2 * H :] = torch.tensor([1.0, 1.0, -2.0], dtype=torch.float64)  # n = .76, .76, -.96
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
    assert (
        metrics.layer_counts(torch.zeros(2, 2, 3), torch.zeros(2, 4), y, c, o, torch.zeros(4), None)["absorbing"] == 16
    )

    model = torch.nn.ModuleDict({"a": se.EGRU(3, 5, num_layers=2), "b": se.EGRU(5, 4)})
    with metrics.track(model) as tracker:
        model["a"](torch.randn(6, 2, 3))
        model["a"](torch.randn(6, 2, 3))
        model["b"](torch.randn(6, 2, 5))
    s = tracker.summary()
    assert [(l["name"], l["layer"], l["calls"], l["samples"]) for l in s["layers"]] == [
        ("a", 0, 2, 4),
        ("a", 1, 2, 4),
        ("b", 0, 1, 2),
    ]
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


# --------------------------------------------------------------------------------------------
# Scoping: per-module observers, nothing process-wide (issue 20)
# --------------------------------------------------------------------------------------------


def _observers(m):
    return dict(m._layer_observers or {})


def test_only_the_tracked_model_counts():
    counted, other = se.EGRU(3, 5), se.EGRU(3, 5)
    x = torch.randn(6, 2, 3)
    with metrics.track(counted) as tracker:
        other(x)  # same backend, not tracked: not counted
        assert _observers(other) == {}
        counted(x)
        other(x)
    (layer,) = tracker.summary()["layers"]
    assert layer["calls"] == 1 and layer["samples"] == 2
    with metrics.track(other) as t2:
        counted(x)
    assert t2.summary()["layers"] == []


def test_nested_trackers_each_count_what_they_watch():
    model = torch.nn.ModuleDict({"a": se.EGRU(3, 5), "b": se.EGRU(3, 5)})
    x = torch.randn(4, 2, 3)
    with metrics.track(model) as outer:
        model["a"](x)
        with metrics.track(model["a"]) as inner:
            model["a"](x)
            model["b"](x)
        assert len(_observers(model["a"])) == 1  # the inner one is gone, the outer one stays
        model["b"](x)
    assert [(l["name"], l["calls"]) for l in outer.summary()["layers"]] == [("a", 2), ("b", 2)]
    assert [(l["name"], l["calls"]) for l in inner.summary()["layers"]] == [("EGRU", 1)]
    # the same counts from both trackers for the call they both saw
    assert inner.summary()["layers"][0]["samples"] == 2
    assert _observers(model["a"]) == {} and _observers(model["b"]) == {}
    with pytest.raises(RuntimeError, match="this Tracker is already active"):
        with outer:
            with outer:
                pass
    assert _observers(model["a"]) == {}


def test_exception_inside_the_context_leaves_nothing_behind():
    rnn = se.EGRU(3, 5, num_layers=2)
    runs = {name: backends.get_backend(name).run for name in backends.available_backends()}
    with pytest.raises(ValueError, match="input_size=3"):
        with metrics.track(rnn):
            rnn(torch.randn(4, 2, 3))
            rnn(torch.randn(4, 2, 7))  # wrong feature size: raises inside the block
    assert _observers(rnn) == {}
    assert {name: backends.get_backend(name).run for name in backends.available_backends()} == runs
    assert not hasattr(backends.LayerCall, "counters")  # the unused field is gone


def test_norse_layer_counts_equal_the_egru_layer():
    from snntorch_egru import interop
    from snntorch_egru.norse import EGRURecurrent

    torch.manual_seed(3)
    layer = EGRURecurrent(3, 6).double()
    egru = se.EGRU(3, 6).double()
    egru.load_state_dict(interop.cell_to_layer_state_dict(layer.state_dict()))
    x = torch.randn(8, 2, 3, dtype=torch.float64)
    with metrics.track(layer) as t_norse:
        layer(x)
    with metrics.track(egru) as t_egru:
        egru(x)
    a, b = t_norse.summary(), t_egru.summary()
    assert 0.0 < a["activity"] < 1.0
    assert {k: v for k, v in a.items() if k != "layers"} == {k: v for k, v in b.items() if k != "layers"}


def test_counting_from_several_threads():
    import threading

    models = [se.EGRU(3, 4) for _ in range(4)]
    x = torch.randn(5, 2, 3)
    results = {}

    def work(i):
        with metrics.track(models[i]) as tracker:
            for _ in range(i + 1):
                models[i](x)
        results[i] = tracker.summary()["layers"][0]["calls"]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {0: 1, 1: 2, 2: 3, 3: 4}


def test_compiled_model_inside_track_says_eager_only():
    rnn = se.EGRU(3, 5, backend="reference")
    compiled = torch.compile(rnn, backend="eager")
    x = torch.randn(4, 2, 3)
    ref, _ = rnn(x)
    torch.testing.assert_close(compiled(x)[0], ref)
    with pytest.raises(RuntimeError, match="counts eager calls only"):
        with metrics.track(rnn):
            compiled(x)
    assert _observers(rnn) == {}
    torch.testing.assert_close(compiled(x)[0], ref)  # compiled model unaffected afterwards


def test_tracked_model_can_be_saved_and_copied_without_its_observers(tmp_path):
    import copy

    rnn = se.EGRU(3, 4)
    x = torch.randn(5, 2, 3)
    with metrics.track(rnn) as tracker:
        torch.save(rnn, tmp_path / "m.pt")
        twin = copy.deepcopy(rnn)
        twin(x)  # the copy is not tracked
        rnn(x)
    assert tracker.summary()["layers"][0]["calls"] == 1
    assert _observers(twin) == {}
    loaded = torch.load(tmp_path / "m.pt", weights_only=False)
    assert _observers(loaded) == {}
    torch.testing.assert_close(loaded(x)[0], rnn(x)[0])
