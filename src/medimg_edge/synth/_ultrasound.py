"""B-mode ultrasound phantom: fully developed speckle, PSF, attenuation, TGC, scan conversion.

The simulation runs on a (depth sample, scan line) grid.  Tissue is a map of mean
backscattered power ("echogenicity") with a few classes: skin, subcutaneous fat with a
bright fascia, and a parenchyma made of smooth random regions of three echogenicities;
optionally an elliptical lesion (anechoic cyst, hypoechoic or hyperechoic solid mass).
Scatterers are a dense complex Gaussian random field weighted by the square root of the
local echogenicity: the limit of many randomly placed scatterers per resolution cell, so
the envelope has fully developed speckle with Rayleigh statistics (Burckhardt [1]_;
Wagner et al. [2]_: mean / standard deviation = 1.91, ``E[A^2] / E[A]^2 = 4 / pi``).
In the fully developed regime the scatterer density and amplitude only act through their
product (the mean power), which is what the tissue classes vary.

Imaging follows the linear-systems model of Field II (Jensen [3]_) in the complex
baseband (IQ) domain: the weighted scatterers are convolved with a separable, spatially
invariant complex PSF (axial: Gaussian-enveloped pulse with a small residual demodulation
frequency; lateral: Gaussian beam profile) using :func:`cv2.sepFilter2D`.  Round-trip
attenuation ``exp(-2 alpha f z)`` is integrated along each scan line from a map of
attenuation coefficients (a cyst attenuates almost nothing, hence posterior acoustic
enhancement; solid masses attenuate more).  Complex white electronic noise (set by
``snr_db`` at the deepest depth) is added before the time-gain compensation, which
undoes only a fraction (75-95 %) of the nominal attenuation, so a residual depth trend
remains and deep noise is amplified.  The envelope ``|IQ|`` is log-compressed to a
50-60 dB dynamic range and quantised to 8 bits.

``geometry="linear"``: the grid is the image (rectangular field of view).
``geometry="convex"``: the grid is (radius, angle) of a curved array; the envelope is
scan-converted to Cartesian pixels with :func:`cv2.remap` (bilinear); outside the sector
the image is 0.  Lesions are ellipses in final image coordinates, evaluated at the
Cartesian position of each grid sample, so the mask is exact in the output image.

References
----------
.. [1] C. B. Burckhardt, "Speckle in ultrasound B-mode scans", *IEEE Trans. Sonics
   Ultrason.* 25(1):1-6, 1978.
.. [2] R. F. Wagner, S. W. Smith, J. M. Sandrik, H. Lopez, "Statistics of speckle in
   ultrasound B-scans", *IEEE Trans. Sonics Ultrason.* 30(3):156-163, 1983.
.. [3] J. A. Jensen, "Field: a program for simulating ultrasound systems", *Med. Biol.
   Eng. Comput.* 34(Suppl. 1):351-353, 1996.
.. [4] T. L. Szabo, *Diagnostic Ultrasound Imaging: Inside Out*, 2nd ed., Academic Press,
   2014 (attenuation 0.5 dB/cm/MHz in soft tissue, TGC, log compression).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from .._validation import check_float
from ._common import F32, Sample, bbox_of, check_seed, check_size, choice_or, options, smooth_field
from ._common import streams as _streams
from ._common import uniform as _u

__all__ = ["GEOMETRIES", "LESIONS", "SNR_RANGE_DB", "ultrasound"]

#: Accepted values of ``lesion`` (``"none"`` gives the label ``"normal"``).
LESIONS = ("none", "cyst", "hypoechoic", "hyperechoic")
GEOMETRIES = ("linear", "convex")
#: Range of ``snr_db`` (tissue-to-electronic-noise power at the deepest depth) drawn
#: uniformly when not given.
SNR_RANGE_DB = (10.0, 30.0)
#: Nominal soft-tissue attenuation (dB / cm / MHz), Szabo [4]_.
ALPHA_TISSUE = 0.5


@dataclass(frozen=True)
class USMaps:
    """Intermediate results of one ultrasound simulation (for tests and debugging).

    ``envelope`` is ``|IQ|`` before log compression and ``power`` its expected square
    ``E|IQ|^2`` (both in final image coordinates, 0 outside the sector); ``sector`` is the
    imaged area and ``echo`` the echogenicity map on the simulation grid.
    """

    envelope: F32
    power: F32
    sector: npt.NDArray[np.bool_]
    echo: F32


def _tissue(rng: np.random.Generator, nz: int, nl: int) -> tuple[F32, F32, dict[str, Any]]:
    """Echogenicity and attenuation (dB/cm/MHz) maps on the (depth, line) grid."""
    depth = (np.arange(nz, dtype=np.float32) / nz)[:, None]
    wave = smooth_field(rng.standard_normal((1, 6), dtype=np.float32), (1, nl))[0][None, :]
    skin = _u(rng, 0.02, 0.04)
    fat = skin + _u(rng, 0.06, 0.16) + 0.01 * wave
    fascia_w = _u(rng, 0.008, 0.015)
    levels = np.array([_u(rng, 0.5, 0.8), 1.0, _u(rng, 1.3, 1.8)], np.float32)
    field = smooth_field(rng.standard_normal((max(3, nz // 48),) * 2, dtype=np.float32), (nz, nl))
    cls = np.digitize(field, np.array([-0.8, 0.8], np.float32))
    echo = levels[cls]
    echo = np.where(depth < fat, _u(rng, 0.35, 0.6), echo)
    echo = np.where(np.abs(depth - fat) < fascia_w, _u(rng, 2.5, 4.0), echo)
    echo = np.where(depth < skin, _u(rng, 1.5, 2.5), echo).astype(np.float32)
    alpha = np.where(depth < fat, 0.6, ALPHA_TISSUE) * np.ones((1, nl), np.float32)
    info = {"skin": skin, "fat_mean": float(np.mean(fat)), "levels": levels.tolist()}
    return echo, alpha.astype(np.float32), info


def _geometry(rng: np.random.Generator, size: int, kind: str) -> dict[str, Any]:
    """Probe and field-of-view parameters (all drawn, whatever ``kind`` is)."""
    half_angle = math.radians(_u(rng, 28.0, 34.0))
    r0_frac = _u(rng, 0.12, 0.22)
    convex_depth_cm = _u(rng, 12.0, 18.0)
    linear_depth_cm = _u(rng, 3.5, 6.0)
    if kind == "linear":
        return {"geometry": "linear", "depth_cm": linear_depth_cm, "freq_mhz": 7.5}
    top = 2.0
    r0 = r0_frac * size
    radius = min(0.49 * size / math.sin(half_angle), size - 2.0 - top + r0)
    return {
        "geometry": "convex",
        "depth_cm": convex_depth_cm,
        "freq_mhz": 3.5,
        "half_angle_rad": half_angle,
        "r0_px": r0,
        "r1_px": radius,
        "apex": [top - r0, size / 2.0],
    }


def _grid_xy(geo: dict[str, Any], nz: int, nl: int, size: int) -> tuple[F32, F32]:
    """Cartesian image coordinates (pixel centres at integers) of every grid sample."""
    if geo["geometry"] == "linear":
        ys = np.arange(nz, dtype=np.float32)[:, None] * np.ones((1, nl), np.float32)
        xs = np.ones((nz, 1), np.float32) * np.arange(nl, dtype=np.float32)[None, :]
        return ys, xs
    r = np.linspace(geo["r0_px"], geo["r1_px"], nz, dtype=np.float32)[:, None]
    th = np.linspace(-geo["half_angle_rad"], geo["half_angle_rad"], nl, dtype=np.float32)
    ay, ax = geo["apex"]
    return (ay + r * np.cos(th)[None, :]).astype(np.float32), (ax + r * np.sin(th)[None, :]).astype(
        np.float32
    )


def _scan_maps(
    geo: dict[str, Any], nz: int, nl: int, size: int
) -> tuple[F32, F32, npt.NDArray[np.bool_]]:
    """cv2.remap maps (grid column, grid row) for every output pixel and the sector mask."""
    yy = np.arange(size, dtype=np.float32)[:, None] - geo["apex"][0]
    xx = np.arange(size, dtype=np.float32)[None, :] - geo["apex"][1]
    r = np.sqrt(yy * yy + xx * xx)
    th = np.arctan2(xx, yy)
    r0, r1, ha = geo["r0_px"], geo["r1_px"], geo["half_angle_rad"]
    sector = (r >= r0) & (r <= r1) & (np.abs(th) <= ha)
    map_z = np.clip((r - r0) * ((nz - 1) / (r1 - r0)), 0, nz - 1).astype(np.float32)
    map_l = np.clip((th + ha) * ((nl - 1) / (2 * ha)), 0, nl - 1).astype(np.float32)
    return map_l, map_z, sector


def _place_lesion(
    u: npt.NDArray[np.float64], geo: dict[str, Any], size: int, semi: float
) -> tuple[float, float]:
    """Lesion centre from two uniforms so that the whole ellipse is inside the image."""
    margin = semi + 3.0
    if geo["geometry"] == "linear":
        top = 0.22 * size + margin
        return top + u[0] * (size - margin - top), margin + u[1] * (size - 2 * margin)
    r0, r1, ha = geo["r0_px"], geo["r1_px"], geo["half_angle_rad"]
    lo = r0 + 0.15 * (r1 - r0) + margin
    hi = r1 - margin
    r = lo + u[0] * max(hi - lo, 0.0)
    th_max = max(ha - math.asin(min(margin / r, 1.0)), 0.0)
    th = (2 * u[1] - 1) * th_max
    return geo["apex"][0] + r * math.cos(th), geo["apex"][1] + r * math.sin(th)


def _psf(rng: np.random.Generator) -> tuple[F32, F32, F32, dict[str, float]]:
    """Separable complex baseband PSF: axial (real, imaginary) and lateral kernels,
    scaled so that ``sum |h|^2 = 1`` (unit tissue power maps to unit envelope power)."""
    sz, sl = _u(rng, 1.0, 1.6), _u(rng, 1.8, 3.0)
    f_res = _u(rng, -0.06, 0.06)  # residual demodulation frequency, cycles per sample
    hz = math.ceil(3 * sz)
    hl = math.ceil(3 * sl)
    z = np.arange(-hz, hz + 1, dtype=np.float64)
    x = np.arange(-hl, hl + 1, dtype=np.float64)
    env = np.exp(-(z**2) / (2 * sz**2))
    a = env * np.exp(2j * math.pi * f_res * z)
    b = np.exp(-(x**2) / (2 * sl**2))
    a /= math.sqrt(float(np.sum(np.abs(a) ** 2)))
    b /= math.sqrt(float(np.sum(b**2)))
    return (
        a.real.astype(np.float32),
        a.imag.astype(np.float32),
        b.astype(np.float32),
        {"sigma_axial_px": sz, "sigma_lateral_px": sl, "f_residual": f_res},
    )


def _simulate(seed: int, **opts: Any) -> tuple[Sample, USMaps]:
    """Simulate one B-mode frame (options as :func:`ultrasound`); also return the
    envelope and its expected power (:class:`USMaps`).

    The extra option ``homogeneous=True`` (tests) replaces the tissue by one class of unit
    echogenicity and uniform attenuation and removes any lesion.
    """
    o = options(opts, size=256, lesion=None, geometry=None, snr_db=None, homogeneous=False)
    seed = check_seed(seed)
    size = check_size(o["size"])
    snr_db, homogeneous = o["snr_db"], bool(o["homogeneous"])
    if snr_db is not None:
        snr_db = check_float("snr_db", snr_db, -20.0, 100.0)
    r_choice, r_geo, r_tissue, r_lesion, r_sys, r_speckle = _streams(seed, 6)
    draw = float(r_choice.random())
    drawn_lesion = "none" if draw < 0.5 else LESIONS[1 + min(int((draw - 0.5) * 6), 2)]
    drawn_geo = GEOMETRIES[int(r_choice.random() < 0.5)]
    drawn_snr = _u(r_choice, *SNR_RANGE_DB)
    kind = choice_or(o["lesion"], "lesion", LESIONS, drawn_lesion)
    geometry = choice_or(o["geometry"], "geometry", GEOMETRIES, drawn_geo)
    snr = drawn_snr if snr_db is None else snr_db
    if homogeneous:
        kind = "none"

    nz = nl = size
    geo = _geometry(r_geo, size, geometry)
    echo, alpha, tissue_info = _tissue(r_tissue, nz, nl)
    if homogeneous:
        echo = np.ones((nz, nl), np.float32)
        alpha = np.full((nz, nl), ALPHA_TISSUE, np.float32)

    # Lesion: ellipse in final image coordinates (all values drawn for every kind).
    semi_a = _u(r_lesion, 0.04, 0.11) * size
    semi_b = semi_a * _u(r_lesion, 0.6, 1.0)
    angle = _u(r_lesion, 0.0, math.pi)
    pos = r_lesion.uniform(0.0, 1.0, 2)
    hypo_amp = _u(r_lesion, 0.2, 0.5)
    hyper_amp = _u(r_lesion, 2.0, 4.0)
    cy, cx = _place_lesion(pos, geo, size, semi_a)
    c, s = math.cos(angle), math.sin(angle)

    def inside(ys: F32, xs: F32) -> npt.NDArray[np.bool_]:
        dy, dx = ys - cy, xs - cx
        u, v = c * dy + s * dx, -s * dy + c * dx
        return np.asarray((u / semi_a) ** 2 + (v / semi_b) ** 2 <= 1.0)

    lesion_params: dict[str, Any] | None = None
    if kind != "none":
        gy, gx = _grid_xy(geo, nz, nl, size)
        on_grid = inside(gy, gx)
        amp = {"cyst": 0.0, "hypoechoic": hypo_amp, "hyperechoic": hyper_amp}[kind]
        att = {"cyst": 0.002, "hypoechoic": 0.9, "hyperechoic": 0.7}[kind]
        base = float(np.median(echo[on_grid])) if on_grid.any() else 1.0
        echo = np.where(on_grid, base * amp * amp, echo).astype(np.float32)
        alpha = np.where(on_grid, att, alpha).astype(np.float32)
        lesion_params = {
            "type": kind,
            "centre": [cy, cx],
            "semi_axes_px": [semi_a, semi_b],
            "angle_rad": angle,
            "amplitude_factor": amp,
            "attenuation_db_cm_mhz": att,
        }

    # Attenuation along each scan line, partial TGC.
    f = float(geo["freq_mhz"])
    dz_cm = float(geo["depth_cm"]) / nz
    att_db = 2.0 * f * np.cumsum(alpha * dz_cm, axis=0)
    depth_cm = (np.arange(nz, dtype=np.float32)[:, None] + 1.0) * dz_cm
    tgc_frac = _u(r_sys, 0.75, 0.95)
    tgc_db = tgc_frac * 2.0 * f * ALPHA_TISSUE * depth_cm
    amp_att = np.power(10.0, -att_db / 20.0).astype(np.float32)
    tgc = np.power(10.0, tgc_db / 20.0).astype(np.float32)

    ar, ai, b, psf_info = _psf(r_sys)
    dyn_range = _u(r_sys, 50.0, 60.0)
    grey0 = _u(r_sys, 115.0, 150.0)
    deepest = 10.0 ** (-2.0 * f * ALPHA_TISSUE * float(geo["depth_cm"]) / 10.0)
    noise_sigma = math.sqrt(deepest / 10.0 ** (snr / 10.0) / 2.0)

    weight = (np.sqrt(echo) * amp_att).astype(np.float32)
    noise = r_speckle.standard_normal((4, nz, nl), dtype=np.float32)
    sr, si = noise[0] * weight, noise[1] * weight
    sr *= math.sqrt(0.5)
    si *= math.sqrt(0.5)

    def conv(img: F32, ker_z: F32, ker_l: F32 = b) -> F32:
        return np.asarray(cv2.sepFilter2D(img, cv2.CV_32F, ker_l, ker_z), np.float32)

    iq_re = conv(sr, ar) - conv(si, ai) + noise[2] * noise_sigma
    iq_im = conv(si, ar) + conv(sr, ai) + noise[3] * noise_sigma
    env = np.sqrt(iq_re * iq_re + iq_im * iq_im) * tgc
    power = (conv(weight * weight, ar * ar + ai * ai, b * b) + 2 * noise_sigma**2) * tgc**2
    power = power.astype(np.float32)
    if geometry == "linear":
        sector = np.ones((size, size), bool)
    else:
        map_l, map_z, sector = _scan_maps(geo, nz, nl, size)
        env = cv2.remap(env.astype(np.float32), map_l, map_z, cv2.INTER_LINEAR) * sector
        power = cv2.remap(power, map_l, map_z, cv2.INTER_LINEAR) * sector
    env = np.asarray(env, np.float32)

    db = 20.0 * np.log10(np.maximum(env, 1e-6))
    grey = np.clip(np.rint(grey0 + db * (255.0 / dyn_range)), 0, 255).astype(np.uint8)
    grey[~sector] = 0

    yy = np.arange(size, dtype=np.float32)[:, None] * np.ones((1, size), np.float32)
    xx = np.ones((size, 1), np.float32) * np.arange(size, dtype=np.float32)[None, :]
    mask = inside(yy, xx) & sector if kind != "none" else np.zeros((size, size), bool)
    label = "normal" if kind == "none" else kind
    params: dict[str, Any] = {
        "seed": seed,
        "modality": "ultrasound",
        "size": size,
        "lesion": lesion_params,
        "snr_db": snr,
        "tgc_fraction": tgc_frac,
        "dynamic_range_db": dyn_range,
        "tissue_grey": grey0,
        "tissue": tissue_info,
        "homogeneous": homogeneous,
    }
    params.update({k: v for k, v in geo.items()})
    params.update(psf_info)
    sample = Sample(grey, "ultrasound", label, mask, bbox_of(mask), params)
    return sample, USMaps(env, np.asarray(power, np.float32), sector, echo)


def ultrasound(
    seed: int,
    *,
    size: int = 256,
    lesion: str | None = None,
    geometry: str | None = None,
    snr_db: float | None = None,
) -> Sample:
    """Simulate a B-mode ultrasound frame with or without a focal lesion.

    Parameters
    ----------
    seed : int
        Non-negative seed; the same seed gives the same sample.  Lesion choice, geometry,
        tissue, lesion shape, system settings and speckle each draw from their own
        stream, so forcing ``lesion`` or ``geometry`` leaves the rest unchanged.
    size : int, default 256
        Image side in pixels, 64 ... 2048.
    lesion : {"none", "cyst", "hypoechoic", "hyperechoic"} or None
        ``None`` draws ``"none"`` with probability 0.5, else one of the three types
        uniformly.  Cyst: anechoic (no scatterers) with posterior acoustic enhancement;
        hypoechoic mass: scatter amplitude x 0.2-0.5; hyperechoic mass: x 2-4.  Ellipses
        with semi-axes 4-11 % of ``size``, random orientation, entirely inside the
        imaged area and below the subcutaneous layers.
    geometry : {"linear", "convex"} or None
        Linear array (rectangular image, 7.5 MHz, 3.5-6 cm deep) or curved array
        (sector, 3.5 MHz, 12-18 cm deep, scan-converted; 0 outside the sector).
        ``None`` draws each with probability 0.5.
    snr_db : float or None
        Tissue-to-electronic-noise power ratio at the deepest depth before TGC, in dB;
        ``None`` draws it uniformly from ``SNR_RANGE_DB`` (10 ... 30 dB).

    Returns
    -------
    Sample
        ``image`` is ``uint8`` B-mode; ``label`` is ``"normal"`` for ``"none"`` else the
        lesion type; ``mask`` the lesion ellipse in image coordinates.

    Raises
    ------
    InvalidInputError
        For a negative seed, a size outside 64 ... 2048, an unknown lesion or geometry or
        a non-finite ``snr_db``.

    Notes
    -----
    The envelope before log compression and its expected power are available through
    the private ``medimg_edge.synth._ultrasound._simulate`` (used by the tests).  Physics
    and references: see the module docstring (Burckhardt 1978; Wagner et al. 1983;
    Jensen 1996).
    """
    return _simulate(seed, size=size, lesion=lesion, geometry=geometry, snr_db=snr_db)[0]
