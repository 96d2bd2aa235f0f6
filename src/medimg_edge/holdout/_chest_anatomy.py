"""Voxel torso of the hold-out chest phantom (anatomy only; see ``_chest_voxel``).

**Never used for training, augmentation design or model selection.**

Two material-density volumes on a ``(NZ, NY, NX)`` grid (antero-posterior, cranio-caudal,
lateral; mm coordinates centred on the volume), built from implicit surfaces with
partial-volume occupancy: soft-tissue-equivalent density and cortical-bone-equivalent
density (g/cm^3).  Structures: body with a fat layer and neck/shoulders, lungs (apical domes,
hemidiaphragm domes with posterior recesses, mediastinum narrowing behind the heart, heart,
aortic knob and descending aorta carved out), parenchyma denser posteriorly, a pulmonary
vessel tree of tapering cylinders branching from the hila with Murray's-law radii, trachea,
main bronchi and an optional gastric bubble, optional breasts, vertebral bodies with a
cortical shell and trabecular core plus pedicles and spinous processes, twelve rib pairs as
curved tubes whose cortex thins anteriorly, clavicles and scapulae.

References
----------
.. [1] W. P. Segars et al., "4D XCAT phantom for multimodality imaging research", Med. Phys.
   37(9):4902-4915, 2010 (voxelised anthropomorphic phantoms as a concept).
.. [2] C. D. Murray, "The physiological principle of minimum work", PNAS 12:207-214, 1926.
.. [3] J. T. Bushberg et al., *The Essential Physics of Medical Imaging*, 3rd ed., 2012.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]

# ----------------------------------------------------------------------------- geometry
NZ, NY, NX = 80, 192, 192  # voxels: antero-posterior, cranio-caudal, lateral
DET_MM = 430.0  # square detector (43 cm x 43 cm)
SID = 1800.0  # source-to-image distance, mm
DEPTH_MM = 300.0  # extent of the volume along the beam
GAP_MM = 10.0  # detector cover to the volume's anterior face
SOD_C = SID - GAP_MM - DEPTH_MM / 2.0  # source to the volume centre
M_C = SID / SOD_C  # magnification of the central plane
FOV_MM = DET_MM / M_C  # in-plane extent of the volume (object plane)
DX = FOV_MM / NX
DY = FOV_MM / NY
DZ = DEPTH_MM / NZ
H_EDGE = DZ  # partial-volume edge width (the coarsest voxel side)

BONE_DENSITY = 1.92  # g/cm^3 of cortical bone


# ----------------------------------------------------------------------------- helpers
def _axes() -> tuple[F64, F64, F64]:
    z = (np.arange(NZ) + 0.5 - NZ / 2) * DZ
    y = (np.arange(NY) + 0.5 - NY / 2) * DY
    x = (np.arange(NX) + 0.5 - NX / 2) * DX
    return np.asarray(z, np.float64), np.asarray(y, np.float64), np.asarray(x, np.float64)


def _occ(sd: Any, h: float = H_EDGE) -> F32:
    """Partial-volume occupancy from an (approximate) signed distance, mm (inside > 0)."""
    out = np.clip(np.asarray(sd, dtype=np.float32) / np.float32(h) + np.float32(0.5), 0, 1)
    return np.asarray(out, np.float32)


def _ellipsoid_sd(u: Any, v: Any, w: Any, a: float, b: float, c: float) -> F32:
    """First-order signed distance to an axis-aligned ellipsoid (positive inside)."""
    u = np.asarray(u, np.float32)
    v = np.asarray(v, np.float32)
    w = np.asarray(w, np.float32)
    q = np.sqrt((u / a) ** 2 + (v / b) ** 2 + (w / c) ** 2) + np.float32(1e-6)
    g = np.sqrt((u / a**2) ** 2 + (v / b**2) ** 2 + (w / c**2) ** 2) / q
    out = (1.0 - q) / np.maximum(g, np.float32(1.0 / max(a, b, c)))
    return np.asarray(out, np.float32)


def _smoothstep(t: Any) -> Any:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _box(lo: NDArray[np.floating[Any]], hi: NDArray[np.floating[Any]]) -> tuple[slice, ...] | None:
    """Voxel index box (z, y, x) covering the mm box ``[lo, hi]``; None when outside."""
    z0 = math.floor(lo[0] / DZ + NZ / 2 - 0.5)
    z1 = math.ceil(hi[0] / DZ + NZ / 2 - 0.5) + 1
    y0 = math.floor(lo[1] / DY + NY / 2 - 0.5)
    y1 = math.ceil(hi[1] / DY + NY / 2 - 0.5) + 1
    x0 = math.floor(lo[2] / DX + NX / 2 - 0.5)
    x1 = math.ceil(hi[2] / DX + NX / 2 - 0.5) + 1
    z0, y0, x0 = max(z0, 0), max(y0, 0), max(x0, 0)
    z1, y1, x1 = min(z1, NZ), min(y1, NY), min(x1, NX)
    if z0 >= z1 or y0 >= y1 or x0 >= x1:
        return None
    return (slice(z0, z1), slice(y0, y1), slice(x0, x1))


def _sub_axes(box: tuple[slice, ...]) -> tuple[F32, F32, F32]:
    zs, ys, xs = box
    z = ((np.arange(zs.start, zs.stop) + 0.5 - NZ / 2) * DZ).astype(np.float32)
    y = ((np.arange(ys.start, ys.stop) + 0.5 - NY / 2) * DY).astype(np.float32)
    x = ((np.arange(xs.start, xs.stop) + 0.5 - NX / 2) * DX).astype(np.float32)
    return z[:, None, None], y[None, :, None], x[None, None, :]


def _tube_occ(dist: F32, r: F32) -> F32:
    """Occupancy of a tube of local radius ``r``; thinner than a voxel: mass-preserving."""
    h = np.float32(H_EDGE)
    r_lo, r_hi = float(r.min()), float(r.max())
    if r_lo >= h:
        out = (r - dist) * np.float32(1.0 / h) + np.float32(0.5)
        np.clip(out, 0, 1, out=out)
        return out
    # a Gaussian cross-section (sigma h/2) with the tube's mass: peak 2 r^2 / h^2
    thin = (2.0 * r * r / (h * h)) * np.exp(dist * dist * np.float32(-2.0 / (h * h)))
    if r_hi < h:
        return np.asarray(thin, np.float32)
    sharp = np.clip((r - dist) / h + np.float32(0.5), 0, 1)
    return np.asarray(np.where(r >= h, sharp, thin), np.float32)


def _capsule(
    p0: NDArray[np.float64], p1: NDArray[np.float64], r0: float, r1: float
) -> tuple[tuple[slice, ...], F32, F32] | None:
    """Distance to a segment and the tapered radius on its voxel box (mm, z-y-x order)."""
    rmax = max(r0, r1) + 2.0 * H_EDGE
    box = _box(np.minimum(p0, p1) - rmax, np.maximum(p0, p1) + rmax)
    if box is None:
        return None
    z, y, x = _sub_axes(box)
    d = (p1 - p0).astype(np.float32)
    l2 = float(np.dot(d, d)) + 1e-9
    pz, py, px = z - np.float32(p0[0]), y - np.float32(p0[1]), x - np.float32(p0[2])
    t = np.clip((pz * d[0] + py * d[1] + px * d[2]) / np.float32(l2), 0, 1)
    dz, dy, dx = pz - t * d[0], py - t * d[1], px - t * d[2]
    dist = np.sqrt(dz * dz + dy * dy + dx * dx)
    r = np.float32(r0) + t * np.float32(r1 - r0)
    return box, dist.astype(np.float32), r.astype(np.float32)


def _max_into(vol: F32, box: tuple[slice, ...], occ: F32) -> None:
    np.maximum(vol[box], occ, out=vol[box])


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int, int], amp: float) -> F32:
    """Low-frequency random field on the volume grid (values ~ N(0, amp^2))."""
    coarse = rng.standard_normal(shape).astype(np.float32)
    planes = np.stack([cv2.resize(p, (NX, NY), interpolation=cv2.INTER_CUBIC) for p in coarse])
    zi = np.linspace(0, shape[0] - 1, NZ)
    i0 = np.clip(np.floor(zi).astype(int), 0, shape[0] - 2)
    w = (zi - i0).astype(np.float32)[:, None, None]
    out = planes[i0] * (1 - w) + planes[i0 + 1] * w
    return np.asarray(out * np.float32(amp), np.float32)


# ----------------------------------------------------------------------------- anatomy
@dataclass
class _Anatomy:
    tissue: F32  # soft-tissue-equivalent density, g/cm^3
    bone: F32  # cortical-bone-equivalent density, g/cm^3
    lung: F32  # lung occupancy (0..1)
    lung_density: F32  # parenchyma density field
    body: F32  # body occupancy
    params: dict[str, Any]


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _build_anatomy(rng: np.random.Generator, vrng: np.random.Generator) -> _Anatomy:
    z1, y1, x1 = _axes()
    Z = z1[:, None, None].astype(np.float32)
    X = x1[None, None, :].astype(np.float32)

    female = bool(rng.random() < 0.5)
    ax_t = _u(rng, 138.0, 172.0)  # torso lateral semi-axis
    az_t = _u(rng, 85.0, 112.0)  # torso AP semi-axis
    z0 = _u(rng, -8.0, 8.0)  # torso centre along the beam
    x_shift = _u(rng, -12.0, 12.0)  # patient not centred on the detector
    y_sh = _u(rng, -175.0, -140.0)  # shoulder line
    neck_ax, neck_az = _u(rng, 50.0, 62.0), _u(rng, 50.0, 60.0)
    fat = _u(rng, 6.0, 22.0) if not female else _u(rng, 10.0, 28.0)

    # --- body: neck -> shoulders -> torso (elliptic cross-sections varying with y)
    blend = _smoothstep((y1 - (y_sh - 25.0)) / 45.0)
    shoulder = 18.0 * np.exp(-(((y1 - (y_sh + 15.0)) / 30.0) ** 2))
    ax_y = (neck_ax + (ax_t + shoulder - neck_ax) * blend).astype(np.float32)
    az_y = (neck_az + (az_t - neck_az) * blend).astype(np.float32)
    ax_b, az_b = ax_y[None, :, None], az_y[None, :, None]
    xb = X - np.float32(x_shift)
    q = np.sqrt((xb / ax_b) ** 2 + ((Z - z0) / az_b) ** 2)
    sd_body = (1.0 - q) * np.minimum(ax_b, az_b)
    body = _occ(sd_body)
    inner = _occ(sd_body - fat)
    tissue = (0.93 * body + 0.11 * inner).astype(np.float32)

    # --- thoracic cavity and lungs
    axc = ax_t * _u(rng, 0.82, 0.88)
    azc = az_t * _u(rng, 0.74, 0.82)
    zc = z0 + _u(rng, 2.0, 10.0)
    y_apex = y_sh + _u(rng, -30.0, -10.0)
    dome_r = y_apex + _u(rng, 230.0, 275.0)  # right hemidiaphragm (image left)
    dome_l = dome_r + _u(rng, 8.0, 25.0)  # left is lower
    r_ap = _u(rng, 45.0, 60.0)
    r_dm = _u(rng, 120.0, 170.0)
    z_spine = zc + azc * _u(rng, 0.42, 0.55)  # anterior face of the vertebral bodies
    y_car = y_apex + _u(rng, 95.0, 115.0)  # carina
    w_top = _u(rng, 18.0, 26.0)
    w_mid = _u(rng, 30.0, 40.0)
    w_low = _u(rng, 17.0, 24.0)

    heart_a, heart_b, heart_c = _u(rng, 58.0, 76.0), _u(rng, 52.0, 64.0), _u(rng, 48.0, 60.0)
    heart_x = x_shift + _u(rng, 10.0, 26.0)
    heart_y = dome_l - heart_b * _u(rng, 0.55, 0.8)
    heart_z = zc - azc * _u(rng, 0.25, 0.4)
    heart_phi = math.radians(_u(rng, 25.0, 45.0))
    cph, sph = math.cos(heart_phi), math.sin(heart_phi)

    knob_x, knob_y = x_shift + _u(rng, 22.0, 34.0), y_car - _u(rng, 10.0, 25.0)
    knob_r = _u(rng, 14.0, 20.0)
    desc_x, desc_z, desc_r = x_shift + _u(rng, 18.0, 28.0), z_spine - 8.0, _u(rng, 10.0, 13.0)

    lung_tissue = _u(rng, 0.17, 0.27)
    lbox = _box(
        np.array([zc - azc - 10, y_apex - 10, x_shift - axc - 10]),
        np.array([zc + azc + 10, max(dome_r, dome_l) + 90, x_shift + axc + 10]),
    )
    assert lbox is not None
    zl, yl, xl = _sub_axes(lbox)
    xs = xl - np.float32(x_shift)
    # cavity wall (elliptic cylinder)
    qc = np.sqrt((xs / axc) ** 2 + ((zl - zc) / azc) ** 2)
    sd_cav = (1.0 - qc) * min(axc, azc)
    # heart / aorta (carved out of both lungs)
    hu = (xl - heart_x) * cph + (yl - heart_y) * sph
    hv = -(xl - heart_x) * sph + (yl - heart_y) * cph
    sd_heart = _ellipsoid_sd(hu, hv, zl - heart_z, heart_a, heart_b, heart_c)
    sd_knob = knob_r - np.sqrt((xl - knob_x) ** 2 + (yl - knob_y) ** 2 + (zl - zc + 5.0) ** 2)
    sd_desc = np.where(
        yl > knob_y, desc_r - np.sqrt((xl - desc_x) ** 2 + (zl - desc_z) ** 2), -1e3
    ).astype(np.float32)
    # mediastinal half-width: narrow at the top, wider at the hila; posteriorly only the spine
    # superior mediastinum -> aortic arch / hila (widest) -> retrocardiac (narrow again)
    w_y = (
        w_top
        + (w_mid - w_top) * _smoothstep((yl - y_car + 40.0) / 50.0)
        + (w_low - w_mid) * _smoothstep((yl - y_car - 45.0) / 40.0)
    )
    post = _smoothstep((zl - (z_spine - 10.0)) / 20.0)
    lung = np.zeros((NZ, NY, NX), np.float32)
    lung_params: dict[str, Any] = {}
    for side, dome in ((-1, dome_r), (1, dome_l)):
        x_ap = axc * 0.45
        w_side = w_y * (1.08 if side < 0 else 0.95)
        w_eff = w_side * (1.0 - post) + 27.0 * post
        sd_med = side * xs - w_eff
        y_top = y_apex + ((xs - side * x_ap) ** 2 + (zl - zc) ** 2) / (2.0 * r_ap)
        sd_apex = yl - y_top
        x_dm = axc * 0.35
        y_bot = (
            dome
            + (xs - side * x_dm) ** 2 / (2.0 * r_dm)
            + 30.0 * np.clip((zl - zc) / azc, 0, None) ** 2
        )
        sd_dia = y_bot - yl
        shape = sd_heart.shape
        sd = np.array(np.broadcast_to(sd_cav, shape), np.float32)
        for part in (sd_med, sd_apex, sd_dia):
            np.minimum(sd, part, out=sd)
        np.minimum(sd, -sd_heart, out=sd)
        np.minimum(sd, -sd_knob, out=sd)
        np.minimum(sd, -sd_desc, out=sd)
        np.maximum(lung[lbox], _occ(sd), out=lung[lbox])
        lung_params["dome_right_mm" if side < 0 else "dome_left_mm"] = round(dome, 2)

    # parenchyma: denser posteriorly (gravity), smooth heterogeneity
    grad = 1.0 + 0.25 * np.clip((Z - zc) / azc, -1, 1)
    lung_density = (lung_tissue * grad * (1.0 + _smooth_field(rng, (6, 10, 10), 0.08))).astype(
        np.float32
    )
    tissue = tissue * (1.0 - lung) + lung * lung_density

    # --- pulmonary vessel tree (tapering cylinders branching from the hila)
    vessels = np.zeros((NZ, NY, NX), np.float32)
    n_segments = 0
    hilum_y = y_car + _u(rng, 25.0, 45.0)
    for side in (-1, 1):
        hx = x_shift + side * (w_mid + _u(rng, 4.0, 12.0))
        hy = hilum_y + (8.0 if side < 0 else 0.0)
        root = np.array([zc - 5.0, hy, hx])
        trunks = [(-0.8, 1.0, 0.3), (0.1, 1.0, 0.1), (0.7, 0.8, 0.1), (1.0, 0.3, -0.2)]
        for ty, tx, tz in trunks:
            d = np.array([tz + vrng.normal(0, 0.2), ty + vrng.normal(0, 0.15), side * tx])
            d /= np.linalg.norm(d)
            n_segments += _grow(
                vessels, lung, vrng, root, d, _u(vrng, 6.0, 8.5), _u(vrng, 25, 40), 0
            )
    ves = vessels * lung
    tissue = tissue + ves * (1.05 - lung_density)

    # --- airways: trachea and main bronchi (air columns in the mediastinum)
    air = np.zeros((NZ, NY, NX), np.float32)
    tr_r = _u(rng, 7.0, 10.0)
    tr_x = x_shift - _u(rng, 0.0, 5.0)
    tr_z = zc - _u(rng, -2.0, 10.0)
    carina = np.array([tr_z, y_car, tr_x])
    _tube_into(air, np.array([tr_z, y1[0] - 5.0, tr_x]), carina, tr_r, tr_r)
    for side, ang in ((-1, _u(rng, 20.0, 35.0)), (1, _u(rng, 35.0, 50.0))):
        a = math.radians(ang)
        end = carina + np.array([0.0, 45.0 * math.cos(a), side * 45.0 * math.sin(a)])
        _tube_into(air, carina, end, tr_r * 0.75, tr_r * 0.6)
    stomach = bool(rng.random() < 0.7)
    if stomach:
        gx = x_shift + _u(rng, 45.0, 70.0)
        ga, gb, gc = _u(rng, 22.0, 34.0), _u(rng, 11.0, 17.0), _u(rng, 18.0, 28.0)
        gbox, g_occ, (_, gy, _) = _ellipsoid_box((zc - 15.0, dome_l + 24.0, gx), (gc, gb, ga))
        if gbox is not None:
            gas = g_occ * (gy > dome_l + 12.0)
            np.maximum(air[gbox], gas, out=air[gbox])
    tissue = tissue * (1.0 - air * (1.0 - lung))

    # --- breasts
    if female:
        for side in (-1, 1):
            by, bb = dome_r - _u(rng, 0.0, 30.0), _u(rng, 45.0, 60.0)
            bx = x_shift + side * _u(rng, 70.0, 92.0)
            ba, bc = _u(rng, 50.0, 68.0), _u(rng, 22.0, 40.0)
            bz = z0 - az_t * 0.92
            bbox_, b_occ, (zb, yb, _) = _ellipsoid_box((bz, by, bx), (bc, bb, ba))
            if bbox_ is None:
                continue
            # pendulous: the upper half blends into the chest wall, the fold below is sharp
            fade = _smoothstep((yb - (by - bb)) / (1.4 * bb)).astype(np.float32)
            br = b_occ * (zb < z0 - az_t * 0.6) * fade
            tissue[bbox_] += (0.95 - tissue[bbox_]) * br * (1.0 - body[bbox_])

    # --- bones (fraction of cortical bone per voxel; the rest is marrow / soft tissue)
    bone = np.zeros((NZ, NY, NX), np.float32)
    # vertebral bodies: stacked cylinders with a cortical shell, pedicles behind
    vb_r0 = _u(rng, 14.0, 17.0)
    y_v = float(y1[0]) - _u(rng, 0.0, 20.0)
    trab = _u(rng, 0.12, 0.18)
    vb_z = z_spine + vb_r0
    while y_v < y1[-1] + 20:
        h = 16.0 + 10.0 * _smoothstep((y_v - y1[0]) / FOV_MM)
        r = vb_r0 + 6.0 * _smoothstep((y_v - y1[0]) / FOV_MM)
        box = _box(
            np.array([vb_z - r - 8, y_v - 2, x_shift - r - 8]),
            np.array([vb_z + r + 8, y_v + h + 2, x_shift + r + 8]),
        )
        if box is not None:
            z, y, x = _sub_axes(box)
            rad = np.sqrt((x - x_shift) ** 2 + (z - vb_z) ** 2)
            yo = _occ(np.minimum(y - y_v, y_v + h - y))
            outer = _occ(r - rad) * yo
            core = _occ(r - 1.6 - rad) * _occ(np.minimum(y - y_v - 1.5, y_v + h - 1.5 - y))
            _max_into(bone, box, (outer - core) + trab * core)
        for side in (-1, 1):
            px = x_shift + side * r * 0.72
            yc = y_v + h * 0.45
            _tube_into(
                bone,
                np.array([vb_z + r * 0.6, yc, px]),
                np.array([vb_z + r + 12.0, yc, px]),
                4.5,
                4.5,
                fill=0.45,
            )
        _tube_into(
            bone,
            np.array([vb_z + r + 12.0, y_v + h * 0.5, x_shift]),
            np.array([vb_z + r + 32.0, y_v + h * 0.9, x_shift]),
            4.0,
            3.0,
            fill=0.35,
        )
        y_v += h + _u(rng, 4.5, 7.0)

    # ribs: curved tubes along the chest wall, descending anteriorly
    rib_r = _u(rng, 4.8, 6.2)
    cortex = _u(rng, 0.9, 1.5)
    marrow = _u(rng, 0.12, 0.22)
    y_rib = y_apex + _u(rng, 5.0, 15.0)
    spacing = _u(rng, 19.0, 24.0)
    n_rib_segments = 0
    for i in range(12):
        yi = y_rib + i * spacing * (0.85 + 0.3 * i / 11.0)
        phi_end = 2.55 if i < 7 else (2.2 if i < 10 else 1.5)
        drop = _u(rng, 45.0, 75.0) * (0.6 if i == 0 else 1.0)
        bulge = _u(rng, -4.0, 4.0)
        yi += _u(rng, -2.5, 2.5)
        for side in (-1, 1):
            pts = []
            n_s = 12
            for k in range(n_s + 1):
                phi = 0.22 + (phi_end - 0.22) * k / n_s
                yk = yi + drop * (k / n_s) ** 1.4
                scale = float(np.sqrt(np.clip((yk - y_apex + 10.0) / 80.0, 0.15, 1.0)))
                rx = (axc + 9.0 + bulge) * scale
                rz = azc + 9.0
                pts.append(
                    np.array([zc + rz * math.cos(phi), yk, x_shift + side * rx * math.sin(phi)])
                )
            for k in range(n_s):
                ro = rib_r * (1.0 - 0.25 * (k / n_s))
                res = _capsule(pts[k], pts[k + 1], ro, rib_r * (1.0 - 0.25 * (k + 1) / n_s))
                if res is None:
                    continue
                box, dist, rr = res
                # the anterior rib is thinner-walled and ends in (barely calcified) cartilage
                frac = (k + 0.5) / n_s
                fade = 1.0 - 0.65 * float(_smoothstep((frac - 0.5) / 0.5))
                outer = _tube_occ(dist, rr)
                inner = _tube_occ(dist, np.maximum(rr - np.float32(cortex * fade), np.float32(0.5)))
                _max_into(
                    bone, box, ((outer - inner) + np.float32(marrow) * inner) * np.float32(fade)
                )
                n_rib_segments += 1

    # clavicles: S-shaped tubes from the sternal notch to the acromion
    for side in (-1, 1):
        p0 = np.array([z0 - az_t * 0.8, y_sh + _u(rng, 8.0, 22.0), x_shift + side * 22.0])
        p2 = np.array([z0 + 10.0, y_sh + _u(rng, -12.0, 5.0), x_shift + side * ax_t * 0.95])
        p1 = (p0 + p2) / 2 + np.array([-25.0, 6.0, 0.0])
        pts = [(1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t * t * p2 for t in np.linspace(0, 1, 7)]
        r_cl = _u(rng, 5.5, 7.5)
        for k in range(6):
            _tube_shell(bone, pts[k], pts[k + 1], r_cl, cortex, marrow)
        # scapula: a thin tilted bony plate over the upper lateral chest
        sc_x = x_shift + side * (ax_t - _u(rng, 25.0, 40.0))
        sc_y, sc_z = y_sh + _u(rng, 55.0, 75.0), z0 + az_t * 0.7
        box = _box(
            np.array([sc_z - 40, sc_y - 90, sc_x - 60]), np.array([sc_z + 40, sc_y + 90, sc_x + 60])
        )
        if box is not None:
            z, y, x = _sub_axes(box)
            t = math.radians(35.0)
            u = (x - sc_x) * math.cos(t) + side * (z - sc_z) * math.sin(t)
            w = -(x - sc_x) * side * math.sin(t) + (z - sc_z) * math.cos(t)
            plate = _occ(_ellipsoid_sd(u, y - sc_y + 0.3 * side * u, w, 48.0, 75.0, 3.5))
            _max_into(bone, box, plate * 0.75)

    bone = np.clip(bone, 0.0, 1.0)
    tissue = np.clip(tissue * (1.0 - bone), 0.0, None).astype(np.float32)
    params = {
        "female": female,
        "torso_semi_axes_mm": [round(ax_t, 2), round(az_t, 2)],
        "fat_mm": round(fat, 2),
        "lung_tissue_density": round(lung_tissue, 4),
        "heart_semi_axes_mm": [round(heart_a, 2), round(heart_b, 2), round(heart_c, 2)],
        "vessel_segments": n_segments,
        "rib_segments": n_rib_segments,
        "gastric_bubble": stomach,
        **lung_params,
    }
    return _Anatomy(
        tissue, (bone * BONE_DENSITY).astype(np.float32), lung, lung_density, body, params
    )


def _ellipsoid_box(
    centre: tuple[float, float, float], semi: tuple[float, float, float]
) -> tuple[tuple[slice, ...] | None, F32, tuple[F32, F32, F32]]:
    """Occupancy of an axis-aligned ellipsoid (centre and semi-axes in z, y, x) on its box."""
    c = np.array(centre)
    r = np.array(semi) + 2.0 * H_EDGE
    box = _box(c - r, c + r)
    if box is None:
        e = np.zeros((1, 1, 1), np.float32)
        return None, e, (e, e, e)
    z, y, x = _sub_axes(box)
    sd = _ellipsoid_sd(x - centre[2], y - centre[1], z - centre[0], semi[2], semi[1], semi[0])
    return box, _occ(sd), (z, y, x)


def _tube_into(
    vol: F32,
    p0: NDArray[np.float64],
    p1: NDArray[np.float64],
    r0: float,
    r1: float,
    fill: float = 1.0,
) -> None:
    res = _capsule(p0, p1, r0, r1)
    if res is not None:
        box, dist, r = res
        _max_into(vol, box, fill * _tube_occ(dist, r))


def _tube_shell(
    vol: F32,
    p0: NDArray[np.float64],
    p1: NDArray[np.float64],
    r: float,
    cortex: float,
    marrow: float,
) -> None:
    res = _capsule(p0, p1, r, r)
    if res is not None:
        box, dist, rr = res
        outer = _tube_occ(dist, rr)
        inner = _tube_occ(dist, np.maximum(rr - cortex, 0.5))
        _max_into(vol, box, (outer - inner) + marrow * inner)


def _cross(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.array(
        [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
    )


def _inside(lung: F32, p: NDArray[np.float64]) -> float:
    iz = int(p[0] / DZ + NZ / 2)
    iy = int(p[1] / DY + NY / 2)
    ix = int(p[2] / DX + NX / 2)
    if not (0 <= iz < NZ and 0 <= iy < NY and 0 <= ix < NX):
        return 0.0
    return float(lung[iz, iy, ix])


def _grow(
    vessels: F32,
    lung: F32,
    rng: np.random.Generator,
    p0: NDArray[np.float64],
    d: NDArray[np.float64],
    r: float,
    length: float,
    depth: int,
) -> int:
    """Recursive bifurcating vessel tree; returns the number of segments drawn."""
    if r < 0.9 or depth > 7:
        return 0
    p1 = p0 + d * length
    # stop where the branch would leave the lung (the first trunk may start at the hilum)
    if depth > 0 and _inside(lung, p1) < 0.5:
        return 0
    r_child = r * 0.79  # Murray's law for a symmetric bifurcation (2^(-1/3))
    _tube_into(vessels, p0, p1, r, r_child)
    n = 1
    for sign in (-1.0, 1.0):
        axis = rng.standard_normal(3)
        axis -= axis.dot(d) * d
        axis /= np.linalg.norm(axis) + 1e-9
        ang = math.radians(rng.uniform(18.0, 38.0)) * sign
        nd = d * math.cos(ang) + _cross(axis, d) * math.sin(ang)
        nd /= np.linalg.norm(nd)
        n += _grow(
            vessels,
            lung,
            rng,
            p1,
            nd,
            r_child * rng.uniform(0.9, 1.05),
            length * rng.uniform(0.72, 0.88),
            depth + 1,
        )
    return n
