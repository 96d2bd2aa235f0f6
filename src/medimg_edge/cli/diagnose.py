"""``medimg-edge diagnose PATH...``: diagnose image files through the triage layer."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import warnings
from pathlib import Path
from typing import Any

from .._errors import MedimgEdgeError
from .._modality import MODALITIES
from ._common import HelpFormatter, collect_or_report

__all__ = ["DIAGNOSE_HELP", "add_parser", "cmd_diagnose", "overlay_name"]

DIAGNOSE_HELP = """\
Diagnose every image (PNG, JPEG, TIFF, .npy, DICOM incl. compressed transfer syntaxes
with the [dicom] extra) and print one line per file (or one JSON object per line with
--json).  Inputs go through the same path as the API, the daemon and batch
(medimg_edge.triage): the hardened reader, one photometric path (MONOCHROME1, rescale,
palette / YBR, VOI LUT) and one modality rule: a DICOM file's Modality tag / SOP class
decides (US -> ultrasound; CR, DX, ... -> xray); CT, MR, NM and other DICOM no model
serves are refused (unsupported_modality) unless --override-dicom-modality; --modality
is for non-DICOM files and DICOM without a usable tag.  A multi-frame file is diagnosed
on 3 sampled frames; the answer names the frame it rests on.  Folders are searched
recursively (hidden files and the masks/ folder of a `medimg-edge synth` data set are
skipped).  With --overlay DIR, a PNG per file (frame, heatmap, verdict) is written to DIR,
named by a hash of the input path (file names never carry what the input's name might:
patient data).

exit status: 0 every file diagnosed; 1 some files could not be read or diagnosed; 2 usage
error (bad option, missing PATH, no image found, no modality for any file, model not
loadable).
Not for clinical use.
"""


def overlay_name(path: Path) -> str:
    """``<sha256 of the resolved path, 16 hex>.png``: stable, carries no part of the name."""
    digest = hashlib.sha256(str(path.resolve()).encode("utf-8", "surrogatepass")).hexdigest()
    return f"{digest[:16]}.png"


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "diagnose",
        help="diagnose image files (status, label, confidence; overlays)",
        description=DIAGNOSE_HELP,
        formatter_class=HelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    p.add_argument(
        "--modality",
        choices=MODALITIES,
        help="modality of non-DICOM files and of DICOM without a usable Modality tag "
        "(default: the model's, else required for such files)",
    )
    p.add_argument(
        "--model",
        help="model name or sidecar path for its modality (default: the reference model "
        "of each file's modality)",
    )
    p.add_argument(
        "--override-dicom-modality",
        action="store_true",
        help="DANGER, research only: apply --modality even where the DICOM header says "
        "otherwise, including CT/MR/... (answers are meaningless for such frames)",
    )
    p.add_argument(
        "--delegate",
        default="auto",
        choices=["auto", "cpu", "edgetpu"],
        help="where the model runs (auto: the Edge TPU when one is present, else the CPU)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--overlay", metavar="DIR", help="write overlay PNGs to DIR")
    p.add_argument("--no-quality-gate", action="store_true", help="run the model on any frame")
    p.set_defaults(func=cmd_diagnose)


def _line(path: Path, got: Any, overlay: Path | None) -> str:
    """The text line of one diagnosed file."""
    from .._overlay import describe

    result = got.result
    where = ""
    if got.input.n_frames > 1:
        where = f"; frame {got.clip.frame_index + 1} of {got.input.n_frames}"
    extra = f" -> {overlay}" if overlay is not None else ""
    return (
        f"{path}: {describe(result)} ({got.modality} from {got.modality_source}{where}; "
        f"{result.timings_ms.get('total', 0.0):.1f} ms){extra}"
    )


def cmd_diagnose(args: argparse.Namespace) -> int:
    import cv2

    from .._overlay import render_overlay
    from ..triage import Triage

    files = collect_or_report(args.paths)
    if not files:
        return 2
    if args.override_dicom_modality and args.modality is None:
        print("error: --override-dicom-modality needs --modality", file=sys.stderr)
        return 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        triage = Triage(
            modality=args.modality,
            model=args.model,
            delegate=args.delegate,
            quality_gate=not args.no_quality_gate,
            override_dicom_modality=args.override_dicom_modality,
        )
    out_dir = Path(args.overlay) if args.overlay else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    codes: list[str] = []
    for path, _ in files:
        try:
            with warnings.catch_warnings(record=True) as more:
                warnings.simplefilter("always")
                got = triage.diagnose_file(path)
            caught.extend(more)
        except MedimgEdgeError as exc:
            failed += 1
            code = str(getattr(exc, "code", "error"))
            codes.append(code)
            if args.json:
                print(json.dumps({"path": str(path), "error": str(exc), "code": code}))
            else:
                print(f"{path}: error [{code}]: {exc}")
            continue
        for w in caught:
            print(f"note: {w.message}", file=sys.stderr)
        caught.clear()
        overlay = None
        if out_dir is not None:
            overlay = out_dir / overlay_name(path)
            note = None
            if got.input.n_frames > 1:
                note = f"frame {got.clip.frame_index + 1} of {got.input.n_frames}"
            picture = render_overlay(got.frame, got.result, frame_note=note)
            if not cv2.imwrite(str(overlay), picture):
                print(f"error: could not write {overlay}", file=sys.stderr)
                return 1
        if args.json:
            row = {"path": str(path), **got.to_dict()}
            if overlay is not None:
                row["overlay"] = str(overlay)
            print(json.dumps(row))
        else:
            print(_line(path, got, overlay))
    for w in caught:
        print(f"note: {w.message}", file=sys.stderr)
    print(f"{len(files)} file(s), {failed} failed. Not for clinical use.", file=sys.stderr)
    if failed == len(files) and codes and all(c == "unknown_modality" for c in codes):
        print(
            "error: no file's modality is known: pass --modality ultrasound|xray (or --model)",
            file=sys.stderr,
        )
        return 2
    return 1 if failed else 0
