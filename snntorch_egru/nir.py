"""NIR (Neuromorphic Intermediate Representation) export and import for EGRU models.

NIR 1.0.8 has no sigmoid, tanh or signal-by-signal product, so an EGRU layer
cannot be built from stock NIR primitives. This module adds one custom node type,
:class:`EGRU` (a ``nir.NIRNode`` dataclass holding one EGRU layer with all its
semantics in typed fields; see ``docs/nir_egru_spec.md``), and keeps every other
part of a model a stock NIR node (Affine, Linear, Conv1d/2d, Flatten, LIF,
CubaLIF, the snnTorch RLeaky/RSynaptic sub-graphs), so the standard part of a
mixed graph stays readable by snnTorch's and Norse's own importers.

* :func:`export_to_nir` traces a model (``nirtorch.torch_to_nir``) and returns a
  ``nir.NIRGraph``; a multi-layer :class:`~snntorch_egru.EGRU` becomes a nested
  ``NIRGraph`` of chained EGRU nodes.
* :func:`write` / :func:`read` store and load graphs with EGRU nodes
  (:func:`read` works without touching NIR internals; stock ``nir.read`` needs
  the opt-in :func:`register_nir_extension`).
* :func:`import_from_nir` builds a torch module that advances one time step per
  call, ``(x_t, state=None) -> (y_t, state)``.

The third-party package is imported as ``nir`` (absolute import); this module is
``snntorch_egru.nir``.

Example::

    >>> import torch, snntorch_egru as se
    >>> from snntorch_egru import nir as senir
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), se.EGRUCell(8, 16, init_hidden=True),
    ...                           torch.nn.Linear(16, 3))
    >>> graph = senir.export_to_nir(net, torch.randn(2, 4))
    >>> sorted(type(n).__name__ for n in graph.nodes.values())
    ['Affine', 'Affine', 'EGRU', 'Input', 'Output']
    >>> step = senir.import_from_nir(graph)
    >>> y, state = step(torch.randn(2, 4))
    >>> y, state = step(torch.randn(2, 4), state)
    >>> y.shape
    torch.Size([2, 3])
"""

from __future__ import annotations

import copy
import dataclasses
import numbers
import pathlib
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple, Union

import nir  # the third-party NIR package (absolute import, not this module)
import numpy as np
import torch
from torch import nn

from . import _checks
from . import functional as F
from ._version import __version__
from .modules import EGRU as _EGRUModule
from .modules import EGRUCell as _EGRUCellModule
from .state import EGRUState
from .surrogate import heaviside

__all__ = [
    "EGRU",
    "SPEC_VERSION",
    "SUPPORTED_SPEC_VERSIONS",
    "DEFAULT_DT",
    "DEFAULT_MAX_READ_BYTES",
    "export_to_nir",
    "import_from_nir",
    "read",
    "write",
    "register_nir_extension",
    "NIRStepModule",
    "EGRUStep",
    "LIFStep",
    "CubaLIFStep",
]

#: Version of the EGRU node semantics written into every node (``spec_version``).
SPEC_VERSION = 1
#: Versions this reader understands.
SUPPORTED_SPEC_VERSIONS = (1,)
#: Time step used to convert between snnTorch decay factors and NIR time constants
#: (snnTorch hard-codes the same value in its exporter and importer).
DEFAULT_DT = 1e-4

_OUTPUTS = ("y", "trace")
_GATE_ORDERS = ("rzn",)
_EGRU_FIELDS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "threshold")


# ---------------------------------------------------------------------------------------------
# The EGRU node
# ---------------------------------------------------------------------------------------------


def _float32_array(name: str, value: Any) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise TypeError(
            f"EGRU node field {name} must be a numpy.ndarray of dtype float32, got {type(value).__name__} "
            "(convert a tensor with .detach().cpu().numpy())"
        )
    if value.dtype != np.float32:
        raise TypeError(
            f"EGRU node field {name} must have dtype float32, got {value.dtype} "
            "(cast explicitly with .astype(numpy.float32) if the precision loss is acceptable)"
        )
    if not np.all(np.isfinite(value)):
        raise ValueError(f"EGRU node field {name} must contain only finite values, got NaN or inf")
    return value


def _show(v: Any) -> str:
    """repr of a value, with numpy scalars (as read back from HDF5) shown as plain Python values."""
    return repr(v.item()) if isinstance(v, np.generic) else repr(v)


@dataclass(eq=False)
class EGRU(nir.NIRNode):
    r"""NIR node for one Event-based GRU layer (a discrete-time map, one call per time step).

    Semantics (``docs/nir_egru_spec.md``), gate order (r, z, n) as ``torch.nn.GRU``::

        r  = sigmoid(W_ir x + b_ir + W_hr y' + b_hr)
        z  = sigmoid(W_iz x + b_iz + W_hz y' + b_hz)
        n  = tanh(W_in x + b_in + r * (W_hn y' + b_hn))
        c^ = (1 - z) n + z c'              then  c^ = p c' + (1 - p) c^  (zoneout p)
        o  = 1 if c^ > theta else 0
        y  = o c^                          (graded event)
        c  = c^ - o theta | c^ (1 - o) | c^   (reset "subtract" | "zero" | "none")
        tr = 0.9 tr' + 0.1 y

    ``y', c', tr'`` are the previous step's values, all zero before the first step.
    The node outputs ``y`` (``output="y"``) or ``tr`` (``output="trace"``).

    Args:
        weight_ih: ``float32 [3H, I]`` input weights, rows (r, z, n).
        weight_hh: ``float32 [3H, H]`` recurrent weights (multiply the previous ``y``).
        bias_ih: ``float32 [3H]`` input bias.
        bias_hh: ``float32 [3H]`` recurrent bias (``b_hn`` sits inside the reset-gated term).
        threshold: ``float32 [H]`` per-unit thresholds (the effective values, e.g. after clamping).
        reset: ``"subtract"``, ``"zero"`` or ``"none"``. Default: ``"subtract"``.
        zoneout: eval-mode zoneout blend ``p`` in [0, 1). Default: 0.
        output: ``"y"`` (graded events) or ``"trace"``. Default: ``"y"``.
        gate_order: must be ``"rzn"``.
        spec_version: semantics version, one of :data:`SUPPORTED_SPEC_VERSIONS`.
        metadata: free-form, informational only (never needed to run the node).

    ``input_type = {"input": [I]}``, ``output_type = {"output": [H]}``.

    Example::

        >>> import numpy as np
        >>> from snntorch_egru.nir import EGRU
        >>> H, I = 4, 3
        >>> z = lambda *s: np.zeros(s, dtype=np.float32)
        >>> node = EGRU(z(3 * H, I), z(3 * H, H), z(3 * H), z(3 * H), z(H) + 0.3)
        >>> node.input_type["input"], node.output_type["output"]
        (array([3]), array([4]))
    """

    weight_ih: np.ndarray
    weight_hh: np.ndarray
    bias_ih: np.ndarray
    bias_hh: np.ndarray
    threshold: np.ndarray
    reset: str = "subtract"
    zoneout: float = 0.0
    output: str = "y"
    gate_order: str = "rzn"
    spec_version: int = SPEC_VERSION

    def __post_init__(self) -> None:
        for name in _EGRU_FIELDS:
            setattr(self, name, _float32_array(name, getattr(self, name)))
        theta = self.threshold
        if theta.ndim != 1 or theta.shape[0] == 0:
            raise ValueError(f"EGRU node field threshold must have shape [H] with H >= 1, got {list(theta.shape)}")
        H = theta.shape[0]
        w_ih = self.weight_ih
        if w_ih.ndim != 2 or w_ih.shape[0] != 3 * H or w_ih.shape[1] == 0:
            raise ValueError(
                f"EGRU node field weight_ih must have shape [3H, I] = [{3 * H}, I] (H = {H} from threshold), "
                f"got {list(w_ih.shape)}"
            )
        for name, shape in (("weight_hh", (3 * H, H)), ("bias_ih", (3 * H,)), ("bias_hh", (3 * H,))):
            got = getattr(self, name).shape
            if tuple(got) != shape:
                raise ValueError(
                    f"EGRU node field {name} must have shape {list(shape)} (H = {H} from threshold), got {list(got)}"
                )
        if not isinstance(self.reset, str) or self.reset not in _checks.RESET_CODES:  # NIR's tuple-style message
            raise ValueError(f"EGRU node field reset must be one of {F.RESET_MECHANISMS}, got {_show(self.reset)}")
        if not isinstance(self.output, str) or self.output not in _OUTPUTS:
            raise ValueError(f"EGRU node field output must be one of {_OUTPUTS}, got {_show(self.output)}")
        if not isinstance(self.gate_order, str) or self.gate_order not in _GATE_ORDERS:
            raise ValueError(
                f"EGRU node field gate_order must be 'rzn' (rows r, z, n as torch.nn.GRU), got {_show(self.gate_order)}"
            )
        if isinstance(self.zoneout, (bool, np.bool_)) or not isinstance(self.zoneout, numbers.Real) \
                or not (0.0 <= float(self.zoneout) < 1.0):
            raise ValueError(f"EGRU node field zoneout must be a float in [0, 1), got {_show(self.zoneout)}")
        self.zoneout = float(self.zoneout)
        if isinstance(self.spec_version, (bool, np.bool_)) or not isinstance(self.spec_version, numbers.Integral) \
                or int(self.spec_version) not in SUPPORTED_SPEC_VERSIONS:
            raise ValueError(
                f"EGRU node field spec_version must be one of {SUPPORTED_SPEC_VERSIONS} (this reader's versions), "
                f"got {_show(self.spec_version)}; a newer file needs a newer snntorch-egru"
            )
        self.spec_version = int(self.spec_version)
        self.input_type = {"input": np.array([w_ih.shape[1]])}
        self.output_type = {"output": np.array([H])}

    @property
    def hidden_size(self) -> int:
        """Number of units ``H``."""
        return int(self.threshold.shape[0])

    @property
    def input_size(self) -> int:
        """Number of inputs ``I``."""
        return int(self.weight_ih.shape[1])

    @classmethod
    def from_dict(cls, kwargs: Dict[str, Any]) -> "EGRU":
        """Build from the dictionary stored in a NIR file; rejects unknown or missing fields."""
        d = dict(kwargs)
        d.pop("type", None)
        allowed = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(d) - allowed)
        if unknown:
            raise ValueError(f"EGRU node has unknown fields {unknown}; known fields: {sorted(allowed)}")
        missing = [n for n in _EGRU_FIELDS if n not in d]
        if missing:
            raise ValueError(f"EGRU node is missing the fields {missing}")
        for key in ("reset", "output", "gate_order"):
            if isinstance(d.get(key), bytes):
                d[key] = d[key].decode("utf8")
        return cls(**d)


# ---------------------------------------------------------------------------------------------
# Reading, writing, registration
# ---------------------------------------------------------------------------------------------


def _build_node(d: Any, where: str, type_check: bool) -> nir.NIRNode:
    if not isinstance(d, dict) or "type" not in d:
        raise ValueError(f"corrupt NIR file: node {where!r} has no 'type' entry")
    kind = d["type"]
    if isinstance(kind, bytes):
        kind = kind.decode("utf8")
    if kind == "EGRU":
        try:
            return EGRU.from_dict(d)
        except (ValueError, TypeError) as err:
            raise type(err)(f"node {where!r}: {err}") from err
    if kind == "NIRGraph":
        if "nodes" not in d or "edges" not in d:
            raise ValueError(f"corrupt NIR file: graph {where!r} lacks 'nodes' or 'edges'")
        nodes = {name: _build_node(sub, f"{where}/{name}", type_check) for name, sub in d["nodes"].items()}
        raw = np.asarray(d["edges"])
        if raw.size and (raw.ndim != 2 or raw.shape[1] != 2):
            raise ValueError(f"corrupt NIR file: edges of graph {where!r} must be pairs, got shape {list(raw.shape)}")
        edges = [(nir.ir.utils.ensure_str(a), nir.ir.utils.ensure_str(b)) for a, b in raw.reshape(-1, 2)]
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(d.get("metadata", {})), type_check=type_check)
    known = list(nir.ir.__dict__["__all_ir"])
    if kind not in known:
        raise ValueError(
            f"unknown NIR node type {kind!r} at node {where!r}; this reader knows EGRU and the stock types {known}"
        )
    try:
        return nir.dict2NIRNode(dict(d))
    except (TypeError, KeyError, ValueError, AssertionError) as err:
        raise ValueError(f"corrupt NIR file: cannot build node {where!r} of type {kind!r}: {err!r}") from err


#: Default limit on the total bytes a NIR file may declare (sum over its datasets, from their shapes
#: and dtypes, checked before anything is read): 1 GiB. Override with ``read(..., max_bytes=...)``.
DEFAULT_MAX_READ_BYTES = 1 << 30
_MAX_DEPTH = 64  # nesting of groups (graphs in graphs, metadata dicts)
_MAX_OBJECTS = 1_000_000


def _safe_hdf2dict(group: Any, path: str, max_bytes: int) -> Dict[str, Any]:
    """``nir.serialization.hdf2dict`` with limits: hard links only (no soft or external links), no
    external or virtual dataset storage, bounded nesting, object count and declared bytes."""
    import h5py

    budget = {"bytes": 0, "objects": 0}

    def walk(g: Any, where: str, depth: int) -> Dict[str, Any]:
        if depth > _MAX_DEPTH:
            raise ValueError(f"NIR file {path!r}: groups nested deeper than {_MAX_DEPTH} levels at {where!r}")
        out: Dict[str, Any] = {}
        for key in g.keys():
            name = f"{where}/{key}"
            budget["objects"] += 1
            if budget["objects"] > _MAX_OBJECTS:
                raise ValueError(f"NIR file {path!r} holds more than {_MAX_OBJECTS} objects")
            link = g.get(key, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise ValueError(
                    f"NIR file {path!r}: {name!r} is an HDF5 external link to {link.filename!r}; refused "
                    "(a NIR file must be self-contained)"
                )
            if isinstance(link, h5py.SoftLink):
                raise ValueError(
                    f"NIR file {path!r}: {name!r} is an HDF5 soft link to {link.path!r}; refused "
                    "(NIR files hold plain groups and datasets)"
                )
            if not isinstance(link, h5py.HardLink):
                raise ValueError(f"NIR file {path!r}: {name!r} is an unsupported HDF5 link ({type(link).__name__})")
            item = g.get(key)
            k = nir.serialization.try_byte_to_str(key)
            if isinstance(item, h5py.Group):
                out[k] = walk(item, name, depth + 1)
            elif isinstance(item, h5py.Dataset):
                if item.external:
                    raise ValueError(
                        f"NIR file {path!r}: dataset {name!r} keeps its data in external file(s) "
                        f"{[e[0] for e in item.external]}; refused (a NIR file must be self-contained)"
                    )
                if item.is_virtual:
                    raise ValueError(
                        f"NIR file {path!r}: dataset {name!r} is an HDF5 virtual dataset mapping other files; refused"
                    )
                shape = item.shape or ()
                n = 1
                for d in shape:
                    n *= int(d)
                budget["bytes"] += n * max(int(item.dtype.itemsize), 1)
                if budget["bytes"] > max_bytes:
                    raise ValueError(
                        f"NIR file {path!r} declares more than max_bytes={max_bytes} bytes of data (dataset {name!r} "
                        f"has shape {list(shape)} of {item.dtype}, {budget['bytes']} bytes so far); refused before "
                        "reading. Pass a larger max_bytes to snntorch_egru.nir.read if the file is trusted"
                    )
                out[k] = nir.serialization.try_byte_to_str(item[()])
            else:
                raise ValueError(f"NIR file {path!r}: {name!r} is neither a group nor a dataset")
        return out

    return walk(group, "node", 0)


def read(path: Union[str, pathlib.Path], type_check: bool = True,
         max_bytes: int = DEFAULT_MAX_READ_BYTES) -> nir.NIRGraph:
    """Read a NIR HDF5 file that may contain :class:`EGRU` nodes.

    Uses NIR's own HDF5 layout (``nir.serialization.hdf2dict``) and rebuilds every
    node: EGRU nodes here, stock nodes through ``nir.dict2NIRNode``, graphs
    (nested ones included) as ``nir.NIRGraph``. No registration is needed.

    Args:
        path: file written by :func:`write` or ``nir.write``.
        type_check: check that connected node types match (as ``nir.read``).
        max_bytes: refuse a file whose datasets declare more bytes than this in total (from their
            shapes and dtypes, before any data is read). Default: :data:`DEFAULT_MAX_READ_BYTES` (1 GiB).

    Returns:
        the stored node, usually a ``nir.NIRGraph``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an HDF5/NIR file, unknown node types, invalid EGRU fields, more data than
            ``max_bytes``, or HDF5 features a NIR file does not need and that could reach outside it
            (external links, soft links, external or virtual dataset storage).

    Example::

        >>> import os, tempfile, numpy as np, nir
        >>> from snntorch_egru.nir import EGRU, read, write
        >>> z = lambda *s: np.zeros(s, dtype=np.float32)
        >>> g = nir.NIRGraph.from_list(EGRU(z(6, 3), z(6, 2), z(6), z(6), z(2) + 0.5))
        >>> path = os.path.join(tempfile.mkdtemp(), "egru.nir")
        >>> write(path, g)
        >>> type(read(path).nodes["egru"]).__name__
        'EGRU'
    """
    import h5py

    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise ValueError(f"max_bytes must be a positive int, got {max_bytes!r}")
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"NIR file {str(path)!r} does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{str(path)!r} is not a readable NIR file (HDF5 open failed: {err})") from err
    with f:
        if "node" not in f:
            raise ValueError(f"{str(path)!r} is not a NIR file: the HDF5 file has no 'node' group")
        if not isinstance(f.get("node", getlink=True), h5py.HardLink) or not isinstance(f["node"], h5py.Group):
            raise ValueError(f"{str(path)!r} is not a NIR file: 'node' is not a plain HDF5 group")
        try:
            data = _safe_hdf2dict(f["node"], str(path), max_bytes)
        except ValueError:
            raise
        except Exception as err:  # h5py raises several types on damaged datasets
            raise ValueError(f"corrupt NIR file {str(path)!r}: {err}") from err
    return _build_node(data, "node", type_check)


def write(path: Union[str, pathlib.Path], graph: nir.NIRNode, compression: str = "gzip") -> None:
    """Write a graph (EGRU nodes allowed) to a NIR HDF5 file (``nir.write`` with the arguments in order).

    The file is written to a temporary file in the same folder and renamed over ``path`` only
    when complete, so an interrupted or failed write leaves a previous file intact.

    Args:
        path: destination file.
        graph: a ``nir.NIRGraph`` (or single node).
        compression: HDF5 compression of the arrays. Default: ``"gzip"``.

    Raises:
        ValueError: a node name (at any nesting level) is empty, ``'.'``/``'..'`` or contains
            ``'/'``, which HDF5 would turn into a path.

    Example::

        >>> import os, tempfile, numpy as np, nir
        >>> from snntorch_egru.nir import write
        >>> write(os.path.join(tempfile.mkdtemp(), "g.nir"),
        ...       nir.NIRGraph.from_list(nir.Linear(np.eye(2, dtype=np.float32))))
    """
    if not isinstance(graph, nir.NIRNode):
        raise TypeError(f"graph must be a nir.NIRNode (usually a nir.NIRGraph), got {type(graph).__name__}")
    _check_node_names(graph, "graph")
    from ._io import atomic_write_path

    with atomic_write_path(path) as tmp:
        nir.write(tmp, graph, compression=compression)


def _check_node_names(graph: nir.NIRNode, where: str) -> None:
    """Node names become HDF5 group names: refuse what would not read back as the same name."""
    if not isinstance(graph, nir.NIRGraph):
        return
    for name, node in graph.nodes.items():
        if not isinstance(name, str) or not name or "/" in name or name in (".", "..") or "\x00" in name:
            raise ValueError(
                f"node name {name!r} in {where!r} cannot be stored in a NIR (HDF5) file: names must be "
                "non-empty strings without '/' or NUL and not '.' or '..' (rename the node)"
            )
        _check_node_names(node, f"{where}/{name}")


def register_nir_extension() -> None:
    """Opt-in: make stock ``nir.read`` and ``nir.dict2NIRNode`` understand EGRU nodes.

    Uses NIR's private registry (``nir.ir.__all_ir``), in this process only; other
    programs still need :func:`read`. Idempotent. Refuses if another ``EGRU`` type
    is already registered (e.g. a future upstream node), so nothing is shadowed.

    Example::

        >>> from snntorch_egru.nir import register_nir_extension
        >>> register_nir_extension()
    """
    registry = nir.ir.__dict__.get("__all_ir")
    if not isinstance(registry, list):
        raise RuntimeError("this nir version has no __all_ir registry; use snntorch_egru.nir.read instead")
    existing = nir.ir.__dict__.get("EGRU")
    if existing is not None and existing is not EGRU:
        raise RuntimeError(
            f"nir already defines a node type named 'EGRU' ({existing!r}); refusing to shadow it. "
            "Use snntorch_egru.nir.read to read files written by snntorch-egru"
        )
    setattr(nir.ir, "EGRU", EGRU)
    if "EGRU" not in registry:
        registry.append("EGRU")


# ---------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------


def _np32(t: Optional[torch.Tensor], like_shape: Optional[Tuple[int, ...]] = None) -> np.ndarray:
    if t is None:
        return np.zeros(like_shape, dtype=np.float32)
    return t.detach().cpu().to(torch.float32).numpy().copy()


def _egru_attrs(module: nn.Module) -> Optional[Dict[str, Any]]:
    """The five EGRU tensors of a cell-like module (ours or any duck-typed flavour), else None."""
    sources = [module, getattr(module, "p", None)]
    found: Dict[str, Any] = {}
    for name in _EGRU_FIELDS:
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
    meta: Dict[str, Any] = {"source_module": source,
                            "threshold_clamped": bool(getattr(module, "threshold_clamp", False))}
    for key in ("dampening_factor", "pseudo_derivative_support", "dropconnect"):
        v = _opt(module, (key,), None)
        if isinstance(v, numbers.Real):
            meta[key] = float(v)
    return EGRU(
        weight_ih=_np32(t["weight_ih"]), weight_hh=_np32(t["weight_hh"]),
        bias_ih=_np32(t.get("bias_ih"), (3 * H,)), bias_hh=_np32(t.get("bias_hh"), (3 * H,)),
        threshold=_np32(theta), reset=str(reset), zoneout=float(_opt(module, ("zoneout",), 0.0) or 0.0),
        output="y", metadata=meta,
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
    return nir.NIRGraph(nodes=sub, edges=edges,
                        metadata={"source_module": "EGRU", "num_layers": module.num_layers})


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
    msg = (f"{type(module).__name__} with " + " and ".join(problems) + " is not exactly expressible in NIR; "
           "build it with reset_mechanism='zero'"
           + (", reset_delay=False" if needs_immediate_reset else "")
           + " and snnTorch's default spike options for an exact export")
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

    def conv(self, m: nn.Module) -> nir.NIRNode:
        cls = nir.Conv1d if isinstance(m, nn.Conv1d) else nir.Conv2d
        spatial = self.shape(m)[1:]
        bias = _np32(m.bias, (m.out_channels,))
        return cls(input_shape=spatial if cls is nir.Conv2d else spatial[0], weight=_np32(m.weight),
                   stride=m.stride, padding=m.padding, dilation=m.dilation, groups=m.groups, bias=bias)

    def flatten(self, m: nn.Flatten) -> nir.NIRNode:
        if m.start_dim == 0:
            raise ValueError("Flatten(start_dim=0) flattens the batch dimension and has no NIR equivalent")
        start = m.start_dim - 1 if m.start_dim > 0 else m.start_dim
        end = m.end_dim - 1 if m.end_dim > 0 else m.end_dim
        return nir.Flatten(input_type={"input": np.array(self.shape(m))}, start_dim=start, end_dim=end)

    def decay(self, m: nn.Module, name: str) -> np.ndarray:
        v = self.vec(m, getattr(m, name).clamp(0, 1))
        if np.any(v >= 1.0):
            raise ValueError(f"{type(m).__name__}.{name} = 1 (no decay) gives an infinite NIR time constant; "
                             f"use {name} < 1")
        return v

    def _lif(self, m: nn.Module) -> nir.LIF:
        beta = self.decay(m, "beta")
        tau = (self.dt / (1.0 - beta)).astype(np.float32)
        return nir.LIF(tau=tau, r=(tau / self.dt).astype(np.float32), v_leak=np.zeros_like(tau),
                       v_threshold=self.vec(m, m.threshold), v_reset=np.zeros_like(tau))

    def _cuba(self, m: nn.Module) -> nir.CubaLIF:
        alpha = self.decay(m, "alpha")
        beta = self.decay(m, "beta")
        tau_syn = (self.dt / (1.0 - alpha)).astype(np.float32)
        tau_mem = (self.dt / (1.0 - beta)).astype(np.float32)
        return nir.CubaLIF(tau_syn=tau_syn, tau_mem=tau_mem, r=(tau_mem / self.dt).astype(np.float32),
                           v_leak=np.zeros_like(tau_mem), v_threshold=self.vec(m, m.threshold),
                           v_reset=np.zeros_like(tau_mem), w_in=(tau_syn / self.dt).astype(np.float32))

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
            w_rec = nir.Linear(weight=np.diag(self.vec(m, m.recurrent.V)).astype(np.float32))
        neuron = self._cuba(m) if hasattr(m, "alpha") else self._lif(m)
        return nir.NIRGraph(
            nodes={"input": nir.Input(input_type=np.array([n])), "lif": neuron, "w_rec": w_rec,
                   "output": nir.Output(output_type=np.array([n]))},
            edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
        )

    def egru_cell(self, m: nn.Module) -> nir.NIRNode:
        t = _egru_attrs(m)
        assert t is not None
        return _egru_node(m, t, type(m).__name__)


def _module_maps(exporter: _Exporter) -> Dict[type, Callable[[nn.Module], nir.NIRNode]]:
    maps: Dict[type, Callable[[nn.Module], nir.NIRNode]] = {
        nn.Linear: exporter.linear, nn.Conv1d: exporter.conv, nn.Conv2d: exporter.conv,
        nn.Flatten: exporter.flatten, _EGRUCellModule: exporter.egru_cell, _EGRUModule: _map_egru_layer,
    }
    try:
        import snntorch as snn

        maps.update({snn.Leaky: exporter.leaky, snn.Synaptic: exporter.synaptic,
                     snn.RLeaky: exporter.recurrent, snn.RSynaptic: exporter.recurrent})
    except ImportError:  # pragma: no cover - snntorch is a dependency
        pass
    try:
        from . import norse as _norse  # the Norse flavour, when present

        for cls_name in ("EGRURecurrentCell", "EGRURecurrent"):  # same five tensors, one layer
            cls = getattr(_norse, cls_name, None)
            if isinstance(cls, type):
                maps[cls] = exporter.egru_cell
    except ImportError:
        pass
    return maps


_SUPPORTED_TEXT = ("torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Flatten, snntorch.Leaky, "
                   "snntorch.Synaptic, snntorch.RLeaky, snntorch.RSynaptic, snntorch_egru.EGRUCell, "
                   "snntorch_egru.EGRU, snntorch_egru.norse.EGRURecurrentCell, snntorch_egru.norse.EGRURecurrent "
                   "(and any cell with "
                   "weight_ih/weight_hh/bias_ih/bias_hh/threshold tensors)")


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


def _norse_chain(model: nn.Module, maps: Dict[type, Callable[[nn.Module], nir.NIRNode]],
                 input_shape: Tuple[int, ...]) -> Optional[nir.NIRGraph]:
    """Norse's ``SequentialState`` / ``Lift`` as a chain of mapped nodes (torch.fx cannot trace them: they
    thread state through Python lists). ``None`` when ``model`` is not such a container."""
    if _norse_kind(model) is None:
        return None

    def flatten(m: nn.Module) -> list:
        kind = _norse_kind(m)
        if kind == "Lift":  # maps a step module over time: in a one-step graph it is that module
            return flatten(m.lifted_module)
        if kind == "SequentialState" or type(m) is nn.Sequential:
            return [c for child in m.children() for c in flatten(child)]
        return [m]

    nodes: Dict[str, nir.NIRNode] = {"input": nir.Input(input_type=np.array(input_shape))}
    edges = []
    prev = "input"
    for i, m in enumerate(flatten(model)):
        if type(m) not in maps:
            raise ValueError(f"cannot export to NIR: unsupported module {type(m).__module__}.{type(m).__name__} "
                             f"inside {type(model).__name__}; supported: {_SUPPORTED_TEXT}")
        nodes[str(i)] = maps[type(m)](m)
        edges.append((prev, str(i)))
        prev = str(i)
    nodes["output"] = nir.Output(output_type=np.array([0]))  # set by infer_types below
    edges.append((prev, "output"))
    graph = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    last = nodes[prev]
    out_type = getattr(last, "output_type", None)
    if isinstance(out_type, dict) and out_type:
        nodes["output"] = nir.Output(output_type=next(iter(out_type.values())))
        graph = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
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
    import nirtorch

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(sample_input, torch.Tensor) or sample_input.dim() < 2:
        raise ValueError(
            "sample_input must be a tensor of one time step [B, *features] (with a batch dimension), got "
            + (f"shape {list(sample_input.shape)}" if isinstance(sample_input, torch.Tensor)
               else type(sample_input).__name__)
        )
    if not (isinstance(dt, numbers.Real) and dt > 0):
        raise ValueError(f"dt must be a positive float, got {dt!r}")
    shapes: Dict[int, Tuple[int, ...]] = {}
    exporter = _Exporter(shapes, float(dt), bool(allow_lossy))
    maps = _module_maps(exporter)

    # Check every leaf before tracing, so unsupported modules get a clear error.
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

    # Record per-step input shapes on a copy (the model's own state is left untouched).
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

    try:
        graph = _norse_chain(model, maps, tuple(sample_input.shape[1:]))
        if graph is None:
            graph = nirtorch.torch_to_nir(model, maps, default_dict=None, type_check=False,
                                          stateful_modules=set(maps))
    except (KeyError, torch.fx.proxy.TraceError) as err:
        raise ValueError(f"cannot trace the model for NIR export ({err}); supported modules: {_SUPPORTED_TEXT}") \
            from err
    if not isinstance(graph, nir.NIRGraph):  # the model itself is one mapped module
        graph = nir.NIRGraph.from_list(graph)
    graph = _canonical_io_names(graph)
    graph.infer_types()
    meta = {"producer": "snntorch_egru", "egru_spec_version": SPEC_VERSION, "dt": float(dt),
            "producer_version": __version__}
    if metadata:
        bad = [k for k, v in metadata.items() if v is None]
        if bad:
            raise ValueError(f"metadata values must not be None (HDF5 cannot store them), got None for {bad}")
        meta.update(metadata)
    graph.metadata = {**(graph.metadata or {}), **meta}
    return graph


# ---------------------------------------------------------------------------------------------
# Import: step modules and the graph executor
# ---------------------------------------------------------------------------------------------


def _param(a: np.ndarray) -> nn.Parameter:
    return nn.Parameter(torch.as_tensor(np.array(a, dtype=np.float32)), requires_grad=False)


def _state_tensor(state: Any, key: str, like: Tuple[int, ...], where: str) -> torch.Tensor:
    """``state[key]``, checked to be a tensor of exactly the expected shape (no silent broadcast)."""
    if not isinstance(state, dict):
        raise TypeError(f"{where}: state must be a dict with key(s) {key!r}, got {type(state).__name__}")
    if key not in state:
        raise ValueError(f"{where}: state lacks {key!r} (got keys {sorted(state)}); pass state=None to start "
                         "from zeros")
    t = state[key]
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{where}: state[{key!r}] must be a tensor, got {type(t).__name__}")
    if tuple(t.shape) != tuple(like):
        raise ValueError(f"{where}: state[{key!r}] must have shape {list(like)} (batch and features of the input), "
                         f"got {list(t.shape)}; a state is not broadcast across the batch")
    return t


def _check_state_keys(state: Dict[str, Any], expected: Any, where: str) -> None:
    unknown = sorted(set(state) - set(expected))
    if unknown:
        raise ValueError(f"{where}: unknown state key(s) {unknown}; expected {sorted(expected)} (the keys of the "
                         "state this module returned), or state=None to start from zeros")


def _time_constant(name: str, value: Any, where: str) -> np.ndarray:
    tau = np.asarray(value, dtype=np.float64)
    if tau.size == 0 or not np.all(np.isfinite(tau)) or not np.all(tau > 0):
        bad = tau[~(np.isfinite(tau) & (tau > 0))].reshape(-1)[:3].tolist() if tau.size else "an empty array"
        raise ValueError(f"{where}: {name} must be finite and > 0 (a time constant), got {bad}")
    return tau


def _finite(name: str, value: Any, where: str) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{where}: {name} must be finite, got NaN or inf")
    return a


class EGRUStep(nn.Module):
    """One EGRU node as a module: ``forward(x [B, I], state=None) -> (out [B, H], EGRUState)``.

    Calls :func:`snntorch_egru.functional.egru_step` (the package's single
    implementation of the math) with a plain Heaviside.

    Example::

        >>> import numpy as np, torch
        >>> from snntorch_egru.nir import EGRU, EGRUStep
        >>> r = np.random.default_rng(0).standard_normal
        >>> f = lambda *s: r(s).astype(np.float32)
        >>> step = EGRUStep(EGRU(f(6, 3), f(6, 2), f(6), f(6), np.full(2, 0.1, np.float32)))
        >>> y, s = step(torch.randn(4, 3))
        >>> y.shape, s.c.shape
        (torch.Size([4, 2]), torch.Size([4, 2]))
    """

    def __init__(self, node: EGRU) -> None:
        super().__init__()
        for name in _EGRU_FIELDS:
            setattr(self, name, _param(getattr(node, name)))
        self.reset = node.reset
        self.zoneout = node.zoneout
        self.output = node.output
        self.spike_fn = heaviside()

    def forward(self, x: torch.Tensor, state: Optional[EGRUState] = None) -> Tuple[torch.Tensor, EGRUState]:
        H = self.threshold.shape[0]
        if state is None:
            z = x.new_zeros(*x.shape[:-1], H)
            state = EGRUState(z, z, z)
        else:
            if not isinstance(state, EGRUState):
                raise TypeError(f"EGRU step: state must be an EGRUState (or None), got {type(state).__name__}")
            want = tuple(x.shape[:-1]) + (H,)
            for name in ("y", "c", "trace"):
                t = getattr(state, name)
                if not isinstance(t, torch.Tensor) or tuple(t.shape) != want:
                    got = list(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                    raise ValueError(f"EGRU step: state.{name} must have shape {list(want)} (batch of the input, "
                                     f"hidden size), got {got}; a state is not broadcast across the batch")
        s = F.egru_step(x, state.y, state.c, state.trace, self.weight_ih, self.weight_hh, self.bias_ih,
                        self.bias_hh, self.threshold, spike_fn=self.spike_fn, reset=self.reset,
                        zoneout_p=self.zoneout)
        new = EGRUState(s.y, s.c, s.trace)
        return (s.y if self.output == "y" else s.trace), new


class LIFStep(nn.Module):
    """NIR ``LIF`` discretised with forward Euler, as snnTorch does (``dt = 1e-4`` by default).

    ``v = v' + dt/tau (v_leak - v' + r x)``; spike ``s = [v > v_threshold]``; where it
    spikes ``v = v_reset``. State: ``{"v": v}``. With snnTorch's parameters
    (``tau = dt/(1-beta)``, ``r = tau/dt``) this is ``snn.Leaky`` with zero reset.

    Example::

        >>> import numpy as np, nir, torch
        >>> from snntorch_egru.nir import LIFStep
        >>> tau = np.full(2, 1e-4 / (1 - 0.9), np.float32)          # beta = 0.9
        >>> lif = LIFStep(nir.LIF(tau=tau, r=tau / 1e-4, v_leak=np.zeros(2, np.float32),
        ...                       v_threshold=np.ones(2, np.float32)), dt=1e-4)
        >>> s, state = lif(torch.tensor([[0.6, 1.2]]))
        >>> s, state["v"]
        (tensor([[0., 1.]]), tensor([[0.6000, 0.0000]]))
    """

    def __init__(self, node: nir.LIF, dt: float) -> None:
        super().__init__()
        tau = _time_constant("tau", node.tau, "LIF")
        for name in ("r", "v_leak", "v_threshold", "v_reset"):
            _finite(name, getattr(node, name), "LIF")
        self.register_buffer("decay", torch.as_tensor((dt / tau).astype(np.float32)))
        self.register_buffer("gain", torch.as_tensor((np.asarray(node.r) * dt / tau).astype(np.float32)))
        self.register_buffer("v_leak", torch.as_tensor(np.asarray(node.v_leak, dtype=np.float32)))
        self.register_buffer("v_threshold", torch.as_tensor(np.asarray(node.v_threshold, dtype=np.float32)))
        self.register_buffer("v_reset", torch.as_tensor(np.asarray(node.v_reset, dtype=np.float32)))

    def forward(self, x: torch.Tensor, state: Optional[Dict[str, torch.Tensor]] = None):
        if state is None:
            v = torch.zeros_like(x)
        else:
            v = _state_tensor(state, "v", tuple(x.shape), "LIF step")
            _check_state_keys(state, ("v",), "LIF step")
        v = v + self.decay * (self.v_leak - v) + self.gain * x
        s = (v - self.v_threshold > 0).to(x.dtype)
        v = torch.where(s > 0, self.v_reset.expand_as(v), v)
        return s, {"v": v}


class CubaLIFStep(nn.Module):
    """NIR ``CubaLIF`` discretised as snnTorch's ``Synaptic`` (current first, then membrane).

    ``i = i' + dt/tau_syn (w_in x - i')``; ``v = v' + dt/tau_mem (v_leak - v' + r i)``;
    ``s = [v > v_threshold]``; where it spikes ``v = v_reset``. State ``{"i", "v"}``.

    Example::

        >>> import numpy as np, nir, torch
        >>> from snntorch_egru.nir import CubaLIFStep
        >>> ts = np.full(1, 1e-4 / (1 - 0.5), np.float32)           # alpha = 0.5
        >>> tm = np.full(1, 1e-4 / (1 - 0.9), np.float32)           # beta = 0.9
        >>> node = nir.CubaLIF(tau_syn=ts, tau_mem=tm, r=tm / 1e-4, v_leak=np.zeros(1, np.float32),
        ...                    v_threshold=np.ones(1, np.float32), w_in=ts / 1e-4)
        >>> cuba = CubaLIFStep(node, dt=1e-4)
        >>> s, state = cuba(torch.tensor([[0.8]]))
        >>> s, state = cuba(torch.tensor([[0.0]]), state)            # i = 0.4, v = 0.72 + 0.4
        >>> s
        tensor([[1.]])
    """

    def __init__(self, node: nir.CubaLIF, dt: float) -> None:
        super().__init__()
        ts = _time_constant("tau_syn", node.tau_syn, "CubaLIF")
        tm = _time_constant("tau_mem", node.tau_mem, "CubaLIF")
        for name in ("r", "v_leak", "v_threshold", "v_reset", "w_in"):
            _finite(name, getattr(node, name), "CubaLIF")
        f32 = lambda a: torch.as_tensor(np.asarray(a).astype(np.float32))  # noqa: E731
        self.register_buffer("syn_decay", f32(dt / ts))
        self.register_buffer("syn_gain", f32(np.asarray(node.w_in) * dt / ts))
        self.register_buffer("mem_decay", f32(dt / tm))
        self.register_buffer("mem_gain", f32(np.asarray(node.r) * dt / tm))
        self.register_buffer("v_leak", f32(node.v_leak))
        self.register_buffer("v_threshold", f32(node.v_threshold))
        self.register_buffer("v_reset", f32(node.v_reset))

    def forward(self, x: torch.Tensor, state: Optional[Dict[str, torch.Tensor]] = None):
        if state is None:
            state = {"i": torch.zeros_like(x), "v": torch.zeros_like(x)}
        else:
            for key in ("i", "v"):
                _state_tensor(state, key, tuple(x.shape), "CubaLIF step")
            _check_state_keys(state, ("i", "v"), "CubaLIF step")
        i = state["i"] - self.syn_decay * state["i"] + self.syn_gain * x
        v = state["v"] + self.mem_decay * (self.v_leak - state["v"]) + self.mem_gain * i
        s = (v - self.v_threshold > 0).to(x.dtype)
        v = torch.where(s > 0, self.v_reset.expand_as(v), v)
        return s, {"i": i, "v": v}


def _affine(node: nir.NIRNode) -> nn.Module:
    w = np.asarray(node.weight)
    if w.ndim != 2:
        raise ValueError(f"{type(node).__name__} weight must be 2-D [out, in], got shape {list(w.shape)}")
    bias = isinstance(node, nir.Affine)
    m = nn.Linear(w.shape[1], w.shape[0], bias=bias)
    with torch.no_grad():
        m.weight.copy_(torch.as_tensor(w.astype(np.float32)))
        if bias:
            b = np.asarray(node.bias)
            if b.shape != (w.shape[0],):
                raise ValueError(f"Affine bias must have shape [{w.shape[0]}], got {list(b.shape)}")
            m.bias.copy_(torch.as_tensor(b.astype(np.float32)))
    return m


def _conv(node: nir.NIRNode) -> nn.Module:
    w = np.asarray(node.weight)
    cls = nn.Conv1d if isinstance(node, nir.Conv1d) else nn.Conv2d

    def tup(v: Any) -> Any:
        v = np.atleast_1d(v)
        if cls is nn.Conv2d:
            return tuple(int(a) for a in (v if v.size == 2 else np.repeat(v[:1], 2)))
        return int(v[0])

    pad = node.padding
    pad = pad.decode() if isinstance(pad, bytes) else pad
    pad = pad if isinstance(pad, str) else tup(pad)
    m = cls(w.shape[1] * int(node.groups), w.shape[0], w.shape[2:] if cls is nn.Conv2d else w.shape[2],
            stride=tup(node.stride), padding=pad, dilation=tup(node.dilation), groups=int(node.groups), bias=True)
    with torch.no_grad():
        m.weight.copy_(torch.as_tensor(w.astype(np.float32)))
        m.bias.copy_(torch.as_tensor(np.asarray(node.bias).astype(np.float32)))
    return m


def _flatten(node: nir.Flatten) -> nn.Module:
    s, e = int(node.start_dim), int(node.end_dim)
    return nn.Flatten(s + 1 if s >= 0 else s, e + 1 if e >= 0 else e)


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
            raise ValueError(f"{where}: a NIR graph needs exactly one Input and one Output node, "
                             f"got inputs {inputs} and outputs {outputs}")
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
        order, delayed = [], set()
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
                raise ValueError(f"{self.where}: the graph has a cycle without a stateful node (or an "
                                 f"unreachable node) among {sorted(pending)}")
            n = ready[0]
            order.append(n)
            done.add(n)
            pending.remove(n)
        return order, delayed

    def forward(self, x: torch.Tensor, state: Optional[Dict[str, Any]] = None):
        if self.input_shape is not None and tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"{self.where}: input must have shape [B, {', '.join(map(str, self.input_shape))}], "
                             f"got {list(x.shape)}")
        if state is None:
            state = {}
        else:
            if not isinstance(state, dict):
                raise TypeError(f"{self.where}: state must be a dict (as returned by the previous call) or None, "
                                f"got {type(state).__name__}")
            expected = [n for n in self.order if self._stateful(n)] + (["__delayed__"] if self.delayed else [])
            _check_state_keys(state, expected, self.where)
            missing = sorted(set(expected) - set(state))
            if missing:
                raise ValueError(f"{self.where}: state lacks {missing} (a state returned by this module has all of "
                                 f"{sorted(expected)}); pass state=None to start from zeros")
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
                            raise ValueError(f"{self.where}: state['__delayed__'][{s!r}] must have shape "
                                             f"{list(want) if want else '[B, ...]'}, got {got}; a state is not "
                                             "broadcast across the batch")
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


def import_from_nir(
    graph_or_path: Union[nir.NIRNode, str, pathlib.Path], *, dt: float = DEFAULT_DT
) -> NIRStepModule:
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
