"""Data-dependent threshold initialisation (``snntorch_egru.init.calibrate_thresholds``) and its use by
``snntorch-egru train`` (``--threshold-init``). Offline, small, CPU."""

from __future__ import annotations

import pytest
import torch
from egru_reference import ref_layer, ref_stack, ref_triangle
from torch import nn

from snntorch_egru import EGRU
from snntorch_egru.init import calibrate_thresholds
from snntorch_egru.training._models import SequenceClassifier, calibrate_classifier
from snntorch_egru.training._tasks import TrainConfig, preset


def _layer_dict(rnn: EGRU, k: int) -> dict:
    return {n: (t.detach().double() if t is not None else None) for n, t in rnn.layer_tensors(k).items()}


def _ref_events(rnn: EGRU, x: torch.Tensor) -> list:
    """Event indicators o [T, B, H] of every layer, from the independent float64 reference."""
    B, H = x.shape[1], rnn.hidden_size
    z = torch.zeros(rnn.num_layers, B, H, dtype=torch.float64)
    layers = [_layer_dict(rnn, k) for k in range(rnn.num_layers)]
    _, _, record = ref_stack(x.double(), layers, z, z, z, reset="subtract", spike=ref_triangle())
    return list(record["o"])


def test_calibration_hits_the_target_activity_counted_by_the_reference():
    torch.manual_seed(0)
    rnn = EGRU(3, 48)
    x = torch.randn(40, 24, 3)
    rep = calibrate_thresholds(rnn, x, target_activity=0.15)
    theta = rnn.threshold_l0.detach().double()
    p = _layer_dict(rnn, 0)
    z = torch.zeros(24, 48, dtype=torch.float64)
    o = ref_layer(x.double(), z, z, z, p, reset="subtract", spike=ref_triangle())["o"]
    per_unit = o.mean(dim=(0, 1))
    inside = (theta > 1e-3) & (theta < 1 - 1e-3)  # units whose threshold is not stuck at a bound
    assert inside.float().mean() > 0.8
    # a step of one event count around the target: 1 / (T * B) = 1 / 960 per unit
    assert torch.all((per_unit[inside] - 0.15).abs() <= 0.15 * 0.1 + 1 / 960)
    assert float(o.mean()) == pytest.approx(0.15, abs=0.02)
    assert rep["activity"][0] == pytest.approx(float(o.mean()), abs=1e-6)
    assert rep["saturated"][0] == pytest.approx(1 - float(inside.double().mean()), abs=1e-9)
    # the Beta init on the same layer is far from the target (what the calibration fixes)
    torch.manual_seed(0)
    beta = EGRU(3, 48)
    with torch.no_grad():
        _, _, rec = beta(x, return_internals=True)
    assert abs(float(rec.o.mean()) - 0.15) > 0.05


def test_stacked_layers_are_calibrated_bottom_up_and_outputs_equal_the_reference():
    torch.manual_seed(1)
    rnn = EGRU(2, 16, num_layers=2)
    x = torch.randn(30, 10, 2)
    rep = calibrate_thresholds(rnn, x, target_activity=0.25, iterations=14)
    events = _ref_events(rnn, x)
    assert len(rep["activity"]) == 2
    for k, o in enumerate(events):
        theta = rnn.layer_tensors(k)["threshold"].detach()
        low = theta < 1e-3  # silent part of the time even at threshold 0 (c_hat <= 0): left at the bound
        rate = o.mean(dim=(0, 1))
        assert torch.all((rate[~low] - 0.25).abs() <= 0.025 + 1 / 300), k
        assert torch.all(rate[low] < 0.25)
        assert rep["saturated"][k] == pytest.approx(float(low.double().mean()))
        assert rep["activity"][k] == pytest.approx(float(o.mean()), abs=1e-6)
    # with the chosen thresholds the layer computes exactly the reference equations
    rnn64 = rnn.double()
    out, _, rec = rnn64(x.double(), return_internals=True)
    B, H = 10, 16
    z = torch.zeros(2, B, H, dtype=torch.float64)
    ref_out, _, record = ref_stack(
        x.double(), [_layer_dict(rnn64, k) for k in range(2)], z, z, z, reset="subtract", spike=ref_triangle()
    )
    torch.testing.assert_close(out.detach(), ref_out, rtol=0, atol=1e-12)
    assert torch.equal(rec.o.detach(), record["o"])


def test_calibration_is_deterministic_and_leaves_weights_and_modes_alone():
    def make():
        torch.manual_seed(3)
        return SequenceClassifier(
            EGRU(4, 32, dropconnect=0.3, zoneout=0.2), 5, frontend=nn.Linear(2, 4), readout="rate", dropout=0.5
        )

    x = torch.rand(20, 8, 2)
    a, b = make(), make()
    weights = {n: t.clone() for n, t in a.named_parameters() if "threshold" not in n}
    a.train()
    ra = calibrate_thresholds(a, x, 0.1)
    rb = calibrate_thresholds(b, x, 0.1)
    assert torch.equal(a.egru.threshold_l0, b.egru.threshold_l0) and ra == rb
    assert a.training and a.egru.training and a.drop.training  # modes restored
    for n, t in a.named_parameters():
        if "threshold" not in n:
            assert torch.equal(t, weights[n]), n


def test_classifier_calibration_uses_a_seeded_batch_and_skips_beta_and_gru():
    data = torch.utils.data.TensorDataset(torch.rand(300, 12, 1), torch.zeros(300, dtype=torch.long))

    def collate(items):
        return torch.stack([i[0] for i in items], 1), torch.stack([i[1] for i in items])

    def model():
        torch.manual_seed(0)
        return SequenceClassifier(EGRU(1, 16), 3, readout="rate")

    cfg = TrainConfig(task="digits", seed=5, activity_target=0.2)
    m1, m2, m3 = model(), model(), model()
    r1 = calibrate_classifier(cfg, m1, data, collate)
    r2 = calibrate_classifier(cfg, m2, data, collate)
    assert torch.equal(m1.egru.threshold_l0, m2.egru.threshold_l0) and r1["samples"] == r2["samples"] == 128
    idx = torch.randperm(300, generator=torch.Generator().manual_seed(5))[:128]  # the batch it documents
    with torch.no_grad():
        _, _, rec = m1.egru(data.tensors[0][idx].transpose(0, 1), return_internals=True)
    rate, theta = rec.o[0].mean(dim=(0, 1)), m1.egru.threshold_l0.detach()
    assert r1["activity"][0] == pytest.approx(float(rec.o.mean()), abs=1e-6)
    assert torch.all((rate[theta > 1e-3] - 0.2).abs() < 0.02)
    calibrate_classifier(TrainConfig(task="digits", seed=6, activity_target=0.2), m3, data, collate)
    assert not torch.equal(m1.egru.threshold_l0, m3.egru.threshold_l0)  # another seed, another batch
    m4 = model()
    before = m4.egru.threshold_l0.clone()
    assert calibrate_classifier(TrainConfig(threshold_init="beta"), m4, data, collate) is None
    assert torch.equal(m4.egru.threshold_l0, before)
    assert calibrate_classifier(cfg, nn.GRU(1, 4), data, collate) is None


def test_presets_choose_the_threshold_init():
    assert preset("digits").threshold_init == "calibrated"
    assert preset("row-mnist").threshold_init == "calibrated"
    assert preset("shd").threshold_init == "calibrated"
    for task in ("ptb", "wikitext2", "dvsgesture", "smnist", "psmnist"):  # recipes reproduced as published
        assert preset(task).threshold_init == "beta"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(target_activity=0.0), "target_activity must be a number strictly between 0 and 1, got 0.0"),
        (dict(target_activity=True), "target_activity must be a number strictly between 0 and 1, got True"),
        (dict(iterations=0), "iterations must be an integer >= 1, got 0"),
        (dict(bounds=(1.0, 0.0)), r"bounds must satisfy low < high, got \(1.0, 0.0\)"),
        (dict(bounds="ab"), "bounds must be a pair of numbers"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        calibrate_thresholds(EGRU(1, 4), torch.rand(5, 2, 1), **kwargs)


def test_models_without_egru_or_not_reaching_it_are_refused():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module holding EGRU layers, got Tensor"):
        calibrate_thresholds(torch.zeros(1), torch.rand(5, 2, 1))
    with pytest.raises(ValueError, match="model must hold at least one snntorch_egru.EGRU layer"):
        calibrate_thresholds(nn.GRU(1, 4), torch.rand(5, 2, 1))

    class Skips(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = EGRU(1, 4)

        def forward(self, x):
            return x

    with pytest.raises(ValueError, match="never called its EGRU layer"):
        calibrate_thresholds(Skips(), torch.rand(5, 2, 1))


def _first_epoch_valid_accuracy(tmp_path, name: str, *flags: str) -> float:
    import json

    from snntorch_egru.training._loop import main

    out = tmp_path / name
    argv = [
        "--out",
        str(out),
        "--epochs",
        "1",
        "--limit-train",
        "600",
        "--hidden-size",
        "128",
        "--seed",
        "0",
        "--threads",
        "1",
        "--no-progress",
        "--no-plot",
        "--no-nir",
        *flags,
    ]
    assert main(argv) == 0
    return json.loads((out / "metrics.json").read_text())["history"][0]["eval_accuracy"]


def test_digits_preset_learns_in_its_first_epoch_and_the_beta_init_does_not(tmp_path):
    # 600 training images, 128 units, one epoch (38 updates); the 287 validation images; chance is about 10 %.
    # Measured (seed 0, rows of 8 pixels): calibrated 56.8 %, the Beta init 24.0 %. (With the earlier
    # pixel-by-pixel reading: calibrated 24.0 %, Beta 8.0 %, its plateau.)
    new = _first_epoch_valid_accuracy(tmp_path, "calibrated")
    old = _first_epoch_valid_accuracy(tmp_path, "beta", "--threshold-init", "beta")
    assert new >= 0.45
    assert old <= 0.35 and new >= old + 0.15


def test_input_std_scales_every_layers_input_drive_before_its_thresholds():
    torch.manual_seed(2)
    rnn = EGRU(3, 20, num_layers=2)
    x = torch.randn(25, 12, 3)
    w_before = rnn.weight_ih_l0.detach().clone()
    rep = calibrate_thresholds(rnn, x, 0.2, input_std=0.5)
    drive0 = (x.reshape(-1, 3) @ rnn.weight_ih_l0.detach().t()).std()
    ratio = rnn.weight_ih_l0.detach() / w_before
    assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio))  # one factor for the whole matrix
    assert float(drive0) == pytest.approx(0.5, rel=1e-5)
    assert rep["input_std_before"][0] == pytest.approx(0.5 / float(ratio.flatten()[0]), rel=1e-5)
    with torch.no_grad():
        _, _, rec = rnn(x, return_internals=True)
    drive1 = (rec.y[0].reshape(-1, 20) @ rnn.weight_ih_l1.t()).std()
    assert float(drive1) == pytest.approx(0.5, rel=1e-4)  # layer 1's input: the calibrated layer 0's events
    assert calibrate_thresholds(EGRU(1, 4), torch.rand(5, 2, 1))["input_std_before"] == [None]
    with pytest.raises(ValueError, match="input_std must be None or a finite number > 0, got -1"):
        calibrate_thresholds(EGRU(1, 4), torch.rand(5, 2, 1), input_std=-1)
