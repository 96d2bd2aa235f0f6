"""Hold-out B-mode ultrasound: discrete point scatterers, an RF pulse and Hilbert envelopes.

**Never used for training, augmentation design or model selection** -- this family is the
stand-in for "a device the model has not seen" and only enters the final evaluation report.
It was written apart from :mod:`medimg_edge.synth` (only its ``Sample`` / ``LABELS``
interface is shared).

Model
-----
* *Scatterers*: a Poisson point process on the simulation grid (one cell = one RF sample
  along a scan line x one line pitch), with a tissue-dependent number density given per
  resolution cell (``N_c``).  Each scatterer has a zero-mean Gaussian amplitude (random
  phase); a cell holding ``n`` scatterers therefore carries ``sqrt(n) * sigma * N(0, 1)``
  exactly.  Low densities (``N_c`` of order 1 or below) give partially developed,
  K-distributed (non-Rayleigh) speckle, high densities fully developed Rayleigh speckle
  (Wagner et al. 1983; Jakeman & Pusey 1976).
* *Linear imaging model* (Field II style, Jensen 1991/1996): the RF line is the scatterer map
  convolved laterally with a depth-dependent Gaussian beam (focused transmit, dynamic receive:
  narrowest at the focus) and axially with a real Gaussian-modulated sinusoid.  Frequency-
  dependent attenuation (``alpha f``) reduces the amplitude along each line (integrated
  through the actual media, so an anechoic cyst gives posterior enhancement and an
  attenuating mass a shadow) and shifts the pulse's centre frequency down with depth.
* *Receiver*: electronic noise on the RF, a band-pass receive filter, the analytic signal by
  the FFT Hilbert transform (numpy only) and its magnitude (envelope), time-gain
  compensation, envelope decimation, log compression by a mu-law compander followed by a
  grey map (not a plain dB window), scan conversion of a convex, phased (sector) or linear
  geometry with black outside the field of view, 8-bit output.

References
----------
.. [1] J. A. Jensen, "A model for the propagation and scattering of ultrasound in tissue",
   J. Acoust. Soc. Am. 89(1):182-190, 1991; J. A. Jensen, "Field: a program for simulating
   ultrasound systems", Med. Biol. Eng. Comput. 34(suppl. 1):351-353, 1996.
.. [2] R. F. Wagner, S. W. Smith, J. M. Sandrik, H. Lopez, "Statistics of speckle in
   ultrasound B-scans", IEEE Trans. Sonics Ultrason. 30(3):156-163, 1983.
.. [3] E. Jakeman, P. N. Pusey, "A model for non-Rayleigh sea echo", IEEE Trans. Antennas
   Propag. 24(6):806-814, 1976 (K-distribution).
.. [4] T. L. Szabo, *Diagnostic Ultrasound Imaging: Inside Out*, 2nd ed., Academic Press,
   2014 (attenuation, centre-frequency downshift, beam forming, scan conversion).
.. [5] J. T. Bushberg et al., *The Essential Physics of Medical Imaging*, 3rd ed., 2012, ch. 14.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from .._errors import InvalidInputError
from ..synth import LABELS, Sample
from ._bmode_rf import Probe, _draw_probe, envelope, line_space_xz, simulate_rf
from ._masks import ring_around
from ._validate import check_seed, check_size

__all__ = [
    "Probe",
    "UltrasoundRender",
    "envelope",
    "render_ultrasound",
    "simulate_rf",
    "ultrasound",
]

F32 = NDArray[np.float32]

LESIONS = ("none", "cyst", "hypoechoic", "hyperechoic")
_STREAMS = ("label", "probe", "tissue", "scatter", "lesion", "noise", "display")


def _streams(seed: int) -> dict[str, np.random.Generator]:
    children = np.random.SeedSequence([seed, 0x05B3]).spawn(len(_STREAMS))
    return {name: np.random.default_rng(s) for name, s in zip(_STREAMS, children, strict=True)}


# ----------------------------------------------------------------------------- scene
@dataclass
class _Lesion:
    kind: str
    xc: float
    zc: float
    a: float
    b: float
    rot: float
    harmonics: tuple[tuple[int, float, float], ...]
    edge: float  # boundary transition width, mm

    def inside(self, x: F32, z: F32) -> F32:
        """Smooth indicator (1 inside, 0 outside) of the lesion."""
        dx, dz = x - np.float32(self.xc), z - np.float32(self.zc)
        c, s = math.cos(self.rot), math.sin(self.rot)
        u = dx * c + dz * s
        v = -dx * s + dz * c
        rho = np.sqrt((u / self.a) ** 2 + (v / self.b) ** 2)
        if self.harmonics:
            ang = np.arctan2(v / self.b, u / self.a)
            mod = np.ones_like(rho)
            for k, amp, ph in self.harmonics:
                mod = mod + np.float32(amp) * np.cos(k * ang + ph)
            rho = rho / mod
        scale = math.sqrt(self.a * self.b)
        sd = (1.0 - rho) * np.float32(scale)
        return np.clip(sd / np.float32(max(self.edge, 1e-3)) + 0.5, 0.0, 1.0).astype(np.float32)


@dataclass
class UltrasoundRender:
    """A rendered hold-out B-mode frame and intermediates used by tests and reports."""

    sample: Sample
    probe: Probe
    envelope: F32  # (n_lines, n_samples) after TGC, before decimation / log
    sector: NDArray[np.bool_]  # output pixels inside the field of view


_OVERRIDABLE = frozenset({"probe", "noise", "vessels"})


def render_ultrasound(
    seed: int,
    *,
    size: int = 256,
    lesion: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> UltrasoundRender:
    """Render one hold-out B-mode frame with intermediates (see :func:`ultrasound`).

    Parameters
    ----------
    seed, size, lesion
        As for :func:`ultrasound`.
    overrides : mapping, optional
        Fixes drawn values for experiments: ``probe`` (``"convex"``, ``"phased"``,
        ``"linear"``), ``noise`` (electronic noise relative to the unattenuated tissue echo,
        see :func:`simulate_rf`), ``vessels`` (bool).

    Returns
    -------
    UltrasoundRender
        The :class:`~medimg_edge.synth.Sample`, the probe, the envelope after TGC (line
        space) and the field-of-view mask of the output image.

    Raises
    ------
    InvalidInputError
        For invalid arguments or overrides.

    References
    ----------
    .. [1] Jensen, J. Acoust. Soc. Am. 89(1):182-190, 1991.
    """
    seed = check_seed(seed)
    size = check_size(size)
    if lesion is not None and (not isinstance(lesion, str) or lesion not in LESIONS):
        raise InvalidInputError(f"lesion must be one of {LESIONS} or None, got {lesion!r}")
    ov = dict(overrides or {})
    unknown = set(ov) - _OVERRIDABLE
    if unknown:
        raise InvalidInputError(f"unknown overrides {sorted(unknown)}; use {sorted(_OVERRIDABLE)}")
    if "probe" in ov and ov["probe"] not in ("convex", "phased", "linear"):
        raise InvalidInputError(f"probe kind must be convex, phased or linear, got {ov['probe']!r}")
    if "noise" in ov:
        nv = ov["noise"]
        if (
            isinstance(nv, bool)
            or not isinstance(nv, (int, float))
            or not (math.isfinite(float(nv)) and float(nv) >= 0.0)
        ):
            raise InvalidInputError(f"noise must be a finite number >= 0, got {nv!r}")
    if "vessels" in ov and not isinstance(ov["vessels"], bool):
        raise InvalidInputError(f"vessels must be True or False, got {ov['vessels']!r}")
    rng = _streams(seed)
    if lesion is None:
        lesion = (
            "none"
            if rng["label"].random() < 0.5
            else str(rng["label"].choice(["cyst", "hypoechoic", "hyperechoic"]))
        )
    probe = _draw_probe(rng["probe"], ov.get("probe"))
    x, z = line_space_xz(probe)
    tr = rng["tissue"]
    depth = probe.depth
    scale = depth / 120.0

    # ---- layered tissue: skin, subcutaneous fat, muscle, deep parenchyma
    def interface(base: float, amp: float) -> F32:
        per = tr.uniform(40.0, 120.0)
        ph = tr.uniform(0, 2 * math.pi)
        tilt = tr.uniform(-0.08, 0.08)
        out = base + amp * np.sin(2 * math.pi * x / per + ph) + tilt * x
        return np.asarray(out, np.float32)

    t_skin = tr.uniform(1.2, 2.5)
    t_fat = tr.uniform(4.0, 16.0) * max(scale, 0.35)
    t_mus = tr.uniform(6.0, 18.0) * max(scale, 0.35)
    z1 = interface(t_skin, 0.2)
    z2 = interface(t_skin + t_fat, 1.5 * scale)
    z3 = interface(t_skin + t_fat + t_mus, 3.0 * scale)
    nc_fat, nc_mus, nc_org = tr.uniform(0.6, 3.0), tr.uniform(6.0, 15.0), tr.uniform(10.0, 35.0)
    a_fat, a_mus, a_org = tr.uniform(0.5, 0.7), tr.uniform(0.8, 1.2), tr.uniform(0.45, 0.75)
    s_org = 1.0
    s_mus = tr.uniform(0.6, 1.0)
    s_fat = tr.uniform(0.5, 0.9)
    fibre_ang = tr.uniform(-0.35, 0.35)
    fibre_per = tr.uniform(1.2, 3.0)
    in_skin = z < z1
    in_fat = (z >= z1) & (z < z2)
    in_mus = (z >= z2) & (z < z3)
    sigma = np.full(x.shape, s_org, np.float32)
    dens = np.full(x.shape, nc_org, np.float32)
    alpha = np.full(x.shape, a_org, np.float32)
    # deep parenchyma: smooth log-normal texture of the backscatter strength
    tex = cv2.resize(
        tr.standard_normal((12, 16)).astype(np.float32),
        (x.shape[1], x.shape[0]),
        interpolation=cv2.INTER_CUBIC,
    )
    sigma *= np.exp(np.float32(tr.uniform(0.08, 0.2)) * tex)
    striae = 1.0 + 0.5 * np.sin(
        2 * math.pi * (z * math.cos(fibre_ang) + x * math.sin(fibre_ang)) / fibre_per
    )
    sigma = np.where(in_mus, s_mus * striae, sigma).astype(np.float32)
    dens = np.where(in_mus, nc_mus, dens)
    alpha = np.where(in_mus, a_mus, alpha)
    sigma = np.where(in_fat, s_fat, sigma)
    dens = np.where(in_fat, nc_fat, dens)
    alpha = np.where(in_fat, a_fat, alpha)
    sigma = np.where(in_skin, 1.8, sigma)
    dens = np.where(in_skin, 20.0, dens)
    for zi, strength in ((z2, tr.uniform(2.5, 4.0)), (z3, tr.uniform(3.0, 5.0))):
        band = np.exp(-0.5 * ((z - zi) / 0.35) ** 2)
        sigma = sigma * (1.0 + np.float32(strength) * band)
        dens = np.maximum(dens, 25.0 * band)
    # septa in the fat: a few thin bright oblique lines
    for _ in range(int(tr.integers(1, 5))):
        zs = tr.uniform(0.2, 0.8)
        ang = tr.uniform(-0.3, 0.3)
        zl = (
            z1
            + (z2 - z1) * np.float32(zs)
            + np.float32(math.tan(ang)) * (x - np.float32(tr.uniform(-20, 20)))
        )
        sigma = np.where(in_fat, sigma * (1.0 + 2.0 * np.exp(-0.5 * ((z - zl) / 0.25) ** 2)), sigma)
    sigma = sigma.astype(np.float32)
    dens = dens.astype(np.float32)
    alpha = alpha.astype(np.float32)

    # ---- vessels (normal anatomy, elongated anechoic tubes)
    has_vessels = bool(ov.get("vessels", tr.random() < 0.35))
    n_vessels = 0
    if has_vessels:
        for _ in range(int(tr.integers(1, 3))):
            # a gently curved, tapering tube segment (a vein or artery in plane)
            vz = float(np.max(z3)) + tr.uniform(0.1, 0.8) * (depth - float(np.max(z3)))
            vr = tr.uniform(1.0, 3.0) * max(scale, 0.5)
            va = tr.uniform(-0.35, 0.35)
            vx = tr.uniform(-0.2, 0.2) * depth
            half = tr.uniform(0.2, 0.5) * depth
            bend = tr.uniform(-0.004, 0.004)
            ca, sa = math.cos(va), math.sin(va)
            along = (x - vx) * ca + (z - vz) * sa
            across = -(x - vx) * sa + (z - vz) * ca - bend * along * along
            a_c = np.clip(along, -half, half)
            r_loc = vr * (1.0 - 0.3 * a_c / half)
            dist = np.sqrt((along - a_c) ** 2 + across**2)  # to the centre-line (rounded ends)
            occ = np.clip((r_loc - dist) / 0.3 + 0.5, 0, 1).astype(np.float32)
            sigma *= 1.0 - occ
            wall = np.exp(-0.5 * ((dist - r_loc) / 0.25) ** 2).astype(np.float32)
            sigma *= 1.0 + 1.5 * wall
            alpha = alpha * (1 - occ) + 0.05 * occ
            n_vessels += 1

    # ---- lesion
    lr = rng["lesion"]
    les: _Lesion | None = None
    les_params: dict[str, Any] = {}
    if lesion != "none":
        lin = probe.kind == "linear"
        d_lo, d_hi = (4.0, 16.0) if lin else (7.0, 30.0)
        diam = float(math.exp(lr.uniform(math.log(d_lo), math.log(d_hi))))
        ecc = lr.uniform(0.7, 1.0)
        a_ax, b_ax = diam / 2.0, diam / 2.0 * ecc
        if lr.random() < 0.5:
            a_ax, b_ax = b_ax, a_ax
        z_top = float(np.max(z3)) + max(a_ax, b_ax) + 1.5
        z_bot = depth * 0.85 - max(a_ax, b_ax)
        if z_bot <= z_top:
            z_top = z_bot = 0.5 * (z_top + z_bot)
        zc = lr.uniform(z_top, z_bot) if z_bot > z_top else z_top
        reach = max(a_ax, b_ax) + 2.0
        if lin:
            xc = lr.uniform(-1, 1) * (probe.width / 2 - reach)
        else:
            r = probe.radius + zc
            th_max = max(probe.half_angle - reach / r, 0.0)
            th = lr.uniform(-th_max, th_max)
            xc, zc = r * math.sin(th), r * math.cos(th) - probe.radius
        if lesion == "cyst":
            harm: tuple[tuple[int, float, float], ...] = ()
            edge = 0.25
        elif lesion == "hypoechoic":
            harm = tuple(
                (int(k), float(lr.uniform(0.02, 0.09)), float(lr.uniform(0, 6.283)))
                for k in lr.choice([3, 4, 5, 6, 7], size=3, replace=False)
            )
            edge = float(lr.uniform(0.4, 1.5))
        else:
            harm = (
                (int(lr.integers(2, 5)), float(lr.uniform(0.0, 0.05)), float(lr.uniform(0, 6.283))),
            )
            edge = float(lr.uniform(0.3, 1.0))
        les = _Lesion(
            lesion,
            float(xc),
            float(zc),
            float(a_ax),
            float(b_ax),
            float(lr.uniform(0, math.pi)),
            harm,
            edge,
        )
        ind = les.inside(x, z)
        if lesion == "cyst":
            sigma = sigma * (1.0 - ind)
            a_fluid = float(lr.uniform(0.02, 0.25))  # clear to proteinaceous fluid
            alpha = alpha * (1.0 - ind) + np.float32(a_fluid) * ind
            les_params["fluid_attenuation_db_cm_mhz"] = round(a_fluid, 4)
            wall = np.clip(1.0 - np.abs(les.inside(x, z) - 0.5) * 2.0, 0, 1)
            sigma = sigma * (1.0 + 1.2 * wall)
            contrast_db = -math.inf
            les_params["cyst_internal_echoes"] = False
        else:
            c_db = (
                float(lr.uniform(5.0, 12.0))
                if lesion == "hypoechoic"
                else float(lr.uniform(4.0, 10.0))
            )
            contrast_db = -c_db if lesion == "hypoechoic" else c_db
            gain = np.float32(10.0 ** (contrast_db / 20.0))
            sigma = sigma * (1.0 + (gain - 1.0) * ind)
            if lesion == "hypoechoic":
                dens = dens * (1.0 - ind) + ind * np.float32(lr.uniform(0.3, 1.0)) * dens
                a_f = float(lr.uniform(1.0, 2.0))
            else:
                a_f = float(lr.uniform(1.0, 1.4))
            alpha = alpha * (1.0 + (a_f - 1.0) * ind)
            les_params["attenuation_factor"] = round(a_f, 3)
        les_params.update(
            lesion_kind=lesion,
            diameter_mm=round(diam, 3),
            semi_axes_mm=[round(a_ax, 3), round(b_ax, 3)],
            centre_mm_xz=[round(float(xc), 3), round(float(zc), 3)],
            edge_mm=round(edge, 3),
            contrast_db=None if not math.isfinite(contrast_db) else round(contrast_db, 3),
        )

    # ---- RF, envelope, TGC
    # electronic noise: the echo of the parenchyma falls to the noise floor at the
    # "penetration depth" (1.2-2.2 x the imaged depth)
    penetration = float(rng["noise"].uniform(1.2, 2.2)) * depth
    noise_rel = float(
        ov.get("noise", 10.0 ** (-(2.0 * a_org * probe.f0 * penetration / 10.0) / 20.0))
    )
    rf, _noise_rms = simulate_rf(probe, sigma, dens, alpha, rng["scatter"], noise_rel=noise_rel)
    env = envelope(rf, probe)
    zz = (np.arange(probe.n_samples) + 0.5) * probe.dz
    dr = rng["display"]
    a_tgc = float(dr.uniform(0.45, 0.7))  # the scanner's assumed attenuation
    tgc_db = 2.0 * a_tgc * probe.f0 * zz / 10.0
    knots = dr.normal(0.0, 2.0, 5)
    tgc_db = tgc_db + np.interp(zz, np.linspace(0, zz[-1], 5), knots)
    env = env * (10.0 ** (tgc_db / 20.0)).astype(np.float32)[None, :]

    # ---- decimate, compress, scan convert
    n_r = int(min(probe.n_samples, max(256, int(1.5 * size))))
    env_d = cv2.resize(env, (n_r, probe.n_lines), interpolation=cv2.INTER_AREA)
    deep = env_d[:, n_r // 4 :]
    ref_med = float(np.median(deep[deep > 0])) if np.any(deep > 0) else 1.0
    gain_db = float(dr.uniform(20.0, 30.0))
    dyn_db = float(dr.uniform(45.0, 65.0))
    gamma = float(dr.uniform(0.9, 1.5))
    mu = 10.0 ** (dyn_db / 20.0)
    xr = np.clip(env_d / np.float32(ref_med * 10.0 ** (gain_db / 20.0)), 0.0, 1.0)
    comp = np.log1p(np.float32(mu) * xr) / np.float32(math.log1p(mu))
    grey = np.power(comp, np.float32(gamma)).astype(np.float32)
    image, sector, px_mm, (xg, zg) = _scan_convert(probe, grey, size)

    mask = np.zeros((size, size), bool)
    bbox = None
    if les is not None:
        mask = (les.inside(xg, zg) >= 0.5) & sector
        ys, xs = np.nonzero(mask)
        if ys.size == 0:  # pragma: no cover - lesion always lies in the sector
            raise RuntimeError("lesion mask is empty")
        bbox = (int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1)
        les_params.update(_cnr(image, mask, sector))
        les_params["radius_px"] = round(math.sqrt(les.a * les.b) / px_mm, 3)
        les_params["centre_px"] = [round(float(ys.mean()), 2), round(float(xs.mean()), 2)]
    params: dict[str, Any] = {
        "generator": "holdout.bmode_points",
        "seed": seed,
        "size": size,
        "probe": probe.kind,
        "f0_mhz": round(probe.f0, 3),
        "bandwidth": round(probe.bandwidth, 3),
        "depth_mm": round(probe.depth, 2),
        "focus_mm": round(probe.focus, 2),
        "aperture_mm": round(probe.aperture, 2),
        "half_angle_deg": round(math.degrees(probe.half_angle), 2),
        "width_mm": round(probe.width, 2),
        "radius_mm": round(probe.radius, 2),
        "n_lines": probe.n_lines,
        "n_samples": probe.n_samples,
        "pixel_mm": round(px_mm, 5),
        "scatterers_per_cell": {
            "fat": round(nc_fat, 3),
            "muscle": round(nc_mus, 3),
            "parenchyma": round(nc_org, 3),
        },
        "attenuation_db_cm_mhz": {
            "fat": round(a_fat, 3),
            "muscle": round(a_mus, 3),
            "parenchyma": round(a_org, 3),
        },
        "layers_mm": [round(t_skin, 3), round(t_fat, 3), round(t_mus, 3)],
        "vessels": n_vessels,
        "noise_rel": float(f"{noise_rel:.4g}"),
        "penetration_mm": round(penetration, 2),
        "tgc_assumed_db_cm_mhz": round(a_tgc, 3),
        "gain_db": round(gain_db, 2),
        "dynamic_range_db": round(dyn_db, 2),
        "grey_gamma": round(gamma, 3),
        **les_params,
    }
    sample = Sample(
        image=image,
        modality="ultrasound",
        label=lesion if lesion != "none" else LABELS["ultrasound"][0],
        mask=mask,
        bbox=bbox,
        params=params,
    )
    return UltrasoundRender(sample, probe, env, sector)


def _scan_convert(
    probe: Probe, grey: F32, size: int
) -> tuple[NDArray[np.uint8], NDArray[np.bool_], float, tuple[F32, F32]]:
    """Polar (or linear) line data -> square Cartesian image; black outside the sector."""
    n_l, n_r = grey.shape
    if probe.kind == "linear":
        width, z_min, height = probe.width, 0.0, probe.depth
    else:
        r_max = probe.radius + probe.depth
        width = 2.0 * r_max * math.sin(probe.half_angle)
        z_min = probe.radius * math.cos(probe.half_angle) - probe.radius
        height = probe.depth - z_min
    px = max(width, height) / (0.96 * size)
    cols = (np.arange(size) + 0.5 - size / 2) * px
    rows = z_min - 0.01 * size * px + (np.arange(size) + 0.5) * px
    xg = np.broadcast_to(cols[None, :], (size, size)).astype(np.float32)
    zg = np.broadcast_to(rows[:, None], (size, size)).astype(np.float32)
    if probe.kind == "linear":
        li = (xg / probe.width + 0.5) * (n_l - 1)
        ri = zg / probe.depth * n_r - 0.5
    else:
        zr = zg + np.float32(probe.radius)
        r = np.sqrt(xg * xg + zr * zr)
        th = np.arctan2(xg, zr)
        li = (th / probe.half_angle + 1.0) * 0.5 * (n_l - 1)
        ri = (r - probe.radius) / probe.depth * n_r - 0.5
    sector = (li >= 0) & (li <= n_l - 1) & (ri >= -0.5) & (ri <= n_r - 0.5)
    # remap samples src(map_y, map_x): rows of ``grey`` are lines, columns are depth samples
    out = cv2.remap(
        grey,
        ri.astype(np.float32),
        li.astype(np.float32),
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )
    img = np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)
    img[~sector] = 0
    return img, sector, float(px), (xg, zg)


def _cnr(
    image: NDArray[np.uint8], mask: NDArray[np.bool_], sector: NDArray[np.bool_]
) -> dict[str, float]:
    """Contrast and contrast-to-noise of the lesion against a surrounding ring (grey levels)."""
    r = max(2.0, math.sqrt(mask.sum() / math.pi) * 0.5)
    ring = ring_around(mask, r, 3.0 * r) & sector
    k3 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    inner = cv2.erode(mask.astype(np.uint8), k3).astype(bool)  # the mask minus its rim
    if not inner.any():
        inner = mask
    f = image.astype(np.float64)
    mi, mo = float(f[inner].mean()), float(f[ring].mean()) if ring.any() else 0.0
    si, so = float(f[inner].std()), float(f[ring].std()) if ring.any() else 0.0
    return {
        "mean_inside": round(mi, 3),
        "mean_ring": round(mo, 3),
        "cnr": round(abs(mi - mo) / max(math.sqrt(si * si + so * so), 1e-9), 4),
    }


def ultrasound(seed: int, *, size: int = 256, lesion: str | None = None) -> Sample:
    """Hold-out B-mode frame from a point-scatterer, RF-level simulator.

    Never used for training, augmentation design or model selection; see the module
    docstring for the physics.

    Parameters
    ----------
    seed : int
        Non-negative; the same seed gives the same frame (probe, tissue, scatterers, lesion,
        noise and display come from independent ``SeedSequence`` streams).
    size : int
        Output matrix (square), 128-4096 pixels.
    lesion : str or None
        ``"none"``, ``"cyst"``, ``"hypoechoic"`` or ``"hyperechoic"``; ``None`` draws "none"
        with probability 0.5, else one of the three.

    Returns
    -------
    Sample
        ``uint8`` image, label in ``LABELS["ultrasound"]``, lesion mask in image coordinates
        (inside the sector), ``params`` with probe, tissue, lesion size, contrast and CNR.

    Raises
    ------
    InvalidInputError
        For a bad seed, size or lesion name.

    References
    ----------
    .. [1] Jensen, "A model for the propagation and scattering of ultrasound in tissue",
       J. Acoust. Soc. Am. 89(1), 1991.
    .. [2] Wagner et al., "Statistics of speckle in ultrasound B-scans", IEEE Trans. Sonics
       Ultrason. 30(3), 1983.
    """
    return render_ultrasound(seed, size=size, lesion=lesion).sample
