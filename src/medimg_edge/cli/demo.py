"""``medimg-edge demo``: denoise two ``me.synth`` phantoms with every method (timings, PSNR
against their noise-free expectation, comparison PNGs), then diagnose phantom frames with
the reference models (overlays)."""

from __future__ import annotations

import argparse
import functools
import math
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from .. import denoise, features, quality, simd
from .._errors import MedimgEdgeError
from .._version import __version__
from ._common import HelpFormatter

__all__ = ["add_parser", "cmd_demo", "demo_diagnose"]

F32 = npt.NDArray[np.float32]
_T = TypeVar("_T")

DEMO_HELP = """\
Denoise an ultrasound envelope and a raw X-ray detector frame (me.synth phantoms) with
every method, print timings and PSNR against the phantoms' noise-free expectation,
estimate the noise parameters, run the quality checks and the feature extractor, and
write comparison PNGs; then diagnose phantom frames of both modalities with the
reference models and write overlays (frame, heatmap, verdict). Not for clinical use.
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="denoise and diagnose sample frames; timings, PSNR, overlays",
        description=DEMO_HELP,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--out", default="medimg-edge-demo", help="folder for PNG output")
    p.add_argument("--size", type=int, default=512, help="frame side in pixels, 64-4096")
    p.add_argument("--repeat", type=int, default=5, help="timing runs per method, 1-1000")
    p.add_argument("--seed", type=int, default=0, help="seed of the phantoms")
    p.set_defaults(func=cmd_demo)


#: Coefficient of variation of a fully developed (Rayleigh) speckle envelope.
SPECKLE_CV = math.sqrt(4.0 / math.pi - 1.0)


@dataclass(frozen=True)
class _Phantom:
    """A noisy frame, its noise-free expectation and the true noise parameters."""

    name: str
    noisy: F32
    clean: F32
    params: dict[str, float]


def _phantoms(size: int, seed: int) -> list[_Phantom]:
    """The two denoising test frames, from the ``me.synth`` simulators before display
    processing (the domain each preset is made for):

    * ultrasound: the envelope ``|IQ|`` of a linear-array frame with a cyst (fully
      developed speckle), before log compression; truth its expectation
      ``sqrt(pi/4 E|IQ|^2)`` (Rayleigh mean), both scaled so that the 99.5th percentile of
      the envelope is 200;
    * X-ray: the linear detector signal ``gain Poisson(I0 exp(-p)) + N(0, sigma_e^2)`` of a
      chest radiograph with a nodule at 1000 quanta per pixel, before the log and display
      mapping; truth ``gain E[counts]``.

    The simulators' intermediate maps come from their ``_simulate`` (the documented way
    to get a synth frame's noise-free expectation; ``me.synth.ultrasound`` and
    ``chest_xray`` return the display image only).
    """
    import numpy as np

    from ..synth import _ultrasound, _xray

    _, maps = _ultrasound._simulate(seed, size=size, lesion="cyst", geometry="linear")
    scale = np.float32(200.0 / max(float(np.percentile(maps.envelope, 99.5)), 1e-12))
    expected = np.sqrt(np.float32(math.pi / 4.0) * maps.power)
    us = _Phantom(
        "ultrasound",
        (maps.envelope * scale).astype(np.float32),
        (expected * scale).astype(np.float32),
        {"speckle_cv": SPECKLE_CV},
    )
    sample, xmaps = _xray._simulate(seed, size=size, nodule=True, dose=1000.0)
    gain = float(sample.params["gain"])
    xr = _Phantom(
        "xray",
        xmaps["signal"].astype(np.float32),
        (xmaps["expected"] * np.float32(gain)).astype(np.float32),
        {"gain": gain, "sigma": float(sample.params["sigma_e"])},
    )
    return [us, xr]


def _psnr(x: F32, ref: F32, peak: float) -> float:
    mse = float(np.mean((x.astype(np.float64) - ref) ** 2))
    return float("inf") if mse == 0 else 10.0 * float(np.log10(peak * peak / mse))


def _time_ms(fn: Callable[[], _T], repeat: int) -> tuple[_T, float]:
    out = fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, (time.perf_counter() - t0) * 1e3)
    return out, best


def _to_u8(img: F32, lo: float, hi: float) -> npt.NDArray[np.uint8]:
    scaled = (img.astype(np.float32) - lo) * (255.0 / max(hi - lo, 1e-12))
    out: npt.NDArray[np.uint8] = np.clip(scaled, 0, 255).astype(np.uint8)
    return out


def _display(name: str, img: F32) -> F32:
    """Map a frame to display space: radiographs as -log(transmission), bone bright."""
    if name == "xray":
        return -np.log(np.maximum(img, 1.0)).astype(np.float32)
    return img


def _strip(name: str, clean: F32, panels: list[F32], labels: list[str]) -> npt.NDArray[np.uint8]:
    import cv2

    lo, hi = np.percentile(_display(name, clean), [0.5, 99.5])
    tiles = []
    for img, label in zip(panels, labels, strict=True):
        tile = cv2.cvtColor(_to_u8(_display(name, img), float(lo), float(hi)), cv2.COLOR_GRAY2BGR)
        scale = max(tile.shape[0] / 512.0, 0.35)
        org = (8, int(24 * scale) + 4)
        for colour, thickness in (((0, 0, 0), 4.0), ((80, 255, 255), 1.5)):
            cv2.putText(
                tile,
                label,
                org,
                cv2.FONT_HERSHEY_SIMPLEX,
                0.6 * scale,
                colour,
                int(thickness * scale) + 1,
                cv2.LINE_AA,
            )
        tiles.append(tile)
    return np.concatenate(tiles, axis=1)


def cmd_demo(args: argparse.Namespace) -> int:
    import cv2

    size = args.size
    frames = _phantoms(size, args.seed)
    methods: dict[str, list[tuple[str, Callable[[F32], F32]]]] = {
        "ultrasound": [
            ("ultrasound preset (SRAD)", lambda f: denoise.ultrasound(f)),
            ("lee 7x7", lambda f: denoise.ultrasound(f, method="lee")),
            ("kuan 7x7", lambda f: denoise.ultrasound(f, method="kuan")),
            ("frost 7x7", lambda f: denoise.ultrasound(f, method="frost")),
        ],
        "xray": [
            ("xray preset (VST+Wiener)", lambda f: denoise.xray(f)),
        ],
    }
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"medimg-edge {__version__} demo: SIMD target {simd.active_target()} "
        f"(compiled: {', '.join(simd.compiled_targets())}); frames {size}x{size}, "
        f"best of {args.repeat} runs"
    )
    print("Not for clinical use.\n")
    header = f"{'frame':<11} {'method':<26} {'ms':>8} {'PSNR in':>8} {'PSNR out':>9} {'gain dB':>8}"
    print(header)
    print("-" * len(header))
    for frame in frames:
        peak = float(frame.clean.max())
        p_in = _psnr(frame.noisy, frame.clean, peak)
        panels = [frame.noisy]
        for label, fn in methods[frame.name]:
            result, ms = _time_ms(functools.partial(fn, frame.noisy), args.repeat)
            p_out = _psnr(result, frame.clean, peak)
            print(
                f"{frame.name:<11} {label:<26} {ms:8.2f} {p_in:8.2f} {p_out:9.2f} "
                f"{p_out - p_in:+8.2f}"
            )
            panels.append(result)
        if frame.name == "ultrasound":
            cu = denoise.estimate_speckle(frame.noisy)
            print(
                f"{'':<11} estimated speckle CV {cu:.3f} (fully developed: "
                f"{frame.params['speckle_cv']:.3f})"
            )
        else:
            g, s = denoise.estimate_poisson_gaussian(frame.noisy)
            print(
                f"{'':<11} estimated gain {g:.2f} (true {frame.params['gain']:.2f}), "
                f"sigma {s:.1f} (true {frame.params['sigma']:.1f})"
            )
        modality = "ultrasound" if frame.name == "ultrasound" else "xray"
        report, q_ms = _time_ms(
            functools.partial(quality.assess, frame.noisy, modality=modality), args.repeat
        )
        verdict = "ok" if report.ok else "issues: " + ", ".join(report.issues)
        print(f"{'':<11} quality.assess ({q_ms:.2f} ms): {verdict}")
        feats, f_ms = _time_ms(functools.partial(features.extract, frame.noisy), args.repeat)
        print(
            f"{'':<11} features.extract ({f_ms:.2f} ms): {len(feats)} features, e.g. "
            f"glcm_contrast_d1 {feats['glcm_contrast_d1']:.3g}, "
            f"firstorder_skewness {feats['firstorder_skewness']:.3g}"
        )
        strip = _strip(
            frame.name,
            frame.clean,
            panels,
            ["noisy input"] + [label for label, _ in methods[frame.name]],
        )
        path = out_dir / f"demo_{frame.name}.png"
        if not cv2.imwrite(str(path), strip):
            print(f"error: could not write {path}", file=sys.stderr)
            return 1
    print(
        f"\nWrote {out_dir / 'demo_ultrasound.png'} and {out_dir / 'demo_xray.png'} "
        "(left to right: noisy input, then each method in table order)."
    )
    return demo_diagnose(out_dir, seed=args.seed)


def demo_diagnose(out_dir: Path, *, seed: int = 0, size: int = 256) -> int:
    """The diagnose part of ``medimg-edge demo``: phantom frames of both modalities
    (``me.synth``, lesions of the range the reference models were trained on, a normal one
    and one per lesion type, then one frame of the other modality) through the reference
    models; prints a table and writes one overlay PNG
    per frame plus a montage per modality."""
    import cv2
    import numpy as np

    from .. import synth
    from .._overlay import render_overlay
    from ..diagnosis import REFERENCE_MODELS
    from ..triage import pooled_diagnoser

    Maker = Callable[[int], synth.Sample]
    cases: dict[str, list[tuple[str, Maker]]] = {
        "xray": [
            ("normal", lambda s: synth.chest_xray(s, size=size, nodule=False)),
            (
                "nodule",
                lambda s: synth.chest_xray(s, size=size, nodule=True, lesion_prior="conspicuous"),
            ),
            # Out of distribution: an ultrasound frame given to the X-ray model.
            ("ultrasound", lambda s: synth.ultrasound(s, size=size, lesion="cyst")),
        ],
        "ultrasound": [
            *(
                (
                    lesion,
                    functools.partial(
                        synth.ultrasound, size=size, lesion=lesion, lesion_prior="conspicuous"
                    ),
                )
                for lesion in ("none", "cyst", "hypoechoic", "hyperechoic")
            ),
            # Out of distribution: a chest radiograph given to the ultrasound model.
            ("radiograph", lambda s: synth.chest_xray(s, size=size, nodule=True)),
        ],
    }
    print(f"\nDiagnosis with the reference models (phantom frames {size}x{size}, seed {seed}):")
    header = (
        f"{'modality':<11} {'truth':<12} {'status':<14} {'label/reason':<20} {'conf':>6} {'ms':>7}"
    )
    print(header)
    print("-" * len(header))
    code = 0
    for modality, makers in cases.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                diagnoser = pooled_diagnoser(None, modality)
            except MedimgEdgeError as exc:
                print(f"{modality:<11} error: reference model {REFERENCE_MODELS[modality]}: {exc}")
                code = 1
                continue
        if caught:
            print(f"{'':<11} note: {caught[0].message}".split(";")[0])
        tiles = []
        for truth, make in makers:
            sample = make(seed)
            result = diagnoser.diagnose(sample.image)  # warm-up (first call builds caches)
            t = [diagnoser.diagnose(sample.image).timings_ms["total"] for _ in range(5)]
            conf = "-" if result.confidence is None else f"{100 * result.confidence:.0f}%"
            truth_text = sample.label if sample.modality == modality else f"({truth})"
            what = result.label or "-"
            if result.status == "indeterminate":
                # No finding: the reason instead of a label, the positive score (if the
                # model answered) instead of a confidence.
                what = result.reasons[0] if result.reasons else "-"
                score = result.positive_score
                conf = "-" if score is None else f"p {score:.2f}"
            print(
                f"{modality:<11} {truth_text:<12} {result.status:<14} "
                f"{what:<20} {conf:>6} {min(t):7.2f}"
            )
            picture = render_overlay(sample.image, result, max_side=384)
            tiles.append(picture)
            cv2.imwrite(str(out_dir / f"diagnose_{modality}_{truth}.png"), picture)
        height = max(t.shape[0] for t in tiles)
        padded = [np.pad(t, ((0, height - t.shape[0]), (0, 4), (0, 0))) for t in tiles]
        cv2.imwrite(str(out_dir / f"diagnose_{modality}.png"), np.hstack(padded))
    print(
        "\nThe last row of each modality is a frame of the other modality: it must not get "
        "a finding (indeterminate: out_of_distribution from the model's guard, or a quality "
        "code when the gate refuses it first)."
    )
    print(
        f"Wrote overlays to {out_dir}/diagnose_<modality>[_<truth>].png (frame, heatmap, "
        "status, label, confidence). Not for clinical use."
    )
    return code
