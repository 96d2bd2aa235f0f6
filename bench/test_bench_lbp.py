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
