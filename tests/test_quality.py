"""Image-quality gate ``medimg_edge.quality.assess``: issue codes on frames crafted from
real images (scikit-image camera, pydicom CT_small / MR_small), no issue on the clean
originals, measures against OpenCV / NumPy references, scale awareness, SIMD targets."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import medimg_edge as me
from medimg_edge.quality import ISSUE_CODES, MEASURES, THRESHOLDS, QualityReport

Q = me.quality
TARGETS = me.simd.supported_targets()


@pytest.fixture(scope="module")
def frames(real_images):
    """The clean real frames in their native types: camera uint8, CT / MR uint16 (12-bit
    nominal range: their values are 128-2191)."""
    return {
        "camera": real_images["camera"].astype(np.uint8),
        "ct": real_images["ct"].astype(np.uint16),
        "mr": real_images["mr"].astype(np.uint16),
    }


def top(frame):
    return 255 if frame.dtype == np.uint8 else 4095


def blurred(frame):
    # Gaussian kernel of known size: sigma 2 px (truncated at 4 sigma), reflect-101.
    out = cv2.GaussianBlur(frame.astype(np.float32), (17, 17), 2.0)
    return np.rint(out).astype(frame.dtype)


def noisy(frame):
    rng = np.random.default_rng(0)
    sigma = 0.1 * top(frame)  # 10 % of the nominal range
    return np.clip(frame + rng.normal(0.0, sigma, frame.shape), 0, top(frame)).astype(frame.dtype)


def saturated(frame):
    return np.clip(frame.astype(np.float64) * 1.8 * top(frame) / frame.max(), 0, top(frame)).astype(
        frame.dtype
    )


def dark(frame):
    return (frame.astype(np.float64) * 0.1).astype(frame.dtype)


def low_contrast(frame):
    mid = 0.45 * top(frame)
    span = 0.08 * top(frame)
    return (mid + span * frame.astype(np.float64) / frame.max()).astype(frame.dtype)


CRAFTED = {
    "blurred": blurred,
    "too_noisy": noisy,
    "saturated": saturated,
    "underexposed": dark,
    "low_contrast": low_contrast,
}


# ---------------------------------------------------------------------------------------
# Issue codes.
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("modality", [None, "ultrasound", "xray"])
def test_clean_real_images_pass(frames, real_images, modality):
    images = {**frames, **{f"{k}-float64": v for k, v in real_images.items()}}
    for name, frame in images.items():
        report = Q.assess(frame, modality=modality)
        assert report.ok, (name, modality, report.issues, report.measures)
        assert report.issues == ()


@pytest.mark.parametrize("code", list(CRAFTED))
@pytest.mark.parametrize("name", ["camera", "ct", "mr"])
def test_code_fires_on_crafted_frame(frames, code, name):
    frame = CRAFTED[code](frames[name])
    report = Q.assess(frame)
    assert code in report.issues, (report.issues, report.measures)
    assert not report.ok
    assert "blank" not in report.issues


@pytest.mark.parametrize("name", ["camera", "ct", "mr"])
def test_crafted_frames_fire_only_what_was_done(frames, name):
    f = frames[name]
    assert Q.assess(blurred(f)).issues == ("blurred",)
    assert Q.assess(noisy(f)).issues == ("too_noisy",)
    assert Q.assess(saturated(f)).issues == ("saturated",)
    assert "underexposed" in Q.assess(dark(f)).issues  # dark frames have little contrast too
    assert Q.assess(low_contrast(f)).issues == ("low_contrast",)


@pytest.mark.parametrize(
    "frame",
    [
        np.full((64, 80), 77, np.uint8),
        np.zeros((64, 80), np.uint8),
        np.full((33, 17), 4095, np.uint16),
        np.full((10, 10), -3.5),
        np.full((10, 10), 0.25, np.float32),
    ],
    ids=["grey", "black", "white16", "negative-float", "float"],
)
def test_blank_frames_report_only_blank(frame):
    report = Q.assess(frame)
    assert report.issues == ("blank",)
    assert report.measures["contrast_rms"] == 0.0


def test_blank_with_one_grey_level_of_noise(frames):
    rng = np.random.default_rng(1)
    frame = (100 + rng.integers(0, 2, (64, 64))).astype(np.uint8)  # std 0.5 / 255
    assert Q.assess(frame).issues == ("blank",)


def test_modality_thresholds_differ(frames):
    cam = frames["camera"]
    # 3 % of the frame clipped white: too much for ultrasound (2 %), fine for X-ray (25 %)
    frame = cam.copy()
    frame.flat[: frame.size * 3 // 100] = 255
    assert "saturated" in Q.assess(frame, modality="ultrasound").issues
    assert "saturated" not in Q.assess(frame, modality="xray").issues
    # 40 % black background (an ultrasound sector): underexposed for the generic gate only
    frame = cam.copy()
    frame[: cam.shape[0] * 2 // 5] = 0
    assert "underexposed" in Q.assess(frame).issues
    assert "underexposed" not in Q.assess(frame, modality="ultrasound").issues


def test_issue_order_and_codes_are_stable(frames):
    # float frame in [0, 1]: no integer rounding of the darkened, blurred pixels
    frame = blurred(frames["camera"]).astype(np.float32) * np.float32(0.1 / 255.0)
    issues = Q.assess(frame).issues
    assert list(issues) == [c for c in ISSUE_CODES if c in issues]
    assert {"blurred", "underexposed"} <= set(issues)
    assert ISSUE_CODES == (
        "blank",
        "blurred",
        "too_noisy",
        "saturated",
        "underexposed",
        "low_contrast",
    )


def test_thresholds_constant_matches_docstring_table():
    doc = Q.assess.__doc__
    rows = {
        "blank": "blank_contrast_rms",
        "blurred": "blurred_blur_effect",
        "too_noisy": "too_noisy_sigma",
        "saturated": "saturated_fraction",
        "underexposed": "underexposed_fraction",
    }
    for code, key in rows.items():
        line = next(ln for ln in doc.splitlines() if ln.strip().startswith(f"``{code}``"))
        numbers = [float(x) for x in re.findall(r"\s(\d+\.\d+)", line)]
        expected = [THRESHOLDS[m][key] for m in ("generic", "ultrasound", "xray")]
        assert numbers == expected, code
    assert set(THRESHOLDS) == {"generic", "ultrasound", "xray"}
    for t in THRESHOLDS.values():
        assert set(t) == set(THRESHOLDS["generic"])
    with pytest.raises(TypeError):
        THRESHOLDS["generic"]["too_noisy_sigma"] = 1.0  # type: ignore[index]


# ---------------------------------------------------------------------------------------
# Measures.
# ---------------------------------------------------------------------------------------


def blur_effect_reference(u):
    out = []
    for axis, ksize in ((1, (9, 1)), (0, (1, 9))):
        b = cv2.blur(u, ksize, borderType=cv2.BORDER_REFLECT_101)
        d = np.abs(np.diff(u, axis=axis))
        db = np.abs(np.diff(b, axis=axis))
        out.append(1.0 - np.maximum(d - db, 0.0).sum() / d.sum())
    return max(out)


@pytest.mark.parametrize("name", ["camera", "ct", "mr"])
def test_measures_match_references(frames, name):
    frame = frames[name]
    report = Q.assess(frame)
    m = report.measures
    assert list(m) == list(MEASURES)
    lo, hi = (0.0, 255.0) if name == "camera" else (0.0, 4095.0)
    assert (m["range_lo"], m["range_hi"]) == (lo, hi)
    u = (frame.astype(np.float64) - lo) / (hi - lo)
    p1, p5, p95, p99 = np.percentile(u, [1, 5, 95, 99])
    lap = cv2.Laplacian(u, cv2.CV_64F, ksize=1, borderType=cv2.BORDER_REFLECT_101)
    gx = cv2.Sobel(u, cv2.CV_64F, 1, 0, borderType=cv2.BORDER_REFLECT_101)
    gy = cv2.Sobel(u, cv2.CV_64F, 0, 1, borderType=cv2.BORDER_REFLECT_101)
    ref = {
        "mean": u.mean(),
        "contrast_rms": u.std(),
        "contrast_michelson": (p95 - p5) / (p95 + p5),
        "dynamic_range": p99 - p1,
        "p99": p99,
        "fraction_saturated": np.mean(frame >= hi),
        "fraction_underexposed": np.mean(frame <= lo),
        "noise_sigma": me.denoise.estimate_noise(frame) / (hi - lo),
        "sharpness_laplacian_var": lap.var(),
        "sharpness_tenengrad": np.mean(gx**2 + gy**2),
        "blur_effect": blur_effect_reference(u),
    }
    for key, value in ref.items():
        assert m[key] == pytest.approx(value, rel=1e-6, abs=1e-12), key


def test_scale_aware_across_dtypes(frames):
    cam = frames["camera"]
    as8 = Q.assess(cam)
    as_float = Q.assess(cam.astype(np.float32) / 255.0)
    as16 = Q.assess(cam.astype(np.uint16) * 257, value_range=(0, 65535))
    as_float255 = Q.assess(cam.astype(np.float64))
    for other in (as_float, as16, as_float255):
        assert other.issues == as8.issues
        for key in MEASURES:
            if key in ("range_lo", "range_hi"):
                continue
            assert other.measures[key] == pytest.approx(as8.measures[key], rel=1e-5, abs=1e-9), key


def test_uint16_bit_depth_detection():
    rng = np.random.default_rng(2)
    for bits in (12, 14, 16):
        frame = rng.integers(0, 2**bits, (40, 40)).astype(np.uint16)
        frame[0, 0] = 2**bits - 1
        assert Q.assess(frame).measures["range_hi"] == 2**bits - 1


def test_float_frame_outside_known_ranges_uses_its_own_range(real_images):
    hu = real_images["ct"] - 1024.0  # Hounsfield units: negative values
    report = Q.assess(hu)
    assert report.measures["range_lo"] == hu.min()
    assert report.measures["range_hi"] == hu.max()
    # exposure cannot be judged on a data-defined range
    assert "underexposed" not in Q.assess(hu * 0.01).issues
    assert "underexposed" in Q.assess(hu * 0.01 - hu.min() * 0.01, value_range=(0, 300)).issues


@pytest.mark.parametrize("target", TARGETS)
def test_every_simd_target_agrees(frames, target):
    frame = noisy(frames["ct"])
    base = Q.assess(frame)
    with me.simd.use_target(target):
        other = Q.assess(frame)
    assert other.issues == base.issues
    for key in MEASURES:
        assert other.measures[key] == pytest.approx(base.measures[key], rel=1e-5, abs=1e-12), key


# ---------------------------------------------------------------------------------------
# Report and validation.
# ---------------------------------------------------------------------------------------


def test_report_is_frozen_and_serialisable(frames):
    report = Q.assess(blurred(frames["camera"]), modality="xray")
    assert isinstance(report, QualityReport)
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.ok = True  # type: ignore[misc]
    d = report.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["issues"] == list(report.issues) and d["modality"] == "xray"
    assert d["ok"] is False and set(d["measures"]) == set(MEASURES)


@pytest.mark.parametrize(
    "call",
    [
        lambda: Q.assess(np.zeros((2, 10), np.uint8)),
        lambda: Q.assess(np.zeros((10, 10, 3), np.uint8)),
        lambda: Q.assess(np.zeros((10, 10), np.int16)),
        lambda: Q.assess(np.array([[np.inf] * 4] * 4)),
        lambda: Q.assess(None),
        lambda: Q.assess(np.zeros((5, 5)), modality="mri"),
        lambda: Q.assess(np.zeros((5, 5)), modality=3),
        lambda: Q.assess(np.zeros((5, 5)), value_range=(1, 1)),
        lambda: Q.assess(np.zeros((5, 5)), value_range=(0, np.nan)),
        lambda: Q.assess(np.zeros((5, 5)), value_range=5),
    ],
)
def test_invalid_inputs(call):
    with pytest.raises(me.InvalidInputError):
        call()


@given(
    st.sampled_from(["uint8", "uint16", "float32", "float64"]).flatmap(
        lambda dt: arrays(
            np.dtype(dt),
            st.tuples(st.integers(3, 12), st.integers(3, 12)),
            elements=(
                st.integers(0, np.iinfo(dt).max)
                if dt.startswith("uint")
                else st.floats(-1e6, 1e6, width=32 if dt == "float32" else 64)
            ),
        )
    ),
    st.sampled_from([None, "ultrasound", "xray"]),
)
def test_hypothesis_any_frame(frame, modality):
    report = Q.assess(frame, modality=modality)
    assert list(report.measures) == list(MEASURES)
    assert all(math.isfinite(v) for v in report.measures.values())
    assert set(report.issues) <= set(ISSUE_CODES)
    assert report.ok == (report.issues == ())
    assert 0.0 <= report.measures["blur_effect"] <= 1.0
    assert 0.0 <= report.measures["fraction_saturated"] <= 1.0


def test_fused_quality_stats_equal_the_separate_kernels(frames):
    """``_core.quality_stats`` (one GIL release per frame) returns exactly what
    ``summary``, ``sharpness`` and ``immerkaer_abs_sum`` return one by one."""
    from medimg_edge import _core
    from medimg_edge.quality import _QUANTILES

    for name, frame in frames.items():
        img = np.ascontiguousarray(frame, dtype=np.float32)
        if min(img.shape) < 3:
            continue
        lo, hi = 0.0, float(img.max()) if img.max() > 0 else 1.0
        s, q, sh, noise = _core.quality_stats(img, _QUANTILES, lo, hi)
        s1, _, q1 = _core.summary(img, None, 0, _QUANTILES, False, -1.0, -1.0, lo, hi)
        assert s == s1 and np.array_equal(q, q1), name
        assert sh == _core.sharpness(img), name
        assert noise == _core.immerkaer_abs_sum(img), name
    with pytest.raises(ValueError):
        _core.quality_stats(np.zeros((2, 9), np.float32), _QUANTILES, 0.0, 1.0)
