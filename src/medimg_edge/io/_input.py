"""The readers every client uses: :func:`read_input` (frames, modality, header, flags)
and :func:`read_image` (one 2-D grey frame)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .._clip import sample_frame_indices
from .._errors import InvalidInputError
from .._modality import Modality, dicom_modality
from ._dicom import (
    burned_in_annotation,
    guarded_dicom,
    plain_dataset,
    read_dicom,
    rgb_to_grey,
)
from ._npy import read_npy
from ._open import MAX_FILE_BYTES, OpenFile, fail, open_regular, sha256_of
from ._raster import read_raster

__all__ = ["ERROR_CODES", "InputImage", "read_image", "read_input"]

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
    "unsupported_modality": "a DICOM file of a modality no model serves (CT, MR, NM, ...)",
    "unknown_modality": "nothing says the input's modality (see medimg_edge._modality)",
}


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
    modality: Modality | None
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


def _array_frames(
    arr: npt.NDArray[Any], cine_frames: int
) -> tuple[tuple[npt.NDArray[Any], ...], tuple[int, ...], int]:
    """(grey frames, their indices, frames in the array) of a ``.npy`` image: one frame
    for 2-D or ``(H, W, 3|4)`` colour (RGB -> grey), the sampled frames
    (:func:`~medimg_edge._clip.sample_frame_indices`) of a clip ``(n, H, W[, 3|4])``."""
    colour = arr.ndim in (3, 4) and arr.shape[-1] in (3, 4) and arr.dtype == np.uint8
    if arr.ndim == 2:
        return (arr,), (0,), 1
    if arr.ndim == 3 and colour:
        return (rgb_to_grey(arr),), (0,), 1
    n = int(arr.shape[0])
    indices = sample_frame_indices(n, cine_frames)
    frames = tuple(rgb_to_grey(arr[i]) if colour else np.ascontiguousarray(arr[i]) for i in indices)
    return frames, indices, n


def _dicom_input(
    src: OpenFile,
    name: str,
    cine_frames: int,
    content_hash: bool,
    header_check: Callable[[Any], None] | None,
) -> InputImage:
    """The DICOM part of :func:`read_input`."""
    got = read_dicom(src, name, cine_frames=cine_frames, header_check=header_check)
    header = got.header
    modality, _ = dicom_modality(header)
    flags: list[str] = []
    if burned_in_annotation(header):
        flags.append("burned_in_annotation")
    if len(got.indices) < got.n_frames:
        flags.append("cine_sampled")
    if got.inverted:
        flags.append("monochrome1_inverted")
    if str(header.get("LossyImageCompression", "") or "").strip() == "01":
        flags.append("lossy_compressed")
    try:
        dataset = plain_dataset(header)
    except Exception as exc:
        raise fail(
            name, f"not a readable DICOM header ({type(exc).__name__})", "bad_dicom"
        ) from None
    sha = sha256_of(src.fh) if content_hash or got.key is None else None
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
    header_check: Callable[[Any], None] | None = None,
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

    header_check : callable, optional
        ``header_check(dataset)`` is called with a DICOM file's header once it is read,
        before any pixel is decoded; it may raise :class:`InvalidInputError` to refuse
        the file (:class:`medimg_edge.triage.Triage` refuses modalities no model serves).

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
    src = open_regular(Path(path), name, max_bytes)
    try:
        if src.kind != "dicom":
            assert src.kind is not None
            digest = hashlib.sha256()
            if src.kind == "npy":
                frames, indices, n = _array_frames(read_npy(src, name, digest), cine_frames)
            else:
                frames, indices, n = (read_raster(src, name, digest),), (0,), 1
            sha = digest.hexdigest()
            return InputImage(
                frames=frames,
                frame_indices=indices,
                modality=None,
                kind=src.kind,
                dataset=None,
                flags=("cine_sampled",) if len(indices) < n else (),
                instance_key=sha,
                sha256=sha,
                n_frames=n,
            )
        return guarded_dicom(
            name, lambda: _dicom_input(src, name, cine_frames, content_hash, header_check)
        )
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
                       never unpickles; 2-D (or ``(M, N, 1)``) numeric arrays,
                       ``(M, N, 3|4)`` uint8 RGB(A) (to grey, BT.601) and clips
                       ``(n, M, N[, 3|4])`` (the first frame)
    DICOM              ``.dcm`` / ``.dicom`` suffix or the ``DICM`` signature at byte
                       128; pydicom (the ``[dicom]`` extra) is imported only then.
                       Rows x Columns x NumberOfFrames is checked against the pixel
                       data before it is decoded.  RescaleSlope / RescaleIntercept
                       are applied (the result is then float64, e.g. Hounsfield
                       units); a multi-frame file gives its **first frame** (only
                       that frame is decoded); the one photometric path of
                       :mod:`medimg_edge.io._dicom` (palette, YBR and RGB to grey,
                       VOI LUT, MONOCHROME1 inverted), as :func:`read_input`
    =================  ===========================================================

    The format comes from the file's signature first, its suffix second.  Other integer
    types are widened exactly (:func:`medimg_edge._validation.widen_integer`).  :func:`read_input`
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
    src = open_regular(Path(path), name, MAX_FILE_BYTES)
    try:
        if src.kind == "npy":
            return _array_frames(read_npy(src, name), 1)[0][0]
        if src.kind == "dicom":
            got = guarded_dicom(name, lambda: read_dicom(src, name, cine_frames=1))
            return got.frames[0]
        return read_raster(src, name)
    finally:
        src.fh.close()
