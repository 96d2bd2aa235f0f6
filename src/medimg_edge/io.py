"""Image readers: PNG / JPEG / TIFF (OpenCV), NumPy ``.npy`` and DICOM (pydicom).

:func:`read_image` returns one 2-D grayscale frame that every ``medimg_edge`` function
accepts (``uint8``, ``uint16``, ``float32`` or ``float64``).  Sizes are checked from the
file header before any pixel is decoded, so a hostile or broken file cannot make the
process allocate more than :data:`medimg_edge._validation.MAX_PIXELS` pixels.  Every error
is an :class:`~medimg_edge.InvalidInputError` whose message names the file by its *name*
only (never its folder, and never a value read from DICOM tags: no patient data).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from ._errors import InvalidInputError
from ._validation import MAX_PIXELS, MAX_SIDE

__all__ = ["IMAGE_SUFFIXES", "read_image"]

#: File name suffixes :func:`read_image` recognises (lower case).  Files with another
#: suffix are still read when their content starts with a known signature.
IMAGE_SUFFIXES: tuple[str, ...] = (
    ".png",
    ".jpg",
    ".jpeg",
    ".tif",
    ".tiff",
    ".npy",
    ".dcm",
    ".dicom",
)

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_NPY_MAGIC = b"\x93NUMPY"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*")
_JPEG_MAGIC = b"\xff\xd8\xff"
_DICOM_MAGIC_OFFSET = 128


def _fail(name: str, what: str) -> InvalidInputError:
    return InvalidInputError(f"{name}: {what}")


def _sniff(head: bytes) -> str | None:
    # DICOM first: its 128-byte preamble is free-form and may itself look like a TIFF.
    if head[_DICOM_MAGIC_OFFSET : _DICOM_MAGIC_OFFSET + 4] == b"DICM":
        return "dicom"
    if head.startswith(_PNG_MAGIC):
        return "png"
    if head.startswith(_JPEG_MAGIC):
        return "jpeg"
    if head.startswith(_TIFF_MAGICS):
        return "tiff"
    if head.startswith(_NPY_MAGIC):
        return "npy"
    return None


def _kind(path: Path, head: bytes) -> str | None:
    sniffed = _sniff(head)
    if sniffed is not None:
        return sniffed
    suffix = path.suffix.lower()
    if suffix in (".dcm", ".dicom"):
        return "dicom"  # DICOM without the 128-byte preamble / "DICM" prefix
    return None


def _check_size(name: str, rows: int, cols: int, frames: int = 1) -> None:
    if rows <= 0 or cols <= 0:
        raise _fail(name, f"invalid image size {rows}x{cols} in the header")
    if rows > MAX_SIDE or cols > MAX_SIDE or rows * cols * max(frames, 1) > MAX_PIXELS:
        raise _fail(
            name,
            f"image of {rows}x{cols} pixels"
            + (f" x {frames} frames" if frames > 1 else "")
            + f" is beyond the limits of {MAX_SIDE} pixels per side and {MAX_PIXELS} "
            "pixels in all",
        )


# ---- headers of the raster formats (sizes only) -------------------------------------------


def _png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise ValueError("no IHDR chunk")
    width, height = struct.unpack(">II", data[16:24])
    return int(height), int(width)


def _jpeg_size(data: bytes) -> tuple[int, int]:
    sof = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
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
            return int(height), int(width)
        if length < 2:
            raise ValueError("bad segment length")
        i += 2 + length
    raise ValueError("no SOF marker")


def _tiff_size(fh: BinaryIO) -> tuple[int, int]:
    """Rows and columns from the first IFD (which may be anywhere in the file)."""
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
    if width is None or height is None:
        raise ValueError("no ImageWidth / ImageLength tags")
    return int(height), int(width)


def _read_raster(path: Path, name: str, kind: str) -> npt.NDArray[Any]:
    import cv2

    try:
        with open(path, "rb") as fh:
            if kind == "tiff":
                rows, cols = _tiff_size(fh)
            elif kind == "png":
                rows, cols = _png_size(fh.read(64))
            else:
                rows, cols = _jpeg_size(fh.read(1 << 16))
    except (ValueError, struct.error):
        raise _fail(name, f"not a readable {kind.upper()} file (corrupt header)") from None
    _check_size(name, rows, cols)
    img = cv2.imread(os.fspath(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise _fail(name, f"OpenCV could not decode this {kind.upper()} file (corrupt?)")
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
            raise _fail(name, f"unsupported number of channels ({channels})")
    return _as_supported(np.ascontiguousarray(img), name)


def _as_supported(arr: npt.NDArray[Any], name: str) -> npt.NDArray[Any]:
    """Return ``arr`` with a dtype the package accepts (integers converted exactly)."""
    dt = arr.dtype
    if dt == np.bool_:
        return arr.astype(np.uint8)
    if dt in (np.uint8, np.uint16, np.float32, np.float64):
        return arr
    if dt.kind == "i" and dt.itemsize <= 2:
        return arr.astype(np.float32)
    if dt.kind in "iu" and dt.itemsize <= 4:
        return arr.astype(np.float64)
    if dt.kind == "f" and dt.itemsize == 2:
        return arr.astype(np.float32)
    raise _fail(name, f"unsupported pixel type {dt}")


def _read_npy(path: Path, name: str) -> npt.NDArray[Any]:
    fmt = np.lib.format
    try:
        with open(path, "rb") as fh:
            version = fmt.read_magic(fh)
            if version == (1, 0):
                shape, _fortran, dtype = fmt.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, _fortran, dtype = fmt.read_array_header_2_0(fh)
            else:
                raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, OSError, SyntaxError, EOFError):
        raise _fail(name, "not a readable .npy file (corrupt header)") from None
    if dtype.hasobject or dtype.kind not in "biuf":
        raise _fail(name, f"unsupported .npy dtype {dtype} (need a numeric image)")
    if len(shape) == 3 and shape[2] == 1:
        shape = shape[:2]
    if len(shape) != 2:
        raise _fail(name, f".npy array has shape {tuple(shape)}; need a 2-D image")
    _check_size(name, int(shape[0]), int(shape[1]))
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError):
        raise _fail(name, "could not read the .npy data (truncated or corrupt)") from None
    arr = np.ascontiguousarray(arr.reshape(arr.shape[:2]))
    if arr.dtype.byteorder not in "=|":
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return _as_supported(arr, name)


def _read_dicom(path: Path, name: str) -> npt.NDArray[Any]:
    try:
        import pydicom
        from pydicom.errors import InvalidDicomError
    except ImportError:
        raise _fail(name, "reading DICOM needs pydicom: pip install 'medimg-edge[dicom]'") from None
    try:
        header = pydicom.dcmread(os.fspath(path), stop_before_pixels=True, force=True)
        rows = int(header.get("Rows", 0) or 0)
        cols = int(header.get("Columns", 0) or 0)
        frames = int(header.get("NumberOfFrames", 1) or 1)
    except (InvalidDicomError, ValueError, TypeError, OSError, EOFError, KeyError):
        raise _fail(name, "not a readable DICOM file") from None
    except Exception as exc:  # pydicom raises many types on corrupt files
        raise _fail(name, f"not a readable DICOM file ({type(exc).__name__})") from None
    if rows == 0 or cols == 0:
        raise _fail(name, "DICOM file without an image (no Rows / Columns)")
    _check_size(name, rows, cols, frames)
    try:
        ds = pydicom.dcmread(os.fspath(path), force=True)
        pixels = ds.pixel_array
    except Exception as exc:  # decoding errors, missing handlers, truncated data
        # The exception text may quote tag values: report only its type.
        raise _fail(name, f"could not decode the DICOM pixel data ({type(exc).__name__})") from None
    arr = np.asarray(pixels)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if frames > 1 and arr.ndim >= 3 and arr.shape[0] == frames:
        arr = arr[0]  # multi-frame: the first frame
    if samples > 1 and arr.ndim == 3:
        import cv2

        if samples == 3:
            arr = cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_RGB2GRAY)
        else:
            arr = arr[..., 0]
    if arr.ndim != 2:
        raise _fail(name, f"unsupported DICOM pixel array shape {arr.shape}")
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    if slope != 1.0 or intercept != 0.0:
        out: npt.NDArray[Any] = arr.astype(np.float64) * slope + intercept
        return np.ascontiguousarray(out)
    return _as_supported(np.ascontiguousarray(arr), name)


def read_image(path: str | os.PathLike[str]) -> npt.NDArray[Any]:
    """Read one 2-D grayscale frame from a PNG, JPEG, TIFF, ``.npy`` or DICOM file.

    =================  ===========================================================
    format             how
    =================  ===========================================================
    PNG, JPEG, TIFF    ``cv2.imread(path, cv2.IMREAD_UNCHANGED)`` after the width
                       and height are read from the header and checked; colour
                       (BGR / BGRA) is converted with ``cv2.cvtColor(..., *2GRAY)``,
                       grey + alpha keeps the grey channel; 8 and 16 bits stay
                       ``uint8`` / ``uint16``
    ``.npy``           shape and dtype read with ``numpy.lib.format`` and checked
                       before ``numpy.load(path, allow_pickle=False)``; 2-D (or
                       ``(M, N, 1)``) numeric arrays only
    DICOM              ``.dcm`` / ``.dicom`` suffix or the ``DICM`` signature at byte
                       128; pydicom (the ``[dicom]`` extra) is imported only then.
                       Rows x Columns x NumberOfFrames is checked before the pixel
                       data is decoded.  RescaleSlope / RescaleIntercept are applied
                       (the result is then float64, e.g. Hounsfield units); a
                       multi-frame file gives its **first frame**; RGB is converted
                       to grey; MONOCHROME1 values are returned as stored (not
                       inverted)
    =================  ===========================================================

    The format comes from the file's signature first, its suffix second.  Signed 8/16-bit
    integers become float32, other integers float64 (both exact).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    (M, N) ndarray of uint8, uint16, float32 or float64

    Raises
    ------
    InvalidInputError
        For a missing, unreadable, corrupt, unsupported or too large file.  The message
        names the file by its name only and never quotes DICOM tag values.
    """
    p = Path(path)
    name = p.name or str(path)
    if not p.is_file():
        raise _fail(name, "no such file")
    try:
        with open(p, "rb") as fh:
            head = fh.read(_DICOM_MAGIC_OFFSET + 4)
    except OSError as exc:
        raise _fail(name, f"cannot open the file ({type(exc).__name__})") from None
    kind = _kind(p, head)
    if kind is None:
        raise _fail(
            name,
            "unknown image format (supported: PNG, JPEG, TIFF, .npy, DICOM)",
        )
    if kind == "npy":
        return _read_npy(p, name)
    if kind == "dicom":
        return _read_dicom(p, name)
    return _read_raster(p, name, kind)
