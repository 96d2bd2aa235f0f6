"""GLCM: ``me.features.glcm`` / ``glcm_props`` / ``quantize``.

* ``glcm`` against ``skimage.feature.graycomatrix`` (identical counts, every dtype, real
  images, arbitrary distances and angles, symmetric / normed), on every SIMD target;
* ``glcm_props`` against ``skimage.feature.graycoprops`` (1e-9 relative) for its ten
  properties, and against an independent NumPy transcription of the PyRadiomics
  documentation formulas for the others; every SIMD target against the scalar path;
* ``quantize`` against its documented formula; input validation of all three.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from skimage.feature import graycomatrix, graycoprops

import medimg_edge as me
from medimg_edge.features import GLCM_PROPS, glcm, glcm_props, quantize

TARGETS = me.simd.supported_targets()
ANGLES4 = [0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]
SKIMAGE_PROPS = GLCM_PROPS[:10]
RADIOMICS_PROPS = GLCM_PROPS[10:]
SIX = ("contrast", "dissimilarity", "homogeneity", "ASM", "energy", "correlation")


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def smooth_image(shape: tuple[int, int], levels: int, seed: int = 0) -> np.ndarray:
    """Blocks + a ramp + a little noise: flat runs (equal neighbours) and texture."""
    r = rng(seed)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    base = ((yy // 7 + xx // 5) % 4) * (levels / 4) + xx * (levels / 4) / max(shape[1], 1)
    img = np.clip(base + r.normal(0, levels / 50, shape), 0, levels - 1)
    return np.rint(img).astype(np.uint8 if levels <= 256 else np.uint16)


def assert_props_close(got: dict, ref: dict, names, rtol: float, atol: float, what: str) -> None:
    for p in names:
        np.testing.assert_allclose(got[p], ref[p], rtol=rtol, atol=atol, err_msg=f"{what}: {p}")


# ---------------------------------------------------------------------------------------
# glcm: identical counts to scikit-image
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("normed", [False, True])
def test_glcm_equals_skimage_on_camera(symmetric, normed):
    from skimage import data

    img = data.camera()
    dist, ang = [1, 2, 5], ANGLES4
    got = glcm(img, dist, ang, symmetric=symmetric, normed=normed)
    ref = graycomatrix(img, dist, ang, levels=256, symmetric=symmetric, normed=normed)
    assert got.shape == ref.shape == (256, 256, 3, 4)
    assert got.dtype == ref.dtype
    assert np.array_equal(got, ref)


@pytest.mark.parametrize("levels", [2, 8, 32, 128, 256])
@pytest.mark.parametrize("target", TARGETS)
def test_glcm_every_target_identical(levels, target):
    img = smooth_image((61, 47), levels, seed=levels)
    ref = graycomatrix(img, [1, 3], ANGLES4, levels=levels)
    with me.simd.use_target(target):
        got = glcm(img, [1, 3], ANGLES4, levels=levels)
        sym = glcm(img, [1, 3], ANGLES4, levels=levels, symmetric=True, normed=True)
    assert np.array_equal(got, ref)
    assert np.array_equal(
        sym, graycomatrix(img, [1, 3], ANGLES4, levels=levels, symmetric=True, normed=True)
    )


@pytest.mark.parametrize(
    "dtype", [np.uint8, np.uint16, np.int8, np.int16, np.int32, np.int64, np.uint32, np.uint64]
)
def test_glcm_every_integer_dtype(dtype):
    top = 127 if dtype == np.int8 else 300 if np.dtype(dtype).itemsize > 1 else 255
    img = rng(1).integers(0, top + 1, size=(40, 33)).astype(dtype)
    levels = top + 1
    got = glcm(img, [1, 2], ANGLES4, levels=levels)
    ref = graycomatrix(img, [1, 2], ANGLES4, levels=levels)
    assert got.dtype == np.uint32
    assert np.array_equal(got, ref)


def test_glcm_default_levels_like_skimage():
    img8 = rng(2).integers(0, 256, size=(20, 20), dtype=np.uint8)
    assert np.array_equal(glcm(img8, [1], [0]), graycomatrix(img8, [1], [0]))
    imgi8 = rng(3).integers(0, 128, size=(20, 20)).astype(np.int8)
    assert glcm(imgi8, [1], [0]).shape[0] == 256
    assert np.array_equal(glcm(imgi8, [1], [0]), graycomatrix(imgi8, [1], [0]))


def test_glcm_big_endian_and_non_contiguous():
    img = rng(4).integers(0, 1000, size=(30, 50)).astype(">u2")
    ref = graycomatrix(img.astype(np.uint16), [1], ANGLES4, levels=1000)
    assert np.array_equal(glcm(img, [1], ANGLES4, levels=1000), ref)
    view = np.asarray(img.astype(np.uint16))[:, ::2]
    assert np.array_equal(
        glcm(view, [1], ANGLES4, levels=1000),
        graycomatrix(np.ascontiguousarray(view), [1], ANGLES4, levels=1000),
    )


@pytest.mark.parametrize("levels", [700, 4096])
def test_glcm_uint16(levels):
    img = smooth_image((50, 70), levels, seed=5)
    for sym in (False, True):
        assert np.array_equal(
            glcm(img, [1, 4], ANGLES4, levels=levels, symmetric=sym),
            graycomatrix(img, [1, 4], ANGLES4, levels=levels, symmetric=sym),
        )


def test_glcm_real_images(real_images):
    """scikit-image samples (uint8) and pydicom CT / MR (int16, 12-bit values)."""
    for name, arr in real_images.items():
        img = arr.astype(np.uint8) if name in ("camera", "moon") else arr.astype(np.int16)
        levels = 256 if img.dtype == np.uint8 else int(img.max()) + 1
        got = glcm(img, [1, 2], ANGLES4, levels=levels, symmetric=True)
        ref = graycomatrix(img, [1, 2], ANGLES4, levels=levels, symmetric=True)
        assert np.array_equal(got, ref), name
        q = quantize(img, 64)
        assert np.array_equal(glcm(q, [1], ANGLES4, levels=64), graycomatrix(q, [1], ANGLES4, 64))


def test_glcm_offset_rounding_like_skimage():
    """Ties and near-ties of the rounding: sin(pi/6) * 3 = 1.4999999999999998 rounds to 1
    (libm sin), 2.5 rounds away from zero, negative distances and angles, zero distance,
    fractional distances, offsets longer than the image."""
    img = smooth_image((17, 23), 16, seed=6)
    dists = [0, 0.5, 1, 1.5, 2.5, 3, -2, 4.49, 30, 1e6]
    angles = [0, np.pi / 6, np.pi / 3, -np.pi / 4, 5 * np.pi / 6, np.pi, 7, -3.3, 2 * np.pi]
    assert np.array_equal(
        glcm(img, dists, angles, levels=16), graycomatrix(img, dists, angles, levels=16)
    )


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (2, 2), (3, 3), (5, 130)])
def test_glcm_tiny_images(shape):
    img = rng(7).integers(0, 8, size=shape).astype(np.uint8)
    got = glcm(img, [1, 2], [*ANGLES4, np.pi], levels=8, symmetric=True)
    ref = graycomatrix(img, [1, 2], [*ANGLES4, np.pi], levels=8, symmetric=True)
    assert np.array_equal(got, ref)


def test_glcm_scalar_arguments_and_layout():
    img = smooth_image((20, 20), 32)
    P = glcm(img, 1, 0.0, levels=32)
    assert P.shape == (32, 32, 1, 1)
    assert np.array_equal(P, graycomatrix(img, [1], [0.0], levels=32))
    Q = glcm(img, [1, 2], ANGLES4, levels=32)
    assert all(Q[:, :, d, a].flags.c_contiguous for d in range(2) for a in range(4))


def test_glcm_leaves_input_unchanged_and_threads():
    img = smooth_image((64, 64), 64, seed=8)
    before = img.copy()
    ref = graycomatrix(img, [1], ANGLES4, levels=64)
    results: list[np.ndarray] = []

    def work() -> None:
        for _ in range(5):
            results.append(glcm(img, [1], ANGLES4, levels=64))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 20 and all(np.array_equal(r, ref) for r in results)
    assert np.array_equal(img, before)


@given(
    rows=st.integers(1, 12),
    cols=st.integers(1, 12),
    levels=st.integers(1, 300),
    seed=st.integers(0, 2**32 - 1),
    dists=st.lists(st.floats(-13, 13, allow_nan=False), min_size=1, max_size=3),
    angles=st.lists(st.floats(-7, 7, allow_nan=False), min_size=1, max_size=3),
    symmetric=st.booleans(),
    normed=st.booleans(),
)
def test_glcm_property_equals_skimage(rows, cols, levels, seed, dists, angles, symmetric, normed):
    dtype = np.uint8 if levels <= 256 else np.uint16
    img = np.random.default_rng(seed).integers(0, levels, size=(rows, cols)).astype(dtype)
    got = glcm(img, dists, angles, levels=levels, symmetric=symmetric, normed=normed)
    ref = graycomatrix(img, dists, angles, levels=levels, symmetric=symmetric, normed=normed)
    assert np.array_equal(got, ref)


# ---------------------------------------------------------------------------------------
# glcm: validation
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "kwargs", "match"),
    [
        (np.zeros((4, 4), np.float32), {"levels": 4}, "quantize"),
        (np.zeros((4, 4), bool), {"levels": 2}, "astype"),
        (np.zeros((4, 4), np.uint16), {}, "levels is required"),
        (np.full((4, 4), 9, np.uint8), {"levels": 8}, "quantize"),
        (np.full((4, 4), 900, np.uint16), {"levels": 800}, "levels=901"),
        (np.full((4, 4), 9, np.int32), {"levels": 8}, "quantize"),
        (-np.ones((4, 4), np.int16), {"levels": 8}, "negative"),
        (np.zeros((4, 4), np.uint8), {"levels": 0}, "levels"),
        (np.zeros((4, 4), np.uint8), {"levels": 70000}, "levels"),
        (np.zeros((4, 4), np.uint8), {"levels": 2.5}, "levels"),
        (np.zeros((4, 4, 3), np.uint8), {}, "grayscale"),
        (np.zeros((0, 4), np.uint8), {}, "empty"),
        (np.zeros(4, np.uint8), {}, "2-D"),
        ("image", {}, "NumPy array"),
        (None, {}, "NumPy array"),
        (np.zeros((4, 4), np.uint16), {"levels": 65536}, "cells"),
    ],
)
def test_glcm_rejects_bad_images(image, kwargs, match):
    with pytest.raises(me.InvalidInputError, match=match):
        glcm(image, [1], ANGLES4, **kwargs)


@pytest.mark.parametrize(
    ("dists", "angles", "match"),
    [
        ([], [0], "distances"),
        ([1], [], "angles"),
        ([np.nan], [0], "distances"),
        ([1], [np.inf], "angles"),
        ([[1, 2]], [0], "distances"),
        (["a"], [0], "distances"),
    ],
)
def test_glcm_rejects_bad_offsets(dists, angles, match):
    with pytest.raises(me.InvalidInputError, match=match):
        glcm(np.zeros((4, 4), np.uint8), dists, angles)


def test_core_glcm_checks_its_arguments():
    from medimg_edge import _core

    img = np.zeros((4, 4), np.uint8)
    dr, dc = np.array([0]), np.array([1])
    with pytest.raises(ValueError):
        _core.glcm(img.astype(np.float32), 4, dr, dc, False, False)
    with pytest.raises(ValueError):
        _core.glcm(img, 4, np.array([9]), dc, False, False)  # offset beyond the image
    with pytest.raises(ValueError):
        _core.glcm(img, 4, dr, np.array([1, 1]), False, False)
    with pytest.raises(ValueError):
        _core.glcm(img, 0, dr, dc, False, False)
    P, mx = _core.glcm(np.full((4, 4), 7, np.uint8), 4, dr, dc, False, False)
    assert P is None and mx == 7
    with pytest.raises(ValueError):
        _core.glcm_props(np.zeros((1, 3, 4), np.uint32))
    with pytest.raises(ValueError):
        _core.glcm_props(np.zeros((2, 3, 3), np.float32))
    with pytest.raises(ValueError):
        _core.glcm_props(np.zeros((2, 3, 3), np.uint32)[:, :, ::-1])


# ---------------------------------------------------------------------------------------
# glcm_props: scikit-image's ten properties
# ---------------------------------------------------------------------------------------


def skimage_props(P: np.ndarray, names=SKIMAGE_PROPS) -> dict[str, np.ndarray]:
    return {p: graycoprops(P, p) for p in names}


def matrices_zoo() -> dict[str, np.ndarray]:
    """4-D GLCMs covering dense, sparse, flat, degenerate and empty matrices."""
    from skimage import data

    r = rng(9)
    cam = data.camera()
    zoo = {
        "camera256": graycomatrix(cam, [1, 3], ANGLES4, levels=256),
        "camera32-sym-normed": graycomatrix(
            cam // 8, [1], ANGLES4, levels=32, symmetric=True, normed=True
        ),
        "random-sparse": (r.random((50, 50, 2, 3)) < 0.05) * r.integers(1, 1000, (50, 50, 2, 3)),
        "random-dense": r.integers(0, 7, (13, 13, 1, 2)).astype(np.uint32),
        "single-cell": np.pad(
            np.full((1, 1, 1, 1), 17, np.uint32), ((3, 4), (3, 4), (0, 0), (0, 0))
        ),
        "diagonal": np.eye(9, dtype=np.uint32)[:, :, None, None] * 5,
        "one-row": np.pad(r.integers(1, 9, (1, 6, 1, 1)), ((2, 3), (0, 0), (0, 0), (0, 0))),
        "one-level": np.ones((1, 1, 1, 1), np.uint32),
        "with-empty": graycomatrix(
            smooth_image((5, 5), 8), [1, 9], [0, np.pi / 2], levels=8
        ),  # distance 9: no pair
        "tail-sizes": r.integers(0, 3, (19, 19, 1, 1)).astype(np.uint32),
    }
    return zoo


@pytest.mark.parametrize("name", list(matrices_zoo()))
def test_props_equal_skimage(name):
    P = matrices_zoo()[name]
    got = glcm_props(P)
    ref = skimage_props(P)
    assert list(got) == list(GLCM_PROPS)
    for p in SKIMAGE_PROPS:
        assert got[p].shape == P.shape[2:] and got[p].dtype == np.float64
    assert_props_close(got, ref, SKIMAGE_PROPS, rtol=1e-9, atol=1e-12, what=name)


def test_props_of_skimage_and_own_layouts_agree():
    from skimage import data

    img = data.camera()
    ours = glcm(img, [1, 2], ANGLES4, symmetric=True)
    theirs = graycomatrix(img, [1, 2], ANGLES4, levels=256, symmetric=True)
    a, b = glcm_props(ours), glcm_props(theirs)
    assert all(np.array_equal(a[p], b[p]) for p in GLCM_PROPS)
    normed = glcm_props(glcm(img, [1, 2], ANGLES4, symmetric=True, normed=True))
    assert_props_close(normed, a, GLCM_PROPS, rtol=1e-12, atol=1e-12, what="normed vs counts")


@pytest.mark.parametrize(
    "dtype", [np.uint8, np.uint16, np.int32, np.int64, np.uint64, np.float32, np.float64, bool]
)
def test_props_accept_any_real_dtype(dtype):
    P = rng(10).integers(0, 3, (12, 12, 2, 2)).astype(dtype)
    ref = skimage_props(P.astype(np.float64))
    assert_props_close(glcm_props(P), ref, SKIMAGE_PROPS, 1e-9, 1e-12, str(np.dtype(dtype)))


def test_props_big_counts_and_big_endian():
    P = rng(11).integers(0, 2**40, (6, 6, 1, 2)).astype(np.uint64)
    P[0, 0] = 2**63
    assert_props_close(glcm_props(P), skimage_props(P), SKIMAGE_PROPS, 1e-9, 1e-12, "uint64")
    B = P.astype(">f8")
    assert_props_close(glcm_props(B), skimage_props(P), SKIMAGE_PROPS, 1e-9, 1e-12, ">f8")


def test_props_subsets_equal_full():
    P = matrices_zoo()["camera256"]
    full = glcm_props(P)
    for names in (("contrast",), SIX, ("entropy", "imc2"), ("sum_entropy", "mean"), "energy"):
        sub = glcm_props(P, names)
        wanted = (names,) if isinstance(names, str) else names
        assert list(sub) == list(wanted)
        for p in wanted:
            assert np.array_equal(sub[p], full[p]), p


@pytest.mark.parametrize("target", TARGETS)
def test_props_every_target_vs_scalar(target):
    zoo = matrices_zoo()
    with me.simd.use_target("scalar"):
        ref = {k: glcm_props(P) for k, P in zoo.items()}
    with me.simd.use_target(target):
        for k, P in zoo.items():
            assert_props_close(glcm_props(P), ref[k], GLCM_PROPS, 1e-12, 1e-13, f"{target} {k}")


@pytest.mark.parametrize(
    ("P", "props", "match"),
    [
        (np.zeros((3, 3)), GLCM_PROPS, "4-D"),
        (np.zeros((3, 4, 1, 1)), GLCM_PROPS, "shape"),
        (np.zeros((3, 3, 0, 1)), GLCM_PROPS, "shape"),
        (-np.ones((3, 3, 1, 1)), GLCM_PROPS, "negative"),
        (-np.ones((3, 3, 1, 1), np.int8), GLCM_PROPS, "negative"),
        (np.full((3, 3, 1, 1), np.nan), GLCM_PROPS, "NaN"),
        (np.full((3, 3, 1, 1), np.inf), GLCM_PROPS, "NaN"),
        (np.ones((3, 3, 1, 1), complex), GLCM_PROPS, "dtype"),
        (np.ones((3, 3, 1, 1)), "kontrast", "unknown"),
        (np.ones((3, 3, 1, 1)), (), "empty"),
        (np.ones((3, 3, 1, 1)), 3, "props"),
        ("P", GLCM_PROPS, "NumPy array"),
    ],
)
def test_props_reject_bad_input(P, props, match):
    with pytest.raises(me.InvalidInputError, match=match):
        glcm_props(P, props)


def test_props_nan_anywhere_is_found():
    for pos in [(0, 0, 0, 0), (18, 18, 0, 1), (7, 11, 0, 0)]:  # first, last, tail lanes
        P = np.ones((19, 19, 1, 2))
        P[pos] = np.nan
        with pytest.raises(me.InvalidInputError, match="NaN"):
            glcm_props(P)


# ---------------------------------------------------------------------------------------
# glcm_props: PyRadiomics features, against the documentation formulas
# ---------------------------------------------------------------------------------------


def _h2(q: np.ndarray) -> float:
    q = q[q > 0]
    return float(-np.sum(q * np.log2(q)))


def radiomics_reference(M: np.ndarray) -> dict[str, float]:
    """One matrix, transcribed from the PyRadiomics GLCM documentation (1-based levels
    i, j = 1 .. N_g; 0 log 0 = 0, no eps)."""
    p = M.astype(np.float64) / M.sum()
    ng = p.shape[0]
    i, j = np.meshgrid(np.arange(1, ng + 1), np.arange(1, ng + 1), indexing="ij")
    px, py = p.sum(axis=1), p.sum(axis=0)
    ux, uy = float(np.sum(p * i)), float(np.sum(p * j))
    k_sum = np.arange(2, 2 * ng + 1)
    p_sum = np.array([p[i + j == k].sum() for k in k_sum])
    k_dif = np.arange(0, ng)
    p_dif = np.array([p[np.abs(i - j) == k].sum() for k in k_dif])
    hx, hy, hxy = _h2(px), _h2(py), _h2(p)
    pxpy = px[:, None] * py[None, :]
    nz = p > 0
    hxy1 = float(-np.sum(p[nz] * np.log2(pxpy[nz])))
    hxy2 = _h2(pxpy)
    da = float(np.sum(k_dif * p_dif))
    imc1 = (hxy - hxy1) / max(hx, hy) if max(hx, hy) > 0 else 0.0
    imc2 = math.sqrt(1 - math.exp(-2 * (hxy2 - hxy))) if hxy2 > hxy else 0.0
    return {
        "autocorrelation": float(np.sum(p * i * j)),
        "joint_average": ux,
        "cluster_prominence": float(np.sum((i + j - ux - uy) ** 4 * p)),
        "cluster_shade": float(np.sum((i + j - ux - uy) ** 3 * p)),
        "cluster_tendency": float(np.sum((i + j - ux - uy) ** 2 * p)),
        "difference_average": da,
        "difference_entropy": _h2(p_dif),
        "difference_variance": float(np.sum((k_dif - da) ** 2 * p_dif)),
        "id": float(np.sum(p_dif / (1 + k_dif))),
        "idmn": float(np.sum(p_dif / (1 + k_dif**2 / ng**2))),
        "idn": float(np.sum(p_dif / (1 + k_dif / ng))),
        "imc1": imc1,
        "imc2": imc2,
        "inverse_variance": float(np.sum(p_dif[1:] / k_dif[1:] ** 2)),
        "joint_entropy": hxy,
        "maximum_probability": float(p.max()),
        "sum_average": float(np.sum(k_sum * p_sum)),
        "sum_entropy": _h2(p_sum),
        "joint_energy": float(np.sum(p**2)),
        "idm": float(np.sum(p_dif / (1 + k_dif**2))),
        "sum_squares": float(np.sum((i - ux) ** 2 * p)),
    }


@pytest.mark.parametrize("name", [k for k in matrices_zoo() if k != "with-empty"])
def test_radiomics_features_match_documentation(name):
    P = matrices_zoo()[name]
    got = glcm_props(P)
    for d in range(P.shape[2]):
        for a in range(P.shape[3]):
            ref = radiomics_reference(P[:, :, d, a])
            for p in RADIOMICS_PROPS:
                g, r = got[p][d, a], ref[p]
                if p == "imc2":  # sqrt(1 - exp(-2 m)) magnifies the rounding of m near 0
                    g, r = g * g, r * r
                assert abs(g - r) <= 1e-9 * max(1.0, abs(r)), (name, d, a, p, g, r)
            # Identities with the scikit-image properties (PyRadiomics' joint average,
            # joint energy, IDM, sum of squares).
            assert got["mean"][d, a] + 1 == pytest.approx(ref["joint_average"], rel=1e-12)
            assert got["ASM"][d, a] == pytest.approx(ref["joint_energy"], rel=1e-12)
            assert got["homogeneity"][d, a] == pytest.approx(ref["idm"], rel=1e-12)
            assert got["variance"][d, a] == pytest.approx(ref["sum_squares"], rel=1e-12, abs=1e-15)
            assert got["joint_entropy"][d, a] == pytest.approx(
                got["entropy"][d, a] / math.log(2), rel=1e-12, abs=1e-15
            )


def test_empty_matrix_properties():
    """No pair at all (offset longer than the image): every property 0, correlation 1
    (scikit-image's values for an all-zero P)."""
    P = glcm(np.zeros((3, 3), np.uint8), [5], [0.0], levels=4)
    assert not P.any()
    got = glcm_props(P)
    for p in GLCM_PROPS:
        assert got[p][0, 0] == (1.0 if p == "correlation" else 0.0), p
    ref = skimage_props(P)
    assert_props_close(got, ref, SKIMAGE_PROPS, 0, 0, "empty")


def test_flat_region_special_cases():
    """One grey level: correlation 1 (skimage, PyRadiomics), IMC1 0 and IMC2 0."""
    got = glcm_props(glcm(np.full((6, 6), 3, np.uint8), [1], ANGLES4, levels=8))
    for p, v in {"correlation": 1.0, "imc1": 0.0, "imc2": 0.0, "entropy": 0.0, "ASM": 1.0}.items():
        np.testing.assert_array_equal(got[p], v, err_msg=p)
    np.testing.assert_allclose(got["maximum_probability"], 1.0)


def test_perfect_dependence_imc1_is_minus_one():
    """A diagonal matrix (j determined by i, uniform): IMC1 = -1, IMC2 = sqrt(1 - Ng^-2)
    in PyRadiomics' bits convention (exp of -2 log2 Ng)."""
    ng = 8
    got = glcm_props(np.eye(ng, dtype=np.uint32)[:, :, None, None] * 3)
    assert got["imc1"][0, 0] == pytest.approx(-1.0, rel=1e-12)
    assert got["imc2"][0, 0] == pytest.approx(math.sqrt(1 - math.exp(-2 * math.log2(ng))))


# ---------------------------------------------------------------------------------------
# quantize
# ---------------------------------------------------------------------------------------


def quantize_reference(x: np.ndarray, levels: int, lo: float, hi: float) -> np.ndarray:
    q = np.floor((x.astype(np.float64) - lo) * (levels / (hi - lo)))
    return np.clip(q, 0, levels - 1).astype(np.uint8 if levels <= 256 else np.uint16)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("levels", [1, 2, 32, 256, 1000])
def test_quantize_matches_formula(dtype, levels):
    r = rng(12)
    top = 255 if dtype == np.uint8 else 4000
    x = (r.random((300, 301)) * top - (0 if np.dtype(dtype).kind == "u" else 1000)).astype(dtype)
    q = quantize(x, levels)
    assert q.dtype == (np.uint8 if levels <= 256 else np.uint16) and q.shape == x.shape
    lo, hi = float(x.min()), float(x.max())
    assert np.array_equal(q, quantize_reference(x, levels, lo, hi))
    assert q.min() == 0 and q.max() == levels - 1
    # Small images take the direct path, large integer images the lookup table: same bits.
    assert np.array_equal(quantize(x[:5, :5], levels, vmin=lo, vmax=hi), q[:5, :5])


@pytest.mark.parametrize("layout", ["strided", "1-D", "3-D", "fortran"])
def test_quantize_uint8_lookup_layouts(layout):
    # 2-D uint8 takes cv2.LUT, other shapes numpy.take: the same bits as the formula.
    x = (rng(13).random((64, 90)) * 255).astype(np.uint8)
    v = {
        "strided": x[::2, ::3],
        "1-D": x.ravel(),
        "3-D": x.reshape(8, 8, 90),
        "fortran": np.asfortranarray(x),
    }[layout]
    for levels in (7, 32, 256):
        q = quantize(v, levels)
        want = quantize_reference(v, levels, float(v.min()), float(v.max()))
        assert q.shape == v.shape and np.array_equal(q, want)


def test_quantize_identity_on_full_uint8():
    x = np.arange(256, dtype=np.uint8).reshape(16, 16)
    assert np.array_equal(quantize(x, 256), x)
    assert np.array_equal(quantize(x, 32), x // 8)


def test_quantize_range_and_mask():
    x = np.linspace(-10, 10, 101).reshape(1, 101)
    q = quantize(x, 4, vmin=0, vmax=8)
    assert q[0, 0] == 0 and q[0, -1] == 3
    assert np.array_equal(q, quantize_reference(x, 4, 0.0, 8.0))
    mask = np.zeros_like(x, dtype=bool)
    mask[0, 50:71] = True  # values 0 .. 4
    qm = quantize(x, 4, mask=mask)
    assert np.array_equal(qm, quantize_reference(x, 4, 0.0, 4.0))
    assert np.array_equal(quantize(x, 4, mask=mask.astype(np.uint8)), qm)


def test_quantize_constant_and_degenerate_range():
    assert not quantize(np.full((5, 5), 7.5), 16).any()
    q = quantize(np.array([[1.0, 2.0, 3.0]]), 8, vmin=2, vmax=2)
    assert q.tolist() == [[0, 0, 7]]


@given(
    values=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=40),
    levels=st.integers(1, 65536),
)
def test_quantize_property_bounds_and_monotone(values, levels):
    x = np.array(values)
    q = quantize(x, levels).astype(np.int64)
    assert q.min() >= 0 and q.max() <= levels - 1
    order = np.argsort(x, kind="stable")
    assert np.all(np.diff(q[order]) >= 0)
    assert q[np.argmin(x)] == 0
    if x.max() > x.min():
        assert q[np.argmax(x)] == levels - 1


@pytest.mark.parametrize(
    ("image", "kwargs", "match"),
    [
        (np.array([[1.0, np.nan]]), {}, "NaN"),
        (np.zeros((3, 3), complex), {}, "dtype"),
        (np.zeros((3, 3), bool), {}, "mask"),
        (np.zeros((3, 3)), {"levels": 0}, "levels"),
        (np.zeros((3, 3)), {"levels": 65537}, "levels"),
        (np.zeros((3, 3)), {"vmin": 2, "vmax": 1}, "vmin"),
        (np.zeros((3, 3)), {"vmin": np.inf}, "vmin"),
        (np.zeros((3, 3)), {"mask": np.zeros((3, 3), bool)}, "empty"),
        (np.zeros((3, 3)), {"mask": np.ones((3, 4), bool)}, "shape"),
        (np.zeros((3, 3)), {"mask": np.ones((3, 3), np.float32)}, "mask"),
        (np.zeros((0, 3)), {}, "empty"),
        (np.array([[-1e308, 1e308]]), {}, "too wide"),
    ],
)
def test_quantize_rejects_bad_input(image, kwargs, match):
    kwargs = {"levels": 8, **kwargs}
    levels = kwargs.pop("levels")
    with pytest.raises(me.InvalidInputError, match=match):
        quantize(image, levels, **kwargs)


def test_glcm_and_quantize_out() -> None:
    x = (rng(31).random((41, 57)) * 255).astype(np.uint8)
    q = np.empty_like(x)
    assert quantize(x, 16, out=q) is q
    assert np.array_equal(q, quantize(x, 16))
    xf = x.astype(np.float32)
    assert np.array_equal(quantize(xf, 16, out=q), quantize(xf, 16))
    with pytest.raises(me.InvalidInputError, match="out"):
        quantize(x, 16, out=x)  # the input itself: the lookup would read what it writes
    with pytest.raises(me.InvalidInputError, match="out"):
        quantize(x, 300, out=np.empty_like(x))  # 300 levels need uint16
    angles = [0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]
    want = me.features.glcm(q, [1, 3], angles, levels=16, symmetric=True)
    out = np.full((16, 16, 2, 4), 7, np.uint32)
    got = me.features.glcm(q, [1, 3], angles, levels=16, symmetric=True, out=out)
    assert got is out and np.array_equal(out, want)
    for bad in (np.empty((16, 16, 2, 3), np.uint32), np.empty((16, 16, 2, 4), np.int64)):
        with pytest.raises(me.InvalidInputError, match="out"):
            me.features.glcm(q, [1, 3], angles, levels=16, out=bad)
    with pytest.raises(me.InvalidInputError, match="normed"):
        me.features.glcm(q, [1, 3], angles, levels=16, normed=True, out=out)
