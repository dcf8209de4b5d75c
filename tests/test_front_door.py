"""The first hour: what the diagnostics and helpers tell a new user is true on this machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import snntorch_egru as se
from snntorch_egru import backends, metrics
from snntorch_egru.cuda import cupy_available
from snntorch_egru.cuda.__main__ import verdict

ROOT = Path(__file__).resolve().parents[1]


# -- usable_backends: what can run here, not what is registered -------------------------------------


def test_usable_backends_match_this_machine():
    usable = backends.usable_backends()
    assert {"reference", "torch"} <= set(usable) <= set(backends.available_backends())
    assert ("cupy" in usable) == (torch.cuda.is_available() and cupy_available())
    assert backends.usable_backends("cpu") == ["reference", "torch"]
    if not torch.cuda.is_available():
        assert "cupy" in backends.available_backends() and "cupy" not in usable
        assert backends.usable_backends("cuda") == []


def test_usable_backends_asks_each_predicate():
    seen = []

    def gpu_only(call):
        seen.append(call.x.device.type)
        return call.x.is_cuda

    backends.register_backend("tmp_gpu_only", backends.get_backend("reference").run, available=gpu_only)
    backends.register_backend(
        "tmp_cpu", backends.get_backend("reference").run, available=lambda call: call.x.device.type == "cpu"
    )
    try:
        usable = backends.usable_backends("cpu")
        assert "tmp_cpu" in usable and "tmp_gpu_only" not in usable and seen == ["cpu"]
    finally:
        backends.unregister_backend("tmp_gpu_only")
        backends.unregister_backend("tmp_cpu")


def test_usable_backends_rejects_a_non_device():
    with pytest.raises(ValueError, match=r"device must be .* got 'gpu0'"):
        backends.usable_backends("gpu0")


# -- python -m snntorch_egru.cuda: the verdict and the fix first, fast without a GPU --------------------


@pytest.mark.parametrize(
    "cupy_ok,cuda_ok,cuda_version,usable,words",
    [
        (True, True, "12.4", True, "CuPy kernels usable"),
        (False, False, None, False, "No CUDA GPU and CuPy not installed"),
        (False, True, "12.4", False, "pip install snntorch-egru[cuda12]"),
        (False, True, "13.0", False, "pip install snntorch-egru[cuda13]"),
        (True, False, None, False, "torch.cuda.is_available() is False"),
    ],
)
def test_cuda_verdict(cupy_ok, cuda_ok, cuda_version, usable, words):
    ok, line = verdict(cupy_ok, cuda_ok, cuda_version)
    assert ok is usable and words in line and "\n" not in line
    if not cupy_ok:
        assert "pip install snntorch-egru[cuda1" in line


def test_cuda_diagnosis_says_the_verdict_first():
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", "snntorch_egru.cuda"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    elapsed = time.perf_counter() - t0
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    expected = verdict(cupy_available(), torch.cuda.is_available(), torch.version.cuda)[1]
    assert lines[0] == expected, res.stdout
    if not (cupy_available() and torch.cuda.is_available()):
        assert "pip install snntorch-egru[cuda1" in lines[0]
    assert not any("ptxas resource usage" in line for line in lines), "register tables only with --tables"
    assert elapsed < 60, f"python -m snntorch_egru.cuda took {elapsed:.0f} s (issue: under 10 s without a GPU)"


# -- tracker.summary(): a dict that prints as a table ---------------------------------------------------


def test_summary_is_a_dict_and_prints_a_table():
    torch.manual_seed(0)
    rnn = se.EGRU(4, 16, num_layers=2)
    with metrics.track(rnn) as tracker:
        out, _ = rnn(torch.randn(12, 3, 4))
    s = tracker.summary()
    plain = json.loads(json.dumps(s))
    assert plain == dict(s) and s["layers"][1]["hidden_size"] == 16
    lines = str(s).splitlines()
    assert repr(s) == str(s) and len(lines) == 2 + 2 + 1  # title, header, two layers, model
    assert lines[0] == "EGRU counters: 2 layer(s)"
    assert lines[1].split()[:2] == ["layer", "activity"]
    assert lines[2].startswith("EGRU[0] 4->16 (1 calls, 3 samples)")
    assert lines[4].startswith("model") and f"{s['activity']:.1%}" in lines[4]
    ratio = s["effective_macs"] / s["dense_macs"]
    assert f"({ratio:.2f}x)" in lines[4]
