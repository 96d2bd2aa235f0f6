"""GLCM benchmarks (issue 3): ``me.features.glcm`` + ``glcm_props`` on every SIMD target vs
``skimage.feature.graycomatrix`` + ``graycoprops`` (and mahotas' Haralick features, when
mahotas is installed), single thread, on scikit-image's camera image (uint8) at 512x512
and resized to 1024x1024, with 256 grey levels (the image itself) and 32 (``image >> 3``);
distance 1, the four angles 0, pi/4, pi/2, 3 pi/4.

Groups (``<size>`` = 512 or 1024, ``<L>`` = 32 or 256):

* ``glcm+six-<size>-L<L>``: the co-occurrence matrices and the six classic properties
  (contrast, dissimilarity, homogeneity, ASM, energy, correlation) in one timed call -
  the issue-3 speed target at 512x512, 256 levels (at least 20x faster than scikit-image);
  plus mahotas' ``haralick`` (its own symmetric GLCM and 13 features, a different amount
  of work, listed for context);
* ``glcm+six-sym-normed-512-L256``: the same with ``symmetric=True, normed=True``;
* ``glcm-<size>-L<L>``: the matrices alone;
* ``props-six-<size>-L<L>``: the six properties alone (each library on its own matrices);
* ``props-all-<size>-L<L>``: all 27 properties of ``glcm_props`` vs scikit-image's ten.

Every benchmark checks what it timed: matrices equal scikit-image's (``numpy.array_equal``),
properties within 1e-9 relative of ``graycoprops``, scikit-image's timed results equal the
cached reference, mahotas' ASM / contrast / correlation / entropy equal ours (1e-9).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from skimage.feature import graycomatrix, graycoprops

import medimg_edge as me
from _images import camera_u8
from _mixed import MixedLoop
from medimg_edge.features import GLCM_PROPS, glcm, glcm_props

try:  # optional peer
    import mahotas
except ImportError:  # pragma: no cover - depends on the environment
    mahotas = None

TARGETS = me.simd.supported_targets()
SIZES = (512, 1024)
LEVELS = (256, 32)
DIST = [1]
ANGLES = [0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]
SIX = ("contrast", "dissimilarity", "homogeneity", "ASM", "energy", "correlation")
SKIMAGE_PROPS = GLCM_PROPS[:10]
RTOL = 1e-9

_images: dict[tuple[int, int], np.ndarray] = {}
_ref: dict[tuple[Any, ...], Any] = {}


def image(size: int, levels: int) -> np.ndarray:
    """Camera (uint8, 0..255), bilinearly resized to ``size``; ``>> 3`` for 32 levels."""
    key = (size, levels)
    if key not in _images:
        cam = camera_u8(size)
        img = np.array(cam if levels == 256 else cam >> 3, dtype=np.uint8)  # writable copy
        assert int(img.max()) == levels - 1
        _images[key] = img
    return _images[key]


def ref_matrix(size: int, levels: int, symmetric: bool = False, normed: bool = False) -> Any:
    key = ("P", size, levels, symmetric, normed)
    if key not in _ref:
        _ref[key] = graycomatrix(
            image(size, levels), DIST, ANGLES, levels=levels, symmetric=symmetric, normed=normed
        )
    return _ref[key]


def ref_props(size: int, levels: int, symmetric: bool = False, normed: bool = False) -> Any:
    key = ("props", size, levels, symmetric, normed)
    if key not in _ref:
        P = ref_matrix(size, levels, symmetric, normed)
        _ref[key] = {p: graycoprops(P, p) for p in SKIMAGE_PROPS}
    return _ref[key]


def skimage_six(img: np.ndarray, levels: int, **kw: Any) -> tuple[np.ndarray, dict[str, Any]]:
    P = graycomatrix(img, DIST, ANGLES, levels=levels, **kw)
    return P, {p: graycoprops(P, p) for p in SIX}


def ours_six(img: np.ndarray, levels: int, **kw: Any) -> tuple[np.ndarray, dict[str, Any]]:
    P = glcm(img, DIST, ANGLES, levels=levels, **kw)
    return P, glcm_props(P, SIX)


def check_props(got: dict[str, Any], want: dict[str, Any], names: Any, what: str) -> None:
    for p in names:
        np.testing.assert_allclose(got[p], want[p], rtol=RTOL, atol=1e-12, err_msg=f"{what} {p}")


def record(benchmark: Any, *, role: str, target: str, label: str, size: int, levels: int) -> None:
    benchmark.extra_info.update(
        role=role,
        target=target,
        label=label,
        image=f"camera-{size}",
        levels=levels,
        psnr_gain_db=None,
    )


def by_target(prefix: str, sizes: Any = SIZES, levels: Any = LEVELS) -> list[Any]:
    return [
        pytest.param(
            s, lv, t, id=f"{s}-L{lv}-{t}", marks=pytest.mark.benchmark(group=f"{prefix}-{s}-L{lv}")
        )
        for s in sizes
        for lv in levels
        for t in TARGETS
    ]


def by_case(prefix: str, sizes: Any = SIZES, levels: Any = LEVELS) -> list[Any]:
    return [
        pytest.param(
            s, lv, id=f"{s}-L{lv}", marks=pytest.mark.benchmark(group=f"{prefix}-{s}-L{lv}")
        )
        for s in sizes
        for lv in levels
    ]


def run_target(benchmark: Any, target: str, fn: Callable[[], Any]) -> Any:
    with me.simd.use_target(target) as active:
        assert active == target
        return benchmark(fn)


# --------------------------------------------------------------------------------------
# glcm + six properties (the issue-3 target at 512x512, 256 levels)


@pytest.mark.parametrize(("size", "levels", "target"), by_target("glcm+six"))
def test_glcm_six_medimg(benchmark: Any, size: int, levels: int, target: str) -> None:
    img = image(size, levels)
    P, props = run_target(benchmark, target, lambda: ours_six(img, levels))
    assert np.array_equal(P, ref_matrix(size, levels))
    check_props(props, ref_props(size, levels), SIX, f"{target} glcm+six")
    record(
        benchmark,
        role="target",
        target=target,
        label="features.glcm + glcm_props(six)",
        size=size,
        levels=levels,
    )


@pytest.mark.parametrize(("size", "levels"), by_case("glcm+six"))
def test_glcm_six_skimage(benchmark: Any, size: int, levels: int) -> None:
    img = image(size, levels)
    P, props = benchmark(lambda: skimage_six(img, levels))
    assert np.array_equal(P, ref_matrix(size, levels))
    check_props(props, ref_props(size, levels), SIX, "skimage")
    record(
        benchmark,
        role="peer",
        target="skimage",
        label="graycomatrix + 6 x graycoprops",
        size=size,
        levels=levels,
    )


@pytest.mark.skipif(mahotas is None, reason="mahotas is not installed")
@pytest.mark.parametrize(("size", "levels"), by_case("glcm+six"))
def test_glcm_haralick_mahotas(benchmark: Any, size: int, levels: int) -> None:
    img = image(size, levels)
    feats = benchmark(lambda: mahotas.features.haralick(img, distance=1, return_mean=False))
    # mahotas directions 0..3 are (0, 1), (1, 1), (1, 0), (1, -1): our four angles; its
    # matrices are symmetric with img.max() + 1 = levels levels.
    P = glcm(img, DIST, ANGLES, levels=levels, symmetric=True)
    ours = glcm_props(P, ("ASM", "contrast", "correlation", "joint_entropy"))
    for col, p in ((0, "ASM"), (1, "contrast"), (2, "correlation"), (8, "joint_entropy")):
        np.testing.assert_allclose(feats[:, col], ours[p][0], rtol=RTOL, err_msg=f"mahotas {p}")
    record(
        benchmark,
        role="peer",
        target="mahotas",
        label=f"mahotas {mahotas.__version__} haralick (symmetric GLCM + 13 features)",
        size=size,
        levels=levels,
    )


# --------------------------------------------------------------------------------------
# symmetric, normalised (the usual texture-analysis call)

SYM = {"symmetric": True, "normed": True}


@pytest.mark.parametrize(
    ("size", "levels", "target"), by_target("glcm+six-sym-normed", (512,), (256,))
)
def test_glcm_six_sym_normed_medimg(benchmark: Any, size: int, levels: int, target: str) -> None:
    img = image(size, levels)
    P, props = run_target(benchmark, target, lambda: ours_six(img, levels, **SYM))
    assert np.array_equal(P, ref_matrix(size, levels, **SYM))
    check_props(props, ref_props(size, levels, **SYM), SIX, f"{target} sym-normed")
    record(
        benchmark,
        role="target",
        target=target,
        label="glcm(symmetric, normed) + glcm_props(six)",
        size=size,
        levels=levels,
    )


@pytest.mark.parametrize(("size", "levels"), by_case("glcm+six-sym-normed", (512,), (256,)))
def test_glcm_six_sym_normed_skimage(benchmark: Any, size: int, levels: int) -> None:
    img = image(size, levels)
    P, props = benchmark(lambda: skimage_six(img, levels, **SYM))
    assert np.array_equal(P, ref_matrix(size, levels, **SYM))
    check_props(props, ref_props(size, levels, **SYM), SIX, "skimage sym-normed")
    record(
        benchmark,
        role="peer",
        target="skimage",
        label="graycomatrix(symmetric, normed) + 6 x graycoprops",
        size=size,
        levels=levels,
    )


# --------------------------------------------------------------------------------------
# the matrices alone


@pytest.mark.parametrize(("size", "levels", "target"), by_target("glcm"))
def test_matrix_medimg(benchmark: Any, size: int, levels: int, target: str) -> None:
    img = image(size, levels)
    P = run_target(benchmark, target, lambda: glcm(img, DIST, ANGLES, levels=levels))
    assert P.dtype == np.uint32 and np.array_equal(P, ref_matrix(size, levels))
    record(benchmark, role="target", target=target, label="features.glcm", size=size, levels=levels)


@pytest.mark.parametrize(("size", "levels"), by_case("glcm"))
def test_matrix_skimage(benchmark: Any, size: int, levels: int) -> None:
    img = image(size, levels)
    P = benchmark(lambda: graycomatrix(img, DIST, ANGLES, levels=levels))
    assert np.array_equal(P, ref_matrix(size, levels))
    record(benchmark, role="peer", target="skimage", label="graycomatrix", size=size, levels=levels)


# --------------------------------------------------------------------------------------
# the properties alone, each library on its own matrices


@pytest.mark.parametrize(("size", "levels", "target"), by_target("props-six"))
def test_props_six_medimg(benchmark: Any, size: int, levels: int, target: str) -> None:
    P = glcm(image(size, levels), DIST, ANGLES, levels=levels)
    props = run_target(benchmark, target, lambda: glcm_props(P, SIX))
    check_props(props, ref_props(size, levels), SIX, f"{target} props")
    record(
        benchmark,
        role="target",
        target=target,
        label="glcm_props(six)",
        size=size,
        levels=levels,
    )


@pytest.mark.parametrize(("size", "levels"), by_case("props-six"))
def test_props_six_skimage(benchmark: Any, size: int, levels: int) -> None:
    P = ref_matrix(size, levels)
    props = benchmark(lambda: {p: graycoprops(P, p) for p in SIX})
    check_props(props, ref_props(size, levels), SIX, "skimage props")
    record(
        benchmark, role="peer", target="skimage", label="6 x graycoprops", size=size, levels=levels
    )


@pytest.mark.parametrize(("size", "levels", "target"), by_target("props-all"))
def test_props_all_medimg(benchmark: Any, size: int, levels: int, target: str) -> None:
    P = glcm(image(size, levels), DIST, ANGLES, levels=levels)
    props = run_target(benchmark, target, lambda: glcm_props(P))
    assert list(props) == list(GLCM_PROPS)
    check_props(props, ref_props(size, levels), SKIMAGE_PROPS, f"{target} props-all")
    record(
        benchmark,
        role="target",
        target=target,
        label="glcm_props (all 27)",
        size=size,
        levels=levels,
    )


@pytest.mark.parametrize(("size", "levels"), by_case("props-all"))
def test_props_all_skimage(benchmark: Any, size: int, levels: int) -> None:
    P = ref_matrix(size, levels)
    props = benchmark(lambda: {p: graycoprops(P, p) for p in SKIMAGE_PROPS})
    check_props(props, ref_props(size, levels), SKIMAGE_PROPS, "skimage props-all")
    record(
        benchmark,
        role="peer",
        target="skimage",
        label="10 x graycoprops (all it has)",
        size=size,
        levels=levels,
    )


# --------------------------------------------------------------------------------------
# issue 17: the matrix build in a mixed workload (a NumPy neighbour that allocates and frees
# frame-sized temporaries between calls) vs the same call in a tight loop, with out= (the
# kernel counts in the thread's reusable scratch).  extra_info: kernel-only median
# (kernel_ms) and minor page faults per call (faults_per_call).


@pytest.mark.parametrize(
    ("levels", "mode"),
    [
        pytest.param(
            lv, m, id=f"L{lv}-{m}", marks=pytest.mark.benchmark(group=f"mixed-glcm-512-L{lv}")
        )
        for lv in LEVELS
        for m in ("steady", "mixed")
    ],
)
def test_matrix_mixed_workload(benchmark: Any, levels: int, mode: str) -> None:
    img = image(512, levels)
    dst = np.empty((levels, levels, len(DIST), len(ANGLES)), np.uint32)
    loop = MixedLoop(img, mode, lambda: glcm(img, DIST, ANGLES, levels=levels, out=dst))
    P = benchmark(loop.once)
    assert np.array_equal(P, ref_matrix(512, levels))
    record(
        benchmark,
        role="target",
        target=me.simd.active_target(),
        label=f"features.glcm(out=) {mode}",
        size=512,
        levels=levels,
    )
    loop.record(benchmark)
