"""The ``snntorch-egru`` command: ``train`` (default task: offline digits) and ``bench``.

Each sub-command owns its own argument parser in its module; this file only dispatches.

Example (shell)::

    snntorch-egru train                 # train on scikit-learn's bundled digits, offline
    snntorch-egru bench --quick         # EGRU vs torch.nn.GRU timings on this machine
"""

from __future__ import annotations

import sys
from typing import List, Optional

_COMMANDS = {
    "train": ("snntorch_egru.training", "train an EGRU on a task (default: offline digits)"),
    "bench": ("snntorch_egru.bench", "time EGRU against torch.nn.GRU and a dense EGRU"),
}


def _usage() -> str:
    lines = ["usage: snntorch-egru <command> [options]", "", "commands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, help_) in _COMMANDS.items()]
    lines += ["", "Run 'snntorch-egru <command> --help' for the options of a command."]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``snntorch-egru`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from . import __version__

        print(f"snntorch-egru {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in _COMMANDS:
        print(f"snntorch-egru: unknown command {command!r}; expected one of {sorted(_COMMANDS)}\n", file=sys.stderr)
        print(_usage(), file=sys.stderr)
        return 2
    import importlib

    module = importlib.import_module(_COMMANDS[command][0])
    result = module.main(rest)
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
