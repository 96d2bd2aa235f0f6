"""Re-run the out-of-distribution parts of a reference model's evaluation in place.

    python scripts/refresh_ood_report.py                      # both reference models
    python scripts/refresh_ood_report.py --only us_lesion

For a package whose guard changed but whose network did not (e.g. after
``scripts/fit_appearance_guard.py``): the held-out in-distribution distances (the test set
of the original evaluation: same seed base, size and lesion prior, recorded in
``metrics.json``), the OOD suite and the second phantom family are measured again through
the package as shipped, and ``metrics.json``, the report's robustness / second-family / OOD
sections and plots, the sidecar's ``metrics`` and the model card are rewritten. The
robustness matrix's AUC/FPR cells depend only on the network and are kept; its "OOD
rejected" column is the previous guard's (said so in the report). Needs the ``[train]``
extra.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Robustness matrix"


def refresh(models: Path, name: str, n_test: int) -> dict[str, object]:
    from medimg_edge.runtime import load_model
    from medimg_edge.runtime._ood import appearance_of, guard_of
    from medimg_edge.training._data import synth_dataset
    from medimg_edge.training._ood import appearance_matrix
    from medimg_edge.training._reference import REFERENCE_EVAL, _sidecar_metrics
    from medimg_edge.training._report import write_model_card
    from medimg_edge.training._robustness import (
        combined_distance,
        holdout_eval,
        ood_suite,
        write_robustness_report,
    )

    t0 = time.perf_counter()
    sidecar = models / f"{name}.json"
    report = models / "reports" / name
    res = json.loads((report / "metrics.json").read_text(encoding="utf-8"))
    meta = json.loads(sidecar.read_text(encoding="utf-8"))
    modality = meta["modality"]
    model = load_model(sidecar, delegate="cpu")
    pkg = model.package
    guard = guard_of(pkg.meta, pkg.outputs, pkg.sidecar.name)
    app = appearance_of(pkg.meta, pkg.sidecar.name)
    assert guard is not None
    prior = meta["provenance"]["data"].get("lesion_prior", "conspicuous")
    test = synth_dataset(
        modality,
        n_test,
        seed=int(res["seeds"]["test"]),
        size=int(pkg.input.height),
        frame_size=None,
        workers=2,
        chunk=50,
        lesion_prior=prior,
    )
    feats = [model.predict(x)["features"][0] for x in test.x]
    id_dist = guard.distances(feats)
    if app is not None:
        id_dist = combined_distance(
            id_dist, app.distances(appearance_matrix(test.x)), guard.threshold, app
        )
    seed = int(res["seeds"]["test"])
    ood = ood_suite(sidecar, modality, id_distances=id_dist, seed=seed + 500, progress=True)
    hold = holdout_eval(sidecar, modality, n=REFERENCE_EVAL["n_holdout"], progress=True)
    res["ood"], res["holdout"], res["model"] = ood, hold, f"{name} {meta['version']}"
    (report / "metrics.json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    md = write_robustness_report(report, res["robustness"], ood, hold)
    md = md.replace(
        SECTION + "\n",
        SECTION + "\n\n(Refreshed for version "
        f"{meta['version']} by scripts/refresh_ood_report.py: the AUC and FPR cells are "
        "the network's, unchanged; the 'OOD rejected' column is the previous guard's, the "
        "second-family and out-of-distribution sections below are the shipped guard's.)\n",
        1,
    )
    text = (report / "report.md").read_text(encoding="utf-8")
    head = text[: text.index(SECTION)] if SECTION in text else text + "\n"
    (report / "report.md").write_text(head + md, encoding="utf-8")
    meta["metrics"] = _sidecar_metrics(res)
    sidecar.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    summary = {**res["training"], "created": meta["provenance"]["created"]}
    write_model_card(sidecar, res, res["ops"], summary, f"reports/{name}/report.md")
    return {
        "name": name,
        "auroc_all": round(float(ood["auroc_all"]), 4),
        "id_rejection": round(float(ood["id_rejection"]), 4),
        "far_ood_positive": len(ood["far_ood_positive"]),
        "holdout_auc": round(float(hold["auc"]), 3),
        "holdout_ood_rejected": hold.get("ood_rejected"),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=Path, default=REPO_ROOT / "models")
    ap.add_argument("--only", action="append", default=[])
    ap.add_argument("--n-test", type=int, default=1000)
    args = ap.parse_args()
    for name in args.only or ["us_lesion", "xray_chest_nodule"]:
        print(json.dumps(refresh(args.models, name, args.n_test)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
