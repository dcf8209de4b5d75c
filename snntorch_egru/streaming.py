"""Streaming inference: one time step per call of a trained EGRU, at the lowest latency this CPU allows.

:class:`Streamer` freezes a trained :class:`~snntorch_egru.EGRU` (or :class:`~snntorch_egru.EGRUCell`, or an
imported NIR graph whose computation is a chain of EGRU nodes: :meth:`Streamer.from_nir`) for deployment: it
keeps contiguous copies of the weights in the layout the native event path reads, and every
:meth:`Streamer.step` runs one native call per layer (the recurrent product over the rows of the units that
fired, the input product, gates, threshold, reset and trace), with no autograd and no
module machinery. Its numbers equal the model's own forward pass in eval mode.
"""

from __future__ import annotations

import numbers
import pathlib
from typing import Any, Dict, List, NamedTuple, Optional, Tuple, Union

import nir  # the third-party NIR package
import torch

from . import _cell_fast, _engine
from . import functional as F
from ._layer import nan_threshold_propagates
from ._layer_setup import LAYER_TENSOR_NAMES
from ._nir.graph import NIRStepModule, import_from_nir
from ._nir.io import read
from ._nir.node import EGRU as EGRUNode
from ._nir.step import EGRUStep
from .modules import EGRU, EGRUCell
from .state import EGRUState
from .surrogate import HeavisideNoGrad

__all__ = ["Streamer"]


_Tensors = Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor], torch.Tensor]


class _Layer(NamedTuple):
    """One layer as :meth:`Streamer.step` reads it: its five tensors (``LAYER_TENSOR_NAMES`` order, detached,
    contiguous, the threshold as the source uses it: clamped as an EGRU clamps it, as stored in a NIR node) and
    the contiguous ``W_hh^T``."""

    tensors: _Tensors
    w_hh_t: torch.Tensor


# --- imported NIR graphs: the chain of EGRU nodes a Streamer runs -------------------------------------------

_GENERAL = "import_from_nir(...) (a NIRStepModule) runs general NIR graphs step by step"
_CHAIN = "a chain Input -> EGRU -> ... -> EGRU -> Output (consecutive EGRU nodes are stacked layers)"
_Source = Union[EGRU, EGRUCell, NIRStepModule, EGRUStep]


class _End(NamedTuple):
    """The Input or Output of a :class:`NIRStepModule` (the module keeps their names, not the nodes)."""

    kind: str  # "Input" or "Output"


class _Spec(NamedTuple):
    """One EGRU layer of a NIR source as the chain check reads it (a node's fields or an EGRUStep's)."""

    path: str
    input_size: int
    hidden_size: int
    reset: Any
    zoneout: Any
    output: Any


def _refuse(what: str) -> ValueError:
    return ValueError(f"Streamer cannot run {what}; {_GENERAL}")


def _type_name(node: Any) -> str:
    return node.kind if isinstance(node, _End) else type(node).__name__


def _kind(node: Any) -> str:
    """``"Input"``, ``"Output"``, ``"graph"`` (opened), ``"EGRU"`` or ``"other"``."""
    if isinstance(node, _End):
        return node.kind
    if isinstance(node, (nir.Input, nir.Output)):
        return "Input" if isinstance(node, nir.Input) else "Output"
    if isinstance(node, (nir.NIRGraph, NIRStepModule)):
        return "graph"
    return "EGRU" if isinstance(node, (EGRUNode, EGRUStep)) else "other"


def _view(graph: Union[nir.NIRGraph, NIRStepModule]) -> Tuple[Dict[str, Any], List[Tuple[str, str]]]:
    """The nodes by name and the edges of a NIR graph, or of the :class:`NIRStepModule` imported from one."""
    if isinstance(graph, nir.NIRGraph):
        return dict(graph.nodes), [(a, b) for a, b in graph.edges]
    nodes: Dict[str, Any] = {name: graph.mods[key] for name, key in graph.keys.items()}
    nodes[graph.input_name], nodes[graph.output_name] = _End("Input"), _End("Output")
    return nodes, [(a, b) for b, sources in graph.sources.items() for a in sources]


def _chain(graph: Union[nir.NIRGraph, NIRStepModule], where: str) -> List[Tuple[str, Any]]:
    """``(path, node)`` of the EGRU nodes of a graph that is :data:`_CHAIN`, in order, nested graphs opened;
    a clear error for anything else (another node type, a branch, a sum of edges, a cycle, a loose node)."""
    nodes, edges = _view(graph)
    ends = {k: [n for n, v in nodes.items() if _kind(v) == k] for k in ("Input", "Output")}
    if len(ends["Input"]) != 1 or len(ends["Output"]) != 1:
        raise _refuse(
            f"{where!r}: it has Input node(s) {ends['Input']} and Output node(s) {ends['Output']}, expected one "
            f"of each in {_CHAIN}"
        )
    succ: Dict[str, List[str]] = {n: [] for n in nodes}
    pred: Dict[str, List[str]] = {n: [] for n in nodes}
    for a, b in edges:
        if a not in nodes or b not in nodes:
            raise _refuse(f"{where!r}: edge ({a!r}, {b!r}) refers to a node that does not exist")
        succ[a].append(b)
        pred[b].append(a)
    cur, end = ends["Input"][0], ends["Output"][0]
    layers: List[Tuple[str, Any]] = []
    seen = [cur]
    while cur != end:
        if len(succ[cur]) != 1:
            raise _refuse(
                f"{where!r}: node {cur!r} ({_type_name(nodes[cur])}) feeds {sorted(succ[cur])}, expected exactly "
                f"one next node in {_CHAIN}"
            )
        nxt = succ[cur][0]
        if len(pred[nxt]) != 1 or nxt in seen:
            raise _refuse(
                f"{where!r}: node {nxt!r} ({_type_name(nodes[nxt])}) has inputs from {sorted(pred[nxt])} (summed, "
                f"or a cycle), expected exactly one input, from {cur!r}, in {_CHAIN}"
            )
        seen.append(nxt)
        node, path = nodes[nxt], f"{where}/{nxt}"
        kind = _kind(node)
        if kind == "graph":
            layers += _chain(node, path)
        elif kind == "EGRU":
            layers.append((path, node))
        elif kind != "Output":
            raise _refuse(
                f"node {path!r} of type {_type_name(node)}: expected an EGRU node (or a nested graph of them) "
                f"in {_CHAIN}"
            )
        cur = nxt
    loose = sorted(set(nodes) - set(seen))
    if succ[end] or loose:
        raise _refuse(
            f"{where!r}: node(s) {loose or [end]} lie off the path from {seen[0]!r} to {end!r} (or follow the "
            f"Output), expected only {_CHAIN}"
        )
    return layers


def _check_chain(specs: List[_Spec], where: str) -> None:
    """Refuse layers whose attributes the Streamer has no equivalent for, or whose sizes do not chain."""
    if not specs:
        raise _refuse(f"{where!r}: it holds no EGRU node, expected {_CHAIN}")
    first = specs[0]
    for k, s in enumerate(specs):
        what = f"node {s.path!r} of type EGRU"
        if s.output != "y":
            raise _refuse(
                f"{what} with output={s.output!r}: expected output='y' (the Streamer feeds each layer's events y "
                "to the next and returns the last layer's y; its state.trace holds every layer's trace)"
            )
        if not isinstance(s.reset, str) or s.reset not in F.RESET_MECHANISMS:
            raise _refuse(f"{what} with reset={s.reset!r}: expected one of {F.RESET_MECHANISMS}")
        if isinstance(s.zoneout, bool) or not isinstance(s.zoneout, numbers.Real) or not 0 <= float(s.zoneout) < 1:
            raise _refuse(f"{what} with zoneout={s.zoneout!r}: expected a float in [0, 1)")
        if (s.reset, float(s.zoneout)) != (first.reset, float(first.zoneout)):
            raise _refuse(
                f"{what} with reset={s.reset!r}, zoneout={s.zoneout!r}: expected the values of node {first.path!r} "
                f"(reset={first.reset!r}, zoneout={first.zoneout!r}); a Streamer runs one reset mechanism and one "
                "zoneout for all its layers"
            )
        if s.hidden_size != first.hidden_size:
            raise _refuse(
                f"{what} with hidden size {s.hidden_size}: expected {first.hidden_size}, the hidden size of node "
                f"{first.path!r} (a Streamer keeps its state as [num_layers, B, H], one H for all its layers)"
            )
        if k and s.input_size != specs[k - 1].hidden_size:
            raise _refuse(
                f"{what} with input size {s.input_size}: expected {specs[k - 1].hidden_size}, the hidden size of "
                f"the node before it, {specs[k - 1].path!r} (sizes must chain)"
            )


def _node_specs(graph: nir.NIRGraph) -> List[_Spec]:
    """The checked chain of a NIR graph's EGRU nodes (before anything is built from it)."""
    specs = [_Spec(p, n.input_size, n.hidden_size, n.reset, n.zoneout, n.output) for p, n in _chain(graph, "graph")]
    _check_chain(specs, "graph")
    return specs


def _step_spec(path: str, step: EGRUStep) -> _Spec:
    if type(step).forward is not EGRUStep.forward:
        raise _refuse(f"node {path!r} of type {type(step).__name__}: it overrides forward, expected an EGRUStep")
    if not isinstance(step.spike_fn, HeavisideNoGrad):
        raise _refuse(
            f"node {path!r} of type EGRUStep with spike_fn {type(step.spike_fn).__name__}: expected the strict "
            "Heaviside the importer sets (snntorch_egru.surrogate.heaviside())"
        )
    return _Spec(
        path, int(step.weight_ih.shape[-1]), int(step.threshold.shape[0]), step.reset, step.zoneout, step.output
    )


def _nir_layers(model: Union[NIRStepModule, EGRUStep]) -> Tuple[List[Dict[str, torch.Tensor]], str, float]:
    """Each layer's five tensors of an imported NIR source, thresholds as stored (a node holds the effective
    values and :class:`EGRUStep` does not clamp them), and the one reset mechanism and zoneout of all layers."""
    where = "EGRUStep" if isinstance(model, EGRUStep) else model.where
    steps = [(where, model)] if isinstance(model, EGRUStep) else _chain(model, where)
    specs = [_step_spec(path, step) for path, step in steps]
    _check_chain(specs, where)
    ref = steps[0][1].weight_ih
    layers = []
    for s, (_, step) in zip(specs, steps):
        H, Hx3 = s.hidden_size, 3 * s.hidden_size
        t = {name: getattr(step, name).detach() for name in LAYER_TENSOR_NAMES}
        for name, shape in zip(LAYER_TENSOR_NAMES, ((Hx3, s.input_size), (Hx3, H), (Hx3,), (Hx3,), (H,))):
            v = t[name]
            if tuple(v.shape) != shape or v.dtype != ref.dtype or v.device != ref.device:
                raise _refuse(
                    f"node {s.path!r} of type EGRUStep with {name} {v.dtype} {list(v.shape)} on {v.device}: "
                    f"expected {ref.dtype} {list(shape)} on {ref.device} (one dtype and device for all tensors)"
                )
        layers.append(t)
    return layers, specs[0].reset, float(specs[0].zoneout)


def _egru_layers(m: Union[EGRU, EGRUCell]) -> List[Dict[str, Optional[torch.Tensor]]]:
    """Each layer's five tensors of a trained module, thresholds clamped as the model clamps them."""
    if isinstance(m, EGRUCell):
        tensors = [{name: getattr(m, name) for name in LAYER_TENSOR_NAMES}]
    else:
        tensors = [dict(m.layer_tensors(k)) for k in range(m.num_layers)]
    for t in tensors:
        theta = t["threshold"]
        assert theta is not None  # only the biases may be None
        t["threshold"] = m._effective_threshold(theta.detach())
    return tensors


def _copy(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone(memory_format=torch.contiguous_format)


class Streamer:
    """A stateful stepper over a trained EGRU: one time step of ``B`` samples per call, state kept inside.

    The model is read once, at construction (weights copied, thresholds clamped as the model clamps
    them, eval-mode semantics: no dropout, zoneout as its expectation): later edits of the model are
    not seen until :meth:`refresh`. Each step runs the native event path when the package's C helper
    is built (otherwise the same step in torch, same numbers).

    Args:
        model: a trained :class:`~snntorch_egru.EGRU` (any number of layers) or
            :class:`~snntorch_egru.EGRUCell`; or a module imported from NIR: a
            :class:`~snntorch_egru.nir.NIRStepModule` whose graph is a chain
            ``Input -> EGRU -> ... -> EGRU -> Output`` (consecutive EGRU nodes are stacked layers,
            nested graphs are opened), or a single :class:`~snntorch_egru.nir.EGRUStep`. A NIR file or
            graph is read by :meth:`from_nir`.
        batch_size: ``B``, the number of independent streams stepped together. Default: 1.

    Raises:
        TypeError: ``model`` is none of these.
        ValueError: ``batch_size`` is not a positive int; an imported graph holds something the
            Streamer cannot run (another node type, a branch, an EGRU node with ``output="trace"``,
            layers with different reset mechanisms, zoneouts or hidden sizes): the error names the node,
            its type and what was expected (``import_from_nir(...)`` runs general graphs step by step).

    Latency per step on 2 CPU cores (float32, B = 1, I = 64, 10 % activity; ``snntorch-egru bench --events``,
    ``benchmarks/results/cpu-events-2026-12-07.md``):

    ====  ===============  ==========================  ===========================
    H     ``Streamer``     ``EGRUCell`` (``no_grad``)  ``torch.nn.GRUCell``
    ====  ===============  ==========================  ===========================
    256   15.3 µs          22.8 µs                     50.8 µs
    1024  52.9 µs          69.3 µs                     310.3 µs
    ====  ===============  ==========================  ===========================

    Shape:
        - Input of :meth:`step`: ``[I]`` (``batch_size=1``) or ``[B, I]``, the model's dtype.
        - Output: the last layer's events ``y``, ``[H]`` or ``[B, H]`` (a new tensor every step).
        - :attr:`state`: :class:`~snntorch_egru.EGRUState` with fields ``[num_layers, B, H]``.

    Example::

        >>> import torch, snntorch_egru as se
        >>> rnn = se.EGRU(4, 16, num_layers=2, thr_mean=0.1).eval()
        >>> stream = se.Streamer(rnn)
        >>> x = torch.randn(30, 1, 4)
        >>> ys = torch.stack([stream.step(x_t[0]) for x_t in x])     # one step per sample as it arrives
        >>> with torch.no_grad():
        ...     out, _ = rnn(x)
        >>> torch.allclose(ys, out[:, 0], atol=1e-6)
        True
        >>> stream.state.y.shape
        torch.Size([2, 1, 16])
        >>> stream.reset()                    # zero state: the next step starts a new stream

    The same model through NIR (a graph, or a file written with :func:`snntorch_egru.nir.write`)::

        >>> from snntorch_egru.nir import export_to_nir
        >>> from_graph = se.Streamer.from_nir(export_to_nir(rnn, x[0]))
        >>> ys_nir = torch.stack([from_graph.step(x_t[0]) for x_t in x])
        >>> torch.allclose(ys_nir, ys, atol=1e-6)
        True
        >>> type(from_graph.model).__name__   # the imported module, read again by refresh()
        'NIRStepModule'
    """

    def __init__(self, model: _Source, batch_size: int = 1) -> None:
        if not isinstance(model, (EGRU, EGRUCell, NIRStepModule, EGRUStep)):
            raise TypeError(
                "model must be a snntorch_egru.EGRU or EGRUCell, or a module imported from NIR "
                f"(snntorch_egru.nir.NIRStepModule or EGRUStep; see Streamer.from_nir), got {type(model).__name__}"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.model: _Source = model
        self.batch_size = batch_size
        self.refresh()

    @classmethod
    def from_nir(
        cls,
        graph_or_path: Union[nir.NIRNode, str, pathlib.Path],
        batch_size: int = 1,
        *,
        dtype: torch.dtype = torch.float32,
    ) -> "Streamer":
        """A Streamer over a NIR graph (or file) whose computation is a chain of EGRU nodes.

        The file is read with :func:`snntorch_egru.nir.read` (its size limits and clear errors for
        corrupt files); the graph must be ``Input -> EGRU -> ... -> EGRU -> Output`` (nested graphs,
        such as a multi-layer :class:`~snntorch_egru.EGRU`'s export, are opened), with the same reset
        mechanism, zoneout and hidden size in every node and ``output="y"``. It is built with
        :func:`~snntorch_egru.nir.import_from_nir`, and that :class:`~snntorch_egru.nir.NIRStepModule`
        becomes :attr:`model` (:meth:`refresh` reads it again). Each node's weights, biases, threshold
        (as stored: the node holds the effective values), reset mechanism and zoneout are used as they
        are, so a step equals the module's step.

        Args:
            graph_or_path: a ``nir.NIRGraph``, a single EGRU node, or the path of a NIR file.
            batch_size: ``B``, the number of independent streams stepped together. Default: 1.
            dtype: ``torch.float32`` (the nodes' own dtype, default) or ``torch.float64`` (the float32
                values exactly, computed in float64).

        Returns:
            :class:`Streamer` with zero state.

        Raises:
            TypeError: ``graph_or_path`` is not a NIR node or a path.
            FileNotFoundError: the file does not exist.
            ValueError: a corrupt file (the reader's error), a bad ``dtype`` or ``batch_size``, or a graph
                the Streamer cannot run: the error names the node, its type and what was expected, and
                says that ``import_from_nir(...)`` runs general graphs step by step.

        Example::

            >>> import os, tempfile, torch, snntorch_egru as se
            >>> from snntorch_egru.nir import export_to_nir, write
            >>> cell = se.EGRUCell(3, 8, thr_mean=0.1)
            >>> path = os.path.join(tempfile.mkdtemp(), "cell.nir")
            >>> write(path, export_to_nir(cell, torch.randn(1, 3)))
            >>> stream = se.Streamer.from_nir(path, dtype=torch.float64)
            >>> stream.step(torch.randn(3, dtype=torch.float64)).shape
            torch.Size([8])
            >>> net = torch.nn.Sequential(torch.nn.Linear(3, 3), se.EGRUCell(3, 8, init_hidden=True))
            >>> se.Streamer.from_nir(export_to_nir(net, torch.randn(1, 3)))  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            ValueError: Streamer cannot run node 'graph/_0' of type Affine: expected an EGRU node ...
        """
        if isinstance(graph_or_path, (str, pathlib.Path)):
            graph_or_path = read(graph_or_path)
        if not isinstance(graph_or_path, nir.NIRNode):
            raise TypeError(
                f"graph_or_path must be a nir.NIRGraph, a NIR node or a file path, got {type(graph_or_path).__name__}"
            )
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
        graph = graph_or_path if isinstance(graph_or_path, nir.NIRGraph) else nir.NIRGraph.from_list(graph_or_path)
        _node_specs(graph)  # the clear errors, before anything is built
        return cls(import_from_nir(graph).to(dtype), batch_size)

    def refresh(self) -> None:
        """Read the model's tensors again (after training or editing it) and zero the state.

        For an imported NIR source (:meth:`from_nir`, a :class:`~snntorch_egru.nir.NIRStepModule` or an
        :class:`~snntorch_egru.nir.EGRUStep`) the chain and every layer's attributes are checked again.
        """
        m = self.model
        with torch.no_grad():
            if isinstance(m, (EGRU, EGRUCell)):
                tensors = _egru_layers(m)
                reset, zoneout = m.reset_mechanism, float(m.zoneout)
                self.input_size, self.hidden_size = m.input_size, m.hidden_size
            else:
                nir_tensors, reset, zoneout = _nir_layers(m)
                tensors = [dict(t) for t in nir_tensors]
                self.input_size = int(nir_tensors[0]["weight_ih"].shape[1])
                self.hidden_size = int(nir_tensors[0]["threshold"].shape[0])
            self._layers: List[_Layer] = []
            for t in tensors:
                w_ih, w_hh, b_ih, b_hh, theta = (t[name] for name in LAYER_TENSOR_NAMES)
                assert w_ih is not None and w_hh is not None and theta is not None  # only the biases may be None
                # copies (not views of the model's storage): an edit of the model is seen only after refresh()
                b_ih, b_hh = (None if b is None else _copy(b) for b in (b_ih, b_hh))
                w_ih, w_hh, theta = _copy(w_ih), _copy(w_hh), _copy(theta)
                w_hh_t = _engine._transpose(w_hh, _engine._native_fns(w_hh.dtype))
                self._layers.append(_Layer((w_ih, w_hh, b_ih, b_hh, theta), w_hh_t))
        ref = self._layers[0].tensors[0]
        self.dtype, self.device = ref.dtype, ref.device
        self._step_fn = _cell_fast.step_function(self.dtype) if self.device.type == "cpu" else None
        self._zoneout = zoneout
        self._reset = reset
        self.reset()

    def reset(self) -> None:
        """Zero the state (``y``, ``c``, ``trace`` of every layer): the next step starts a new stream."""
        shape = (self.batch_size, self.hidden_size)
        self._y, self._c, self._tr = (
            [torch.zeros(shape, dtype=self.dtype, device=self.device) for _ in self._layers] for _ in range(3)
        )
        self._spare: List[Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = [None] * len(self._layers)

    @property
    def state(self) -> EGRUState:
        """The current state, ``[num_layers, B, H]`` per field (copies: editing them changes nothing)."""
        return EGRUState(torch.stack(self._y), torch.stack(self._c), torch.stack(self._tr))

    @state.setter
    def state(self, value: EGRUState) -> None:
        shape = (len(self._layers), self.batch_size, self.hidden_size)
        fields = tuple(value)
        if len(fields) != 3:
            raise ValueError(f"state must be an EGRUState (y, c, trace), got {len(fields)} fields")
        for name, t in zip(("y", "c", "trace"), fields):
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape:
                got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(f"state.{name} must have shape {shape}, got {got}")
        self._y, self._c, self._tr = (
            list(t.detach().to(device=self.device, dtype=self.dtype, copy=True).contiguous().unbind(0)) for t in fields
        )
        self._spare = [None] * len(self._layers)

    def step(self, x_t: torch.Tensor) -> torch.Tensor:
        """One time step: the last layer's events ``y`` for input ``x_t`` (``[I]`` or ``[B, I]``)."""
        if not isinstance(x_t, torch.Tensor):
            raise TypeError(f"x_t must be a torch.Tensor, got {type(x_t).__name__}")
        unbatched = x_t.dim() == 1
        x = x_t.unsqueeze(0) if unbatched else x_t
        if x.dim() != 2 or x.shape[0] != self.batch_size or x.shape[1] != self.input_size:
            want = f"[{self.input_size}]" if self.batch_size == 1 else ""
            want += (" or " if want else "") + f"[{self.batch_size}, {self.input_size}]"
            raise ValueError(f"x_t must have shape {want} (batch_size={self.batch_size}), got {tuple(x_t.shape)}")
        if x.dtype != self.dtype or x.device != self.device:
            raise ValueError(f"x_t must be {self.dtype} on {self.device} (the model's), got {x.dtype} on {x.device}")
        x = x.contiguous()
        last = len(self._layers) - 1
        for k, L in enumerate(self._layers):
            y0, c0, tr0 = self._y[k], self._c[k], self._tr[k]
            if self._step_fn is not None:
                w_ih, _, b_ih, b_hh, theta = L.tensors
                # c and trace (and an inner layer's y) go into the buffers freed by the step before: only
                # the returned y is a new tensor (fewer allocations per step)
                spare = self._spare[k]
                outs = (
                    torch.empty_like(y0) if k == last or spare is None else spare[0],
                    torch.empty_like(c0) if spare is None else spare[1],
                    torch.empty_like(tr0) if spare is None else spare[2],
                )
                y, c, tr = _cell_fast.inference_step(
                    self._step_fn, x, y0, c0, tr0, w_ih, L.w_hh_t, b_ih, b_hh, theta, self._reset, self._zoneout,
                    outs=outs,
                )  # fmt: skip
                self._spare[k] = (y0, c0, tr0)
            else:
                with torch.no_grad():
                    out = F.egru_step(x, y0, c0, tr0, *L.tensors, reset=self._reset, zoneout_p=self._zoneout)
                    out = nan_threshold_propagates(L.tensors[4], out)
                y, c, tr = out.y, out.c, out.trace
            self._y[k], self._c[k], self._tr[k] = y, c, tr
            x = y
        return x[0] if unbatched else x

    def __repr__(self) -> str:
        path = "native" if self._step_fn is not None else "torch"
        return (
            f"Streamer({type(self.model).__name__}, layers={len(self._layers)}, input_size={self.input_size}, "
            f"hidden_size={self.hidden_size}, batch_size={self.batch_size}, path={path!r})"
        )
