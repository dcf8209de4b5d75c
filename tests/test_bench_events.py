"""`snntorch-egru bench --events` and its roofline: the cost model against hand-computed values, the rows'
arithmetic on stubbed timings, a tiny real run writing md/csv/png, and the one-line errors (no timing asserts)."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import pytest

from snntorch_egru import _bench_events, _roofline, cli
from snntorch_egru._bench_events import EventsPlan, EventsResult

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_script_{name}", ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# -- the roofline model ---------------------------------------------------------------------------


def test_roofline_step_mode_equals_hand_computed_times():
    # 10 GB/s up to 1 MiB, 5 GB/s above; 100 GFLOP/s. H = 1024, I = 64, B = 1, 10 % activity.
    seen = []

    def bw(nbytes):
        seen.append(nbytes)
        return 1e10 if nbytes <= 1_048_576 else 5e9

    r = _roofline.roofline(1024, 64, 1, 0.1, "step", 1e11, bandwidth_of=bw)
    t_in = 786_432 / 1e10  # W_ih: 786 432 bytes (memory-bound: 393 216 FLOPs take 3.9 us at 100 GFLOP/s)
    t_gate = 40_960 / 1e10  # 1024 units x 40 bytes
    t_rec_gru = 12_582_912 / 5e9  # all of W_hh, above 1 MiB: 2.517 ms
    t_rec_egru = 1_258_291.2 / 5e9  # the rows of the 10 % that fired (B = 1: the union is 10 %)
    assert r.gru == pytest.approx(t_in + t_rec_gru + t_gate, rel=1e-12)
    assert r.egru == pytest.approx(t_in + t_rec_egru + t_gate, rel=1e-12)
    assert r.gru == pytest.approx(2.5993216e-3, rel=1e-12) and r.egru == pytest.approx(3.3439744e-4, rel=1e-12)
    assert r.ratio == pytest.approx(2.5993216e-3 / 3.3439744e-4, rel=1e-12)
    assert seen == pytest.approx(
        [786_432, 40_960, 12_582_912, 1_258_291.2], rel=1e-12
    )  # the input, the gates, W_hh, the fired rows


def test_roofline_sequence_mode_is_compute_bound_and_uses_the_batch_union():
    # 10 GB/s everywhere, 1 GFLOP/s: H = I = 1024, B = 16, T = 100, 10 % activity
    r = _roofline.roofline(1024, 1024, 16, 0.1, "sequence", 1e9, 100, bandwidth_of=lambda n: 1e10)
    # input GEMM hoisted over T: 10 066 329 600 FLOPs (10.07 s) against 38 797 312 bytes (3.9 ms), per step / 100
    t_in = 10.0663296 / 100
    t_rec_gru = 0.100663296  # 100 663 296 FLOPs per step (the 12.6 MB of W_hh read in 1.26 ms)
    t_gate = 655_360 / 1e10  # 16 samples x 1024 units x 40 bytes
    # EGRU: 10 % of the FLOPs; the union of 16 samples (81.5 % of the rows, 1.03 ms to read) stays below them
    t_rec_egru = 0.0100663296
    assert r.gru == pytest.approx(t_in + t_rec_gru + t_gate, rel=1e-12)
    assert r.egru == pytest.approx(t_in + t_rec_egru + t_gate, rel=1e-12)
    assert r.ratio == pytest.approx(0.201392128 / 0.1107951616, rel=1e-12)
    # memory-bound instead (fast GEMMs): the EGRU reads the batch union 1 - 0.9**16 = 0.8146979811148... of W_hh
    r2 = _roofline.roofline(1024, 1024, 16, 0.1, "sequence", 1e15, 100, bandwidth_of=lambda n: 1e10)
    union_read = 0.81469798111479 * 12_582_912 / 1e10
    t_in2 = 38_797_312 / 1e10 / 100
    assert r2.egru == pytest.approx(t_in2 + union_read + t_gate, rel=1e-9)
    assert r2.gru == pytest.approx(t_in2 + 12_582_912 / 1e10 + t_gate, rel=1e-12)


def test_roofline_without_events_leaves_the_input_and_the_gates():
    r = _roofline.roofline(256, 64, 1, 0.0, "step", 1e11, bandwidth_of=lambda n: 2e10)
    assert r.egru == pytest.approx(196_608 / 2e10 + 10_240 / 2e10, rel=1e-12)  # no recurrent read at all
    assert r.gru == pytest.approx(196_608 / 2e10 + 786_432 / 2e10 + 10_240 / 2e10, rel=1e-12)


@pytest.mark.parametrize(
    "args, message",
    [
        ((1024, 64, 1, 1.5, "step", 1e9), "activity must be in [0, 1], got 1.5"),
        ((1024, 64, 1, 0.1, "batch", 1e9), "mode must be 'step' or 'sequence', got 'batch'"),
        ((0, 64, 1, 0.1, "step", 1e9), "hidden must be a positive int (> 0), got 0"),
        ((1024, 64, 2.0, 0.1, "step", 1e9), "batch must be a positive int (> 0), got 2.0"),
        ((1024, 64, 1, 0.1, "step", -1.0), "rate must be a positive GEMM rate in FLOP/s, got -1.0"),
    ],
)
def test_roofline_rejects_bad_arguments(args, message):
    with pytest.raises(ValueError) as err:
        _roofline.roofline(*args, bandwidth_of=lambda n: 1e10)
    assert str(err.value) == message


def test_roofline_script_prints_the_table_of_the_package(monkeypatch, capsys):
    monkeypatch.setattr(_roofline, "gemm_rate", lambda n=1024: 1e11)
    monkeypatch.setattr(_roofline, "bandwidth", lambda n: 1e10)
    script = _script("roofline")
    assert script.roofline is _roofline.roofline
    argv = ["--hidden", "1024", "--input", "64", "--batch", "1", "--activity", "0.1", "--mode", "step"]
    assert script.main(argv) == 0
    out = capsys.readouterr().out
    # GRU: 786 432 + 12 582 912 + 40 960 bytes at 10 GB/s; EGRU: 786 432 + 1 258 291.2 + 40 960 bytes
    assert "| step | 1024 | 64 | 1 | 0.1 | 1341.0 | 208.6 | 6.43x |" in out
    assert script.main(["--hidden", "0"]) == 2
    assert capsys.readouterr().err == "roofline.py: error: --hidden must be a positive integer (>= 1), got 0\n"


# -- the rows, on stubbed timings ------------------------------------------------------------------


def _stub_timings(monkeypatch, calls):
    def fake_step(hidden, inp, activity, repeats, steps=200):
        calls.append(("step", hidden, inp, activity, repeats, steps))
        return {"cell": 100e-6, "stream": 50e-6, "gru": 300e-6, "activity": activity}

    def fake_sequence(hidden, inp, batch, activity, repeats, steps=200, train=False):
        calls.append(("sequence", hidden, inp, batch, activity, repeats, steps, train))
        r = {"egru": 0.01, "gru": 0.04, "activity": activity}
        if train:
            r["backward_density"] = 0.25
        return r

    monkeypatch.setattr(_bench_events, "bench_step", fake_step)
    monkeypatch.setattr(_bench_events, "bench_sequence", fake_sequence)
    monkeypatch.setattr(_bench_events, "gemm_rate", lambda: 1e11)
    monkeypatch.setattr(_roofline, "bandwidth", lambda n: 1e10)


def test_default_plan_runs_the_issues_configurations(monkeypatch):
    calls = []
    _stub_timings(monkeypatch, calls)
    plan = _bench_events.plan_of(_bench_events.parser().parse_args(["--events"]))
    assert plan == EventsPlan()
    res = _bench_events.run(plan, progress=False)
    sweep = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
    assert calls == [
        ("step", 256, 64, 0.1, 7, 200),
        ("step", 1024, 64, 0.1, 7, 200),
        ("sequence", 1024, 64, 1, 0.1, 7, 200, False),
        ("sequence", 1024, 1024, 1, 0.1, 7, 200, False),
        ("sequence", 1024, 1024, 16, 0.1, 3, 100, True),
    ] + [("step", 1024, 64, s, 7, 100) for s in sweep]
    shapes = [(r["kind"], r["H"], r["I"], r["B"]) for r in res.rows]
    assert shapes == [
        ("cell per step (no_grad)", 256, 64, 1),
        ("Streamer per step", 256, 64, 1),
        ("cell per step (no_grad)", 1024, 64, 1),
        ("Streamer per step", 1024, 64, 1),
        ("sequence forward T=200", 1024, 64, 1),
        ("sequence forward T=200", 1024, 1024, 1),
        ("training step T=100", 1024, 1024, 16),
    ]
    # times per step: per-step rows as measured, sequences divided by their T
    assert [(r["egru_us"], r["torch_us"], r["ratio"]) for r in res.rows] == [
        (100.0, 300.0, 3.0),
        (50.0, 300.0, 6.0),
        (100.0, 300.0, 3.0),
        (50.0, 300.0, 6.0),
        (50.0, 200.0, 4.0),
        (50.0, 200.0, 4.0),
        (100.0, 400.0, 4.0),
    ]
    assert [r["backward_density"] for r in res.rows] == [""] * 6 + [0.25]
    for r, (mode, T) in zip(res.rows, [("step", 200)] * 4 + [("sequence", 200)] * 2 + [("sequence", 100)]):
        ideal = _roofline.roofline(r["H"], r["I"], r["B"], 0.1, mode, 1e11, T, bandwidth_of=lambda n: 1e10).ratio
        assert r["ideal"] == round(ideal, 2) and r["of_ideal"] == round(r["ratio"] / ideal, 2)
    assert [s for s, _, _ in res.sweep] == list(sweep) and all(r == pytest.approx(3.0) for _, r, _ in res.sweep)
    assert len(res.ideal_curve) == 40
    assert res.ideal_curve[0][0] == pytest.approx(0.01) and res.ideal_curve[-1][0] == pytest.approx(0.5)
    assert res.ideal_curve[0][1] == pytest.approx(res.sweep[0][2]) and res.ideal_curve[-1][1] == pytest.approx(
        res.sweep[-1][2]
    )


def test_quick_and_overrides_shape_the_plan():
    parse = _bench_events.parser().parse_args
    quick = _bench_events.plan_of(parse(["--events", "--quick", "--no-train"]))
    assert (quick.repeats, quick.train_repeats, quick.sweep, quick.train) == (3, 3, (0.02, 0.1, 0.3), False)
    plan = _bench_events.plan_of(parse(["--quick", "--repeats", "1", "--sweep-activity", "0.2", "--hidden", "32"]))
    assert (plan.repeats, plan.train_repeats, plan.sweep, plan.hidden) == (1, 1, (0.2,), (32,))


# -- a tiny real run ----------------------------------------------------------------------------------

TINY = [
    "--hidden", "32", "--input-size", "8", "--steps", "12", "--train-batch", "2", "--train-steps", "10",
    "--sweep-activity", "0.1", "0.3", "--sweep-steps", "12", "--repeats", "1",
]  # fmt: skip


def test_events_command_writes_markdown_csv_and_plot(tmp_path, capsys):
    import torch

    assert cli.main(["bench", "--events", *TINY, "--out", str(tmp_path)]) == 0
    stems = {p.stem for p in tmp_path.iterdir()}
    assert len(stems) == 1 and stems.pop().startswith("cpu-events-20")
    (md_path,) = tmp_path.glob("cpu-events-*.md")
    with open(md_path.with_suffix(".csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(_bench_events.COLUMNS)
    assert [(r["kind"], r["H"], r["I"], r["B"]) for r in rows] == [
        ("cell per step (no_grad)", "32", "8", "1"),
        ("Streamer per step", "32", "8", "1"),
        ("sequence forward T=12", "32", "8", "1"),
        ("sequence forward T=12", "32", "32", "1"),
        ("training step T=10", "32", "32", "2"),
    ]
    for r in rows:
        egru, torch_us, ratio = float(r["egru_us"]), float(r["torch_us"]), float(r["ratio"])
        assert egru > 0 and torch_us > 0 and 0 <= float(r["activity"]) <= 1
        # the speed-up is the ratio of the recorded times, to their rounding (0.1 us each, 0.01 for the ratio)
        lo, hi = (torch_us - 0.05) / (egru + 0.05), (torch_us + 0.05) / max(egru - 0.05, 1e-9)
        assert lo - 0.006 <= ratio <= hi + 0.006
        assert float(r["of_ideal"]) == pytest.approx(ratio / float(r["ideal"]), rel=0.02, abs=0.006)
    assert [r["backward_density"] for r in rows[:-1]] == [""] * 4
    train = rows[-1]
    assert 0.0 <= float(train["activity"]) <= float(train["backward_density"]) <= 1.0
    md = md_path.read_text()
    assert md.startswith("# EGRU vs torch.nn on the CPU (20")
    for key in ("date", "cpu", "torch", "threads", "commit", "roofline"):
        assert f"- **{key}**: " in md
    assert f"- **torch**: {torch.__version__}\n" in md
    assert "- **command**: `snntorch-egru bench --events --hidden 32 " in md
    table = [line for line in md.splitlines() if line.startswith("| ") and "x |" in line]
    assert len(table) == 5 + 2 and all(line.count("|") == 12 for line in table[:5])
    assert table[4].endswith(f"| {float(train['backward_density'])} |")
    assert "| backward density |" in md and "against activity" in md
    png = md_path.with_suffix(".png")
    if importlib.util.find_spec("matplotlib") is None:
        assert not png.exists()
    else:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = capsys.readouterr()
    assert "training step T=10" in out.out and "sweep act=" in out.out and "wrote " in out.err


def test_cpu_events_script_maps_its_command_lines(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(_bench_events, "main", lambda argv, command=None: seen.append((argv, command)) or 0)
    script = _script("cpu_events")
    prefix = tmp_path / "cpu-events-X"
    assert script.main(["--out", str(prefix), "--quick"]) == 0
    assert script.main(["--no-train"]) == 0
    assert seen == [
        (
            ["--events", "--quick", "--out", str(tmp_path), "--name", "cpu-events-X"],
            f"python benchmarks/cpu_events.py --out {prefix} --quick",
        ),
        (["--events", "--no-train", "--no-write"], "python benchmarks/cpu_events.py --no-train"),
    ]


def test_a_taken_name_gets_the_next_letter(tmp_path):
    assert _bench_events.free_stem(tmp_path, "cpu-events-2026-01-02") == "cpu-events-2026-01-02"
    (tmp_path / "cpu-events-2026-01-02.md").write_text("")
    (tmp_path / "cpu-events-2026-01-02-b.png").write_bytes(b"")
    assert _bench_events.free_stem(tmp_path, "cpu-events-2026-01-02") == "cpu-events-2026-01-02-c"


def test_without_matplotlib_the_plot_is_skipped_with_a_message(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    res = EventsResult(plan=EventsPlan(hidden=(32,)), rate=1e11, sweep=[(0.1, 2.0, 3.0), (0.2, 1.5, 2.0)])
    assert _bench_events.plot(res, tmp_path / "x.png") is False
    assert not (tmp_path / "x.png").exists()
    assert "matplotlib is not installed: no plot written" in capsys.readouterr().err


# -- bad arguments ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["--hidden", "32", "0"], "--hidden values must be positive integers, got [0]"),
        (["--input-size", "0"], "--input-size must be a positive integer (>= 1), got 0"),
        (["--train-batch", "-2"], "--train-batch must be a positive integer (>= 1), got -2"),
        (["--repeats", "0"], "--repeats must be a positive integer (>= 1), got 0"),
        (["--threads", "0"], "--threads must be a positive integer (>= 1), got 0"),
        (["--activity", "1.0"], "--activity must lie strictly between 0 and 1, got 1.0"),
        (["--sweep-activity", "0.1", "0"], "--sweep-activity values must lie strictly between 0 and 1, got [0.0]"),
        (["--name", "a/b"], "--name must be a file name without a folder (the folder is --out), got 'a/b'"),
        (["--hidden", "x"], "argument --hidden: invalid int value: 'x' (see --help)"),
        (["--mode", "fwd"], "unrecognized arguments: --mode fwd (see --help)"),
    ],
)
def test_bad_arguments_give_one_line_errors(args, message, capsys):
    assert cli.main(["bench", "--events", *args]) == 2
    assert capsys.readouterr().err == f"snntorch-egru bench --events: error: {message}\n"


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("")
    assert cli.main(["bench", "--events", "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"snntorch-egru bench --events: error: --out {str(target)!r} is a file; expected a folder (or a path to create)\n"
    )


def test_bench_help_names_the_events_report(capsys):
    assert cli.main(["bench", "--help"]) == 0
    assert "--events" in capsys.readouterr().out
    assert cli.main(["bench", "--events", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: snntorch-egru bench --events") and "--sweep-activity" in out
