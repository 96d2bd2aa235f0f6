"""Noise-level estimation.  C++ (Immerkaer sum): csrc/kernels/noise.hpp."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import _core
from .._validation import as_image2d, check_int, check_odd_window

__all__ = ["estimate_noise", "estimate_poisson_gaussian", "estimate_speckle"]


def estimate_noise(image: Any) -> float:
    """Standard deviation of additive white Gaussian noise, estimated from one image.

    ``sigma = sqrt(pi / 2) / (6 (W - 2)(H - 2)) * sum |I * N|`` over interior pixels, with
    the Laplacian-difference mask ``N = [[1, -2, 1], [-2, 4, -2], [1, -2, 1]]``, which
    cancels locally linear image structure.  Edges and texture bias the estimate upward.

    Parameters
    ----------
    image : (M, N) array of uint8, uint16, float32 or float64, M, N >= 3

    Returns
    -------
    float
        The estimated sigma, in the image's units.

    References
    ----------
    .. [1] J. Immerkaer, "Fast noise variance estimation," Computer Vision and Image
       Understanding 64(2):300-302, 1996. doi:10.1006/cviu.1996.0060
    """
    return _immerkaer_sigma(as_image2d(image, min_side=3))


def _immerkaer_sigma(img: npt.NDArray[np.float32]) -> float:
    """:func:`estimate_noise` of a validated C-contiguous float32 image, M, N >= 3."""
    return _immerkaer_sigma_of_sum(float(_core.immerkaer_abs_sum(img)), img.shape)


def _immerkaer_sigma_of_sum(abs_sum: float, shape: tuple[int, ...]) -> float:
    """The noise sigma from ``_core.immerkaer_abs_sum`` of an image of ``shape``."""
    rows, cols = shape
    sigma: float = math.sqrt(math.pi / 2.0) * abs_sum / (6.0 * (rows - 2) * (cols - 2))
    return sigma


def estimate_speckle(image: Any, *, window: int = 7) -> float:
    """Speckle coefficient of variation ``Cu = std / mean`` of homogeneous regions.

    The median, over pixels (every other row and column) whose local mean is above 1 % of
    the image's largest local mean, of the local coefficient of variation in a ``window x window``
    neighbourhood (reflect-101 border).  Homogeneous speckle dominates most B-mode frames,
    so the median approximates the homogeneous-region estimate of Lee (1980) without a
    hand-drawn ROI.  Fully developed speckle has ``Cu = sqrt(4/pi - 1) ~ 0.523`` on the
    envelope and ``Cu = 1`` on intensity.

    One fused C++ kernel (``csrc/kernels/estimate.hpp``): window sums at the sampled pixels
    only, in float32 over values shifted by the mean of the middle row, and an exact O(n)
    selection of the median (no sort).  Equal to the former NumPy/OpenCV composition
    (``cv2.blur`` of ``x`` and ``x^2``, ``numpy.median``), kept as a reference in
    ``tests/test_denoise.py``, within 1e-5 relative (observed <= 4e-7 on speckle images;
    the two differ only by float32 rounding of the local moments).

    Parameters
    ----------
    image : (M, N) array of uint8, uint16, float32 or float64
    window : int, default 7
        Odd window size in ``[3, 31]``.

    Returns
    -------
    float
        ``Cu`` >= 0 (0 for a constant or black image).

    References
    ----------
    .. [1] J.-S. Lee, "Digital image enhancement and noise filtering by use of local
       statistics," IEEE Trans. PAMI 2(2):165-168, 1980. doi:10.1109/TPAMI.1980.4766994
    """
    window = check_odd_window("window", window)
    return _speckle_cv(as_image2d(image), window)


def _speckle_cv(img: npt.NDArray[np.float32], window: int) -> float:
    """:func:`estimate_speckle` of a validated C-contiguous float32 image."""
    return float(_core.speckle_cv(img, window))


def estimate_poisson_gaussian(image: Any, *, block: int = 8) -> tuple[float, float]:
    """Fit the Poisson-Gaussian noise model ``var(z) = gain * E[z] + sigma^2``.

    A simplified form of Foi et al. (2008): the high-pass residual
    ``r = (I * N) / 6`` (``N`` the Immerkaer mask, ``sum N^2 = 36``, so
    ``var(r) = var(noise)`` for white noise) and a 3x3 local mean are pooled into
    ``block x block`` tiles; tiles are grouped into up to 32 intensity bins and the
    median tile variance of each bin (robust to edges) is fitted by weighted least
    squares (weights ``sqrt`` of the bin sizes).

    The tile sums run in one SIMD pass (``csrc/kernels/estimate.hpp``: the stencils stay
    inside the image, r and the box mean in float32, their tile sums in float64); the
    stable sort, the bin medians and the closed-form weighted line fit in C++.  Equal to
    the former NumPy/OpenCV composition (``cv2.filter2D``, ``cv2.blur``,
    ``numpy.argsort``, ``numpy.median``, ``numpy.linalg.lstsq``), kept as a reference in
    ``tests/test_denoise.py``, within 1e-6 relative for integer-valued images (exact
    stencil sums; only the summation order and the line fit's rounding differ) and 1e-4
    relative for float images (float32 rounding of the stencils).

    Parameters
    ----------
    image : (M, N) array of uint8, uint16, float32 or float64, M, N >= 3 * block
        Raw (linear, not log-transformed) detector values.
    block : int, default 8
        Tile size in pixels, in ``[4, 64]``.

    Returns
    -------
    gain, sigma : float
        ``gain >= 0`` (detector units per quantum) and ``sigma >= 0`` (electronic noise).

    References
    ----------
    .. [1] A. Foi, M. Trimeche, V. Katkovnik and K. Egiazarian, "Practical
       Poissonian-Gaussian noise modeling and fitting for single-image raw-data," IEEE
       Trans. Image Processing 17(10):1737-1754, 2008. doi:10.1109/TIP.2008.2001399
    """
    block = check_int("block", block, 4, 64)
    img = as_image2d(image, min_side=3 * block)
    gain, sigma = _core.poisson_gaussian(img, block)
    return float(gain), float(sigma)
