"""Add the drift reference (sidecar key ``drift``) to shipped packages.

    python scripts/fit_drift_reference.py                  # both reference models, in models/
    python scripts/fit_drift_reference.py --only us_lesion --n-val 300     # quicker

The network, its int8 file and every other sidecar field stay as they are (the sha256
fields stay valid); the reference is fitted the way ``medimg-edge train`` fits it at
export (:func:`medimg_edge.training._drift.fit_drift`): the package diagnoses the raw
frames of the validation generator (the validation seed base and lesion prior in the sidecar's
provenance, sides drawn from ``FRAME_SIZES``, before device processing) and the
histograms of their drift signals are stored. No network access. The package's patch
version is bumped and the provenance records the refit.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def refit(sidecar: Path, n_val: int, bump: bool = True) -> dict[str, object]:
    from medimg_edge.training._drift import generated_frames, reference_from_frames
    from medimg_edge.training._package import record_refit

    meta = json.loads(sidecar.read_text(encoding="utf-8"))
    data = meta["provenance"]["data"]
    t0 = time.perf_counter()
    frames = generated_frames(
        meta["modality"],
        n_val,
        seed=int(data["val_seed"]),
        frame_size=None,  # FRAME_SIZES, as the shipped packages were trained
        lesion_prior=str(data.get("lesion_prior", "conspicuous")),
    )
    obj = reference_from_frames(
        sidecar,
        frames,
        source=(
            f"{n_val} frames of the validation generator (seed base {data['val_seed']}, "
            "one side per frame from FRAME_SIZES), before device processing"
        ),
    )
    meta["drift"] = obj
    record_refit(
        meta,
        "drift_reference",
        command="python scripts/fit_drift_reference.py",
        note="network, int8 file and every other field unchanged; drift fitted afterwards",
        bump=bump,
        n_val=n_val,
    )
    sidecar.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return {
        "name": meta["name"],
        "version": meta["version"],
        "n": obj["n"],
        "signals": len(obj["signals"]),
        "outcomes": dict(zip(obj["outcome"]["labels"], obj["outcome"]["counts"], strict=True)),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=Path, default=REPO_ROOT / "models")
    ap.add_argument("--only", action="append", default=[])
    ap.add_argument("--n-val", type=int, default=1000, help="validation frames (default 1000)")
    ap.add_argument("--no-bump", action="store_true", help="keep the version (a re-run)")
    args = ap.parse_args()
    names = args.only or ["xray_chest_nodule", "us_lesion"]
    for name in names:
        print(json.dumps(refit(args.models / f"{name}.json", args.n_val, not args.no_bump)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
