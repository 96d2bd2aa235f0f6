"""Tests of the training augmentation (``medimg_edge.training._augment``)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import medimg_edge as me
from medimg_edge._modality import MODALITIES
from medimg_edge.training import _augment as aug

MODEL = {"xray": 256, "ultrasound": 128}


def _xray(seed: int = 3, size: int = 256) -> me.synth.Sample:
    return me.synth.chest_xray(seed, size=size, nodule=True)


def _ultrasound(seed: int = 2) -> me.synth.Sample:
    return me.synth.ultrasound(seed)


def _frames() -> list[tuple[np.ndarray, str]]:
    """uint16 12-bit, uint8 and float frames of both modalities."""
    x = _xray().image
    u = _ultrasound().image
    return [
        (x, "xray"),
        (u, "ultrasound"),
        (x.astype(np.float32) / 4095.0, "xray"),
        (u.astype(np.float64) / 255.0, "ultrasound"),
    ]


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ----------------------------------------------------------------------------- apply


@pytest.mark.parametrize("name", aug.TRANSFORMS)
def test_every_transform_keeps_dtype_shape_and_range(name: str) -> None:
    assert len(aug.STRENGTHS[name]) >= 3
    for frame, modality in _frames():
        for s in aug.STRENGTHS[name]:
            out = aug.apply(
                name, frame, s, modality=modality, model_size=MODEL[modality], rng=_rng()
            )
            expected = np.float32 if frame.dtype.kind == "f" else frame.dtype
            assert out.dtype == expected
            if name == "resize_render":
                assert max(out.shape) == int(s)
            else:
                assert out.shape == frame.shape
            if frame.dtype == np.uint16:
                assert int(out.max()) <= 4095  # stays 12-bit
            elif frame.dtype.kind == "f":
                assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
                assert np.isfinite(out).all()


@pytest.mark.parametrize("name", [n for n in aug.TRANSFORMS if n not in ("resize_render",)])
def test_every_transform_changes_the_frame(name: str) -> None:
    frame = _xray().image
    out = aug.apply(
        name, frame, aug.STRENGTHS[name][-1], modality="xray", model_size=256, rng=_rng()
    )
    assert np.count_nonzero(out != frame) > 0.001 * frame.size


def test_input_is_not_modified() -> None:
    frame = _xray().image
    before = frame.copy()
    for name in aug.TRANSFORMS:
        aug.apply(name, frame, aug.STRENGTHS[name][-1], modality="xray", model_size=256, rng=_rng())
    aug.random_augment(frame, None, _rng(), modality="xray", model_size=256)
    np.testing.assert_array_equal(frame, before)


def test_gamma_identity_and_monotone() -> None:
    frame = _xray().image
    assert aug.apply("gamma", frame, 1.0, modality="xray", model_size=256) is frame
    ramp = np.tile(np.arange(0, 4096, 4, dtype=np.uint16), (16, 1))
    lo, hi = float(ramp.min()), float(ramp.max())
    t = (ramp[0].astype(np.float64) - lo) / (hi - lo)
    for g in aug.STRENGTHS["gamma"]:
        out = aug.apply("gamma", ramp, g, modality="xray", model_size=256)
        row = out[0].astype(np.int64)
        assert np.all(np.diff(row) >= 0)
        assert row[0] == lo and row[-1] == hi  # the data range is kept
        np.testing.assert_allclose(row, np.rint(lo + (hi - lo) * t**g), atol=1)
        mid = row[row.size // 2] - lo
        # gamma < 1 brightens the mid-tones, > 1 darkens them
        assert (mid > (hi - lo) / 2) == (g < 1.0)


def test_spline_lut_is_monotone_and_random() -> None:
    ramp = np.tile(np.arange(256, dtype=np.uint8), (8, 1))
    a = aug.apply("spline_lut", ramp, 1.0, modality="ultrasound", model_size=128, rng=_rng(1))
    b = aug.apply("spline_lut", ramp, 1.0, modality="ultrasound", model_size=128, rng=_rng(2))
    assert np.all(np.diff(a[0].astype(int)) >= 0) and np.all(np.diff(b[0].astype(int)) >= 0)
    assert a[0, 0] == 0 and a[0, -1] == 255
    assert not np.array_equal(a, b)
    assert np.abs(a[0].astype(int) - np.arange(256)).max() > 10  # visibly curved
    same = aug.apply("spline_lut", ramp, 0.0, modality="ultrasound", model_size=128, rng=_rng(1))
    np.testing.assert_array_equal(same, ramp)


def test_window_clips_tails_and_compresses() -> None:
    ramp = np.tile(np.arange(256, dtype=np.uint8), (8, 1))
    out = aug.apply("window", ramp, 0.2, modality="ultrasound", model_size=128)
    assert (out[0, :52] == 0).all() and (out[0, -52:] == 255).all()
    low = aug.apply("window", ramp, -0.15, modality="ultrasound", model_size=128)
    assert low[0, 0] > 0 and low[0, -1] < 255  # less contrast
    assert np.all(np.diff(low[0].astype(int)) >= 0)


def test_noise_sigma_is_a_fraction_of_the_data_range() -> None:
    flat = np.full((256, 256), 2000, np.uint16)
    flat[0, 0], flat[-1, -1] = 1000, 3000  # data range 2000 codes
    out = aug.apply("noise", flat, 0.02, modality="xray", model_size=256, rng=_rng())
    sd = float(out[1:-1, 1:-1].astype(np.float64).std())
    assert 0.9 * 40 < sd < 1.1 * 40
    corr = aug.apply("correlated_noise", flat, 0.02, modality="xray", model_size=256, rng=_rng())
    d = corr[1:-1, 1:-1].astype(np.float64)
    assert 0.8 * 40 < d.std() < 1.2 * 40
    # correlated: neighbours are alike; white: they are not
    lag1 = float(np.corrcoef(d[:, :-1].ravel(), d[:, 1:].ravel())[0, 1])
    w = out[1:-1, 1:-1].astype(np.float64)
    lag1_white = float(np.corrcoef(w[:, :-1].ravel(), w[:, 1:].ravel())[0, 1])
    assert lag1 > 0.7 and abs(lag1_white) < 0.05


def test_blur_and_sharpen_scale_with_model_px() -> None:
    """1 model px at 1024 px is 4 frame px: the model-resolution effect is similar."""
    small = _xray(size=256).image
    big = _xray(size=1024).image
    import cv2

    def hf(img: np.ndarray) -> float:  # high-frequency energy at model resolution
        m = cv2.resize(img.astype(np.float32), (256, 256), interpolation=cv2.INTER_AREA)
        return float(np.abs(cv2.Laplacian(m, cv2.CV_32F)).mean())

    for name, s in (("blur", 1.5), ("unsharp", 1.0)):
        r_small = hf(aug.apply(name, small, s, modality="xray", model_size=256)) / hf(small)
        r_big = hf(aug.apply(name, big, s, modality="xray", model_size=256)) / hf(big)
        if name == "blur":
            assert r_small < 0.8 and r_big < 0.8
        else:
            assert r_small > 1.1 and r_big > 1.1


def _local_std(a: np.ndarray) -> float:
    import cv2

    f = a.astype(np.float32)
    m = cv2.blur(f, (9, 9))
    v = cv2.blur(f * f, (9, 9)) - m * m
    return float(np.sqrt(np.maximum(v, 0.0)).mean())


def test_clahe_raises_local_contrast_with_the_clip_limit() -> None:
    frame = _xray().image
    ratios = []
    for clip in aug.STRENGTHS["clahe"]:
        out = aug.apply("clahe", frame, clip, modality="xray", model_size=256)
        assert out.dtype == np.uint16 and int(out.max()) <= 4095
        ratios.append(_local_std(out) / _local_std(frame))
    assert ratios[0] > 1.1 and ratios == sorted(ratios)


def test_edge_enhance_boosts_a_step() -> None:
    step = np.zeros((64, 64), np.uint8)
    step[:, 32:] = 200
    step[:, :32] = 50
    out = aug.apply("edge_enhance", step, 1.0, modality="ultrasound", model_size=64)
    assert out[:, 33].min() > 200 and out[:, 30].max() < 50  # overshoot on both sides
    np.testing.assert_array_equal(out[:, :20], step[:, :20])  # flat areas unchanged


# ----------------------------------------------------------------------------- geometry


def _square() -> tuple[np.ndarray, np.ndarray]:
    frame = np.full((200, 200), 100, np.uint16)
    frame[0, 0] = 0
    frame[60:90, 40:70] = 4000
    return frame, frame == 4000


@pytest.mark.parametrize(
    "step", [("flip", 1.0), ("flip", 2.0), ("flip", 3.0), ("rotate", 8.0), ("shift", 0.06)]
)
def test_geometric_transforms_move_the_square(step: tuple[str, float]) -> None:
    frame, mask = _square()
    name, s = step
    out = aug.apply(name, frame, s, modality="xray", model_size=200)
    bright = out > 2000
    if name == "flip":
        moved = {1.0: mask[:, ::-1], 2.0: mask[::-1, :], 3.0: mask[::-1, ::-1]}[s]
        np.testing.assert_array_equal(bright, moved)
    elif name == "shift":
        ys, xs = np.nonzero(bright)
        assert abs(ys.mean() - (74.5 + 12)) < 0.6 and abs(xs.mean() - (54.5 + 12)) < 0.6
    else:
        ys, xs = np.nonzero(bright)
        # counter-clockwise about the centre (99.5, 99.5) in image coordinates (y down)
        a = np.deg2rad(8.0)
        cx, cy = 54.5 - 99.5, 74.5 - 99.5
        ex = 99.5 + cx * np.cos(a) + cy * np.sin(a)
        ey = 99.5 - cx * np.sin(a) + cy * np.cos(a)
        assert abs(xs.mean() - ex) < 1.0 and abs(ys.mean() - ey) < 1.0


def test_random_augment_moves_the_mask_with_the_frame() -> None:
    import cv2

    frame, mask = _square()
    rng = _rng(5)
    moved = on_square = 0
    for _ in range(60):
        out, m = aug.random_augment(frame, mask, rng, modality="xray", model_size=200)
        assert m is not None and m.dtype == np.bool_ and m.shape == mask.shape
        if not np.array_equal(m, mask):
            moved += 1
        assert 0.8 * mask.sum() < m.sum() < 1.2 * mask.sum()
        ring = cv2.dilate(m.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool) & ~m
        o = out.astype(np.float64)
        # the square stays under its mask (collimation or a label may cover part of it)
        assert o[m].mean() >= o[ring].mean()
        on_square += int(o[m].mean() > o[ring].mean() + 0.3 * (o.max() - o.min()))
    assert moved >= 20 and on_square >= 50


def test_real_phantom_mask_moves_with_the_nodule() -> None:
    """On a phantom, the moved mask still covers the (brighter) nodule of the moved frame."""
    import cv2

    s = _xray(seed=4)
    assert s.mask is not None
    ring = cv2.dilate(s.mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) & ~s.mask
    contrast0 = s.image[s.mask].mean() - s.image[ring].mean()
    assert contrast0 > 0
    rng = _rng(1)
    for _ in range(30):
        out, m = aug.random_augment(
            s.image, s.mask, rng, modality="xray", model_size=256, strength=0.5
        )
        assert m is not None and m.dtype == np.bool_
        if not m.any():
            continue
        r = cv2.dilate(m.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool) & ~m
        o = out.astype(np.float64)
        assert o[m].mean() > o[r].mean(), "the mask no longer lies on the nodule"
        assert 0.6 * s.mask.sum() < m.sum() < 1.4 * s.mask.sum()


# ----------------------------------------------------------------------------- overlays


def test_collimation_changes_only_the_borders() -> None:
    frame = _xray().image
    for seed in range(10):
        out = aug.apply("collimation", frame, 0.1, modality="xray", model_size=256, rng=_rng(seed))
        changed = out != frame
        assert changed.any()
        np.testing.assert_array_equal(out[26:-26, 26:-26], frame[26:-26, 26:-26])
        # the first side is exactly 10 % deep: at least one full 26-px band changed
        assert changed.sum() >= 0.8 * 26 * 256
    us = _ultrasound().image
    out = aug.apply("collimation", us, 0.1, modality="ultrasound", model_size=128, rng=_rng(3))
    diff = out != us
    assert (out[diff] == 0).all()  # ultrasound: black border


def test_text_and_calipers_change_only_small_regions() -> None:
    for frame, modality in _frames()[:2]:
        for name in ("text", "calipers"):
            out = aug.apply(
                name, frame, 3.0, modality=modality, model_size=MODEL[modality], rng=_rng(7)
            )
            changed = out != frame
            assert 0 < changed.mean() < 0.2
            # what changed is drawn in the ink: bright
            peak = 4095 if frame.dtype == np.uint16 else 255
            assert out[changed].max() >= 0.5 * peak


def test_labels_carry_no_names() -> None:
    units = {"", "cm", "fps", "Hz", "MHz", "kV", "mAs", "dGycm"}
    rng = _rng(0)
    for modality in MODALITIES:
        for _ in range(300):
            text = aug._label(rng, modality)
            assert text and text.isascii() and len(text) < 40
            # device and acquisition data only: upper-case codes, numbers and units
            for word in text.split():
                letters = "".join(c for c in word if c.isalpha())
                assert letters.isupper() or letters in units, text


# ----------------------------------------------------------------------------- random chain


def test_random_augment_strength_zero_is_identity() -> None:
    s = _xray()
    out, m = aug.random_augment(
        s.image, s.mask, _rng(), modality="xray", model_size=256, strength=0.0
    )
    assert out is s.image and m is s.mask


def test_random_augment_deterministic_and_varied() -> None:
    for frame, modality in _frames():
        mask = np.zeros(frame.shape, bool)
        mask[100:120, 100:120] = True
        a = [
            aug.random_augment(frame, mask, _rng(11), modality=modality, model_size=MODEL[modality])
            for _ in range(2)
        ]
        np.testing.assert_array_equal(a[0][0], a[1][0])
        np.testing.assert_array_equal(a[0][1], a[1][1])
        rng = _rng(12)
        outs = [
            aug.random_augment(frame, mask, rng, modality=modality, model_size=MODEL[modality])[0]
            for _ in range(6)
        ]
        assert len({o.tobytes() for o in outs}) == 6
        for o in outs:
            assert o.shape == frame.shape
            assert o.dtype == (np.float32 if frame.dtype.kind == "f" else frame.dtype)
            if frame.dtype == np.uint16:
                assert int(o.max()) <= 4095
            if frame.dtype.kind == "f":
                assert 0.0 <= float(o.min()) and float(o.max()) <= 1.0


def test_random_augment_strength_scales_the_change() -> None:
    frame = _xray().image.astype(np.float64)

    def change(st: float) -> float:
        rng = _rng(3)
        d = [
            np.abs(
                aug.random_augment(frame, None, rng, modality="xray", model_size=256, strength=st)[
                    0
                ]
                - frame
            ).mean()
            for _ in range(30)
        ]
        return float(np.mean(d))

    assert 0 < change(0.3) < change(1.0)


def test_mask_is_converted_to_bool() -> None:
    frame, mask = _square()
    _, m = aug.random_augment(frame, mask.astype(np.uint8), _rng(), modality="xray", model_size=200)
    assert m is not None and m.dtype == np.bool_ and m.shape == frame.shape
    _, none = aug.random_augment(frame, None, _rng(), modality="xray", model_size=200)
    assert none is None


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "sharpen"},
        {"strength": -1.0},
        {"name": "blur", "strength": float("nan")},
        {"name": "flip", "strength": 1.5},
        {"name": "gamma", "strength": 0.0},
        {"modality": "ct"},
        {"model_size": 0},
        {"model_size": 256.0},
        {"name": "noise", "rng": None},
        {"frame": np.zeros((4, 4), np.uint16)},
        {"frame": np.zeros((32, 32, 3), np.uint8)},
        {"frame": np.zeros((32, 32), np.int32)},
        {"frame": np.full((32, 32), np.nan, np.float32)},
        {"frame": [[1, 2], [3, 4]]},
    ],
)
def test_apply_invalid_input(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {
        "name": "gamma",
        "frame": np.zeros((32, 32), np.uint16),
        "strength": 0.5,
        "modality": "xray",
        "model_size": 256,
        "rng": _rng(),
    }
    args.update(kwargs)
    with pytest.raises(me.InvalidInputError):
        aug.apply(
            args["name"],  # type: ignore[arg-type]
            args["frame"],  # type: ignore[arg-type]
            args["strength"],  # type: ignore[arg-type]
            modality=args["modality"],  # type: ignore[arg-type]
            model_size=args["model_size"],  # type: ignore[arg-type]
            rng=args["rng"],  # type: ignore[arg-type]
        )


def test_random_augment_invalid_input() -> None:
    frame = np.zeros((32, 32), np.uint8)
    bad = [
        {"strength": 3.0},
        {"strength": -0.1},
        {"modality": "mri"},
        {"rng": 7},
        {"mask": np.zeros((16, 16), bool)},
    ]
    for b in bad:
        kw: dict[str, object] = {
            "mask": None,
            "rng": _rng(),
            "modality": "ultrasound",
            "strength": 1.0,
        }
        kw.update(b)
        with pytest.raises(me.InvalidInputError):
            aug.random_augment(
                frame,
                kw["mask"],  # type: ignore[arg-type]
                kw["rng"],  # type: ignore[arg-type]
                modality=kw["modality"],  # type: ignore[arg-type]
                model_size=128,
                strength=kw["strength"],  # type: ignore[arg-type]
            )


def test_imports_without_tensorflow() -> None:
    code = (
        "import sys; import medimg_edge.training._augment as a; "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'; print(len(a.TRANSFORMS))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(len(aug.TRANSFORMS))


def test_ultrasound_black_outside_the_sector_stays_black() -> None:
    u = _ultrasound(4).image
    assert u.dtype == np.uint8
    rg = aug._Range(u)
    outside = aug._outside_fov(u, rg)
    assert outside is not None and 0.05 < outside.mean() < 0.9  # a convex sector
    for name in ("window", "gamma", "noise", "correlated_noise", "unsharp", "blur"):
        out = aug.apply(
            name, u, aug.STRENGTHS[name][0], modality="ultrasound", model_size=128, rng=_rng()
        )
        assert (out[outside] == 0).all(), name
        assert (out[~outside] != u[~outside]).any(), name
    rng = _rng(9)
    for _ in range(20):
        out, _ = aug.random_augment(u, None, rng, modality="ultrasound", model_size=128)
        # the corners (outside the sector) hold only black, labels or calipers: no noise field
        corner = out[-40:, :40]
        assert np.count_nonzero(corner) < 0.35 * corner.size


@pytest.mark.parametrize("sigma", [0.8, 2.5, 3.2, 4.0, 5.0, 9.0, 16.0])
def test_gaussian_filter_matches_the_exact_filter(sigma: float) -> None:
    import cv2

    rng = _rng(0)
    x = cv2.GaussianBlur(rng.standard_normal((512, 512)).astype(np.float32), (0, 0), 1.0)
    k = 2 * int(np.ceil(4 * sigma)) + 1
    ref = cv2.GaussianBlur(x, (k, k), sigma, borderType=cv2.BORDER_REFLECT_101)
    got = aug._gauss(x, sigma)
    c = slice(80, -80)
    err = np.abs(got[c, c] - ref[c, c]).max() / np.abs(ref[c, c]).max()
    assert err < 0.06


def test_mask_warp_over_its_box_equals_the_full_warp() -> None:
    import cv2

    rng = _rng(4)
    for _ in range(30):
        mask = np.zeros((300, 240), bool)
        y, x = int(rng.integers(0, 280)), int(rng.integers(0, 220))
        mask[y : y + int(rng.integers(1, 40)), x : x + int(rng.integers(1, 40))] = True
        m = aug._affine_matrix(mask.shape, float(rng.uniform(-8, 8)), *rng.uniform(-0.06, 0.06, 2))
        full = cv2.warpAffine(
            mask.view(np.uint8), m, (240, 300), flags=cv2.INTER_NEAREST, borderValue=0
        ).astype(bool)
        np.testing.assert_array_equal(aug._warp_mask(mask, m), full)
    empty = np.zeros((50, 50), bool)
    assert not aug._warp_mask(empty, aug._affine_matrix(empty.shape, 3.0, 0.0, 0.0)).any()


def test_strength_zero_returns_the_float64_frame_itself() -> None:
    f = _ultrasound().image.astype(np.float64) / 255.0
    out, m = aug.random_augment(f, None, _rng(), modality="ultrasound", model_size=128, strength=0)
    assert out is f and m is None


def test_deterministic_across_threads() -> None:
    """cv2's generator is per thread: seeding it from ``rng`` keeps workers reproducible."""
    from concurrent.futures import ThreadPoolExecutor

    frame = _xray().image

    def work(seed: int) -> list[np.ndarray]:
        rng = _rng(seed)
        return [
            aug.random_augment(frame, None, rng, modality="xray", model_size=256)[0]
            for _ in range(15)
        ]

    serial = [work(s) for s in range(4)]
    with ThreadPoolExecutor(2) as pool:
        threaded = list(pool.map(work, range(4)))
    for a, b in zip(serial, threaded, strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("shape", [(8, 8), (9, 13), (100, 300), (300, 100)])
def test_small_and_non_square_frames(shape: tuple[int, int]) -> None:
    rng = _rng(1)
    frame = (rng.random(shape) * 4095).astype(np.uint16)
    mask = np.zeros(shape, bool)
    mask[shape[0] // 3 : shape[0] // 2 + 1, shape[1] // 3 : shape[1] // 2 + 1] = True
    for modality in MODALITIES:
        for name in aug.TRANSFORMS:
            for s in aug.STRENGTHS[name]:
                out = aug.apply(name, frame, s, modality=modality, model_size=64, rng=rng)
                assert out.dtype == np.uint16 and int(out.max()) <= 4095
                if name != "resize_render":
                    assert out.shape == shape
        for _ in range(20):
            out, m = aug.random_augment(frame, mask, rng, modality=modality, model_size=64)
            assert out.shape == shape and m is not None and m.shape == shape
