"""Denoising for point-of-care imaging.

Ultrasound (multiplicative speckle)
    :func:`srad`, :func:`lee`, :func:`kuan`, :func:`frost`, preset :func:`ultrasound`.
X-ray (Poisson quantum + Gaussian electronic noise)
    :func:`anscombe`, :func:`inverse_anscombe`, preset :func:`xray`.
Noise estimation
    :func:`estimate_noise` (Immerkaer), :func:`estimate_speckle`,
    :func:`estimate_poisson_gaussian`.

All filters accept 2-D ``uint8``, ``uint16``, ``float32`` or ``float64`` images, compute in
float32 with the best SIMD target of this CPU (see :mod:`medimg_edge.simd`), release the
GIL, and return a new float32 array, or write into ``out=`` (a C-contiguous float32 array
of the image's shape, possibly the input itself).  Their scratch memory is a per-thread
buffer reused from call to call, so a loop over frames that passes ``out`` allocates
nothing and does not fault in fresh pages, whatever else the process allocates and frees
in between.  The default parameters (``q0`` / ``noise_cv`` estimated from the frame) run
the estimator and the filter in one C++ call.
"""

from __future__ import annotations

from ._noise import estimate_noise, estimate_poisson_gaussian, estimate_speckle
from ._presets import ultrasound, xray
from ._speckle import frost, kuan, lee, srad, wiener
from ._vst import anscombe, inverse_anscombe

__all__ = [
    "anscombe",
    "estimate_noise",
    "estimate_poisson_gaussian",
    "estimate_speckle",
    "frost",
    "inverse_anscombe",
    "kuan",
    "lee",
    "srad",
    "ultrasound",
    "wiener",
    "xray",
]
