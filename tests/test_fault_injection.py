"""Issue 14 acceptance: kill a CI-sized training run at random moments (SIGKILL, and SIGINT every fourth
time), resume it each time; every run folder is consistent right after every kill, and the final
parameters equal those of an uninterrupted run bit for bit.

The runs are forked from one worker process (``fault_worker.py``) that has imported everything, so 24
kills cost about a minute on 2 busy cores instead of paying torch's import each time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
KILLS = 24


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the worker forks its training runs")
def test_random_kills_and_resumes_equal_an_uninterrupted_run(tmp_path):
    report = tmp_path / "report.json"
    env = {
        **os.environ,
        "PYTHONPATH": os.path.dirname(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "fault_worker.py"), str(report), str(tmp_path), str(KILLS), "2026"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    r = json.loads(report.read_text())
    summary = [
        (
            e["chain"],
            e["signal"],
            round(e["delay_s"] or -1, 2),
            e["status"],
            e["epoch_before"],
            e["epoch_after"],
            e["metrics_after"],
        )
        for e in r["events"]
    ]
    print("t_full_s", r["t_full_s"], "t_first_checkpoint_s", r["t_first_checkpoint_s"], "events", summary)
    assert r["reference_status"] == 0 and r["forked_status"] == 0 and r["forked_equal"]
    events = r["events"]
    # the worker kills until KILLS runs have died of a signal (a run may finish before its kill)
    killed = [e for e in events if e["status"] in (-signal.SIGKILL, 130)]
    assert len(killed) >= KILLS >= 20, [e["status"] for e in events]
    assert all(e["status"] in (-signal.SIGKILL, 130, 0) for e in events), [e["status"] for e in events]
    assert any(e["status"] == 130 for e in events)  # Ctrl-C is a clean stop, status 130
    assert sum(e["resumed"] for e in events) >= KILLS // 2
    # kills landed before the first checkpoint, during training and in the final phase (all epochs done)
    assert any(e["epoch_after"] is None for e in killed)
    assert any(e["epoch_after"] is not None and 0 < e["epoch_after"] < 6 for e in killed)
    assert any(e["epoch_after"] == 6 and not e["metrics_after"] for e in killed)
    for e in events:
        assert e["problems"] == [], e
    # every chain ends with the uninterrupted run's parameters (bit for bit) and results
    assert len(r["chains"]) >= 2
    rm = r["reference_metrics"]
    drop = ("time_s",)
    for chain in r["chains"]:
        assert chain["status"] == 0 and chain["problems"] == [] and chain["leftover_temporaries"] == []
        assert chain["final"].keys() == r["reference"].keys()
        for k in r["reference"]:
            assert chain["final"][k] == r["reference"][k], k
        fm = chain["metrics"]
        assert fm["epochs_completed"] == rm["epochs_completed"] == 6
        assert fm["test_accuracy"] == rm["test_accuracy"] and fm["test_loss"] == rm["test_loss"]
        assert [{k: v for k, v in h.items() if k not in drop} for h in fm["history"]] == [
            {k: v for k, v in h.items() if k not in drop} for h in rm["history"]
        ]
        assert all(x["changed"] == {} for x in fm["resumes"])
