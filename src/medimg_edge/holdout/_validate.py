"""Argument checks shared by the hold-out phantom generators."""

from __future__ import annotations

import math
import numbers

from .._errors import InvalidInputError

__all__ = ["check_seed", "check_size"]

MIN_SIZE = 128
MAX_SIZE = 4096


def check_seed(seed: object) -> int:
    """Return ``seed`` as a non-negative ``int`` or raise :class:`InvalidInputError`."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise InvalidInputError(
            f"seed must be a non-negative integer, got {type(seed).__name__}; pass e.g. seed=0"
        )
    value = int(seed)
    if value < 0:
        raise InvalidInputError(f"seed must be >= 0, got {value}; pass a non-negative integer")
    return value


def check_size(size: object) -> int:
    """Return ``size`` as an ``int`` in ``[MIN_SIZE, MAX_SIZE]`` or raise."""
    if isinstance(size, bool) or not isinstance(size, numbers.Integral):
        raise InvalidInputError(
            f"size must be an integer number of pixels, got {type(size).__name__}; "
            f"pass e.g. size=512"
        )
    value = int(size)
    if not MIN_SIZE <= value <= MAX_SIZE:
        raise InvalidInputError(
            f"size must be between {MIN_SIZE} and {MAX_SIZE} pixels, got {value}; "
            "choose a detector size in that range"
        )
    return value


def check_fraction(value: object, name: str) -> float:
    """Return ``value`` as a finite float in ``[0, 1]`` or raise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidInputError(f"{name} must be a number in [0, 1], got {type(value).__name__}")
    out = float(value)
    if not math.isfinite(out) or not 0.0 <= out <= 1.0:
        raise InvalidInputError(f"{name} must be a finite number in [0, 1], got {out}")
    return out
