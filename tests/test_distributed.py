"""Multi-process training: 2 processes under torchrun (gloo, CPU) equal 1 process on the same global batch.

SGD with momentum keeps the comparison tight (Adam divides by sqrt(v) and magnifies float
round-off of tiny gradients); the activity regulariser is off because its square of a
per-rank mean is not the square of the global mean, and dropout is off because each rank
draws its own masks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

ARGS = [
    "--hidden-size",
    "6",
    "--batch-size",
    "8",
    "--limit-train",
    "32",
    "--limit-test",
    "30",
    "--eval-batch-size",
    "8",
    "--epochs",
    "2",
    "--no-progress",
    "--no-nir",
    "--no-plot",
    "--seed",
    "11",
    "--grad-clip",
    "0.5",
    "--activity-reg",
    "0",
    "--dropout",
    "0",
    "--optimizer",
    "sgd",
    "--beta1",
    "0.5",
    "--lr",
    "0.5",
]


def _env():
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env.pop("WORLD_SIZE", None)
    return env


def test_two_process_gloo_equals_single_process(tmp_path):
    single, double = tmp_path / "single", tmp_path / "double"
    cmd1 = [sys.executable, "-m", "snntorch_egru", "train", "--out", str(single), *ARGS]
    cmd2 = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "snntorch_egru",
        "train",
        "--out",
        str(double),
        *ARGS,
    ]
    p1 = subprocess.Popen(cmd1, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    p2 = subprocess.Popen(cmd2, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    out1, err1 = p1.communicate(timeout=280)
    out2, err2 = p2.communicate(timeout=280)
    assert p1.returncode == 0, err1
    assert p2.returncode == 0, err2
    # only rank 0 prints the summary and writes the files
    assert sum(line.startswith("digits: test accuracy") for line in out2.splitlines()) == 1
    a = torch.load(single / "checkpoint.pt", weights_only=False)
    b = torch.load(double / "checkpoint.pt", weights_only=False)
    assert a["epoch"] == b["epoch"] == 2
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        torch.testing.assert_close(b["model"][k], a["model"][k], rtol=1e-5, atol=1e-6)
    m1 = json.loads((single / "metrics.json").read_text())
    m2 = json.loads((double / "metrics.json").read_text())
    assert m2["world_size"] == 2 and m1["world_size"] == 1
    # metrics reduced over both ranks' halves of the test set equal the single-process figures
    assert m2["test_accuracy"] == pytest.approx(m1["test_accuracy"], abs=1e-9)
    assert m2["activity"] == pytest.approx(m1["activity"], rel=1e-4)
    assert m2["effective_macs"] == pytest.approx(m1["effective_macs"], rel=1e-4)
    assert m1["history"][0]["train_loss"] != m1["history"][1]["train_loss"]  # it did train
    assert m2["history"][-1]["train_loss"] == pytest.approx(m1["history"][-1]["train_loss"], rel=1e-4)
