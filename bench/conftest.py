"""Shared set-up for the benchmark suites in ``bench/``.

* OpenCV is pinned to one thread (``cv2.setNumThreads(1)``) at import, before any
  benchmark runs, so that every number in a table is single-threaded: the medimg-edge
  kernels are single-threaded, NumPy element-wise code is single-threaded, and the
  scikit-image denoisers used here are single-threaded Cython.
* The test images (512x512 float32, known clean truth) are built once per session with a
  fixed seed, so that every method in a group sees the same noisy pixels.
* The pytest-benchmark JSON gets the machine facts that ``bench/report.py`` prints
  (CPU model, SIMD targets, library versions, thread counts).

Run::

    python -m pytest bench --benchmark-only --benchmark-json=/tmp/bench.json
    python bench/report.py /tmp/bench.json

CI runs ``python -m pytest bench --benchmark-disable -q``: every benchmark then runs its
function once and still checks the result.
"""

from __future__ import annotations

import math
import os
import platform
import sys
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import pytest

import medimg_edge as me

cv2.setNumThreads(1)

SIZE = 512
SEED = 20240601


@dataclass(frozen=True)
class Case:
    """A noisy test image with its clean truth.

    ``data_range`` is the peak used for PSNR; ``params`` holds the noise parameters the
    filters are told (speckle ``noise_cv``, X-ray ``gain``/``sigma``, Gaussian ``sigma``).
    """

    name: str
    clean: np.ndarray
    noisy: np.ndarray
    data_range: float
    params: dict[str, float]
    description: str


def _camera() -> np.ndarray:
    """``skimage.data.camera()`` as float32 in [0, 1], resized to SIZE x SIZE if needed."""
    from skimage import data

    img = data.camera().astype(np.float32) / 255.0
    if img.shape != (SIZE, SIZE):
        img = cv2.resize(img, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img, dtype=np.float32)


@pytest.fixture(scope="session")
def speckle() -> Case:
    """Camera image with fully developed *intensity* speckle, L = 4 looks.

    ``noisy = clean * Gamma(L, 1/L)`` (unit-mean multiplicative noise, coefficient of
    variation ``Cu = 1/sqrt(L) = 0.5``); ``clean = 0.05 + 0.95 * camera`` so that no
    pixel is black (speckle cannot be removed from zero).
    """
    rng = np.random.default_rng(SEED)
    looks = 4
    clean = (0.05 + 0.95 * _camera()).astype(np.float32)
    gamma = rng.gamma(looks, 1.0 / looks, clean.shape).astype(np.float32)
    noisy = np.ascontiguousarray(clean * gamma, dtype=np.float32)
    return Case(
        name="speckle",
        clean=clean,
        noisy=noisy,
        data_range=1.0,
        params={"looks": float(looks), "noise_cv": 1.0 / math.sqrt(looks)},
        description="camera, 0.05 + 0.95 x [0, 1], x Gamma(4, 1/4) intensity speckle",
    )


@pytest.fixture(scope="session")
def xray() -> Case:
    """Camera image as a low-dose X-ray: ``z = gain * Poisson(y / gain) + N(0, sigma^2)``.

    ``y = 20 + 200 * camera`` detector units, ``gain = 2`` units per quantum (10 to 110
    quanta per pixel), electronic noise ``sigma = 4`` units.
    """
    rng = np.random.default_rng(SEED + 1)
    gain, sigma = 2.0, 4.0
    clean = (20.0 + 200.0 * _camera()).astype(np.float32)
    quanta = rng.poisson(clean.astype(np.float64) / gain)
    noisy = gain * quanta + rng.normal(0.0, sigma, clean.shape)
    return Case(
        name="xray",
        clean=clean,
        noisy=np.ascontiguousarray(noisy, dtype=np.float32),
        data_range=float(clean.max()),
        params={"gain": gain, "sigma": sigma},
        description="camera, 20 + 200 x [0, 1] units, gain 2 x Poisson + N(0, 4^2)",
    )


@pytest.fixture(scope="session")
def xray_vst(xray: Case) -> Case:
    """The X-ray image after Anscombe + 5x5 Wiener: the input of ``inverse_anscombe``."""
    g, s = xray.params["gain"], xray.params["sigma"]
    z = me.denoise.anscombe(xray.noisy, gain=g, sigma=s)
    d = me.denoise.wiener(z, noise_sigma=1.0, window=5)
    return Case(
        name="xray-vst",
        clean=xray.clean,
        noisy=np.ascontiguousarray(d, dtype=np.float32),
        data_range=xray.data_range,
        params=dict(xray.params),
        description="X-ray image, Anscombe domain, after a 5x5 Wiener filter",
    )


@pytest.fixture(scope="session")
def gaussian() -> Case:
    """Camera image with additive white Gaussian noise, sigma = 0.05 (noise estimation)."""
    rng = np.random.default_rng(SEED + 2)
    sigma = 0.05
    clean = _camera()
    noisy = clean + rng.normal(0.0, sigma, clean.shape).astype(np.float32)
    return Case(
        name="gaussian",
        clean=clean,
        noisy=np.ascontiguousarray(noisy, dtype=np.float32),
        data_range=1.0,
        params={"sigma": sigma},
        description="camera [0, 1] + N(0, 0.05^2)",
    )


@pytest.fixture(scope="session")
def scalar_cache() -> dict[str, Any]:
    """Results of the scalar path, computed once per kernel (see ``scalar_result``)."""
    return {}


def cpu_model() -> str:
    """``model name`` (+ family/model/stepping) from /proc/cpuinfo, else platform."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    break  # first processor only
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        return platform.processor() or platform.machine()
    name = fields.get("model name") or fields.get("Hardware") or platform.machine()
    if "cpu family" in fields and "model" in fields:
        name += (
            f" (family {fields['cpu family']}, model {fields['model']}, "
            f"stepping {fields.get('stepping', '?')})"
        )
    return name


def machine_facts() -> dict[str, Any]:
    """Everything ``bench/report.py`` prints about the machine and the software."""
    import skimage

    flags: list[str] = []
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    flags = line.partition(":")[2].split()
                    break
    except OSError:
        pass
    simd_flags = [
        f
        for f in flags
        if f.startswith(("sse4", "avx", "fma", "asimd", "neon")) or f in ("sse2", "ssse3")
    ]
    return {
        "cpu_model": cpu_model(),
        "cpu_simd_flags": " ".join(sorted(simd_flags)),
        "logical_cpus": os.cpu_count(),
        "medimg_edge": me.info(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "opencv_threads": cv2.getNumThreads(),
        "skimage": skimage.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def pytest_benchmark_update_machine_info(config: Any, machine_info: dict[str, Any]) -> None:
    machine_info["medimg_edge_bench"] = machine_facts()
