"""Forecasters of the ``mackey-glass`` task: EGRU, and the LSTM / GRU of NeuroBench's example configuration.

All three read a rolling window of the last ``window`` values of the series (the example's
``inp`` buffer, zeros before the start), run one recurrent layer and a linear readout, in
float64 as the example does:

- ``lstm`` is NeuroBench's example model (window 50, ``LayerNorm(50)`` -> ``LSTMCell(50, 40)``
  -> ``ReLU`` -> ``Linear(40, 1)``), re-implemented here with the same behaviour;
- ``gru`` is the same with ``GRUCell(50, 40)`` (the same-size dense GRU);
- ``egru`` is ``EGRU(window, H)`` -> ``Linear(H, 1)`` on the graded events; its input is
  standardised with fixed statistics of the training inputs (a ``LayerNorm`` over a
  window of 1 would be zero).

``forward(batch [N, 1, 1])`` follows the example's two modes: ``single_step`` restarts from
zero and reads the true series; ``autonomous`` continues from the warmed state, reads the
first true value and then its own previous prediction.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..modules import EGRU

KINDS = ("egru", "lstm", "gru")


class Forecaster(nn.Module):
    """One-step forecaster with a rolling input window (see the module docstring).

    Args:
        kind: ``"egru"``, ``"lstm"`` or ``"gru"``.
        window: number of past values each step reads.
        hidden: recurrent units.
        thr_mean: EGRU initial threshold mean (``egru`` only).

    Example::

        >>> import torch
        >>> from snntorch_egru.training._mg_models import Forecaster
        >>> m = Forecaster("lstm", 50, 40)
        >>> m(torch.rand(7, 1, 1, dtype=torch.float64)).shape
        torch.Size([7, 1])
    """

    # buffers: the input's shift and scale (EGRU: the training series' mean and sd) and the rolling window
    shift: torch.Tensor
    scale: torch.Tensor
    inp: torch.Tensor

    def __init__(self, kind: str, window: int, hidden: int, thr_mean: float = 0.3) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        for name, v in (("window", window), ("hidden", hidden)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.kind, self.window, self.hidden = kind, window, hidden
        dt = torch.float64
        if kind == "egru":
            self.norm: nn.Module = nn.Identity()
            self.rnn: nn.Module = EGRU(window, hidden, thr_mean=thr_mean).to(dt)
            self.act: nn.Module = nn.Identity()
        else:
            self.norm = nn.LayerNorm(window, dtype=dt)
            self.rnn = (nn.LSTMCell if kind == "lstm" else nn.GRUCell)(window, hidden, dtype=dt)
            self.act = nn.ReLU()
        self.fc = nn.Linear(hidden, 1, dtype=dt)
        self.register_buffer("shift", torch.zeros((), dtype=dt))
        self.register_buffer("scale", torch.ones((), dtype=dt))
        self.register_buffer("inp", torch.zeros(1, window, dtype=dt))  # rolling window, as the example's
        self.mode = "single_step"
        self.state: Any = None  # the cell's state: an EGRUState, the LSTM's (h, c) or the GRU's h
        self.train_mse = float("nan")  # set by training

    # -- one step and whole sequences ------------------------------------------------------
    def _prep(self, w: torch.Tensor) -> torch.Tensor:
        return self.norm((w - self.shift) / self.scale)

    def _step(self, w: torch.Tensor) -> torch.Tensor:
        """One step on a window ``[1, window]``; updates ``self.state``; returns ``[1, 1]``."""
        x = self._prep(w)
        if self.kind == "egru":
            out, self.state = self.rnn(x.unsqueeze(0), self.state)
            h = out[0]
        elif self.kind == "lstm":
            self.state = self.rnn(x, self.state)
            h = self.state[0]
        else:
            self.state = self.rnn(x, self.state)
            h = self.state
        return self.fc(self.act(h))

    def sequence(self, wins: torch.Tensor, return_internals: bool = False):
        """Teacher-forced run from zero over windows ``[N, window]``: predictions ``[N, 1]`` (and EGRU internals).

        Leaves the final state in ``self.state`` (the warm state of the autonomous test).
        """
        x = self._prep(wins)
        rec = None
        if self.kind == "egru":
            out, self.state, rec = self.rnn(x.unsqueeze(1), return_internals=True)
            h = out[:, 0]
        else:  # the cell's weights run through torch's sequence kernel (same math, one call)
            seq = self._seq_module()
            names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            params = {f"{n}_l0": getattr(self.rnn, n) for n in names}
            out, final = torch.func.functional_call(seq, params, (x.unsqueeze(1),))
            h = out[:, 0]
            self.state = (final[0][0], final[1][0]) if self.kind == "lstm" else final[0]
        pred = self.fc(self.act(h))
        return (pred, rec) if return_internals else pred

    def _seq_module(self) -> nn.Module:
        cls = nn.LSTM if self.kind == "lstm" else nn.GRU
        return cls(self.window, self.hidden, dtype=torch.float64, device=self.fc.weight.device)

    def warm(self, series: torch.Tensor) -> None:
        """Run the training inputs ``[N, 1]`` from zero (the example's ``lstm(train_data)``)."""
        from ._mackey_glass import windows

        with torch.no_grad():
            self.sequence(windows(series, self.window))
        self.inp = torch.cat([self.inp.new_zeros(1, self.window), series.T], 1)[:, -self.window :].clone()

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.dim() != 3 or batch.shape[1:] != (1, 1):
            raise ValueError(f"batch must be [N, 1, 1] (NeuroBench's bin_window=1 samples), got {tuple(batch.shape)}")
        if self.mode != "autonomous":
            self.state = None
            self.inp = torch.zeros_like(self.inp)
        preds, prior = [], None
        for sample in batch:
            value = prior if (self.mode == "autonomous" and prior is not None) else sample
            self.inp = torch.cat([self.inp[:, 1:], value.reshape(1, 1)], 1)
            prior = self._step(self.inp)
            preds.append(prior)
        return torch.cat(preds, 0)
