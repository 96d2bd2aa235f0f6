"""Overlay pictures of a :class:`~medimg_edge.Diagnosis`: the frame, the heatmap, the
label, confidence and status, and the not-for-clinical-use notice."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from .diagnosis import Diagnosis
from .preprocess import robust_unit, to_gray

__all__ = ["render_overlay"]

_STATUS_BGR = {
    "positive": (40, 40, 230),
    "negative": (60, 170, 60),
    "indeterminate": (0, 170, 230),
}


def describe(diagnosis: Diagnosis) -> str:
    """The one-line verdict users read (CLI, overlays): ``"positive cyst 87%"``,
    ``"negative normal 91%"``; an indeterminate result says why and shows no label
    or confidence: ``"indeterminate: abstain band, score 0.45"``, ``"indeterminate:
    quality (too_dark, low_contrast)"``, ``"indeterminate: out of distribution"``."""
    if diagnosis.status != "indeterminate":
        pct = 100 * (diagnosis.confidence or 0.0)
        return f"{diagnosis.status} {diagnosis.label or '-'} {pct:.0f}%"
    reasons = diagnosis.reasons
    quality = [r.split(":", 1)[1] for r in reasons if r.startswith("quality:")]
    if quality:
        return f"indeterminate: quality ({', '.join(quality)})"
    if "out_of_distribution" in reasons:
        return "indeterminate: out of distribution"
    if "abstain_band" in reasons and diagnosis.positive_score is not None:
        return f"indeterminate: abstain band, score {diagnosis.positive_score:.2f}"
    return f"indeterminate: {', '.join(reasons) or 'no result'}"


def render_overlay(
    frame: Any,
    diagnosis: Diagnosis,
    *,
    color_order: str = "rgb",
    max_side: int = 768,
    frame_note: str | None = None,
) -> npt.NDArray[np.uint8]:
    """A BGR uint8 picture: the frame (windowed to its 0.5-99.5th percentiles), the
    heatmap blended in (colour map "inferno" where the lesion probability exceeds 0.2), a
    banner with status, label and confidence, and the notice.

    Parameters
    ----------
    frame : array_like
        The frame given to ``diagnose``.
    diagnosis : Diagnosis
        Its result.
    color_order : {"rgb", "bgr"}
        Channel order of a colour frame (the Diagnoser's default, ``"rgb"``).
    max_side : int
        The picture is downscaled so that its longer side is at most this.
    frame_note : str, optional
        Which frame of a multi-frame input this is (e.g. ``"frame 16 of 30"``), shown in
        the banner.
    """
    gray = robust_unit(to_gray(frame, color_order=color_order))
    h, w = gray.shape
    scale = min(1.0, max_side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    base = cv2.resize((gray * 255.0).astype(np.uint8), size, interpolation=cv2.INTER_AREA)
    img = cv2.cvtColor(base, cv2.COLOR_GRAY2BGR)
    if diagnosis.heatmap is not None:
        heat = cv2.resize(diagnosis.heatmap, size, interpolation=cv2.INTER_LINEAR)
        colour = cv2.applyColorMap(
            (np.clip(heat, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_INFERNO
        )
        alpha = np.clip((heat - 0.2) / 0.6, 0.0, 0.6)[:, :, None]
        img = (img * (1.0 - alpha) + colour * alpha).astype(np.uint8)
    banner_h = max(48, size[1] // 9)
    banner = np.full((banner_h, size[0], 3), 24, np.uint8)
    colour_bgr = _STATUS_BGR.get(diagnosis.status, (200, 200, 200))
    verdict = describe(diagnosis)
    head, _, rest = verdict.partition(" ")
    text = f"{head.rstrip(':').upper()}  {rest}"
    fs = max(0.45, min(1.0, size[0] / 700))
    cv2.putText(
        banner,
        text,
        (8, int(banner_h * 0.45)),
        cv2.FONT_HERSHEY_SIMPLEX,
        fs,
        colour_bgr,
        2,
        cv2.LINE_AA,
    )
    model = diagnosis.model.get("name", "?")
    cv2.putText(
        banner,
        f"model {model}{' - ' + frame_note if frame_note else ''} - NOT FOR CLINICAL USE",
        (8, int(banner_h * 0.85)),
        cv2.FONT_HERSHEY_SIMPLEX,
        max(0.4, fs * 0.6),
        (200, 200, 200),
        1,
        cv2.LINE_AA,
    )
    out: npt.NDArray[np.uint8] = np.vstack([banner, img])
    return out
