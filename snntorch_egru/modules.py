"""EGRU modules: the snnTorch-style single-step :class:`EGRUCell` and the
``torch.nn.GRU``-shaped sequence layer :class:`EGRU`.

Both hold parameters and state only; the math lives in
:mod:`snntorch_egru.functional`.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Optional, Tuple, Union

import torch
from torch import nn

from . import _checks, _packed
from . import functional as F
from ._cell import EGRUCell
from ._layer_setup import LAYER_TENSOR_NAMES, EGRUBase, in_param_dtype
from .backends import LayerCall
from .state import EGRURecord, EGRURecurrentState, EGRUState

__all__ = ["EGRUCell", "EGRU"]

SpikeFn = Callable[[torch.Tensor], torch.Tensor]


class EGRU(EGRUBase):
    """Multi-layer Event-based GRU over whole sequences, shaped like ``torch.nn.GRU``.

    Each layer is an EGRU (see :mod:`snntorch_egru.functional`); layer ``k+1``
    receives the graded events of layer ``k`` (with ``dropout`` in between, as in
    ``torch.nn.GRU``). The state ``(y, c, trace)`` of every layer is returned and
    can be passed back to continue the sequence exactly (streaming, truncated BPTT).

    Args:
        input_size: number of input features ``I``.
        hidden_size: number of units ``H`` in every layer.
        num_layers: number of stacked layers. Default: 1.
        bias: use ``bias_ih_l{k}`` and ``bias_hh_l{k}``. Default: True.
        batch_first: input and output are ``[B, T, *]`` instead of ``[T, B, *]``.
        dropout: dropout on the events between layers (training only). Default: 0.
        dropconnect: DropConnect on ``weight_hh_l{k}``, one mask per call. Default: 0.
        zoneout: per-unit, per-step probability of keeping the old state in training;
            eval uses the expectation ``p c_prev + (1-p) c_hat``. Default: 0.
        dampening_factor: peak ``gamma`` of the pseudo-derivative. Default: 0.7.
        pseudo_derivative_support: inverse half-width ``epsilon``. Default: 1.0.
        thr_mean: mean of the Beta(alpha, 3) initial thresholds, in (0, 1). Default: 0.3.
        reset_mechanism: ``"subtract"`` (default), ``"zero"`` or ``"none"``.
        learn_threshold: thresholds are trainable parameters (else buffers). Default: True.
        spike_grad: surrogate spike function; ``None`` = the paper's triangle.
        surrogate_disable: plain Heaviside, no surrogate gradient. Default: False.
        threshold_clamp: clamp thresholds to [0, 1] in the forward pass, as the
            official code keeps them (the clamp is part of the autograd graph;
            the stored parameter is never mutated). Default: True.
        init: ``"evnn"`` (default) or ``"torch"`` weight initialisation.
        backend: ``"auto"`` (default), ``"reference"`` (step-by-step autograd) or
            any registered fast backend (see :mod:`snntorch_egru.backends`).
        device, dtype: of the parameters, as ``torch.nn.GRU``'s (``"meta"``: then ``to_empty()`` and
            :meth:`reset_parameters`). Default: the default device and dtype.

    Inputs: ``x, state``
        - **x**: ``[T, B, I]`` (``[B, T, I]`` with ``batch_first``; ``[T, I]`` unbatched).
          A ``torch.nn.utils.rnn.PackedSequence`` (variable-length batch) works as in
          ``torch.nn.GRU``: the output is packed the same way and the returned state of each
          sequence is the one after its own last step.
        - **state**: :class:`~snntorch_egru.EGRUState` with fields ``[num_layers, B, H]``,
          or ``None`` for zeros.

    Outputs: ``out, state`` (plus ``record`` with ``return_internals=True``)
        - **out**: ``[T, B, H]`` events ``y`` of the last layer (batch-first if set).
        - **state**: :class:`~snntorch_egru.EGRUState` after the last step.
        - **record**: :class:`~snntorch_egru.EGRURecord` of ``y, c, o, trace`` for every
          layer and step, ``[num_layers, T, B, H]`` (``[num_layers, B, T, H]`` with
          ``batch_first``), still in the autograd graph.

    Example::

        >>> import torch, snntorch_egru as se
        >>> rnn = se.EGRU(16, 64, num_layers=2, dropout=0.1)
        >>> x = torch.randn(50, 8, 16)
        >>> out, state = rnn(x)
        >>> out.shape, state.c.shape
        (torch.Size([50, 8, 64]), torch.Size([2, 8, 64]))
        >>> out, state, rec = rnn(x, return_internals=True)
        >>> activity = rec.o.mean()          # fraction of units firing
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        dropconnect: float = 0.0,
        zoneout: float = 0.0,
        dampening_factor: float = 0.7,
        pseudo_derivative_support: float = 1.0,
        thr_mean: float = 0.3,
        reset_mechanism: str = "subtract",
        learn_threshold: bool = True,
        spike_grad: Optional[SpikeFn] = None,
        *,
        surrogate_disable: bool = False,
        threshold_clamp: bool = True,
        init: str = "evnn",
        backend: str = "auto",
        device: Optional[Union[torch.device, str]] = None,
        dtype: Optional[torch.dtype] = None,
    ) -> None:
        super().__init__()
        self._setup(locals())  # every argument checked by one table (_layer_setup.OPTION_CHECKS)
        if self.dropout > 0.0 and self.num_layers == 1:
            warnings.warn(
                "dropout acts between stacked EGRU layers only (as in torch.nn.GRU), so a non-zero dropout "
                f"expects num_layers greater than 1, but got dropout={self.dropout} and num_layers=1",
                UserWarning, stacklevel=2)
        for k in range(self.num_layers):
            self._register_layer(f"_l{k}", self.input_size if k == 0 else self.hidden_size, device=device,
                                 dtype=dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-draw every layer's weights, biases and thresholds.

        Example::

            >>> import torch, snntorch_egru as se
            >>> rnn = se.EGRU(3, 4, num_layers=2, init="torch")
            >>> rnn.reset_parameters()
            >>> bool(rnn.weight_hh_l1.abs().max() <= 0.5)     # U(-1/sqrt(H), 1/sqrt(H))
            True
        """
        for k in range(self.num_layers):
            self._reset_layer(f"_l{k}")

    def layer_tensors(self, k: int) -> dict[str, Optional[torch.Tensor]]:
        """The five tensors of layer ``k``: ``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``, ``threshold``.

        The values are the module's own parameters (not copies); ``IndexError`` for
        ``k`` outside ``[0, num_layers)``.

        Example::

            >>> import torch, snntorch_egru as se
            >>> rnn = se.EGRU(3, 4, num_layers=2)
            >>> {name: tuple(t.shape) for name, t in rnn.layer_tensors(1).items()}
            {'weight_ih': (12, 4), 'weight_hh': (12, 4), 'bias_ih': (12,), 'bias_hh': (12,), 'threshold': (4,)}
        """
        if not 0 <= k < self.num_layers:
            raise IndexError(f"layer index must be in [0, {self.num_layers}), got {k}")
        return {name: getattr(self, f"{name}_l{k}") for name in LAYER_TENSOR_NAMES}

    def _check_state(self, state: Any, batch_shape: tuple[int, ...], ref: torch.Tensor) -> EGRUState:
        if isinstance(state, torch.Tensor):
            raise TypeError(
                "state must be an EGRUState(y, c, trace), got a single Tensor; "
                "to start from a torch.nn.GRU hidden state h0 pass EGRUState.from_gru_hidden(h0)"
            )
        if isinstance(state, EGRURecurrentState):
            raise TypeError(
                "state must be an EGRUState(y, c, trace) of snntorch_egru, got a Norse-flavour "
                "EGRURecurrentState(y, c, trace) (fields [B, H]); convert it with "
                "snntorch_egru.interop.layer_state_from_norse(state)"
            )
        if not isinstance(state, tuple) or len(state) != 3:
            raise TypeError(
                f"state must be an EGRUState(y, c, trace) (or None), got {type(state).__name__}"
            )
        expected = (self.num_layers, *batch_shape, self.hidden_size)
        y, c, tr = (_checks.state_tensor(f"state.{n}", s, expected, ref)
                    for n, s in zip(("y", "c", "trace"), state))
        return EGRUState(y, c, tr)

    def forward(
        self, x: torch.Tensor, state: Optional[EGRUState] = None, *extra: Any, return_internals: bool = False
    ) -> Union[Tuple[torch.Tensor, EGRUState], Tuple[torch.Tensor, EGRUState, EGRURecord]]:
        if extra:
            raise TypeError(
                f"EGRU.forward takes (x, state=None) positionally, got {2 + len(extra)} positional arguments; "
                "return_internals is keyword-only: call rnn(x, state, return_internals=True), and with "
                "torch.export / torch.onnx.export pass it as kwargs={'return_internals': True}")
        if not isinstance(return_internals, bool):
            raise TypeError(f"return_internals must be a bool, got {type(return_internals).__name__} "
                            f"{return_internals!r}")
        packed, lengths = None, None
        if isinstance(x, _packed.PackedSequence):  # variable-length batch, as torch.nn.GRU takes it
            packed = x
            x, lengths = _packed.unpack(packed, self.batch_first)
        if isinstance(x, torch.Tensor) and _checks.autocast_active(x):
            # autocast policy: the recurrence runs and returns in the parameters' dtype (float32
            # for a float32 model), as torch.nn.GRU does under CPU autocast
            x, state = in_param_dtype(x, state, self.weight_ih_l0, EGRUState)
            with _checks.float32_region(x):
                result = self._forward(x, state, return_internals, lengths)
        else:
            result = self._forward(x, state, return_internals, lengths)
        return result if packed is None else _packed.repack(result, packed, lengths, self.batch_first)

    def _time_first(self, x: torch.Tensor, state: Optional[EGRUState]) -> Tuple[torch.Tensor, EGRUState, bool]:
        """Checked ``([T, B, I] input, state of [num_layers, B, H] fields, unbatched)``."""
        ref = self.weight_ih_l0
        layout = "[B, T, input_size]" if self.batch_first else "[T, B, input_size]"
        _checks.tensor_input("x", x, (2, 3), self.input_size, ref, layout + " or [T, input_size] unbatched")
        unbatched = x.dim() == 2
        if unbatched:
            x = x.unsqueeze(1)
        elif self.batch_first:
            x = x.transpose(0, 1)
        if state is None:
            zeros = x.new_zeros(self.num_layers, x.shape[1], self.hidden_size)
            return x, EGRUState(zeros, zeros, zeros), unbatched
        state = self._check_state(state, () if unbatched else (x.shape[1],), ref)
        if unbatched:
            state = EGRUState(*(s.unsqueeze(1) for s in state))
        return x, state, unbatched

    def _layer_call(self, k: int, layer_in: torch.Tensor, state: EGRUState) -> LayerCall:
        """The :class:`~snntorch_egru.backends.LayerCall` of layer ``k`` (masks drawn here, one per call)."""
        p = self.layer_tensors(k)
        dc_mask = None
        if self.training and self.dropconnect > 0.0:
            dc_mask = F.dropconnect_mask(p["weight_hh"].detach(), self.dropconnect)
        T, B = layer_in.shape[0], layer_in.shape[1]
        zo_mask, zo_p = self._zoneout_args((T, B, self.hidden_size), layer_in)
        return LayerCall(
            x=layer_in, y0=state.y[k], c0=state.c[k], trace0=state.trace[k],
            weight_ih=p["weight_ih"], weight_hh=p["weight_hh"], bias_ih=p["bias_ih"],
            bias_hh=p["bias_hh"], threshold=self._effective_threshold(p["threshold"]),
            spike_fn=self.spike_grad, reset=self.reset_mechanism, dropconnect_mask=dc_mask,
            zoneout_mask=zo_mask, zoneout_p=zo_p, input_is_events=k > 0, layer_index=k,
        )

    def _forward(self, x: torch.Tensor, state: Optional[EGRUState], return_internals: bool,
                 lengths: Optional[torch.Tensor] = None
                 ) -> Union[Tuple[torch.Tensor, EGRUState], Tuple[torch.Tensor, EGRUState, EGRURecord]]:
        x, state, unbatched = self._time_first(x, state)
        layer_in, finals, recs = x, [], []
        for k in range(self.num_layers):
            seq = self._run_layer(self._layer_call(k, layer_in, state))
            final, seq = _packed.final_step(seq, (state.y[k], state.c[k], state.trace[k]), lengths)
            finals.append(final)
            if return_internals:
                recs.append(seq)
            layer_in = seq.y
            if k < self.num_layers - 1 and self.dropout > 0.0 and self.training:
                layer_in = nn.functional.dropout(layer_in, self.dropout, training=True)
        out = layer_in  # the last layer's events (dropout acts only between layers)
        new_state = EGRUState(*(torch.stack(f) for f in zip(*finals)))
        record = None
        if return_internals:
            record = EGRURecord(*(torch.stack([getattr(r, f) for r in recs]) for f in EGRURecord._fields))
        return self._user_layout(out, new_state, record, unbatched)

    def _user_layout(self, out: torch.Tensor, state: EGRUState, record: Optional[EGRURecord], unbatched: bool
                     ) -> Union[Tuple[torch.Tensor, EGRUState], Tuple[torch.Tensor, EGRUState, EGRURecord]]:
        """Time-first results back in the caller's layout (unbatched, or batch-first)."""
        if unbatched:
            out = out.squeeze(1)
            state = EGRUState(*(s.squeeze(1) for s in state))
            if record is not None:
                record = EGRURecord(*(r.squeeze(2) for r in record))
        elif self.batch_first:
            out = out.transpose(0, 1)
            if record is not None:
                record = EGRURecord(*(r.transpose(1, 2) for r in record))
        if record is not None:
            return out, state, record
        return out, state

    @classmethod
    def from_gru(cls, gru: nn.GRU, **kwargs: Any) -> "EGRU":
        """An EGRU whose outputs equal ``gru``'s.

        Uses ``reset_mechanism="none"`` and thresholds of -2 (no clamp), so every
        unit fires at every step (``|c_hat| <= 1 < 2``) and ``y = c = h``; the
        pseudo-derivative is then zero, so gradients equal the GRU's too. Start
        it from a GRU hidden state ``h0`` with
        ``EGRUState.from_gru_hidden(h0)``. To fine-tune as a sparse EGRU, raise the
        thresholds and switch ``reset_mechanism`` afterwards.

        Args:
            gru: a ``torch.nn.GRU`` (unidirectional, no projections).
            **kwargs: further EGRU options (e.g. ``backend``); ``num_layers`` and ``bias``, if
                given, must equal ``gru``'s (``ValueError`` otherwise).

        Example::

            >>> import torch, snntorch_egru as se
            >>> gru = torch.nn.GRU(4, 8, num_layers=2)
            >>> egru = se.EGRU.from_gru(gru)
            >>> x = torch.randn(10, 3, 4)
            >>> torch.allclose(egru(x)[0], gru(x)[0], atol=1e-6)
            True
        """
        if not isinstance(gru, nn.GRU):
            raise TypeError(f"gru must be a torch.nn.GRU, got {type(gru).__name__}")
        if gru.bidirectional or getattr(gru, "proj_size", 0):
            raise ValueError("gru must be unidirectional without projections (bidirectional=False)")
        for name in ("num_layers", "bias"):  # the copied weights fix these: refuse another value
            if name in kwargs and kwargs[name] != getattr(gru, name):
                raise ValueError(
                    f"from_gru copies every layer of gru, so {name} must equal gru.{name}={getattr(gru, name)!r}, "
                    f"got {name}={kwargs[name]!r}; drop the {name} argument (or build the torch.nn.GRU with "
                    f"{name}={kwargs[name]!r})")
        ref = gru.weight_ih_l0
        options = dict(
            num_layers=gru.num_layers, bias=gru.bias, batch_first=gru.batch_first, dropout=gru.dropout,
            reset_mechanism="none", threshold_clamp=False, device=ref.device, dtype=ref.dtype,
        )
        options.update(kwargs)
        egru = cls(gru.input_size, gru.hidden_size, **options)
        with torch.no_grad():
            for k in range(gru.num_layers):
                for name in ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if gru.bias else ()):
                    getattr(egru, f"{name}_l{k}").copy_(getattr(gru, f"{name}_l{k}"))
                getattr(egru, f"threshold_l{k}").fill_(-2.0)
        return egru

    def extra_repr(self) -> str:
        s = self._common_repr()
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.backend != "auto":
            s += f", backend={self.backend!r}"
        return s

