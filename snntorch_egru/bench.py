"""``snntorch-egru bench``: EGRU against ``torch.nn.GRU`` and a dense EGRU, side by side.

For every cell (hidden size, batch, activity, forward or forward+backward) the
same input is run through

* ``torch.nn.GRU`` (the fastest dense baseline on this device),
* the EGRU with the event-driven ``"torch"`` backend (``"cupy"`` with ``--device cuda``
  when installed; ``--backend`` overrides), and
* the same EGRU layer with every sparse product disabled
  (:class:`snntorch_egru.sparse.force_dense`): the "dense EGRU" (on CUDA the ``"cupy"``
  kernels then run every recurrent product, forward and backward, as a dense cuBLAS GEMM).

TF32: ``--tf32 off`` (default) / ``on`` sets ``torch.backends.cuda.matmul.allow_tf32`` (our
GEMMs) and ``torch.backends.cudnn.allow_tf32`` (``torch.nn.GRU``) alike for the run, so both
models use the same precision; the setting is recorded with the results. ``--memory`` measures
the peak memory of one training step: on CUDA ``torch.cuda.max_memory_allocated`` above the
model and input for ``torch.nn.GRU`` and the EGRU, on the CPU the resident-set increase.

Activity is controlled by calibrating the thresholds: ``theta_i`` is set to the
``(1 - s)`` quantile of unit ``i``'s pre-reset state ``c_hat`` on a warm-up run
(repeated a few times because the dynamics depend on the thresholds); the
achieved activity, batch-union activity and backward density are measured on the
timed input with :mod:`snntorch_egru.metrics` and reported next to the target.

Timings are medians of ``--repeats`` (>= 5) runs after one warm-up, the three models
interleaved round by round (fairer ratios on a shared, noisy machine). Results are
printed as a table and written as CSV and Markdown (with date, machine, torch
version, command and git commit) into ``--out`` (default ``benchmarks/results``).

``--events`` runs the CPU event-path report instead (:mod:`snntorch_egru._bench_events`): the per-step
``EGRUCell`` and ``Streamer`` against ``torch.nn.GRUCell``, whole sequences and a training step against
``torch.nn.GRU`` (with the backward density), each next to this machine's roofline ratio, and the
speed-up against activity as a plot; ``snntorch-egru bench --events --help`` lists its options.

Example (shell)::

    snntorch-egru bench --quick                      # target cells, < 3 min on 2 CPU cores
    snntorch-egru bench --hidden 1024 --batch 1 --activity 0.1 --mode fwd
    snntorch-egru bench --events                     # cpu-events-DATE.{md,csv,png} in benchmarks/results
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import os
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, cast

import torch

from . import functional as F
from ._bench_report import COLUMNS, _git_commit, _machine, _markdown, guarded

__all__ = ["main", "Cell", "calibrate_thresholds", "run_cell"]

FULL_HIDDEN = (256, 1024, 2048)
FULL_BATCH = (1, 16, 128)
FULL_ACTIVITY = (0.01, 0.05, 0.10, 0.20, 0.50)
MODES = ("fwd", "fwdbwd")


@dataclass(frozen=True)
class Cell:
    """One benchmark configuration: hidden size, batch, target activity and mode.

    ``mode`` is ``"fwd"`` (inference under ``no_grad``) or ``"fwdbwd"`` (forward and
    backward with every weight gradient).

    Example::

        >>> from snntorch_egru.bench import Cell
        >>> Cell(hidden=256, batch=1, activity=0.1, mode="fwd", steps=50).input_size
        1024
    """

    hidden: int
    batch: int
    activity: float
    mode: str  # "fwd" (no_grad) or "fwdbwd"
    input_size: int = 1024
    steps: int = 100
    layers: int = 1


QUICK_CELLS = (
    Cell(1024, 1, 0.10, "fwd", steps=100),  # streaming target: >= 2x nn.GRU
    Cell(256, 1, 0.10, "fwd", steps=200),  # small layer: >= 0.8x nn.GRU
    Cell(1024, 1, 0.01, "fwd", steps=100),  # 1 %: how close to the events' share
    Cell(1024, 16, 0.10, "fwdbwd", steps=30),  # training target: >= 1x nn.GRU
    Cell(1024, 1, 0.01, "fwdbwd", steps=30),
)


def _egru(cell: Cell, device: torch.device, backend: str):
    from .modules import EGRU

    torch.manual_seed(0)
    return EGRU(cell.input_size, cell.hidden, num_layers=cell.layers, threshold_clamp=False, backend=backend).to(device)


def calibrate_thresholds(model: torch.nn.Module, x: torch.Tensor, activity: float, rounds: int = 3) -> None:
    """Set each layer's thresholds to the ``1 - activity`` quantile of its ``c_hat`` on ``x``.

    Args:
        model: an :class:`~snntorch_egru.EGRU` (built with ``threshold_clamp=False``).
        x: ``[T, B, I]`` warm-up input.
        activity: target fraction of (step, sample, unit) events, in (0, 1).
        rounds: calibration passes (the dynamics depend on the thresholds).

    Example::

        >>> import torch, snntorch_egru as se
        >>> rnn = se.EGRU(4, 32, threshold_clamp=False)
        >>> x = torch.randn(50, 2, 4)
        >>> calibrate_thresholds(rnn, x, 0.2)
        >>> 0.1 < rnn(x, return_internals=True)[2].o.mean().item() < 0.3
        True
    """
    if not 0.0 < activity < 1.0:
        raise ValueError(f"activity must lie strictly between 0 and 1, got {activity!r}")
    with torch.no_grad():
        for _ in range(rounds):
            _, _, rec = model(x, return_internals=True)
            for k in range(cast(int, model.num_layers)):  # an EGRU
                c_hat = F.pre_reset_state(rec.y[k], rec.c[k], rec.o[k])  # [T, B, H]
                flat = c_hat.reshape(-1, c_hat.shape[-1]).float()
                q = torch.quantile(flat, 1.0 - activity, dim=0)
                getattr(model, f"threshold_l{k}").copy_(q.to(c_hat.dtype))


def _time(fns: Sequence[Callable[[], None]], repeats: int, sync: Callable[[], None]) -> List[float]:
    """Median seconds of each function; the functions are interleaved (one run of each per
    round) so that load changes on a shared machine hit all of them alike."""
    for fn in fns:
        fn()
        sync()
    times: List[List[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            sync()
            times[k].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def run_cell(cell: Cell, *, device: torch.device, backend: str, repeats: int) -> Dict[str, object]:
    """Time one cell for ``torch.nn.GRU``, the event-driven EGRU and the dense EGRU.

    Returns a dict of the CSV columns (times in ms per sequence, speed-ups, measured activities).

    Example::

        >>> import torch
        >>> from snntorch_egru.bench import Cell, run_cell
        >>> row = run_cell(Cell(32, 1, 0.2, "fwd", input_size=8, steps=10),
        ...                device=torch.device("cpu"), backend="torch", repeats=1)
        >>> sorted(k for k in row if k.startswith("speedup"))  # doctest: +ELLIPSIS
        [...]
    """
    from . import metrics
    from .sparse import force_dense

    sync = (lambda: torch.cuda.synchronize()) if device.type == "cuda" else (lambda: None)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(cell.steps, cell.batch, cell.input_size, generator=g).to(device)
    warm = torch.randn(cell.steps, cell.batch, cell.input_size, generator=g).to(device)
    egru = _egru(cell, device, backend)
    calibrate_thresholds(egru, warm, cell.activity)
    gru = torch.nn.GRU(cell.input_size, cell.hidden, num_layers=cell.layers).to(device)
    with torch.no_grad(), metrics.track(egru) as tracker:
        egru(x)
    stats = tracker.summary()

    def fwd(model: torch.nn.Module, dense: bool = False) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                if dense:
                    with force_dense():
                        model(x)
                else:
                    model(x)

        return run

    def fwdbwd(model: torch.nn.Module, dense: bool = False) -> Callable[[], None]:
        def run() -> None:
            model.zero_grad(set_to_none=True)
            if dense:
                with force_dense():
                    out = model(x)[0]
                    out.sum().backward()
            else:
                out = model(x)[0]
                out.sum().backward()

        return run

    make = fwd if cell.mode == "fwd" else fwdbwd
    t_gru, t_egru, t_dense = _time([make(gru), make(egru), make(egru, dense=True)], repeats, sync)
    fwd_frac = stats["effective_macs"] / max(stats["dense_macs"], 1)
    bwd_frac = (stats["effective_macs"] + stats["backward_macs"]) / max(
        stats["dense_macs"] + stats["dense_backward_macs"], 1
    )
    return {
        "hidden": cell.hidden,
        "input": cell.input_size,
        "batch": cell.batch,
        "steps": cell.steps,
        "layers": cell.layers,
        "mode": cell.mode,
        "target_activity": cell.activity,
        "activity": round(stats["activity"], 4),
        "union_activity": round(stats["batch_union_activity"], 4),
        "backward_density": round(stats["backward_density"], 4),
        "mac_fraction": round(fwd_frac if cell.mode == "fwd" else bwd_frac, 4),
        "gru_ms": round(t_gru * 1e3, 3),
        "egru_ms": round(t_egru * 1e3, 3),
        "dense_egru_ms": round(t_dense * 1e3, 3),
        "us_per_step_egru": round(t_egru * 1e6 / cell.steps, 1),
        "speedup_vs_gru": round(t_gru / t_egru, 3),
        "speedup_vs_dense": round(t_dense / t_egru, 3),
        "time_fraction_of_dense": round(t_egru / t_dense, 4),
    }


def _peak_memory_child(backend: str, hidden: int, batch: int, steps: int, input_size: int, activity: float) -> int:
    """Peak RSS increase (bytes) of one forward+backward (run in a fresh process)."""
    import resource

    cell = Cell(hidden, batch, activity, "fwdbwd", input_size=input_size, steps=steps)
    egru = _egru(cell, torch.device("cpu"), backend)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(steps, batch, input_size, generator=g)
    # calibrate on a single sequence so that calibration itself stays below the measured peak
    calibrate_thresholds(egru, torch.randn(steps, 1, input_size, generator=g), activity)
    egru.zero_grad()
    # one small warm-up so that allocator/BLAS buffers exist before the baseline
    _egru(Cell(8, 1, 0.1, "fwdbwd", input_size=4, steps=2), torch.device("cpu"), backend)(torch.randn(2, 1, 4))[
        0
    ].sum().backward()
    # Linux: reset the high-water mark to the current RSS, then read VmHWM. (ru_maxrss is not
    # usable: it carries the parent's RSS across fork + exec.)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        base = _vm_kib("VmHWM")
    except OSError:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = egru(x)[0]
    out.sum().backward()
    try:
        peak = _vm_kib("VmHWM")
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (peak - base) * 1024


def cuda_peak_memory(
    model: str, device: torch.device, hidden: int, batch: int, steps: int, input: int, activity: float
) -> int:
    """Peak CUDA memory (bytes, ``torch.cuda.max_memory_allocated``) of one forward+backward
    above what the model, its input and the upstream gradient already hold.

    Args:
        model: ``"torch.nn.GRU"`` or an EGRU backend name (thresholds calibrated to ``activity``).
        device: a CUDA device.
    """
    if device.type != "cuda":
        raise ValueError(f"cuda_peak_memory needs a CUDA device, got {device}")
    g = torch.Generator().manual_seed(1)
    x = torch.randn(steps, batch, input, generator=g).to(device)
    if model == "torch.nn.GRU":
        net: torch.nn.Module = torch.nn.GRU(input, hidden).to(device)
    else:
        net = _egru(Cell(hidden, batch, activity, "fwdbwd", input_size=input, steps=steps), device, model)
        calibrate_thresholds(net, torch.randn(steps, 1, input, generator=g).to(device), activity)
    net.zero_grad(set_to_none=True)
    net(x)[0].sum().backward()  # warm-up: kernels compiled, workspaces and .grad allocated
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    net(x)[0].sum().backward()
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device) - base)


class tf32_setting:
    """Context manager: TF32 on or off for cuBLAS matmuls and cuDNN alike, restored on exit.

    Example::

        >>> import torch
        >>> from snntorch_egru.bench import tf32_setting
        >>> with tf32_setting(False):
        ...     torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        (False, False)
    """

    def __init__(self, enabled: bool):
        self.enabled = bool(enabled)

    def __enter__(self) -> "tf32_setting":
        self._prev = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = self.enabled
        torch.backends.cudnn.allow_tf32 = self.enabled
        return self

    def __exit__(self, *exc: object) -> None:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self._prev


def _vm_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def peak_memory(backend: str, hidden: int, batch: int, steps: int, input_size: int, activity: float) -> Optional[int]:
    """Peak resident-memory increase of one training step in a fresh Python process (Linux; else None)."""
    code = (
        f"from snntorch_egru.bench import _peak_memory_child as f; "
        f"print(f({backend!r}, {hidden}, {batch}, {steps}, {input_size}, {activity}))"
    )
    try:
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
        return int(res.stdout.strip().splitlines()[-1])
    except Exception:  # noqa: BLE001 - memory figures are optional
        return None


def _parser() -> argparse.ArgumentParser:
    from .cli import OneLineErrorParser

    p = OneLineErrorParser(prog="snntorch-egru bench", description=__doc__.split("\n")[0])
    p.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    p.add_argument(
        "--events",
        action="store_true",
        help="instead: the CPU event-path report (per-step cell, Streamer, sequence, training step, activity "
        "sweep, each with its roofline ratio); its options: snntorch-egru bench --events --help",
    )
    p.add_argument("--quick", action="store_true", help="only the target cells (< 3 min on 2 CPU cores)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--backend", default=None, help="EGRU backend (default: 'torch' on CPU, 'auto' on CUDA)")
    p.add_argument("--hidden", type=int, nargs="+", default=list(FULL_HIDDEN))
    p.add_argument("--batch", type=int, nargs="+", default=list(FULL_BATCH))
    p.add_argument("--activity", type=float, nargs="+", default=list(FULL_ACTIVITY))
    p.add_argument("--mode", choices=MODES, nargs="+", default=list(MODES))
    p.add_argument("--input-size", type=int, default=1024)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5, help="timed repeats per model and cell (>= 5 recommended)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument(
        "--memory",
        action="store_true",
        help="also measure peak training memory (CUDA: vs torch.nn.GRU; CPU: vs the reference)",
    )
    p.add_argument(
        "--tf32",
        choices=("off", "on"),
        default="off",
        help="TF32 for the GEMMs of both models alike (cuBLAS matmul and cuDNN flags); default off",
    )
    p.add_argument("--out", default=os.path.join("benchmarks", "results"), help="output folder")
    p.add_argument("--no-write", action="store_true", help="print only, write no files")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the benchmark (``snntorch-egru bench [options]``); returns the exit status.

    Prints a table and writes CSV + Markdown (date, machine, command, commit) into
    ``--out`` (default ``benchmarks/results/``) unless ``--no-write`` is given.

    Example::

        >>> import contextlib, io
        >>> from snntorch_egru.bench import main
        >>> table = io.StringIO()
        >>> with contextlib.redirect_stdout(table):
        ...     status = main(["--hidden", "32", "--batch", "1", "--activity", "0.2", "--mode", "fwd",
        ...                    "--input-size", "8", "--steps", "10", "--repeats", "1", "--no-write"])
        >>> status, "speedup_vs_gru" in table.getvalue()
        (0, True)
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--events" in argv:  # the CPU event-path report has its own options
        from . import _bench_events

        return _bench_events.main(argv)
    try:
        args = _parser().parse_args(argv)
    except SystemExit as stop:  # argparse already printed its one-line message
        return int(stop.code or 0)
    return guarded("snntorch-egru bench", args.debug, lambda: _bench(args, argv))


def _check_args(args: argparse.Namespace) -> None:
    for name in ("hidden", "batch"):
        bad = [v for v in getattr(args, name) if v < 1]
        if bad:
            raise ValueError(f"--{name} values must be positive integers, got {bad}")
    for name in ("input_size", "steps", "layers", "repeats"):
        v = getattr(args, name)
        if v < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive integer (>= 1), got {v}")
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be a positive integer, got {args.threads}")
    for a in args.activity:
        if not 0.0 < a < 1.0:
            raise ValueError(f"--activity values must lie strictly between 0 and 1, got {a}")
    if args.backend is not None:
        from .backends import available_backends

        if args.backend not in available_backends() + ["auto"]:
            raise ValueError(f"--backend must be one of {['auto'] + available_backends()}, got {args.backend!r}")
        if args.backend == "cupy" and not (args.device == "cuda" and torch.cuda.is_available()):
            raise ValueError(
                "--backend cupy needs --device cuda on a machine with CUDA "
                f"(torch.cuda.is_available() is {torch.cuda.is_available()})"
            )
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was given but CUDA is not available (torch.cuda.is_available() is False)")
    if not args.no_write and os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out {args.out!r} is a file; expected a folder (or a path to create)")


def _bench(args: argparse.Namespace, argv: Sequence[str]) -> int:
    _check_args(args)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    backend = args.backend or ("torch" if device.type == "cpu" else "auto")
    if args.quick:
        cells = list(QUICK_CELLS)
    else:
        cells = [
            Cell(h, b, a, m, input_size=args.input_size, steps=args.steps, layers=args.layers)
            for m in args.mode
            for h in args.hidden
            for b in args.batch
            for a in args.activity
        ]
    from tqdm.auto import tqdm

    rows = []
    with tf32_setting(args.tf32 == "on"):
        for cell in tqdm(cells, desc="bench", unit="cell", file=sys.stderr):
            rows.append(run_cell(cell, device=device, backend=backend, repeats=args.repeats))
        tf32_label = (
            f"{args.tf32} (torch.backends.cuda.matmul.allow_tf32="
            f"{torch.backends.cuda.matmul.allow_tf32}, torch.backends.cudnn.allow_tf32="
            f"{torch.backends.cudnn.allow_tf32})"
        )
    memory: List[Dict[str, Any]] = []
    spec = dict(hidden=1024, batch=16, steps=50, input=args.input_size, activity=0.1)
    if args.memory and device.type == "cpu":
        for be in ("reference", backend):
            memory.append(
                {
                    "backend": be,
                    **spec,
                    "bytes": peak_memory(
                        be, spec["hidden"], spec["batch"], spec["steps"], spec["input"], spec["activity"]
                    ),
                }
            )
    elif args.memory:
        for be in ("torch.nn.GRU", backend):
            memory.append({"backend": be, **spec, "bytes": cuda_peak_memory(be, device, **spec)})
    now = _dt.datetime.now(_dt.timezone.utc)
    meta = {
        "date": now.strftime("%Y-%m-%d %H:%M UTC"),
        **_machine(device),
        "backend": backend,
        "tf32": tf32_label,
        "repeats": str(args.repeats),
        "commit": _git_commit(),
        "command": "snntorch-egru bench " + " ".join(shlex.quote(a) for a in argv),
    }
    md = _markdown(rows, meta, memory)
    print(md)
    if not args.no_write:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = f"bench-{now.strftime('%Y%m%d-%H%M%S')}-{device.type}"
        from ._io import atomic_open, atomic_write_text

        with atomic_open(out / f"{stem}.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(COLUMNS) + list(meta))
            w.writeheader()
            for r in rows:
                w.writerow({**{c: r[c] for c in COLUMNS}, **meta})
        atomic_write_text(out / f"{stem}.md", md)
        print(f"wrote {out / (stem + '.csv')} and {out / (stem + '.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
