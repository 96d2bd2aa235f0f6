"""Shared pieces of the phantom simulators: the :class:`Sample` record, labels, seeding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from .._errors import InvalidInputError
from .._validation import check_int

__all__ = ["LABELS", "MAX_SEED", "MAX_SIZE", "MIN_SIZE", "Sample"]

#: Class names per modality; the first one is the lesion-free class.
LABELS: dict[str, tuple[str, ...]] = {
    "xray": ("normal", "nodule"),
    "ultrasound": ("normal", "cyst", "hypoechoic", "hyperechoic"),
}

MIN_SIZE = 64
MAX_SIZE = 4096
#: Seeds are non-negative integers below 2**128 (what :func:`generate` derives).
MAX_SEED = (1 << 128) - 1

F32 = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Sample:
    """One simulated frame with exact ground truth.

    Attributes
    ----------
    image : ndarray
        X-ray: ``uint16`` (values within the chosen bit depth, 12 by default), the log
        detector response (bone bright, lungs dark).  Ultrasound: ``uint8`` B-mode (the
        envelope after log compression).  Shape ``(size, size)``.
    modality : str
        ``"xray"`` or ``"ultrasound"``.
    label : str
        One of ``LABELS[modality]``.
    mask : ndarray of bool
        ``True`` on the lesion, all ``False`` for ``"normal"``; same shape as ``image``.
    bbox : tuple of int or None
        ``(y0, x0, y1, x1)`` with exclusive ends: the bounding box of ``mask``; ``None``
        for ``"normal"``.
    params : dict
        Everything drawn for this sample (JSON-serialisable): seed, dose / SNR, geometry,
        lesion centre, size and contrast, ...
    """

    image: npt.NDArray[Any]
    modality: str
    label: str
    mask: BoolArray
    bbox: tuple[int, int, int, int] | None
    params: dict[str, Any]


def check_seed(seed: object) -> int:
    """Validate a seed (a non-negative integer below 2**128)."""
    return check_int("seed", seed, 0, MAX_SEED)


def check_size(size: object) -> int:
    """Validate an image side length."""
    return check_int("size", size, MIN_SIZE, MAX_SIZE)


def streams(seed: int, n: int) -> list[np.random.Generator]:
    """``n`` independent generators derived from ``seed`` (one per aspect of a sample).

    Each aspect (class choice, anatomy, lesion, noise, ...) draws from its own stream, so
    forcing one aspect (e.g. ``nodule=True``) leaves every other aspect unchanged.
    """
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n)]


def bbox_of(mask: BoolArray) -> tuple[int, int, int, int] | None:
    """Bounding box ``(y0, x0, y1, x1)`` (exclusive ends) of a mask, None if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def smooth_field(coarse: F32, shape: tuple[int, int]) -> F32:
    """Smooth zero-mean, unit-variance random field: a coarse grid of Gaussian values
    (``rng.standard_normal``) interpolated bicubically to ``shape``."""
    field = np.asarray(
        cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC), np.float32
    )
    out: F32 = (field - np.float32(field.mean())) / np.float32(max(float(field.std()), 1e-6))
    return out


def choice_or(value: str | None, name: str, allowed: tuple[str, ...], drawn: str) -> str:
    """``value`` if given (checked against ``allowed``), else the drawn choice."""
    if value is None:
        return drawn
    if not isinstance(value, str) or value not in allowed:
        raise InvalidInputError(
            f"{name} must be one of {', '.join(repr(a) for a in allowed)} or None, got {value!r}"
        )
    return value


def uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """One draw of U(lo, hi) as a Python float."""
    return float(rng.uniform(lo, hi))


def options(given: dict[str, Any], **defaults: Any) -> dict[str, Any]:
    """Keyword options of a private simulator: ``defaults`` updated by ``given``."""
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise InvalidInputError(f"unknown option(s) {', '.join(unknown)}")
    return defaults | given


def check_flag(name: str, value: object) -> bool | None:
    """Validate an optional boolean switch."""
    if value is not None and not isinstance(value, bool | np.bool_):
        raise InvalidInputError(f"{name} must be True, False or None, got {value!r}")
    return None if value is None else bool(value)
