"""First-order statistics and gradient histograms.  C++: csrc/kernels/stats.hpp; binding:
csrc/bindings/register_stats.cpp; tests: tests/test_firstorder.py; benchmarks:
bench/test_bench_extract.py."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import _core
from .._errors import InvalidInputError
from .._validation import as_float_array, check_int, checked_array

__all__ = [
    "FIRSTORDER_FEATURES",
    "GRADIENT_STATS",
    "firstorder",
    "gradient_feature_names",
    "gradient_histogram",
]

#: Keys of :func:`firstorder`, in order.
FIRSTORDER_FEATURES: tuple[str, ...] = (
    "mean",
    "std",
    "skewness",
    "kurtosis",
    "entropy",
    "uniformity",
    "energy",
    "rms",
    "min",
    "p10",
    "p50",
    "p90",
    "max",
    "range",
    "iqr",
    "mean_absolute_deviation",
    "median_absolute_deviation",
    "robust_mean_absolute_deviation",
)
#: Magnitude statistics of :func:`gradient_histogram` (its orientation bins follow).
GRADIENT_STATS: tuple[str, ...] = ("magnitude_mean", "magnitude_std", "magnitude_p90")

#: Quantiles computed by :func:`firstorder`: p10, p25, p50, p75, p90 (as NumPy computes
#: ``q / 100`` inside ``numpy.percentile``).
_QUANTILES = np.true_divide(np.array([10.0, 25.0, 50.0, 75.0, 90.0]), 100.0)
_P90 = np.array([0.9])
_MAX_BINS = 4096
_MAX_ORIENTATION_BINS = 64

U8 = npt.NDArray[np.uint8]


def _as_mask(mask: Any, shape: tuple[int, ...]) -> U8 | None:
    """Validate a mask and return it as a C-contiguous uint8 array (``None`` stays ``None``).

    Raises :class:`InvalidInputError` for a wrong type, dtype or shape, and for a mask that
    selects no pixel.
    """
    if mask is None:
        return None
    if not isinstance(mask, np.ndarray):
        raise InvalidInputError(
            f"mask must be a NumPy array of bool or uint8, got {type(mask).__name__}"
        )
    if mask.dtype not in (np.dtype(np.bool_), np.dtype(np.uint8)):
        raise InvalidInputError(
            f"mask has dtype {mask.dtype}; pass a bool or uint8 array (non-zero = inside), "
            "e.g. mask.astype(bool)"
        )
    if mask.shape != shape:
        raise InvalidInputError(
            f"mask has shape {mask.shape} but the image has shape {shape}; they must match"
        )
    m = np.ascontiguousarray(mask)
    out: U8 = m.view(np.uint8) if m.dtype == np.bool_ else m
    if not out.any():
        raise InvalidInputError("mask selects no pixel (it is all zero); pass a non-empty ROI")
    return out


def _u8_or_float(image: Any, ndims: tuple[int, ...] = (2,)) -> np.ndarray:
    """A uint8 ndarray validated (:func:`checked_array`: type, dimensions, size) and made
    C-contiguous, kept as uint8 (the integer kernels take it; every uint8 value is finite),
    anything else as its validated float32 copy (:func:`as_float_array`)."""
    if isinstance(image, np.ndarray) and image.dtype == np.dtype(np.uint8):
        return np.ascontiguousarray(checked_array(image, ndims=ndims))
    return as_float_array(image, ndims=ndims)


def _summary(
    values: npt.NDArray[np.float32] | npt.NDArray[np.uint8],
    mask: U8 | None,
    *,
    bins: int = 0,
    q: npt.NDArray[np.float64] | None = None,
    mad: bool = False,
    rmad: tuple[float, float] = (-1.0, -1.0),
    below: float = 0.0,
    above: float = 0.0,
) -> tuple[dict[str, float], npt.NDArray[np.uint32], npt.NDArray[np.float64]]:
    qa = np.zeros(0) if q is None else q
    stats, hist, qout = _core.summary(values, mask, bins, qa, mad, rmad[0], rmad[1], below, above)
    return stats, hist, qout


def _entropy(hist: npt.NDArray[np.uint32], count: float) -> tuple[float, float]:
    p = hist[hist > 0].astype(np.float64) / count
    entropy = float(-(p * np.log2(p)).sum())
    return (entropy if entropy > 0.0 else 0.0), float((p * p).sum())


def firstorder(image: Any, mask: Any = None, *, bins: int = 64) -> dict[str, float]:
    """First-order (histogram) statistics of an image, optionally inside a mask.

    Every statistic is computed over the selected values ``v`` (all pixels, or those where
    ``mask`` is non-zero), as float64 copies of the float32 pixels.  The definitions
    (``N`` values, ``mean`` their mean, ``m_k = mean((v - mean)^k)``):

    ====================================  ========================================================
    key                                   definition (NumPy / SciPy / PyRadiomics equivalent)
    ====================================  ========================================================
    ``mean``                              ``numpy.mean(v)``
    ``std``                               ``sqrt(m_2)``, population (``numpy.std(v)``, ddof 0)
    ``skewness``                          ``m_3 / m_2^1.5`` (``scipy.stats.skew(v, bias=True)``);
                                          0.0 for a constant region (SciPy: nan)
    ``kurtosis``                          ``m_4 / m_2^2``, Pearson, **not** excess
                                          (``scipy.stats.kurtosis(v, fisher=False)``,
                                          PyRadiomics Kurtosis); 0.0 for a constant region
    ``entropy``                           ``-sum p log2 p`` of the ``bins``-bin histogram
                                          ``numpy.histogram(v, bins, range=(v.min(), v.max()))``
                                          (counts bit-identical to NumPy's); 0 when constant
    ``uniformity``                        ``sum p^2`` of the same histogram
    ``energy``                            ``sum v^2`` (PyRadiomics Energy without shift; it
                                          grows with ``N``)
    ``rms``                               ``sqrt(energy / N)``
    ``min``, ``max``, ``range``           ``v.min()``, ``v.max()``, ``max - min``
    ``p10``, ``p50``, ``p90``             ``numpy.percentile(v, q)`` (default "linear"
                                          method), bit-identical
    ``iqr``                               ``p75 - p25`` (same percentiles)
    ``mean_absolute_deviation``           ``mean(|v - mean|)`` (PyRadiomics
                                          MeanAbsoluteDeviation)
    ``median_absolute_deviation``         ``median(|v - median(v)|)`` (``scipy.stats.
                                          median_abs_deviation(v)``, scale 1).  Exact for
                                          integral values spanning < 65536 (all uint8 /
                                          uint16 images); otherwise the deviations are rounded
                                          to float32 (relative error <= 6e-8)
    ``robust_mean_absolute_deviation``    ``mean(|w - mean(w)|)`` over ``w = v[(v >= p10) &
                                          (v <= p90)]`` (PyRadiomics
                                          RobustMeanAbsoluteDeviation); 0.0 when ``w`` is
                                          empty (two distinct values only)
    ====================================  ========================================================

    The values are in the image's units (no normalisation, no resampling or binning
    beyond the entropy histogram).  Order statistics are exact and O(N): integral values
    spanning fewer than 65536 levels are counted; other values go through a three-level
    radix selection on their float32 bit patterns (csrc/kernels/stats.hpp).

    Parameters
    ----------
    image : array of uint8, uint16, float32 or float64, 1-D to 3-D
    mask : array of bool or uint8, same shape as ``image``, optional
        Region of interest: the pixels where ``mask`` is non-zero.  An all-zero mask is an
        error.
    bins : int, default 64
        Bins of the entropy / uniformity histogram, in ``[1, 4096]``.

    Returns
    -------
    dict of str to float
        The keys of :data:`FIRSTORDER_FEATURES`, in that order.

    Raises
    ------
    InvalidInputError
        For an invalid image, mask or ``bins``.

    References
    ----------
    .. [1] J. J. M. van Griethuysen et al., "Computational radiomics system to decode the
       radiographic phenotype," Cancer Research 77(21):e104-e107, 2017.
       doi:10.1158/0008-5472.CAN-17-0339 (PyRadiomics first-order features)
    .. [2] A. Zwanenburg et al., "The Image Biomarker Standardization Initiative,"
       Radiology 295(2):328-338, 2020. doi:10.1148/radiol.2020191145
    .. [3] R. J. Hyndman and Y. Fan, "Sample quantiles in statistical packages," The
       American Statistician 50(4):361-365, 1996 (definition 7: the "linear" method).
    """
    bins = check_int("bins", bins, 1, _MAX_BINS)
    # uint8: counted from a byte histogram (the same results as its float32 copy's).
    img = _u8_or_float(image, ndims=(1, 2, 3))
    m = _as_mask(mask, img.shape)
    s, hist, q = _summary(img, m, bins=bins, q=_QUANTILES, mad=True, rmad=(0.1, 0.9))
    return _firstorder_from(s, hist, q)


def _firstorder_from(
    s: dict[str, float], hist: npt.NDArray[np.uint32], q: npt.NDArray[np.float64]
) -> dict[str, float]:
    n = float(s["count"])
    m2 = float(s["m2"])
    if m2 > 0.0:
        skewness = float(s["m3"]) / m2**1.5
        kurtosis = float(s["m4"]) / (m2 * m2)
    else:
        skewness = kurtosis = 0.0
    entropy, uniformity = _entropy(hist, n)
    p10, p25, p50, p75, p90 = (float(x) for x in q)
    lo, hi = float(s["min"]), float(s["max"])
    energy = float(s["sumsq"])
    return {
        "mean": float(s["mean"]),
        "std": math.sqrt(m2) if m2 > 0.0 else 0.0,
        "skewness": skewness,
        "kurtosis": kurtosis,
        "entropy": entropy,
        "uniformity": uniformity,
        "energy": energy,
        "rms": math.sqrt(energy / n),
        "min": lo,
        "p10": p10,
        "p50": p50,
        "p90": p90,
        "max": hi,
        "range": hi - lo,
        "iqr": p75 - p25,
        "mean_absolute_deviation": float(s["absdev"]),
        "median_absolute_deviation": float(s["mad"]),
        "robust_mean_absolute_deviation": float(s["rmad"]),
    }


def gradient_feature_names(bins: int = 8) -> list[str]:
    """Keys of :func:`gradient_histogram` for ``bins`` orientation bins, in order."""
    bins = check_int("bins", bins, 1, _MAX_ORIENTATION_BINS)
    return [*GRADIENT_STATS, *(f"orientation_hist_{k:02d}" for k in range(bins))]


def gradient_histogram(image: Any, mask: Any = None, *, bins: int = 8) -> dict[str, float]:
    """Gradient-magnitude statistics and a magnitude-weighted orientation histogram.

    The gradient is the 3x3 Sobel derivative of the whole image (``cv2.Sobel(image,
    cv2.CV_32F, 1, 0)`` and ``(0, 1)``; reflect-101 border), in float32, so pixels at the
    edge of the mask see their neighbours outside it.  Over the selected pixels:

    * ``magnitude_mean``, ``magnitude_std`` (population), ``magnitude_p90``
      (``numpy.percentile(mag, 90)``) of ``mag = sqrt(gx^2 + gy^2)``;
    * ``orientation_hist_00`` ... : the orientation ``theta = atan2(gy, gx)`` folded into
      ``[0, pi)`` (an edge and its reverse count alike, as in HOG), split into ``bins``
      equal bins ``[k pi / bins, (k + 1) pi / bins)``, each pixel adding its magnitude;
      normalised to sum 1 (all zeros when every selected gradient is zero).  Bin 0 starts
      at the x axis (gradient pointing to increasing column index), angles increase
      towards increasing row index.  A pixel within float32 rounding of a bin boundary may
      land in either neighbouring bin (exact at multiples of pi/4).

    Parameters
    ----------
    image : (M, N) array of uint8, uint16, float32 or float64
    mask : (M, N) array of bool or uint8, optional
        Region of interest (non-zero = inside); an all-zero mask is an error.
    bins : int, default 8
        Orientation bins over ``[0, pi)``, in ``[1, 64]``.

    Returns
    -------
    dict of str to float
        Keys :func:`gradient_feature_names(bins) <gradient_feature_names>`, in that order.

    Notes
    -----
    For a linear ramp of slope ``s`` per pixel the Sobel response is ``8 s``
    (``[1, 2, 1]`` smoothing times the ``[-1, 0, 1]`` difference), so the magnitudes are
    8 times the per-pixel slope.

    References
    ----------
    .. [1] N. Dalal and B. Triggs, "Histograms of oriented gradients for human detection,"
       CVPR 2005, pp. 886-893. doi:10.1109/CVPR.2005.177
    .. [2] I. Sobel and G. Feldman, "A 3x3 isotropic gradient operator for image
       processing," Stanford AI Project, 1968.
    """
    names = gradient_feature_names(bins)
    # uint8: the integer kernel (the same magnitudes and histogram, no float copy).
    img = _u8_or_float(image)
    m = _as_mask(mask, img.shape)
    s, hist, q = _core.gradient_summary(img, m, bins, _P90)
    total = float(hist.sum())
    norm = hist / total if total > 0.0 else np.zeros_like(hist)
    m2 = float(s["m2"])
    values = [
        float(s["mean"]),
        math.sqrt(m2) if m2 > 0.0 else 0.0,
        float(q[0]),
        *(float(x) for x in norm),
    ]
    return dict(zip(names, values, strict=True))
