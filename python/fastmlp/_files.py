"""Files the library writes: atomically, so a crash never leaves a half-written one."""
from __future__ import annotations

import errno
import os
import uuid
from typing import Callable, IO


def write_atomically(path: str, write: Callable[[IO[bytes]], None]) -> None:
    """``write(file)`` into a new file in path's directory, flush and fsync it, rename it
    onto ``path`` (os.replace: readers see the old file or the whole new one) and fsync
    the directory; on any error the new file is removed and ``path`` is untouched.
    FileNotFoundError naming the folder when path's folder does not exist."""
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "cannot write a file over a directory", path)
    directory = os.path.dirname(os.path.abspath(path))
    check_folder_exists(path)
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                         | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(descriptor, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


def check_folder_exists(path: str) -> None:
    """FileNotFoundError, naming the folder and ``path``, when the folder ``path`` would
    be written into does not exist (the library never creates it behind your back)."""
    folder = os.path.dirname(path)
    if folder and not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path!r}: the folder {folder!r} does not "
                                "exist; create it first (e.g. os.makedirs)")


def _fsync_directory(directory: str) -> None:
    """Make the rename durable (POSIX; Windows cannot open a directory)."""
    if os.name != "posix":
        return
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def check_path(path) -> str:
    """``path`` (str or os.PathLike) as a str; TypeError otherwise."""
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str):
        raise TypeError(f"path must be a str or os.PathLike (e.g. pathlib.Path); got "
                        f"{path!r:.60} of type {type(path).__name__}")
    return path
