"""B-mode ultrasound phantom: fully developed speckle, PSF, attenuation, TGC, scan conversion.

The simulation runs on a (depth sample, scan line) grid.  Tissue is a map of mean
backscattered power ("echogenicity") with a few classes: skin, subcutaneous fat with a
bright fascia, and a parenchyma made of smooth random regions of three echogenicities;
optionally a lesion (anechoic cyst, hypoechoic or hyperechoic solid mass): a lobulated
ellipse with semi-axes 1.5-15 px at size 128 (the ultrasound model's input; scaled with
``size / 128``), amplitude contrast 0.1-0.8 (hypoechoic) or 1.3-4 (hyperechoic) and a
boundary that is sharp or blends into the tissue over up to 40 % of the minor semi-axis.
Scatterers are a dense complex Gaussian random field weighted by the square root of the
local echogenicity: the limit of many randomly placed scatterers per resolution cell, so
the envelope has fully developed speckle with Rayleigh statistics (Burckhardt [1]_;
Wagner et al. [2]_: mean / standard deviation = 1.91, ``E[A^2] / E[A]^2 = 4 / pi``).
In the fully developed regime the scatterer density and amplitude only act through their
product (the mean power), which is what the tissue classes vary.

Imaging follows the linear-systems model of Field II (Jensen [3]_) in the complex
baseband (IQ) domain: the weighted scatterers are convolved with a separable, spatially
invariant complex PSF (axial: Gaussian-enveloped pulse with a small residual demodulation
frequency; lateral: Gaussian beam profile; axial sigma 0.7-2.4 px and lateral 1.2-4.5 px
at size 256, optionally widened by ``blur_px``) using :func:`cv2.sepFilter2D`.  Round-trip
attenuation ``exp(-2 alpha f z)`` is integrated along each scan line from a map of
attenuation coefficients (a cyst attenuates almost nothing, hence posterior acoustic
enhancement; solid masses attenuate more).  Complex white electronic noise (set by
``snr_db`` at the deepest depth) is added before the time-gain compensation, which
undoes a fraction (70-100 %) of the nominal attenuation, so a residual depth trend
remains and deep noise is amplified.  The envelope ``|IQ|`` is log-compressed to a
40-75 dB dynamic range with a random gain (tissue grey level 70-170) and quantised to
8 bits.

The simulation grid has ``min(size, 512)`` samples per side (a scanner forms a few
hundred lines and interpolates them to the display); larger frames are interpolated
from it (bicubic) during scan conversion, so the PSF and speckle keep their physical
size whatever ``size`` is and a 4096-pixel frame costs little more than a 512-pixel one.

``geometry="linear"``: the grid spans the image (rectangular field of view; 5-12 MHz,
2.5-7 cm deep).  ``geometry="convex"``: the grid is (radius, angle) of a curved array
(2.5-5 MHz, 8-20 cm deep, half-angle 22-38 degrees, inner radius 10-35 % of the outer one,
apex shifted laterally and downwards at random); the envelope is scan-converted to Cartesian
pixels with :func:`cv2.remap`; outside the sector the image is 0.  Depth and frequency
are drawn so that the nominal round-trip attenuation stays below 60 dB.  Lesions are
defined in final image coordinates, evaluated at the Cartesian position of each grid
sample, so the mask is exact in the output image.

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

__all__ = [
    "CONSPICUOUS_LESIONS",
    "DYNAMIC_RANGE_DB",
    "GEOMETRIES",
    "GRID_MAX",
    "HYPERECHOIC_AMPLITUDE",
    "HYPOECHOIC_AMPLITUDE",
    "LESIONS",
    "LESION_PRIORS",
    "LESION_SEMI_AXIS_PX",
    "SNR_RANGE_DB",
    "ultrasound",
]

#: Accepted values of ``lesion`` (``"none"`` gives the label ``"normal"``).
LESIONS = ("none", "cyst", "hypoechoic", "hyperechoic")
GEOMETRIES = ("linear", "convex")
#: Range of ``snr_db`` (tissue-to-electronic-noise power at the deepest depth) drawn
#: uniformly when not given.
SNR_RANGE_DB = (10.0, 30.0)
#: Nominal soft-tissue attenuation (dB / cm / MHz), Szabo [4]_.
ALPHA_TISSUE = 0.5
#: Largest nominal round-trip attenuation (dB) at the deepest depth: frequency x depth
#: are drawn below it (a sonographer shortens the depth or lowers the frequency).
MAX_ATTENUATION_DB = 60.0
#: Range of the lesion semi-axes in pixels at size 128 (the ultrasound model's input;
#: scaled with ``size / 128``), drawn log-uniformly (major axis).
LESION_SEMI_AXIS_PX = (1.5, 15.0)
#: Scatter-amplitude factor of hypoechoic / hyperechoic masses relative to the tissue.
HYPOECHOIC_AMPLITUDE = (0.1, 0.8)
HYPERECHOIC_AMPLITUDE = (1.3, 4.0)
#: ``lesion_prior="conspicuous"``: the sub-range the reference model is trained on
#: (semi-axes 4-15 px at 128, hypoechoic 0.1-0.5, hyperechoic 1.8-4). A compact CNN
#: trained on the full range from the start stays at the class prior (the first 2026-12-03
#: build); the full range is what it is evaluated on (AUC by lesion size in its report).
CONSPICUOUS_LESIONS = {"semi_axis_px": (4.0, 15.0), "hypo": (0.1, 0.5), "hyper": (1.8, 4.0)}
LESION_PRIORS = ("full", "conspicuous")
#: Log-compression dynamic range (dB).
DYNAMIC_RANGE_DB = (40.0, 75.0)
#: Largest side of the simulation grid; larger frames are interpolated from it.
GRID_MAX = 512
#: PSF sigmas (px at size 256): axial and lateral.
PSF_AXIAL_PX = (0.7, 2.4)
PSF_LATERAL_PX = (1.2, 4.5)
#: Largest accepted ``blur_px``.
MAX_BLUR_PX = 64.0


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
    half_angle = math.radians(_u(rng, 22.0, 38.0))
    r0_ratio = _u(rng, 0.1, 0.35)  # apex radius / outer radius (curvature vs depth)
    shift = _u(rng, -0.04, 0.04)  # lateral apex shift, fraction of the size
    top_frac = _u(rng, 0.0, 0.06)  # first imaged row of the sector, fraction of the size
    convex_freq = _u(rng, 2.5, 5.0)
    convex_depth = _u(rng, 8.0, min(20.0, MAX_ATTENUATION_DB / convex_freq))
    linear_freq = _u(rng, 5.0, 12.0)
    linear_depth = _u(rng, 2.5, min(7.0, MAX_ATTENUATION_DB / linear_freq))
    if kind == "linear":
        return {"geometry": "linear", "depth_cm": linear_depth, "freq_mhz": linear_freq}
    top = 2.0 + top_frac * size
    ax = size / 2.0 + shift * size
    half_width = 0.49 * size - abs(shift) * size
    radius = min(half_width / math.sin(half_angle), (size - 2.0 - top) / (1.0 - r0_ratio))
    r0 = r0_ratio * radius
    return {
        "geometry": "convex",
        "depth_cm": convex_depth,
        "freq_mhz": convex_freq,
        "half_angle_rad": half_angle,
        "r0_px": r0,
        "r1_px": radius,
        "apex": [top - r0, ax],
    }


def _grid_xy(geo: dict[str, Any], nz: int, nl: int, size: int) -> tuple[F32, F32]:
    """Cartesian image coordinates (pixel centres at integers) of every grid sample."""
    if geo["geometry"] == "linear":
        ys = np.linspace(0.0, size - 1.0, nz, dtype=np.float32)[:, None]
        xs = np.linspace(0.0, size - 1.0, nl, dtype=np.float32)[None, :]
        return ys * np.ones((1, nl), np.float32), np.ones((nz, 1), np.float32) * xs
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
    if geo["geometry"] == "linear":
        gz = np.arange(size, dtype=np.float32) * np.float32((nz - 1) / (size - 1))
        gl = np.arange(size, dtype=np.float32) * np.float32((nl - 1) / (size - 1))
        map_l = np.broadcast_to(gl[None, :], (size, size)).copy()
        map_z = np.broadcast_to(gz[:, None], (size, size)).copy()
        return map_l, map_z, np.ones((size, size), bool)
    yy = np.arange(size, dtype=np.float32)[:, None] - np.float32(geo["apex"][0])
    xx = np.arange(size, dtype=np.float32)[None, :] - np.float32(geo["apex"][1])
    r = np.sqrt(yy * yy + xx * xx)
    th = np.arctan2(xx, yy)
    r0, r1, ha = geo["r0_px"], geo["r1_px"], geo["half_angle_rad"]
    sector = (r >= r0) & (r <= r1) & (np.abs(th) <= ha)
    map_z = np.clip((r - r0) * np.float32((nz - 1) / (r1 - r0)), 0, nz - 1).astype(np.float32)
    map_l = np.clip((th + ha) * np.float32((nl - 1) / (2 * ha)), 0, nl - 1).astype(np.float32)
    return map_l, map_z, sector


def _place_lesion(
    u: npt.NDArray[np.float64], geo: dict[str, Any], size: int, semi: float
) -> tuple[float, float]:
    """Lesion centre from two uniforms so that the whole ellipse is inside the image."""
    margin = semi + 3.0
    if geo["geometry"] == "linear":
        top = 0.22 * size + margin
        return top + u[0] * max(size - margin - top, 0.0), margin + u[1] * max(
            size - 2 * margin, 0.0
        )
    r0, r1, ha = geo["r0_px"], geo["r1_px"], geo["half_angle_rad"]
    lo = r0 + 0.15 * (r1 - r0) + margin
    hi = r1 - margin
    r = lo + u[0] * max(hi - lo, 0.0)
    th_max = max(ha - math.asin(min(margin / r, 1.0)), 0.0)
    th = (2 * u[1] - 1) * th_max
    return geo["apex"][0] + r * math.cos(th), geo["apex"][1] + r * math.sin(th)


def _gauss(sigma: float) -> npt.NDArray[np.float64]:
    half = max(math.ceil(3 * sigma), 1)
    x = np.arange(-half, half + 1, dtype=np.float64)
    g: npt.NDArray[np.float64] = np.exp(-(x**2) / (2 * sigma**2))
    out: npt.NDArray[np.float64] = g / g.sum()
    return out


def _psf(
    rng: np.random.Generator, scale: float, extra: float
) -> tuple[F32, F32, F32, dict[str, float]]:
    """Separable complex baseband PSF: axial (real, imaginary) and lateral kernels on the
    simulation grid (sigmas drawn in px at size 256, times ``scale`` = grid / 256, at
    least 0.5 grid px), convolved with a Gaussian of sigma ``extra`` grid px (the
    ``blur_px`` option) and scaled so that ``sum |h|^2 = 1`` (unit tissue power maps to
    unit envelope power)."""
    sz256, sl256 = _u(rng, *PSF_AXIAL_PX), _u(rng, *PSF_LATERAL_PX)
    f_res = _u(rng, -0.06, 0.06)  # residual demodulation frequency, cycles per sample
    sz, sl = max(sz256 * scale, 0.5), max(sl256 * scale, 0.5)
    hz = math.ceil(3 * sz)
    hl = math.ceil(3 * sl)
    z = np.arange(-hz, hz + 1, dtype=np.float64)
    x = np.arange(-hl, hl + 1, dtype=np.float64)
    env = np.exp(-(z**2) / (2 * sz**2))
    a = env * np.exp(2j * math.pi * f_res / max(scale, 0.5) * z)
    b = np.exp(-(x**2) / (2 * sl**2))
    if extra >= 0.05:
        g = _gauss(extra)
        a = np.convolve(a, g)
        b = np.convolve(b, g)
    a /= math.sqrt(float(np.sum(np.abs(a) ** 2)))
    b /= math.sqrt(float(np.sum(b**2)))
    return (
        a.real.astype(np.float32),
        a.imag.astype(np.float32),
        b.astype(np.float32),
        {
            "sigma_axial_px": sz256,
            "sigma_lateral_px": sl256,
            "sigma_axial_grid": sz,
            "sigma_lateral_grid": sl,
            "f_residual": f_res,
        },
    )


def _lesion_shape(rng: np.random.Generator, size: int, prior: str = "full") -> dict[str, Any]:
    """Shape and contrast of a lesion (drawn for every kind, used only if placed)."""
    scale = size / 128.0
    full = prior == "full"
    lo, hi = LESION_SEMI_AXIS_PX if full else CONSPICUOUS_LESIONS["semi_axis_px"]
    hypo_range = HYPOECHOIC_AMPLITUDE if full else CONSPICUOUS_LESIONS["hypo"]
    hyper_range = HYPERECHOIC_AMPLITUDE if full else CONSPICUOUS_LESIONS["hyper"]
    semi_a = max(math.exp(_u(rng, math.log(lo), math.log(hi))) * scale, 1.0)
    semi_b = max(semi_a * _u(rng, 0.55, 1.0), 0.75)
    angle = _u(rng, 0.0, math.pi)
    pos = rng.uniform(0.0, 1.0, 2)
    hypo = math.exp(_u(rng, *(math.log(v) for v in hypo_range)))
    hyper = math.exp(_u(rng, *(math.log(v) for v in hyper_range)))
    sharp = bool(rng.random() < 0.35)
    edge = 0.0 if sharp else _u(rng, 0.05, 0.4) * semi_b
    return {
        "semi_a": semi_a,
        "semi_b": semi_b,
        "angle": angle,
        "pos": pos,
        "hypo": hypo,
        "hyper": hyper,
        "edge_px": edge,
        "lobes": int(rng.integers(3, 8)),
        "lobulation": _u(rng, 0.0, 0.12),
        "lobe_phase": _u(rng, 0.0, 2 * math.pi),
        "att_hypo": _u(rng, 0.6, 1.2),
        "att_hyper": _u(rng, 0.5, 1.0),
    }


def _simulate(seed: int, **opts: Any) -> tuple[Sample, USMaps]:
    """Simulate one B-mode frame (options as :func:`ultrasound`); also return the
    envelope and its expected power (:class:`USMaps`).

    The extra option ``homogeneous=True`` (tests) replaces the tissue by one class of unit
    echogenicity and uniform attenuation and removes any lesion.
    """
    o = options(
        opts,
        size=256,
        lesion=None,
        geometry=None,
        snr_db=None,
        blur_px=None,
        homogeneous=False,
        lesion_prior="full",
    )
    prior = choice_or(o["lesion_prior"], "lesion_prior", LESION_PRIORS, "full")
    seed = check_seed(seed)
    size = check_size(o["size"])
    snr_db, homogeneous = o["snr_db"], bool(o["homogeneous"])
    if snr_db is not None:
        snr_db = check_float("snr_db", snr_db, -20.0, 100.0)
    blur_px = o["blur_px"]
    if blur_px is not None:
        blur_px = check_float("blur_px", blur_px, 0.0, MAX_BLUR_PX)
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

    nz = nl = min(size, GRID_MAX)
    grid_per_px = nz / size  # grid samples per output pixel (<= 1)
    geo = _geometry(r_geo, size, geometry)
    echo, alpha, tissue_info = _tissue(r_tissue, nz, nl)
    if homogeneous:
        echo = np.ones((nz, nl), np.float32)
        alpha = np.full((nz, nl), ALPHA_TISSUE, np.float32)

    # Lesion: lobulated ellipse in final image coordinates (drawn for every kind); the
    # boundary blends into the tissue over ``edge_px`` (a logistic of the signed distance).
    les = _lesion_shape(r_lesion, size, prior)
    semi_a, semi_b, angle, edge = les["semi_a"], les["semi_b"], les["angle"], les["edge_px"]
    reach = semi_a * (1.0 + les["lobulation"]) + 2.0 * edge
    cy, cx = _place_lesion(les["pos"], geo, size, reach)
    c, s = math.cos(angle), math.sin(angle)

    def signed_distance(ys: F32, xs: F32) -> F32:
        """Approximate signed distance (px, negative inside) to the lesion boundary."""
        dy, dx = ys - np.float32(cy), xs - np.float32(cx)
        u = (np.float32(c) * dy + np.float32(s) * dx) * np.float32(1 / semi_a)
        v = (np.float32(-s) * dy + np.float32(c) * dx) * np.float32(1 / semi_b)
        rho = np.sqrt(u * u + v * v)
        theta = np.arctan2(v, u)
        bound = 1.0 + les["lobulation"] * np.cos(les["lobes"] * theta + les["lobe_phase"])
        out: F32 = ((rho - bound) * np.float32(semi_b)).astype(np.float32)
        return out

    lesion_params: dict[str, Any] | None = None
    if kind != "none":
        gy, gx = _grid_xy(geo, nz, nl, size)
        sd = signed_distance(gy, gx)
        if edge > 0:
            w = (0.5 * (1.0 - np.tanh(sd * np.float32(1.0 / edge)))).astype(np.float32)
        else:
            w = (sd <= 0).astype(np.float32)
        amp = {"cyst": 0.0, "hypoechoic": les["hypo"], "hyperechoic": les["hyper"]}[kind]
        att = {"cyst": 0.002, "hypoechoic": les["att_hypo"], "hyperechoic": les["att_hyper"]}
        core = sd <= 0
        base = float(np.median(echo[core])) if core.any() else 1.0
        echo = (echo * (1.0 - w) + np.float32(base * amp * amp) * w).astype(np.float32)
        alpha = (alpha * (1.0 - w) + np.float32(att[kind]) * w).astype(np.float32)
        lesion_params = {
            "type": kind,
            "centre": [cy, cx],
            "semi_axes_px": [semi_a, semi_b],
            "angle_rad": angle,
            "amplitude_factor": amp,
            "contrast": amp,
            "contrast_db": 20.0 * math.log10(amp) if amp > 0 else None,
            "edge_px": edge,
            "lobes": les["lobes"],
            "lobulation": les["lobulation"],
            "lobe_phase": les["lobe_phase"],
            "attenuation_db_cm_mhz": att[kind],
        }

    # Attenuation along each scan line, partial TGC.
    f = float(geo["freq_mhz"])
    dz_cm = float(geo["depth_cm"]) / nz
    att_db = np.float32(2.0 * f * dz_cm) * np.cumsum(alpha, axis=0, dtype=np.float32)
    depth_cm = (np.arange(nz, dtype=np.float32)[:, None] + 1.0) * np.float32(dz_cm)
    tgc_frac = _u(r_sys, 0.7, 1.0)
    tgc_db = tgc_frac * 2.0 * f * ALPHA_TISSUE * depth_cm
    amp_att = np.power(np.float32(10.0), -att_db / np.float32(20.0)).astype(np.float32)
    tgc = np.power(10.0, tgc_db / 20.0).astype(np.float32)

    extra = 0.0 if blur_px is None else blur_px * grid_per_px
    ar, ai, b, psf_info = _psf(r_sys, nz / 256.0, extra)
    dyn_range = _u(r_sys, *DYNAMIC_RANGE_DB)
    grey0 = _u(r_sys, 70.0, 170.0)
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
    if geometry == "linear" and nz == size:
        sector = np.ones((size, size), bool)
    else:
        map_l, map_z, sector = _scan_maps(geo, nz, nl, size)
        interp = cv2.INTER_CUBIC if nz < size else cv2.INTER_LINEAR
        env = cv2.remap(env.astype(np.float32), map_l, map_z, interp)
        env = np.maximum(env, 0.0) * sector
        power = np.maximum(cv2.remap(power, map_l, map_z, interp), 0.0) * sector
    env = np.asarray(env, np.float32)

    db = np.float32(20.0) * np.log10(np.maximum(env, np.float32(1e-6)))
    grey = np.clip(np.rint(np.float32(grey0) + db * np.float32(255.0 / dyn_range)), 0, 255)
    grey = grey.astype(np.uint8)
    grey[~sector] = 0

    mask = np.zeros((size, size), bool)
    if kind != "none":
        y0, y1 = max(int(cy - reach) - 2, 0), min(int(cy + reach) + 3, size)
        x0, x1 = max(int(cx - reach) - 2, 0), min(int(cx + reach) + 3, size)
        wy = np.arange(y0, y1, dtype=np.float32)[:, None] * np.ones((1, x1 - x0), np.float32)
        wx = np.ones((y1 - y0, 1), np.float32) * np.arange(x0, x1, dtype=np.float32)[None, :]
        mask[y0:y1, x0:x1] = signed_distance(wy, wx) <= 0
        mask &= sector
    label = "normal" if kind == "none" else kind
    params: dict[str, Any] = {
        "seed": seed,
        "modality": "ultrasound",
        "size": size,
        "grid": nz,
        "lesion": lesion_params,
        "snr_db": snr,
        "tgc_fraction": tgc_frac,
        "dynamic_range_db": dyn_range,
        "tissue_grey": grey0,
        "blur_px": blur_px,
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
    blur_px: float | None = None,
    lesion_prior: str = "full",
) -> Sample:
    """Simulate a B-mode ultrasound frame with or without a focal lesion.

    Parameters
    ----------
    seed : int
        Non-negative seed; the same seed gives the same sample.  Lesion choice, geometry,
        tissue, lesion shape, system settings and speckle each draw from their own
        stream, so forcing ``lesion``, ``geometry`` or ``blur_px`` leaves the rest
        unchanged.
    size : int, default 256
        Image side in pixels, 64 ... 4096 (simulated on a grid of at most 512 x 512 and
        interpolated).
    lesion : {"none", "cyst", "hypoechoic", "hyperechoic"} or None
        ``None`` draws ``"none"`` with probability 0.5, else one of the three types
        uniformly.  Cyst: anechoic (no scatterers) with posterior acoustic enhancement;
        hypoechoic mass: scatter amplitude x 0.1-0.8; hyperechoic mass: x 1.3-4 (both
        log-uniform; ``params["lesion"]["contrast"]``).  Lobulated ellipses (3-7 lobes,
        up to 12 % radial modulation) with the major semi-axis 1.5-15 px at size 128
        (log-uniform, scaled with ``size / 128``; the minor one 55-100 % of it), random
        orientation, a boundary that is sharp (35 %) or blends into the tissue over
        ``edge_px`` = 5-40 % of the minor semi-axis, entirely inside the imaged area and
        below the subcutaneous layers.
    geometry : {"linear", "convex"} or None
        Linear array (rectangular image, 5-12 MHz, 2.5-7 cm deep) or curved array
        (sector of half-angle 22-38 degrees, 2.5-5 MHz, 8-20 cm deep, scan-converted; 0
        outside the sector).  ``None`` draws each with probability 0.5.
    snr_db : float or None
        Tissue-to-electronic-noise power ratio at the deepest depth before TGC, in dB;
        ``None`` draws it uniformly from ``SNR_RANGE_DB`` (10 ... 30 dB).
    blur_px : float or None
        Extra Gaussian blur (sigma in px at the output size, 0 ... 64) of the PSF, i.e.
        of the complex field before envelope detection and log compression (a coarser
        resolution cell; the speckle stays fully developed); ``None`` adds none.

    lesion_prior : {"full", "conspicuous"}, default "full"
        The lesion distribution: ``"full"`` as described above; ``"conspicuous"`` the
        sub-range in ``CONSPICUOUS_LESIONS`` (semi-axes 4-15 px at 128, hypoechoic
        0.1-0.5, hyperechoic 1.8-4) that the reference model is trained on.  Every other
        aspect, and the random streams, are the same for both.

    Returns
    -------
    Sample
        ``image`` is ``uint8`` B-mode; ``label`` is ``"normal"`` for ``"none"`` else the
        lesion type; ``mask`` the lesion's nominal boundary in image coordinates.  The
        system settings drawn per frame are in ``params``: TGC fraction 0.7-1.0, dynamic
        range 40-75 dB, tissue grey level (gain) 70-170, PSF sigmas (axial 0.7-2.4 px,
        lateral 1.2-4.5 px at size 256).

    Raises
    ------
    InvalidInputError
        For a negative seed, a size outside 64 ... 4096, an unknown lesion or geometry, a
        non-finite ``snr_db`` or a ``blur_px`` outside 0 ... 64.

    Notes
    -----
    The envelope before log compression and its expected power are available through
    the private ``medimg_edge.synth._ultrasound._simulate`` (used by the tests).  Physics
    and references: see the module docstring (Burckhardt 1978; Wagner et al. 1983;
    Jensen 1996).
    """
    return _simulate(
        seed,
        size=size,
        lesion=lesion,
        geometry=geometry,
        snr_db=snr_db,
        blur_px=blur_px,
        lesion_prior=lesion_prior,
    )[0]
