"""Local binary patterns: exact equality with ``skimage.feature.local_binary_pattern``.

Every comparison is ``numpy.array_equal`` (NaN == NaN for ``"var"``): the kernel reproduces
scikit-image's float64 arithmetic operation by operation, so there is no tolerance.
Covered: every method, P = 1..32 with integer and fractional radii (samples between
pixels and outside the image), every accepted dtype, tiny and degenerate shapes, real
images (scikit-image's camera, pydicom's CT and MR test files), every SIMD target against
the scalar path and against scikit-image, hypothesis-generated cases, and input
validation.  C++ counterpart: ``test_lbp`` in ``csrc/tests/test_kernels.cpp``.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import medimg_edge as me
from medimg_edge.features._lbp import LBP_METHODS, MAX_P

skfeature = pytest.importorskip("skimage.feature")

# scikit-image warns for floating-point images (its results then depend on tiny
# differences, which is exactly what these tests check).
pytestmark = pytest.mark.filterwarnings("ignore:Applying `local_binary_pattern`")

METHODS = tuple(LBP_METHODS)
TARGETS = me.simd.supported_targets()
DTYPES = (np.uint8, np.uint16, np.float32, np.float64)
#: (P, R): integer radii (samples on pixels for P = 4), the classic (8, 1), (16, 2),
#: (24, 3), half-integer and small radii, and P = 32 (the int32 edge of 'default'/'ror').
PR = [(1, 1.0), (4, 1.0), (8, 1.0), (8, 1.5), (12, 2.5), (16, 2.0), (24, 3.0), (32, 5.0), (6, 0.4)]


def reference(image: np.ndarray, P: int, R: float, method: str) -> np.ndarray:
    out: np.ndarray = skfeature.local_binary_pattern(image, P, R, method)
    return out


def assert_same(got: np.ndarray, expected: np.ndarray, what: str) -> None:
    assert got.dtype == np.float64 and got.shape == expected.shape, what
    if not np.array_equal(got, expected, equal_nan=True):
        bad = ~((got == expected) | (np.isnan(got) & np.isnan(expected)))
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        pytest.fail(
            f"{what}: {int(bad.sum())} pixel(s) differ, first at {idx}: "
            f"{got[idx]!r} != {expected[idx]!r}"
        )


def random_image(shape: tuple[int, int], dtype: type, seed: int) -> np.ndarray:
    """Few grey levels for integers (many ties: t - I >= 0 at exactly 0), continuous
    values for floats."""
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "u":
        high = 6 if dtype == np.uint8 else 65536
        return rng.integers(0, high, size=shape).astype(dtype)
    return (rng.normal(0.0, 3.0, size=shape)).astype(dtype)


# --------------------------------------------------------------------------------------
# exact equality with scikit-image


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize(("P", "R"), PR, ids=[f"P{p}-R{r}" for p, r in PR])
def test_random_images_every_method(dtype: type, P: int, R: float) -> None:
    image = random_image((29, 34), dtype, seed=P * 1000 + int(10 * R))
    for method in METHODS:
        assert_same(
            me.features.lbp(image, P, R, method),
            reference(image, P, R, method),
            f"{np.dtype(dtype).name} P={P} R={R} {method}",
        )


SHAPES = [(1, 1), (1, 2), (2, 1), (1, 23), (23, 1), (2, 2), (3, 3), (4, 7), (9, 5)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_tiny_images_samples_outside(shape: tuple[int, int]) -> None:
    """Images smaller than the circle: most samples fall outside and read 0."""
    for k, dtype in enumerate(DTYPES):
        image = random_image(shape, dtype, seed=sum(shape) + k)
        for P, R in [(8, 1.0), (8, 2.5), (16, 7.0), (5, 40.0)]:
            for method in METHODS:
                assert_same(
                    me.features.lbp(image, P, R, method),
                    reference(image, P, R, method),
                    f"{shape} {np.dtype(dtype).name} P={P} R={R} {method}",
                )


def test_signed_zeros_and_ties() -> None:
    """-0.0 / +0.0 and exact ties: the skipped zero-weight terms must not matter."""
    rng = np.random.default_rng(3)
    image = rng.choice(np.array([-0.0, 0.0, 1.0, -1.0]), size=(17, 19))
    for P, R in [(4, 1.0), (8, 1.0), (8, 1.5), (12, 2.0)]:
        for method in METHODS:
            assert_same(
                me.features.lbp(image, P, R, method),
                reference(image, P, R, method),
                f"signed zeros P={P} R={R} {method}",
            )


def test_constant_and_extreme_values() -> None:
    """Flat images (var is NaN everywhere inside) and values at the accepted limits."""
    cases = {
        "zeros": np.zeros((6, 7)),
        "flat": np.full((6, 7), 255, np.uint8),
        "uint16 max": np.full((5, 5), 65535, np.uint16),
        "1e15": np.array([[1e15, -1e15, 3.0], [0.5, -1e15, 1e15]]),
        "tiny": np.array([[1e-300, 5e-324, 0.0], [-5e-324, 1e-310, 2e-308]]),
    }
    for name, image in cases.items():
        for method in METHODS:
            assert_same(
                me.features.lbp(image, 8, 1.0, method),
                reference(image, 8, 1.0, method),
                f"{name} {method}",
            )


def test_radius_rounding_like_skimage() -> None:
    """R is used in float64 (a C double in scikit-image 0.26), offsets rounded to 5
    decimals.  The last radii are ones where rounding R to float32 first (what this
    package did before) moves an offset's fifth decimal: 2.2 with P = 16 and 1.7 with
    P = 32, and the case hypothesis found (P = 29, R = 5.2561310558739285)."""
    image = random_image((21, 21), np.float64, seed=11)
    for P, R in [(16, 2.2), (32, 1.7), (32, 2.2), (29, 5.2561310558739285)]:
        for img in (image, np.ones((4, 5), np.float32)):
            assert_same(
                me.features.lbp(img, P, R, "var"),
                reference(img, P, R, "var"),
                f"P={P} R={R!r} var",
            )
    for R in [1.1, 0.7071, 2.0000001, 1.999999, 3.3333333333, 1e-9]:
        for method in ("default", "var"):
            assert_same(
                me.features.lbp(image, 8, R, method),
                reference(image, 8, R, method),
                f"R={R!r} {method}",
            )


def test_method_names_are_case_insensitive() -> None:
    image = random_image((9, 9), np.uint8, seed=5)
    assert_same(
        me.features.lbp(image, 8, 1, "Uniform"),
        reference(image, 8, 1, "uniform"),
        "Uniform",
    )


def test_numpy_integer_and_float_parameters() -> None:
    image = random_image((9, 9), np.uint8, seed=6)
    assert_same(
        me.features.lbp(image, np.int64(8), np.float32(1.5), "ror"),
        reference(image, 8, 1.5, "ror"),
        "NumPy scalars",
    )


def test_value_ranges() -> None:
    image = random_image((40, 40), np.uint8, seed=8)
    for P in (4, 8, 16):
        u = me.features.lbp(image, P, 2.0, "uniform")
        assert u.min() >= 0 and u.max() <= P + 1
        n = me.features.lbp(image, P, 2.0, "nri_uniform")
        assert n.min() >= 0 and n.max() <= P * (P - 1) + 2
        d = me.features.lbp(image, P, 2.0, "default")
        assert d.min() >= 0 and d.max() < 2**P
        r = me.features.lbp(image, P, 2.0, "ror")
        assert np.all(r <= d)


def test_p32_int32_codes_like_skimage() -> None:
    """P = 32: bit 31 weighs -2^31 in scikit-image's int32 arithmetic."""
    image = random_image((15, 16), np.uint8, seed=9)
    got = me.features.lbp(image, 32, 4.0, "default")
    assert got.min() < 0  # some pixels have bit 31 set
    assert_same(got, reference(image, 32, 4.0, "default"), "P=32 default")
    assert_same(
        me.features.lbp(image, 32, 4.0, "ror"), reference(image, 32, 4.0, "ror"), "P=32 ror"
    )


def test_layouts_and_byte_order() -> None:
    """Non-contiguous, Fortran-ordered, big-endian and read-only inputs; input untouched."""
    base = random_image((30, 40), np.uint16, seed=10)
    expected = reference(base, 8, 1.5, "uniform")
    variants = {
        "fortran": np.asfortranarray(base),
        "big-endian": base.astype(">u2"),
        "read-only": base.copy(),
    }
    variants["read-only"].setflags(write=False)
    for name, image in variants.items():
        before = image.copy()
        assert_same(me.features.lbp(image, 8, 1.5, "uniform"), expected, name)
        np.testing.assert_array_equal(image, before)
    strided = random_image((60, 80), np.float32, seed=12)[::2, 1::2]
    assert_same(
        me.features.lbp(strided, 8, 1.0, "var"), reference(strided, 8, 1.0, "var"), "strided"
    )


# --------------------------------------------------------------------------------------
# real images


@pytest.mark.parametrize("name", ["camera", "ct", "mr"])
def test_real_images(real_images: dict[str, np.ndarray], name: str) -> None:
    """scikit-image's camera (uint8) and pydicom's CT_small / MR_small (int16 with values
    >= 0, passed as uint16 and as float64), every method at two (P, R)."""
    raw = real_images[name]
    images = {"float64": raw}
    if name == "camera":
        images["uint8"] = raw.astype(np.uint8)
    else:
        assert raw.min() >= 0
        images["uint16"] = raw.astype(np.uint16)
    pr = [(8, 1.0), (16, 2.0)] if name != "camera" else [(8, 1.0), (24, 3.0)]
    for dname, image in images.items():
        for P, R in pr:
            for method in METHODS:
                assert_same(
                    me.features.lbp(image, P, R, method),
                    reference(image, P, R, method),
                    f"{name} {dname} P={P} R={R} {method}",
                )


# --------------------------------------------------------------------------------------
# every SIMD target: bit-identical to the scalar path and to scikit-image


@pytest.mark.parametrize("target", TARGETS)
def test_simd_targets_equal_scalar_and_skimage(target: str) -> None:
    cases = [
        (random_image((37, 61), np.uint8, seed=20), 8, 1.0),
        (random_image((33, 45), np.float32, seed=21), 16, 2.0),
        (random_image((19, 70), np.float64, seed=22), 24, 3.0),
        (random_image((1, 75), np.uint16, seed=23), 12, 1.5),
        (random_image((75, 1), np.float64, seed=24), 8, 2.5),
        (random_image((5, 3), np.float64, seed=25), 32, 2.0),
    ]
    for image, P, R in cases:
        for method in METHODS:
            with me.simd.use_target("scalar"):
                scalar = me.features.lbp(image, P, R, method)
            with me.simd.use_target(target) as active:
                assert active == target
                got = me.features.lbp(image, P, R, method)
            what = f"{target} {image.shape} {image.dtype} P={P} R={R} {method}"
            assert_same(got, scalar, what + " vs scalar")
            assert_same(got, reference(image, P, R, method), what + " vs skimage")


# --------------------------------------------------------------------------------------
# hypothesis: the boundary (tiny images, any P and R, every dtype)


@st.composite
def lbp_cases(draw: st.DrawFn) -> tuple[np.ndarray, int, float, str]:
    dtype = draw(st.sampled_from(DTYPES))
    shape = (draw(st.integers(1, 11)), draw(st.integers(1, 11)))
    if np.dtype(dtype).kind == "u":
        elements = st.integers(0, 3 if dtype == np.uint8 else 65535)
    else:
        width = 32 if dtype == np.float32 else 64
        elements = st.floats(-1e6, 1e6, width=width, allow_subnormal=True) | st.sampled_from(
            [0.0, -0.0, 1.0]
        )
    image = draw(arrays(dtype, shape, elements=elements))
    P = draw(st.integers(1, MAX_P))
    R = draw(
        st.floats(1e-3, 12.0)
        | st.integers(1, 6).map(float)
        | st.integers(1, 12).map(lambda k: k / 2)
    )
    method = draw(st.sampled_from(METHODS))
    return image, P, R, method


@settings(max_examples=6 * settings.default.max_examples)  # cheap: 6x the profile's count
@given(lbp_cases())
def test_hypothesis_matches_skimage(case: tuple[np.ndarray, int, float, str]) -> None:
    image, P, R, method = case
    assert_same(
        me.features.lbp(image, P, R, method),
        reference(image, P, R, method),
        f"{image.shape} {image.dtype} P={P} R={R!r} {method}",
    )


# --------------------------------------------------------------------------------------
# input validation


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((4, 4), np.int32), "dtype int32"),
        (np.zeros((4, 4), bool), "mask"),
        (np.zeros((4, 4), np.complex64), "magnitude"),
        (np.zeros((4, 4, 3), np.uint8), "grayscale"),
        (np.zeros(5, np.uint8), "2-D"),
        (np.zeros((0, 4), np.uint8), "empty"),
        (np.array([[1.0, np.nan]]), "NaN or infinite"),
        (np.array([[1.0, np.inf]], np.float32), "NaN or infinite"),
        (np.array([[1.0, 2e15]]), "rescale"),
        (None, "NumPy array"),
        ("image.png", "NumPy array"),
        ([[1, 2], [3, 4]], "dtype int64"),
    ],
)
def test_invalid_images(image: object, match: str) -> None:
    with pytest.raises(me.InvalidInputError, match=match):
        me.features.lbp(image)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"P": 0}, "P must be"),
        ({"P": 33}, "P must be"),
        ({"P": 8.0}, "P must be"),
        ({"P": True}, "P must be"),
        ({"R": 0.0}, "R must be"),
        ({"R": -1.0}, "R must be"),
        ({"R": float("nan")}, "R must be"),
        ({"R": float("inf")}, "R must be"),
        ({"R": 70000.0}, "R must be"),
        ({"R": "1"}, "R must be"),
        ({"method": "lbp"}, "method must be one of"),
        ({"method": None}, "method must be one of"),
    ],
)
def test_invalid_parameters(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(me.InvalidInputError, match=match):
        me.features.lbp(np.zeros((4, 4), np.uint8), **kwargs)  # type: ignore[arg-type]


def test_core_binding_refuses_unchecked_arrays() -> None:
    """The private binding re-checks what the wrapper validated."""
    from medimg_edge import _core

    rp = np.zeros(8)
    img = np.zeros((4, 4), np.uint8)
    with pytest.raises(ValueError, match="uint8, uint16, float32 or float64"):
        _core.lbp(np.zeros((4, 4), np.int16), 8, rp, rp, 0, 1e15)
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.lbp(np.zeros((4, 4), np.uint8)[:, ::2], 8, rp, rp, 0, 1e15)
    with pytest.raises(ValueError, match="P = 8"):
        _core.lbp(img, 8, np.zeros(7), rp, 0, 1e15)
    with pytest.raises(ValueError, match="finite"):
        _core.lbp(img, 8, np.full(8, np.nan), rp, 0, 1e15)
    with pytest.raises(ValueError, match="P must be"):
        _core.lbp(img, 40, np.zeros(40), np.zeros(40), 0, 1e15)
    with pytest.raises(ValueError, match="method"):
        _core.lbp(img, 8, rp, rp, 9, 1e15)
    _, ok = _core.lbp(np.array([[1.0, 5.0]]), 8, rp, rp, 0, 4.0)
    assert not ok  # 5.0 > max_abs


def test_out_is_written_and_returned() -> None:
    image = random_image((17, 23), np.uint8, seed=21)
    want = reference(image, 8, 1.5, "uniform")
    out = np.full(image.shape, np.nan)
    got = me.features.lbp(image, 8, 1.5, "uniform", out=out)
    assert got is out
    assert_same(out, want, "out")
    f = image.astype(np.float64)
    for bad in (np.empty((17, 22)), np.empty((17, 23), np.float32), f, f[:, ::1].T.copy().T):
        with pytest.raises(me.InvalidInputError, match="out"):
            me.features.lbp(f, 8, 1.5, "uniform", out=bad)


# ---------------------------------------------------------------------------------------
# Code histograms counted in the kernel (features.extract's LBP family; issue 17).
# ---------------------------------------------------------------------------------------

HIST_METHODS = {"uniform": 2, "nri_uniform": 3, "default": 0, "ror": 1}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("method", list(HIST_METHODS))
def test_histogram_equals_bincount_of_codes(target: str, method: str) -> None:
    """``_core.lbp_histogram`` (packed vector counters for <= 10 codes, pattern counts
    through the 2^P table, scalar counts otherwise) equals ``numpy.bincount`` of the
    codes of :func:`lbp` inside the mask, on every target, dtype and mask."""
    from medimg_edge import _core
    from medimg_edge.features._lbp import _offsets

    rng = np.random.default_rng(17)
    for P, R in [(1, 1.0), (4, 1.0), (8, 1.0), (8, 1.5), (12, 2.5), (16, 2.0)]:
        for dtype in DTYPES:
            for shape in [(1, 1), (3, 70), (37, 41), (130, 9)]:
                img = (rng.integers(0, 5, shape) * rng.integers(1, 50)).astype(dtype)
                for mask in (None, (rng.random(shape) < 0.5).astype(np.uint8)):
                    codes = me.features.lbp(img, P, R, method)
                    sel = codes if mask is None else codes[mask != 0]
                    rp, cp = _offsets(P, R)
                    h, ok = _core.lbp_histogram(
                        img, P, rp, cp, HIST_METHODS[method], mask, 1e15, target
                    )
                    assert ok
                    want = np.bincount(sel.astype(np.int64).ravel(), minlength=h.size)
                    assert want.size == h.size
                    np.testing.assert_array_equal(h, want, err_msg=f"{method} P={P} R={R}")


def test_histogram_refuses_var_and_wide_tables() -> None:
    from medimg_edge import _core
    from medimg_edge.features._lbp import _offsets

    img = np.zeros((4, 4), np.uint8)
    rp, cp = _offsets(8, 1.0)
    with pytest.raises(ValueError, match="method"):
        _core.lbp_histogram(img, 8, rp, cp, 4, None, 1e15)
    rp, cp = _offsets(17, 2.0)
    with pytest.raises(ValueError, match="method"):
        _core.lbp_histogram(img, 17, rp, cp, 0, None, 1e15)
    with pytest.raises(ValueError, match="mask"):
        _core.lbp_histogram(img, 17, rp, cp, 2, np.ones((3, 4), np.uint8), 1e15)
