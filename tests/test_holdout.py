"""Hold-out phantom families (issue 14, item 2): contract, determinism and physics checks."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from medimg_edge import InvalidInputError, holdout
from medimg_edge.holdout import _bmode_points as bm
from medimg_edge.holdout import _chest_anatomy as ca
from medimg_edge.holdout import _chest_voxel as cv
from medimg_edge.synth import LABELS, Sample


def _check_contract(s: Sample, modality: str, size: int, dtype: type) -> None:
    assert isinstance(s, Sample)
    assert s.modality == modality
    assert s.label in LABELS[modality]
    assert s.image.shape == (size, size) and s.image.dtype == dtype
    assert s.mask.shape == (size, size) and s.mask.dtype == np.bool_
    json.dumps(s.params)  # JSON-serialisable
    if s.label == "normal":
        assert not s.mask.any() and s.bbox is None
    else:
        ys, xs = np.nonzero(s.mask)
        assert s.bbox == (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)


# ----------------------------------------------------------------------------- X-ray
@pytest.mark.parametrize(
    ("seed", "size", "nodule"), [(0, 256, True), (1, 256, False), (2, 384, True)]
)
def test_xray_contract(seed: int, size: int, nodule: bool) -> None:
    s = holdout.chest_xray(seed, size=size, nodule=nodule)
    _check_contract(s, "xray", size, np.uint16)
    assert s.label == ("nodule" if nodule else "normal")
    assert int(s.image.max()) <= (1 << s.params["bits_stored"]) - 1
    assert s.params["bits_stored"] in (12, 14)
    if nodule:
        for key in ("diameter_mm", "radius_px", "density", "contrast_log", "cnr"):
            assert key in s.params
        assert 5.0 <= s.params["diameter_mm"] <= 30.0


def test_xray_polarity_bone_bright_lung_dark() -> None:
    r = cv.render_chest(3, size=256, nodule=False)
    img = r.sample.image.astype(float)
    lung = r.lung_footprint & r.body_footprint
    outside = ~r.body_footprint
    spine = np.zeros_like(lung)
    spine[60:180, 122:134] = True  # the midline column (spine + mediastinum)
    assert img[outside].mean() < img[lung].mean() < img[spine & ~lung].mean()


def test_xray_deterministic_and_seed_dependent() -> None:
    a = holdout.chest_xray(7, size=256)
    b = holdout.chest_xray(7, size=256)
    c = holdout.chest_xray(8, size=256)
    assert np.array_equal(a.image, b.image) and a.params == b.params and a.label == b.label
    assert np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.image, c.image)


def test_xray_nodule_and_normal_share_anatomy() -> None:
    pos = cv.render_chest(11, size=256, nodule=True)
    neg = cv.render_chest(11, size=256, nodule=False)
    diff = np.abs(pos.log_expected - neg.log_expected)
    y0, x0, y1, x1 = pos.sample.bbox  # type: ignore[misc]
    pad = 12
    far = np.ones_like(diff, bool)
    far[max(y0 - pad, 0) : y1 + pad, max(x0 - pad, 0) : x1 + pad] = False
    assert diff[~far].max() > 10 * np.median(diff[far]) + 1e-3
    assert np.median(diff[far]) < 2e-3  # only scatter changes away from the nodule


@pytest.mark.parametrize("seed", [0, 5, 9, 21])
def test_xray_nodule_inside_lung(seed: int) -> None:
    r = cv.render_chest(seed, size=256, nodule=True)
    m = r.sample.mask
    assert m.any()
    assert (m & r.lung_footprint).sum() == m.sum()
    assert (m & r.body_footprint).sum() == m.sum()


def test_xray_radius_scales_with_size() -> None:
    small = holdout.chest_xray(4, size=256, nodule=True)
    big = holdout.chest_xray(4, size=1024, nodule=True)
    assert small.params["diameter_mm"] == big.params["diameter_mm"]
    assert big.params["radius_px"] == pytest.approx(4 * small.params["radius_px"], rel=1e-3)
    area_ratio = big.mask.sum() / small.mask.sum()
    assert area_ratio == pytest.approx(16.0, rel=0.15)


def _voxel_sphere(centre_zyx: tuple[float, float, float], radius: float) -> np.ndarray:
    z, y, x = ca._axes()
    d = np.sqrt(
        (z[:, None, None] - centre_zyx[0]) ** 2
        + (y[None, :, None] - centre_zyx[1]) ** 2
        + (x[None, None, :] - centre_zyx[2]) ** 2
    )
    return ca._occ(radius - d)


def test_ray_sum_of_uniform_sphere_matches_chord_length() -> None:
    radius = 60.0
    proj = cv.project_volume(_voxel_sphere((0.0, 0.0, 0.0), radius), cone=False)
    _, y, x = ca._axes()
    r = np.sqrt(y[:, None] ** 2 + x[None, :] ** 2)
    chord_cm = 2.0 * np.sqrt(np.clip(radius**2 - r**2, 0, None)) / 10.0
    core = r < 0.85 * radius
    err = np.abs(proj[core] - chord_cm[core])
    assert err.max() < 0.05 * 2 * radius / 10.0  # within 5 % of the diameter everywhere
    assert np.abs(proj[core].sum() / chord_cm[core].sum() - 1.0) < 0.01
    # the total ray sum is the sphere's volume (cm^3 per grid pixel area)
    vol_cm3 = 4.0 / 3.0 * math.pi * (radius / 10.0) ** 3
    assert proj.sum() * (ca.DX / 10.0) * (ca.DY / 10.0) == pytest.approx(vol_cm3, rel=0.02)


def test_cone_beam_magnifies_posterior_structures() -> None:
    radius, z_post = 25.0, 100.0
    centre = (z_post, 0.0, 60.0)
    proj = cv.project_volume(_voxel_sphere(centre, radius), cone=True)
    s = cv.SOD_C / (cv.SOD_C - z_post)
    _, y, x = ca._axes()
    w = proj / proj.sum()
    x_c = float((w.sum(axis=0) * x).sum())
    assert x_c == pytest.approx(60.0 * s, rel=0.01)
    y_c = float((w.sum(axis=1) * y).sum())
    r2 = (x[None, :] - x_c) ** 2 + (y[:, None] - y_c) ** 2
    r_est = math.sqrt(2.5 * float((w * r2).sum()))  # <r^2> = 2 R^2 / 5 for a ball
    assert r_est == pytest.approx(radius * s, rel=0.02)
    assert s > 1.05


def test_analytic_nodule_chord_conserves_volume() -> None:
    size = 1024
    semi = (6.0, 5.0, 7.0)
    chord, _box, foot, mag = cv._nodule_chord(
        size, np.array([-20.0, 10.0, 40.0]), semi, 0.4, (0, 0)
    )
    pitch_cm = cv.DET_MM / size / 10.0
    vol = chord.sum() * pitch_cm**2  # cm^3 scaled by the in-plane magnification^2
    expected = 4.0 / 3.0 * math.pi * np.prod(semi) / 1000.0 * mag**2
    assert vol == pytest.approx(expected, rel=0.02)
    assert chord.max() == pytest.approx(2 * semi[2] / 10.0, rel=0.02)
    assert foot.sum() * (cv.DET_MM / size) ** 2 == pytest.approx(
        math.pi * semi[0] * semi[1] * mag**2, rel=0.03
    )


def test_polyenergetic_beam_hardening() -> None:
    t = np.array([2.0, 10.0, 25.0])
    mu_eff = -np.log(cv.detected_fraction(t, 0.0)) / t
    assert np.all(np.diff(mu_eff) < 0)  # effective attenuation falls with thickness
    hard = -np.log(cv.detected_fraction(10.0, 0.0, kvp=125.0))
    soft = -np.log(cv.detected_fraction(10.0, 0.0, kvp=100.0))
    assert hard < soft
    # bone attenuates more than the same mass of soft tissue
    assert cv.detected_fraction(0.0, 2.0) < cv.detected_fraction(2.0, 0.0)


def test_xray_higher_dose_lower_noise() -> None:
    sig = []
    for dose in (4e4, 6.4e5):
        r = cv.render_chest(2, size=256, nodule=False, overrides={"dose": dose, "electronic": 1.0})
        lung = r.lung_footprint & r.body_footprint
        sig.append(float((r.log_signal - r.log_expected)[lung].std()))
    assert sig[0] / sig[1] == pytest.approx(4.0, rel=0.2)  # quantum-limited: sqrt(16)


def test_light_spread_correlates_the_noise_at_fine_pitch() -> None:
    r = cv.render_chest(6, size=2048, nodule=False, overrides={"scintillator": "GOS"})
    noise = (r.log_signal - r.log_expected)[700:1300, 500:800]
    rho = np.corrcoef(noise[:, :-1].ravel(), noise[:, 1:].ravel())[0, 1]
    r512 = cv.render_chest(6, size=512, nodule=False, overrides={"scintillator": "GOS"})
    n512 = (r512.log_signal - r512.log_expected)[175:325, 125:200]
    rho512 = np.corrcoef(n512[:, :-1].ravel(), n512[:, 1:].ravel())[0, 1]
    assert rho > 0.3 and rho > rho512 + 0.15


# ----------------------------------------------------------------------------- ultrasound
@pytest.mark.parametrize("lesion", ["none", "cyst", "hypoechoic", "hyperechoic"])
def test_us_contract(lesion: str) -> None:
    r = bm.render_ultrasound(3, size=256, lesion=lesion)
    s = r.sample
    _check_contract(s, "ultrasound", 256, np.uint8)
    assert s.label == ("normal" if lesion == "none" else lesion)
    assert not s.image[~r.sector].any()  # black outside the field of view
    assert (s.mask & r.sector).sum() == s.mask.sum()
    if lesion != "none":
        assert {"diameter_mm", "cnr", "radius_px"} <= set(s.params)


@pytest.mark.parametrize("probe", ["convex", "phased", "linear"])
def test_us_geometries(probe: str) -> None:
    r = bm.render_ultrasound(5, size=192, lesion="cyst", overrides={"probe": probe})
    assert r.sample.params["probe"] == probe
    # the image-space mask sits on the anechoic region simulated in line space
    p = r.sample.params
    assert p["mean_inside"] < 0.65 * p["mean_ring"]  # misaligned it would be ~1
    frac = r.sector.mean()
    assert 0.3 < frac < 0.97
    if probe == "linear":
        cols = r.sector.any(axis=0)
        rows = r.sector.any(axis=1)
        assert r.sector[np.ix_(rows, cols)].all()  # a rectangle
    else:
        assert not r.sector[0, :5].any() and not r.sector[0, -5:].any()  # a sector


def test_us_deterministic() -> None:
    a = holdout.ultrasound(12, size=256)
    b = holdout.ultrasound(12, size=256)
    c = holdout.ultrasound(13, size=256)
    assert np.array_equal(a.image, b.image) and a.params == b.params
    assert not np.array_equal(a.image, c.image)


def _homogeneous_envelope(density: float, seed: int) -> tuple[np.ndarray, bm.Probe]:
    probe = bm.Probe("linear", 5.0, 0.6, 40.0, 0.0, 40.0, 0.0, 20.0, 12.0, 200)
    shape = (probe.n_lines, probe.n_samples)
    rf, _ = bm.simulate_rf(
        probe,
        np.ones(shape, np.float32),
        np.full(shape, density, np.float32),
        np.zeros(shape, np.float32),
        np.random.default_rng(seed),
    )
    return bm.envelope(rf, probe), probe


def test_speckle_rayleigh_at_high_density() -> None:
    env, probe = _homogeneous_envelope(100.0, 0)  # fully developed: >> 10 per cell
    k = int(probe.focus / probe.dz)
    region = env[20:-20, k - 150 : k + 150]
    snr = region.mean() / region.std()
    assert snr == pytest.approx(math.sqrt(math.pi / (4 - math.pi)), abs=0.08)  # 1.91


def test_speckle_non_rayleigh_at_low_density() -> None:
    env, probe = _homogeneous_envelope(0.15, 1)
    k = int(probe.focus / probe.dz)
    region = env[20:-20, k - 150 : k + 150]
    snr = region.mean() / region.std()
    assert snr < 1.5  # partially developed (K-distributed) speckle


def test_hilbert_envelope_of_a_tone_burst() -> None:
    n = 1024
    t = np.arange(n)
    env_true = np.exp(-0.5 * ((t - 500) / 60.0) ** 2)
    rf = (env_true * np.cos(2 * np.pi * t / 8.0)).astype(np.float32)[None, :]
    env = bm.envelope(rf)[0]
    assert np.max(np.abs(env - env_true)) < 0.02


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cyst_dark_with_posterior_enhancement(seed: int) -> None:
    r = bm.render_ultrasound(
        seed, size=256, lesion="cyst", overrides={"probe": "linear", "vessels": False}
    )
    s = r.sample
    img = s.image.astype(float)
    y0, x0, y1, x1 = s.bbox  # type: ignore[misc]
    h, w = y1 - y0, x1 - x0
    ring = np.zeros_like(s.mask)
    ring[max(y0 - h // 2, 0) : y1 + h // 2, max(x0 - w, 0) : x1 + w] = True
    ring &= ~s.mask & r.sector
    assert img[s.mask].mean() < 0.6 * img[ring].mean()
    # below the cyst vs the same depth beside it
    b0, b1 = y1 + 2, min(y1 + 2 + 2 * h, 256)
    assert b1 - b0 >= 4  # the placement keeps room below the lesion
    below = img[b0:b1, x0 + w // 4 : x1 - w // 4]
    side_cols = [c for c in range(256) if abs(c - (x0 + x1) / 2) > 1.5 * w and r.sector[b0, c]]
    side = img[b0:b1][:, side_cols]
    assert below.mean() > side.mean() + 4.0


def test_cyst_attenuation_is_the_cause_of_the_enhancement() -> None:
    probe = bm.Probe("linear", 5.0, 0.6, 50.0, 0.0, 40.0, 0.0, 25.0, 12.0, 200)
    shape = (probe.n_lines, probe.n_samples)
    sigma = np.ones(shape, np.float32)
    alpha = np.full(shape, 0.7, np.float32)
    alpha[80:120, 300:900] = 0.0  # a non-attenuating column (fluid)
    rf, _ = bm.simulate_rf(
        probe, sigma, np.full(shape, 20.0, np.float32), alpha, np.random.default_rng(3)
    )
    env = bm.envelope(rf, probe)
    behind = env[85:115, 1100:1500].mean()
    beside = env[10:60, 1100:1500].mean()
    assert behind / beside == pytest.approx(
        math.exp(2 * 0.7 / 8.686 / 10 * 5.0 * 600 * probe.dz), rel=0.25
    )


# ----------------------------------------------------------------------------- generate
def test_generate_balanced_and_reproducible() -> None:
    xs = holdout.generate("ultrasound", 6, seed=3, size=160, positive_fraction=0.5)
    assert [s.modality for s in xs] == ["ultrasound"] * 6
    labels = [s.label for s in xs]
    assert labels.count("normal") == 3
    assert len({lab for lab in labels if lab != "normal"}) == 3  # one of each lesion
    again = holdout.generate("ultrasound", 6, seed=3, size=160, positive_fraction=0.5)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(xs, again, strict=True))
    xr = holdout.generate("xray", 3, seed=1, size=128, positive_fraction=1.0)
    assert [s.label for s in xr] == ["nodule"] * 3
    assert holdout.generate("xray", 0, seed=1) == []


# ----------------------------------------------------------------------------- invalid input
@pytest.mark.parametrize("seed", [-1, 1.5, True, "3", None])
def test_invalid_seed(seed: object) -> None:
    with pytest.raises(InvalidInputError, match="seed"):
        holdout.chest_xray(seed, size=256)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="seed"):
        holdout.ultrasound(seed)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, 100, 5000, 256.0, "256"])
def test_invalid_size(size: object) -> None:
    with pytest.raises(InvalidInputError, match="size"):
        holdout.chest_xray(0, size=size)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="size"):
        holdout.ultrasound(0, size=size)  # type: ignore[arg-type]


def test_invalid_options() -> None:
    with pytest.raises(InvalidInputError, match="nodule"):
        holdout.chest_xray(0, size=256, nodule="yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="lesion"):
        holdout.ultrasound(0, lesion="tumour")
    with pytest.raises(InvalidInputError, match="modality"):
        holdout.generate("ct", 2, seed=0)
    with pytest.raises(InvalidInputError, match="n must"):
        holdout.generate("xray", -1, seed=0)
    for frac in (1.5, -0.1, float("nan"), "half"):
        with pytest.raises(InvalidInputError, match="positive_fraction"):
            holdout.generate("xray", 2, seed=0, positive_fraction=frac)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="overrides"):
        cv.render_chest(0, size=256, overrides={"bogus": 1})
    with pytest.raises(InvalidInputError, match="overrides"):
        bm.render_ultrasound(0, overrides={"bogus": 1})
    with pytest.raises(InvalidInputError, match="probe"):
        bm.render_ultrasound(0, overrides={"probe": "annular"})
    with pytest.raises(InvalidInputError, match="dose"):
        cv.render_chest(0, size=256, overrides={"dose": -5.0})
    with pytest.raises(InvalidInputError, match="kvp"):
        cv.render_chest(0, size=256, overrides={"kvp": 300.0})
    with pytest.raises(InvalidInputError, match="shear"):
        cv.render_chest(0, size=256, overrides={"shear": 0.1})
    with pytest.raises(InvalidInputError, match="scintillator"):
        cv.render_chest(0, size=256, overrides={"scintillator": "Se"})
