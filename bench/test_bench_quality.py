"""Quality-gate benchmarks (issue 14, item 4): ``quality._assess_float`` (the stage the
``Diagnoser`` runs on its float32 copy of the frame) vs the previous implementations of the
same stage, single thread, on package phantoms at 512^2 and 2048^2.

Groups ``quality-<modality>-<size>`` (``xray``: a ``me.synth.chest_xray`` frame, uint16
12-bit; ``ultrasound``: a ``me.synth.ultrasound`` convex frame, uint8), rows:

* ``target``: ``quality._assess_float(img, dtype, modality)``: area downsampling to the
  model resolution (OpenCV), the ultrasound imaged region (OpenCV connected components),
  then one call of the fused C++ kernels (``_core.quality_measures``: field of view,
  annotation strokes, histogram statistics, Immerkaer noise and the two-scale edge-width
  estimate).  Issue-14 targets: <= 0.4 ms at 512^2,
  <= 3 ms at 2048^2.  Checked: the clean phantom passes, its field of view is not empty
  and its edge width is measured.
* ``peer`` ``opencv`` (the implementation before the fused kernels, kept as the tests'
  reference in tests/quality_helpers.py): the same measures by ~30 OpenCV calls on the
  analysis image.  Checked: its measures equal the target's within the documented
  tolerances.
* ``peer`` (the gate before the redesign): ``_core.quality_stats`` (one fused C++ pass:
  summary, percentiles, Laplacian / Tenengrad / Crete-Roffet blur sums, Immerkaer sum) on
  the full-resolution frame plus the arithmetic that turned the sums into measures.
  Checked: its noise sigma equals ``me.denoise.estimate_noise`` of the frame.
* ``skimage`` (512^2 only): ``skimage.measure.blur_effect`` alone, the library form of the
  old blur measure.  Checked: in [0, 1].

Run: ``python -m pytest bench/test_bench_quality.py --benchmark-only``.
"""

from __future__ import annotations

import functools
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import medimg_edge as me
from medimg_edge import _core
from medimg_edge import quality as Q

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import quality_helpers  # tests/quality_helpers.py: the OpenCV implementation

QUANTILES = np.array([0.01, 0.05, 0.95, 0.99])
CASES = [(m, s) for m in ("xray", "ultrasound") for s in (512, 2048)]
#: One benchmark group per case (every row of a group is timed in the same run).
BY_CASE = pytest.mark.parametrize(
    ("modality", "size"),
    [pytest.param(m, s, marks=pytest.mark.benchmark(group=f"quality-{m}-{s}")) for m, s in CASES],
)


@functools.cache
def frame(modality: str, size: int) -> tuple[np.ndarray, np.dtype[Any]]:
    """A clean phantom frame as the Diagnoser hands it to the gate (float32, C order)."""
    if modality == "xray":
        img: np.ndarray = me.synth.chest_xray(3, size=size, dose=1e4).image
    else:
        img = me.synth.ultrasound(3, size=size, geometry="convex").image
    f32 = np.ascontiguousarray(img, dtype=np.float32)
    f32.setflags(write=False)
    return f32, img.dtype


def old_quality(img: np.ndarray, lo: float, hi: float) -> dict[str, float]:
    """The previous quality stage: fused full-resolution sums -> measures."""
    s, q, sh, noise_sum = _core.quality_stats(img, QUANTILES, lo, hi)
    scale = hi - lo
    n = float(s["count"])
    p1, p5, p95, p99 = ((float(x) - lo) / scale for x in q)
    lap_mean = sh["lap_sum"] / n

    def blur(diff: float, lost: float) -> float:
        return 1.0 - lost / diff if diff > 0.0 else 1.0

    rows, cols = img.shape
    return {
        "mean": (float(s["mean"]) - lo) / scale,
        "contrast_rms": math.sqrt(float(s["m2"])) / scale,
        "contrast_michelson": (p95 - p5) / (p95 + p5) if p95 + p5 > 0 else 0.0,
        "dynamic_range": p99 - p1,
        "fraction_saturated": float(s["n_above"]) / n,
        "fraction_underexposed": float(s["n_below"]) / n,
        "noise_sigma": math.sqrt(math.pi / 2) * noise_sum / (6.0 * (rows - 2) * (cols - 2)) / scale,
        "sharpness_laplacian_var": max(sh["lap_sumsq"] / n - lap_mean**2, 0.0) / scale**2,
        "sharpness_tenengrad": sh["tenengrad_sum"] / n / scale**2,
        "blur_effect": max(blur(sh["diff_h"], sh["lost_h"]), blur(sh["diff_v"], sh["lost_v"])),
    }


def nominal(dtype: np.dtype[Any]) -> tuple[float, float]:
    return (0.0, 4095.0) if dtype == np.uint16 else (0.0, 255.0)


def record(benchmark: Any, *, role: str, label: str, case: str) -> None:
    benchmark.extra_info.update(
        role=role,
        target=me.simd.active_target(),
        label=label,
        image=case,
        psnr_gain_db=None,
        load_1min=os.getloadavg()[0],
    )


@BY_CASE
def test_quality_target(benchmark: Any, modality: str, size: int) -> None:
    img, dtype = frame(modality, size)
    report = benchmark(Q._assess_float, img, dtype, modality)
    assert report.ok, (report.issues, report.measures)
    assert report.fov is not None and report.fov.any()
    assert report.measures["edge_count"] >= 16
    record(benchmark, role="target", label="quality._assess_float", case=f"{modality}-{size}")


@BY_CASE
def test_quality_opencv(benchmark: Any, modality: str, size: int) -> None:
    img, dtype = frame(modality, size)
    report = benchmark(quality_helpers._assess_float, img, dtype, modality)
    new = Q._assess_float(img, dtype, modality)
    for key, tol in quality_helpers.TOLERANCE.items():
        want = report.measures[key]
        scale = max(want, 1.0) if key == "edge_count" else 1.0
        assert abs(new.measures[key] - want) <= tol * scale, key
    record(
        benchmark,
        role="peer",
        label="opencv: the OpenCV implementation before the fused kernels",
        case=f"{modality}-{size}",
    )


@BY_CASE
def test_quality_previous(benchmark: Any, modality: str, size: int) -> None:
    img, dtype = frame(modality, size)
    lo, hi = nominal(dtype)
    out = benchmark(old_quality, img, lo, hi)
    ref = me.denoise.estimate_noise(img) / (hi - lo)
    assert out["noise_sigma"] == pytest.approx(ref, rel=1e-4)
    assert 0.0 <= out["blur_effect"] <= 1.0
    record(
        benchmark,
        role="peer",
        label="previous: _core.quality_stats + measures (full resolution)",
        case=f"{modality}-{size}",
    )


@pytest.mark.parametrize(
    "modality",
    [pytest.param(m, marks=pytest.mark.benchmark(group=f"quality-{m}-512")) for m in ("xray",)],
)
def test_quality_skimage_blur_effect(benchmark: Any, modality: str) -> None:
    from skimage.measure import blur_effect

    img, dtype = frame(modality, 512)
    u = np.asarray(img, np.float64) / nominal(dtype)[1]
    out = benchmark(blur_effect, u)
    assert 0.0 <= out <= 1.0
    record(benchmark, role="skimage", label="skimage.measure.blur_effect", case=f"{modality}-512")
