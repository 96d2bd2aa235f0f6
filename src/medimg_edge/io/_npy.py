"""NumPy ``.npy``: shape and dtype read with ``numpy.lib.format`` and checked (also against
the file size) before the data is read; never unpickles."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import numpy.typing as npt

from ._open import OpenFile, as_supported, check_size, fail

__all__ = ["read_npy"]


def read_npy(src: OpenFile, name: str, digest: hashlib._Hash | None = None) -> npt.NDArray[Any]:
    """Read a ``.npy`` image: 2-D (or ``(H, W, 1)``), ``(H, W, 3|4)`` uint8 colour (RGB
    order, NumPy's convention), or a clip ``(n, H, W)`` / ``(n, H, W, 3|4)``; the array
    as stored (integers widened exactly, :func:`~medimg_edge.io.as_supported`).
    ``digest`` (if given) is fed the file's bytes as they are read."""
    fmt = np.lib.format
    fh = src.fh
    try:
        fh.seek(0)
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(fh)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = fmt.read_array_header_2_0(fh)
        else:
            raise ValueError("unsupported .npy version")
        data_offset = fh.tell()
    except (ValueError, OSError, SyntaxError, EOFError, TypeError, MemoryError):
        raise fail(name, "not a readable .npy file (corrupt header)", "bad_header") from None
    if dtype.hasobject:
        raise fail(
            name,
            f"unsupported .npy dtype {dtype}: it holds Python objects (pickle), which are "
            "never loaded; save a numeric image",
            "pickled_npy",
        )
    if dtype.kind not in "biuf" or dtype.subdtype is not None or dtype.names is not None:
        raise fail(
            name, f"unsupported .npy dtype {dtype} (need a numeric image)", "unsupported_format"
        )
    shape = tuple(int(v) for v in shape)
    if len(shape) == 3 and shape[2] == 1:
        shape = shape[:2]
    colour = len(shape) in (3, 4) and shape[-1] in (3, 4)
    if len(shape) not in (2, 3, 4) or (len(shape) == 4 and not colour):
        raise fail(
            name,
            f".npy array has shape {shape}; need a 2-D image, (H, W, 3|4) uint8 colour, "
            "or a clip (n, H, W) / (n, H, W, 3|4)",
            "unsupported_format",
        )
    if colour and dtype != np.uint8:
        raise fail(
            name,
            f".npy colour array of dtype {dtype}; colour frames must be uint8 (RGB order)",
            "unsupported_format",
        )
    spatial = shape[-3:-1] if colour else shape[-2:]
    n_frames = shape[0] if len(shape) == (4 if colour else 3) else 1
    rows, cols = int(spatial[0]), int(spatial[1])
    check_size(name, rows, cols, n_frames)
    count = 1
    for v in shape:
        count *= v
    need = count * dtype.itemsize
    if src.size - data_offset < need:
        raise fail(name, "the .npy data is shorter than its header declares", "truncated")
    if digest is not None:
        fh.seek(0)
        digest.update(fh.read(data_offset))
    arr = np.fromfile(fh, dtype=dtype, count=count)
    if arr.size != count:
        raise fail(name, "could not read the .npy data (truncated)", "truncated")
    if digest is not None:
        digest.update(arr.view(np.uint8).data)  # the bytes as stored
        while chunk := fh.read(1 << 18):
            digest.update(chunk)
    arr = arr.reshape(shape, order="F" if fortran else "C")
    arr = np.ascontiguousarray(arr)
    if arr.dtype.byteorder not in "=|":
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr if colour else as_supported(arr, name)
