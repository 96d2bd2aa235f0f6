"""Modality presets: parameters chosen from the noise estimated on the frame itself."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from .. import _core
from .._errors import InvalidInputError
from .._validation import as_image2d, check_float, check_odd_window, check_out, value_range
from ._noise import estimate_poisson_gaussian
from ._speckle import frost, wiener
from ._vst import anscombe, inverse_anscombe

__all__ = ["ultrasound", "xray"]

F32 = npt.NDArray[np.float32]

_US_METHODS = ("srad", "lee", "kuan", "frost")


def ultrasound(image: Any, *, method: str = "srad", out: F32 | None = None) -> F32:
    """Speckle reduction for a B-mode ultrasound frame with parameters from the frame.

    Estimates the speckle coefficient of variation ``Cu`` with :func:`estimate_speckle`
    and runs the chosen filter with it: ``srad`` with ``q0 = Cu`` and
    ``iterations = clip(round(40 Cu), 5, 40)`` (stronger speckle, more diffusion; round
    half to even) at ``time_step = 0.5``; ``lee``/``kuan`` with ``noise_cv = Cu`` and a 7x7 window;
    ``frost`` with a 7x7 window and ``damping = 2``.

    Parameters
    ----------
    image : (M, N) array of uint8, uint16, float32 or float64
        Non-negative B-mode intensities (grayscale).
    method : {"srad", "lee", "kuan", "frost"}
    out : (M, N) float32 ndarray, optional
        Where to write the result (C-contiguous, writeable; it may be the input itself
        when that is a C-contiguous float32 array).

    Returns
    -------
    (M, N) float32 ndarray
    """
    if not isinstance(method, str) or method not in _US_METHODS:
        raise InvalidInputError(f"method must be one of {', '.join(_US_METHODS)}, got {method!r}")
    img = as_image2d(
        image,
        nonnegative="srad needs non-negative intensities (speckle is multiplicative)"
        if method == "srad"
        else None,
    )
    if method == "frost":
        return frost(img, window=7, damping=2.0, out=out)
    dst = check_out(out, img.shape, source=img)
    # Estimate and filter in one call (one GIL hand-off, one validation of the frame).
    if method == "srad":
        res: F32
        res, _ = _core.srad_default(img, -1, 0.5, 1.0 / 6.0, out=dst)
        return res
    res, _ = _core.local_default(img, 7, 0 if method == "lee" else 1, out=dst)
    return res


def xray(
    image: Any,
    *,
    gain: float | None = None,
    sigma: float | None = None,
    window: int = 5,
    out: F32 | None = None,
) -> F32:
    """Poisson-Gaussian denoising for a raw (linear) X-ray frame.

    Generalised Anscombe transform -> adaptive local Wiener filter with unit noise
    variance (:func:`wiener`) -> exact unbiased inverse (Makitalo & Foi 2013).  ``gain``
    and ``sigma`` default to :func:`estimate_poisson_gaussian` of the frame; when the
    fitted gain is zero (pure Gaussian noise), the Wiener filter runs on the frame with the
    fitted ``sigma``.

    Parameters
    ----------
    image : (M, N) array of uint8, uint16, float32 or float64, M, N >= 24
        Linear detector values (before any log transform or windowing).
    gain, sigma : float, optional
        Poisson gain (units per quantum) and electronic noise sigma, if known.
    window : int, default 5
        Odd Wiener window in ``[3, 31]``.
    out : (M, N) float32 ndarray, optional
        Where to write the result (C-contiguous, writeable; it may be the input itself
        when that is a C-contiguous float32 array; the intermediate transformed frames
        are written into it too).

    Returns
    -------
    (M, N) float32 ndarray
    """
    window = check_odd_window("window", window)
    img = as_image2d(image)
    if gain is None or sigma is None:
        g_est, s_est = estimate_poisson_gaussian(img)
        gain = g_est if gain is None else gain
        sigma = s_est if sigma is None else sigma
    g = check_float("gain", gain, 0.0)
    s = check_float("sigma", sigma, 0.0)
    dst = check_out(out, img.shape, source=img)
    lo, hi = value_range(img)
    if g <= 1e-9 * max(1.0, -lo, hi):
        return wiener(img, noise_sigma=s, window=window, out=dst)
    # With out, the three stages run in place in it (each kernel reads its whole input
    # before writing).
    y = anscombe(img, gain=g, sigma=s, out=dst)
    z = wiener(y, noise_sigma=1.0, window=window, out=y if dst is not None else None)
    return inverse_anscombe(z, gain=g, sigma=s, out=z if dst is not None else None)
