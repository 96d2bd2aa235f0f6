"""DICOM outputs of the watch-folder daemon: a Comprehensive SR with the finding and a
Secondary Capture of the overlay picture, both in the study of the input (highdicom).

The SR holds a **TID 1500 Measurement Report** (``highdicom.sr.MeasurementReport``; its
content, the codes and the private codes are described in :mod:`._sr`): the algorithm,
the triage status as a coded Normality evaluation, the predicted class as a coded Finding,
one measurement group per class with its calibrated probability, coded reasons for an
indeterminate result and, for a positive one, the finding's location as an image region
(SCOORD) on the source instance and frame.  Comprehensive SR (not Enhanced / 3D): 2-D
image coordinates and NUM items are all it needs.  Content Date / Time and Instance
Creation Date / Time are the time of writing in UTC (Timezone Offset From UTC ``+0000``);
the Series Number is configurable (``series_number``, default :data:`SR_SERIES_NUMBER`).
The private coding scheme ``99MEDIMG`` is declared in the Coding Scheme Identification
Sequence.  The Secondary Capture carries Laterality (General Series, Type 2C): the
source's Laterality or Image Laterality when it is ``R`` or ``L``, else empty.

Both outputs keep the input's Study Instance UID (new Series and SOP Instance UIDs) and
reference the source instance: the SR through its image region / source image items and the
Current Requested Procedure Evidence Sequence, the SC through Source Image Sequence.
Patient and study attributes copied from the source are only those of the Patient and
General Study modules (name, ID, birth date, sex, accession number, study ID, date, time,
referring physician): nothing else of the input header reaches an output.  With
``deidentify=True`` the source attributes are de-identified *before* the object is built
(so SR and SC share the same replaced UIDs) and the finished object passes through
:func:`._deid.deidentify` once more (without replacing UIDs again); the de-identified SR's
dates are the profile's dummies.  Without a source (PNG/JPEG/TIFF/.npy input), or with a
source that has no Study Instance UID, the outputs go to a new study made by
:func:`placeholder_source`: Patient Name ``ANONYMOUS``, Patient ID ``UNKNOWN``, empty birth
date and sex, Study ID ``MEDIMG``; pass the same placeholder to both encoders (as
``source_dataset``) to put them in one study.

Files are written with a zeroed 128-byte preamble, ``DICM`` and a File Meta Information
group (Explicit VR Little Endian).
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import io
import re
from typing import Any

import numpy as np
import numpy.typing as npt

from .._errors import InvalidInputError
from .._version import __version__
from ..io import burned_in_annotation, quiet_dicom
from ._deid import _deidentify

__all__ = [
    "SC_SERIES_NUMBER",
    "SR_SERIES_NUMBER",
    "encode_secondary_capture",
    "encode_sr",
    "placeholder_source",
]

#: Series numbers of the outputs (new series in the input's study).
SR_SERIES_NUMBER = 9901
SC_SERIES_NUMBER = 9902
#: Single-frame image storage SOP classes (ultrasound, secondary capture, CR, DX, digital
#: mammography / intra-oral, retired ultrasound): a reference to one of them never names a
#: frame (PS3.3 C.17.3.2.1: Referenced Frame Number only for multi-frame SOP classes), even
#: when the source (wrongly) holds several frames.
SINGLE_FRAME_SOP_CLASSES = frozenset(
    "1.2.840.10008.5.1.4.1.1." + s
    for s in ("6.1", "6", "7", "1", "1.1", "1.1.1", "1.2", "1.2.1", "1.3", "1.3.1")
)
_MANUFACTURER = "medimg-edge"
_LOCAL = "99MEDIMG"
_DA = re.compile(r"^\d{8}$")
_TM = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")
_PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)


def placeholder_source(key: str | None = None) -> Any:
    """A source header for outputs of an input that has no DICOM header: a new study with
    non-identifying placeholder patient attributes.

    Parameters
    ----------
    key : str, optional
        E.g. :attr:`medimg_edge.io.InputImage.instance_key`: the Study Instance UID is
        derived from it (``2.25.<sha-256 of the key>``), so both outputs of one input, and
        a repeated run after a crash, land in the same study.  Default: a random study.
    """
    import pydicom
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "ANONYMOUS"
    ds.PatientID = "UNKNOWN"
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.AccessionNumber = ""
    ds.StudyID = "MEDIMG"
    now = datetime.datetime.now()
    ds.StudyDate = now.strftime("%Y%m%d")
    ds.StudyTime = now.strftime("%H%M%S")
    ds.ReferringPhysicianName = ""
    if key is None:
        ds.StudyInstanceUID = pydicom.uid.generate_uid(prefix=None)
    else:
        digest = hashlib.sha256(("medimg-edge study " + key).encode()).digest()
        ds.StudyInstanceUID = "2.25." + str(int.from_bytes(digest[:16], "big"))
    return ds


def _clean_value(keyword: str, value: Any) -> Any:
    """Drop values that are invalid for their VR (e.g. a malformed birth date)."""
    text = "" if value is None else str(value).strip()
    if keyword.endswith("Date"):
        return text if _DA.match(text) else ""
    if keyword.endswith("Time"):
        return text if _TM.match(text) else ""
    if keyword == "PatientSex":
        return text if text in ("M", "F", "O") else ""
    return value if value is not None else ""


def _evidence(source: Any, *, deidentify: bool, salt: bytes | None) -> tuple[Any, bool]:
    """The slim header the outputs are built from, and whether it references an instance."""
    from pydicom.dataset import Dataset

    if source is not None and not isinstance(source, Dataset):
        raise TypeError(f"source_dataset must be a pydicom Dataset or None, not {type(source)}")
    if source is None or not str(source.get("StudyInstanceUID", "") or "").strip():
        src = placeholder_source()
    else:
        src = source
    ev = Dataset()
    charset = src.get("SpecificCharacterSet")
    if charset:
        ev.SpecificCharacterSet = charset
    for keyword in _PATIENT_STUDY:
        setattr(ev, keyword, _clean_value(keyword, src.get(keyword, "")))
    ev.StudyInstanceUID = str(src.StudyInstanceUID).strip()
    has_instance = all(
        str(src.get(k, "") or "").strip()
        for k in ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID")
    )
    if has_instance:
        for keyword in ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID"):
            setattr(ev, keyword, str(src.get(keyword)).strip())
        for keyword in ("Modality", "BurnedInAnnotation", "PatientOrientation"):
            if keyword in src:
                setattr(ev, keyword, src.get(keyword))
    # Laterality (General Series, Type 2C): the source's, or its Image Laterality, when
    # it names one side; else empty (dciodvfy asks for the attribute).
    sides = [str(src.get(k, "") or "").strip() for k in ("Laterality", "ImageLaterality")]
    ev.Laterality = next((v for v in sides if v in ("R", "L")), "")
    if deidentify:  # the markers go on the outputs (_finish), not on this header
        ev = _deidentify(ev, (), salt, False, True, mark=False)
    return ev, has_instance


def _write(ds: Any) -> bytes:
    import pydicom

    ds.preamble = bytes(128)
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    data = buf.getvalue()
    if data[:128] != bytes(128) or data[128:132] != b"DICM":  # pragma: no cover
        raise RuntimeError("DICOM output without a zeroed preamble")
    return data


def _finish(ds: Any, *, deidentify: bool, salt: bytes | None, clean_content: bool) -> bytes:
    if deidentify:  # ``ds`` is the encoder's own new object: de-identified in place
        ds = _deidentify(ds, (), salt, clean_content, False, copy=False)
    return _write(ds)


def _diagnosis_fields(diagnosis: Any) -> dict[str, Any]:
    fields = {
        "status": str(diagnosis.status),
        "label": None if diagnosis.label is None else str(diagnosis.label),
        "confidence": diagnosis.confidence,
        "positive_score": diagnosis.positive_score,
        "scores": dict(diagnosis.scores),
        "reasons": tuple(str(r) for r in diagnosis.reasons),
        "model": dict(diagnosis.model),
        "package_version": str(diagnosis.package_version),
        "notice": str(diagnosis.notice),
    }
    return fields


def encode_sr(
    diagnosis: Any,
    source_dataset: Any,
    *,
    deidentify: bool,
    salt: bytes | None = None,
    frame_index: int | None = None,
    series_number: int = SR_SERIES_NUMBER,
    negative_label: str | None = None,
    now: datetime.datetime | None = None,
) -> bytes:
    """A Comprehensive SR document (bytes of a DICOM file) holding a TID 1500 Measurement
    Report of ``diagnosis`` (content: :mod:`medimg_edge.daemon._sr`).

    Parameters
    ----------
    diagnosis : medimg_edge.Diagnosis
    source_dataset : pydicom.Dataset or None
        The input's header (:attr:`medimg_edge.io.InputImage.dataset`); ``None`` for a
        non-DICOM input (a new study, see :func:`placeholder_source`).
    deidentify : bool
        Apply the PS3.15 Basic Profile (:func:`medimg_edge.daemon._deid.deidentify`).
    salt : bytes, optional
        UID replacement secret (default: per process).
    frame_index : int, optional
        0-based index of the diagnosed frame of a multi-frame source (referenced as
        frame ``frame_index + 1``; not for a source of a single-frame SOP class,
        :data:`SINGLE_FRAME_SOP_CLASSES`).
    series_number : int
        Series Number of the SR (default :data:`SR_SERIES_NUMBER`).
    negative_label : str, optional
        The model's negative class (default: found from the scores, the class whose
        probability is ``1 - positive_score``).
    now : datetime.datetime, optional
        Content date / time (default: now, UTC; Timezone Offset From UTC ``+0000``).

    Returns
    -------
    bytes
    """
    number = _series_number(series_number)
    with quiet_dicom():
        return _encode_sr(
            diagnosis, source_dataset, deidentify, salt, frame_index, number, negative_label, now
        )


def _series_number(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2**31 - 1:
        raise InvalidInputError(f"series_number must be an integer 0..2147483647, got {value!r}")
    return value


def _negative_label(diagnosis: Any) -> str | None:
    """The class whose probability is ``1 - positive_score`` (the model's negative one)."""
    if diagnosis.status == "negative" and diagnosis.label is not None:
        return str(diagnosis.label)
    if diagnosis.positive_score is None:
        return None
    target = 1.0 - float(diagnosis.positive_score)
    close = [k for k, v in diagnosis.scores.items() if abs(float(v) - target) <= 1e-9]
    return str(close[0]) if len(close) == 1 else None


def _device_uid(model: dict[str, Any]) -> str:
    """Device Observer UID: ``2.25.<sha-256 of the model file's sha256>`` (names the
    algorithm, the same on every host that runs the same model)."""
    key = "medimg-edge device " + str(model.get("sha256", "") or model.get("name", ""))
    digest = hashlib.sha256(key.encode()).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def _encode_sr(
    diagnosis: Any,
    source_dataset: Any,
    deidentify: bool,
    salt: bytes | None,
    frame_index: int | None,
    series_number: int,
    negative_label: str | None,
    now: datetime.datetime | None,
) -> bytes:
    import highdicom as hd
    import pydicom

    from . import _sr

    ev, has_instance = _evidence(source_dataset, deidentify=deidentify, salt=salt)
    reference = None
    rows = columns = None
    if has_instance:
        frames = None
        n_frames = int(source_dataset.get("NumberOfFrames", 1) or 1)
        multi = n_frames > 1 and str(ev.SOPClassUID) not in SINGLE_FRAME_SOP_CLASSES
        if frame_index is not None and int(frame_index) >= 0 and multi:
            frames = [int(frame_index) + 1]
        reference = (str(ev.SOPClassUID), str(ev.SOPInstanceUID), frames)
        rows, columns = source_dataset.get("Rows"), source_dataset.get("Columns")
    region = None
    if diagnosis.status == "positive" and reference is not None:
        region = _sr.heatmap_region(diagnosis.heatmap, rows, columns)
    modality = str(ev.get("Modality", "") or diagnosis.frame.get("modality", "") or "")
    content = _sr.measurement_report(
        diagnosis,
        reference=reference,
        modality=modality,
        device_uid=_device_uid(dict(diagnosis.model)),
        negative_label=negative_label if negative_label is not None else _negative_label(diagnosis),
        region=region,
    )
    evidence = [ev]
    if not has_instance:
        # highdicom needs an instance to collect evidence from; this one is never written
        # (the evidence sequence is removed below) and nothing references it.
        stub = copy.deepcopy(ev)
        stub.SOPClassUID = pydicom.uid.SecondaryCaptureImageStorage
        stub.SOPInstanceUID = hd.UID()
        stub.SeriesInstanceUID = hd.UID()
        evidence = [stub]
    sr = hd.sr.ComprehensiveSR(
        evidence=evidence,
        content=content,
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=_MANUFACTURER,
        is_complete=True,
        is_final=False,
        is_verified=False,
        record_evidence=has_instance,
        series_description="medimg-edge triage (not for clinical use)",
    )
    if not has_instance and "CurrentRequestedProcedureEvidenceSequence" in sr:
        del sr.CurrentRequestedProcedureEvidenceSequence
    when = now if now is not None else datetime.datetime.now(datetime.timezone.utc)
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    when = when.astimezone(datetime.timezone.utc)
    for keyword, value in (
        ("ContentDate", when.strftime("%Y%m%d")),
        ("InstanceCreationDate", when.strftime("%Y%m%d")),
        ("ContentTime", when.strftime("%H%M%S.%f")),
        ("InstanceCreationTime", when.strftime("%H%M%S.%f")),
        ("TimezoneOffsetFromUTC", "+0000"),
    ):
        setattr(sr, keyword, value)
    sr.CodingSchemeIdentificationSequence = [_sr.coding_scheme_item()]
    sr.SoftwareVersions = __version__
    return _finish(sr, deidentify=deidentify, salt=salt, clean_content=True)


def encode_secondary_capture(
    overlay_rgb: npt.NDArray[Any],
    diagnosis: Any,
    source_dataset: Any,
    *,
    deidentify: bool,
    salt: bytes | None = None,
    burned_in: bool | None = None,
) -> bytes:
    """A Secondary Capture image (bytes of a DICOM file) of the overlay picture.

    Parameters
    ----------
    overlay_rgb : (H, W, 3) ndarray of uint8
        The overlay in **RGB** order (``render_overlay`` gives BGR: convert it).
    diagnosis : medimg_edge.Diagnosis
        Its model, status and notice go into the header (Series Description, Derivation
        Description, Image Comments; all removed by de-identification).
    source_dataset : pydicom.Dataset or None
        As for :func:`encode_sr`.
    deidentify : bool
        Apply the PS3.15 Basic Profile.
    salt : bytes, optional
        UID replacement secret (default: per process).
    burned_in : bool, optional
        Whether the picture may show identifying burned-in annotation (Burned In
        Annotation = ``YES``; de-identified output then says Patient Identity Removed
        ``NO``).  Default: the source has Burned In Annotation ``YES``, or is ultrasound
        without the attribute.  The banner medimg-edge draws holds no patient data.

    Returns
    -------
    bytes
    """
    arr = np.asarray(overlay_rgb)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8 or min(arr.shape[:2]) < 1:
        raise InvalidInputError(
            f"overlay_rgb must be (H, W, 3) uint8 RGB, got shape {arr.shape} dtype {arr.dtype}"
        )
    with quiet_dicom():
        return _encode_sc(arr, diagnosis, source_dataset, deidentify, salt, burned_in)


def _encode_sc(
    arr: npt.NDArray[Any],
    diagnosis: Any,
    source_dataset: Any,
    deidentify: bool,
    salt: bytes | None,
    burned_in: bool | None,
) -> bytes:
    import highdicom as hd
    from pydicom.dataset import Dataset

    ev, has_instance = _evidence(source_dataset, deidentify=deidentify, salt=salt)
    f = _diagnosis_fields(diagnosis)
    sc = hd.sc.SCImage(
        pixel_array=np.ascontiguousarray(arr),
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        study_instance_uid=ev.StudyInstanceUID,
        series_instance_uid=hd.UID(),
        series_number=SC_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=_MANUFACTURER,
        patient_id=ev.PatientID,
        patient_name=ev.PatientName,
        patient_birth_date=ev.PatientBirthDate,
        patient_sex=ev.PatientSex,
        accession_number=ev.AccessionNumber,
        study_id=ev.StudyID,
        study_date=ev.StudyDate,
        study_time=ev.StudyTime,
        referring_physician_name=ev.ReferringPhysicianName,
        patient_orientation=("L", "F"),  # replaced below (Type 2C: copied or empty)
        specific_character_set=ev.get("SpecificCharacterSet", "ISO_IR 192"),
        series_description="medimg-edge overlay (not for clinical use)",
    )
    orientation = ev.get("PatientOrientation")
    valid = orientation is not None and not isinstance(orientation, str) and len(orientation) == 2
    value: Any = list(orientation) if valid else ""
    sc.PatientOrientation = value
    sc.Laterality = ev.Laterality
    if has_instance:
        ref = Dataset()
        ref.ReferencedSOPClassUID = ev.SOPClassUID
        ref.ReferencedSOPInstanceUID = ev.SOPInstanceUID
        sc.SourceImageSequence = [ref]
    flagged = burned_in_annotation(ev) if burned_in is None else bool(burned_in)
    sc.BurnedInAnnotation = "YES" if flagged else "NO"
    model = f["model"]
    sc.DerivationDescription = (
        f"medimg-edge {f['package_version']} overlay: {model.get('name', '')} "
        f"{model.get('version', '')}; status {f['status']}"
    )[:1024]
    sc.ImageComments = f["notice"][:10240]
    sc.SoftwareVersions = __version__
    return _finish(sc, deidentify=deidentify, salt=salt, clean_content=False)
