"""The graph executor: a NIR graph as a torch module advancing one time step per call."""

from __future__ import annotations

import numbers
import pathlib
from typing import Any, Dict, Optional, Tuple, Union

import nir  # the third-party NIR package
import numpy as np
import torch
from torch import nn

from .io import read
from .node import DEFAULT_DT, EGRU
from .step import CubaLIFStep, EGRUStep, LIFStep, _affine, _check_state_keys, _conv, _flatten

_STATEFUL = (EGRUStep, LIFStep, CubaLIFStep)


def _type_of(d: Optional[Dict[str, Any]]) -> Optional[Tuple[int, ...]]:
    if not d or len(d) != 1:
        return None
    v = list(d.values())[0]
    if v is None:
        return None
    v = np.asarray(v)
    if v.dtype == object or v.size == 0 and v.ndim == 0:
        return None
    return tuple(int(a) for a in v.reshape(-1))


class NIRStepModule(nn.Module):
    """A NIR graph as a torch module advancing one time step per call.

    ``forward(x_t, state=None) -> (y_t, state)``; ``state`` is a dict keyed by node
    name (nested graphs give nested dicts): :class:`~snntorch_egru.EGRUState` for
    EGRU nodes, ``{"v"}`` for LIF, ``{"i", "v"}`` for CubaLIF. Several edges into a
    node are summed. A cycle is broken at a stateful node: its output from the
    previous step feeds the cycle (zeros before the first step), exactly like
    snnTorch's ``RLeaky`` (``W s_{t-1} + b``).

    Example::

        >>> import numpy as np, nir, torch
        >>> from snntorch_egru.nir import NIRStepModule
        >>> g = nir.NIRGraph.from_list(nir.Affine(np.eye(2, dtype=np.float32), np.ones(2, np.float32)))
        >>> step = NIRStepModule(g, dt=1e-4).requires_grad_(False)
        >>> step(torch.zeros(1, 2))
        (tensor([[1., 1.]]), {})
    """

    def __init__(self, graph: nir.NIRGraph, dt: float, where: str = "graph") -> None:
        super().__init__()
        self.where = where
        inputs = [n for n, v in graph.nodes.items() if isinstance(v, nir.Input)]
        outputs = [n for n, v in graph.nodes.items() if isinstance(v, nir.Output)]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(
                f"{where}: a NIR graph needs exactly one Input and one Output node, "
                f"got inputs {inputs} and outputs {outputs}"
            )
        self.input_name, self.output_name = inputs[0], outputs[0]
        self.input_shape = _type_of(graph.nodes[self.input_name].input_type)
        names = set(graph.nodes)
        for a, b in graph.edges:
            if a not in names or b not in names:
                raise ValueError(f"{where}: edge ({a!r}, {b!r}) refers to a node that does not exist")
        self.sources: Dict[str, list] = {n: sorted(a for a, b in graph.edges if b == n) for n in graph.nodes}
        self.mods = nn.ModuleDict()
        self.keys: Dict[str, str] = {}
        for i, (name, node) in enumerate(graph.nodes.items()):
            if name in (self.input_name, self.output_name):
                continue
            key = f"n{i}"
            self.keys[name] = key
            self.mods[key] = _node_module(node, f"{where}/{name}", dt)
        self._check_shapes(graph, where)
        self.order, self.delayed = self._schedule()
        self.out_types = {n: _type_of(graph.nodes[n].output_type) for n in graph.nodes}

    def _check_shapes(self, graph: nir.NIRGraph, where: str) -> None:
        for a, b in graph.edges:
            out_t = _type_of(graph.nodes[a].output_type)
            in_t = _type_of(graph.nodes[b].input_type)
            if out_t is not None and in_t is not None and out_t != in_t:
                raise ValueError(
                    f"{where}: shape mismatch on edge {a!r} -> {b!r}: {a!r} outputs {list(out_t)} "
                    f"but {b!r} expects {list(in_t)}"
                )

    def _stateful(self, name: str) -> bool:
        return name in self.keys and isinstance(self.mods[self.keys[name]], _STATEFUL + (NIRStepModule,))

    def _reaches(self, start: str, end: str) -> bool:
        succ: Dict[str, list] = {}
        for dst, srcs in self.sources.items():
            for src in srcs:
                succ.setdefault(src, []).append(dst)
        seen, todo = set(), [start]
        while todo:
            n = todo.pop()
            for m in succ.get(n, []):
                if m == end:
                    return True
                if m not in seen:
                    seen.add(m)
                    todo.append(m)
        return False

    def _schedule(self) -> Tuple[list, set]:
        done = {self.input_name}
        pending = [n for n in self.sources if n not in done]
        order: list[Any] = []
        delayed: set[Any] = set()
        while pending:
            ready = [n for n in pending if all(s in done or (s, n) in delayed for s in self.sources[n])]
            if not ready:
                for n in pending:
                    missing = [s for s in self.sources[n] if s not in done]
                    # only a true back edge may be delayed: s must depend on n (s reachable from n)
                    if all(self._stateful(s) and self._reaches(n, s) for s in missing):
                        delayed.update((s, n) for s in missing)
                        ready = [n]
                        break
            if not ready:
                raise ValueError(
                    f"{self.where}: the graph has a cycle without a stateful node (or an "
                    f"unreachable node) among {sorted(pending)}"
                )
            n = ready[0]
            order.append(n)
            done.add(n)
            pending.remove(n)
        return order, delayed

    def forward(self, x: torch.Tensor, state: Optional[Dict[str, Any]] = None):
        if self.input_shape is not None and tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"{self.where}: input must have shape [B, {', '.join(map(str, self.input_shape))}], got {list(x.shape)}"
            )
        if state is None:
            state = {}
        else:
            if not isinstance(state, dict):
                raise TypeError(
                    f"{self.where}: state must be a dict (as returned by the previous call) or None, "
                    f"got {type(state).__name__}"
                )
            expected = [n for n in self.order if self._stateful(n)] + (["__delayed__"] if self.delayed else [])
            _check_state_keys(state, expected, self.where)
            missing = sorted(set(expected) - set(state))
            if missing:
                raise ValueError(
                    f"{self.where}: state lacks {missing} (a state returned by this module has all of "
                    f"{sorted(expected)}); pass state=None to start from zeros"
                )
            state = dict(state)
        prev = dict(state.get("__delayed__", {}))
        if prev:
            _check_state_keys(prev, [src for src, _ in self.delayed], f"{self.where} (state['__delayed__'])")
        new_state: Dict[str, Any] = {}
        values = {self.input_name: x}
        for n in self.order:
            parts = []
            for s in self.sources[n]:
                if (s, n) in self.delayed:
                    if s in prev:
                        shp = self.out_types.get(s)
                        want = (x.shape[0],) + tuple(shp) if shp is not None else None
                        t = prev[s]
                        if not isinstance(t, torch.Tensor) or (want is not None and tuple(t.shape) != want):
                            got = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                            raise ValueError(
                                f"{self.where}: state['__delayed__'][{s!r}] must have shape "
                                f"{list(want) if want else '[B, ...]'}, got {got}; a state is not "
                                "broadcast across the batch"
                            )
                        parts.append(t)
                    else:
                        shp = self.out_types.get(s)
                        if shp is None:
                            raise ValueError(f"{self.where}: node {s!r} feeds a cycle but has no output type")
                        parts.append(x.new_zeros(x.shape[0], *shp))
                else:
                    parts.append(values[s])
            if not parts:
                raise ValueError(f"{self.where}: node {n!r} has no input")
            inp = parts[0]
            for p in parts[1:]:
                inp = inp + p
            if n == self.output_name:
                values[n] = inp
                continue
            m = self.mods[self.keys[n]]
            if self._stateful(n):
                values[n], new_state[n] = m(inp, state.get(n))
            else:
                values[n] = m(inp)
        if self.delayed:
            new_state["__delayed__"] = {s: values[s] for s, _ in self.delayed}
        return values[self.output_name], new_state


def _node_module(node: nir.NIRNode, where: str, dt: float) -> nn.Module:
    if isinstance(node, EGRU):
        return EGRUStep(node)
    if isinstance(node, nir.NIRGraph):
        return NIRStepModule(node, dt, where)
    if isinstance(node, (nir.Affine, nir.Linear)):
        return _affine(node)
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        return _conv(node)
    if isinstance(node, nir.Flatten):
        return _flatten(node)
    if isinstance(node, nir.CubaLIF):
        return CubaLIFStep(node, dt)
    if isinstance(node, nir.LIF):
        return LIFStep(node, dt)
    raise ValueError(
        f"cannot import NIR node {where!r} of type {type(node).__name__}; supported: Input, Output, NIRGraph, "
        "EGRU, Affine, Linear, Conv1d, Conv2d, Flatten, LIF, CubaLIF"
    )


def import_from_nir(graph_or_path: Union[nir.NIRNode, str, pathlib.Path], *, dt: float = DEFAULT_DT) -> NIRStepModule:
    """Build a torch module from a NIR graph (or file) that advances one time step per call.

    Args:
        graph_or_path: a ``nir.NIRGraph`` (a single node is wrapped) or a path read
            with :func:`read` (EGRU nodes need no registration).
        dt: time step of the LIF/CubaLIF discretisation. Default: 1e-4 (snnTorch's).

    Returns:
        :class:`NIRStepModule` with ``forward(x_t, state=None) -> (y_t, state)``,
        float32, in eval semantics, parameters frozen (``requires_grad_(True)``
        to fine-tune the standard layers; spikes have no surrogate gradient here).

    Raises:
        ValueError: unknown node types, shape mismatches, malformed graphs,
            corrupt files.

    Example::

        >>> import torch, snntorch_egru as se
        >>> from snntorch_egru.nir import export_to_nir, import_from_nir
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 5), se.EGRUCell(5, 4, init_hidden=True))
        >>> step = import_from_nir(export_to_nir(net, torch.randn(1, 3)))
        >>> state = None
        >>> for x_t in torch.randn(10, 2, 3):
        ...     y, state = step(x_t, state)
        >>> y.shape
        torch.Size([2, 4])
    """
    if isinstance(graph_or_path, (str, pathlib.Path)):
        graph_or_path = read(graph_or_path)
    if not isinstance(graph_or_path, nir.NIRNode):
        raise TypeError(f"graph_or_path must be a nir.NIRGraph or a file path, got {type(graph_or_path).__name__}")
    if not (isinstance(dt, numbers.Real) and dt > 0):
        raise ValueError(f"dt must be a positive float, got {dt!r}")
    graph = graph_or_path
    if not isinstance(graph, nir.NIRGraph):
        graph = nir.NIRGraph.from_list(graph)
    return NIRStepModule(graph, float(dt)).eval().requires_grad_(False)
