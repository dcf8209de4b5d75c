"""Argument checks shared by the modules: every message names the argument,
what was expected and what was given."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import torch


def flag(name: str, value: Any) -> bool:
    """A strict bool flag: ``True``/``False`` (or a NumPy bool), never a string or a number."""
    if isinstance(value, bool):
        return value
    if type(value).__name__ == "bool_" and type(value).__module__ == "numpy":
        return bool(value)
    raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r} (pass True or False)")


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
    return _number(name, value, "a positive float", lambda v: math.isfinite(v) and v > 0.0, "be a finite float > 0")


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
        raise ValueError(f"{name} must be one of {', '.join(repr(r) for r in RESET_MECHANISMS)}, got {show(value)}")
    return str(value)


def choice(name: str, value: Any, options: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {', '.join(repr(o) for o in options)}, got {value!r}")
    return value


_SPIKE_GRAD_KINDS = (
    "a callable f(v) -> H(v) of one tensor returning a tensor of v's shape, such as "
    "snntorch_egru.surrogate.pseudo_derivative() or snntorch.surrogate.atan()"
)


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
        raise TypeError(
            f"spike_grad must be {_SPIKE_GRAD_KINDS}; calling spike_grad(v) on a probe v of "
            f"shape [5] raised {type(e).__name__}: {e}"
        ) from e
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != tuple(probe.shape):
        got = f"a tensor of shape {list(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise TypeError(
            f"spike_grad must be {_SPIKE_GRAD_KINDS}; spike_grad(v) on a probe v of shape [5] returned {got}"
        )


def tensor_of_shape(name: str, t: Any, shape: Sequence[int], why: str = "", after: str = "") -> torch.Tensor:
    """``t`` if it is a tensor of exactly ``shape`` (no broadcast), else a ``TypeError`` / ``ValueError`` that names
    ``name``, the expected shape (``why`` says where it comes from) and what was given (``after``: a hint)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {list(shape)}, got {type(t).__name__}")
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {list(shape)}{why}, got {list(t.shape)}{after}")
    return t
