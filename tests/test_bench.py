"""`snntorch-egru bench`: a tiny run writes well-formed CSV and Markdown (no timing assertions)."""

from __future__ import annotations

import csv

import pytest
import torch

import snntorch_egru as se
from snntorch_egru import bench, cli


def test_tiny_bench_writes_csv_and_markdown(tmp_path, capsys):
    argv = [
        "--hidden",
        "8",
        "--batch",
        "1",
        "2",
        "--activity",
        "0.25",
        "--mode",
        "fwd",
        "fwdbwd",
        "--input-size",
        "4",
        "--steps",
        "30",
        "--repeats",
        "1",
        "--out",
        str(tmp_path),
    ]
    assert cli.main(["bench", *argv]) == 0
    csvs, mds = list(tmp_path.glob("bench-*-cpu.csv")), list(tmp_path.glob("bench-*-cpu.md"))
    assert len(csvs) == 1 and len(mds) == 1 and csvs[0].stem == mds[0].stem
    with open(csvs[0], newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4
    assert {(r["mode"], r["batch"]) for r in rows} == {("fwd", "1"), ("fwd", "2"), ("fwdbwd", "1"), ("fwdbwd", "2")}
    for r in rows:
        assert set(bench.COLUMNS) <= set(r)
        assert r["torch"] == torch.__version__ and r["command"].startswith("snntorch-egru bench --hidden 8")
        assert r["cpu"] and r["commit"] and r["date"]
        for key in ("gru_ms", "egru_ms", "dense_egru_ms"):
            assert float(r[key]) > 0
        # speed-ups are the ratios of the recorded times (to rounding)
        assert float(r["speedup_vs_gru"]) == pytest.approx(float(r["gru_ms"]) / float(r["egru_ms"]), rel=0.02)
        # calibrated thresholds hit the requested activity on fresh input (loosely: 30 steps, 8 units)
        assert 0.1 < float(r["activity"]) < 0.45
        assert float(r["activity"]) <= float(r["union_activity"]) <= 1.0
        assert float(r["activity"]) <= float(r["backward_density"]) <= 1.0
    md = mds[0].read_text()
    table = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| hidden")]
    assert len(table) == 4 and all(line.count("|") == len(bench.COLUMNS) + 1 for line in table)
    assert "**cpu**" in md and "**commit**" in md and "**command**" in md
    assert "hidden" in capsys.readouterr().out  # the table is printed too


def test_calibrate_thresholds_reaches_target_activity():
    torch.manual_seed(0)
    rnn = se.EGRU(6, 64, threshold_clamp=False)
    x = torch.randn(80, 4, 6)
    for target in (0.05, 0.3):
        bench.calibrate_thresholds(rnn, x, target)
        achieved = rnn(x, return_internals=True)[2].o.mean().item()
        assert abs(achieved - target) < 0.35 * target + 0.01


def test_bad_arguments(capsys, tmp_path):
    with pytest.raises(ValueError, match="activity must lie strictly between 0 and 1, got 1.5"):
        bench.calibrate_thresholds(se.EGRU(2, 4), torch.randn(3, 1, 2), 1.5)
    # the command line: one line on stderr, exit status 2, no traceback (issue 14)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    cases = [
        (["--activity", "0.0"], "--activity values must lie strictly between 0 and 1, got 0.0"),
        (["--repeats", "0"], "--repeats must be a positive integer (>= 1), got 0"),
        (["--hidden", "-4"], "--hidden values must be positive integers, got [-4]"),
        (["--steps", "0"], "--steps must be a positive integer (>= 1), got 0"),
        (["--threads", "0"], "--threads must be a positive integer, got 0"),
        (["--backend", "nope"], "--backend must be one of"),
        (["--backend", "cupy"], "--backend cupy needs --device cuda"),
        (["--out", str(a_file)], "is a file; expected a folder"),
        (["--steps", "x"], "argument --steps: invalid int value: 'x'"),
    ]
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda"], "--device cuda was given but CUDA is not available"))
    for argv, message in cases:
        assert bench.main(argv + (["--no-write"] if "--out" not in argv else [])) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)
    with pytest.raises(ValueError, match="--repeats must be a positive integer"):
        bench.main(["--repeats", "0", "--no-write", "--debug"])


def test_tf32_setting_is_applied_alike_recorded_and_restored(capsys, monkeypatch):
    seen = []
    real_run_cell = bench.run_cell

    def spy(cell, **kw):
        seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
        return real_run_cell(cell, **kw)

    monkeypatch.setattr(bench, "run_cell", spy)
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    argv = [
        "--hidden",
        "8",
        "--batch",
        "1",
        "--activity",
        "0.25",
        "--mode",
        "fwd",
        "--input-size",
        "4",
        "--steps",
        "10",
        "--repeats",
        "1",
        "--no-write",
    ]
    for flag, want in (("on", True), ("off", False)):
        seen.clear()
        assert bench.main(argv + ["--tf32", flag]) == 0
        assert seen == [(want, want)]  # both models' GEMMs under the same setting
        out = capsys.readouterr().out
        assert (
            f"**tf32**: {flag} (torch.backends.cuda.matmul.allow_tf32={want}, "
            f"torch.backends.cudnn.allow_tf32={want})" in out
        )
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before
    assert bench.main(argv + ["--tf32", "maybe"]) == 2
    assert "--tf32" in capsys.readouterr().err
