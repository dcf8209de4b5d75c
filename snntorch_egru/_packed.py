"""Variable-length batches for :class:`~snntorch_egru.EGRU`, as ``torch.nn.GRU`` takes them.

A ``PackedSequence`` is unpacked to a zero-padded batch (original sample order),
run as one batch, and the output is packed again like the input. Each sequence's
state is taken at its own last step and the padding of every layer's sequences
is zeroed, so records hold zeros past each sequence's end.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
from torch.nn.utils import rnn as rnn_utils

from . import functional as F

PackedSequence = rnn_utils.PackedSequence
Finals = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def unpack(x: PackedSequence, batch_first: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(padded, lengths)`` of ``x`` in the original sample order (``lengths`` on the CPU)."""
    return rnn_utils.pad_packed_sequence(x, batch_first=batch_first)


def repack(result: Tuple[Any, ...], x: PackedSequence, lengths: torch.Tensor, batch_first: bool) -> Tuple[Any, ...]:
    """``result`` with its output (first item, padded) packed again exactly like ``x``."""
    out = result[0]
    order = x.sorted_indices
    tfirst = out.transpose(0, 1) if batch_first else out
    if order is not None:
        tfirst = tfirst.index_select(1, order)
        lengths = lengths.index_select(0, order.cpu())
    data = rnn_utils.pack_padded_sequence(tfirst, lengths, enforce_sorted=True).data
    return (PackedSequence(data, x.batch_sizes, x.sorted_indices, x.unsorted_indices), *result[1:])


def final_step(
    seq: F.EGRUStepOutput, initial: Finals, lengths: Optional[torch.Tensor]
) -> Tuple[Finals, F.EGRUStepOutput]:
    """``((y, c, trace) after the last step, seq)`` of one layer's ``[T, B, H]`` sequences.

    Without ``lengths`` the last step (or ``initial`` for ``T = 0``); with the
    lengths of a packed batch each sample's own last step, and ``seq`` with its padding zeroed.
    """
    T, B = seq.y.shape[0], seq.y.shape[1]
    if lengths is not None:
        device = seq.y.device
        valid = (torch.arange(T).unsqueeze(1) < lengths.unsqueeze(0)).to(device).unsqueeze(2)
        last, cols = (lengths - 1).to(device), torch.arange(B, device=device)
        finals = (seq.y[last, cols], seq.c[last, cols], seq.trace[last, cols])
        return finals, F.EGRUStepOutput(*(t * valid for t in seq))
    if T > 0:
        return (seq.y[-1], seq.c[-1], seq.trace[-1]), seq
    return initial, seq
