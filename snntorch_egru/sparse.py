"""Event-driven EGRU on CPU: a fused sequence function with a hand-written sparse backward.

This module is the forward pass of the CPU launcher of the custom operator
``torch.ops.snntorch_egru.egru_layer`` (``snntorch_egru/_op.py``, which registers the
``"torch"`` backend that ``EGRU(backend="auto")`` uses for CPU tensors): one node per layer
sequence for autograd, ``torch.compile`` and ``torch.export``, instead of a tape of ~20 ops
per step. Its public names are the event path's tunables, :class:`force_dense`,
:func:`transposed_weight` and :func:`egru_sequence_fused` (the shared pieces live in the
private ``snntorch_egru/_engine.py``, which every launcher imports; the tunables set here
reach it).

Forward:
    * the input projection ``x W_ih^T + b_ih`` for all steps in one matrix product
      (a sparse-CSR product when the input is a lower layer's events and they are
      sparse enough);
    * per step, the recurrent product uses only the rows of ``W_hh^T`` (a transposed
      copy cached per weight, see :func:`transposed_weight`, so one active unit = one
      contiguous row) of the units that
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
autograd through the step-by-step reference. ``weight_hh`` (row-major, as in
``torch.nn.GRU``) is transposed once per weight version (a tiled native transpose) and the
copy is reused by later calls and their backward (:func:`transposed_weight`). The backward
loop is ``snntorch_egru/_cpu_backward.py``; the operator that calls both is
``snntorch_egru/_op.py``.

Native helpers: a small C library built when the package is installed
(``snntorch_egru/_native``, optional extension) runs the whole forward time loop
for batches up to :data:`NATIVE_SEQ_MAX_BATCH` (the per-step Python/dispatch cost
otherwise exceeds a whole ``torch.nn.GRU`` step at H = 256), per-sample gathers
for larger batches and the backward's masked row products. It is reached only
from inside the operator, after every argument was checked. When it is missing
or cannot be loaded, a warning names the cause once and the same computation
runs in pure torch; ``SNNTORCH_EGRU_NATIVE=0`` switches it off silently.

Tunables (read and set as attributes of this module, e.g. ``sparse.GATHER_MAX_FRACTION = 0.1``;
the launchers read the current value on every call):

``GATHER_MAX_FRACTION``
    Gather only when at most this fraction of the ``H`` rows is needed. Measured on the 2-vCPU
    Xeon dev machine (torch 2.14, 1 thread, H = 1024, fp32): ``index_select`` of the active rows
    + ``addmm`` costs 100 us at 10 % (dense 440 us), 426 us at 29 % and 728 us at 52 % (batch
    1); batch 16 union 26 %: 520 us vs dense 1013 us, union 82 %: 1800 us vs 1020 us. Break-even
    is near 30 %; 0.25 keeps a margin for noise.

``SMALL_WEIGHT_BYTES``
    Below this size of ``W_hh`` (bytes) the dense product wins at every activity (the matrix
    stays in cache; measured at H = 256: dense matvec 9 us, gather at 2 % 18 us).

``CSR_MAX_DENSITY``
    Products with event matrices (stacked input projection, ``dW_hh`` and ``dW_ih``) use a
    sparse CSR operand only at densities up to this value (measured, T*B = 300, 1024 x 3072: CSR
    3.0 ms vs dense 11-16 ms at 1 %, CSR slower from ~10 %).

``NATIVE_MAX_FRACTION``
    The native per-sample gather is used while the batch holds at most this many events per unit
    row of ``W_hh^T`` (``nnz <= NATIVE_MAX_FRACTION * H``); above, one dense BLAS product
    reading every row once is cheaper than re-reading rows per sample.

``NATIVE_SEQ_MAX_BATCH``
    Up to this batch size the whole forward time loop (per-sample event gather, gates,
    threshold, reset, trace) runs in one native call: no per-step Python/dispatch cost, which
    otherwise exceeds a whole ``torch.nn.GRU`` step at H = 256. Default 64: on the 2-core dev
    machine (T = 50, no_grad) the native loop beats the torch loop with its dense products at every
    batch up to 64, H = 256 and 1024, 10 % and 30 % activity (H = 1024, 10 %, B = 16: 55 ms vs 101 ms).

``SPLIT_MIN_UNITS``
    From ``B * H`` units on, each native step (the per-step cell's under ``no_grad``, the
    :class:`~snntorch_egru.Streamer`'s, each step of the native forward time loop) is cut into two
    ranges of units run at once on two threads of torch's own OpenMP runtime (when
    ``torch.get_num_threads() > 1``; the numbers do not depend on the cut). Default 512: below it the
    hand-over costs more than it saves (2-core dev machine, B = 1, H = 1024: the cell 62-68 us per
    step against 91-96 us on one thread; the sequence loop, T = 200, I = 64: 5.8 against 9.4 ms).

``NATIVE_EVENTS_MAX_DENSITY``
    The backward's products with transposed events (``dW_hh = Y^T Q``, and a lower layer's ``dW_ih``
    from its input events) run in the native helper from the events' nonzeros up to this density
    (default 0.2); above it, one dense GEMM (T*B = 1584, H = 1024, fp32: 24.5 ms at 10 % against
    53-70 ms dense, 42.5 ms at 20 %, 61 ms at 30 %).

``DENSE_HOLD_STEPS``
    Steps that skip the sparsity check after a dense step (activity changes slowly over time).

Surrogates: :class:`~snntorch_egru.surrogate.EGRUSurrogate` (triangle, compact
support) and :func:`~snntorch_egru.surrogate.heaviside` take the sparse path.
Any other spike function (e.g. ``snntorch.surrogate.atan()``, a Python callable
the operator cannot carry) runs the step-by-step reference
(:func:`snntorch_egru.functional.egru_sequence`).

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

import sys
import types
from typing import Any, Callable, Optional, Sequence, Tuple

import torch

from . import _engine
from . import functional as F
from ._checks import RESET_CODES
from ._engine import (  # noqa: F401 - public here: the event path's switches and its W_hh^T cache
    _native_fns,
    _native_ok,
    _sparse_left_mm,
    _Switch,
    clear_transposed_cache,
    fast_layout,
    force_dense,
    native_library,
    transposed_weight,
)
from .backends import LayerCall, get_backend
from .surrogate import EGRUSurrogate

#: The event path's tunables (values in ``_engine``; see the module docstring).
_TUNABLES = (
    "GATHER_MAX_FRACTION",
    "SMALL_WEIGHT_BYTES",
    "CSR_MAX_DENSITY",
    "NATIVE_MAX_FRACTION",
    "NATIVE_SEQ_MAX_BATCH",
    "SPLIT_MIN_UNITS",
    "NATIVE_EVENTS_MAX_DENSITY",
    "DENSE_HOLD_STEPS",
)
__all__ = [
    "egru_sequence_fused",
    "force_dense",
    "native_library",
    "fast_layout",
    "transposed_weight",
    "clear_transposed_cache",
    *_TUNABLES,
]


class _TunablesModule(types.ModuleType):
    """This module's class: setting a tunable here (``sparse.GATHER_MAX_FRACTION = 0.1``) also sets the value
    the launchers read in ``_engine``, so the documented names work as switches."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _TUNABLES:
            setattr(_engine, name, value)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _TunablesModule
for _name in _TUNABLES:  # this module's copies, kept equal to _engine's by every assignment made here
    globals()[_name] = getattr(_engine, _name)

SUBTRACT, ZERO = RESET_CODES["subtract"], RESET_CODES["zero"]
_COMPUTE_DTYPES = (torch.float32, torch.float64)
_CPU = torch.device("cpu")


# ------------------------------------------------------------------------------------------
# the CPU forward launcher


def _recurrent(
    y_prev: torch.Tensor,
    w_t: torch.Tensor,
    b_hh: torch.Tensor,
    dense: bool,
    out: torch.Tensor,
    native: Optional[Tuple[Any, Any, Any]] = None,
    switch: Optional[_Switch] = None,
) -> None:
    """``out = b_hh + y_prev @ w_t`` over the active rows of ``w_t`` [H, 3H] only."""
    B, H = y_prev.shape
    if switch is not None and switch.go_dense():
        torch.addmm(b_hh, y_prev, w_t, out=out)
        return
    if switch is not None:
        switch.sparse_steps += 1
    if native is not None and not _engine._FORCE_DENSE:
        yc = y_prev if y_prev.is_contiguous() else y_prev.contiguous()
        N = w_t.shape[1]
        if not (
            w_t.shape[0] == H
            and tuple(out.shape) == (B, N)
            and tuple(b_hh.shape) == (N,)
            and _native_ok(yc, w_t, b_hh, out)
        ):
            raise RuntimeError("internal error: native gather arguments do not match")
        if (
            native[0](
                yc.data_ptr(),
                B,
                H,
                w_t.data_ptr(),
                w_t.shape[1],
                b_hh.data_ptr(),
                out.data_ptr(),
                int(_engine.NATIVE_MAX_FRACTION * H),
            )
            == 0
        ):
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
        if k <= _engine.GATHER_MAX_FRACTION * H:
            torch.addmm(b_hh, y_prev.index_select(1, idx), w_t.index_select(0, idx), out=out)
            return
    if switch is not None and not dense:
        switch.sparse_steps -= 1
        switch.failed()
    torch.addmm(b_hh, y_prev, w_t, out=out)


def _run_forward(
    reset: int,
    zoneout_p: float,
    input_is_events: bool,
    x: torch.Tensor,
    y0: torch.Tensor,
    c0: torch.Tensor,
    trace0: torch.Tensor,
    w_ih: torch.Tensor,
    w_hh: torch.Tensor,
    b_ih: torch.Tensor,
    b_hh: torch.Tensor,
    theta: torch.Tensor,
    zo_mask: Optional[torch.Tensor],
    need_cache: bool,
) -> Tuple[torch.Tensor, ...]:
    """Forward loop of the CPU launcher (inside the operator; inputs are checked, detached,
    contiguous and float32/float64)."""
    T, B, I = x.shape
    H = y0.shape[-1]
    x2 = x.reshape(T * B, I)
    if input_is_events:
        gi = _sparse_left_mm(x2, w_ih.t()).add_(b_ih).view(T, B, 3 * H)
    else:
        gi = torch.addmm(b_ih, x2, w_ih.t()).view(T, B, 3 * H)
    # W_hh^T [H, 3H] (one unit = one contiguous row): a view of the fast layout, or transposed
    # once for this call (and reused by its backward).
    native = _native_fns(x.dtype) if x.device.type == "cpu" else None
    w_t = transposed_weight(w_hh, native)
    dense = _engine._FORCE_DENSE or _engine._weights_small(w_t)
    new = x.new_empty
    ys, cs, os_, trs = new(T, B, H), new(T, B, H), new(T, B, H), new(T, B, H)
    if native is not None and not _engine._FORCE_DENSE and B <= _engine.NATIVE_SEQ_MAX_BATCH:
        return _native_sequence(
            native[2], reset, zoneout_p, gi, y0, c0, trace0, w_t, b_hh, theta, zo_mask, need_cache, ys, cs, os_, trs
        )
    return _torch_sequence(
        reset, zoneout_p, gi, y0, c0, trace0, w_t, b_hh, theta, zo_mask, need_cache, (ys, cs, os_, trs), dense, native
    )


def _torch_sequence(
    reset: int, zoneout_p: float, gi: torch.Tensor, y0: torch.Tensor, c0: torch.Tensor, trace0: torch.Tensor,
    w_t: torch.Tensor, b_hh: torch.Tensor, theta: torch.Tensor, zo_mask: Optional[torch.Tensor], need_cache: bool,
    outs: Tuple[torch.Tensor, ...], dense: bool, native: Optional[Tuple[Any, ...]],
) -> Tuple[torch.Tensor, ...]:  # fmt: skip
    """The forward time loop in torch ops (batches above :data:`NATIVE_SEQ_MAX_BATCH`, or no
    native helper): preallocated buffers, ``out=`` ops, the recurrent product over active rows."""
    T, B, _ = gi.shape
    H = y0.shape[-1]
    H2 = 2 * H
    new = gi.new_empty
    ys, cs, os_, trs = outs
    rz_l: Sequence[torch.Tensor]
    n_l: Sequence[torch.Tensor]
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
    zero = gi.new_zeros(())
    y_l, c_l, o_l, tr_l = ys.unbind(0), cs.unbind(0), os_.unbind(0), trs.unbind(0)
    zo_l = zo_mask.unbind(0) if zo_mask is not None else None
    zo_p = zoneout_p
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
        torch.heaviside(tmp, zero, out=o)  # strict step: 1 if v > 0, else 0
        torch.mul(o, chat, out=y)
        if reset == SUBTRACT:
            torch.mul(o, theta, out=tmp)
            torch.sub(chat, tmp, out=c)
        elif reset == ZERO:
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


def _native_sequence(
    fn: Any, reset: int, zoneout_p: float, gi: torch.Tensor, y0: torch.Tensor, c0: torch.Tensor, trace0: torch.Tensor,
    w_t: torch.Tensor, b_hh: torch.Tensor, theta: torch.Tensor, zo_mask: Optional[torch.Tensor], need_cache: bool,
    ys: torch.Tensor, cs: torch.Tensor, os_: torch.Tensor, trs: torch.Tensor,
) -> Tuple[torch.Tensor, ...]:  # fmt: skip
    T, B, _ = gi.shape
    H = y0.shape[-1]
    cache: Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = None
    if need_cache:
        cache = (gi.new_empty(T, B, 2 * H), gi.new_empty(T, B, H), gi.new_empty(T, B, H))
    rz, n, hn = cache if cache is not None else (None, None, None)
    gh = gi.new_empty(B, 3 * H)
    check_native_forward(gi, y0, c0, trace0, w_t, b_hh, theta, zo_mask, (ys, cs, os_, trs), (rz, n, hn), gh)
    ptr = lambda t: None if t is None else t.data_ptr()  # noqa: E731
    fn(
        T,
        B,
        H,
        ptr(gi),
        ptr(y0),
        ptr(c0),
        ptr(trace0),
        ptr(w_t),
        ptr(b_hh),
        ptr(theta),
        ptr(zo_mask),
        float(zoneout_p),
        int(reset),
        F.TRACE_DECAY,
        1.0 - F.TRACE_DECAY,
        ptr(ys),
        ptr(cs),
        ptr(os_),
        ptr(trs),
        ptr(rz),
        ptr(n),
        ptr(hn),
        ptr(gh),
        *_engine.native_split(B * H),
    )
    if cache is not None:
        return (ys, cs, os_, trs, *cache, w_t)
    return ys, cs, os_, trs


def _check_kernel_tensor(
    name: str,
    t: Optional[torch.Tensor],
    shape: Tuple[int, ...],
    dtype: torch.dtype,
    device: torch.device,
    optional: bool = False,
) -> None:
    if t is None:
        if optional:
            return
        raise RuntimeError(f"internal error: native argument {name} missing")
    # cheap attribute checks first (this runs on every call); the message is built only on failure
    if (
        t.dtype is not dtype
        or t.shape != shape
        or t.device.type != device.type
        or t.layout is not torch.strided
        or not t.is_contiguous()
    ):
        raise RuntimeError(
            f"internal error: native argument {name} is {list(t.shape)} {t.dtype} {t.device} "
            f"contiguous={t.is_contiguous()}, expected {list(shape)} {dtype} {device} contiguous"
        )


def check_native_forward(
    gi: torch.Tensor, y0: torch.Tensor, c0: torch.Tensor, tr0: torch.Tensor, w_t: torch.Tensor, b_hh: torch.Tensor,
    theta: torch.Tensor, zo: Optional[torch.Tensor], outs: Sequence[torch.Tensor],
    saved: Sequence[Optional[torch.Tensor]], gh: torch.Tensor,
) -> None:  # fmt: skip
    """Last line of defence before ``egru_fwd_*``: exact shapes, dtype, CPU, contiguous."""
    T, B, H3 = gi.shape
    H = H3 // 3
    dt, dev = gi.dtype, _CPU
    if dt not in _COMPUTE_DTYPES or gi.device.type != "cpu":
        raise RuntimeError(f"internal error: native forward got {dt} on {gi.device}")
    _check_kernel_tensor("gi", gi, (T, B, 3 * H), dt, dev)
    for n, t in (("y0", y0), ("c0", c0), ("tr0", tr0)):
        _check_kernel_tensor(n, t, (B, H), dt, dev)
    _check_kernel_tensor("w_t", w_t, (H, 3 * H), dt, dev)
    _check_kernel_tensor("b_hh", b_hh, (3 * H,), dt, dev)
    _check_kernel_tensor("theta", theta, (H,), dt, dev)
    _check_kernel_tensor("zo", zo, (T, B, H), dt, dev, optional=True)
    for n, t in zip(("y", "c", "o", "tr"), outs):
        _check_kernel_tensor(n, t, (T, B, H), dt, dev)
    if saved[0] is not None:
        _check_kernel_tensor("rz", saved[0], (T, B, 2 * H), dt, dev)
        _check_kernel_tensor("n", saved[1], (T, B, H), dt, dev)
        _check_kernel_tensor("hn", saved[2], (T, B, H), dt, dev)
    _check_kernel_tensor("gh", gh, (B, 3 * H), dt, dev)


def egru_sequence_fused(
    x: torch.Tensor, y0: torch.Tensor, c0: torch.Tensor, trace0: torch.Tensor, weight_ih: torch.Tensor,
    weight_hh: torch.Tensor, bias_ih: Optional[torch.Tensor], bias_hh: Optional[torch.Tensor], threshold: torch.Tensor,
    *, spike_fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = None, reset: str = "subtract",
    zoneout_mask: Optional[torch.Tensor] = None, zoneout_p: float = 0.0,
    dropconnect_mask: Optional[torch.Tensor] = None, input_is_events: bool = False,
) -> F.EGRUStepOutput:  # fmt: skip
    """Event-driven EGRU layer over a whole sequence with a fused sparse backward.

    Same contract and numbers as :func:`snntorch_egru.functional.egru_sequence`
    (the step-by-step reference), but one operator node
    (``torch.ops.snntorch_egru.egru_layer``) for the whole sequence. Every
    argument is checked (type, shape, dtype, device) before anything runs; a
    wrong one raises ``TypeError``/``ValueError`` naming it. Spike functions
    other than the paper's triangle and the plain Heaviside run the reference.

    Args:
        x: ``[T, B, I]`` input.
        y0, c0, trace0: ``[B, H]`` initial events, internal state and trace.
        weight_ih: ``[3H, I]``; weight_hh: ``[3H, H]`` (unmasked; pass
            ``dropconnect_mask`` to apply DropConnect, its gradient goes through it).
        bias_ih, bias_hh: ``[3H]`` or ``None``. threshold: ``[H]`` (or one value).
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
    tensors = (x, y0, c0, trace0, weight_ih, weight_hh, bias_ih, bias_hh, threshold)
    call = LayerCall(
        *tensors,
        spike_fn,
        reset,
        zoneout_mask=zoneout_mask,
        zoneout_p=zoneout_p,
        dropconnect_mask=dropconnect_mask,
        input_is_events=input_is_events,
    )
    return get_backend("torch").run(call)  # the operator (registered by snntorch_egru._op)


for _public in (force_dense, transposed_weight, clear_transposed_cache, fast_layout, native_library):
    _public.__module__ = __name__  # documented (and shown in errors) under this module's name
