"""Input validation at the Python/C++ boundary.

Every public function that hands an array to ``medimg_edge._core`` passes it through
:func:`as_image2d` (or :func:`as_float_array`) first, so the C++ kernels only ever see
non-empty, finite, C-contiguous float32 arrays of a sane size.  Errors are
:class:`~medimg_edge.InvalidInputError` with a message that says how to fix the input.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _core
from ._errors import InvalidInputError

__all__ = [
    "ACCEPTED_DTYPES",
    "MAX_ABS_VALUE",
    "MAX_PIXELS",
    "MAX_SIDE",
    "as_float_array",
    "as_image2d",
    "check_float",
    "check_int",
    "check_odd_window",
    "check_out",
    "checked_array",
    "value_range",
    "widen_integer",
]

#: Pixel types the kernels accept; everything is computed in float32.
ACCEPTED_DTYPES = (
    np.dtype(np.uint8),
    np.dtype(np.uint16),
    np.dtype(np.float32),
    np.dtype(np.float64),
)
#: Largest number of pixels in one image (a 16k x 16k detector is 268 M pixels).
MAX_PIXELS = 1 << 28
#: Longest side of one image (1-D signals are limited by MAX_PIXELS only).
MAX_SIDE = 1 << 16
#: Largest accepted magnitude of a float pixel value: local variances square the
#: values in float32 (max 3.4e38), and no detector or display produces more.
MAX_ABS_VALUE = 1e15

_DTYPE_NAMES = ", ".join(str(d) for d in ACCEPTED_DTYPES)


def _describe(obj: object) -> str:
    return type(obj).__name__


def checked_array(
    image: Any, *, name: str = "image", ndims: tuple[int, ...] = (2,), min_side: int = 1
) -> npt.NDArray[Any]:
    """Check type, dtype, shape and size of ``image``; return it as an ndarray.

    The dtype (one of :data:`ACCEPTED_DTYPES`) is kept, in native byte order (no copy
    otherwise; the result may be non-contiguous); values are not checked.
    :func:`as_float_array` adds the float32 conversion and the value checks; kernels
    that need the exact input values (LBP in float64) call this directly.

    Raises
    ------
    InvalidInputError
        For a wrong type, dtype, number of dimensions, an empty or oversized array.
    """
    if isinstance(image, np.ndarray):
        arr = image
    else:
        if image is None or isinstance(image, (str, bytes, dict)):
            raise InvalidInputError(
                f"{name} must be a NumPy array, got {_describe(image)}; "
                "pass e.g. numpy.asarray(frame)"
            )
        try:
            arr = np.asarray(image)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"{name} could not be converted to a NumPy array ({exc}); pass a 2-D array"
            ) from None
    # Byte order does not matter (big-endian DICOM/FITS data convert on the copy below).
    native = arr.dtype.newbyteorder("=") if arr.dtype.byteorder in "<>" else arr.dtype
    if native not in ACCEPTED_DTYPES:
        hint = ""
        if arr.dtype == np.bool_:
            hint = " (for a mask, use image.astype(np.uint8))"
        elif arr.dtype.kind in "iu":
            hint = (
                " (convert it exactly: image.astype(np.float32) for 8/16-bit integers, "
                "image.astype(np.float64) for wider ones; medimg_edge.diagnose and "
                "Diagnoser accept integer frames as they are)"
            )
        elif arr.dtype.kind == "c":
            hint = " (pass the magnitude: numpy.abs(image).astype(np.float32))"
        raise InvalidInputError(
            f"{name} has dtype {arr.dtype}; accepted dtypes are {_DTYPE_NAMES}{hint}"
        )
    if arr.ndim not in ndims:
        want = " or ".join(f"{d}-D" for d in ndims)
        hint = ""
        if arr.ndim == 3 and arr.shape[-1] in (1, 3, 4):
            hint = (
                "; for a colour frame convert to grayscale first "
                "(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)), for a single channel use "
                "image[..., 0]"
            )
        raise InvalidInputError(
            f"{name} must be {want}, got shape {arr.shape} ({arr.ndim}-D){hint}"
        )
    if arr.size == 0:
        raise InvalidInputError(f"{name} is empty (shape {arr.shape}); pass a non-empty image")
    if min(arr.shape) < min_side:
        raise InvalidInputError(
            f"{name} has shape {arr.shape}; every side must be at least {min_side} pixels"
        )
    if (arr.ndim > 1 and max(arr.shape) > MAX_SIDE) or arr.size > MAX_PIXELS:
        raise InvalidInputError(
            f"{name} has shape {arr.shape}, beyond the limits of {MAX_SIDE} pixels per side "
            f"and {MAX_PIXELS} pixels in all; crop or downsample it first"
        )
    return arr if arr.dtype == native else arr.astype(native)


def widen_integer(image: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """An integer (or bool / float16) array as one of :data:`ACCEPTED_DTYPES`, exactly.

    ``uint8`` / ``uint16`` / float32 / float64 are returned as they are.  Other integer
    arrays (int8, int16, int32, int64, uint32, uint64, e.g. CT or DX pixels after the
    modality LUT) keep their values: ``uint16`` when every value lies in [0, 65535] (so
    the quality thresholds see the same nominal range as for the unsigned frame of the
    same values), else float32 for 8/16-bit types and float64 for wider ones (exact up to
    2**53; beyond that an :class:`InvalidInputError`).  ``bool`` becomes ``uint8`` and
    float16 float32.  Any other dtype is returned unchanged (:func:`checked_array` then
    says what to do).
    """
    dt = image.dtype
    if dt in ACCEPTED_DTYPES:
        return image
    if dt == np.bool_:
        return image.astype(np.uint8)
    if dt.kind == "f" and dt.itemsize == 2:
        return image.astype(np.float32)
    if dt.kind not in "iu" or image.size == 0:
        return image
    lo, hi = int(image.min()), int(image.max())
    if lo >= 0 and hi <= 0xFFFF:
        return image.astype(np.uint16)
    if dt.itemsize <= 2:
        return image.astype(np.float32)
    if max(-lo, hi) > 1 << 53:
        raise InvalidInputError(
            f"integer frame with values up to {max(-lo, hi)} in magnitude (beyond 2**53, "
            "not exact in float64); rescale it, e.g. (image >> 16).astype(np.int32)"
        )
    return image.astype(np.float64)


def as_float_array(
    image: Any,
    *,
    name: str = "image",
    ndims: tuple[int, ...] = (2,),
    min_side: int = 1,
    nonnegative: str | None = None,
    out: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]:
    """Validate ``image`` and return it as a C-contiguous float32 array.

    Parameters
    ----------
    image : array_like
        The input.  Must be a NumPy array (or convertible without ambiguity) of one of
        :data:`ACCEPTED_DTYPES`, with ``ndim`` in ``ndims``.
    name : str
        What to call the input in error messages.
    ndims : tuple of int
        Accepted numbers of dimensions.
    min_side : int
        Smallest accepted length of every axis.
    nonnegative : str, optional
        If given, negative values are refused with this text as the reason (checked in
        the same SIMD pass as finiteness).
    out : ndarray of float32, optional
        A C-contiguous float32 array of the image's shape to convert into (a workspace
        reused across calls); not used when its shape does not match or when ``image``
        is already a C-contiguous float32 array (returned as it is).

    Raises
    ------
    InvalidInputError
        For anything the kernels cannot process correctly; the message says how to fix it.
    """
    arr = checked_array(image, name=name, ndims=ndims, min_side=min_side)
    native = arr.dtype
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported below
        if (
            out is not None
            and not (arr.dtype == np.float32 and arr.flags.c_contiguous)
            and out.shape == arr.shape
            and out.dtype == np.float32
            and out.flags.c_contiguous
            and out.flags.writeable
            and not np.may_share_memory(out, arr)
        ):
            # uint8/uint16 convert in C with the GIL released (NumPy holds it for this cast).
            if not _core.to_float32(arr, out):
                np.copyto(out, arr, casting="unsafe")
        else:
            out = np.ascontiguousarray(arr, dtype=np.float32)
    if arr.dtype.kind == "f":
        finite, lo, hi = _core.scan(out)
        if not finite:
            bad = int(out.size - np.count_nonzero(np.isfinite(out)))
            overflow = (
                " (float64 values beyond the float32 range count too)"
                if (native == np.float64 and np.isfinite(arr).all())
                else ""
            )
            raise InvalidInputError(
                f"{name} contains {bad} NaN or infinite value(s){overflow}; replace them, "
                "e.g. numpy.nan_to_num(image), or mask the frame out"
            )
        if max(-lo, hi) > MAX_ABS_VALUE:
            raise InvalidInputError(
                f"{name} has values up to {max(-lo, hi):.3g} in magnitude, beyond the "
                f"supported {MAX_ABS_VALUE:.0e} (float32 squares of such values overflow); "
                "rescale the image, e.g. image / numpy.abs(image).max()"
            )
        if nonnegative is not None and lo < 0.0:
            raise InvalidInputError(
                f"{name} has negative values (min {lo:.3g}): {nonnegative}; "
                "shift or clip the image, e.g. numpy.clip(image, 0, None)"
            )
    return out


def value_range(image: npt.NDArray[np.float32]) -> tuple[float, float]:
    """Minimum and maximum of an array returned by :func:`as_float_array` (one SIMD pass)."""
    _, lo, hi = _core.scan(image)
    return float(lo), float(hi)


def as_image2d(
    image: Any, *, name: str = "image", min_side: int = 1, nonnegative: str | None = None
) -> npt.NDArray[np.float32]:
    """Validate a 2-D grayscale image; see :func:`as_float_array`."""
    return as_float_array(image, name=name, ndims=(2,), min_side=min_side, nonnegative=nonnegative)


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(name: str, value: object, lo: int, hi: int) -> int:
    """Return ``value`` as int if it is an integer in ``[lo, hi]``, else raise."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise InvalidInputError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    v = int(value)
    if not lo <= v <= hi:
        raise InvalidInputError(f"{name} must be an integer in [{lo}, {hi}], got {v}")
    return v


def check_float(
    name: str,
    value: object,
    lo: float = -math.inf,
    hi: float = math.inf,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> float:
    """Return ``value`` as float if it is a finite real in the given interval, else raise."""
    lb = "(" if lo_open else "["
    rb = ")" if hi_open else "]"
    interval = f"{lb}{lo:g}, {hi:g}{rb}"
    if not _is_real(value):
        raise InvalidInputError(f"{name} must be a real number in {interval}, got {value!r}")
    v = float(value)  # type: ignore[arg-type]
    ok = math.isfinite(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok:
        raise InvalidInputError(f"{name} must be a finite number in {interval}, got {v!r}")
    return v


def check_odd_window(name: str, value: object, max_window: int = 31) -> int:
    """Return a valid odd filter window size in ``[3, max_window]``, else raise."""
    w = check_int(name, value, 3, max_window)
    if w % 2 == 0:
        raise InvalidInputError(f"{name} must be odd (3, 5, 7, ...), got {w}; try {w + 1}")
    return w


def check_out(
    out: Any,
    shape: tuple[int, ...],
    *,
    source: npt.NDArray[Any] | None = None,
    dtype: npt.DTypeLike = np.float32,
    allow_source: bool = True,
) -> npt.NDArray[Any] | None:
    """Check an ``out=`` argument: ``None``, or a writeable C-contiguous ndarray of
    ``dtype`` (default float32) and ``shape``.  It may be ``source`` itself when
    ``allow_source`` (kernels that read their whole input before they write) but must not
    overlap it otherwise.

    Raises
    ------
    InvalidInputError
        For anything else; the message says what to pass.
    """
    if out is None:
        return None
    dt = np.dtype(dtype)
    want = f"a writeable C-contiguous {dt} array of shape {tuple(shape)}"
    if not isinstance(out, np.ndarray):
        raise InvalidInputError(
            f"out must be {want} or None, got {_describe(out)}; "
            f"allocate it once with numpy.empty({tuple(shape)}, numpy.{dt})"
        )
    if out.dtype != dt or not out.flags.c_contiguous or not out.flags.writeable:
        raise InvalidInputError(
            f"out must be {want}, got dtype {out.dtype}"
            f"{'' if out.flags.c_contiguous else ', not C-contiguous'}"
            f"{'' if out.flags.writeable else ', read-only'}; "
            f"allocate it with numpy.empty({tuple(shape)}, numpy.{dt})"
        )
    if out.shape != tuple(shape):
        raise InvalidInputError(f"out has shape {out.shape}; it must be {want}")
    if source is not None and np.may_share_memory(out, source):
        if not allow_source:
            raise InvalidInputError("out overlaps the input; pass a separate array")
        if out is not source:
            raise InvalidInputError(
                "out overlaps the input without being the input itself; pass the input "
                "(in place) or a separate array"
            )
    return out
