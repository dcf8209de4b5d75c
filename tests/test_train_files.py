"""Files a ``snntorch-egru train`` run reads and writes: the bounded MNIST idx reader, the --out and
--data-dir paths, the run folder's lock, a full disk, and checkpoints that are not what they claim."""

from __future__ import annotations

import errno
import gzip
import os
import shutil
import struct
import subprocess
import sys
import time
import tracemalloc

import pytest
import torch

from snntorch_egru.training import main
from snntorch_egru.training._data import MAX_IDX_ITEMS, read_idx

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
    "--threads",
    "1",
]


def _one_line_error(capsys, argv, message):
    assert main(argv) == 2, argv
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in captured.err, err
    assert message in err[0], (message, err[0])
    return err[0]


@pytest.fixture(scope="module")
def done_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("done") / "run"
    assert main(["--out", str(out), *TINY, "--epochs", "2"]) == 0
    return out


def _copy(done_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(done_run, run_dir)
    return run_dir


# ----------------------------------------------------------------------------- idx reader
def _labels(path, n, payload=b""):
    with open(path, "wb") as f:
        f.write(struct.pack(">II", 2049, n) + payload)


def test_idx_reader_reads_what_the_header_declares(tmp_path):
    p = tmp_path / "labels"
    _labels(p, 3, bytes([4, 5, 6]))
    assert read_idx(str(p), 2049, ()).tolist() == [4, 5, 6]
    _labels(p, 3, bytes([4, 5, 6, 7]))
    with pytest.raises(ValueError, match=r"is too long: .*declares 3 items \(11 bytes\)"):
        read_idx(str(p), 2049, ())
    _labels(p, 3, bytes([4, 5]))
    with pytest.raises(ValueError, match=r"is truncated: 10 bytes, its header declares 3 items \(11 bytes\)"):
        read_idx(str(p), 2049, ())
    with gzip.open(tmp_path / "labels.gz", "wb") as f:
        f.write(struct.pack(">II", 2049, 2) + bytes([1, 2]))
    assert read_idx(str(tmp_path / "labels.gz"), 2049, ()).tolist() == [1, 2]


def test_idx_reader_zero_items_and_absurd_counts(tmp_path):
    p = tmp_path / "labels"
    _labels(p, 0)
    with pytest.raises(ValueError, match=r"'.*labels' declares 0 items; expected at least one"):
        read_idx(str(p), 2049, ())
    _labels(p, MAX_IDX_ITEMS + 1, bytes(8))
    with pytest.raises(ValueError, match=f"declares {MAX_IDX_ITEMS + 1} items, more than the {MAX_IDX_ITEMS}"):
        read_idx(str(p), 2049, ())


def test_idx_reader_stops_at_the_declared_size_of_a_gzip_bomb(tmp_path):
    """A small .gz that expands far beyond what its header declares: refused after declared + 1 bytes."""
    p = tmp_path / "train-images-idx3-ubyte.gz"
    chunk = bytes(1 << 20)
    with gzip.open(p, "wb", compresslevel=1) as f:
        f.write(struct.pack(">IIII", 2051, 2, 28, 28))
        for _ in range(96):  # 96 MiB of zeros after 2 declared images
            f.write(chunk)
    assert os.path.getsize(p) < (1 << 20)
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(ValueError, match=r"is too long: more bytes, its header declares 2 items"):
            read_idx(str(p), 2051, (28, 28))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < (8 << 20), peak  # far less than the 96 MiB it would expand to
    assert time.perf_counter() - t0 < 30  # generous: a loaded CI machine; the bound is the memory above


def test_idx_reader_refuses_devices_fifos_and_links_to_them(tmp_path):
    link = tmp_path / "train-labels-idx1-ubyte"
    if os.path.exists("/dev/zero"):
        link.symlink_to("/dev/zero")
        with pytest.raises(ValueError, match="is not a regular file"):
            read_idx(str(link), 2049, ())
        link.unlink()
    if hasattr(os, "mkfifo"):
        os.mkfifo(link)  # opening it would block forever: it must be refused without opening
        with pytest.raises(ValueError, match="is not a regular file"):
            read_idx(str(link), 2049, ())


# ----------------------------------------------------------------------------- paths
def test_out_is_a_dangling_symlink(capsys, tmp_path):
    out = tmp_path / "out"
    out.symlink_to(tmp_path / "gone")
    _one_line_error(
        capsys,
        ["--out", str(out), *TINY],
        f"--out {str(out)!r} is a symbolic link to {str(tmp_path / 'gone')!r}, which does not exist",
    )


def test_data_dir_is_a_file(capsys, tmp_path):
    f = tmp_path / "data.txt"
    f.write_text("x")
    _one_line_error(
        capsys,
        ["--task", "smnist", "--data-dir", str(f), "--out", str(tmp_path / "r"), *TINY],
        f"--data-dir {str(f)!r} is a file; expected the folder holding the dataset files of task 'smnist'",
    )


# ----------------------------------------------------------------------------- the folder lock
def _hold_lock(folder):
    """A process holding the run folder's lock as a running ``snntorch-egru train`` does."""
    code = (
        "import fcntl, os, sys, time; f = open(os.path.join(sys.argv[1], '.lock'), 'a+'); "
        "fcntl.flock(f, fcntl.LOCK_EX); f.seek(0); f.truncate(); f.write(f'pid {os.getpid()}\\n'); f.flush(); "
        "print('locked', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fcntl locks are POSIX")
def test_two_runs_into_one_folder_the_second_is_refused(capsys, tmp_path, done_run):
    run_dir = _copy(done_run, tmp_path)
    before = {n: (run_dir / n).read_bytes() for n in os.listdir(run_dir) if n != ".lock"}
    proc = _hold_lock(run_dir)
    try:
        for argv in (["--out", str(run_dir), *TINY, "--epochs", "2"], ["--resume", str(run_dir), "--epochs", "3"]):
            _one_line_error(
                capsys, argv, f"run folder {str(run_dir)!r} is in use by another snntorch-egru train (pid {proc.pid})"
            )
    finally:
        proc.kill()
        proc.wait()
    assert {n: (run_dir / n).read_bytes() for n in os.listdir(run_dir) if n != ".lock"} == before
    assert main(["--resume", str(run_dir), "--epochs", "3", "--no-progress"]) == 0  # free again


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fcntl locks are POSIX")
def test_a_running_train_command_holds_its_folder(capsys, tmp_path):
    out = tmp_path / "busy"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "snntorch_egru", "train", "--out", str(out), *TINY, "--epochs", "200"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        header = proc.stdout.readline()  # printed once the folder is locked and the model built
        assert header.startswith("snntorch-egru train: task digits") and str(out) in header
        _one_line_error(
            capsys,
            ["--out", str(out), *TINY, "--epochs", "2"],
            f"run folder {str(out)!r} is in use by another snntorch-egru train (pid {proc.pid})",
        )
    finally:
        proc.kill()
        proc.wait()
    from snntorch_egru import _io

    with _io.folder_lock(str(out)):  # the lock died with the process
        pass


# ----------------------------------------------------------------------------- a full disk
def test_full_disk_inside_torch_save_names_the_file(capsys, monkeypatch, tmp_path, done_run):
    run_dir = _copy(done_run, tmp_path)
    before = (run_dir / "checkpoint.pt").read_bytes()

    def full(obj, f, *a, **k):  # what torch.save raises when the device fills up under it
        raise RuntimeError(
            "[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file "
            "data/0: file write failed"
        )

    monkeypatch.setattr(torch, "save", full)
    monkeypatch.setattr(os, "statvfs", lambda p: os.statvfs_result((4096, 4096, 10, 0, 0, 10, 0, 0, 0, 255)))
    path = str(run_dir / "checkpoint.pt")
    _one_line_error(
        capsys, ["--resume", str(run_dir), "--epochs", "3"], f"no space left on device (disk full): {path!r}"
    )
    assert (run_dir / "checkpoint.pt").read_bytes() == before
    assert not [n for n in os.listdir(run_dir) if n.endswith(".tmp")]


def test_failed_write_of_a_file_object_names_the_file(tmp_path):
    from snntorch_egru import _io

    def short(f):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError) as info:
        _io.atomic_save(tmp_path / "x.pt", short)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(tmp_path / "x.pt")
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- checkpoints
def _rewrite(run_dir, change):
    ck = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    change(ck)
    torch.save(ck, run_dir / "checkpoint.pt")


def test_text_file_as_checkpoint(capsys, tmp_path, done_run):
    run_dir = _copy(done_run, tmp_path)
    (run_dir / "checkpoint.pt").write_text("these are my notes\n" * 20)
    _one_line_error(
        capsys,
        ["--resume", str(run_dir), "--epochs", "3"],
        f"{str(run_dir / 'checkpoint.pt')!r} is not a readable checkpoint (truncated or corrupt?)",
    )


def _optimizer_string(ck):
    state = next(iter(ck["optimizer"]["state"].values()))
    state["exp_avg"] = "zeros"


def _int64_weights(ck):
    name = next(k for k, v in ck["model"].items() if v.is_floating_point())
    ck["model"][name] = ck["model"][name].round().to(torch.int64)


def _foreign_history(ck):
    ck["history"][1] = {"epoch": 2, "train_loss": "low"}


@pytest.mark.parametrize(
    "change, message",
    [
        (_optimizer_string, "optimizer state 'exp_avg' of parameter 0 is str 'zeros', expected a tensor or a number"),
        (_int64_weights, "is torch.int64, the model's is torch.float32"),
        (lambda ck: ck["config"].update(colour="red", mood=1), "has settings this version does not know: colour, mood"),
        (_foreign_history, "'history' row 2 has 'train_loss' = 'low', expected a number"),
        (lambda ck: ck["history"].append({"epoch": 9}), "'history' has 3 rows for 2 completed epochs"),
        (
            lambda ck: ck["history"].__setitem__(0, [1, 2]),
            "'history' row 0 is '[1, 2]', expected a dict with 'epoch': 1",
        ),
        (lambda ck: ck.update(format=99), "has checkpoint format 99, written by a newer snntorch-egru"),
        (lambda ck: ck.update(format="1"), "'format' is '1', expected a positive integer"),
        (lambda ck: ck.update(scheduler=[1]), "'scheduler' is a list, expected a dict"),
        (lambda ck: ck["model"].update(extra=[1.0]), "'model' must map parameter names to tensors"),
    ],
)
def test_checkpoints_are_validated_before_training(capsys, tmp_path, done_run, change, message):
    run_dir = _copy(done_run, tmp_path)
    _rewrite(run_dir, change)
    before = {n: (run_dir / n).read_bytes() for n in os.listdir(run_dir) if n != ".lock"}
    _one_line_error(capsys, ["--resume", str(run_dir), "--epochs", "3"], message)
    assert {n: (run_dir / n).read_bytes() for n in os.listdir(run_dir) if n != ".lock"} == before


def test_checkpoints_carry_a_format_version_and_older_ones_still_resume(tmp_path, done_run):
    run_dir = _copy(done_run, tmp_path)
    ck = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert ck["format"] == 1 and ck["spec"] == {"input_shape": [8], "num_classes": 10}  # digits: rows of 8 pixels
    _rewrite(run_dir, lambda c: (c.pop("format"), c.pop("spec")))  # a checkpoint of an earlier version
    assert main(["--resume", str(run_dir), "--epochs", "3", "--no-progress"]) == 0
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["format"] == 1
