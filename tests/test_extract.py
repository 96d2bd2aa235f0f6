"""``medimg_edge.features.extract`` / ``feature_names``: stable names and order, values
equal to the individual feature functions and to scikit-image, the documented effect of a
mask on every family, SIMD targets, and input validation."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from skimage.feature import graycomatrix, graycoprops, local_binary_pattern

import medimg_edge as me
from medimg_edge.features._firstorder import FIRSTORDER_FEATURES

F = me.features
TARGETS = me.simd.supported_targets()
ANGLES4 = [0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4]
# scikit-image warns about LBP of float images; the references here use integral values.
pytestmark = pytest.mark.filterwarnings("ignore:Applying `local_binary_pattern`:UserWarning")
SKIMAGE_PROPS = ("contrast", "dissimilarity", "homogeneity", "ASM", "energy", "correlation")


@pytest.fixture(scope="module")
def camera(real_images):
    return real_images["camera"].astype(np.uint8)


def roi(shape, kind):
    m = np.zeros(shape, bool)
    h, w = shape
    if kind == "interior":
        yy, xx = np.mgrid[:h, :w]
        m[(yy - h / 2) ** 2 + (xx - w / 2.5) ** 2 < (min(h, w) / 3.5) ** 2] = True
    elif kind == "border":  # touches the top-left image corner
        m[: h // 3, : w // 2] = True
        m[: h // 2, : w // 5] = True
    return m


# ---------------------------------------------------------------------------------------
# Names.
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"distances": (1, 2, 5), "levels": 16},
        {"distances": 3, "angles": 2, "lbp_points": 16, "lbp_radius": 2.0},
        {"gradient_bins": 4, "firstorder_bins": 10, "angles": [0.0, 1.0]},
    ],
)
def test_feature_names_are_the_keys_in_order(camera, kwargs):
    names = F.feature_names(**kwargs)
    got = F.extract(camera[::4, ::4].copy(), **kwargs)
    assert list(got) == names
    assert len(set(names)) == len(names)
    assert all(re.fullmatch(r"[a-z0-9_]+", n) for n in names)
    assert all(isinstance(v, float) for v in got.values())
    distances = kwargs.get("distances", (1,))
    distances = (distances,) if isinstance(distances, int) else distances
    p = kwargs.get("lbp_points", 8)
    bins = kwargs.get("gradient_bins", 8)
    expected = (
        [f"firstorder_{k}" for k in FIRSTORDER_FEATURES]
        + [f"glcm_{prop.lower()}_d{d}" for prop in F.GLCM_PROPS for d in distances]
        + [f"lbp_uniform_hist_{k:02d}" for k in range(p + 2)]
        + ["gradient_magnitude_mean", "gradient_magnitude_std", "gradient_magnitude_p90"]
        + [f"gradient_orientation_hist_{k:02d}" for k in range(bins)]
    )
    assert names == expected


def test_documented_example_names_exist():
    names = F.feature_names()
    for n in (
        "firstorder_mean",
        "firstorder_skewness",
        "glcm_contrast_d1",
        "glcm_correlation_d1",
        "lbp_uniform_hist_03",
        "lbp_uniform_hist_09",
        "gradient_magnitude_mean",
        "gradient_orientation_hist_05",
    ):
        assert n in names
    assert F.feature_names() == F.feature_names()  # deterministic


# ---------------------------------------------------------------------------------------
# Values without a mask.
# ---------------------------------------------------------------------------------------


def split(features, prefix):
    return {k[len(prefix) :]: v for k, v in features.items() if k.startswith(prefix)}


@pytest.mark.parametrize("levels", [8, 32, 256])
def test_values_equal_the_individual_functions_and_skimage(real_images, levels):
    for img in real_images.values():
        got = F.extract(img, levels=levels, distances=(1, 2))
        assert split(got, "firstorder_") == F.firstorder(img)
        assert split(got, "gradient_") == F.gradient_histogram(img)
        q = F.quantize(img, levels)
        P = F.glcm(q, [1, 2], ANGLES4, levels=levels, symmetric=True)
        props = F.glcm_props(P)
        glcm = split(got, "glcm_")
        for prop in F.GLCM_PROPS:
            for i, d in enumerate((1, 2)):
                assert glcm[f"{prop.lower()}_d{d}"] == pytest.approx(
                    float(np.mean(props[prop][i])), rel=1e-12, abs=1e-15
                )
        # scikit-image on the same quantised image
        Psk = graycomatrix(q, [1, 2], ANGLES4, levels=levels, symmetric=True)
        for prop in SKIMAGE_PROPS:
            ref = graycoprops(Psk, prop).mean(axis=1)
            for i, d in enumerate((1, 2)):
                assert glcm[f"{prop.lower()}_d{d}"] == pytest.approx(ref[i], rel=1e-9), prop
        codes = local_binary_pattern(img, 8, 1.0, "uniform")
        hist = np.bincount(codes.astype(int).ravel(), minlength=10) / codes.size
        np.testing.assert_array_equal(list(split(got, "lbp_uniform_hist_").values()), hist)


def test_dtype_of_the_same_pixels_does_not_matter(camera):
    ref = F.extract(camera)
    for other in (camera.astype(np.float32), camera.astype(np.float64), camera.astype(np.uint16)):
        got = F.extract(other)
        assert list(got) == list(ref)
        for k in ref:
            assert got[k] == pytest.approx(ref[k], rel=1e-12, abs=1e-12), k


@pytest.mark.parametrize("target", TARGETS)
def test_every_simd_target_agrees(real_images, target):
    img = real_images["mr"]
    mask = img > np.percentile(img, 30)
    base = F.extract(img, mask)
    with me.simd.use_target(target):
        got = F.extract(img, mask)
    for k in base:
        assert got[k] == pytest.approx(base[k], rel=1e-5, abs=1e-9), k


# ---------------------------------------------------------------------------------------
# Masks.
# ---------------------------------------------------------------------------------------


def masked_glcm_reference(q, mask, distances, angles, levels):
    """Symmetric co-occurrence counts of the pairs with both pixels inside the mask
    (numpy, independent of the implementation's extra-level trick)."""
    rows, cols = q.shape
    P = np.zeros((levels, levels, len(distances), len(angles)), np.uint32)
    for i, d in enumerate(distances):
        for j, a in enumerate(angles):
            dr = round(math.sin(a) * d)
            dc = round(math.cos(a) * d)
            r0, r1 = max(0, -dr), min(rows, rows - dr)
            c0, c1 = max(0, -dc), min(cols, cols - dc)
            a_q = q[r0:r1, c0:c1]
            b_q = q[r0 + dr : r1 + dr, c0 + dc : c1 + dc]
            both = mask[r0:r1, c0:c1] & mask[r0 + dr : r1 + dr, c0 + dc : c1 + dc]
            np.add.at(P[:, :, i, j], (a_q[both], b_q[both]), 1)
            P[:, :, i, j] += P[:, :, i, j].T.copy()
    return P


@pytest.mark.parametrize("kind", ["interior", "border"])
@pytest.mark.parametrize("name", ["camera", "ct"])
def test_mask_semantics_of_every_family(real_images, kind, name):
    img = real_images[name]
    mask = roi(img.shape, kind)
    levels, distances = 16, (1, 3)
    got = F.extract(img, mask, levels=levels, distances=distances, lbp_radius=2.0)
    # first order: the pixels inside
    assert split(got, "firstorder_") == F.firstorder(img, mask)
    # gradient: Sobel of the whole image, statistics inside (extract works on the mask's
    # bounding box: float sums in another order)
    ref = F.gradient_histogram(img, mask)
    assert split(got, "gradient_") == pytest.approx(ref, rel=1e-6, abs=1e-12)
    # LBP: codes of the whole image (skimage), histogram inside
    codes = local_binary_pattern(img, 8, 2.0, "uniform")[mask].astype(int)
    hist = np.bincount(codes, minlength=10) / codes.size
    np.testing.assert_array_equal(list(split(got, "lbp_uniform_hist_").values()), hist)
    # GLCM: masked quantisation range, pairs with both pixels inside
    inside = img[mask]
    q = np.clip(
        np.floor((img - inside.min()) * (levels / (inside.max() - inside.min()))), 0, levels - 1
    ).astype(np.uint8)
    np.testing.assert_array_equal(q, F.quantize(img, levels, mask=mask))
    P = masked_glcm_reference(q, mask, distances, ANGLES4, levels)
    glcm = split(got, "glcm_")
    for prop in SKIMAGE_PROPS:
        ref = graycoprops(P, prop).mean(axis=1)
        for i, d in enumerate(distances):
            assert glcm[f"{prop.lower()}_d{d}"] == pytest.approx(ref[i], rel=1e-9), prop


def test_full_mask_equals_no_mask(camera):
    assert F.extract(camera, np.ones(camera.shape, bool)) == F.extract(camera)


def test_tiny_masks(camera):
    one = np.zeros(camera.shape, bool)
    one[200, 300] = True
    got = F.extract(camera, one)
    glcm = split(got, "glcm_")
    assert all(math.isnan(v) for v in glcm.values())  # no pixel pair inside
    assert got["firstorder_mean"] == float(camera[200, 300])
    assert math.isfinite(got["lbp_uniform_hist_00"])
    # a one-row mask has horizontal pairs only: the angle mean uses angle 0 alone
    row = np.zeros(camera.shape, bool)
    row[100, 50:90] = True
    got = F.extract(camera, row, levels=8)
    q = F.quantize(camera, 8, mask=row)[100, 50:90]
    diffs = np.diff(q.astype(int))
    assert got["glcm_contrast_d1"] == pytest.approx(np.mean(diffs.astype(float) ** 2))


@pytest.mark.parametrize(
    "mask, match",
    [
        (np.zeros((512, 512), bool), "no pixel"),
        (np.ones((10, 10), bool), "shape"),
        (np.ones((512, 512), np.float32), "dtype"),
    ],
)
def test_mask_errors(camera, mask, match):
    with pytest.raises(me.InvalidInputError, match=match):
        F.extract(camera, mask)


# ---------------------------------------------------------------------------------------
# Validation.
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"levels": 1},
        {"levels": 257},
        {"levels": 3.5},
        {"distances": ()},
        {"distances": (0,)},
        {"distances": (1, 1)},
        {"distances": "1"},
        {"distances": (1.5,)},
        {"angles": 0},
        {"angles": []},
        {"angles": [math.nan]},
        {"angles": "0"},
        {"lbp_points": 0},
        {"lbp_points": 33},
        {"lbp_radius": 0.0},
        {"firstorder_bins": 0},
        {"gradient_bins": 65},
    ],
)
def test_invalid_parameters(camera, kwargs):
    with pytest.raises(me.InvalidInputError):
        F.feature_names(**kwargs)
    with pytest.raises(me.InvalidInputError):
        F.extract(camera[:16, :16].copy(), **kwargs)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((4, 4, 3), np.uint8),
        np.zeros((4, 4), np.int32),
        np.array([[1.0, np.nan], [0.0, 1.0]]),
        np.zeros((0, 4)),
        "image.png",
    ],
)
def test_invalid_images(image):
    with pytest.raises(me.InvalidInputError):
        F.extract(image)


def test_input_not_modified(camera):
    img = camera.copy()
    mask = roi(img.shape, "interior")
    m0 = mask.copy()
    F.extract(img, mask)
    np.testing.assert_array_equal(img, camera)
    np.testing.assert_array_equal(mask, m0)


# ---------------------------------------------------------------------------------------
# Boundary (hypothesis).
# ---------------------------------------------------------------------------------------


@given(
    st.sampled_from(["uint8", "uint16", "float32", "float64"]).flatmap(
        lambda dt: arrays(
            np.dtype(dt),
            st.tuples(st.integers(1, 9), st.integers(1, 9)),
            elements=(
                st.integers(0, np.iinfo(dt).max)
                if dt.startswith("uint")
                else st.floats(-1e6, 1e6, width=32 if dt == "float32" else 64)
            ),
        )
    ),
    st.integers(2, 64),
)
def test_hypothesis_any_small_image(img, levels):
    got = F.extract(img, levels=levels)
    assert list(got) == F.feature_names(levels=levels)
    glcm = split(got, "glcm_")
    others = {k: v for k, v in got.items() if not k.startswith("glcm_")}
    assert all(math.isfinite(v) for v in others.values())
    # NaN only when no pixel pair exists at any angle: a 1x1 image
    assert all(math.isfinite(v) for v in glcm.values()) == (img.size > 1)
    assert sum(split(got, "lbp_uniform_hist_").values()) == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------
# The fused uint8 path (one kernel call, csrc/kernels/extract.hpp) against the per-family
# composition it replaces for uint8 images without a mask.
# ---------------------------------------------------------------------------------------

FUSED_PARAMS = [
    {},
    {"levels": 256},
    {"levels": 64, "lbp_points": 4, "lbp_radius": 1.5},
    {
        "levels": 8,
        "distances": (1, 2, 3),
        "angles": 3,
        "lbp_points": 16,
        "lbp_radius": 2.0,
        "firstorder_bins": 100,
        "gradient_bins": 5,
    },
    {"levels": 100, "distances": (2, 40), "angles": [0.3, -1.0], "firstorder_bins": 1},
]


def _fused_and_composed(img, **kwargs):
    from medimg_edge.features import _extract

    p = _extract._params(
        kwargs.get("levels", 32),
        kwargs.get("distances", (1,)),
        kwargs.get("angles", 4),
        kwargs.get("lbp_points", 8),
        kwargs.get("lbp_radius", 1.0),
        kwargs.get("firstorder_bins", 64),
        kwargs.get("gradient_bins", 8),
    )
    fused = np.array(_extract._extract_u8(img, p))
    composed = np.array(_extract._composed(img, img, None, p))
    return fused, composed


def _u8_images(real_images):
    rng = np.random.default_rng(17)
    out = {
        k: np.clip(np.round(v / max(float(v.max()), 1.0) * 255.0), 0, 255).astype(np.uint8)
        for k, v in real_images.items()
    }
    out["noise 64"] = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    out["few levels"] = rng.integers(0, 3, (33, 70), dtype=np.uint8)
    out["flat"] = np.full((9, 5), 7, np.uint8)
    out["zeros"] = np.zeros((17, 9), np.uint8)
    out["2x2"] = np.array([[1, 2], [3, 4]], np.uint8)
    out["1x1"] = np.array([[5]], np.uint8)
    out["1 row"] = rng.integers(0, 256, (1, 40), dtype=np.uint8)
    return out


@pytest.mark.parametrize("kwargs", FUSED_PARAMS)
def test_fused_uint8_path_is_bit_identical_to_the_composition(real_images, kwargs):
    for name, img in _u8_images(real_images).items():
        fused, composed = _fused_and_composed(img, **kwargs)
        np.testing.assert_array_equal(fused, composed, err_msg=name)  # NaN equals NaN
        # and extract() takes it
        got = np.array(list(F.extract(img, **kwargs).values()))
        np.testing.assert_array_equal(got, composed, err_msg=name)


@pytest.mark.parametrize("target", TARGETS)
def test_fused_uint8_path_on_every_simd_target(real_images, target):
    imgs = _u8_images(real_images)
    with me.simd.use_target(target):
        for name, img in imgs.items():
            for kwargs in FUSED_PARAMS[:3]:
                fused, composed = _fused_and_composed(img, **kwargs)
                np.testing.assert_array_equal(fused, composed, err_msg=f"{target} {name}")


@given(
    arrays(np.uint8, st.tuples(st.integers(1, 40), st.integers(1, 40))),
    st.integers(2, 256),
    st.integers(1, 12),
)
def test_hypothesis_fused_uint8_path(img, levels, points):
    fused, composed = _fused_and_composed(img, levels=levels, lbp_points=points)
    np.testing.assert_array_equal(fused, composed)


def test_fused_kernel_refuses_unchecked_arguments():
    """The binding's second line of defence (the Python wrapper validates first)."""
    from medimg_edge import _core
    from medimg_edge.features._lbp import _offsets as lbp_offsets

    img = np.zeros((8, 8), np.uint8)
    dr, dc = np.array([0, -1]), np.array([1, 1])
    rp, cp = lbp_offsets(8, 1.0)
    ok = (img, 32, dr, dc, 1, rp, cp, 64, 8)
    assert _core.extract_u8(*ok).shape == (18 + 27 + 10 + 11,)
    bad = [
        (img.astype(np.float32), *ok[1:]),  # not uint8
        (img[:, ::2], *ok[1:]),  # not contiguous
        (np.zeros((0, 3), np.uint8), *ok[1:]),
        (img, 1, *ok[2:]),  # levels
        (img, 257, *ok[2:]),
        (img, 32, np.array([0, 9]), dc, *ok[4:]),  # offset beyond the image
        (img, 32, dr, dc[:1], *ok[4:]),
        (img, 32, dr, dc, 3, *ok[5:]),  # K not a multiple of n_dist
        (img, 32, dr, dc, 1, rp[:3], *ok[6:]),
        (img, 32, dr, dc, 1, rp, cp, 0, 8),
        (img, 32, dr, dc, 1, rp, cp, 64, 65),
    ]
    for args in bad:
        with pytest.raises(ValueError):
            _core.extract_u8(*args)
    with pytest.raises(ValueError):  # appearance takes float32
        _core.extract_u8(*ok, True)
