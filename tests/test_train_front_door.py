"""``snntorch-egru train`` as a user meets it: the header line, no flag abbreviations, the --epochs note,
a readable run folder after every epoch, what --resume continues, help with the preset's values, the
loss/accuracy curves, and loading a run folder back into the trained model."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

import pytest
import torch

from snntorch_egru.training import _loop, _records, build_parser, load_run, main, parse_config, preset
from snntorch_egru.training._data import collate_time_first, load_digits_data
from snntorch_egru.training._tasks import TrainConfig

TINY = [
    "--hidden-size",
    "8",
    "--batch-size",
    "16",
    "--limit-train",
    "32",
    "--limit-test",
    "40",
    "--eval-batch-size",
    "16",
    "--no-progress",
    "--no-nir",
    "--seed",
    "3",
    "--threads",
    "1",
]


def test_header_line_names_task_model_epochs_batch_threads_and_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--out", str(out), *TINY, "--epochs", "1", "--no-plot"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    headers = [ln for ln in lines if ln.startswith("snntorch-egru train: task ")]
    assert len(headers) == 1, lines
    n_params = json.loads((out / "metrics.json").read_text())["parameters"]
    assert headers[0] == (
        f"snntorch-egru train: task digits, EGRU(8), {n_params:,} parameters, 1 epoch, batch 16, "
        f"1 thread, device cpu, run folder {out}"
    )
    assert lines.index(headers[0]) < len(lines) - 1  # before the summary line
    assert lines[-1].startswith("digits: test accuracy ")


@pytest.mark.parametrize(
    "argv, wrong",
    [
        (["--epoch", "3"], "--epoch"),
        (["--hidden", "8"], "--hidden"),
        (["--lr", "0.1", "--weight", "0.1"], "--weight"),
        (["--no-prog"], "--no-prog"),
    ],
)
def test_flags_are_never_abbreviated(argv, wrong, capsys):
    with pytest.raises(SystemExit) as stop:
        parse_config(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"unrecognized arguments: {wrong}" in err
    assert main(argv) == 2
    # the whole flag still works
    assert parse_config(["--epochs", "3"])[0].epochs == 3


def test_bench_flags_are_not_abbreviated_either(capsys):
    from snntorch_egru.cli import main as cli_main

    assert cli_main(["bench", "--qui"]) == 2
    assert "unrecognized arguments: --qui" in capsys.readouterr().err


def test_note_when_epochs_are_below_the_preset(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "r"), *TINY, "--epochs", "1", "--no-plot"]) == 0
    out = capsys.readouterr().out
    cfg = preset("digits")
    assert (
        f"note: --epochs 1 is below the digits preset's {cfg.epochs}: the cosine learning-rate schedule is "
        "compressed into 1 epochs"
    ) in out
    assert _loop._epochs_note(cfg, {"epochs": cfg.epochs}) is None  # the preset's own number: no note
    assert _loop._epochs_note(dataclasses.replace(cfg, epochs=5), {}) is None  # not given: no note
    sm = dataclasses.replace(preset("smnist"), epochs=3)
    assert "below the smnist preset's 200" in _loop._epochs_note(sm, {"epochs": 3})


def test_metrics_json_and_plot_are_refreshed_after_every_epoch(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    seen = []
    real = _loop.write_progress

    def spy(r, history, resumes):
        real(r, history, resumes)
        seen.append((json.loads((out / "metrics.json").read_text()), (out / "activity.png").read_bytes()[:8]))

    monkeypatch.setattr(_loop, "write_progress", spy)
    real_epoch = _loop._Run.train_epoch

    def stop_in_third(self, epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        return real_epoch(self, epoch)

    monkeypatch.setattr(_loop._Run, "train_epoch", stop_in_third)
    assert main(["--out", str(out), *TINY, "--epochs", "4"]) == 130
    assert [m["epochs_completed"] for m, _ in seen] == [1, 2]
    assert all(m["finished"] is False and m["epochs"] == 4 and png == b"\x89PNG\r\n\x1a\n" for m, png in seen)
    left = json.loads((out / "metrics.json").read_text())  # what Ctrl-C left: readable, flagged, complete rows
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert left["finished"] is False and left["epochs_completed"] == ck["epoch"] == 2
    assert left["history"] == ck["history"] and left["config"]["epochs"] == 4
    monkeypatch.setattr(_loop._Run, "train_epoch", real_epoch)
    assert main(["--resume", str(out), "--no-progress"]) == 0
    done = json.loads((out / "metrics.json").read_text())
    assert done["finished"] is True and done["epochs_completed"] == 4 and "test_accuracy" in done


def test_resume_says_what_it_continues(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--out", str(out), *TINY, "--epochs", "3", "--stop-after", "2", "--no-plot"]) == 0
    capsys.readouterr()
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert main(["--resume", str(out), "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    best = ck["best"]
    expected = (
        f"resuming {out}: epoch 2 of 3 completed, best valid accuracy {best['value']:.2%} (epoch {best['epoch']})"
    )
    assert expected in lines, lines


def test_resume_line_without_validation_gives_the_last_epoch():
    ck = {"epoch": 1, "best": None, "history": [{"epoch": 1, "eval_accuracy": 0.25, "eval_split": "test"}]}
    cfg = TrainConfig(epochs=5, out="runs/x")
    assert _loop._resume_line(cfg, ck) == "resuming runs/x: epoch 1 of 5 completed, last test accuracy 25.00%"


@pytest.mark.parametrize("task", ["digits", "smnist", "ptb"])
def test_every_flag_has_help_with_the_task_presets_value(task):
    parser = build_parser(task)
    defaults = preset(task)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    checked = 0
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help and len(action.help) > 10, action.option_strings
        name = action.dest
        if name in fields and name != "task":
            value = getattr(defaults, name)
            shown = (
                "none"
                if value is None
                else ",".join(map(str, value))
                if isinstance(value, list)
                else ("on" if value else "off")
                if isinstance(value, bool)
                else str(value)
            )
            assert action.help.endswith(f"({task} preset: {shown.replace('%', '%%')})"), (name, action.help)
            checked += 1
    assert checked == len(fields) - 1
    text = " ".join(parser.format_help().split())
    assert (
        f"--epochs EPOCHS number of training epochs (the learning-rate schedule spans them) ({task} preset: "
        f"{defaults.epochs})" in text
    )


def test_help_follows_the_task_given(capsys):
    with pytest.raises(SystemExit):
        parse_config(["--task", "psmnist", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(psmnist preset: 590)" in text and "(digits preset" not in text


def test_plot_has_loss_and_accuracy_curves_with_integer_epoch_ticks(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.ticker import MaxNLocator

    captured = {}

    def keep(plt, fig, path):
        captured["fig"] = fig
        return path

    monkeypatch.setattr(_records, "_save_png", keep)
    history = [
        {
            "epoch": e,
            "train_loss": 2.0 / e,
            "train_activity": 0.1,
            "eval_activity": 0.2,
            "eval_accuracy": 0.3 + 0.1 * e,
            "eval_split": "valid",
        }
        for e in (1, 2, 3)
    ]
    assert _records._plot(str(tmp_path / "a.png"), None, history, "t") == str(tmp_path / "a.png")
    fig = captured["fig"]
    curves = fig.axes[2]
    right = [ax for ax in fig.axes[3:] if ax.get_shared_x_axes().joined(ax, curves)][0]
    (loss,) = curves.get_lines()
    (acc,) = right.get_lines()
    assert list(loss.get_xdata()) == [1, 2, 3] and list(loss.get_ydata()) == [2.0, 1.0, 2.0 / 3]
    assert list(acc.get_ydata()) == pytest.approx([40.0, 50.0, 60.0])
    assert curves.get_ylabel() == "train loss" and right.get_ylabel() == "valid accuracy (%)"
    for ax in (fig.axes[1], curves):
        loc = ax.xaxis.get_major_locator()
        assert isinstance(loc, MaxNLocator) and loc._integer
        assert all(float(t).is_integer() for t in ax.get_xticks())
    import matplotlib.pyplot as plt

    plt.close(fig)


# ----------------------------------------------------------------------------- load_run
def test_load_run_gives_the_tested_model_and_its_config(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--out", str(out), *TINY, "--epochs", "2", "--no-plot"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    model, cfg = load_run(str(out))
    assert isinstance(cfg, TrainConfig) and cfg.hidden_size == 8 and cfg.epochs == 2 and cfg.out == str(out)
    assert not model.training
    data = load_digits_data()
    x, y = collate_time_first([data.test[i] for i in range(40)])
    with torch.no_grad():
        logits, _ = model(x)
    correct = int((logits.argmax(1) == y).sum())
    assert m["test_samples"] == 40 and correct == m["test_correct"]
    # "last": the last epoch's parameters, exactly as in checkpoint.pt
    last, _ = load_run(str(out / "checkpoint.pt"), which="last")
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    for k, v in last.state_dict().items():
        torch.testing.assert_close(v, ck["model"][k], rtol=0, atol=0)
    with pytest.raises(ValueError, match="load_run: which must be one of selected, last, got 'best'"):
        load_run(str(out), which="best")
    with pytest.raises(ValueError, match=r"^load_run: no checkpoint at .*missing"):
        load_run(str(tmp_path / "missing"))


def test_load_run_of_a_gru_model(tmp_path):
    out = tmp_path / "gru"
    assert main(["--out", str(out), *TINY, "--epochs", "1", "--no-plot", "--model", "gru"]) == 0
    model, cfg = load_run(str(out))
    assert cfg.model == "gru" and isinstance(model.egru, torch.nn.GRU)


def test_load_run_of_a_language_model(tmp_path):
    from snntorch_egru.training._data import LM_FILES

    data = tmp_path / "data"
    data.mkdir()
    words = "the cat sat on the mat and the dog ran to the cat".split()
    for i, name in enumerate(LM_FILES["ptb"]):
        (data / name).write_text("\n".join(" ".join(words[(i + j) % 5 :] + words[: (i + j) % 5]) for j in range(8)))
    out = tmp_path / "lm"
    assert (
        main(
            [
                "--task",
                "ptb",
                "--data-dir",
                str(data),
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
                "5",
                "--epochs",
                "1",
                "--no-progress",
                "--no-nir",
                "--no-plot",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    model, cfg = load_run(str(out))
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert cfg.task == "ptb" and cfg.hidden_sizes == [8, 6] and ck["spec"]["vocab_size"] == 10
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, ck["best"]["model"][k], rtol=0, atol=0)
    assert model.decoder.weight is model.embedding.weight
    logits, states, _ = model(torch.zeros(3, 2, dtype=torch.long))
    assert tuple(logits.shape) == (3, 2, 10) and len(states) == 2


def test_a_resume_whose_checkpoint_is_replaced_before_the_lock_is_refused(tmp_path):
    out = tmp_path / "run"
    assert main(["--out", str(out), *TINY, "--epochs", "1", "--no-plot"]) == 0
    _, ckpt, _ = _loop._resume_config(TrainConfig(), str(out), {})
    _loop._check_unchanged(ckpt)  # unchanged: accepted
    data = (out / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").unlink()
    (out / "checkpoint.pt").write_bytes(data)  # another process replaced it with a newer file
    st = os.stat(out / "checkpoint.pt")
    os.utime(out / "checkpoint.pt", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(ValueError, match="was replaced while this run was starting"):
        _loop._check_unchanged(ckpt)
