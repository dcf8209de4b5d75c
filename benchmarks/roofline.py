"""Roofline of one EGRU against one dense GRU on THIS machine's CPU.

A wrapper of ``snntorch_egru/_roofline.py`` (its docstring states the cost model), kept for its command
lines: measures the memory bandwidth and the GEMM throughput, then prints the ideal time per step of
``torch.nn.GRU`` and of an event-driven EGRU, and their ratio, for given ``H``, ``I``, ``B`` and activity
``s``. ``snntorch-egru bench --events`` states every measured ratio as a fraction of this ideal. Usage::

    python benchmarks/roofline.py                       # the issue's configurations
    python benchmarks/roofline.py --hidden 1024 --input 64 --batch 1 --activity 0.1 --mode step
"""

from __future__ import annotations

import sys

# the names this script had, for whoever imports it
from snntorch_egru._roofline import CONFIGS, GATE_BYTES, Roofline, bandwidth, gemm_rate, main, roofline  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
