"""Reading and writing NIR files with EGRU nodes, and the opt-in registration in stock NIR."""

from __future__ import annotations

import os
import pathlib
import re
from typing import Any, Dict, Tuple, Union

import nir  # the third-party NIR package
import numpy as np

from .. import functional as F
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
#: Default limit on the number of HDF5 objects (groups and datasets) in a NIR file, checked while the
#: structure is walked, before any array is read (an EGRU node is 12 objects, a stock node 3 to 10).
#: Override with ``read(..., max_objects=...)``.
DEFAULT_MAX_READ_OBJECTS = 10_000
_MAX_DEPTH = 64  # nesting of groups (graphs in graphs, metadata dicts)
_MAX_CHUNKS = 1 << 17  # HDF5 chunks over all datasets: reading each costs ~10 us even when it is empty
_FILE_SLACK = 64 << 20  # file bytes allowed beyond max_bytes (HDF5 object headers, B-trees, string heaps)


class _Pending:
    """An array dataset found by the structure walk, read only after every declared size and shape passed."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self.shape = tuple(int(d) for d in (dataset.shape or ()))
        self.dtype = dataset.dtype

    def placeholder(self) -> np.ndarray:
        """A zero-memory array of the declared shape and dtype (for checks before reading)."""
        dt = self.dtype.newbyteorder("=") if self.dtype.kind in "biuf" else self.dtype
        return np.broadcast_to(np.zeros((), dtype=dt), self.shape)

    def read(self) -> Any:
        dt = self.dtype
        if dt.kind in "biuf" and not dt.isnative:  # e.g. big-endian float32: converted while reading
            return self.dataset.astype(dt.newbyteorder("="))[()]
        return self.dataset[()]


def _check_link(g: Any, key: str, name: str, path: str) -> None:
    import h5py

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


def _dataset_budget(item: Any, name: str, path: str, budget: Dict[str, int], max_bytes: int) -> None:
    if item.external:
        raise ValueError(
            f"NIR file {path!r}: dataset {name!r} keeps its data in external file(s) "
            f"{[e[0] for e in item.external]}; refused (a NIR file must be self-contained)"
        )
    if item.is_virtual:
        raise ValueError(f"NIR file {path!r}: dataset {name!r} is an HDF5 virtual dataset mapping other files; refused")
    shape = tuple(int(d) for d in (item.shape or ()))
    n = 1
    for d in shape:
        n *= d
    budget["bytes"] += n * max(int(item.dtype.itemsize), 1)
    if budget["bytes"] > max_bytes:
        raise ValueError(
            f"NIR file {path!r} declares more than max_bytes={max_bytes} bytes of data (dataset {name!r} "
            f"has shape {list(shape)} of {item.dtype}, {budget['bytes']} bytes so far); refused before "
            "reading. Pass a larger max_bytes to snntorch_egru.nir.read if the file is trusted"
        )
    if item.chunks is not None:
        chunks = 1
        for d, c in zip(shape, item.chunks):
            chunks *= -(-d // max(int(c), 1))
        budget["chunks"] += chunks
        if budget["chunks"] > _MAX_CHUNKS:
            raise ValueError(
                f"NIR file {path!r} splits its data into more than {_MAX_CHUNKS} HDF5 chunks (dataset {name!r} "
                f"of shape {list(shape)} has chunks of {list(item.chunks)}); refused before reading (nir.write "
                "stores each array in a few large chunks; rewrite the file with snntorch_egru.nir.write)"
            )


def _walk_structure(group: Any, path: str, max_bytes: int, max_objects: int) -> Dict[str, Any]:
    """The file's tree with scalars read and arrays left as :class:`_Pending`; every limit is checked here:
    hard links only (no soft or external links), each object linked once, no external or virtual dataset
    storage, bounded nesting, objects, chunks and declared bytes."""
    import h5py

    budget = {"bytes": 0, "objects": 0, "chunks": 0}

    def walk(g: Any, where: str, depth: int) -> Dict[str, Any]:
        if depth > _MAX_DEPTH:
            raise ValueError(f"NIR file {path!r}: groups nested deeper than {_MAX_DEPTH} levels at {where!r}")
        out: Dict[str, Any] = {}
        for key in g.keys():
            name = f"{where}/{key}"
            budget["objects"] += 1
            if budget["objects"] > max_objects:
                raise ValueError(
                    f"NIR file {path!r} holds more than max_objects={max_objects} HDF5 objects (groups and "
                    "datasets); refused. Pass a larger max_objects to snntorch_egru.nir.read if the file is trusted"
                )
            _check_link(g, key, name, path)
            item = g.get(key)
            links = h5py.h5o.get_info(item.id).rc
            if links != 1:  # nir.write links every object once; shared objects multiply the walk
                raise ValueError(
                    f"NIR file {path!r}: {name!r} is linked {links} times in the file (a shared HDF5 object); "
                    "refused (NIR files link each group and dataset once)"
                )
            k = nir.serialization.try_byte_to_str(key)
            if isinstance(item, h5py.Group):
                out[k] = walk(item, name, depth + 1)
            elif isinstance(item, h5py.Dataset):
                _dataset_budget(item, name, path, budget, max_bytes)
                pending = _Pending(item)
                out[k] = _read_scalar(pending, name, path, budget, max_bytes) if pending.shape == () else pending
            else:
                raise ValueError(f"NIR file {path!r}: {name!r} is neither a group nor a dataset")
        return out

    return walk(group, "node", 0)


def _read_scalar(pending: _Pending, name: str, path: str, budget: Dict[str, int], max_bytes: int) -> Any:
    value = nir.serialization.try_byte_to_str(pending.read())
    if isinstance(value, (str, bytes)):  # variable-length strings: their size is known only now
        budget["bytes"] += len(value)
        if budget["bytes"] > max_bytes:
            raise ValueError(f"NIR file {path!r} holds more than max_bytes={max_bytes} bytes (string {name!r})")
    return value


def _precheck(tree: Any, where: str) -> None:
    """Validate every EGRU node from its declared shapes and dtypes (zero-memory placeholders), so a node
    that would be refused is refused before its arrays are read."""
    if not isinstance(tree, dict):
        return
    kind = tree.get("type")
    if kind == "EGRU":
        tensors: Dict[str, Any] = {k: tree.get(k) for k in F.LAYER_TENSOR_NAMES}
        if all(isinstance(v, _Pending) for v in tensors.values()):  # other fields are checked when built
            try:
                EGRU(**{k: v.placeholder() for k, v in tensors.items()})
            except (ValueError, TypeError) as err:
                raise type(err)(f"node {where!r}: {err}") from err
        return
    for name, sub in (tree.get("nodes") or {}).items() if kind == "NIRGraph" else ():
        _precheck(sub, f"{where}/{name}")


def _load(tree: Any) -> Any:
    if isinstance(tree, _Pending):
        return nir.serialization.try_byte_to_str(tree.read())
    if isinstance(tree, dict):
        return {k: _load(v) for k, v in tree.items()}
    return tree


def _parse_version(text: str) -> Tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", text)
    if m is None:
        raise ValueError(text)
    return int(m.group(1)), int(m.group(2))


def _check_file_version(f: Any, path: str) -> str:
    """The NIR version ``nir.write`` stores at the file's root: present, a version string, not newer than
    the installed ``nir`` (major.minor)."""
    import h5py

    here = str(nir.version)
    if "version" not in f:
        raise ValueError(
            f"NIR file {path!r} has no 'version' entry (expected the NIR version string nir.write stores, "
            f"such as {here!r}; got none): not a file written by nir.write / snntorch_egru.nir.write"
        )
    item = f.get("version")
    if (
        not isinstance(f.get("version", getlink=True), h5py.HardLink)
        or not isinstance(item, h5py.Dataset)
        or item.shape != ()
        or item.dtype.kind not in "OSU"
    ):
        raise ValueError(f"NIR file {path!r}: 'version' must be a scalar string dataset (expected e.g. {here!r})")
    raw = nir.serialization.try_byte_to_str(item[()])
    text = raw.decode("utf8", "replace") if isinstance(raw, bytes) else str(raw)
    try:
        got = _parse_version(text)
    except ValueError:
        raise ValueError(
            f"NIR file {path!r}: 'version' must be a NIR version such as {here!r}, got {text[:40]!r}"
        ) from None
    if got > _parse_version(here):
        raise ValueError(
            f"NIR file {path!r} was written by NIR version {text[:40]!r}, newer than the installed nir {here!r} "
            f"(this reader reads files up to version {'.'.join(map(str, _parse_version(here)))}.x); "
            "upgrade nir (pip install -U nir) and snntorch-egru to read it"
        )
    return text


def read(
    path: Union[str, pathlib.Path],
    type_check: bool = True,
    max_bytes: int = DEFAULT_MAX_READ_BYTES,
    max_objects: int = DEFAULT_MAX_READ_OBJECTS,
) -> nir.NIRGraph:
    """Read a NIR HDF5 file that may contain :class:`EGRU` nodes.

    Uses NIR's own HDF5 layout (``nir.serialization.hdf2dict``) and rebuilds every
    node: EGRU nodes here, stock nodes through ``nir.dict2NIRNode``, graphs
    (nested ones included) as ``nir.NIRGraph``. No registration is needed.

    The file is read in two passes: the structure first (links, object count, the declared
    shapes, dtypes and bytes of every dataset, and the fields of every EGRU node), then the arrays,
    so a file that breaks a limit or holds an invalid EGRU node is refused before its data is read.
    Arrays stored in the other byte order (e.g. big-endian float32) are converted to native order.

    Args:
        path: file written by :func:`write` or ``nir.write``.
        type_check: check that connected node types match (as ``nir.read``).
        max_bytes: refuse a file whose datasets declare more bytes than this in total (from their
            shapes and dtypes, before any data is read). Default: :data:`DEFAULT_MAX_READ_BYTES` (1 GiB).
        max_objects: refuse a file with more HDF5 groups and datasets than this.
            Default: :data:`DEFAULT_MAX_READ_OBJECTS` (10 000).

    Returns:
        the stored node, usually a ``nir.NIRGraph``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an HDF5/NIR file, no or an unreadable root ``version`` or one newer than the
            installed ``nir``, unknown node types, invalid EGRU fields, more data than ``max_bytes``
            or objects than ``max_objects``, or HDF5 features a NIR file does not need and that could
            reach outside it or multiply the work (external links, soft links, objects linked twice,
            external or virtual dataset storage, very many chunks).

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

    for name, value in (("max_bytes", max_bytes), ("max_objects", max_objects)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"NIR file {str(path)!r} does not exist")
    size = os.path.getsize(path)
    if size > max_bytes + _FILE_SLACK:
        raise ValueError(
            f"NIR file {str(path)!r} is {size} bytes on disk, more than max_bytes={max_bytes} (+ {_FILE_SLACK} "
            "bytes of HDF5 structure); refused. Pass a larger max_bytes to snntorch_egru.nir.read if it is trusted"
        )
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
            _check_file_version(f, str(path))
            tree = _walk_structure(f["node"], str(path), max_bytes, max_objects)
            _precheck(tree, "node")
            data = _load(tree)
        except (ValueError, TypeError):
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
        try:
            nir.write(tmp, graph, compression=compression)
        except OSError as err:  # h5py names the hidden temporary file: name the user's path
            where = os.fspath(path)
            reason = (err.strerror or str(err)).replace(tmp, where)
            if err.errno is None:
                raise OSError(f"cannot write NIR file {where!r}: {reason}") from None
            raise OSError(err.errno, reason, where) from None


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
    nir.ir.EGRU = EGRU
    if "EGRU" not in registry:
        registry.append("EGRU")
