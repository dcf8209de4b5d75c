"""Opt-in efficiency counters for EGRU models (activity, backward sparsity, effective MACs).

Nothing is counted unless a :class:`Tracker` is active, so the cost when off is
nil. While ``with metrics.track(model) as tracker:`` is open, every
:class:`~snntorch_egru.EGRU` layer call inside ``model`` is recorded, whatever
backend runs it (the counts are computed from the layer's input and output
sequences, so they are exact and identical for every backend).

Counting is scoped to ``model``: the tracker adds a layer observer to each of
its EGRU modules (as a forward hook would) and removes it on exit, also when the
block raises; other models, in this thread or another, are not affected and
nothing process-wide is patched. Trackers nest (each counts what it watches).
The counters are eager-mode only: a counted call traced by ``torch.compile``
raises a ``RuntimeError`` saying so.

Definitions (per layer, following NeuroBench's activation sparsity and
effective-MAC conventions, and ``egru-model.md`` section 4; ``H`` hidden size,
``I`` input size, ``x_t`` the layer input, ``y_t`` the events, ``y_0`` the
initial events, ``o_t`` the binary events, ``c_hat_t`` the pre-reset state):

* ``activity`` = mean of ``o_t`` over steps, samples and units (1 - activation sparsity).
* ``batch_union_activity`` = mean over steps of the fraction of units that fired
  in at least one sample of the batch (what a batch-union gather must read).
* ``backward_density`` = mean of ``1[o_t = 1 or |c_hat_t - theta| < support]``,
  ``support = surrogate_support(spike_fn)`` (``None``: every unit, as the gradient
  never vanishes); ``backward_sparsity = 1 - backward_density``.
* ``effective_macs`` = per sample, ``sum_t 3H (nnz(x_t) + nnz(y_{t-1}))``;
  ``dense_macs`` = ``T 3H (I + H)`` (a dense GRU layer of the same size).
* ``backward_macs`` = per sample, ``sum_t 3H (#G_{t-1} + nnz(y_{t-1}) + nnz(x_t) + I)``:
  the recurrent gradient ``q_t W_hh`` only on the units ``G_{t-1}`` that absorb
  gradient (``G_0`` = all ``H``, the initial-state gradient is dense), ``dW_hh``
  from the events ``y_{t-1}``, ``dW_ih`` from the input non-zeros and a dense
  input gradient ``q_t W_ih``; ``dense_backward_macs`` = ``T 3H (2H + 2I)``.

The model-level figures in :meth:`Tracker.summary` are element-weighted means for
the fractions and sums over layers for the MACs (per sample).

Example::

    >>> import torch, snntorch_egru as se
    >>> from snntorch_egru import metrics
    >>> model = se.EGRU(4, 16, num_layers=2)
    >>> with metrics.track(model) as tracker:
    ...     out, _ = model(torch.randn(10, 3, 4))
    >>> s = tracker.summary()
    >>> len(s["layers"]), 0.0 <= s["activity"] <= 1.0, s["dense_macs"] == 10 * 48 * (4 + 16) + 10 * 48 * 32
    (2, True, True)
"""

from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from . import functional as F
from ._layer_setup import EGRUBase
from .backends import LayerCall
from .surrogate import surrogate_support

__all__ = ["Tracker", "Summary", "track", "layer_counts"]


def layer_counts(
    x: torch.Tensor,
    y0: torch.Tensor,
    y: torch.Tensor,
    c: torch.Tensor,
    o: torch.Tensor,
    threshold: torch.Tensor,
    support: Optional[float],
) -> Dict[str, float]:
    """Raw counts of one layer call (sums over the whole call, not yet averaged).

    Args:
        x: ``[T, B, I]`` layer input. y0: ``[B, H]`` initial events.
        y, c, o: ``[T, B, H]`` events, post-reset state and binary events.
        threshold: ``[H]`` thresholds. support: surrogate half-width (``None`` = unbounded).

    Returns:
        dict with ``elements``, ``active``, ``union_active``, ``union_elements``,
        ``absorbing``, ``samples``, ``effective_macs``, ``dense_macs``,
        ``backward_macs``, ``dense_backward_macs`` (MACs summed over samples).

    Example::

        >>> import torch
        >>> from snntorch_egru.metrics import layer_counts
        >>> o = torch.tensor([[[1., 0.]]]); y = o * 0.5; c = torch.zeros(1, 1, 2)
        >>> layer_counts(torch.ones(1, 1, 3), torch.zeros(1, 2), y, c, o, torch.zeros(2), 0.0)["effective_macs"]
        18
    """
    with torch.no_grad():
        T, B, H = y.shape
        I = x.shape[-1]
        fired = o > 0
        active = int(fired.sum())
        union_active = int(fired.any(1).sum())
        if support is None:
            absorbing = T * B * H
            g_prev = torch.full((T,), B * H, dtype=torch.long)
        else:
            c_hat = F.pre_reset_state(y, c, o)
            g = fired | ((c_hat - threshold).abs() < support)
            absorbing = int(g.sum())
            g_prev = torch.cat([torch.tensor([B * H], device=g.device), g[:-1].sum((1, 2))]).cpu()
        y_prev = torch.cat([y0.unsqueeze(0), y[:-1]], 0) if T > 0 else y
        nnz_y_prev = int((y_prev != 0).sum())
        nnz_x = int((x != 0).sum())
        g_sum = int(g_prev.sum()) if T > 0 else 0
        h3 = 3 * H
        return {
            "elements": T * B * H,
            "active": active,
            "union_active": union_active,
            "union_elements": T * H,
            "absorbing": absorbing,
            "samples": B,
            "effective_macs": h3 * (nnz_x + nnz_y_prev),
            "dense_macs": h3 * (I + H) * T * B,
            "backward_macs": h3 * (g_sum + nnz_y_prev + nnz_x + I * T * B),
            "dense_backward_macs": h3 * (2 * H + 2 * I) * T * B,
        }


class _LayerAccumulator:
    def __init__(self, name: str, index: int, input_size: int, hidden_size: int) -> None:
        self.name, self.index = name, index
        self.input_size, self.hidden_size = input_size, hidden_size
        self.calls = 0
        self.totals: Dict[str, float] = {}

    def add(self, counts: Dict[str, float]) -> None:
        self.calls += 1
        for k, v in counts.items():
            self.totals[k] = self.totals.get(k, 0) + v

    def summary(self) -> Dict[str, Any]:
        t = self.totals
        samples = max(t.get("samples", 0), 1)
        elements = max(t.get("elements", 0), 1)
        density = t.get("absorbing", 0) / elements
        return {
            "name": self.name,
            "layer": self.index,
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "calls": self.calls,
            "samples": int(t.get("samples", 0)),
            "activity": t.get("active", 0) / elements,
            "batch_union_activity": t.get("union_active", 0) / max(t.get("union_elements", 0), 1),
            "backward_density": density,
            "backward_sparsity": 1.0 - density,
            "effective_macs": t.get("effective_macs", 0) / samples,
            "dense_macs": t.get("dense_macs", 0) / samples,
            "backward_macs": t.get("backward_macs", 0) / samples,
            "dense_backward_macs": t.get("dense_backward_macs", 0) / samples,
            "_totals": dict(t),
        }


def _fmt_macs(v: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{unit}"
    return f"{v:.3g}"


def _row(name: str, s: Dict[str, Any]) -> List[str]:
    ratio = s["effective_macs"] / s["dense_macs"] if s["dense_macs"] else 0.0
    bwd = s["backward_macs"] / s["dense_backward_macs"] if s["dense_backward_macs"] else 0.0
    return [
        name,
        f"{s['activity']:.1%}",
        f"{s['batch_union_activity']:.1%}",
        f"{s['backward_sparsity']:.1%}",
        f"{_fmt_macs(s['effective_macs'])} / {_fmt_macs(s['dense_macs'])} ({ratio:.2f}x)",
        f"{bwd:.2f}x",
    ]


class Summary(dict):
    """What :meth:`Tracker.summary` returns: a ``dict`` (keys in :class:`Tracker`) printed as a table.

    Indexing, ``json.dumps`` and comparisons work as for the plain dict; ``str()`` / ``repr()``
    give one row per layer and one for the whole model: activity, batch-union activity,
    backward sparsity, forward MACs per sample (effective / dense GRU, ratio) and the
    backward MAC ratio.

    Example::

        >>> import torch, snntorch_egru as se
        >>> from snntorch_egru import metrics
        >>> rnn = se.EGRU(4, 16)
        >>> with metrics.track(rnn) as tracker:
        ...     _ = rnn(torch.randn(20, 2, 4))
        >>> s = tracker.summary()
        >>> isinstance(s, dict), str(s).splitlines()[1].split()[:3]
        (True, ['layer', 'activity', 'batch-union'])
    """

    def __str__(self) -> str:
        layers = self.get("layers", [])
        head = ["layer", "activity", "batch-union", "bwd sparsity", "fwd MACs/sample: eff. / dense GRU", "bwd MACs"]
        rows = [
            _row(
                f"{lay['name']}[{lay['layer']}] {lay['input_size']}->{lay['hidden_size']} "
                f"({lay['calls']} calls, {lay['samples']} samples)",
                lay,
            )
            for lay in layers
        ]
        if layers:
            rows.append(_row("model", self))
        widths = [max(len(r[k]) for r in [head] + rows) for k in range(len(head))]
        lines = [
            "  ".join(c.ljust(w) if k == 0 else c.rjust(w) for k, (c, w) in enumerate(zip(r, widths)))
            for r in [head] + rows
        ]
        title = f"EGRU counters: {len(layers)} layer(s)" + ("" if layers else " (nothing recorded yet)")
        return "\n".join([title] + [line.rstrip() for line in lines])

    __repr__ = __str__


class Tracker:
    """Counters of every EGRU layer inside a model; use via :func:`track`.

    Methods:
        summary(): a :class:`Summary` (a dict printed as a table) with ``"layers"``
            (one dict per layer, keys as below plus ``name``, ``layer``, ``calls``, ``samples``) and the model-level
            ``activity``, ``batch_union_activity``, ``backward_density``,
            ``backward_sparsity``, ``effective_macs``, ``dense_macs``,
            ``backward_macs``, ``dense_backward_macs``.
        reset(): forget everything recorded so far.

    Example::

        >>> import torch, snntorch_egru as se
        >>> from snntorch_egru import metrics
        >>> rnn = se.EGRU(4, 16)
        >>> tracker = metrics.track(rnn)
        >>> with tracker:
        ...     _ = rnn(torch.randn(20, 2, 4))
        ...     calls = tracker.summary()["layers"][0]["calls"]   # readable inside the block too
        >>> tracker.reset()                                        # forget what was recorded
        >>> isinstance(tracker, metrics.Tracker), calls, tracker.summary()["layers"]
        (True, 1, [])
    """

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        # every sequence-level EGRU module that runs through a backend (EGRU, Norse EGRURecurrent)
        self._modules: List[Tuple[str, EGRUBase]] = [
            (name or type(m).__name__, m)
            for name, m in model.named_modules()
            if isinstance(m, EGRUBase) and hasattr(m, "backend")
        ]
        if not self._modules:
            raise ValueError("model must contain at least one snntorch_egru.EGRU module, found none")
        self._layers: Dict[Tuple[str, int], _LayerAccumulator] = {}
        self._handles: List[RemovableHandle] = []
        self._lock = threading.Lock()

    # -- context management ------------------------------------------------------------------
    def __enter__(self) -> "Tracker":
        if self._handles:
            raise RuntimeError("this Tracker is already active")
        try:
            for name, m in self._modules:
                self._handles.append(m._add_layer_observer(self._observer(name)))
        except BaseException:
            self._remove_observers()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._remove_observers()

    def _remove_observers(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    # -- recording ---------------------------------------------------------------------------
    def _observer(self, name: str) -> Any:
        """The layer observer of module ``name``: counts every layer call it runs (eager mode only)."""

        def observe(module: nn.Module, call: LayerCall, out: Any) -> None:
            if _is_compiling():
                raise RuntimeError(
                    "snntorch_egru.metrics counts eager calls only: run the model without torch.compile "
                    "inside metrics.track(...) (the counters read tensor values on the host)"
                )
            counts = layer_counts(
                call.x.detach(),
                call.y0.detach(),
                out.y.detach(),
                out.c.detach(),
                out.o.detach(),
                call.threshold.detach(),
                surrogate_support(call.spike_fn),
            )
            self._record(name, int(call.layer_index), call.x.shape[-1], call.y0.shape[-1], counts)

        return observe

    def _record(self, name: str, index: int, input_size: int, hidden_size: int, counts: Dict[str, float]) -> None:
        with self._lock:  # several threads may run counted models at once
            acc = self._layers.get((name, index))
            if acc is None:
                acc = self._layers[(name, index)] = _LayerAccumulator(name, index, input_size, hidden_size)
            acc.add(counts)

    def reset(self) -> None:
        """Forget all recorded calls."""
        with self._lock:
            self._layers.clear()

    def summary(self) -> Summary:
        """Per-layer and model-level counters (see the module docstring for definitions), as a :class:`Summary`:
        a dict whose ``print``/``repr`` is a table."""
        with self._lock:
            accs = [self._layers[k] for k in sorted(self._layers, key=lambda k: (k[0], k[1]))]
            layers = [acc.summary() for acc in accs]
        totals: Dict[str, float] = {}
        for acc in accs:
            for k, v in acc.totals.items():
                totals[k] = totals.get(k, 0) + v
        elements = max(totals.get("elements", 0), 1)
        density = totals.get("absorbing", 0) / elements
        out: Dict[str, Any] = {
            "layers": [{k: v for k, v in layer.items() if k != "_totals"} for layer in layers],
            "activity": totals.get("active", 0) / elements,
            "batch_union_activity": totals.get("union_active", 0) / max(totals.get("union_elements", 0), 1),
            "backward_density": density,
            "backward_sparsity": 1.0 - density,
        }
        for k in ("effective_macs", "dense_macs", "backward_macs", "dense_backward_macs"):
            out[k] = sum(layer[k] for layer in layers)
        return Summary(out)


def track(model: nn.Module) -> Tracker:
    """Count activity, backward sparsity and effective MACs of every EGRU in ``model``.

    Args:
        model: any ``nn.Module`` containing :class:`~snntorch_egru.EGRU` modules.

    Returns:
        a :class:`Tracker`; use it as a context manager. Calls made inside the
        ``with`` block are recorded; ``tracker.summary()`` works inside and after it.

    Example::

        >>> import torch, snntorch_egru as se
        >>> from snntorch_egru import metrics
        >>> net = torch.nn.Sequential(torch.nn.Linear(8, 8), se.EGRU(8, 32))   # nested EGRUs are found
        >>> x = torch.randn(20, 4, 8)
        >>> with metrics.track(net) as tracker:
        ...     out, state = net(x)
        >>> sorted(k for k in tracker.summary() if k != "layers")[:3]
        ['activity', 'backward_density', 'backward_macs']
    """
    return Tracker(model)


def _is_compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and hasattr(compiler, "is_compiling") and compiler.is_compiling())
