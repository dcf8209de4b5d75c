"""Cold start: the first forward call of an ``EGRU`` against ``torch.nn.GRU``'s, each in a fresh interpreter.

Every measurement is its own ``python -c`` process (one thread): import torch and snntorch_egru, build
the model, then time the first forward call (and the first backward), and read the resident memory
(``VmRSS``) and ``sys.modules`` before and after. EGRU and GRU processes alternate; the figures are the
median of ``--repeats`` (default 5) processes each. ``import torch`` alone is timed the same way for scale.

    python benchmarks/cold_start.py                         # this checkout
    python benchmarks/cold_start.py --pythonpath /tmp/old   # another checkout (e.g. ``git archive`` of a commit)
    python benchmarks/cold_start.py --markdown              # a Markdown table for benchmarks/results/

No timing is asserted anywhere (``tests/test_cold_start.py`` checks only that eager calls do not
import ``torch._dynamo``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
t_torch = time.perf_counter() - t0

def rss_mib():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

res = {"import_torch_s": t_torch}
if MODEL != "none":
    import snntorch_egru as se
    torch.manual_seed(0)
    model = se.EGRU(16, 64) if MODEL == "egru" else torch.nn.GRU(16, 64)
    x = torch.randn(100, 8, 16)
    mods, rss = len(sys.modules), rss_mib()
    t0 = time.perf_counter()
    out, _ = model(x)
    res["first_forward_s"] = time.perf_counter() - t0
    res["forward_new_modules"] = len(sys.modules) - mods
    res["forward_rss_mib"] = rss_mib() - rss
    t0 = time.perf_counter()
    out.sum().backward()
    res["first_backward_s"] = time.perf_counter() - t0
    res["rss_mib"] = rss_mib()
    res["dynamo_loaded"] = "torch._dynamo" in sys.modules
print(json.dumps(res))
"""


def measure(model: str, pythonpath: str) -> dict:
    """One fresh interpreter: ``model`` is ``"egru"``, ``"gru"`` or ``"none"`` (``import torch`` only)."""
    env = dict(os.environ, PYTHONPATH=pythonpath, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    code = f"MODEL = {model!r}\n" + _PROBE
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=pythonpath, capture_output=True, text=True, check=True, timeout=600
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(repeats: int, pythonpath: str) -> dict[str, dict[str, float]]:
    """Median of ``repeats`` fresh processes per model (EGRU, GRU and bare ``import torch`` alternate)."""
    runs: dict[str, list[dict]] = {"egru": [], "gru": [], "none": []}
    for _ in range(repeats):
        for model in runs:
            runs[model].append(measure(model, pythonpath))
    return {m: {k: statistics.median(float(r[k]) for r in rs) for k in rs[0]} for m, rs in runs.items()}


def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown"


def report(med: dict[str, dict[str, float]], markdown: bool) -> str:
    """The medians as text (or a Markdown table), with the EGRU - GRU difference of the first forward."""
    e, g = med["egru"], med["gru"]
    rows = [
        ("first forward [s]", e["first_forward_s"], g["first_forward_s"]),
        ("first backward [s]", e["first_backward_s"], g["first_backward_s"]),
        ("modules imported by the first forward", e["forward_new_modules"], g["forward_new_modules"]),
        ("RSS growth in the first forward [MiB]", e["forward_rss_mib"], g["forward_rss_mib"]),
        ("RSS after forward+backward [MiB]", e["rss_mib"], g["rss_mib"]),
        ("torch._dynamo loaded (median of 0/1)", e["dynamo_loaded"], g["dynamo_loaded"]),
    ]
    diff = e["first_forward_s"] - g["first_forward_s"]
    if markdown:
        lines = ["| (median of fresh processes) | EGRU(16, 64) | nn.GRU(16, 64) |", "|---|---:|---:|"]
        lines += [f"| {name} | {a:.4g} | {b:.4g} |" for name, a, b in rows]
    else:
        lines = [f"{name:40s} EGRU {a:10.4g}   nn.GRU {b:10.4g}" for name, a, b in rows]
    lines.append(
        f"\nEGRU first forward - nn.GRU first forward: {diff:+.3f} s "
        f"(import torch alone: {med['none']['import_torch_s']:.3f} s)"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python benchmarks/cold_start.py [--repeats 5] [--pythonpath DIR] [--markdown]``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5, help="fresh processes per model (median; default 5)")
    p.add_argument("--pythonpath", default=str(ROOT), help="checkout whose snntorch_egru is measured")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    a = p.parse_args(argv)
    if a.repeats < 1:
        p.error(f"--repeats must be at least 1, got {a.repeats}")
    import torch

    med = run(a.repeats, a.pythonpath)
    print(
        f"# cold start, {a.repeats} fresh processes per model, OMP_NUM_THREADS=1; CPU: {_cpu_model()}; "
        f"torch {torch.__version__}; python {platform.python_version()}"
    )
    print(report(med, a.markdown))


if __name__ == "__main__":
    main()
