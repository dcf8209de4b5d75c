"""Export of torch / snnTorch / EGRU models to a ``nir.NIRGraph`` (:func:`export_to_nir`)."""

from __future__ import annotations

import copy
import numbers
import warnings
from typing import Any, Callable, Dict, Optional, Tuple, Union, cast

import nir  # the third-party NIR package
import numpy as np
import torch
from torch import nn

from .. import functional as F
from .._version import __version__
from ..modules import EGRU as _EGRUModule
from ..modules import EGRUCell as _EGRUCellModule
from .node import DEFAULT_DT, EGRU, SPEC_VERSION


def _np32(t: Optional[torch.Tensor], like_shape: Optional[Tuple[int, ...]] = None) -> np.ndarray:
    if t is None:
        if like_shape is None:
            raise TypeError("_np32: a missing tensor needs like_shape")
        return np.zeros(like_shape, dtype=np.float32)
    return t.detach().cpu().to(torch.float32).numpy().copy()


def _egru_attrs(module: nn.Module) -> Optional[Dict[str, Any]]:
    """The five EGRU tensors of a cell-like module (ours or any duck-typed flavour), else None."""
    sources = [module, getattr(module, "p", None)]
    found: Dict[str, Any] = {}
    for name in F.LAYER_TENSOR_NAMES:
        for src in sources:
            if src is not None and hasattr(src, name):
                found[name] = getattr(src, name)
                break
    if not all(isinstance(found.get(n), torch.Tensor) for n in ("weight_ih", "weight_hh", "threshold")):
        return None
    return found


def _opt(module: nn.Module, names: Tuple[str, ...], default: Any) -> Any:
    for src in (module, getattr(module, "p", None)):
        if src is None:
            continue
        for n in names:
            v = getattr(src, n, None)
            if v is not None and not callable(v):  # skip methods such as a module's reset()
                return v
    return default


def _egru_node(module: nn.Module, t: Dict[str, Any], source: str) -> EGRU:
    theta = t["threshold"].detach()
    if getattr(module, "threshold_clamp", False):
        theta = theta.clamp(0.0, 1.0)
    H = theta.shape[0]
    reset = _opt(module, ("reset_mechanism", "reset"), "subtract")
    meta: Dict[str, Any] = {
        "source_module": source,
        "threshold_clamped": bool(getattr(module, "threshold_clamp", False)),
    }
    for key in ("dampening_factor", "pseudo_derivative_support", "dropconnect"):
        v = _opt(module, (key,), None)
        if isinstance(v, numbers.Real):
            meta[key] = float(v)
    return EGRU(
        weight_ih=_np32(t["weight_ih"]),
        weight_hh=_np32(t["weight_hh"]),
        bias_ih=_np32(t.get("bias_ih"), (3 * H,)),
        bias_hh=_np32(t.get("bias_hh"), (3 * H,)),
        threshold=_np32(theta),
        reset=str(reset),
        zoneout=float(_opt(module, ("zoneout",), 0.0) or 0.0),
        output="y",
        metadata=meta,
    )


def _map_egru_layer(module: _EGRUModule) -> nir.NIRNode:
    nodes = []
    for k in range(module.num_layers):
        nodes.append(_egru_node(module, module.layer_tensors(k), f"EGRU layer {k}"))
        nodes[-1].metadata["layer"] = k
    if module.num_layers == 1:
        return nodes[0]
    H = module.hidden_size
    sub = {"input": nir.Input(input_type=np.array([module.input_size]))}
    edges = []
    prev = "input"
    for k, node in enumerate(nodes):
        sub[f"l{k}"] = node
        edges.append((prev, f"l{k}"))
        prev = f"l{k}"
    sub["output"] = nir.Output(output_type=np.array([H]))
    edges.append((prev, "output"))
    return nir.NIRGraph(nodes=sub, edges=edges, metadata={"source_module": "EGRU", "num_layers": module.num_layers})


def _snn_lossy(module: nn.Module, allow_lossy: bool, needs_immediate_reset: bool) -> None:
    reset = getattr(module, "reset_mechanism", "zero")
    problems = []
    if reset != "zero":
        problems.append(f"reset_mechanism={reset!r} (NIR LIF/CubaLIF reset to v_reset = 0)")
    if needs_immediate_reset and getattr(module, "reset_delay", False):
        problems.append("reset_delay=True (NIR resets in the same step)")
    gsf = getattr(module, "graded_spikes_factor", 1.0)
    if not bool(torch.all(torch.as_tensor(gsf) == 1.0)):
        problems.append("graded_spikes_factor != 1 (NIR spikes are 1)")
    if getattr(module, "inhibition", False):
        problems.append("inhibition=True")
    if getattr(module, "state_quant", False):
        problems.append("state_quant (quantised state)")
    if not problems:
        return
    msg = (
        f"{type(module).__name__} with " + " and ".join(problems) + " is not exactly expressible in NIR; "
        "build it with reset_mechanism='zero'"
        + (", reset_delay=False" if needs_immediate_reset else "")
        + " and snnTorch's default spike options for an exact export"
    )
    if not allow_lossy:
        raise ValueError(msg + ", or pass allow_lossy=True to export it as snnTorch does (with a warning)")
    warnings.warn(msg + "; exported anyway (allow_lossy=True)", UserWarning, stacklevel=4)


class _Exporter:
    def __init__(self, shapes: Dict[int, Tuple[int, ...]], dt: float, allow_lossy: bool) -> None:
        self.shapes = shapes
        self.dt = dt
        self.allow_lossy = allow_lossy

    def shape(self, module: nn.Module) -> Tuple[int, ...]:
        if id(module) not in self.shapes:
            raise ValueError(f"{type(module).__name__} was not called by the model's forward on sample_input")
        return self.shapes[id(module)]

    def vec(self, module: nn.Module, value: Any) -> np.ndarray:
        shp = self.shape(module)
        v = torch.as_tensor(value).detach().cpu().to(torch.float32).numpy()
        return (np.ones(shp, dtype=np.float32) * v).astype(np.float32)

    def linear(self, m: nn.Linear) -> nir.NIRNode:
        if m.bias is None:
            return nir.Linear(weight=_np32(m.weight))
        return nir.Affine(weight=_np32(m.weight), bias=_np32(m.bias))

    def conv(self, m: Union[nn.Conv1d, nn.Conv2d]) -> nir.NIRNode:
        cls = nir.Conv1d if isinstance(m, nn.Conv1d) else nir.Conv2d
        spatial = self.shape(m)[1:]
        bias = _np32(m.bias, (m.out_channels,))
        return cls(
            input_shape=spatial if cls is nir.Conv2d else spatial[0],
            weight=_np32(m.weight),
            stride=m.stride,
            padding=m.padding,
            dilation=m.dilation,
            groups=m.groups,
            bias=bias,
        )

    def flatten(self, m: nn.Flatten) -> nir.NIRNode:
        if m.start_dim == 0:
            raise ValueError("Flatten(start_dim=0) flattens the batch dimension and has no NIR equivalent")
        start = m.start_dim - 1 if m.start_dim > 0 else m.start_dim
        end = m.end_dim - 1 if m.end_dim > 0 else m.end_dim
        return nir.Flatten(input_type={"input": np.array(self.shape(m))}, start_dim=start, end_dim=end)

    def decay(self, m: nn.Module, name: str) -> np.ndarray:
        v = self.vec(m, getattr(m, name).clamp(0, 1))
        if np.any(v >= 1.0):
            raise ValueError(
                f"{type(m).__name__}.{name} = 1 (no decay) gives an infinite NIR time constant; use {name} < 1"
            )
        return v

    def _lif(self, m: nn.Module) -> nir.LIF:
        beta = self.decay(m, "beta")
        tau = (self.dt / (1.0 - beta)).astype(np.float32)
        return nir.LIF(
            tau=tau,
            r=(tau / self.dt).astype(np.float32),
            v_leak=np.zeros_like(tau),
            v_threshold=self.vec(m, m.threshold),
            v_reset=np.zeros_like(tau),
        )

    def _cuba(self, m: nn.Module) -> nir.CubaLIF:
        alpha = self.decay(m, "alpha")
        beta = self.decay(m, "beta")
        tau_syn = (self.dt / (1.0 - alpha)).astype(np.float32)
        tau_mem = (self.dt / (1.0 - beta)).astype(np.float32)
        return nir.CubaLIF(
            tau_syn=tau_syn,
            tau_mem=tau_mem,
            r=(tau_mem / self.dt).astype(np.float32),
            v_leak=np.zeros_like(tau_mem),
            v_threshold=self.vec(m, m.threshold),
            v_reset=np.zeros_like(tau_mem),
            w_in=(tau_syn / self.dt).astype(np.float32),
        )

    def leaky(self, m: nn.Module) -> nir.NIRNode:
        _snn_lossy(m, self.allow_lossy, needs_immediate_reset=False)
        return self._lif(m)

    def synaptic(self, m: nn.Module) -> nir.NIRNode:
        # snnTorch's delayed zero reset of Synaptic also drops the next step's input: not NIR's reset
        _snn_lossy(m, self.allow_lossy, needs_immediate_reset=True)
        return self._cuba(m)

    def recurrent(self, m: nn.Module) -> nir.NIRNode:
        _snn_lossy(m, self.allow_lossy, needs_immediate_reset=True)
        shp = self.shape(m)
        if len(shp) != 1:
            raise ValueError(f"{type(m).__name__} export supports [B, N] inputs only, got per-step shape {list(shp)}")
        n = shp[0]
        if m.all_to_all:
            if not isinstance(m.recurrent, nn.Linear):
                raise ValueError(f"{type(m).__name__} with a convolutional recurrence has no NIR mapping")
            w_rec = self.linear(m.recurrent)
        else:
            w_rec = nir.Linear(weight=np.diag(self.vec(m, cast(nn.Module, m.recurrent).V)).astype(np.float32))
        neuron = self._cuba(m) if hasattr(m, "alpha") else self._lif(m)
        return nir.NIRGraph(
            nodes={
                "input": nir.Input(input_type=np.array([n])),
                "lif": neuron,
                "w_rec": w_rec,
                "output": nir.Output(output_type=np.array([n])),
            },
            edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
        )

    def egru_cell(self, m: nn.Module) -> nir.NIRNode:
        t = _egru_attrs(m)
        assert t is not None
        return _egru_node(m, t, type(m).__name__)


_Maps = Dict[type, Callable[[Any], nir.NIRNode]]  # each map takes the module type it is keyed by


def _module_maps(exporter: _Exporter) -> _Maps:
    maps: _Maps = {
        nn.Linear: exporter.linear,
        nn.Conv1d: exporter.conv,
        nn.Conv2d: exporter.conv,
        nn.Flatten: exporter.flatten,
        _EGRUCellModule: exporter.egru_cell,
        _EGRUModule: _map_egru_layer,
    }
    try:
        import snntorch as snn

        maps.update(
            {
                snn.Leaky: exporter.leaky,
                snn.Synaptic: exporter.synaptic,
                snn.RLeaky: exporter.recurrent,
                snn.RSynaptic: exporter.recurrent,
            }
        )
    except ImportError:  # pragma: no cover - snntorch is a dependency
        pass
    try:
        from .. import norse as _norse  # the Norse flavour, when present

        for cls_name in ("EGRURecurrentCell", "EGRURecurrent"):  # same five tensors, one layer
            cls = getattr(_norse, cls_name, None)
            if isinstance(cls, type):
                maps[cls] = exporter.egru_cell
    except ImportError:
        pass
    return maps


_SUPPORTED_TEXT = (
    "torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Flatten, snntorch.Leaky, "
    "snntorch.Synaptic, snntorch.RLeaky, snntorch.RSynaptic, snntorch_egru.EGRUCell, "
    "snntorch_egru.EGRU, snntorch_egru.norse.EGRURecurrentCell, snntorch_egru.norse.EGRURecurrent "
    "(and any cell with "
    "weight_ih/weight_hh/bias_ih/bias_hh/threshold tensors)"
)


def _detached_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in which live (non-leaf) state tensors are detached copies.

    A model right after a forward pass with autograd on holds hidden states that are not
    graph leaves (e.g. an ``EGRUCell``'s ``y``/``c``); ``copy.deepcopy`` refuses those. The
    original model and its state are not touched.
    """
    memo: Dict[int, Any] = {}
    for m in model.modules():
        for v in list(vars(m).values()) + list(m._buffers.values()):
            if isinstance(v, torch.Tensor) and not v.is_leaf:
                memo[id(v)] = v.detach().clone()
    return copy.deepcopy(model, memo)


def _norse_kind(m: nn.Module) -> Optional[str]:
    name = type(m).__name__
    if type(m).__module__.startswith("norse.torch") and name in ("SequentialState", "Lift"):
        return name
    return None


def _has_norse(model: nn.Module) -> bool:
    return any(_norse_kind(m) is not None for m in model.modules())


def _flatten_chain(m: nn.Module) -> list:
    """The modules a Norse container (or ``nn.Sequential``) runs one after the other in one time step."""
    kind = _norse_kind(m)
    if kind == "Lift":  # maps a step module over time: in a one-step graph it is that module
        return _flatten_chain(cast(nn.Module, m.lifted_module))
    if kind == "SequentialState" or type(m) is nn.Sequential:
        return [c for child in m.children() for c in _flatten_chain(child)]
    return [m]


def _chain_graph(model: nn.Module, maps: _Maps, input_shape: Optional[Tuple[int, ...]]) -> nir.NIRNode:
    """``input -> mapped modules in order -> output`` (a single mapped node when there is one module and
    no input shape is given)."""
    mods = _flatten_chain(model)
    for m in mods:
        if type(m) not in maps:
            raise ValueError(
                f"cannot export to NIR: unsupported module {type(m).__module__}.{type(m).__name__} "
                f"inside {type(model).__name__}; supported: {_SUPPORTED_TEXT}"
            )
    if input_shape is None and len(mods) == 1:
        return maps[type(mods[0])](mods[0])
    nodes: Dict[str, nir.NIRNode] = {}
    edges = []
    prev = "input"
    for i, m in enumerate(mods):
        nodes[str(i)] = maps[type(m)](m)
        edges.append((prev, str(i)))
        prev = str(i)
    first = nodes["0"] if input_shape is None else None
    in_type = getattr(first, "input_type", None) if first is not None else None
    if input_shape is not None:
        nodes["input"] = nir.Input(input_type=np.array(input_shape))
    elif isinstance(in_type, dict) and in_type:
        nodes["input"] = nir.Input(input_type=next(iter(in_type.values())))
    else:
        nodes["input"] = nir.Input(input_type=np.array([0]))
    out_type = getattr(nodes[prev], "output_type", None)
    shape = next(iter(out_type.values())) if isinstance(out_type, dict) and out_type else np.array([0])
    nodes["output"] = nir.Output(output_type=shape)
    edges.append((prev, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _norse_chain(model: nn.Module, maps: _Maps, input_shape: Tuple[int, ...]) -> Optional[nir.NIRGraph]:
    """Norse's ``SequentialState`` / ``Lift`` (also inside ``nn.Sequential``) as a chain of mapped nodes
    (torch.fx cannot trace them: they thread state through Python lists and loop over time). ``None`` when
    ``model`` is neither such a container nor an ``nn.Sequential`` holding one."""
    if _norse_kind(model) is None and not (type(model) is nn.Sequential and _has_norse(model)):
        return None
    graph = _chain_graph(model, maps, input_shape)
    assert isinstance(graph, nir.NIRGraph)
    return graph


def _canonical_io_names(graph: nir.NIRGraph) -> nir.NIRGraph:
    """Name the graph's single input node ``input`` and single output node ``output`` (NIR's convention;
    some consumers look these names up, e.g. spyx)."""
    renames: Dict[str, str] = {}
    for kind, canonical in ((nir.Input, "input"), (nir.Output, "output")):
        names = [k for k, n in graph.nodes.items() if isinstance(n, kind)]
        if len(names) == 1 and names[0] != canonical and canonical not in graph.nodes:
            renames[names[0]] = canonical
    if not renames:
        return graph
    nodes = {renames.get(k, k): n for k, n in graph.nodes.items()}
    edges = [(renames.get(a, a), renames.get(b, b)) for a, b in graph.edges]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=graph.metadata)


def _check_export_args(model: Any, sample_input: Any, dt: Any) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(sample_input, torch.Tensor) or sample_input.dim() < 2:
        raise ValueError(
            "sample_input must be a tensor of one time step [B, *features] (with a batch dimension), got "
            + (
                f"shape {list(sample_input.shape)}"
                if isinstance(sample_input, torch.Tensor)
                else type(sample_input).__name__
            )
        )
    if not (isinstance(dt, numbers.Real) and cast(float, dt) > 0):  # numbers.Real declares no "<"
        raise ValueError(f"dt must be a positive float, got {dt!r}")


def _check_supported(model: nn.Module, maps: _Maps, exporter: _Exporter) -> None:
    """Check every leaf before tracing, so unsupported modules get a clear error; duck-typed EGRU
    cells (e.g. another flavour) are added to ``maps``."""
    unsupported = []

    def visit(name: str, m: nn.Module) -> None:
        if type(m) in maps:
            return
        if _egru_attrs(m) is not None:  # duck-typed EGRU cell (e.g. another flavour)
            maps[type(m)] = exporter.egru_cell
            return
        children = list(m.named_children())
        if not children:
            if isinstance(m, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
                return
            unsupported.append(f"{name or '<model>'} ({type(m).__module__}.{type(m).__name__})")
            return
        for cname, c in children:
            visit(f"{name}.{cname}" if name else cname, c)

    visit("", model)
    if unsupported:
        raise ValueError(
            f"cannot export to NIR: unsupported module(s) {', '.join(unsupported)}; supported: {_SUPPORTED_TEXT}"
        )


def _record_shapes(
    model: nn.Module, maps: _Maps, sample_input: torch.Tensor, shapes: Dict[int, Tuple[int, ...]]
) -> None:
    """Record the per-step input shape of every mapped module, by ``id`` of the module in ``model``,
    running a copy (the model's own state is left untouched)."""
    probe = _detached_copy(model)
    orig = dict(model.named_modules())
    handles = []
    for name, m in probe.named_modules():
        if type(m) in maps:
            target = orig[name]

            def hook(mod: nn.Module, inp: Any, out: Any, _t: nn.Module = target) -> None:
                shapes.setdefault(id(_t), tuple(inp[0].shape[1:]))

            handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            probe(sample_input.detach())
    except Exception as err:
        raise ValueError(f"model(sample_input) failed while recording shapes for the export: {err}") from err
    finally:
        for h in handles:
            h.remove()


def _trace(model: nn.Module, maps: _Maps, sample_input: torch.Tensor) -> nir.NIRGraph:
    """The graph of one time step: Norse containers chained by hand, anything else traced by nirtorch."""
    import nirtorch

    try:
        graph = _norse_chain(model, maps, tuple(sample_input.shape[1:]))
        if graph is None:
            graph = nirtorch.torch_to_nir(model, maps, default_dict=None, type_check=False, stateful_modules=set(maps))
    except (KeyError, torch.fx.proxy.TraceError) as err:
        raise ValueError(
            f"cannot trace the model for NIR export ({err}); supported modules: {_SUPPORTED_TEXT}"
        ) from err
    except TypeError as err:
        if "Proxy" not in str(err):
            raise
        raise ValueError(
            f"cannot trace the model's forward for NIR export (torch.fx: {err}); the forward must call its "
            "modules one after the other without Python control flow on tensor values or shapes. Norse's "
            "Lift and SequentialState are exported when they (or an nn.Sequential holding them) are the model, "
            "or when the forward calls them as modules; supported modules: " + _SUPPORTED_TEXT
        ) from err
    if not isinstance(graph, nir.NIRGraph):  # the model itself is one mapped module
        graph = nir.NIRGraph.from_list(graph)
    return graph


def _export_metadata(dt: float, metadata: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    meta = {
        "producer": "snntorch_egru",
        "egru_spec_version": SPEC_VERSION,
        "dt": float(dt),
        "producer_version": __version__,
    }
    if metadata:
        bad = [k for k, v in metadata.items() if v is None]
        if bad:
            raise ValueError(f"metadata values must not be None (HDF5 cannot store them), got None for {bad}")
        meta.update(metadata)
    return meta


def export_to_nir(
    model: nn.Module,
    sample_input: torch.Tensor,
    *,
    dt: float = DEFAULT_DT,
    allow_lossy: bool = False,
    metadata: Optional[Dict[str, Any]] = None,
) -> nir.NIRGraph:
    """Convert a model to a ``nir.NIRGraph`` with EGRU nodes and stock NIR nodes.

    The model's ``forward`` is traced with ``nirtorch.torch_to_nir`` as ONE time
    step: ``sample_input`` is one step ``[B, *features]`` and is run once (on a
    copy of the model) to record the per-step shapes. Sequence layers
    (:class:`~snntorch_egru.EGRU`) become per-step EGRU nodes whose recurrence is
    internal to the node; a multi-layer EGRU becomes a nested ``NIRGraph``
    (``input -> l0 -> l1 ... -> output``). The graph describes eval-mode inference
    (DropConnect and dropout are training-only; zoneout is its eval blend).
    snnTorch neurons are mapped as snnTorch maps them (per-unit vectors,
    ``tau = dt / (1 - beta)``, ``r = tau / dt``, ``dt = 1e-4``).

    Args:
        model: built from the supported modules (listed in the error for any other).
        sample_input: one time step ``[B, *features]``.
        dt: time step of the snnTorch <-> NIR time-constant conversion. Default: 1e-4.
        allow_lossy: export snnTorch neurons whose reset NIR cannot express
            (subtract reset, delayed reset of RLeaky/RSynaptic) with a warning
            instead of an error. Default: False.
        metadata: extra graph metadata (no ``None`` values).

    Returns:
        ``nir.NIRGraph`` with ``infer_types()`` applied.

    Example::

        >>> import torch, snntorch as snn, snntorch_egru as se
        >>> from snntorch_egru.nir import export_to_nir
        >>> class Net(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.lif = snn.Leaky(beta=0.9, init_hidden=True, reset_mechanism="zero")
        ...         self.egru = se.EGRU(6, 8, num_layers=2)
        ...         self.fc = torch.nn.Linear(8, 2)
        ...     def forward(self, x):
        ...         return self.fc(self.egru(self.lif(x))[0])
        >>> g = export_to_nir(Net(), torch.randn(3, 6))
        >>> sorted(g.nodes)
        ['egru', 'fc', 'input', 'lif', 'output']
    """
    _check_export_args(model, sample_input, dt)
    shapes: Dict[int, Tuple[int, ...]] = {}
    exporter = _Exporter(shapes, float(dt), bool(allow_lossy))
    maps = _module_maps(exporter)
    for m in model.modules():  # Norse containers called inside a traced forward: leaves mapped to their chain
        if _norse_kind(m) is not None:
            maps.setdefault(type(m), lambda mod: _chain_graph(mod, maps, None))
    _check_supported(model, maps, exporter)
    _record_shapes(model, maps, sample_input, shapes)
    graph = _canonical_io_names(_trace(model, maps, sample_input))
    graph.infer_types()
    graph.metadata = {**(graph.metadata or {}), **_export_metadata(dt, metadata)}
    return graph
