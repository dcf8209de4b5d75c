"""EGRU modules: the snnTorch-style single-step :class:`EGRUCell` and the
``torch.nn.GRU``-shaped sequence layer :class:`EGRU`.

Both hold parameters and state only; the math lives in
:mod:`snntorch_egru.functional`. (The classes are written in the private rooms ``_cell``
and ``_layer``; this is their public home.)
"""

from __future__ import annotations

from ._cell import EGRUCell
from ._layer import EGRU

__all__ = ["EGRUCell", "EGRU"]

EGRU.__module__ = __name__  # its public home (pickles of whole models name it here, as before)
