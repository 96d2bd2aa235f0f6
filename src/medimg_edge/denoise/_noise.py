"""Noise-level estimation.  C++ (Immerkaer sum): csrc/kernels/noise.hpp."""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from .. import _core
from .._validation import as_image2d, check_int, check_odd_window

__all__ = ["estimate_noise", "estimate_poisson_gaussian", "estimate_speckle"]

_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)


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


def _local_mean_var(img: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    m = cv2.blur(img, (window, window), borderType=cv2.BORDER_REFLECT_101)
    s = cv2.blur(img * img, (window, window), borderType=cv2.BORDER_REFLECT_101)
    return m, np.maximum(s - m * m, 0.0)


def estimate_speckle(image: Any, *, window: int = 7) -> float:
    """Speckle coefficient of variation ``Cu = std / mean`` of homogeneous regions.

    The median, over pixels (every other row and column) whose local mean is above 1 % of
    the image's largest local mean, of the local coefficient of variation in a ``window x window``
    neighbourhood.  Homogeneous speckle dominates most B-mode frames, so the median
    approximates the homogeneous-region estimate of Lee (1980) without a hand-drawn ROI.
    Fully developed speckle has ``Cu = sqrt(4/pi - 1) ~ 0.523`` on the envelope and
    ``Cu = 1`` on intensity.

    Parameters
    ----------
    image : (M, N) array of uint8, uint16, float32 or float64
    window : int, default 7
        Odd window size in ``[3, 31]``.

    Returns
    -------
    float
        ``Cu`` >= 0 (0 for a constant or black image).
    """
    window = check_odd_window("window", window)
    img = as_image2d(image)
    m, v = _local_mean_var(img, window)
    # Windows centred on every other row and column: overlapping windows are strongly
    # correlated, so this loses nothing measurable and makes the median 4x cheaper.
    m, v = m[::2, ::2], v[::2, ::2]
    top = float(m.max())
    if top <= 0.0:
        return 0.0
    valid = m > 0.01 * top
    cv = np.sqrt(v[valid]) / m[valid]
    return float(np.median(cv)) if cv.size else 0.0


def estimate_poisson_gaussian(image: Any, *, block: int = 8) -> tuple[float, float]:
    """Fit the Poisson-Gaussian noise model ``var(z) = gain * E[z] + sigma^2``.

    A simplified form of Foi et al. (2008): the high-pass residual
    ``r = (I * N) / 6`` (``N`` the Immerkaer mask, ``sum N^2 = 36``, so
    ``var(r) = var(noise)`` for white noise) and a 3x3 local mean are pooled into
    ``block x block`` tiles; tiles are grouped into up to 32 intensity bins and the
    median tile variance of each bin (robust to edges) is fitted by least squares.

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
    r = cv2.filter2D(img, cv2.CV_32F, _IMMERKAER, borderType=cv2.BORDER_REFLECT_101) / 6.0
    m = cv2.blur(img, (3, 3), borderType=cv2.BORDER_REFLECT_101)
    rows = (img.shape[0] - 2) // block * block
    cols = (img.shape[1] - 2) // block * block
    r = r[1 : 1 + rows, 1 : 1 + cols].astype(np.float64)
    m = m[1 : 1 + rows, 1 : 1 + cols].astype(np.float64)
    shape = (rows // block, block, cols // block, block)
    tile_var = (r * r).reshape(shape).mean(axis=(1, 3)).ravel()
    tile_mean = m.reshape(shape).mean(axis=(1, 3)).ravel()
    n_bins = int(np.clip(tile_mean.size // 16, 1, 32))
    order = np.argsort(tile_mean, kind="stable")
    xs, ys, ws = [], [], []
    for part in np.array_split(order, n_bins):
        if part.size == 0:
            continue
        xs.append(float(np.median(tile_mean[part])))
        ys.append(float(np.median(tile_var[part])))
        ws.append(float(part.size))
    x = np.asarray(xs)
    y = np.asarray(ys)
    if x.size < 2 or float(np.ptp(x)) <= 1e-12 * max(1.0, float(np.abs(x).max())):
        return 0.0, math.sqrt(max(float(np.median(tile_var)), 0.0))
    w = np.sqrt(np.asarray(ws))
    a_mat = np.stack([x, np.ones_like(x)], axis=1) * w[:, None]
    (gain, var0), *_ = np.linalg.lstsq(a_mat, y * w, rcond=None)
    if gain <= 0.0:
        return 0.0, math.sqrt(max(float(np.median(tile_var)), 0.0))
    return float(gain), math.sqrt(max(float(var0), 0.0))
