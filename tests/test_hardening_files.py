"""Issue 14: files the package reads are not executed or trusted blindly, files it writes are never half-written.

- checkpoints load with ``weights_only=True``: a crafted pickle is refused and its payload never runs;
- NIR reader: sizes checked from declared shapes before allocation, HDF5 external storage and
  links refused, node names validated on write; the NIR step module checks its state and time constants;
- atomic writes: a failing or SIGKILLed write leaves the previous complete file in place.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import nir
import numpy as np
import pytest
import torch

from snntorch_egru import _io
from snntorch_egru import nir as senir
from snntorch_egru.state import EGRUState
from snntorch_egru.training._loop import UsageError, load_checkpoint, main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------- checkpoints
class _Payload:
    """Unpickling this object would create the marker file (it calls ``open(marker, 'w')``)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _crafted_checkpoint(tmp_path) -> tuple[str, str]:
    marker = str(tmp_path / "PWNED")
    path = str(tmp_path / "checkpoint.pt")
    torch.save(
        {
            "config": {"task": "digits"},
            "epoch": 1,
            "model": {},
            "optimizer": _Payload(marker),
            "scheduler": {},
            "history": [],
        },
        path,
    )
    assert not os.path.exists(marker)
    # the payload is real: an unsafe load creates the file
    torch.load(path, weights_only=False)
    assert os.path.exists(marker)
    os.unlink(marker)
    return path, marker


def test_crafted_pickle_checkpoint_is_refused_and_never_runs(tmp_path, capsys):
    path, marker = _crafted_checkpoint(tmp_path)
    with pytest.raises(UsageError, match="refused to load"):
        load_checkpoint(path)
    assert not os.path.exists(marker)
    assert main(["--resume", path, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refused to load" in err[0] and path in err[0]
    assert not os.path.exists(marker)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is empty"),
        (b"PK\x03\x04garbage", "not a readable checkpoint"),
        (None, "not a readable checkpoint"),  # a truncated real checkpoint
    ],
)
def test_corrupt_empty_truncated_checkpoint(tmp_path, content, message):
    path = tmp_path / "checkpoint.pt"
    if content is None:
        torch.save(
            {
                "config": {},
                "epoch": 1,
                "model": {"w": torch.randn(1000)},
                "optimizer": {},
                "scheduler": {},
                "history": [],
            },
            path,
        )
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(UsageError, match=message):
        load_checkpoint(str(path))


def test_checkpoint_without_config(tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": {}, "epoch": 1}, path)
    with pytest.raises(UsageError, match="missing config"):
        load_checkpoint(str(path))
    torch.save([1, 2], path)
    with pytest.raises(UsageError, match="holds a list"):
        load_checkpoint(str(path))


# ----------------------------------------------------------------------------- NIR reader limits
def _nir_skeleton(f: h5py.File) -> h5py.Group:
    f.create_dataset("version", data="1.0.8", dtype=h5py.string_dtype())
    node = f.create_group("node")
    node.create_dataset("type", data="NIRGraph", dtype=h5py.string_dtype())
    node.create_dataset(
        "edges", data=np.array([["input", "lin"], ["lin", "output"]], dtype=object), dtype=h5py.string_dtype()
    )
    nodes = node.create_group("nodes")
    for name, kind, key in (("input", "Input", "shape"), ("output", "Output", "shape")):
        g = nodes.create_group(name)
        g.create_dataset("type", data=kind, dtype=h5py.string_dtype())
        g.create_dataset(key, data=np.array([3]))
    lin = nodes.create_group("lin")
    lin.create_dataset("type", data="Linear", dtype=h5py.string_dtype())
    return lin


def test_huge_declared_weight_is_refused_before_allocation(tmp_path):
    path = tmp_path / "huge.nir"
    with h5py.File(path, "w") as f:
        lin = _nir_skeleton(f)
        # 40000 x 60000 float32 = 9.6 GB declared; unwritten chunks take no space in the file
        lin.create_dataset("weight", shape=(40000, 60000), dtype="f4", chunks=(1000, 1000), compression="gzip")
    assert path.stat().st_size < 100_000
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"declares more than max_bytes=1073741824 bytes.*\[40000, 60000\]"):
        senir.read(path)
    assert time.perf_counter() - t0 < 5


def test_size_limit_is_overridable(tmp_path):
    path = tmp_path / "small.nir"
    w = np.random.default_rng(0).standard_normal((3, 3)).astype(np.float32)
    senir.write(path, nir.NIRGraph.from_list(nir.Linear(w)))
    with pytest.raises(ValueError, match="max_bytes=16 "):
        senir.read(path, max_bytes=16)
    back = senir.read(path, max_bytes=10_000)
    np.testing.assert_array_equal(back.nodes["linear"].weight, w)
    with pytest.raises(ValueError, match="max_bytes must be a positive int"):
        senir.read(path, max_bytes=-1)


def test_external_storage_is_refused(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n")
    path = tmp_path / "external.nir"
    with h5py.File(path, "w") as f:
        lin = _nir_skeleton(f)
        lin.create_dataset("weight", data=np.eye(3, dtype=np.float32))
        meta = f["node"].create_group("metadata")
        n = secret.stat().st_size
        meta.create_dataset("leak", shape=(n,), dtype="u1", external=[(str(secret), 0, n)])
    with h5py.File(path, "r") as f:  # the trap is real: plain h5py reads the other file
        assert bytes(f["node/metadata/leak"][()]).startswith(b"root:")
    with pytest.raises(ValueError, match="external file"):
        senir.read(path)


@pytest.mark.parametrize("kind", ["external_link", "soft_link"])
def test_links_are_refused(tmp_path, kind):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("w", data=np.eye(3, dtype=np.float32))
    path = tmp_path / "linked.nir"
    with h5py.File(path, "w") as f:
        lin = _nir_skeleton(f)
        if kind == "external_link":
            lin["weight"] = h5py.ExternalLink(str(other), "/w")
        else:
            f.create_dataset("elsewhere", data=np.eye(3, dtype=np.float32))
            lin["weight"] = h5py.SoftLink("/elsewhere")
    with pytest.raises(ValueError, match="external link" if kind == "external_link" else "soft link"):
        senir.read(path)


@pytest.mark.parametrize("name", ["a/b", "", ".", "..", "x\x00"])
def test_node_names_are_validated_on_write(tmp_path, name):
    g = nir.NIRGraph(
        nodes={
            "input": nir.Input(np.array([2])),
            name: nir.Linear(np.eye(2, dtype=np.float32)),
            "output": nir.Output(np.array([2])),
        },
        edges=[("input", name), (name, "output")],
        type_check=False,
    )
    path = tmp_path / "g.nir"
    with pytest.raises(ValueError, match="cannot be stored in a NIR"):
        senir.write(path, g)
    assert not path.exists()
    # nested graphs too
    outer = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([2])), "inner": g, "output": nir.Output(np.array([2]))},
        edges=[("input", "inner"), ("inner", "output")],
        type_check=False,
    )
    with pytest.raises(ValueError, match="graph/inner"):
        senir.write(path, outer)


# ----------------------------------------------------------------------------- NIR step module
def _lif(tau) -> nir.LIF:
    one = np.ones(2, np.float32)
    return nir.LIF(tau=np.asarray(tau, np.float32), r=one, v_leak=0 * one, v_threshold=one)


@pytest.mark.parametrize("tau", [[0.0, 1e-3], [-1e-3, 1e-3], [np.inf, 1e-3], [np.nan, 1e-3]])
def test_lif_tau_must_be_finite_positive(tau):
    with pytest.raises(ValueError, match="tau must be finite and > 0"):
        senir.LIFStep(_lif(tau), dt=1e-4)
    with pytest.raises(ValueError, match="tau must be finite and > 0"):
        senir.import_from_nir(nir.NIRGraph.from_list(_lif(tau)))


def test_cubalif_time_constants_checked():
    one = np.ones(1, np.float32)
    with pytest.raises(ValueError, match="tau_syn must be finite and > 0"):
        senir.CubaLIFStep(nir.CubaLIF(tau_syn=0 * one, tau_mem=one, r=one, v_leak=0 * one, v_threshold=one), 1e-4)


def _egru_graph():
    r = np.random.default_rng(0).standard_normal
    f = lambda *s: r(s).astype(np.float32)  # noqa: E731
    egru = senir.EGRU(f(6, 3), f(6, 2), f(6), f(6), np.full(2, 0.1, np.float32))
    return nir.NIRGraph.from_list(egru, _lif([1e-3, 1e-3]))


def test_step_module_refuses_batch_broadcast_and_unknown_keys():
    step = senir.import_from_nir(_egru_graph())
    x1, x4 = torch.randn(1, 3), torch.randn(4, 3)
    _, s1 = step(x1)
    y4, s4 = step(x4)
    with pytest.raises(ValueError, match="not broadcast across the batch"):
        step(x4, s1)
    with pytest.raises(ValueError, match="unknown state key"):
        step(x4, {**s4, "typo": s4["lif"]})
    renamed = {("egru_renamed" if k == "egru" else k): v for k, v in s4.items()}
    with pytest.raises(ValueError, match="unknown state key"):
        step(x4, renamed)
    with pytest.raises(ValueError, match="lacks"):
        step(x4, {"lif": s4["lif"]})
    with pytest.raises(ValueError, match="unknown state key"):
        step(x4, {**s4, "lif": {"v": s4["lif"]["v"], "u": s4["lif"]["v"]}})
    # the EGRU step module on its own
    egru = senir.EGRUStep(_egru_graph().nodes["egru"])
    z1 = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="state.y must have shape \\[4, 2\\]"):
        egru(x4, EGRUState(z1, z1, z1))
    # a correct state still works and is not reset: continuing differs from restarting
    _, s_cont = step(x4, s4)
    _, s_restart = step(x4)
    assert y4.shape == (4, 2)
    assert not torch.equal(s_cont["egru"].c, s_restart["egru"].c)


# ----------------------------------------------------------------------------- atomic writes
def test_failed_writes_keep_the_previous_file(tmp_path, monkeypatch):
    """A write that fails half-way (disk full) leaves the previous complete file, and no temporary."""
    path = tmp_path / "g.nir"
    w = np.eye(2, dtype=np.float32)
    senir.write(path, nir.NIRGraph.from_list(nir.Linear(w)))
    before = path.read_bytes()

    def full_disk(filename, graph, compression="gzip"):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(nir, "write", full_disk)
    with pytest.raises(OSError):
        senir.write(path, nir.NIRGraph.from_list(nir.Linear(2 * w)))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["g.nir"]


_WRITER = textwrap.dedent("""
    import os, sys
    import numpy as np, nir, torch
    from snntorch_egru import nir as senir
    from snntorch_egru.training._loop import _save_checkpoint, _write_metrics
    folder, i = sys.argv[1], int(sys.argv[2])
    print("ready", flush=True)
    while True:
        i += 1
        _save_checkpoint(os.path.join(folder, "checkpoint"), {"version": i, "w": torch.full((200_000,), float(i))})
        _write_metrics(os.path.join(folder, "metrics"), {"version": i, "pad": ["x" * 100] * 20_000})
        senir.write(os.path.join(folder, "nir"),
                    nir.NIRGraph.from_list(nir.Linear(np.full((300, 300), i, np.float32))))
""")
KINDS = ("checkpoint", "metrics", "nir")


def _read_version(kind: str, path: str) -> int:
    if kind == "checkpoint":
        d = torch.load(path, weights_only=True)
        assert torch.equal(d["w"], torch.full((200_000,), float(d["version"])))
        return d["version"]
    if kind == "metrics":
        with open(path) as f:
            d = json.load(f)
        assert len(d["pad"]) == 20_000
        return d["version"]
    w = senir.read(path).nodes["linear"].weight
    assert w.shape == (300, 300) and np.all(w == w[0, 0])
    return int(w[0, 0])


def test_sigkill_during_writes_leaves_a_complete_file(tmp_path):
    """SIGKILL a process that rewrites a checkpoint, a metrics.json and a NIR file in a loop, at random
    moments: each file is always a complete version (never truncated), versions are ordered as written,
    and the temporaries a kill leaves behind are cleaned up by :func:`remove_stale_temporaries`."""
    rng = np.random.default_rng(1)
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    kills = 0
    for run in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(tmp_path), str(1000 * run)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout.readline().strip() == b"ready", proc.stderr.read().decode()
        time.sleep(float(rng.uniform(0.05, 1.0)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += proc.returncode == -signal.SIGKILL
        present = [k for k in KINDS if (tmp_path / k).exists()]
        versions = [_read_version(k, str(tmp_path / k)) for k in present]
        # written in the order checkpoint, metrics, nir (versions increase across runs)
        assert versions == sorted(versions, reverse=True)
    assert kills == 4
    _io.remove_stale_temporaries(str(tmp_path), KINDS)
    assert sorted(os.listdir(tmp_path)) == sorted(k for k in KINDS if (tmp_path / k).exists())
