"""What ``snntorch-egru bench`` records and prints: the machine, the commit, the result columns and the
Markdown report (for :mod:`snntorch_egru.bench`), and how its commands turn errors into one line."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence

import torch


def guarded(prog: str, debug: bool, run: Callable[[], int]) -> int:
    """``run()``'s exit status; a user error (``ValueError``, ``OSError``, ``ImportError``) becomes one line
    ``<prog>: error: ...`` on stderr and status 2 (with ``debug``: the traceback), Ctrl-C status 130."""
    try:
        return run()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, ImportError) as err:
        if debug:
            raise
        from .cli import error_line

        print(f"{prog}: error: {error_line(err)}", file=sys.stderr)
        return 2


def _machine(device: torch.device) -> Dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "torch": torch.__version__,
        "threads": str(torch.get_num_threads()),
        "python": platform.python_version(),
        "device": "cpu" if device.type == "cpu" else torch.cuda.get_device_name(device),
    }
    return info


def _git_commit() -> str:
    try:
        here = Path(__file__).resolve().parent
        res = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return (res.stdout.strip() or "unknown") + ("+dirty" if dirty else "")
    except Exception:  # noqa: BLE001
        return "unknown"


COLUMNS = (
    "hidden",
    "input",
    "batch",
    "steps",
    "layers",
    "mode",
    "target_activity",
    "activity",
    "union_activity",
    "backward_density",
    "mac_fraction",
    "gru_ms",
    "egru_ms",
    "dense_egru_ms",
    "us_per_step_egru",
    "speedup_vs_gru",
    "speedup_vs_dense",
    "time_fraction_of_dense",
)


def _markdown(rows: Sequence[Dict[str, object]], meta: Dict[str, str], memory: List[Dict[str, Any]]) -> str:
    lines = ["# snntorch-egru bench", ""]
    for k, v in meta.items():
        lines.append(f"- **{k}**: {v}")
    lines += [
        "",
        "Times: median ms per sequence; speed-up > 1 means EGRU is faster. `mac_fraction` = effective "
        "MACs / dense MACs (fwd) or (fwd + bwd MACs) / dense (fwdbwd); compare it with "
        "`time_fraction_of_dense`.",
        "",
    ]
    lines.append("| " + " | ".join(COLUMNS) + " |")
    lines.append("|" + "---|" * len(COLUMNS))
    for r in rows:
        lines.append("| " + " | ".join(str(r[c]) for c in COLUMNS) + " |")
    if memory and meta.get("device", "cpu") != "cpu":
        lines += [
            "",
            "## Peak training memory (torch.cuda.max_memory_allocated above model + input, one forward+backward)",
            "",
            "| model | hidden | batch | steps | input | activity | peak MiB | vs torch.nn.GRU |",
            "|---|---|---|---|---|---|---|---|",
        ]
        base = memory[0]["bytes"]
        for m in memory:
            ratio = f"{m['bytes'] / base:.2f}" if base else "n/a"
            lines.append(
                f"| {m['backend']} | {m['hidden']} | {m['batch']} | {m['steps']} | {m['input']} | "
                f"{m['activity']} | {m['bytes'] / 2**20:.1f} | {ratio} |"
            )
    elif memory:
        lines += [
            "",
            "## Peak training memory (RSS increase of one forward+backward, fresh process)",
            "",
            "| backend | hidden | batch | steps | input | activity | peak MiB |",
            "|---|---|---|---|---|---|---|",
        ]
        for m in memory:
            mib = "n/a" if m["bytes"] is None else f"{m['bytes'] / 2**20:.1f}"
            lines.append(
                f"| {m['backend']} | {m['hidden']} | {m['batch']} | {m['steps']} | {m['input']} | "
                f"{m['activity']} | {mib} |"
            )
    return "\n".join(lines) + "\n"
