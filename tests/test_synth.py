"""Tests of the physics-based phantoms (medimg_edge.synth)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import medimg_edge as me
from medimg_edge.cli import main
from medimg_edge.io import read_image
from medimg_edge.synth import _ultrasound, _xray
from medimg_edge.synth._common import bbox_of
from medimg_edge.synth._dataset import sample_seed

RAYLEIGH_SNR = 1.0 / math.sqrt(4.0 / math.pi - 1.0)  # mean / std = 1.913


def _ring(mask: np.ndarray, inner: int, outer: int) -> np.ndarray:
    m = mask.astype(np.uint8)
    grow = cv2.dilate(m, np.ones((2 * outer + 1,) * 2, np.uint8)).astype(bool)
    near = cv2.dilate(m, np.ones((2 * inner + 1,) * 2, np.uint8)).astype(bool)
    return grow & ~near


def _interior(mask: np.ndarray, k: int = 3) -> np.ndarray:
    return cv2.erode(mask.astype(np.uint8), np.ones((2 * k + 1,) * 2, np.uint8)).astype(bool)


# ---- determinism, types, labels ---------------------------------------------------------


def test_labels() -> None:
    assert me.synth.LABELS == {
        "xray": ("normal", "nodule"),
        "ultrasound": ("normal", "cyst", "hypoechoic", "hyperechoic"),
    }


@pytest.mark.parametrize("fn", [me.synth.chest_xray, me.synth.ultrasound])
def test_deterministic(fn: Any) -> None:
    a, b, c = fn(11), fn(11), fn(12)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert a.params == b.params
    assert not np.array_equal(a.image, c.image)
    json.dumps(a.params)  # JSON-serialisable


def test_xray_types_and_bits() -> None:
    s = me.synth.chest_xray(0, size=128)
    assert s.image.dtype == np.uint16 and s.image.shape == (128, 128)
    assert s.modality == "xray" and 0 < int(s.image.max()) <= 4095
    s16 = me.synth.chest_xray(0, size=128, bits=16)
    assert int(s16.image.max()) > 4095
    s10 = me.synth.chest_xray(0, size=128, bits=10)
    assert int(s10.image.max()) <= 1023


def test_ultrasound_types() -> None:
    s = me.synth.ultrasound(0, size=96)
    assert s.image.dtype == np.uint8 and s.image.shape == (96, 96)
    assert s.modality == "ultrasound" and s.mask.dtype == np.bool_


@pytest.mark.parametrize("seed", range(6))
def test_xray_mask_bbox_lung(seed: int) -> None:
    for nodule in (True, False):
        s, maps = _xray._simulate(seed, nodule=nodule)
        assert s.label == ("nodule" if nodule else "normal")
        assert s.mask.any() == nodule
        assert s.bbox == bbox_of(s.mask)
        if nodule:
            assert maps["lung_field"][s.mask].all(), "nodule outside the lung field"
            r = s.params["nodule"]["radius_px"]
            assert _xray.NODULE_RADIUS_PX[0] <= r <= _xray.NODULE_RADIUS_PX[1]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("geometry", ["linear", "convex"])
@pytest.mark.parametrize("lesion", ["none", "cyst", "hypoechoic", "hyperechoic"])
def test_ultrasound_mask_bbox_sector(seed: int, geometry: str, lesion: str) -> None:
    s, maps = _ultrasound._simulate(seed, lesion=lesion, geometry=geometry)
    assert s.label == ("normal" if lesion == "none" else lesion)
    assert s.mask.any() == (lesion != "none")
    assert s.bbox == bbox_of(s.mask)
    assert maps.sector[s.mask].all()
    if lesion != "none":  # whole ellipse imaged: not cut by the image or sector border
        assert not _ring(s.mask, 0, 1)[~maps.sector].any()


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**64), size=st.integers(64, 160))
def test_random_seeds_consistent(seed: int, size: int) -> None:
    for s in (me.synth.chest_xray(seed, size=size), me.synth.ultrasound(seed, size=size)):
        assert s.image.shape == s.mask.shape == (size, size)
        assert s.label in me.synth.LABELS[s.modality]
        assert (s.label == "normal") == (s.bbox is None) == (not s.mask.any())
        assert s.bbox == bbox_of(s.mask)
        json.dumps(s.params)


# ---- ultrasound physics -----------------------------------------------------------------


def test_fully_developed_speckle_rayleigh() -> None:
    """Envelope normalised by its expected power is Rayleigh (Wagner et al. 1983)."""
    amps = []
    for seed in range(3):
        _, maps = _ultrasound._simulate(seed, geometry="linear", homogeneous=True, snr_db=60)
        a = maps.envelope / np.sqrt(maps.power)
        amps.append(a[8:-8, 8:-8])
    a = np.concatenate([x.ravel() for x in amps]).astype(np.float64)
    snr = a.mean() / a.std()
    assert abs(snr / RAYLEIGH_SNR - 1) < 0.05, snr
    assert abs((a**2).mean() / a.mean() ** 2 / (4 / math.pi) - 1) < 0.02
    # Kolmogorov-Smirnov distance to the Rayleigh CDF 1 - exp(-a^2) (E[A^2] = 1), on
    # samples decimated to roughly one per speckle cell.
    sub = np.sort(np.concatenate([x[::6, ::10].ravel() for x in amps]))
    cdf = 1.0 - np.exp(-(sub**2))
    emp = np.arange(1, sub.size + 1) / sub.size
    ks = float(np.max(np.maximum(np.abs(emp - cdf), np.abs(emp - 1.0 / sub.size - cdf))))
    assert ks < 1.36 / math.sqrt(sub.size) * 1.5, ks


def test_raw_envelope_not_normalised_also_rayleigh_over_short_depth() -> None:
    _, maps = _ultrasound._simulate(5, geometry="linear", homogeneous=True, snr_db=60)
    block = maps.envelope[100:116, 8:-8].astype(np.float64)  # ~1 dB depth trend at most
    assert abs(block.mean() / block.std() / RAYLEIGH_SNR - 1) < 0.08


def _big_lesion_seed(lesion: str, geometry: str, min_semi: float = 14.0) -> int:
    """First seed whose lesion at size 256 has a minor semi-axis of at least ``min_semi``."""
    for seed in range(200):
        les = _ultrasound._simulate(seed, size=64, lesion=lesion, geometry=geometry)[0]
        if les.params["lesion"]["semi_axes_px"][1] * 4 >= min_semi:
            return seed
    raise AssertionError("no large lesion in 200 seeds")


@pytest.mark.parametrize("geometry", ["linear", "convex"])
@pytest.mark.parametrize("lesion", ["cyst", "hypoechoic", "hyperechoic"])
def test_lesion_contrast(geometry: str, lesion: str) -> None:
    """Same seed with and without the lesion (same tissue, PSF and speckle): inside the
    lesion the envelope ratio is the drawn amplitude factor; the grey level moves the
    right way."""
    seed = _big_lesion_seed(lesion, geometry)
    s, maps = _ultrasound._simulate(seed, lesion=lesion, geometry=geometry)
    s0, maps0 = _ultrasound._simulate(seed, lesion="none", geometry=geometry)
    les = s.params["lesion"]
    inner = _interior(s.mask, max(3, math.ceil(2 * les["edge_px"])))
    assert inner.sum() > 50
    ratio = maps.envelope[inner].mean() / maps0.envelope[inner].mean()
    grey = s.image[inner].mean() - s0.image[inner].mean()
    amp = les["contrast"]
    if lesion == "cyst":
        assert amp == 0.0 and ratio < 0.15 and grey < -20
    else:
        assert 0.7 < ratio / amp < 1.4, (ratio, amp)
        expected_grey = 20 * math.log10(amp) * 255 / s.params["dynamic_range_db"]
        assert np.sign(grey) == np.sign(expected_grey)
        assert abs(grey) > 0.4 * abs(expected_grey)


def test_lesion_ranges() -> None:
    """Semi-axes 1.5-15 px at size 128 (log-uniform, scaled with size), contrast
    0.1-0.8 / 1.3-4, soft or sharp boundaries."""
    shapes = [_ultrasound._lesion_shape(np.random.default_rng(i), 128) for i in range(3000)]
    a = np.array([x["semi_a"] for x in shapes])
    b = np.array([x["semi_b"] for x in shapes])
    assert a.min() >= 1.5 and a.max() <= 15.0 and a.min() < 1.6 and a.max() > 14.0
    assert abs(np.median(a) / math.sqrt(1.5 * 15.0) - 1) < 0.06
    assert (b <= a).all() and (b >= 0.55 * a - 1e-9).all()
    hypo = np.array([x["hypo"] for x in shapes])
    hyper = np.array([x["hyper"] for x in shapes])
    assert hypo.min() >= 0.1 and hypo.max() <= 0.8 and hypo.max() > 0.7
    assert hyper.min() >= 1.3 and hyper.max() <= 4.0 and hyper.min() < 1.4
    edge = np.array([x["edge_px"] for x in shapes])
    assert (edge >= 0).all() and (edge <= 0.4 * b + 1e-9).all()
    assert 0.25 < (edge == 0).mean() < 0.45
    for seed in range(4):
        s = me.synth.ultrasound(seed, size=512, lesion="hypoechoic")
        sa, sb = s.params["lesion"]["semi_axes_px"]
        assert 6.0 <= sa <= 60.0 and sb <= sa
        assert 0.1 <= s.params["lesion"]["contrast"] <= 0.8


def test_lesion_edge_soft_or_sharp() -> None:
    """A sharp boundary changes the echogenicity only inside the mask; a soft one blends
    it into the surrounding tissue over a band of about ``edge_px``."""
    seen = set()
    for seed in range(60):
        s, m1 = _ultrasound._simulate(seed, lesion="hyperechoic", geometry="linear")
        les = s.params["lesion"]
        soft = les["edge_px"] >= 2.0
        if les["semi_axes_px"][1] < 6 or (les["edge_px"] != 0 and not soft) or soft in seen:
            continue
        _, m0 = _ultrasound._simulate(seed, lesion="none", geometry="linear")
        changed = np.abs(m1.echo / m0.echo - 1) > 0.01  # grid == image for linear at 256
        outside = changed & ~s.mask
        if soft:
            assert outside.sum() > 0.3 * les["edge_px"] * _ring(s.mask, 0, 1).sum()
        else:
            assert not outside.any()
            assert changed[_interior(s.mask, 1)].all()
        seen.add(soft)
        if len(seen) == 2:
            return
    raise AssertionError(f"found only {seen}")


def test_ultrasound_system_ranges() -> None:
    ps = [me.synth.ultrasound(i, size=64).params for i in range(40)]
    dr = [p["dynamic_range_db"] for p in ps]
    assert min(dr) >= 40 and max(dr) <= 75 and max(dr) - min(dr) > 20
    assert all(0.7 <= p["tgc_fraction"] <= 1.0 for p in ps)
    assert all(70 <= p["tissue_grey"] <= 170 for p in ps)
    assert all(0.7 <= p["sigma_axial_px"] <= 2.4 for p in ps)
    assert all(1.2 <= p["sigma_lateral_px"] <= 4.5 for p in ps)
    for p in ps:
        assert p["freq_mhz"] * p["depth_cm"] <= _ultrasound.MAX_ATTENUATION_DB + 1e-9
        if p["geometry"] == "convex":
            assert math.radians(22) <= p["half_angle_rad"] <= math.radians(38)
    assert len({round(p["freq_mhz"], 3) for p in ps}) > 30


def _lateral_correlation_length(env: np.ndarray) -> float:
    """Lag (px, interpolated) at which the lateral autocorrelation of the envelope falls
    to 0.5."""
    x = env - env.mean(axis=1, keepdims=True)
    denom = float((x * x).mean())
    prev = 1.0
    for lag in range(1, x.shape[1] // 4):
        rho = float((x[:, lag:] * x[:, :-lag]).mean()) / denom
        if rho < 0.5:
            return lag - 1 + (prev - 0.5) / (prev - rho)
        prev = rho
    return float(x.shape[1] // 4)


def test_ultrasound_blur_px_coarser_speckle_still_rayleigh() -> None:
    """blur_px widens the resolution cell (longer speckle correlation) before envelope
    detection; the speckle stays fully developed and the tissue is unchanged."""
    lengths = []
    for blur in (None, 2.0, 5.0):
        s, maps = _ultrasound._simulate(
            1, geometry="linear", homogeneous=True, snr_db=60, blur_px=blur
        )
        assert s.params["blur_px"] == blur
        a = (maps.envelope / np.sqrt(maps.power))[16:-16, 16:-16].astype(np.float64)
        assert abs(a.mean() / a.std() / RAYLEIGH_SNR - 1) < 0.1
        lengths.append(_lateral_correlation_length(a))
    assert lengths[0] < lengths[1] < lengths[2]
    _, m0 = _ultrasound._simulate(4, lesion="cyst", geometry="convex")
    _, m1 = _ultrasound._simulate(4, lesion="cyst", geometry="convex", blur_px=3.0)
    np.testing.assert_array_equal(m0.echo, m1.echo)
    g = me.synth.generate("ultrasound", 2, seed=0, size=64, blur_px=1.0)
    assert all(x.params["blur_px"] == 1.0 for x in g)


@pytest.mark.parametrize("geometry", ["linear", "convex"])
def test_ultrasound_large_size_renders(geometry: str) -> None:
    s, maps = _ultrasound._simulate(6, size=3072, lesion="hyperechoic", geometry=geometry)
    assert s.image.shape == s.mask.shape == (3072, 3072) and s.image.dtype == np.uint8
    assert s.params["grid"] == _ultrasound.GRID_MAX
    assert s.mask.any() and maps.sector[s.mask].all()
    assert (s.image[maps.sector] > 0).mean() > 0.9
    sa = s.params["lesion"]["semi_axes_px"][0]
    assert 1.5 * 24 <= sa <= 15 * 24
    inner = _interior(s.mask, max(3, math.ceil(2 * s.params["lesion"]["edge_px"])))
    ring = _ring(s.mask, 8, 40) & maps.sector
    if inner.sum() > 50:
        assert s.image[inner].mean() > s.image[ring].mean()


def test_convex_black_outside_sector() -> None:
    s, maps = _ultrasound._simulate(2, geometry="convex")
    assert not maps.sector.all() and maps.sector.mean() > 0.3
    assert (s.image[~maps.sector] == 0).all()
    assert (s.image[maps.sector] > 0).mean() > 0.9
    lin = me.synth.ultrasound(2, geometry="linear")
    assert (lin.image > 0).mean() > 0.95


def test_ultrasound_forcing_lesion_keeps_tissue() -> None:
    _, a = _ultrasound._simulate(4, lesion="none", geometry="linear")
    s, b = _ultrasound._simulate(4, lesion="hyperechoic", geometry="linear")
    far = ~cv2.dilate(s.mask.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    np.testing.assert_array_equal(a.echo[far], b.echo[far])


# ---- X-ray physics ----------------------------------------------------------------------


def _air(maps: dict[str, np.ndarray]) -> np.ndarray:
    return maps["p"] <= 1e-6  # outside the body: unattenuated beam (plus scatter)


@pytest.mark.parametrize("dose", [2e3, 2e4])
def test_xray_poisson_noise_scales_with_dose(dose: float) -> None:
    """In the air region var(S) = gain^2 q + sigma_e^2 = gain * mean(S) + sigma_e^2."""
    s, maps = _xray._simulate(1, dose=dose)
    air = _air(maps)
    assert air.sum() > 2000
    gain, sigma_e = s.params["gain"], s.params["sigma_e"]
    q = maps["expected"][air].astype(np.float64)
    resid = maps["signal"][air] - gain * q  # remove the slow scatter trend exactly
    predicted = gain * (gain * q.mean()) + sigma_e**2
    assert abs(resid.var() / predicted - 1) < 0.1
    assert abs(maps["signal"][air].mean() / (gain * q.mean()) - 1) < 0.01


def test_xray_lower_dose_noisier() -> None:
    rel = []
    for dose in (2e3, 2e4):
        s, maps = _xray._simulate(1, dose=dose)
        air = _air(maps)
        q = maps["expected"][air]
        resid = maps["signal"][air] - s.params["gain"] * q
        rel.append(resid.std() / (s.params["gain"] * q.mean()))
    assert rel[0] / rel[1] == pytest.approx(math.sqrt(10), rel=0.1)


@pytest.mark.parametrize("seed", [0, 7])
def test_nodule_attenuates_with_identical_anatomy(seed: int) -> None:
    s1, m1 = _xray._simulate(seed, nodule=True, dose=1e4)
    s0, m0 = _xray._simulate(seed, nodule=False, dose=1e4)
    np.testing.assert_allclose(m1["p"] - m1["p_nodule"], m0["p"], atol=1e-5)
    assert (m1["expected"][s1.mask] < m0["expected"][s1.mask]).all()
    inner = _interior(s1.mask, 1)
    assert s1.image[inner].mean() > s0.image[inner].mean()  # brighter in the log display
    assert s1.params["anatomy"] == s0.params["anatomy"]


def test_nodule_contrast_range_documented() -> None:
    nods = [me.synth.chest_xray(i, size=128, nodule=True).params["nodule"] for i in range(40)]
    cnrs = [n["cnr"] for n in nods]
    assert min(cnrs) > 0 and max(cnrs) < 1000
    solid = [n["detectability"] for n in nods if not n["ground_glass"]]
    glass = [n["detectability"] for n in nods if n["ground_glass"]]
    assert solid and glass
    assert np.median(glass) < np.median(solid)  # ground glass is the subtle class


def test_nodule_radius_density_ranges() -> None:
    """Radius log-uniform 1.5-15 px at 256 (scaled with size), density 0.3-3.0 with about
    65 % solid; drawn from the nodule stream only, so a small size is enough."""
    nods = [_xray._draw_nodule(np.random.default_rng(i), 0.5) for i in range(3000)]
    r = np.array([n["radius_px"] for n in nods]) / 0.5
    d = np.array([n["density"] for n in nods])
    gg = np.array([n["ground_glass"] for n in nods])
    assert r.min() >= 1.5 and r.max() <= 15.0
    assert r.min() < 1.6 and r.max() > 14.0
    # log-uniform: the median radius is the geometric mean sqrt(1.5 * 15) = 4.74
    assert abs(np.median(r) / math.sqrt(1.5 * 15.0) - 1) < 0.06
    assert d.min() >= 0.3 and d.max() <= 3.0
    assert np.array_equal(gg, d < 1.0)
    assert 0.60 <= 1 - gg.mean() <= 0.70
    assert all(n["edge_sigma_px"] > 0 for n in nods if n["ground_glass"])
    # the same through the public generator
    for seed in range(6):
        n = me.synth.chest_xray(seed, size=512, nodule=True).params["nodule"]
        assert 3.0 <= n["radius_px"] <= 30.0 and 0.3 <= n["density"] <= 3.0
        assert isinstance(n["ground_glass"], bool)


def test_ground_glass_edge_is_soft() -> None:
    """A ground-glass nodule's projected contrast has a smoothed edge: part of it lies
    outside the nominal shape, unlike a solid nodule."""
    found: dict[bool, float] = {}
    for seed in range(40):
        s, maps = _xray._simulate(seed, size=256, nodule=True, dose=1e5)
        n = s.params["nodule"]
        if n["radius_px"] < 5:
            continue
        outside = float(maps["p_nodule"][~s.mask].sum()) / float(maps["p_nodule"].sum())
        found.setdefault(n["ground_glass"], outside)
        if len(found) == 2:
            break
    assert found[False] < 0.02
    assert found[True] > 0.05


def test_dose_range_drawn() -> None:
    assert _xray.DOSE_RANGE == (1.0e3, 1.2e5)
    doses = np.array([me.synth.chest_xray(i, size=64).params["dose"] for i in range(60)])
    assert doses.min() >= 1e3 and doses.max() <= 1.2e5
    assert doses.min() < 5e3 and doses.max() > 2.5e4


def test_display_mapping_randomised_and_monotone() -> None:
    """Different seeds get different display mappings of the same physics; each mapping
    is monotone non-decreasing in the log response."""
    gammas, fractions = [], []
    for seed in range(12):
        s, maps = _xray._simulate(seed, size=128)
        disp = s.params["display"]
        gammas.append(disp["gamma"])
        fractions.append(disp["used_fraction"])
        lr = maps["log_response"].ravel()
        order = np.argsort(lr, kind="stable")
        assert (np.diff(s.image.ravel()[order].astype(np.int64)) >= 0).all()
        ramp = np.linspace(-0.2, 1.2, 500, dtype=np.float32)[None, :]
        out = _xray._display(ramp, disp, 12).astype(np.int64)
        assert (np.diff(out) >= 0).all() and out[0, -1] - out[0, 0] > 0.5 * 4095
    assert min(gammas) >= 0.6 and max(gammas) <= 1.6 and max(gammas) / min(gammas) > 1.5
    assert min(fractions) >= 0.55 and max(fractions) <= 1.0


def _edge_width(row: np.ndarray) -> float:
    """Equivalent width (px) of the steepest edge of a profile: step height / max slope."""
    slope = np.abs(np.diff(row))
    k = int(np.argmax(slope))
    step = abs(float(row[max(k - 12, 0)]) - float(row[min(k + 13, row.size - 1)]))
    return step / float(slope[k])


def test_xray_blur_px_widens_edge() -> None:
    """blur_px blurs the expected fluence before the noise: the air/body edge of the
    expected-quanta map widens with it, and the anatomy is unchanged."""
    widths = []
    for blur in (0.0, 2.0, 6.0):
        s, maps = _xray._simulate(2, size=256, blur_px=blur, dose=1e5)
        assert s.params["blur_px"] == blur and not s.params["blur_drawn"]
        row = maps["expected"][int(0.6 * 256), :128].astype(np.float64)  # air | body
        widths.append(_edge_width(row))
    assert widths[0] < widths[1] < widths[2]
    assert widths[2] > 2.0 * widths[0] and widths[2] - widths[0] > 4.0
    a, _ = _xray._simulate(2, size=128, blur_px=0.0)
    b, _ = _xray._simulate(2, size=128, blur_px=3.0)
    assert a.params["anatomy"] == b.params["anatomy"] and a.params["dose"] == b.params["dose"]
    assert not np.array_equal(a.image, b.image)
    assert me.synth.chest_xray(2, size=128).params["blur_drawn"] is True
    g = me.synth.generate("xray", 2, seed=0, size=64, blur_px=0.5)
    assert all(x.params["blur_px"] == 0.5 for x in g)


@pytest.mark.parametrize("sigma", [3.0, 9.0, 16.5])
@pytest.mark.parametrize("n", [600, 601])
def test_xray_fast_blur_matches_gaussian(sigma: float, n: int) -> None:
    """The decimated blur used for large sigmas matches cv2.GaussianBlur (widths,
    centroids) to within 3 % of the peak."""
    img = np.zeros((n, n), np.float32)
    img[100:110, 60:70] = 5.0
    img[n - 120 : n - 100, n - 90 : n - 70] = 3.0
    img[:, n // 2 :] += 1.0
    ref = cv2.GaussianBlur(img, (0, 0), sigma)
    out = _xray._blur(img, sigma)
    assert out.shape == img.shape and out.dtype == np.float32
    assert float(np.abs(out - ref).max()) < 0.03 * float(ref.max())
    col = np.arange(n)
    for x in (65, n - 80):
        c_ref = np.average(col, weights=ref[:, x] + 1e-9)
        c_out = np.average(col, weights=out[:, x] + 1e-9)
        assert abs(c_ref - c_out) < 0.1


def test_xray_large_size_renders() -> None:
    s = me.synth.chest_xray(5, size=3072, nodule=True)
    assert s.image.shape == s.mask.shape == (3072, 3072) and s.image.dtype == np.uint16
    r = s.params["nodule"]["radius_px"]
    assert 1.5 * 12 <= r <= 15 * 12
    assert s.mask.sum() > 0.5 * math.pi * (r * 0.75 * 0.85) ** 2


# ---- generate / write / CLI -------------------------------------------------------------


def test_generate_balance_and_seeds() -> None:
    xs = me.synth.generate("xray", 20, seed=3, size=64, positive_fraction=0.3)
    assert sum(s.label == "nodule" for s in xs) == 6
    us = me.synth.generate("ultrasound", 30, seed=3, size=64)
    counts = {lab: sum(s.label == lab for s in us) for lab in me.synth.LABELS["ultrasound"]}
    assert counts == {"normal": 15, "cyst": 5, "hypoechoic": 5, "hyperechoic": 5}
    again = me.synth.generate("ultrasound", 30, seed=3, size=64)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(us, again, strict=True))
    other = me.synth.generate("ultrasound", 30, seed=4, size=64)
    assert not {s.params["seed"] for s in us} & {s.params["seed"] for s in other}
    assert us[0].params["seed"] == sample_seed(3, 0)
    regen = me.synth.ultrasound(us[0].params["seed"], size=64, lesion=_lesion(us[0].label))
    np.testing.assert_array_equal(regen.image, us[0].image)
    assert me.synth.generate("xray", 0, seed=0) == []
    g = me.synth.generate("ultrasound", 4, seed=0, size=64, geometry="convex")
    assert all(s.params["geometry"] == "convex" for s in g)


def _lesion(label: str) -> str:
    return "none" if label == "normal" else label


def _read_manifest(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_write_png_roundtrip(tmp_path: Path) -> None:
    samples = me.synth.generate("xray", 4, seed=1, size=64) + me.synth.generate(
        "ultrasound", 4, seed=1, size=64
    )
    manifest = me.synth.write(samples, tmp_path)
    rows = _read_manifest(manifest)
    assert len(rows) == 8
    for k, (row, s) in enumerate(zip(rows, samples, strict=True)):
        assert row["path"] == f"{s.label}/{s.modality}_{k:06d}.png"
        img = cv2.imread(str(tmp_path / row["path"]), cv2.IMREAD_UNCHANGED)
        assert img.dtype == s.image.dtype
        np.testing.assert_array_equal(img, s.image)
        mask = cv2.imread(str(tmp_path / "masks" / row["path"]), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(mask, s.mask.astype(np.uint8) * 255)
        box = (row["y0"], row["x0"], row["y1"], row["x1"])
        assert box == (tuple(str(v) for v in s.bbox) if s.bbox else ("", "", "", ""))
        assert json.loads(row["params_json"]) == json.loads(json.dumps(s.params))


def test_write_npy_and_dicom(tmp_path: Path) -> None:
    pydicom = pytest.importorskip("pydicom")
    samples = me.synth.generate("xray", 2, seed=2, size=64) + me.synth.generate(
        "ultrasound", 2, seed=2, size=64
    )
    me.synth.write(samples, tmp_path / "n", fmt="npy")
    rows = _read_manifest(me.synth.write(samples, tmp_path / "d", fmt="dcm"))
    for row, s in zip(rows, samples, strict=True):
        arr = np.load(tmp_path / "n" / Path(row["path"]).with_suffix(".npy"))
        np.testing.assert_array_equal(arr, s.image)
        ds = pydicom.dcmread(tmp_path / "d" / row["path"])
        np.testing.assert_array_equal(ds.pixel_array, s.image)
        assert ds.Modality == ("DX" if s.modality == "xray" else "US")
        assert str(ds.PatientName) == "SYNTHETIC^PHANTOM"
        for tag in ("PatientBirthDate", "PatientSex", "PatientAge", "PatientAddress",
                    "InstitutionName", "ReferringPhysicianName", "OtherPatientIDs",
                    "AccessionNumber", "StudyDate"):  # fmt: skip
            assert tag not in ds
        assert ds.SOPInstanceUID.startswith("1.2.826.0.1.3680043.8.498.")
        assert read_image(tmp_path / "d" / row["path"]).dtype == s.image.dtype


def test_write_dicom_without_pydicom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(me.InvalidInputError, match="pip install pydicom"):
        me.synth.write([me.synth.chest_xray(0, size=64)], tmp_path, fmt="dcm")


def test_cli_synth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "set"
    code = main(
        ["synth", "--modality", "ultrasound", "-n", "8", "--seed", "0", "--size", "64",
         "--out", str(out), "--positive-fraction", "0.5", "--no-progress"]
    )  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "normal 4" in text and "8 samples" in text
    assert len(_read_manifest(out / "manifest.csv")) == 8
    assert main(["synth", "--modality", "xray", "-n", "2", "--size", "32", "--out", str(out)]) == 2


# ---- invalid arguments ------------------------------------------------------------------

INVALID = [
    lambda: me.synth.chest_xray(-1),
    lambda: me.synth.chest_xray(1.5),  # type: ignore[arg-type]
    lambda: me.synth.chest_xray(0, size=63),
    lambda: me.synth.chest_xray(0, size=4097),
    lambda: me.synth.chest_xray(0, blur_px=-1.0),
    lambda: me.synth.chest_xray(0, blur_px=float("nan")),
    lambda: me.synth.chest_xray(0, blur_px=100.0),
    lambda: me.synth.chest_xray(0, blur_px="wide"),  # type: ignore[arg-type]
    lambda: me.synth.chest_xray(0, bits=9),
    lambda: me.synth.chest_xray(0, bits=17),
    lambda: me.synth.chest_xray(0, dose=0),
    lambda: me.synth.chest_xray(0, dose=-5.0),
    lambda: me.synth.chest_xray(0, dose=float("nan")),
    lambda: me.synth.chest_xray(0, nodule="yes"),  # type: ignore[arg-type]
    lambda: me.synth.chest_xray(0, opacity=1),  # type: ignore[arg-type]
    lambda: me.synth.ultrasound(0, lesion="tumour"),
    lambda: me.synth.ultrasound(0, geometry="phased"),
    lambda: me.synth.ultrasound(0, snr_db=float("inf")),
    lambda: me.synth.ultrasound(0, size=10),
    lambda: me.synth.ultrasound(0, size=4097),
    lambda: me.synth.ultrasound(0, blur_px=-0.5),
    lambda: me.synth.ultrasound(0, blur_px=float("inf")),
    lambda: me.synth.ultrasound(0, blur_px=65.0),
    lambda: me.synth.generate("mri", 2, seed=0),
    lambda: me.synth.generate("xray", -1, seed=0),
    lambda: me.synth.generate("xray", 2, seed=0, positive_fraction=1.5),
    lambda: me.synth.generate("xray", 2, seed=0, nodule=True),
    lambda: me.synth.generate("ultrasound", 2, seed=0, dose=3.0),
    lambda: me.synth.generate("ultrasound", 2, seed=0, geometry="sector"),
    lambda: me.synth.write([me.synth.chest_xray(0, size=64)], "/tmp", fmt="jpg"),
    lambda: me.synth.write(["not a sample"], "/tmp"),  # type: ignore[list-item]
]


@pytest.mark.parametrize("call", INVALID)
def test_invalid_arguments(call: Any) -> None:
    with pytest.raises(me.InvalidInputError):
        call()
