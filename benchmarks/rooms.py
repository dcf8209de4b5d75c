"""How many package modules ("rooms") one ``EGRU.forward`` call runs code in, per backend (issue 30).

Counts the distinct ``snntorch_egru`` source files whose Python functions are entered (``sys.setprofile``)
during one warm forward call of ``EGRU(8, 16)`` on the CPU (one layer, T = 10, B = 2), and the number of
changes from one file to another along the call.

    python benchmarks/rooms.py [backend ...]      # default: auto torch reference
"""

from __future__ import annotations

import os
import sys

import torch

import snntorch_egru as se

PKG = os.path.dirname(se.__file__)


def rooms(fn) -> tuple[list[str], int]:
    files: list[str] = []
    seq: list[str] = []

    def prof(frame, event, arg):
        if event != "call" or not frame.f_code.co_filename.startswith(PKG):
            return
        r = os.path.relpath(frame.f_code.co_filename, PKG)
        if r not in files:
            files.append(r)
        if not seq or seq[-1] != r:
            seq.append(r)

    sys.setprofile(prof)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return files, max(0, len(seq) - 1)


def main() -> None:
    torch.manual_seed(0)
    x = torch.randn(10, 2, 8)
    for backend in sys.argv[1:] or ["auto", "torch", "reference"]:
        m = se.EGRU(8, 16, backend=backend)
        m(x)  # warm: first-call work (loading the native helper, caches) is not counted
        files, changes = rooms(lambda: m(x))
        print(f"{backend:10s} forward: {len(files)} rooms, {changes} changes: {', '.join(files)}")


if __name__ == "__main__":
    main()
