"""``snntorch-egru train``: train an EGRU on a task and record accuracy, sparsity, a checkpoint and a NIR file.

Tasks: ``digits`` (default, offline), ``row-mnist``, ``smnist``, ``psmnist``, ``dvsgesture``, ``shd``,
``mackey-glass`` (NeuroBench's protocol), ``ptb``, ``wikitext2``; presets follow the paper's recipes
(``snntorch_egru.training._tasks``). Multi-process
training runs under ``torchrun --nproc-per-node N -m snntorch_egru train ...``.

This package is not imported by ``import snntorch_egru``; scikit-learn, torchvision,
tonic and matplotlib are imported only when a task or plot needs them.

Example::

    >>> from snntorch_egru.training import parse_config
    >>> cfg, resume, given = parse_config(["--task", "smnist", "--epochs", "3"])
    >>> cfg.hidden_size, cfg.epochs, given
    (590, 3, {'task': 'smnist', 'epochs': 3})
"""

from __future__ import annotations

from typing import List, Optional

from ._load import load_run
from ._loop import build_parser, parse_config, run  # noqa: F401  (build_parser: public through this package)
from ._tasks import TASKS, TrainConfig, preset

__all__ = ["main", "run", "load_run", "parse_config", "preset", "TrainConfig", "TASKS"]


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``snntorch-egru train`` (and ``python -m snntorch_egru train``).

    Args:
        argv: the arguments after ``train`` (``None``: ``sys.argv[1:]``).

    Returns:
        the exit status (0 on success, 2 on a usage or missing-data error).

    Example (shell)::

        snntorch-egru train                                   # digits, offline, about 20 s on 2 cores
        snntorch-egru train --task smnist --data-dir data --download --epochs 20 --device cuda
        snntorch-egru train --resume runs/digits-20260101-120000
        torchrun --nproc-per-node 2 -m snntorch_egru train --batch-size 64

    The same from Python::

        >>> from snntorch_egru.training import main
        >>> main(["--epochs", "0"])
        2
    """
    from ._loop import main as _main

    return _main(argv)
