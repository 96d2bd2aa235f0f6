"""Every supported SIMD target against the scalar path and the float64 NumPy reference.

Kernels: SRAD, Lee, Kuan, additive Lee (Wiener), Frost, generalised Anscombe and its exact
unbiased inverse, and the Immerkaer noise sum; plus the target-selection API
(:mod:`medimg_edge.simd`) and the ``MEDIMG_EDGE_SIMD`` environment variable.

Tolerances (explicit; observed on x86-64 AVX-512, 0-200 values):

* target vs scalar: ``atol = 1e-5 * (1 + max|scalar|)`` (observed <= 3e-7 relative);
* target vs float64 reference: ``atol = 1e-4 * (1 + max|ref|)`` (observed <= 4e-6
  relative, ~3e-5 absolute on 0-200 values).
"""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

import medimg_edge as me
from medimg_edge import _reference as ref

D = me.denoise

#: Every SIMD target this CPU can run, weakest first, and those other than scalar.
SUPPORTED_TARGETS = me.simd.supported_targets()
SIMD_TARGETS = tuple(t for t in SUPPORTED_TARGETS if t != "scalar")

#: Tolerance factor of a SIMD target against the scalar path of the same build.
SCALAR_RTOL = 1e-5
#: Tolerance factor of any target against the float64 reference.
REF_RTOL = 1e-4

SHAPES = [(1, 37), (37, 1), (3, 3), (7, 5), (33, 17), (130, 67)]
WINDOWS = [3, 5, 7, 15]
DTYPES = [np.uint8, np.uint16, np.float32, np.float64]
#: uint16 images use 16x the range of the others (a 12-bit detector).
SCALE = {np.uint8: 1.0, np.uint16: 16.0, np.float32: 1.0, np.float64: 1.0}


def assert_close(actual: np.ndarray, desired: np.ndarray, rtol: float, what: str) -> None:
    desired = np.asarray(desired, dtype=np.float64)
    atol = rtol * (1.0 + float(np.max(np.abs(desired))))
    np.testing.assert_allclose(
        np.asarray(actual, dtype=np.float64), desired, rtol=0, atol=atol, err_msg=what
    )


@functools.cache
def speckle_image(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """Piecewise-constant regions and a ramp under 4-look gamma speckle, values ~0-250.

    Regions of different contrast make the adaptive weights of every filter take values
    strictly inside (0, 1) as well as at both clamps.
    """
    rng = np.random.default_rng(sum(shape) * 7919 + len(shape) + DTYPES.index(dtype))
    rows, cols = (1, shape[0]) if len(shape) == 1 else (shape[0], shape[-1])
    yy, xx = np.mgrid[0:rows, 0:cols]
    base = 40.0 + 60.0 * ((yy // 9 + xx // 6) % 3) + 50.0 * xx / cols
    if len(shape) == 1:
        base = base[0]
    elif len(shape) == 3:
        base = np.broadcast_to(base[:, None, :], shape)
    img = np.clip(base * rng.gamma(4.0, 0.25, size=shape), 0.0, 250.0) * SCALE[dtype]
    if np.dtype(dtype).kind == "u":
        img = np.rint(img)
    out = img.astype(dtype)
    out.setflags(write=False)
    return out


def _run_window_kernel(kernel: str, img: np.ndarray, window: int, scale: float) -> np.ndarray:
    if kernel == "lee":
        return D.lee(img, window=window, noise_cv=0.5)
    if kernel == "kuan":
        return D.kuan(img, window=window, noise_cv=0.5)
    if kernel == "wiener":
        return D.wiener(img, window=window, noise_sigma=25.0 * scale)
    assert kernel == "frost"
    return D.frost(img, window=window, damping=2.0)


def _ref_window_kernel(kernel: str, img: np.ndarray, window: int, scale: float) -> np.ndarray:
    if kernel == "lee":
        return ref.lee(img, window, 0.5)
    if kernel == "kuan":
        return ref.kuan(img, window, 0.5)
    if kernel == "wiener":
        return ref.wiener(img, window, 25.0 * scale)
    assert kernel == "frost"
    return ref.frost(img, window, 2.0)


@functools.cache
def window_reference(kernel: str, shape: tuple[int, int], dtype: type, window: int) -> np.ndarray:
    return _ref_window_kernel(kernel, speckle_image(shape, dtype), window, SCALE[dtype])


def _run_in(target: str, fn, *args, **kwargs):
    """Run ``fn`` with the SIMD target capped at ``target``; check the cap took effect."""
    with me.simd.use_target(target) as active:
        assert active == target
        assert me.simd.active_target() == target
        return fn(*args, **kwargs)


# ---------------------------------------------------------------------------------------
# Local-statistics filters (Lee, Kuan, Wiener) and Frost.
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("kernel", ["lee", "kuan", "wiener", "frost"])
@pytest.mark.parametrize("target", SUPPORTED_TARGETS)
def test_window_kernels_match_scalar_and_reference(target, kernel, window, shape):
    # Cycle the input dtype over shapes and windows so every (kernel, dtype) pair is seen.
    dtype = DTYPES[(SHAPES.index(shape) + WINDOWS.index(window)) % len(DTYPES)]
    img = speckle_image(shape, dtype)
    scale = SCALE[dtype]
    scalar = _run_in("scalar", _run_window_kernel, kernel, img, window, scale)
    out = _run_in(target, _run_window_kernel, kernel, img, window, scale)
    assert out.dtype == np.float32
    assert out.shape == shape
    what = f"{kernel} window={window} {np.dtype(dtype)} {shape} on {target}"
    assert_close(out, scalar, SCALAR_RTOL, f"{what} vs scalar")
    assert_close(out, window_reference(kernel, shape, dtype, window), REF_RTOL, f"{what} vs ref")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("target", SUPPORTED_TARGETS)
def test_window_kernels_every_dtype_default_window(target, dtype):
    shape = (41, 29)
    img = speckle_image(shape, dtype)
    for kernel in ("lee", "kuan", "wiener", "frost"):
        out = _run_in(target, _run_window_kernel, kernel, img, 7, SCALE[dtype])
        assert_close(
            out,
            window_reference(kernel, shape, dtype, 7),
            REF_RTOL,
            f"{kernel} {np.dtype(dtype)} on {target}",
        )


@pytest.mark.parametrize("kernel", ["lee", "kuan", "wiener", "frost"])
@pytest.mark.parametrize("target", SUPPORTED_TARGETS)
def test_window_kernels_dark_region_beside_bright_structure(target, kernel):
    """Windows whose values lie far below the frame's bright structures: their variance is
    tiny against the squared shift of the window sums (hypothesis found the 4x3 frame, where
    float E[x^2] - m^2 once gave Frost 0.04 on the scalar path and 0.37 on SIMD for a float64
    0.375). Every target must follow the float64 reference."""
    tiny = np.array([[0.375, 0, 0], [0, 0, 0], [256.96304, 428, 0], [0, 0, 0]], np.float32)
    rng = np.random.default_rng(7)
    big = (0.5 + 0.01 * rng.standard_normal((40, 48))).astype(np.float32)
    big[:, 30:] = 1000.0 + 5.0 * rng.standard_normal((40, 18)).astype(np.float32)
    for img in (tiny, big):
        for window in (3, 5, 7):
            out = _run_in(target, _run_window_kernel, kernel, img, window, 1.0)
            expected = _ref_window_kernel(kernel, img.astype(np.float64), window, 1.0)
            # the dark windows themselves, to the reference's precision there
            dark = expected < 10.0
            np.testing.assert_allclose(
                out[dark], expected[dark], rtol=1e-3, atol=1e-4, err_msg=f"{kernel} {window}"
            )


# ---------------------------------------------------------------------------------------
# SRAD.
# ---------------------------------------------------------------------------------------


@functools.cache
def srad_reference(shape: tuple[int, int], dtype: type) -> np.ndarray:
    return ref.srad(speckle_image(shape, dtype), 5, 0.5, 0.5, 1.0 / 6.0)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("target", SUPPORTED_TARGETS)
def test_srad_matches_scalar_and_reference(target, dtype, shape):
    img = speckle_image(shape, dtype)

    def run():
        return D.srad(img, iterations=5, time_step=0.5, q0=0.5, rho=1.0 / 6.0)

    scalar = _run_in("scalar", run)
    out = _run_in(target, run)
    assert out.dtype == np.float32
    assert out.shape == shape
    what = f"srad {np.dtype(dtype)} {shape} on {target}"
    assert_close(out, scalar, SCALAR_RTOL, f"{what} vs scalar")
    assert_close(out, srad_reference(shape, dtype), REF_RTOL, f"{what} vs ref")


@pytest.mark.parametrize(
    ("iterations", "time_step", "q0", "rho"),
    [(1, 1.0, 0.2, 0.0), (12, 0.25, 1.0, 1.0 / 6.0), (30, 0.9, 0.05, 0.5)],
)
@pytest.mark.parametrize("target", SUPPORTED_TARGETS)
def test_srad_parameters_match_reference(target, iterations, time_step, q0, rho):
    img = speckle_image((45, 38), np.float32)
    out = _run_in(target, D.srad, img, iterations=iterations, time_step=time_step, q0=q0, rho=rho)
    expected = ref.srad(img, iterations, time_step, q0, rho)
    assert_close(out, expected, REF_RTOL, f"srad({iterations}, {time_step}, {q0}, {rho})")


def test_srad_black_pixels_match_reference():
    # Zeros exercise the floor of the four-neighbour mean (no division by zero).
    img = np.array(speckle_image((23, 19), np.uint8))
    img[5:9, 3:15] = 0
    img[0, :] = 0
    expected = ref.srad(img, 8, 0.5, 0.4)
    for target in SUPPORTED_TARGETS:
        out = _run_in(target, D.srad, img, iterations=8, q0=0.4)
        assert np.isfinite(out).all()
        assert_close(out, expected, REF_RTOL, f"srad with black pixels on {target}")


# ---------------------------------------------------------------------------------------
# Anscombe transform and its exact unbiased inverse (element-wise: 1-D to 3-D; lengths
# that are not multiples of any vector width exercise the tail lanes).
# ---------------------------------------------------------------------------------------

VST_SHAPES = [(1,), (7,), (17,), (33,), (1, 1), (5, 3), (31, 9), (3, 5, 7), (2, 17, 3)]
VST_PARAMS = [(1.0, 0.0), (2.5, 3.0), (0.4, 0.7)]


@pytest.mark.parametrize(("gain", "sigma"), VST_PARAMS)
@pytest.mark.parametrize("shape", VST_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("target", SUPPORTED_TARGETS)
def test_anscombe_matches_scalar_and_reference(target, shape, gain, sigma):
    dtype = DTYPES[VST_SHAPES.index(shape) % len(DTYPES)]
    img = speckle_image(shape, dtype)
    scalar = _run_in("scalar", D.anscombe, img, gain=gain, sigma=sigma)
    out = _run_in(target, D.anscombe, img, gain=gain, sigma=sigma)
    assert out.dtype == np.float32
    assert out.shape == shape
    assert_close(out, scalar, SCALAR_RTOL, f"anscombe on {target} vs scalar")
    assert_close(out, ref.anscombe(img, gain, sigma), REF_RTOL, f"anscombe on {target} vs ref")


def test_anscombe_negative_argument_clamps_to_zero():
    # f(z) = 2/g sqrt(max(g z + 3/8 g^2 + s^2, 0)): strongly negative z gives exactly 0.
    z = np.array([-1000.0, -10.0, -0.375, 0.0], dtype=np.float32)
    for target in SUPPORTED_TARGETS:
        out = _run_in(target, D.anscombe, z)
        assert_close(out, ref.anscombe(z), REF_RTOL, f"anscombe on {target}")
        assert out[0] == 0.0 and out[1] == 0.0


@pytest.mark.parametrize(("gain", "sigma"), VST_PARAMS)
@pytest.mark.parametrize("shape", VST_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("target", SIMD_TARGETS)
def test_inverse_anscombe_matches_scalar(target, shape, gain, sigma):
    # Transformed-domain values below the table (-> 0), inside it, and beyond it (the
    # closed-form tail takes over above E[f | y = 400] ~ 40).
    rng = np.random.default_rng(len(shape) * 100 + sum(shape))
    d = rng.uniform(-2.0, 120.0, size=shape).astype(np.float32)
    scalar = _run_in("scalar", D.inverse_anscombe, d, gain=gain, sigma=sigma)
    out = _run_in(target, D.inverse_anscombe, d, gain=gain, sigma=sigma)
    assert out.dtype == np.float32
    assert out.shape == shape
    assert_close(out, scalar, SCALAR_RTOL, f"inverse_anscombe on {target} vs scalar")


@functools.cache
def _expected(y: float, sigma: float) -> float:
    return ref.expected_anscombe(y, sigma)


@pytest.mark.parametrize("sigma", [0.0, 0.5, 3.0])
@pytest.mark.parametrize("target", SUPPORTED_TARGETS)
def test_inverse_anscombe_inverts_reference_expectation(target, sigma):
    # The defining property of the exact unbiased inverse, on every target (the full
    # range of y and both gains: tests/test_denoise.py).
    ys = np.array([0.05, 0.3, 1.0, 4.0, 20.0, 150.0, 399.0, 800.0])
    e = np.array([_expected(float(y), sigma) for y in ys], dtype=np.float32)
    out = _run_in(target, D.inverse_anscombe, e, sigma=sigma)
    np.testing.assert_allclose(out, ys, rtol=2e-4, atol=2e-3)


# ---------------------------------------------------------------------------------------
# Immerkaer noise estimate.
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 3), (3, 40), (40, 3), (7, 5), (33, 17), (130, 67)], ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("target", SUPPORTED_TARGETS)
def test_estimate_noise_matches_scalar_and_reference(target, dtype, shape):
    img = speckle_image(shape, dtype)
    scalar = _run_in("scalar", D.estimate_noise, img)
    out = _run_in(target, D.estimate_noise, img)
    expected = ref.immerkaer_sigma(img)
    assert expected > 0.0
    assert isinstance(out, float)
    assert out == pytest.approx(scalar, rel=SCALAR_RTOL)
    assert out == pytest.approx(expected, rel=REF_RTOL)


# ---------------------------------------------------------------------------------------
# Fused parameter estimators (estimate_speckle, estimate_poisson_gaussian): every target
# against scalar and against the float64 reference (medimg_edge._reference).
# ---------------------------------------------------------------------------------------


def _ref_speckle_cv(image: np.ndarray, window: int) -> float:
    """estimate_speckle in float64: two-pass window moments at the even pixels."""
    img = np.asarray(image, dtype=np.float64)
    r = window // 2
    pad = img
    for axis in (0, 1):  # reflect-101; a single row or column reflects onto itself
        width = [(0, 0), (0, 0)]
        width[axis] = (r, r)
        pad = np.pad(pad, width, mode="reflect" if img.shape[axis] > 1 else "edge")
    win = np.lib.stride_tricks.sliding_window_view(pad, (window, window))[::2, ::2]
    m = win.mean(axis=(2, 3))
    v = ((win - m[..., None, None]) ** 2).mean(axis=(2, 3))
    top = float(m.max())
    if top <= 0.0:
        return 0.0
    valid = m > 0.01 * top
    return float(np.median(np.sqrt(v[valid]) / m[valid])) if valid.any() else 0.0


def _ref_poisson_gaussian(image: np.ndarray, block: int) -> tuple[float, float]:
    """estimate_poisson_gaussian in float64 (exact stencils, numpy.linalg.lstsq)."""
    img = np.asarray(image, dtype=np.float64)
    rows = (img.shape[0] - 2) // block * block
    cols = (img.shape[1] - 2) // block * block
    c = img[1 : 1 + rows, 1 : 1 + cols]
    n = img[0:rows, 1 : 1 + cols]
    s_ = img[2 : 2 + rows, 1 : 1 + cols]
    w = img[1 : 1 + rows, 0:cols]
    e = img[1 : 1 + rows, 2 : 2 + cols]
    nw, ne = img[0:rows, 0:cols], img[0:rows, 2 : 2 + cols]
    sw, se = img[2 : 2 + rows, 0:cols], img[2 : 2 + rows, 2 : 2 + cols]
    r = ((nw + ne + sw + se) - 2.0 * (n + s_ + w + e) + 4.0 * c) / 6.0
    m = (nw + n + ne + w + c + e + sw + s_ + se) / 9.0
    shape = (rows // block, block, cols // block, block)
    tile_var = (r * r).reshape(shape).mean(axis=(1, 3)).ravel()
    tile_mean = m.reshape(shape).mean(axis=(1, 3)).ravel()
    n_bins = int(np.clip(tile_mean.size // 16, 1, 32))
    parts = np.array_split(np.argsort(tile_mean, kind="stable"), n_bins)
    x = np.array([np.median(tile_mean[p]) for p in parts])
    y = np.array([np.median(tile_var[p]) for p in parts])
    wt = np.sqrt([float(p.size) for p in parts])
    fallback = 0.0, math.sqrt(max(float(np.median(tile_var)), 0.0))
    if x.size < 2 or float(np.ptp(x)) <= 1e-12 * max(1.0, float(np.abs(x).max())):
        return fallback
    (gain, var0), *_ = np.linalg.lstsq(np.stack([x, np.ones_like(x)], 1) * wt[:, None], y * wt)
    if gain <= 0.0:
        return fallback
    return float(gain), math.sqrt(max(float(var0), 0.0))


@pytest.mark.parametrize("shape", [(1, 37), (37, 1), (7, 5), (33, 17), (130, 67)], ids=str)
@pytest.mark.parametrize("window", [3, 7, 9])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("target", SUPPORTED_TARGETS)
def test_estimate_speckle_matches_scalar_and_reference(target, dtype, window, shape):
    img = speckle_image(shape, dtype)
    scalar = _run_in("scalar", D.estimate_speckle, img, window=window)
    out = _run_in(target, D.estimate_speckle, img, window=window)
    expected = _ref_speckle_cv(img, window)
    assert expected > 0.0
    assert isinstance(out, float)
    assert out == pytest.approx(scalar, rel=SCALAR_RTOL)
    assert out == pytest.approx(expected, rel=REF_RTOL)


@pytest.mark.parametrize("shape", [(12, 12), (24, 24), (37, 61), (130, 67)], ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("target", SUPPORTED_TARGETS)
def test_estimate_poisson_gaussian_matches_scalar_and_reference(target, dtype, shape):
    rng = np.random.default_rng(sum(shape))
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    mean = 20.0 + 200.0 * xx / shape[1] + 30.0 * (yy // 8 % 2)
    z = np.clip(2.0 * rng.poisson(mean / 2.0) + rng.normal(0.0, 3.0, shape), 0, 250)
    img = (np.rint(z) if np.dtype(dtype).kind == "u" else z).astype(dtype)
    scalar = _run_in("scalar", D.estimate_poisson_gaussian, img, block=4)
    out = _run_in(target, D.estimate_poisson_gaussian, img, block=4)
    expected = _ref_poisson_gaussian(img, 4)
    tiles = ((shape[0] - 2) // 4) * ((shape[1] - 2) // 4)
    assert (expected[0] > 0.0) == (tiles >= 32)  # fewer tiles: one bin, the Gaussian fallback
    assert out == pytest.approx(scalar, rel=SCALAR_RTOL)
    assert out == pytest.approx(expected, rel=REF_RTOL)


# ---------------------------------------------------------------------------------------
# Random small arrays: every SIMD target against scalar (tail lanes, tiny images).
# ---------------------------------------------------------------------------------------

small_images = arrays(
    np.float32,
    array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=40),
    elements=st.floats(0.0, 1000.0, width=32),
)


@pytest.mark.parametrize("kernel", ["srad", "lee", "kuan", "wiener", "frost", "anscombe"])
@pytest.mark.parametrize("target", SIMD_TARGETS)
@given(img=small_images, window=st.sampled_from([3, 5, 7, 9]))
def test_random_images_simd_matches_scalar(target, kernel, img, window):
    def run():
        if kernel == "srad":
            return D.srad(img, iterations=3, q0=0.5)
        if kernel == "anscombe":
            return D.anscombe(img, gain=1.5, sigma=2.0)
        return _run_window_kernel(kernel, img, window, 1.0)

    scalar = _run_in("scalar", run)
    out = _run_in(target, run)
    assert np.isfinite(out).all()
    assert_close(out, scalar, SCALAR_RTOL, f"{kernel} on {target}")


# ---------------------------------------------------------------------------------------
# The target-selection API.
# ---------------------------------------------------------------------------------------

KNOWN = ("scalar", "sse4", "avx2", "avx512", "neon")


def _expected_active(cap: str) -> str:
    """Strongest supported target that is not stronger than ``cap`` (compiled order)."""
    compiled = me.simd.compiled_targets()
    allowed = compiled[: compiled.index(cap) + 1]
    return [t for t in allowed if t in me.simd.supported_targets()][-1]


def test_target_lists():
    compiled = me.simd.compiled_targets()
    supported = me.simd.supported_targets()
    assert isinstance(compiled, tuple) and isinstance(supported, tuple)
    assert compiled[0] == "scalar" and supported[0] == "scalar"
    assert set(compiled) <= set(KNOWN)
    # weakest first, in the documented order, no duplicates
    assert list(compiled) == sorted(compiled, key=KNOWN.index)
    assert list(supported) == [t for t in compiled if t in supported]
    assert me.simd.active_target() in supported


def test_best_target_without_cap():
    with me.simd.use_target(None) as active:
        assert me.simd.target_cap() is None
        assert active == me.simd.supported_targets()[-1]


@pytest.mark.parametrize("cap", me.simd.compiled_targets())
def test_use_target_caps_and_restores(cap):
    before = me.simd.target_cap()
    with me.simd.use_target(cap) as active:
        assert active == _expected_active(cap)
        assert me.simd.active_target() == active
        assert me.simd.target_cap() == cap
    assert me.simd.target_cap() == before


def test_use_target_nested_and_on_error():
    me.simd.set_target_cap(None)
    with pytest.raises(RuntimeError, match="boom"):
        with me.simd.use_target("scalar"):
            with me.simd.use_target(SUPPORTED_TARGETS[-1]) as inner:
                assert inner == SUPPORTED_TARGETS[-1]
            assert me.simd.active_target() == "scalar"
            raise RuntimeError("boom")
    assert me.simd.target_cap() is None
    assert me.simd.active_target() == SUPPORTED_TARGETS[-1]


def test_set_target_cap_roundtrip():
    me.simd.set_target_cap("scalar")
    assert me.simd.target_cap() == "scalar"
    assert me.simd.active_target() == "scalar"
    me.simd.set_target_cap(None)
    assert me.simd.target_cap() is None
    assert me.simd.active_target() == SUPPORTED_TARGETS[-1]


_NOT_COMPILED = [t for t in KNOWN if t not in me.simd.compiled_targets()]


@pytest.mark.parametrize("bad", ["bogus", "sse2", "avx", 3, b"avx2", *_NOT_COMPILED])
def test_invalid_target_raises_and_keeps_cap(bad):
    me.simd.set_target_cap("scalar")
    with pytest.raises(me.InvalidInputError, match="SIMD target"):
        me.simd.set_target_cap(bad)
    with pytest.raises(me.InvalidInputError, match="SIMD target"):
        with me.simd.use_target(bad):
            pytest.fail("use_target must raise before entering the block")
    assert me.simd.target_cap() == "scalar"
    assert me.simd.active_target() == "scalar"


_CHILD = textwrap.dedent(
    """
    import json, warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import medimg_edge as me
    print(json.dumps({
        "active": me.simd.active_target(),
        "cap": me.simd.target_cap(),
        "info_active": me.info()["simd"]["active"],
        "warnings": [[w.category.__name__, str(w.message)] for w in caught
                     if issubclass(w.category, RuntimeWarning)],
    }))
    """
)


def _import_with_env(value: str | None) -> dict:
    env = dict(os.environ)
    env.pop(me.simd.ENV_VAR, None)
    if value is not None:
        env[me.simd.ENV_VAR] = value
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("target", SUPPORTED_TARGETS)
def test_env_var_caps_target(target):
    got = _import_with_env(target)
    assert got["active"] == target
    assert got["info_active"] == target
    assert got["cap"] == target
    assert got["warnings"] == []


@pytest.mark.parametrize("value", [None, ""])
def test_env_var_unset_or_empty_uses_best(value):
    got = _import_with_env(value)
    assert got["active"] == SUPPORTED_TARGETS[-1]
    assert got["cap"] is None
    assert got["warnings"] == []


def test_env_var_unknown_warns_and_is_ignored():
    got = _import_with_env("warp9")
    assert got["active"] == SUPPORTED_TARGETS[-1]
    assert got["cap"] is None
    assert len(got["warnings"]) == 1
    category, message = got["warnings"][0]
    assert category == "RuntimeWarning"
    assert me.simd.ENV_VAR in message and "warp9" in message
