"""Models of ``snntorch-egru train``: an EGRU sequence classifier and an EGRU language model."""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..modules import EGRU
from ..state import EGRURecord, EGRUState
from ._lm import locked_dropout

__all__ = ["SequenceClassifier", "LanguageModel", "FrameCNN", "build_egru", "READOUTS"]

READOUTS = ("last", "mean", "rate", "state")


def build_egru(cfg, input_size: int, hidden_size: int, num_layers: int = 1, dropconnect: Optional[float] = None) -> EGRU:
    """An :class:`~snntorch_egru.EGRU` with the options of a training config."""
    return EGRU(
        input_size, hidden_size, num_layers=num_layers,
        dropout=cfg.dropout if num_layers > 1 else 0.0,
        dropconnect=cfg.dropconnect if dropconnect is None else dropconnect, zoneout=cfg.zoneout,
        dampening_factor=cfg.dampening_factor, pseudo_derivative_support=cfg.pseudo_derivative_support,
        thr_mean=cfg.thr_mean, learn_threshold=cfg.learn_threshold, init=cfg.init, backend=cfg.backend,
    )


class FrameCNN(nn.Module):
    """Small per-frame CNN front end: ``[T, B, P, S, S]`` frames to ``[T, B, features]``.

    Three strided convolutions (16, 32, 64 channels) with ReLU, global average pooling,
    then a linear layer to ``features`` (256 in the DVS preset; the recipe's AlexNet-like
    CNN is larger).
    """

    def __init__(self, in_channels: int = 2, features: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, 16, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, features), nn.ReLU(),
        )
        self.features = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[:2]
        return self.net(x.reshape((T * B,) + tuple(x.shape[2:]))).reshape(T, B, self.features)


class SequenceClassifier(nn.Module):
    """Optional front end -> EGRU -> linear readout of the output trace.

    Args:
        egru: the recurrent layer(s).
        num_classes: number of classes.
        frontend: module mapping ``[T, B, *F]`` to ``[T, B, egru.input_size]`` (or None).
        readout: ``"last"`` (trace at the final step), ``"mean"`` (trace averaged over steps),
            ``"rate"`` (the Linear readout applied to the events ``y`` at every step and the
            logits averaged over the steps, rate-coded like snnTorch's ``ce_rate_loss``; as the
            readout is linear this equals the Linear of the time-averaged events, and it is
            exactly the per-step graph of the NIR export plus a time average outside it)
            or ``"state"`` (internal state ``c`` after the final step, like a GRU's ``h_T``).
        dropout: dropout on the readout's input (trace, events or state).

    Inputs: ``x`` of shape ``[T, B, *F]``. Outputs: ``logits [B, num_classes]`` and the
    :class:`~snntorch_egru.EGRURecord` of the EGRU.
    """

    def __init__(self, egru: EGRU, num_classes: int, frontend: Optional[nn.Module] = None,
                 readout: str = "last", dropout: float = 0.0, readout_steps: int = 0) -> None:
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"readout must be 'last', 'mean', 'rate' or 'state', got {readout!r}")
        self.frontend = frontend
        self.egru = egru
        self.readout = readout
        self.readout_steps = int(readout_steps)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(egru.hidden_size, num_classes)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, EGRURecord]:
        if self.frontend is not None:
            x = self.frontend(x)
        _, _, rec = self.egru(x, return_internals=True)
        trace = rec.trace[-1]  # last layer, [T, B, H]
        if self.readout == "rate":
            y = rec.y[-1]
            if self.readout_steps:
                y = y[-self.readout_steps:]
            feat = y.mean(0)  # mean_t head(y_t) == head(mean_t y_t): the head is linear
        elif self.readout == "state":
            feat = rec.c[-1, -1]  # internal state of the last layer after the last step
        else:
            feat = trace[-1] if self.readout == "last" else trace.mean(0)
        return self.head(self.drop(feat)), rec


class LanguageModel(nn.Module):
    """Word-level EGRU language model with tied input and output embeddings.

    ``Embedding(V, E) -> EGRU(E, h1) -> ... -> EGRU(h_{n-1}, E) -> Linear(E, V)`` whose
    weight is the embedding matrix. Each layer is a one-layer :class:`~snntorch_egru.EGRU`
    so that sizes may differ; the state of each is carried between BPTT windows.

    Inputs: ``tokens [T, B]`` and a list of per-layer states (or None).
    Outputs: ``logits [T, B, V]``, the new states, and the per-layer records.
    """

    def __init__(self, cfg, vocab_size: int) -> None:
        super().__init__()
        sizes: Sequence[int] = list(cfg.hidden_sizes or [cfg.hidden_size] * cfg.num_layers)
        if sizes[-1] != cfg.emb_size:
            sizes = list(sizes[:-1]) + [cfg.emb_size]  # tied weights need last size == embedding size
        self.embedding = nn.Embedding(vocab_size, cfg.emb_size)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        ins = [cfg.emb_size] + list(sizes[:-1])
        self.layers = nn.ModuleList(build_egru(cfg, i, h) for i, h in zip(ins, sizes))
        self.decoder = nn.Linear(cfg.emb_size, vocab_size)
        self.decoder.weight = self.embedding.weight
        nn.init.zeros_(self.decoder.bias)
        self.dropout_emb, self.dropout_words = cfg.dropout_emb, cfg.dropout_words
        self.dropout_hidden, self.dropout_out = cfg.dropout, cfg.dropout_out
        self.dropout_mask = getattr(cfg, "dropout_mask", "time")  # variational masks (see ._lm)

    def forward(self, tokens: torch.Tensor, states: Optional[List[EGRUState]] = None
                ) -> Tuple[torch.Tensor, List[EGRUState], List[EGRURecord]]:
        weight = self.embedding.weight
        if self.training and self.dropout_words > 0:
            keep = torch.empty(weight.shape[0], 1, device=weight.device).bernoulli_(1 - self.dropout_words)
            weight = weight * keep / (1 - self.dropout_words)
        x = nn.functional.embedding(tokens, weight)
        x = locked_dropout(x, self.dropout_emb, self.training, self.dropout_mask)
        new_states, records = [], []
        for k, layer in enumerate(self.layers):
            _, st, rec = layer(x, None if states is None else states[k], return_internals=True)
            x = rec.y[-1]
            p = self.dropout_out if k == len(self.layers) - 1 else self.dropout_hidden
            x = locked_dropout(x, p, self.training, self.dropout_mask)
            new_states.append(st)
            records.append(rec)
        return self.decoder(x), new_states, records
