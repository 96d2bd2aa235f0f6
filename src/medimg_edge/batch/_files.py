"""Small file helpers of the batch engine: atomic, durable writes."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["fsync_dir", "write_atomic"]


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename in it) to disk, where the platform allows."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: Path, data: bytes, *, mode: int = 0o666, prefix: str = ".tmp-") -> None:
    """Write ``data`` to ``path`` atomically: a new temporary file beside it (created
    with ``mode``, less the umask; ``0o600`` is then enforced exactly), fsync, rename over
    ``path``, fsync of the folder.  Readers see the old content or the new, never a part.

    Parameters
    ----------
    path : Path
    data : bytes
    mode : int
        Permission bits of the new file (``0o600``: only the owner may read it).
    prefix : str
        Start of the temporary file's name (so that leftovers of a killed process can
        be recognised and removed).
    """
    tmp = path.with_name(f"{prefix}{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        try:
            if mode == 0o600:
                os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)
