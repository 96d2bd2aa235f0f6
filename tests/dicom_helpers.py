"""DICOM test inputs shared by ``tests/`` and ``bench/``: pydicom's bundled test files, the
PHI canary CT and small single- or multi-frame ultrasound datasets built with pydicom.

pydicom is imported inside the functions, so that importing this module never needs it
(callers skip with ``pytest.importorskip("pydicom")`` first).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

#: Ultrasound Image Storage (single- and multi-frame, as the daemon tests write it).
US_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.6.1"


def bundled(name: str) -> str:
    """Path of a test file bundled in the pydicom wheel (fails if it is missing)."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    assert path is not None, f"pydicom test file {name} is missing"
    return str(path)


def canary_ct_dataset() -> Any:
    """``CT_small.dcm`` as a dataset whose PatientName / PatientID are the PHI canary
    (``DOE^JOHN`` / ``PHI-12345``)."""
    import pydicom

    ds = pydicom.dcmread(bundled("CT_small.dcm"))
    ds.PatientName = "DOE^JOHN"
    ds.PatientID = "PHI-12345"
    return ds


def _image_dataset(sop_class: str, modality: str, pixels: np.ndarray, attrs: dict[str, Any]) -> Any:
    """A MONOCHROME2 dataset of ``sop_class`` (Explicit VR Little Endian, fresh UIDs,
    BurnedInAnnotation ``NO``) holding ``pixels`` (``(H, W)`` or ``(N, H, W)``, ``uint8``
    or ``uint16``; ``N`` > 1 sets NumberOfFrames); ``attrs`` set last (pydicom's value
    warnings silenced, so a deliberately bad value can be set)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    bits = 8 * pixels.dtype.itemsize
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.BurnedInAnnotation = "NO"
    if pixels.ndim == 3 and pixels.shape[0] > 1:
        ds.NumberOfFrames = pixels.shape[0]
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for key, value in attrs.items():
            setattr(ds, key, value)
    return ds


def us_dataset(pixels: np.ndarray, **attrs: Any) -> Any:
    """An 8-bit MONOCHROME2 ultrasound dataset (Explicit VR Little Endian, fresh UIDs,
    Modality ``US``, BurnedInAnnotation ``NO``) holding ``pixels``: ``(H, W)`` or
    ``(N, H, W)`` ``uint8``; ``N`` > 1 sets NumberOfFrames.  ``attrs`` are set last
    (keyword = value; pydicom's value warnings are silenced, so a deliberately bad
    value can be set)."""
    return _image_dataset(US_IMAGE_STORAGE, "US", np.asarray(pixels, dtype=np.uint8), attrs)


#: Digital X-Ray Image Storage - For Presentation.
DX_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"


def dx_dataset(pixels: np.ndarray, **attrs: Any) -> Any:
    """A MONOCHROME2 Digital X-Ray (For Presentation) dataset (Explicit VR Little Endian,
    fresh UIDs, Modality ``DX``) holding ``pixels``: ``(H, W)`` ``uint8`` or ``uint16``
    (Bits Stored 8 or 16).  ``attrs`` are set last, as for :func:`us_dataset`."""
    if pixels.ndim != 2 or pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError("dx_dataset needs an (H, W) uint8 or uint16 array")
    return _image_dataset(
        DX_IMAGE_STORAGE, "DX", pixels, {"PresentationIntentType": "FOR PRESENTATION", **attrs}
    )
