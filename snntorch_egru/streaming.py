"""Streaming inference: one time step per call of a trained EGRU, at the lowest latency this CPU allows.

:class:`Streamer` freezes a trained :class:`~snntorch_egru.EGRU` (or :class:`~snntorch_egru.EGRUCell`)
for deployment: it keeps contiguous copies of the weights in the layout the native event path reads,
and every :meth:`Streamer.step` runs one native call per layer (the recurrent product over the rows of
the units that fired, the input product, gates, threshold, reset and trace), with no autograd and no
module machinery. Its numbers equal the model's own forward pass in eval mode.
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional, Tuple, Union

import torch

from . import _cell_fast
from . import functional as F
from ._layer import nan_threshold_propagates
from ._layer_setup import LAYER_TENSOR_NAMES
from .modules import EGRU, EGRUCell
from .state import EGRUState

__all__ = ["Streamer"]


_Tensors = Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor], torch.Tensor]


class _Layer(NamedTuple):
    """One layer as :meth:`Streamer.step` reads it: its five tensors (``LAYER_TENSOR_NAMES`` order, detached,
    contiguous, the threshold clamped as the model clamps it) and the contiguous ``W_hh^T``."""

    tensors: _Tensors
    w_hh_t: torch.Tensor


class Streamer:
    """A stateful stepper over a trained EGRU: one time step of ``B`` samples per call, state kept inside.

    The model is read once, at construction (weights copied, thresholds clamped as the model clamps
    them, eval-mode semantics: no dropout, zoneout as its expectation): later edits of the model are
    not seen until :meth:`refresh`. Each step runs the native event path when the package's C helper
    is built (otherwise the same step in torch, same numbers).

    Args:
        model: a trained :class:`~snntorch_egru.EGRU` (any number of layers) or
            :class:`~snntorch_egru.EGRUCell`.
        batch_size: ``B``, the number of independent streams stepped together. Default: 1.

    Latency per step on 2 CPU cores (float32, B = 1, I = 64, 10 % activity; ``benchmarks/cpu_events.py``,
    ``benchmarks/results/cpu-events-2026-12-06-b.md``):

    ====  ===============  ==========================  ===========================
    H     ``Streamer``     ``EGRUCell`` (``no_grad``)  ``torch.nn.GRUCell``
    ====  ===============  ==========================  ===========================
    256   17.6 µs          25.1 µs                     50.8 µs
    1024  80.1 µs          121.4 µs                    362.4 µs
    ====  ===============  ==========================  ===========================

    Shape:
        - Input of :meth:`step`: ``[I]`` (``batch_size=1``) or ``[B, I]``, the model's dtype.
        - Output: the last layer's events ``y``, ``[H]`` or ``[B, H]`` (a new tensor every step).
        - :attr:`state`: :class:`~snntorch_egru.EGRUState` with fields ``[num_layers, B, H]``.

    Example::

        >>> import torch, snntorch_egru as se
        >>> rnn = se.EGRU(4, 16, num_layers=2, thr_mean=0.1).eval()
        >>> stream = se.Streamer(rnn)
        >>> x = torch.randn(30, 1, 4)
        >>> ys = torch.stack([stream.step(x_t[0]) for x_t in x])     # one step per sample as it arrives
        >>> with torch.no_grad():
        ...     out, _ = rnn(x)
        >>> torch.allclose(ys, out[:, 0], atol=1e-6)
        True
        >>> stream.state.y.shape
        torch.Size([2, 1, 16])
        >>> stream.reset()                    # zero state: the next step starts a new stream
    """

    def __init__(self, model: Union[EGRU, EGRUCell], batch_size: int = 1) -> None:
        if not isinstance(model, (EGRU, EGRUCell)):
            raise TypeError(f"model must be a snntorch_egru.EGRU or EGRUCell, got {type(model).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.model = model
        self.batch_size = batch_size
        self.refresh()

    def refresh(self) -> None:
        """Read the model's weights again (after training or editing it) and zero the state."""
        m = self.model
        with torch.no_grad():
            if isinstance(m, EGRUCell):
                tensors = [
                    {
                        "weight_ih": m.weight_ih,
                        "weight_hh": m.weight_hh,
                        "bias_ih": m.bias_ih,
                        "bias_hh": m.bias_hh,
                        "threshold": m.threshold,
                    }
                ]
            else:
                tensors = [m.layer_tensors(k) for k in range(m.num_layers)]
            self._layers: List[_Layer] = []
            for t in tensors:
                w_ih, w_hh, b_ih, b_hh, theta = (t[name] for name in LAYER_TENSOR_NAMES)
                assert w_ih is not None and w_hh is not None and theta is not None  # only the biases may be None
                b_ih, b_hh = (None if b is None else b.detach().contiguous() for b in (b_ih, b_hh))
                w_ih, w_hh = w_ih.detach().contiguous(), w_hh.detach().contiguous()
                theta = m._effective_threshold(theta.detach()).contiguous()
                self._layers.append(_Layer((w_ih, w_hh, b_ih, b_hh, theta), w_hh.t().contiguous()))
        ref = self._layers[0].tensors[0]
        self.dtype, self.device = ref.dtype, ref.device
        self.input_size, self.hidden_size = m.input_size, m.hidden_size
        self._step_fn = _cell_fast.step_function(self.dtype) if self.device.type == "cpu" else None
        self._zoneout = float(m.zoneout)
        self._reset = m.reset_mechanism
        self.reset()

    def reset(self) -> None:
        """Zero the state (``y``, ``c``, ``trace`` of every layer): the next step starts a new stream."""
        shape = (self.batch_size, self.hidden_size)
        self._y, self._c, self._tr = (
            [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in self._layers] for _ in range(3)
        )

    @property
    def state(self) -> EGRUState:
        """The current state, ``[num_layers, B, H]`` per field (copies: editing them changes nothing)."""
        return EGRUState(torch.stack(self._y), torch.stack(self._c), torch.stack(self._tr))

    @state.setter
    def state(self, value: EGRUState) -> None:
        shape = (len(self._layers), self.batch_size, self.hidden_size)
        fields = tuple(value)
        if len(fields) != 3:
            raise ValueError(f"state must be an EGRUState (y, c, trace), got {len(fields)} fields")
        for name, t in zip(("y", "c", "trace"), fields):
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape:
                got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(f"state.{name} must have shape {shape}, got {got}")
        self._y, self._c, self._tr = (
            list(t.detach().to(device=self.device, dtype=self.dtype, copy=True).contiguous().unbind(0)) for t in fields
        )

    def step(self, x_t: torch.Tensor) -> torch.Tensor:
        """One time step: the last layer's events ``y`` for input ``x_t`` (``[I]`` or ``[B, I]``)."""
        if not isinstance(x_t, torch.Tensor):
            raise TypeError(f"x_t must be a torch.Tensor, got {type(x_t).__name__}")
        unbatched = x_t.dim() == 1
        x = x_t.unsqueeze(0) if unbatched else x_t
        if x.dim() != 2 or x.shape[0] != self.batch_size or x.shape[1] != self.input_size:
            want = f"[{self.input_size}]" if self.batch_size == 1 else ""
            want += (" or " if want else "") + f"[{self.batch_size}, {self.input_size}]"
            raise ValueError(f"x_t must have shape {want} (batch_size={self.batch_size}), got {tuple(x_t.shape)}")
        if x.dtype != self.dtype or x.device != self.device:
            raise ValueError(f"x_t must be {self.dtype} on {self.device} (the model's), got {x.dtype} on {x.device}")
        x = x.contiguous()
        for k, L in enumerate(self._layers):
            y0, c0, tr0 = self._y[k], self._c[k], self._tr[k]
            if self._step_fn is not None:
                w_ih, _, b_ih, b_hh, theta = L.tensors
                y, c, tr = _cell_fast.inference_step(
                    self._step_fn, x, y0, c0, tr0, w_ih, L.w_hh_t, b_ih, b_hh, theta, self._reset, self._zoneout
                )
            else:
                with torch.no_grad():
                    out = F.egru_step(x, y0, c0, tr0, *L.tensors, reset=self._reset, zoneout_p=self._zoneout)
                    out = nan_threshold_propagates(L.tensors[4], out)
                y, c, tr = out.y, out.c, out.trace
            self._y[k], self._c[k], self._tr[k] = y, c, tr
            x = y
        return x[0] if unbatched else x

    def __repr__(self) -> str:
        path = "native" if self._step_fn is not None else "torch"
        return (
            f"Streamer({type(self.model).__name__}, layers={len(self._layers)}, input_size={self.input_size}, "
            f"hidden_size={self.hidden_size}, batch_size={self.batch_size}, path={path!r})"
        )
