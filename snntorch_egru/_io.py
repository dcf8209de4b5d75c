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

__all__ = [
    "atomic_open",
    "atomic_write_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "fsync_dir",
    "remove_stale_temporaries",
    "remove_durably",
    "describe_os_error",
    "atomic_save",
    "folder_lock",
]

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
    except OSError as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if err.filename is None or err.filename == tmp:  # name the file being written, not the temporary
            raise OSError(err.errno, err.strerror or str(err), path) from err
        raise
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


def _write_failure(err: RuntimeError, path: str) -> OSError:
    """An OSError naming ``path`` for a serialiser's RuntimeError (``torch.save`` reports a full disk as
    ``RuntimeError: ... file write failed``): ENOSPC when the folder's device has no room left."""
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(path)))
        full = st.f_bavail * st.f_frsize < (1 << 20)
    except (OSError, AttributeError):
        full = False
    if full:
        return OSError(errno.ENOSPC, "No space left on device", path)
    return OSError(errno.EIO, f"write failed ({' '.join(str(err).split())[:200]})", path)


def atomic_save(path: PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(file_object)`` on a binary temporary file, then replace ``path`` atomically.

    A failure of the write (full disk, ...) raises :class:`OSError` naming ``path``; the previous file is
    kept.

    Example::

        >>> import os, tempfile
        >>> from snntorch_egru._io import atomic_save
        >>> path = os.path.join(tempfile.mkdtemp(), "a.bin")
        >>> atomic_save(path, lambda f: f.write(b"xy"))
        >>> open(path, "rb").read()
        b'xy'
    """
    path = os.fspath(path)
    try:
        with atomic_open(path, "wb") as f:
            write(f)
    except RuntimeError as err:
        raise _write_failure(err, path) from err


#: locks held by this process: real path of the folder -> (file object, depth)
_HELD: dict = {}


@contextlib.contextmanager
def folder_lock(folder: PathLike, owner: str = "another process", flag: str = "the folder") -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (``fcntl.flock`` on ``folder/.lock``) while the block runs.

    A second process asking for the same folder gets :class:`ValueError` naming the folder and the process
    holding it (its pid, written into the lock file); the lock is released when the block ends or the process
    dies. Re-entrant within one process. Where ``fcntl`` is missing (Windows) or the file system has no locks,
    nothing is locked.

    Example::

        >>> import tempfile
        >>> from snntorch_egru._io import folder_lock
        >>> d = tempfile.mkdtemp()
        >>> with folder_lock(d):
        ...     with folder_lock(d):  # the same process may enter again
        ...         pass
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    key = os.path.realpath(os.fspath(folder))
    if key in _HELD:
        f, depth = _HELD[key]
        _HELD[key] = (f, depth + 1)
        try:
            yield
        finally:
            f, depth = _HELD[key]
            _HELD[key] = (f, depth - 1)
        return
    lock_path = os.path.join(key, ".lock")
    f = open(lock_path, "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        f.seek(0)
        other = f.read().strip()[:200]
        f.close()
        if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):  # a file system without locks
            yield
            return
        who = f"{owner} ({other})" if other else owner
        raise ValueError(
            f"{flag} {os.fspath(folder)!r} is in use by {who}: two runs in one folder would "
            "overwrite each other's files; wait for it to finish or use another folder"
        ) from None
    try:
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}\n")
        f.flush()
        _HELD[key] = (f, 1)
        yield
    finally:
        _HELD.pop(key, None)
        f.close()  # releases the lock


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
