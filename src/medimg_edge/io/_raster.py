"""PNG / JPEG / TIFF: sizes read from the header (checked before OpenCV allocates
anything), then decoded with OpenCV; colour converted to grey."""

from __future__ import annotations

import hashlib
import math
import struct
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from ._open import OpenFile, as_supported, check_bomb, check_size, fail

__all__ = ["jpeg_header", "read_raster", "tiff_size"]


def _png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise ValueError("no IHDR chunk")
    width, height = struct.unpack(">II", data[16:24])
    return int(height), int(width)


def _png_decoded_bytes(data: bytes, rows: int, cols: int) -> int:
    """Bytes of the inflated PNG stream (filter byte per row included)."""
    depth = data[24] if len(data) > 24 else 16
    colour = data[25] if len(data) > 25 else 6
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour, 4)
    return rows * (1 + (cols * channels * depth + 7) // 8)


def jpeg_header(data: bytes) -> tuple[int, int, int]:
    sof = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ValueError("bad marker")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in sof:
            if i + 9 > len(data):
                raise ValueError("truncated SOF")
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            components = data[i + 9] if i + 9 < len(data) else 3
            return int(height), int(width), int(components)
        if length < 2:
            raise ValueError("bad segment length")
        i += 2 + length
    raise ValueError("no SOF marker")


def tiff_size(fh: BinaryIO) -> tuple[int, int]:
    rows, cols, _ = _tiff_header(fh)
    return rows, cols


def _tiff_header(fh: BinaryIO) -> tuple[int, int, int]:
    """Rows, columns and bytes per pixel from the first IFD (which may be anywhere)."""
    fh.seek(0)
    head = fh.read(8)
    if len(head) < 8:
        raise ValueError("truncated header")
    endian = "<" if head[:2] == b"II" else ">"
    (offset,) = struct.unpack(endian + "I", head[4:8])
    fh.seek(offset)
    raw = fh.read(2)
    if len(raw) < 2:
        raise ValueError("IFD beyond the end of the file")
    (count,) = struct.unpack(endian + "H", raw)
    entries = fh.read(12 * count)
    if len(entries) < 12 * count:
        raise ValueError("truncated IFD")
    width = height = None
    samples, bits = 1, 8
    for k in range(count):
        entry = entries[12 * k : 12 * k + 12]
        tag, typ = struct.unpack(endian + "HH", entry[:4])
        if typ == 3:  # SHORT
            (value,) = struct.unpack(endian + "H", entry[8:10])
        elif typ == 4:  # LONG
            (value,) = struct.unpack(endian + "I", entry[8:12])
        else:
            continue
        if tag == 256:
            width = value
        elif tag == 257:
            height = value
        elif tag == 258:
            bits = max(int(value), 1)  # first sample's bits (inline when one sample)
        elif tag == 277:
            samples = max(int(value), 1)
    if width is None or height is None:
        raise ValueError("no ImageWidth / ImageLength tags")
    return int(height), int(width), samples * max(1, math.ceil(min(bits, 64) / 8))


def read_raster(src: OpenFile, name: str, digest: hashlib._Hash | None = None) -> npt.NDArray[Any]:
    """Decode a PNG / JPEG / TIFF; ``digest`` (if given) is fed the file's bytes."""
    import cv2

    kind = str(src.kind)
    try:
        if kind == "tiff":
            rows, cols, bpp = _tiff_header(src.fh)
            decoded = rows * cols * bpp
        elif kind == "png":
            rows, cols = _png_size(src.head)
            decoded = _png_decoded_bytes(src.head, rows, cols)
        else:
            rows, cols, comps = jpeg_header(src.head)
            decoded = rows * cols * max(comps, 1)
    except (ValueError, struct.error, OverflowError, OSError):
        raise fail(
            name, f"not a readable {kind.upper()} file (corrupt header)", "bad_header"
        ) from None
    check_size(name, rows, cols)
    check_bomb(name, decoded, src.size)
    src.fh.seek(0)
    data = src.fh.read()
    if len(data) != src.size:
        raise fail(name, "the file changed while it was read", "truncated")
    if digest is not None:
        digest.update(data)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    del data
    if img is None:
        raise fail(
            name, f"OpenCV could not decode this {kind.upper()} file (corrupt?)", "undecodable"
        )
    if img.ndim == 3:
        channels = img.shape[2]
        if channels == 1:
            img = img[:, :, 0]
        elif channels == 2:
            img = img[:, :, 0]  # grey + alpha
        elif channels == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        elif channels == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2GRAY)
        else:
            raise fail(name, f"unsupported number of channels ({channels})", "unsupported_format")
    return as_supported(np.ascontiguousarray(img), name)
