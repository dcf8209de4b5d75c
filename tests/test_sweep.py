"""``snntorch-egru train --activity-targets``: one EGRU run per activity target, the GRU once, the sweep's
metrics.json, accuracy_vs_activity.png and .csv; finished runs reused, interrupted ones continued; refusals."""

from __future__ import annotations

import csv
import importlib.util
import json
import statistics
import sys

import pytest
import torch

from snntorch_egru.training import _loop, main
from snntorch_egru.training._cli import UsageError, _validate
from snntorch_egru.training._tasks import TrainConfig

TINY = [
    "--hidden-size",
    "8",
    "--batch-size",
    "16",
    "--limit-train",
    "32",
    "--limit-test",
    "24",
    "--eval-batch-size",
    "24",
    "--no-progress",
    "--no-nir",
    "--seed",
    "4",
    "--epochs",
    "1",
]
HAS_MPL = importlib.util.find_spec("matplotlib") is not None


def _read(path):
    return json.loads(path.read_text())


def _count_runs(monkeypatch):
    """Record the folder of every run the sweep trains (reused runs are not trained)."""
    trained = []
    real = _loop._run_one

    def counting(cfg, *args, **kwargs):
        trained.append(cfg.out)
        return real(cfg, *args, **kwargs)

    monkeypatch.setattr(_loop, "_run_one", counting)
    return trained


def test_sweep_with_seeds_and_gru_writes_the_runs_and_their_figures(tmp_path, capsys, monkeypatch):
    out = tmp_path / "sweep"
    trained = _count_runs(monkeypatch)
    assert (
        main(["--out", str(out), *TINY, "--activity-targets", "0.3,0.02", "--baseline", "gru", "--seeds", "0,1"]) == 0
    )
    top = _read(out / "metrics.json")
    assert top["task"] == "digits" and top["targets"] == [0.3, 0.02] and top["seeds"] == [0, 1]
    # one EGRU run per target and seed, each with its own target; the GRU trained once per seed, in gru/
    assert sorted(trained) == sorted(
        str(out / d / f"seed-{s}") for d in ("target-0.3", "target-0.02", "gru") for s in (0, 1)
    )
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("gru")) == ["gru"]
    for row, t in zip(top["per_target"], (0.3, 0.02)):
        runs = [_read(out / f"target-{t}" / f"seed-{s}" / "metrics.json") for s in (0, 1)]
        assert row["activity_target"] == t and row["run_dir"] == str(out / f"target-{t}")
        for s, m in zip((0, 1), runs):
            assert (m["model"], m["config"]["activity_target"], m["config"]["seed"]) == ("egru", t, s)
            assert m["config"]["activity_targets"] is None and m["epochs_completed"] == 1
        # the sweep's figures are the runs' own, with mean and sample sd over the seeds
        for key in ("test_accuracy", "activity_sparsity", "effective_mac_fraction", "valid_accuracy"):
            values = [m[key] for m in runs]
            assert row[key]["per_seed"] == values, key
            assert row[key]["mean"] == pytest.approx(statistics.fmean(values))
            assert row[key]["sd"] == pytest.approx(statistics.stdev(values))
        assert runs[0]["activity_sparsity"] == pytest.approx(1 - runs[0]["activity"])
    gru = [_read(out / "gru" / f"seed-{s}" / "metrics.json") for s in (0, 1)]
    assert [g["model"] for g in gru] == ["gru", "gru"]
    assert top["gru"]["test_accuracy"]["per_seed"] == [g["test_accuracy"] for g in gru]
    assert _read(out / "gru" / "metrics.json")["gru"]["test_accuracy"]["per_seed"] == [g["test_accuracy"] for g in gru]
    # the CSV holds the plotted figures (percent), the GRU last
    rows = list(csv.DictReader((out / "accuracy_vs_activity.csv").open()))
    assert [(r["model"], r["activity_target"]) for r in rows] == [("egru", "0.3"), ("egru", "0.02"), ("gru", "")]
    for r, fig in zip(rows, top["per_target"] + [top["gru"]]):
        assert float(r["test_accuracy_pct"]) == pytest.approx(100 * fig["test_accuracy"]["mean"])
        assert float(r["test_accuracy_sd_pct"]) == pytest.approx(100 * fig["test_accuracy"]["sd"])
        assert float(r["activity_sparsity_pct"]) == pytest.approx(100 * fig["activity_sparsity"]["mean"])
        assert r["seeds"] == "0 1"
    if HAS_MPL:
        assert (out / "accuracy_vs_activity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert top["files"]["plot"] == str(out / "accuracy_vs_activity.png")
    last = capsys.readouterr().out.strip().splitlines()[-1]
    acc = top["per_target"][0]["test_accuracy"]
    assert last.startswith("digits, activity targets 0.3,0.02 | EGRU test accuracy target 0.3: ")
    assert f"{100 * acc['mean']:.2f} ± {100 * acc['sd']:.2f}%" in last and "| GRU test accuracy " in last
    # the same folder without --seeds: refused, nothing trained or replaced
    assert main(["--out", str(out), *TINY, "--activity-targets", "0.3"]) == 2
    assert (
        f"{str(out / 'target-0.3' / 'metrics.json')!r} holds a --seeds run (seed-<s>/ folders)"
        in capsys.readouterr().err
    )
    assert len(trained) == 6 and _read(out / "metrics.json") == top


def test_finished_runs_are_reused_and_runs_made_alone_assembled(tmp_path, capsys, monkeypatch):
    out = tmp_path / "sweep"
    # a run made on its own, in the folder the sweep gives that target
    assert main(["--out", str(out / "target-0.1"), *TINY, "--activity-target", "0.1"]) == 0
    alone = (out / "target-0.1" / "metrics.json").stat().st_mtime_ns
    trained = _count_runs(monkeypatch)
    assert main(["--out", str(out), *TINY, "--activity-targets", "0.1,0.4", "--no-plot"]) == 0
    assert trained == [str(out / "target-0.4")]
    assert "target-0.1: reusing the finished run" in capsys.readouterr().out
    first = {t: (out / f"target-{t}" / "metrics.json").stat().st_mtime_ns for t in ("0.1", "0.4")}
    assert first["0.1"] == alone
    assert not (out / "accuracy_vs_activity.png").exists()
    # the same command with one target more trains that one only; without matplotlib the plot is skipped
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["--out", str(out), *TINY, "--activity-targets", "0.1,0.4,0.2"]) == 0
    assert trained == [str(out / "target-0.4"), str(out / "target-0.2")]
    assert {t: (out / f"target-{t}" / "metrics.json").stat().st_mtime_ns for t in ("0.1", "0.4")} == first
    assert "accuracy_vs_activity.png not written: matplotlib is not installed" in capsys.readouterr().out
    assert not (out / "accuracy_vs_activity.png").exists()
    top = _read(out / "metrics.json")
    assert top["targets"] == [0.1, 0.4, 0.2] and top["absent"] == {"plot": "matplotlib is not installed"}
    for row in top["per_target"]:
        m = _read(out / f"target-{row['activity_target']:g}" / "metrics.json")
        assert m["config"]["activity_target"] == row["activity_target"]
        assert row["test_accuracy"] == {"mean": m["test_accuracy"], "sd": 0.0, "per_seed": [m["test_accuracy"]]}
        assert row["activity_sparsity"]["mean"] == m["activity_sparsity"]
    assert "gru" not in top and not (out / "gru").exists()
    # a finished run made with other settings is not mixed into the sweep
    assert main(["--out", str(out), *TINY, "--activity-targets", "0.1", "--hidden-size", "4"]) == 2
    err = capsys.readouterr().err
    assert "holds a finished run made with other settings: --hidden-size 8 (this sweep: 4)" in err
    # and a folder of one run is not turned into a --seeds folder
    assert main(["--out", str(out), *TINY, "--activity-targets", "0.1", "--seeds", "0"]) == 2
    assert (
        f"{str(out / 'target-0.1' / 'metrics.json')!r} holds a single run and this sweep has --seeds"
        in capsys.readouterr().err
    )
    assert (out / "target-0.1" / "metrics.json").stat().st_mtime_ns == alone
    assert len(trained) == 2


def test_interrupted_target_run_is_continued_and_equals_the_run_alone(tmp_path, capsys):
    out, alone = tmp_path / "sweep", tmp_path / "alone"
    two = [*TINY, "--epochs", "2", "--no-plot"]
    assert main(["--out", str(out), *two, "--activity-targets", "0.3", "--stop-after", "1"]) == 0
    assert _read(out / "target-0.3" / "metrics.json")["epochs_completed"] == 1
    assert main(["--out", str(out), *two, "--activity-targets", "0.3"]) == 0
    assert "target-0.3: continuing from epoch 1 of 2" in capsys.readouterr().out
    m = _read(out / "target-0.3" / "metrics.json")
    assert m["epochs_completed"] == 2 and [r["at_epoch"] for r in m["resumes"]] == [1]
    assert main(["--out", str(alone), *two, "--activity-target", "0.3"]) == 0
    ref = _read(alone / "metrics.json")
    assert (m["test_accuracy"], m["activity"]) == (ref["test_accuracy"], ref["activity"])
    a = torch.load(out / "target-0.3" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(alone / "checkpoint.pt", weights_only=True)["model"]
    for k in b:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert _read(out / "metrics.json")["per_target"][0]["test_accuracy"]["mean"] == ref["test_accuracy"]


def test_a_target_run_stopped_by_ctrl_c_is_continued_not_restarted(tmp_path, capsys, monkeypatch):
    """Ctrl-C leaves the target run's progress metrics.json ("finished": false); the sweep's next command
    continues that run from its checkpoint without calling it unreadable or training it again."""
    out = tmp_path / "sweep"
    two = [*TINY, "--epochs", "2", "--no-plot"]
    real = _loop._Run.train_epoch

    def stop_in_second(self, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return real(self, epoch)

    monkeypatch.setattr(_loop._Run, "train_epoch", stop_in_second)
    assert main(["--out", str(out), *two, "--activity-targets", "0.3"]) == 130
    assert _read(out / "target-0.3" / "metrics.json")["finished"] is False
    monkeypatch.setattr(_loop._Run, "train_epoch", real)
    capsys.readouterr()
    assert main(["--out", str(out), *two, "--activity-targets", "0.3"]) == 0
    printed = capsys.readouterr().out
    assert "target-0.3: continuing from epoch 1 of 2" in printed and "training that run again" not in printed
    m = _read(out / "target-0.3" / "metrics.json")
    assert m["finished"] is True and m["epochs_completed"] == 2 and [r["at_epoch"] for r in m["resumes"]] == [1]


def _one_line_error(capsys, argv, message):
    assert main(argv) == 2, argv
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in captured.err, err
    assert message in err[0], (message, err[0])


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--activity-targets", "0.1,x"],
            "argument --activity-targets: expected distinct comma-separated numbers in "
            "[0, 1] such as 0.02,0.05,0.1,0.2, got '0.1,x'",
        ),
        (["--activity-targets", "0.1,0.1"], "got '0.1,0.1'"),
        (["--activity-targets", "0.1,1.5"], "expected distinct comma-separated numbers in [0, 1]"),
        (["--activity-targets", "nan"], "expected distinct comma-separated numbers in [0, 1]"),
        (["--activity-targets", ""], "expected distinct comma-separated numbers in [0, 1]"),
        (
            ["--activity-targets", "0.1", "--activity-reg", "0"],
            "--activity-targets needs an activity regulariser, but --activity-reg is 0.0 (task 'digits'); give "
            "--activity-reg > 0",
        ),
        (["--task", "smnist", "--activity-targets", "0.1"], "--activity-reg is 0.0 (task 'smnist')"),
        (
            ["--activity-targets", "0.1", "--model", "gru"],
            "--activity-targets sweeps the EGRU's activity regulariser target and needs --model egru, got --model gru",
        ),
        (
            ["--task", "ptb", "--activity-targets", "0.1"],
            "--activity-targets is for classification tasks; task 'ptb' is a language model",
        ),
        (
            ["--resume", "runs/x", "--activity-targets", "0.1"],
            "--resume continues one run folder; an --activity-targets sweep has one per target",
        ),
    ],
)
def test_sweep_refusals_are_one_line(capsys, tmp_path, argv, message):
    _one_line_error(capsys, ["--out", str(tmp_path / "o"), *argv], message)
    assert not (tmp_path / "o").exists()


def test_python_api_checks_the_targets():
    for targets in ([], [0.1, 0.1], [0.1, -0.1], "0.1", [True]):
        with pytest.raises(
            UsageError,
            match=r"--activity-targets must be a non-empty list of distinct numbers "
            r"in \[0, 1\], got ",
        ):
            _validate(TrainConfig(activity_reg=1.0, activity_targets=targets), 1)
    _validate(TrainConfig(activity_reg=1.0, activity_targets=[0, 1, 0.5]), 1)  # the ends are allowed


def test_a_gru_made_without_the_egru_only_options_is_reused(tmp_path, capsys, monkeypatch):
    """Zoneout, DropConnect, thresholds, init and the per-layer clip belong to the EGRU layer: a GRU trained
    without them is the sweep's GRU (and gives the same weights as one trained with them, checked here)."""
    out = tmp_path / "sweep"
    egru_only = [
        "--zoneout",
        "0.1",
        "--dropconnect",
        "0.2",
        "--thr-mean",
        "0.2",
        "--init",
        "torch",
        "--layer-grad-clip",
        "0.5",
    ]
    assert main(["--out", str(out / "gru"), *TINY, "--model", "gru"]) == 0
    assert main(["--out", str(tmp_path / "gru-with"), *TINY, "--model", "gru", *egru_only]) == 0
    a = torch.load(out / "gru" / "best.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "gru-with" / "best.pt", weights_only=False)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    trained = _count_runs(monkeypatch)
    assert (
        main(["--out", str(out), *TINY, "--activity-targets", "0.1", "--baseline", "gru", "--no-plot", *egru_only]) == 0
    )
    assert trained == [str(out / "target-0.1")]
    assert "gru: reusing the finished run" in capsys.readouterr().out
    # a setting the GRU does use (its learning rate) is still refused
    (out / "target-0.1" / "metrics.json").unlink()
    assert (
        main(
            [
                "--out",
                str(out / "other"),
                *TINY,
                "--activity-targets",
                "0.1",
                "--baseline",
                "gru",
                "--no-plot",
                "--lr",
                "0.5",
                *egru_only,
            ]
        )
        == 0
    )  # (a fresh sweep folder: trains both)
    (out / "other" / "gru").rename(out / "gru-lr")
    import shutil

    shutil.rmtree(out / "gru")
    (out / "gru-lr").rename(out / "gru")
    capsys.readouterr()
    assert (
        main(["--out", str(out), *TINY, "--activity-targets", "0.1", "--baseline", "gru", "--no-plot", *egru_only]) == 2
    )
    err = capsys.readouterr().err
    assert "gru" in err and "--lr 0.5 (this sweep: " in err


def test_a_sweep_stopped_early_says_so_in_every_figure(tmp_path, capsys):
    """--stop-after leaves runs before their last epoch: the CSV, metrics.json, the summary line and the plot
    say which entries are unfinished, and the same command without it finishes them and clears the flag."""
    out = tmp_path / "sweep"
    two = [*TINY, "--epochs", "2"]
    assert (
        main(["--out", str(out), *two, "--activity-targets", "0.3,0.05", "--baseline", "gru", "--stop-after", "1"]) == 0
    )
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "| UNFINISHED (target 0.3, target 0.05, GRU stopped early: give the same command again to continue)" in last
    top = _read(out / "metrics.json")
    assert top["finished"] is False
    assert [r["finished"] for r in top["per_target"]] == [False, False] and top["gru"]["finished"] is False
    assert [r["epochs_completed"] for r in top["per_target"]] == [[1], [1]]
    rows = list(csv.DictReader((out / "accuracy_vs_activity.csv").open()))
    assert [r["finished"] for r in rows] == ["false", "false", "false"]
    if HAS_MPL:
        assert (out / "accuracy_vs_activity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the same command without --stop-after continues every run to its last epoch
    assert main(["--out", str(out), *two, "--activity-targets", "0.3,0.05", "--baseline", "gru"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert "UNFINISHED" not in last
    top = _read(out / "metrics.json")
    assert top["finished"] is True and top["gru"]["epochs_completed"] == [2]
    assert [r["finished"] for r in csv.DictReader((out / "accuracy_vs_activity.csv").open())] == ["true"] * 3


def test_one_target_and_a_sweep_of_targets_are_not_both_taken(tmp_path, capsys):
    _one_line_error(
        capsys,
        ["--out", str(tmp_path / "o"), *TINY, "--activity-target", "0.2", "--activity-targets", "0.1,0.3"],
        "--activity-target 0.2 and --activity-targets 0.1,0.3 were both given",
    )
    assert not (tmp_path / "o").exists()


def test_a_run_without_matplotlib_says_its_plot_is_missing(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["--out", str(tmp_path / "run"), *TINY]) == 0
    assert "activity.png not written: matplotlib is not installed" in capsys.readouterr().out
    m = _read(tmp_path / "run" / "metrics.json")
    assert m["files"]["plot"] is None and m["absent"]["plot"] == "matplotlib is not installed"
    assert not (tmp_path / "run" / "activity.png").exists()
