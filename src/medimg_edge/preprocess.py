"""From a device frame to the model's input: the one preprocessing shared by training,
evaluation and ``diagnose`` (so that a model sees at run time what it saw in training).

::

    import medimg_edge as me
    model = me.load_model("us_lesion")
    x = me.preprocess.to_model_input(frame, model.package.input)   # (H, W, 1) in [0, 1]
    out = model.predict(x)

Steps: grayscale (colour frames, for 1-channel models) -> the sidecar's denoising preset
(``input.denoise``: none, ultrasound or xray; :mod:`medimg_edge.denoise`) -> float32 ->
robust window to [0, 1] (the 0.5th and 99.5th percentiles map to 0 and 1: independent of
bit depth, dose and gain) -> area resize to the model's input size.

This module sits above :mod:`medimg_edge.runtime` (which loads and runs models and knows
nothing of denoising) and :mod:`medimg_edge.denoise`; :class:`medimg_edge.Diagnoser` runs
the same steps with per-thread reused buffers (``out=``), bit-identical to
:func:`to_model_input`.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from . import _core, denoise
from ._errors import InvalidInputError
from ._validation import as_float_array, checked_array
from .runtime import InputSpec

__all__ = [
    "PERCENTILES",
    "apply_denoise",
    "resize_to_input",
    "robust_unit",
    "to_gray",
    "to_model_input",
    "window_bounds",
    "window_into",
]

#: Percentiles of the frame that map to 0 and 1.
PERCENTILES = (0.5, 99.5)
_QUANTILES = np.array(PERCENTILES) / 100.0
_CODES_U8 = np.arange(256, dtype=np.float32)


def to_gray(
    frame: Any, *, color_order: str = "rgb", out: npt.NDArray[np.uint8] | None = None
) -> npt.NDArray[Any]:
    """A 2-D frame from a 2-D one or an ``(H, W, 3|4)`` colour screen grab.

    Parameters
    ----------
    frame : array_like
        2-D grayscale (uint8, uint16, float32, float64) or ``(H, W, 3)``/``(H, W, 4)`` uint8
        colour.
    color_order : {"rgb", "bgr"}, default "rgb"
        Channel order of a colour frame (pydicom, PIL and most SDKs deliver RGB(A), OpenCV
        capture BGR(A)); the luma weights (ITU-R BT.601) differ for R and B.
    out : (H, W) ndarray of uint8, optional
        Where to write the gray version of a colour frame (a reused buffer).
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
    src = np.ascontiguousarray(arr)
    if out is not None and out.shape == arr.shape[:2] and out.dtype == np.uint8:
        gray: npt.NDArray[Any] = cv2.cvtColor(src, code, dst=out)
    else:
        gray = cv2.cvtColor(src, code)
    return gray


def window_bounds(image: npt.NDArray[np.float32]) -> tuple[float, float]:
    """The 0.5th and 99.5th percentiles (NumPy's ``"linear"`` method) of a validated
    C-contiguous float32 2-D image, on the strided subsample ``image[::sy, ::sx]`` of at
    most about 256 x 256 pixels when the image has more than 65536.

    Computed by the exact O(n) order-statistics kernel of
    :func:`medimg_edge.features.firstorder` (counting for integer-valued frames, radix
    select otherwise; bit-identical to :func:`numpy.percentile` of the subsample), the
    strided copy included, in one call with the GIL released.
    """
    sy, sx = _subsample_steps(image.shape)
    q = _core.subsample_quantiles(image, sy, sx, _QUANTILES)
    return float(q[0]), float(q[1])


def _subsample_steps(shape: tuple[int, ...]) -> tuple[int, int]:
    h, w = int(shape[0]), int(shape[1])
    if h * w <= 65536:
        return 1, 1
    return max(1, h // 256), max(1, w // 256)


def robust_unit(
    image: Any, *, out: npt.NDArray[np.float32] | None = None
) -> npt.NDArray[np.float32]:
    """Window a 2-D image to [0, 1] between its 0.5th and 99.5th percentiles.

    ``(x - p0.5) / (p99.5 - p0.5)`` in float32, clipped to [0, 1]; the percentiles come
    from :func:`window_bounds`.  A constant image maps to zeros.

    Parameters
    ----------
    image : (M, N) array_like
        uint8, uint16, float32 or float64; finite.
    out : (M, N) ndarray of float32, optional
        Where to write the result (may be ``image`` itself when that is float32): lets a
        caller reuse one buffer across frames.
    """
    arr = checked_array(image, name="image", ndims=(2,))
    img = as_float_array(arr, name="image", out=out)
    if out is None or out.shape != img.shape or out.dtype != np.float32:
        out = np.empty_like(img)
    return window_into(img, out, source=arr)


def window_into(
    img: npt.NDArray[np.float32],
    out: npt.NDArray[np.float32],
    *,
    source: npt.NDArray[Any] | None = None,
) -> npt.NDArray[np.float32]:
    """:func:`robust_unit` of a validated C-contiguous float32 image into ``out`` (same
    shape; may be ``img``).  When ``source``, the frame ``img`` was converted from, is
    uint8, the window is one table lookup (``cv2.LUT`` over the 256 codes, each entry
    computed with the same float32 operations, so the result is identical)."""
    lo, hi = window_bounds(img)
    if not hi > lo:
        out.fill(0.0)
        return out
    lo32 = np.float32(lo)
    scale32 = np.float32(1.0 / (hi - lo))
    if source is not None and source.dtype == np.uint8 and source.flags.c_contiguous:
        lut = (_CODES_U8 - lo32) * scale32
        np.clip(lut, 0.0, 1.0, out=lut)
        cv2.LUT(source, lut, dst=out)
        return out
    np.subtract(img, lo32, out=out)
    np.multiply(out, scale32, out=out)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def to_model_input(
    frame: Any, spec: InputSpec, *, color_order: str = "rgb"
) -> npt.NDArray[np.float32]:
    """Turn one frame into the ``(H, W, C)`` float32 [0, 1] array ``Model.predict`` takes.

    Parameters
    ----------
    frame : array_like
        2-D grayscale or ``(H, W, 3|4)`` uint8 colour, any size.
    spec : InputSpec
        The model's input (``Model.package.input``).
    color_order : {"rgb", "bgr"}, default "rgb"
        Channel order of a colour frame.
    """
    if spec.channels != 1:
        raise InvalidInputError(
            f"only 1-channel (gray) models are supported by this preprocessing; the model "
            f"takes {spec.channels} channels"
        )
    gray = apply_denoise(to_gray(frame, color_order=color_order), spec.denoise)
    return resize_to_input(robust_unit(gray), spec)[:, :, None]


def apply_denoise(
    gray: npt.NDArray[Any], preset: str, *, out: npt.NDArray[np.float32] | None = None
) -> npt.NDArray[Any]:
    """The denoising preset of a model input.

    Parameters
    ----------
    gray : (M, N) ndarray
        A 2-D frame (:func:`to_gray`).
    preset : {"none", "ultrasound", "xray"}
        ``"ultrasound"``: :func:`medimg_edge.denoise.ultrasound` (SRAD with the speckle
        estimated on the frame); ``"xray"``: :func:`medimg_edge.denoise.xray` (generalised
        Anscombe + Wiener); ``"none"``: ``gray`` itself.
    out : (M, N) ndarray of float32, optional
        Where the preset writes its result (a buffer reused across frames; it must not be
        ``gray``'s memory unless ``gray`` is float32 and C-contiguous); the result is
        bit-identical to allocating.  Ignored for ``"none"``.

    Returns
    -------
    ndarray
        float32 for a preset (``out`` when given), else ``gray``.
    """
    if preset == "ultrasound":
        return denoise.ultrasound(gray, out=out)
    if preset == "xray":
        return denoise.xray(gray, out=out)
    if preset != "none":
        raise InvalidInputError(
            f"denoise preset must be 'none', 'ultrasound' or 'xray', got {preset!r}"
        )
    return gray


def resize_to_input(
    unit: npt.NDArray[np.float32],
    spec: InputSpec,
    *,
    out: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]:
    """Resize a windowed 2-D frame to the model's input size: area averaging when
    shrinking (it also averages noise), bilinear when enlarging.  ``out`` (float32,
    ``(spec.height, spec.width)``) is filled instead of allocating a new array."""
    h, w = unit.shape
    interp = cv2.INTER_AREA if (h >= spec.height and w >= spec.width) else cv2.INTER_LINEAR
    size = (spec.width, spec.height)
    if out is not None and out.shape == (spec.height, spec.width) and out.dtype == np.float32:
        resized = cv2.resize(unit, size, dst=out, interpolation=interp)
    else:
        resized = cv2.resize(unit, size, interpolation=interp)
    return np.ascontiguousarray(resized, dtype=np.float32)
