"""First-order statistics and gradient histograms (``medimg_edge.features.firstorder`` /
``gradient_histogram``) against NumPy / SciPy / OpenCV references, every SIMD target
against the scalar path, masks and input validation.

Exactness claims tested here (see the docstring of ``firstorder``):

* histogram counts, percentiles, min and max: bit-identical to NumPy on the float64 copy
  of the selected values (both the counting path and the radix path);
* median absolute deviation: bit-identical on the counting path, within float32
  rounding of the deviations (relative 1e-7) on the radix path;
* moments: relative 1e-10 of SciPy.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import scipy.stats
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import medimg_edge as me
from medimg_edge import _core
from medimg_edge.features._firstorder import FIRSTORDER_FEATURES, gradient_feature_names

F = me.features
TARGETS = me.simd.supported_targets()
DTYPES = [np.uint8, np.uint16, np.float32, np.float64]
EXACT = ("min", "max", "range", "p10", "p50", "p90", "iqr", "entropy", "uniformity")


def random_image(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    if dtype == np.uint8:
        return rng.integers(0, 256, shape).astype(np.uint8)
    if dtype == np.uint16:
        return rng.integers(0, 4096, shape).astype(np.uint16)
    return (rng.gamma(2.0, 40.0, shape) - 20.0).astype(dtype)


def reference(image, mask=None, bins=64):
    """float64 NumPy / SciPy / PyRadiomics definitions of every first-order feature."""
    v = np.asarray(image, dtype=np.float32).astype(np.float64)
    v = v[np.asarray(mask, dtype=bool)] if mask is not None else v.ravel()
    hist, _ = np.histogram(v, bins, range=(v.min(), v.max()))
    p = hist[hist > 0] / v.size
    p10, p25, p50, p75, p90 = np.percentile(v, [10, 25, 50, 75, 90])
    window = v[(v >= p10) & (v <= p90)]
    const = v.min() == v.max()
    return {
        "mean": v.mean(),
        "std": v.std(),
        "skewness": 0.0 if const else scipy.stats.skew(v, bias=True),
        "kurtosis": 0.0 if const else scipy.stats.kurtosis(v, fisher=False, bias=True),
        "entropy": max(float(-(p * np.log2(p)).sum()), 0.0),
        "uniformity": float((p * p).sum()),
        "energy": float((v * v).sum()),
        "rms": math.sqrt((v * v).mean()),
        "min": v.min(),
        "p10": p10,
        "p50": p50,
        "p90": p90,
        "max": v.max(),
        "range": v.max() - v.min(),
        "iqr": p75 - p25,
        "mean_absolute_deviation": np.mean(np.abs(v - v.mean())),
        "median_absolute_deviation": scipy.stats.median_abs_deviation(v),
        "robust_mean_absolute_deviation": (
            np.mean(np.abs(window - window.mean())) if window.size else 0.0
        ),
    }


def assert_matches(got, ref, *, mad_exact, what=""):
    assert list(got) == list(FIRSTORDER_FEATURES)
    scale = max(abs(ref["min"]), abs(ref["max"]), 1.0)
    for key in FIRSTORDER_FEATURES:
        g, r = got[key], float(ref[key])
        assert isinstance(g, float), key
        if key in EXACT or (key == "median_absolute_deviation" and mad_exact):
            if key in ("entropy", "uniformity"):  # log2 / sum order only
                assert g == pytest.approx(r, rel=1e-12, abs=1e-12), (what, key)
            else:
                assert g == r, (what, key, g, r)
        elif key == "median_absolute_deviation":
            assert g == pytest.approx(r, rel=2e-7, abs=1e-7 * scale), (what, key)
        elif key in ("skewness", "kurtosis"):
            assert g == pytest.approx(r, rel=1e-9, abs=1e-9), (what, key)
        else:
            assert g == pytest.approx(r, rel=1e-10, abs=1e-12 * scale), (what, key, g, r)


# ---------------------------------------------------------------------------------------
# Against the references.
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(1, 1), (1, 37), (23, 1), (7, 5), (64, 64), (101, 77)])
@pytest.mark.parametrize("masked", [False, True], ids=["all", "mask"])
def test_matches_numpy_scipy(dtype, shape, masked):
    img = random_image(shape, dtype, seed=sum(shape) + DTYPES.index(dtype))
    mask = None
    if masked:
        mask = np.random.default_rng(7).random(shape) < 0.4
        mask.flat[0] = True
    got = F.firstorder(img, mask)
    integral = np.dtype(dtype).kind == "u"
    assert_matches(got, reference(img, mask), mad_exact=integral, what=(dtype, shape))


def test_real_images(real_images):
    for name, img in real_images.items():
        ref = reference(img)
        got = F.firstorder(img)
        assert_matches(got, ref, mad_exact=True, what=name)
        h, w = img.shape
        roi = np.zeros(img.shape, bool)
        roi[h // 4 : 3 * h // 4, w // 3 : w - 2] = True
        assert_matches(F.firstorder(img, roi), reference(img, roi), mad_exact=True, what=name)


def test_float_image_radix_path_matches_numpy(real_images):
    # A non-integral version of a real image takes the radix path.
    img = (real_images["camera"] / 7.0 + 0.123).astype(np.float32)
    assert not _core.summary(img, None, 0, np.zeros(0), False, -1, -1, 0, 0)[0]["counting"]
    assert_matches(F.firstorder(img), reference(img), mad_exact=False, what="camera/7")


def test_wide_integer_range_takes_the_radix_path():
    img = np.random.default_rng(3).integers(-100_000, 100_000, (50, 60)).astype(np.float64)
    assert not _core.summary(img.astype(np.float32), None, 0, np.zeros(0), False, -1, -1, 0, 0)[0][
        "counting"
    ]
    assert_matches(F.firstorder(img), reference(img), mad_exact=False, what="wide")


def test_counting_and_radix_paths_agree():
    img = np.random.default_rng(4).integers(0, 1000, (61, 47)).astype(np.float32)
    counted = F.firstorder(img)
    shifted = F.firstorder(img + np.float32(0.5))  # same order statistics, radix path
    for key in ("p10", "p50", "p90", "min", "max"):
        assert shifted[key] == counted[key] + 0.5
    for key in ("std", "skewness", "kurtosis", "iqr", "range", "median_absolute_deviation"):
        assert shifted[key] == pytest.approx(counted[key], rel=1e-12, abs=1e-12), key


def test_constant_region():
    got = F.firstorder(np.full((9, 13), 42.5, np.float32))
    assert got["std"] == got["skewness"] == got["kurtosis"] == got["entropy"] == 0.0
    assert got["uniformity"] == 1.0
    assert got["p10"] == got["p90"] == got["min"] == got["max"] == 42.5
    assert got["median_absolute_deviation"] == got["robust_mean_absolute_deviation"] == 0.0
    assert got["energy"] == 42.5**2 * 9 * 13


def test_bins_changes_only_entropy_and_uniformity():
    img = random_image((40, 50), np.float32, 11)
    a, b = F.firstorder(img, bins=8), F.firstorder(img, bins=256)
    for key in FIRSTORDER_FEATURES:
        if key in ("entropy", "uniformity"):
            assert a[key] != b[key]
        else:
            assert a[key] == b[key], key
    assert F.firstorder(img, bins=1)["entropy"] == 0.0


def test_three_d_volume_and_one_d_signal():
    vol = random_image((4, 9, 11), np.uint16, 12)
    assert_matches(F.firstorder(vol), reference(vol), mad_exact=True)
    sig = random_image((300,), np.float64, 13)
    assert_matches(F.firstorder(sig), reference(sig), mad_exact=False)


@given(
    arrays(
        np.float32,
        st.tuples(st.integers(1, 12), st.integers(1, 12)),
        elements=st.floats(-1e6, 1e6, width=32, allow_nan=False),
    ),
    st.integers(1, 300),
)
def test_hypothesis_any_finite_values(img, bins):
    assert_matches(F.firstorder(img, bins=bins), reference(img, bins=bins), mad_exact=False)


# ---------------------------------------------------------------------------------------
# SIMD targets.
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("kind", ["uint8", "float", "masked-float", "masked-uint16"])
def test_every_target_matches_scalar(target, kind):
    rng = np.random.default_rng(5)
    if "uint" in kind:
        img = rng.integers(0, 4096 if "16" in kind else 256, (67, 131)).astype(np.float32)
    else:
        img = rng.normal(300.0, 50.0, (67, 131)).astype(np.float32)
    mask = (rng.random(img.shape) < 0.5).astype(np.uint8) if "masked" in kind else None
    q = np.array([0.01, 0.1, 0.5, 0.9, 0.99])
    args = (img, mask, 64, q, True, 0.1, 0.9, 250.0, 350.0)
    s0, h0, q0 = _core.summary(*args, "scalar")
    s1, h1, q1 = _core.summary(*args, target)
    np.testing.assert_array_equal(h1, h0)
    np.testing.assert_array_equal(q1, q0)
    for key in ("count", "min", "max", "n_below", "n_above", "mad", "counting"):
        assert s1[key] == s0[key], key
    for key in ("mean", "sumsq", "m2", "m3", "m4", "absdev", "rmad"):
        assert s1[key] == pytest.approx(s0[key], rel=1e-12, abs=1e-9), key


@pytest.mark.parametrize("target", TARGETS)
def test_every_target_gradient_matches_scalar(target, real_images):
    img = np.ascontiguousarray(real_images["ct"], dtype=np.float32)
    mask = (np.random.default_rng(6).random(img.shape) < 0.5).astype(np.uint8)
    for m in (None, mask):
        for bins in (1, 8, 9, 36):
            mag0, h0 = _core.gradient(img, m, bins, "scalar")
            mag1, h1 = _core.gradient(img, m, bins, target)
            np.testing.assert_allclose(mag1, mag0, rtol=1e-6, atol=1e-6 * mag0.max())
            np.testing.assert_allclose(h1, h0, rtol=1e-5, atol=1e-6 * h0.sum())


# ---------------------------------------------------------------------------------------
# Gradient histogram.
# ---------------------------------------------------------------------------------------


def gradient_reference(image, mask, bins):
    img = np.asarray(image, dtype=np.float32).astype(np.float64)
    gx = cv2.Sobel(img, cv2.CV_64F, 1, 0, ksize=3, borderType=cv2.BORDER_REFLECT_101)
    gy = cv2.Sobel(img, cv2.CV_64F, 0, 1, ksize=3, borderType=cv2.BORDER_REFLECT_101)
    mag = np.hypot(gx, gy)
    theta = np.mod(np.arctan2(gy, gx), np.pi)
    k = np.minimum((theta / (np.pi / bins)).astype(int), bins - 1)
    sel = np.ones(img.shape, bool) if mask is None else np.asarray(mask, bool)
    hist = np.bincount(k[sel], weights=mag[sel], minlength=bins)
    m = mag[sel].astype(np.float32).astype(np.float64)
    norm = hist / hist.sum() if hist.sum() > 0 else hist
    return [m.mean(), m.std(), np.percentile(m, 90), *norm]


@pytest.mark.parametrize("bins", [1, 4, 8, 9, 18])
def test_gradient_histogram_matches_opencv_numpy(real_images, bins):
    for name, img in real_images.items():
        for mask in (None, img > np.median(img)):
            got = F.gradient_histogram(img, mask, bins=bins)
            assert list(got) == gradient_feature_names(bins)
            ref = gradient_reference(img, mask, bins)
            values = list(got.values())
            # float32 Sobel vs float64: the magnitudes differ by float rounding only;
            # integer images put no pixel within rounding of a bin boundary.
            np.testing.assert_allclose(values, ref, rtol=1e-5, atol=1e-7, err_msg=name)
            assert sum(values[3:]) == pytest.approx(1.0)


def test_gradient_of_a_ramp_and_flat_image():
    ramp = np.tile(np.arange(20, dtype=np.float32) * 3.0, (10, 1))
    got = F.gradient_histogram(ramp[:, 1:-1].copy(), bins=4)
    # Sobel of a ramp of slope 3: 8 * 3 = 24 in x, 0 in y -> orientation 0 (bin 0)
    # everywhere except the reflected left/right columns, whose gradient is 12 or 0.
    inner = F.gradient_histogram(ramp, np.pad(np.ones((10, 18), bool), ((0, 0), (1, 1))))
    assert inner["magnitude_p90"] == 24.0
    assert inner["orientation_hist_00"] == 1.0
    assert got["orientation_hist_00"] == 1.0
    flat = F.gradient_histogram(np.ones((6, 7), np.uint8))
    assert all(v == 0.0 for v in flat.values())


def test_gradient_orientation_of_rotated_edges():
    img = np.zeros((32, 32), np.float32)
    img[:, 16:] = 100.0  # vertical edge: gradient along +x, orientation 0
    assert F.gradient_histogram(img, bins=4)["orientation_hist_00"] == 1.0
    # horizontal edge: gradient along +y (rows), orientation pi/2 -> bin 2 of 4
    assert F.gradient_histogram(img.T.copy(), bins=4)["orientation_hist_02"] == 1.0
    # Diagonal edges (exact multiples of pi/4); the border rows/columns see reflected
    # neighbours, so they are left out of the mask.
    inner = np.zeros((32, 32), bool)
    inner[1:-1, 1:-1] = True
    diag = np.fromfunction(lambda r, c: (r + c > 31) * 50.0, (32, 32), dtype=np.float32)
    assert F.gradient_histogram(diag, inner, bins=4)["orientation_hist_01"] == 1.0  # pi/4
    anti = np.fromfunction(lambda r, c: (c - r > 0) * 50.0, (32, 32), dtype=np.float32)
    assert F.gradient_histogram(anti, inner, bins=4)["orientation_hist_03"] == 1.0


# ---------------------------------------------------------------------------------------
# Validation.
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("func", [F.firstorder, F.gradient_histogram])
def test_mask_errors(func):
    img = random_image((8, 9), np.uint8, 1)
    with pytest.raises(me.InvalidInputError, match="no pixel"):
        func(img, np.zeros(img.shape, bool))
    with pytest.raises(me.InvalidInputError, match="shape"):
        func(img, np.ones((9, 8), bool))
    with pytest.raises(me.InvalidInputError, match="dtype"):
        func(img, np.ones(img.shape, np.float32))
    with pytest.raises(me.InvalidInputError, match="NumPy array"):
        func(img, [[1] * 9] * 8)
    # uint8 and bool masks are equivalent; non-contiguous masks are fine
    m = np.zeros((8, 18), np.uint8)
    m[:, ::2] = 1
    strided = m[:, ::2]
    assert func(img, strided) == func(img, np.ones(img.shape, bool))


@pytest.mark.parametrize(
    "call",
    [
        lambda: F.firstorder(np.zeros((3, 3), np.int32)),
        lambda: F.firstorder(np.array([[np.nan, 1.0]])),
        lambda: F.firstorder(np.zeros((0, 3))),
        lambda: F.firstorder(np.zeros((2, 2, 2, 2))),
        lambda: F.firstorder(np.zeros((3, 3)), bins=0),
        lambda: F.firstorder(np.zeros((3, 3)), bins=5000),
        lambda: F.firstorder(np.zeros((3, 3)), bins=2.5),
        lambda: F.gradient_histogram(np.zeros((3, 3, 3))),
        lambda: F.gradient_histogram(np.zeros((3, 3)), bins=0),
        lambda: F.gradient_histogram(np.zeros((3, 3)), bins=65),
    ],
)
def test_invalid_inputs(call):
    with pytest.raises(me.InvalidInputError):
        call()


def test_input_is_not_modified():
    img = random_image((20, 30), np.float64, 2)
    mask = img > 40
    before, mbefore = img.copy(), mask.copy()
    F.firstorder(img, mask)
    F.gradient_histogram(img, mask)
    np.testing.assert_array_equal(img, before)
    np.testing.assert_array_equal(mask, mbefore)


def test_core_rejects_unchecked_arrays():
    img = np.zeros((4, 4), np.float32)
    with pytest.raises(ValueError):
        _core.summary(img.astype(np.float64), None, 4, np.zeros(0), False, -1, -1, 0, 0)
    with pytest.raises(ValueError):
        _core.summary(img, np.zeros(5, np.uint8), 4, np.zeros(0), False, -1, -1, 0, 0)
    with pytest.raises(ValueError):
        _core.summary(img, None, 4, np.array([1.5]), False, -1, -1, 0, 0)
    with pytest.raises(ValueError):
        _core.summary(img, None, 4, np.zeros(17), False, -1, -1, 0, 0)
    with pytest.raises(ValueError):
        _core.gradient(img, None, 0)
    with pytest.raises(ValueError):
        _core.gradient(img[:, ::2], None, 8)


# ---------------------------------------------------------------------------------------
# The integer Sobel kernel of uint8 images (gradient_u8; issue 17).
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_uint8_gradient_equals_float_path(target, real_images):
    """A uint8 image takes the fused integer kernel: the orientation histogram and the
    percentiles are bit-identical to the float32 path on the same pixels, the mean within
    1e-13 relative (summation order) and the std within 1e-12 (one-pass variance)."""
    rng = np.random.default_rng(11)
    cases = [
        np.asarray(real_images["camera"], np.uint8),
        rng.integers(0, 256, (37, 53)).astype(np.uint8),
        (rng.integers(0, 2, (64, 80)) * 255).astype(np.uint8),  # largest magnitudes
        np.zeros((5, 6), np.uint8),
        np.array([[7]], np.uint8),
        np.array([[0, 255]], np.uint8),
        np.full((3, 40), 255, np.uint8),
    ]
    q = np.array([0.0, 0.1, 0.5, 0.9, 1.0])
    for img in cases:
        for mask in (None, (rng.random(img.shape) < 0.3).astype(np.uint8)):
            if mask is not None and not mask.any():
                continue
            f32 = img.astype(np.float32)
            for bins in (1, 8, 9):
                s8, h8, q8 = _core.gradient_summary(img, mask, bins, q, target)
                sf, hf, qf = _core.gradient_summary(f32, mask, bins, q, target)
                np.testing.assert_array_equal(h8, hf)
                np.testing.assert_array_equal(q8, qf)
                assert s8["count"] == sf["count"]
                assert s8["mean"] == pytest.approx(sf["mean"], rel=1e-13, abs=1e-300)
                assert math.sqrt(s8["m2"]) == pytest.approx(
                    math.sqrt(sf["m2"]), rel=1e-12, abs=1e-300
                )
            got = F.gradient_histogram(img, mask)
            ref = F.gradient_histogram(f32, mask)
            assert list(got) == list(ref)
            for k in got:
                assert got[k] == pytest.approx(ref[k], rel=1e-12, abs=1e-300), k


def test_uint8_gradient_binding_checks():
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.gradient_summary(np.zeros((4, 8), np.uint8)[:, ::2], None, 8, np.array([0.9]))
    with pytest.raises(ValueError, match="mask"):
        _core.gradient_summary(
            np.zeros((4, 4), np.uint8), np.ones((3, 4), np.uint8), 8, np.array([0.9])
        )


@pytest.mark.parametrize("target", TARGETS)
def test_uint8_firstorder_equals_float_path(target):
    """A uint8 image is counted from a byte histogram (summary_u8): every statistic equals
    the float32 path's on the same values, bit for bit, with and without a mask, for 1-D,
    2-D and 3-D inputs."""
    rng = np.random.default_rng(12)
    cases = [
        rng.integers(0, 256, 1000).astype(np.uint8),
        rng.integers(0, 256, (37, 53)).astype(np.uint8),
        rng.integers(100, 104, (5, 9, 3)).astype(np.uint8),
        np.full((4, 4), 255, np.uint8),
        np.array([[0]], np.uint8),
    ]
    q = np.array([0.0, 0.1, 0.5, 0.9, 1.0])
    for img in cases:
        for mask in (None, (rng.random(img.shape) < 0.3).astype(np.uint8)):
            if mask is not None and not mask.any():
                mask.flat[0] = 1
            with me.simd.use_target(target):
                got = F.firstorder(img, mask)
                ref = F.firstorder(img.astype(np.float32), mask)
                s8 = _core.summary(img, mask, 17, q, True, 0.1, 0.9, 100.0, 200.0)
                sf = _core.summary(
                    img.astype(np.float32), mask, 17, q, True, 0.1, 0.9, 100.0, 200.0
                )
            assert got == ref
            assert s8[0] == sf[0]
            np.testing.assert_array_equal(s8[1], sf[1])
            np.testing.assert_array_equal(s8[2], sf[2])
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.summary(np.zeros((4, 8), np.uint8)[:, ::2], None, 8, q, True, 0.1, 0.9, 0.0, 0.0)
