"""Backends that run one EGRU layer over a whole sequence.

Every backend implements the same contract as
:func:`snntorch_egru.functional.egru_sequence` and is checked against it in
float64. ``"reference"`` is that function itself (autograd through every step).
Faster backends register themselves here with :func:`register_backend`.

``EGRU(..., backend=...)`` picks one by name; ``"auto"`` asks each registered
backend's ``available(call)`` predicate in priority order and falls back to
``"reference"``.

The built-in fast backends (``"torch"`` on the CPU, ``"cupy"`` on CUDA) both run
the custom operator ``torch.ops.snntorch_egru.egru_layer`` (one node for
``torch.compile``/``torch.export``/``torch.jit.trace``; see
``docs/guide/sparse_bptt.md``). A backend receives a :class:`LayerCall`; its
:attr:`LayerCall.weights`, :attr:`LayerCall.options` and :attr:`LayerCall.state`
give the same fields as the small named bundles :class:`EGRUWeights`,
:class:`EGRUOptions` and :class:`~snntorch_egru.EGRUState`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch

from . import functional as F
from ._checks import RESET_CODES, reset_mechanism

__all__ = [
    "LayerCall",
    "EGRUWeights",
    "EGRUOptions",
    "register_backend",
    "unregister_backend",
    "get_backend",
    "available_backends",
    "usable_backends",
    "resolve_backend",
]


@dataclass(frozen=True)
class EGRUWeights:
    """The tensors of one EGRU layer (Norse-style parameter bundle).

    Attributes:
        w_ih: ``[3H, I]`` input weights (gate order r, z, n).
        w_hh: ``[3H, H]`` recurrent weights.
        b_ih, b_hh: ``[3H]`` biases or ``None``.
        threshold: ``[H]`` thresholds (already clamped if the module clamps them).

    Example::

        >>> import torch
        >>> from snntorch_egru.backends import EGRUWeights
        >>> w = EGRUWeights(torch.zeros(12, 3), torch.zeros(12, 4), None, None, torch.full((4,), 0.3))
        >>> w.w_hh.shape
        torch.Size([12, 4])
    """

    w_ih: torch.Tensor
    w_hh: torch.Tensor
    b_ih: Optional[torch.Tensor]
    b_hh: Optional[torch.Tensor]
    threshold: torch.Tensor


@dataclass(frozen=True)
class EGRUOptions:
    """The non-tensor settings of one EGRU layer call.

    Attributes:
        spike_fn: Heaviside with surrogate gradient (the operator implements the
            paper's triangle and the plain Heaviside; other functions run the reference).
        reset: ``"subtract"``, ``"zero"`` or ``"none"``.
        zoneout_p: eval-mode zoneout probability.
        input_is_events: the input is the (sparse) event output of a lower EGRU layer.

    Example::

        >>> from snntorch_egru.backends import EGRUOptions
        >>> from snntorch_egru.surrogate import EGRUSurrogate
        >>> EGRUOptions(EGRUSurrogate(), reset="zero").reset
        'zero'
    """

    spike_fn: Callable[[torch.Tensor], torch.Tensor]
    reset: str = "subtract"
    zoneout_p: float = 0.0
    input_is_events: bool = False


@dataclass
class LayerCall:
    """Everything one layer of one forward call needs (shapes time-first, batched).

    Attributes:
        x: ``[T, B, I]`` layer input.
        y0, c0, trace0: ``[B, H]`` initial state.
        weight_ih, weight_hh, bias_ih, bias_hh, threshold: the layer's tensors
            (``threshold`` already clamped if the module clamps it).
        spike_fn: Heaviside with surrogate gradient.
        reset: reset mechanism.
        dropconnect_mask: ``[3H, H]`` scaled mask multiplied into ``weight_hh`` or ``None``.
        zoneout_mask: ``[T, B, H]`` training masks (1 = update) or ``None``.
        zoneout_p: eval-mode zoneout probability.
        input_is_events: the input is the (sparse) event output of a lower EGRU layer.
        layer_index: index of the layer in its stack (for counters).
        kernel_params: ``(gamma, epsilon)`` of ``spike_fn`` as the fast backends implement it
            (:meth:`snntorch_egru.surrogate.SpikeFunction.kernel_params`), when the caller knows it
            (the modules keep it per spike function); ``None``: asked from ``spike_fn`` when needed.

    Example::

        >>> import torch
        >>> from snntorch_egru import backends, surrogate
        >>> T, B, I, H = 5, 2, 3, 4
        >>> z = torch.zeros(B, H)
        >>> call = backends.LayerCall(x=torch.randn(T, B, I), y0=z, c0=z, trace0=z,
        ...                           weight_ih=torch.randn(3 * H, I), weight_hh=torch.randn(3 * H, H),
        ...                           bias_ih=None, bias_hh=None, threshold=torch.full((H,), 0.2),
        ...                           spike_fn=surrogate.EGRUSurrogate())
        >>> backends.get_backend("reference").run(call).y.shape   # [T, B, H]
        torch.Size([5, 2, 4])
    """

    x: torch.Tensor
    y0: torch.Tensor
    c0: torch.Tensor
    trace0: torch.Tensor
    weight_ih: torch.Tensor
    weight_hh: torch.Tensor
    bias_ih: Optional[torch.Tensor]
    bias_hh: Optional[torch.Tensor]
    threshold: torch.Tensor
    spike_fn: Callable[[torch.Tensor], torch.Tensor]
    reset: str = "subtract"
    dropconnect_mask: Optional[torch.Tensor] = None
    zoneout_mask: Optional[torch.Tensor] = None
    zoneout_p: float = 0.0
    input_is_events: bool = False
    layer_index: int = 0
    kernel_params: Optional[Tuple[float, float]] = None

    @property
    def reset_code(self) -> int:
        """The reset mechanism as the operator and the kernels take it (``_checks.RESET_CODES``)."""
        code = RESET_CODES.get(self.reset) if isinstance(self.reset, str) else None
        if code is None:
            reset_mechanism(self.reset, "reset")  # ValueError naming the argument and the choices
            raise AssertionError("unreachable")  # pragma: no cover
        return code

    @property
    def weights(self) -> EGRUWeights:
        """The layer's tensors as an :class:`EGRUWeights` bundle (``weight_hh`` unmasked)."""
        return EGRUWeights(self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, self.threshold)

    @property
    def options(self) -> EGRUOptions:
        """The call's settings as an :class:`EGRUOptions` bundle."""
        return EGRUOptions(self.spike_fn, self.reset, self.zoneout_p, self.input_is_events)

    @property
    def state(self) -> Any:
        """The initial state as an :class:`~snntorch_egru.EGRUState` of ``[B, H]`` fields."""
        from .state import EGRUState

        return EGRUState(self.y0, self.c0, self.trace0)


# ------------------------------------------------------------------------------------------
# the checks every backend runs first


def _shape_err(name: str, expected: Sequence[object], t: torch.Tensor, hint: str = "") -> ValueError:
    return ValueError(f"{name} must have shape [{', '.join(str(e) for e in expected)}]{hint}, got {list(t.shape)}")


def check_layer_args(call: "LayerCall") -> None:
    """Types, shapes, dtypes and devices of one layer call (clear errors naming the argument); every
    backend runs it before anything else (the operator before any pointer leaves Python)."""
    x, y0, c0, trace0 = call.x, call.y0, call.c0, call.trace0
    zoneout_mask, dropconnect_mask = call.zoneout_mask, call.dropconnect_mask
    w_ih, w_hh, th = call.weight_ih, call.weight_hh, call.threshold
    named = [
        ("x", x),
        ("y0", y0),
        ("c0", c0),
        ("trace0", trace0),
        ("weight_ih", w_ih),
        ("weight_hh", w_hh),
        ("bias_ih", call.bias_ih),
        ("bias_hh", call.bias_hh),
        ("threshold", th),
        ("zoneout_mask", zoneout_mask),
        ("dropconnect_mask", dropconnect_mask),
    ]
    optional = {"bias_ih", "bias_hh", "zoneout_mask", "dropconnect_mask"}
    for name, t in named:
        if t is None and name in optional:
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
        if t.layout != torch.strided:
            raise ValueError(f"{name} must be a dense (strided) tensor, got layout {t.layout}")
    if x.dim() != 3:
        raise ValueError(f"x must be [T, B, I], got shape {tuple(x.shape)}")
    T, B, I = x.shape
    if w_hh.dim() != 2 or w_hh.shape[0] % 3 != 0 or w_hh.shape[0] != 3 * w_hh.shape[1]:
        raise ValueError(f"weight_hh must have shape [3 * hidden_size, hidden_size], got {list(w_hh.shape)}")
    H = w_hh.shape[1]
    if tuple(w_ih.shape) != (3 * H, I):
        raise _shape_err("weight_ih", (3 * H, I), w_ih, " (3 * hidden_size, input features)")
    for name, b in (("bias_ih", call.bias_ih), ("bias_hh", call.bias_hh)):
        if b is not None and tuple(b.shape) != (3 * H,):
            raise _shape_err(name, (3 * H,), b)
    if tuple(th.shape) not in ((H,), (), (1,)):
        raise _shape_err("threshold", (H,), th, " (or a single value)")
    for name, s in (("y0", y0), ("c0", c0), ("trace0", trace0)):
        if tuple(s.shape) != (B, H):
            raise _shape_err(name, (B, H), s)
    if zoneout_mask is not None and tuple(zoneout_mask.shape) != (T, B, H):
        raise _shape_err("zoneout_mask", (T, B, H), zoneout_mask)
    if dropconnect_mask is not None and tuple(dropconnect_mask.shape) != (3 * H, H):
        raise _shape_err("dropconnect_mask", (3 * H, H), dropconnect_mask)
    dev = x.device
    for name, t in named:
        if t is not None and t.device != dev:
            raise ValueError(f"{name} is on device {t.device} but x is on {dev}; move them to one device")
    dtype = w_hh.dtype
    for name, t in named:
        if t is not None and t.dtype != dtype and name not in ("zoneout_mask", "dropconnect_mask"):
            raise TypeError(
                f"{name} has dtype {t.dtype} but weight_hh has {dtype}; use one dtype "
                f"(e.g. module.to({dtype}) / {name}.to({dtype}))"
            )


BackendFn = Callable[[LayerCall], F.EGRUStepOutput]


@dataclass
class _Backend:
    name: str
    run: BackendFn
    available: Callable[[LayerCall], bool]
    priority: int
    device_type: Optional[str] = None


_REGISTRY: Dict[str, _Backend] = {}


def register_backend(
    name: str,
    run: BackendFn,
    available: Optional[Callable[[LayerCall], bool]] = None,
    priority: int = 0,
    device_type: Optional[str] = None,
) -> None:
    """Register a backend under ``name``.

    Args:
        name: the string users pass as ``EGRU(..., backend=name)``.
        run: function ``LayerCall -> EGRUStepOutput`` of ``[T, B, H]`` sequences.
        available: predicate telling ``"auto"`` whether this backend handles a call.
        priority: ``"auto"`` tries higher priorities first.
        device_type: ``"auto"`` considers this backend only for calls on this device type (e.g. ``"cuda"``),
            without asking ``available``; ``None``: any device.

    Registering an existing name replaces that backend. A new backend should
    match :func:`snntorch_egru.functional.egru_sequence` (values and gradients).

    Example::

        >>> import torch, snntorch_egru as se
        >>> from snntorch_egru import backends
        >>> from snntorch_egru import functional as F
        >>> def my_backend(call):             # LayerCall -> EGRUStepOutput of [T, B, H] sequences
        ...     w, opt, s = call.weights, call.options, call.state
        ...     w_hh = w.w_hh if call.dropconnect_mask is None else w.w_hh * call.dropconnect_mask
        ...     return F.egru_sequence(call.x, s.y, s.c, s.trace, w.w_ih, w_hh, w.b_ih, w.b_hh, w.threshold,
        ...                            spike_fn=opt.spike_fn, reset=opt.reset, zoneout_mask=call.zoneout_mask,
        ...                            zoneout_p=opt.zoneout_p)
        >>> backends.register_backend("doc_example", my_backend, available=lambda call: False)
        >>> out, _ = se.EGRU(3, 8, backend="doc_example")(torch.randn(5, 2, 3))
        >>> out.shape
        torch.Size([5, 2, 8])
        >>> backends.unregister_backend("doc_example")
    """
    _REGISTRY[name] = _Backend(name, run, available or (lambda call: True), priority, device_type)


def unregister_backend(name: str) -> None:
    """Remove the backend ``name`` from the registry (``"reference"`` cannot be removed).

    Example::

        >>> from snntorch_egru import backends
        >>> backends.register_backend("tmp", backends.get_backend("reference").run)
        >>> backends.unregister_backend("tmp")
        >>> "tmp" in backends.available_backends()
        False
    """
    if name == "reference":
        raise ValueError("the 'reference' backend cannot be unregistered")
    get_backend(name)
    del _REGISTRY[name]


def get_backend(name: str) -> _Backend:
    """The registered backend ``name``.

    Args:
        name: a name from :func:`available_backends` (not ``"auto"``; see :func:`resolve_backend`).

    Returns:
        The backend record, with attributes ``name``, ``run``, ``available`` and ``priority``.

    Raises:
        ValueError: ``name`` is not registered (the message lists the known names).

    Example::

        >>> from snntorch_egru import backends
        >>> b = backends.get_backend("reference")
        >>> b.name, callable(b.run)
        ('reference', True)
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"backend must be 'auto' or one of {sorted(_REGISTRY)}, got {name!r}") from None


def available_backends() -> List[str]:
    """Names of the *registered* backends, sorted (the accepted values of ``backend=`` besides ``"auto"``).

    ``"reference"`` is always there; the package also registers ``"torch"``
    (event-driven CPU path) and ``"cupy"`` (GPU kernels), whether or not CuPy and a
    GPU are present. Which of them can actually run on this machine:
    :func:`usable_backends`.

    Example::

        >>> from snntorch_egru import backends
        >>> {"reference", "torch", "cupy"} <= set(backends.available_backends())
        True
    """
    return sorted(_REGISTRY)


def usable_backends(device: Optional[Union[str, torch.device]] = None) -> List[str]:
    """Names of the backends that can run here, sorted: each backend's ``available`` predicate, asked
    with a small float32 layer call on ``device``.

    Args:
        device: the device to ask about; ``None`` (default): the CPU and, when
            ``torch.cuda.is_available()``, the current CUDA device (a backend usable on either counts).

    Returns:
        e.g. ``["reference", "torch"]`` on a machine without CuPy or an NVIDIA GPU, and
        ``["cupy", "reference", "torch"]`` with both (``python -m snntorch_egru.cuda`` says what is missing);
        ``[]`` for ``device="cuda"`` without a CUDA device.

    Raises:
        ValueError: ``device`` is not a device.

    Example::

        >>> import torch
        >>> from snntorch_egru import backends
        >>> backends.usable_backends("cpu")           # the CuPy kernels never run CPU tensors
        ['reference', 'torch']
        >>> from snntorch_egru import cuda
        >>> ("cupy" in backends.usable_backends()) == (torch.cuda.is_available() and cuda.cupy_available())
        True
    """
    from .surrogate import EGRUSurrogate

    if device is None:
        devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    else:
        try:
            devices = [torch.device(device)]
        except (RuntimeError, TypeError):
            raise ValueError(
                f"device must be None, a torch.device or a device string such as 'cpu' or 'cuda', got {device!r}"
            ) from None
    names: set[str] = set()
    for dev in devices:
        if dev.type == "cuda" and not torch.cuda.is_available():
            continue  # no CUDA device here: nothing runs on it
        z = torch.zeros(1, 1, device=dev)
        call = LayerCall(
            torch.zeros(1, 1, 1, device=dev),
            z,
            z,
            z,
            torch.zeros(3, 1, device=dev),
            torch.zeros(3, 1, device=dev),
            None,
            None,
            torch.zeros(1, device=dev),
            EGRUSurrogate(),
        )
        names.update(b.name for b in _REGISTRY.values() if b.available(call))
    return sorted(names)


def resolve_backend(name: str, call: LayerCall) -> _Backend:
    """The backend that runs ``call``: ``name`` itself, or the best available one for ``"auto"``.

    For ``"auto"``, the non-reference backends are asked in decreasing
    ``priority`` whether they handle ``call``; ``"reference"`` is the fallback.

    Args:
        name: ``"auto"`` or a registered backend name.
        call: the :class:`LayerCall` to run.

    Returns:
        The chosen backend record.

    Example::

        >>> import torch
        >>> from snntorch_egru import backends, surrogate
        >>> z = torch.zeros(2, 4)
        >>> call = backends.LayerCall(torch.randn(5, 2, 3), z, z, z, torch.randn(12, 3), torch.randn(12, 4),
        ...                           None, None, torch.full((4,), 0.2), surrogate.EGRUSurrogate())
        >>> backends.resolve_backend("reference", call).name
        'reference'
        >>> backends.resolve_backend("auto", call).name    # CPU tensors: the event-driven CPU backend
        'torch'
    """
    if name != "auto":
        return get_backend(name)
    device = call.x.device.type
    for backend in sorted(_REGISTRY.values(), key=lambda b: -b.priority):
        if backend.device_type not in (None, device) or backend.name == "reference":
            continue
        if backend.available(call):
            return backend
    return _REGISTRY["reference"]


def zero_length(x: torch.Tensor, y0: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor) -> F.EGRUStepOutput:
    """T = 0: empty sequences that still belong to the autograd graph (as torch.nn.GRU's do)."""
    B, H = y0.shape
    anchor = x.sum() * 0.0 + w_ih.reshape(-1)[:0].sum() + w_hh.reshape(-1)[:0].sum()
    empty = x.new_zeros((0, B, H)) + anchor
    return F.EGRUStepOutput(empty, empty, empty, empty)


def _run_reference(call: LayerCall) -> F.EGRUStepOutput:
    # the same checks as the operator's (e.g. parameters replaced through .data): clear errors
    check_layer_args(call)
    w_hh = call.weight_hh if call.dropconnect_mask is None else call.weight_hh * call.dropconnect_mask
    if call.x.shape[0] == 0:  # empty sequences that still belong to the graph (as torch.nn.GRU's)
        return zero_length(call.x, call.y0, call.weight_ih, w_hh)
    state, tensors = (call.x, call.y0, call.c0, call.trace0), (call.weight_ih, w_hh, call.bias_ih, call.bias_hh)
    options: Dict[str, Any] = {"spike_fn": call.spike_fn, "reset": call.reset, "zoneout_mask": call.zoneout_mask}
    return F.egru_sequence(*state, *tensors, call.threshold, zoneout_p=call.zoneout_p, **options)


register_backend("reference", _run_reference, priority=-1)
