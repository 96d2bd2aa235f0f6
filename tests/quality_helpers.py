"""Reference implementation of the quality gate's measures (tests only).

This is the OpenCV / NumPy formulation the gate used before its fused C++ kernels
(``csrc/kernels/quality.hpp``): ~30 OpenCV calls on the analysis image (border bands by
``cv2.reduce``, strokes by a 5x5 opening, masks by ``cv2.erode`` / ``cv2.dilate``, the
Immerkaer noise by ``cv2.filter2D``, quantiles by ``cv2.calcHist``, the edge estimate by two
``cv2.GaussianBlur``, ``cv2.Sobel`` and a 4-direction non-maximum suppression by line
dilations).  ``tests/test_quality.py`` checks that ``quality._assess_float`` equals it within
the tolerances of :data:`TOLERANCE` (documented in ``quality.assess``).
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from medimg_edge import quality as Q

#: Largest differences allowed between the package (C++ kernels, float32 blurs summed in
#: another order than OpenCV's) and this reference, per measure: absolute, and for the
#: edge-point counts relative.
TOLERANCE = {
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

_K5 = np.ones((5, 5), np.uint8)
_K7 = np.ones((7, 7), np.uint8)
_LINES = (
    np.array([[1, 1, 1]], np.uint8),
    np.array([[1], [1], [1]], np.uint8),
    np.eye(3, dtype=np.uint8),
    np.ascontiguousarray(np.eye(3, dtype=np.uint8)[::-1]),
)
_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
_TAN22 = 0.41421356


def border_bands(a: np.ndarray, tol: float = 1.0 / 1024.0) -> tuple[int, int, int, int]:
    """Rows / columns cut at each side (top, bottom, left, right) by the band rule."""
    h, w = a.shape
    sq = a * a
    t, b, left, r = 0, h, 0, w
    for _ in range(2):
        sub, sub2 = a[t:b, left:r], sq[t:b, left:r]
        stats = []
        for axis in (1, 0):
            mean = np.asarray(cv2.reduce(sub, axis, cv2.REDUCE_AVG, dtype=cv2.CV_64F)).ravel()
            msq = np.asarray(cv2.reduce(sub2, axis, cv2.REDUCE_AVG, dtype=cv2.CV_64F)).ravel()
            stats.append((mean, np.sqrt(np.maximum(msq - mean * mean, 0.0))))

        def run(mean: np.ndarray, std: np.ndarray, limit: int) -> int:
            limit = min(limit, std.shape[0] - 1)
            bad = (std > tol) | (np.abs(mean - mean[0]) > tol)
            bad[max(limit, 0) :] = True
            return int(np.argmax(bad))

        (rm, rs), (cm, cs) = stats
        lim_r = int(0.45 * h) - max(t, h - b)
        lim_c = int(0.45 * w) - max(left, w - r)
        dt, db = run(rm, rs, lim_r), run(rm[::-1], rs[::-1], lim_r)
        dl, dr = run(cm, cs, lim_c), run(cm[::-1], cs[::-1], lim_c)
        t, b, left, r = t + dt, b - db, left + dl, r - dr
        if b - t < 3 or r - left < 3:
            return 0, h, 0, w
        if not (dt or db or dl or dr):
            break
    return t, b, left, r


def _noise(a: np.ndarray, mask: np.ndarray | None) -> float:
    r = np.abs(cv2.filter2D(a, cv2.CV_32F, _IMMERKAER))
    if mask is None:
        mean_abs = float(r[1:-1, 1:-1].astype(np.float64).mean())
    else:
        if int(np.count_nonzero(mask)) < 16:
            return 0.0
        mean_abs = float(cv2.mean(r, mask=mask)[0])
    return math.sqrt(math.pi / 2.0) * mean_abs / 6.0


def _quantiles(a: np.ndarray, mask: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    if a.size > 16384:
        a, mask = np.ascontiguousarray(a[::2, ::2]), np.ascontiguousarray(mask[::2, ::2])
    hist = cv2.calcHist([a], [0], mask, [1024], [0.0, 1.0 + 1e-6]).ravel()
    cdf = np.cumsum(hist, dtype=np.float64)
    total = float(cdf[-1])
    if total <= 0:
        return [0.0] * len(qs)
    cdf *= 1.0 / total
    out = []
    for q in qs:
        i = min(int(np.searchsorted(cdf, q, side="left")), 1023)
        prev = cdf[i - 1] if i > 0 else 0.0
        frac = (q - prev) / (cdf[i] - prev) if cdf[i] > prev else 0.5
        out.append(float((i + min(max(frac, 0.0), 1.0)) / 1024))
    return out


def edge_statistics(
    a: np.ndarray, allowed: np.ndarray, threshold: float, top_fraction: float = Q._EDGE_TOP
) -> tuple[int, int, float, float]:
    """(edge points, points used, mean |g_a|^2, mean |g_b|^2) by OpenCV calls."""
    (s_a, k_a), (s_b, k_b) = Q._BLURS
    blur_a = cv2.GaussianBlur(a, (k_a, k_a), s_a)
    blur_b = cv2.GaussianBlur(blur_a, (k_b, k_b), s_b)
    gx = cv2.Sobel(blur_b, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    gy = cv2.Sobel(blur_b, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    mag = cv2.magnitude(gx, gy)
    ax, ay = np.abs(gx), np.abs(gy)
    hor = ay <= ax * np.float32(_TAN22)
    ver = ax <= ay * np.float32(_TAN22)
    diag = ~(hor | ver)
    same = gx * gy > 0
    peak = np.zeros(a.shape, bool)
    for direction, line in zip((hor, ver, diag & same, diag & ~same), _LINES, strict=True):
        peak |= (mag >= cv2.dilate(mag, line)) & direction
    peak &= (mag > np.float32(threshold)) & (allowed > 0)
    peak[0] = peak[-1] = False
    peak[:, 0] = peak[:, -1] = False
    n_all = int(peak.sum())
    if n_all < Q._MIN_EDGES:
        return n_all, 0, 0.0, 0.0
    m8 = peak.astype(np.uint8) * 255
    top = float(mag[peak].max())
    hist = cv2.calcHist([mag], [0], m8, [256], [0.0, top * (1.0 + 1e-6)]).ravel()
    from_top = np.cumsum(hist[::-1])
    want = max(Q._MIN_EDGES, int(top_fraction * n_all))
    cut = 255 - int(np.searchsorted(from_top, want))
    sel = peak & (mag >= np.float32(top * (1.0 + 1e-6) * max(cut, 0) / 256.0))
    ga = cv2.Sobel(blur_a, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    gb = cv2.Sobel(blur_a, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    g2a = ga * ga + gb * gb
    mean_b = float(np.mean((mag * mag)[sel], dtype=np.float64))
    return n_all, int(sel.sum()), float(np.mean(g2a[sel], dtype=np.float64)), mean_b


def reference_measures(
    img: np.ndarray, modality: str = "generic", value_range: tuple[float, float] | None = None
) -> tuple[dict[str, float], np.ndarray]:
    """The measures of ``quality.assess`` (and the FOV mask) by the OpenCV reference."""
    native = img.dtype
    f = np.ascontiguousarray(img, np.float32)
    lo, hi, _known = Q._range_of(f, native, value_range)
    scale = hi - lo if hi > lo else 1.0
    size = Q.ANALYSIS_SIZE[modality]
    a0, zoom, work = Q._analysis_image(f, lo, hi, size)
    a = a0.copy()
    if modality == "ultrasound":
        fov = Q._fov(a, modality, work).copy()
    else:
        t, b, left, r = border_bands(a)
        fov = np.zeros(a.shape, np.uint8)
        fov[t:b, left:r] = 255
    opened = cv2.morphologyEx(a, cv2.MORPH_OPEN, _K5)
    strokes = (((a - opened) > 0.25) & (a > 0.6) & (fov > 0)).astype(np.uint8) * 255
    n_fov, n_strokes = int(np.count_nonzero(fov)), int(np.count_nonzero(strokes))
    stat = ((fov > 0) & (strokes == 0)).astype(np.uint8) * 255
    if not stat.any():
        stat = fov
    n_stat = int(np.count_nonzero(stat))
    k_inner = np.ones((2 * Q._INNER_MARGIN + 1,) * 2, np.uint8)
    inner = cv2.erode(fov, k_inner, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    sigma = _noise(a, inner) if np.count_nonzero(inner) >= 64 else _noise(a, None)
    mean_m, std_m = cv2.meanStdDev(a, mask=stat)
    mean, std = float(mean_m[0, 0]), float(std_m[0, 0])
    if std < 1e-6:
        std = 0.0
    p1, p5, p95, p99 = _quantiles(a, stat, (0.01, 0.05, 0.95, 0.99))
    integer = native.kind in "ui" and value_range is None
    tol = 0.5 / scale if integer else 0.5 / 255.0
    sel = stat > 0
    n_sat = int(np.count_nonzero((a >= np.float32(1.0 - tol)) & sel))
    n_under = int(np.count_nonzero((a <= np.float32(tol)) & sel))
    allowed = inner
    if n_strokes:
        allowed = (inner > 0) & (cv2.dilate(strokes, _K7) == 0)
    thr = max(Q._EDGE_K[modality] * Q._NB * sigma, 1e-3)
    n_all, n_used, mean_a2, mean_b2 = edge_statistics(a, np.asarray(allowed, np.uint8), thr)
    edge, n_edges = Q._edge_width(n_all, n_used, mean_a2, mean_b2, sigma)
    ah, aw = a.shape
    measures: dict[str, Any] = {
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
        "edge_sigma_px": edge * zoom,
        "edge_count": float(n_edges),
    }
    return measures, fov > 0
