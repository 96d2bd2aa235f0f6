"""Hold-out chest radiographs: a 3-D voxel torso projected by cone-beam ray sums.

**Never used for training, augmentation design or model selection** -- this family is the
stand-in for "a device the model has not seen" and only enters the final evaluation report.
It was written apart from :mod:`medimg_edge.synth` (only its ``Sample`` / ``LABELS``
interface is shared).

Pipeline
--------
1. *Anatomy* (voxel volume, ``(z, y, x)`` = antero-posterior, cranio-caudal, lateral, mm):
   two material-density volumes, soft-tissue equivalent and cortical-bone equivalent (g/cm^3),
   built from implicit surfaces with partial-volume occupancy: body with a fat layer, two
   lungs (apex dome, diaphragm domes with posterior recesses, mediastinum, heart, aorta,
   trachea and main bronchi carved out), a pulmonary vessel tree of tapering cylinders that
   branch from the hila (Murray's law radii), vertebral bodies (cortical shell, trabecular
   core) with pedicles, twelve rib pairs as curved tubes with a cortical shell, clavicles,
   scapulae, optional breasts and gastric air bubble.  The idea of a voxelised anthropomorphic
   torso follows XCAT (Segars et al. 2010), at a much coarser scale.
2. *Projection*: a point source at ``SID`` = 1.8 m (postero-anterior view, detector against
   the anterior chest).  Each coronal slice is magnified by its own factor ``SID / d(z)``
   (and sheared for a slightly rotated patient) with ``cv2.warpAffine`` and the slices are
   summed: the line integral of each material per detector pixel, times the obliquity factor.
   The nodule is added *analytically* at detector resolution (exact chord lengths of an
   ellipsoid), so its pixel radius scales with the requested size.
3. *Physics*: a polyenergetic beam (four energy bins of a 100-125 kVp spectrum, NIST-like mass
   attenuation of soft tissue and cortical bone: beam hardening), heel effect and inverse-square
   fall-off, an anti-scatter grid, scatter as a broad convolution of the scatter source
   (convolution-superposition, SPR ~0.2-0.5 behind the lungs), energy-dependent absorption in a
   CsI or Gd2O2S scintillator, Poisson quanta per energy bin (exact where a bin expects < 30
   quanta, their Gaussian limit elsewhere), Swank (gain) noise, light spread
   (core + glare) applied *after* the quantum sampling so that the noise is correlated,
   electronic and row noise, flat-field correction.
4. *Display chain* ("for presentation", MONOCHROME2: bone bright, lung dark): log, dynamic
   range compression (large-kernel subtraction), unsharp masking, percentile windowing inside
   the body and a sigmoid LUT, quantised to 12 or 14 bits in ``uint16``.

References
----------
.. [1] J. T. Bushberg, J. A. Seibert, E. M. Leidholdt, J. M. Boone, *The Essential Physics of
   Medical Imaging*, 3rd ed., Lippincott Williams & Wilkins, 2012 (ch. 6-7: projection
   radiography, scatter, grids, detectors).
.. [2] W. P. Segars, G. Sturgeon, S. Mendonca, J. Grimes, B. M. W. Tsui, "4D XCAT phantom for
   multimodality imaging research", Med. Phys. 37(9):4902-4915, 2010.
.. [3] J. H. Hubbell, S. M. Seltzer, "Tables of X-ray mass attenuation coefficients and mass
   energy-absorption coefficients", NIST Standard Reference Database 126, 1996.
.. [4] R. K. Swank, "Absorption and noise in x-ray phosphors", J. Appl. Phys. 44:4199, 1973.
.. [5] C. D. Murray, "The physiological principle of minimum work", PNAS 12:207-214, 1926.
.. [6] B. Ohnesorge, T. Flohr, K. Klingenbeck-Regn, "Efficient object scatter correction
   algorithm for third and fourth generation CT scanners", Eur. Radiol. 9:563-569, 1999
   (scatter as a convolution of the primary).
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
from ._chest_anatomy import (
    BONE_DENSITY,
    DET_MM,
    DX,
    DY,
    DZ,
    FOV_MM,
    M_C,
    NX,
    NY,
    NZ,
    SID,
    SOD_C,
    _Anatomy,
    _axes,
    _build_anatomy,
    _inside,
)
from ._masks import ring_around
from ._validate import check_seed, check_size

__all__ = [
    "ChestRender",
    "chest_xray",
    "detected_fraction",
    "project_volume",
    "render_chest",
    "spectrum",
]

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]


# ----------------------------------------------------------------------------- physics
ENERGIES = np.array([40.0, 55.0, 70.0, 90.0])  # keV, bin centres
MU_TISSUE = np.array([0.268, 0.215, 0.194, 0.177])  # cm^2/g, soft tissue (ICRU-44)
MU_BONE = np.array([0.666, 0.360, 0.262, 0.202])  # cm^2/g, cortical bone (ICRU-44)
SPECTRUM_110 = np.array([0.15, 0.38, 0.30, 0.17])  # fluence fractions at 110 kVp
SPECTRUM_SLOPE = np.array([-0.05, -0.04, 0.03, 0.06])  # per +15 kVp
ETA = {  # absorbed fraction per energy bin
    "CsI": np.array([0.93, 0.80, 0.62, 0.45]),
    "GOS": np.array([0.80, 0.60, 0.44, 0.30]),
}
NATIVE_PITCH = 0.15  # mm: electronic-noise reference pixel

_STREAMS = ("label", "anatomy", "vessels", "nodule", "exposure", "noise", "display")


def _streams(seed: int) -> dict[str, np.random.Generator]:
    children = np.random.SeedSequence([seed, 0x58C4]).spawn(len(_STREAMS))
    return {name: np.random.default_rng(s) for name, s in zip(_STREAMS, children, strict=True)}


def spectrum(kvp: float) -> NDArray[np.float64]:
    """Fluence fractions of the four energy bins for a tube voltage of ``kvp`` (100-125)."""
    spec = np.clip(SPECTRUM_110 + (kvp - 110.0) / 15.0 * SPECTRUM_SLOPE, 0.01, None)
    return np.asarray(spec / spec.sum())


def detected_fraction(
    a_t: Any, a_b: Any, *, kvp: float = 110.0, scintillator: str = "CsI"
) -> NDArray[np.float64]:
    """Energy-integrated detector signal behind ``a_t`` g/cm^2 tissue + ``a_b`` bone, / open.

    The polyenergetic Beer-Lambert sum of the pipeline (no scatter, no noise): its
    ``-ln`` grows less than linearly with thickness (beam hardening).
    """
    spec = spectrum(kvp) * ETA[scintillator] * ENERGIES
    at = np.asarray(a_t, np.float64)[..., None]
    ab = np.asarray(a_b, np.float64)[..., None]
    out = (np.exp(-(MU_TISSUE * at + MU_BONE * ab)) * spec).sum(-1) / spec.sum()
    return np.asarray(out)


# ----------------------------------------------------------------------------- projection
def slice_warp(z_mm: float, shear: tuple[float, float] = (0.0, 0.0)) -> NDArray[np.float64]:
    """Affine map of the coronal slice at depth ``z_mm`` onto the projection grid.

    Cone-beam magnification relative to the central plane, ``s = SOD_C / (SOD_C - z)``
    (``z`` > 0 is posterior, towards the source), about the central ray, after a shear
    ``(z tan a_x, z tan a_y)`` that models a slightly rotated / tilted patient.
    """
    s = SOD_C / (SOD_C - z_mm)
    cx, cy = NX / 2 - 0.5, NY / 2 - 0.5
    tx = z_mm * math.tan(shear[0]) / DX
    ty = z_mm * math.tan(shear[1]) / DY
    return np.array([[s, 0.0, (1 - s) * cx + s * tx], [0.0, s, (1 - s) * cy + s * ty]])


def project_volume(vol: F32, *, cone: bool = True, shear: tuple[float, float] = (0.0, 0.0)) -> F32:
    """Ray sums of a ``(NZ, NY, NX)`` volume onto the projection grid, in ``value x cm``.

    Parameters
    ----------
    vol : ndarray of float32, shape ``(NZ, NY, NX)``
        Density per voxel (e.g. g/cm^3); the result is the line integral (g/cm^2).
    cone : bool
        Cone-beam geometry (per-slice magnification + obliquity); ``False`` gives parallel
        rays along ``z``.
    shear : tuple of float
        Patient rotation / tilt in radians (slice shear).

    Returns
    -------
    ndarray of float32, shape ``(NY, NX)``
        Grid pixel ``(i, j)`` is the detector point ``M_C * ((j + 0.5 - NX/2) DX, ...)`` mm.

    References
    ----------
    .. [1] Bushberg et al., *The Essential Physics of Medical Imaging*, 3rd ed., ch. 7.
    """
    if vol.shape != (NZ, NY, NX):
        raise InvalidInputError(f"volume must have shape {(NZ, NY, NX)}, got {vol.shape}")
    z1, _, _ = _axes()
    acc = np.zeros((NY, NX), np.float32)
    for k in range(NZ):
        plane = np.ascontiguousarray(vol[k], dtype=np.float32)
        if not plane.any():
            continue
        if cone or shear != (0.0, 0.0):
            m = slice_warp(float(z1[k]) if cone else 0.0, shear)
            if not cone:
                m[0, 2] = float(z1[k]) * math.tan(shear[0]) / DX
                m[1, 2] = float(z1[k]) * math.tan(shear[1]) / DY
            plane = cv2.warpAffine(  # type: ignore[assignment]
                plane,
                m,
                (NX, NY),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=0.0,
            )
        acc += plane
    acc *= np.float32(DZ / 10.0)
    if cone:
        acc *= _obliquity((NY, NX), FOV_MM * M_C)
    return acc


def _obliquity(shape: tuple[int, int], extent_mm: float) -> F32:
    n_y, n_x = shape
    u = ((np.arange(n_x) + 0.5 - n_x / 2) * (extent_mm / n_x / SID)).astype(np.float32)
    v = ((np.arange(n_y) + 0.5 - n_y / 2) * (extent_mm / n_y / SID)).astype(np.float32)
    out = v[:, None] ** 2 + u[None, :] ** 2
    out += np.float32(1.0)
    return np.asarray(np.sqrt(out, out=out), np.float32)


def _neg_log_ratio(num: F32, den: F32, floor: np.float32) -> F32:
    """``-ln(max(num / den, floor))`` in place on ``num`` (which it consumes)."""
    np.divide(num, den, out=num)
    np.maximum(num, floor, out=num)
    np.log(num, out=num)
    np.negative(num, out=num)
    return num


def _resize(img: F32, size: int) -> F32:
    if img.shape == (size, size):
        return img
    out = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)
    return np.asarray(out, np.float32)


def _blur(img: F32, sigma_px: float) -> F32:
    """Gaussian blur; large kernels run on a decimated copy (smooth result either way)."""
    if sigma_px < 0.3:
        return img
    if sigma_px <= 10.0:
        return np.asarray(cv2.GaussianBlur(img, (0, 0), sigma_px), np.float32)
    f = sigma_px / 4.0
    h, w = img.shape
    small = cv2.resize(img, (max(int(w / f), 8), max(int(h / f), 8)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), 4.0 * small.shape[1] / w * f)
    return np.asarray(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR), np.float32)


# ----------------------------------------------------------------------------- nodule
def _place_nodule(
    rng: np.random.Generator, anat: _Anatomy, diameter: float
) -> tuple[NDArray[np.float64], tuple[float, float, float], float]:
    """Centre (z, y, x) mm inside a lung so that the whole ellipsoid lies in lung."""
    semi = tuple(diameter / 2.0 * rng.uniform(0.85, 1.15) for _ in range(3))
    rot = float(rng.uniform(0, math.pi))
    cand = np.flatnonzero(anat.lung.ravel() > 0.99)
    z1, y1, x1 = _axes()
    dirs = [
        np.array(v, float)
        for v in (
            (1, 0, 0),
            (-1, 0, 0),
            (0, 1, 0),
            (0, -1, 0),
            (0, 0, 1),
            (0, 0, -1),
            (1, 1, 1),
            (1, 1, -1),
            (1, -1, 1),
            (1, -1, -1),
            (-1, 1, 1),
            (-1, 1, -1),
            (-1, -1, 1),
            (-1, -1, -1),
        )
    ]
    for _ in range(400):
        idx = int(cand[rng.integers(cand.size)])
        iz, rem = divmod(idx, NY * NX)
        iy, ix = divmod(rem, NX)
        c = np.array([z1[iz], y1[iy], x1[ix]]) + rng.uniform(-0.5, 0.5, 3) * (DZ, DY, DX)
        reach = max(semi) + 3.0
        if all(_inside(anat.lung, c + reach * d / np.linalg.norm(d)) > 0.5 for d in dirs):
            return c, (float(semi[0]), float(semi[1]), float(semi[2])), rot
    raise RuntimeError("no room for the nodule in the lungs")  # pragma: no cover


def _nodule_chord(
    size: int,
    centre: NDArray[np.float64],
    semi: tuple[float, float, float],
    rot: float,
    shear: tuple[float, float],
) -> tuple[F32, tuple[int, int, int, int], NDArray[np.bool_], float]:
    """Exact chord length (cm) of the ellipsoid per detector pixel on its bbox, and footprint."""
    pitch = DET_MM / size
    zc, yc, xc = (float(v) for v in centre)
    s = M_C * SOD_C / (SOD_C - zc)  # magnification of the nodule's plane
    u0 = s * (xc + zc * math.tan(shear[0]))
    v0 = s * (yc + zc * math.tan(shear[1]))
    a, b, c = semi[0] * s, semi[1] * s, semi[2]
    reach = max(a, b) + 1.0
    j0 = max(math.floor((u0 - reach) / pitch + size / 2), 0)
    j1 = min(math.ceil((u0 + reach) / pitch + size / 2) + 1, size)
    i0 = max(math.floor((v0 - reach) / pitch + size / 2), 0)
    i1 = min(math.ceil((v0 + reach) / pitch + size / 2) + 1, size)
    u = (np.arange(j0, j1) + 0.5 - size / 2) * pitch - u0
    v = (np.arange(i0, i1) + 0.5 - size / 2) * pitch - v0
    cr, sr = math.cos(rot), math.sin(rot)
    uu = u[None, :] * cr + v[:, None] * sr
    vv = -u[None, :] * sr + v[:, None] * cr
    inside = 1.0 - (uu / a) ** 2 - (vv / b) ** 2
    foot = inside > 0
    chord = (2.0 * c * np.sqrt(np.clip(inside, 0, None)) / 10.0).astype(np.float32)
    return chord, (i0, j0, i1, j1), foot, s


# ----------------------------------------------------------------------------- detector
@dataclass
class ChestRender:
    """A rendered hold-out radiograph and the intermediates tests and reports use."""

    sample: Sample
    log_signal: F32  # flat-fielded -ln(signal / open field), noisy
    log_expected: F32  # the same without quantum / electronic noise
    lung_footprint: NDArray[np.bool_]  # detector pixels whose ray crosses lung
    body_footprint: NDArray[np.bool_]


_OVERRIDABLE = frozenset({"dose", "kvp", "scatter", "electronic", "scintillator", "shear"})


def _check_overrides(ov: Mapping[str, Any]) -> None:
    """Validate experiment overrides before any work is done."""
    unknown = set(ov) - _OVERRIDABLE
    if unknown:
        raise InvalidInputError(f"unknown overrides {sorted(unknown)}; use {sorted(_OVERRIDABLE)}")
    for key, lo, hi in (
        ("dose", 1.0, 1e9),
        ("kvp", 60.0, 150.0),
        ("scatter", 0.0, 1.0),
        ("electronic", 0.0, 1e4),
    ):
        if key in ov:
            v = ov[key]
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
            if not ok or not (math.isfinite(float(v)) and lo <= float(v) <= hi):
                raise InvalidInputError(f"{key} must be a finite number in [{lo}, {hi}], got {v!r}")
    if "scintillator" in ov and ov["scintillator"] not in ETA:
        raise InvalidInputError(f"scintillator must be 'CsI' or 'GOS', got {ov['scintillator']!r}")
    if "shear" in ov:
        sh = ov["shear"]
        try:
            vals = [float(v) for v in sh]
        except (TypeError, ValueError):
            vals = []
        if len(vals) != 2 or not all(math.isfinite(v) and abs(v) < 0.3 for v in vals):
            raise InvalidInputError(
                f"shear must be two finite angles below 0.3 rad, e.g. (0.02, 0.0), got {sh!r}"
            )


def render_chest(
    seed: int,
    *,
    size: int = 512,
    nodule: bool | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ChestRender:
    """Render one hold-out radiograph with its intermediates (see :func:`chest_xray`).

    Parameters
    ----------
    seed, size, nodule
        As for :func:`chest_xray`.
    overrides : mapping, optional
        Fixes drawn exposure values for experiments (the other draws are unchanged):
        ``dose`` (open-field quanta per mm^2), ``kvp`` (60-150), ``scatter`` (scatter kernel
        strength), ``electronic`` (read noise in quanta at 0.15 mm pitch), ``scintillator``
        (``"CsI"`` / ``"GOS"``), ``shear`` (two patient rotation angles, rad).

    Returns
    -------
    ChestRender
        The :class:`~medimg_edge.synth.Sample` plus the noisy and noise-free flat-fielded
        log signals and the lung / body footprints on the detector.

    Raises
    ------
    InvalidInputError
        For invalid arguments or overrides.

    References
    ----------
    .. [1] Bushberg et al., *The Essential Physics of Medical Imaging*, 3rd ed., 2012.
    """
    seed = check_seed(seed)
    size = check_size(size)
    if nodule is not None and not isinstance(nodule, bool):
        raise InvalidInputError(f"nodule must be True, False or None, got {nodule!r}")
    ov = dict(overrides or {})
    _check_overrides(ov)
    rng = _streams(seed)
    has_nodule = bool(rng["label"].random() < 0.5) if nodule is None else nodule

    anat = _build_anatomy(rng["anatomy"], rng["vessels"])
    er = rng["exposure"]
    shear = ov.get("shear", (float(er.normal(0, 0.03)), float(er.normal(0, 0.02))))
    shear_t = (float(shear[0]), float(shear[1]))
    a_t = _resize(project_volume(anat.tissue, shear=shear_t), size)
    a_b = _resize(project_volume(anat.bone, shear=shear_t), size)
    lung_p = _resize(project_volume(anat.lung, shear=shear_t), size)
    lung_fp = lung_p > 0.02
    lung_core = lung_p > 0.5 * lung_p.max()
    del lung_p
    body_fp = _resize(project_volume(anat.body, shear=shear_t), size) > 0.5
    np.maximum(a_t, 0, out=a_t)
    np.maximum(a_b, 0, out=a_b)
    pitch = DET_MM / size
    sigma_anat = 0.42 * DX * M_C / pitch  # blur equal to the voxel grid's

    nod_params: dict[str, Any] = {}
    mask = np.zeros((size, size), bool)
    nod_box: tuple[int, int, int, int] | None = None
    a_t_bg: F32 | None = None
    a_b_bg: F32 | None = None
    log_without: F32 | None = None
    if has_nodule:
        nr = rng["nodule"]
        diameter = float(math.exp(nr.uniform(math.log(5.0), math.log(30.0))))
        kind = str(nr.choice(["solid", "ground_glass", "calcified"], p=[0.7, 0.22, 0.08]))
        dens = {
            "solid": nr.uniform(0.92, 1.06),
            "ground_glass": nr.uniform(0.5, 0.75),
            "calcified": nr.uniform(0.95, 1.05),
        }[kind]
        centre, semi, rot = _place_nodule(nr, anat, diameter)
        chord, box, foot, mag = _nodule_chord(size, centre, semi, rot, shear_t)
        i0, j0, i1, j1 = box
        local_lung = _lung_density_at(anat, centre)
        pad = math.ceil(4 * sigma_anat) + 2
        bi0, bj0 = max(i0 - pad, 0), max(j0 - pad, 0)
        bi1, bj1 = min(i1 + pad, size), min(j1 + pad, size)
        add = np.zeros((bi1 - bi0, bj1 - bj0), np.float32)
        add[i0 - bi0 : i1 - bi0, j0 - bj0 : j1 - bj0] = chord * np.float32(dens - local_lung)
        add = _blur(add, sigma_anat)
        a_t_bg = a_t[bi0:bi1, bj0:bj1].copy()
        a_b_bg = a_b[bi0:bi1, bj0:bj1].copy()
        a_t[bi0:bi1, bj0:bj1] += add
        if kind == "calcified":
            calc = nr.uniform(0.15, 0.45)
            addb = np.zeros_like(add)
            addb[i0 - bi0 : i1 - bi0, j0 - bj0 : j1 - bj0] = chord * np.float32(calc * BONE_DENSITY)
            a_b[bi0:bi1, bj0:bj1] += _blur(addb, sigma_anat)
        else:
            calc = 0.0
        mask[i0:i1, j0:j1] = foot
        nod_box = (bi0, bj0, bi1, bj1)
        radius_mm = float(np.mean(semi[:2]))
        nod_params = {
            "nodule_kind": kind,
            "diameter_mm": round(diameter, 3),
            "semi_axes_mm": [round(v, 3) for v in semi],
            "density": round(float(dens), 4),
            "density_ratio_to_lung": round(float(dens / local_lung), 3),
            "calcium_fraction": round(float(calc), 3),
            "centre_mm_zyx": [round(float(v), 2) for v in centre],
            "magnification": round(mag, 4),
            "radius_px": round(radius_mm * mag / pitch, 3),
        }

    # ---- exposure / detector draws
    kvp = float(ov.get("kvp", er.uniform(100.0, 125.0)))
    dose = float(ov.get("dose", math.exp(er.uniform(math.log(1.2e5), math.log(8e5)))))
    scint = str(ov.get("scintillator", er.choice(["CsI", "GOS"], p=[0.7, 0.3])))
    kappa = float(ov.get("scatter", er.uniform(0.02, 0.045)))
    e_noise = float(ov.get("electronic", er.uniform(3.0, 12.0)))
    heel = float(er.uniform(0.05, 0.15))
    grid_tp = float(er.uniform(0.65, 0.75))
    swank = float(er.uniform(0.75, 0.9)) if scint == "GOS" else float(er.uniform(0.85, 0.95))
    core_mm = float(er.uniform(0.08, 0.15)) if scint == "CsI" else float(er.uniform(0.18, 0.3))
    glare_frac = float(er.uniform(0.03, 0.08)) if scint == "CsI" else float(er.uniform(0.08, 0.15))
    glare_mm = float(er.uniform(1.5, 4.0))

    spec = spectrum(kvp)
    eta = ETA[scint]
    v = (np.arange(size) + 0.5 - size / 2) * pitch
    open_map = (
        (1.0 + heel * v / (DET_MM / 2))[:, None] / _obliquity((size, size), DET_MM) ** 3
    ).astype(np.float32)  # heel effect (cranio-caudal) x inverse square / obliquity
    n_open = dose * pitch * pitch * grid_tp  # primary quanta per pixel in the open field

    def primary(at: F32, ab: F32, om: F32 = open_map) -> list[F32]:
        return [
            np.exp(-(np.float32(MU_TISSUE[k]) * at + np.float32(MU_BONE[k]) * ab))
            * np.float32(n_open * spec[k] * eta[k])
            * om
            for k in range(4)
        ]

    prim = primary(a_t, a_b)
    # scatter source ~ tissue interacting, attenuated on the way out; broad kernel
    mu_s = 0.2
    src = (mu_s * a_t) * np.exp(-0.5 * mu_s * a_t)
    scat = _blur(src.astype(np.float32), 55.0 / pitch) * np.float32(kappa * dose * pitch**2)
    del src, a_t, a_b  # the nodule box keeps its own copies
    scat_w = np.array([0.35, 0.4, 0.2, 0.05])
    er_noise = rng["noise"]
    prim_box = (
        [pk[nod_box[0] : nod_box[2], nod_box[1] : nod_box[3]].copy() for pk in prim]
        if nod_box is not None
        else []
    )
    spr_lung = float(
        np.median(scat[lung_core] / np.maximum(sum(pk[lung_core] for pk in prim), 1e-6))
    )
    means = prim  # expected absorbed quanta per bin: primary + scatter (in place)
    for k in range(4):
        means[k] += scat * np.float32(scat_w[k] * eta[k])
    light_exp = np.zeros((size, size), np.float32)
    var_total = np.zeros((size, size), np.float32)  # Poisson x Swank gain: E^2 m / A
    for k in range(4):
        light_exp += np.float32(ENERGIES[k]) * means[k]
        var_total += np.float32(ENERGIES[k] ** 2 / swank) * means[k]
    # absorbed quanta per energy bin: Poisson.  Where every bin expects >= 30 quanta the
    # energy-weighted sum is drawn from its Gaussian limit in one go (same mean/variance);
    # elsewhere each bin is sampled exactly, plus the Swank gain part of the variance,
    # E^2 m (1/A - 1) = (1 - A) x var_total.
    light = er_noise.standard_normal((size, size), dtype=np.float32)
    np.sqrt(var_total, out=var_total)
    light *= var_total
    light += light_exp
    low = np.minimum.reduce(means) < 30.0
    if low.any():
        exact = np.zeros(int(low.sum()), np.float32)
        for k in range(4):
            exact += np.float32(ENERGIES[k]) * er_noise.poisson(means[k][low]).astype(np.float32)
        sd_gain = var_total[low] * np.float32(math.sqrt(1.0 - swank))
        exact += sd_gain * er_noise.standard_normal(exact.size, dtype=np.float32)
        light[low] = exact
    del var_total, means, prim

    def spread(img: F32) -> F32:
        core = _blur(img, core_mm / pitch)
        return (1.0 - glare_frac) * core + glare_frac * _blur(img, glare_mm / pitch)

    light = spread(light)
    light_exp = spread(light_exp)
    e_mean = float(np.dot(spec * eta, ENERGIES) / np.dot(spec, eta))
    sig_e = e_noise * e_mean * (pitch / NATIVE_PITCH)
    light += np.float32(sig_e) * er_noise.standard_normal((size, size), dtype=np.float32)
    light += np.float32(0.3 * sig_e) * er_noise.standard_normal((size, 1), dtype=np.float32)
    # flat field: divide by the open-field (flood) response, then log
    flood = np.float32(n_open * float(np.dot(spec * eta, ENERGIES))) * open_map
    floor = np.float32(1e-4)
    log_sig = _neg_log_ratio(light, flood, floor)
    log_exp = _neg_log_ratio(light_exp, flood, floor)
    del light, light_exp, flood

    # ---- conspicuity (log domain)
    if has_nodule and nod_box is not None and a_t_bg is not None and a_b_bg is not None:
        bi0, bj0, bi1, bj1 = nod_box
        p_bg = primary(a_t_bg, a_b_bg, open_map[bi0:bi1, bj0:bj1])
        s_box = scat[bi0:bi1, bj0:bj1]
        bg = np.zeros_like(a_t_bg)
        fg = np.zeros_like(a_t_bg)
        for k in range(4):
            sk = s_box * np.float32(scat_w[k] * eta[k])
            bg += np.float32(ENERGIES[k]) * (p_bg[k] + sk)
            fg += np.float32(ENERGIES[k]) * (prim_box[k] + sk)
        delta = np.log(np.maximum(bg, 1e-6)) - np.log(np.maximum(fg, 1e-6))
        log_without = log_sig.copy()  # the same noisy frame without the nodule
        log_without[bi0:bi1, bj0:bj1] -= delta
        m_box = mask[bi0:bi1, bj0:bj1]
        contrast = float(delta[m_box].mean()) if m_box.any() else 0.0
        noise = log_sig[bi0:bi1, bj0:bj1] - log_exp[bi0:bi1, bj0:bj1]
        sigma_q = float(noise.std())
        nod_params.update(
            contrast_log=round(contrast, 5),
            peak_contrast_log=round(float(delta.max()), 5),
            noise_sigma_log=round(sigma_q, 5),
            cnr=round(contrast / max(sigma_q, 1e-9), 3),
            background_log=round(float(log_exp[mask].mean()), 4),
        )

    image, disp = _display(log_sig, body_fp, rng["display"])
    if has_nodule and mask.any() and log_without is not None:
        # contrast against the structured background at the nodule's scale: the std of the
        # band-passed (noisy) log signal in a ring around the nodule (ribs, vessels, noise)
        rad = max(2.0, float(nod_params["radius_px"]))
        ring = ring_around(mask, rad, 2.0 * rad)
        if ring.any():
            bi0, bj0, bi1, bj1 = _grow_box(bbox_of(mask), round(4 * rad) + 4, size)
            sub = log_without[bi0:bi1, bj0:bj1]
            band = sub - _blur(sub, 2.0 * rad)
            sd_bg = float(band[ring[bi0:bi1, bj0:bj1]].std())
            nod_params["background_sigma_log"] = round(sd_bg, 5)
            nod_params["background_cnr"] = round(nod_params["contrast_log"] / max(sd_bg, 1e-9), 3)
    ys, xs = np.nonzero(mask)
    bbox = (int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1) if ys.size else None
    if has_nodule and bbox is None:  # pragma: no cover - footprint always has pixels >= 128 px
        raise RuntimeError("nodule footprint is empty")
    if ys.size:
        nod_params["centre_px"] = [round(float(ys.mean()), 2), round(float(xs.mean()), 2)]
    params: dict[str, Any] = {
        "generator": "holdout.chest_voxel",
        "seed": seed,
        "size": size,
        "pixel_mm": round(pitch, 5),
        "kvp": round(kvp, 2),
        "dose_quanta_per_mm2": round(dose, 1),
        "scintillator": scint,
        "swank": round(swank, 3),
        "light_core_mm": round(core_mm, 3),
        "glare_fraction": round(glare_frac, 3),
        "glare_mm": round(glare_mm, 3),
        "scatter_kernel": round(kappa, 4),
        "spr_lung": round(spr_lung, 3),
        "grid_primary_transmission": round(grid_tp, 3),
        "heel": round(heel, 3),
        "electronic_quanta": round(e_noise, 3),
        "shear_rad": [round(shear_t[0], 4), round(shear_t[1], 4)],
        **anat.params,
        **disp,
        **nod_params,
    }
    label = LABELS["xray"][1] if has_nodule else LABELS["xray"][0]
    sample = Sample(image=image, modality="xray", label=label, mask=mask, bbox=bbox, params=params)
    return ChestRender(sample, log_sig, log_exp, lung_fp, body_fp)


def bbox_of(mask: NDArray[np.bool_]) -> tuple[int, int, int, int]:
    """``(y0, x0, y1, x1)`` bounds (exclusive ends) of a non-empty mask."""
    ys, xs = np.nonzero(mask)
    return int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1


def _grow_box(box: tuple[int, int, int, int], pad: int, size: int) -> tuple[int, int, int, int]:
    y0, x0, y1, x1 = box
    return max(y0 - pad, 0), max(x0 - pad, 0), min(y1 + pad, size), min(x1 + pad, size)


def _lung_density_at(anat: _Anatomy, p: NDArray[np.float64]) -> float:
    iz = int(np.clip(p[0] / DZ + NZ / 2, 0, NZ - 1))
    iy = int(np.clip(p[1] / DY + NY / 2, 0, NY - 1))
    ix = int(np.clip(p[2] / DX + NX / 2, 0, NX - 1))
    return float(anat.lung_density[iz, iy, ix])


def _display(
    log_sig: F32, body: NDArray[np.bool_], rng: np.random.Generator
) -> tuple[NDArray[np.uint16], dict[str, Any]]:
    """Vendor-like presentation chain: DRC, unsharp mask, percentile window, sigmoid LUT.

    References
    ----------
    .. [1] Bushberg et al., *The Essential Physics of Medical Imaging*, 3rd ed., ch. 7
       (image processing of digital radiographs: equalisation, unsharp masking, LUTs).
    """
    size = log_sig.shape[0]
    pitch = DET_MM / size
    drc = float(rng.uniform(0.4, 0.8)) if rng.random() < 0.9 else 0.0
    drc_mm = float(rng.uniform(25.0, 60.0))
    usm = float(rng.uniform(0.2, 1.0))
    usm_mm = float(rng.uniform(1.0, 3.0))
    slope = float(rng.uniform(3.0, 6.0))
    centre = float(rng.uniform(0.5, 0.65))
    bits = int(rng.choice([12, 14], p=[0.6, 0.4]))
    work = log_sig.astype(np.float32)
    if drc > 0:
        low = _blur(work, drc_mm / pitch)
        work = work - np.float32(drc) * (
            low - np.float32(np.median(low[body]) if body.any() else 0)
        )
    work = work + np.float32(usm) * (work - _blur(work, usm_mm / pitch))
    vals = work[body] if body.sum() > 100 else work.ravel()
    lo, hi = (float(v) for v in np.percentile(vals[:: max(1, vals.size // 200000)], [1.0, 99.9]))
    hi += 0.05 * (hi - lo)  # headroom: the mediastinum is not clipped
    u = (work - np.float32(lo)) / np.float32(max(hi - lo, 1e-6))

    def sig(t: Any) -> Any:
        return 1.0 / (1.0 + np.exp(-slope * (t - centre)))

    s0, s1 = sig(0.0), sig(1.0)
    y = (sig(np.clip(u, -0.2, 1.2)) - np.float32(s0)) / np.float32(s1 - s0)
    top = (1 << bits) - 1
    img = np.clip(np.rint(y * np.float32(top)), 0, top).astype(np.uint16)
    return img, {
        "display_drc": round(drc, 3),
        "display_drc_mm": round(drc_mm, 2),
        "display_unsharp": round(usm, 3),
        "display_unsharp_mm": round(usm_mm, 3),
        "display_sigmoid_slope": round(slope, 3),
        "display_sigmoid_centre": round(centre, 3),
        "bits_stored": bits,
    }


def chest_xray(seed: int, *, size: int = 512, nodule: bool | None = None) -> Sample:
    """Hold-out chest radiograph: voxel torso, cone-beam ray sums, polyenergetic detector.

    Never used for training, augmentation design or model selection; see the module
    docstring for the physics.

    Parameters
    ----------
    seed : int
        Non-negative; the same seed gives the same frame (anatomy, nodule, exposure, noise
        and display come from independent ``SeedSequence`` streams, so ``nodule=True`` and
        ``nodule=False`` with one seed share the anatomy).
    size : int
        Detector matrix (square), 128-4096 pixels over a 43 cm field; the nodule's pixel
        radius scales with it.
    nodule : bool or None
        Force a nodule (``True``) or none (``False``); ``None`` draws it with probability 0.5.

    Returns
    -------
    Sample
        ``image`` ``uint16`` ``(size, size)`` (12 or 14 bits stored, MONOCHROME2),
        ``label`` ``"normal"`` / ``"nodule"``, ``mask`` the nodule's projected footprint,
        ``bbox`` its bounds, ``params`` every drawn value (``diameter_mm``, ``radius_px``,
        ``density``, ``contrast_log``, ``cnr``, dose, kVp, detector, display chain, ...).

    Raises
    ------
    InvalidInputError
        For a negative / non-integer seed, a size outside 128-4096 or a non-bool ``nodule``.

    References
    ----------
    .. [1] Bushberg et al., *The Essential Physics of Medical Imaging*, 3rd ed., 2012.
    .. [2] Segars et al., "4D XCAT phantom for multimodality imaging research", Med. Phys.
       37(9), 2010.
    """
    return render_chest(seed, size=size, nodule=nodule).sample
