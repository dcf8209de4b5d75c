"""Reading and writing NIR files with EGRU nodes, and the opt-in registration in stock NIR."""

from __future__ import annotations

import pathlib
from typing import Any, Dict, Union

import nir  # the third-party NIR package
import numpy as np

from .node import EGRU


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
    from .._io import atomic_write_path

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
