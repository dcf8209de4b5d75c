"""Atomic file writes: a temporary file in the destination's folder, flushed to disk, then renamed.

A reader (or a later run) sees either the previous complete file or the new complete file,
never a truncated one, whatever happens during the write (exception, Ctrl-C, SIGKILL, power
loss after the rename is flushed). Temporary files are named ``.<name>.<random>.tmp`` in the
destination's folder; a killed write can leave one behind, :func:`remove_stale_temporaries`
deletes them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from typing import IO, Any, Callable, Iterator, Union

__all__ = ["atomic_open", "atomic_write_path", "atomic_write_bytes", "atomic_write_text", "fsync_dir",
           "remove_stale_temporaries", "remove_durably", "describe_os_error"]

PathLike = Union[str, "os.PathLike[str]"]


def fsync_dir(folder: PathLike) -> None:
    """Flush a folder's entries (a rename or unlink in it) to disk; a no-op where unsupported."""
    try:
        fd = os.open(os.fspath(folder) or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _tmp_name(path: str) -> str:
    folder, name = os.path.split(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    except OSError as err:  # name the user's file, not the hidden temporary one
        raise type(err)(err.errno, err.strerror, path) from None
    os.close(fd)
    return tmp


def _commit(tmp: str, path: str) -> None:
    try:
        os.replace(tmp, path)
    except OSError as err:
        raise type(err)(err.errno, err.strerror, path) from None
    fsync_dir(os.path.dirname(os.path.abspath(path)))


@contextlib.contextmanager
def atomic_write_path(path: PathLike) -> Iterator[str]:
    """Context manager yielding a temporary path to write (by any library); on success the file is
    fsynced and renamed to ``path``, on any exception it is deleted and ``path`` is left untouched.

    Example::

        >>> import os, tempfile
        >>> from snntorch_egru._io import atomic_write_path
        >>> path = os.path.join(tempfile.mkdtemp(), "a.txt")
        >>> with atomic_write_path(path) as tmp:
        ...     _ = open(tmp, "w").write("hello")
        >>> open(path).read()
        'hello'
    """
    path = os.fspath(path)
    tmp = _tmp_name(path)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        _commit(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """``open(path, mode)`` replacement (modes ``"w"`` / ``"wb"``) that replaces ``path`` atomically on close."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open mode must be 'w' or 'wb', got {mode!r}")
    with atomic_write_path(path) as tmp:
        with open(tmp, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: PathLike, text: str, encoding: str = "utf-8") -> None:
    """Replace ``path`` with ``text`` atomically."""
    with atomic_open(path, "w", encoding=encoding) as f:
        f.write(text)


def atomic_save(path: PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(file_object)`` on a binary temporary file, then replace ``path`` atomically."""
    with atomic_open(path, "wb") as f:
        write(f)


def remove_durably(path: PathLike) -> bool:
    """Delete ``path`` (if present) and flush the folder entry; returns whether a file was removed."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    fsync_dir(os.path.dirname(os.path.abspath(os.fspath(path))))
    return True


def remove_stale_temporaries(folder: PathLike, names: Any) -> int:
    """Delete temporaries ``.<name>.*.tmp`` left in ``folder`` by killed writes of the given file names."""
    removed = 0
    try:
        entries = os.listdir(folder)
    except OSError:
        return 0
    for entry in entries:
        if entry.endswith(".tmp") and any(entry.startswith(f".{n}.") for n in names):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, entry))
                removed += 1
    return removed


def describe_os_error(err: OSError, path: Any = None) -> str:
    """One line for an ``OSError`` of a write: the file, what failed and why (disk full, permission...)."""
    where = path if path is not None else (err.filename or "a file")
    reason = err.strerror or str(err)
    if err.errno == errno.ENOSPC:
        reason = "no space left on device (disk full)"
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason = f"not writable ({err.strerror or 'permission denied'})"
    return f"cannot write {str(where)!r}: {reason}"
