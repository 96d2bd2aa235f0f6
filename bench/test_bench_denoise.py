"""Denoising benchmarks (issue 2): every kernel per SIMD target vs its scalar path vs a
NumPy implementation vs the OpenCV / scikit-image peers, on 512x512 float32, one thread.

Each benchmark also checks what it timed:

* a SIMD target against the scalar path (same kernel, other target) and against the
  float64 NumPy reference in ``medimg_edge._reference``;
* a NumPy implementation (``_reference`` run in float32) against the float64 reference;
* an OpenCV + NumPy composition of the same filter against ``medimg_edge`` (~1e-3);
* a general-purpose denoiser (bilateral, non-local means, total variation) by its PSNR
  gain on an image with known clean truth, which must be positive.

``benchmark.extra_info`` carries ``psnr_gain_db`` (PSNR of the output minus PSNR of the
noisy input, both against the clean truth) for every method that denoises, plus the role
(``target`` / ``numpy`` / ``opencv+numpy`` / ``peer``) and SIMD target that
``bench/report.py`` turns into tables.  Groups: one per kernel, ``xray-pipeline`` and
``speckle-denoisers``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio
from skimage.restoration import denoise_nl_means, denoise_tv_chambolle

import medimg_edge as me
from medimg_edge import _reference as ref
from medimg_edge.denoise._vst import _inverse_table

if TYPE_CHECKING:
    from conftest import Case

TARGETS = me.simd.supported_targets()
F32 = np.float32
BORDER = cv2.BORDER_REFLECT_101

# Relative tolerances (of the output's largest magnitude).  Measured on x86-64 AVX-512:
# SIMD vs scalar <= 2e-6, float32 vs float64 reference <= 1e-6; the bounds leave room
# for other compilers / NEON.
SIMD_VS_SCALAR = 2e-5
VS_FLOAT64 = 1e-4
COMPOSITION_ATOL = 1e-3  # OpenCV + NumPy compositions vs medimg_edge, absolute


# --------------------------------------------------------------------------------------
# helpers


def psnr(case: Case, image: np.ndarray) -> float:
    return float(
        peak_signal_noise_ratio(
            case.clean.astype(np.float64), image.astype(np.float64), data_range=case.data_range
        )
    )


def record(
    benchmark: Any,
    case: Case,
    out: Any,
    *,
    role: str,
    target: str,
    label: str,
    quality: bool,
) -> None:
    """Store the row's metadata and, for a denoiser, check and store its PSNR gain."""
    info = benchmark.extra_info
    info.update(role=role, target=target, label=label, image=case.name)
    info["psnr_gain_db"] = None
    if quality:
        before, after = psnr(case, case.noisy), psnr(case, np.asarray(out))
        info.update(
            psnr_noisy_db=round(before, 3),
            psnr_out_db=round(after, 3),
            psnr_gain_db=round(after - before, 3),
        )
        assert np.all(np.isfinite(out)), f"{label}: non-finite output"
        assert after > before, f"{label} made the image worse: {before:.2f} -> {after:.2f} dB"


def assert_close(actual: Any, expected: Any, rel: float, what: str) -> None:
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = float(np.max(np.abs(expected))) or 1.0
    np.testing.assert_allclose(actual, expected, rtol=rel, atol=rel * scale, err_msg=what)


def time_it(benchmark: Any, fn: Callable[[], Any], rounds: int) -> Any:
    """``benchmark(fn)``, or ``benchmark.pedantic`` with ``rounds`` for slow functions."""
    if rounds:
        return benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=0)
    return benchmark(fn)


def scalar_result(cache: dict[str, Any], key: str, fn: Callable[[], Any]) -> Any:
    if key not in cache:
        with me.simd.use_target("scalar"):
            cache[key] = fn()
    return cache[key]


def by_target(group: str) -> list[Any]:
    return [pytest.param(t, id=t, marks=pytest.mark.benchmark(group=group)) for t in TARGETS]


# --------------------------------------------------------------------------------------
# the kernels: medimg_edge call, NumPy implementation (float32), float64 reference


@dataclass(frozen=True)
class Kernel:
    group: str
    image: str  # name of the conftest fixture with the input
    call: Callable[[Case], Any]  # medimg_edge
    numpy: Callable[[Case, Any], Any]  # _reference with dtype
    label: str
    numpy_label: str
    quality: bool  # a denoiser: PSNR gain recorded and asserted > 0
    numpy_rounds: int = 0  # > 0: slow NumPy implementation, fixed number of rounds


def _cu(c: Case) -> float:
    return c.params["noise_cv"]


def _inverse_numpy(d: np.ndarray, gain: float, sigma: float, dtype: Any = F32) -> np.ndarray:
    """NumPy version of ``inverse_anscombe``: linear interpolation in the package's
    (cached) uniform table of the exact unbiased inverse by direct indexing (the same
    algorithm as the C++ kernel; ``np.interp``'s binary search is 3-6x slower), the
    closed-form tail above the table, 0 below it."""
    sn = round(sigma / gain, 6)
    values, d0, step = _inverse_table(sn)
    d = np.asarray(d, dtype=dtype)
    last = values.size - 1
    t = (d - dtype(d0)) * dtype(1.0 / step)
    tc = np.clip(t, 0, last - 1)
    i = tc.astype(np.intp)
    frac = tc - i.astype(dtype)
    lo = values[i].astype(dtype, copy=False)
    y = lo + frac * (values[i + 1] - lo)
    hi = t >= last
    if np.any(hi):
        x = np.maximum(d[hi], 1.0)
        s32 = math.sqrt(1.5)
        y[hi] = (
            0.25 * x * x + 0.25 * s32 / x - 1.375 / x**2 + 0.625 * s32 / x**3 - (0.125 + sn * sn)
        )
    y[t <= 0] = 0.0
    return np.maximum(y, 0.0) * dtype(gain)


KERNELS: dict[str, Kernel] = {
    k.group: k
    for k in [
        Kernel(
            "srad-1it",
            "speckle",
            lambda c: me.denoise.srad(c.noisy, iterations=1, time_step=0.5, q0=_cu(c)),
            lambda c, dt: ref.srad(c.noisy, 1, 0.5, _cu(c), 1.0 / 6.0, dt),
            "denoise.srad(iterations=1, q0=0.5)",
            "_reference.srad (vectorised NumPy)",
            quality=True,
        ),
        Kernel(
            "srad-10it",
            "speckle",
            lambda c: me.denoise.srad(c.noisy, iterations=10, time_step=0.5, q0=_cu(c)),
            lambda c, dt: ref.srad(c.noisy, 10, 0.5, _cu(c), 1.0 / 6.0, dt),
            "denoise.srad(iterations=10, q0=0.5)",
            "_reference.srad (vectorised NumPy)",
            quality=True,
        ),
        Kernel(
            "lee-7x7",
            "speckle",
            lambda c: me.denoise.lee(c.noisy, window=7, noise_cv=_cu(c)),
            lambda c, dt: ref.lee(c.noisy, 7, _cu(c), dt),
            "denoise.lee(window=7, noise_cv=0.5)",
            "_reference.lee (sliding_window_view)",
            quality=True,
        ),
        Kernel(
            "kuan-7x7",
            "speckle",
            lambda c: me.denoise.kuan(c.noisy, window=7, noise_cv=_cu(c)),
            lambda c, dt: ref.kuan(c.noisy, 7, _cu(c), dt),
            "denoise.kuan(window=7, noise_cv=0.5)",
            "_reference.kuan (sliding_window_view)",
            quality=True,
        ),
        Kernel(
            "frost-7x7",
            "speckle",
            lambda c: me.denoise.frost(c.noisy, window=7, damping=2.0),
            lambda c, dt: ref.frost(c.noisy, 7, 2.0, dt),
            "denoise.frost(window=7, damping=2)",
            "_reference.frost (sliding_window_view)",
            quality=True,
            numpy_rounds=3,
        ),
        Kernel(
            "anscombe",
            "xray",
            lambda c: me.denoise.anscombe(c.noisy, gain=c.params["gain"], sigma=c.params["sigma"]),
            lambda c, dt: ref.anscombe(c.noisy, c.params["gain"], c.params["sigma"], dt),
            "denoise.anscombe(gain=2, sigma=4)",
            "_reference.anscombe",
            quality=False,
        ),
        Kernel(
            "inverse-anscombe",
            "xray_vst",
            lambda c: me.denoise.inverse_anscombe(
                c.noisy, gain=c.params["gain"], sigma=c.params["sigma"]
            ),
            lambda c, dt: _inverse_numpy(c.noisy, c.params["gain"], c.params["sigma"], dt),
            "denoise.inverse_anscombe(gain=2, sigma=4)",
            "table lookup by NumPy indexing",
            quality=False,
        ),
        Kernel(
            "estimate-noise",
            "gaussian",
            lambda c: me.denoise.estimate_noise(c.noisy),
            # The reference is float64 only (no dtype argument).
            lambda c, dt: ref.immerkaer_sigma(c.noisy),
            "denoise.estimate_noise",
            "_reference.immerkaer_sigma (float64)",
            quality=False,
        ),
    ]
}


def _case(request: Any, kernel: Kernel) -> Case:
    case: Case = request.getfixturevalue(kernel.image)
    return case


def _check_extra(kernel: Kernel, case: Case, out: Any, benchmark: Any) -> None:
    """Kernel-specific checks that do not compare with another implementation."""
    if kernel.group == "estimate-noise":
        true = case.params["sigma"]
        benchmark.extra_info.update(sigma_true=true, sigma_estimate=round(float(out), 6))
        # Immerkaer is biased upward by edges; on this image it reads ~8 % high.
        assert 0.8 * true < float(out) < 1.5 * true, (float(out), true)
    if kernel.group == "inverse-anscombe":
        # Independent check of the exact unbiased inverse: E[f(z) | y = out] == input,
        # with the series of _reference.expected_anscombe, on a sample of pixels.
        g, s = case.params["gain"], case.params["sigma"]
        rng = np.random.default_rng(0)
        inside = np.flatnonzero(out.ravel() > 0.0)  # 0 = below the table, by design
        idx = rng.choice(inside, 20, replace=False)
        d = case.noisy.ravel()[idx].astype(np.float64)
        y = out.ravel()[idx].astype(np.float64) / g
        back = np.array([ref.expected_anscombe(v, s / g) for v in y])
        np.testing.assert_allclose(back, d, rtol=1e-3, atol=1e-3)


# --------------------------------------------------------------------------------------
# 1. every kernel on every SIMD target this CPU supports


def _simd_params() -> list[Any]:
    return [
        pytest.param(name, t, id=f"{name}-{t}", marks=pytest.mark.benchmark(group=kernel.group))
        for name, kernel in KERNELS.items()
        for t in TARGETS
    ]


@pytest.mark.parametrize(("kernel_name", "target"), _simd_params())
def test_kernel_simd(
    benchmark: Any, request: Any, scalar_cache: dict[str, Any], kernel_name: str, target: str
) -> None:
    kernel = KERNELS[kernel_name]
    case = _case(request, kernel)
    # The scalar result first: it also warms up one-off work (the inverse-Anscombe table).
    expected = scalar_result(scalar_cache, kernel.group, lambda: kernel.call(case))
    with me.simd.use_target(target) as active:
        assert active == target
        out = benchmark(kernel.call, case)
    if isinstance(out, np.ndarray):
        assert out.dtype == np.float32 and out.shape == case.noisy.shape
    assert_close(out, expected, SIMD_VS_SCALAR, f"{kernel.group} {target} vs scalar")
    assert_close(out, kernel.numpy(case, np.float64), VS_FLOAT64, f"{kernel.group} vs float64")
    _check_extra(kernel, case, out, benchmark)
    record(
        benchmark,
        case,
        out,
        role="target",
        target=active,
        label=kernel.label,
        quality=kernel.quality,
    )


# --------------------------------------------------------------------------------------
# 2. the NumPy implementation of every kernel (medimg_edge._reference, float32)


@pytest.mark.parametrize(
    "kernel_name",
    [pytest.param(n, id=n, marks=pytest.mark.benchmark(group=k.group)) for n, k in KERNELS.items()],
)
def test_kernel_numpy(benchmark: Any, request: Any, kernel_name: str) -> None:
    kernel = KERNELS[kernel_name]
    case = _case(request, kernel)
    out = time_it(benchmark, lambda: kernel.numpy(case, F32), kernel.numpy_rounds)
    if isinstance(out, np.ndarray):
        assert out.dtype == np.float32
    assert_close(out, kernel.numpy(case, np.float64), VS_FLOAT64, f"{kernel.group} NumPy")
    record(
        benchmark,
        case,
        out,
        role="numpy",
        target="numpy",
        label=kernel.numpy_label,
        quality=kernel.quality,
    )


# --------------------------------------------------------------------------------------
# 3. OpenCV + NumPy compositions of the same filters (the peers of the speed targets)


def box_local_stats(img: np.ndarray, window: int, a: float, g: float) -> np.ndarray:
    """Lee (``g = 1``) / Kuan (``g = 1 + Cu^2``) from two OpenCV box filters.

    ``m = blur(x)``, ``v = blur(x^2) - m^2`` (reflect-101 border, as medimg_edge), then
    ``out = m + clamp((v - a m^2) / (g v), 0, 1) (x - m)`` in NumPy, in place where it
    can be.
    """
    ksize = (window, window)
    m = cv2.blur(img, ksize, borderType=BORDER)
    v = cv2.blur(img * img, ksize, borderType=BORDER)
    m2 = m * m
    v -= m2
    np.maximum(v, 0.0, out=v)
    w = v - F32(a) * m2
    np.maximum(v, F32(1e-30), out=v)
    v *= F32(g)
    w /= v
    np.clip(w, 0.0, 1.0, out=w)
    out = img - m
    out *= w
    out += m
    return out


def _rings(window: int) -> list[tuple[np.float32, np.float32, np.ndarray]]:
    """(distance, count, 0/1 kernel) for every distinct distance in the window."""
    r = window // 2
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    d2 = yy * yy + xx * xx
    return [(F32(math.sqrt(v)), F32((d2 == v).sum()), (d2 == v).astype(F32)) for v in np.unique(d2)]


RINGS7 = _rings(7)


def frost_rings(img: np.ndarray, window: int, damping: float) -> np.ndarray:
    """Frost from OpenCV: local statistics by two box filters, then a ring decomposition.

    The Frost weight depends on the offset only through its distance ``d_k``, so
    ``sum_q w_q I_q = sum_k exp(-alpha d_k) (R_k * I)`` with ``R_k`` the 0/1 ring of
    offsets at distance ``d_k`` (10 rings for 7x7), each ``R_k * I`` one
    ``cv2.filter2D``; ``den = sum_k count_k exp(-alpha d_k)``.
    """
    rings = RINGS7 if window == 7 else _rings(window)
    ksize = (window, window)
    m = cv2.blur(img, ksize, borderType=BORDER)
    v = cv2.blur(img * img, ksize, borderType=BORDER)
    m2 = m * m
    v -= m2
    np.maximum(v, 0.0, out=v)
    np.maximum(m2, F32(1e-30), out=m2)
    alpha = v
    alpha /= m2
    alpha *= F32(-damping)
    np.maximum(alpha, F32(-1e6), out=alpha)  # alpha holds -min(damping Ci^2, 1e6)
    num = np.zeros_like(img)
    den = np.zeros_like(img)
    e = np.empty_like(img)
    for d, count, kernel in rings:
        np.multiply(alpha, d, out=e)
        np.exp(e, out=e)
        den += count * e
        e *= cv2.filter2D(img, -1, kernel, borderType=BORDER)
        num += e
    num /= den
    return num


@pytest.mark.benchmark(group="lee-7x7")
def test_lee_opencv_box(benchmark: Any, speckle: Case) -> None:
    cu = _cu(speckle)
    out = benchmark(box_local_stats, speckle.noisy, 7, cu * cu, 1.0)
    np.testing.assert_allclose(
        out, me.denoise.lee(speckle.noisy, window=7, noise_cv=cu), atol=COMPOSITION_ATOL
    )
    record(
        benchmark,
        speckle,
        out,
        role="opencv+numpy",
        target="opencv+numpy",
        label="2x cv2.blur + NumPy weights",
        quality=True,
    )


@pytest.mark.benchmark(group="kuan-7x7")
def test_kuan_opencv_box(benchmark: Any, speckle: Case) -> None:
    cu = _cu(speckle)
    out = benchmark(box_local_stats, speckle.noisy, 7, cu * cu, 1.0 + cu * cu)
    np.testing.assert_allclose(
        out, me.denoise.kuan(speckle.noisy, window=7, noise_cv=cu), atol=COMPOSITION_ATOL
    )
    record(
        benchmark,
        speckle,
        out,
        role="opencv+numpy",
        target="opencv+numpy",
        label="2x cv2.blur + NumPy weights",
        quality=True,
    )


@pytest.mark.benchmark(group="frost-7x7")
def test_frost_opencv_rings(benchmark: Any, speckle: Case) -> None:
    out = benchmark(frost_rings, speckle.noisy, 7, 2.0)
    np.testing.assert_allclose(
        out, me.denoise.frost(speckle.noisy, window=7, damping=2.0), atol=COMPOSITION_ATOL
    )
    record(
        benchmark,
        speckle,
        out,
        role="opencv+numpy",
        target="opencv+numpy",
        label="2x cv2.blur + 10x cv2.filter2D rings + np.exp",
        quality=True,
    )


IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=F32)


def immerkaer_opencv(img: np.ndarray) -> float:
    """Immerkaer sigma with ``cv2.filter2D`` + ``np.abs(...).sum()`` over the interior."""
    conv = cv2.filter2D(img, -1, IMMERKAER, borderType=BORDER)[1:-1, 1:-1]
    rows, cols = img.shape
    total = float(np.abs(conv).sum(dtype=np.float64))
    return math.sqrt(math.pi / 2.0) * total / (6.0 * (rows - 2) * (cols - 2))


@pytest.mark.benchmark(group="estimate-noise")
def test_estimate_noise_opencv(benchmark: Any, gaussian: Case) -> None:
    out = benchmark(immerkaer_opencv, gaussian.noisy)
    assert out == pytest.approx(ref.immerkaer_sigma(gaussian.noisy), rel=1e-4)
    record(
        benchmark,
        gaussian,
        out,
        role="opencv+numpy",
        target="opencv+numpy",
        label="cv2.filter2D + np.abs().sum()",
        quality=False,
    )
    benchmark.extra_info.update(sigma_true=gaussian.params["sigma"], sigma_estimate=out)


# --------------------------------------------------------------------------------------
# 4. the X-ray path end to end: Anscombe -> 5x5 Wiener -> exact unbiased inverse


def _xray_call(c: Case) -> np.ndarray:
    return me.denoise.xray(c.noisy, gain=c.params["gain"], sigma=c.params["sigma"], window=5)


def xray_opencv(z: np.ndarray, gain: float, sigma: float, window: int = 5) -> np.ndarray:
    a = ref.anscombe(z, gain, sigma, F32)
    d = box_local_stats_additive(a, window, 1.0)
    return _inverse_numpy(d, gain, sigma)


def box_local_stats_additive(img: np.ndarray, window: int, noise_sigma: float) -> np.ndarray:
    """Local Wiener filter ``m + clamp((v - sigma^2) / v, 0, 1) (x - m)`` from cv2.blur."""
    ksize = (window, window)
    m = cv2.blur(img, ksize, borderType=BORDER)
    v = cv2.blur(img * img, ksize, borderType=BORDER)
    v -= m * m
    np.maximum(v, F32(1e-30), out=v)
    w = v - F32(noise_sigma**2)
    w /= v
    np.clip(w, 0.0, 1.0, out=w)
    out = img - m
    out *= w
    out += m
    return out


def xray_numpy(z: np.ndarray, gain: float, sigma: float, window: int = 5) -> np.ndarray:
    a = ref.anscombe(z, gain, sigma, F32)
    d = ref.wiener(a, window, 1.0, F32)
    return _inverse_numpy(d, gain, sigma)


@pytest.mark.parametrize("target", by_target("xray-pipeline"))
def test_xray_pipeline(
    benchmark: Any, xray: Case, scalar_cache: dict[str, Any], target: str
) -> None:
    expected = scalar_result(scalar_cache, "xray-pipeline", lambda: _xray_call(xray))
    with me.simd.use_target(target) as active:
        assert active == target
        out = benchmark(_xray_call, xray)
    assert_close(out, expected, SIMD_VS_SCALAR, f"xray {target} vs scalar")
    record(
        benchmark,
        xray,
        out,
        role="target",
        target=active,
        label="denoise.xray(gain=2, sigma=4, window=5)",
        quality=True,
    )


@pytest.mark.benchmark(group="xray-pipeline")
def test_xray_pipeline_opencv(benchmark: Any, xray: Case) -> None:
    g, s = xray.params["gain"], xray.params["sigma"]
    out = benchmark(xray_opencv, xray.noisy, g, s)
    np.testing.assert_allclose(out, _xray_call(xray), atol=COMPOSITION_ATOL * xray.data_range)
    record(
        benchmark,
        xray,
        out,
        role="opencv+numpy",
        target="opencv+numpy",
        label="NumPy Anscombe + 2x cv2.blur Wiener + NumPy table inverse",
        quality=True,
    )


@pytest.mark.benchmark(group="xray-pipeline")
def test_xray_pipeline_numpy(benchmark: Any, xray: Case) -> None:
    g, s = xray.params["gain"], xray.params["sigma"]
    out = benchmark.pedantic(xray_numpy, (xray.noisy, g, s), rounds=3, iterations=1)
    np.testing.assert_allclose(out, _xray_call(xray), atol=COMPOSITION_ATOL * xray.data_range)
    record(
        benchmark,
        xray,
        out,
        role="numpy",
        target="numpy",
        label="_reference.anscombe + _reference.wiener + NumPy table inverse",
        quality=True,
    )


# --------------------------------------------------------------------------------------
# 5. general-purpose denoisers on the same speckle image (quality and speed side by side)
#
# Parameters were picked from a coarse grid by PSNR against the clean truth (an oracle
# choice that favours the peers); medimg_edge's filters are told only Cu = 1/sqrt(looks).

U8_SCALE = 2.0  # fastNlMeans needs uint8: noisy / 2.0 * 255, clipped (0.44 % of pixels)


def bilateral(img: np.ndarray) -> np.ndarray:
    return cv2.bilateralFilter(img, 9, 1.5, 3.0, borderType=BORDER)


def fast_nl_means_u8(img: np.ndarray) -> np.ndarray:
    """float32 -> uint8 -> cv2.fastNlMeansDenoising(h=40, 7x7 patch, 21x21 search) ->
    float32; the two conversions are timed too (about 0.3 ms of the total)."""
    u8 = np.clip(img * F32(255.0 / U8_SCALE) + F32(0.5), 0, 255).astype(np.uint8)
    out = cv2.fastNlMeansDenoising(u8, None, 40.0, 7, 21)
    return out.astype(F32) * F32(U8_SCALE / 255.0)


def tv_chambolle(img: np.ndarray) -> np.ndarray:
    return denoise_tv_chambolle(img, weight=0.7)


def nl_means(img: np.ndarray) -> np.ndarray:
    return denoise_nl_means(img, h=0.4, patch_size=5, patch_distance=6, fast_mode=True)


PEERS = {
    "bilateral": (bilateral, "cv2.bilateralFilter(d=9, sigmaColor=1.5, sigmaSpace=3)", 0),
    "fastNlMeans": (fast_nl_means_u8, "cv2.fastNlMeansDenoising(uint8, h=40, 7, 21)", 3),
    "tv_chambolle": (tv_chambolle, "skimage denoise_tv_chambolle(weight=0.7)", 0),
    "nl_means": (nl_means, "skimage denoise_nl_means(fast, 5x5 patch, distance 6, h=0.4)", 3),
}


@pytest.mark.benchmark(group="speckle-denoisers")
@pytest.mark.parametrize("peer", list(PEERS))
def test_speckle_peer(benchmark: Any, speckle: Case, peer: str) -> None:
    fn, label, rounds = PEERS[peer]
    out = time_it(benchmark, lambda: fn(speckle.noisy), rounds)
    assert out.shape == speckle.noisy.shape
    record(benchmark, speckle, out, role="peer", target=peer, label=label, quality=True)


@pytest.mark.benchmark(group="speckle-denoisers")
def test_speckle_ultrasound_preset(benchmark: Any, speckle: Case) -> None:
    """The preset estimates Cu itself and picks the SRAD iteration count from it."""
    out = benchmark(me.denoise.ultrasound, speckle.noisy)
    assert out.dtype == np.float32 and out.shape == speckle.noisy.shape
    record(
        benchmark,
        speckle,
        out,
        role="target",
        target=me.simd.active_target(),
        label="denoise.ultrasound (preset: estimate Cu, SRAD)",
        quality=True,
    )


# --------------------------------------------------------------------------------------
# 6. issue 17: fast defaults and allocation-free kernels
#
# * defaults: ``srad(iterations=1)`` with q0 estimated vs the same call with q0 given;
#   default ``lee()`` (Cu estimated) vs the OpenCV composition given Cu; the estimators vs
#   the NumPy/OpenCV compositions they replaced (the "old path", timed in the same run).
# * mixed workload: each kernel called with ``out=`` after a NumPy neighbour that
#   allocates and frees frame-sized temporaries (``neighbour``), against the same call in
#   a tight loop (steady state).  ``extra_info`` has the kernel-only median time of the
#   mixed loop (``kernel_ms``) and its minor page faults per call (``faults_per_call``).

_IMMERKAER_MASK = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=F32)


def numpy_estimate_speckle(image: np.ndarray, window: int = 7) -> float:
    """The former ``estimate_speckle``: two cv2.blur, four temporaries, np.median."""
    m = cv2.blur(image, (window, window), borderType=BORDER)
    s = cv2.blur(image * image, (window, window), borderType=BORDER)
    v = np.maximum(s - m * m, 0.0)
    m, v = m[::2, ::2], v[::2, ::2]
    top = float(m.max())
    if top <= 0.0:
        return 0.0
    valid = m > 0.01 * top
    cv = np.sqrt(v[valid]) / m[valid]
    return float(np.median(cv)) if cv.size else 0.0


def numpy_estimate_poisson_gaussian(img: np.ndarray, block: int = 8) -> tuple[float, float]:
    """The former ``estimate_poisson_gaussian`` (NumPy/OpenCV composition)."""
    r = cv2.filter2D(img, cv2.CV_32F, _IMMERKAER_MASK, borderType=BORDER) / 6.0
    m = cv2.blur(img, (3, 3), borderType=BORDER)
    rows = (img.shape[0] - 2) // block * block
    cols = (img.shape[1] - 2) // block * block
    r = r[1 : 1 + rows, 1 : 1 + cols].astype(np.float64)
    m = m[1 : 1 + rows, 1 : 1 + cols].astype(np.float64)
    shape = (rows // block, block, cols // block, block)
    tile_var = (r * r).reshape(shape).mean(axis=(1, 3)).ravel()
    tile_mean = m.reshape(shape).mean(axis=(1, 3)).ravel()
    n_bins = int(np.clip(tile_mean.size // 16, 1, 32))
    parts = np.array_split(np.argsort(tile_mean, kind="stable"), n_bins)
    x = np.array([np.median(tile_mean[p]) for p in parts])
    y = np.array([np.median(tile_var[p]) for p in parts])
    w = np.sqrt([float(p.size) for p in parts])
    (gain, var0), *_ = np.linalg.lstsq(np.stack([x, np.ones_like(x)], 1) * w[:, None], y * w)
    return float(gain), math.sqrt(max(float(var0), 0.0))


def _info(benchmark: Any, role: str, label: str) -> None:
    benchmark.extra_info.update(role=role, target=me.simd.active_target(), label=label)


@pytest.mark.benchmark(group="default-srad-1")
@pytest.mark.parametrize("variant", ["default", "q0-given", "old-numpy-estimate"])
def test_default_srad(benchmark: Any, speckle: Case, variant: str) -> None:
    img = speckle.noisy
    out = np.empty_like(img)
    q0 = me.denoise.estimate_speckle(img)
    assert q0 == pytest.approx(numpy_estimate_speckle(img), rel=1e-5)
    fns = {
        "default": lambda: me.denoise.srad(img, iterations=1, out=out),
        "q0-given": lambda: me.denoise.srad(img, iterations=1, q0=q0, out=out),
        "old-numpy-estimate": lambda: me.denoise.srad(
            img, iterations=1, q0=max(numpy_estimate_speckle(img), 1e-3), out=out
        ),
    }
    res = benchmark(fns[variant])
    np.testing.assert_allclose(res, me.denoise.srad(img, iterations=1, q0=q0), rtol=0, atol=1e-5)
    _info(benchmark, "target" if variant != "old-numpy-estimate" else "old", f"srad {variant}")


@pytest.mark.benchmark(group="default-lee-7x7")
@pytest.mark.parametrize(
    "variant", ["default", "cu-given", "old-numpy-estimate", "opencv-given-cu"]
)
def test_default_lee(benchmark: Any, speckle: Case, variant: str) -> None:
    img = speckle.noisy
    out = np.empty_like(img)
    cu = me.denoise.estimate_speckle(img)
    fns = {
        "default": lambda: me.denoise.lee(img, out=out),
        "cu-given": lambda: me.denoise.lee(img, noise_cv=cu, out=out),
        "old-numpy-estimate": lambda: me.denoise.lee(
            img, noise_cv=min(numpy_estimate_speckle(img), 10.0), out=out
        ),
        "opencv-given-cu": lambda: box_local_stats(img, 7, cu * cu, 1.0),
    }
    res = benchmark(fns[variant])
    np.testing.assert_allclose(res, me.denoise.lee(img, noise_cv=cu), atol=COMPOSITION_ATOL)
    role = {"opencv-given-cu": "opencv+numpy", "old-numpy-estimate": "old"}.get(variant, "target")
    _info(benchmark, role, f"lee {variant}")


@pytest.mark.benchmark(group="estimate-speckle")
@pytest.mark.parametrize("variant", ["fused-c++", "numpy-opencv"])
def test_estimate_speckle_speed(benchmark: Any, speckle: Case, variant: str) -> None:
    img = speckle.noisy
    fn = me.denoise.estimate_speckle if variant == "fused-c++" else numpy_estimate_speckle
    got = benchmark(fn, img)
    assert got == pytest.approx(numpy_estimate_speckle(img), rel=1e-5)
    _info(benchmark, "target" if variant == "fused-c++" else "old", f"estimate_speckle {variant}")


@pytest.mark.benchmark(group="estimate-poisson-gaussian")
@pytest.mark.parametrize("variant", ["fused-c++", "numpy-opencv"])
def test_estimate_pg_speed(benchmark: Any, xray: Case, variant: str) -> None:
    img = xray.noisy
    fn = (
        me.denoise.estimate_poisson_gaussian
        if variant == "fused-c++"
        else numpy_estimate_poisson_gaussian
    )
    got = benchmark(fn, img)
    assert got == pytest.approx(numpy_estimate_poisson_gaussian(img), rel=1e-4)
    _info(benchmark, "target" if variant == "fused-c++" else "old", f"estimate_pg {variant}")


def neighbour(img: np.ndarray) -> float:
    """Other work in the same process: NumPy temporaries of the frame's size, freed again
    (glibc returns their pages to the kernel, so the next allocation faults them in)."""
    t = img * F32(2.0)
    u = np.sqrt(t + F32(1.0))
    big = np.ones(4 * img.size, F32)
    return float(u[0, 0] + big[-1])


MIXED = {
    "srad-1": lambda img, out: me.denoise.srad(img, iterations=1, q0=0.5, out=out),
    "lee-7x7": lambda img, out: me.denoise.lee(img, noise_cv=0.5, out=out),
    "kuan-7x7": lambda img, out: me.denoise.kuan(img, noise_cv=0.5, out=out),
    "frost-7x7": lambda img, out: me.denoise.frost(img, out=out),
    "wiener-5x5": lambda img, out: me.denoise.wiener(img, noise_sigma=0.1, out=out),
    "anscombe": lambda img, out: me.denoise.anscombe(img, gain=2.0, sigma=1.0, out=out),
    "srad-default": lambda img, out: me.denoise.srad(img, iterations=1, out=out),
}


@pytest.mark.parametrize("mode", ["steady", "mixed-out", "mixed-alloc"])
@pytest.mark.parametrize("kernel", list(MIXED))
def test_mixed_workload(benchmark: Any, speckle: Case, kernel: str, mode: str) -> None:
    import resource
    import time

    benchmark.group = f"mixed-{kernel}"
    img = speckle.noisy
    fn = MIXED[kernel]
    out = np.empty_like(img) if mode != "mixed-alloc" else None
    times: list[float] = []
    faults = [0, 0]

    def once() -> Any:
        if mode != "steady":
            neighbour(img)
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        res = fn(img, out)
        times.append(time.perf_counter() - t0)
        faults[0] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
        faults[1] += 1
        return res

    res = benchmark(once)
    np.testing.assert_array_equal(res, fn(img, None))
    info = benchmark.extra_info
    _info(benchmark, "target", f"{kernel} {mode}")
    info["kernel_ms"] = round(1e3 * float(np.median(times)), 4)
    info["faults_per_call"] = round(faults[0] / max(faults[1], 1), 1)
