"""Event-driven EGRU on CPU: a fused sequence function with a hand-written sparse backward.

This module registers the ``"torch"`` backend (priority 10), which
``EGRU(backend="auto")`` uses by default for CPU tensors. One
:class:`torch.autograd.Function` covers a whole layer sequence, so autograd
records a single node per layer instead of a tape of ~20 ops per step.

Forward:
    * the input projection ``x W_ih^T + b_ih`` for all steps in one matrix product
      (a sparse-CSR product when the input is a lower layer's events and they are
      sparse enough);
    * per step, the recurrent product uses only the rows of ``W_hh^T`` (kept as a
      contiguous ``[H, 3H]`` copy, so one active unit = one row) of the units that
      fired: per sample at batch 1, over the batch union of active units above,
      or a plain dense product when the active fraction exceeds a measured
      crossover (:data:`GATHER_MAX_FRACTION`) or the weights are small enough to
      stay in cache (:data:`SMALL_WEIGHT_BYTES`).

Backward (``egru-model.md`` section 3, written out by hand):
    everything inside a unit is a precomputed linear map of the two carried
    gradients (on ``y_t`` and ``c_t``), so each step costs a few element-wise ops
    plus ``delta_y_{t-1} = q_t W_hh`` restricted to the units that can absorb
    gradient (``G = {fired} U {|c_hat - theta| < support}``); weight and bias
    gradients are large products after the loop, ``dW_hh`` from the events
    ``y_{t-1}`` (sparse CSR product when they are sparse).

Saved for backward: the returned sequences (no extra memory), plus ``r, z``
(``[T, B, 2H]``), ``n`` and ``h_n = W_hn y + b_hn`` (``[T, B, H]`` each); the
pre-reset state is rebuilt as ``where(o, y, c)``. The backward builds its
per-unit coefficients chunk by chunk of time steps, so its own temporaries stay
small; measured peak training memory (``snntorch-egru bench --memory``) is below
autograd through the step-by-step reference. The contiguous ``W_hh^T`` copy is
cached per weight tensor (one extra ``[H, 3H]`` per layer) and refreshed when
the weight changes (version counter, storage, and a strided probe that also
catches ``.data`` updates).

Native helpers: when a C compiler is present, a few lines of C (compiled at first
use in about 0.4 s and cached) run the whole forward time loop for batches up to
:data:`NATIVE_SEQ_MAX_BATCH` (the per-step Python/dispatch cost otherwise exceeds
a whole ``torch.nn.GRU`` step at H = 256), per-sample gathers for larger batches
and the backward's masked row products. Without a compiler (or with
``SNNTORCH_EGRU_NATIVE=0``) the same computation runs in pure torch.

Surrogates: :class:`~snntorch_egru.surrogate.EGRUSurrogate` (triangle, compact
support) and :func:`~snntorch_egru.surrogate.heaviside` take the sparse path.
Any other spike function (e.g. ``snntorch.surrogate.atan()``, whose gradient
never vanishes) falls back to a dense recurrent backward, with the
pseudo-derivative obtained by differentiating the spike function itself
(``torch.autograd.grad`` on ``spike_fn(v)``, so it must act element-wise); its
forward is also the spike function's own output.

Example::

    >>> import torch, snntorch_egru as se
    >>> rnn = se.EGRU(8, 16, backend="torch").double()
    >>> x = torch.randn(20, 3, 8, dtype=torch.float64)
    >>> out, state = rnn(x)
    >>> ref = se.EGRU(8, 16, backend="reference").double()
    >>> _ = ref.load_state_dict(rnn.state_dict())
    >>> torch.allclose(out, ref(x)[0])
    True
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import warnings
import weakref
from typing import Any, Callable, Optional, Tuple

import torch

from . import functional as F
from .backends import LayerCall, register_backend
from .surrogate import EGRUSurrogate, surrogate_support

__all__ = [
    "egru_sequence_fused",
    "GATHER_MAX_FRACTION",
    "SMALL_WEIGHT_BYTES",
    "CSR_MAX_DENSITY",
    "force_dense",
    "native_library",
    "NATIVE_MAX_FRACTION",
    "NATIVE_SEQ_MAX_BATCH",
    "DENSE_HOLD_STEPS",
]

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

#: The backward builds its per-unit coefficients for this many (step, sample, unit) elements
#: at a time, which bounds its temporary memory.
_BACKWARD_CHUNK_ELEMENTS = 1 << 17


class force_dense:
    """Context manager that disables every sparse product of the ``"torch"`` backend.

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


_WT_CACHE: dict = {}


def _transposed(w_hh: torch.Tensor) -> torch.Tensor:
    """Contiguous ``W_hh^T`` [H, 3H], cached per weight tensor until it is modified in place."""
    if w_hh.requires_grad and w_hh.grad_fn is not None:  # a computed tensor (e.g. DropConnect-masked)
        return w_hh.detach().t().contiguous()
    key = id(w_hh)
    hit = _WT_CACHE.get(key)
    if hit is not None:
        ref, version, ptr, probe, w_t = hit
        # version counter and storage catch autograd-visible changes; the probe (every 4099th
        # element) catches in-place updates made through ``.data``, which bypass the counter
        if (ref() is w_hh and version == w_hh._version and ptr == w_hh.data_ptr()
                and torch.equal(w_hh.detach().reshape(-1)[::4099], probe)):
            return w_t
    w_t = w_hh.detach().t().contiguous()
    if len(_WT_CACHE) > 16:
        for k in [k for k, v in _WT_CACHE.items() if v[0]() is None] or list(_WT_CACHE)[:1]:
            _WT_CACHE.pop(k, None)
    _WT_CACHE[key] = (weakref.ref(w_hh), w_hh._version, w_hh.data_ptr(),
                      w_hh.detach().reshape(-1)[::4099].clone(), w_t)
    return w_t


def _weights_small(w_t: torch.Tensor) -> bool:
    return w_t.numel() * w_t.element_size() < SMALL_WEIGHT_BYTES


def _sparse_left_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` with ``a`` 2-D and mostly zeros: CSR product when sparse enough, else dense."""
    if not _FORCE_DENSE and a.device.type == "cpu" and a.shape[0] > 0 and a.shape[1] > 0:
        nnz = int(torch.count_nonzero(a))
        if nnz <= CSR_MAX_DENSITY * a.numel():
            if nnz == 0:
                return a.new_zeros(a.shape[0], b.shape[1])
            with warnings.catch_warnings():  # torch flags CSR support as beta; the product is exact
                warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
                return torch.sparse.mm(a.to_sparse_csr(), b)
    return a @ b


class _Cfg:
    __slots__ = ("spike_fn", "reset", "zoneout_p", "input_is_events", "kind", "has_bias_ih", "has_bias_hh")

    def __init__(self, spike_fn: Callable, reset: str, zoneout_p: float, input_is_events: bool) -> None:
        self.spike_fn = spike_fn
        self.reset = reset
        self.zoneout_p = float(zoneout_p)
        self.input_is_events = bool(input_is_events)
        support = surrogate_support(spike_fn)
        if isinstance(spike_fn, EGRUSurrogate):
            self.kind = "triangle"
        elif support == 0.0:
            self.kind = "none"  # gradient-free Heaviside
        else:
            self.kind = "generic"  # unknown support: dense fallback, autograd of spike_fn


# ------------------------------------------------------------------------------------------
# optional native helpers: a few lines of C compiled with the system C compiler at first use
# (about 0.4 s, cached on disk) and called through ctypes. Without a compiler, or with
# SNNTORCH_EGRU_NATIVE=0, everything runs in pure torch with the same numbers (up to rounding).

_C_SOURCE = r"""
#include <stdint.h>
#include <string.h>
#define DEFINE(T, SUF)                                                                      \
int gather_axpy_##SUF(const T* y, int64_t b, int64_t h, const T* w, int64_t n,          \
                      const T* bias, T* out, int64_t max_nnz) {                           \
    int64_t nnz = 0;                                                                      \
    for (int64_t i = 0; i < b * h; ++i) nnz += (y[i] != 0);                               \
    if (nnz > max_nnz) return 1;                                                          \
    for (int64_t s = 0; s < b; ++s) {                                                     \
        T* restrict o = out + s * n;                                                      \
        memcpy(o, bias, (size_t)n * sizeof(T));                                           \
        const T* ys = y + s * h;                                                          \
        for (int64_t j = 0; j < h; ++j) {                                                 \
            const T a = ys[j];                                                            \
            if (a != 0) {                                                                 \
                const T* restrict row = w + j * n;                                        \
                for (int64_t k = 0; k < n; ++k) o[k] += a * row[k];                       \
            }                                                                             \
        }                                                                                 \
    }                                                                                     \
    return 0;                                                                             \
}                                                                                         \
int masked_rowdot_##SUF(const T* q, const uint8_t* mask, int64_t b, int64_t h,           \
                        const T* w, int64_t n, T* out, int64_t max_nnz) {                 \
    int64_t nnz = 0;                                                                      \
    for (int64_t i = 0; i < b * h; ++i) nnz += (mask[i] != 0);                            \
    if (nnz > max_nnz) return 1;                                                          \
    for (int64_t s = 0; s < b; ++s) {                                                     \
        const T* restrict qs = q + s * n;                                                 \
        for (int64_t j = 0; j < h; ++j) {                                                 \
            T acc = 0;                                                                    \
            if (mask[s * h + j]) {                                                        \
                const T* restrict row = w + j * n;                                        \
                _Pragma("omp simd reduction(+:acc)")                                      \
                for (int64_t k = 0; k < n; ++k) acc += row[k] * qs[k];                    \
            }                                                                             \
            out[s * h + j] = acc;                                                         \
        }                                                                                 \
    }                                                                                     \
    return 0;                                                                             \
}
DEFINE(float, f32)
DEFINE(double, f64)
#include <math.h>
#define SEQ(T, SUF, EXP, TANH)                                                              \
void egru_fwd_##SUF(int64_t tn, int64_t b, int64_t h, const T* gi, const T* y0,          \
        const T* c0, const T* tr0, const T* w, const T* bhh, const T* theta, const T* zo, \
        double zo_p, int reset, double decay, double gain, T* ys, T* cs, T* os, T* trs,    \
        T* rz_out, T* n_out, T* hn_out, T* gh) {                                          \
    const int64_t g3 = 3 * h;                                                             \
    const T p = (T)zo_p, keep = (T)(1.0 - zo_p), dec = (T)decay, inc = (T)gain;           \
    for (int64_t t = 0; t < tn; ++t) {                                                    \
        const T* yp = t ? ys + (t - 1) * b * h : y0;                                      \
        const T* cp = t ? cs + (t - 1) * b * h : c0;                                      \
        const T* tp = t ? trs + (t - 1) * b * h : tr0;                                    \
        for (int64_t s = 0; s < b; ++s) memcpy(gh + s * g3, bhh, (size_t)g3 * sizeof(T)); \
        /* each row of an active unit is read once and applied to every sample using it */ \
        for (int64_t j = 0; j < h; ++j) {                                                 \
            const T* restrict row = w + j * g3;                                           \
            for (int64_t s = 0; s < b; ++s) {                                             \
                const T a = yp[s * h + j];                                                \
                if (a != 0) {                                                             \
                    T* restrict g = gh + s * g3;                                          \
                    for (int64_t k = 0; k < g3; ++k) g[k] += a * row[k];                  \
                }                                                                         \
            }                                                                             \
        }                                                                                 \
        for (int64_t s = 0; s < b; ++s) {                                                 \
            const T* restrict g = gh + s * g3;                                            \
            const int64_t base = (t * b + s) * h;                                         \
            const T* gib = gi + (t * b + s) * g3;                                         \
            for (int64_t i = 0; i < h; ++i) {                                             \
                const T r = (T)1 / ((T)1 + EXP(-(gib[i] + g[i])));                        \
                const T z = (T)1 / ((T)1 + EXP(-(gib[h + i] + g[h + i])));                \
                const T hn = g[2 * h + i];                                                \
                const T n = TANH(gib[2 * h + i] + r * hn);                                \
                const T cprev = cp[s * h + i];                                            \
                T ch = n + z * (cprev - n);                                               \
                if (zo) { const T m = zo[base + i]; ch = cprev + m * (ch - cprev); }      \
                else if (zo_p > 0) ch = p * cprev + keep * ch;                            \
                const T th = theta[i];                                                    \
                const T o = (ch - th) > 0 ? (T)1 : (T)0;                                  \
                const T y = o * ch;                                                       \
                os[base + i] = o;                                                         \
                ys[base + i] = y;                                                         \
                cs[base + i] = reset == 0 ? ch - o * th : (reset == 1 ? ch * ((T)1 - o) : ch); \
                trs[base + i] = tp[s * h + i] * dec + inc * y;                            \
                if (rz_out) {                                                             \
                    rz_out[(t * b + s) * 2 * h + i] = r;                                  \
                    rz_out[(t * b + s) * 2 * h + h + i] = z;                              \
                    n_out[base + i] = n;                                                  \
                    hn_out[base + i] = hn;                                                \
                }                                                                         \
            }                                                                             \
        }                                                                                 \
    }                                                                                     \
}
SEQ(float, f32, expf, tanhf)
SEQ(double, f64, exp, tanh)
"""

_native_lib: Any = None
_native_tried = False


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") or line.startswith("flags"):
                    return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def native_library() -> Any:
    """The compiled helper library (``ctypes.CDLL``) or ``None`` when unavailable.

    Compiled once per machine with ``$CC`` (default ``cc``) into
    ``$SNNTORCH_EGRU_CACHE`` (default ``~/.cache/snntorch_egru``); set
    ``SNNTORCH_EGRU_NATIVE=0`` to disable it.

    Example::

        >>> from snntorch_egru.sparse import native_library
        >>> lib = native_library()       # None where no C compiler is found
        >>> lib is None or hasattr(lib, "_name")
        True
    """
    global _native_lib, _native_tried
    if _native_tried:
        return _native_lib
    _native_tried = True
    if os.environ.get("SNNTORCH_EGRU_NATIVE", "1") == "0":
        return None
    cc = os.environ.get("CC", "cc")
    flags = ["-O3", "-march=native", "-fopenmp-simd", "-fPIC", "-shared", "-std=c99"]
    key = hashlib.sha256((_C_SOURCE + cc + " ".join(flags) + _cpu_name() + platform.machine()).encode()).hexdigest()[:16]
    cache = os.environ.get("SNNTORCH_EGRU_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "snntorch_egru")
    try:
        os.makedirs(cache, exist_ok=True)
        lib_path = os.path.join(cache, f"egru_native_{key}.so")
        if not os.path.exists(lib_path):
            if shutil.which(cc) is None:
                return None
            src = os.path.join(cache, f"egru_native_{key}_{os.getpid()}.c")
            tmp = src[:-2] + ".so"
            with open(src, "w") as f:
                f.write(_C_SOURCE)
            res = subprocess.run([cc, *flags, src, "-o", tmp, "-lm"], capture_output=True, timeout=120)
            os.unlink(src)
            if res.returncode != 0:
                return None
            os.replace(tmp, lib_path)
        lib = ctypes.CDLL(lib_path)
        vp, i64 = ctypes.c_void_p, ctypes.c_int64
        for suf in ("f32", "f64"):
            fn = getattr(lib, f"gather_axpy_{suf}")
            fn.argtypes = [vp, i64, i64, vp, i64, vp, vp, i64]
            fn.restype = ctypes.c_int
            fn = getattr(lib, f"masked_rowdot_{suf}")
            fn.argtypes = [vp, vp, i64, i64, vp, i64, vp, i64]
            fn.restype = ctypes.c_int
            fn = getattr(lib, f"egru_fwd_{suf}")
            fn.argtypes = [i64, i64, i64] + [vp] * 8 + [ctypes.c_double, ctypes.c_int, ctypes.c_double,
                                                       ctypes.c_double] + [vp] * 8
            fn.restype = None
        _native_lib = lib
    except Exception:  # noqa: BLE001 - any failure means: no native helpers
        _native_lib = None
    return _native_lib


def _native_fns(dtype: torch.dtype) -> Optional[Tuple[Any, Any, Any]]:
    if not _USE_NATIVE or dtype not in (torch.float32, torch.float64):
        return None
    lib = native_library()
    if lib is None:
        return None
    suf = "f32" if dtype == torch.float32 else "f64"
    return getattr(lib, f"gather_axpy_{suf}"), getattr(lib, f"masked_rowdot_{suf}"), getattr(lib, f"egru_fwd_{suf}")


#: Use the native helpers when they can be built (tests switch this off to cover the torch path).
_USE_NATIVE = True

#: The native per-sample gather is used while the batch holds at most this many events per
#: unit row of ``W_hh^T`` (``nnz <= NATIVE_MAX_FRACTION * H``); above, one dense BLAS product
#: reading every row once is cheaper than re-reading rows per sample.
NATIVE_MAX_FRACTION = 0.5

#: Up to this batch size the whole forward time loop (per-sample event gather, gates,
#: threshold, reset, trace) runs in one native call: no per-step Python/dispatch cost, which
#: otherwise exceeds a whole ``torch.nn.GRU`` step at H = 256.
NATIVE_SEQ_MAX_BATCH = 4


def _psi(cfg: _Cfg, v: torch.Tensor) -> Optional[torch.Tensor]:
    """Pseudo-derivative of the spike function at ``v`` (``None`` = identically zero)."""
    if cfg.kind == "triangle":
        return cfg.spike_fn.derivative(v)
    if cfg.kind == "none":
        return None
    with torch.enable_grad():
        vv = v.detach().requires_grad_(True)
        out = cfg.spike_fn(vv)
        if not out.requires_grad:
            return None
        (g,) = torch.autograd.grad(out, vv, torch.ones_like(out), allow_unused=True)
    return g


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


def _recurrent(y_prev: torch.Tensor, w_t: torch.Tensor, b_hh: torch.Tensor, dense: bool,
               out: torch.Tensor, native: Optional[Tuple[Any, Any, Any]] = None,
               switch: Optional[_Switch] = None) -> None:
    """``out = b_hh + y_prev @ w_t`` over the active rows of ``w_t`` [H, 3H] only."""
    B, H = y_prev.shape
    if switch is not None and switch.go_dense():
        torch.addmm(b_hh, y_prev, w_t, out=out)
        return
    if switch is not None:
        switch.sparse_steps += 1
    if native is not None and not _FORCE_DENSE:
        yc = y_prev if y_prev.is_contiguous() else y_prev.contiguous()
        if native[0](yc.data_ptr(), B, H, w_t.data_ptr(), w_t.shape[1], b_hh.data_ptr(), out.data_ptr(),
                     int(NATIVE_MAX_FRACTION * H)) == 0:
            return
    if not dense:
        if B == 1:
            idx = y_prev[0].nonzero().squeeze(1)
        else:
            idx = (y_prev != 0).any(0).nonzero().squeeze(1)
        k = idx.numel()
        if k == 0:
            out.copy_(b_hh.expand_as(out))
            return
        if k <= GATHER_MAX_FRACTION * H:
            torch.addmm(b_hh, y_prev.index_select(1, idx), w_t.index_select(0, idx), out=out)
            return
    if switch is not None and not dense:
        switch.sparse_steps -= 1
        switch.failed()
    torch.addmm(b_hh, y_prev, w_t, out=out)


def _run_forward(cfg: _Cfg, x: torch.Tensor, y0: torch.Tensor, c0: torch.Tensor, trace0: torch.Tensor,
                 w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor, b_hh: torch.Tensor,
                 theta: torch.Tensor, zo_mask: Optional[torch.Tensor], need_cache: bool
                 ) -> Tuple[torch.Tensor, ...]:
    T, B, I = x.shape
    H = y0.shape[-1]
    H2 = 2 * H
    x2 = x.reshape(T * B, I)
    if cfg.input_is_events:
        gi = _sparse_left_mm(x2, w_ih.t()).add_(b_ih).view(T, B, 3 * H)
    else:
        gi = torch.addmm(b_ih, x2, w_ih.t()).view(T, B, 3 * H)
    w_t = _transposed(w_hh)  # [H, 3H]: one unit = one contiguous row
    dense = _FORCE_DENSE or _weights_small(w_t)
    native = _native_fns(x.dtype) if x.device.type == "cpu" else None
    if native is not None and not b_hh.is_contiguous():
        b_hh = b_hh.contiguous()
    new = x.new_empty
    ys, cs, os_, trs = new(T, B, H), new(T, B, H), new(T, B, H), new(T, B, H)
    if (native is not None and not _FORCE_DENSE and B <= NATIVE_SEQ_MAX_BATCH and cfg.kind != "generic"):
        return _native_sequence(native[2], cfg, gi, y0, c0, trace0, w_t, b_hh, theta, zo_mask, need_cache,
                                ys, cs, os_, trs)
    if need_cache:
        rz_all, n_all, hn_all = new(T, B, H2), new(T, B, H), new(T, B, H)
        rz_l, n_l, hn_l = rz_all.unbind(0), n_all.unbind(0), hn_all.unbind(0)
    else:
        rz_s, n_s = new(B, H2), new(B, H)
        rz_l, n_l = [rz_s] * T, [n_s] * T
    r_l = [v[:, :H] for v in rz_l]
    z_l = [v[:, H:] for v in rz_l]
    gh = new(B, 3 * H)
    gh_rz, gh_n = gh[:, :H2], gh[:, H2:]
    gi_rz, gi_n = gi[..., :H2].unbind(0), gi[..., H2:].unbind(0)
    chat = new(B, H)
    tmp = new(B, H)
    zero = x.new_zeros(())
    y_l, c_l, o_l, tr_l = ys.unbind(0), cs.unbind(0), os_.unbind(0), trs.unbind(0)
    zo_l = zo_mask.unbind(0) if zo_mask is not None else None
    generic = cfg.kind == "generic"
    reset = cfg.reset
    zo_p = cfg.zoneout_p
    decay = F.TRACE_DECAY
    y_prev, c_prev, tr_prev = y0, c0, trace0
    switch = _Switch()
    for t in range(T):
        _recurrent(y_prev, w_t, b_hh, dense, gh, native, switch)
        rz, n, r, z = rz_l[t], n_l[t], r_l[t], z_l[t]
        torch.add(gi_rz[t], gh_rz, out=rz)
        rz.sigmoid_()
        if need_cache:
            hn_l[t].copy_(gh_n)
        torch.addcmul(gi_n[t], r, gh_n, out=n)
        n.tanh_()
        torch.sub(c_prev, n, out=tmp)
        torch.addcmul(n, z, tmp, out=chat)
        if zo_l is not None:
            torch.sub(chat, c_prev, out=tmp)
            torch.addcmul(c_prev, zo_l[t], tmp, out=chat)
        elif zo_p > 0.0:
            chat.mul_(1.0 - zo_p).add_(c_prev, alpha=zo_p)  # p c_prev + (1 - p) c_hat
        o, y, c, tr = o_l[t], y_l[t], c_l[t], tr_l[t]
        torch.sub(chat, theta, out=tmp)
        if generic:
            o.copy_(cfg.spike_fn(tmp))
        else:
            torch.heaviside(tmp, zero, out=o)  # strict step: 1 if v > 0, else 0
        torch.mul(o, chat, out=y)
        if reset == "subtract":
            torch.mul(o, theta, out=tmp)
            torch.sub(chat, tmp, out=c)
        elif reset == "zero":
            torch.neg(o, out=tmp).add_(1.0)
            torch.mul(chat, tmp, out=c)
        else:
            c.copy_(chat)
        torch.mul(tr_prev, decay, out=tr)
        tr.add_(y, alpha=1.0 - decay)
        y_prev, c_prev, tr_prev = y, c, tr
    if need_cache:
        return ys, cs, os_, trs, rz_all, n_all, hn_all, w_t
    return ys, cs, os_, trs


def _native_sequence(fn: Any, cfg: _Cfg, gi: torch.Tensor, y0: torch.Tensor, c0: torch.Tensor,
                     trace0: torch.Tensor, w_t: torch.Tensor, b_hh: torch.Tensor, theta: torch.Tensor,
                     zo_mask: Optional[torch.Tensor], need_cache: bool, ys: torch.Tensor, cs: torch.Tensor,
                     os_: torch.Tensor, trs: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    T, B, _ = gi.shape
    H = y0.shape[-1]
    keep = [t.contiguous() for t in (gi, y0, c0, trace0, b_hh, theta)]
    zo = zo_mask.contiguous() if zo_mask is not None else None
    if need_cache:
        rz, n, hn = gi.new_empty(T, B, 2 * H), gi.new_empty(T, B, H), gi.new_empty(T, B, H)
        cache_ptrs = [rz.data_ptr(), n.data_ptr(), hn.data_ptr()]
    else:
        cache_ptrs = [None, None, None]
    gh = gi.new_empty(B, 3 * H)
    reset = {"subtract": 0, "zero": 1, "none": 2}[cfg.reset]
    fn(T, B, H, *(t.data_ptr() for t in keep[:4]), w_t.data_ptr(), keep[4].data_ptr(), keep[5].data_ptr(),
       None if zo is None else zo.data_ptr(), cfg.zoneout_p, reset, F.TRACE_DECAY, 1.0 - F.TRACE_DECAY,
       ys.data_ptr(), cs.data_ptr(), os_.data_ptr(), trs.data_ptr(), *cache_ptrs, gh.data_ptr())
    if need_cache:
        return ys, cs, os_, trs, rz, n, hn, w_t
    return ys, cs, os_, trs


class _FusedEGRU(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, cfg: _Cfg, x: torch.Tensor, y0: torch.Tensor, c0: torch.Tensor,  # type: ignore[override]
                trace0: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor,
                b_hh: torch.Tensor, theta: torch.Tensor, zo_mask: Optional[torch.Tensor]):
        ys, cs, os_, trs, rz, n, hn, w_t = _run_forward(
            cfg, x, y0, c0, trace0, w_ih, w_hh, b_ih, b_hh, theta, zo_mask, need_cache=True)
        ctx.cfg = cfg
        ctx.w_t = w_t
        ctx.save_for_backward(x, y0, c0, w_ih, w_hh, theta, zo_mask, ys, cs, os_, rz, n, hn)
        return ys, cs, os_, trs

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, gy: torch.Tensor, gc: torch.Tensor, go: torch.Tensor, gtr: torch.Tensor):  # type: ignore[override]
        cfg: _Cfg = ctx.cfg
        x, y0, c0, w_ih, w_hh, theta, zo_mask, ys, cs, os_, rz, n_all, hn_all = ctx.saved_tensors
        w_t = ctx.w_t  # kept on ctx: a second backward (retain_graph=True) needs it again
        T, B, I = x.shape
        H = y0.shape[-1]
        need = ctx.needs_input_grad  # (cfg, x, y0, c0, trace0, w_ih, w_hh, b_ih, b_hh, theta, zo_mask)
        dense = _FORCE_DENSE or _weights_small(w_t) or cfg.kind == "generic"
        native = None if cfg.kind == "generic" or ys.device.type != "cpu" else _native_fns(ys.dtype)
        reset = cfg.reset
        # q_t (gradient of the recurrent pre-activations, [B, 3H]) for every step; the input-side
        # gradient a_t differs only in its n block, a_n = q_n / r, kept separately
        q_all = ys.new_empty(T, B, 3, H)
        a_n = ys.new_empty(T, B, H)
        gth = torch.zeros_like(theta) if need[9] else None
        dy = torch.zeros_like(y0)
        dc = torch.zeros_like(c0)
        tacc = torch.zeros_like(y0)
        decay, gain = F.TRACE_DECAY, 1.0 - F.TRACE_DECAY
        Y = torch.empty_like(y0)
        C = torch.empty_like(c0)
        # Time is processed in chunks (backwards): the per-unit coefficients of a chunk are built
        # with a few vectorised ops, and only the chunk's temporaries are alive at once.
        chunk = max(1, min(T, _BACKWARD_CHUNK_ELEMENTS // max(1, B * H)))
        switch = _Switch()
        end = T
        while end > 0:
            start = max(0, end - chunk)
            lo = max(0, start - 1)  # one step more: the absorbing set of step start - 1
            sl = slice(lo, end)
            fired = os_[sl] > 0
            chat = torch.where(fired, ys[sl], cs[sl])
            psi = _psi(cfg, chat - theta)
            absorb = fired if psi is None else (fired | (psi != 0))
            k0 = start - lo  # index of step `start` inside the slice
            fired, chat, o = fired[k0:], chat[k0:], os_[start:end]
            if psi is not None:
                psi = psi[k0:]
            r, z = rz[start:end, :, :H], rz[start:end, :, H:]
            n, hn = n_all[start:end], hn_all[start:end]
            c_prev = cs[start - 1:end - 1] if start > 0 else torch.cat([c0.unsqueeze(0), cs[:end - 1]], 0)
            if reset == "subtract":
                kappa_o = -theta
                kappa_c = None  # 1
            elif reset == "zero":
                kappa_o = -chat
                kappa_c = 1.0 - o
            else:
                kappa_o = None
                kappa_c = None
            a_y = o if psi is None else o + psi * chat
            if psi is None or kappa_o is None:
                a_c = None if kappa_c is None else kappa_c  # None means 1
            else:
                a_c = (1.0 if kappa_c is None else kappa_c) + psi * kappa_o
            e = None if psi is None else psi * go[start:end]
            if zo_mask is not None:
                m = zo_mask[start:end]
            elif cfg.zoneout_p > 0.0:
                m = 1.0 - cfg.zoneout_p
            else:
                m = None
            k_c = z if m is None else (1.0 - m) + z * m
            k_n = (1.0 - n * n) * (1.0 - z)
            if m is not None:
                k_n = k_n * m
            k_z = z * (1.0 - z) * (c_prev - n)
            if m is not None:
                k_z = k_z * m
            k_q = torch.stack([r * (1.0 - r) * hn * k_n, k_z, r * k_n], 2)  # [L, B, 3, H]
            L = end - start
            y_tot = ys.new_empty(L, B, H) if gth is not None else None
            c_tot = ys.new_empty(L, B, H) if gth is not None else None
            cbar = ys.new_empty(L, B, H)
            for t in range(end - 1, start - 1, -1):
                k = t - start
                torch.add(gtr[t], tacc, alpha=decay, out=tacc)  # trace gradient
                torch.add(gy[t], tacc, alpha=gain, out=Y).add_(dy)
                torch.add(gc[t], dc, out=C)
                if y_tot is not None:
                    y_tot[k].copy_(Y)
                    c_tot[k].copy_(C)
                cb = torch.mul(a_y[k], Y, out=cbar[k])
                if a_c is None:
                    cb.add_(C)
                else:
                    cb.addcmul_(a_c[k], C)
                if e is not None:
                    cb.add_(e[k])
                dc = k_c[k] * cb
                q = torch.mul(k_q[k], cb.unsqueeze(1), out=q_all[t]).view(B, 3 * H)
                if t == 0:
                    if need[2]:
                        dy = torch.mm(q, w_t.t())
                else:
                    dy = _recurrent_grad(q, w_t, absorb[t - 1 - lo], dense, native, switch)
            torch.mul(k_n, cbar, out=a_n[start:end])
            if gth is not None:
                if psi is not None:
                    o_bar = torch.addcmul(go[start:end], chat, y_tot)
                    if kappa_o is not None:
                        o_bar.addcmul_(kappa_o, c_tot)
                    gth.sub_((psi * o_bar).sum((0, 1)))
                if reset == "subtract":
                    gth.sub_((o * c_tot).sum((0, 1)))
            end = start
        # ---- after the loop: large products over all T * B rows ----------------------------
        grads: list = [None] * 11
        q2 = q_all.view(T * B, 3 * H)
        if need[6]:
            y_prev = torch.cat([y0.unsqueeze(0), ys[:-1]], 0).view(T * B, H)
            grads[6] = _sparse_left_mm(y_prev.t(), q2).t()  # [3H, H], from the events only
        if need[8]:
            grads[8] = q2.sum(0)
        if need[1] or need[5] or need[7]:
            q_all[:, :, 2].copy_(a_n)  # now the input-side gradient a_t
            if need[1]:
                grads[1] = (q2 @ w_ih).view(T, B, I)
            if need[5]:
                x2 = x.reshape(T * B, I)
                if cfg.input_is_events:
                    grads[5] = _sparse_left_mm(x2.t(), q2).t()
                else:
                    grads[5] = q2.t() @ x2
            if need[7]:
                grads[7] = q2.sum(0)
        if need[2]:
            grads[2] = dy
        if need[3]:
            grads[3] = dc
        if need[4]:
            grads[4] = decay * tacc
        if need[9]:
            grads[9] = gth
        return tuple(grads)


def _recurrent_grad(q: torch.Tensor, w_t: torch.Tensor, absorb: torch.Tensor, dense: bool,
                    native: Optional[Tuple[Any, Any, Any]] = None, switch: Optional[_Switch] = None
                    ) -> torch.Tensor:
    """``q @ W_hh`` ([B, 3H] x [3H, H]) computed only on the units in ``absorb`` [B, H] (others 0)."""
    B, H = absorb.shape
    if switch is not None and switch.go_dense():
        return torch.mm(q, w_t.t())
    if switch is not None:
        switch.sparse_steps += 1
    if native is not None and not _FORCE_DENSE:
        out = q.new_empty(B, H)
        if native[1](q.data_ptr(), absorb.data_ptr(), B, H, w_t.data_ptr(), w_t.shape[1], out.data_ptr(),
                     int(NATIVE_MAX_FRACTION * H)) == 0:
            return out
    if not dense:
        if B == 1:
            idx = absorb[0].nonzero().squeeze(1)
        else:
            idx = absorb.any(0).nonzero().squeeze(1)
        k = idx.numel()
        if k == 0:
            return q.new_zeros(B, H)
        if k <= GATHER_MAX_FRACTION * H:
            out = q.new_zeros(B, H)
            out[:, idx] = torch.mm(q, w_t.index_select(0, idx).t())
            return out
    if switch is not None and not dense:
        switch.sparse_steps -= 1
        switch.failed()
    return torch.mm(q, w_t.t())


def egru_sequence_fused(
    x: torch.Tensor,
    y0: torch.Tensor,
    c0: torch.Tensor,
    trace0: torch.Tensor,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor,
    bias_ih: Optional[torch.Tensor],
    bias_hh: Optional[torch.Tensor],
    threshold: torch.Tensor,
    *,
    spike_fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    reset: str = "subtract",
    zoneout_mask: Optional[torch.Tensor] = None,
    zoneout_p: float = 0.0,
    dropconnect_mask: Optional[torch.Tensor] = None,
    input_is_events: bool = False,
) -> F.EGRUStepOutput:
    """Event-driven EGRU layer over a whole sequence with a fused sparse backward.

    Same contract and numbers as :func:`snntorch_egru.functional.egru_sequence`
    (the step-by-step reference), but one autograd node for the whole sequence.

    Args:
        x: ``[T, B, I]`` input.
        y0, c0, trace0: ``[B, H]`` initial events, internal state and trace.
        weight_ih: ``[3H, I]``; weight_hh: ``[3H, H]`` (unmasked; pass
            ``dropconnect_mask`` to apply DropConnect, its gradient goes through it).
        bias_ih, bias_hh: ``[3H]`` or ``None``. threshold: ``[H]``.
        spike_fn: Heaviside with surrogate gradient (default: the paper's triangle).
        reset: ``"subtract"``, ``"zero"`` or ``"none"``.
        zoneout_mask: ``[T, B, H]`` training masks (1 = update); zoneout_p: eval-mode probability.
        dropconnect_mask: ``[3H, H]`` scaled mask or ``None``.
        input_is_events: ``x`` is a lower EGRU layer's events (mostly zeros).

    Returns:
        :class:`~snntorch_egru.functional.EGRUStepOutput` of ``[T, B, H]`` sequences.

    Example::

        >>> import torch
        >>> from snntorch_egru.sparse import egru_sequence_fused
        >>> T, B, I, H = 6, 2, 3, 5
        >>> s = torch.zeros(B, H)
        >>> out = egru_sequence_fused(torch.randn(T, B, I), s, s, s, torch.randn(3 * H, I),
        ...                           torch.randn(3 * H, H), None, None, torch.full((H,), 0.1))
        >>> out.y.shape
        torch.Size([6, 2, 5])
    """
    if spike_fn is None:
        spike_fn = EGRUSurrogate(0.7, 1.0)
    if reset not in F.RESET_MECHANISMS:
        raise ValueError(f"reset must be one of {F.RESET_MECHANISMS}, got {reset!r}")
    if x.dim() != 3:
        raise ValueError(f"x must be [T, B, I], got shape {tuple(x.shape)}")
    H = weight_hh.shape[1]
    T, B = x.shape[0], x.shape[1]
    if T == 0:
        empty = x.new_zeros((0, B, H))
        return F.EGRUStepOutput(empty, empty, empty, empty)
    w_hh = weight_hh if dropconnect_mask is None else weight_hh * dropconnect_mask
    cfg = _Cfg(spike_fn, reset, zoneout_p if zoneout_mask is None else 0.0, input_is_events)
    b_ih = bias_ih if bias_ih is not None else x.new_zeros(3 * H)
    b_hh = bias_hh if bias_hh is not None else x.new_zeros(3 * H)
    zo = None if zoneout_mask is None else zoneout_mask.to(x.dtype)
    tensors = (x, y0, c0, trace0, weight_ih, w_hh, b_ih, b_hh, threshold)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        y, c, o, tr = _FusedEGRU.apply(cfg, x, y0, c0, trace0, weight_ih, w_hh, b_ih, b_hh, threshold, zo)
    else:
        with torch.no_grad():
            y, c, o, tr = _run_forward(cfg, x, y0, c0, trace0, weight_ih, w_hh, b_ih, b_hh, threshold, zo,
                                       need_cache=False)
    return F.EGRUStepOutput(y, c, o, tr)


def _run_backend(call: LayerCall) -> F.EGRUStepOutput:
    return egru_sequence_fused(
        call.x, call.y0, call.c0, call.trace0, call.weight_ih, call.weight_hh, call.bias_ih, call.bias_hh,
        call.threshold, spike_fn=call.spike_fn, reset=call.reset, zoneout_mask=call.zoneout_mask,
        zoneout_p=call.zoneout_p, dropconnect_mask=call.dropconnect_mask, input_is_events=call.input_is_events,
    )


def _available(call: LayerCall) -> bool:
    return call.x.device.type == "cpu"


register_backend("torch", _run_backend, available=_available, priority=10)
