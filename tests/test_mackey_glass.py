"""The mackey-glass task: NeuroBench's protocol (split, offsets, generator) and its metrics on a tiny
EGRU forecaster, checked against hand computations from the float64 reference step."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("neurobench")
pytest.importorskip("jitcdde")  # neurobench.datasets imports it

from egru_reference import ref_heaviside_nograd, ref_step  # noqa: E402

from snntorch_egru.training import _mackey_glass as MG  # noqa: E402
from snntorch_egru.training import _run_regress as R  # noqa: E402
from snntorch_egru.training._mg_models import Forecaster  # noqa: E402


def _series_file(tmp_path, n: int = MG.points_needed(3)) -> str:
    """A synthetic series (no solver): distinct values, so every index is checkable."""
    t = np.arange(n, dtype=np.float64)
    series = 0.9 + 0.3 * np.sin(0.05 * t) + 1e-4 * t
    path = tmp_path / "mackey_glass" / MG.SERIES_FILE
    path.parent.mkdir(parents=True)
    np.save(path, series)
    return str(path)


def test_offsets_and_split_follow_neurobench_example(tmp_path):
    # 30 repeats, each 0.5 Lyapunov times (37.5 points) later; 750 train + 750 test points
    offsets = MG.start_offsets()
    assert len(offsets) == 30 and offsets[:3] == [0.0, 37.5, 75.0] and offsets[-1] == 29 * 37.5
    assert MG.points_needed() == int(29 * 37.5) + 750 + 750 + 1 == 2588
    path = _series_file(tmp_path)
    s = np.load(path)
    split = MG.load_split(path, 37.5)  # NeuroBench's loader slices from int(37.5) = 37
    assert split.train_x.dtype == torch.float64
    np.testing.assert_array_equal(split.train_x[:, 0].numpy(), s[37 : 37 + 750])
    np.testing.assert_array_equal(split.train_y[:, 0].numpy(), s[38 : 38 + 750])
    np.testing.assert_array_equal(split.test_x[:, 0].numpy(), s[787 : 787 + 750])
    np.testing.assert_array_equal(split.test_y[:, 0].numpy(), s[788 : 788 + 750])
    with pytest.raises(ValueError, match="repeats must be a positive int"):
        MG.start_offsets(0)


def test_generated_series_is_neurobench_generator_and_cached(tmp_path):
    from neurobench.datasets import MackeyGlass

    a = MG.generate_series(40)
    # NeuroBench's own class on the same parameters (20 + 19 + 1 points), generated directly
    place = tmp_path / "p.npy"
    np.save(place, np.zeros(3))
    mg = MackeyGlass(file_path=str(place), traintime=38 / 75, testtime=1 / 75, download=False)
    mg.generate_data()
    # jitcdde's adaptive solver is not bit-reproducible between calls (~1e-6 here): hence the cache
    np.testing.assert_allclose(a, mg.mackeyglass_soln[:, 0].numpy(), rtol=1e-5)
    assert a.shape == (40,) and 0.2 < a.min() and a.max() < 1.5  # on the attractor's range
    # the cache: generated (and said so) once, then read
    said = []
    p = MG.cached_series(str(tmp_path), repeats=1, log=said.append)
    assert any("regenerating" in m for m in said) and np.load(p).shape == (MG.points_needed(1),)
    said.clear()
    assert MG.cached_series(str(tmp_path), repeats=1, log=said.append) == p and said == []


def _tiny_egru(split: MG.Split) -> Forecaster:
    torch.manual_seed(3)
    m = Forecaster("egru", 2, 3, thr_mean=0.2)
    m.shift.fill_(0.9)
    m.scale.fill_(0.2)
    with torch.no_grad():
        m.rnn.bias_ih_l0.normal_(0.0, 0.5)
    return m


def _hand_run(m: Forecaster, split: MG.Split):
    """The protocol by hand with the float64 reference step: warm-up, then the autonomous test."""
    p = {n: t.detach() for n, t in m.rnn.layer_tensors(0).items()}
    theta = m.rnn._effective_threshold(p["threshold"]).detach()
    W, b = m.fc.weight.detach(), m.fc.bias.detach()
    y = c = tr = torch.zeros(1, 3, dtype=torch.float64)
    window = torch.zeros(2, dtype=torch.float64)

    def step(value, y, c, tr, window):
        window = torch.cat([window[1:], value.reshape(1)])
        x = ((window - 0.9) / 0.2).unsqueeze(0)
        y2, c2, _, tr2, _ = ref_step(
            x,
            y,
            c,
            tr,
            p["weight_ih"],
            p["weight_hh"],
            p["bias_ih"],
            p["bias_hh"],
            theta,
            reset="subtract",
            spike=ref_heaviside_nograd,
        )
        return y2, c2, tr2, window, x

    for v in split.train_x[:, 0]:
        y, c, tr, window, _ = step(v, y, c, tr, window)
    preds, xs, ys_prev, ys = [], [], [], []
    value = split.test_x[0, 0]
    for _ in range(len(split.test_x)):
        ys_prev.append(y)
        y, c, tr, window, x = step(value, y, c, tr, window)
        value = (y @ W.T + b)[0, 0]
        preds.append(value)
        xs.append(x)
        ys.append(y)
    return torch.stack(preds), torch.cat(xs), torch.cat(ys_prev), torch.cat(ys)


def test_benchmark_metrics_equal_a_hand_computation_on_a_tiny_egru(tmp_path):
    split = MG.load_split(_series_file(tmp_path), 0.0)
    m = _tiny_egru(split)
    preds, xs, ys_prev, ys = _hand_run(m, split)
    res = R.benchmark(m, split)
    got = torch.tensor(res["forecast"], dtype=torch.float64)
    torch.testing.assert_close(got, preds, rtol=1e-9, atol=1e-12)
    truth = split.test_y[:, 0]
    smape = 200 * torch.mean((preds - truth).abs() / (preds.abs() + truth.abs()))
    assert res["SMAPE"] == pytest.approx(float(smape), rel=1e-9)
    n, H = len(truth), 3
    assert 0 < int((ys != 0).sum()) < n * H  # real, sparse activity
    assert res["ActivationSparsity"] == pytest.approx(1 - int((ys != 0).sum()) / (n * H), rel=1e-12)
    # per step: 3H products per non-zero input and per non-zero previous event, 1 per event (readout)
    macs = 3 * H * int((xs != 0).sum()) + 3 * H * int((ys_prev != 0).sum()) + int((ys != 0).sum())
    synops = res["SynapticOperations"]
    assert synops["Effective_MACs"] == pytest.approx(macs / n, rel=1e-12)
    assert synops["Effective_ACs"] == 0
    assert synops["Dense"] == 3 * H * (2 + H) + H
    params = sum(t.numel() for t in m.parameters()) + sum(t.numel() for t in m.buffers())
    assert res["Footprint"] == 8 * params  # float64
    # NeuroBench's rule: weights and biases of the recurrent layer, the readout's weight
    conn = [m.rnn.weight_ih_l0, m.rnn.weight_hh_l0, m.rnn.bias_ih_l0, m.rnn.bias_hh_l0, m.fc.weight]
    zeros = sum(int((t == 0).sum()) for t in conn)
    assert zeros == 9  # the zero-initialised bias_hh
    assert res["ConnectionSparsity"] == round(zeros / sum(t.numel() for t in conn), 4)


def test_lstm_baseline_counts_like_neurobench_example(tmp_path):
    split = MG.load_split(_series_file(tmp_path), 0.0)
    torch.manual_seed(0)
    res = R.benchmark(Forecaster("lstm", 50, 40), split)
    # NeuroBench's example prints synop_dense = 14560 for its LSTM (50 -> 40 -> 1)
    assert res["SynapticOperations"]["Dense"] == 14560
    assert 0 < res["ActivationSparsity"] < 1


def test_sequence_training_path_equals_the_step_path(tmp_path):
    split = MG.load_split(_series_file(tmp_path), 0.0)
    for kind in ("lstm", "gru", "egru"):
        torch.manual_seed(1)
        m = Forecaster(kind, 4, 5).eval()
        with torch.no_grad():
            seq = m.sequence(MG.windows(split.train_x[:60], 4))
            step = m(split.train_x[:60].unsqueeze(-1))
        torch.testing.assert_close(seq, step, rtol=1e-10, atol=1e-12)


def test_train_command_runs_the_task(tmp_path):
    from snntorch_egru.training import main

    _series_file(tmp_path, MG.points_needed(1))
    out = tmp_path / "run"
    rc = main(
        [
            "--task",
            "mackey-glass",
            "--data-dir",
            str(tmp_path),
            "--out",
            str(out),
            "--repeats",
            "1",
            "--epochs",
            "2",
            "--hidden-size",
            "4",
            "--no-plot",
        ]
    )
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert set(m["summary"]) == {"EGRU", "LSTM", "GRU"} and m["repeats_completed"] == 1
    assert m["summary"]["EGRU"]["dense_ops"] == 3 * 4 * (1 + 4) + 4
    assert m["summary"]["LSTM"]["dense_ops"] == 14560
    assert "| EGRU" in (out / "results.md").read_text()
    assert main(["--task", "mackey-glass", "--repeats", "31", "--out", str(out)]) == 2


def test_bad_forecaster_arguments_are_named():
    with pytest.raises(ValueError, match="kind must be one of"):
        Forecaster("rnn", 1, 4)
    with pytest.raises(ValueError, match="window must be a positive int, got 0"):
        Forecaster("egru", 0, 4)
    with pytest.raises(ValueError, match=r"batch must be \[N, 1, 1\]"):
        Forecaster("egru", 1, 4)(torch.zeros(3, 2))
