"""DICOM: the hardened header reader, frame decoding (native and encapsulated, one
frame at a time) and **the one photometric path** every client's frames go through.

Photometric path, per decoded frame (:func:`dicom_frame`), in PS3.3 / PS3.4 order:

1. decoding (pydicom): *Bits Stored* / *High Bit* / *Pixel Representation* give the
   stored values (unused high bits masked, two's complement sign-extended); *Planar
   Configuration* is undone; YBR_FULL / YBR_FULL_422 / YBR_ICT / YBR_RCT are converted to
   RGB;
2. *PALETTE COLOR* through its lookup tables to RGB (8-bit tables kept, 16-bit ones
   scaled to 8 bits);
3. RGB to grey with the ITU-R BT.601 luma weights (the grey a ``color_order="rgb"``
   Diagnoser computes for the same colour frame);
4. the modality LUT: *Rescale Slope* / *Rescale Intercept* (the result is float64);
5. the *VOI LUT Sequence* where present (a lookup table; window centre / width are not
   applied: the pipeline sets its own robust window);
6. *MONOCHROME1* inverted to MONOCHROME2 (high values bright) over the range of the
   values at that point (stored range, rescaled; the VOI LUT's output range after 5).

References
----------
.. [1] DICOM PS3.3, C.7.6.3.1 (Image Pixel Module), C.11.1 (Modality LUT), C.11.2 (VOI
   LUT). https://dicom.nema.org/medical/dicom/current/output/html/part03.html
.. [2] ITU-R BT.601-7, Studio encoding parameters of digital television (luma weights).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import struct
import zlib
from collections.abc import Callable
from typing import Any, BinaryIO, TypeVar

import numpy as np
import numpy.typing as npt

from .._clip import sample_frame_indices
from .._errors import InvalidInputError
from .._modality import dicom_modality
from ._open import (
    BOMB_MIN_BYTES,
    BOMB_RATIO,
    DICOM_MAGIC_OFFSET,
    HEAD_BYTES,
    ClampedReader,
    OpenFile,
    as_supported,
    check_size,
    fail,
    quiet_dicom,
    sha256_of,
)
from ._raster import jpeg_header

__all__ = [
    "MAX_FRAMES",
    "DicomFrames",
    "burned_in_annotation",
    "dicom_frame",
    "guarded_dicom",
    "plain_dataset",
    "read_dicom",
    "rgb_to_grey",
]

_T = TypeVar("_T")

#: Largest NumberOfFrames accepted in a DICOM header.
MAX_FRAMES = 1 << 16
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
_NATIVE_TS = {
    "1.2.840.10008.1.2",  # implicit VR little endian
    "1.2.840.10008.1.2.1",  # explicit VR little endian
    "1.2.840.10008.1.2.2",  # explicit VR big endian
    "1.2.840.10008.1.2.1.99",  # deflated explicit VR little endian
}
_PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel Data, Float / Double Float
_DEFER_BYTES = 1 << 20  # header values larger than this are never loaded
_DEFLATED_TS = "1.2.840.10008.1.2.1.99"


def _drop_deferred(ds: Any, file_size: int, name: str, depth: int = 0) -> None:
    """Remove values pydicom deferred (> ``_DEFER_BYTES``) from ``ds``, recursively;
    refuse lengths that run past the end of the file."""
    from pydicom.dataelem import RawDataElement

    if depth > 64:
        raise fail(name, "DICOM sequences nested too deeply", "bad_dicom")
    for tag in list(ds.keys()):
        elem = ds.get_item(tag, keep_deferred=True)
        if isinstance(elem, RawDataElement):
            length = int(elem.length)
            if elem.value is None and length not in (0, 0xFFFFFFFF):
                if int(elem.value_tell) + length > file_size:
                    raise fail(
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


def _inflate_if_deflated(src: OpenFile, name: str) -> OpenFile:
    """A Deflated Explicit VR Little Endian file, inflated (bounded) into memory and
    re-labelled Explicit VR Little Endian; other files unchanged."""
    if _DEFLATED_TS.encode() not in src.head:
        return src
    import pydicom.filereader as fr
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import ExplicitVRLittleEndian

    fh: Any = ClampedReader(src.fh, src.size)
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
        raise fail(name, "the deflated DICOM data is corrupt", "bad_dicom") from None
    except Exception as exc:
        raise fail(name, f"not a readable DICOM file ({type(exc).__name__})", "bad_dicom") from None
    if inflater.unconsumed_tail:
        raise fail(
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
    return OpenFile(fh=out, size=size, head=out.getvalue()[:HEAD_BYTES], kind="dicom")


@dataclasses.dataclass
class DicomFrames:
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


def read_dicom(
    src: OpenFile,
    name: str,
    *,
    cine_frames: int,
    header_check: Callable[[Any], None] | None = None,
) -> DicomFrames:
    """Read the header and decode the sampled frames (:func:`sample_frame_indices` with
    ``cine_frames``) of a DICOM file, each through :func:`dicom_frame`.
    ``header_check(header)`` runs once the header is read, before any pixel is decoded
    (the triage layer refuses modalities no model serves there)."""
    try:
        import pydicom
        from pydicom.pixels.utils import pixel_array
    except ImportError:
        raise fail(
            name,
            "reading DICOM needs pydicom: pip install 'medimg-edge[dicom]'",
            "missing_dependency",
        ) from None
    head = src.head
    if head[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] == b"DICM" and head.startswith(
        _EXECUTABLE_MAGICS
    ):
        raise fail(
            name,
            "the DICOM preamble holds an executable (PE/ELF/Mach-O/script signature); "
            "refused (PS3.10 7.5: the preamble must be zeros or a TIFF header)",
            "executable_preamble",
        )
    stored = src
    src = _inflate_if_deflated(src, name)
    fh: Any = ClampedReader(src.fh, src.size)
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
        raise fail(name, "DICOM sequences nested too deeply", "bad_dicom") from None
    except EOFError:
        raise fail(name, "the DICOM file ends inside its header", "truncated") from None
    except MemoryError:
        raise fail(name, "a DICOM element is too large", "too_large") from None
    except Exception as exc:  # pydicom raises many types on corrupt files
        # The exception text may quote tag values: report only its type.
        raise fail(name, f"not a readable DICOM file ({type(exc).__name__})", "bad_dicom") from None
    if header_check is not None:
        header_check(header)
    if rows <= 0 or cols <= 0:
        raise fail(name, "DICOM file without an image (no Rows / Columns)", "bad_dicom")
    if not 1 <= n_frames <= MAX_FRAMES:
        raise fail(name, f"NumberOfFrames is beyond the limit of {MAX_FRAMES}", "too_large")
    if samples not in (1, 3, 4) or bits not in (1, 8, 16, 32, 64):
        raise fail(name, "unsupported SamplesPerPixel / BitsAllocated", "bad_dicom")
    check_size(name, rows, cols)
    # The pixel data element must follow the header and fit in the file.
    implicit, little = header.original_encoding
    try:
        fh.seek(pixel_offset)
        tag, length = _pixel_element_length(fh, bool(implicit), little is not False)
    except (EOFError, struct.error, OSError):
        raise fail(name, "DICOM file without pixel data (truncated?)", "truncated") from None
    if tag not in _PIXEL_TAGS:
        raise fail(name, "DICOM file without pixel data", "bad_dicom")
    if length != 0xFFFFFFFF and fh.tell() + length > src.size:
        raise fail(name, "the DICOM pixel data runs past the end of the file", "truncated")
    value_start = fh.tell()
    if ts in _NATIVE_TS:
        frame_bits = rows * cols * samples * bits
        if photometric == "YBR_FULL_422":
            frame_bits = frame_bits // 3 * 2
        need = (frame_bits * n_frames + 7) // 8
        if length == 0xFFFFFFFF or length < need:
            raise fail(
                name, "the DICOM pixel data is shorter than Rows x Columns x frames", "truncated"
            )
    indices = sample_frame_indices(n_frames, cine_frames)
    frames: list[npt.NDArray[Any]] = []
    look = photometric_of(header, name)
    full: Any = None  # the whole dataset, read only if decoding from the file fails
    for index in indices:
        if ts not in _NATIVE_TS:
            arr = _decode_encapsulated(fh, value_start, header, ts, index, n_frames, name)
            frames.append(dicom_frame(np.asarray(arr), look, name))
            continue
        arr = None
        try:
            arr = pixel_array(fh, index=index if n_frames > 1 else None, transfer_syntax_uid=ts)
        except MemoryError:
            raise fail(name, "the DICOM pixel data is too large", "too_large") from None
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
                raise fail(name, "the DICOM pixel data is too large", "too_large") from None
            except RecursionError:
                raise fail(name, "DICOM sequences nested too deeply", "bad_dicom") from None
            except Exception as exc:  # decoding errors, missing handlers, truncated data
                # The exception text may quote tag values: report only its type.
                raise fail(
                    name,
                    f"could not decode the DICOM pixel data ({type(exc).__name__})",
                    "undecodable",
                ) from None
        frames.append(dicom_frame(np.asarray(arr), look, name))
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
        key = sha256_of(fh)
    return DicomFrames(tuple(frames), indices, header, n_frames, look.invert, key)


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
        rows, cols, _ = jpeg_header(frame[start : start + (1 << 20)])
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
        raise fail(name, "the DICOM pixel data is too large", "too_large") from None
    except Exception as exc:
        raise fail(
            name,
            f"could not find frame {index} in the pixel data ({type(exc).__name__})",
            "undecodable",
        ) from None
    try:
        declared = _codestream_size(frame, ts)
    except (ValueError, struct.error):
        raise fail(name, "corrupt compressed frame header", "undecodable") from None
    if declared is not None and declared[0] * declared[1] > rows * cols:
        raise fail(
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
        raise fail(name, "the DICOM pixel data is too large", "too_large") from None
    except Exception as exc:  # decoding errors, missing handlers
        # The exception text may quote tag values: report only its type.
        raise fail(
            name, f"could not decode the DICOM pixel data ({type(exc).__name__})", "undecodable"
        ) from None


@dataclasses.dataclass(frozen=True)
class Photometric:
    """What a DICOM header says about turning decoded values into a MONOCHROME2 grey
    frame (:func:`photometric_of`; applied by :func:`dicom_frame`)."""

    photometric: str
    samples: int
    slope: float
    intercept: float
    stored_range: tuple[int, int]
    voi: tuple[int, npt.NDArray[np.uint16]] | None  # (first value mapped, the LUT) or None
    voi_range: tuple[int, int] | None
    invert: bool
    header: Any


def photometric_of(header: Any, name: str) -> Photometric:
    """The photometric facts of ``header`` (module docstring), validated once per file."""
    photometric = str(header.get("PhotometricInterpretation", "") or "").strip().upper()
    samples = _dicom_int(header, "SamplesPerPixel", 1) or 1
    try:
        slope = float(header.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(header.get("RescaleIntercept", 0.0) or 0.0)
    except (TypeError, ValueError):
        slope, intercept = 1.0, 0.0
    if not (math.isfinite(slope) and math.isfinite(intercept)):
        raise fail(name, "non-finite RescaleSlope / RescaleIntercept", "bad_dicom")
    stored = _dicom_int(header, "BitsStored", 0) or _dicom_int(header, "BitsAllocated", 16)
    stored = min(max(stored, 1), 32)
    signed = _dicom_int(header, "PixelRepresentation", 0) == 1
    lo, hi = (-(1 << (stored - 1)), (1 << (stored - 1)) - 1) if signed else (0, (1 << stored) - 1)
    voi = None
    voi_range = None
    seq = header.get("VOILUTSequence")
    if seq is not None and len(seq) and samples == 1:
        voi, bits = _voi_lut(seq[0], header, signed, name)
        voi_range = (0, (1 << bits) - 1)
    return Photometric(
        photometric=photometric,
        samples=samples,
        slope=slope,
        intercept=intercept,
        stored_range=(lo, hi),
        voi=voi,
        voi_range=voi_range,
        invert=photometric == "MONOCHROME1",
        header=header,
    )


def _voi_lut(
    item: Any, header: Any, signed: bool, name: str
) -> tuple[tuple[int, npt.NDArray[np.uint16]], int]:
    """``((first value mapped, LUT), bits per entry)`` of a VOI LUT Sequence item
    (PS3.3 C.11.2.1.1: LUT Descriptor = entries (0: 65536), first value mapped (signed
    when the pixels are), bits per entry; LUT Data one 16-bit word per entry)."""
    try:
        desc = [int(v) for v in item.LUTDescriptor]
        n, first, bits = (desc[0] or 65536), desc[1], desc[2]
        if signed and first >= 0x8000:
            first -= 0x10000
        raw = item.LUTData
        if isinstance(raw, (bytes, bytearray)):
            little = header.original_encoding[1] is not False
            lut = np.frombuffer(raw, "<u2" if little else ">u2")
        else:
            lut = np.asarray(list(raw) if not isinstance(raw, int) else [raw], dtype=np.int64)
        if not 1 <= bits <= 16 or lut.size < n:
            raise ValueError("LUT Descriptor does not match the LUT Data")
        table = (lut[:n].astype(np.int64) & ((1 << bits) - 1)).astype(np.uint16)
    except Exception:
        raise fail(name, "unusable VOI LUT Sequence (LUT Descriptor / Data)", "bad_dicom") from None
    return (first, table), bits


def rgb_to_grey(arr: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """``(H, W, 3|4)`` RGB(A) -> ``(H, W)`` grey with the ITU-R BT.601 luma weights
    (``0.299 R + 0.587 G + 0.114 B``): OpenCV's conversion for uint8 / uint16 / float32
    (the one ``Diagnoser(color_order="rgb")`` uses), float64 arithmetic otherwise."""
    import cv2

    rgb = np.ascontiguousarray(arr[..., :3])
    if rgb.dtype in (np.uint8, np.uint16, np.float32):
        grey: npt.NDArray[Any] = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        return grey
    f = rgb.astype(np.float64)
    out: npt.NDArray[Any] = 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]
    return out


def dicom_frame(arr: npt.NDArray[Any], look: Photometric, name: str) -> npt.NDArray[Any]:
    """One decoded frame -> a 2-D MONOCHROME2 grey frame by the photometric path of the
    module docstring (steps 2-6; pydicom did step 1)."""
    samples = look.samples
    if look.photometric == "PALETTE COLOR" and arr.ndim == 2:
        try:
            from pydicom.pixels.processing import apply_color_lut

            arr = np.asarray(apply_color_lut(arr, look.header))
        except Exception as exc:
            raise fail(
                name, f"could not apply the palette ({type(exc).__name__})", "undecodable"
            ) from None
        if arr.dtype == np.uint16:
            arr = (arr >> 8).astype(np.uint8)
        samples = 3
    if samples > 1 and arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = rgb_to_grey(arr)
    if arr.ndim != 2:
        raise fail(name, f"unsupported DICOM pixel array shape {arr.shape}", "bad_dicom")
    lo, hi = look.stored_range
    rescaled = look.slope != 1.0 or look.intercept != 0.0
    if rescaled:
        arr = np.ascontiguousarray(arr.astype(np.float64) * look.slope + look.intercept)
    if look.voi is not None:
        first, table = look.voi
        index = np.rint(arr).astype(np.int64) if arr.dtype.kind == "f" else arr.astype(np.int64)
        arr = table[np.clip(index - first, 0, table.size - 1)]
        assert look.voi_range is not None
        lo, hi = look.voi_range
        rescaled = False
    elif rescaled:
        lo_r, hi_r = lo * look.slope + look.intercept, hi * look.slope + look.intercept
        lo, hi = min(lo_r, hi_r), max(lo_r, hi_r)  # type: ignore[assignment]
    if look.invert and samples == 1:
        if arr.dtype in (np.uint8, np.uint16) and lo == 0:
            arr = (np.asarray(hi, arr.dtype) - np.minimum(arr, hi)).astype(arr.dtype)
        else:
            arr = np.ascontiguousarray((lo + hi) - arr.astype(np.float64))
    if arr.dtype == np.float64:
        return np.ascontiguousarray(arr)
    return as_supported(np.ascontiguousarray(arr), name)


def plain_dataset(header: Any) -> Any:
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


def burned_in_annotation(header: Any) -> bool:
    """Whether a DICOM header says its pixels may show burned-in text: Burned In
    Annotation (0028,0301) is ``YES``, or the modality is ultrasound and the attribute is
    absent (ultrasound frames usually carry it)."""
    burned = str(header.get("BurnedInAnnotation", "") or "").strip().upper()
    modality, _ = dicom_modality(header)
    return burned == "YES" or (modality == "ultrasound" and burned == "")


def guarded_dicom(name: str, read: Callable[[], _T]) -> _T:
    """``read()`` with pydicom's warnings silenced and any error it lets through (a
    corrupt header value pydicom chokes on late) as :class:`InvalidInputError`."""
    with quiet_dicom():
        try:
            return read()
        except InvalidInputError:
            raise
        except RecursionError:
            raise fail(name, "DICOM sequences nested too deeply", "bad_dicom") from None
        except Exception as exc:  # the text may quote tag values: report only its type
            raise fail(
                name, f"not a readable DICOM file ({type(exc).__name__})", "bad_dicom"
            ) from None
