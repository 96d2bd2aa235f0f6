"""Local binary pattern benchmarks (issue 3): ``me.features.lbp`` on every SIMD target vs
``skimage.feature.local_binary_pattern``, single thread, on scikit-image's camera image
(uint8) at 512x512 and resized to 1024x1024.

Groups ``lbp-<method>-P<P>-R<R>-<size>``: uniform P=8 R=1 (the issue-3 speed target:
at least 30x faster than scikit-image at 512x512), default P=16 R=2 and var P=8 R=1.
Every benchmark checks what it timed: each target's output must equal scikit-image's
bit for bit (``numpy.array_equal``, NaN == NaN for 'var'), and scikit-image's own timed
output must equal the cached reference.

Optional group ``lbp-ror-hist-P8-R1-<size>``: mahotas (if installed) computes a histogram
of its own rotation-invariant codes, with its own sampling and border conventions, so its
values are not comparable; it is timed against ``lbp(..., "ror")`` + ``numpy.unique``
(which is checked against scikit-image) and checked only for its bin count and total.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from skimage.feature import local_binary_pattern

import medimg_edge as me
from _images import camera_u8
from _mixed import MixedLoop

TARGETS = me.simd.supported_targets()
SIZES = (512, 1024)
CASES = {  # name: (P, R, method)
    "uniform-P8-R1": (8, 1.0, "uniform"),
    "default-P16-R2": (16, 2.0, "default"),
    "var-P8-R1": (8, 1.0, "var"),
}

_expected: dict[tuple[str, int], np.ndarray] = {}


def image(size: int) -> np.ndarray:
    return camera_u8(size)


def skimage_lbp(img: np.ndarray, P: int, R: float, method: str) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out: np.ndarray = local_binary_pattern(img, P, R, method)
    return out


def expected(case: str, size: int) -> np.ndarray:
    if (case, size) not in _expected:
        P, R, method = CASES[case]
        _expected[(case, size)] = skimage_lbp(image(size), P, R, method)
    return _expected[(case, size)]


def assert_identical(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.dtype == np.float64 and got.shape == want.shape, what
    assert np.array_equal(got, want, equal_nan=True), f"{what}: differs from scikit-image"


def group(case: str, size: int) -> str:
    return f"lbp-{case}-{size}"


def record(benchmark: Any, *, role: str, target: str, label: str, size: int) -> None:
    benchmark.extra_info.update(
        role=role, target=target, label=label, image=f"camera-{size}", psnr_gain_db=None
    )


def _target_params() -> list[Any]:
    return [
        pytest.param(c, s, t, id=f"{c}-{s}-{t}", marks=pytest.mark.benchmark(group=group(c, s)))
        for c in CASES
        for s in SIZES
        for t in TARGETS
    ]


@pytest.mark.parametrize(("case", "size", "target"), _target_params())
def test_lbp_target(benchmark: Any, case: str, size: int, target: str) -> None:
    P, R, method = CASES[case]
    img = image(size)
    want = expected(case, size)
    with me.simd.use_target(target) as active:
        assert active == target
        out = benchmark(me.features.lbp, img, P, R, method)
    assert_identical(out, want, f"{group(case, size)} {target}")
    record(
        benchmark,
        role="target",
        target=target,
        label=f'features.lbp(P={P}, R={R:g}, "{method}")',
        size=size,
    )


@pytest.mark.parametrize(
    ("case", "size"),
    [
        pytest.param(c, s, id=f"{c}-{s}", marks=pytest.mark.benchmark(group=group(c, s)))
        for c in CASES
        for s in SIZES
    ],
)
def test_lbp_skimage(benchmark: Any, case: str, size: int) -> None:
    P, R, method = CASES[case]
    img = image(size)
    want = expected(case, size)
    out = benchmark(skimage_lbp, img, P, R, method)
    assert_identical(out, want, f"{group(case, size)} scikit-image")
    record(
        benchmark,
        role="peer",
        target="scikit-image",
        label=f'skimage.feature.local_binary_pattern(P={P}, R={R:g}, "{method}")',
        size=size,
    )


# --------------------------------------------------------------------------------------
# optional: mahotas (rotation-invariant histogram)


def ror_histogram(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    codes, counts = np.unique(me.features.lbp(img, 8, 1.0, "ror"), return_counts=True)
    return codes, counts


@pytest.mark.parametrize(
    "size",
    [pytest.param(s, marks=pytest.mark.benchmark(group=f"lbp-ror-hist-P8-R1-{s}")) for s in SIZES],
)
def test_ror_histogram_medimg(benchmark: Any, size: int) -> None:
    img = image(size)
    codes, counts = benchmark(ror_histogram, img)
    want_codes, want_counts = np.unique(skimage_lbp(img, 8, 1.0, "ror"), return_counts=True)
    np.testing.assert_array_equal(codes, want_codes)
    np.testing.assert_array_equal(counts, want_counts)
    record(
        benchmark,
        role="target",
        target=me.simd.active_target(),
        label='features.lbp(P=8, R=1, "ror") + numpy.unique',
        size=size,
    )


@pytest.mark.parametrize(
    "size",
    [pytest.param(s, marks=pytest.mark.benchmark(group=f"lbp-ror-hist-P8-R1-{s}")) for s in SIZES],
)
def test_ror_histogram_mahotas(benchmark: Any, size: int) -> None:
    mahotas = pytest.importorskip("mahotas")
    img = image(size)
    hist = benchmark(mahotas.features.lbp, img, 1, 8)
    # Its own codes and conventions: only the shape of the result is comparable.
    assert hist.shape == (36,) and hist.sum() == img.size
    record(
        benchmark,
        role="peer",
        target="mahotas",
        label=f"mahotas.features.lbp(radius=1, points=8) {mahotas.__version__}",
        size=size,
    )


# --------------------------------------------------------------------------------------
# issue 17: the uniform-code histogram (what features.extract uses), counted in the kernel
# without a float64 codes image, vs the codes + numpy.bincount and vs scikit-image's codes
# + numpy.bincount; and a mixed workload (a NumPy neighbour that allocates and frees
# frame-sized temporaries between calls: lbp with out= and the histogram take no page
# faults).  extra_info: kernel-only median (kernel_ms), minor faults per call.


def _uniform_hist_kernel(img: np.ndarray) -> np.ndarray:
    from medimg_edge.features._lbp import _uniform_counts

    return _uniform_counts(img, 8, 1.0, None)


def _uniform_hist_codes(img: np.ndarray) -> np.ndarray:
    codes = me.features.lbp(img, 8, 1.0, "uniform")
    return np.bincount(codes.astype(np.intp).ravel(), minlength=10)


def _uniform_hist_skimage(img: np.ndarray) -> np.ndarray:
    codes = skimage_lbp(img, 8, 1.0, "uniform")
    return np.bincount(codes.astype(np.intp).ravel(), minlength=10)


HIST_WAYS = {
    "kernel": (_uniform_hist_kernel, "features._lbp._uniform_counts (kernel histogram)"),
    "codes": (_uniform_hist_codes, 'features.lbp(8, 1, "uniform") + numpy.bincount'),
    "skimage": (_uniform_hist_skimage, "local_binary_pattern(8, 1, uniform) + numpy.bincount"),
}


@pytest.mark.parametrize(
    ("way", "size"),
    [
        pytest.param(w, s, id=f"{w}-{s}", marks=pytest.mark.benchmark(group=f"lbp-hist-{s}"))
        for s in SIZES
        for w in HIST_WAYS
    ],
)
def test_uniform_histogram(benchmark: Any, way: str, size: int) -> None:
    fn, label = HIST_WAYS[way]
    img = image(size)
    out = benchmark(fn, img)
    want = np.bincount(expected("uniform-P8-R1", size).astype(np.intp).ravel(), minlength=10)
    np.testing.assert_array_equal(out, want)
    record(
        benchmark,
        role="peer" if way == "skimage" else "target",
        target="scikit-image" if way == "skimage" else me.simd.active_target(),
        label=label,
        size=size,
    )


@pytest.mark.parametrize(
    ("what", "mode"),
    [
        pytest.param(w, m, id=f"{w}-{m}", marks=pytest.mark.benchmark(group=f"mixed-lbp-{w}-512"))
        for w in ("codes-out", "hist")
        for m in ("steady", "mixed")
    ],
)
def test_lbp_mixed_workload(benchmark: Any, what: str, mode: str) -> None:
    img = image(512)
    dst = np.empty(img.shape, np.float64)

    def call() -> np.ndarray:
        if what == "hist":
            return _uniform_hist_kernel(img)
        return me.features.lbp(img, 8, 1.0, "uniform", out=dst)

    loop = MixedLoop(img, mode, call)
    out = benchmark(loop.once)
    want = expected("uniform-P8-R1", 512)
    if what == "hist":
        np.testing.assert_array_equal(out, np.bincount(want.astype(np.intp).ravel(), minlength=10))
    else:
        assert_identical(out, want, "mixed lbp")
    record(
        benchmark, role="target", target=me.simd.active_target(), label=f"{what} {mode}", size=512
    )
    loop.record(benchmark)
