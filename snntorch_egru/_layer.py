"""The sequence layer :class:`~snntorch_egru.EGRU` and what every EGRU module runs per call.

:class:`EGRULayerBase` (the base of :class:`~snntorch_egru.EGRU`, :class:`~snntorch_egru.EGRUCell` and the
Norse flavour) holds the per-call half of the modules: the input and state checks, the autocast policy,
the threshold clamp, the zoneout arguments, the :class:`~snntorch_egru.backends.LayerCall` of a layer
(built here for every module) and the run through the backend registry with the layer observers. The
construction half (argument table, parameters, initialisation) is ``_layer_setup``. One forward call of
:class:`~snntorch_egru.EGRU` runs this room, ``backends``, and then the chosen backend.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Callable, ContextManager, Iterable, Optional, Sequence, Tuple, Type, Union, overload

import torch
from torch import nn

from . import _checks, _packed
from . import functional as F
from ._layer_setup import LAYER_TENSOR_NAMES, EGRUBase
from .backends import LayerCall, resolve_backend
from .state import EGRURecord, EGRURecurrentState, EGRUState
from .surrogate import kernel_params

__all__ = ["EGRU"]

SpikeFn = Callable[[torch.Tensor], torch.Tensor]
_LOW_PRECISION = (torch.float16, torch.bfloat16)


# ------------------------------------------------------------------------------------------
# input and state checks (every message names the argument, what was expected and what was given)


def autocast_active(x: torch.Tensor) -> bool:
    """Whether autocast is enabled for ``x``'s device type."""
    dev = x.device.type
    if dev not in ("cpu", "cuda"):
        return False
    try:
        return torch.is_autocast_enabled(dev)
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled() if dev == "cpu" else torch.is_autocast_enabled()


def float32_region(x: torch.Tensor) -> ContextManager[Any]:
    """Autocast policy of the EGRU modules: the recurrence runs (and returns) in the parameters'
    dtype with autocast switched off, as ``torch.nn.GRU`` does under CPU autocast."""
    if autocast_active(x):
        return torch.autocast(device_type=x.device.type, enabled=False)
    return contextlib.nullcontext()


@overload
def to_param_dtype(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor: ...
@overload
def to_param_dtype(x: None, ref: torch.Tensor) -> None: ...
@overload
def to_param_dtype(x: Optional[torch.Tensor], ref: torch.Tensor) -> Optional[torch.Tensor]: ...
def to_param_dtype(x: Optional[torch.Tensor], ref: torch.Tensor) -> Optional[torch.Tensor]:
    """Under autocast, a lower-precision floating input is cast to the parameters' dtype."""
    if x is not None and x.dtype != ref.dtype and x.dtype in _LOW_PRECISION and autocast_active(x):
        return x.to(ref.dtype)
    return x


_STATE_ORDER_FIX = (
    "EGRUCell.forward(input_, y, c) takes the previous events y second and the state c third "
    "(as snn.RLeaky(cur, spk, mem), not snn.Leaky(cur, mem)): call y, c = cell(input_, y, c), "
    "starting from y, c = cell.init_egru(), or cell(input_) to continue from the stored state"
)

#: EGRUCell run by a backward pass (checkpoint recomputation) on the state it stores on itself.
RECOMPUTED_STORED_STATE = (
    "EGRUCell was run again during a backward pass (torch.utils.checkpoint recomputing a step) while "
    "reading the state it stores on itself, which by now is a later step's state, so the gradients would "
    "be wrong. Pass the state explicitly: build the cell with init_hidden=False and checkpoint "
    "y, c = checkpoint(cell, x_t, y, c, use_reentrant=False), starting from y, c = cell.init_egru()"
)


def cell_state_order(y: Any, stored_y: torch.Tensor, stored_c: torch.Tensor) -> None:
    """Catch the ``snn.Leaky`` idiom ``y, mem = cell(x, mem)`` where it can be seen: the ``c`` the
    cell returned (``stored_c``) passed back as ``y``, or the ``(y, c)`` tuple of ``init_egru()``."""
    if isinstance(y, tuple):
        raise TypeError(
            f"y must be a torch.Tensor (the previous events), got a tuple of {len(y)}; "
            "init_egru() returns (y, c): unpack it, y, c = cell.init_egru(). " + _STATE_ORDER_FIX
        )
    if y is not None and y is stored_c and y is not stored_y and stored_c.numel() > 0:
        raise TypeError(
            "the tensor passed as y is the internal state c that this cell returned "
            "(the snn.Leaky idiom y, mem = cell(input_, mem)). " + _STATE_ORDER_FIX
        )


def tensor_input(
    name: str, x: Any, ranks: Sequence[int], feature_size: int, ref: torch.Tensor, layout: str
) -> torch.Tensor:
    """Check an input tensor's type, rank, last dimension, dtype and device against a parameter ``ref``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {layout}, got {type(x).__name__}")
    if x.dim() not in ranks:
        raise ValueError(
            f"{name} must have {' or '.join(str(r) for r in ranks)} dimensions ({layout}), "
            f"got {x.dim()} dimensions with shape {tuple(x.shape)}"
        )
    if x.shape[-1] != feature_size:
        raise ValueError(
            f"{name} must have input_size={feature_size} features in its last dimension ({layout}), "
            f"got shape {tuple(x.shape)}"
        )
    return same_place(name, x, ref)


def same_place(name: str, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``x`` if it has the parameters' dtype (or autocast's) and device, else a clear error."""
    same_dtype(name, x, ref)
    same_device(name, x, ref)
    return x


def same_dtype(name: str, x: torch.Tensor, ref: torch.Tensor) -> None:
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor ({ref.dtype}), got dtype {x.dtype}")
    if x.dtype != ref.dtype and not (x.dtype in _LOW_PRECISION and autocast_active(x)):
        raise TypeError(
            f"{name} has dtype {x.dtype} but the module's parameters are {ref.dtype}; "
            f"convert one of them (e.g. module.to({ref.dtype}) or {name}.to({ref.dtype}))"
        )


def same_device(name: str, x: torch.Tensor, ref: torch.Tensor) -> None:
    if x.device != ref.device:
        raise ValueError(
            f"{name} is on device {x.device} but the module's parameters are on {ref.device}; "
            f"move one of them (e.g. module.to({str(x.device)!r}))"
        )


def state_tensor(name: str, s: Any, expected_shape: tuple[int, ...], ref: torch.Tensor) -> torch.Tensor:
    why = " to match the input's batch size and hidden_size"
    return same_place(name, _checks.tensor_of_shape(name, s, expected_shape, why), ref)


def in_param_dtype(x: torch.Tensor, state: Any, ref: torch.Tensor, state_type: Type[Any]) -> Tuple[torch.Tensor, Any]:
    """Autocast policy: a lower-precision input (and a state of ``state_type``) cast to the parameters' dtype."""
    x = to_param_dtype(x, ref)
    if isinstance(state, state_type):
        state = state_type(
            *(to_param_dtype(s, ref) if isinstance(s, torch.Tensor) else s for s in tuple.__iter__(state))
        )
    return x, state


def nan_threshold_propagates(theta: torch.Tensor, out: F.EGRUStepOutput) -> F.EGRUStepOutput:
    """``out`` with NaN in ``y``, ``c`` and ``trace`` of every unit whose threshold is NaN.

    ``H(c_hat - NaN)`` is 0, so a NaN threshold would otherwise silence its unit without a trace
    under ``reset="zero"`` or ``"none"``; ``torch.nn.GRU`` propagates a NaN weight into its outputs,
    and so does this. Eager CPU calls skip the sum when no threshold is NaN (a check of ``H`` values,
    no device sync); traced, compiled or CUDA calls always add the (zero) term.
    """
    eager_cpu = (
        theta.device.type == "cpu"
        and not torch.compiler.is_compiling()
        and not torch.jit.is_tracing()
        and torch._C._functorch.maybe_current_level() is None
    )
    if eager_cpu and not bool(theta.isnan().any()):
        return out
    term = torch.where(theta.isnan(), theta, torch.zeros_like(theta))
    return out._replace(y=out.y + term, c=out.c + term, trace=out.trace + term)


def _same_attrs(old: Optional[dict], new: dict) -> bool:
    """Whether a spike function's attributes still equal the copy taken with its kernel parameters (a tensor
    attribute, whose ``==`` is elementwise, counts as changed)."""
    try:
        return bool(old == new)
    except (RuntimeError, TypeError, ValueError):
        return False


# ------------------------------------------------------------------------------------------
# the per-call half of every EGRU module


class EGRULayerBase(EGRUBase):
    """:class:`~snntorch_egru._layer_setup.EGRUBase` plus what each forward call runs."""

    # modules without these options (the Norse flavour) run without them
    dropconnect: float = 0.0
    zoneout: float = 0.0
    # the spike function's kernel parameters, kept per spike function (see _kernel_params)
    _kp_cache: Optional[Tuple[Any, Any, Optional[Tuple[float, float]]]] = None

    def _effective_threshold(self, theta: torch.Tensor) -> torch.Tensor:
        # Thresholds are kept in [0, 1] (as the official code does) by a clamp in the forward
        # pass, visible to autograd: values inside [0, 1] get their exact gradient.
        return theta.clamp(0.0, 1.0) if self.threshold_clamp else theta

    def _zoneout_args(self, shape: Tuple[int, ...], ref: torch.Tensor) -> Tuple[Optional[torch.Tensor], float]:
        """``(zoneout_mask, zoneout_p)`` of one call: masks in training, the expectation in eval."""
        if self.zoneout <= 0.0:
            return None, 0.0
        if self.training:
            return F.zoneout_masks(shape, self.zoneout, dtype=ref.dtype, device=ref.device), 0.0
        return None, self.zoneout

    def _kernel_params(self) -> Optional[Tuple[float, float]]:
        """``(gamma, epsilon)`` of ``self.spike_grad`` for the fast backends, asked once per spike function
        (and again when one of its attributes changes)."""
        fn = self.spike_grad
        attrs = getattr(fn, "__dict__", None)
        hit = self._kp_cache
        if hit is not None and hit[0] is fn and attrs is not None and _same_attrs(hit[1], attrs):
            return hit[2]
        params = kernel_params(fn)
        self._kp_cache = (fn, dict(attrs) if attrs is not None else None, params)
        return params

    def _layer_call(
        self,
        x: torch.Tensor,
        state: Tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        tensors: Iterable[Optional[torch.Tensor]],
        layer_index: int = 0,
    ) -> LayerCall:
        """The :class:`~snntorch_egru.backends.LayerCall` of one layer: ``x`` ``[T, B, I]``, ``state``
        ``(y0, c0, trace0)`` of ``[B, H]``, ``tensors`` the layer's five tensors (``LAYER_TENSOR_NAMES``).
        The masks of this call are drawn here (DropConnect and zoneout in training)."""
        w_ih, w_hh, b_ih, b_hh, theta = tensors
        assert w_ih is not None and w_hh is not None and theta is not None
        dc_mask = None
        if self.training and self.dropconnect > 0.0:
            dc_mask = F.dropconnect_mask(w_hh.detach(), self.dropconnect)
        zo_mask, zo_p = self._zoneout_args((x.shape[0], x.shape[1], self.hidden_size), x)
        return LayerCall(
            x=x,
            y0=state[0],
            c0=state[1],
            trace0=state[2],
            weight_ih=w_ih,
            weight_hh=w_hh,
            bias_ih=b_ih,
            bias_hh=b_hh,
            threshold=self._effective_threshold(theta),
            spike_fn=self.spike_grad,
            reset=self.reset_mechanism,
            dropconnect_mask=dc_mask,
            zoneout_mask=zo_mask,
            zoneout_p=zo_p,
            input_is_events=layer_index > 0,
            layer_index=layer_index,
            kernel_params=self._kernel_params(),
        )

    def _run_layer(self, call: LayerCall) -> F.EGRUStepOutput:
        """Run one layer call through the backend registry and tell the observers."""
        out = nan_threshold_propagates(call.threshold, resolve_backend(self.backend, call).run(call))
        observers = self._layer_observers
        if observers:
            for fn in tuple(observers.values()):
                fn(self, call, out)
        return out


class EGRU(EGRULayerBase):
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

    # the first layer's input weight, registered by name in EGRUBase._register_layer (every layer has one)
    weight_ih_l0: torch.Tensor

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True, batch_first: bool = False,
        dropout: float = 0.0, dropconnect: float = 0.0, zoneout: float = 0.0, dampening_factor: float = 0.7,
        pseudo_derivative_support: float = 1.0, thr_mean: float = 0.3, reset_mechanism: str = "subtract",
        learn_threshold: bool = True, spike_grad: Optional[SpikeFn] = None, *, surrogate_disable: bool = False,
        threshold_clamp: bool = True, init: str = "evnn", backend: str = "auto",
        device: Optional[Union[torch.device, str]] = None, dtype: Optional[torch.dtype] = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self._setup(locals())  # every argument checked by one table (_layer_setup.OPTION_CHECKS)
        if self.dropout > 0.0 and self.num_layers == 1:
            warnings.warn(
                "dropout acts between stacked EGRU layers only (as in torch.nn.GRU), so a non-zero dropout "
                f"expects num_layers greater than 1, but got dropout={self.dropout} and num_layers=1",
                UserWarning,
                stacklevel=2,
            )
        for k in range(self.num_layers):
            self._register_layer(f"_l{k}", self.input_size if k == 0 else self.hidden_size, device=device, dtype=dtype)
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
            raise TypeError(f"state must be an EGRUState(y, c, trace) (or None), got {type(state).__name__}")
        expected = (self.num_layers, *batch_shape, self.hidden_size)
        y, c, tr = (state_tensor(f"state.{n}", s, expected, ref) for n, s in zip(("y", "c", "trace"), state))
        return EGRUState(y, c, tr)

    def forward(
        self, x: torch.Tensor, state: Optional[EGRUState] = None, *extra: Any, return_internals: bool = False
    ) -> Union[Tuple[torch.Tensor, EGRUState], Tuple[torch.Tensor, EGRUState, EGRURecord]]:
        if extra:
            raise TypeError(
                f"EGRU.forward takes (x, state=None) positionally, got {2 + len(extra)} positional arguments; "
                "return_internals is keyword-only: call rnn(x, state, return_internals=True), and with "
                "torch.export / torch.onnx.export pass it as kwargs={'return_internals': True}"
            )
        if not isinstance(return_internals, bool):
            raise TypeError(
                f"return_internals must be a bool, got {type(return_internals).__name__} {return_internals!r}"
            )
        packed, lengths = None, None
        if isinstance(x, _packed.PackedSequence):  # variable-length batch, as torch.nn.GRU takes it
            packed = x
            x, lengths = _packed.unpack(packed, self.batch_first)
        if isinstance(x, torch.Tensor) and autocast_active(x):
            # autocast policy: the recurrence runs and returns in the parameters' dtype (float32
            # for a float32 model), as torch.nn.GRU does under CPU autocast
            x, state = in_param_dtype(x, state, self.weight_ih_l0, EGRUState)
            with float32_region(x):
                result = self._forward(x, state, return_internals, lengths)
        else:
            result = self._forward(x, state, return_internals, lengths)
        return result if packed is None else _packed.repack(result, packed, lengths, self.batch_first)

    def _time_first(self, x: torch.Tensor, state: Optional[EGRUState]) -> Tuple[torch.Tensor, EGRUState, bool]:
        """Checked ``([T, B, I] input, state of [num_layers, B, H] fields, unbatched)``."""
        ref = self.weight_ih_l0
        layout = "[B, T, input_size]" if self.batch_first else "[T, B, input_size]"
        tensor_input("x", x, (2, 3), self.input_size, ref, layout + " or [T, input_size] unbatched")
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

    def _forward(
        self,
        x: torch.Tensor,
        state: Optional[EGRUState],
        return_internals: bool,
        lengths: Optional[torch.Tensor] = None,
    ) -> Union[Tuple[torch.Tensor, EGRUState], Tuple[torch.Tensor, EGRUState, EGRURecord]]:
        x, state, unbatched = self._time_first(x, state)
        layer_in, finals, recs = x, [], []
        for k in range(self.num_layers):
            initial = (state.y[k], state.c[k], state.trace[k])
            seq = self._run_layer(self._layer_call(layer_in, initial, self.layer_tensors(k).values(), k))
            if lengths is not None:  # a packed batch: each sample's own last step
                final, seq = _packed.final_step(seq, initial, lengths)
            else:
                final = (seq.y[-1], seq.c[-1], seq.trace[-1]) if layer_in.shape[0] > 0 else initial
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

    def _user_layout(
        self, out: torch.Tensor, state: EGRUState, record: Optional[EGRURecord], unbatched: bool
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
        proj_size: int = getattr(gru, "proj_size", 0)
        if gru.bidirectional or proj_size:
            raise ValueError("gru must be unidirectional without projections (bidirectional=False)")
        for name in ("num_layers", "bias"):  # the copied weights fix these: refuse another value
            if name in kwargs and kwargs[name] != getattr(gru, name):
                raise ValueError(
                    f"from_gru copies every layer of gru, so {name} must equal gru.{name}={getattr(gru, name)!r}, "
                    f"got {name}={kwargs[name]!r}; drop the {name} argument (or build the torch.nn.GRU with "
                    f"{name}={kwargs[name]!r})"
                )
        ref = gru.weight_ih_l0
        options: dict[str, Any] = dict(
            num_layers=gru.num_layers,
            bias=gru.bias,
            batch_first=gru.batch_first,
            dropout=gru.dropout,
            reset_mechanism="none",
            threshold_clamp=False,
            device=ref.device,
            dtype=ref.dtype,
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
