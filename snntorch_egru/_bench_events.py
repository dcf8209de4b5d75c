"""``snntorch-egru bench --events``: the EGRU against ``torch.nn`` on the CPU, the way users run it.

Side by side in one process, interleaved repeats, medians; thresholds calibrated so the layer fires at
the given activity on the benchmark's own random input:

* per step at ``B = 1`` under ``no_grad``: ``EGRUCell`` called in a Python loop (the snnTorch idiom) and
  :class:`~snntorch_egru.Streamer`, both against ``torch.nn.GRUCell`` (``--hidden``, default 256 and 1024,
  ``I = 64``, ``T = 200``);
* a whole sequence, ``EGRU`` against ``torch.nn.GRU`` under ``no_grad`` (``H = 1024``, ``I = 64`` and
  ``I = H``, ``T = 200``, ``B = 1``);
* a training step, forward + backward (``H = I = 1024``, ``B = 16``, ``T = 100``), with the backward
  density of :mod:`snntorch_egru.metrics` measured on the timed input;
* the per-step cell's speed-up against activity (1 % to 50 % at ``H = 1024``).

Each EGRU/torch ratio is reported next to the ideal ratio of this machine's roofline
(:mod:`snntorch_egru._roofline`). Writes ``cpu-events-YYYY-MM-DD.{md,csv,png}`` into ``--out`` (the PNG
plots the speed-up against activity with the ideal curve; it needs matplotlib). ``benchmarks/cpu_events.py``
is a wrapper of this module.
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import functools
import os
import shlex
import string
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union, cast

import torch

from . import metrics
from ._bench_report import _git_commit, _machine, guarded
from ._roofline import gemm_rate, machine_line, roofline
from .modules import EGRU, EGRUCell
from .streaming import Streamer

FULL_SWEEP = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
QUICK_SWEEP = (0.02, 0.1, 0.3)
COLUMNS = ("kind", "H", "I", "B", "activity", "egru_us", "torch_us", "ratio", "ideal", "of_ideal", "backward_density")
HEADERS = (
    "how it runs",
    "H",
    "I",
    "B",
    "activity",
    "EGRU µs/step",
    "torch µs/step",
    "speed-up",
    "ideal",
    "of ideal",
    "backward density",
)


@dataclass(frozen=True)
class EventsPlan:
    """What one ``bench --events`` run measures (the defaults are the issue's configurations).

    The per-step rows run every size of ``hidden`` with ``input_size``; the sequence rows, the training
    step and the activity sweep use the largest ``hidden`` (the sequence rows with ``input_size`` and with
    ``I = H``, the training step with ``I = H``).
    """

    hidden: Tuple[int, ...] = (256, 1024)
    input_size: int = 64
    steps: int = 200
    train: bool = True
    train_batch: int = 16
    train_steps: int = 100
    sweep: Tuple[float, ...] = FULL_SWEEP
    sweep_steps: int = 100
    activity: float = 0.1
    repeats: int = 7

    @property
    def train_repeats(self) -> int:
        """Repeats of the (slowest) training step: half of ``repeats``, at least 3 (or ``repeats`` if fewer)."""
        return max(min(3, self.repeats), self.repeats // 2)


@dataclass
class EventsResult:
    """The rows (dicts of :data:`COLUMNS`), the sweep ``(activity, speed-up, ideal)`` and the GEMM rate."""

    plan: EventsPlan
    rate: float
    rows: List[Dict[str, Any]] = field(default_factory=list)
    sweep: List[Tuple[float, float, float]] = field(default_factory=list)
    #: the ideal speed-up ``(activity, ideal)`` on a fine grid over the sweep's measured activities
    ideal_curve: List[Tuple[float, float]] = field(default_factory=list)


def calibrate(layer: Union[EGRU, EGRUCell], inp: int, activity: float, steps: int = 150) -> None:
    """Set the thresholds to the per-unit quantile of the state ``c`` so about ``activity`` of the units fire."""
    with torch.no_grad():
        x = torch.randn(steps, 1, inp)
        if isinstance(layer, EGRUCell):  # calibrate an EGRU with the cell's weights, take its thresholds
            ref = EGRU(inp, layer.hidden_size)
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(ref, f"{name}_l0").copy_(getattr(layer, name))
            calibrate(ref, inp, activity, steps)
            layer.threshold.copy_(cast(torch.Tensor, ref.threshold_l0))
            return
        theta = cast(torch.Tensor, layer.threshold_l0)
        theta.fill_(1.0)
        c = layer(x, return_internals=True)[2].c[0, :, 0]
        q = torch.quantile(c[steps // 4 :], 1.0 - activity, dim=0).clamp(0.0, 1.0)
        for _ in range(4):  # firing resets c, so iterate towards the target
            theta.copy_(q)
            y = layer(x)[0][steps // 4 :, 0]
            got = (y != 0).double().mean().item()
            q = (q * (1.0 + 0.5 * (got - activity) / max(activity, 1e-3))).clamp(0.0, 1.0)


def _median(xs: List[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2]


def bench_step(hidden: int, inp: int, activity: float, repeats: int, steps: int = 200) -> Dict[str, float]:
    """Per-step cell in a Python loop at B = 1 (the snnTorch idiom), the Streamer and nn.GRUCell, no_grad.

    Returns the median seconds per step of ``"cell"``, ``"stream"`` and ``"gru"`` and the cell's ``"activity"``.
    """
    cell = EGRUCell(inp, hidden).eval()
    calibrate(cell, inp, activity)
    stream = Streamer(cell)
    gru = torch.nn.GRUCell(inp, hidden).eval()
    xs = torch.randn(steps, 1, inp)
    t_cell, t_stream, t_gru, act = [], [], [], []
    with torch.no_grad():
        for _ in range(repeats):
            cell.reset_mem()
            ys = []
            t0 = time.perf_counter()
            for x in xs:
                ys.append(cell(x)[0])
            t_cell.append((time.perf_counter() - t0) / steps)
            act.append(torch.stack(ys).ne(0).double().mean().item())
            stream.reset()
            t0 = time.perf_counter()
            for x in xs:
                stream.step(x[0])
            t_stream.append((time.perf_counter() - t0) / steps)
            h = torch.zeros(1, hidden)
            t0 = time.perf_counter()
            for x in xs:
                h = gru(x, h)
            t_gru.append((time.perf_counter() - t0) / steps)
    return {"cell": _median(t_cell), "stream": _median(t_stream), "gru": _median(t_gru), "activity": _median(act)}


def bench_sequence(
    hidden: int, inp: int, batch: int, activity: float, repeats: int, steps: int = 200, train: bool = False
) -> Dict[str, float]:
    """A whole sequence through EGRU and nn.GRU (forward under no_grad, or forward + backward).

    Returns the median seconds per sequence of ``"egru"`` and ``"gru"``, the EGRU's ``"activity"`` and,
    with ``train``, its ``"backward_density"`` on the timed input (:func:`snntorch_egru.metrics.track`).
    """
    rnn = EGRU(inp, hidden)
    calibrate(rnn, inp, activity)
    gru = torch.nn.GRU(inp, hidden)
    x = torch.randn(steps, batch, inp)
    t_e: List[float] = []
    t_g: List[float] = []
    act: List[float] = []
    for _ in range(repeats):
        for model, acc in ((rnn, t_e), (gru, t_g)):
            model.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            if train:
                out = model(x)[0]
                out.square().mean().backward()
            else:
                with torch.no_grad():
                    out = model(x)[0]
            acc.append(time.perf_counter() - t0)
            if model is rnn:
                act.append(out.detach().ne(0).double().mean().item())
    res = {"egru": _median(t_e), "gru": _median(t_g), "activity": _median(act)}
    if train:  # as `snntorch-egru bench` does: the counters of one forward over the timed input
        with torch.no_grad(), metrics.track(rnn) as tracker:
            rnn(x)
        res["backward_density"] = float(tracker.summary()["backward_density"])
    return res


def make_row(
    kind: str, shape: Tuple[int, int, int], act: float, t_e: float, t_g: float, ideal: float, bwd: Optional[float]
) -> Dict[str, Any]:
    """One result row: ``shape`` is ``(H, I, B)``, times in seconds per step, ``bwd`` the backward density."""
    H, I, B = shape
    ratio = t_g / t_e
    return dict(
        kind=kind,
        H=H,
        I=I,
        B=B,
        activity=round(act, 4),
        egru_us=round(t_e * 1e6, 1),
        torch_us=round(t_g * 1e6, 1),
        ratio=round(ratio, 2),
        ideal=round(ideal, 2),
        of_ideal=round(ratio / ideal, 2),
        backward_density="" if bwd is None else round(bwd, 4),
    )


def _row_line(r: Dict[str, Any]) -> str:
    bwd = "" if r["backward_density"] == "" else f"  backward density {r['backward_density']:.3f}"
    return (
        f"{r['kind']:28s} H={r['H']:5d} I={r['I']:5d} B={r['B']:3d} act={r['activity']:.3f}  EGRU "
        f"{r['egru_us']:9.1f} us  torch {r['torch_us']:9.1f} us  {r['ratio']:5.2f}x (ideal {r['ideal']:.2f}x){bwd}"
    )


def _jobs(plan: EventsPlan, res: EventsResult, say: Callable[[str], None]) -> List[Callable[[], None]]:
    """One closure per measurement, in the order of the report; each appends its rows and says them."""
    big = max(plan.hidden)

    def add(
        kind: str, shape: Tuple[int, int, int], r: Dict[str, float], keys: Tuple[str, str], mode: str, T: int
    ) -> None:
        ideal = roofline(*shape, r["activity"], mode, res.rate, steps=T).ratio
        per = 1.0 if mode == "step" else float(T)
        row = make_row(kind, shape, r["activity"], r[keys[0]] / per, r[keys[1]] / per, ideal, r.get("backward_density"))
        res.rows.append(row)
        say(_row_line(row))

    def step(H: int) -> None:
        r = bench_step(H, plan.input_size, plan.activity, plan.repeats, plan.steps)
        add("cell per step (no_grad)", (H, plan.input_size, 1), r, ("cell", "gru"), "step", plan.steps)
        add("Streamer per step", (H, plan.input_size, 1), r, ("stream", "gru"), "step", plan.steps)

    def sequence(I: int) -> None:
        r = bench_sequence(big, I, 1, plan.activity, plan.repeats, plan.steps)
        add(f"sequence forward T={plan.steps}", (big, I, 1), r, ("egru", "gru"), "sequence", plan.steps)

    def training() -> None:
        T, B = plan.train_steps, plan.train_batch
        r = bench_sequence(big, big, B, plan.activity, plan.train_repeats, T, train=True)
        add(f"training step T={T}", (big, big, B), r, ("egru", "gru"), "sequence", T)

    def sweep(target: float) -> None:
        r = bench_step(big, plan.input_size, target, plan.repeats, steps=plan.sweep_steps)
        ideal = roofline(big, plan.input_size, 1, r["activity"], "step", res.rate).ratio
        res.sweep.append((r["activity"], r["gru"] / r["cell"], ideal))
        say(f"sweep act={r['activity']:.3f} speed-up {r['gru'] / r['cell']:.2f}x ideal {ideal:.2f}x")

    jobs: List[Callable[[], None]] = [functools.partial(step, H) for H in plan.hidden]
    jobs += [functools.partial(sequence, I) for I in dict.fromkeys((plan.input_size, big))]
    jobs += [training] if plan.train else []
    jobs += [functools.partial(sweep, s) for s in plan.sweep]
    return jobs


def run(plan: EventsPlan, progress: bool = True) -> EventsResult:
    """Measure every row and sweep point of ``plan`` (seeded), printing each row as it is done."""
    from tqdm.auto import tqdm

    res = EventsResult(plan=plan, rate=gemm_rate())
    torch.manual_seed(0)  # the measurements of the roofline leave the global RNG alone: same inputs every run
    jobs = _jobs(plan, res, lambda line: tqdm.write(line, file=sys.stdout))
    for job in tqdm(jobs, desc="bench --events", unit="run", file=sys.stderr, disable=not progress):
        job()
        sys.stdout.flush()
    res.ideal_curve = ideal_curve(res)
    return res


def ideal_curve(res: EventsResult, points: int = 40) -> List[Tuple[float, float]]:
    """The sweep's ideal speed-up on ``points`` activities from its lowest to its highest measured one
    (geometric spacing; linear when an activity of 0 was measured)."""
    acts = sorted(s for s, _, _ in res.sweep)
    if len(acts) < 2 or acts[0] == acts[-1]:
        grid = acts[:1]
    elif acts[0] > 0:
        grid = [acts[0] * (acts[-1] / acts[0]) ** (k / (points - 1)) for k in range(points)]
    else:
        grid = [acts[-1] * k / (points - 1) for k in range(points)]
    big, I = max(res.plan.hidden), res.plan.input_size
    return [(a, roofline(big, I, 1, min(a, 1.0), "step", res.rate).ratio) for a in grid]


def markdown(res: EventsResult, meta: Dict[str, str]) -> str:
    """The Markdown report: the run's facts, the rows with their ideal ratios and the activity sweep."""
    big, I = max(res.plan.hidden), res.plan.input_size
    lines = [f"# EGRU vs torch.nn on the CPU ({meta['date'][:10]})", ""]
    lines += [f"- **{k}**: `{v}`" if k == "command" else f"- **{k}**: {v}" for k, v in meta.items()]
    lines += [
        "",
        "Medians of interleaved repeats; thresholds calibrated to the activity shown; ideal = the roofline ratio",
        "of this machine (`benchmarks/roofline.py`); backward density (training step) = the share of",
        "(step, sample, unit) through which the gradient flows, by `snntorch_egru.metrics`.",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "---|" * len(HEADERS),
    ]
    for r in res.rows:
        bwd = "–" if r["backward_density"] == "" else str(r["backward_density"])
        lines.append(
            f"| {r['kind']} | {r['H']} | {r['I']} | {r['B']} | {r['activity']} | {r['egru_us']} | "
            f"{r['torch_us']} | {r['ratio']}x | {r['ideal']}x | {r['of_ideal']:.0%} | {bwd} |"
        )
    if res.sweep:
        lines += ["", f"Per-step cell, H = {big}, I = {I}, B = 1, against activity:", ""]
        lines += ["| activity | speed-up | ideal |", "|---|---|---|"]
        lines += [f"| {s:.3f} | {r:.2f}x | {i:.2f}x |" for s, r, i in res.sweep]
    return "\n".join(lines) + "\n"


def plot(res: EventsResult, path: Path) -> bool:
    """Write the speed-up against activity with the ideal curve as a PNG; False (and a message on stderr)
    when matplotlib is missing or there is no sweep."""
    if not res.sweep:
        return False
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter
    except ImportError:
        print("matplotlib is not installed: no plot written (pip install matplotlib)", file=sys.stderr)
        return False
    from ._io import atomic_write_path

    pts = sorted(res.sweep)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot([s for s, _, _ in pts], [r for _, r, _ in pts], "o-", label="measured (EGRUCell vs GRUCell)")
    curve = res.ideal_curve or [(s, i) for s, _, i in pts]
    ax.plot([a for a, _ in curve], [i for _, i in curve], "--", label="ideal (roofline)")
    ax.axhline(1.0, color="grey", lw=0.8)
    if all(s > 0 for s, _, _ in pts):  # a measured activity of 0 (a 1 % target at small H) needs a linear axis
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator([0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{100 * x:g} %"))
    ax.set_xlabel("activity (fraction of units firing per step)")
    ax.set_ylabel("speed-up over torch.nn.GRUCell")
    ax.set_title(f"Per-step cell, B = 1, H = {max(res.plan.hidden)}, I = {res.plan.input_size}")
    ax.legend()
    fig.tight_layout()
    with atomic_write_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return True


def write_report(res: EventsResult, meta: Dict[str, str], prefix: Path) -> List[Path]:
    """Write ``prefix.csv``, ``prefix.md`` and ``prefix.png`` (without matplotlib: no PNG); the paths written."""
    from ._io import atomic_open, atomic_write_text

    prefix.parent.mkdir(parents=True, exist_ok=True)
    csv_path, md_path, png_path = (Path(f"{prefix}.{ext}") for ext in ("csv", "md", "png"))
    with atomic_open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(COLUMNS))
        w.writeheader()
        w.writerows(res.rows)
    atomic_write_text(md_path, markdown(res, meta))
    return [csv_path, md_path] + ([png_path] if plot(res, png_path) else [])


def free_stem(folder: Path, stem: str) -> str:
    """``stem``, or ``stem-b``, ``stem-c``, ... : the first whose ``.md``, ``.csv`` and ``.png`` are all absent."""
    for suffix in [""] + [f"-{c}" for c in string.ascii_lowercase[1:]] + [f"-{n}" for n in range(27, 10**4)]:
        if not any((folder / f"{stem}{suffix}.{ext}").exists() for ext in ("md", "csv", "png")):
            return stem + suffix
    raise OSError(f"no free file name for {stem!r} in {str(folder)!r}")


def parser() -> argparse.ArgumentParser:
    """The options of ``snntorch-egru bench --events``."""
    from .cli import OneLineErrorParser

    p = OneLineErrorParser(
        prog="snntorch-egru bench --events",
        description="The EGRU against torch.nn on the CPU, the way users run it: per-step cell, Streamer, sequence "
        "and training step, each next to this machine's ideal (roofline) ratio, and the speed-up against activity.",
    )
    p.add_argument("--events", action="store_true", help="this report (the flag that selects it)")
    p.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    p.add_argument("--quick", action="store_true", help="3 repeats instead of 7, a shorter activity sweep")
    p.add_argument("--no-train", action="store_true", help="skip the training-step row (the slowest)")
    p.add_argument(
        "--hidden",
        type=int,
        nargs="+",
        default=[256, 1024],
        help="H of the per-step rows (256 1024); the largest also sizes the sequence rows, training step and sweep",
    )
    p.add_argument(
        "--input-size",
        type=int,
        default=64,
        help="I of the per-step rows, the sweep and the first sequence row (64); the others use I = H",
    )
    p.add_argument("--steps", type=int, default=200, help="steps of the per-step and sequence rows (200)")
    p.add_argument("--activity", type=float, default=0.1, help="target activity of the rows (0.1)")
    p.add_argument("--train-batch", type=int, default=16, help="B of the training step (16)")
    p.add_argument("--train-steps", type=int, default=100, help="T of the training step (100)")
    p.add_argument(
        "--sweep-activity",
        type=float,
        nargs="+",
        default=None,
        help="target activities of the sweep (0.01 0.02 0.05 0.1 0.2 0.3 0.5; --quick: 0.02 0.1 0.3)",
    )
    p.add_argument("--sweep-steps", type=int, default=100, help="steps per sweep point (100)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (7; --quick: 3)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--out", default=os.path.join("benchmarks", "results"), help="output folder")
    p.add_argument(
        "--name",
        default=None,
        help="file name stem in --out (default: cpu-events-DATE, -b, -c, ... when taken; a given name is replaced)",
    )
    p.add_argument("--no-write", action="store_true", help="print only, write no files")
    return p


def check_args(args: argparse.Namespace) -> None:
    """Raise ``ValueError`` naming the first bad option, what was expected and what was given."""
    bad = [v for v in args.hidden if v < 1]
    if bad:
        raise ValueError(f"--hidden values must be positive integers, got {bad}")
    for name in ("input_size", "steps", "train_batch", "train_steps", "sweep_steps", "repeats", "threads"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer (>= 1), got {v}")
    if not 0.0 < args.activity < 1.0:
        raise ValueError(f"--activity must lie strictly between 0 and 1, got {args.activity}")
    bad_s = [a for a in args.sweep_activity or () if not 0.0 < a < 1.0]
    if bad_s:
        raise ValueError(f"--sweep-activity values must lie strictly between 0 and 1, got {bad_s}")
    if args.name is not None and (not args.name or Path(args.name).name != args.name or args.name in (".", "..")):
        raise ValueError(f"--name must be a file name without a folder (the folder is --out), got {args.name!r}")
    if not args.no_write and os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out {args.out!r} is a file; expected a folder (or a path to create)")


def plan_of(args: argparse.Namespace) -> EventsPlan:
    """The :class:`EventsPlan` of checked options."""
    sweep = args.sweep_activity or (QUICK_SWEEP if args.quick else FULL_SWEEP)
    repeats = args.repeats or (3 if args.quick else 7)
    return EventsPlan(
        hidden=tuple(args.hidden),
        input_size=args.input_size,
        steps=args.steps,
        train=not args.no_train,
        train_batch=args.train_batch,
        train_steps=args.train_steps,
        sweep=tuple(sweep),
        sweep_steps=args.sweep_steps,
        activity=args.activity,
        repeats=repeats,
    )


def _events(args: argparse.Namespace, command: str) -> int:
    check_args(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    plan = plan_of(args)
    now = _dt.datetime.now(_dt.timezone.utc)
    res = run(plan)
    meta = {
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        **_machine(torch.device("cpu")),
        "repeats": f"{plan.repeats} ({plan.train_repeats} for the training step)" if plan.train else str(plan.repeats),
        "roofline": machine_line(res.rate),
        "commit": _git_commit(),
        "command": command,
    }
    if args.no_write:
        return 0
    out = Path(args.out)
    stem = args.name or free_stem(out, f"cpu-events-{now.strftime('%Y-%m-%d')}")
    written = write_report(res, meta, out / stem)
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    return 0


def main(argv: Optional[Sequence[str]] = None, command: Optional[str] = None) -> int:
    """Run ``snntorch-egru bench --events [options]``; returns the exit status (2 on a bad option).

    ``command`` is the command line recorded in the report (default: ``snntorch-egru bench`` and ``argv``).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--events" not in argv:
        argv.insert(0, "--events")
    try:
        args = parser().parse_args(argv)
    except SystemExit as stop:  # argparse already printed its one-line message
        return int(stop.code or 0)
    command = command or "snntorch-egru bench " + " ".join(shlex.quote(a) for a in argv)
    return guarded("snntorch-egru bench --events", args.debug, lambda: _events(args, command))
