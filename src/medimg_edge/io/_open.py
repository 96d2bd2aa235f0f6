"""The safe-file layer every reader and client opens inputs through: regular files only
(never a FIFO or device, opened without blocking), size limits, format sniffing, hashing,
the decompression-bomb rule, and :func:`quiet_dicom` (library messages quote tag values).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import stat
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy.typing as npt

from .._errors import InvalidInputError
from .._validation import MAX_PIXELS, MAX_SIDE, widen_integer

__all__ = [
    "BOMB_MIN_BYTES",
    "BOMB_RATIO",
    "DICOM_MAGIC_OFFSET",
    "HEAD_BYTES",
    "MAX_FILE_BYTES",
    "ClampedReader",
    "OpenFile",
    "as_supported",
    "check_bomb",
    "check_size",
    "fail",
    "open_regular",
    "quiet_dicom",
    "sha256_of",
    "sniff_format",
]
#: Largest input file read (2 GiB).
MAX_FILE_BYTES = 1 << 31
#: A raster (PNG/JPEG/TIFF) or deflated DICOM whose decoded size is larger than
#: ``BOMB_RATIO`` times its file size *and* larger than :data:`BOMB_MIN_BYTES` is refused
#: as a decompression bomb.  Real images above 64 MiB decoded compress 2-10:1; only
#: (near-)blank pictures reach 100:1 (deflate's ceiling is 1032:1).
BOMB_RATIO = 100
#: Decoded sizes up to this many bytes (64 MiB) are always allowed.
BOMB_MIN_BYTES = 64 << 20

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_NPY_MAGIC = b"\x93NUMPY"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*")
_JPEG_MAGIC = b"\xff\xd8\xff"
#: First bytes read of every file (format sniffing, raster headers).
HEAD_BYTES = 1 << 16
DICOM_MAGIC_OFFSET = 128


class _QuietFilter(logging.Filter):
    """Drops pydicom / highdicom log records emitted inside :func:`quiet_dicom` (their
    warnings quote tag values, i.e. patient data)."""

    local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self.local, "depth", 0)


_QUIET = _QuietFilter()
for _logger_name in ("pydicom", "highdicom"):
    logging.getLogger(_logger_name).addFilter(_QUIET)


@contextlib.contextmanager
def quiet_dicom() -> Iterator[None]:
    """Silence pydicom's and highdicom's warnings and log records in this block.

    Their messages quote element values ("Invalid value for VR DA: '...'"), which may be
    patient data, so none of them may reach a log.  Log records are dropped only for the
    calling thread; Python warnings are suppressed with :func:`warnings.catch_warnings`.
    """
    _QuietFilter.local.depth = getattr(_QuietFilter.local, "depth", 0) + 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        _QuietFilter.local.depth -= 1


def fail(name: str, what: str, code: str = "invalid_input") -> InvalidInputError:
    """``InvalidInputError("<name>: <what>", code=code)`` (``name``: a file name or label)."""
    return InvalidInputError(f"{name}: {what}", code=code)


def sniff_format(head: bytes, path: str | os.PathLike[str] | None = None) -> str | None:
    """The format of a file from its first bytes (132 suffice), else from its suffix.

    Returns ``"dicom"`` (``DICM`` at byte 128: checked first, as the free-form preamble
    may itself look like a TIFF), ``"png"``, ``"jpeg"``, ``"tiff"``, ``"npy"``; a file
    without a known signature is ``"dicom"`` when ``path`` ends in ``.dcm`` / ``.dicom``
    (DICOM without the preamble); otherwise None.
    """
    if head[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] == b"DICM":
        return "dicom"
    if head.startswith(_PNG_MAGIC):
        return "png"
    if head.startswith(_JPEG_MAGIC):
        return "jpeg"
    if head.startswith(_TIFF_MAGICS):
        return "tiff"
    if head.startswith(_NPY_MAGIC):
        return "npy"
    if path is not None and Path(path).suffix.lower() in (".dcm", ".dicom"):
        return "dicom"
    return None


def check_size(name: str, rows: int, cols: int, frames: int = 1) -> None:
    """Refuse a declared image size beyond the package's limits (``too_large``)."""
    if rows <= 0 or cols <= 0:
        raise fail(name, f"invalid image size {rows}x{cols} in the header", "bad_header")
    if rows > MAX_SIDE or cols > MAX_SIDE or rows * cols * max(frames, 1) > MAX_PIXELS:
        raise fail(
            name,
            f"image of {rows}x{cols} pixels"
            + (f" x {frames} frames" if frames > 1 else "")
            + f" is beyond the limits of {MAX_SIDE} pixels per side and {MAX_PIXELS} "
            "pixels in all",
            "too_large",
        )


def check_bomb(name: str, decoded_bytes: int, file_bytes: int) -> None:
    """Refuse a decoded size impossible for a file that small (:data:`BOMB_RATIO`)."""
    if decoded_bytes > BOMB_MIN_BYTES and decoded_bytes > BOMB_RATIO * max(file_bytes, 1):
        raise fail(
            name,
            f"the header declares {decoded_bytes} decoded bytes from a file of {file_bytes} "
            f"bytes (more than {BOMB_RATIO}:1); refused as a decompression bomb",
            "decompression_bomb",
        )


@dataclasses.dataclass
class OpenFile:
    """An open regular file (:func:`open_regular`): its descriptor-backed handle, size,
    first bytes and format (:func:`sniff_format`; None only with ``image=False``).  A
    context manager that closes the handle."""

    fh: BinaryIO
    size: int
    head: bytes
    kind: str | None

    def close(self) -> None:
        """Close the file."""
        self.fh.close()

    def __enter__(self) -> OpenFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.fh.close()


class ClampedReader:
    """A read-only file view whose ``read(n)`` never asks for more than what is left.

    ``BufferedReader.read(n)`` allocates ``n`` bytes before reading, so an element that
    declares a 4 GB length would make pydicom allocate 4 GB even at the end of a 2 kB
    file; through this view it gets what the file holds.  It has no ``name``: pydicom
    never sees the path.
    """

    def __init__(self, fh: BinaryIO, size: int) -> None:
        self._fh = fh
        self._size = size

    def read(self, n: int | None = -1) -> bytes:
        left = max(0, self._size - self._fh.tell())
        if n is None or n < 0 or n > left:
            n = left
        return self._fh.read(n)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def close(self) -> None:
        """The underlying file is closed by its owner."""

    @property
    def closed(self) -> bool:
        return self._fh.closed


def open_regular(
    path: str | os.PathLike[str],
    name: str | None = None,
    max_bytes: int = MAX_FILE_BYTES,
    *,
    image: bool = True,
) -> OpenFile:
    """Open ``path`` for reading, safely: without blocking (a FIFO never hangs the
    caller), regular files only (checked with ``fstat`` on the open descriptor, so a
    swapped path cannot slip through), at most ``max_bytes``.

    Parameters
    ----------
    path : path-like
    name : str, optional
        Names the file in error messages (default its file name: never its folder).
    max_bytes : int
        Largest accepted size (``too_large`` beyond).
    image : bool
        Also refuse empty files (``empty``) and files of no known format
        (``unsupported_format``); ``False`` opens any regular file (to hash it).

    Returns
    -------
    OpenFile
        The caller closes it (or uses it as a context manager).

    Raises
    ------
    InvalidInputError
        ``no_such_file``, ``unreadable`` (directory, FIFO, socket, device, permission),
        ``empty``, ``too_large``, ``unsupported_format``.
    """
    path = Path(path)
    if name is None:
        name = path.name or "input"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise fail(name, "no such file", "no_such_file") from None
    except IsADirectoryError:
        raise fail(name, "no such file (the path is a directory)", "unreadable") from None
    except OSError as exc:
        raise fail(name, f"cannot open the file ({type(exc).__name__})", "unreadable") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise fail(name, "no such file (the path is a directory)", "unreadable")
        if not stat.S_ISREG(st.st_mode):
            raise fail(name, "not a regular file (FIFO, socket or device)", "unreadable")
        os.set_blocking(fd, True)
        fh = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    try:
        if image and st.st_size == 0:
            raise fail(name, "the file is empty (0 bytes)", "empty")
        if st.st_size > max_bytes:
            raise fail(
                name, f"file of {st.st_size} bytes is beyond the limit of {max_bytes}", "too_large"
            )
        try:
            head = fh.read(HEAD_BYTES)
        except OSError as exc:
            raise fail(name, f"cannot read the file ({type(exc).__name__})", "unreadable") from None
        kind = sniff_format(head, path)
        if kind is None and image:
            raise fail(
                name,
                "unknown image format (supported: PNG, JPEG, TIFF, .npy, DICOM)",
                "unsupported_format",
            )
    except BaseException:
        fh.close()
        raise
    return OpenFile(fh=fh, size=int(st.st_size), head=head, kind=kind)


def sha256_of(fh: BinaryIO) -> str:
    """SHA-256 hex of a whole open file, read from its start in 256 KiB chunks (bounded
    memory)."""
    fh.seek(0)
    h = hashlib.sha256()
    while chunk := fh.read(1 << 18):
        h.update(chunk)
    return h.hexdigest()


def as_supported(arr: npt.NDArray[Any], name: str) -> npt.NDArray[Any]:
    """``arr`` with a dtype the package accepts, exactly (the one rule of
    :func:`medimg_edge._validation.widen_integer`); ``unsupported_format`` otherwise."""
    try:
        out = widen_integer(arr)
    except InvalidInputError as exc:
        raise fail(name, str(exc), "unsupported_format") from None
    if out.dtype.kind not in "uf" or out.dtype.itemsize not in (1, 2, 4, 8):
        raise fail(name, f"unsupported pixel type {arr.dtype}", "unsupported_format")
    return out
