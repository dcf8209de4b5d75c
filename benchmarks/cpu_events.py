"""EGRU against torch.nn on the CPU, the way users run it: per-step cell, streaming, sequence, training.

A wrapper of ``snntorch-egru bench --events`` (``snntorch_egru/_bench_events.py``), kept for its command
lines: side by side in one process, interleaved repeats, medians; thresholds calibrated so the layer fires
at the given activity on the benchmark's own random input. Each EGRU/GRU ratio is printed next to the
ideal ratio of ``benchmarks/roofline.py`` for this machine, the training step with its backward density,
and a plot of the per-step speed-up against activity (with the ideal curve) is written.

    python benchmarks/cpu_events.py --out benchmarks/results/cpu-events-DATE   # writes .md, .csv, .png
    python benchmarks/cpu_events.py --quick                                     # fewer repeats
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from snntorch_egru import _bench_events
from snntorch_egru._bench_events import bench_sequence, bench_step, calibrate  # noqa: F401 - the old names


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    p.add_argument("--out", help="path prefix for .md, .csv and .png (default: print only)")
    p.add_argument("--quick", action="store_true", help="3 repeats instead of 7, a shorter activity sweep")
    p.add_argument("--no-train", action="store_true", help="skip the training-step row (the slowest)")
    a = p.parse_args(argv)
    events = ["--events"] + ["--quick"] * a.quick + ["--no-train"] * a.no_train
    if a.out:
        prefix = Path(a.out)
        events += ["--out", str(prefix.parent), "--name", prefix.stem]
    else:
        events.append("--no-write")
    command = "python benchmarks/cpu_events.py " + " ".join(shlex.quote(x) for x in argv)
    return _bench_events.main(events, command=command.strip())


if __name__ == "__main__":
    sys.exit(main())
