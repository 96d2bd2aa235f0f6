"""Data sets of phantoms: :func:`generate` (balanced, seeded) and :func:`write` (files)."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .._errors import InvalidInputError
from .._validation import check_float, check_int
from ._common import LABELS, Sample, check_seed, check_size
from ._ultrasound import ultrasound
from ._xray import chest_xray

__all__ = ["FORMATS", "generate", "sample_seed", "write"]

FORMATS = ("png", "npy", "dcm")
MAX_SAMPLES = 10_000_000

_DX_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
_US_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.6.1"  # Ultrasound Image Storage


def sample_seed(seed: int, index: int) -> int:
    """Seed of sample ``index`` of the set ``seed``: 128 bits of
    ``SeedSequence(seed, spawn_key=(index,))``, so sets never share samples."""
    state = np.random.SeedSequence(seed, spawn_key=(index,)).generate_state(2, np.uint64)
    return (int(state[0]) << 64) | int(state[1])


def _check_modality(modality: object) -> str:
    if not isinstance(modality, str) or modality not in LABELS:
        raise InvalidInputError(f"modality must be 'xray' or 'ultrasound', got {modality!r}")
    return modality


def generate(
    modality: str,
    n: int,
    *,
    seed: int,
    size: int = 256,
    positive_fraction: float = 0.5,
    progress: bool = False,
    **kwargs: Any,
) -> list[Sample]:
    """Simulate a labelled set of ``n`` phantoms with an exact class balance.

    Parameters
    ----------
    modality : {"xray", "ultrasound"}
    n : int
        Number of samples (>= 0).
    seed : int
        Seed of the set.  Sample ``i`` uses :func:`sample_seed` ``(seed, i)`` (derived with
        :class:`numpy.random.SeedSequence`), so sets with different seeds never share
        samples and any sample can be regenerated alone from ``params["seed"]``.
    size : int, default 256
        Image side, 64 ... 4096.
    positive_fraction : float, default 0.5
        Fraction of samples with a lesion, in [0, 1]; ``round(positive_fraction * n)``
        positives, for ultrasound split as evenly as possible over cyst, hypoechoic and
        hyperechoic.  The order of the classes is shuffled (deterministically by ``seed``).
    progress : bool, default False
        Show a tqdm progress bar on stderr.
    **kwargs
        Forwarded to :func:`chest_xray` (``dose``, ``opacity``, ``bits``, ``blur_px``,
        ``lesion_prior``) or :func:`ultrasound` (``geometry``, ``snr_db``, ``blur_px``,
        ``lesion_prior``).  ``nodule`` / ``lesion`` are not
        accepted: ``positive_fraction`` sets them.

    Returns
    -------
    list of Sample

    Raises
    ------
    InvalidInputError
        For an unknown modality, a negative ``n``, a ``positive_fraction`` outside
        [0, 1], an unknown keyword or an invalid forwarded argument.
    """
    from tqdm import tqdm

    modality = _check_modality(modality)
    n = check_int("n", n, 0, MAX_SAMPLES)
    seed = check_seed(seed)
    size = check_size(size)
    frac = check_float("positive_fraction", positive_fraction, 0.0, 1.0)
    allowed = {
        "xray": ("dose", "opacity", "bits", "blur_px", "lesion_prior"),
        "ultrasound": ("geometry", "snr_db", "blur_px", "lesion_prior"),
    }
    unknown = sorted(set(kwargs) - set(allowed[modality]))
    if unknown:
        raise InvalidInputError(
            f"generate({modality!r}) does not accept {', '.join(unknown)}; allowed keywords: "
            f"{', '.join(allowed[modality])} (positive_fraction sets the lesion classes)"
        )
    n_pos = round(frac * n)
    positives = list(LABELS[modality][1:])
    labels = [positives[k % len(positives)] for k in range(n_pos)] + ["normal"] * (n - n_pos)
    order = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1 << 32,)))
    labels = [labels[k] for k in order.permutation(n)]
    out: list[Sample] = []
    for i in tqdm(
        range(n), desc=f"synth {modality}", unit="img", disable=not progress, file=sys.stderr
    ):
        s = sample_seed(seed, i)
        if modality == "xray":
            out.append(chest_xray(s, size=size, nodule=labels[i] != "normal", **kwargs))
        else:
            lesion = "none" if labels[i] == "normal" else labels[i]
            out.append(ultrasound(s, size=size, lesion=lesion, **kwargs))
    return out


def _write_dicom(path: Path, sample: Sample, uid_seed: str) -> None:
    try:
        import pydicom
        from pydicom.dataset import FileMetaDataset
        from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid
    except ImportError:
        raise InvalidInputError(
            "writing DICOM needs pydicom: pip install pydicom (or 'medimg-edge[dicom]')"
        ) from None
    xray = sample.modality == "xray"
    sop_class = UID(_DX_SOP_CLASS if xray else _US_SOP_CLASS)
    sop_uid = generate_uid(entropy_srcs=[uid_seed, "sop"])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[uid_seed, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[uid_seed, "series"])
    ds.Modality = "DX" if xray else "US"
    ds.PatientName = "SYNTHETIC^PHANTOM"
    ds.PatientID = "SYNTHETIC"
    ds.PatientIdentityRemoved = "YES"
    ds.BurnedInAnnotation = "NO"
    ds.ImageComments = f"synthetic phantom ({sample.label}); not for clinical use"
    ds.Manufacturer = "medimg-edge synth"
    img = np.ascontiguousarray(sample.image)
    bits = int(sample.params.get("bits", 8)) if xray else 8
    ds.Rows, ds.Columns = img.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = img.dtype.itemsize * 8
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.PixelData = img.tobytes()
    ds.save_as(os.fspath(path), enforce_file_format=True)


def write(samples: list[Sample], folder: str | os.PathLike[str], *, fmt: str = "png") -> Path:
    """Write samples as class folders with masks and a manifest.

    Layout: ``folder/<label>/<modality>_<k:06d>.<ext>`` (``k`` the index in
    ``samples``), the mask as ``folder/masks/<label>/<modality>_<k:06d>.png`` (0 / 255)
    and ``folder/manifest.csv`` with the columns ``path, label, modality, y0, x0, y1,
    x1, params_json`` (paths relative to ``folder``; empty box cells for normal samples).

    Parameters
    ----------
    samples : list of Sample
    folder : path-like
        Created if needed; existing files of the same names are overwritten.
    fmt : {"png", "npy", "dcm"}
        PNG keeps 16 bits for X-ray (``cv2.imwrite``); ``npy`` the array as is; DICOM
        (needs pydicom) writes Modality DX / US, synthetic UIDs, PatientName
        ``SYNTHETIC^PHANTOM`` and no other identifiers.

    Returns
    -------
    Path
        The manifest file.

    Raises
    ------
    InvalidInputError
        For an unknown format, a non-Sample item, missing pydicom for ``"dcm"`` or a
        file that cannot be written.
    """
    if not isinstance(fmt, str) or fmt not in FORMATS:
        raise InvalidInputError(f"fmt must be one of {', '.join(FORMATS)}, got {fmt!r}")
    root = Path(folder)
    rows: list[list[str]] = []
    for k, sample in enumerate(samples):
        if not isinstance(sample, Sample):
            raise InvalidInputError(f"samples[{k}] is a {type(sample).__name__}, not a Sample")
        rel = Path(sample.label) / f"{sample.modality}_{k:06d}.{fmt}"
        path = root / rel
        mask_path = root / "masks" / rel.with_suffix(".png")
        path.parent.mkdir(parents=True, exist_ok=True)
        mask_path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "png":
            ok = cv2.imwrite(os.fspath(path), sample.image)
        elif fmt == "npy":
            np.save(path, sample.image, allow_pickle=False)
            ok = True
        else:
            _write_dicom(path, sample, f"{sample.params.get('seed')}/{k}/{sample.modality}")
            ok = True
        ok = ok and cv2.imwrite(os.fspath(mask_path), sample.mask.astype(np.uint8) * 255)
        if not ok:
            raise InvalidInputError(f"could not write {rel.as_posix()} under {root}")
        box = [str(v) for v in sample.bbox] if sample.bbox is not None else ["", "", "", ""]
        rows.append(
            [rel.as_posix(), sample.label, sample.modality, *box, json.dumps(sample.params)]
        )
    manifest = root / "manifest.csv"
    root.mkdir(parents=True, exist_ok=True)
    with open(manifest, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "modality", "y0", "x0", "y1", "x1", "params_json"])
        writer.writerows(rows)
    return manifest
