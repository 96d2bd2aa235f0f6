"""Mask helpers shared by the hold-out generators."""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

__all__ = ["ring_around"]


def ring_around(mask: NDArray[np.bool_], inner: float, outer: float) -> NDArray[np.bool_]:
    """Pixels whose Euclidean distance to ``mask`` lies in ``(inner, outer]``.

    Computed by a distance transform on the mask's padded bounding box, so the cost does
    not grow with the ring width (a morphological dilation would).
    """
    out = np.zeros(mask.shape, bool)
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return out
    pad = int(np.ceil(outer)) + 2
    h, w = mask.shape
    y0, x0 = max(int(ys.min()) - pad, 0), max(int(xs.min()) - pad, 0)
    y1, x1 = min(int(ys.max()) + pad + 1, h), min(int(xs.max()) + pad + 1, w)
    crop = np.where(mask[y0:y1, x0:x1], 0, 255).astype(np.uint8)
    dist = cv2.distanceTransform(crop, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    out[y0:y1, x0:x1] = (dist > inner) & (dist <= outer)
    return out
