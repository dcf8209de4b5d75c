"""Moving models between flavours, and snnTorch-side tooling around the EGRU.

* **Parameters across flavours.** :class:`~snntorch_egru.EGRUCell`,
  :class:`~snntorch_egru.norse.EGRURecurrentCell` and
  :class:`~snntorch_egru.norse.EGRURecurrent` name their tensors ``weight_ih``,
  ``weight_hh``, ``bias_ih``, ``bias_hh``, ``threshold``; :class:`~snntorch_egru.EGRU`
  adds the layer suffix (``weight_ih_l0``, ...). :func:`cell_to_layer_state_dict`
  and :func:`layer_to_cell_state_dict` rename keys; :func:`copy_parameters` copies
  the five tensors between any two of these modules; :func:`to_norse` and
  :func:`to_snntorch` build the other flavour's twin (tensors *and* settings).
* **States across flavours.** :func:`norse_state_from_layer` and
  :func:`layer_state_from_norse` convert between ``EGRU``'s
  ``EGRUState(y, c, trace)`` (``[L, B, H]``) and the Norse ``EGRURecurrentState(y, c, trace)`` (``[B, H]``).
* **Truncated BPTT.** :func:`truncated_bptt` runs a long sequence in windows,
  detaching the state of EGRU cells, snnTorch neurons and explicit (Norse/EGRU)
  states at every window border.
* **Event recording and raster plots.** :class:`EventRecorder` collects the
  time-first events of every EGRU module (and snnTorch neuron) in a model;
  :func:`raster_plot` draws them with ``snntorch.spikeplot.raster``.

Example::

    >>> import torch, snntorch_egru as se
    >>> from snntorch_egru import interop
    >>> from snntorch_egru.norse import EGRURecurrentCell
    >>> layer = se.EGRU(3, 8)
    >>> cell = EGRURecurrentCell(3, 8)
    >>> cell.load_state_dict(interop.layer_to_cell_state_dict(layer.state_dict()))
    <All keys matched successfully>
    >>> layer.load_state_dict(interop.cell_to_layer_state_dict(cell.state_dict()))
    <All keys matched successfully>
"""

from __future__ import annotations

import re
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from ._layer_setup import LAYER_TENSOR_NAMES
from ._recorder import EventRecorder, raster_plot
from ._tbptt import TBPTTResult, truncated_bptt
from .modules import EGRU, EGRUCell
from .norse import EGRUParameters, EGRURecurrent, EGRURecurrentCell, NorseThreshold, _NorseEGRUBase
from .state import EGRURecurrentState as NorseEGRUState
from .state import EGRUState
from .surrogate import EGRUSurrogate

__all__ = [
    "PARAMETER_NAMES",
    "cell_to_layer_state_dict",
    "layer_to_cell_state_dict",
    "egru_tensors",
    "copy_parameters",
    "to_norse",
    "to_snntorch",
    "norse_state_from_layer",
    "layer_state_from_norse",
    "TBPTTResult",
    "truncated_bptt",
    "EventRecorder",
    "raster_plot",
]

#: The five tensors of one EGRU layer, by their single-layer (cell) names.
PARAMETER_NAMES = LAYER_TENSOR_NAMES

_CELL_TYPES = (EGRUCell, _NorseEGRUBase)


def _layer_index(layer: Any) -> int:
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise TypeError(f"layer must be a non-negative int, got {type(layer).__name__} {layer!r}")
    if layer < 0:
        raise ValueError(f"layer must be a non-negative int, got {layer}")
    return layer


def _prefix(prefix: Any) -> str:
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str (e.g. 'rnn.'), got {type(prefix).__name__}")
    return prefix


def cell_to_layer_state_dict(
    state_dict: Mapping[str, torch.Tensor], layer: int = 0, *, prefix: str = ""
) -> Dict[str, torch.Tensor]:
    """Rename a cell's keys (``weight_ih``, ...) to an ``EGRU`` layer's (``weight_ih_l{layer}``, ...).

    Works for the ``state_dict`` of :class:`~snntorch_egru.EGRUCell`,
    :class:`~snntorch_egru.norse.EGRURecurrentCell` and
    :class:`~snntorch_egru.norse.EGRURecurrent`. Keys other than the five
    EGRU tensors under ``prefix`` are kept unchanged.

    Args:
        state_dict: the cell's ``state_dict()`` (or a model's containing one).
        layer: target layer index ``k`` (suffix ``_l{k}``). Default: 0.
        prefix: the cell's key prefix inside a larger model, e.g. ``"rnn."``. Default: ``""``.

    Returns:
        A new ``dict`` (tensors are shared, not copied).

    Raises:
        KeyError: ``weight_ih``, ``weight_hh`` or ``threshold`` is missing under ``prefix``.

    Example::

        >>> import snntorch_egru as se
        >>> from snntorch_egru.interop import cell_to_layer_state_dict
        >>> sd = cell_to_layer_state_dict(se.EGRUCell(3, 8).state_dict())
        >>> sorted(sd)
        ['bias_hh_l0', 'bias_ih_l0', 'threshold_l0', 'weight_hh_l0', 'weight_ih_l0']
        >>> _ = se.EGRU(3, 8).load_state_dict(sd)
    """
    layer = _layer_index(layer)
    prefix = _prefix(prefix)
    _require(state_dict, [prefix + n for n in ("weight_ih", "weight_hh", "threshold")], "cell")
    out: Dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        name = key[len(prefix) :] if key.startswith(prefix) else None
        if name in PARAMETER_NAMES:
            out[f"{prefix}{name}_l{layer}"] = value
        else:
            out[key] = value
    return out


def layer_to_cell_state_dict(
    state_dict: Mapping[str, torch.Tensor], layer: int = 0, *, prefix: str = ""
) -> Dict[str, torch.Tensor]:
    """Pick layer ``layer`` of an ``EGRU`` ``state_dict`` and drop its ``_l{layer}`` suffix.

    The result loads into :class:`~snntorch_egru.EGRUCell`,
    :class:`~snntorch_egru.norse.EGRURecurrentCell` or
    :class:`~snntorch_egru.norse.EGRURecurrent`. The other layers' EGRU tensors
    under ``prefix`` are left out; unrelated keys are kept unchanged.

    Args:
        state_dict: an ``EGRU``'s ``state_dict()`` (or a model's containing one).
        layer: which layer to take. Default: 0.
        prefix: the layer's key prefix inside a larger model. Default: ``""``.

    Returns:
        A new ``dict`` (tensors are shared, not copied).

    Raises:
        KeyError: the layer's tensors are not in ``state_dict`` (the message lists
            the layers that are).

    Example::

        >>> import snntorch_egru as se
        >>> from snntorch_egru.interop import layer_to_cell_state_dict
        >>> sd = layer_to_cell_state_dict(se.EGRU(3, 8, num_layers=2).state_dict(), layer=1)
        >>> sorted(sd)
        ['bias_hh', 'bias_ih', 'threshold', 'weight_hh', 'weight_ih']
    """
    layer = _layer_index(layer)
    prefix = _prefix(prefix)
    pattern = re.compile("^" + re.escape(prefix) + "(" + "|".join(PARAMETER_NAMES) + r")_l(\d+)$")
    found = sorted({int(m.group(2)) for m in map(pattern.match, state_dict) if m})
    if layer not in found:
        raise KeyError(
            f"layer {layer} not found: the state_dict has EGRU layer tensors "
            f"(keys '{prefix}weight_ih_l<k>', ...) for layers {found}"
        )
    out: Dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        m = pattern.match(key)
        if m is None:
            out[key] = value
        elif int(m.group(2)) == layer:
            out[prefix + m.group(1)] = value
    return out


def _require(state_dict: Mapping[str, Any], keys: Sequence[str], what: str) -> None:
    missing = [k for k in keys if k not in state_dict]
    if missing:
        raise KeyError(
            f"state_dict is not an EGRU {what} state_dict: missing {missing}; it has keys {sorted(state_dict)[:12]}"
        )


def egru_tensors(module: nn.Module, layer: int = 0) -> Dict[str, Optional[torch.Tensor]]:
    """The five tensors of one EGRU layer of ``module``, by their cell names.

    Args:
        module: :class:`~snntorch_egru.EGRU`, :class:`~snntorch_egru.EGRUCell`,
            :class:`~snntorch_egru.norse.EGRURecurrentCell` or
            :class:`~snntorch_egru.norse.EGRURecurrent`.
        layer: layer index (only ``EGRU`` has more than layer 0).

    Returns:
        ``{"weight_ih", "weight_hh", "bias_ih", "bias_hh", "threshold"}`` mapped to
        the module's own tensors (biases ``None`` with ``bias=False``).

    Example::

        >>> import snntorch_egru as se
        >>> from snntorch_egru.interop import egru_tensors
        >>> egru_tensors(se.EGRU(3, 8))["weight_hh"].shape
        torch.Size([24, 8])
    """
    layer = _layer_index(layer)
    if isinstance(module, EGRU):
        if layer >= module.num_layers:
            raise ValueError(f"layer must be < num_layers={module.num_layers} of the EGRU, got {layer}")
        return module.layer_tensors(layer)
    if isinstance(module, _CELL_TYPES):
        if layer != 0:
            raise ValueError(f"layer must be 0 for a single-layer {type(module).__name__}, got {layer}")
        return {n: getattr(module, n) for n in PARAMETER_NAMES}
    raise TypeError(
        f"module must be an EGRU, EGRUCell, EGRURecurrentCell or EGRURecurrent, got {type(module).__name__}"
    )


@torch.no_grad()
def copy_parameters(dst: nn.Module, src: nn.Module, *, dst_layer: int = 0, src_layer: int = 0) -> nn.Module:
    """Copy one EGRU layer's five tensors from ``src`` into ``dst`` (any two flavours).

    Only the tensors are copied; hyper-parameters (reset mechanism, surrogate,
    threshold clamp) stay as ``dst`` was built, so build it with the same ones
    for equal outputs.

    Args:
        dst: module to write into (``EGRU``, ``EGRUCell``, ``EGRURecurrentCell``, ``EGRURecurrent``).
        src: module to read from (same kinds).
        dst_layer: layer of ``dst`` (``EGRU`` only). Default: 0.
        src_layer: layer of ``src`` (``EGRU`` only). Default: 0.

    Returns:
        ``dst``.

    Raises:
        ValueError: sizes differ or only one of them has biases.

    Example::

        >>> import snntorch_egru as se
        >>> from snntorch_egru.interop import copy_parameters
        >>> from snntorch_egru.norse import EGRURecurrent
        >>> rnn = se.EGRU(3, 8, num_layers=2)
        >>> top = copy_parameters(EGRURecurrent(8, 8), rnn, src_layer=1)
        >>> bool((top.weight_hh == rnn.weight_hh_l1).all())
        True
    """
    d = egru_tensors(dst, dst_layer)
    s = egru_tensors(src, src_layer)
    for name in PARAMETER_NAMES:
        a, b = d[name], s[name]
        if (a is None) != (b is None):
            raise ValueError(
                f"{name}: dst has {'no' if a is None else 'a'} bias but src has {'no' if b is None else 'a'} bias; "
                "build both with the same bias= setting"
            )
        if a is None or b is None:  # both None (checked above)
            continue
        if a.shape != b.shape:
            raise ValueError(
                f"{name}: dst expects shape {list(a.shape)} but src has {list(b.shape)} "
                "(input_size / hidden_size differ)"
            )
        a.copy_(b)
    return dst


def _norse_parameters(src: Union[EGRU, EGRUCell]) -> EGRUParameters:
    fn = src.spike_grad
    if isinstance(fn, EGRUSurrogate):
        return EGRUParameters(
            method="egru", dampening_factor=fn.gamma, pseudo_derivative_support=fn.epsilon, reset=src.reset_mechanism
        )
    if isinstance(fn, NorseThreshold):
        return EGRUParameters(
            method=fn.method,
            alpha=fn.alpha,
            reset=src.reset_mechanism,
            dampening_factor=src.dampening_factor,
            pseudo_derivative_support=src.pseudo_derivative_support,
        )
    return EGRUParameters(
        method=fn,
        reset=src.reset_mechanism,
        dampening_factor=src.dampening_factor,
        pseudo_derivative_support=src.pseudo_derivative_support,
    )


def _ref_tensor(module: nn.Module) -> torch.Tensor:
    return egru_tensors(module, 0)["weight_hh"]  # type: ignore[return-value]


def to_norse(
    module: Union[EGRU, EGRUCell], layer: int = 0, *, time_layer: bool = False
) -> Union[EGRURecurrentCell, EGRURecurrent]:
    """The Norse-flavour twin of an ``EGRUCell`` or of one layer of an ``EGRU``.

    Copies the five tensors and the settings that define the outputs: reset
    mechanism, surrogate (``EGRUSurrogate`` -> ``method="egru"`` with its gamma
    and epsilon, a :class:`~snntorch_egru.norse.NorseThreshold` -> its Norse
    method, any other spike function -> ``method=<that callable>``), threshold
    clamp, bias, trainable or fixed thresholds, dtype and device. The result
    gives outputs and gradients equal to the source's.

    The Norse flavour has no DropConnect and no zoneout: a source using them
    raises ``ValueError`` (zoneout also changes eval-mode outputs).

    Args:
        module: :class:`~snntorch_egru.EGRUCell` or :class:`~snntorch_egru.EGRU`.
        layer: which layer of an ``EGRU``. Default: 0.
        time_layer: build an :class:`~snntorch_egru.norse.EGRURecurrent` (sequences)
            instead of an :class:`~snntorch_egru.norse.EGRURecurrentCell`. Default: False.

    Example::

        >>> import torch, snntorch_egru as se
        >>> from snntorch_egru.interop import to_norse
        >>> gru = torch.nn.GRU(3, 8)
        >>> twin = to_norse(se.EGRU.from_gru(gru), time_layer=True)
        >>> x = torch.randn(10, 2, 3)
        >>> torch.allclose(twin(x)[0], gru(x)[0], atol=1e-6)
        True
    """
    if not isinstance(module, (EGRU, EGRUCell)):
        raise TypeError(f"module must be an EGRU or EGRUCell, got {type(module).__name__}")
    if not isinstance(time_layer, bool):
        raise TypeError(f"time_layer must be a bool, got {type(time_layer).__name__} {time_layer!r}")
    if module.dropconnect or module.zoneout:
        raise ValueError(
            "the Norse flavour has no DropConnect or zoneout, but module has "
            f"dropconnect={module.dropconnect}, zoneout={module.zoneout}; build the source with 0 for both"
        )
    tensors = egru_tensors(module, layer)
    input_size = tensors["weight_ih"].shape[1]  # type: ignore[union-attr]
    cls = EGRURecurrent if time_layer else EGRURecurrentCell
    kwargs: Dict[str, Any] = {}
    if time_layer and isinstance(module, EGRU):
        kwargs["backend"] = module.backend
    ref = tensors["weight_hh"]
    dst = cls(
        input_size,
        module.hidden_size,
        _norse_parameters(module),
        bias=module.bias,
        learn_threshold=isinstance(tensors["threshold"], nn.Parameter),
        threshold_clamp=module.threshold_clamp,
        init=module.init,
        **kwargs,
    )
    dst = dst.to(dtype=ref.dtype, device=ref.device)  # type: ignore[union-attr]
    return copy_parameters(dst, module, src_layer=layer)  # type: ignore[return-value]


def to_snntorch(
    module: Union[EGRURecurrentCell, EGRURecurrent], *, sequence: bool = False, **kwargs: Any
) -> Union[EGRUCell, EGRU]:
    """The snnTorch-flavour twin of a Norse-flavour module: an ``EGRUCell`` or a one-layer ``EGRU``.

    Copies the five tensors and the settings that define the outputs (``p.reset``
    -> ``reset_mechanism``; ``p.method`` ``"egru"`` -> the paper's surrogate with
    ``p.dampening_factor`` / ``p.pseudo_derivative_support``, a Norse method ->
    ``spike_grad=NorseThreshold(method, alpha)``, a callable -> ``spike_grad=`` it;
    threshold clamp, bias, trainable thresholds, dtype, device).

    Args:
        module: :class:`~snntorch_egru.norse.EGRURecurrentCell` or
            :class:`~snntorch_egru.norse.EGRURecurrent`.
        sequence: build a one-layer :class:`~snntorch_egru.EGRU` instead of an
            :class:`~snntorch_egru.EGRUCell`. Default: False.
        **kwargs: further options of the target (e.g. ``init_hidden=True`` for the
            cell, ``batch_first=True`` for the layer).

    Example::

        >>> import torch
        >>> from snntorch_egru.interop import to_snntorch
        >>> from snntorch_egru.norse import EGRURecurrent
        >>> layer = EGRURecurrent(3, 8)
        >>> egru = to_snntorch(layer, sequence=True)
        >>> x = torch.randn(10, 2, 3)
        >>> torch.equal(egru(x)[0], layer(x)[0])
        True
    """
    if not isinstance(module, _NorseEGRUBase):
        raise TypeError(f"module must be an EGRURecurrentCell or EGRURecurrent, got {type(module).__name__}")
    if not isinstance(sequence, bool):
        raise TypeError(f"sequence must be a bool, got {type(sequence).__name__} {sequence!r}")
    p = module.p
    options: Dict[str, Any] = dict(
        bias=module.bias,
        reset_mechanism=p.reset,
        learn_threshold=isinstance(module.threshold, nn.Parameter),
        dampening_factor=p.dampening_factor,
        pseudo_derivative_support=p.pseudo_derivative_support,
        threshold_clamp=module.threshold_clamp,
        init=module.init,
    )
    if p.method != "egru":
        options["spike_grad"] = module.spike_grad
    if sequence and isinstance(module, EGRURecurrent):
        options["backend"] = module.backend
    options.update(kwargs)
    cls = EGRU if sequence else EGRUCell
    dst = cls(module.input_size, module.hidden_size, **options)
    ref = module.weight_hh
    dst = dst.to(dtype=ref.dtype, device=ref.device)
    return copy_parameters(dst, module)  # type: ignore[return-value]


def norse_state_from_layer(state: EGRUState, layer: int = 0) -> NorseEGRUState:
    """Norse-flavour state ``(y, c, trace)`` of one layer of an ``EGRU`` state ``(y, c, trace)``.

    Args:
        state: :class:`~snntorch_egru.EGRUState` with fields ``[num_layers, B, H]``.
        layer: which layer. Default: 0.

    Returns:
        :class:`snntorch_egru.norse.EGRURecurrentState` with fields ``[B, H]`` (the trace carried over).

    Example::

        >>> import torch, snntorch_egru as se
        >>> from snntorch_egru.interop import norse_state_from_layer
        >>> _, s = se.EGRU(3, 8)(torch.randn(5, 2, 3))
        >>> norse_state_from_layer(s).y.shape
        torch.Size([2, 8])
    """
    if not isinstance(state, EGRUState):
        raise TypeError(f"state must be snntorch_egru.EGRUState(y, c, trace), got {type(state).__name__}")
    layer = _layer_index(layer)
    if layer >= state.y.shape[0]:
        raise ValueError(f"layer must be < {state.y.shape[0]} (the state's number of layers), got {layer}")
    return NorseEGRUState(state.y[layer], state.c[layer], state.trace[layer])


def layer_state_from_norse(
    states: Union[NorseEGRUState, Sequence[NorseEGRUState]], trace: Optional[torch.Tensor] = None
) -> EGRUState:
    """``EGRU`` state ``(y, c, trace)`` from Norse-flavour states, one per layer.

    Args:
        states: one :class:`snntorch_egru.norse.EGRURecurrentState` (single layer) or a
            sequence of them (bottom layer first), fields ``[B, H]``.
        trace: ``[num_layers, B, H]`` output trace; default the states' own traces
            (zeros where a state has none; the trace does not influence the dynamics).

    Returns:
        :class:`~snntorch_egru.EGRUState` with fields ``[num_layers, B, H]``.

    Example::

        >>> import torch
        >>> from snntorch_egru.interop import layer_state_from_norse
        >>> from snntorch_egru.norse import EGRURecurrentCell
        >>> _, s = EGRURecurrentCell(3, 8)(torch.randn(2, 3))
        >>> layer_state_from_norse(s).c.shape
        torch.Size([1, 2, 8])
    """
    if isinstance(states, NorseEGRUState):
        states = [states]
    if not isinstance(states, (list, tuple)) or not states or not all(isinstance(s, NorseEGRUState) for s in states):
        raise TypeError(
            "states must be a snntorch_egru.norse.EGRURecurrentState(y, c, trace) or a non-empty list of them, "
            f"got {type(states).__name__}"
        )
    y = torch.stack([s.y for s in states])
    c = torch.stack([s.c for s in states])
    if trace is None:
        trace = torch.stack([torch.zeros_like(s.y) if s.trace is None else s.trace for s in states])
    elif not isinstance(trace, torch.Tensor) or trace.shape != y.shape:
        got = list(trace.shape) if isinstance(trace, torch.Tensor) else type(trace).__name__
        raise ValueError(f"trace must be a tensor of shape {list(y.shape)} or None, got {got}")
    return EGRUState(y, c, trace)
