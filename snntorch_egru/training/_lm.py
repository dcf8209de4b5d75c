"""Language-model pieces of the paper's recipe (AWD-style training, ``egru-model.md`` §7-8).

- :func:`awd_windows`: variable BPTT windows. Each window's nominal length is ``bptt``
  with probability 0.95, else ``bptt / 2``; the length is then drawn from
  ``N(nominal, 5)``, truncated to an int and at least 5 (and cut at the end of the data).
- :func:`lr_scale`: the learning rate of a window is scaled by ``seq_len / nominal`` where
  ``nominal`` is the window's nominal length (``bptt`` or ``bptt / 2``; the EvNN code) or
  ``bptt`` (AWD-LSTM): a window shorter than its nominal length contributes a
  proportionally smaller step.
- :func:`locked_dropout`: "variational" dropout on time-first ``[T, B, H]`` tensors. The
  default ``share="time"`` draws one mask per sample and feature and reuses it at every step
  of the window (Gal & Ghahramani; AWD-LSTM's LockedDropout). ``share="batch"`` reproduces
  the EvNN code literally (mask ``[1, T, H]`` on batch-first tensors: one mask per step,
  shared by the whole batch).

:class:`BestCheckpoint` (the parameters of the best validation epoch) belongs to the runner and lives
in :mod:`._best`; it is re-exported here under its old name.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch

from ._best import BestCheckpoint

__all__ = ["awd_windows", "lr_scale", "locked_dropout", "BestCheckpoint", "DROPOUT_SHARES"]

DROPOUT_SHARES = ("time", "batch")


def awd_windows(
    n_tokens: int,
    bptt: int,
    generator: Optional[torch.Generator] = None,
    p_full: float = 0.95,
    std: float = 5.0,
    min_len: int = 5,
    with_nominal: bool = False,
) -> List[Tuple]:
    """``(start, seq_len)`` windows over a stream of ``n_tokens`` rows (targets are the next rows).

    The windows tile ``0 .. n_tokens - 2`` without gaps; lengths follow AWD-LSTM. Draws only
    from ``generator`` (give every process the same one so they take the same steps).
    ``with_nominal=True`` gives ``(start, seq_len, nominal)`` with the nominal length
    (``bptt`` or ``bptt / 2``) each length was drawn around.
    """
    if not isinstance(bptt, int) or bptt < 1:
        raise ValueError(f"bptt must be a positive int, got {bptt!r}")
    out: List[Tuple] = []
    i = 0
    while i < n_tokens - 1:
        nominal = bptt if float(torch.rand((), generator=generator)) < p_full else bptt / 2
        seq = max(min_len, int(nominal + std * float(torch.randn((), generator=generator))))
        seq = min(seq, n_tokens - 1 - i)
        out.append((i, seq, nominal) if with_nominal else (i, seq))
        i += seq
    return out


def lr_scale(seq_len: int, bptt: float) -> float:
    """Factor of the learning rate for a window of ``seq_len`` steps: ``seq_len / bptt``.

    Pass the window's nominal length as ``bptt`` for the EvNN recipe (``seq_len / this_bptt``),
    the configured ``--bptt`` for AWD-LSTM's rule.
    """
    return seq_len / bptt


def locked_dropout(x: torch.Tensor, p: float, training: bool, share: str = "time") -> torch.Tensor:
    """Dropout on ``x [T, B, H]`` with one mask shared over time (``"time"``) or over the batch (``"batch"``)."""
    if share not in DROPOUT_SHARES:
        raise ValueError(f"dropout mask share must be 'time' or 'batch', got {share!r}")
    if not training or p <= 0:
        return x
    shape = (1,) + tuple(x.shape[1:]) if share == "time" else (x.shape[0], 1) + tuple(x.shape[2:])
    mask = x.new_empty(shape).bernoulli_(1 - p) / (1 - p)
    return x * mask
