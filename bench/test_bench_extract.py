"""Feature-extraction benchmarks (issue 3, items 4-6): the whole ``features.extract`` vs
scikit-image's GLCM + six properties alone, ``features.firstorder`` vs NumPy/SciPy,
and ``features.gradient_histogram`` vs OpenCV + NumPy (the ``quality.assess`` benchmarks
are in bench/test_bench_quality.py); every medimg-edge row per SIMD target, single
thread, on scikit-image's camera image (uint8) at 512x512 (and resized to 1024x1024 for
``extract``).

Groups and what every benchmark checks:

* ``extract-L<levels>-<size>``: ``features.extract(camera, levels=L)`` (first order,
  GLCM at d=1 and 4 angles with ``L`` grey levels, uniform LBP P=8 R=1, gradients) vs
  ``skimage.feature.graycomatrix(q, [1], 4 angles, levels=L, symmetric=True)`` +
  ``graycoprops`` for contrast, dissimilarity, homogeneity, ASM, energy, correlation on
  the already quantised image ``q`` (its quantisation is *not* timed).  The issue-3 target:
  ``extract`` faster than that peer.  Checked: extract's six GLCM values equal
  scikit-image's (1e-9 relative), its LBP histogram sums to 1 and its first-order mean is
  NumPy's; the peer's values equal the cached reference.
* ``firstorder-<u8|f32>-512``: ``features.firstorder`` vs the NumPy / SciPy definitions
  of the same 18 statistics (``numpy.percentile``, ``numpy.histogram``,
  ``scipy.stats.skew`` / ``kurtosis`` / ``median_abs_deviation``, ...); uint8 takes the
  counting path, float32 the radix path.  Checked: equal to 1e-9 (order statistics exact).
* ``gradient-512``: ``features.gradient_histogram`` vs ``cv2.Sobel`` + ``numpy``
  (hypot, arctan2, bincount, percentile).  Checked: equal to 1e-5.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
import pytest
import scipy.stats
from skimage.feature import graycomatrix, graycoprops

import medimg_edge as me
from _images import camera_u8
from _mixed import MixedLoop
from medimg_edge.features._firstorder import FIRSTORDER_FEATURES

TARGETS = me.simd.supported_targets()
ANGLES4 = [0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4]
SKIMAGE_PROPS = ("contrast", "dissimilarity", "homogeneity", "ASM", "energy", "correlation")
EXTRACT_CASES = [(L, s) for s in (512, 1024) for L in (32, 256)]

_cache: dict[Any, Any] = {}


def image(size: int) -> np.ndarray:
    return camera_u8(size)


def record(benchmark: Any, *, role: str, target: str, label: str, image_name: str) -> None:
    benchmark.extra_info.update(
        role=role, target=target, label=label, image=image_name, psnr_gain_db=None
    )


def params(group_of: Any, cases: list[Any], with_targets: bool) -> list[Any]:
    out = []
    for case in cases:
        c = case if isinstance(case, tuple) else (case,)
        marks = pytest.mark.benchmark(group=group_of(*c))
        if with_targets:
            out += [
                pytest.param(*c, t, id="-".join(map(str, (*c, t))), marks=marks) for t in TARGETS
            ]
        else:
            out.append(pytest.param(*c, id="-".join(map(str, c)), marks=marks))
    return out


# --------------------------------------------------------------------------------------
# extract vs scikit-image GLCM + graycoprops


def quantised(levels: int, size: int) -> np.ndarray:
    key = ("q", levels, size)
    if key not in _cache:
        _cache[key] = me.features.quantize(image(size), levels)
    return _cache[key]


def skimage_glcm_props(q: np.ndarray, levels: int) -> dict[str, np.ndarray]:
    P = graycomatrix(q, [1], ANGLES4, levels=levels, symmetric=True)
    return {p: graycoprops(P, p) for p in SKIMAGE_PROPS}


def skimage_reference(levels: int, size: int) -> dict[str, float]:
    key = ("sk", levels, size)
    if key not in _cache:
        props = skimage_glcm_props(quantised(levels, size), levels)
        _cache[key] = {p: float(v.mean()) for p, v in props.items()}
    return _cache[key]


def extract_group(levels: int, size: int) -> str:
    return f"extract-L{levels}-{size}"


@pytest.mark.parametrize(("levels", "size", "target"), params(extract_group, EXTRACT_CASES, True))
def test_extract_target(benchmark: Any, levels: int, size: int, target: str) -> None:
    img = image(size)
    with me.simd.use_target(target) as active:
        assert active == target
        out = benchmark(me.features.extract, img, levels=levels)
    ref = skimage_reference(levels, size)
    for prop in SKIMAGE_PROPS:
        assert out[f"glcm_{prop.lower()}_d1"] == pytest.approx(ref[prop], rel=1e-9), prop
    lbp = [v for k, v in out.items() if k.startswith("lbp_uniform_hist_")]
    assert len(lbp) == 10 and sum(lbp) == pytest.approx(1.0)
    assert out["firstorder_mean"] == pytest.approx(float(img.mean()), rel=1e-12)
    assert list(out) == me.features.feature_names(levels=levels)
    record(
        benchmark,
        role="target",
        target=target,
        label=f"features.extract(levels={levels}) [{len(out)} features]",
        image_name=f"camera-{size}",
    )


@pytest.mark.parametrize(("levels", "size"), params(extract_group, EXTRACT_CASES, False))
def test_extract_skimage_glcm(benchmark: Any, levels: int, size: int) -> None:
    q = quantised(levels, size)
    out = benchmark(skimage_glcm_props, q, levels)
    ref = skimage_reference(levels, size)
    for prop in SKIMAGE_PROPS:
        assert float(out[prop].mean()) == ref[prop], prop
    record(
        benchmark,
        role="peer",
        target="scikit-image",
        label=f"skimage graycomatrix(levels={levels}, d=1, 4 angles) + 6 graycoprops",
        image_name=f"camera-{size}",
    )


# --------------------------------------------------------------------------------------
# first order vs NumPy / SciPy


def numpy_firstorder(img: np.ndarray, bins: int = 64) -> dict[str, float]:
    v = np.asarray(img, dtype=np.float32).astype(np.float64).ravel()
    hist, _ = np.histogram(v, bins, range=(v.min(), v.max()))
    p = hist[hist > 0] / v.size
    p10, p25, p50, p75, p90 = np.percentile(v, [10, 25, 50, 75, 90])
    window = v[(v >= p10) & (v <= p90)]
    mean = v.mean()
    return {
        "mean": float(mean),
        "std": float(v.std()),
        "skewness": float(scipy.stats.skew(v)),
        "kurtosis": float(scipy.stats.kurtosis(v, fisher=False)),
        "entropy": float(-(p * np.log2(p)).sum()),
        "uniformity": float((p * p).sum()),
        "energy": float(np.dot(v, v)),
        "rms": math.sqrt(float(np.dot(v, v)) / v.size),
        "min": float(v.min()),
        "p10": float(p10),
        "p50": float(p50),
        "p90": float(p90),
        "max": float(v.max()),
        "range": float(v.max() - v.min()),
        "iqr": float(p75 - p25),
        "mean_absolute_deviation": float(np.mean(np.abs(v - mean))),
        "median_absolute_deviation": float(scipy.stats.median_abs_deviation(v)),
        "robust_mean_absolute_deviation": float(np.mean(np.abs(window - window.mean()))),
    }


def firstorder_image(kind: str) -> np.ndarray:
    key = ("fo", kind)
    if key not in _cache:
        img = image(512)
        if kind == "f32":  # non-integral values: the radix path
            img = img.astype(np.float32) * np.float32(1.0 / 3.0) + np.float32(0.1)
        _cache[key] = img
    return _cache[key]


def check_firstorder(got: dict[str, float], ref: dict[str, float]) -> None:
    assert list(got) == list(FIRSTORDER_FEATURES)
    for k in FIRSTORDER_FEATURES:
        assert got[k] == pytest.approx(ref[k], rel=1e-9, abs=1e-9), k
    for k in ("min", "max", "p10", "p50", "p90"):
        assert got[k] == ref[k], k


def firstorder_group(kind: str) -> str:
    return f"firstorder-{kind}-512"


@pytest.mark.parametrize(("kind", "target"), params(firstorder_group, ["u8", "f32"], True))
def test_firstorder_target(benchmark: Any, kind: str, target: str) -> None:
    img = firstorder_image(kind)
    with me.simd.use_target(target):
        out = benchmark(me.features.firstorder, img)
    check_firstorder(out, numpy_firstorder(img))
    record(
        benchmark,
        role="target",
        target=target,
        label="features.firstorder (18 statistics)",
        image_name=f"camera-512-{kind}",
    )


@pytest.mark.parametrize("kind", params(firstorder_group, ["u8", "f32"], False))
def test_firstorder_numpy(benchmark: Any, kind: str) -> None:
    img = firstorder_image(kind)
    out = benchmark(numpy_firstorder, img)
    check_firstorder(me.features.firstorder(img), out)
    record(
        benchmark,
        role="numpy",
        target="",
        label="NumPy / SciPy (percentile, histogram, skew, kurtosis, MAD, ...)",
        image_name=f"camera-512-{kind}",
    )


# --------------------------------------------------------------------------------------
# gradient histogram vs OpenCV + NumPy


def opencv_gradient(img: np.ndarray, bins: int = 8) -> list[float]:
    f = np.asarray(img, dtype=np.float32)
    gx = cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=3)
    mag = cv2.magnitude(gx, gy)
    # float64 angles: in float32, gradients at exactly 45 degrees land in either bin
    theta = np.mod(np.arctan2(gy.astype(np.float64), gx), np.pi)
    k = np.minimum((theta * (bins / np.pi)).astype(np.intp), bins - 1)
    hist = np.bincount(k.ravel(), weights=mag.ravel(), minlength=bins)
    m = mag.astype(np.float64)
    return [float(m.mean()), float(m.std()), float(np.percentile(m, 90)), *(hist / hist.sum())]


def check_gradient(got: list[float], ref: list[float]) -> None:
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("target", params(lambda: "gradient-512", [()], True))
def test_gradient_target(benchmark: Any, target: str) -> None:
    img = image(512)
    with me.simd.use_target(target):
        out = benchmark(me.features.gradient_histogram, img)
    check_gradient(list(out.values()), opencv_gradient(img))
    record(
        benchmark,
        role="target",
        target=target,
        label="features.gradient_histogram(bins=8)",
        image_name="camera-512",
    )


@pytest.mark.benchmark(group="gradient-512")
def test_gradient_opencv(benchmark: Any) -> None:
    img = image(512)
    out = benchmark(opencv_gradient, img)
    check_gradient(list(me.features.gradient_histogram(img).values()), out)
    record(
        benchmark,
        role="opencv+numpy",
        target="",
        label="cv2.Sobel + cv2.magnitude + numpy arctan2/bincount/percentile",
        image_name="camera-512",
    )


# --------------------------------------------------------------------------------------
# issue 17: extract in a mixed workload (a NumPy neighbour that allocates and frees
# frame-sized temporaries between calls) vs the same call in a tight loop; extract keeps
# its intermediates in per-thread reusable arrays.  extra_info: kernel-only median time
# (kernel_ms) and minor page faults per call (faults_per_call).


@pytest.mark.benchmark(group="mixed-extract-L32-512")
@pytest.mark.parametrize("mode", ["steady", "mixed"])
def test_extract_mixed_workload(benchmark: Any, mode: str) -> None:
    img = image(512)
    loop = MixedLoop(img, mode, lambda: me.features.extract(img, levels=32))
    out = benchmark(loop.once)
    assert out == me.features.extract(img, levels=32)
    record(
        benchmark,
        role="target",
        target=me.simd.active_target(),
        label=f"features.extract(levels=32) {mode}",
        image_name="camera-512",
    )
    loop.record(benchmark)
