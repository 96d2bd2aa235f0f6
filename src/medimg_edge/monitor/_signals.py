"""The drift signals of one result: what every diagnosis already carries.

Numeric signals (one float each, absent when the result does not carry it):

* ``quality.<measure>`` for the quality measures in :data:`QUALITY_SIGNALS`
  (:func:`medimg_edge.quality.assess` of the frame: exposure, contrast, noise, sharpness,
  field of view, burned-in annotation area);
* ``image_side``: ``sqrt(height * width)`` of the frame in pixels;
* ``ood_distance`` and ``appearance_distance``: the two out-of-distribution distances
  (model features, texture of the model input);
* ``positive_score``: the calibrated positive score.

One categorical signal, ``outcome``: the status and, for a decisive result, the label
(``negative:normal``, ``positive:cyst``, ``indeterminate``); its mix is compared with the
reference mix.

No identifier, tag value or file name enters a signal: the result's device tags are not
used (the daemon's record carries none but UIDs, which are identifiers).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..quality import MEASURES

__all__ = [
    "INPUT_SIGNALS",
    "NUMERIC_SIGNALS",
    "OUTCOME",
    "OUTPUT_SIGNALS",
    "QUALITY_SIGNALS",
    "outcome_of",
    "signals_of_result",
    "signals_of_row",
]

#: Quality measures monitored: every measure of :func:`medimg_edge.quality.assess` but
#: ``range_lo`` / ``range_hi`` / ``analysis_scale``, which follow the container and the frame
#: size, not the image.
QUALITY_SIGNALS: tuple[str, ...] = tuple(
    m for m in MEASURES if m not in ("range_lo", "range_hi", "analysis_scale")
)
#: Signals of the input (the frames changed: device, settings, processing).
INPUT_SIGNALS: tuple[str, ...] = (
    *(f"quality.{m}" for m in QUALITY_SIGNALS),
    "image_side",
    "ood_distance",
    "appearance_distance",
)
#: Signals of the output (may also move with the prevalence of the findings).
OUTPUT_SIGNALS: tuple[str, ...] = ("positive_score",)
NUMERIC_SIGNALS: tuple[str, ...] = INPUT_SIGNALS + OUTPUT_SIGNALS
#: The categorical signal: status and label mix.
OUTCOME = "outcome"


def _num(x: Any) -> float | None:
    if type(x) is float:  # the usual case, first
        return x if math.isfinite(x) else None
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    v = float(x)
    return v if math.isfinite(v) else None


def outcome_of(status: Any, label: Any) -> str | None:
    """The ``outcome`` category of a result (None without a status)."""
    if not isinstance(status, str) or not status:
        return None
    if status in ("positive", "negative") and isinstance(label, str) and label:
        return f"{status}:{label}"
    return status


def signals_of_result(doc: Mapping[str, Any]) -> tuple[dict[str, float], str | None]:
    """Numeric signals and the outcome of a result (``Diagnosis.to_dict()``, a daemon
    record or its ``frame_results`` entry).

    Returns
    -------
    (dict, str or None)
        ``{signal: value}`` for the signals the result carries, and its outcome.
    """
    out: dict[str, float] = {}
    q = doc.get("quality")
    measures = q.get("measures") if isinstance(q, Mapping) else None
    if isinstance(measures, Mapping):
        for m in QUALITY_SIGNALS:
            v = _num(measures.get(m))
            if v is not None:
                out[f"quality.{m}"] = v
    frame = doc.get("frame")
    shape = frame.get("shape") if isinstance(frame, Mapping) else None
    if isinstance(shape, (list, tuple)) and len(shape) >= 2:
        h, w = _num(shape[0]), _num(shape[1])
        if h is not None and w is not None and h > 0 and w > 0:
            out["image_side"] = math.sqrt(h * w)
    ood = doc.get("ood")
    if isinstance(ood, Mapping):
        v = _num(ood.get("distance"))
        if v is not None:
            out["ood_distance"] = v
        app = ood.get("appearance")
        if isinstance(app, Mapping):
            v = _num(app.get("distance"))
            if v is not None:
                out["appearance_distance"] = v
    v = _num(doc.get("positive_score"))
    if v is not None:
        out["positive_score"] = v
    return out, outcome_of(doc.get("status"), doc.get("label"))


def signals_of_row(row: Mapping[str, Any]) -> tuple[dict[str, float], str | None]:
    """The same from a batch output row (:mod:`medimg_edge.batch`; its columns carry no
    out-of-distribution distance, so those two signals are absent)."""
    out: dict[str, float] = {}
    for m in QUALITY_SIGNALS:
        v = _num(row.get(f"quality_{m}"))
        if v is not None:
            out[f"quality.{m}"] = v
    h, w = _num(row.get("height")), _num(row.get("width"))
    if h is not None and w is not None and h > 0 and w > 0:
        out["image_side"] = math.sqrt(h * w)
    v = _num(row.get("diag_positive_score"))
    if v is not None:
        out["positive_score"] = v
    return out, outcome_of(row.get("diag_status"), row.get("diag_label"))
