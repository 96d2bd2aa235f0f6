"""Chest radiograph (PA projection) phantom: analytic anatomy, Beer-Lambert, quantum noise.

The projection ``p(y, x) = sum_i mu_i t_i(y, x)`` (line integral of the linear attenuation
coefficient) is built from analytic shapes whose projected thicknesses are known in
closed form: an elliptic body of soft tissue, two lung fields (aerated lung replacing soft
tissue) cut by the diaphragm domes, the heart and mediastinum, the spine with vertebral
modulation, posterior ribs and clavicles (bone bands), smooth parenchymal texture and,
optionally, a diffuse soft-tissue opacity (a confounder in both classes) and a nodule
inside a lung field.  The anatomy is drawn over a wide range (body size and aspect, AP
thickness 15-32 cm, lung and heart size, 8-13 ribs of random width and contrast) and the
anatomical edges are blurred by a random Gaussian (sigma 0-1.5 px at size 256).

Nodules are (slightly ellipsoidal, lobulated) spheres: projected thickness
``2 sqrt(R(theta)^2 - d^2)`` with ``R`` the lobulated radius.  Their attenuation is
0.3-3.0 x soft tissue: about 65 % solid (1.0-3.0, log-uniform) and the rest ground
glass (0.3-1.0, a partially aerated opacity) whose edge profile is smoothed (a sphere
convolved with a Gaussian of 15-40 % of the radius), so it fades into the lung.  Radius
1.5-15 px at size 256 (the X-ray model's input), log-uniform, scaled with ``size``.

Detection follows Bushberg et al. [1]_, ch. 4 and 7: the expected number of quanta per
pixel is ``q = I0 exp(-p)`` (Beer-Lambert) with ``I0`` the unattenuated quanta per pixel
(``dose``, 1e3 ... 1.2e5 log-uniform), blurred by a Gaussian focal-spot /
geometric-unsharpness PSF (``blur_px``), plus a smooth scatter component (residual
scatter-to-primary ratio behind an anti-scatter grid).  The detector counts
``N ~ Poisson(q)``; its linear signal is ``S = gain N + e`` with Gaussian electronic noise
``e ~ N(0, sigma_e^2)``.  The noise is white: the model is a direct-conversion (a-Se) flat
panel, whose charge spread is negligible, so the blur acts on the expected fluence only
(a scintillator's light spread, which would also correlate the noise, is not modelled).

Display: the log response ``L = (ln(gain I0 (1 + SPR)) - ln S) / P_MAX`` (an estimate of
the line integral ``p``; air black, lungs dark, bone bright) goes through a random
monotone display mapping, as DR consoles apply one ([1]_, ch. 7 and 11): a window
``[lo, hi]`` of ``L``, a gamma 0.6-1.6 (log-uniform) and, with probability 0.5, a smooth
S-curve (a normalised logistic); the result fills a random fraction (55-100 %) of the
``bits``-bit range starting at a random offset.

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
from ._common import (
    F32,
    Sample,
    bbox_of,
    check_flag,
    check_seed,
    check_size,
    choice_or,
    options,
    smooth_field,
)
from ._common import streams as _streams
from ._common import uniform as _u

__all__ = [
    "BLUR_RANGE_PX",
    "CONSPICUOUS_NODULES",
    "DOSE_RANGE",
    "GAMMA_RANGE",
    "GROUND_GLASS_FRACTION",
    "LESION_PRIORS",
    "NODULE_DENSITY",
    "NODULE_RADIUS_PX",
    "chest_xray",
]

#: Linear attenuation coefficients (1/cm) at an effective energy of about 60 keV [2]_.
MU_SOFT = 0.20
MU_LUNG = 0.05  # inflated lung, density about 0.25 g/cm^3
MU_BONE = 0.48
#: Field of view (cm) across the image side.
FOV_CM = 40.0
#: Line integral mapped to 1 in the normalised log response.
P_MAX = 7.0
#: Range of ``dose`` (unattenuated quanta per pixel) drawn log-uniformly when not given.
DOSE_RANGE = (1.0e3, 1.2e5)
#: Range of the nodule radius in pixels at size 256 (the X-ray model's input resolution;
#: scaled with ``size / 256``), drawn log-uniformly.
NODULE_RADIUS_PX = (1.5, 15.0)
#: Nodule attenuation relative to soft tissue: ground glass (0.3 ... 1.0, uniform) to solid
#: and calcified (1.0 ... 3.0, log-uniform).
NODULE_DENSITY = (0.3, 3.0)
#: Probability that a nodule is ground glass (density below 1.0, fuzzy edge).
GROUND_GLASS_FRACTION = 0.35
#: ``lesion_prior="conspicuous"``: the sub-range the reference model is trained on (radius
#: 3-15 px at 256, density 0.8-3.0, 20 % ground glass). A compact CNN trained on the full
#: range from the start stays at the class prior (the first 2026-12-03 build); the full
#: range is what it is evaluated on (AUC by lesion size and density in its report).
CONSPICUOUS_NODULES: dict[str, Any] = {
    "radius_px": (3.0, 15.0),
    "density": (0.8, 3.0),
    "ground_glass": 0.2,
}
LESION_PRIORS = ("full", "conspicuous")
#: Range of the detector / focal-spot blur sigma (px at size 256, scaled with size) drawn
#: when ``blur_px`` is not given.
BLUR_RANGE_PX = (0.4, 1.4)
#: Range of the display gamma (log-uniform).
GAMMA_RANGE = (0.6, 1.6)
#: Largest accepted ``blur_px``.
MAX_BLUR_PX = 64.0


_Grid = npt.NDArray[np.floating[Any]]


def _cells(rng: np.random.Generator, n: int) -> F32:
    return rng.standard_normal((n, n), dtype=np.float32)


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return math.exp(float(rng.uniform(math.log(lo), math.log(hi))))


#: Above this sigma (px) :func:`_blur` works on a decimated grid.
_FAST_BLUR_SIGMA = 8.0


def _blur(img: F32, sigma: float) -> F32:
    """Gaussian blur of sigma ``sigma`` px (identity below 0.05 px).

    Above ``_FAST_BLUR_SIGMA`` the image is decimated by ``k = floor(sigma / 3)`` (area
    average), blurred there and interpolated back (bilinear); the coarse sigma is reduced
    so that the variances of the three steps (box ``(k^2 - 1) / 12``, Gaussian, triangle
    ``k^2 / 6``) add up to ``sigma^2``: the same width at a fraction of the cost of a
    ``6 sigma``-tap kernel (the summed kernel is Gaussian to within a few per cent).
    """
    if sigma < 0.05:
        return img
    h, w = img.shape
    k = int(sigma // 3.0)
    if sigma <= _FAST_BLUR_SIGMA or min(h, w) < 16 * k:
        return np.asarray(cv2.GaussianBlur(img, (0, 0), sigma), np.float32)
    ph, pw = -h % k, -w % k  # pad to a multiple of k so the grids align exactly
    padded = cv2.copyMakeBorder(img, 0, ph, 0, pw, cv2.BORDER_REFLECT) if ph or pw else img
    hh, ww = h + ph, w + pw
    small = cv2.resize(padded, (ww // k, hh // k), interpolation=cv2.INTER_AREA)
    s2 = (sigma * sigma - (k * k - 1) / 12.0 - k * k / 6.0) / (k * k)
    small = cv2.GaussianBlur(small, (0, 0), math.sqrt(s2))
    big = cv2.resize(small, (ww, hh), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(big[:h, :w], np.float32)


def _ellipsoid_window(
    yy: _Grid, xx: _Grid, cy: float, cx: float, ry: float, rx: float, angle: float = 0.0
) -> tuple[tuple[slice, slice], F32]:
    """Normalised projected thickness ``sqrt(1 - rho^2)`` of an ellipsoid on the window
    of the grid (``yy`` a column, ``xx`` a row of coordinates) that can be non-zero."""
    reach = max(ry, rx)
    ys, xs = yy[:, 0], xx[0, :]
    y0, y1 = np.searchsorted(ys, cy - reach), np.searchsorted(ys, cy + reach, side="right")
    x0, x1 = np.searchsorted(xs, cx - reach), np.searchsorted(xs, cx + reach, side="right")
    win = (slice(int(y0), int(y1)), slice(int(x0), int(x1)))
    dy, dx = yy[win[0]] - np.float32(cy), xx[:, win[1]] - np.float32(cx)
    if angle:
        c, s = np.float32(math.cos(angle)), np.float32(math.sin(angle))
        dy, dx = c * dy - s * dx, s * dy + c * dx
    rho2 = (dy * np.float32(1.0 / ry)) ** 2 + (dx * np.float32(1.0 / rx)) ** 2
    vals = np.sqrt(np.maximum(np.float32(1.0) - rho2, np.float32(0.0))).astype(np.float32)
    return win, vals


def _ellipsoid(
    yy: _Grid, xx: _Grid, cy: float, cx: float, ry: float, rx: float, angle: float = 0.0
) -> F32:
    """:func:`_ellipsoid_window` on the whole grid (0 outside the window)."""
    out = np.zeros((yy.shape[0], xx.shape[1]), np.float32)
    win, vals = _ellipsoid_window(yy, xx, cy, cx, ry, rx, angle)
    out[win] = vals
    return out


def _polyline_band(shape: tuple[int, int], curves: list[npt.NDArray[Any]], width: int) -> F32:
    """Anti-aliased bands along polylines (pixel coordinates), blurred into round bones."""
    canvas = np.zeros(shape, np.uint8)
    pts = [np.round(c * 16).astype(np.int32).reshape(-1, 1, 2) for c in curves]
    cv2.polylines(canvas, pts, False, 255, max(width, 1), cv2.LINE_AA, shift=4)
    band = canvas.astype(np.float32) * np.float32(1.0 / 255.0)
    return _blur(band, max(width / 4.0, 0.5))


def _anatomy(rng: np.random.Generator, size: int) -> dict[str, Any]:
    """Projection (line integral) of the lesion-free chest and the lung-field mask."""
    shape = (size, size)
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    yy, xx = c[:, None], c[None, :]
    geo: dict[str, Any] = {}

    # Body: an elliptic cylinder-like torso of soft tissue (slim ... broad, short ... long).
    bx, by = 0.5 + _u(rng, -0.04, 0.04), 0.58 + _u(rng, -0.05, 0.05)
    brx, bry = _u(rng, 0.34, 0.49), _u(rng, 0.52, 0.75)
    thick = _u(rng, 15.0, 32.0)  # AP thickness, cm
    profile = _u(rng, 0.4, 0.8)  # exponent of the body's cross-section profile
    t_body = thick * _ellipsoid(yy, xx, by, bx, bry, brx) ** profile
    geo.update(
        body_centre=[by, bx], body_axes=[bry, brx], body_thickness_cm=thick, body_profile=profile
    )
    body_scale = brx / 0.435  # lungs, heart and ribs follow the body width

    # Heart: soft tissue displacing lung, to the patient's left (image right).
    heart_scale = _u(rng, 0.8, 1.35) * body_scale
    hx, hy = bx + _u(rng, 0.02, 0.10) * body_scale, _u(rng, 0.56, 0.67)
    hrx, hry = _u(rng, 0.12, 0.17) * heart_scale, _u(rng, 0.10, 0.14) * heart_scale
    hang = _u(rng, -0.6, -0.1)
    t_heart = thick * _u(rng, 0.4, 0.65) * _ellipsoid(yy, xx, hy, hx, hry, hrx, hang)
    geo.update(heart_centre=[hy, hx], heart_axes=[hry, hrx], heart_angle=hang)

    # Lungs (image left = patient right), cut by the diaphragm domes.
    t_lung = np.zeros(shape, np.float32)
    lung_frac = _u(rng, 0.5, 0.8)
    lung_scale = _u(rng, 0.8, 1.2)
    gap = _u(rng, 0.14, 0.21) * body_scale
    ly = _u(rng, 0.36, 0.46)
    right_higher = _u(rng, 0.0, 0.05)
    lungs: list[dict[str, Any]] = []
    for side in (-1.0, 1.0):
        lx = bx + side * (gap + _u(rng, -0.015, 0.015))
        lrx = _u(rng, 0.10, 0.15) * body_scale * lung_scale
        lry = _u(rng, 0.22, 0.31) * lung_scale
        base = ly + lry * _u(rng, 0.68, 0.9) - (right_higher if side < 0 else 0.0)
        dome_h = _u(rng, 0.03, 0.09)
        win, lung = _ellipsoid_window(yy, xx, ly, lx, lry, lrx)
        wx, wy = xx[:, win[1]], yy[win[0]]
        dome = base - dome_h * np.clip(1.0 - ((wx - lx) / lrx) ** 2, 0.0, 1.0)
        taper = np.sqrt(np.clip((dome - wy) / 0.04, 0.0, 1.0))
        t_lung[win] += thick * lung_frac * lung * taper
        lungs.append({"centre": [ly, lx], "axes": [lry, lrx], "dome_base": base})
    geo["lungs"] = lungs
    t_air = np.maximum(t_lung - t_heart, 0.0)

    # Spine with vertebral bodies / discs, behind the mediastinum.
    sx, sw = bx + _u(rng, -0.015, 0.015), _u(rng, 0.03, 0.055)
    period, phase = _u(rng, 0.05, 0.08), _u(rng, 0.0, 2 * math.pi)
    vert = 0.8 + 0.2 * np.cos(2 * math.pi * yy / period + phase)
    spine_cm = _u(rng, 2.5, 5.0)
    t_spine = spine_cm * np.sqrt(np.clip(1 - ((xx - sx) / sw) ** 2, 0, 1)) * vert
    t_spine *= np.clip((yy - 0.02) / 0.05, 0.0, 1.0)

    # Posterior ribs: arcs from the spine across each lung; clavicles.
    curves_r = []
    n_ribs = int(rng.integers(8, 14))
    spacing = _u(rng, 0.046, 0.07) * lung_scale
    y_first = ly - 0.28 * lung_scale + _u(rng, -0.025, 0.025)
    lateral = np.linspace(0.0, 1.0, 16)
    rib_w = _u(rng, 0.012, 0.03)
    curv = _u(rng, 0.15, 0.32)
    reach = brx * 1.02
    bottom = max(lg["dome_base"] for lg in lungs) + 0.04
    for k in range(n_ribs):
        yk = y_first + k * spacing * (1.0 + 0.035 * k) + _u(rng, -0.006, 0.006)
        rise = _u(rng, 0.03, 0.09)
        if yk > bottom:
            continue
        for side in (-1.0, 1.0):
            xs = sx + side * (sw + lateral * (reach - sw))
            ys = yk - rise * lateral + curv * (1.0 + 0.05 * k) * lateral**2
            curves_r.append(np.stack([xs * size, ys * size], axis=1))
    ribs = _polyline_band(shape, curves_r, round(rib_w * size))
    clav = []
    cy0 = _u(rng, 0.08, 0.16)
    for side in (-1.0, 1.0):
        t = np.linspace(0.0, 1.0, 12)
        xs = bx + side * (0.04 + 0.34 * t) * body_scale
        ys = cy0 + 0.03 * np.sin(math.pi * t) - _u(rng, 0.02, 0.05) * t
        clav.append(np.stack([xs * size, ys * size], axis=1))
    clavicles = _polyline_band(shape, clav, round(_u(rng, 0.02, 0.034) * size))
    inside = (t_body > 0).astype(np.float32)
    rib_cm = _u(rng, 0.6, 1.8)  # rib contrast: projected bone thickness, cm
    clav_cm = _u(rng, 1.2, 2.2)
    t_bone = (ribs * rib_cm + clavicles * clav_cm) * inside + t_spine

    # Parenchymal / vascular texture: band-limited fluctuation of lung density, larger
    # near the hila.
    hilum = np.exp(-(((xx - bx) / 0.22) ** 2)) * np.exp(-(((yy - ly) / 0.15) ** 2))
    texture = smooth_field(_cells(rng, max(8, size // 10)), shape) * 0.35 + smooth_field(
        _cells(rng, max(4, size // 40)), shape
    ) * (0.3 + 0.6 * hilum)
    tex_amp = _u(rng, 0.03, 0.11)  # fraction of the lung thickness
    edge_blur = _u(rng, 0.0, 1.5)  # sigma of the anatomical edges, px at size 256

    t_air_tex = np.maximum(t_air * (1.0 - tex_amp * texture), 0.0)
    p_sharp = MU_SOFT * (t_body - t_air_tex) + MU_LUNG * t_air_tex + (MU_BONE - MU_SOFT) * t_bone
    p = _blur(np.asarray(p_sharp, np.float32), edge_blur * size / 256.0)
    lung_field = t_air > 0.3 * thick * lung_frac
    geo.update(
        n_ribs=n_ribs,
        rib_spacing=spacing,
        rib_width=rib_w,
        rib_thickness_cm=rib_cm,
        clavicle_thickness_cm=clav_cm,
        spine_thickness_cm=spine_cm,
        heart_scale=heart_scale,
        lung_scale=lung_scale,
        lung_fraction=lung_frac,
        texture=tex_amp,
        edge_blur_px=edge_blur,
    )
    return {"p": p, "lung_field": lung_field, "t_air": t_air, "geo": geo}


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


def _draw_nodule(rng: np.random.Generator, scale: float, prior: str = "full") -> dict[str, Any]:
    """Shape and density of a nodule (drawn whether or not one is placed)."""
    full = prior == "full"
    r_range = NODULE_RADIUS_PX if full else CONSPICUOUS_NODULES["radius_px"]
    d_range = NODULE_DENSITY if full else CONSPICUOUS_NODULES["density"]
    gg = GROUND_GLASS_FRACTION if full else CONSPICUOUS_NODULES["ground_glass"]
    # at least 0.75 px, so that the mask holds the pixel under the centre at size 64
    radius = max(_loguniform(rng, *r_range) * scale, 0.75)
    ground_glass = bool(rng.random() < gg)
    if ground_glass:
        density = _u(rng, d_range[0], 1.0)
    else:
        density = _loguniform(rng, 1.0, d_range[1])
    aspect = _u(rng, 0.75, 1.0)  # minor / major axis of the ellipsoid
    angle = _u(rng, 0.0, math.pi)
    lobes = int(rng.integers(3, 8))
    lobulation = _u(rng, 0.0, 0.15)  # relative amplitude of the radial modulation
    lobe_phase = _u(rng, 0.0, 2 * math.pi)
    edge = _u(rng, 0.15, 0.4) * radius if ground_glass else 0.0
    return {
        "radius_px": radius,
        "density": density,
        "ground_glass": ground_glass,
        "aspect": aspect,
        "angle_rad": angle,
        "lobes": lobes,
        "lobulation": lobulation,
        "lobe_phase": lobe_phase,
        "edge_sigma_px": edge,
    }


def _nodule_chord(
    nod: dict[str, Any], ny: float, nx: float, size: int
) -> tuple[F32, npt.NDArray[np.bool_], tuple[slice, slice]]:
    """Projected thickness (px) and mask of a nodule in a window around its centre."""
    r, edge = float(nod["radius_px"]), float(nod["edge_sigma_px"])
    reach = r * (1.0 + nod["lobulation"]) + 4.0 * edge + 2.0
    y0, y1 = max(int(ny - reach), 0), min(int(ny + reach) + 2, size)
    x0, x1 = max(int(nx - reach), 0), min(int(nx + reach) + 2, size)
    yy = np.arange(y0, y1, dtype=np.float64)[:, None] + 0.5 - ny
    xx = np.arange(x0, x1, dtype=np.float64)[None, :] + 0.5 - nx
    c, s = math.cos(nod["angle_rad"]), math.sin(nod["angle_rad"])
    u, v = c * yy + s * xx, (-s * yy + c * xx) / nod["aspect"]
    d = np.sqrt(u * u + v * v)
    theta = np.arctan2(v, u)
    big_r = r * (1.0 + nod["lobulation"] * np.cos(nod["lobes"] * theta + nod["lobe_phase"]))
    mask = np.asarray(d <= big_r)
    chord = (2.0 * np.sqrt(np.maximum(big_r * big_r - d * d, 0.0)) * nod["aspect"]).astype(
        np.float32
    )
    chord = _blur(chord, edge)
    return chord, mask, (slice(y0, y1), slice(x0, x1))


def _draw_display(rng: np.random.Generator) -> dict[str, Any]:
    """A random monotone display mapping of the normalised log response."""
    return {
        "window": [_u(rng, -0.05, 0.15), _u(rng, 0.7, 1.05)],
        "gamma": _loguniform(rng, *GAMMA_RANGE),
        "s_curve": bool(rng.random() < 0.5),
        "s_slope": _u(rng, 3.0, 10.0),
        "s_centre": _u(rng, 0.35, 0.65),
        "used_fraction": _u(rng, 0.55, 1.0),
        "offset_fraction": float(rng.random()),
    }


def _display(log_resp: F32, disp: dict[str, Any], bits: int) -> npt.NDArray[np.uint16]:
    """Apply the display mapping: window, gamma, optional S-curve, then the used part of
    the ``bits``-bit range."""
    lo, hi = disp["window"]
    x = np.clip((log_resp - np.float32(lo)) * np.float32(1.0 / (hi - lo)), 0.0, 1.0)
    x = np.power(x, np.float32(disp["gamma"]), dtype=np.float32)
    if disp["s_curve"]:
        k, c0 = disp["s_slope"], disp["s_centre"]
        f0 = 1.0 / (1.0 + math.exp(k * c0))
        f1 = 1.0 / (1.0 + math.exp(-k * (1.0 - c0)))
        x = np.exp(np.float32(-k) * (x - np.float32(c0)))
        x = (np.float32(1.0) / (np.float32(1.0) + x) - np.float32(f0)) * np.float32(1 / (f1 - f0))
    top = (1 << bits) - 1
    used = disp["used_fraction"] * top
    offset = disp["offset_fraction"] * (top - used)
    out: npt.NDArray[np.uint16] = np.clip(
        np.rint(x * np.float32(used) + np.float32(offset)), 0, top
    ).astype(np.uint16)
    return out


def _simulate(seed: int, **opts: Any) -> tuple[Sample, dict[str, F32]]:
    """Simulate one radiograph (options as :func:`chest_xray`); also return the
    intermediate maps ``p``, ``p_nodule``, ``expected``, ``signal``, ``lung_field`` and
    ``log_response`` (the normalised log response before the display mapping)."""
    o = options(
        opts,
        size=256,
        nodule=None,
        dose=None,
        opacity=None,
        bits=12,
        blur_px=None,
        lesion_prior="full",
    )
    prior = choice_or(o["lesion_prior"], "lesion_prior", LESION_PRIORS, "full")
    seed = check_seed(seed)
    size = check_size(o["size"])
    bits = check_int("bits", o["bits"], 10, 16)
    nodule = check_flag("nodule", o["nodule"])
    opacity = check_flag("opacity", o["opacity"])
    dose = o["dose"]
    if dose is not None:
        dose = check_float("dose", dose, 0.0, 1e9, lo_open=True)
    blur_opt = o["blur_px"]
    if blur_opt is not None:
        blur_opt = check_float("blur_px", blur_opt, 0.0, MAX_BLUR_PX)
    r_choice, r_anat, r_nod, r_opac, r_det, r_noise, r_disp = _streams(seed, 7)
    scale = size / 256.0

    drawn_nodule = bool(r_choice.random() < 0.5)
    drawn_opacity = bool(r_choice.random() < 0.3)
    drawn_dose = _loguniform(r_choice, *DOSE_RANGE)
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
        g2 = np.float32(-1.0 / (2 * o_sigma**2))
        blob = np.exp((yy - np.float32(oy)) ** 2 * g2) * np.exp((xx - np.float32(ox)) ** 2 * g2)
        t_op = np.minimum(np.float32(o_thick) * np.maximum(blob * o_shape, 0.0), anat["t_air"])
        p = p + np.float32(MU_SOFT - MU_LUNG) * t_op
        params["opacity"] = {"centre": [oy, ox], "sigma_px": o_sigma, "thickness_cm": o_thick}
    else:
        params["opacity"] = None

    # Nodule: lobulated (ground-glass: fuzzy) ellipsoid inside a lung field.
    nod = _draw_nodule(r_nod, scale, prior)
    ny, nx = _place_disc(r_nod, dist, nod["radius_px"] * (1.0 + nod["lobulation"]), size)
    mask = np.zeros((size, size), bool)
    p_nodule = np.zeros_like(p)
    if has_nodule:
        chord, local_mask, win = _nodule_chord(nod, ny, nx, size)
        mask[win] = local_mask
        p_nodule[win] = np.float32((nod["density"] * MU_SOFT - MU_LUNG) * cm_per_px) * chord
        p = p + p_nodule

    # Detector: blur of the expected fluence, scatter, Poisson, electronic noise.
    drawn_blur = _u(r_det, *BLUR_RANGE_PX) * scale
    blur = drawn_blur if blur_opt is None else blur_opt
    spr = _u(r_det, 0.05, 0.3)
    gain = _u(r_det, 0.5, 2.0)
    sigma_e = _u(r_det, 1.0, 5.0)
    primary = np.exp(-p) * np.float32(i0)
    primary = _blur(primary.astype(np.float32, copy=False), blur)
    small = cv2.resize(primary, (32, 32), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), 4.0)
    scatter = cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR)
    expected = (primary + np.float32(spr) * scatter).astype(np.float32)
    del primary, scatter
    counts = r_noise.poisson(expected).astype(np.float32)
    signal = counts * np.float32(gain)
    del counts
    signal += r_noise.standard_normal((size, size), dtype=np.float32) * np.float32(sigma_e)
    floor = np.float32(0.5 * gain)
    log_resp = np.log(np.maximum(signal, floor))
    log_resp = (np.float32(math.log(gain * i0 * (1.0 + spr))) - log_resp) * np.float32(1 / P_MAX)
    disp = _draw_display(r_disp)
    image = _display(log_resp, disp, bits)

    params.update(
        dose=i0,
        gain=gain,
        sigma_e=sigma_e,
        blur_px=blur,
        blur_drawn=blur_opt is None,
        scatter_to_primary=spr,
        p_max=P_MAX,
        display=disp,
        anatomy=anat["geo"],
    )
    if has_nodule:
        disc_q = float(expected[mask].mean())
        mean_dp = float(p_nodule[mask].mean())
        cnr = mean_dp * math.sqrt(disc_q)  # log-domain contrast / quantum noise
        params["nodule"] = {
            "centre": [ny, nx],
            **nod,
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
    maps["log_response"] = log_resp
    return sample, maps


def chest_xray(
    seed: int,
    *,
    size: int = 256,
    nodule: bool | None = None,
    dose: float | None = None,
    opacity: bool | None = None,
    bits: int = 12,
    blur_px: float | None = None,
    lesion_prior: str = "full",
) -> Sample:
    """Simulate a PA chest radiograph with or without a lung nodule.

    Parameters
    ----------
    seed : int
        Non-negative seed; the same seed gives the same sample.  Anatomy, nodule,
        opacity, detector, noise and display mapping each draw from their own stream
        derived from it (:class:`numpy.random.SeedSequence`), so forcing ``nodule``,
        ``opacity``, ``dose`` or ``blur_px`` leaves the anatomy unchanged.
    size : int, default 256
        Image side in pixels, 64 ... 4096 (the field of view is 40 cm).
    nodule : bool or None
        Whether a nodule is present; ``None`` draws it (probability 0.5).  Nodules are
        slightly ellipsoidal (aspect 0.75-1), lobulated spheres of radius 1.5-15 px at
        size 256 (``NODULE_RADIUS_PX``, log-uniform; scaled with ``size / 256``).  65 %
        are solid (attenuation 1.0-3.0 x soft tissue, log-uniform: solid to calcified),
        35 % ground glass (0.3-1.0 x, with an edge smoothed by a Gaussian of 15-40 % of the
        radius); ``params["nodule"]["ground_glass"]`` says which.  The whole nominal shape
        lies in a lung field (it may overlap ribs, the heart border or an opacity).
    dose : float or None
        Unattenuated quanta per pixel ``I0`` (> 0); ``None`` draws it log-uniformly from
        ``DOSE_RANGE`` (1e3 ... 1.2e5).
    opacity : bool or None
        Whether a diffuse low-frequency soft-tissue opacity is present (a confounder in
        both classes); ``None`` draws it (probability 0.3).
    bits : int, default 12
        Bit depth of the output container, 10 ... 16; the image fills a random 55-100 %
        of it.
    blur_px : float or None
        Sigma (px at the output size, 0 ... 64) of the Gaussian detector / focal-spot blur
        applied to the expected fluence before the noise; ``None`` draws it uniformly from
        ``BLUR_RANGE_PX`` (0.4 ... 1.4 px at size 256, scaled with ``size / 256``).
    lesion_prior : {"full", "conspicuous"}, default "full"
        The nodule distribution: ``"full"`` as described above; ``"conspicuous"`` the
        sub-range in ``CONSPICUOUS_NODULES`` (radius 3-15 px at 256, density 0.8-3.0, 20 %
        ground glass) that the reference model is trained on.  Every other aspect, and the
        random streams, are the same for both.

    Returns
    -------
    Sample
        ``image`` is ``uint16`` in ``[0, 2**bits - 1]``: the log response
        ``L = (ln(gain I0 (1 + SPR)) - ln S) / 7`` (an estimate of the line integral; air
        dark, bone bright) through a random monotone display mapping (``params["display"]``:
        window ``[lo, hi]`` of ``L`` with ``lo`` in -0.05 ... 0.15 and ``hi`` in
        0.7 ... 1.05, gamma 0.6-1.6 log-uniform, with probability 0.5 a logistic S-curve of
        slope 3-10 centred at 0.35-0.65, then a used fraction 0.55-1.0 of the range at a
        random offset).  ``mask`` is the nodule's nominal shape; ``params`` holds every
        drawn value, including the nodule's contrast in line-integral units, its
        contrast-to-noise ratio ``cnr`` (mean contrast x sqrt(quanta)) and
        ``detectability`` (``cnr`` x sqrt(mask area in pixels)).

    Raises
    ------
    InvalidInputError
        For a negative seed, a size outside 64 ... 4096, bits outside 10 ... 16, a
        non-positive dose, a ``blur_px`` outside 0 ... 64 or a non-boolean switch.

    Notes
    -----
    See the module docstring for the physics and the anatomy ranges; Bushberg et al.
    (2012) for Beer-Lambert attenuation, quantum noise and display processing.  Memory: a
    4096 x 4096 frame needs about 1 GB of float32 temporaries.
    """
    return _simulate(
        seed,
        size=size,
        nodule=nodule,
        dose=dose,
        opacity=opacity,
        bits=bits,
        blur_px=blur_px,
        lesion_prior=lesion_prior,
    )[0]
