"""The quality gate's previous implementation (OpenCV / NumPy), kept as the reference of
the fused C++ kernels (``csrc/kernels/quality.hpp``) for the tests and as the peer of
``bench/test_bench_quality.py``.

It is the code ``medimg_edge.quality`` ran before the kernels, unchanged but for its
imports: ~30 OpenCV calls on the analysis image in per-thread reused buffers (border bands
by ``cv2.reduce``, strokes by a 5x5 opening, masks by ``cv2.erode`` / ``cv2.dilate``, the
Immerkaer noise by ``cv2.filter2D``, quantiles by ``cv2.calcHist``, the edge estimate by two
``cv2.GaussianBlur``, four ``cv2.Sobel`` and a 4-direction non-maximum suppression by line
dilations).  The steps that did not change (area downsampling, the ultrasound imaged
region, the arithmetic from the edge means to the width, the issue rules) are the
package's own.  ``tests/test_quality.py`` checks that ``quality.assess`` equals it within
:data:`TOLERANCE` (the tolerances documented in ``quality.assess``).
"""

from __future__ import annotations

import math
import threading
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from medimg_edge import quality as Q
from medimg_edge.quality import (
    _BLURS,
    _EDGE_K,
    _EDGE_TOP,
    _MIN_EDGES,
    _NB,
    _STROKE_LEVEL,
    _STROKE_TOPHAT,
    ANALYSIS_SIZE,
    THRESHOLDS,
    QualityReport,
    _cmp,
    _issues,
    _range_of,
)

#: Largest differences allowed between the package (C++ kernels, float32 blurs and sums in
#: another order than OpenCV's) and this reference, per measure: absolute, and for the
#: edge-point count relative.
TOLERANCE = {
    "range_lo": 0.0,
    "range_hi": 0.0,
    "analysis_scale": 0.0,
    "fov_fraction": 0.0,
    "annotation_fraction": 0.0,
    "mean": 1e-6,
    "contrast_rms": 1e-6,
    "contrast_michelson": 1e-6,
    "dynamic_range": 1e-6,
    "p99": 1e-6,
    "fraction_saturated": 0.0,
    "fraction_underexposed": 0.0,
    "noise_sigma": 1e-7,
    "edge_sigma_px": 2e-3,
    "edge_count": 0.01,  # relative
}

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]
_HIST_BINS = 1024
_K5 = np.ones((5, 5), np.uint8)
_K7 = np.ones((7, 7), np.uint8)
_K_INNER = np.ones((2 * Q._INNER_MARGIN + 1,) * 2, np.uint8)
_LINE_H = np.array([[1, 1, 1]], np.uint8)
_LINE_V = _LINE_H.T.copy()
_LINE_D = np.eye(3, dtype=np.uint8)
_LINE_A = np.ascontiguousarray(_LINE_D[::-1])
_TAN22 = 0.41421356  # tan(22.5 deg)
_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


class _Work:
    """The previous implementation's per-thread buffers beside the package's (which hold
    the analysis image ``a`` and the field of view ``fov``)."""

    def __init__(self, pkg: Any) -> None:
        h, w = shape = pkg.shape
        self.pkg = pkg
        self.shape = shape
        self.a = pkg.a
        self.fov = pkg.fov
        self.f = [np.empty(shape, np.float32) for _ in range(8)]
        self.m = [np.empty(shape, np.uint8) for _ in range(8)]
        self.strokes: U8 = np.empty(shape, np.uint8)
        self.stat: U8 = np.empty(shape, np.uint8)
        self.inner: U8 = np.empty(shape, np.uint8)
        self.allowed: U8 = np.empty(shape, np.uint8)
        sub = ((h + 1) // 2, (w + 1) // 2)
        self.sub_a: F32 = np.empty(sub, np.float32)
        self.sub_m: U8 = np.empty(sub, np.uint8)
        self.hist: F32 = np.empty((_HIST_BINS, 1), np.float32)
        self.hist256: F32 = np.empty((256, 1), np.float32)
        self.cdf = np.empty(_HIST_BINS, np.float64)


_local = threading.local()


def _analysis_image(img: F32, lo: float, hi: float, size: int) -> tuple[F32, float, _Work]:
    """The package's analysis image and this module's buffers for its shape."""
    a, zoom, pkg = Q._analysis_image(img, lo, hi, size)
    work: _Work | None = getattr(_local, "work", None)
    if work is None or work.pkg is not pkg:
        work = _Work(pkg)
        _local.work = work
    return a, zoom, work


def _fov(a: F32, mod: str, work: _Work) -> U8:
    """The field-of-view mask (0/255) in ``work.fov``: the package's ultrasound rule, the
    border bands by :func:`_border_bands`."""
    if mod == "ultrasound":
        return Q._ultrasound_fov(a, work.pkg)
    sq = work.f[0]
    cv2.multiply(a, a, dst=sq)
    t, b, left, r = _border_bands(a, sq, 1.0 / 1024.0)
    fov = work.fov
    fov[:] = 0
    fov[t:b, left:r] = 255
    return fov


def border_bands(a: F32) -> tuple[int, int, int, int]:
    """The band rule on ``a`` (top, bottom, left, right)."""
    return _border_bands(a, a * a, 1.0 / 1024.0)


def _noise(a: F32, mask: U8 | None, work: _Work) -> float:
    """Immerkaer sigma of ``a`` over ``mask`` (which excludes the outer ring), or over
    every interior pixel."""
    h, w = a.shape
    if h < 3 or w < 3:
        return 0.0
    r = work.f[0]
    cv2.filter2D(a, cv2.CV_32F, _IMMERKAER, dst=r)
    np.abs(r, out=r)
    if mask is None:
        mean_abs = float(cv2.mean(r[1:-1, 1:-1])[0])
    else:
        if int(cv2.countNonZero(mask)) < 16:
            return 0.0
        mean_abs = float(cv2.mean(r, mask=mask)[0])
    return math.sqrt(math.pi / 2.0) * mean_abs / 6.0


def _border_bands(a: F32, sq: F32, tol: float) -> tuple[int, int, int, int]:
    """Rows/columns cut at each side (top, bottom, left, right): uniform border bands.
    ``sq`` is ``a * a``."""
    h, w = a.shape
    t, b, left, r = 0, h, 0, w
    for _ in range(2):
        sub, sub2 = a[t:b, left:r], sq[t:b, left:r]
        stats = []
        for axis in (1, 0):  # per row, per column
            mean = np.asarray(cv2.reduce(sub, axis, cv2.REDUCE_AVG, dtype=cv2.CV_64F)).ravel()
            msq = np.asarray(cv2.reduce(sub2, axis, cv2.REDUCE_AVG, dtype=cv2.CV_64F)).ravel()
            std = np.sqrt(np.maximum(msq - mean * mean, 0.0))
            stats.append((mean, std))

        def run(mean: npt.NDArray[Any], std: npt.NDArray[Any], limit: int) -> int:
            limit = min(limit, std.shape[0] - 1)
            bad = (std > tol) | (np.abs(mean - mean[0]) > tol)
            bad[max(limit, 0) :] = True
            return int(np.argmax(bad))

        (rm, rs), (cm, cs) = stats
        lim_r = int(0.45 * h) - max(t, h - b)
        lim_c = int(0.45 * w) - max(left, w - r)
        dt = run(rm, rs, lim_r)
        db = run(rm[::-1], rs[::-1], lim_r)
        dl = run(cm, cs, lim_c)
        dr = run(cm[::-1], cs[::-1], lim_c)
        t, b, left, r = t + dt, b - db, left + dl, r - dr
        if b - t < 3 or r - left < 3:
            return 0, h, 0, w
        if not (dt or db or dl or dr):
            break  # nothing cut: a second pass would find the same
    return t, b, left, r


def _strokes(a: F32, fov: U8, work: _Work) -> U8:
    """Annotation pixels (thin bright strokes) inside the field of view, 0/255, in
    ``work.strokes``."""
    top, m = work.f[0], work.m[0]
    cv2.morphologyEx(a, cv2.MORPH_OPEN, _K5, dst=top)
    cv2.subtract(a, top, dst=top)
    out = work.strokes
    _cmp(top, _STROKE_TOPHAT, cv2.CMP_GT, out)
    _cmp(a, _STROKE_LEVEL, cv2.CMP_GT, m)
    cv2.bitwise_and(out, m, dst=out)
    cv2.bitwise_and(out, fov, dst=out)
    return out


def _quantiles(a: F32, mask: U8, qs: tuple[float, ...], work: _Work) -> list[float]:
    """Quantiles ``qs`` of ``a`` over ``mask`` from a 1024-bin histogram on ``[0, 1]``,
    interpolated in the bin; on every second pixel in each direction when ``a`` has more
    than 16384 pixels."""
    if a.size > 16384:
        np.copyto(work.sub_a, a[::2, ::2])
        np.copyto(work.sub_m, mask[::2, ::2])
        a, mask = work.sub_a, work.sub_m
    hist = cv2.calcHist([a], [0], mask, [_HIST_BINS], [0.0, 1.0 + 1e-6], hist=work.hist)
    cdf = np.cumsum(hist.ravel(), dtype=np.float64, out=work.cdf)
    total = float(cdf[-1])
    if total <= 0:
        return [0.0] * len(qs)
    np.multiply(cdf, 1.0 / total, out=cdf)
    out = []
    for q in qs:
        i = min(int(np.searchsorted(cdf, q, side="left")), _HIST_BINS - 1)
        prev = cdf[i - 1] if i > 0 else 0.0
        frac = (q - prev) / (cdf[i] - prev) if cdf[i] > prev else 0.5
        out.append(float((i + min(max(frac, 0.0), 1.0)) / _HIST_BINS))
    return out


def _edge_sigma(a: F32, sigma: float, allowed: U8, k: float, work: _Work) -> tuple[float, int]:
    """Gradient-ratio Gaussian edge sigma (analysis px) of the strongest edges and the
    number of edge points used (see :func:`assess`).  Everything in the thread's
    buffers: masks and masked means, no per-point arrays."""
    blur_a, blur_b, gx, gy, mag, ax, ay, tmp = work.f
    hor, ver, diag, same, crest, peak, d_dir, _ = work.m
    (s_a, k_a), (s_b, k_b) = _BLURS
    cv2.GaussianBlur(a, (k_a, k_a), s_a, dst=blur_a)
    cv2.GaussianBlur(blur_a, (k_b, k_b), s_b, dst=blur_b)
    cv2.Sobel(blur_b, cv2.CV_32F, 1, 0, dst=gx, ksize=3, scale=0.125)
    cv2.Sobel(blur_b, cv2.CV_32F, 0, 1, dst=gy, ksize=3, scale=0.125)
    cv2.magnitude(gx, gy, mag)
    # edge points: |g_b| at least its two neighbours along the gradient direction
    # quantised to 4 directions (non-maximum suppression), strong enough, allowed
    np.abs(gx, out=ax)
    np.abs(gy, out=ay)
    cv2.multiply(ax, _TAN22, dst=tmp)
    cv2.compare(ay, tmp, cv2.CMP_LE, dst=hor)
    cv2.multiply(ay, _TAN22, dst=tmp)
    cv2.compare(ax, tmp, cv2.CMP_LE, dst=ver)
    cv2.bitwise_or(hor, ver, dst=diag)
    cv2.bitwise_not(diag, dst=diag)
    cv2.multiply(gx, gy, dst=tmp)
    _cmp(tmp, 0.0, cv2.CMP_GT, same)
    # gradient along (1, 1): neighbours (y -+ 1, x -+ 1) (main diagonal); else anti-diagonal
    cv2.bitwise_and(diag, same, dst=d_dir)
    cv2.bitwise_not(same, dst=same)
    cv2.bitwise_and(diag, same, dst=diag)
    peak[:] = 0
    for direction, line in ((hor, _LINE_H), (ver, _LINE_V), (d_dir, _LINE_D), (diag, _LINE_A)):
        cv2.dilate(mag, line, dst=tmp)
        cv2.compare(mag, tmp, cv2.CMP_GE, dst=crest)
        cv2.bitwise_and(crest, direction, dst=crest)
        cv2.bitwise_or(peak, crest, dst=peak)
    thr = max(k * _NB * sigma, 1e-3)
    _cmp(mag, thr, cv2.CMP_GT, crest)
    cv2.bitwise_and(peak, crest, dst=peak)
    cv2.bitwise_and(peak, allowed, dst=peak)
    peak[:1] = 0  # the 3x3 neighbourhoods above need both neighbours
    peak[-1:] = 0
    peak[:, :1] = 0
    peak[:, -1:] = 0
    n_all = int(cv2.countNonZero(peak))
    if n_all < _MIN_EDGES:
        return 0.0, n_all
    # the strongest quarter: |g_b| at or above the histogram bin (1/256 of the largest
    # edge-point magnitude) where the count from the top reaches a quarter
    top = float(cv2.minMaxLoc(mag, mask=peak)[1])
    hist = cv2.calcHist(
        [mag], [0], peak, [256], [0.0, top * (1.0 + 1e-6)], hist=work.hist256
    ).ravel()
    from_top = np.cumsum(hist[::-1])
    want = max(_MIN_EDGES, int(_EDGE_TOP * n_all))
    cut = 255 - int(np.searchsorted(from_top, want))
    _cmp(mag, top * (1.0 + 1e-6) * max(cut, 0) / 256.0, cv2.CMP_GE, crest)
    cv2.bitwise_and(peak, crest, dst=peak)
    n = int(cv2.countNonZero(peak))
    # mean |g_b|^2 and mean |g_a|^2 (3x3 Sobel / 8 of the R_a blur) over those points
    cv2.multiply(mag, mag, dst=tmp)
    mean_b = float(cv2.mean(tmp, mask=peak)[0])
    cv2.Sobel(blur_a, cv2.CV_32F, 1, 0, dst=ax, ksize=3, scale=0.125)
    cv2.Sobel(blur_a, cv2.CV_32F, 0, 1, dst=ay, ksize=3, scale=0.125)
    cv2.multiply(ax, ax, dst=ax)
    cv2.multiply(ay, ay, dst=ay)
    cv2.add(ax, ay, dst=tmp)
    mean_a = float(cv2.mean(tmp, mask=peak)[0])
    return Q._edge_width(n_all, n, mean_a, mean_b, sigma)


def _assess_float(
    img: F32,
    native: np.dtype[Any] | None,
    mod: str,
    value_range: tuple[float, float] | None = None,
    analysis_size: int | None = None,
) -> QualityReport:
    """:func:`assess` of a validated C-contiguous float32 image whose original dtype was
    ``native`` (``Diagnoser`` converts a frame once and shares it between the stages)."""
    size = ANALYSIS_SIZE[mod] if analysis_size is None else analysis_size
    lo, hi, known = _range_of(img, native, value_range)
    scale = hi - lo if hi > lo else 1.0
    a, zoom, work = _analysis_image(img, lo, hi, size)
    ah, aw = a.shape
    fov = _fov(a, mod, work)
    n_fov = int(cv2.countNonZero(fov))
    strokes = _strokes(a, fov, work)
    n_strokes = int(cv2.countNonZero(strokes))
    stat = work.stat
    cv2.bitwise_not(strokes, dst=stat)
    cv2.bitwise_and(stat, fov, dst=stat)
    n_stat = int(cv2.countNonZero(stat))
    if n_stat == 0:
        stat, n_stat = fov, n_fov
    inner = work.inner
    cv2.erode(fov, _K_INNER, dst=inner, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    sigma = _noise(a, inner, work) if cv2.countNonZero(inner) >= 64 else _noise(a, None, work)
    mean_m, std_m = cv2.meanStdDev(a, mask=stat)
    mean, std = float(mean_m[0, 0]), float(std_m[0, 0])
    if std < 1e-6:  # sqrt(E[u^2] - E[u]^2) of a constant frame: rounding, not contrast
        std = 0.0
    p1, p5, p95, p99 = _quantiles(a, stat, (0.01, 0.05, 0.95, 0.99), work)
    integer = native is not None and native.kind in "ui" and value_range is None
    tol = 0.5 / scale if integer else 0.5 / 255.0
    m = work.m[0]
    _cmp(a, 1.0 - tol, cv2.CMP_GE, m)
    n_sat = int(cv2.countNonZero(cv2.bitwise_and(m, stat, dst=m)))
    _cmp(a, tol, cv2.CMP_LE, m)
    n_under = int(cv2.countNonZero(cv2.bitwise_and(m, stat, dst=m)))
    allowed = inner
    if n_strokes:
        allowed = work.allowed
        cv2.dilate(strokes, _K7, dst=allowed)
        cv2.bitwise_not(allowed, dst=allowed)
        cv2.bitwise_and(allowed, inner, dst=allowed)
    edge_sigma, n_edges = _edge_sigma(a, sigma, allowed, _EDGE_K[mod], work)
    measures = {
        "range_lo": float(lo),
        "range_hi": float(hi),
        "analysis_scale": zoom,
        "fov_fraction": n_fov / float(ah * aw),
        "annotation_fraction": n_strokes / float(max(n_fov, 1)),
        "mean": mean,
        "contrast_rms": std,
        "contrast_michelson": (p95 - p5) / (p95 + p5) if p95 + p5 > 0.0 else 0.0,
        "dynamic_range": p99 - p1,
        "p99": p99,
        "fraction_saturated": n_sat / float(n_stat),
        "fraction_underexposed": n_under / float(n_stat),
        "noise_sigma": sigma,
        "edge_sigma_px": edge_sigma * zoom,
        "edge_count": float(n_edges),
    }
    issues = _issues(measures, THRESHOLDS[mod], exposure_known=known)
    packed = (np.packbits(fov.ravel()), (ah, aw))  # nonzero packs as 1
    return QualityReport(
        ok=not issues, issues=issues, measures=measures, modality=mod, fov_packed=packed
    )


def reference_measures(
    img: npt.NDArray[Any], modality: str = "generic", value_range: tuple[float, float] | None = None
) -> tuple[dict[str, float], npt.NDArray[np.bool_]]:
    """The previous implementation's measures and field-of-view mask of a frame."""
    f = np.ascontiguousarray(img, np.float32)
    report = _assess_float(f, img.dtype, modality, value_range)
    assert report.fov is not None
    return report.measures, report.fov
