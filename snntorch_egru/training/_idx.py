"""The bounded reader of MNIST's idx files: header first, then at most the declared bytes."""

from __future__ import annotations

import os
from typing import Any, Tuple

import torch

__all__ = ["MAX_IDX_ITEMS", "read_idx"]

_IDX_HINT = "(delete it and fetch it again, or rerun with --download)"

#: the most items an idx file may declare (MNIST: 60000); a larger header is refused before reading
MAX_IDX_ITEMS = 1_000_000


def _idx_header(f: Any, path: str, magic: int, item_dims: Tuple[int, ...]) -> Tuple[int, int]:
    """``(items, header bytes)`` from the header at the start of ``f``, checked against ``magic`` and the shape."""
    import struct

    ndim = 1 + len(item_dims)
    head = 4 + 4 * ndim
    data = f.read(head)
    if len(data) < head:
        raise ValueError(
            f"MNIST file {path!r} is truncated: {len(data)} bytes, shorter than its {head}-byte header {_IDX_HINT}"
        )
    found_magic, *dims = struct.unpack(f">{ndim + 1}I", data)
    if found_magic != magic:
        kind = "an idx file" if path.endswith(".gz") else "an uncompressed idx file"
        raise ValueError(
            f"MNIST file {path!r} is not {kind}: magic number {found_magic:#x}, expected {magic:#x} "
            f"(a gzip file must end in .gz) {_IDX_HINT}"
        )
    if tuple(dims[1:]) != item_dims:
        raise ValueError(f"MNIST file {path!r} holds items of shape {dims[1:]}, expected {list(item_dims)} {_IDX_HINT}")
    if dims[0] == 0:
        raise ValueError(f"MNIST file {path!r} declares 0 items; expected at least one {_IDX_HINT}")
    if dims[0] > MAX_IDX_ITEMS:
        raise ValueError(
            f"MNIST file {path!r} declares {dims[0]} items, more than the {MAX_IDX_ITEMS} an idx file "
            f"of these tasks may hold (MNIST: 60000) {_IDX_HINT}"
        )
    return dims[0], head


def read_idx(path: str, magic: int, item_dims: Tuple[int, ...]) -> torch.Tensor:
    """The ``uint8`` items of an idx file (``.gz``: gzip-compressed) as ``[N, *item_dims]``.

    The header (magic number, item shape, item count) is read and checked first, then at most the
    declared bytes (plus one, to detect trailing data): a damaged or foreign file raises
    :class:`ValueError` naming it and what is wrong, without reading more than it declares. Only
    regular files are read (a FIFO or a device such as ``/dev/zero`` is refused).

    Example::

        >>> import struct, tempfile, os
        >>> from snntorch_egru.training._idx import read_idx
        >>> path = os.path.join(tempfile.mkdtemp(), "labels-idx1-ubyte")
        >>> with open(path, "wb") as f:
        ...     _ = f.write(struct.pack(">II", 2049, 3) + bytes([7, 2, 1]))
        >>> read_idx(path, 2049, ()).tolist()
        [7, 2, 1]
    """
    import gzip
    import stat
    import zlib

    try:
        st = os.stat(path)
    except OSError as err:
        raise ValueError(f"MNIST file {path!r} cannot be read ({err.strerror or err}) {_IDX_HINT}") from err
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(
            f"MNIST file {path!r} is not a regular file (a FIFO, device or socket?); expected an idx file {_IDX_HINT}"
        )
    item = 1
    for d in item_dims:
        item *= d
    gz = path.endswith(".gz")
    try:
        with gzip.open(path, "rb") if gz else open(path, "rb") as f:
            n, head = _idx_header(f, path, magic, item_dims)
            want = n * item
            if not gz and st.st_size != head + want:
                got = st.st_size
            else:
                buf = bytearray(want + 1)
                view, got = memoryview(buf), 0
                while got < want + 1:
                    k = f.readinto(view[got:])
                    if not k:
                        break
                    got += k
                got += head
    except (OSError, EOFError, zlib.error) as err:
        if not gz:
            raise
        raise ValueError(f"MNIST file {path!r} is not a readable gzip file ({err}) {_IDX_HINT}") from err
    if got != head + want:
        size = f"{got} bytes" if got <= head + want else "more bytes"
        raise ValueError(
            f"MNIST file {path!r} is {'truncated' if got < head + want else 'too long'}: {size}, its "
            f"header declares {n} items ({head + want} bytes) {_IDX_HINT}"
        )
    return torch.frombuffer(buf, dtype=torch.uint8, count=want).view((n,) + item_dims)
