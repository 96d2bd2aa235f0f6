"""Variance stabilisation for Poisson-Gaussian noise.  C++: csrc/kernels/vst.hpp."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import _core
from .._validation import as_float_array, check_float, check_out

__all__ = ["anscombe", "expected_anscombe", "inverse_anscombe"]

F32 = npt.NDArray[np.float32]

# Table of the exact unbiased inverse: y' in [0, _Y_MAX] (normalised units, gain 1),
# sampled at _N_TABLE points uniformly in the transformed domain.  Beyond it the
# closed-form asymptote (error < 1e-4 relative at y' = _Y_MAX) takes over.
_Y_MAX = 400.0
_N_Y = 1600
_N_TABLE = 8192
_GAUSS_NODES = 3601  # odd, for Simpson's rule


def expected_anscombe(y: npt.ArrayLike, sigma: float = 0.0) -> npt.NDArray[np.float64]:
    """``E[f(z) | y]`` for ``z = Poisson(y) + N(0, sigma^2)`` and the Anscombe ``f``.

    ``f(z) = 2 sqrt(max(z + 3/8 + sigma^2, 0))`` (gain 1).  The Poisson sum is exact to
    double precision (truncated at ``y + 12 sqrt(y) + 40``); the Gaussian expectation uses
    Simpson's rule over +-9 sigma.  This is the function the exact unbiased inverse inverts.

    Parameters
    ----------
    y : array_like
        Non-negative Poisson means (normalised units).
    sigma : float
        Gaussian standard deviation in the same units.
    """
    yv = np.atleast_1d(np.asarray(y, dtype=np.float64))
    kmax = int(yv.max() + 12.0 * np.sqrt(yv.max()) + 40.0)
    k = np.arange(kmax + 1, dtype=np.float64)
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, kmax + 1)))])
    log_y = np.log(np.where(yv > 0.0, yv, 1.0))[:, None]
    log_pmf = k[None, :] * log_y - yv[:, None] - log_fact[None, :]
    pmf = np.exp(log_pmf)
    pmf[yv == 0.0, 1:] = 0.0  # Poisson(0) is a point mass at k = 0
    if sigma > 0.0:
        # E over the Gaussian by Simpson's rule on +-9 sigma: f has a kink where its
        # argument crosses 0, which defeats Gauss-Hermite quadrature at low counts.
        t = np.linspace(-9.0, 9.0, _GAUSS_NODES)
        w = np.full(_GAUSS_NODES, 2.0)
        w[1:-1:2] = 4.0
        w[0] = w[-1] = 1.0
        w *= (t[1] - t[0]) / 3.0 * np.exp(-0.5 * t * t) / np.sqrt(2.0 * np.pi)
        w /= w.sum()
        arg = k[:, None] + sigma * t[None, :] + 0.375 + sigma * sigma
        g = (2.0 * np.sqrt(np.maximum(arg, 0.0))) @ w
    else:
        g = 2.0 * np.sqrt(k + 0.375)
    out: npt.NDArray[np.float64] = pmf @ g
    return out


@functools.lru_cache(maxsize=64)
def _inverse_table(sigma_n: float) -> tuple[F32, float, float]:
    y = np.linspace(0.0, np.sqrt(_Y_MAX), _N_Y) ** 2
    e = expected_anscombe(y, sigma_n)
    d = np.linspace(e[0], e[-1], _N_TABLE)
    values = np.interp(d, e, y).astype(np.float32)
    values.setflags(write=False)
    return values, float(e[0]), float(d[1] - d[0])


def _params(gain: float, sigma: float) -> tuple[float, float]:
    g = check_float("gain", gain, 0.0, lo_open=True)
    s = check_float("sigma", sigma, 0.0)
    return g, s


def anscombe(image: Any, *, gain: float = 1.0, sigma: float = 0.0, out: F32 | None = None) -> F32:
    """Generalised Anscombe transform for Poisson-Gaussian noise.

    ``f(z) = 2 / gain * sqrt(max(gain * z + 3/8 gain^2 + sigma^2, 0))`` maps
    ``z = gain * Poisson(y / gain) + N(0, sigma^2)`` to approximately unit-variance
    Gaussian noise, so Gaussian denoisers apply.

    Parameters
    ----------
    image : array of uint8, uint16, float32 or float64, 1-D to 3-D
        Raw (linear) detector values.
    gain : float, default 1.0
        Detector units per quantum (> 0).
    sigma : float, default 0.0
        Standard deviation of the electronic (Gaussian) noise, detector units.
    out : float32 ndarray of the input's shape, optional
        Where to write the result (C-contiguous, writeable; it may be the input itself).

    Returns
    -------
    float32 ndarray of the input's shape

    References
    ----------
    .. [1] F. J. Anscombe, "The transformation of Poisson, binomial and negative-binomial
       data," Biometrika 35(3/4):246-254, 1948.
    .. [2] F. Murtagh, J.-L. Starck and A. Bijaoui, "Image restoration with noise
       suppression using a multiresolution support," Astron. Astrophys. Suppl. Ser.
       112:179-189, 1995.
    .. [3] M. Makitalo and A. Foi, "Optimal inversion of the generalized Anscombe
       transformation for Poisson-Gaussian noise," IEEE Trans. Image Processing
       22(1):91-103, 2013. doi:10.1109/TIP.2012.2202675
    """
    g, s = _params(gain, sigma)
    arr = as_float_array(image, ndims=(1, 2, 3))
    res: F32 = _core.anscombe(arr, g, s, out=check_out(out, arr.shape, source=arr))
    return res


def inverse_anscombe(
    image: Any, *, gain: float = 1.0, sigma: float = 0.0, out: F32 | None = None
) -> F32:
    """Exact unbiased inverse of :func:`anscombe` (Makitalo & Foi).

    Maps a denoised value ``D`` to the ``y`` with ``E[f(z) | y] = D``, which removes the
    bias of the algebraic inverse at low counts.  ``E[f(z) | y]``
    (:func:`expected_anscombe`) is tabulated once per ``sigma / gain`` and inverted by
    linear interpolation in C++; beyond the table the closed-form approximation
    ``D^2/4 + sqrt(3/2)/4 D^-1 - 11/8 D^-2 + 5/8 sqrt(3/2) D^-3 - 1/8 - sigma^2`` is used,
    and values below ``E[f(z) | 0]`` map to 0.

    Parameters
    ----------
    image : array of uint8, uint16, float32 or float64, 1-D to 3-D
        Values in the transformed domain.
    gain, sigma : float
        The parameters given to :func:`anscombe`.
    out : float32 ndarray of the input's shape, optional
        Where to write the result (C-contiguous, writeable; it may be the input itself).

    Returns
    -------
    float32 ndarray of the input's shape

    References
    ----------
    .. [1] M. Makitalo and A. Foi, "A closed-form approximation of the exact unbiased
       inverse of the Anscombe variance-stabilizing transformation," IEEE Trans. Image
       Processing 20(9):2697-2698, 2011. doi:10.1109/TIP.2011.2121085
    .. [2] M. Makitalo and A. Foi, "Optimal inversion of the generalized Anscombe
       transformation for Poisson-Gaussian noise," IEEE Trans. Image Processing
       22(1):91-103, 2013. doi:10.1109/TIP.2012.2202675
    """
    g, s = _params(gain, sigma)
    arr = as_float_array(image, ndims=(1, 2, 3))
    sigma_n = round(s / g, 6)
    values, d0, step = _inverse_table(sigma_n)
    dst = check_out(out, arr.shape, source=arr)
    res: F32 = _core.inverse_anscombe(arr, values, d0, step, sigma_n * sigma_n, g, out=dst)
    return res
