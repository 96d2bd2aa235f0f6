"""Build the shipped reference models and their evaluation reports (one command).

    python scripts/build_reference_models.py            # writes models/ (about 20 min, 2 cores)
    python scripts/build_reference_models.py --out DIR  # somewhere else
    python scripts/build_reference_models.py --quick    # tiny smoke run (not a reference)

Same as ``medimg-edge train --reference``. Needs the ``[train]`` extra (TensorFlow,
scikit-learn, matplotlib). Everything is seeded (data generator seed bases, network seed,
deterministic TensorFlow ops); see models/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from medimg_edge.training import build_reference

REPO_ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "models")
    ap.add_argument("--quick", action="store_true", help="tiny sets, 2 epochs (smoke run)")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--only", action="append", default=[], help="build only this model")
    ap.add_argument(
        "--init-from",
        type=Path,
        default=None,
        help="start from DIR/<name>_float.tflite (the previous reference models' float exports)",
    )
    args = ap.parse_args()
    t0 = time.perf_counter()
    cmd = "python scripts/build_reference_models.py" + (" --quick" if args.quick else "")
    if args.init_from is not None:
        cmd += " --init-from <previous models/reports/*/<name>_float.tflite>"
    res = build_reference(
        args.out,
        quick=args.quick,
        command=cmd,
        progress=not args.no_progress,
        only=tuple(args.only),
        init_dir=args.init_from,
    )
    for name, r in res.items():
        brief = {
            "cnn_auc": r["cnn"]["auc"],
            "baseline_auc": r.get("baseline", {}).get("auc"),
            "agreement": r.get("float_int8_agreement"),
            "ece_calibrated": r["cnn"]["ece_calibrated"],
            "bytes": r["bytes"],
            "invoke_ms": r["latency"]["invoke_ms"],
        }
        print(f"{name}: {json.dumps(brief)}")
    print(f"total {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
