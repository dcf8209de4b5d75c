"""Issue 14: every user error of ``snntorch-egru train`` exits with status 2 and one line naming the flag or
file, what was expected and what was found, without a traceback (unless ``--debug``); resuming with a
changed setting applies it and records it, or refuses naming the flag; metrics.json is strict JSON."""

from __future__ import annotations

import errno
import json
import math
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

from snntorch_egru.training import _loop, main, run
from snntorch_egru.training._loop import UsageError, _write_metrics
from snntorch_egru.training._tasks import TrainConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
    "--hidden-size",
    "8",
    "--batch-size",
    "16",
    "--limit-train",
    "32",
    "--limit-test",
    "16",
    "--eval-batch-size",
    "16",
    "--no-progress",
    "--no-nir",
    "--no-plot",
    "--seed",
    "3",
]


def _one_line_error(capsys, argv, message):
    assert main(argv) == 2, argv
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in captured.err and message in err[0], (message, err)
    return err[0]


@pytest.fixture(scope="module")
def done_run(tmp_path_factory):
    """A finished 2-epoch run folder (copied by the tests that modify it)."""
    out = tmp_path_factory.mktemp("done") / "run"
    assert main(["--out", str(out), *TINY, "--epochs", "2"]) == 0
    return out


# ----------------------------------------------------------------------------- parse time
@pytest.mark.parametrize(
    "argv, message",
    [
        (["--limit-train", "-5"], "argument --limit-train: expected an integer >= 0 (0 = off / all), got '-5'"),
        (["--limit-test", "-1"], "argument --limit-test: expected an integer >= 0 (0 = off / all), got '-1'"),
        (["--lr", "inf"], "argument --lr: expected a finite number > 0, got 'inf'"),
        (["--lr", "nan"], "argument --lr: expected a finite number > 0, got 'nan'"),
        (["--lr=-1e-3"], "argument --lr: expected a finite number > 0, got '-1e-3'"),
        (["--lr", "fast"], "argument --lr: expected a finite number > 0, got 'fast'"),
        (["--weight-decay", "-1"], "argument --weight-decay: expected a finite number >= 0, got '-1'"),
        (["--dropout", "1.5"], "argument --dropout: expected a number in [0, 1), got '1.5'"),
        (["--epochs", "0"], "argument --epochs: expected a positive integer (>= 1), got '0'"),
        (["--hidden-size", "2.5"], "argument --hidden-size: expected a positive integer (>= 1), got '2.5'"),
        (["--hidden-sizes", "8", "-1"], "argument --hidden-sizes: expected a positive integer (>= 1), got '-1'"),
        (["--optimizer", "adagrad"], "argument --optimizer: invalid choice: 'adagrad'"),
        (["--backend", "fast"], "argument --backend: invalid choice: 'fast'"),
        (["--grad-clip", "inf"], "argument --grad-clip: expected a finite number >= 0, got 'inf'"),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ],
)
def test_nonsense_values_are_refused_at_parse_time(capsys, argv, message):
    line = _one_line_error(capsys, argv, message)
    assert line.startswith("snntorch-egru train: error: ")


def test_python_api_is_strict_about_types_and_values(tmp_path):
    for kwargs, message in [
        (dict(progress="False"), "--progress must be a bool (True/False), got str 'False'"),
        (dict(nir=1), "--nir must be a bool (True/False), got int 1"),
        (dict(lr="1e-3"), "--lr must be a number, got str '1e-3'"),
        (dict(hidden_size=8.0), "--hidden-size must be an integer, got float 8.0"),
        (dict(limit_test=-1), "--limit-test must be an integer >= 0 (0 = off / all), got -1"),
        (dict(lr=float("inf")), "--lr must be a finite number > 0, got inf"),
        (dict(readout="max"), "--readout must be one of last, mean, rate, state, got 'max'"),
    ]:
        with pytest.raises(UsageError) as info:
            run(TrainConfig(out=str(tmp_path / "r"), **kwargs))
        assert message in str(info.value), (kwargs, str(info.value))


# ----------------------------------------------------------------------------- environment and folders
def test_backend_cupy_without_cuda(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _one_line_error(capsys, [*TINY, "--backend", "cupy"], "--backend cupy runs on CUDA only")
    _one_line_error(capsys, [*TINY, "--device", "cuda"], "--device cuda was given but torch.cuda.is_available()")


@pytest.mark.parametrize(
    "env, message",
    [
        ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 is set but RANK is not"),
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE must be an integer >= 1, got 'two'"),
        ({"WORLD_SIZE": "2", "RANK": "2"}, "RANK=2 must be less than WORLD_SIZE=2"),
    ],
)
def test_distributed_environment_errors(capsys, monkeypatch, tmp_path, env, message):
    monkeypatch.delenv("RANK", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    _one_line_error(capsys, ["--out", str(tmp_path / "r"), *TINY], message)


def test_out_is_a_file(capsys, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    _one_line_error(capsys, ["--out", str(f), *TINY], f"--out {str(f)!r} is a file; expected a run folder")


def test_out_not_writable(capsys, monkeypatch, tmp_path):
    # simulated (the tests may run as root, which ignores file modes)
    def refuse(path, *a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", path)

    monkeypatch.setattr(os, "makedirs", refuse)
    out = tmp_path / "ro" / "run"
    _one_line_error(capsys, ["--out", str(out), *TINY], f"not writable or readable (Permission denied): {str(out)!r}")


def test_disk_full_keeps_the_previous_checkpoint(capsys, monkeypatch, tmp_path, done_run):
    run_dir = tmp_path / "run"
    shutil.copytree(done_run, run_dir)
    before = (run_dir / "checkpoint.pt").read_bytes()
    real_save = torch.save

    def full_disk(obj, f, *a, **k):
        real_save(obj, f, *a, **k)  # bytes went out ...
        raise OSError(errno.ENOSPC, "No space left on device")  # ... but the device filled up

    monkeypatch.setattr(torch, "save", full_disk)
    _one_line_error(
        capsys,
        ["--resume", str(run_dir), "--epochs", "3", "--no-progress"],
        f"no space left on device (disk full): {str(run_dir / 'checkpoint.pt')!r}",
    )
    assert (run_dir / "checkpoint.pt").read_bytes() == before
    assert not [n for n in os.listdir(run_dir) if n.endswith(".tmp")]
    # the folder is consistent: the metrics of the old checkpoint were removed before it was to be replaced
    assert not (run_dir / "metrics.json").exists()
    monkeypatch.setattr(torch, "save", real_save)
    assert main(["--resume", str(run_dir), "--no-progress"]) == 0  # finishes what it has
    with open(run_dir / "metrics.json") as f:
        assert json.load(f)["epochs_completed"] == 2


def _write_idx(path, magic, dims, payload):
    with open(path, "wb") as f:
        f.write(struct.pack(f">{len(dims) + 1}I", magic, *dims))
        f.write(payload)


@pytest.mark.parametrize(
    "damage, message",
    [
        ("truncate", "is truncated: "),
        ("gzip", "is not an uncompressed idx file"),
        ("count", "holds 12 images but"),
        ("empty", "shorter than its 16-byte header"),
    ],
)
def test_corrupt_mnist_files(capsys, tmp_path, damage, message):
    pytest.importorskip("torchvision")
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 12), ("t10k", 6)):
        _write_idx(
            raw / f"{prefix}-images-idx3-ubyte", 2051, (n, 28, 28), rng.integers(0, 256, n * 784, np.uint8).tobytes()
        )
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", 2049, (n,), rng.integers(0, 10, n, np.uint8).tobytes())
    images = raw / "train-images-idx3-ubyte"
    if damage == "truncate":
        images.write_bytes(images.read_bytes()[:5000])
    elif damage == "gzip":
        images.write_bytes(b"\x1f\x8b\x08\x00" + images.read_bytes()[4:])
    elif damage == "count":
        _write_idx(raw / "train-labels-idx1-ubyte", 2049, (11,), bytes(11))
    else:
        images.write_bytes(b"")
    _one_line_error(
        capsys, ["--task", "smnist", "--data-dir", str(tmp_path), "--out", str(tmp_path / "r"), *TINY], message
    )


# ----------------------------------------------------------------------------- checkpoints
def test_bad_checkpoints_exit_2(capsys, tmp_path, done_run):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    _one_line_error(capsys, ["--resume", str(empty)], f"checkpoint {str(empty)!r} is empty")
    cut = tmp_path / "cut.pt"
    data = (done_run / "checkpoint.pt").read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    _one_line_error(capsys, ["--resume", str(cut)], "is not a readable checkpoint (truncated or corrupt?)")
    noconf = tmp_path / "noconf.pt"
    ck = torch.load(done_run / "checkpoint.pt", weights_only=True)
    torch.save({k: v for k, v in ck.items() if k != "config"}, noconf)
    _one_line_error(capsys, ["--resume", str(noconf)], "missing config")
    _one_line_error(capsys, ["--resume", str(tmp_path / "nothing")], "no checkpoint at")


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--hidden-size", "16"),
        ("--num-layers", "2"),
        ("--optimizer", "sgd"),
        ("--task", "shd"),
        ("--batch-size", "8"),
        ("--seed", "4"),
    ],
)
def test_resume_refuses_structural_changes(capsys, tmp_path, done_run, flag, value):
    run_dir = tmp_path / "run"
    shutil.copytree(done_run, run_dir)
    before = {n: (run_dir / n).read_bytes() for n in os.listdir(run_dir)}
    _one_line_error(capsys, ["--resume", str(run_dir), flag, value, "--epochs", "3"], f"--resume: {flag} ")
    assert {n: (run_dir / n).read_bytes() for n in os.listdir(run_dir)} == before  # nothing touched


def test_resume_checkpoint_with_a_foreign_model(capsys, tmp_path, done_run):
    run_dir = tmp_path / "run"
    shutil.copytree(done_run, run_dir)
    ck = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    ck["model"] = {k: torch.zeros(1) for k in ck["model"]}
    torch.save(ck, run_dir / "checkpoint.pt")
    _one_line_error(capsys, ["--resume", str(run_dir), "--epochs", "3"], "does not match the model")
    _one_line_error(capsys, ["--resume", str(run_dir), "--epochs", "1"], "--epochs 1 is less than the 2 epochs")


def test_resume_with_a_new_lr_and_weight_decay_applies_and_records_them(tmp_path, done_run):
    """The documented behaviour: a changed --lr / --weight-decay takes effect from the resumed epoch (the
    schedule's factor at that epoch applies) and is recorded in metrics.json and the checkpoint."""
    outs = {}
    for name, extra in (("same", []), ("new", ["--lr", "1e-3", "--weight-decay", "0.01"])):
        run_dir = tmp_path / name
        shutil.copytree(done_run, run_dir)
        assert main(["--resume", str(run_dir), "--epochs", "3", "--no-progress", *extra]) == 0
        with open(run_dir / "metrics.json") as f:
            outs[name] = (json.load(f), torch.load(run_dir / "checkpoint.pt", weights_only=True))
    m_same, ck_same = outs["same"]
    m_new, ck_new = outs["new"]
    preset_lr = 1e-2  # digits preset, cosine schedule over --epochs
    cos = lambda e, E: 0.5 * (1 + math.cos(math.pi * e / E))  # noqa: E731
    assert m_new["config"]["lr"] == 1e-3 and m_new["config"]["weight_decay"] == 0.01
    assert m_new["resumes"] == [
        {
            "at_epoch": 2,
            "changed": {
                "epochs": {"from": 2, "to": 3},
                "lr": {"from": preset_lr, "to": 1e-3},
                "weight_decay": {"from": 0.0, "to": 0.01},
            },
        }
    ]
    assert m_same["resumes"] == [{"at_epoch": 2, "changed": {"epochs": {"from": 2, "to": 3}}}]
    g_new, g_same = ck_new["optimizer"]["param_groups"][0], ck_same["optimizer"]["param_groups"][0]
    assert g_new["weight_decay"] == 0.01 and g_same["weight_decay"] == 0.0
    # the lr stored after epoch 3 is the schedule's value at epoch 3 of 3 with the new base lr
    assert g_new["lr"] == pytest.approx(1e-3 * cos(3, 3), abs=1e-15)
    assert g_new["initial_lr"] == 1e-3 and g_same["initial_lr"] == preset_lr
    # the epoch-3 row records the lr it trained at: base * factor(epoch 2 of 3)
    assert m_new["history"][2]["lr"] == pytest.approx(1e-3 * cos(3, 3), abs=1e-15)
    assert m_new["history"][:2] == m_same["history"][:2]
    # and it did train differently
    assert any(not torch.equal(ck_new["model"][k], ck_same["model"][k]) for k in ck_new["model"])


# ----------------------------------------------------------------------------- strict JSON
def test_metrics_json_is_strict(tmp_path):
    path = tmp_path / "metrics.json"
    written = _write_metrics(
        str(path), {"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": -float("inf")}, "e": 2.5}
    )

    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    back = json.loads(path.read_text(), parse_constant=refuse)
    assert back == written
    assert back["a"] is None and back["b"] == [1.0, None] and back["c"] == {"d": None} and back["e"] == 2.5
    assert back["non_finite"]["values"] == ["a=nan", "b[1]=inf", "c.d=-inf"]


def test_debug_shows_the_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": ROOT}
    cmd = [
        sys.executable,
        "-m",
        "snntorch_egru",
        "train",
        "--out",
        str(tmp_path / "r"),
        "--resume",
        str(tmp_path / "missing"),
    ]
    plain = subprocess.run(cmd, env=env, capture_output=True, text=True)
    debug = subprocess.run(cmd + ["--debug"], env=env, capture_output=True, text=True)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr and len(plain.stderr.splitlines()) == 1
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "UsageError" in debug.stderr


def test_ctrl_c_in_a_resumed_run_leaves_no_stale_metrics(capsys, monkeypatch, tmp_path, done_run):
    """After Ctrl-C in a resumed run, metrics.json describes the checkpoint beside it (the last completed epoch),
    flagged unfinished, and the plot is there."""
    run_dir = tmp_path / "run"
    shutil.copytree(done_run, run_dir)
    assert (run_dir / "metrics.json").exists()
    real = _loop._Run.train_epoch
    calls = []

    def interrupted_second_epoch(self, epoch):
        calls.append(epoch)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, epoch)

    monkeypatch.setattr(_loop._Run, "train_epoch", interrupted_second_epoch)
    assert main(["--resume", str(run_dir), "--epochs", "4", "--no-progress"]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "interrupted" in err[0] and "--resume" in err[0]
    ck = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert ck["epoch"] == 3 and calls == [2, 3]
    with open(run_dir / "metrics.json") as f:
        partial = json.load(f)
    assert partial["finished"] is False and partial["epochs_completed"] == 3 and partial["epochs"] == 4
    assert [h["epoch"] for h in partial["history"]] == [1, 2, 3] and partial["history"] == ck["history"]
    assert "test_accuracy" not in partial and f"--resume {run_dir}" in partial["note"]
    monkeypatch.setattr(_loop._Run, "train_epoch", real)
    assert main(["--resume", str(run_dir), "--no-progress"]) == 0
    with open(run_dir / "metrics.json") as f:
        m = json.load(f)
    assert m["epochs_completed"] == 4 == torch.load(run_dir / "checkpoint.pt", weights_only=True)["epoch"]
    assert [x["at_epoch"] for x in m["resumes"]] == [2, 3]


def test_corrupt_shd_and_corpus_files(capsys, tmp_path):
    pytest.importorskip("tonic")
    shd = tmp_path / "SHD"
    shd.mkdir()
    for split in ("train", "test"):
        (shd / f"shd_{split}.h5").write_bytes(b"not an hdf5 file")
        (shd / f"shd_{split}.h5.zip").write_bytes(b"")
    _one_line_error(
        capsys,
        ["--task", "shd", "--data-dir", str(tmp_path), "--out", str(tmp_path / "r"), *TINY],
        f"SHD file {str(shd / 'shd_train.h5')!r} is not a readable HDF5 file",
    )
    for name in ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"):
        (tmp_path / name).write_bytes(b"a b c\n")
    (tmp_path / "ptb.valid.txt").write_bytes(b"a \xff\xfe b\n")
    _one_line_error(
        capsys,
        ["--task", "ptb", "--data-dir", str(tmp_path), "--out", str(tmp_path / "r2"), "--no-progress"],
        "ptb.valid.txt' is not UTF-8 text",
    )
