"""What every EGRU module shares: argument checks, parameter creation and initialisation,
the autocast policy, the per-step masks and the layer observers.

:class:`EGRUBase` is the base class of :class:`~snntorch_egru.EGRUCell`,
:class:`~snntorch_egru.EGRU` and the Norse flavour (:mod:`snntorch_egru.norse`).
Constructor arguments are checked by one table (:data:`OPTION_CHECKS`): a module
passes its ``locals()`` to :meth:`EGRUBase._setup`, which checks every known name
in signature order and stores it as an attribute of the same name.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Mapping, Optional

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from . import _checks
from . import functional as F
from .backends import LayerCall, get_backend
from .sparse import clear_transposed_cache
from .surrogate import EGRUSurrogate, heaviside

SpikeFn = Callable[[torch.Tensor], torch.Tensor]
#: ``(module, call, out)``: called after each layer call of a sequence module
#: (see :meth:`EGRUBase._add_layer_observer`).
LayerObserver = Callable[[nn.Module, LayerCall, F.EGRUStepOutput], None]

INITS = ("evnn", "torch")
#: The five tensors of one EGRU layer (single-layer names; ``EGRU`` adds ``_l{k}``).
LAYER_TENSOR_NAMES = F.LAYER_TENSOR_NAMES  # the one definition is in functional


def _backend_name(name: str, value: Any) -> str:
    if value != "auto":
        get_backend(value)  # ValueError listing the registered names
    return value


def _spike_grad(name: str, value: Any) -> Any:
    _checks.spike_grad(value)
    return value


#: Constructor argument -> check ``(name, value) -> value`` (every message names the argument).
OPTION_CHECKS: Dict[str, Callable[[str, Any], Any]] = {
    "input_size": _checks.positive_int,
    "hidden_size": _checks.positive_int,
    "num_layers": _checks.positive_int,
    "bias": _checks.flag,
    "batch_first": _checks.flag,
    "dropout": _checks.probability,
    "dropconnect": _checks.probability,
    "zoneout": _checks.probability,
    "dampening_factor": _checks.positive_float,
    "pseudo_derivative_support": _checks.positive_float,
    "thr_mean": _checks.open_unit,
    "reset_mechanism": lambda name, value: _checks.reset_mechanism(value),
    "learn_threshold": _checks.flag,
    "spike_grad": _spike_grad,
    "surrogate_disable": _checks.flag,
    "init_hidden": _checks.flag,
    "output": _checks.flag,
    "record_states": _checks.flag,
    "threshold_clamp": _checks.flag,
    "init": lambda name, value: _checks.choice(name, value, INITS),
    "backend": _backend_name,
}


def recurrent_layout(w_hh: torch.Tensor) -> torch.Tensor:
    """``w_hh`` [3H, H] in the layers' storage: row-major (contiguous), as ``torch.nn.GRU`` keeps it (the
    tensor itself if already so). A step that multiplies with it (``functional.egru_step``: the cells, the
    Norse flavour, NIR's ``EGRUStep``) then runs the same GEMM, so their numbers agree bit for bit."""
    return w_hh.contiguous()


def make_spike_fn(spike_grad: Optional[SpikeFn], surrogate_disable: bool, gamma: float, eps: float) -> SpikeFn:
    """The module's spike function: plain Heaviside, the paper's triangle, or the user's surrogate."""
    if surrogate_disable:
        return heaviside()
    if spike_grad is None:
        return EGRUSurrogate(gamma, eps)
    return spike_grad


def init_weights(
    weight_ih: torch.Tensor, weight_hh: torch.Tensor, biases: List[Optional[torch.Tensor]], hidden_size: int, init: str
) -> None:
    """Draw one layer's weights in place: ``"evnn"`` (the official code) or ``"torch"`` (``nn.GRU``)."""
    with torch.no_grad():
        if init == "evnn":
            # The official code: xavier-normal on each whole matrix, zero biases.
            nn.init.xavier_normal_(weight_ih)
            nn.init.xavier_normal_(weight_hh)
            for b in biases:
                if b is not None:
                    b.zero_()
        else:  # "torch": torch.nn.GRU's U(-1/sqrt(H), 1/sqrt(H)) for every tensor
            bound = 1.0 / math.sqrt(hidden_size)
            for w in [weight_ih, weight_hh, *biases]:
                if w is not None:
                    w.uniform_(-bound, bound)


class EGRUBase(nn.Module):
    """Hyper-parameter handling and parameters shared by the cell, the layer and the Norse flavour."""

    # per-instance dict once an observer is added (a class default, so modules saved before it existed load)
    _layer_observers: Optional["OrderedDict[int, LayerObserver]"] = None

    # Set by _setup from OPTION_CHECKS (declared for type checkers: nn.Module's __getattr__ would
    # otherwise type every attribute as Tensor | Module). Not every subclass has every option.
    input_size: int
    hidden_size: int
    num_layers: int
    bias: bool
    batch_first: bool
    dropout: float
    dropconnect: float
    zoneout: float
    dampening_factor: float
    pseudo_derivative_support: float
    thr_mean: float
    reset_mechanism: str
    learn_threshold: bool
    spike_grad: Callable[[torch.Tensor], torch.Tensor]
    surrogate_disable: bool
    init_hidden: bool
    output: bool
    record_states: bool
    threshold_clamp: bool
    init: str
    backend: str

    def _setup(self, args: Mapping[str, Any]) -> None:
        """Check and store every constructor argument found in :data:`OPTION_CHECKS`.

        ``args`` is the constructor's ``locals()`` (signature order, so the first bad
        argument is reported); names without a check (``self``, ``p``, ...) are skipped.
        With ``spike_grad`` present, ``self.spike_grad`` becomes the built spike function.
        """
        for name, value in args.items():
            check = OPTION_CHECKS.get(name)
            if check is not None:
                value = check(name, value)
                if name != "spike_grad":  # stored once built, below
                    setattr(self, name, value)
        if "spike_grad" in args:
            self.spike_grad = make_spike_fn(
                args["spike_grad"], self.surrogate_disable, self.dampening_factor, self.pseudo_derivative_support
            )

    def _register_layer(self, suffix: str, input_size: int, device: Any = None, dtype: Any = None) -> None:
        """Create one layer's parameters (``device``/``dtype`` as ``torch.nn.GRU``'s factory arguments;
        ``None`` follows the default device and dtype)."""
        H = self.hidden_size
        f: Dict[str, Any] = {"device": device, "dtype": dtype}
        self.register_parameter(f"weight_ih{suffix}", nn.Parameter(torch.empty(3 * H, input_size, **f)))
        # row-major, as torch.nn.GRU (the CPU event path reads a cached W_hh^T, see flatten_parameters)
        self.register_parameter(f"weight_hh{suffix}", nn.Parameter(torch.empty(3 * H, H, **f)))
        for name in ("bias_ih", "bias_hh"):
            self.register_parameter(f"{name}{suffix}", nn.Parameter(torch.empty(3 * H, **f)) if self.bias else None)
        ref = getattr(self, f"weight_ih{suffix}")
        theta = F.beta_threshold_init(H, self.thr_mean, dtype=ref.dtype, device=ref.device)
        if self.learn_threshold:
            self.register_parameter(f"threshold{suffix}", nn.Parameter(theta))
        else:
            self.register_buffer(f"threshold{suffix}", theta)

    def _reset_layer(self, suffix: str) -> None:
        w_ih, w_hh, b_ih, b_hh, theta = (getattr(self, f"{n}{suffix}") for n in LAYER_TENSOR_NAMES)
        # drawn row-major and copied, so a seed gives the same values in any storage layout
        draw = torch.empty(w_hh.shape, dtype=w_hh.dtype, device=w_hh.device)
        init_weights(w_ih, draw, [b_ih, b_hh], self.hidden_size, self.init)
        with torch.no_grad():
            w_hh.copy_(draw)
            theta.copy_(F.beta_threshold_init(self.hidden_size, self.thr_mean, dtype=theta.dtype, device=theta.device))

    def flatten_parameters(self) -> None:
        """Make every ``weight_hh`` contiguous (row-major, as ``torch.nn.GRU``) and drop the
        cached transposed copies (values unchanged).

        The recurrent weights ``[3H, H]`` are stored row-major like ``torch.nn.GRU``'s, so
        ``.view(-1)``, ``torch.nn.utils.parameters_to_vector``, ``torch.nn.utils.prune`` and
        safetensors work on them. The event-driven CPU path reads one unit's outgoing weights as
        one contiguous row of ``W_hh^T``, from a copy made once per weight version
        (:func:`snntorch_egru.sparse.transposed_weight`): an optimizer step, any torch in-place
        edit and any ``.data`` edit of more than a few elements make a new copy. Call this method
        after editing only a few elements through ``.data`` (or NumPy, or a raw pointer), or to make
        a replaced weight (``.data = ...`` with a strided tensor) contiguous again. Optimizers keep
        working (the parameter objects stay the same).

        Example::

            >>> import torch, snntorch_egru as se
            >>> rnn = se.EGRU(3, 8)
            >>> rnn.weight_hh_l0.data = rnn.weight_hh_l0.data.t().contiguous().t()   # strided now
            >>> rnn.flatten_parameters()
            >>> rnn.weight_hh_l0.is_contiguous()
            True
        """
        with torch.no_grad():
            for name, p in self.named_parameters(recurse=False):
                if name.startswith("weight_hh") and p.dim() == 2 and not p.is_contiguous():
                    p.data = recurrent_layout(p.data)
        clear_transposed_cache()

    # -- layer observers (what snntorch_egru.metrics counts with) --------------------------------

    def _add_layer_observer(self, fn: LayerObserver) -> RemovableHandle:
        """Call ``fn(module, call, out)`` after every layer call this module runs; ``handle.remove()`` stops it.

        Scoped to this module (no process-wide state), like a forward hook.
        """
        observers = self._layer_observers
        if observers is None:  # an OrderedDict, as torch's hook dicts (RemovableHandle keeps a weak reference)
            observers = self._layer_observers = OrderedDict()
        handle = RemovableHandle(observers)
        observers[handle.id] = fn
        return handle

    def __getstate__(self) -> Dict[str, Any]:
        # observers belong to this module object: copies and pickles (torch.save, deepcopy) go without them
        state = super().__getstate__()
        if state.get("_layer_observers") is not None:
            state = dict(state)
            del state["_layer_observers"]
        return state

    def _common_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if self.dropconnect:
            s += f", dropconnect={self.dropconnect}"
        if self.zoneout:
            s += f", zoneout={self.zoneout}"
        s += f", reset_mechanism={self.reset_mechanism!r}, spike_grad={self.spike_grad!r}"
        return s
