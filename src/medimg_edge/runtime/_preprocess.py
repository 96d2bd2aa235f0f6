"""From a device frame to the model's input: the one preprocessing shared by training,
evaluation and ``diagnose`` (so that a model sees at run time what it saw in training).

Steps: grayscale (colour frames, for 1-channel models) -> the sidecar's denoising preset
(``input.denoise``: none, ultrasound or xray) -> float32 -> robust window to
[0, 1] (the 0.5th and 99.5th percentiles map to 0 and 1: independent of bit depth, dose
and gain) -> area resize to the model's input size.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from .. import denoise
from .._errors import InvalidInputError
from .._validation import as_float_array, checked_array
from ._package import InputSpec

__all__ = [
    "PERCENTILES",
    "apply_denoise",
    "resize_to_input",
    "robust_unit",
    "to_gray",
    "to_model_input",
]

#: Percentiles of the frame that map to 0 and 1.
PERCENTILES = (0.5, 99.5)


def to_gray(frame: Any, *, color_order: str = "bgr") -> npt.NDArray[Any]:
    """A 2-D frame from a 2-D one or an ``(H, W, 3|4)`` colour screen grab.

    Parameters
    ----------
    frame : array_like
        2-D grayscale (uint8, uint16, float32, float64) or ``(H, W, 3)``/``(H, W, 4)`` uint8
        colour.
    color_order : {"bgr", "rgb"}
        Channel order of a colour frame (OpenCV delivers BGR(A); most SDKs RGB(A)); the
        luma weights (ITU-R BT.601) differ for R and B.
    """
    arr = checked_array(frame, name="frame", ndims=(2, 3))
    if arr.ndim == 2:
        return arr
    if arr.shape[2] not in (3, 4) or arr.dtype != np.uint8:
        raise InvalidInputError(
            f"frame has shape {arr.shape} and dtype {arr.dtype}; a colour frame must be "
            "(H, W, 3) or (H, W, 4) uint8"
        )
    if color_order not in ("bgr", "rgb"):
        raise InvalidInputError(f"color_order must be 'bgr' or 'rgb', got {color_order!r}")
    code = {
        ("bgr", 3): cv2.COLOR_BGR2GRAY,
        ("bgr", 4): cv2.COLOR_BGRA2GRAY,
        ("rgb", 3): cv2.COLOR_RGB2GRAY,
        ("rgb", 4): cv2.COLOR_RGBA2GRAY,
    }[(color_order, arr.shape[2])]
    gray: npt.NDArray[Any] = cv2.cvtColor(np.ascontiguousarray(arr), code)
    return gray


def robust_unit(image: Any) -> npt.NDArray[np.float32]:
    """Window a 2-D image to [0, 1] between its 0.5th and 99.5th percentiles.

    A constant image maps to zeros.
    """
    img = as_float_array(image, name="image")
    small = (
        img
        if img.size <= 65536
        else img[:: max(1, img.shape[0] // 256), :: max(1, img.shape[1] // 256)]
    )
    lo, hi = np.percentile(small, PERCENTILES)
    if not hi > lo:
        return np.zeros_like(img)
    out = (img - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    np.clip(out, 0.0, 1.0, out=out)
    return out


def to_model_input(
    frame: Any, spec: InputSpec, *, color_order: str = "bgr"
) -> npt.NDArray[np.float32]:
    """Turn one frame into the ``(H, W, C)`` float32 [0, 1] array ``Model.predict`` takes.

    Parameters
    ----------
    frame : array_like
        2-D grayscale or ``(H, W, 3|4)`` uint8 colour, any size.
    spec : InputSpec
        The model's input (``Model.package.input``).
    color_order : {"bgr", "rgb"}
        Channel order of a colour frame.
    """
    if spec.channels != 1:
        raise InvalidInputError(
            f"only 1-channel (gray) models are supported by this preprocessing; the model "
            f"takes {spec.channels} channels"
        )
    gray = apply_denoise(to_gray(frame, color_order=color_order), spec.denoise)
    return resize_to_input(robust_unit(gray), spec)[:, :, None]


def apply_denoise(gray: npt.NDArray[Any], preset: str) -> npt.NDArray[Any]:
    """The denoising preset of a model input (``"none"``, ``"ultrasound"``, ``"xray"``)."""
    if preset == "ultrasound":
        return denoise.ultrasound(gray)
    if preset == "xray":
        return denoise.xray(gray)
    return gray


def resize_to_input(unit: npt.NDArray[np.float32], spec: InputSpec) -> npt.NDArray[np.float32]:
    """Resize a windowed 2-D frame to the model's input size: area averaging when
    shrinking (it also averages noise), bilinear when enlarging."""
    h, w = unit.shape
    interp = cv2.INTER_AREA if (h >= spec.height and w >= spec.width) else cv2.INTER_LINEAR
    resized = cv2.resize(unit, (spec.width, spec.height), interpolation=interp)
    return np.ascontiguousarray(resized, dtype=np.float32)
