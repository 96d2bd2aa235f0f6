"""Add the second out-of-distribution signal (``ood.appearance``) to shipped packages.

    python scripts/fit_appearance_guard.py                 # both reference models, in models/
    python scripts/fit_appearance_guard.py --only us_lesion --n 600 --n-val 200   # quicker

The network, its int8 file and every other sidecar field stay as they are; the appearance
guard is fitted the way ``medimg-edge train`` fits it: on frames of the training generator
(the training seed base and lesion prior recorded in the sidecar's provenance, sides drawn
from ``FRAME_SIZES``) with one pass of the training augmentation, threshold at the
``APPEARANCE_QUANTILE`` of the validation frames (the validation seed base, half of them
device-processed). The package's patch version is bumped and the provenance records the
refit. Needs the ``[train]`` extra (scikit-learn).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def refit(sidecar: Path, n: int, n_val: int) -> dict[str, object]:
    from medimg_edge.training._data import augmented_inputs, synth_dataset
    from medimg_edge.training._ood import fit_appearance
    from medimg_edge.training._package import record_refit

    meta = json.loads(sidecar.read_text(encoding="utf-8"))
    data = meta["provenance"]["data"]
    modality, size = meta["modality"], int(meta["input"]["height"])
    common = {"size": size, "frame_size": None, "workers": 2, "chunk": 50}
    prior = data.get("lesion_prior", "conspicuous")
    t0 = time.perf_counter()
    train = synth_dataset(
        modality, n, seed=int(data["train_seed"]), keep_frames=True, lesion_prior=prior, **common
    )
    x, _ = augmented_inputs(train, 999_999, strength=1.0, workers=2)
    val = synth_dataset(
        modality,
        n_val,
        seed=int(data["val_seed"]),
        augment_fraction=float(data.get("val_augment_fraction", 0.5)),
        lesion_prior=prior,
        **common,
    )
    obj, _ = fit_appearance(x, val.x)
    meta["ood"]["appearance"] = obj
    record_refit(
        meta,
        "appearance_guard",
        command="python scripts/fit_appearance_guard.py",
        note="network and int8 file unchanged; ood.appearance fitted afterwards",
        n_train=n,
        n_val=n_val,
    )
    sidecar.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return {
        "name": meta["name"],
        "version": meta["version"],
        "threshold": obj["threshold"],
        "val_rejection": obj["fit"]["val_rejection"],
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=Path, default=REPO_ROOT / "models")
    ap.add_argument("--only", action="append", default=[])
    ap.add_argument("--n", type=int, default=3000, help="training frames (default 3000)")
    ap.add_argument("--n-val", type=int, default=800, help="validation frames (default 800)")
    args = ap.parse_args()
    names = args.only or ["xray_chest_nodule", "us_lesion"]
    for name in names:
        print(json.dumps(refit(args.models / f"{name}.json", args.n, args.n_val)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
