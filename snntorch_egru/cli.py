"""The ``snntorch-egru`` command: ``train`` (default task: offline digits) and ``bench``.

Each sub-command owns its own argument parser in its module; this file only dispatches.

Example (shell)::

    snntorch-egru train                 # train on scikit-learn's bundled digits, offline
    snntorch-egru bench --quick         # EGRU vs torch.nn.GRU timings on this machine
"""

from __future__ import annotations

import argparse
import errno
import sys
from typing import Any, List, NoReturn, Optional

_COMMANDS = {
    "train": ("snntorch_egru.training", "train an EGRU on a task (default: offline digits)"),
    "bench": ("snntorch_egru.bench", "time EGRU against torch.nn.GRU and a dense EGRU"),
}


class OneLineErrorParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors are one line on stderr, exit status 2:
    ``<prog>: error: argument --lr: expected ..., got ... (see --help)``. Flags are never abbreviated
    (``allow_abbrev=False``): ``--epoch 3`` is an error, not ``--epochs 3``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see --help)\n")


def error_line(err: BaseException) -> str:
    """One line describing a user error: the file or flag, what was expected and what was found."""
    if isinstance(err, OSError) and err.strerror:  # raised by the OS (our own messages have no strerror)
        name = err.filename
        reason = err.strerror
        if err.errno == errno.ENOSPC:
            reason = "no space left on device (disk full)"
        elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            reason = f"not writable or readable ({err.strerror or 'permission denied'})"
        msg = f"{reason}: {str(name)!r}" if name is not None else reason
        if err.filename2 is not None:
            msg += f" -> {str(err.filename2)!r}"
    else:
        msg = str(err) or type(err).__name__
    return " ".join(msg.split())


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
        from ._version import __version__

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
