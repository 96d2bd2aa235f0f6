"""Real test images shared by the feature benchmarks (no clean truth needed)."""

from __future__ import annotations

import functools

import cv2
import numpy as np
from skimage import data


@functools.cache
def camera_u8(size: int) -> np.ndarray:
    """``skimage.data.camera()`` (uint8), bilinearly resized to ``size`` x ``size``; read-only."""
    cam = data.camera()
    if cam.shape != (size, size):
        cam = cv2.resize(cam, (size, size), interpolation=cv2.INTER_LINEAR)
    img = np.ascontiguousarray(cam, dtype=np.uint8)
    img.setflags(write=False)
    return img
