"""Deterministic sample frames with known clean truth, for the demo and examples.

Small physics-flavoured phantoms (the full simulators arrive with ``me.synth``):

* ultrasound: an echogenicity map (tissue, an anechoic cyst, a hyperechoic mass, bright
  layers) drives complex Gaussian scatterers convolved with an anisotropic point-spread
  function; the envelope has fully developed (Rayleigh) speckle.  Truth: the expected
  envelope ``sqrt(pi/4 * E|PSF * scatterers|^2)``.
* X-ray: a projection of ellipses (body, lungs, heart, spine, a nodule) through
  Beer-Lambert attenuation, detected as ``gain * Poisson(I0 exp(-p)) + N(0, sigma^2)``.
  Truth: ``gain * I0 exp(-p)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

__all__ = ["SampleFrame", "ultrasound_frame", "xray_frame"]

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class SampleFrame:
    """A noisy frame, its clean truth and the noise parameters used."""

    name: str
    noisy: F32
    clean: F32
    params: dict[str, float]


def _ellipse(shape: tuple[int, int], cy: float, cx: float, ry: float, rx: float) -> F32:
    y, x = np.ogrid[: shape[0], : shape[1]]
    inside = ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1.0
    return inside.astype(np.float32)


def ultrasound_frame(size: int = 512, *, seed: int = 0) -> SampleFrame:
    """B-mode-like envelope frame with fully developed speckle."""
    rng = np.random.default_rng(seed)
    s = (size, size)
    echo = np.ones(s, np.float32)
    for k, depth in enumerate((0.18, 0.32)):
        band = np.zeros(s, np.float32)
        band[int(depth * size) : int(depth * size) + max(2, size // 80), :] = 1.0
        echo += (3.0 + k) * band
    echo *= 1.0 - 0.95 * _ellipse(s, 0.62 * size, 0.32 * size, 0.1 * size, 0.1 * size)
    echo += 2.0 * _ellipse(s, 0.6 * size, 0.7 * size, 0.08 * size, 0.12 * size)
    sig_axial, sig_lateral = 1.0, 2.0
    scat = (rng.standard_normal(s) + 1j * rng.standard_normal(s)) * np.sqrt(echo / 2.0)
    ksize = (int(6 * sig_lateral) | 1, int(6 * sig_axial) | 1)
    re = cv2.GaussianBlur(scat.real.astype(np.float32), ksize, sig_lateral, sigmaY=sig_axial)
    im = cv2.GaussianBlur(scat.imag.astype(np.float32), ksize, sig_lateral, sigmaY=sig_axial)
    env = np.sqrt(re * re + im * im)
    # E|h * s|^2 = (h^2 * echo): blur the echogenicity with the squared PSF.
    power = cv2.GaussianBlur(echo, ksize, sig_lateral / np.sqrt(2), sigmaY=sig_axial / np.sqrt(2))
    h = cv2.getGaussianKernel(ksize[1], sig_axial) @ cv2.getGaussianKernel(ksize[0], sig_lateral).T
    power = (
        power
        * float((h * h).sum())
        / float(
            cv2.GaussianBlur(
                np.ones((64, 64), np.float32),
                ksize,
                sig_lateral / np.sqrt(2),
                sigmaY=sig_axial / np.sqrt(2),
            )[32, 32]
        )
    )
    clean = np.sqrt(np.pi / 4.0 * power)
    scale = 200.0 / float(np.percentile(env, 99.5))
    return SampleFrame(
        "ultrasound",
        (env * scale).astype(np.float32),
        (clean * scale).astype(np.float32),
        {"speckle_cv": float(np.sqrt(4.0 / np.pi - 1.0))},
    )


def xray_frame(
    size: int = 512,
    *,
    seed: int = 0,
    photons: float = 400.0,
    gain: float = 4.0,
    sigma: float = 12.0,
) -> SampleFrame:
    """Chest-radiograph-like frame with Poisson quantum and Gaussian electronic noise."""
    rng = np.random.default_rng(seed)
    s = (size, size)
    p: F32 = 0.3 + 1.2 * _ellipse(s, 0.55 * size, 0.5 * size, 0.45 * size, 0.42 * size)
    for cx in (0.32, 0.68):
        p -= 0.8 * _ellipse(s, 0.48 * size, cx * size, 0.28 * size, 0.14 * size)
    p += 0.5 * _ellipse(s, 0.62 * size, 0.55 * size, 0.14 * size, 0.16 * size)
    p += 0.9 * (np.abs(np.arange(size) - 0.5 * size) < 0.03 * size).astype(np.float32)[None, :]
    p += 0.35 * _ellipse(s, 0.4 * size, 0.3 * size, 0.025 * size, 0.025 * size)
    p = np.asarray(cv2.GaussianBlur(p.astype(np.float32), (0, 0), 2.0), dtype=np.float32)
    expected = photons * np.exp(-p)
    counts = rng.poisson(expected).astype(np.float32)
    noisy = gain * counts + rng.normal(0.0, sigma, s).astype(np.float32)
    noisy = np.clip(noisy, 0, 4095)  # 12-bit detector
    return SampleFrame(
        "xray",
        noisy.astype(np.float32),
        (gain * expected).astype(np.float32),
        {"gain": gain, "sigma": sigma, "photons": photons},
    )
