"""Chest radiograph (PA projection) phantom: analytic anatomy, Beer-Lambert, quantum noise.

The projection ``p(y, x) = sum_i mu_i t_i(y, x)`` (line integral of the linear attenuation
coefficient) is built from analytic shapes whose projected thicknesses are known in
closed form: an elliptic body of soft tissue, two lung fields (aerated lung replacing soft
tissue) cut by the diaphragm domes, the heart and mediastinum, the spine with vertebral
modulation, posterior ribs and clavicles (bone bands), smooth parenchymal texture and,
optionally, a diffuse soft-tissue opacity (a confounder in both classes) and a spherical
soft-tissue nodule (projected thickness ``2 sqrt(r^2 - d^2)``) inside a lung field.

Detection follows Bushberg et al. [1]_, ch. 4 and 7: the expected number of quanta per
pixel is ``q = I0 exp(-p)`` (Beer-Lambert) with ``I0`` the unattenuated quanta per pixel
(``dose``), blurred by a Gaussian focal-spot / geometric-unsharpness PSF, plus a smooth
scatter component (residual scatter-to-primary ratio behind an anti-scatter grid).  The
detector counts ``N ~ Poisson(q)``; its linear signal is ``S = gain N + e`` with Gaussian
electronic noise ``e ~ N(0, sigma_e^2)``.  The noise is white: the model is a
direct-conversion (a-Se) flat panel, whose charge spread is negligible, so the blur acts on
the expected fluence only (a scintillator's light spread, which would also correlate the
noise, is not modelled).  The image is the log response a DR system displays,
``D = (ln(gain I0) - ln S) / P_MAX`` scaled to ``bits``-bit integers: an estimate of the
line integral ``p``, so air is black, lungs dark and bone bright.

References
----------
.. [1] J. T. Bushberg, J. A. Seibert, E. M. Leidholdt, J. M. Boone, *The Essential Physics
   of Medical Imaging*, 3rd ed., Lippincott Williams & Wilkins, 2012.
.. [2] J. H. Hubbell, S. M. Seltzer, *Tables of X-Ray Mass Attenuation Coefficients*,
   NIST Standard Reference Database 126, 2004 (effective values at about 60 keV).
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from .._validation import check_float, check_int
from ._common import F32, Sample, bbox_of, check_flag, check_seed, check_size, options, smooth_field
from ._common import streams as _streams
from ._common import uniform as _u

__all__ = ["DOSE_RANGE", "chest_xray"]

#: Linear attenuation coefficients (1/cm) at an effective energy of about 60 keV [2]_.
MU_SOFT = 0.20
MU_LUNG = 0.05  # inflated lung, density about 0.25 g/cm^3
MU_BONE = 0.48
#: Field of view (cm) across the image side.
FOV_CM = 40.0
#: Line integral mapped to the top of the output range.
P_MAX = 7.0
#: Range of ``dose`` (unattenuated quanta per pixel) drawn log-uniformly when not given.
DOSE_RANGE = (2.0e3, 3.0e4)
#: Range of the nodule radius in pixels at size 256 (scaled with size).
NODULE_RADIUS_PX = (3.0, 12.0)
#: Nodule attenuation relative to soft tissue (solid ... calcified). The first reference
#: build used 0.35-1.0 (ground glass ... solid): from 8000 frames at 128x128 the compact CNN
#: learned nothing (test AUC 0.49), so the phantom now draws conspicuous nodules; subtle
#: ground-glass nodules are a documented limitation of the reference model.
NODULE_DENSITY = (1.0, 3.0)


def _cells(rng: np.random.Generator, n: int) -> F32:
    return rng.standard_normal((n, n), dtype=np.float32)


def _ellipsoid(
    yy: npt.NDArray[np.floating[Any]],
    xx: npt.NDArray[np.floating[Any]],
    cy: float,
    cx: float,
    ry: float,
    rx: float,
    angle: float = 0.0,
) -> F32:
    """Normalised projected thickness ``sqrt(1 - rho^2)`` of an ellipsoid (0 outside)."""
    dy, dx = yy - cy, xx - cx
    if angle:
        c, s = math.cos(angle), math.sin(angle)
        dy, dx = c * dy - s * dx, s * dy + c * dx
    rho2 = (dy / ry) ** 2 + (dx / rx) ** 2
    return np.sqrt(np.maximum(1.0 - rho2, 0.0)).astype(np.float32)


def _polyline_band(shape: tuple[int, int], curves: list[npt.NDArray[Any]], width: int) -> F32:
    """Anti-aliased bands along polylines (pixel coordinates), blurred into round bones."""
    canvas = np.zeros(shape, np.uint8)
    pts = [np.round(c * 16).astype(np.int32).reshape(-1, 1, 2) for c in curves]
    cv2.polylines(canvas, pts, False, 255, max(width, 1), cv2.LINE_AA, shift=4)
    band = canvas.astype(np.float32) * (1.0 / 255.0)
    sigma = max(width / 4.0, 0.5)
    return np.asarray(cv2.GaussianBlur(band, (0, 0), sigma), np.float32)


def _anatomy(rng: np.random.Generator, size: int) -> dict[str, Any]:
    """Projection (line integral) of the lesion-free chest and the lung-field mask."""
    shape = (size, size)
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    yy, xx = c[:, None], c[None, :]
    geo: dict[str, Any] = {}

    # Body: an elliptic cylinder-like torso of soft tissue.
    bx, by = 0.5 + _u(rng, -0.03, 0.03), 0.58 + _u(rng, -0.03, 0.03)
    brx, bry = _u(rng, 0.40, 0.47), _u(rng, 0.58, 0.70)
    thick = _u(rng, 18.0, 26.0)  # AP thickness, cm
    t_body = thick * _ellipsoid(yy, xx, by, bx, bry, brx) ** 0.6
    geo.update(body_centre=[by, bx], body_axes=[bry, brx], body_thickness_cm=thick)

    # Heart: soft tissue displacing lung, to the patient's left (image right).
    hx, hy = bx + _u(rng, 0.03, 0.09), _u(rng, 0.58, 0.65)
    hrx, hry, hang = _u(rng, 0.12, 0.17), _u(rng, 0.10, 0.14), _u(rng, -0.5, -0.15)
    t_heart = thick * _u(rng, 0.45, 0.6) * _ellipsoid(yy, xx, hy, hx, hry, hrx, hang)
    geo.update(heart_centre=[hy, hx], heart_axes=[hry, hrx], heart_angle=hang)

    # Lungs (image left = patient right), cut by the diaphragm domes.
    t_lung = np.zeros(shape, np.float32)
    lung_frac = _u(rng, 0.55, 0.75)
    gap = _u(rng, 0.16, 0.20)
    ly = _u(rng, 0.38, 0.44)
    right_higher = _u(rng, 0.01, 0.04)
    lungs: list[dict[str, Any]] = []
    for side in (-1.0, 1.0):
        lx = bx + side * (gap + _u(rng, -0.01, 0.01))
        lrx, lry = _u(rng, 0.11, 0.15), _u(rng, 0.24, 0.30)
        base = ly + lry * _u(rng, 0.72, 0.88) - (right_higher if side < 0 else 0.0)
        dome_h = _u(rng, 0.04, 0.08)
        dome = base - dome_h * np.clip(1.0 - ((xx - lx) / lrx) ** 2, 0.0, 1.0)
        taper = np.sqrt(np.clip((dome - yy) / 0.04, 0.0, 1.0))
        t_lung += thick * lung_frac * _ellipsoid(yy, xx, ly, lx, lry, lrx) * taper
        lungs.append({"centre": [ly, lx], "axes": [lry, lrx], "dome_base": base})
    geo["lungs"] = lungs
    t_air = np.maximum(t_lung - t_heart, 0.0)

    # Spine with vertebral bodies / discs, behind the mediastinum.
    sx, sw = bx + _u(rng, -0.01, 0.01), _u(rng, 0.035, 0.05)
    period, phase = _u(rng, 0.055, 0.075), _u(rng, 0.0, 2 * math.pi)
    vert = 0.8 + 0.2 * np.cos(2 * math.pi * yy / period + phase)
    t_spine = _u(rng, 3.0, 4.5) * np.sqrt(np.clip(1 - ((xx - sx) / sw) ** 2, 0, 1)) * vert
    t_spine *= np.clip((yy - 0.02) / 0.05, 0.0, 1.0)

    # Posterior ribs: arcs from the spine across each lung; clavicles.
    curves_r = []
    n_ribs = int(rng.integers(9, 12))
    spacing = _u(rng, 0.052, 0.066)
    y_first = ly - 0.28 + _u(rng, -0.02, 0.02)
    lateral = np.linspace(0.0, 1.0, 16)
    rib_w = _u(rng, 0.016, 0.024)
    curv = _u(rng, 0.18, 0.28)
    reach = brx * 1.02
    bottom = max(lg["dome_base"] for lg in lungs) + 0.04
    for k in range(n_ribs):
        yk = y_first + k * spacing * (1.0 + 0.035 * k) + _u(rng, -0.006, 0.006)
        rise = _u(rng, 0.04, 0.08)
        if yk > bottom:
            continue
        for side in (-1.0, 1.0):
            xs = sx + side * (sw + lateral * (reach - sw))
            ys = yk - rise * lateral + curv * (1.0 + 0.05 * k) * lateral**2
            curves_r.append(np.stack([xs * size, ys * size], axis=1))
    ribs = _polyline_band(shape, curves_r, round(rib_w * size))
    clav = []
    cy0 = _u(rng, 0.10, 0.15)
    for side in (-1.0, 1.0):
        t = np.linspace(0.0, 1.0, 12)
        xs = bx + side * (0.04 + 0.34 * t)
        ys = cy0 + 0.03 * np.sin(math.pi * t) - _u(rng, 0.02, 0.05) * t
        clav.append(np.stack([xs * size, ys * size], axis=1))
    clavicles = _polyline_band(shape, clav, round(_u(rng, 0.022, 0.032) * size))
    inside = (t_body > 0).astype(np.float32)
    t_bone = (ribs * _u(rng, 0.9, 1.4) + clavicles * _u(rng, 1.4, 2.0)) * inside + t_spine

    # Parenchymal / vascular texture: band-limited fluctuation of lung density, larger
    # near the hila.
    hilum = np.exp(-(((xx - bx) / 0.22) ** 2) - ((yy - ly) / 0.15) ** 2)
    texture = smooth_field(_cells(rng, max(8, size // 10)), shape) * 0.35 + smooth_field(
        _cells(rng, max(4, size // 40)), shape
    ) * (0.3 + 0.6 * hilum)
    tex_amp = _u(rng, 0.04, 0.09)  # fraction of the lung thickness

    t_air_tex = np.maximum(t_air * (1.0 - tex_amp * texture), 0.0)
    p = MU_SOFT * (t_body - t_air_tex) + MU_LUNG * t_air_tex + (MU_BONE - MU_SOFT) * t_bone
    lung_field = t_air > 0.3 * thick * lung_frac
    geo.update(n_ribs=n_ribs, rib_spacing=spacing, lung_fraction=lung_frac, texture=tex_amp)
    return {"p": np.asarray(p, np.float32), "lung_field": lung_field, "t_air": t_air, "geo": geo}


def _place_disc(
    rng: np.random.Generator, dist: F32, radius: float, size: int
) -> tuple[float, float]:
    """A random centre whose disc of ``radius`` lies inside the region whose distance
    transform is ``dist`` (1 px margin)."""
    cand = np.flatnonzero(dist > radius + 1.0)
    if cand.size == 0:  # tiny lungs: fall back to the deepest point
        cand = np.array([int(np.argmax(dist))])
    k = int(cand[int(rng.integers(cand.size))])
    jy, jx = rng.uniform(-0.5, 0.5, 2)
    return float(k // size + 0.5 + jy), float(k % size + 0.5 + jx)


def _simulate(seed: int, **opts: Any) -> tuple[Sample, dict[str, F32]]:
    """Simulate one radiograph (options as :func:`chest_xray`); also return the
    intermediate maps ``p``, ``p_nodule``, ``expected``, ``signal``, ``lung_field``."""
    o = options(opts, size=256, nodule=None, dose=None, opacity=None, bits=12)
    seed = check_seed(seed)
    size = check_size(o["size"])
    bits = check_int("bits", o["bits"], 10, 16)
    nodule = check_flag("nodule", o["nodule"])
    opacity = check_flag("opacity", o["opacity"])
    dose = o["dose"]
    if dose is not None:
        dose = check_float("dose", dose, 0.0, 1e9, lo_open=True)
    r_choice, r_anat, r_nod, r_opac, r_det, r_noise = _streams(seed, 6)
    scale = size / 256.0

    drawn_nodule = bool(r_choice.random() < 0.5)
    drawn_opacity = bool(r_choice.random() < 0.3)
    lo, hi = math.log(DOSE_RANGE[0]), math.log(DOSE_RANGE[1])
    drawn_dose = math.exp(float(r_choice.uniform(lo, hi)))
    has_nodule = drawn_nodule if nodule is None else nodule
    has_opacity = drawn_opacity if opacity is None else opacity
    i0 = drawn_dose if dose is None else dose

    anat = _anatomy(r_anat, size)
    p: F32 = anat["p"]
    lung_field = anat["lung_field"]
    yy = np.arange(size, dtype=np.float32)[:, None] + 0.5
    xx = np.arange(size, dtype=np.float32)[None, :] + 0.5
    cm_per_px = FOV_CM / size

    # Diffuse opacity: smooth soft-tissue patch replacing lung (both classes).
    dist = np.asarray(cv2.distanceTransform(lung_field.astype(np.uint8), cv2.DIST_L2, 5))
    oy, ox = _place_disc(r_opac, dist, 2.0, size)
    o_sigma = _u(r_opac, 0.05, 0.12) * size
    o_thick = _u(r_opac, 1.0, 4.0)
    o_cells = r_opac.standard_normal((max(4, size // 32),) * 2, dtype=np.float32)
    params: dict[str, Any] = {"seed": seed, "modality": "xray", "size": size, "bits": bits}
    if has_opacity:
        o_shape = 1.0 + 0.6 * smooth_field(o_cells, (size, size))
        blob = np.exp(-((yy - oy) ** 2 + (xx - ox) ** 2) / (2 * o_sigma**2)) * o_shape
        t_op = np.minimum(o_thick * np.maximum(blob, 0.0), anat["t_air"])
        p = p + (MU_SOFT - MU_LUNG) * t_op
        params["opacity"] = {"centre": [oy, ox], "sigma_px": o_sigma, "thickness_cm": o_thick}
    else:
        params["opacity"] = None

    # Nodule: soft-tissue sphere inside a lung field.
    radius = _u(r_nod, *NODULE_RADIUS_PX) * scale
    density = _u(r_nod, *NODULE_DENSITY)
    ny, nx = _place_disc(r_nod, dist, radius, size)
    d2 = (yy - ny) ** 2 + (xx - nx) ** 2
    mask = np.asarray(d2 <= radius * radius)
    p_nodule = np.zeros_like(p)
    if has_nodule:
        chord_cm = 2.0 * np.sqrt(np.maximum(radius * radius - d2, 0.0)) * cm_per_px
        p_nodule = (density * MU_SOFT - MU_LUNG) * chord_cm.astype(np.float32)
        p = p + p_nodule
    else:
        mask = np.zeros_like(mask)

    # Detector: blur of the expected fluence, scatter, Poisson, electronic noise.
    blur = _u(r_det, 0.6, 1.2) * scale
    spr = _u(r_det, 0.05, 0.3)
    gain = _u(r_det, 0.5, 2.0)
    sigma_e = _u(r_det, 1.0, 5.0)
    primary = (i0 * np.exp(-p)).astype(np.float32)
    primary = np.asarray(cv2.GaussianBlur(primary, (0, 0), blur), np.float32)
    small = cv2.resize(primary, (32, 32), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), 4.0)
    scatter = cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
    expected = (primary + spr * scatter).astype(np.float32)
    counts = r_noise.poisson(expected).astype(np.float32)
    signal = gain * counts + r_noise.standard_normal((size, size), dtype=np.float32) * sigma_e
    floor = 0.5 * gain
    top = (1 << bits) - 1
    est_p = (math.log(gain * i0 * (1.0 + spr)) - np.log(np.maximum(signal, floor))) / P_MAX
    image = np.clip(np.rint(est_p * top), 0, top).astype(np.uint16)

    params.update(
        dose=i0,
        gain=gain,
        sigma_e=sigma_e,
        blur_px=blur,
        scatter_to_primary=spr,
        p_max=P_MAX,
        anatomy=anat["geo"],
    )
    if has_nodule:
        disc_q = float(expected[mask].mean())
        mean_dp = float(p_nodule[mask].mean())
        cnr = mean_dp * math.sqrt(disc_q)  # log-domain contrast / quantum noise
        params["nodule"] = {
            "centre": [ny, nx],
            "radius_px": radius,
            "density": density,
            "peak_contrast_p": float(p_nodule.max()),
            "mean_contrast_p": mean_dp,
            "cnr": cnr,
            "detectability": cnr * math.sqrt(float(mask.sum())),
        }
    else:
        params["nodule"] = None
    label = "nodule" if has_nodule else "normal"
    sample = Sample(image, "xray", label, mask, bbox_of(mask), params)
    maps = {"p": p, "expected": expected, "signal": signal, "p_nodule": p_nodule}
    maps["lung_field"] = lung_field.astype(np.float32)
    return sample, maps


def chest_xray(
    seed: int,
    *,
    size: int = 256,
    nodule: bool | None = None,
    dose: float | None = None,
    opacity: bool | None = None,
    bits: int = 12,
) -> Sample:
    """Simulate a PA chest radiograph with or without a lung nodule.

    Parameters
    ----------
    seed : int
        Non-negative seed; the same seed gives the same sample.  Anatomy, nodule,
        opacity, detector and noise each draw from their own stream derived from it
        (:class:`numpy.random.SeedSequence`), so forcing ``nodule``, ``opacity`` or
        ``dose`` leaves the anatomy unchanged.
    size : int, default 256
        Image side in pixels, 64 ... 2048 (the field of view is 40 cm).
    nodule : bool or None
        Whether a nodule is present; ``None`` draws it (probability 0.5).  Nodules are
        spheres of radius 3-12 px (at 256; scaled with ``size``) and attenuation 1.0-3.0 x
        soft tissue (solid to calcified), centred so the whole disc lies in a lung field
        (they may overlap ribs, the heart border or an opacity).
    dose : float or None
        Unattenuated quanta per pixel ``I0`` (> 0); ``None`` draws it log-uniformly from
        ``DOSE_RANGE`` (2e3 ... 3e4).
    opacity : bool or None
        Whether a diffuse low-frequency soft-tissue opacity is present (a confounder in
        both classes); ``None`` draws it (probability 0.3).
    bits : int, default 12
        Bit depth of the output, 10 ... 16.

    Returns
    -------
    Sample
        ``image`` is ``uint16`` in ``[0, 2**bits - 1]``: the log response
        ``(ln(gain I0 (1 + SPR)) - ln S) / 7`` (an estimate of the line integral; air
        black, bone bright); ``mask`` is the nodule disc; ``params`` holds every drawn
        value, including the nodule's contrast in line-integral units and its
        contrast-to-noise ratio ``cnr`` (mean contrast x sqrt(quanta)) and
        ``detectability`` (``cnr`` x sqrt(disc area in pixels)).

    Raises
    ------
    InvalidInputError
        For a negative seed, a size outside 64 ... 2048, bits outside 10 ... 16, a
        non-positive dose or a non-boolean switch.

    Notes
    -----
    See the module docstring for the physics; Bushberg et al. (2012) for Beer-Lambert
    attenuation and quantum noise.
    """
    return _simulate(seed, size=size, nodule=nodule, dose=dose, opacity=opacity, bits=bits)[0]
