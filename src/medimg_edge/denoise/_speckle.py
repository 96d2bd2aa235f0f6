"""Speckle filters.  C++: csrc/kernels/speckle.hpp; binding: csrc/bindings/register_denoise.cpp;
tests: tests/test_denoise.py; benchmarks: bench/test_bench_denoise.py."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from .. import _core
from .._validation import as_image2d, check_float, check_int, check_odd_window, check_out

__all__ = ["frost", "kuan", "lee", "srad", "wiener"]

F32 = npt.NDArray[np.float32]


def srad(
    image: Any,
    *,
    iterations: int = 20,
    time_step: float = 0.5,
    q0: float | None = None,
    rho: float = 1.0 / 6.0,
    out: F32 | None = None,
) -> F32:
    """Speckle Reducing Anisotropic Diffusion.

    Explicit scheme of Yu & Acton (2002): the diffusion coefficient is
    ``c(q) = 1 / (1 + (q^2 - q0^2) / (q0^2 (1 + q0^2)))`` (their eq. 33) of the
    instantaneous coefficient of variation ``q`` (eq. 31, from the four-neighbour
    gradient and Laplacian normalised by the pixel value), clamped to ``[0, 1]``, and the
    update ``I += time_step / 4 * div(c grad I)`` (eq. 58).  The speckle scale decays as
    ``q0(t) = q0 exp(-rho t)`` with ``t = n * time_step``.  The border is replicated
    (zero flux: the mean intensity is preserved).  Pixel values are floored at 1e-6 of the
    image maximum inside ``q`` so black pixels do not divide by zero.

    Parameters
    ----------
    image : (M, N) array of uint8, uint16, float32 or float64
        Non-negative intensities (envelope or log-compressed B-mode).
    iterations : int, default 20
        Number of diffusion steps (0 returns a float32 copy).
    time_step : float, default 0.5
        Step ``dt`` in ``(0, 1]``; the scheme is stable for ``dt <= 1`` because
        ``c <= 1``.
    q0 : float, optional
        Speckle coefficient of variation at ``t = 0``; default :func:`estimate_speckle`.
    rho : float, default 1/6
        Decay rate of ``q0`` (Yu & Acton suggest 1/6).
    out : (M, N) float32 ndarray, optional
        Where to write the result (C-contiguous, writeable; it may be the input itself when
        that is a C-contiguous float32 array).  With ``out`` and the per-thread scratch
        buffer the kernel reuses, a loop over frames allocates nothing.

    Returns
    -------
    (M, N) float32 ndarray

    References
    ----------
    .. [1] Y. Yu and S. T. Acton, "Speckle reducing anisotropic diffusion," IEEE Trans.
       Image Processing 11(11):1260-1270, 2002. doi:10.1109/TIP.2002.804276
    """
    img = as_image2d(
        image, nonnegative="srad needs non-negative intensities (speckle is multiplicative)"
    )
    iterations = check_int("iterations", iterations, 0, 100_000)
    time_step = check_float("time_step", time_step, 0.0, 1.0, lo_open=True)
    rho = check_float("rho", rho, 0.0)
    if q0 is not None:
        q0 = check_float("q0", q0, 0.0, lo_open=True)
    dst = check_out(out, img.shape, source=img)
    if iterations == 0:
        if dst is not None:
            np.copyto(dst, img)
            return dst
        return img.copy() if img is image else img
    if q0 is None:  # estimate and filter in one call (one GIL hand-off)
        res, _ = _core.srad_default(img, iterations, time_step, rho, out=dst)
        return res
    res = _core.srad(img, iterations, time_step, q0, rho, out=dst)
    return res


def _local(image: Any, noise_cv: float | None, window: int, kind: int, out: Any) -> F32:
    """Lee (kind 0) / Kuan (1); with ``noise_cv`` None the estimate and the filter run in one
    call (one GIL hand-off)."""
    if noise_cv is not None:
        noise_cv = check_float("noise_cv", noise_cv, 0.0, 10.0)
    img = as_image2d(image)
    dst = check_out(out, img.shape, source=img)
    if noise_cv is None:
        res, _ = _core.local_default(img, window, kind, out=dst)
        return res
    cu = noise_cv
    g = 1.0 if kind == 0 else 1.0 + cu * cu
    res = _core.local_stats(img, window, cu * cu, 0.0, g, out=dst)
    return res


def lee(
    image: Any, *, window: int = 7, noise_cv: float | None = None, out: F32 | None = None
) -> F32:
    """Lee filter for multiplicative speckle.

    ``out = m + W (x - m)`` with local mean ``m`` and variance ``v`` over a
    ``window x window`` neighbourhood and ``W = clamp(1 - Cu^2 / Ci^2, 0, 1)``,
    ``Ci^2 = v / m^2``; ``Cu`` is the speckle coefficient of variation.  Border:
    reflect-101 (OpenCV's default).

    Parameters
    ----------
    image : (M, N) array of uint8, uint16, float32 or float64
    window : int, default 7
        Odd window size in ``[3, 31]``.
    noise_cv : float, optional
        ``Cu`` (e.g. ``1/sqrt(L)`` for L-look intensity); default :func:`estimate_speckle`.
    out : (M, N) float32 ndarray, optional
        Where to write the result (C-contiguous, writeable; it may be the input itself when
        that is a C-contiguous float32 array).  With ``out`` and the per-thread scratch
        buffer the kernel reuses, a loop over frames allocates nothing.

    Returns
    -------
    (M, N) float32 ndarray

    References
    ----------
    .. [1] J.-S. Lee, "Digital image enhancement and noise filtering by use of local
       statistics," IEEE Trans. PAMI 2(2):165-168, 1980. doi:10.1109/TPAMI.1980.4766994
    .. [2] A. Lopes, R. Touzi and E. Nezry, "Adaptive speckle filters and scene
       heterogeneity," IEEE Trans. Geosci. Remote Sens. 28(6):992-1000, 1990.
    """
    window = check_odd_window("window", window)
    return _local(image, noise_cv, window, 0, out)


def kuan(
    image: Any, *, window: int = 7, noise_cv: float | None = None, out: F32 | None = None
) -> F32:
    """Kuan filter for multiplicative speckle.

    As :func:`lee` with ``W = clamp((1 - Cu^2 / Ci^2) / (1 + Cu^2), 0, 1)``, the local
    linear MMSE estimate for a multiplicative noise model.

    Parameters
    ----------
    image : (M, N) array of uint8, uint16, float32 or float64
    window : int, default 7
        Odd window size in ``[3, 31]``.
    noise_cv : float, optional
        Speckle coefficient of variation ``Cu``; default :func:`estimate_speckle`.
    out : (M, N) float32 ndarray, optional
        Where to write the result (C-contiguous, writeable; it may be the input itself when
        that is a C-contiguous float32 array).  With ``out`` and the per-thread scratch
        buffer the kernel reuses, a loop over frames allocates nothing.

    Returns
    -------
    (M, N) float32 ndarray

    References
    ----------
    .. [1] D. T. Kuan, A. A. Sawchuk, T. C. Strand and P. Chavel, "Adaptive noise
       smoothing filter for images with signal-dependent noise," IEEE Trans. PAMI
       7(2):165-177, 1985. doi:10.1109/TPAMI.1985.4767641
    """
    window = check_odd_window("window", window)
    return _local(image, noise_cv, window, 1, out)


def wiener(image: Any, *, noise_sigma: float, window: int = 5, out: F32 | None = None) -> F32:
    """Adaptive local Wiener filter (Lee's additive-noise filter).

    ``out = m + W (x - m)`` with ``W = clamp((v - sigma^2) / v, 0, 1)``: the local
    linear MMSE estimate under additive white noise of known ``sigma``.  Used by
    :func:`xray` in the variance-stabilised domain, where ``sigma = 1``.

    Parameters
    ----------
    image : (M, N) array of uint8, uint16, float32 or float64
    noise_sigma : float
        Standard deviation of the additive noise, >= 0.
    window : int, default 5
        Odd window size in ``[3, 31]``.
    out : (M, N) float32 ndarray, optional
        Where to write the result (C-contiguous, writeable; it may be the input itself when
        that is a C-contiguous float32 array).  With ``out`` and the per-thread scratch
        buffer the kernel reuses, a loop over frames allocates nothing.

    Returns
    -------
    (M, N) float32 ndarray

    References
    ----------
    .. [1] J.-S. Lee, "Digital image enhancement and noise filtering by use of local
       statistics," IEEE Trans. PAMI 2(2):165-168, 1980.
    """
    window = check_odd_window("window", window)
    sigma = check_float("noise_sigma", noise_sigma, 0.0)
    img = as_image2d(image)
    dst = check_out(out, img.shape, source=img)
    res: F32 = _core.local_stats(img, window, 0.0, sigma * sigma, 1.0, out=dst)
    return res


def frost(image: Any, *, window: int = 7, damping: float = 2.0, out: F32 | None = None) -> F32:
    """Frost filter for multiplicative speckle.

    Weighted mean over a ``window x window`` neighbourhood with weights
    ``exp(-damping * Ci^2 * d)``, where ``Ci^2 = v / m^2`` is the squared local
    coefficient of variation at the centre pixel and ``d`` the Euclidean distance in
    pixels: flat regions are averaged, edges (large ``Ci``) keep their value.  Border:
    reflect-101.

    Parameters
    ----------
    image : (M, N) array of uint8, uint16, float32 or float64
    window : int, default 7
        Odd window size in ``[3, 31]``.
    damping : float, default 2.0
        ``K`` in the weights; 0 gives the box mean.
    out : (M, N) float32 ndarray, optional
        Where to write the result (C-contiguous, writeable; it may be the input itself when
        that is a C-contiguous float32 array).  With ``out`` and the per-thread scratch
        buffer the kernel reuses, a loop over frames allocates nothing.

    Returns
    -------
    (M, N) float32 ndarray

    References
    ----------
    .. [1] V. S. Frost, J. A. Stiles, K. S. Shanmugan and J. C. Holtzman, "A model for
       radar images and its application to adaptive digital filtering of multiplicative
       noise," IEEE Trans. PAMI 4(2):157-166, 1982. doi:10.1109/TPAMI.1982.4767223
    """
    window = check_odd_window("window", window)
    damping = check_float("damping", damping, 0.0, 1e6)
    img = as_image2d(image)
    res: F32 = _core.frost(img, window, damping, out=check_out(out, img.shape, source=img))
    return res
