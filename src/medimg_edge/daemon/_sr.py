"""The content of the daemon's Structured Report: a TID 1500 Measurement Report (highdicom)
with the triage result, the calibrated score of every class, the algorithm that made them and,
for a positive result, the finding's location as an image region.

Content tree (``CONTAINS`` unless said otherwise; TID numbers of DICOM PS3.16)::

    CONTAINER (126000, DCM, "Imaging Measurement Report")              TID 1500
      HAS CONCEPT MOD  Language of Content (en-US)
      HAS OBS CONTEXT  Observer Type = Device; Device Observer UID / Name /
                       Manufacturer / Model Name (the model name and version)   TID 1004
      HAS CONCEPT MOD  Procedure reported: (16310003, SCT, "Diagnostic ultrasonography")
                       or (168537006, SCT, "Plain radiography")
                       (other modalities: (363679005, SCT, "Imaging procedure"))
      CONTAINER (126010, DCM, "Imaging Measurements")
        CONTAINER (125007, DCM, "Measurement Group")  "medimg-edge result"
                  TID 1410 (with the region) or TID 1501 (without)
          Tracking Identifier "medimg-edge result", Tracking Unique Identifier
          Finding (121071, DCM): the predicted class's concept (see below)
          Algorithm Name / Version / Parameters ("sha256=<model file sha256>")  TID 4019
          Image Region: SCOORD POLYLINE (closed) around the heatmap's peak region, in
                        the source image's pixel coordinates, SELECTED FROM the source
                        instance (and frame)          [positive, when the model localises]
          or Source images: IMAGE the source instance (and frame)    [otherwise]
          CODE (121402, DCM, "Normality") = (263654008, SCT, "Abnormal") | (17621005, SCT,
               "Normal") | (371934000, SCT, "Normality Undetermined")   positive /
               negative / indeterminate
          CODE (111360, DCM, "Echo pattern") = (111364, DCM, "Hypoechoic") | (111362, DCM,
               "Hyperechoic")                       [the class is a hypo-/hyperechoic lesion]
          CODE (INDETREASON, 99MEDIMG) = <reason>           [indeterminate, one per reason]
          CODE (QISSUE, 99MEDIMG) = <quality issue>         [one per quality:<code> reason]
          NUM  (LESIONSCORE, 99MEDIMG) = 1 - P(negative class), unit (1, UCUM)
        CONTAINER (125007, DCM, "Measurement Group")  one per class of the model, in the
                  model's label order (the scores are attached to the class by its name,
                  never by an index)                                     TID 1501
          Tracking Identifier "class: <label>", Tracking Unique Identifier
          Finding (121071, DCM): the class's concept (the algorithm and the source
          image are the result group's and the observer context's: not repeated)
          CODE (111360, DCM, "Echo pattern")                 [hypo-/hyperechoic classes]
          NUM  (122157, DCM, "Probability") = the calibrated probability of the class,
               unit (1, UCUM, "no units")

**Class concepts** (verified in DICOM PS3.16 through pydicom's concept dictionary):
``normal`` (17621005, SCT, "Normal"), ``nodule`` (27925004, SCT, "Nodule"), ``cyst``
(367643001, SCT, "Cyst"), ``mass``, ``hypoechoic`` and ``hyperechoic`` (4147007, SCT,
"Mass"; the two reference ultrasound lesion classes add the Echo pattern evaluation).  A
class of a user's model not in this table gets a code of the private scheme:
``99MEDIMG`` code value = ``C-`` + the label when the label is at most 14 characters of
letters, digits, ``_`` and ``-``, else ``C`` + the first 15 hexadecimal digits of the
label's SHA-256 (the ``C`` prefix keeps them apart from the codes below); code meaning =
the label.

**Reasons of an indeterminate result**: ``quality:<code>`` -> (110531, DCM, "Insufficient
quality for interpretation") plus a ``QISSUE`` item naming the issue;
``abstain_band`` -> (42425007, SCT, "Equivocal"); ``out_of_distribution`` -> ``OOD``
(99MEDIMG); anything else -> ``OTHER`` (99MEDIMG).

**Private codes** (coding scheme ``99MEDIMG``, declared in the Coding Scheme Identification
Sequence of every SR; ``99`` prefixes are reserved for local schemes, PS3.16 Section 8.2),
used only where DCM / SCT has no concept:

==================  ============================================================
``LESIONSCORE``     "Lesion score": calibrated 1 - P(negative class), the number
                    compared with the model's threshold
``INDETREASON``     "Reason for indeterminate result" (concept name of a reason)
``OOD``             "Out of the model's training distribution" (reason value)
``OTHER``           "Other reason" (reason value)
``QISSUE``          "Image quality issue" (concept name of a quality issue)
``Q-BLANK``         "Blank image"
``Q-BLURRED``       "Blurred image"
``Q-TOO_NOISY``     "Too noisy"
``Q-SATURATED``     "Saturated"
``Q-UNDEREXPOSED``  "Underexposed"
``Q-LOW_CONTRAST``  "Low contrast"
``Q-<CODE>``        "Image quality: <code>" for a quality code not listed here
==================  ============================================================

The region (:func:`heatmap_region`): the heatmap (resized to the diagnosed frame) is
thresholded at half its peak; the connected component that holds the peak is outlined
through its boundary pixels' centres (OpenCV ``findContours``, simplified by
``approxPolyDP`` to 1 % of its perimeter; a component one pixel thin gets the outline of
its pixels' area instead) and the outline closed.  Coordinates are image pixel coordinates
(column, row) with (0, 0) the top left corner of the top left pixel (PS3.3 C.18.6.1.2):
the centre of pixel (r, c) is (c + 0.5, r + 0.5).  A frame whose size differs from the
source's Rows x Columns is scaled to them.

References
----------
DICOM PS3.16 2024, TID 1500 "Measurement Report", TID 1410 "Planar ROI Measurements and
Qualitative Evaluations", TID 1501 "Measurement and Qualitative Evaluation Group", TID 4019
"Algorithm Identification"; PS3.3 C.18.6 "Spatial Coordinates Macro".
Herrmann M. D. et al., "Highdicom: a Python library for standardized encoding of image
annotations and machine learning model outputs in pathology and radiology", J Digit Imaging
35, 1719-1737 (2022).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "CLASS_CODES",
    "PRIVATE_CODES",
    "PRIVATE_SCHEME",
    "class_code",
    "coding_scheme_item",
    "heatmap_region",
    "measurement_report",
    "reason_codes",
]

#: The local coding scheme of the codes DCM / SCT do not have.
PRIVATE_SCHEME = "99MEDIMG"

#: Private code value -> code meaning (the module docstring's table).
PRIVATE_CODES: dict[str, str] = {
    "LESIONSCORE": "Lesion score",
    "INDETREASON": "Reason for indeterminate result",
    "OOD": "Out of the model's training distribution",
    "OTHER": "Other reason",
    "QISSUE": "Image quality issue",
    "Q-BLANK": "Blank image",
    "Q-BLURRED": "Blurred image",
    "Q-TOO_NOISY": "Too noisy",
    "Q-SATURATED": "Saturated",
    "Q-UNDEREXPOSED": "Underexposed",
    "Q-LOW_CONTRAST": "Low contrast",
}

#: Class label -> (code value, scheme, meaning) of its concept.
CLASS_CODES: dict[str, tuple[str, str, str]] = {
    "normal": ("17621005", "SCT", "Normal"),
    "nodule": ("27925004", "SCT", "Nodule"),
    "cyst": ("367643001", "SCT", "Cyst"),
    "mass": ("4147007", "SCT", "Mass"),
    "hypoechoic": ("4147007", "SCT", "Mass"),
    "hyperechoic": ("4147007", "SCT", "Mass"),
}
_ECHO_PATTERN = ("111360", "DCM", "Echo pattern")
_ECHO: dict[str, tuple[str, str, str]] = {
    "hypoechoic": ("111364", "DCM", "Hypoechoic"),
    "hyperechoic": ("111362", "DCM", "Hyperechoic"),
}
_NORMALITY_NAME = ("121402", "DCM", "Normality")
_NORMALITY = {
    "positive": ("263654008", "SCT", "Abnormal"),
    "negative": ("17621005", "SCT", "Normal"),
    "indeterminate": ("371934000", "SCT", "Normality Undetermined"),
}
_PROBABILITY = ("122157", "DCM", "Probability")
_POOR_QUALITY = ("110531", "DCM", "Insufficient quality for interpretation")
_EQUIVOCAL = ("42425007", "SCT", "Equivocal")
_PROCEDURES = {
    "US": ("16310003", "SCT", "Diagnostic ultrasonography"),
    "ultrasound": ("16310003", "SCT", "Diagnostic ultrasonography"),
    "DX": ("168537006", "SCT", "Plain radiography"),
    "CR": ("168537006", "SCT", "Plain radiography"),
    "xray": ("168537006", "SCT", "Plain radiography"),
}
_IMAGING_PROCEDURE = ("363679005", "SCT", "Imaging procedure")
_PLAIN_LABEL = re.compile(r"^[A-Za-z0-9_-]{1,14}$")
#: Tracking identifier of the result group.
RESULT_TRACKING_ID = "medimg-edge result"


def _code(t: tuple[str, str, str]) -> Any:
    from pydicom.sr.coding import Code

    return Code(t[0], t[1], t[2])


def _private(value: str, meaning: str | None = None) -> Any:
    from pydicom.sr.coding import Code

    return Code(value, PRIVATE_SCHEME, (meaning or PRIVATE_CODES[value])[:64])


def class_code(label: str) -> Any:
    """The concept of a class label (module docstring: the table, else a private code)."""
    known = CLASS_CODES.get(label.lower())
    if known is not None:
        return _code(known)
    if _PLAIN_LABEL.match(label):
        value = "C-" + label
    else:
        value = "C" + hashlib.sha256(label.encode()).hexdigest()[:15]
    return _private(value, label)


def reason_codes(reasons: Sequence[str]) -> list[tuple[Any, Any]]:
    """(concept name, value) of the qualitative evaluations that say why a result is
    indeterminate (module docstring)."""
    name = _private("INDETREASON")
    out: list[tuple[Any, Any]] = []
    quality: list[str] = []
    for reason in reasons:
        if reason.startswith("quality:"):
            quality.append(reason.split(":", 1)[1])
        elif reason == "abstain_band":
            out.append((name, _code(_EQUIVOCAL)))
        elif reason == "out_of_distribution":
            out.append((name, _private("OOD")))
        else:
            out.append((name, _private("OTHER")))
    if quality:
        out.append((name, _code(_POOR_QUALITY)))
        for issue in quality:
            value = "Q-" + re.sub(r"[^A-Z0-9_]", "_", issue.upper())[:14]
            meaning = PRIVATE_CODES.get(value, f"Image quality: {issue}")
            out.append((_private("QISSUE"), _private(value, meaning)))
    return out


def coding_scheme_item() -> Any:
    """The Coding Scheme Identification Sequence item that declares :data:`PRIVATE_SCHEME`."""
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodingSchemeDesignator = PRIVATE_SCHEME
    item.CodingSchemeName = "medimg-edge local codes"
    item.CodingSchemeResponsibleOrganization = "medimg-edge"
    return item


def heatmap_region(
    heatmap: npt.NDArray[Any] | None, rows: int | None = None, columns: int | None = None
) -> npt.NDArray[np.float32] | None:
    """A closed polyline ``(n, 2)`` (column, row) around the heatmap's peak region, in the
    pixel coordinates of an image of ``rows`` x ``columns`` (default the heatmap's size);
    ``None`` when the heatmap is absent, not finite or has no positive peak.

    The component of ``heatmap >= peak / 2`` that holds the peak, outlined and simplified
    (module docstring).
    """
    import cv2

    if heatmap is None:
        return None
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.ndim != 2 or heat.size == 0 or not np.all(np.isfinite(heat)):
        return None
    peak_at = np.unravel_index(int(np.argmax(heat)), heat.shape)
    peak = float(heat[peak_at])
    if peak <= 0.0:
        return None
    mask = (heat >= 0.5 * peak).astype(np.uint8)
    _, labels = cv2.connectedComponents(mask, connectivity=8)
    blob = (labels == labels[peak_at]).astype(np.uint8)
    contours, _ = cv2.findContours(blob, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    contour = max(contours, key=cv2.contourArea)
    simple = cv2.approxPolyDP(contour, 0.01 * cv2.arcLength(contour, True), True)
    points = simple.reshape(-1, 2).astype(np.float64) + 0.5  # pixel centres
    if len(points) < 3:  # a one-pixel thin blob: the outline of its pixels' area
        x, y, w, h = cv2.boundingRect(blob)
        points = np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float64)
    h, w = heat.shape
    if rows and columns and (rows, columns) != (h, w):
        points *= np.array([columns / w, rows / h])
    closed = np.vstack([points, points[:1]])
    return closed.astype(np.float32)


def measurement_report(
    diagnosis: Any,
    *,
    reference: tuple[str, str, list[int] | None] | None,
    modality: str | None,
    device_uid: str,
    negative_label: str | None,
    region: npt.NDArray[np.float32] | None,
) -> Any:
    """The TID 1500 content tree of ``diagnosis`` (module docstring).

    Parameters
    ----------
    diagnosis : medimg_edge.Diagnosis
    reference : (SOP Class UID, SOP Instance UID, frame numbers or None), optional
        The source instance (``None``: the input had no DICOM instance to reference).
    modality : str, optional
        DICOM Modality or the triage modality (for Procedure reported).
    device_uid : str
        Device Observer UID.
    negative_label : str, optional
        The model's negative class (its group gets no Echo pattern evaluation).
    region : (n, 2) ndarray, optional
        :func:`heatmap_region` for a positive result (needs ``reference``).

    Returns
    -------
    highdicom.sr.MeasurementReport
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    model = dict(diagnosis.model)
    algorithm = hd.sr.AlgorithmIdentification(
        name=str(model.get("name", "unknown"))[:64] or "unknown",
        version=str(model.get("version", "unknown"))[:64] or "unknown",
        parameters=[f"sha256={model.get('sha256', '')}"],
        manufacturer="medimg-edge",
    )
    observer = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=device_uid,
                name="medimg-edge",
                manufacturer_name="medimg-edge",
                model_name=f"{model.get('name', '')} {model.get('version', '')}".strip()[:64]
                or None,
            ),
        )
    )
    procedure = _code(_PROCEDURES.get(modality or "", _IMAGING_PROCEDURE))

    def sources() -> Any:
        if reference is None:
            return None
        return [hd.sr.SourceImageForMeasurementGroup(*reference)]

    def echo(label: str | None) -> list[Any]:
        if label is None or label == negative_label or label.lower() not in _ECHO:
            return []
        return [hd.sr.QualitativeEvaluation(_code(_ECHO_PATTERN), _code(_ECHO[label.lower()]))]

    status = str(diagnosis.status)
    label = None if diagnosis.label is None else str(diagnosis.label)
    evaluations = [hd.sr.QualitativeEvaluation(_code(_NORMALITY_NAME), _code(_NORMALITY[status]))]
    if status == "positive":
        evaluations += echo(label)
    if status == "indeterminate":
        evaluations += [
            hd.sr.QualitativeEvaluation(n, v) for n, v in reason_codes(diagnosis.reasons)
        ]
    unit = codes.UCUM.NoUnits
    measurements = []
    if diagnosis.positive_score is not None:
        measurements.append(
            hd.sr.Measurement(
                name=_private("LESIONSCORE"), value=float(diagnosis.positive_score), unit=unit
            )
        )
    common: dict[str, Any] = {
        "tracking_identifier": hd.sr.TrackingIdentifier(
            uid=hd.UID(), identifier=RESULT_TRACKING_ID
        ),
        "finding_type": None if label is None else class_code(label),
        "algorithm_id": algorithm,
        "measurements": measurements or None,
        "qualitative_evaluations": evaluations,
    }
    groups: list[Any] = []
    if region is not None and reference is not None:
        roi = hd.sr.ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
            graphic_data=np.asarray(region, dtype=np.float32),
            source_image=hd.sr.SourceImageForRegion(*reference),
        )
        groups.append(
            hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(referenced_region=roi, **common)
        )
    else:
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(source_images=sources(), **common)
        )
    for name, score in diagnosis.scores.items():  # the model's label order
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=hd.UID(), identifier=f"class: {name}"[:64]
                ),
                finding_type=class_code(str(name)),
                # the algorithm and the image are the result group's (and the document's
                # observer): not repeated, which halves the tree highdicom builds and checks
                measurements=[
                    hd.sr.Measurement(name=_code(_PROBABILITY), value=float(score), unit=unit)
                ],
                qualitative_evaluations=echo(str(name)) or None,
            )
        )
    return hd.sr.MeasurementReport(
        observation_context=observer,
        procedure_reported=procedure,
        imaging_measurements=groups,
    )
