"""Plain NumPy reference implementations of the C++ kernels.

Slow-but-obvious float64 (by default) versions of every kernel, written straight from
the formulas in the docstrings of :mod:`medimg_edge.denoise`.  The test suite compares
every SIMD target against them (``tests/test_denoise.py``) and the benchmarks time them
as the "NumPy implementation" peer (``bench/``).  They validate nothing: pass
well-formed 2-D arrays.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "anscombe",
    "expected_anscombe",
    "frost",
    "immerkaer_sigma",
    "kuan",
    "lee",
    "local_stats",
    "srad",
    "wiener",
]

Array = npt.NDArray[np.floating]


def srad(
    image: npt.ArrayLike,
    iterations: int,
    time_step: float,
    q0: float,
    rho: float = 1.0 / 6.0,
    dtype: npt.DTypeLike = np.float64,
) -> Array:
    """SRAD (Yu & Acton 2002) with replicate borders; see ``denoise.srad``.

    Uses ``q^2 = (S2/2 - S1^2/16) / M^2`` (``S1``, ``S2``: sum and sum of squares of the
    four differences, ``M`` the four-neighbour mean floored at 1e-6 of the image
    maximum), which equals the paper's ``(G2/2 - L^2/16) / (1 + L/4)^2`` for I > 0.
    """
    img = np.asarray(image, dtype=dtype)
    time_step, q0, rho = float(time_step), float(q0), float(rho)
    floor = max(float(img.max()) * 1e-6, 1e-18)
    for n in range(iterations):
        q = q0 * math.exp(-rho * time_step * n)
        q0sq = q * q
        p = np.pad(img, 1, mode="edge")
        d_n = p[:-2, 1:-1] - img
        d_s = p[2:, 1:-1] - img
        d_w = p[1:-1, :-2] - img
        d_e = p[1:-1, 2:] - img
        s1 = d_n + d_s + d_w + d_e
        s2 = d_n**2 + d_s**2 + d_w**2 + d_e**2
        m = np.maximum(img + 0.25 * s1, floor)
        qsq = (0.5 * s2 - s1**2 / 16.0) / m**2
        c = 1.0 / (1.0 + (qsq - q0sq) / (q0sq * (1.0 + q0sq)))
        c = np.clip(c, 0.0, 1.0)
        cp = np.pad(c, 1, mode="edge")  # c of the south / east neighbour
        div = c * (d_n + d_w) + cp[2:, 1:-1] * d_s + cp[1:-1, 2:] * d_e
        img = img + 0.25 * time_step * div
    return img


def _windows(image: npt.ArrayLike, window: int, dtype: npt.DTypeLike) -> Array:
    r = window // 2
    img = np.asarray(image, dtype=dtype)
    # NumPy "reflect" is OpenCV's BORDER_REFLECT_101; for small images reflect repeatedly.
    p = np.pad(img, r, mode="reflect") if min(img.shape) > r else _pad_reflect101(img, r)
    return sliding_window_view(p, (window, window))


def _pad_reflect101(img: Array, r: int) -> Array:
    def idx(n: int) -> npt.NDArray[np.intp]:
        i = np.arange(-r, n + r)
        if n == 1:
            return np.zeros_like(i)
        period = 2 * n - 2
        i = np.mod(i, period)
        return np.where(i < n, i, period - i)

    rows, cols = img.shape
    return img[np.ix_(idx(rows), idx(cols))]


def local_stats(
    image: npt.ArrayLike,
    window: int,
    a: float,
    b: float,
    g: float,
    dtype: npt.DTypeLike = np.float64,
) -> Array:
    """``m + clamp((v - a m^2 - b) / (g v), 0, 1) (x - m)``; see ``KernelTable::local_stats``."""
    a, b, g = float(a), float(b), float(g)
    img = np.asarray(image, dtype=dtype)
    w = _windows(img, window, dtype)
    m = w.mean(axis=(-2, -1))
    v = w.var(axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = (v - a * m * m - b) / (np.maximum(v, 1e-30) * g)
    weight = np.clip(np.nan_to_num(weight, nan=0.0), 0.0, 1.0)
    out: Array = m + weight * (img - m)
    return out


def lee(
    image: npt.ArrayLike, window: int, noise_cv: float, dtype: npt.DTypeLike = np.float64
) -> Array:
    """Lee (1980) filter with speckle coefficient of variation ``noise_cv``."""
    return local_stats(image, window, noise_cv**2, 0.0, 1.0, dtype)


def kuan(
    image: npt.ArrayLike, window: int, noise_cv: float, dtype: npt.DTypeLike = np.float64
) -> Array:
    """Kuan et al. (1985) filter with speckle coefficient of variation ``noise_cv``."""
    return local_stats(image, window, noise_cv**2, 0.0, 1.0 + noise_cv**2, dtype)


def wiener(
    image: npt.ArrayLike, window: int, noise_sigma: float, dtype: npt.DTypeLike = np.float64
) -> Array:
    """Lee's additive-noise (local Wiener) filter."""
    return local_stats(image, window, 0.0, noise_sigma**2, 1.0, dtype)


def frost(
    image: npt.ArrayLike, window: int, damping: float, dtype: npt.DTypeLike = np.float64
) -> Array:
    """Frost et al. (1982): weights ``exp(-damping Ci^2 d)``, Euclidean ``d``."""
    damping = float(damping)
    img = np.asarray(image, dtype=dtype)
    w = _windows(img, window, dtype)
    m = w.mean(axis=(-2, -1))
    v = w.var(axis=(-2, -1))
    alpha = np.minimum(damping * v / np.maximum(m * m, 1e-30), 1e6)
    r = window // 2
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    d = np.sqrt(yy**2 + xx**2).astype(dtype)
    weights = np.exp(-alpha[..., None, None] * d)
    out: Array = (weights * w).sum(axis=(-2, -1)) / weights.sum(axis=(-2, -1))
    return out


def anscombe(
    image: npt.ArrayLike, gain: float = 1.0, sigma: float = 0.0, dtype: npt.DTypeLike = np.float64
) -> Array:
    """Generalised Anscombe transform ``2/gain sqrt(max(gain z + 3/8 gain^2 + sigma^2, 0))``."""
    z = np.asarray(image, dtype=dtype)
    gain, sigma = float(gain), float(sigma)
    return 2.0 / gain * np.sqrt(np.maximum(gain * z + 0.375 * gain**2 + sigma**2, 0.0))


def expected_anscombe(y: float, sigma: float = 0.0) -> float:
    """``E[2 sqrt(max(z + 3/8 + sigma^2, 0))]``, ``z = Poisson(y) + N(0, sigma^2)``.

    Direct summation of the Poisson series (``math.lgamma``) and, for ``sigma > 0``, a
    trapezoidal integral of the Gaussian over +-10 sigma: independent of the quadrature the
    package uses to build its inverse table.
    """
    kmax = int(y + 15.0 * math.sqrt(y) + 50.0)
    k = np.arange(kmax + 1, dtype=np.float64)
    if y > 0:
        log_pmf = k * math.log(y) - y - np.array([math.lgamma(i + 1.0) for i in k])
    else:
        log_pmf = np.where(k == 0, 0.0, -np.inf)
    pmf = np.exp(log_pmf)
    if sigma > 0:
        t = np.linspace(-10.0, 10.0, 2001)
        trap = np.full(t.size, t[1] - t[0])  # trapezoidal weights
        trap[0] = trap[-1] = 0.5 * (t[1] - t[0])
        w = np.exp(-0.5 * t * t) * trap
        w /= w.sum()
        arg = k[:, None] + sigma * t[None, :] + 0.375 + sigma**2
        g = (2.0 * np.sqrt(np.maximum(arg, 0.0))) @ w
    else:
        g = 2.0 * np.sqrt(k + 0.375)
    return float(pmf @ g)


def immerkaer_sigma(image: npt.ArrayLike) -> float:
    """Immerkaer (1996) noise sigma: ``sqrt(pi/2) / (6 (W-2)(H-2)) sum |I * N|``."""
    i = np.asarray(image, dtype=np.float64)
    conv = (
        i[:-2, :-2]
        - 2 * i[:-2, 1:-1]
        + i[:-2, 2:]
        - 2 * i[1:-1, :-2]
        + 4 * i[1:-1, 1:-1]
        - 2 * i[1:-1, 2:]
        + i[2:, :-2]
        - 2 * i[2:, 1:-1]
        + i[2:, 2:]
    )
    h, w = i.shape
    total = float(np.abs(conv).sum())
    return math.sqrt(math.pi / 2.0) * total / (6.0 * (int(h) - 2) * (int(w) - 2))
