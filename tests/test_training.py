"""``snntorch-egru train``: presets and flags, metrics.json, resume, regularisers, errors."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from snntorch_egru.state import EGRURecord
from snntorch_egru.training import main, parse_config, preset
from snntorch_egru.training._data import collate_time_first, load_digits_data
from snntorch_egru.training._loop import _lr_factor, _validate, regularisers
from snntorch_egru.training._models import SequenceClassifier, build_egru
from snntorch_egru.training._tasks import TrainConfig

TINY = [
    "--hidden-size",
    "8",
    "--batch-size",
    "16",
    "--limit-train",
    "48",
    "--limit-test",
    "40",
    "--eval-batch-size",
    "40",
    "--no-progress",
    "--seed",
    "5",
]


def _run(out, *extra):
    assert main(["--out", str(out), *TINY, *extra]) == 0
    with open(out / "metrics.json") as f:
        return json.load(f)


def test_import_does_not_load_training_or_heavy_libraries():
    code = (
        "import sys, snntorch_egru; "
        "print(sorted(m for m in ('snntorch_egru.training', 'sklearn', 'tonic', 'torchvision', 'matplotlib') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_presets_and_overrides():
    cfg, resume, given = parse_config([])
    assert cfg == preset("digits") and resume is None and given == {}
    cfg, resume, given = parse_config(
        ["--task", "ptb", "--lr", "0.5", "--no-learn-threshold", "--hidden-sizes", "20", "10", "--resume", "runs/x"]
    )
    assert (cfg.task, cfg.lr, cfg.learn_threshold, cfg.hidden_sizes, resume) == ("ptb", 0.5, False, [20, 10], "runs/x")
    assert (cfg.bptt, cfg.optimizer, cfg.weight_decay, cfg.dropconnect, cfg.seed) == (70, "adamw", 0.10, 0.7, 9612)
    sm = preset("smnist")
    assert (sm.hidden_size, sm.batch_size, sm.lr, sm.grad_clip, sm.epochs) == (590, 500, 1e-3, 0.25, 200)
    dvs = preset("dvsgesture")
    assert (dvs.hidden_size, dvs.batch_size, dvs.step_size, dvs.zoneout) == (795, 40, 56, 0.2319)
    with pytest.raises(ValueError, match="task must be one of .* got 'mnist'"):
        preset("mnist")


def test_lr_schedules():
    cfg = TrainConfig(epochs=10, schedule="cosine_tail", cosine_start=0.6)
    f = _lr_factor(cfg)
    assert [f(e) for e in (0, 5)] == [1.0, 1.0]
    assert f(8) == pytest.approx(0.5 * (1 + math.cos(math.pi * 2 / 4)))
    assert f(10) == pytest.approx(0.0, abs=1e-12)
    g = _lr_factor(TrainConfig(epochs=10, schedule="step", step_size=3, step_gamma=0.5))
    assert [g(e) for e in (0, 2, 3, 7)] == [1.0, 1.0, 0.5, 0.25]


def test_bad_settings_are_named(capsys):
    with pytest.raises(ValueError, match="--batch-size is the global batch .* processes \\(2\\), got 15"):
        _validate(TrainConfig(batch_size=15), 2)
    with pytest.raises(ValueError, match=r"--epochs must be a positive integer \(>= 1\), got 0"):
        _validate(TrainConfig(epochs=0), 1)
    with pytest.raises(ValueError, match="--readout must be one of last, mean, rate, state, got 'max'"):
        _validate(TrainConfig(readout="max"), 1)
    assert main(["--epochs", "0", "--no-progress"]) == 2
    assert r"argument --epochs: expected a positive integer (>= 1), got '0'" in capsys.readouterr().err
    assert main(["--resume", "/nonexistent/run"]) == 2
    assert "no checkpoint at '/nonexistent/run'" in capsys.readouterr().err


def test_activity_regulariser_formula_and_gradient():
    torch.manual_seed(0)
    egru = build_egru(TrainConfig(thr_mean=0.3), 3, 6)
    _, _, rec = egru(torch.randn(7, 4, 3), return_internals=True)
    cfg = TrainConfig(activity_reg=2.0, activity_target=0.05, voltage_reg=0.5, voltage_target=-0.9)
    value = regularisers(cfg, [rec])
    o, c = rec.o.detach().double(), rec.c.detach().double()
    expected = 2.0 * (o.mean() - 0.05) ** 2 + 0.5 * ((c + 0.9) ** 2).mean()
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    # the activity term alone has a gradient through the surrogate (o is not a constant)
    only_act = regularisers(TrainConfig(activity_reg=1.0), [rec])
    grad = torch.autograd.grad(only_act, egru.weight_ih_l0)[0]
    assert grad.abs().sum() > 0
    fake = EGRURecord(*(torch.zeros(1, 2, 2, 2) for _ in range(4)))
    assert regularisers(TrainConfig(), [fake]).item() == 0.0


def test_digits_run_metrics_json(tmp_path):
    m = _run(tmp_path / "run", "--epochs", "2")
    run = tmp_path / "run"
    for key in (
        "test_accuracy",
        "activity",
        "backward_sparsity",
        "effective_macs",
        "dense_macs",
        "wall_time_s",
        "command",
        "history",
        "files",
        "parameters",
        "batch_union_activity",
    ):
        assert key in m, key
    assert m["command"].startswith("snntorch-egru train --out ")
    assert m["epochs_completed"] == 2 and len(m["history"]) == 2 and m["wall_time_s"] > 0
    H, T, I = 8, 8, 8  # the digits preset reads the 8 rows of 8 pixels straight into the EGRU (no encoder)
    assert m["dense_macs"] == T * 3 * H * (I + H)
    assert 0 < m["effective_macs"] <= m["dense_macs"]
    assert 0.0 <= m["backward_sparsity"] <= 1.0 and 0.0 < m["activity"] < 1.0
    assert m["parameters"] == 3 * H * (I + H) + 6 * H + H + H * 10 + 10
    # independent recomputation of the test accuracy and activity from the tested (best validation) model
    ck = torch.load(run / "checkpoint.pt", weights_only=False)
    best = torch.load(run / "best.pt", weights_only=False)
    assert m["selected_on"] == "valid" and best["epoch"] == m["selected_epoch"]
    cfg = TrainConfig.from_dict(ck["config"])
    model = SequenceClassifier(build_egru(cfg, 8, 8), 10, readout=cfg.readout)
    model.load_state_dict(best["model"])
    model.eval()
    data = load_digits_data()
    x, y = collate_time_first([data.test[i] for i in range(40)])
    with torch.no_grad():
        logits, rec = model(x)
    assert m["test_accuracy"] == pytest.approx((logits.argmax(1) == y).double().mean().item(), abs=1e-12)
    assert m["activity"] == pytest.approx(rec.o.double().mean().item(), rel=1e-6)
    # the files of the run folder
    assert (run / "activity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from snntorch_egru import nir as se_nir

    graph = se_nir.read(run / "model.nir")
    egru_nodes = [n for n in graph.nodes.values() if isinstance(n, se_nir.EGRU)]
    assert len(egru_nodes) == 1
    torch.testing.assert_close(torch.as_tensor(egru_nodes[0].weight_hh), model.egru.weight_hh_l0.detach())


def test_resume_equals_uninterrupted(tmp_path):
    extra = ["--epochs", "3", "--no-nir", "--no-plot", "--dropconnect", "0.2"]  # random masks must resume too
    full = _run(tmp_path / "full", *extra)
    part = _run(tmp_path / "part", *extra, "--stop-after", "1")
    assert part["epochs_completed"] == 1
    assert main(["--resume", str(tmp_path / "part"), "--no-progress"]) == 0
    with open(tmp_path / "part" / "metrics.json") as f:
        resumed = json.load(f)
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=False)
    assert a["epoch"] == b["epoch"] == 3
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0)
    assert resumed["test_accuracy"] == full["test_accuracy"]
    assert resumed["activity"] == full["activity"]
    drop = ("lr", "time_s")
    assert [{k: v for k, v in h.items() if k not in drop} for h in resumed["history"]] == [
        {k: v for k, v in h.items() if k not in drop} for h in full["history"]
    ]


def test_cli_entry_point(tmp_path, capsys):
    from snntorch_egru.cli import main as cli_main

    out = tmp_path / "cli"
    rc = cli_main(["train", "--out", str(out), *TINY, "--epochs", "1", "--no-nir", "--no-plot", "--limit-train", "16"])
    assert rc == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("digits: test accuracy ") and str(out) in last
    assert json.loads((out / "metrics.json").read_text())["epochs_completed"] == 1


def test_rate_readout_is_the_exported_nir_graph_averaged_over_time(tmp_path):
    """'rate' logits == time average of the per-step exported NIR graph run step by step (float64 reference)."""
    from snntorch_egru import nir as se_nir
    from snntorch_egru.training._loop import _export_nir

    torch.manual_seed(3)
    cfg = TrainConfig(thr_mean=0.05)
    model = SequenceClassifier(
        build_egru(cfg, 4, 6), 3, frontend=torch.nn.Linear(1, 4), readout="rate", dropout=0.5
    ).eval()
    T, B = 12, 5
    x = torch.rand(T, B, 1)
    with torch.no_grad():
        logits, rec = model(x)
    assert rec.o.sum() > 0  # some events, so the check is not about the bias alone
    path, why = _export_nir(model, torch.zeros(1, 1), str(tmp_path / "m.nir"))
    assert why is None
    step = se_nir.NIRStepModule(se_nir.read(path), dt=1e-4).double().requires_grad_(False)
    state, outs = None, []
    for t in range(T):
        out, state = step(x[t].double(), state)
        outs.append(out)
    torch.testing.assert_close(logits.double(), torch.stack(outs).mean(0), rtol=1e-5, atol=1e-6)
    # readout_steps: the average over the last steps only
    model.readout_steps = 4
    with torch.no_grad():
        tail, _ = model(x)
    torch.testing.assert_close(tail.double(), torch.stack(outs[-4:]).mean(0), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="readout must be 'last', 'mean', 'rate' or 'state', got 'sum'"):
        SequenceClassifier(build_egru(cfg, 4, 6), 3, readout="sum")


# ----------------------------------------------------------------------------- issue 11: baseline, seeds, splits
def _gru_logits_reference(state, x, readout, readout_steps=0):
    """Independent float64 forward of GRUClassifier's weights: (Linear encoder) -> torch GRU math -> readout."""
    sd = {k: v.double() for k, v in state.items()}
    z = x.double() @ sd["frontend.weight"].T + sd["frontend.bias"] if "frontend.weight" in sd else x.double()
    H = sd["egru.weight_hh_l0"].shape[1]
    h = torch.zeros(x.shape[1], H, dtype=torch.float64)
    outs = []
    for t in range(z.shape[0]):
        gi = z[t] @ sd["egru.weight_ih_l0"].T + sd["egru.bias_ih_l0"]
        gh = h @ sd["egru.weight_hh_l0"].T + sd["egru.bias_hh_l0"]
        r = torch.sigmoid(gi[:, :H] + gh[:, :H])
        u = torch.sigmoid(gi[:, H : 2 * H] + gh[:, H : 2 * H])
        n = torch.tanh(gi[:, 2 * H :] + r * gh[:, 2 * H :])
        h = (1 - u) * n + u * h
        outs.append(h)
    hs = torch.stack(outs)
    if readout == "rate":
        feat = (hs[-readout_steps:] if readout_steps else hs).mean(0)
    else:
        feat = hs[-1]
    return feat @ sd["head.weight"].T + sd["head.bias"]


def test_gru_baseline_and_seeds_report_both_with_mean_and_sd(tmp_path, capsys):
    import statistics

    out = tmp_path / "cmp"
    assert (
        main(
            ["--out", str(out), *TINY, "--epochs", "2", "--no-plot", "--no-nir", "--baseline", "gru", "--seeds", "0,1"]
        )
        == 0
    )
    agg = json.loads((out / "metrics.json").read_text())
    assert agg["seeds"] == [0, 1]
    per = {s: json.loads((out / f"seed-{s}" / "metrics.json").read_text()) for s in (0, 1)}
    gru = {s: json.loads((out / f"seed-{s}" / "gru" / "metrics.json").read_text()) for s in (0, 1)}
    for name, runs in (("egru", per), ("gru", gru)):
        accs = [runs[s]["test_accuracy"] for s in (0, 1)]
        assert agg[name]["test_accuracy"]["per_seed"] == accs
        assert agg[name]["test_accuracy"]["mean"] == pytest.approx(statistics.fmean(accs))
        assert agg[name]["test_accuracy"]["sd"] == pytest.approx(statistics.stdev(accs))
    for s in (0, 1):
        e, g = per[s], gru[s]
        assert e["model"] == "egru" and g["model"] == "gru" and e["config"]["seed"] == g["config"]["seed"] == s
        assert e["baseline"]["test_accuracy"] == g["test_accuracy"] and e["baseline"]["model"] == "gru"
        assert (e["train_samples"], e["test_samples"]) == (g["train_samples"], g["test_samples"])
        assert len(e["history"]) == len(g["history"]) == 2
        H, T, I = 8, 8, 8
        assert g["dense_macs"] == g["effective_macs"] == e["dense_macs"] == T * 3 * H * (I + H)
        assert g["activity"] == 1.0 and 0 < e["activity"] < 1
        assert e["comparison"]["egru_minus_gru_accuracy_points"] == pytest.approx(
            100 * (e["test_accuracy"] - g["test_accuracy"])
        )
    # the GRU's reported count of correct test answers, recomputed from its tested weights (float64 reference)
    cfg = TrainConfig.from_dict(gru[1]["config"])
    best = torch.load(out / "seed-1" / "gru" / "best.pt", weights_only=False)
    data = load_digits_data()
    x, y = collate_time_first([data.test[i] for i in range(40)])
    logits = _gru_logits_reference(best["model"], x, cfg.readout, cfg.readout_steps)
    assert gru[1]["test_correct"] == int((logits.argmax(1) == y).sum())
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("digits, seeds 0,1 | EGRU test accuracy ") and "| GRU test accuracy " in last
    assert f"{100 * agg['gru']['test_accuracy']['mean']:.2f} ± {100 * agg['gru']['test_accuracy']['sd']:.2f}%" in last


def test_validation_split_is_held_out_of_train_and_the_test_split_is_read_once(tmp_path, monkeypatch):
    from snntorch_egru.training import _run_classify

    reads = []
    real_build = _run_classify._ClassifyRun._build

    class Counting:
        def __init__(self, loader):
            self.loader = loader

        def __iter__(self):
            reads.append("test")
            return iter(self.loader)

        def __len__(self):
            return len(self.loader)

    def build(self):
        out = real_build(self)
        self.test_loader = Counting(self.test_loader)
        return out

    monkeypatch.setattr(_run_classify._ClassifyRun, "_build", build)
    m = _run(
        tmp_path / "run",
        "--epochs",
        "2",
        "--limit-train",
        "64",
        "--limit-test",
        "0",
        "--hidden-size",
        "4",
        "--eval-batch-size",
        "400",
        "--no-plot",
    )
    assert reads == ["test"]  # two epochs selected on validation; the test split once, at the end
    assert (m["train_samples"], m["valid_samples"], m["test_samples"]) == (64, 287, 360)
    assert m["selected_on"] == "valid" and all(h["eval_split"] == "valid" for h in m["history"])
    assert "0.2 of the training set" in m["validation"]["source"]
    # the validation images come from the training images, never from the test images
    from snntorch_egru.training._data import split_train_valid

    data = load_digits_data()
    tr, va = split_train_valid(data.train, 0.2, 42)
    test_rows = {tuple(data.test[i][0].flatten().tolist()) for i in range(len(data.test))}
    assert len(va) == 287 and not any(tuple(va[i][0].flatten().tolist()) in test_rows for i in range(20))


def test_default_task_nir_file_reproduces_the_reported_test_count(tmp_path):
    """Issue 11: the digits preset's readout is what the exported NIR graph computes."""
    from snntorch_egru import nir as se_nir

    cfg = preset("digits")
    assert cfg.readout == "rate"  # the per-step graph's outputs, averaged over steps
    out = tmp_path / "run"
    assert main(["--out", str(out), "--epochs", "1", "--limit-train", "64", "--no-progress", "--no-plot"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert "faithful" in m["nir_note"]
    step = se_nir.import_from_nir(str(out / "model.nir"))
    data = load_digits_data()
    x, y = collate_time_first([data.test[i] for i in range(len(data.test))])
    state, outs = None, []
    with torch.no_grad():
        for t in range(x.shape[0]):
            o, state = step(x[t], state)
            outs.append(o)
    outs = torch.stack(outs)
    if cfg.readout_steps:
        outs = outs[-cfg.readout_steps :]
    correct = int((outs.mean(0).argmax(1) == y).sum())
    assert m["test_samples"] == 360 and m["test_correct"] == correct
    assert m["test_accuracy"] == pytest.approx(correct / 360, abs=1e-12)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--seeds", "1,x"], "--seeds: expected comma-separated integers"),
        (["--seeds", "1,1"], "--seeds: expected distinct integers"),
        (["--model", "lstm"], "--model: invalid choice: 'lstm'"),
        (["--valid-fraction", "1"], "--valid-fraction: expected a number in [0, 1)"),
    ],
)
def test_new_flags_refuse_bad_values(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_gru_options_are_checked_before_training(tmp_path):
    for kw, msg in (
        (dict(task="ptb", baseline="gru"), "--baseline gru are for classification tasks"),
        (dict(model="gru", baseline="gru"), "--baseline gru trains a GRU next to the EGRU"),
        (dict(seeds=[0, 0]), "--seeds must be a non-empty list of distinct integers"),
    ):
        cfg = TrainConfig(**kw)
        with pytest.raises(ValueError, match=msg):
            _validate(cfg, 1)


def test_gru_model_accepts_the_per_layer_clip_that_only_egru_layers_have(tmp_path):
    """The smnist presets clip each EGRU layer (``layer_grad_clip``); a ``--model gru`` run of them (the dense
    baseline) has no EGRU layer, so the option leaves its update unchanged instead of failing."""
    outs = {}
    for name, extra in (("clip", ["--layer-grad-clip", "0.25"]), ("plain", [])):
        outs[name] = tmp_path / name
        assert (
            main(
                [
                    "--out",
                    str(outs[name]),
                    *TINY,
                    "--epochs",
                    "1",
                    "--no-plot",
                    "--no-nir",
                    "--model",
                    "gru",
                    "--threads",
                    "1",
                    *extra,
                ]
            )
            == 0
        )
    a = torch.load(outs["clip"] / "best.pt", weights_only=False)["model"]
    b = torch.load(outs["plain"] / "best.pt", weights_only=False)["model"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    m = json.loads((outs["clip"] / "metrics.json").read_text())
    assert m["model"] == "gru" and m["config"]["layer_grad_clip"] == 0.25


def test_row_mnist_preset_is_the_one_measured_in_benchmarks_results():
    """The row-MNIST preset is the configuration of ``benchmarks/results/real-mnist-*.md`` (EGRU(256) vs GRU(256))."""
    from snntorch_egru.training import preset

    c = preset("row-mnist")
    assert (c.hidden_size, c.epochs, c.batch_size, c.lr, c.schedule) == (256, 18, 100, 5e-3, "cosine")
    assert (c.readout, c.activity_reg, c.activity_target, c.thr_mean, c.grad_clip) == ("last", 1.0, 0.1, 0.3, 1.0)
