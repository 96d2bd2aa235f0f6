"""Image readers: PNG / JPEG / TIFF (OpenCV), NumPy ``.npy`` and DICOM (pydicom).

* :func:`read_image` returns one 2-D grayscale frame that every ``medimg_edge`` function
  accepts (``uint8``, ``uint16``, ``float32`` or ``float64``).
* :func:`read_input` returns an :class:`InputImage`: the frames to diagnose (a documented
  sample of a multi-frame cine), the modality from the DICOM header, the header itself
  (without its pixel data), flags such as burned-in annotation and a patient-free
  ``instance_key``.  The watch-folder daemon and the batch runner use it.

Both are hardened against hostile files: the file must be a regular file no larger than
:data:`MAX_FILE_BYTES`; sizes are checked from the file header before any pixel is decoded
(at most :data:`~medimg_edge._validation.MAX_PIXELS` pixels per frame); a raster whose
declared size could not come from a file that small (a *decompression bomb*) is refused
before OpenCV allocates anything; so is a compressed DICOM frame whose JPEG / JPEG-LS /
JPEG 2000 codestream declares more pixels than Rows x Columns; DICOM element lengths that
run past the end of the file are refused before they are read (pydicom is never asked to
read more bytes than the file holds); a DICOM preamble holding an executable (``MZ``, ELF,
Mach-O, ``#!``) is refused; ``.npy`` files are read with ``allow_pickle=False``.

Every error is an :class:`~medimg_edge.InvalidInputError` with a machine-readable
``code`` (:data:`ERROR_CODES`) and a message that names the file by its *name* only, or by
the caller's ``label`` (never its folder, and never a value read from DICOM tags: no
patient data).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import logging
import math
import os
import stat
import struct
import threading
import warnings
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import numpy as np
import numpy.typing as npt

from ._errors import InvalidInputError
from ._validation import MAX_PIXELS, MAX_SIDE

_T = TypeVar("_T")

__all__ = [
    "BOMB_MIN_BYTES",
    "BOMB_RATIO",
    "ERROR_CODES",
    "IMAGE_SUFFIXES",
    "MAX_FILE_BYTES",
    "MAX_FRAMES",
    "MODALITY_MAP",
    "InputImage",
    "quiet_dicom",
    "read_image",
    "read_input",
    "sample_frame_indices",
]

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

#: Largest input file read (2 GiB).
MAX_FILE_BYTES = 1 << 31
#: Largest NumberOfFrames accepted in a DICOM header.
MAX_FRAMES = 1 << 16
#: A raster (PNG/JPEG/TIFF) or deflated DICOM whose decoded size is larger than
#: ``BOMB_RATIO`` times its file size *and* larger than :data:`BOMB_MIN_BYTES` is refused
#: as a decompression bomb.  Real images above 64 MiB decoded compress 2-10:1; only
#: (near-)blank pictures reach 100:1 (deflate's ceiling is 1032:1).
BOMB_RATIO = 100
#: Decoded sizes up to this many bytes (64 MiB) are always allowed.
BOMB_MIN_BYTES = 64 << 20

#: DICOM ``Modality`` (0008,0060) -> ``medimg_edge`` modality.  Other values give ``None``
#: (the caller's configuration decides).
MODALITY_MAP: dict[str, str] = {
    "CR": "xray",  # computed radiography
    "DX": "xray",  # digital radiography
    "DR": "xray",  # non-standard, written by some DR units
    "RG": "xray",  # radiographic imaging (conventional film/screen)
    "RF": "xray",  # radio fluoroscopy
    "MG": "xray",  # mammography
    "XA": "xray",  # X-ray angiography
    "PX": "xray",  # panoramic X-ray
    "IO": "xray",  # intra-oral radiography
    "US": "ultrasound",
    "IVUS": "ultrasound",  # intravascular ultrasound
}

#: Every ``InvalidInputError.code`` the readers raise.
ERROR_CODES: dict[str, str] = {
    "no_such_file": "the path does not exist",
    "unreadable": "not a regular file (directory, FIFO, device) or no permission to read",
    "empty": "the file has zero bytes",
    "unsupported_format": "not PNG, JPEG, TIFF, .npy or DICOM; or an unsupported pixel type",
    "truncated": "the file ends before the data its header declares",
    "too_large": "the file or the image is beyond the size limits",
    "decompression_bomb": "the declared image size is impossible for a file that small",
    "executable_preamble": "the DICOM preamble holds an executable (MZ, ELF, Mach-O, #!)",
    "pickled_npy": ".npy file holding Python objects (would need pickle)",
    "bad_header": "a PNG/JPEG/TIFF/.npy header that cannot be parsed",
    "bad_dicom": "a DICOM file that cannot be parsed or has no usable image",
    "undecodable": "the header is fine but the pixel data could not be decoded",
    "missing_dependency": "pydicom is not installed (the [dicom] extra)",
}

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_NPY_MAGIC = b"\x93NUMPY"
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*")
_JPEG_MAGIC = b"\xff\xd8\xff"
_DICOM_MAGIC_OFFSET = 128
_EXECUTABLE_MAGICS = (
    b"MZ",  # DOS / Windows PE
    b"\x7fELF",
    b"\xfe\xed\xfa\xce",  # Mach-O 32/64, both byte orders, and fat binaries
    b"\xfe\xed\xfa\xcf",
    b"\xce\xfa\xed\xfe",
    b"\xcf\xfa\xed\xfe",
    b"\xca\xfe\xba\xbe",
    b"#!",
)
_HEAD_BYTES = 1 << 16


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


def _fail(name: str, what: str, code: str = "invalid_input") -> InvalidInputError:
    return InvalidInputError(f"{name}: {what}", code=code)


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
        raise _fail(name, f"invalid image size {rows}x{cols} in the header", "bad_header")
    if rows > MAX_SIDE or cols > MAX_SIDE or rows * cols * max(frames, 1) > MAX_PIXELS:
        raise _fail(
            name,
            f"image of {rows}x{cols} pixels"
            + (f" x {frames} frames" if frames > 1 else "")
            + f" is beyond the limits of {MAX_SIDE} pixels per side and {MAX_PIXELS} "
            "pixels in all",
            "too_large",
        )


def _check_bomb(name: str, decoded_bytes: int, file_bytes: int) -> None:
    if decoded_bytes > BOMB_MIN_BYTES and decoded_bytes > BOMB_RATIO * max(file_bytes, 1):
        raise _fail(
            name,
            f"the header declares {decoded_bytes} decoded bytes from a file of {file_bytes} "
            f"bytes (more than {BOMB_RATIO}:1); refused as a decompression bomb",
            "decompression_bomb",
        )


# ---- headers of the raster formats (sizes only) -------------------------------------------


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


def _jpeg_header(data: bytes) -> tuple[int, int, int]:
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


def _tiff_size(fh: BinaryIO) -> tuple[int, int]:
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


# ---- file access ---------------------------------------------------------------------------


@dataclasses.dataclass
class _Source:
    """An open regular file: its descriptor-backed handle, size and first bytes."""

    fh: BinaryIO
    size: int
    head: bytes
    kind: str


class _ClampedReader:
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


def _open_regular(path: Path, name: str, max_bytes: int) -> _Source:
    """Open ``path`` without blocking (FIFOs) and without following it when it is not a
    regular file; refuse empty and oversized files."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise _fail(name, "no such file", "no_such_file") from None
    except IsADirectoryError:
        raise _fail(name, "no such file (the path is a directory)", "unreadable") from None
    except OSError as exc:
        raise _fail(name, f"cannot open the file ({type(exc).__name__})", "unreadable") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise _fail(name, "no such file (the path is a directory)", "unreadable")
        if not stat.S_ISREG(st.st_mode):
            raise _fail(name, "not a regular file (FIFO, socket or device)", "unreadable")
        os.set_blocking(fd, True)
        fh = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    try:
        if st.st_size == 0:
            raise _fail(name, "the file is empty (0 bytes)", "empty")
        if st.st_size > max_bytes:
            raise _fail(
                name, f"file of {st.st_size} bytes is beyond the limit of {max_bytes}", "too_large"
            )
        try:
            head = fh.read(_HEAD_BYTES)
        except OSError as exc:
            raise _fail(
                name, f"cannot read the file ({type(exc).__name__})", "unreadable"
            ) from None
        kind = _kind(path, head)
        if kind is None:
            raise _fail(
                name,
                "unknown image format (supported: PNG, JPEG, TIFF, .npy, DICOM)",
                "unsupported_format",
            )
    except BaseException:
        fh.close()
        raise
    return _Source(fh=fh, size=int(st.st_size), head=head, kind=kind)


def _sha256_of(fh: BinaryIO) -> str:
    """SHA-256 hex of the whole file, read in 256 KiB chunks (bounded memory)."""
    fh.seek(0)
    h = hashlib.sha256()
    while chunk := fh.read(1 << 18):
        h.update(chunk)
    return h.hexdigest()


# ---- rasters -------------------------------------------------------------------------------


def _read_raster(src: _Source, name: str, digest: hashlib._Hash | None = None) -> npt.NDArray[Any]:
    """Decode a PNG / JPEG / TIFF; ``digest`` (if given) is fed the file's bytes."""
    import cv2

    kind = src.kind
    try:
        if kind == "tiff":
            rows, cols, bpp = _tiff_header(src.fh)
            decoded = rows * cols * bpp
        elif kind == "png":
            rows, cols = _png_size(src.head)
            decoded = _png_decoded_bytes(src.head, rows, cols)
        else:
            rows, cols, comps = _jpeg_header(src.head)
            decoded = rows * cols * max(comps, 1)
    except (ValueError, struct.error, OverflowError, OSError):
        raise _fail(
            name, f"not a readable {kind.upper()} file (corrupt header)", "bad_header"
        ) from None
    _check_size(name, rows, cols)
    _check_bomb(name, decoded, src.size)
    src.fh.seek(0)
    data = src.fh.read()
    if len(data) != src.size:
        raise _fail(name, "the file changed while it was read", "truncated")
    if digest is not None:
        digest.update(data)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    del data
    if img is None:
        raise _fail(
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
            raise _fail(name, f"unsupported number of channels ({channels})", "unsupported_format")
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
    raise _fail(name, f"unsupported pixel type {dt}", "unsupported_format")


# ---- .npy ----------------------------------------------------------------------------------


def _read_npy(src: _Source, name: str, digest: hashlib._Hash | None = None) -> npt.NDArray[Any]:
    """Read a 2-D ``.npy``; ``digest`` (if given) is fed the file's bytes as they are read."""
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
        raise _fail(name, "not a readable .npy file (corrupt header)", "bad_header") from None
    if dtype.hasobject:
        raise _fail(
            name,
            f"unsupported .npy dtype {dtype}: it holds Python objects (pickle), which are "
            "never loaded; save a numeric image",
            "pickled_npy",
        )
    if dtype.kind not in "biuf" or dtype.subdtype is not None or dtype.names is not None:
        raise _fail(
            name, f"unsupported .npy dtype {dtype} (need a numeric image)", "unsupported_format"
        )
    if len(shape) == 3 and shape[2] == 1:
        shape = shape[:2]
    if len(shape) != 2:
        raise _fail(
            name, f".npy array has shape {tuple(shape)}; need a 2-D image", "unsupported_format"
        )
    rows, cols = int(shape[0]), int(shape[1])
    _check_size(name, rows, cols)
    need = rows * cols * dtype.itemsize
    if src.size - data_offset < need:
        raise _fail(name, "the .npy data is shorter than its header declares", "truncated")
    if digest is not None:
        fh.seek(0)
        digest.update(fh.read(data_offset))
    arr = np.fromfile(fh, dtype=dtype, count=rows * cols)
    if arr.size != rows * cols:
        raise _fail(name, "could not read the .npy data (truncated)", "truncated")
    if digest is not None:
        digest.update(arr.view(np.uint8).data)  # the bytes as stored
        while chunk := fh.read(1 << 18):
            digest.update(chunk)
    arr = arr.reshape((rows, cols), order="F" if fortran else "C")
    arr = np.ascontiguousarray(arr)
    if arr.dtype.byteorder not in "=|":
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return _as_supported(arr, name)


# ---- DICOM ---------------------------------------------------------------------------------

_NATIVE_TS = {
    "1.2.840.10008.1.2",  # implicit VR little endian
    "1.2.840.10008.1.2.1",  # explicit VR little endian
    "1.2.840.10008.1.2.2",  # explicit VR big endian
    "1.2.840.10008.1.2.1.99",  # deflated explicit VR little endian
}
_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel Data, Float / Double Float
_DEFER_BYTES = 1 << 20  # header values larger than this are never loaded
_DEFLATED_TS = "1.2.840.10008.1.2.1.99"


def sample_frame_indices(n_frames: int, k: int) -> tuple[int, ...]:
    """Indices of the frames :func:`read_input` decodes from a cine of ``n_frames``.

    All frames when ``n_frames <= k``; otherwise ``k`` frames evenly spaced over the
    clip, always including the first and the last (``k = 1``: the first; ``k = 3``:
    first, middle, last): ``round(i * (n_frames - 1) / (k - 1))`` for ``i = 0..k-1``.
    """
    if n_frames <= 0 or k <= 0:
        return ()
    if n_frames <= k:
        return tuple(range(n_frames))
    if k == 1:
        return (0,)
    return tuple(math.floor(i * (n_frames - 1) / (k - 1) + 0.5) for i in range(k))


def _drop_deferred(ds: Any, file_size: int, name: str, depth: int = 0) -> None:
    """Remove values pydicom deferred (> ``_DEFER_BYTES``) from ``ds``, recursively;
    refuse lengths that run past the end of the file."""
    from pydicom.dataelem import RawDataElement

    if depth > 64:
        raise _fail(name, "DICOM sequences nested too deeply", "bad_dicom")
    for tag in list(ds.keys()):
        elem = ds.get_item(tag, keep_deferred=True)
        if isinstance(elem, RawDataElement):
            length = int(elem.length)
            if elem.value is None and length not in (0, 0xFFFFFFFF):
                if int(elem.value_tell) + length > file_size:
                    raise _fail(
                        name,
                        "a DICOM element's declared length runs past the end of the file",
                        "truncated",
                    )
                del ds[tag]
                continue
            if elem.VR != "SQ":
                continue
        value = ds[tag].value
        if ds[tag].VR == "SQ":
            for item in value:
                _drop_deferred(item, file_size, name, depth + 1)


def _convert_all(ds: Any, depth: int = 0) -> None:
    """Convert every raw element of ``ds`` now (pydicom converts lazily, and a corrupt
    value would otherwise raise later, anywhere); drop the ones that cannot be converted."""
    if depth > 64:
        raise ValueError("sequences nested too deeply")
    for tag in list(ds.keys()):
        try:
            elem = ds[tag]
        except Exception:  # unknown VR, undecodable value, ...
            del ds[tag]
            continue
        if elem.VR == "SQ":
            for item in elem.value:
                _convert_all(item, depth + 1)


def _ts_of(header: Any) -> str:
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    ts = header.file_meta.get("TransferSyntaxUID") if hasattr(header, "file_meta") else None
    if ts:
        return str(ts)
    implicit, little = header.original_encoding
    if implicit:
        return str(ImplicitVRLittleEndian)
    return str(ExplicitVRLittleEndian if little in (True, None) else ExplicitVRBigEndian)


def _pixel_element_length(fh: BinaryIO, implicit: bool, little: bool) -> tuple[int, int]:
    """``(tag, length)`` of the element at the current position (the pixel data)."""
    e = "<" if little else ">"
    start = fh.read(8)
    if len(start) < 8:
        raise EOFError
    group, elem = struct.unpack(e + "HH", start[:4])
    tag = (group << 16) | elem
    if implicit:
        (length,) = struct.unpack(e + "I", start[4:8])
        return tag, int(length)
    vr = start[4:6]
    if not (vr.isalpha() and vr.isupper()):
        # Some writers switch to implicit VR for the pixel data: the length follows the tag.
        (length,) = struct.unpack(e + "I", start[4:8])
        return tag, int(length)
    if vr in (b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN", b"SQ", b"UT", b"UC", b"UR"):
        more = fh.read(4)
        if len(more) < 4:
            raise EOFError
        (length,) = struct.unpack(e + "I", more)
        return tag, int(length)
    (length16,) = struct.unpack(e + "H", start[6:8])
    return tag, int(length16)


def _inflate_if_deflated(src: _Source, name: str) -> _Source:
    """A Deflated Explicit VR Little Endian file, inflated (bounded) into memory and
    re-labelled Explicit VR Little Endian; other files unchanged."""
    if _DEFLATED_TS.encode() not in src.head:
        return src
    import pydicom.filereader as fr
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import ExplicitVRLittleEndian

    fh: Any = _ClampedReader(src.fh, src.size)
    try:
        fh.seek(0)
        fr.read_preamble(fh, True)
        meta = fr._read_file_meta_info(fh)
        if str(meta.get("TransferSyntaxUID", "")) != _DEFLATED_TS:
            return src
        limit = max(BOMB_MIN_BYTES, BOMB_RATIO * src.size)
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        body = inflater.decompress(fh.read(), limit)
    except zlib.error:
        raise _fail(name, "the deflated DICOM data is corrupt", "bad_dicom") from None
    except Exception as exc:
        raise _fail(
            name, f"not a readable DICOM file ({type(exc).__name__})", "bad_dicom"
        ) from None
    if inflater.unconsumed_tail:
        raise _fail(
            name,
            f"the deflated DICOM data inflates beyond {limit} bytes (more than "
            f"{BOMB_RATIO}:1); refused as a decompression bomb",
            "decompression_bomb",
        )
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta_io = DicomBytesIO()
    meta_io.is_little_endian = True
    meta_io.is_implicit_VR = False
    write_file_meta_info(meta_io, meta, enforce_standard=False)
    out = io.BytesIO()
    out.write(bytes(128) + b"DICM")
    out.write(meta_io.getvalue())
    out.write(body)
    size = out.tell()
    out.seek(0)
    return _Source(fh=out, size=size, head=out.getvalue()[:_HEAD_BYTES], kind="dicom")


@dataclasses.dataclass
class _DicomFrames:
    frames: tuple[npt.NDArray[Any], ...]
    indices: tuple[int, ...]
    header: Any
    n_frames: int
    inverted: bool
    key: str | None  # the instance key; None: the sha256 of the file as stored


def _dicom_int(header: Any, keyword: str, default: int) -> int:
    value = header.get(keyword, default)
    if value is None or value == "":
        return default
    if not isinstance(value, (int, float, str, bytes)):  # multi-valued: the first value
        value = value[0] if len(value) else default
    return int(value)


def _read_dicom(
    src: _Source, name: str, *, cine_frames: int, invert_monochrome1: bool, palette: bool
) -> _DicomFrames:
    try:
        import pydicom
        from pydicom.pixels.utils import pixel_array
    except ImportError:
        raise _fail(
            name,
            "reading DICOM needs pydicom: pip install 'medimg-edge[dicom]'",
            "missing_dependency",
        ) from None
    head = src.head
    if head[_DICOM_MAGIC_OFFSET : _DICOM_MAGIC_OFFSET + 4] == b"DICM" and head.startswith(
        _EXECUTABLE_MAGICS
    ):
        raise _fail(
            name,
            "the DICOM preamble holds an executable (PE/ELF/Mach-O/script signature); "
            "refused (PS3.10 7.5: the preamble must be zeros or a TIFF header)",
            "executable_preamble",
        )
    stored = src
    src = _inflate_if_deflated(src, name)
    fh: Any = _ClampedReader(src.fh, src.size)
    fh.seek(0)
    try:
        header = pydicom.dcmread(fh, force=True, stop_before_pixels=True, defer_size=_DEFER_BYTES)
        _drop_deferred(header, src.size, name)
        _convert_all(header)
        pixel_offset = fh.tell()
        rows = _dicom_int(header, "Rows", 0)
        cols = _dicom_int(header, "Columns", 0)
        n_frames = _dicom_int(header, "NumberOfFrames", 1) or 1
        samples = _dicom_int(header, "SamplesPerPixel", 1) or 1
        bits = _dicom_int(header, "BitsAllocated", 0)
        photometric = str(header.get("PhotometricInterpretation", "") or "").upper()
        ts = _ts_of(header)
    except InvalidInputError:
        raise
    except RecursionError:
        raise _fail(name, "DICOM sequences nested too deeply", "bad_dicom") from None
    except EOFError:
        raise _fail(name, "the DICOM file ends inside its header", "truncated") from None
    except MemoryError:
        raise _fail(name, "a DICOM element is too large", "too_large") from None
    except Exception as exc:  # pydicom raises many types on corrupt files
        # The exception text may quote tag values: report only its type.
        raise _fail(
            name, f"not a readable DICOM file ({type(exc).__name__})", "bad_dicom"
        ) from None
    if rows <= 0 or cols <= 0:
        raise _fail(name, "DICOM file without an image (no Rows / Columns)", "bad_dicom")
    if not 1 <= n_frames <= MAX_FRAMES:
        raise _fail(name, f"NumberOfFrames is beyond the limit of {MAX_FRAMES}", "too_large")
    if samples not in (1, 3, 4) or bits not in (1, 8, 16, 32, 64):
        raise _fail(name, "unsupported SamplesPerPixel / BitsAllocated", "bad_dicom")
    _check_size(name, rows, cols)
    # The pixel data element must follow the header and fit in the file.
    implicit, little = header.original_encoding
    try:
        fh.seek(pixel_offset)
        tag, length = _pixel_element_length(fh, bool(implicit), little is not False)
    except (EOFError, struct.error, OSError):
        raise _fail(name, "DICOM file without pixel data (truncated?)", "truncated") from None
    if tag not in _PIXEL_TAGS:
        raise _fail(name, "DICOM file without pixel data", "bad_dicom")
    if length != 0xFFFFFFFF and fh.tell() + length > src.size:
        raise _fail(name, "the DICOM pixel data runs past the end of the file", "truncated")
    value_start = fh.tell()
    if ts in _NATIVE_TS:
        frame_bits = rows * cols * samples * bits
        if photometric == "YBR_FULL_422":
            frame_bits = frame_bits // 3 * 2
        need = (frame_bits * n_frames + 7) // 8
        if length == 0xFFFFFFFF or length < need:
            raise _fail(
                name, "the DICOM pixel data is shorter than Rows x Columns x frames", "truncated"
            )
    indices = sample_frame_indices(n_frames, cine_frames)
    frames: list[npt.NDArray[Any]] = []
    inverted = invert_monochrome1 and photometric == "MONOCHROME1"
    rescale = _rescale_of(header)
    full: Any = None  # the whole dataset, read only if decoding from the file fails
    for index in indices:
        if ts not in _NATIVE_TS:
            arr = _decode_encapsulated(fh, value_start, header, ts, index, n_frames, name)
            frame = _dicom_frame(np.asarray(arr), header, name, photometric, palette, rescale)
            frames.append(_invert(frame, header, rescale) if inverted else frame)
            continue
        arr = None
        try:
            arr = pixel_array(fh, index=index if n_frames > 1 else None, transfer_syntax_uid=ts)
        except MemoryError:
            raise _fail(name, "the DICOM pixel data is too large", "too_large") from None
        except Exception:
            # Some writers encode the pixel data element in a way only the dataset-level
            # reader copes with: read the whole dataset (its size was checked above: native
            # pixel data is exactly Rows x Columns x frames) and decode from it.
            pass
        if arr is None:
            try:
                if full is None:
                    fh.seek(0)
                    full = pydicom.dcmread(fh, force=True)
                    if "TransferSyntaxUID" not in full.file_meta:
                        full.file_meta.TransferSyntaxUID = ts
                arr = pixel_array(full, index=index if n_frames > 1 else None)
            except MemoryError:
                raise _fail(name, "the DICOM pixel data is too large", "too_large") from None
            except RecursionError:
                raise _fail(name, "DICOM sequences nested too deeply", "bad_dicom") from None
            except Exception as exc:  # decoding errors, missing handlers, truncated data
                # The exception text may quote tag values: report only its type.
                raise _fail(
                    name,
                    f"could not decode the DICOM pixel data ({type(exc).__name__})",
                    "undecodable",
                ) from None
        frame = _dicom_frame(np.asarray(arr), header, name, photometric, palette, rescale)
        frames.append(_invert(frame, header, rescale) if inverted else frame)
    for tag in _PIXEL_TAGS:
        if tag in header:
            del header[tag]
    uid = str(header.get("SOPInstanceUID", "") or "").strip()
    if not uid and hasattr(header, "file_meta"):
        uid = str(header.file_meta.get("MediaStorageSOPInstanceUID", "") or "").strip()
    key = None  # without a UID: the caller's hash of the file as stored
    if uid:
        key = hashlib.sha256(uid.encode("ascii", "replace")).hexdigest()
    elif src is not stored:  # deflated: the key has always been the inflated stream's hash
        key = _sha256_of(fh)
    return _DicomFrames(tuple(frames), indices, header, n_frames, inverted, key)


_IMAGE_PIXEL_KEYWORDS = (
    "Rows",
    "Columns",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "PlanarConfiguration",
)
_JPEG_FAMILY = (
    "1.2.840.10008.1.2.4.50",  # JPEG baseline
    "1.2.840.10008.1.2.4.51",  # JPEG extended
    "1.2.840.10008.1.2.4.57",  # JPEG lossless
    "1.2.840.10008.1.2.4.70",  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.80",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS near-lossless
)
_J2K_SIZ = b"\xff\x4f\xff\x51"  # SOC + SIZ marker


def _codestream_size(frame: bytes, ts: str) -> tuple[int, int] | None:
    """(rows, columns) the JPEG / JPEG-LS / JPEG 2000 codestream declares, if found."""
    if ts in _JPEG_FAMILY:
        start = frame.find(b"\xff\xd8")
        if start < 0:
            raise ValueError("no JPEG SOI marker")
        rows, cols, _ = _jpeg_header(frame[start : start + (1 << 20)])
        return rows, cols
    pos = frame.find(_J2K_SIZ, 0, 1 << 16)
    if pos >= 0:  # JPEG 2000 / HTJ2K, bare codestream or JP2 file
        siz = frame[pos + 4 : pos + 4 + 20]  # Lsiz, Rsiz, Xsiz, Ysiz, XOsiz, YOsiz
        if len(siz) < 20:
            raise ValueError("truncated SIZ segment")
        xsiz, ysiz, xo, yo = struct.unpack(">IIII", siz[4:20])
        return max(ysiz - yo, 0), max(xsiz - xo, 0)
    return None  # RLE and others: the decoder sizes its output from Rows x Columns


def _decode_encapsulated(
    fh: Any, value_start: int, header: Any, ts: str, index: int, n_frames: int, name: str
) -> Any:
    """Decode frame ``index`` of encapsulated pixel data: its fragments are read from the
    file, the size its codestream declares is checked against Rows x Columns, and exactly
    those bytes are decoded (so a 16x16 image cannot carry a 16000x16000 JPEG)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate, get_frame
    from pydicom.pixels.utils import pixel_array
    from pydicom.uid import UID

    rows = _dicom_int(header, "Rows", 0)
    cols = _dicom_int(header, "Columns", 0)
    try:
        fh.seek(value_start)
        offsets = None
        if "ExtendedOffsetTable" in header and "ExtendedOffsetTableLengths" in header:
            offsets = (header.ExtendedOffsetTable, header.ExtendedOffsetTableLengths)
        frame = get_frame(fh, index, number_of_frames=n_frames, extended_offsets=offsets)
    except MemoryError:
        raise _fail(name, "the DICOM pixel data is too large", "too_large") from None
    except Exception as exc:
        raise _fail(
            name,
            f"could not find frame {index} in the pixel data ({type(exc).__name__})",
            "undecodable",
        ) from None
    try:
        declared = _codestream_size(frame, ts)
    except (ValueError, struct.error):
        raise _fail(name, "corrupt compressed frame header", "undecodable") from None
    if declared is not None and declared[0] * declared[1] > rows * cols:
        raise _fail(
            name,
            f"a compressed frame declares {declared[0]}x{declared[1]} pixels, more than "
            f"Rows x Columns ({rows}x{cols}); refused as a decompression bomb",
            "decompression_bomb",
        )
    mini = Dataset()
    mini.file_meta = FileMetaDataset()
    mini.file_meta.TransferSyntaxUID = UID(ts)
    for keyword in _IMAGE_PIXEL_KEYWORDS:
        if keyword in header:
            setattr(mini, keyword, header.get(keyword))
    mini.NumberOfFrames = 1
    mini.PixelData = encapsulate([frame])
    mini["PixelData"].VR = "OB"
    try:
        return pixel_array(mini)
    except MemoryError:
        raise _fail(name, "the DICOM pixel data is too large", "too_large") from None
    except Exception as exc:  # decoding errors, missing handlers
        # The exception text may quote tag values: report only its type.
        raise _fail(
            name, f"could not decode the DICOM pixel data ({type(exc).__name__})", "undecodable"
        ) from None


def _rescale_of(header: Any) -> tuple[float, float]:
    """(RescaleSlope, RescaleIntercept); (1, 0) when absent or unparsable."""
    try:
        slope = float(header.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(header.get("RescaleIntercept", 0.0) or 0.0)
    except (TypeError, ValueError):
        slope, intercept = 1.0, 0.0
    return slope, intercept


def _dicom_frame(
    arr: npt.NDArray[Any],
    header: Any,
    name: str,
    photometric: str,
    palette: bool,
    rescale: tuple[float, float],
) -> npt.NDArray[Any]:
    """One decoded frame -> 2-D grey with the rescale (:func:`_rescale_of`) applied."""
    import cv2

    samples = _dicom_int(header, "SamplesPerPixel", 1) or 1
    if palette and photometric == "PALETTE COLOR" and arr.ndim == 2:
        try:
            from pydicom.pixels.processing import apply_color_lut

            arr = np.asarray(apply_color_lut(arr, header))
        except Exception as exc:
            raise _fail(
                name, f"could not apply the palette ({type(exc).__name__})", "undecodable"
            ) from None
        if arr.dtype != np.uint8:
            arr = (arr >> 8).astype(np.uint8) if arr.dtype == np.uint16 else arr
        samples = 3
    if samples > 1 and arr.ndim == 3:
        if arr.shape[2] == 3 and arr.dtype in (np.uint8, np.uint16, np.float32):
            arr = cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_RGB2GRAY)
        else:
            arr = arr[..., 0]
    if arr.ndim != 2:
        raise _fail(name, f"unsupported DICOM pixel array shape {arr.shape}", "bad_dicom")
    slope, intercept = rescale
    if not (math.isfinite(slope) and math.isfinite(intercept)):
        raise _fail(name, "non-finite RescaleSlope / RescaleIntercept", "bad_dicom")
    if slope != 1.0 or intercept != 0.0:
        out: npt.NDArray[Any] = arr.astype(np.float64) * slope + intercept
        arr = np.ascontiguousarray(out)
    else:
        arr = _as_supported(np.ascontiguousarray(arr), name)
    return arr


def _invert(frame: npt.NDArray[Any], header: Any, rescale: tuple[float, float]) -> npt.NDArray[Any]:
    """MONOCHROME1 -> MONOCHROME2 over the stored range (after rescale)."""
    stored = _dicom_int(header, "BitsStored", 0) or _dicom_int(header, "BitsAllocated", 16)
    signed = _dicom_int(header, "PixelRepresentation", 0) == 1
    lo, hi = (-(1 << (stored - 1)), (1 << (stored - 1)) - 1) if signed else (0, (1 << stored) - 1)
    slope, intercept = rescale
    total = (lo + hi) * slope + 2 * intercept
    if frame.dtype in (np.uint8, np.uint16) and not signed and slope == 1 and intercept == 0:
        flipped: npt.NDArray[Any] = (np.asarray(hi, frame.dtype) - frame).astype(frame.dtype)
        return flipped
    out: npt.NDArray[Any] = np.ascontiguousarray(total - frame.astype(np.float64))
    return out


def _plain_dataset(header: Any) -> Any:
    """A plain :class:`pydicom.Dataset` (no file name, no preamble) from a FileDataset."""
    from pydicom.dataset import Dataset, FileMetaDataset

    out = Dataset()
    for tag in list(header.keys()):
        out[tag] = header[tag]
    meta = FileMetaDataset()
    for tag in list(getattr(header, "file_meta", Dataset()).keys()):
        meta[tag] = header.file_meta[tag]
    out.file_meta = meta
    implicit, little = header.original_encoding
    out.set_original_encoding(implicit, little, header.original_character_set)
    return out


# ---- public API ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class InputImage:
    """What :func:`read_input` found in one file.

    Attributes
    ----------
    frames : tuple of ndarray
        The frames to diagnose, each 2-D grayscale ``uint8``, ``uint16``, ``float32`` or
        ``float64`` (what :meth:`medimg_edge.Diagnoser.diagnose` accepts).  One frame for
        a still image; a sample of a multi-frame cine (:func:`sample_frame_indices`).
    frame_indices : tuple of int
        0-based index of each frame in the file.
    n_frames : int
        Number of frames in the file.
    modality : {"xray", "ultrasound"} or None
        From the DICOM ``Modality`` through :data:`MODALITY_MAP`; ``None`` for other
        modalities and for non-DICOM files (the caller's configuration decides).
    kind : {"dicom", "png", "jpeg", "tiff", "npy"}
    dataset : pydicom.Dataset or None
        The DICOM header (file meta in ``dataset.file_meta``) with the pixel data and any
        value larger than 1 MiB removed; ``None`` for other formats.  It holds patient
        data: never log it; pass it to the SR / Secondary Capture encoders.
    flags : tuple of str
        ``"burned_in_annotation"``: BurnedInAnnotation (0028,0301) is ``YES``, or the image
        is ultrasound (``US``/``IVUS``) and the attribute is absent (ultrasound frames
        usually carry burned-in text; absent means unknown, so it is flagged);
        ``"cine_sampled"``: only ``frame_indices`` of a longer cine were decoded;
        ``"monochrome1_inverted"``: MONOCHROME1 frames were inverted to MONOCHROME2;
        ``"lossy_compressed"``: LossyImageCompression (0028,2110) is ``01``.
    instance_key : str
        SHA-256 hex of the SOP Instance UID for DICOM (never the UID itself), of the
        file content otherwise (and for DICOM files without a SOP Instance UID).
    sha256 : str or None
        SHA-256 hex of the file's bytes as stored (computed once, on the file descriptor
        the image was read from); ``None`` when :func:`read_input` was told
        ``content_hash=False`` and the file is DICOM with a SOP Instance UID.
    """

    frames: tuple[npt.NDArray[Any], ...]
    frame_indices: tuple[int, ...]
    modality: str | None
    kind: str
    dataset: Any
    flags: tuple[str, ...]
    instance_key: str
    sha256: str | None
    n_frames: int = 1


def _name_of(path: str | os.PathLike[str], label: str | None) -> str:
    if label is not None:
        return str(label)
    p = Path(path)
    return p.name or "input"


def _burned_in_annotation(header: Any) -> bool:
    """Whether a DICOM header says its pixels may show burned-in text: Burned In
    Annotation (0028,0301) is ``YES``, or the modality is ultrasound and the attribute is
    absent (ultrasound frames usually carry it)."""
    burned = str(header.get("BurnedInAnnotation", "") or "").strip().upper()
    modality = MODALITY_MAP.get(str(header.get("Modality", "") or "").strip().upper())
    return burned == "YES" or (modality == "ultrasound" and burned == "")


def _guarded_dicom(name: str, read: Callable[[], _T]) -> _T:
    """``read()`` with pydicom's warnings silenced and any error it lets through (a
    corrupt header value pydicom chokes on late) as :class:`InvalidInputError`."""
    with quiet_dicom():
        try:
            return read()
        except InvalidInputError:
            raise
        except RecursionError:
            raise _fail(name, "DICOM sequences nested too deeply", "bad_dicom") from None
        except Exception as exc:  # the text may quote tag values: report only its type
            raise _fail(
                name, f"not a readable DICOM file ({type(exc).__name__})", "bad_dicom"
            ) from None


def _dicom_input(src: _Source, name: str, cine_frames: int, content_hash: bool) -> InputImage:
    """The DICOM part of :func:`read_input`."""
    got = _read_dicom(src, name, cine_frames=cine_frames, invert_monochrome1=True, palette=True)
    header = got.header
    modality_tag = str(header.get("Modality", "") or "").strip().upper()
    modality = MODALITY_MAP.get(modality_tag)
    flags: list[str] = []
    if _burned_in_annotation(header):
        flags.append("burned_in_annotation")
    if len(got.indices) < got.n_frames:
        flags.append("cine_sampled")
    if got.inverted:
        flags.append("monochrome1_inverted")
    if str(header.get("LossyImageCompression", "") or "").strip() == "01":
        flags.append("lossy_compressed")
    try:
        dataset = _plain_dataset(header)
    except Exception as exc:
        raise _fail(
            name, f"not a readable DICOM header ({type(exc).__name__})", "bad_dicom"
        ) from None
    sha = _sha256_of(src.fh) if content_hash or got.key is None else None
    return InputImage(
        frames=got.frames,
        frame_indices=got.indices,
        modality=modality,
        kind="dicom",
        dataset=dataset,
        flags=tuple(flags),
        instance_key=got.key or str(sha),
        sha256=sha,
        n_frames=got.n_frames,
    )


def read_input(
    path: str | os.PathLike[str],
    *,
    label: str | None = None,
    cine_frames: int = 3,
    max_bytes: int = MAX_FILE_BYTES,
    content_hash: bool = True,
) -> InputImage:
    """Read a PNG, JPEG, TIFF, ``.npy`` or DICOM file for diagnosis.

    Like :func:`read_image` (same formats, limits and conversions), plus:

    * **multi-frame DICOM (cine)**: only the frames :func:`sample_frame_indices` picks
      (``cine_frames`` evenly spaced frames including the first and the last) are read
      and decoded, one at a time, with :func:`pydicom.pixels.pixel_array` and ``index``;
      the declared size (Rows x Columns x frames) is checked against the pixel data
      length before anything is decoded;
    * **MONOCHROME1** frames are inverted to MONOCHROME2 (high values bright), and
      **PALETTE COLOR** is converted through its lookup table, before the RGB -> grey
      conversion;
    * the modality, the header, flags and a patient-free ``instance_key``
      (:class:`InputImage`).

    Parameters
    ----------
    path : str or path-like
    label : str, optional
        Names the file in error messages instead of its file name (file names may carry
        patient names; the daemon passes its ledger id).
    cine_frames : int
        How many frames to sample from a multi-frame file (>= 1).
    max_bytes : int
        Largest accepted file size.
    content_hash : bool
        Compute ``InputImage.sha256``.  Raster and ``.npy`` files are hashed anyway (in
        memory, for the instance key); for a DICOM file with a SOP Instance UID
        ``False`` saves a second pass over the file (callers that hashed it already, or
        do not need the hash).

    Returns
    -------
    InputImage

    Raises
    ------
    InvalidInputError
        With ``code`` from :data:`ERROR_CODES`; the message starts with ``"<label>: "``
        (or the file name) and never quotes DICOM tag values.
    """
    if isinstance(cine_frames, bool) or not isinstance(cine_frames, int) or cine_frames < 1:
        raise InvalidInputError(f"cine_frames must be an integer >= 1, got {cine_frames!r}")
    name = _name_of(path, label)
    src = _open_regular(Path(path), name, max_bytes)
    try:
        if src.kind != "dicom":
            digest = hashlib.sha256()
            if src.kind == "npy":
                frame = _read_npy(src, name, digest)
            else:
                frame = _read_raster(src, name, digest)
            sha = digest.hexdigest()
            return InputImage(
                frames=(frame,),
                frame_indices=(0,),
                modality=None,
                kind=src.kind,
                dataset=None,
                flags=(),
                instance_key=sha,
                sha256=sha,
                n_frames=1,
            )
        return _guarded_dicom(name, lambda: _dicom_input(src, name, cine_frames, content_hash))
    finally:
        src.fh.close()


def read_image(path: str | os.PathLike[str]) -> npt.NDArray[Any]:
    """Read one 2-D grayscale frame from a PNG, JPEG, TIFF, ``.npy`` or DICOM file.

    =================  ===========================================================
    format             how
    =================  ===========================================================
    PNG, JPEG, TIFF    ``cv2.imdecode(data, cv2.IMREAD_UNCHANGED)`` after the width
                       and height are read from the header and checked (size limits
                       and the decompression-bomb ratio); colour (BGR / BGRA) is
                       converted with ``cv2.cvtColor(..., *2GRAY)``, grey + alpha
                       keeps the grey channel; 8 and 16 bits stay ``uint8`` /
                       ``uint16``
    ``.npy``           shape and dtype read with ``numpy.lib.format`` and checked
                       (also against the file size) before the data is read;
                       never unpickles; 2-D (or ``(M, N, 1)``) numeric arrays only
    DICOM              ``.dcm`` / ``.dicom`` suffix or the ``DICM`` signature at byte
                       128; pydicom (the ``[dicom]`` extra) is imported only then.
                       Rows x Columns x NumberOfFrames is checked against the pixel
                       data before it is decoded.  RescaleSlope / RescaleIntercept
                       are applied (the result is then float64, e.g. Hounsfield
                       units); a multi-frame file gives its **first frame** (only
                       that frame is decoded); RGB is converted to grey;
                       MONOCHROME1 values are returned as stored (not inverted)
    =================  ===========================================================

    The format comes from the file's signature first, its suffix second.  Signed 8/16-bit
    integers become float32, other integers float64 (both exact).  :func:`read_input`
    gives more (cine sampling, header, modality, flags).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    (M, N) ndarray of uint8, uint16, float32 or float64

    Raises
    ------
    InvalidInputError
        For a missing, unreadable, corrupt, unsupported or too large file, with a
        ``code`` from :data:`ERROR_CODES`.  The message names the file by its name only
        and never quotes DICOM tag values.
    """
    name = _name_of(path, None)
    src = _open_regular(Path(path), name, MAX_FILE_BYTES)
    try:
        if src.kind == "npy":
            return _read_npy(src, name)
        if src.kind == "dicom":
            got = _guarded_dicom(
                name,
                lambda: _read_dicom(
                    src, name, cine_frames=1, invert_monochrome1=False, palette=False
                ),
            )
            return got.frames[0]
        return _read_raster(src, name)
    finally:
        src.fh.close()
