"""RF-level core of the hold-out B-mode simulator: probe, linear imaging model, envelope.

**Never used for training, augmentation design or model selection** (see ``_bmode_points``
for the scene and the public generator).

References
----------
.. [1] J. A. Jensen, "A model for the propagation and scattering of ultrasound in tissue",
   J. Acoust. Soc. Am. 89(1):182-190, 1991.
.. [2] T. L. Szabo, *Diagnostic Ultrasound Imaging: Inside Out*, 2nd ed., 2014.
.. [3] S. L. Marple, "Computing the discrete-time analytic signal via FFT", IEEE Trans.
   Signal Process. 47(9):2600-2603, 1999.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from .._errors import InvalidInputError

__all__ = ["C_SOUND", "Probe", "envelope", "line_space_xz", "simulate_rf"]

F32 = NDArray[np.float32]

C_SOUND = 1.540  # mm / us
NP_PER_DB = 1.0 / 8.686


@dataclass(frozen=True)
class Probe:
    """Transducer and scan geometry (lengths in mm, frequencies in MHz)."""

    kind: str  # "convex", "phased" or "linear"
    f0: float  # centre frequency
    bandwidth: float  # fractional -6 dB bandwidth
    depth: float  # imaged depth below the skin line
    half_angle: float  # sector half-angle, rad (convex / phased)
    width: float  # field width (linear)
    radius: float  # convex radius of curvature / phased virtual apex
    focus: float  # transmit focal depth
    aperture: float  # active aperture
    n_lines: int

    @property
    def wavelength(self) -> float:
        return C_SOUND / self.f0

    @property
    def dz(self) -> float:
        """Axial sample spacing: four samples per RF period (fs = 4 f0)."""
        return self.wavelength / 8.0

    @property
    def n_samples(self) -> int:
        return math.ceil(self.depth / self.dz)

    def beam_sigma(self, z: NDArray[Any]) -> NDArray[np.float64]:
        """Two-way lateral beam sigma (mm) versus depth.

        Fixed transmit focus (diffraction limit at the focus, geometric cone elsewhere)
        times dynamic receive focusing at a constant F-number (floor 2.5, growing once the
        aperture is full); the product of two Gaussians has ``1/s^2 = 1/s_tx^2 + 1/s_rx^2``.
        The 0.7 lambda F# sigma includes apodisation broadening.
        """
        lam = self.wavelength
        s_txf = 0.7 * lam * self.focus / self.aperture
        cone = (0.5 * self.aperture / 2.355) * np.abs(z - self.focus) / self.focus
        s_tx = np.sqrt(s_txf**2 + cone**2)
        s_rx = 0.7 * lam * np.maximum(np.asarray(z, np.float64) / self.aperture, 2.5)
        return np.asarray(1.0 / np.sqrt(1.0 / s_tx**2 + 1.0 / s_rx**2))

    def pulse_sigma_z(self) -> float:
        """Axial sigma (mm) of the pulse envelope (round-trip depth units)."""
        sig_f = self.bandwidth * self.f0 / 2.355  # MHz
        sig_t = 1.0 / (2.0 * math.pi * sig_f)  # us
        return sig_t * C_SOUND / 2.0

    def resolution_cell(self, z: float) -> float:
        """Resolution-cell area (mm^2, FWHM x FWHM) at depth ``z``."""
        return float(2.355 * self.pulse_sigma_z() * 2.355 * self.beam_sigma(np.array(z)))


def _draw_probe(rng: np.random.Generator, kind: str | None = None) -> Probe:
    kind = kind or str(rng.choice(["convex", "phased", "linear"], p=[0.5, 0.25, 0.25]))
    if kind == "convex":
        f0, depth = rng.uniform(2.5, 5.0), rng.uniform(90.0, 160.0)
        half, width, radius, aperture = (
            math.radians(rng.uniform(27.0, 37.0)),
            0.0,
            rng.uniform(40.0, 60.0),
            rng.uniform(18.0, 30.0),
        )
    elif kind == "phased":
        f0, depth = rng.uniform(2.0, 4.0), rng.uniform(100.0, 160.0)
        half, width, radius, aperture = (
            math.radians(rng.uniform(35.0, 45.0)),
            0.0,
            4.0,
            rng.uniform(14.0, 20.0),
        )
    elif kind == "linear":
        f0, depth = rng.uniform(6.0, 10.0), rng.uniform(35.0, 60.0)
        half, width, radius, aperture = 0.0, rng.uniform(38.0, 50.0), 0.0, rng.uniform(10.0, 16.0)
    else:
        raise InvalidInputError(f"probe kind must be convex, phased or linear, got {kind!r}")
    focus = depth * rng.uniform(0.4, 0.7)
    n_lines = 192 if kind != "linear" else 224
    return Probe(
        kind,
        float(f0),
        float(rng.uniform(0.5, 0.8)),
        float(depth),
        float(half),
        float(width),
        float(radius),
        float(focus),
        float(aperture),
        n_lines,
    )


# ----------------------------------------------------------------------------- geometry
def _lateral_mm(probe: Probe, z: NDArray[Any]) -> NDArray[np.float64]:
    """Line pitch (mm) at depth ``z``."""
    if probe.kind == "linear":
        return np.full(np.shape(z), probe.width / (probe.n_lines - 1), np.float64)
    dtheta = 2.0 * probe.half_angle / (probe.n_lines - 1)
    return (probe.radius + z) * dtheta


def line_space_xz(probe: Probe, n_r: int | None = None) -> tuple[F32, F32]:
    """Cartesian ``(x, z)`` (mm; ``z`` below the top skin point) of every line-space cell."""
    n_r = n_r or probe.n_samples
    depth = (np.arange(n_r) + 0.5) * (probe.depth / n_r)
    lines = np.arange(probe.n_lines)
    if probe.kind == "linear":
        x = (lines / (probe.n_lines - 1) - 0.5) * probe.width
        xx = np.broadcast_to(x[:, None], (probe.n_lines, n_r))
        zz = np.broadcast_to(depth[None, :], (probe.n_lines, n_r))
        return xx.astype(np.float32), zz.astype(np.float32)
    theta = (lines / (probe.n_lines - 1) * 2.0 - 1.0) * probe.half_angle
    r = probe.radius + depth
    xs = r[None, :] * np.sin(theta)[:, None]
    zs = r[None, :] * np.cos(theta)[:, None] - probe.radius
    return xs.astype(np.float32), zs.astype(np.float32)


# ----------------------------------------------------------------------------- simulation
def simulate_rf(
    probe: Probe,
    sigma_map: F32,
    density_cells: F32,
    alpha_map: F32,
    rng: np.random.Generator,
    *,
    noise_rel: float = 0.0,
) -> tuple[F32, float]:
    """RF lines of a scatterer medium under the linear (convolution) imaging model.

    Parameters
    ----------
    probe : Probe
        Geometry and transducer.
    sigma_map : ndarray, shape ``(n_lines, n_samples)``
        Scatterer amplitude standard deviation (backscatter strength) per cell.
    density_cells : ndarray, same shape
        Scatterer number density in scatterers per resolution cell (at the focus).
    alpha_map : ndarray, same shape
        Attenuation, dB / (cm MHz).
    rng : numpy.random.Generator
        Source of the scatterer positions/amplitudes and of the electronic noise.
    noise_rel : float
        Electronic noise RMS relative to the typical unattenuated echo (the median over depth
        of the attenuation-compensated RF RMS).

    Returns
    -------
    rf : ndarray of float32, ``(n_lines, n_samples)``
        Real RF lines (fs = 4 f0).
    noise_rms : float
        The RMS of the electronic noise added.

    References
    ----------
    .. [1] Jensen, J. Acoust. Soc. Am. 89(1), 1991 (linear model of the pulse-echo field).
    """
    n_l, n_s = probe.n_lines, probe.n_samples
    if sigma_map.shape != (n_l, n_s) or density_cells.shape != (n_l, n_s):
        raise InvalidInputError("maps must have shape (n_lines, n_samples) of the probe")
    z = (np.arange(n_s) + 0.5) * probe.dz
    # expected scatterers per simulation cell (cell area = dz x local line pitch)
    cell_area = probe.dz * _lateral_mm(probe, z)
    per_mm2 = density_cells / np.float32(probe.resolution_cell(probe.focus))
    lam = per_mm2 * cell_area[None, :].astype(np.float32)
    counts = rng.poisson(lam).astype(np.float32)
    amp = np.sqrt(counts) * sigma_map * rng.standard_normal((n_l, n_s), dtype=np.float32)
    # two-way attenuation integrated along each line (amplitude at the centre frequency,
    # plus the Gaussian-spectrum correction), and the matching downshift of f_c
    beta = alpha_map.astype(np.float64) * NP_PER_DB / 10.0  # Np / (mm MHz)
    path = 2.0 * np.cumsum(beta, axis=1) * probe.dz  # Np / MHz, round trip
    sig_f = probe.bandwidth * probe.f0 / 2.355
    att = np.exp(-probe.f0 * path).astype(np.float32)
    # lateral: depth-dependent Gaussian beam, in units of lines
    sig_lines = probe.beam_sigma(z) / _lateral_mm(probe, z)
    # a beam of finite width averages the attenuation of neighbouring paths (no streaks)
    s_att = float(np.median(sig_lines))
    if s_att > 0.3:
        k = math.ceil(3.5 * s_att) * 2 + 1
        att = np.asarray(
            cv2.GaussianBlur(att, (1, k), sigmaX=0.0, sigmaY=s_att, borderType=cv2.BORDER_REFLECT),
            np.float32,
        )
    amp *= att
    amp = _lateral_blur(amp, sig_lines)
    # the blur is normalised in line units; a beam normalised in mm carries 1 / pitch
    amp *= (1.0 / _lateral_mm(probe, z)).astype(np.float32)[None, :]
    # axial: Gaussian-modulated sinusoid; centre frequency shifts down with depth
    path_nom = 2.0 * float(np.median(beta)) * z
    fc = np.maximum(probe.f0 - sig_f**2 * path_nom, 0.5 * probe.f0)
    n_fft = 1 << math.ceil(math.log2(n_s + 64))
    spec_sum = np.zeros((n_l, n_fft // 2 + 1), np.complex64)
    knots = np.linspace(0.0, 1.0, 3)
    u = z / z[-1]
    for kt in knots:
        w = np.clip(1.0 - np.abs(u - kt) / (knots[1] - knots[0]), 0.0, 1.0)
        f_k = float(np.interp(kt * z[-1], z, fc))
        pulse = _pulse(probe, f_k)
        ps = np.fft.rfft(pulse, n_fft)
        xs = np.fft.rfft(amp * w[None, :].astype(np.float32), n_fft, axis=1)
        spec_sum += (xs * ps[None, :]).astype(np.complex64)
    half = (len(_pulse(probe, probe.f0)) - 1) // 2
    rf = np.fft.irfft(spec_sum, n_fft, axis=1)[:, half : half + n_s].astype(np.float32)
    # reference echo level: the attenuation-compensated RF RMS, median over depth (the
    # typical tissue echo as it would be without any attenuation)
    row_rms = np.sqrt(np.mean((rf / np.maximum(att, np.float32(1e-30))) ** 2, axis=0))
    ref = float(np.median(row_rms)) + 1e-12
    noise_rms = noise_rel * ref
    if noise_rms > 0:
        rf += np.float32(noise_rms) * rng.standard_normal(rf.shape, dtype=np.float32)
    return rf, noise_rms


def _pulse(probe: Probe, fc: float) -> NDArray[np.float64]:
    """Real Gaussian-modulated sinusoid sampled at fs = 4 f0 (round-trip depth units)."""
    sz = probe.pulse_sigma_z()
    n = math.ceil(4.0 * sz / probe.dz)
    zz = np.arange(-n, n + 1) * probe.dz
    lam_rt = C_SOUND / fc / 2.0  # RF period in depth
    return np.asarray(np.exp(-0.5 * (zz / sz) ** 2) * np.cos(2.0 * math.pi * zz / lam_rt))


def _lateral_blur(amp: F32, sig_lines: NDArray[np.float64]) -> F32:
    """Per-depth Gaussian blur across lines (linear interpolation between sigma levels)."""
    lo, hi = float(sig_lines.min()), float(sig_lines.max())
    levels = np.geomspace(max(lo, 0.3), max(hi, 0.31), 8)
    blurred = []
    for s in levels:
        k = math.ceil(3.5 * s) * 2 + 1
        blurred.append(
            cv2.GaussianBlur(
                amp, (1, k), sigmaX=0.0, sigmaY=float(s), borderType=cv2.BORDER_REFLECT
            )
        )
    pos = np.interp(
        np.log(np.clip(sig_lines, levels[0], levels[-1])), np.log(levels), np.arange(len(levels))
    )
    i0 = np.clip(np.floor(pos).astype(int), 0, len(levels) - 2)
    w = (pos - i0).astype(np.float32)
    stack = np.stack(blurred)  # (levels, lines, samples)
    cols = np.arange(amp.shape[1])
    out = stack[i0, :, cols].T * (1 - w)[None, :] + stack[i0 + 1, :, cols].T * w[None, :]
    return np.ascontiguousarray(out, np.float32)


def envelope(rf: F32, probe: Probe | None = None) -> F32:
    """Envelope of RF lines: magnitude of the analytic signal (FFT Hilbert transform).

    Parameters
    ----------
    rf : ndarray, shape ``(n_lines, n_samples)``
        Real RF lines, sampled along axis 1.
    probe : Probe, optional
        When given, a band-pass receive filter (0.2-1.9 f0, raised-cosine edges) is applied
        in the same FFT.

    Returns
    -------
    ndarray of float32
        ``|rf + i H{rf}|``.

    References
    ----------
    .. [1] S. L. Marple, "Computing the discrete-time analytic signal via FFT", IEEE Trans.
       Signal Process. 47(9):2600-2603, 1999.
    """
    n_in = rf.shape[1]
    # zero padding to >= 2n: the discrete Hilbert kernel decays only as 1/t, so without it
    # the strong near-field echoes would wrap around into the weak far field
    n = 1 << math.ceil(math.log2(2 * n_in))
    spec = np.fft.fft(rf, n, axis=1)
    h = np.zeros(n)
    h[0] = 1.0
    h[n // 2] = 1.0
    h[1 : n // 2] = 2.0
    if probe is not None:
        f = np.fft.fftfreq(n, d=1.0 / (4.0 * probe.f0))  # MHz
        lo, hi = 0.2 * probe.f0, 1.9 * probe.f0
        band = np.clip(
            np.minimum((f - 0.5 * lo) / (0.5 * lo), (hi * 1.1 - f) / (0.1 * hi)), 0.0, 1.0
        )
        h = h * (0.5 - 0.5 * np.cos(math.pi * band))
    analytic = np.fft.ifft(spec * h[None, :].astype(np.complex64), axis=1)[:, :n_in]
    return np.abs(analytic).astype(np.float32)
