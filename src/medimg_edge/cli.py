"""Command-line interface: ``medimg-edge <command>``.

Commands: ``info`` (installation, SIMD targets, runtime, models), ``demo`` (denoises the
sample frames with every method, prints timings and PSNR, writes comparison PNGs, then
diagnoses phantom frames with the reference models and writes overlays), ``features`` (one
CSV row of :func:`medimg_edge.features.extract` per image file), ``diagnose``
(``_cli_diagnose.py``), ``bench`` (``_cli_bench.py``), ``watch`` (the watch-folder daemon,
``_cli_watch.py``), ``batch`` (archive analysis into Parquet, ``_cli_batch.py``), ``synth``,
``train``, ``evaluate``.
``main`` returns a process exit code: 0 success, 1 runtime failure (for ``features``:
some files failed), 2 usage or input error.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from . import (
    _cli_batch,
    _cli_bench,
    _cli_diagnose,
    _cli_watch,
    _samples,
    denoise,
    features,
    info,
    quality,
    simd,
)
from ._cli_common import collect_or_report, missing_extra
from ._errors import MedimgEdgeError
from ._version import __version__

__all__ = ["main"]

F32 = npt.NDArray[np.float32]
_T = TypeVar("_T")


def _cmd_info(args: argparse.Namespace) -> int:
    data = info()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    s = data["simd"]
    print(f"medimg-edge {data['version']}")
    print(f"  SIMD active     : {s['active']}" + (f" (capped at {s['cap']})" if s["cap"] else ""))
    print(f"  SIMD compiled   : {', '.join(s['compiled'])}")
    print(f"  SIMD supported  : {', '.join(s['supported'])}")
    print(f"  compiler        : {data['compiler']}")
    print(f"  python          : {data['python']} on {data['machine']}")
    print(f"  numpy / opencv  : {data['numpy']} / {data['opencv']}")
    rt = data["runtime"]
    if rt["name"]:
        print(f"  TFLite runtime  : {rt['distribution']} {rt['version']}")
    else:
        print(f"  TFLite runtime  : none ({rt['error']})")
    tpu = data["edgetpu"]
    print(
        f"  Edge TPU        : {tpu['library']} "
        + (
            "loadable (device presence is checked when a model loads)"
            if tpu["loadable"]
            else f"unavailable: {tpu['reason']}"
        )
    )
    if not data["models"]:
        print("  models          : none found")
    for m in data["models"]:
        if "error" in m:
            print(f"  model {m['name']:<10}: INVALID: {m['error']}")
        else:
            tpu_note = ", Edge TPU variant" if m["edgetpu"] else ""
            print(f"  model {m['name']:<10}: v{m['version']} ({m['modality']}{tpu_note})")
    print(f"  override        : set {simd.ENV_VAR}=scalar|sse4|avx2|avx512|neon to cap SIMD")
    return 0


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


def _cmd_demo(args: argparse.Namespace) -> int:
    import cv2

    size = args.size
    frames = [
        _samples.ultrasound_frame(size, seed=args.seed),
        _samples.xray_frame(size, seed=args.seed),
    ]
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
        peak = 255.0 if frame.name == "ultrasound" else 4095.0
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
    return _cli_diagnose.demo_diagnose(out_dir, seed=args.seed)


_FEATURES_HELP = """\
Extract the handcrafted features of every image (PNG, JPEG, TIFF, .npy, DICOM) into one
CSV file: a row per image with the columns path, error, then the features of
medimg_edge.features.feature_names() in that order.  PATH may be a file (read whatever
its extension) or a folder (searched recursively for the extensions .png .jpg .jpeg .tif
.tiff .npy .dcm .dicom, in sorted order).  A file that cannot be read or analysed gets
an error code and message in the error column (read_error, mask_error, feature_error or
internal_error) and empty feature cells; the run goes on.

exit status: 0 every file analysed; 1 some files failed (see the error column); 2 usage
error (bad option, missing PATH, no image found, CSV not writable).
"""


_MASK_SUFFIXES = (".png", ".npy", ".tif", ".tiff")


def _find_mask(mask_dir: Path, key: Path) -> Path | None:
    for suffix in (*_MASK_SUFFIXES, key.suffix):
        candidate = mask_dir / key.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def _features_row(
    path: Path, key: Path, mask_dir: Path | None, levels: int, n_features: int
) -> tuple[str, list[str]]:
    """(error, feature cells) of one file; error is "" on success."""
    from . import features
    from .io import read_image

    empty = [""] * n_features
    try:
        image = read_image(path)
    except MedimgEdgeError as exc:
        return f"read_error: {exc}", empty
    mask = None
    if mask_dir is not None:
        mask_path = _find_mask(mask_dir, key)
        if mask_path is None:
            return f"mask_error: no mask for {key.as_posix()} in the mask folder", empty
        try:
            mask = read_image(mask_path) != 0
        except MedimgEdgeError as exc:
            return f"mask_error: {exc}", empty
    try:
        values = features.extract(image, mask, levels=levels)
    except MedimgEdgeError as exc:
        code = "mask_error" if mask is not None and "mask" in str(exc) else "feature_error"
        return f"{code}: {exc}", empty
    except Exception as exc:  # never stop the run on one file
        return f"internal_error: {type(exc).__name__}", empty
    return "", [repr(v) for v in values.values()]


def _cmd_features(args: argparse.Namespace) -> int:
    import csv

    from tqdm import tqdm

    from . import features

    files = collect_or_report(args.paths)
    if not files:
        return 2
    mask_dir = Path(args.mask_dir) if args.mask_dir else None
    if mask_dir is not None and not mask_dir.is_dir():
        print(f"error: --mask-dir {args.mask_dir} is not a folder", file=sys.stderr)
        return 2
    names = features.feature_names(levels=args.levels)
    failed = 0
    try:
        out = open(args.csv, "w", newline="", encoding="utf-8")
    except OSError as exc:
        print(f"error: cannot write {args.csv}: {exc.strerror}", file=sys.stderr)
        return 2
    with out:
        writer = csv.writer(out)
        writer.writerow(["path", "error", *names])
        for path, key in tqdm(
            files, desc="features", unit="file", file=sys.stderr, disable=args.no_progress
        ):
            error, cells = _features_row(path, key, mask_dir, args.levels, len(names))
            failed += bool(error)
            writer.writerow([str(path), error, *cells])
            out.flush()
    print(
        f"{len(files)} file(s), {failed} failed; wrote {args.csv}",
        file=sys.stderr,
    )
    return 1 if failed else 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from collections import Counter

    from . import synth

    samples = synth.generate(
        args.modality,
        args.n,
        seed=args.seed,
        size=args.size,
        positive_fraction=args.positive_fraction,
        progress=not args.no_progress,
    )
    manifest = synth.write(samples, args.out, fmt=args.format)
    counts = Counter(s.label for s in samples)
    summary = ", ".join(f"{label} {counts[label]}" for label in synth.LABELS[args.modality])
    print(f"synth {args.modality}: {len(samples)} samples ({summary}); wrote {manifest}")
    return 0


#: What the [train] extra installs (checked before train / evaluate start any work).
TRAIN_MODULES = ("tensorflow", "sklearn", "matplotlib")


def _cmd_train(args: argparse.Namespace) -> int:
    error = missing_extra(TRAIN_MODULES, "train")
    if error is not None:
        print(error, file=sys.stderr)
        return 2
    from . import training

    progress = not args.no_progress
    if args.reference:
        out = Path(args.out or "models")
        training.build_reference(out, command="medimg-edge train --reference", progress=progress)
        print(f"wrote the reference models and reports to {out}")
        return 0
    if args.modality is None:
        print("error: --modality is required (or --reference)", file=sys.stderr)
        return 2
    argv = [a if a != args.data else "DATA_DIR" for a in sys.argv[1:]] if args.data else None
    name = args.name or f"{args.modality}_model"
    out = Path(args.out or "trained-models")
    cfg = training.TrainConfig(
        modality=args.modality,
        name=name,
        out_dir=out,
        size=args.size,
        frame_size=args.frame_size,
        n_train=args.n_train,
        n_val=args.n_val,
        data_dir=Path(args.data) if args.data else None,
        net=training.NetConfig(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed),
        features=args.evaluate,
        progress=progress,
        command="medimg-edge " + " ".join(argv if argv is not None else sys.argv[1:]),
    )
    if args.evaluate:
        res = training.train_and_report(cfg, n_test=args.n_test)
        print(training.metrics_tables(res))
    else:
        result = training.train(cfg)
        training.write_model_card(
            result.sidecar,
            None,
            training.model_ops(cfg.out_dir.joinpath(f"{name}.tflite").read_bytes()),
            result.summary,
            None,
        )
        (out / "reports" / name).mkdir(parents=True, exist_ok=True)
        (out / "reports" / name / f"{name}_float.tflite").write_bytes(result.float_tflite)
    print(f"wrote {out / name}.tflite, .json and .md")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    error = missing_extra(TRAIN_MODULES, "train")
    if error is not None:
        print(error, file=sys.stderr)
        return 2
    from . import training

    float_bytes = Path(args.float_model).read_bytes() if args.float_model else None
    res = training.evaluate(
        args.model,
        args.modality,
        n_test=args.n_test,
        n_stability=args.n_stability,
        seed=args.seed,
        report_dir=args.report,
        float_tflite=float_bytes,
        n_baseline_train=args.baseline_n,
        progress=not args.no_progress,
    )
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(training.metrics_tables(res))
    return 0


def _levels(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 2 <= value <= 256:
        raise argparse.ArgumentTypeError("must be in [2, 256]")
    return value


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medimg-edge",
        description="AI triage for point-of-care medical imaging (not for clinical use).",
    )
    parser.add_argument("--version", action="version", version=f"medimg-edge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p_info = sub.add_parser("info", help="show version, SIMD targets and libraries")
    p_info.add_argument("--json", action="store_true", help="print JSON")
    p_info.set_defaults(func=_cmd_info)
    p_demo = sub.add_parser(
        "demo", help="denoise and diagnose sample frames; timings, PSNR, overlays"
    )
    p_demo.add_argument("--out", default="medimg-edge-demo", help="folder for PNG output")
    p_demo.add_argument("--size", type=int, default=512, help="frame side in pixels")
    p_demo.add_argument("--repeat", type=int, default=5, help="timing runs per method")
    p_demo.add_argument("--seed", type=int, default=0, help="seed of the sample frames")
    p_demo.set_defaults(func=_cmd_demo)
    p_feat = sub.add_parser(
        "features",
        help="extract handcrafted features of image files into a CSV",
        description=_FEATURES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p_feat.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    p_feat.add_argument("--csv", required=True, metavar="OUT.csv", help="output CSV file")
    p_feat.add_argument(
        "--levels", type=_levels, default=32, help="GLCM grey levels, 2-256 (default 32)"
    )
    p_feat.add_argument(
        "--mask-dir",
        metavar="DIR",
        help="folder of masks (non-zero = region of interest) mirroring the images: the mask "
        "of image a/b.dcm found in a PATH folder is DIR/a/b.png (or .npy, .tif, .tiff, or the "
        "image's own extension), that of a PATH file x.jpg is DIR/x.png (...); an image "
        "without a mask fails with mask_error",
    )
    p_feat.add_argument("--no-progress", action="store_true", help="no progress bar")
    p_feat.set_defaults(func=_cmd_features)
    p_train = sub.add_parser(
        "train",
        help="train a CNN on phantoms or a folder and export an int8 package ([train] extra)",
    )
    p_train.add_argument("--modality", choices=("xray", "ultrasound"))
    p_train.add_argument("--reference", action="store_true", help="build both reference models")
    p_train.add_argument("--name", help="package name (default <modality>_model)")
    p_train.add_argument(
        "--out", help="output folder (default trained-models; models with --reference)"
    )
    p_train.add_argument(
        "--data", metavar="DIR", help="train on DIR/<class>/*.png|*.dcm (masks: DIR/masks/)"
    )
    p_train.add_argument("--size", type=int, default=128, help="model input side (default 128)")
    p_train.add_argument("--frame-size", type=int, default=256, help="phantom side (default 256)")
    p_train.add_argument("--n-train", type=int, default=8000, help="phantom training frames")
    p_train.add_argument("--n-val", type=int, default=1000, help="phantom validation frames")
    p_train.add_argument("--epochs", type=int, default=12)
    p_train.add_argument("--batch-size", type=int, default=64)
    p_train.add_argument("--seed", type=int, default=0, help="network seed")
    p_train.add_argument("--evaluate", action="store_true", help="also evaluate and write a report")
    p_train.add_argument("--n-test", type=int, default=2000, help="test frames with --evaluate")
    p_train.add_argument("--no-progress", action="store_true")
    p_train.set_defaults(func=_cmd_train)
    p_eval = sub.add_parser(
        "evaluate", help="evaluate an int8 package on held-out phantoms ([train] extra)"
    )
    p_eval.add_argument("model", metavar="MODEL", help="model name, sidecar .json or .tflite")
    p_eval.add_argument("--modality", required=True, choices=("xray", "ultrasound"))
    p_eval.add_argument("--n-test", type=int, default=2000, help="test frames (default 2000)")
    p_eval.add_argument("--n-stability", type=int, default=600, help="frames per level")
    p_eval.add_argument("--seed", type=int, default=303, help="test seed base (default 303)")
    p_eval.add_argument("--report", metavar="DIR", help="write report.md + plots here")
    p_eval.add_argument("--float-model", metavar="PATH", help="float .tflite for agreement")
    p_eval.add_argument("--baseline-n", type=int, help="cap the baseline's training frames")
    p_eval.add_argument("--json", action="store_true", help="print all metrics as JSON")
    p_eval.add_argument("--no-progress", action="store_true")
    p_eval.set_defaults(func=_cmd_evaluate)
    p_synth = sub.add_parser(
        "synth", help="simulate labelled phantoms (class folders, masks, manifest.csv)"
    )
    p_synth.add_argument("--modality", required=True, choices=("xray", "ultrasound"))
    p_synth.add_argument("-n", type=int, default=100, help="number of samples (default 100)")
    p_synth.add_argument("--seed", type=int, default=0, help="seed of the set (default 0)")
    p_synth.add_argument("--size", type=int, default=256, help="image side, 64-2048")
    p_synth.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p_synth.add_argument("--format", default="png", choices=("png", "npy", "dcm"))
    p_synth.add_argument(
        "--positive-fraction", type=float, default=0.5, help="fraction with a lesion"
    )
    p_synth.add_argument("--no-progress", action="store_true", help="no progress bar")
    p_synth.set_defaults(func=_cmd_synth)
    _cli_diagnose.add_parser(sub)
    _cli_bench.add_parser(sub)
    _cli_watch.add_parser(sub)
    _cli_batch.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    if args.command == "demo" and not (32 <= args.size <= 4096 and 1 <= args.repeat <= 1000):
        parser.error("--size must be in [32, 4096] and --repeat in [1, 1000]")
    try:
        code: int = args.func(args)
        return code
    except MedimgEdgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
