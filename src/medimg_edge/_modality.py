"""The one modality vocabulary and the one modality rule (leaf module: no package imports
beyond the error type, so the readers, the triage layer and every client can use it).

The rule (:func:`decide`), applied by every client (``me.diagnose`` on a file through
:mod:`medimg_edge.triage`, ``medimg-edge diagnose``, the watch-folder daemon and
``medimg-edge batch``):

1. **A DICOM file's own header decides.**  Its Modality (0008,0060) maps through
   :data:`MODALITY_MAP` (US, IVUS -> ultrasound; CR, DX, DR, RG, RF, MG, XA, PX, IO ->
   xray).  When the Modality is absent or ``OT`` (other), the SOP Class UID decides where it
   names an imaging class a model serves (:data:`SOP_CLASS_MAP`: Ultrasound (Multi-frame)
   Image Storage -> ultrasound; Computed Radiography, Digital X-Ray, Mammography and
   Intra-oral Image Storage -> xray).  A Secondary Capture has no modality of its own: it
   follows its Modality tag like any other file.
2. **A DICOM file of a modality no model serves is refused** with
   ``InvalidInputError.code == "unsupported_modality"`` (CT, MR, NM, PT, SEG, RTDOSE, ...:
   any Modality that is present, not ``OT`` and not in :data:`MODALITY_MAP`), whatever
   modality the user asked for.
3. **The user's modality** (``--modality``, a batch manifest column, a daemon folder rule,
   ``me.diagnose(modality=...)``) applies to non-DICOM inputs and to DICOM files without a
   usable Modality (absent or ``OT``, and no SOP class hint).  Given for a DICOM file whose
   header decides, it is ignored (the header wins; the result's ``modality_source`` says
   ``"dicom"``).
4. **The override** (``override_dicom_modality=True``, ``--override-dicom-modality``)
   makes the user's modality win over any DICOM header, including rule 2.  It exists for
   research on data that is mislabelled; a model run on frames of another modality gives
   meaningless answers, and the result records ``modality_source: "override"``.
5. Nothing decides: ``code == "unknown_modality"``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from ._errors import InvalidInputError

__all__ = [
    "MODALITIES",
    "MODALITY_MAP",
    "SOP_CLASS_MAP",
    "Modality",
    "ModalitySource",
    "check_modality",
    "decide",
    "dicom_modality",
]

#: The modalities the package's models serve.
Modality = Literal["ultrasound", "xray"]
#: Where a modality came from: the DICOM header, the user (``option``, ``manifest``,
#: ``config``), the model's own modality (``model``) or the explicit override.
ModalitySource = Literal["dicom", "option", "manifest", "config", "model", "override"]
MODALITIES: tuple[Modality, ...] = ("ultrasound", "xray")

#: DICOM ``Modality`` (0008,0060) -> modality.  A present value outside this table (other
#: than ``OT``) is a modality no model serves.
MODALITY_MAP: dict[str, Modality] = {
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

#: SOP Class UID -> modality, consulted when the Modality is absent or ``OT``.
SOP_CLASS_MAP: dict[str, Modality] = {
    "1.2.840.10008.5.1.4.1.1.6.1": "ultrasound",  # Ultrasound Image Storage
    "1.2.840.10008.5.1.4.1.1.3.1": "ultrasound",  # Ultrasound Multi-frame Image Storage
    "1.2.840.10008.5.1.4.1.1.6": "ultrasound",  # Ultrasound Image Storage (retired)
    "1.2.840.10008.5.1.4.1.1.3": "ultrasound",  # Ultrasound Multi-frame (retired)
    "1.2.840.10008.5.1.4.1.1.1": "xray",  # Computed Radiography Image Storage
    "1.2.840.10008.5.1.4.1.1.1.1": "xray",  # Digital X-Ray, for presentation
    "1.2.840.10008.5.1.4.1.1.1.1.1": "xray",  # Digital X-Ray, for processing
    "1.2.840.10008.5.1.4.1.1.1.2": "xray",  # Digital Mammography, for presentation
    "1.2.840.10008.5.1.4.1.1.1.2.1": "xray",  # Digital Mammography, for processing
    "1.2.840.10008.5.1.4.1.1.1.3": "xray",  # Digital Intra-oral X-Ray, for presentation
    "1.2.840.10008.5.1.4.1.1.1.3.1": "xray",  # Digital Intra-oral X-Ray, for processing
}

# Defined terms of PS3.3 C.7.3.1.1.1 that may be quoted in an error message (a Modality
# value outside this list could be anything a writer put there, e.g. a name: never quoted).
_DEFINED_TERMS = frozenset(
    "AR ASMT AU BDUS BI BMD CFM CT CTPROTOCOL DMS DOC DG DX ECG EEG EMG EOG EPS ES FID GM "
    "HC HD IO IOL IVOCT IVUS KER KO LEN LS MG MR M3D NM OAM OCT OP OPM OPT OPTBSV OPTENF "
    "OPV OSS OT PLAN POS PR PT PX REG RESP RF RG RTDOSE RTIMAGE RTINTENT RTPLAN RTRAD "
    "RTRECORD RTSEGANN RTSTRUCT RWV SEG SM SMR SR SRF STAIN TEXTUREMAP TG US VA XA XC "
    "CR DR".split()
)
_CS = re.compile(r"[A-Z0-9_ ]{0,16}")


def check_modality(value: object, *, what: str = "modality") -> Modality:
    """``value`` if it is one of :data:`MODALITIES`, else an :class:`InvalidInputError`."""
    if value not in MODALITIES:
        raise InvalidInputError(f"{what} must be 'ultrasound' or 'xray', got {value!r}")
    return value


def dicom_modality(header: Any) -> tuple[Modality | None, str]:
    """``(modality, tag)`` of a DICOM header by rule 1 of the module docstring.

    ``tag`` is the header's Modality (upper case, stripped; ``""`` when absent) and
    ``modality`` is None when the header does not decide (absent / ``OT`` without a SOP
    class hint) *or* names a modality no model serves (``tag`` then tells the two apart:
    see :func:`decide`).
    """
    tag = str(header.get("Modality", "") or "").strip().upper()
    if tag in MODALITY_MAP:
        return MODALITY_MAP[tag], tag
    if tag in ("", "OT"):
        sop = str(header.get("SOPClassUID", "") or "").strip()
        if not sop and hasattr(header, "file_meta"):
            sop = str(header.file_meta.get("MediaStorageSOPClassUID", "") or "").strip()
        return SOP_CLASS_MAP.get(sop), tag
    return None, tag


def _quoted(tag: str) -> str:
    if tag in _DEFINED_TERMS and _CS.fullmatch(tag):
        return f"Modality {tag}"
    return "a Modality"


def decide(
    header: Any | None,
    requested: str | None,
    *,
    source: ModalitySource = "option",
    override: bool = False,
    name: str = "input",
) -> tuple[Modality, ModalitySource]:
    """``(modality, where it came from)`` of one input by the rule of the module docstring.

    Parameters
    ----------
    header : pydicom.Dataset or None
        The DICOM header; None for a non-DICOM input (a raster, ``.npy`` or an array).
    requested : {"ultrasound", "xray"} or None
        The user's modality for this input.
    source : str
        What ``requested`` is (``"option"``, ``"manifest"``, ``"config"``, ``"model"``).
    override : bool
        Rule 4: ``requested`` wins over any DICOM header (it must then be given).
    name : str
        Names the input in error messages.

    Raises
    ------
    InvalidInputError
        ``code="unsupported_modality"`` (rule 2) or ``"unknown_modality"`` (rule 5).
    """
    if requested is not None:
        requested = check_modality(requested)
    if override:
        if requested is None:
            raise InvalidInputError(
                f"{name}: override_dicom_modality needs a modality to apply: pass "
                "--modality ultrasound|xray (modality=...) with it",
                code="unknown_modality",
            )
        return requested, "override"
    if header is not None:
        found, tag = dicom_modality(header)
        if found is not None:
            return found, "dicom"
        if tag not in ("", "OT"):
            raise InvalidInputError(
                f"{name}: DICOM {_quoted(tag)} is not served by any model (served: "
                f"{', '.join(sorted(MODALITY_MAP))}); the file is not diagnosed. To run "
                "a model on it anyway (research only, results meaningless), pass "
                "--override-dicom-modality with --modality (override_dicom_modality=True)",
                code="unsupported_modality",
            )
    if requested is not None:
        return requested, source
    where = "DICOM without a usable Modality (absent or OT)" if header is not None else "not DICOM"
    raise InvalidInputError(
        f"{name}: no modality ({where}): pass --modality ultrasound|xray (modality=...), "
        "a manifest 'modality' column or a folder rule, or a model for one modality",
        code="unknown_modality",
    )
