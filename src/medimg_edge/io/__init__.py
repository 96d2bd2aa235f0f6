"""Image readers: PNG / JPEG / TIFF (OpenCV), NumPy ``.npy`` and DICOM (pydicom), by format.

* :func:`read_input` returns an :class:`InputImage`: the frames to diagnose (the
  sampled frames of a multi-frame cine, :mod:`medimg_edge._clip`), the modality from the
  DICOM header, the header itself (without its pixel data), flags such as burned-in
  annotation and a patient-free ``instance_key``.  Every client (the API on a file,
  ``medimg-edge diagnose``, the daemon, ``medimg-edge batch``) reads through it, via
  :mod:`medimg_edge.triage`.
* :func:`read_image` returns one 2-D grayscale frame (the first), by the same path.
* :func:`open_regular`, :func:`sniff_format`, :func:`sha256_of`: the safe-file layer;
  :func:`find_images`: the one folder walker.

Layout: ``_open`` (safe files, limits, sniffing, hashing), ``_raster`` (PNG/JPEG/TIFF),
``_npy``, ``_dicom`` (header, decoding, the one photometric path), ``_input`` (the two
readers), ``_find`` (folders).

All readers are hardened against hostile files: the file must be a regular file no
larger than :data:`MAX_FILE_BYTES`; sizes are checked from the file header before any
pixel is decoded (at most :data:`~medimg_edge._validation.MAX_PIXELS` pixels per frame);
a raster whose declared size could not come from a file that small (a *decompression
bomb*) is refused before OpenCV allocates anything; so is a compressed DICOM frame whose
JPEG / JPEG-LS / JPEG 2000 codestream declares more pixels than Rows x Columns; DICOM
element lengths that run past the end of the file are refused before they are read; a
DICOM preamble holding an executable (``MZ``, ELF, Mach-O, ``#!``) is refused; ``.npy``
files are read with ``allow_pickle=False``.

Every error is an :class:`~medimg_edge.InvalidInputError` with a machine-readable
``code`` (:data:`ERROR_CODES`) and a message that names the file by its *name* only, or by
the caller's ``label`` (never its folder, and never a value read from DICOM tags: no
patient data).
"""

from __future__ import annotations

from .._clip import sample_frame_indices
from .._modality import MODALITY_MAP
from ._dicom import MAX_FRAMES, burned_in_annotation
from ._find import IMAGE_SUFFIXES, find_images
from ._input import ERROR_CODES, InputImage, read_image, read_input
from ._open import (
    BOMB_MIN_BYTES,
    BOMB_RATIO,
    MAX_FILE_BYTES,
    OpenFile,
    open_regular,
    quiet_dicom,
    sha256_of,
    sniff_format,
)

__all__ = [
    "BOMB_MIN_BYTES",
    "BOMB_RATIO",
    "ERROR_CODES",
    "IMAGE_SUFFIXES",
    "MAX_FILE_BYTES",
    "MAX_FRAMES",
    "MODALITY_MAP",
    "InputImage",
    "OpenFile",
    "burned_in_annotation",
    "find_images",
    "open_regular",
    "quiet_dicom",
    "read_image",
    "read_input",
    "sample_frame_indices",
    "sha256_of",
    "sniff_format",
]
