"""Loader of the optional native CPU helper (private).

A small C library (``snntorch_egru/_native/egru_native.c``) is built at INSTALL time
(``setup.py``, optional extension ``snntorch_egru._native._egru_native``) and loaded with
ctypes from that module's own file. No compiler runs at run time and nothing is loaded from
a cache directory. Without it (no compiler at install, a damaged file) the same computation
runs in pure torch, with one warning naming the cause; ``SNNTORCH_EGRU_NATIVE=0`` switches it
off without a warning. Public entry: :func:`snntorch_egru.sparse.native_library`.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import warnings
from typing import Any, Optional, Tuple

import torch

_lib: Any = None
_native_tried = False
#: Why the native helper is not used (``None`` while it is, or before the first use).
_native_reason: Optional[str] = None


#: The extension module that holds the helper (tests point it elsewhere).
_NATIVE_MODULE = "snntorch_egru._native._egru_native"


def _load_native() -> Any:
    mod = importlib.import_module(_NATIVE_MODULE)
    lib = ctypes.CDLL(mod.__file__)
    vp, i64 = ctypes.c_void_p, ctypes.c_int64
    for suf in ("f32", "f64"):
        fn = getattr(lib, f"gather_axpy_{suf}")
        fn.argtypes = [vp, i64, i64, vp, i64, vp, vp, i64]
        fn.restype = ctypes.c_int
        fn = getattr(lib, f"masked_rowdot_{suf}")
        fn.argtypes = [vp, vp, i64, i64, vp, i64, vp, i64]
        fn.restype = ctypes.c_int
        fn = getattr(lib, f"transpose_{suf}")
        fn.argtypes = [vp, i64, i64, vp]
        fn.restype = None
        fn = getattr(lib, f"egru_fwd_{suf}")
        fn.argtypes = [i64, i64, i64] + [vp] * 8 + [ctypes.c_double, ctypes.c_int, ctypes.c_double,
                                                   ctypes.c_double] + [vp] * 8
        fn.restype = None
        fn = getattr(lib, f"egru_step_{suf}", None)  # absent from a helper built before it existed
        if fn is not None:
            fn.argtypes = [i64, i64, i64] + [vp] * 9 + [ctypes.c_int, ctypes.c_double, ctypes.c_int,
                                                       ctypes.c_double, ctypes.c_double] + [vp] * 5
            fn.restype = None
    return lib


def native_library() -> Any:
    """The native helper library (``ctypes.CDLL``) or ``None`` when it is not used.

    It is compiled when the package is installed (``pip install`` with a C compiler
    present) and loaded from the package itself. ``None`` when it was not built or
    cannot be loaded (a warning naming the cause is issued once: the pure-PyTorch
    fallback gives the same numbers but is slower), or when
    ``SNNTORCH_EGRU_NATIVE=0`` switches it off (no warning).

    Example::

        >>> from snntorch_egru.sparse import native_library
        >>> lib = native_library()       # None where the helper was not built
        >>> lib is None or hasattr(lib, "egru_fwd_f32")
        True
    """
    global _lib, _native_tried, _native_reason
    if _native_tried:
        return _lib
    _native_tried = True
    if os.environ.get("SNNTORCH_EGRU_NATIVE", "1") == "0":
        _native_reason = "switched off by SNNTORCH_EGRU_NATIVE=0"
        return None
    try:
        _lib = _load_native()
        _native_reason = None
    except Exception as exc:  # noqa: BLE001 - not built, damaged or incompatible: fall back, loudly
        _lib = None
        _native_reason = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, ModuleNotFoundError) and exc.name == _NATIVE_MODULE:
            _native_reason = "it was not built when the package was installed (no C compiler?)"
        warnings.warn(
            f"snntorch-egru: the native CPU helper is unavailable ({_native_reason}); using the "
            "pure-PyTorch path (same results, about 2-5x slower on the CPU). It is built when the "
            "package is installed with a C compiler present (e.g. `pip install --force-reinstall "
            "--no-deps snntorch-egru`); set SNNTORCH_EGRU_NATIVE=0 to silence this warning.",
            RuntimeWarning, stacklevel=3)
    return _lib


def _native_fns(dtype: torch.dtype) -> Optional[Tuple[Any, Any, Any, Any]]:
    """``(gather_axpy, masked_rowdot, egru_fwd, transpose)`` for ``dtype``, or ``None``."""
    if not _USE_NATIVE or dtype not in (torch.float32, torch.float64):
        return None
    lib = native_library()
    if lib is None:
        return None
    suf = "f32" if dtype == torch.float32 else "f64"
    return (getattr(lib, f"gather_axpy_{suf}"), getattr(lib, f"masked_rowdot_{suf}"), getattr(lib, f"egru_fwd_{suf}"),
            getattr(lib, f"transpose_{suf}"))


#: Use the native helpers when they can be built (tests switch this off to cover the torch path).
_USE_NATIVE = True

