"""The engine's shared room (private, lowest layer of the engines): what every launcher uses.

* the tunables of the event path (documented on :mod:`snntorch_egru.sparse`, whose names forward here) and
  :class:`force_dense`, the switch to the dense products (CPU and CUDA);
* the sparse-operand products with event matrices (``_sparse_left_mm``), the density switch of the CPU time
  loops (``_Switch``) and the per-call guards of the native gathers;
* ``W_hh^T`` cached per weight version (:func:`transposed_weight`), read by the CPU forward, the CPU backward,
  the cell's native step and the operator's backward;
* the loader of the optional native CPU helper (built at install time, loaded with ctypes);
* where a call runs: under a ``torch.func`` transform (:func:`under_transform`) or an ONNX export
  (:func:`exporting_to_onnx`), and the compute dtype (:func:`real_dtype`).

The launchers (``sparse``: CPU forward, ``_cpu_backward``, ``_grad``, ``cuda``) import this room and never each
other; the operator (``_op``) sits above them.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import warnings
from typing import Any, Iterator, Optional, Sequence, Tuple

import torch
from torch.utils.weak import WeakIdKeyDictionary


def real_dtype(dtype: torch.dtype) -> torch.dtype:
    """The compute dtype of a call in ``dtype``: float64 stays, everything else runs in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


#: Gather only when at most this fraction of the ``H`` rows is needed. Measured on the
#: 2-vCPU Xeon dev machine (torch 2.14, 1 thread, H = 1024, fp32): ``index_select`` of the
#: active rows + ``addmm`` costs 100 us at 10 % (dense 440 us), 426 us at 29 % and 728 us at
#: 52 % (batch 1); batch 16 union 26 %: 520 us vs dense 1013 us, union 82 %: 1800 us vs 1020 us.
#: Break-even is near 30 %; 0.25 keeps a margin for noise.
GATHER_MAX_FRACTION = 0.25

#: Below this size of ``W_hh`` (bytes) the dense product wins at every activity (the
#: matrix stays in cache; measured at H = 256: dense matvec 9 us, gather at 2 % 18 us).
SMALL_WEIGHT_BYTES = 1_500_000

#: Products with event matrices (stacked input projection, ``dW_hh`` and ``dW_ih``) use a
#: sparse CSR operand only at densities up to this value (measured, T*B = 300, 1024 x 3072:
#: CSR 3.0 ms vs dense 11-16 ms at 1 %, CSR slower from ~10 %).
CSR_MAX_DENSITY = 0.03

_FORCE_DENSE = False


class force_dense:
    """Context manager that disables every sparse product of the ``"torch"`` backend (and puts the
    CuPy kernels into their dense mode).

    The numbers are unchanged (up to rounding); it is the "dense EGRU" baseline of
    ``snntorch-egru bench``.

    Example::

        >>> import torch, snntorch_egru as se
        >>> from snntorch_egru.sparse import force_dense
        >>> rnn = se.EGRU(4, 8, backend="torch")
        >>> with force_dense():
        ...     out, _ = rnn(torch.randn(5, 2, 4))
    """

    def __enter__(self) -> "force_dense":
        global _FORCE_DENSE
        self._prev = _FORCE_DENSE
        _FORCE_DENSE = True
        return self

    def __exit__(self, *exc: object) -> None:
        global _FORCE_DENSE
        _FORCE_DENSE = self._prev


# ------------------------------------------------------------------------------------------
# helpers


def _weights_small(w_t: torch.Tensor) -> bool:
    return w_t.numel() * w_t.element_size() < SMALL_WEIGHT_BYTES


_NO_EVENTS = object()  # _csr_if_sparse's answer for an all-zero matrix


@contextlib.contextmanager
def _quiet_csr_beta() -> Iterator[None]:
    """torch flags CSR support as beta; the products here are exact."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
        yield


def _csr_if_sparse(a: torch.Tensor) -> Any:
    """``a`` as CSR when the product should use it, :data:`_NO_EVENTS` when ``a`` is all zeros, else None."""
    if _FORCE_DENSE or a.device.type != "cpu" or a.shape[0] == 0 or a.shape[1] == 0:
        return None
    nnz = int(torch.count_nonzero(a))
    if nnz > CSR_MAX_DENSITY * a.numel():
        return None
    if nnz == 0:
        return _NO_EVENTS
    with _quiet_csr_beta():
        return a.to_sparse_csr()


#: The backward's products with transposed events (``dW_hh = Y^T Q``, ``Y`` [T*B, H] the layer's events) run in
#: the native helper up to this density of ``Y`` (its nonzeros listed by unit; for each unit, a chunk of the
#: result summed in registers over the rows of ``Q`` where the unit fired; on two threads); above it, one
#: dense GEMM. Measured on the 2-core dev machine (T*B = 1584, H = 1024, ``Q`` [T*B, 3H], fp32, 2026-12-07):
#: 8.2 / 16.5 / 24.5 / 42.5 / 61.0 ms at 1 / 5 / 10 / 20 / 30 % against 53-70 ms for the dense GEMM.
NATIVE_EVENTS_MAX_DENSITY = 0.2


def _native_events_t_mm(a: torch.Tensor, bs: Sequence[torch.Tensor], outs: Sequence[torch.Tensor]) -> bool:
    """``outs[i] = a @ bs[i]`` by the native helper when ``a`` is the transpose of a contiguous events matrix
    ``[n, H]`` on the CPU and every operand has the layout its pointers are read with (unit column strides,
    inside their storage); ``False`` (nothing written) when it does not apply or the events are too dense."""
    if _FORCE_DENSE or not _USE_NATIVE or a.device.type != "cpu" or a.dtype not in (torch.float32, torch.float64):
        return False
    lib = native_library()
    suf = "f32" if a.dtype == torch.float32 else "f64"
    fn = getattr(lib, f"events_t_mm_{suf}", None) if lib is not None else None
    e = a.t()
    h, n = a.shape
    if fn is None or n == 0 or h == 0 or not e.is_contiguous() or a.requires_grad or not _within_storage(e):
        return False
    for b, o in zip(bs, outs):
        g = b.shape[-1]
        if not (
            b.dim() == 2 and o.dim() == 2 and b.dtype == a.dtype and o.dtype == a.dtype
            and b.device == a.device and o.device == a.device and tuple(b.shape) == (n, g) and tuple(o.shape) == (h, g)
            and b.stride(1) == 1 and o.stride(1) == 1 and b.stride(0) >= g and o.stride(0) >= g
            and _within_storage(b) and _within_storage(o)
        ):  # fmt: skip
            return False
    desc = [v for b, o in zip(bs, outs) for v in (b.data_ptr(), b.shape[1], b.stride(0), o.data_ptr(), o.stride(0))]
    threads = min(2, torch.get_num_threads())
    max_nnz = int(NATIVE_EVENTS_MAX_DENSITY * n * h)
    rc = fn(e.data_ptr(), n, h, len(bs), (ctypes.c_int64 * len(desc))(*desc), max_nnz, threads)
    if rc == 2:
        raise MemoryError("snntorch_egru: the native events product could not allocate its list of events")
    return rc == 0  # 1: too dense, nothing written (the dense GEMM runs)


def _within_storage(t: torch.Tensor) -> bool:
    """Every element ``t``'s strides reach lies inside its storage (where a pointer walk reads or writes)."""
    if t.numel() == 0:
        return True
    last = t.storage_offset() + sum((size - 1) * stride for size, stride in zip(t.shape, t.stride()))
    return bool(t.storage_offset() >= 0 and (last + 1) * t.element_size() <= t.untyped_storage().nbytes())


def _sparse_left_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` with ``a`` 2-D and mostly zeros: the native product when ``a`` is transposed events
    (:func:`_native_events_t_mm`), else a CSR product when sparse enough, else dense."""
    if a.dim() == 2 and b.dim() == 2 and b.stride(-1) == 1 and a.t().is_contiguous():
        out = b.new_empty(a.shape[0], b.shape[1])
        if _native_events_t_mm(a, (b,), (out,)):
            return out
    csr = _csr_if_sparse(a)
    if csr is None:
        return a @ b
    if csr is _NO_EVENTS:
        return a.new_zeros(a.shape[0], b.shape[1])
    with _quiet_csr_beta():
        return torch.sparse.mm(csr, b)


def _sparse_left_mm_into(a: torch.Tensor, bs: Sequence[torch.Tensor], outs: Sequence[torch.Tensor]) -> None:
    """``outs[i] = a @ bs[i]`` in place (``outs`` may be column blocks of one matrix), ``a`` 2-D and
    mostly zeros: the native helper's product with the transposed events when ``a`` is one
    (:func:`_native_events_t_mm`), else one density count and one CSR conversion of ``a`` serve every product."""
    if _native_events_t_mm(a, bs, outs):
        return
    csr = _csr_if_sparse(a)
    for b, o in zip(bs, outs):
        if csr is None:
            torch.mm(a, b, out=o)
        elif csr is _NO_EVENTS:
            o.zero_()
        else:
            with _quiet_csr_beta():
                o.copy_(torch.sparse.mm(csr, b))


#: The native per-sample gather is used while the batch holds at most this many events per
#: unit row of ``W_hh^T`` (``nnz <= NATIVE_MAX_FRACTION * H``); above, one dense BLAS product
#: reading every row once is cheaper than re-reading rows per sample.
NATIVE_MAX_FRACTION = 0.5

#: Up to this batch size the whole forward time loop (per-sample event gather, gates,
#: threshold, reset, trace) runs in one native call: no per-step Python/dispatch cost, which
#: otherwise exceeds a whole ``torch.nn.GRU`` step at H = 256. Measured on the 2-core dev machine
#: (T = 50, no_grad, 2026-12-06): the native loop is faster than the torch loop with its dense
#: products at every batch up to 64 for H = 256 and 1024 at 10 % and 30 % activity (H = 1024,
#: 10 %: B = 16 55 ms vs 101 ms, B = 64 217 vs 286; 30 %, B = 64: 314 vs 317).
NATIVE_SEQ_MAX_BATCH = 64

#: From ``B * H`` units on, a native step (the per-step cell's ``egru_step``: ``EGRUCell`` under ``no_grad``,
#: :class:`~snntorch_egru.Streamer`; each step of the forward time loop ``egru_fwd``) is cut into two
#: ranges of units run at once on two threads of torch's own OpenMP runtime (one parallel region per step:
#: the threads torch's parallel ops use, so nothing competes with them for the cores; a worker thread of
#: the helper's own where that runtime is not found). The per-step cell's weight probe is cut the same way.
#: Each range is computed as one thread would, so the numbers do not depend on the cut, nor on the
#: thread count (``torch.set_num_threads(1)`` keeps every step on one thread). Below it the hand-over
#: costs more than it saves. Measured on the 2-core dev machine (I = 64, 10 %, fp32, 2026-12-07): ``EGRUCell``
#: per step, B = 1, H = 1024: 62-68 us on two threads against 91-96 us on one; H = 512: 36 against 43 us;
#: the sequence loop, B = 1, T = 200, H = 1024: 5.8 against 9.4 ms (I = 64), 13.0 against 15.9 ms (I = H).
SPLIT_MIN_UNITS = 512


def native_split(units: int) -> Tuple[int, int]:
    """``(threads, ranges of units)`` for a native step of ``units`` = B * H (see :data:`SPLIT_MIN_UNITS`);
    torch's thread setting caps the threads (``torch.set_num_threads(1)`` keeps every step on one)."""
    if units < SPLIT_MIN_UNITS:
        return 1, 1
    return min(2, torch.get_num_threads()), 2


class _Switch:
    """Density switch with hysteresis: after a step found too dense for a gather, the next
    :data:`DENSE_HOLD_STEPS` steps go straight to the dense product (no counting)."""

    __slots__ = ("hold", "dense_steps", "sparse_steps")

    def __init__(self) -> None:
        self.hold = 0
        self.dense_steps = 0
        self.sparse_steps = 0

    def go_dense(self) -> bool:
        if self.hold > 0:
            self.hold -= 1
            self.dense_steps += 1
            return True
        return False

    def failed(self) -> None:
        self.hold = DENSE_HOLD_STEPS
        self.dense_steps += 1


#: Steps that skip the sparsity check after a dense step (activity changes slowly over time).
DENSE_HOLD_STEPS = 8


def _native_ok(*tensors: torch.Tensor) -> bool:
    """Cheap per-call guard of the native gathers: same dtype, CPU, contiguous."""
    dt = tensors[0].dtype
    return all(t.dtype == dt and t.device.type == "cpu" and t.is_contiguous() for t in tensors)


def fast_layout(w_hh: torch.Tensor) -> bool:
    """``True`` when ``W_hh`` [3H, H] is stored as its transpose: ``W_hh.t()`` [H, 3H] contiguous.

    The modules store ``weight_hh`` row-major (contiguous, as ``torch.nn.GRU`` does), and the CPU
    event path reads one unit's outgoing weights as one contiguous row of ``W_hh^T``: from a
    transposed copy cached per weight tensor (see :func:`transposed_weight`), or in place for a
    weight in this layout (no copy at all).

    Args:
        w_hh: a recurrent weight ``[3H, H]``.

    Example::

        >>> import torch, snntorch_egru as se
        >>> from snntorch_egru.sparse import fast_layout
        >>> fast_layout(se.EGRU(3, 8).weight_hh_l0), fast_layout(torch.randn(8, 24).t())
        (False, True)
    """
    return w_hh.dim() == 2 and w_hh.t().is_contiguous()


#: weight tensor -> ((data_ptr, _version, shape, strides, dtype, device), probe, the contiguous W_hh^T)
_T_CACHE = WeakIdKeyDictionary()

#: Every this-many-th element of a weight is compared with its value when the copy was made: in-place
#: edits through ``.data`` bypass the version counter, and any edit of more than a few elements
#: (``mul_``, ``copy_``, ``clamp_``, re-initialisation) changes the probe (about 0.4 % of the
#: elements, a strided compare: ~10 us at H = 1024 against ~15 ms for T = 200 steps).
PROBE_STRIDE = 257


def _probe(w_hh: torch.Tensor) -> torch.Tensor:
    return w_hh.detach().reshape(-1)[::PROBE_STRIDE]


def _cache_key(w_hh: torch.Tensor) -> Optional[Tuple[Any, ...]]:
    """The identity of ``w_hh``'s current values, or ``None`` (never cached): an inference tensor keeps
    no version counter, and a traced tensor (``torch.compile``'s backward graph) has no storage."""
    if type(w_hh) not in (torch.Tensor, torch.nn.Parameter) or torch.compiler.is_compiling():
        return None
    try:
        return (w_hh.data_ptr(), w_hh._version, tuple(w_hh.shape), w_hh.stride(), w_hh.dtype, w_hh.device)
    except RuntimeError:
        return None


def transposed_weight(w_hh: torch.Tensor, native: Optional[Tuple[Any, ...]] = None) -> torch.Tensor:
    """Contiguous ``W_hh^T`` [H, 3H] of a recurrent weight ``W_hh`` [3H, H] (what the event path reads).

    A weight stored transposed is read in place (a view). Any other weight is transposed once
    (a tiled native transpose) and the copy is kept for that tensor object, keyed on its storage
    address, autograd version counter and a probe of its values: every torch in-place edit (an
    optimizer step, ``with torch.no_grad(): w.mul_(2)``, ``copy_``, ``load_state_dict``) and every
    replacement (``.data = ...``, pruning's recomputed weight) makes a new copy, and so does an edit
    through ``w.data`` (which bypasses the version counter) that changes one of the probed elements
    (every :data:`PROBE_STRIDE`-th; any edit of more than a few elements does). After editing only
    a few elements through ``.data``, NumPy or a raw pointer, call
    :meth:`snntorch_egru.EGRU.flatten_parameters` (or :func:`clear_transposed_cache`).

    Args:
        w_hh: a recurrent weight ``[3H, H]``.
        native: the native helpers (internal; ``None`` uses a torch copy).

    Example::

        >>> import torch
        >>> from snntorch_egru.sparse import transposed_weight
        >>> w = torch.randn(6, 2)
        >>> w_t = transposed_weight(w)
        >>> torch.equal(w_t, w.t()), w_t.is_contiguous(), transposed_weight(w) is w_t
        (True, True, True)
    """
    if fast_layout(w_hh):
        return w_hh.t()
    key = _cache_key(w_hh)
    if key is not None:
        hit = _T_CACHE.get(w_hh)
        if hit is not None and hit[0] == key and torch.equal(_probe(w_hh), hit[1]):
            return hit[2]
    w_t = _transpose(w_hh, native)
    if key is not None:
        _T_CACHE[w_hh] = (key, _probe(w_hh).clone(), w_t)
    return w_t


def clear_transposed_cache() -> None:
    """Drop every cached ``W_hh^T`` copy (after editing a few elements through ``.data``).

    Example::

        >>> import torch, snntorch_egru as se
        >>> from snntorch_egru.sparse import clear_transposed_cache
        >>> rnn = se.EGRU(3, 8)
        >>> _ = rnn(torch.randn(4, 1, 3))
        >>> rnn.weight_hh_l0.data[0, 1] = 0.5          # one element, no version bump
        >>> clear_transposed_cache()                   # (rnn.flatten_parameters() does the same)
    """
    _T_CACHE.clear()


def _transpose(w_hh: torch.Tensor, native: Optional[Tuple[Any, ...]]) -> torch.Tensor:
    """A new contiguous ``W_hh^T`` [H, 3H] (tiled native transpose when available: torch's strided
    copy of a large matrix is ~10x slower than a plain copy), on huge pages where the kernel gives them
    (:func:`advise_huge_pages`)."""
    rows, cols = w_hh.shape
    out = w_hh.new_empty(cols, rows)
    if native is not None and w_hh.is_contiguous() and _native_ok(w_hh, out):
        advise_huge_pages(out, collapse=False)  # before the first write: the pages fault in huge
        native[3](w_hh.data_ptr(), rows, cols, out.data_ptr())
        advise_huge_pages(out)  # memory reused from an earlier tensor was touched already
        return out
    return out.copy_(w_hh.t())


#: Tensors smaller than this are not advised (no whole 2 MiB page inside, or too few to matter).
HUGE_PAGE_MIN_BYTES = 4 << 20


def advise_huge_pages(t: torch.Tensor, collapse: bool = True) -> int:
    """Ask the kernel to back ``t``'s memory with 2 MiB pages (Linux, native helper built; best effort, the
    data is unchanged): the event path reads scattered rows of large weights, and with 4 KiB pages nearly
    every such read also misses the TLB. Returns the bytes advised (0: nothing done)."""
    lib = native_library()
    fn = getattr(lib, "advise_huge", None) if lib is not None else None
    nbytes = t.numel() * t.element_size()
    if fn is None or t.device.type != "cpu" or not t.is_contiguous() or nbytes < HUGE_PAGE_MIN_BYTES:
        return 0
    return int(fn(t.data_ptr(), nbytes, int(collapse)))


# ------------------------------------------------------------------------------------------
# the native CPU helper (optional C library built at install time)

# The helper is loaded on first use; tests point _NATIVE_MODULE elsewhere or switch _USE_NATIVE off.
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
        fn.argtypes = (
            [i64, i64, i64]
            + [vp] * 8
            + [ctypes.c_double, ctypes.c_int, ctypes.c_double, ctypes.c_double]
            + [vp] * 8
            + [ctypes.c_int, ctypes.c_int]
        )
        fn.restype = None
        fn = getattr(lib, f"weight_probe_{suf}", None)
        if fn is not None:
            fn.argtypes = [vp, i64, i64, vp]
            fn.restype = ctypes.c_int
    for suf in ("f32", "f64"):
        fn = getattr(lib, f"events_t_mm_{suf}", None)
        if fn is not None:
            fn.argtypes = [vp, i64, i64, i64, ctypes.POINTER(ctypes.c_int64), i64, ctypes.c_int]
            fn.restype = ctypes.c_int
    fn = getattr(lib, "advise_huge", None)
    if fn is not None:
        fn.argtypes = [vp, i64, ctypes.c_int]
        fn.restype = i64
    fn = getattr(lib, "pool_use_openmp", None)
    runtime = _openmp_runtime()
    if fn is not None and runtime is not None:
        fn.argtypes = [ctypes.c_char_p]
        fn.restype = ctypes.c_int
        fn(os.fsencode(runtime))
    return lib


def _openmp_runtime() -> Optional[str]:
    """The file of the OpenMP runtime loaded in this process that torch runs on (Linux: from
    ``/proc/self/maps``, torch's own copy first), or ``None``. The native helper's parallel steps run on
    its threads (``pool_use_openmp`` in ``_native/egru_native.c``)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if ".so" in line}
    except OSError:
        return None
    names = ("libgomp", "libiomp5", "libomp")
    found = sorted(p for p in paths if os.path.basename(p).startswith(names))
    torch_dir = os.path.dirname(torch.__file__)
    for p in found:
        if p.startswith(torch_dir):
            return p
    return found[0] if found else None


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
            RuntimeWarning,
            stacklevel=3,
        )
    return _lib


def _native_fns(dtype: torch.dtype) -> Optional[Tuple[Any, Any, Any, Any]]:
    """``(gather_axpy, masked_rowdot, egru_fwd, transpose)`` for ``dtype``, or ``None``."""
    if not _USE_NATIVE or dtype not in (torch.float32, torch.float64):
        return None
    lib = native_library()
    if lib is None:
        return None
    suf = "f32" if dtype == torch.float32 else "f64"
    return (
        getattr(lib, f"gather_axpy_{suf}"),
        getattr(lib, f"masked_rowdot_{suf}"),
        getattr(lib, f"egru_fwd_{suf}"),
        getattr(lib, f"transpose_{suf}"),
    )


#: Use the native helpers when they can be built (tests switch this off to cover the torch path).
_USE_NATIVE = True


# ------------------------------------------------------------------------------------------
# where a call runs


def exporting_to_onnx() -> bool:
    """Whether ``torch.onnx.export`` is running, also inside its ``torch.export(strict=True)`` capture (where
    TorchDynamo folds ``torch.onnx.is_in_onnx_export()`` to False; the exporter's own flag is read instead).

    Example::

        >>> from snntorch_egru._engine import exporting_to_onnx
        >>> exporting_to_onnx()
        False
    """
    if torch.onnx.is_in_onnx_export():
        return True
    try:
        from torch.onnx._internal.exporter import _flags
    except ImportError:  # pragma: no cover - another torch layout
        return False
    return bool(getattr(_flags, "_is_onnx_exporting", False))


def under_transform(*tensors: Optional[torch.Tensor]) -> bool:
    """Whether a ``torch.func`` transform (``grad``, ``jacrev``, ``jvp``, ``vmap``, ...) is active or a
    tensor carries a forward-mode tangent (``torch.autograd.forward_ad``): the operator supports neither
    (torch would give zero tangents), so the layer runs the reference math, which supports both.

    Example::

        >>> import torch
        >>> from snntorch_egru._engine import under_transform
        >>> x = torch.randn(3)
        >>> with torch.autograd.forward_ad.dual_level():
        ...     dual = torch.autograd.forward_ad.make_dual(x, torch.ones(3))
        ...     under_transform(x), under_transform(dual)
        (False, True)
    """
    if torch.compiler.is_compiling():  # traced graphs: the operator node (compile / export)
        return False
    if torch._C._functorch.maybe_current_level() is not None:
        return True
    fwd = torch.autograd.forward_ad
    if getattr(fwd, "_current_level", 0) < 0:  # no dual_level open: no tangents anywhere
        return False
    return any(t is not None and fwd.unpack_dual(t).tangent is not None for t in tensors)
