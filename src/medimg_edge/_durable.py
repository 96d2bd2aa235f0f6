"""Crash-safe file operations shared by the watch-folder daemon and the batch engine:
atomic writes, moves and folder creation (the one durable-write module).

Every file is written to a temporary name in the destination folder (``.medimg-tmp-*``
by default; the caller may choose the prefix), flushed with ``fsync``, renamed over the
final name and the folder is ``fsync``-ed, so that after a power loss a file either exists
complete or not at all.  Files are created ``0600`` (outputs may hold patient data) unless
the caller asks for another mode, folders ``0700``.  Temporary names left by a crash are
removed by :func:`clean_temp_files`.
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "TEMP_PREFIX",
    "FileChangedError",
    "atomic_write",
    "atomic_write_many",
    "clean_temp_files",
    "ensure_dir",
    "fsync_dir",
    "move_file",
    "move_many",
    "signature",
]

TEMP_PREFIX = ".medimg-tmp-"

#: ``(size, mtime_ns, dev, ino)`` of a file (``lstat``): what identifies an unchanged file.
Signature = tuple[int, int, int, int]


class FileChangedError(OSError):
    """A move with an expected signature found the file changed (a writer still had it
    open): it was not moved, or was put back where it was (:attr:`back_at`)."""

    def __init__(self, back_at: Path) -> None:
        super().__init__(errno.EAGAIN, "the file changed while it was moved")
        self.back_at = back_at


def signature(path: Path) -> Signature:
    """``(size, mtime_ns, dev, ino)`` of ``path`` itself (``lstat``)."""
    st = os.lstat(path)
    return (st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino)


def fsync_dir(path: Path, *, best_effort: bool = False) -> None:
    """``fsync`` a folder so that renames and creations in it are durable
    (``best_effort``: where the platform allows, errors ignored)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        if not best_effort:
            raise


def ensure_dir(path: Path) -> None:
    """Create ``path`` (and parents) with mode ``0700`` if it is missing."""
    if not path.is_dir():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        fsync_dir(path.parent)


def _temp_name(folder: Path, prefix: str = TEMP_PREFIX) -> Path:
    return folder / f"{prefix}{os.getpid()}-{secrets.token_hex(6)}"


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600, prefix: str = TEMP_PREFIX) -> None:
    """Write ``data`` to ``path`` atomically (temp + fsync + rename + fsync folder); an
    existing file of that name is replaced.

    Parameters
    ----------
    path : Path
    data : bytes
    mode : int
        Permission bits of the new file: ``0o600`` (default) exactly, other modes less
        the umask.
    prefix : str
        Start of the temporary file's name (so that a killed process's leftovers can be
        recognised and removed).
    """
    atomic_write_many([(path, data)], mode=mode, prefix=prefix)


def atomic_write_many(
    items: list[tuple[Path, bytes]], *, mode: int = 0o600, prefix: str = TEMP_PREFIX
) -> None:
    """:func:`atomic_write` for many files with one ``fsync`` per folder: every file is
    written to a temporary name and flushed, then all are renamed (in the given order),
    then each folder is flushed once.  After a crash each file is complete or absent."""
    temps: list[tuple[Path, Path]] = []
    try:
        for path, data in items:
            temps.append((_write_temp(path.parent, data, mode, prefix), path))
        for tmp, path in temps:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
        raise
    for folder in dict.fromkeys(path.parent for path, _ in items):
        fsync_dir(folder)


def _write_temp(folder: Path, data: bytes, mode: int, prefix: str) -> Path:
    tmp = _temp_name(folder, prefix)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        if mode == 0o600:
            os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    return tmp


def move_many(
    pairs: list[tuple[Path, Path]], expect: Sequence[Signature | None] | None = None
) -> list[OSError | None]:
    """:func:`move_file` for many files with one ``fsync`` per folder; returns, per pair,
    ``None`` (moved) or the error (``FileNotFoundError``: the source was gone;
    :class:`FileChangedError`: it differs from its ``expect`` signature)."""
    errors: list[OSError | None] = []
    folders: dict[Path, None] = {}
    for (src, dst), sig in zip(pairs, expect or [None] * len(pairs), strict=True):
        try:
            _move_no_sync(src, dst, sig)
        except FileChangedError as exc:
            errors.append(exc)
            folders[dst.parent] = folders[src.parent] = None
            continue
        except OSError as exc:
            errors.append(exc)
            continue
        errors.append(None)
        folders[dst.parent] = None
        folders[src.parent] = None
    for folder in folders:
        fsync_dir(folder)
    return errors


def move_file(src: Path, dst: Path, expect: Signature | None = None) -> None:
    """Move ``src`` to ``dst`` durably: a rename when both are on one file system, else
    copy to a temporary name in ``dst``'s folder + fsync + rename, then unlink ``src``.
    Symbolic links and other non-regular files are moved as they are (never followed).

    With ``expect`` (the file's :func:`signature` when it was read) the move happens only
    if the file is unchanged: checked before the move, and after it (a rename: a writer
    that still had the file open may have written meanwhile; such a file is put back) or
    before the source is unlinked (a copy).  Otherwise :class:`FileChangedError`.
    """
    try:
        _move_no_sync(src, dst, expect)
    except FileChangedError:
        fsync_dir(dst.parent)
        fsync_dir(src.parent)
        raise
    fsync_dir(dst.parent)
    fsync_dir(src.parent)


def _move_no_sync(src: Path, dst: Path, expect: Signature | None = None) -> None:
    """Rename ``src`` to ``dst``, or copy across file systems then unlink ``src`` (see
    :func:`move_file` for ``expect``); the folders are not synced (the caller does)."""
    if expect is not None and signature(src) != expect:
        raise FileChangedError(src)
    try:
        os.replace(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        _copy_across(src, dst)
        if expect is not None and signature(src) != expect:
            os.unlink(dst)
            raise FileChangedError(src) from None
        os.unlink(src)
        return
    if expect is not None and signature(dst) != expect:
        raise FileChangedError(_put_back(dst, src))


def _put_back(moved: Path, src: Path) -> Path:
    """Move ``moved`` back to ``src`` without replacing a file that took its name
    meanwhile (then beside it, under a name with a random tag); returns where it went."""
    target = src
    for _ in range(8):
        try:
            os.link(moved, target)
        except FileExistsError:
            target = src.with_name(f"{src.stem}-{secrets.token_hex(3)}{src.suffix}")
            continue
        except OSError:  # no hard links here: a rename (a name taken meanwhile is rare)
            if os.path.lexists(target):
                target = src.with_name(f"{src.stem}-{secrets.token_hex(3)}{src.suffix}")
                continue
            os.rename(moved, target)
            return target
        os.unlink(moved)
        return target
    raise FileExistsError(errno.EEXIST, "no free name to put the file back")


def _copy_across(src: Path, dst: Path) -> None:
    """Copy ``src`` to a temporary name beside ``dst``, flush, rename over ``dst``; the
    temporary file is removed on every error (e.g. the destination disk is full)."""
    tmp = _temp_name(dst.parent)
    try:
        if src.is_symlink():
            os.symlink(os.readlink(src), tmp)
            os.replace(tmp, dst)
            return
        fd_in = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            fd_out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                while True:
                    chunk = os.read(fd_in, 1 << 20)
                    if not chunk:
                        break
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd_out, view) :]
                os.fsync(fd_out)
            finally:
                os.close(fd_out)
        finally:
            os.close(fd_in)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def clean_temp_files(*folders: Path, prefix: str = TEMP_PREFIX) -> int:
    """Remove temporary files a crash left in ``folders``; returns how many."""
    removed = 0
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry.name.startswith(prefix):
                try:
                    os.unlink(entry.path)
                    removed += 1
                except FileNotFoundError:
                    pass
        if removed:
            fsync_dir(folder)
    return removed
