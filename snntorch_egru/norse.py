"""Norse flavour of the EGRU: explicit state, ``forward(input_tensor, state=None) -> (out, state)``.

`Norse <https://github.com/norse/norse>`_ modules take and return their state
explicitly and compose with ``norse.torch.SequentialState`` and
``norse.torch.Lift``. This module provides the EGRU in that style:

* :class:`EGRUParameters`: NamedTuple of hyper-parameters (surrogate ``method``
  and ``alpha`` as Norse names them, the paper's pseudo-derivative, the reset);
* :class:`EGRURecurrentState`: NamedTuple ``(y, c, trace)``, each ``[B, H]``
  (formerly ``EGRUState(y, c)``; that name is a deprecated alias);
* :class:`EGRURecurrentCell`: one step, ``(y, EGRURecurrentState)``;
* :class:`EGRURecurrent`: a time-first sequence ``[T, B, I]`` (like Norse's
  ``LIFRecurrent``), optionally recording the state of every step.

Both modules call :mod:`snntorch_egru.functional` (the one EGRU math) and carry
the same parameters as :class:`~snntorch_egru.EGRUCell` (``weight_ih``,
``weight_hh``, ``bias_ih``, ``bias_hh``, ``threshold``), so a ``state_dict``
moves between the flavours unchanged (and to/from ``EGRU`` layer 0 with the
``_l0`` suffix; see :mod:`snntorch_egru.interop`). Unlike Norse's NamedTuple
parameters, the thresholds are trainable ``nn.Parameter`` objects.

Norse itself is **not** needed to import or use this module: the modules are
duck-typed to Norse's conventions. Only the Norse threshold methods
(``"super"``, ``"triangle"``, ``"tanh"``, ``"circ"``, ``"heavi_erfc"``,
``"heaviside"``) call ``norse.torch.functional.threshold.threshold`` and thus
need ``pip install snntorch-egru[norse]``.

Example::

    >>> import torch
    >>> from snntorch_egru.norse import EGRURecurrentCell, EGRURecurrent, EGRUParameters
    >>> cell = EGRURecurrentCell(3, 8)
    >>> y, s = cell(torch.randn(4, 3))            # state=None starts from zeros
    >>> y, s = cell(torch.randn(4, 3), s)
    >>> s.c.shape
    torch.Size([4, 8])
    >>> layer = EGRURecurrent(3, 8, record_states=True)
    >>> layer.load_state_dict(cell.state_dict())  # same parameter names
    <All keys matched successfully>
    >>> out, states = layer(torch.randn(20, 4, 3))
    >>> out.shape, states.c.shape
    (torch.Size([20, 4, 8]), torch.Size([20, 4, 8]))
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, NamedTuple, Optional, Tuple, Union, cast

import torch

from . import _checks, _layer
from . import functional as F
from ._layer import EGRULayerBase, in_param_dtype, nan_threshold_propagates
from .state import EGRURecurrentState
from .state import EGRUState as _LayerEGRUState
from .surrogate import EGRUSurrogate

__all__ = [
    "NORSE_METHODS",
    "EGRUParameters",
    "EGRURecurrentState",
    "EGRURecurrentCell",
    "EGRURecurrent",
    "NorseThreshold",
    "spike_function",
]

#: Threshold methods of ``norse.torch.functional.threshold.threshold`` (Norse 1.1.0).
NORSE_METHODS = ("heaviside", "super", "triangle", "tanh", "circ", "heavi_erfc")

_INSTALL_HINT = "pip install snntorch-egru[norse]"

SpikeFn = Callable[[torch.Tensor], torch.Tensor]


class EGRUParameters(NamedTuple):
    """Hyper-parameters of the Norse-flavour EGRU (not trainable, like Norse's parameter tuples).

    Attributes:
        method: the spike function's surrogate gradient. ``"egru"`` (default) is
            the paper's triangle ``psi(v) = dampening_factor * max(0, 1 -
            pseudo_derivative_support * |v|)``; a Norse method name
            (``"super"``, ``"triangle"``, ``"tanh"``, ``"circ"``, ``"heavi_erfc"``,
            ``"heaviside"``) uses ``norse.torch.functional.threshold.threshold(v,
            method, alpha)`` (needs Norse); a callable ``f(v) -> H(v)`` (e.g. an
            snnTorch surrogate such as ``snntorch.surrogate.atan()``) is used as is.
        alpha: sharpness of a Norse method (Norse's own name and default, 100).
            Unused by ``"egru"`` and by callables. Note that Norse 1.1.0's
            ``"super"`` ignores ``alpha`` (a Norse bug, fixed upstream after 1.1.0).
        dampening_factor: peak ``gamma`` of the ``"egru"`` pseudo-derivative. Default: 0.7.
        pseudo_derivative_support: inverse half-width ``epsilon`` of the ``"egru"``
            pseudo-derivative. Default: 1.0. (``"egru"`` equals Norse's
            ``threshold(epsilon * v, "triangle", gamma / epsilon)``.)
        reset: ``"subtract"`` (default; ``c = c_hat - o * theta``), ``"zero"`` or ``"none"``.

    Example::

        >>> from snntorch_egru.norse import EGRUParameters
        >>> p = EGRUParameters(dampening_factor=3.6, pseudo_derivative_support=3.6)
        >>> p._replace(reset="zero").reset
        'zero'
    """

    method: Union[str, SpikeFn] = "egru"
    alpha: float = 100.0
    dampening_factor: float = 0.7
    pseudo_derivative_support: float = 1.0
    reset: str = "subtract"


def __getattr__(name: str) -> Any:
    if name == "EGRUState":  # the Norse state's former name (it clashed with snntorch_egru.EGRUState)
        warnings.warn(
            "snntorch_egru.norse.EGRUState is deprecated: use snntorch_egru.norse.EGRURecurrentState "
            "(the same NamedTuple, now with a third field trace that defaults to None = zeros)",
            DeprecationWarning,
            stacklevel=2,
        )
        return EGRURecurrentState
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _norse_threshold_fn() -> Callable[[torch.Tensor, str, float], torch.Tensor]:
    try:
        from norse.torch.functional.threshold import threshold
    except ImportError as err:
        raise ImportError(
            "Norse threshold methods (method in "
            f"{', '.join(repr(m) for m in NORSE_METHODS)}) need Norse: {_INSTALL_HINT} "
            "(or use method='egru' or a callable spike function, which need no Norse)"
        ) from err
    return threshold


class NorseThreshold:
    """Spike function ``v -> norse.torch.functional.threshold.threshold(v, method, alpha)``.

    A picklable callable (``torch.save(model)`` works), importing Norse only when
    it is first constructed or called.

    Args:
        method: one of :data:`NORSE_METHODS`.
        alpha: the method's sharpness parameter (finite, > 0).

    Raises:
        ImportError: Norse is not installed (``pip install snntorch-egru[norse]``).

    Example::

        >>> import torch
        >>> from snntorch_egru.norse import NorseThreshold
        >>> NorseThreshold("triangle", 0.7)(torch.tensor([-0.2, 0.3]))
        tensor([0., 1.])
    """

    def __init__(self, method: str, alpha: float) -> None:
        if not isinstance(method, str) or method not in NORSE_METHODS:
            raise ValueError(f"method must be one of {', '.join(repr(m) for m in NORSE_METHODS)}, got {method!r}")
        self.method = method
        self.alpha = _alpha(alpha)
        _norse_threshold_fn()  # fail early and clearly when Norse is missing

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        return _norse_threshold_fn()(v, self.method, self.alpha)

    def __repr__(self) -> str:
        return f"NorseThreshold(method={self.method!r}, alpha={self.alpha})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NorseThreshold) and (self.method, self.alpha) == (other.method, other.alpha)

    def __hash__(self) -> int:
        return hash((NorseThreshold, self.method, self.alpha))


def _alpha(value: Any) -> float:
    return _checks.positive_float("alpha", value)


def _check_parameters(p: Any) -> EGRUParameters:
    if not isinstance(p, EGRUParameters):
        raise TypeError(
            "p must be snntorch_egru.norse.EGRUParameters(method, alpha, dampening_factor, "
            f"pseudo_derivative_support, reset), got {type(p).__name__}"
        )
    method = p.method
    if isinstance(method, str):
        if method != "egru" and method not in NORSE_METHODS:
            raise ValueError(
                "p.method must be 'egru', one of Norse's "
                f"{', '.join(repr(m) for m in NORSE_METHODS)}, or a callable f(v) -> H(v), got {method!r}"
            )
    elif not callable(method):
        raise TypeError(
            "p.method must be 'egru', a Norse method name or a callable f(v) -> H(v), "
            f"got {type(method).__name__} {method!r}"
        )
    _alpha(p.alpha)
    _checks.positive_float("p.dampening_factor", p.dampening_factor)
    _checks.positive_float("p.pseudo_derivative_support", p.pseudo_derivative_support)
    _checks.reset_mechanism(p.reset, "p.reset")
    return p


def spike_function(p: EGRUParameters) -> SpikeFn:
    """The spike function ``f(v) -> H(v)`` (with surrogate gradient) that ``p`` describes.

    Args:
        p: :class:`EGRUParameters`.

    Returns:
        :class:`~snntorch_egru.surrogate.EGRUSurrogate` for ``"egru"``,
        :class:`NorseThreshold` for a Norse method, or ``p.method`` itself if callable.

    Raises:
        ImportError: a Norse method is requested and Norse is not installed.

    Example::

        >>> from snntorch_egru.norse import EGRUParameters, spike_function
        >>> spike_function(EGRUParameters())
        EGRUSurrogate(gamma=0.7, epsilon=1.0)
    """
    p = _check_parameters(p)
    if callable(p.method):
        return p.method
    if p.method == "egru":
        return EGRUSurrogate(p.dampening_factor, p.pseudo_derivative_support)
    return NorseThreshold(p.method, p.alpha)


class _NorseEGRUBase(EGRULayerBase):
    """Parameters shared by the Norse-flavour cell and layer (same names as ``EGRUCell``).

    The constructor is the cell's (:class:`EGRURecurrentCell`); the arguments are checked
    by the same table as those of ``EGRUCell`` and ``EGRU``.
    """

    # the step (cell) or sequence (layer) run of the subclasses
    _run: Callable[[torch.Tensor, Optional[EGRURecurrentState]], Tuple[torch.Tensor, EGRURecurrentState]]
    # registered by name in EGRUBase._register_layer (suffix "")
    weight_ih: torch.Tensor
    weight_hh: torch.Tensor
    bias_ih: Optional[torch.Tensor]
    bias_hh: Optional[torch.Tensor]
    threshold: torch.Tensor

    def __init__(
        self, input_size: int, hidden_size: int, p: EGRUParameters = EGRUParameters(), bias: bool = True,
        thr_mean: float = 0.3, learn_threshold: bool = True, *, threshold_clamp: bool = True, init: str = "evnn",
    ) -> None:  # fmt: skip
        super().__init__()
        self._setup(locals())
        self.p = _check_parameters(p)
        self._spike_cache: Optional[Tuple[EGRUParameters, SpikeFn]] = None
        spike_function(self.p)  # ImportError now if a Norse method is requested without Norse
        self._register_layer("", self.input_size)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-draw weights (per ``init``), zero the biases and re-draw the thresholds."""
        self._reset_layer("")

    # EGRUBase declares reset_mechanism and spike_grad as plain attributes; this flavour derives both
    # from p, read-only (they are not assigned on it), hence the override ignores
    @property
    def reset_mechanism(self) -> str:  # type: ignore[override]
        """The reset mechanism ``p.reset`` (the name ``EGRUCell`` uses)."""
        return self.p.reset

    @property
    def spike_grad(self) -> SpikeFn:  # type: ignore[override]
        """The spike function built from ``p`` (the name ``EGRUCell`` uses)."""
        cache = self._spike_cache
        if cache is None or cache[0] is not self.p:
            cache = (self.p, spike_function(self.p))
            self._spike_cache = cache
        return cache[1]

    def initial_state(self, input_tensor: torch.Tensor) -> EGRURecurrentState:
        """Zero state for a step input ``[B, I]`` (``[I]`` unbatched): fields ``[B, H]``."""
        shape = (self.hidden_size,) if input_tensor.dim() == 1 else (input_tensor.shape[0], self.hidden_size)
        w = self.weight_ih
        zeros = torch.zeros(shape, dtype=w.dtype, device=w.device)
        return EGRURecurrentState(zeros, zeros, zeros)

    def forward(
        self, input_tensor: torch.Tensor, state: Optional[EGRURecurrentState] = None
    ) -> Tuple[torch.Tensor, EGRURecurrentState]:
        if isinstance(input_tensor, torch.Tensor) and _layer.autocast_active(input_tensor):
            # autocast policy (as snntorch_egru.EGRU): the recurrence runs in the parameters' dtype
            input_tensor, state = in_param_dtype(input_tensor, state, self.weight_ih, EGRURecurrentState)
            with _layer.float32_region(input_tensor):
                return self._run(input_tensor, state)
        return self._run(input_tensor, state)

    def _check_state(self, state: Any, shape: tuple[int, ...]) -> EGRURecurrentState:
        """A checked state with every field a tensor (a missing trace becomes zeros)."""
        expected = f"snntorch_egru.norse.EGRURecurrentState(y, c, trace) with fields of shape {list(shape)}"
        if isinstance(state, torch.Tensor):
            raise TypeError(
                f"state must be {expected} (or None), got a single Tensor; build one with EGRURecurrentState(y, c)"
            )
        if isinstance(state, _LayerEGRUState):
            raise TypeError(
                f"state must be {expected}, got snntorch_egru.EGRUState(y, c, trace) of the sequence layer EGRU "
                "(fields [num_layers, B, H]); convert it with "
                "snntorch_egru.interop.norse_state_from_layer(state, layer=0)"
            )
        if hasattr(state, "_fields") and not isinstance(state, EGRURecurrentState):
            raise TypeError(f"state must be {expected} (or None), got {type(state).__name__}{tuple(state._fields)}")
        if not isinstance(state, EGRURecurrentState) and (not isinstance(state, (tuple, list)) or len(state) != 2):
            raise TypeError(
                f"state must be {expected} or a plain (y, c) tuple (or None), got {type(state).__name__}"
                + (f" of length {len(state)}" if isinstance(state, (tuple, list)) else "")
            )
        w = self.weight_ih
        y = _layer.state_tensor("state.y", state[0], shape, w)
        c = _layer.state_tensor("state.c", state[1], shape, w)
        trace = state[2] if len(state) == 3 else None
        trace = torch.zeros_like(y) if trace is None else _layer.state_tensor("state.trace", trace, shape, w)
        return EGRURecurrentState(y, c, trace)

    def _extra(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, p={self.p}"
        if not self.bias:
            s += ", bias=False"
        if not self.threshold_clamp:
            s += ", threshold_clamp=False"
        return s


class EGRURecurrentCell(_NorseEGRUBase):
    """Event-based GRU, one time step per call, in Norse's conventions.

    ``forward(input_tensor, state=None) -> (y, EGRURecurrentState(y, c, trace))``: the state is
    passed in and returned (nothing is stored on the module), so the cell works
    in ``norse.torch.SequentialState`` and ``norse.torch.Lift``. The equations
    are those of :mod:`snntorch_egru.functional`; the parameters are those of
    :class:`~snntorch_egru.EGRUCell`, so ``state_dict`` objects are interchangeable.

    Args:
        input_size: number of input features ``I``.
        hidden_size: number of units ``H``.
        p: :class:`EGRUParameters` (surrogate method, reset). Default: ``EGRUParameters()``.
        bias: use ``bias_ih`` and ``bias_hh``. Default: True.
        thr_mean: mean of the Beta-distributed initial thresholds, in (0, 1). Default: 0.3.
        learn_threshold: thresholds are an ``nn.Parameter`` (else a buffer). Default: True.
        threshold_clamp: clamp thresholds to [0, 1] in the forward pass (as
            ``EGRUCell`` does by default). Default: True.
        init: ``"evnn"`` (xavier-normal weights, zero biases) or ``"torch"``. Default: ``"evnn"``.

    Inputs: ``input_tensor, state``
        - **input_tensor** ``[B, I]`` (or ``[I]``): input of this step.
        - **state** :class:`EGRURecurrentState` with fields ``[B, H]`` (a plain ``(y, c)``
          tuple means a zero trace), or ``None`` for zeros.

    Outputs: ``y, state``
        - **y** ``[B, H]``: graded events of this step.
        - **state** :class:`EGRURecurrentState` ``(y, c, trace)`` after this step.

    Parameters: ``weight_ih [3H, I]``, ``weight_hh [3H, H]``, ``bias_ih [3H]``,
    ``bias_hh [3H]``, ``threshold [H]`` (gate order r, z, n as ``torch.nn.GRU``).

    Example::

        >>> import torch
        >>> from snntorch_egru.norse import EGRURecurrentCell
        >>> cell = EGRURecurrentCell(3, 8)
        >>> x = torch.randn(25, 4, 3)              # [T, B, I]
        >>> state, ys = None, []
        >>> for x_t in x:
        ...     y, state = cell(x_t, state)
        ...     ys.append(y)
        >>> torch.stack(ys).shape
        torch.Size([25, 4, 8])

    With Norse installed, ``norse.torch.SequentialState(torch.nn.Linear(10, 3),
    cell, torch.nn.Linear(8, 2))`` and ``norse.torch.Lift(cell)`` use it as any
    Norse cell.
    """

    def _run(
        self, input_tensor: torch.Tensor, state: Optional[EGRURecurrentState]
    ) -> Tuple[torch.Tensor, EGRURecurrentState]:
        w = self.weight_ih
        _layer.tensor_input("input_tensor", input_tensor, (1, 2), self.input_size, w, "[B, input_size] or [input_size]")
        if state is None:
            state = self.initial_state(input_tensor)
        else:
            shape = (self.hidden_size,) if input_tensor.dim() == 1 else (input_tensor.shape[0], self.hidden_size)
            state = self._check_state(state, shape)
        theta = self._effective_threshold(self.threshold)
        step = F.egru_step(
            input_tensor,
            state.y,
            state.c,
            cast(torch.Tensor, state.trace),  # set: initial_state and _check_state give a trace tensor
            self.weight_ih,
            self.weight_hh,
            self.bias_ih,
            self.bias_hh,
            theta,
            spike_fn=self.spike_grad,
            reset=self.p.reset,
        )
        step = nan_threshold_propagates(theta, step)  # a NaN threshold is not silently a silent unit
        return step.y, EGRURecurrentState(step.y, step.c, step.trace)

    def extra_repr(self) -> str:
        return self._extra()


class EGRURecurrent(_NorseEGRUBase):
    """Event-based GRU over a time-first sequence, in Norse's conventions (like ``LIFRecurrent``).

    ``forward(input_tensor [T, B, I], state=None) -> (y [T, B, H], EGRURecurrentState)``.
    The sequence runs through the backend registry (:mod:`snntorch_egru.backends`,
    ``"auto"`` = the fastest available, ``"reference"`` =
    :func:`snntorch_egru.functional.egru_sequence`), exactly like
    :class:`~snntorch_egru.EGRU`. Parameters and their names are those of
    :class:`EGRURecurrentCell` and :class:`~snntorch_egru.EGRUCell`.

    Args:
        input_size: number of input features ``I``.
        hidden_size: number of units ``H``.
        p: :class:`EGRUParameters`. Default: ``EGRUParameters()``.
        bias, thr_mean, learn_threshold, threshold_clamp, init: as :class:`EGRURecurrentCell`.
        record_states: return the state of every step (fields ``[T, B, H]``)
            instead of only the final state. Default: False.
        backend: ``"auto"`` (default), ``"reference"`` or a registered backend name.

    Inputs: ``input_tensor, state``
        - **input_tensor** ``[T, B, I]`` (or ``[T, I]`` unbatched).
        - **state** :class:`EGRURecurrentState` with fields ``[B, H]``, or ``None`` for zeros.

    Outputs: ``y, state``
        - **y** ``[T, B, H]``: graded events of every step.
        - **state** :class:`EGRURecurrentState`: the final state (``[B, H]`` fields), or with
          ``record_states=True`` every step's state (``[T, B, H]`` fields); to continue
          from a recorded state pass ``EGRURecurrentState(*(f[-1] for f in states))``.

    Example::

        >>> import torch
        >>> from snntorch_egru.norse import EGRURecurrent
        >>> layer = EGRURecurrent(3, 8)
        >>> x = torch.randn(50, 4, 3)
        >>> y1, s = layer(x[:25])
        >>> y2, s = layer(x[25:], s)           # continues the sequence exactly
        >>> torch.allclose(torch.cat([y1, y2]), layer(x)[0])
        True
    """

    def __init__(
        self, input_size: int, hidden_size: int, p: EGRUParameters = EGRUParameters(), bias: bool = True,
        thr_mean: float = 0.3, learn_threshold: bool = True, record_states: bool = False, *,
        threshold_clamp: bool = True, init: str = "evnn", backend: str = "auto",
    ) -> None:  # fmt: skip
        super().__init__(
            input_size, hidden_size, p, bias, thr_mean, learn_threshold, threshold_clamp=threshold_clamp, init=init
        )
        self._setup({"record_states": record_states, "backend": backend})

    def _run(
        self, input_tensor: torch.Tensor, state: Optional[EGRURecurrentState]
    ) -> Tuple[torch.Tensor, EGRURecurrentState]:
        w = self.weight_ih
        _layer.tensor_input(
            "input_tensor", input_tensor, (2, 3), self.input_size, w, "[T, B, input_size] or [T, input_size]"
        )
        unbatched = input_tensor.dim() == 2
        x = input_tensor.unsqueeze(1) if unbatched else input_tensor
        T, B = x.shape[0], x.shape[1]
        if state is None:
            zeros = torch.zeros(B, self.hidden_size, dtype=w.dtype, device=w.device)
            state = EGRURecurrentState(zeros, zeros, zeros)
        else:
            state = self._check_state(state, (self.hidden_size,) if unbatched else (B, self.hidden_size))
            if unbatched:
                state = EGRURecurrentState(*(cast(torch.Tensor, f).unsqueeze(0) for f in state))
        tensors = (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, self.threshold)
        # every field of state is a tensor here (zeros above, or _check_state, which fills a missing trace)
        seq = self._run_layer(self._layer_call(x, (state.y, state.c, cast(torch.Tensor, state.trace)), tensors))
        out = seq.y
        if self.record_states:
            new_state = EGRURecurrentState(seq.y, seq.c, seq.trace)
        elif T > 0:
            new_state = EGRURecurrentState(seq.y[-1], seq.c[-1], seq.trace[-1])
        else:
            new_state = state
        if unbatched:
            out = out.squeeze(1)
            dim = 1 if self.record_states else 0
            new_state = EGRURecurrentState(*(cast(torch.Tensor, f).squeeze(dim) for f in new_state))
        return out, new_state

    def extra_repr(self) -> str:
        s = self._extra()
        if self.record_states:
            s += ", record_states=True"
        if self.backend != "auto":
            s += f", backend={self.backend!r}"
        return s
