"""Overlay pictures of a :class:`~medimg_edge.Diagnosis`: the frame, the heatmap, the
label, confidence and status, and the not-for-clinical-use notice."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from .diagnosis import Diagnosis
from .runtime._preprocess import robust_unit, to_gray

__all__ = ["render_overlay"]

_STATUS_BGR = {
    "positive": (40, 40, 230),
    "negative": (60, 170, 60),
    "indeterminate": (0, 170, 230),
}


def render_overlay(
    frame: Any, diagnosis: Diagnosis, *, color_order: str = "bgr", max_side: int = 768
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
    color_order : {"bgr", "rgb"}
        Channel order of a colour frame.
    max_side : int
        The picture is downscaled so that its longer side is at most this.
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
    if diagnosis.label is not None:
        pct = 100 * (diagnosis.confidence or 0.0)
        text = f"{diagnosis.status.upper()}  {diagnosis.label}  {pct:.0f}%"
    else:
        text = f"{diagnosis.status.upper()}  ({', '.join(diagnosis.reasons) or 'no result'})"
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
        f"model {model} - NOT FOR CLINICAL USE",
        (8, int(banner_h * 0.85)),
        cv2.FONT_HERSHEY_SIMPLEX,
        max(0.4, fs * 0.6),
        (200, 200, 200),
        1,
        cv2.LINE_AA,
    )
    out: npt.NDArray[np.uint8] = np.vstack([banner, img])
    return out
