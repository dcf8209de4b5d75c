"""Argument checks shared by the modules: every message names the argument,
what was expected and what was given."""

from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, ContextManager, Optional, Sequence

import numpy as np
import torch

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def flag(name: str, value: Any) -> bool:
    """A strict bool flag: ``True``/``False`` (or a NumPy bool), never a string or a number."""
    if isinstance(value, bool):
        return value
    if type(value).__name__ == "bool_" and type(value).__module__ == "numpy":
        return bool(value)
    raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r} (pass True or False)")


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


def to_param_dtype(x: Optional[torch.Tensor], ref: torch.Tensor) -> Optional[torch.Tensor]:
    """Under autocast, a lower-precision floating input is cast to the parameters' dtype."""
    if x is not None and x.dtype != ref.dtype and x.dtype in _LOW_PRECISION and autocast_active(x):
        return x.to(ref.dtype)
    return x


def _number(name: str, value: Any, what: str, ok: Callable[[float], bool], must: str, integer: bool = False) -> Any:
    """``value`` as an int/float if it is one (bools are not) and ``ok``; else a clear error:
    ``TypeError`` "``name`` must be ``what``", ``ValueError`` "``name`` must ``must``"."""
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise TypeError(f"{name} must be {what}, got {type(value).__name__} {value!r}")
    v = value if integer else float(value)
    if not ok(v):
        raise ValueError(f"{name} must {must}, got {v!r}")
    return v


def positive_int(name: str, value: Any) -> int:
    return _number(name, value, "a positive int", lambda v: v > 0, "be a positive int (> 0)", integer=True)


def probability(name: str, value: Any) -> float:
    """A probability in [0, 1) (1 would drop or freeze everything)."""
    return _number(name, value, "a float in [0, 1)", lambda v: 0.0 <= v < 1.0, "be a probability in [0, 1)")


def open_unit(name: str, value: Any) -> float:
    return _number(name, value, "a float in (0, 1)", lambda v: 0.0 < v < 1.0, "lie strictly between 0 and 1")


def positive_float(name: str, value: Any) -> float:
    return _number(name, value, "a positive float", lambda v: math.isfinite(v) and v > 0.0,
                   "be a finite float > 0")


#: The one table from reset name to the code the native and CUDA kernels take (the order of
#: :data:`snntorch_egru.functional.RESET_MECHANISMS`). Every reset check of the package goes
#: through :func:`reset_mechanism` / :func:`reset_code` below.
RESET_CODES: dict[str, int] = {"subtract": 0, "zero": 1, "none": 2}
RESET_MECHANISMS: tuple[str, ...] = tuple(RESET_CODES)


def show(value: Any) -> str:
    """``repr`` of a value, NumPy scalars (as read back from HDF5) shown as plain Python values."""
    return repr(value.item()) if isinstance(value, np.generic) else repr(value)


def reset_mechanism(value: Any, name: str = "reset_mechanism") -> str:
    """A reset name from :data:`RESET_CODES`; ``name`` is how the message calls the argument."""
    if not isinstance(value, str) or value not in RESET_CODES:
        raise ValueError(
            f"{name} must be one of {', '.join(repr(r) for r in RESET_MECHANISMS)}, got {show(value)}"
        )
    return str(value)


def reset_code(value: Any, name: str = "reset") -> int:
    """The kernels' integer code of a reset name (checked as :func:`reset_mechanism` does)."""
    return RESET_CODES[reset_mechanism(value, name)]


def choice(name: str, value: Any, options: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {', '.join(repr(o) for o in options)}, got {value!r}")
    return value


_SPIKE_GRAD_KINDS = ("a callable f(v) -> H(v) of one tensor returning a tensor of v's shape, such as "
                     "snntorch_egru.surrogate.pseudo_derivative() or snntorch.surrogate.atan()")


def spike_grad(value: Any) -> None:
    """``None`` or a spike function: callable, and called once on a small probe tensor (CPU, the default
    dtype, no grad) it returns a tensor of the probe's shape. A function of another signature would
    otherwise fail deep inside the layer, at the first forward."""
    if value is None:
        return
    if not callable(value):
        raise TypeError(f"spike_grad must be None or {_SPIKE_GRAD_KINDS}, got {type(value).__name__}")
    probe = torch.linspace(-1.0, 1.0, 5, device="cpu")
    try:
        with torch.no_grad():
            out = value(probe)
    except Exception as e:  # noqa: BLE001 - any failure of the user's function is reported as its own
        raise TypeError(f"spike_grad must be {_SPIKE_GRAD_KINDS}; calling spike_grad(v) on a probe v of "
                        f"shape [5] raised {type(e).__name__}: {e}") from e
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(probe.shape):
        got = f"a tensor of shape {list(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise TypeError(f"spike_grad must be {_SPIKE_GRAD_KINDS}; spike_grad(v) on a probe v of shape [5] "
                        f"returned {got}")


_STATE_ORDER_FIX = (
    "EGRUCell.forward(input_, y, c) takes the previous events y second and the state c third "
    "(as snn.RLeaky(cur, spk, mem), not snn.Leaky(cur, mem)): call y, c = cell(input_, y, c), "
    "starting from y, c = cell.init_egru(), or cell(input_) to continue from the stored state")

#: EGRUCell run by a backward pass (checkpoint recomputation) on the state it stores on itself.
RECOMPUTED_STORED_STATE = (
    "EGRUCell was run again during a backward pass (torch.utils.checkpoint recomputing a step) while "
    "reading the state it stores on itself, which by now is a later step's state, so the gradients would "
    "be wrong. Pass the state explicitly: build the cell with init_hidden=False and checkpoint "
    "y, c = checkpoint(cell, x_t, y, c, use_reentrant=False), starting from y, c = cell.init_egru()")


def cell_state_order(y: Any, stored_y: torch.Tensor, stored_c: torch.Tensor) -> None:
    """Catch the ``snn.Leaky`` idiom ``y, mem = cell(x, mem)`` where it can be seen: the ``c`` the
    cell returned (``stored_c``) passed back as ``y``, or the ``(y, c)`` tuple of ``init_egru()``."""
    if isinstance(y, tuple):
        raise TypeError(f"y must be a torch.Tensor (the previous events), got a tuple of {len(y)}; "
                        "init_egru() returns (y, c): unpack it, y, c = cell.init_egru(). " + _STATE_ORDER_FIX)
    if y is not None and y is stored_c and y is not stored_y and stored_c.numel() > 0:
        raise TypeError("the tensor passed as y is the internal state c that this cell returned "
                        "(the snn.Leaky idiom y, mem = cell(input_, mem)). " + _STATE_ORDER_FIX)


def tensor_input(name: str, x: Any, ranks: Sequence[int], feature_size: int, ref: torch.Tensor,
                 layout: str) -> torch.Tensor:
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
    if not isinstance(s, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {list(expected_shape)}, got {type(s).__name__}")
    if tuple(s.shape) != tuple(expected_shape):
        raise ValueError(
            f"{name} must have shape {list(expected_shape)} to match the input's batch size and hidden_size, "
            f"got {list(s.shape)}"
        )
    return same_place(name, s, ref)


def optional_generator(value: Optional[torch.Generator]) -> Optional[torch.Generator]:
    if value is not None and not isinstance(value, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(value).__name__}")
    return value
