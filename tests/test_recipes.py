"""The paper's recipes (egru-model.md §8): DVS preprocessing and augmentation, the AlexNet-like CNN,
the sMNIST train/validation split, AWD-style LM windows, variational dropout and best-validation
selection. Offline, tiny synthetic data."""

from __future__ import annotations

import math
import struct
from unittest import mock

import numpy as np
import pytest
import torch
from data_helpers import write_dvs
from torch.utils.data import TensorDataset

from snntorch_egru.training import _data as D
from snntorch_egru.training import _dvs, _lm


# ----------------------------------------------------------------------------- DVS frames
def test_polarities_averaged_and_scaled_by_hand():
    frames = np.zeros((3, 2, 4, 4), dtype=np.int16)
    frames[0, 0, 1, 2] = 4  # 4 ON events
    frames[0, 1, 1, 2] = 2  # 2 OFF events, same pixel
    frames[2, 1, 3, 0] = 7
    x = _dvs.DVSFrames(steps=5, scale=19.0, size=4)(frames)
    assert x.shape == (5, 1, 4, 4)  # one channel, padded to 5 steps
    assert x[0, 0, 1, 2].item() == pytest.approx(3 / 19.0)  # (4 + 2) / 2 / 19
    assert x[2, 0, 3, 0].item() == pytest.approx(3.5 / 19.0)
    assert x.abs().sum().item() == pytest.approx(6.5 / 19.0)
    assert torch.all(x[3:] == 0)
    xt = _dvs.DVSFrames(steps=2, scale=18.5, size=4)(frames)  # test scaling, cut to 2 steps
    assert xt.shape == (2, 1, 4, 4) and xt[0, 0, 1, 2].item() == pytest.approx(3 / 18.5)
    # small option: 2x2 sum pooling keeps counts per pooled pixel
    xp = _dvs.DVSFrames(steps=3, scale=19.0, size=2)(frames)
    assert xp[0, 0, 0, 1].item() == pytest.approx(3 / 19.0) and xp[2, 0, 1, 0].item() == pytest.approx(3.5 / 19.0)
    xs = _dvs.DVSFrames(steps=3, scale=19.0, size=4, polarity="separate")(frames)
    assert xs.shape == (3, 2, 4, 4) and xs[0, 0, 1, 2].item() == pytest.approx(4 / 19.0)
    with pytest.raises(ValueError, match="polarity must be 'mean' or 'separate', got 'sum'"):
        _dvs.DVSFrames(3, 19.0, polarity="sum")


def test_warp_identity_rotation_and_crop_against_references():
    x = torch.rand(3, 2, 8, 8)
    assert torch.equal(_dvs.warp(x, torch.eye(3)), x)
    rot = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])  # output (u, v) samples input (-v, u)
    np.testing.assert_allclose(_dvs.warp(x, rot).numpy(), torch.rot90(x, 1, (-2, -1)).numpy(), atol=1e-6)
    crop = torch.tensor([[0.5, 0, 0], [0, 0.5, 0], [0, 0, 1]])  # central 4x4 resized to 8x8
    ref = torch.nn.functional.interpolate(
        x[..., 2:6, 2:6].reshape(6, 1, 4, 4), size=8, mode="bilinear", align_corners=False
    ).reshape(3, 2, 8, 8)
    # interior only: at the crop's border interpolate() clamps, the warp reads the true neighbours outside it
    np.testing.assert_allclose(_dvs.warp(x, crop)[..., 1:7, 1:7].numpy(), ref[..., 1:7, 1:7].numpy(), atol=1e-6)
    src = [(-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)]
    dst = [(-0.8, -0.9), (0.7, -1.0), (1.0, 0.6), (-1.0, 1.0)]
    M = _dvs.perspective_matrix(src, dst)
    for (a, b), (c, d) in zip(src, dst):
        p = M @ torch.tensor([a, b, 1.0], dtype=torch.float64)
        assert (p[0] / p[2]).item() == pytest.approx(c) and (p[1] / p[2]).item() == pytest.approx(d)


def test_augmentation_deterministic_under_seed_and_degenerate_is_identity():
    x = torch.rand(4, 1, 16, 16)
    aug = _dvs.FrameAugment()
    torch.manual_seed(5)
    a = aug(x)
    torch.manual_seed(5)
    b = aug(x)
    torch.manual_seed(6)
    c = aug(x)
    assert torch.equal(a, b) and not torch.allclose(a, c) and not torch.allclose(a, x)
    # one warp for the whole sample: frame t of the augmented clip == the warp of frame t alone
    torch.manual_seed(5)
    m = aug.sample_matrix(16, 16)
    np.testing.assert_allclose(a[2].numpy(), _dvs.warp(x[2], m).numpy(), atol=1e-6)
    none = _dvs.FrameAugment(crop_scale=(1.0, 1.0), ratio=(1.0, 1.0), perspective_p=0.0, degrees=0.0)
    assert torch.equal(none(x), x)
    # rotation range: 25 degrees at most (corner (1, 0) of the rotation-only matrix)
    rot_only = _dvs.FrameAugment(crop_scale=(1.0, 1.0), ratio=(1.0, 1.0), perspective_p=0.0)
    torch.manual_seed(0)
    angles = [math.degrees(math.atan2(rot_only.sample_matrix(16, 16)[1, 0].item(), 1.0)) for _ in range(200)]
    assert max(abs(a) for a in angles) <= 25.0 + 1e-9 and max(angles) > 20 and min(angles) < -20


def _write_dvs(root, rng):
    write_dvs(root, rng, train_users=(1,), test_users=(2,))


def test_dvsgesture_recipe_pipeline_augments_training_only(tmp_path):
    from tonic.datasets import DVSGesture

    _write_dvs(tmp_path / "data", np.random.default_rng(2))
    with mock.patch.object(DVSGesture, "_check_exists", return_value=True):
        kw = dict(frame_size=128, polarity="mean")  # what the preset passes
        data = D.load_classification("dvsgesture", str(tmp_path / "data"), augment=True, **kw)
        plain = D.load_classification("dvsgesture", str(tmp_path / "data"), augment=False, **kw)
        assert data.input_shape == (1, 128, 128) and data.steps == 68 and data.valid is None
        refs = {}
        for train in (True, False):
            ds = DVSGesture(str(tmp_path / "data"), train=train)
            ev = np.load(ds.data[0])
            first = ev[ev[:, 3] * 1000 < 25_000]  # first 25 ms frame, full resolution
            ref = np.zeros((128, 128))
            for xx, yy, _, _ in first:
                ref[int(yy), int(xx)] += 0.5  # polarities averaged
            refs[train] = ref
        xt, _ = data.test[0]
        assert xt.shape == (68, 1, 128, 128)
        np.testing.assert_allclose(xt[0, 0].numpy(), refs[False] / 18.5, atol=1e-6)
        np.testing.assert_allclose(data.test[0][0].numpy(), xt.numpy())  # no randomness at test time
        xp, _ = plain.train[0]
        np.testing.assert_allclose(xp[0, 0].numpy(), refs[True] / 19.0, atol=1e-6)
        torch.manual_seed(11)
        a, _ = data.train[0]
        torch.manual_seed(11)
        b, _ = data.train[0]
        torch.manual_seed(12)
        c, _ = data.train[0]
    assert torch.equal(a, b) and not torch.allclose(a, c) and not torch.allclose(a, xp)


def test_alexnet_frontend_matches_recipe_size():
    net = _dvs.AlexNetFrames()
    # independent count: the five convolutions and Linear(256, 512) with one input channel
    convs = [(1, 64, 11), (64, 192, 5), (192, 384, 3), (384, 256, 3), (256, 256, 3)]
    expected = sum(i * o * k * k + o for i, o, k in convs) + 256 * 512 + 512
    assert sum(p.numel() for p in net.parameters()) == expected == 2_585_792  # notes: "CNN 2.59 M"
    net.eval()
    x = torch.rand(2, 3, 1, 128, 128)
    out = net(x)
    assert out.shape == (2, 3, 512)
    torch.testing.assert_close(out[1, 2], net.net(x[1, 2:3])[0])  # per-frame, frames independent
    with pytest.raises(ValueError, match=r"needs frames of 127 to 190 pixels, got \(32, 32\)"):
        net(torch.rand(1, 1, 1, 32, 32))
    with pytest.raises(ValueError, match="--cnn alexnet with --frame-size 64: .* 127 to 190 pixels"):
        _dvs.build_frontend("alexnet", 1, 64)
    with pytest.raises(ValueError, match=r"--cnn alexnet-gap with --frame-size 32: .*at least 63x63, got \(32, 32\)"):
        _dvs.build_frontend("alexnet-gap", 1, 32)
    with pytest.raises(ValueError, match="--cnn must be one of alexnet, alexnet-gap, small, got 'vgg'"):
        _dvs.build_frontend("vgg", 1, 128)
    assert _dvs.build_frontend("small", 2, 32).features == 256


# ----------------------------------------------------------------------------- sMNIST split
def test_split_train_valid_sizes_and_seed():
    ds = TensorDataset(torch.arange(60000))
    tr, va = D.split_train_valid(ds)
    assert len(tr) == 48000 and len(va) == 12000
    assert set(tr.indices).isdisjoint(va.indices) and len(set(tr.indices) | set(va.indices)) == 60000
    tr2, va2 = D.split_train_valid(ds, seed=42)
    assert tr2.indices == tr.indices and va2.indices == va.indices
    # EvNN: random_split(full, [48000, 12000], generator seed 42), indices in the same order
    ref_tr, ref_va = torch.utils.data.random_split(ds, [48000, 12000], generator=torch.Generator().manual_seed(42))
    assert tr.indices == list(ref_tr.indices) and va.indices == list(ref_va.indices)
    _, va3 = D.split_train_valid(ds, seed=43)
    assert va3.indices != va.indices
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\), got 1.5"):
        D.split_train_valid(ds, fraction=1.5)


def _idx(path, arr, magic):
    with open(path, "wb") as f:
        if magic == 2051:
            f.write(struct.pack(">IIII", magic, len(arr), 28, 28))
        else:
            f.write(struct.pack(">II", magic, len(arr)))
        f.write(arr.astype(np.uint8).tobytes())


@pytest.fixture
def mnist_dir(tmp_path):
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 20), ("t10k", 6)):
        imgs = rng.integers(0, 256, (n, 28, 28))
        imgs[:, 0, 0] = np.arange(n) + (0 if prefix == "train" else 100)  # sample id in the first pixel
        _idx(raw / f"{prefix}-images-idx3-ubyte", imgs, 2051)
        _idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n), 2049)
    return tmp_path


@pytest.mark.parametrize("task", ["smnist", "psmnist"])
def test_mnist_validation_comes_from_the_training_file(mnist_dir, task):
    data = D.load_classification(task, str(mnist_dir / "data"))
    ids = lambda ds: sorted(int(round(ds[i][0][0, 0].item() * 255)) for i in range(len(ds)))  # pixel 0 first
    assert len(data.train) == 16 and len(data.valid) == 4 and len(data.test) == 6
    assert sorted(ids(data.train) + ids(data.valid)) == list(range(20))
    assert ids(data.test) == list(range(100, 106))
    held = sorted(torch.randperm(20, generator=torch.Generator().manual_seed(42))[16:].tolist())  # the last 4
    assert ids(data.valid) == held


# ----------------------------------------------------------------------------- LM: AWD windows, dropout
def test_awd_windows_distribution_and_tiling():
    g = torch.Generator().manual_seed(0)
    w = _lm.awd_windows(200_000, 70, g)
    starts = [s for s, _ in w]
    lens = np.array([n for _, n in w])
    assert starts[0] == 0 and all(s + n == t for (s, n), (t, _) in zip(w, w[1:]))
    assert starts[-1] + lens[-1] == 200_000 - 1  # every target used once
    body = lens[:-1]
    short = (body < 52).mean()  # nominal 35 (mass within 17 of 35) vs nominal 70
    assert 0.035 < short < 0.065  # 5 % of windows are half-length
    long_ = body[body >= 52]
    assert abs(long_.mean() - 69.5) < 0.4  # int(N(70, 5)) truncates: mean 69.5
    assert abs(long_.std() - 5.0) < 0.4
    assert body.min() >= 5
    again = _lm.awd_windows(200_000, 70, torch.Generator().manual_seed(0))
    assert again == w
    tiny = np.array([n for _, n in _lm.awd_windows(5000, 6, torch.Generator().manual_seed(1))][:-1])
    assert tiny.min() == 5 and (tiny == 5).mean() > 0.3  # min 5 clips the N(6, 5) / N(3, 5) draws
    assert _lm.lr_scale(35, 70) == 0.5 and _lm.lr_scale(84, 70) == pytest.approx(1.2)
    with pytest.raises(ValueError, match="bptt must be a positive int, got 0"):
        _lm.awd_windows(100, 0)


def test_locked_dropout_masks():
    x = torch.ones(6, 4, 50)
    torch.manual_seed(0)
    y = _lm.locked_dropout(x, 0.5, True)  # shared over time
    assert set(y.unique().tolist()) == {0.0, 2.0}
    assert all(torch.equal(y[t], y[0]) for t in range(6)) and not torch.equal(y[:, 0], y[:, 1])
    z = _lm.locked_dropout(x, 0.5, True, share="batch")  # EvNN: shared over the batch, new per step
    assert all(torch.equal(z[:, b], z[:, 0]) for b in range(4)) and not torch.equal(z[0], z[1])
    assert torch.equal(_lm.locked_dropout(x, 0.5, False), x)
    with pytest.raises(ValueError, match="dropout mask share must be 'time' or 'batch', got 'step'"):
        _lm.locked_dropout(x, 0.5, True, share="step")


def test_best_checkpoint_keeps_the_best_epoch(tmp_path):
    model = torch.nn.Linear(2, 2)
    best = _lm.BestCheckpoint(str(tmp_path / "best.pt"), mode="min")
    snapshots = {}
    for epoch, value in enumerate([3.0, 2.0, 2.5, 1.5, 1.8], start=1):
        with torch.no_grad():
            model.weight.fill_(epoch)
        snapshots[epoch] = model.weight.clone()
        best.update(value, model, epoch)
    assert best.epoch == 4 and best.value == 1.5
    assert best.restore(model) and torch.equal(model.weight, snapshots[4])
    saved = torch.load(tmp_path / "best.pt", weights_only=False)
    assert saved["epoch"] == 4 and torch.equal(saved["model"]["weight"], snapshots[4])
    again = _lm.BestCheckpoint(None)
    again.load_state_dict(best.state_dict())
    assert again.epoch == 4 and not again.better(1.6) and again.better(1.4)
    hi = _lm.BestCheckpoint(None, mode="max")
    for epoch, value in enumerate([0.2, 0.9, 0.5], start=1):
        hi.update(value, model, epoch)
    assert hi.epoch == 2
    assert not _lm.BestCheckpoint(None).restore(model)
    with pytest.raises(ValueError, match="mode must be 'min' or 'max', got 'best'"):
        _lm.BestCheckpoint(None, mode="best")


# ----------------------------------------------------------------------------- the loop (selection, AWD)
import json  # noqa: E402

from snntorch_egru.training import (  # noqa: E402
    _loop,
    _run_lm,
    main,  # noqa: E402
)

TINY = ["--epochs", "3", "--no-progress", "--no-plot", "--no-nir", "--seed", "3"]


def _record_evaluations(monkeypatch):
    calls = []
    real = _loop._Run.evaluate

    def spy(self, split="test", keep_raster=False):
        calls.append(split)
        return real(self, split, keep_raster)

    monkeypatch.setattr(_loop._Run, "evaluate", spy)
    return calls


def test_mnist_selects_on_validation_and_tests_the_best_epoch(mnist_dir, monkeypatch):
    from snntorch_egru.training._models import SequenceClassifier, build_egru
    from snntorch_egru.training._tasks import TrainConfig

    calls = _record_evaluations(monkeypatch)
    out = mnist_dir / "run"
    rc = main(
        [
            "--task",
            "smnist",
            "--data-dir",
            str(mnist_dir / "data"),
            "--out",
            str(out),
            "--hidden-size",
            "6",
            "--batch-size",
            "8",
            "--eval-batch-size",
            "8",
            "--lr",
            "0.05",
            *TINY,
        ]
    )
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert (m["train_samples"], m["valid_samples"], m["test_samples"]) == (16, 4, 6)
    assert calls[:3] == ["valid"] * 3 and "valid" not in calls[3:] and set(calls[3:]) == {"test"}
    hist = [h["eval_accuracy"] for h in m["history"]]
    assert all(h["eval_split"] == "valid" for h in m["history"])
    assert m["selected_epoch"] == 1 + hist.index(max(hist)) and m["valid_accuracy"] == max(hist)
    best = torch.load(out / "best.pt", weights_only=False)
    assert best["epoch"] == m["selected_epoch"]
    # independent test accuracy of the saved best model
    cfg = TrainConfig.from_dict(m["config"])
    model = SequenceClassifier(build_egru(cfg, 1, cfg.hidden_size), 10, readout=cfg.readout)
    model.load_state_dict(best["model"])
    model.eval()
    data = D.load_classification("smnist", str(mnist_dir / "data"))
    x = torch.stack([data.test[i][0] for i in range(6)], 1)
    y = torch.tensor([data.test[i][1] for i in range(6)])
    with torch.no_grad():
        logits, _ = model(x)
    assert m["test_accuracy"] == pytest.approx((logits.argmax(1) == y).float().mean().item())
    assert m["test_loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-5)


WORDS = "the cat sat on a mat and the dog ran to it while birds sang over the green hill".split()


def test_lm_awd_windows_scale_the_lr_and_the_best_valid_model_is_tested(tmp_path, monkeypatch):
    from snntorch_egru.training._models import LanguageModel
    from snntorch_egru.training._tasks import TrainConfig

    rng = np.random.default_rng(0)
    d = tmp_path / "data"
    d.mkdir()
    for name, lines in zip(D.LM_FILES["ptb"], (40, 8, 8)):
        (d / name).write_text("".join(" " + " ".join(rng.choice(WORDS, 9)) + " \n" for _ in range(lines)))
    windows, lrs = [], []
    real_windows, real_step = _loop.awd_windows, _loop._Run._step

    def spy_windows(*a, **k):
        w = real_windows(*a, **k)
        windows.extend(w)
        return w

    def spy_step(self, loss, initial=None):
        lrs.append(self.optimizer.param_groups[0]["lr"])
        return real_step(self, loss, initial)

    monkeypatch.setattr(_run_lm, "awd_windows", spy_windows)
    monkeypatch.setattr(_loop._Run, "_step", spy_step)
    calls = _record_evaluations(monkeypatch)
    starts, ends = _record_layer_states(monkeypatch)
    out = tmp_path / "run"
    rc = main(
        [
            "--task",
            "ptb",
            "--data-dir",
            str(d),
            "--out",
            str(out),
            "--hidden-sizes",
            "8",
            "6",
            "--emb-size",
            "6",
            "--batch-size",
            "2",
            "--eval-batch-size",
            "2",
            "--bptt",
            "8",
            "--dropconnect",
            "0",
            "--schedule",
            "none",
            "--lr",
            "0.01",
            *TINY,
        ]
    )
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["protocol"] == "best validation epoch, tested once at batch 1"  # validation at batch 2, test at 1
    assert m["recipe_protocol"]["label"].endswith("(same protocol)")
    n_rows = (40 * 10) // 2
    assert len(windows) == len(lrs) and sum(n for _, n, _ in windows) == 3 * (n_rows - 1)
    epoch_ends = [k for k, (s, _, _) in enumerate(windows) if s == 0][1:] + [len(windows)]
    assert all(n >= 5 for k, (_, n, _) in enumerate(windows) if k + 1 not in epoch_ends)  # min 5 but at the end
    assert {nom for _, _, nom in windows} == {8, 4.0}  # nominal 8 (95 %) or 4
    assert lrs == pytest.approx([0.01 * n / nom for _, n, nom in windows])  # EvNN: lr * seq_len / this_bptt
    assert len({n for _, n, _ in windows}) > 2  # variable lengths
    # the preset's window state (EvNN): only y_T is passed on, c and trace are zero at every window start,
    # in training, validation and test
    given = [st for st in starts if st is not None]
    assert len(given) > 2 * (len(windows) - 3)  # 2 layers, every training window but the first of an epoch
    assert all(torch.count_nonzero(st.c) == 0 and torch.count_nonzero(st.trace) == 0 for st in given)
    assert any(st.y.abs().sum() > 0 for st in given)
    assert any(st.c.abs().sum() > 0 for st in ends)
    assert all(h["lr"] == pytest.approx(0.01) for h in m["history"])  # restored after each epoch
    assert calls[:3] == ["valid"] * 3 and set(calls[3:]) == {"test"}
    ppl = [h["eval_perplexity"] for h in m["history"]]
    assert m["selected_epoch"] == 1 + ppl.index(min(ppl)) and m["valid_perplexity"] == pytest.approx(min(ppl))
    best = torch.load(out / "best.pt", weights_only=False)
    corpus = D.load_corpus("ptb", str(d))
    model = LanguageModel(TrainConfig.from_dict(m["config"]), len(corpus.vocab))
    model.load_state_dict(best["model"])
    model.eval()
    test = D.batchify(corpus.test, 1)  # the recipe tests at batch 1
    nll, n, states = 0.0, 0, None
    with torch.no_grad():
        for i in range(0, test.shape[0] - 1, 8):  # evaluation keeps fixed windows
            x, y = test[i : i + 8], test[i + 1 : i + 9]
            if states is not None:  # independent of the model's own reset: pass y_T only
                states = [type(s)(s.y, torch.zeros_like(s.c), torch.zeros_like(s.trace)) for s in states]
            logits, states, _ = model(x[: y.shape[0]], states)
            nll += torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum"
            ).item()
            n += y.numel()
    assert m["test_perplexity"] == pytest.approx(math.exp(nll / n), rel=1e-5)


def test_dvs_recipe_trains_at_full_resolution(tmp_path):
    from tonic.datasets import DVSGesture

    _write_dvs(tmp_path / "data", np.random.default_rng(3))
    out = tmp_path / "run"
    with mock.patch.object(DVSGesture, "_check_exists", return_value=True):
        rc = main(
            [
                "--task",
                "dvsgesture",
                "--data-dir",
                str(tmp_path / "data"),
                "--out",
                str(out),
                "--hidden-size",
                "8",
                "--batch-size",
                "2",
                "--eval-batch-size",
                "2",
                *TINY[2:],
                "--epochs",
                "1",
            ]
        )
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["dense_macs"] == 68 * 3 * 8 * (512 + 8)  # AlexNet-like CNN -> Linear(256, 512) -> EGRU
    assert m["selected_on"] == "last epoch (no validation split)" and m["test_accuracy"] in (0.0, 0.5, 1.0)
    assert m["parameters"] == 2_585_792 + 3 * 8 * (512 + 8) + 2 * 3 * 8 + 8 + 8 * 11 + 11


def test_dvs_preset_is_the_recipe():
    from snntorch_egru.training import preset

    cfg = preset("dvsgesture")
    assert (cfg.frame_size, cfg.cnn, cfg.polarity, cfg.augment, cfg.dropout) == (128, "alexnet", "mean", True, 0.6321)
    assert preset("ptb").variable_bptt and preset("wikitext2").variable_bptt and preset("ptb").dropout_mask == "batch"


# ----------------------------------------------------------------------------- issue 12: recipe vs preset
def _lm_cfg(**kw):
    from snntorch_egru.training._tasks import TrainConfig

    base = dict(task="ptb", hidden_sizes=[7, 5], emb_size=5, dropconnect=0.0, thr_mean=0.05, init="evnn")
    base.update(kw)
    return TrainConfig(**base)


def test_lm_presets_are_the_recipe():
    from snntorch_egru.training import preset

    for task, batch in (("ptb", 64), ("wikitext2", 128)):
        cfg = preset(task)
        assert (cfg.lm_state, cfg.dropout_mask, cfg.bptt_lr_scale) == ("y", "batch", "nominal")
        assert (cfg.batch_size, cfg.eval_batch_size, cfg.test_batch_size) == (batch, batch, 1)
        assert cfg.layer_grad_clip == cfg.grad_clip == 0.1


def test_window_start_state_modes():
    from snntorch_egru.state import EGRUState
    from snntorch_egru.training._models import window_start_state

    s = EGRUState(torch.rand(1, 2, 3), torch.rand(1, 2, 3) - 1, torch.rand(1, 2, 3))
    assert window_start_state(s, "full") is s
    r = window_start_state(s, "y")
    assert torch.equal(r.y, s.y) and torch.count_nonzero(r.c) == 0 and torch.count_nonzero(r.trace) == 0
    with pytest.raises(ValueError, match="lm_state must be 'full' or 'y', got 'c'"):
        window_start_state(s, "c")


def _record_layer_states(monkeypatch):
    from snntorch_egru.modules import EGRU

    seen = []
    real = EGRU.forward

    def spy(self, x, state=None, *a, **k):
        seen.append(None if state is None else type(state)(*(t.detach().clone() for t in state)))
        out = real(self, x, state, *a, **k)
        seen_out.append(type(out[1])(*(t.detach().clone() for t in out[1])))
        return out

    seen_out = []
    monkeypatch.setattr(EGRU, "forward", spy)
    return seen, seen_out


@pytest.mark.parametrize("mode", ["y", "full"])
def test_lm_window_state_reset_or_carry(monkeypatch, mode):
    from snntorch_egru.training._models import LanguageModel

    torch.manual_seed(0)
    model = LanguageModel(_lm_cfg(lm_state=mode), 20).eval()
    tokens = torch.randint(0, 20, (12, 3))
    seen, seen_out = _record_layer_states(monkeypatch)
    with torch.no_grad():
        _, st, _ = model(tokens[:6])
        logits2, _, _ = model(tokens[6:], st)
    assert seen[:2] == [None, None]
    for k in range(2):  # second window, layer k
        start, prev = seen[2 + k], seen_out[k]
        assert torch.equal(start.y, prev.y) and prev.y.abs().sum() > 0 and prev.c.abs().sum() > 0
        if mode == "y":  # c and trace are zero at the window start, only y_T is passed on
            assert torch.count_nonzero(start.c) == 0 and torch.count_nonzero(start.trace) == 0
        else:
            assert torch.equal(start.c, prev.c) and torch.equal(start.trace, prev.trace)
    if mode == "full":  # carrying everything continues the sequence exactly
        with torch.no_grad():
            whole, _, _ = model(tokens)
        torch.testing.assert_close(logits2, whole[6:], rtol=1e-5, atol=1e-6)


def test_lm_dropout_masks_per_step_shared_by_batch():
    from snntorch_egru.training._models import LanguageModel

    torch.manual_seed(1)
    cfg = _lm_cfg(dropout_mask="batch", dropout_emb=0.5, dropout=0.5, dropout_out=0.5)
    model = LanguageModel(cfg, 20).train()
    inputs, outputs = [], []

    def keep(module, args, out):
        inputs.append(args[0].detach())
        outputs.append(out[0].detach())

    for layer in model.layers:
        layer.register_forward_hook(keep)
    decoder_in = []
    model.decoder.register_forward_hook(lambda m, a, out: decoder_in.append(a[0].detach()))
    tokens = torch.full((8, 4), 3)  # the same token everywhere: only the masks vary
    model(tokens)
    x = inputs[0]  # embedding after dropout, [T, B, E]
    mask = x != 0
    assert torch.equal(mask, mask[:, :1].expand_as(mask))  # shared by the batch (mask [T, 1, E])
    assert not torch.equal(mask[0], mask[1])  # a new mask at every step
    # between layers and before the decoder: the dropped tensor / the layer's events is the mask
    for y, z in ((outputs[0], inputs[1]), (outputs[1], decoder_in[0])):
        assert torch.equal(y, y[:, :1].expand_as(y)) and (y != 0).float().mean() > 0.2  # same events per column
        m = torch.where(y != 0, z / torch.where(y != 0, y, 1.0), torch.nan)
        live = y[:, 0] != 0
        vals = m[:, 0][live]
        assert set(torch.round(vals, decimals=4).unique().tolist()) == {0.0, 2.0}
        assert torch.equal(torch.nan_to_num(m), torch.nan_to_num(m[:, :1]).expand_as(m))  # [T, 1, H] mask
    model.dropout_mask = "time"  # the package's alternative: one mask per sample, shared over time
    inputs.clear()
    model(tokens)
    m2 = inputs[0] != 0
    assert torch.equal(m2, m2[:1].expand_as(m2)) and not all(torch.equal(m2[:, 0], m2[:, b]) for b in (1, 2, 3))


def test_layer_gradient_clip_scales_each_layer_to_the_limit():
    from snntorch_egru.training._models import LanguageModel, clip_layer_gradients, layer_gradient_groups

    torch.manual_seed(2)
    model = LanguageModel(_lm_cfg(hidden_sizes=[9, 6], emb_size=6), 30).train()
    tokens = torch.randint(0, 30, (10, 4))
    states = model.zero_states(4, requires_grad=True)
    logits, _, _ = model(tokens[:-1], states)
    torch.nn.functional.cross_entropy(logits.reshape(-1, 30), tokens[1:].reshape(-1)).mul(50).backward()
    before = {n: p.grad.clone() for n, p in model.named_parameters()}
    groups = layer_gradient_groups(model, states)
    assert len(groups) == 2 and all(len(p) == 5 for p, _, _ in groups)  # W_ih, W_hh, b_ih, b_hh, theta
    # independent norms: parameters of layer k plus the gradient of its initial events y_0
    ref = []
    for k, _layer in enumerate(model.layers):
        sq = sum(
            before[f"layers.{k}.{name}_l0"].double().pow(2).sum()
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "threshold")
        )
        assert states[k].y.grad is not None and states[k].y.grad.abs().sum() > 0
        ref.append(float((sq + states[k].y.grad.double().pow(2).sum()).sqrt()))
    limit = 0.5 * min(ref)
    norms = clip_layer_gradients(groups, limit)
    assert norms == pytest.approx(ref)
    for k in range(2):
        coef = limit / (ref[k] + 1e-6)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "threshold"):
            key = f"layers.{k}.{name}_l0"
            torch.testing.assert_close(model.get_parameter(key).grad, before[key] * coef)
        after = sum(
            model.get_parameter(f"layers.{k}.{n}_l0").grad.double().pow(2).sum()
            for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "threshold")
        )
        assert float((after + states[k].y.grad.double().pow(2).sum() * coef**2).sqrt()) <= limit * (1 + 1e-6)
    torch.testing.assert_close(model.embedding.weight.grad, before["embedding.weight"])  # not an EGRU layer
    torch.testing.assert_close(model.decoder.bias.grad, before["decoder.bias"])
    # under the limit: nothing changes
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    clip_layer_gradients(layer_gradient_groups(model, states), 1e9)
    assert all(torch.equal(p.grad, grads[n]) for n, p in model.named_parameters())
    with pytest.raises(ValueError, match=r"one entry per EGRU module \(2\), got 1"):
        layer_gradient_groups(model, states[:1])


def test_smnist_preset_clips_each_layer_before_the_global_clip(mnist_dir, monkeypatch):
    from snntorch_egru.training import preset

    assert (preset("smnist").layer_grad_clip, preset("psmnist").layer_grad_clip) == (0.25, 0.25)
    seen = []
    real = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, *a, **k):
        run = spy.run
        groups = _loop.layer_gradient_groups(run.model)
        seen.append([float(torch.sqrt(sum(p.grad.double().pow(2).sum() for p in ps))) for ps, _, _ in groups])
        return real(params, max_norm, *a, **k)

    real_step = _loop._Run._step

    def step(self, loss, initial=None):
        spy.run = self
        assert initial is not None and initial[0].y.requires_grad  # the initial events' gradient is counted
        return real_step(self, loss, initial)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    monkeypatch.setattr(_loop._Run, "_step", step)
    rc = main(
        [
            "--task",
            "smnist",
            "--data-dir",
            str(mnist_dir / "data"),
            "--out",
            str(mnist_dir / "run"),
            "--hidden-size",
            "6",
            "--batch-size",
            "8",
            "--eval-batch-size",
            "8",
            "--lr",
            "0.05",
            "--layer-grad-clip",
            "1e-4",
            *TINY[:1],
            "1",
            *TINY[2:],
        ]
    )
    assert rc == 0 and len(seen) == 2  # 16 training samples, batch 8
    assert all(n <= 1e-4 * (1 + 1e-6) for norms in seen for n in norms)


def _conv_out(s, k, stride=1, pad=0):
    return (s + 2 * pad - k) // stride + 1


def test_dvs_frontend_is_the_recipes_layer_list_and_macs():
    net = _dvs.build_frontend("alexnet", 1, 128)
    names = [type(m).__name__ for m in net.net]
    assert names == [
        "Conv2d",
        "ReLU",
        "MaxPool2d",
        "Conv2d",
        "ReLU",
        "MaxPool2d",
        "Conv2d",
        "ReLU",
        "MaxPool2d",
        "Conv2d",
        "ReLU",
        "MaxPool2d",
        "Conv2d",
        "ReLU",
        "Flatten",
        "Linear",
        "Dropout",
    ]  # no ReLU, no GAP
    # independent MAC count: feature-map sides 128 -conv1-> 31 -pool-> 15 -conv2-> 15 -pool-> 7 -conv3-> 7 -pool-> 3
    # -conv4-> 3 -pool-> 1 -conv5-> 1
    s1 = _conv_out(128, 11, 4, 2)
    s2 = _conv_out(s1, 3, 2)
    s3 = _conv_out(s2, 3, 2)
    s4 = _conv_out(s3, 3, 2)
    s5 = _conv_out(s4, 3, 2)
    assert (s1, s2, s3, s4, s5) == (31, 15, 7, 3, 1)
    recipe = (
        64 * 1 * 121 * s1**2
        + 192 * 64 * 25 * s2**2
        + 384 * 192 * 9 * s3**2
        + 256 * 384 * 9 * s4**2
        + 256 * 256 * 9 * s5**2
        + 256 * 512
    )
    assert _dvs.conv_macs_per_frame(net, 1, 128) == recipe == 117_759_552
    gap = _dvs.build_frontend("alexnet-gap", 1, 128)  # the package's earlier variant: conv3-5 at 7x7
    assert _dvs.conv_macs_per_frame(gap, 1, 128) == (
        64 * 121 * 31**2 + 192 * 64 * 25 * 15**2 + (384 * 192 + 256 * 384 + 256 * 256) * 9 * 7**2 + 256 * 512
    )
    assert _dvs.conv_macs_per_frame(gap, 1, 128) / recipe == pytest.approx(1.541, abs=1e-3)  # +54 %
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in gap.parameters()) == 2_585_792
    net.eval()
    torch.manual_seed(0)
    feats = net(torch.rand(3, 2, 1, 128, 128))
    assert feats.shape == (3, 2, 512) and (feats < 0).any() and (feats > 0).any()  # signed EGRU input
    assert (gap.eval()(torch.rand(1, 1, 1, 128, 128)) >= 0).all()  # ReLU: non-negative
    assert _dvs.evnn_alexnet_sizes() == (127, 190)


@pytest.mark.parametrize("mode", ["step", "pooled"])
def test_dvs_readout_dropout_placement(mode):
    from snntorch_egru.modules import EGRU
    from snntorch_egru.training._models import SequenceClassifier

    torch.manual_seed(3)
    model = SequenceClassifier(
        EGRU(4, 16, thr_mean=0.05), 11, readout="mean", dropout=0.5, readout_dropout=mode
    ).train()
    seen = {}
    model.drop.register_forward_hook(lambda m, a, out: seen.update(inp=a[0].detach(), out=out.detach()))
    logits, rec = model(torch.randn(9, 3, 4))
    trace = rec.trace[-1].detach()
    if mode == "step":  # EvNN: dropout on the trace at every step, Linear at every step, logits averaged
        assert seen["inp"].shape == (9, 3, 16) and torch.equal(seen["inp"], trace)
        kept = (seen["out"] != 0) | (seen["inp"] == 0)
        assert not all(torch.equal(kept[0], kept[t]) for t in range(1, 9))  # a new mask per step
        ref = model.head(seen["out"]).mean(0)
    else:  # the package's alternative: one mask on the time-averaged trace
        assert seen["inp"].shape == (3, 16)
        torch.testing.assert_close(seen["inp"], trace.mean(0))
        ref = model.head(seen["out"])
    torch.testing.assert_close(logits.detach(), ref.detach())
    model.eval()  # no dropout: both placements give head(mean trace)
    logits_eval, rec = model(torch.randn(9, 3, 4))
    torch.testing.assert_close(logits_eval, model.head(rec.trace[-1].mean(0)), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="readout_dropout must be 'pooled' or 'step', got 'once'"):
        SequenceClassifier(EGRU(4, 16), 11, readout_dropout="once")


def test_evnn_regularisers_by_hand():
    from snntorch_egru.modules import EGRU
    from snntorch_egru.state import EGRURecord
    from snntorch_egru.training._loop import regularisers
    from snntorch_egru.training._tasks import TrainConfig

    model = torch.nn.Sequential(EGRU(3, 4, num_layers=2))
    with torch.no_grad():
        model[0].threshold_l0.copy_(torch.tensor([0.1, 0.2, 0.3, 0.4]))
        model[0].threshold_l1.fill_(0.5)
    c = torch.randn(2, 5, 3, 4, requires_grad=True)  # [layers, T, B, H]
    o = (torch.rand(2, 5, 3, 4) < 0.3).float().requires_grad_()
    rec = EGRURecord(y=o * 1.0, c=c, o=o, trace=torch.zeros(2, 5, 3, 4))
    cfg = TrainConfig(reg_form="evnn", activity_reg=0.01, activity_target=0.05, voltage_reg=0.01, voltage_target=0.05)
    value = regularisers(cfg, [rec], model)
    act = o.detach().mean().item()
    theta = [torch.tensor([0.1, 0.2, 0.3, 0.4]), torch.full((4,), 0.5)]
    volt = sum((c[k].detach() - (theta[k] - 0.05)).mean().item() for k in range(2))
    assert value.item() == pytest.approx(0.01 * (act - 0.05) ** 2 + 0.01 * volt, rel=1e-5)
    value.backward()
    assert o.grad is None or torch.count_nonzero(o.grad) == 0  # built with a comparison: no gradient
    torch.testing.assert_close(c.grad, torch.full_like(c, 0.01 / (5 * 3 * 4)))  # linear: a constant push
    assert model[0].threshold_l0.grad is None  # theta is detached
    smooth = regularisers(TrainConfig(activity_reg=0.01, voltage_reg=0.01, voltage_target=0.05), [rec])
    assert smooth.item() == pytest.approx(
        0.01 * (act - 0.05) ** 2 + 0.01 * ((c.detach() - 0.05) ** 2).mean().item(), rel=1e-5
    )
    with pytest.raises(ValueError, match="reg_form 'evnn' needs the model"):
        regularisers(cfg, [rec])


def test_dvs_and_smnist_presets_are_the_recipe():
    from snntorch_egru.training import preset

    d = preset("dvsgesture")
    assert (d.cnn, d.readout, d.readout_dropout, d.reg_form) == ("alexnet", "mean", "step", "evnn")
    assert (d.activity_reg, d.activity_target, d.voltage_reg, d.voltage_target) == (0.01, 0.05, 0.01, 0.05)
    assert (d.seed, d.test_drop_last, d.grad_clip, d.layer_grad_clip) == (3000, False, 0.0, 0.0)
    # v0.1.0 init: theta = sigmoid(N(-0.2465, sd sqrt 2)); its mean, independently by quadrature
    z = torch.linspace(-8, 8, 200001, dtype=torch.float64)
    w = torch.exp(-(z**2) / 2)
    mean = float((torch.sigmoid(-0.2465 + 2**0.5 * z) * w).sum() / w.sum())
    assert d.thr_mean == pytest.approx(mean, abs=5e-4)
    for task in ("smnist", "psmnist"):
        s = preset(task)
        assert (s.seed, s.grad_clip, s.layer_grad_clip, s.batch_size, s.epochs) == (3000, 0.25, 0.25, 500, 200)


def test_smnist_reports_both_protocols(mnist_dir):
    from snntorch_egru.training._models import SequenceClassifier, build_egru
    from snntorch_egru.training._tasks import TrainConfig

    out = mnist_dir / "run"
    rc = main(
        [
            "--task",
            "smnist",
            "--data-dir",
            str(mnist_dir / "data"),
            "--out",
            str(out),
            "--hidden-size",
            "6",
            "--batch-size",
            "8",
            "--eval-batch-size",
            "8",
            "--lr",
            "0.05",
            *TINY,
        ]
    )
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["protocol"] == "best validation epoch, tested once"
    rp = m["recipe_protocol"]
    assert rp["epoch"] == 3 and rp["label"].startswith("EvNN sMNIST code: the final epoch's model")
    # independent: the final epoch's model is the last checkpoint's
    cfg = TrainConfig.from_dict(m["config"])
    model = SequenceClassifier(build_egru(cfg, 1, cfg.hidden_size), 10, readout=cfg.readout)
    model.load_state_dict(torch.load(out / "checkpoint.pt", weights_only=False)["model"])
    model.eval()
    data = D.load_classification("smnist", str(mnist_dir / "data"))
    x = torch.stack([data.test[i][0] for i in range(6)], 1)
    y = torch.tensor([data.test[i][1] for i in range(6)])
    with torch.no_grad():
        acc = (model(x)[0].argmax(1) == y).float().mean().item()
    assert rp["test_accuracy"] == pytest.approx(acc)


def test_dvs_reports_the_recipes_best_over_epochs_on_test(tmp_path):
    from tonic.datasets import DVSGesture

    _write_dvs(tmp_path / "data", np.random.default_rng(4))
    out = tmp_path / "run"
    with mock.patch.object(DVSGesture, "_check_exists", return_value=True):
        rc = main(
            [
                "--task",
                "dvsgesture",
                "--data-dir",
                str(tmp_path / "data"),
                "--out",
                str(out),
                "--cnn",
                "small",
                "--frame-size",
                "32",
                "--hidden-size",
                "8",
                "--batch-size",
                "2",
                "--eval-batch-size",
                "2",
                "--lr",
                "0.05",
                *TINY,
            ]
        )
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    accs = [h["eval_accuracy"] for h in m["history"]]
    assert all(h["eval_split"] == "test" for h in m["history"])
    assert m["protocol"].startswith("last epoch") and m["test_accuracy"] == pytest.approx(accs[-1])
    rp = m["recipe_protocol"]
    assert rp["test_accuracy"] == max(accs) and rp["epoch"] == 1 + accs.index(max(accs))
    assert "test set doubles as validation" in rp["label"] and "optimistic" in rp["label"]
    digits = tmp_path / "digits"
    assert (
        main(
            [
                "--out",
                str(digits),
                "--hidden-size",
                "4",
                "--limit-train",
                "16",
                "--limit-test",
                "16",
                *TINY[2:],
                "--epochs",
                "1",
            ]
        )
        == 0
    )
    assert json.loads((digits / "metrics.json").read_text())["recipe_protocol"] == {
        "label": "no EvNN recipe for this task"
    }


def test_test_batch_and_drop_last_options():
    from snntorch_egru.training import _distributed as Dist
    from snntorch_egru.training import preset

    def loader(**kw):
        cfg = preset("digits")
        for k, v in kw.items():
            setattr(cfg, k, v)
        cfg.out = "unused"  # BestCheckpoint would write there; digits has no validation split
        r = _loop.make_run(cfg, Dist.DistInfo(), "test")
        r.build()
        return r.test_loader

    plain = loader(eval_batch_size=100)
    assert len(plain) == 4 and not plain.drop_last  # 360 test digits: every sample counts
    dropped = loader(eval_batch_size=7, test_batch_size=100, test_drop_last=True)
    assert len(dropped) == 3 and dropped.batch_size == 100  # EvNN's DVS loader: the partial batch is dropped
    cfg = preset("digits")
    for name, bad, msg in (
        ("lm_state", "c", "--lm-state must be one of full, y, got 'c'"),
        ("readout_dropout", "x", "--readout-dropout must be one of pooled, step, got 'x'"),
        ("reg_form", "l1", "--reg-form must be one of smooth, evnn, got 'l1'"),
        ("bptt_lr_scale", "seq", "--bptt-lr-scale must be one of nominal, bptt, got 'seq'"),
        ("test_batch_size", -1, r"--test-batch-size must be an integer >= 0 .*got -1"),
        ("layer_grad_clip", -0.1, r"--layer-grad-clip must be a finite number >= 0 .*got -0.1"),
    ):
        c = preset("digits")
        setattr(c, name, bad)
        with pytest.raises(ValueError, match=msg):
            _loop._validate(c, 1)
    _loop._validate(cfg, 1)


def test_converted_evnn_lm_checkpoint_runs_with_the_recipes_state():
    from snntorch_egru.convert import torch_to_evnn
    from snntorch_egru.training._models import LanguageModel

    torch.manual_seed(5)
    src = LanguageModel(_lm_cfg(lm_state="y"), 20).eval()
    # an EvNN-layout checkpoint of the same network (keys as EvNN's LanguageModel.state_dict())
    ckpt = {
        "embeddings.weight": src.embedding.weight.detach().clone(),
        "decoder.decoder.weight": src.embedding.weight.detach().clone(),
        "decoder.decoder.bias": torch.randn(20),
    }
    for k, layer in enumerate(src.layers):
        ckpt.update({f"rnns.{k}.{n}": t for n, t in torch_to_evnn(layer.state_dict(), suffix="_l0").items()})
    dst = LanguageModel(_lm_cfg(lm_state="y"), 20).eval()
    dst.load_evnn_checkpoint(ckpt)
    with torch.no_grad():
        src.decoder.bias.copy_(ckpt["decoder.decoder.bias"])
    tokens = torch.randint(0, 20, (12, 2))
    with torch.no_grad():
        a1, sa, _ = src(tokens[:6])
        b1, sb, _ = dst(tokens[:6])
        a2, _, _ = src(tokens[6:], sa)
        b2, _, _ = dst(tokens[6:], sb)
        full = LanguageModel(_lm_cfg(lm_state="full"), 20).eval()
        full.load_state_dict(dst.state_dict())
        _, sf, _ = full(tokens[:6])
        f2, _, _ = full(tokens[6:], sf)
    torch.testing.assert_close(b1, a1)
    torch.testing.assert_close(b2, a2)
    assert not torch.allclose(f2, b2)  # the state mode matters for the second window
    with pytest.raises(KeyError, match="missing 'embeddings.weight'"):
        dst.load_evnn_checkpoint({})
