"""``evaluate``: held-out phantom test sets, classical baseline, stability, report."""

from __future__ import annotations

import json
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .._errors import InvalidInputError
from ._data import Dataset, synth_dataset
from ._metrics import (
    apply_temperature,
    confusion_matrix,
    expected_calibration_error,
    hit_rate,
    positive_score,
    roc_auc,
    sensitivity_specificity,
)
from ._train import SEEDS

__all__ = ["STABILITY_LEVELS", "evaluate", "fit_baseline"]

#: Fixed acquisition levels of the stability sets: X-ray dose (unattenuated quanta per
#: pixel; me.synth draws 2e3 ... 3e4 log-uniformly) and ultrasound SNR (dB).
STABILITY_LEVELS: dict[str, tuple[str, tuple[float, ...]]] = {
    "xray": ("dose", (2000.0, 7750.0, 30000.0)),
    "ultrasound": ("snr_db", (10.0, 20.0, 30.0)),
}

F64 = npt.NDArray[np.float64]


def fit_baseline(train: Dataset) -> Any:
    """Classical baseline: StandardScaler + multinomial LogisticRegression on the 66
    handcrafted features of :func:`medimg_edge.features.extract` (scikit-learn)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if train.features is None:
        raise InvalidInputError("the training set has no features (features=True)")
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    feats = np.nan_to_num(train.features, nan=0.0, posinf=0.0, neginf=0.0)
    clf.fit(feats, train.y)
    return clf


def _scores_summary(
    probs: F64, ds: Dataset, threshold: float | None, temperature: float | None
) -> dict[str, Any]:
    neg = ds.negative_index
    cal = probs if temperature is None else apply_temperature(probs, temperature)
    pos = positive_score(cal, neg)
    out: dict[str, Any] = {
        "n": len(ds),
        "accuracy": float(np.mean(probs.argmax(1) == ds.y)),
        "auc": roc_auc(ds.positive, pos),
        "ece": expected_calibration_error(probs, ds.y),
    }
    if temperature is not None:
        out["ece_calibrated"] = expected_calibration_error(cal, ds.y)
    if threshold is not None:
        sens, spec = sensitivity_specificity(ds.positive, pos, threshold)
        out["sensitivity"], out["specificity"] = sens, spec
    return out


def _latency(
    model: Any, baseline: Any, modality: str, frame_size: int, n: int, seed: int
) -> dict[str, Any]:
    """Single-thread ms/frame on raw phantoms (median of n frames)."""
    from .. import features, synth
    from ..preprocess import to_model_input

    spec = model.package.input
    frames = [s.image for s in synth.generate(modality, n, seed=seed, size=frame_size)]
    x0 = to_model_input(frames[0], spec)
    q = model.quantize_input(x0)
    for _ in range(5):
        model.invoke_raw(q)
    t_inv, t_cnn, t_base = [], [], []
    for f in frames:
        t0 = time.perf_counter()
        model.invoke_raw(q)
        t_inv.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        model.predict(to_model_input(f, spec))
        t_cnn.append(time.perf_counter() - t0)
        if baseline is not None:
            t0 = time.perf_counter()
            vals = features.extract(f)
            v = np.fromiter(vals.values(), np.float64, len(vals))[None]
            baseline.predict_proba(np.nan_to_num(v))
            t_base.append(time.perf_counter() - t0)
    ms = {
        "invoke_ms": 1e3 * float(np.median(t_inv)),
        "cnn_ms": 1e3 * float(np.median(t_cnn)),
        "frame_size": frame_size,
        "n": n,
    }
    if t_base:
        ms["baseline_ms"] = 1e3 * float(np.median(t_base))
    return ms


def evaluate(
    model_path: str | Path,
    modality: str,
    *,
    n_test: int = 2000,
    n_stability: int = 600,
    seed: int = SEEDS["test"],
    frame_size: int | None = None,
    report_dir: str | Path | None = None,
    float_tflite: bytes | None = None,
    baseline_train: Dataset | None = None,
    n_baseline_train: int | None = None,
    workers: int = 2,
    progress: bool = True,
    robustness: bool = True,
    n_robust: int = 300,
    n_size: int = 160,
    n_holdout: int = 400,
    robustness_sizes: tuple[int, ...] = (256, 512, 1024, 2048, 3072),
) -> dict[str, Any]:
    """Evaluate an int8 package on held-out phantoms.

    Generator seed bases: test ``seed`` (default 303), second test ``seed + 101``,
    stability levels ``seed + 202 + k``; a base that the package's recorded training or
    validation set used is refused.

    Metrics: accuracy, ROC AUC of the positive score (lesion present vs absent),
    sensitivity/specificity at the sidecar threshold, confusion matrix, 15-bin ECE before
    and after the sidecar temperature, localisation hit rate, float-vs-int8 label
    agreement (when ``float_tflite`` is given, or ``<report_dir>/<name>_float.tflite``
    exists), AUC per dose / SNR level and on the second test set, and the classical
    baseline (features + logistic regression) trained on ``baseline_train`` (or on the
    package's recorded phantom training set, regenerated, capped at ``n_baseline_train``).

    With ``robustness`` (default): the robustness matrix (every device-processing transform
    at >= 3 strengths, sizes 256-3072, generator settings outside the training ranges; seed
    bases ``seed + 400`` ...), AUC by lesion size and density, the out-of-distribution
    suite (seed ``seed + 500``) and the second phantom family (:mod:`medimg_edge.holdout`);
    see :mod:`medimg_edge.training._robustness`.

    Parameters
    ----------
    model_path : str or Path
        Sidecar ``.json`` (or ``.tflite``) of the int8 package.
    modality : {"xray", "ultrasound"}
        Must match the package.
    n_test, n_stability : int
        Frames of each test set and of each stability level.
    seed : int
        Test seed base (see above).
    frame_size : int, optional
        Side of the generated frames; default: the training frames' side recorded in the
        sidecar, else 256.
    report_dir : str or Path, optional
        Write the report there.
    float_tflite : bytes, optional
        The float model, for the float-vs-int8 label agreement.
    baseline_train : Dataset, optional
        Training set with features for the classical baseline.
    n_baseline_train : int, optional
        Cap on the regenerated baseline training set.
    robustness : bool
        Also run the robustness matrix, the OOD suite and the second phantom family.
    n_robust, n_size, n_holdout : int
        Frames per robustness cell, per size row and of the second phantom family.
    robustness_sizes : tuple of int
        Frame sides of the size rows of the robustness matrix.
    workers : int
        Threads generating phantoms.
    progress : bool
        Progress bars and a summary on stderr.

    Raises
    ------
    InvalidInputError
        Modality or labels differ from the package, or the seed base clashes with the
        training or validation seed base.

    Returns
    -------
    dict
        JSON-serialisable metrics; with ``report_dir`` also ``report.md``, ``metrics.json``
        and PNG plots there.
    """
    from ..runtime import load_model
    from ._network import run_float_tflite

    model = load_model(Path(model_path), delegate="cpu", num_threads=1)
    pkg = model.package
    if modality != pkg.modality:
        raise InvalidInputError(
            f"model {pkg.name} is a {pkg.modality} model, --modality says {modality!r}"
        )
    size = pkg.input.height
    bases = {"test": seed, "test2": seed + 101, "stability": seed + 202}
    data = pkg.meta.get("provenance", {}).get("data")
    used = set()
    if isinstance(data, dict):
        used = {data.get("train_seed"), data.get("val_seed")}
        recorded = data.get("frame_size", 256)
        if frame_size is None and isinstance(recorded, int):
            frame_size = recorded
    # None: sides drawn from FRAME_SIZES in chunks of 50, like the training data.
    fsize = frame_size
    prior = data.get("lesion_prior", "full") if isinstance(data, dict) else "full"
    clash = [
        b
        for b in (
            seed,
            seed + 101,
            seed + 202,
            seed + 203,
            seed + 204,
            *range(seed + 400, seed + 425),
        )
        if b in used
    ]
    if not isinstance(seed, int) or seed < 0 or clash:
        raise InvalidInputError(
            f"test seed base {seed!r} is invalid or makes a test set reuse the training or "
            f"validation seed base {clash}; choose another --seed"
        )

    def gen(n: int, base: int, feats: bool = False, **kw: Any) -> Dataset:
        side = kw.pop("frame_size", fsize)
        return synth_dataset(
            modality,
            n,
            seed=base,
            size=size,
            frame_size=side,
            features=feats,
            workers=workers,
            progress=progress,
            chunk=50 if side is None else 250,
            **{"lesion_prior": prior, **kw},
        )

    test = gen(n_test, bases["test"], True)
    if tuple(test.labels) != tuple(pkg.labels):
        raise InvalidInputError(
            f"model labels {pkg.labels} differ from the phantom labels {test.labels}"
        )
    out = model.predict(test.x)
    probs = out["scores"].astype(np.float64)
    res: dict[str, Any] = {
        "model": pkg.name,
        "modality": modality,
        "labels": list(pkg.labels),
        "threshold": pkg.threshold,
        "temperature": pkg.temperature,
        "bytes": pkg.cpu.bytes,
        "test_source": test.source,
    }
    res["cnn"] = _scores_summary(probs, test, pkg.threshold, pkg.temperature)
    cm = confusion_matrix(test.y, probs.argmax(1), len(pkg.labels))
    res["confusion_matrix"] = cm.tolist()
    pos_mask = test.positive
    res["cnn"]["hit_rate"] = hit_rate(
        out["heatmap"][pos_mask],
        [b for b, p in zip(test.bboxes, pos_mask, strict=True) if p],
        [s for s, p in zip(test.frame_shapes, pos_mask, strict=True) if p],
    )
    cal = apply_temperature(probs, pkg.temperature)
    pos = positive_score(cal, test.negative_index)
    lo, hi = pkg.abstain_band
    res["cnn"]["abstain_fraction"] = float(np.mean((pos >= lo) & (pos <= hi)))
    # float vs int8
    if float_tflite is None and report_dir is not None:
        cand = Path(report_dir) / f"{pkg.name}_float.tflite"
        float_tflite = cand.read_bytes() if cand.is_file() else None
    float_probs = None
    if float_tflite is not None:
        fl = run_float_tflite(float_tflite, test.x)
        float_probs = fl["scores"].astype(np.float64)
        res["float"] = _scores_summary(float_probs, test, None, None)
        res["float_int8_agreement"] = float(np.mean(float_probs.argmax(1) == probs.argmax(1)))
    # stability
    stab: dict[str, Any] = {}
    key, levels = STABILITY_LEVELS[modality]
    for k, level in enumerate(levels):
        ds = gen(n_stability, bases["stability"] + k, False, **{key: level})
        p = model.predict(ds.x)["scores"].astype(np.float64)
        stab[f"{key}={level:g}"] = _scores_summary(p, ds, pkg.threshold, pkg.temperature)
    test2 = gen(n_test, bases["test2"], True)
    p2 = model.predict(test2.x)["scores"].astype(np.float64)
    stab["second_seed_base"] = _scores_summary(p2, test2, pkg.threshold, pkg.temperature)
    if prior != "full":
        # The generator's full lesion range (radius / semi-axes from 1.5 px, faint
        # ground glass and low-contrast masses): harder than the training lesions.
        full = gen(n_stability, bases["stability"] + 3, False, lesion_prior="full")
        pf = model.predict(full.x)["scores"].astype(np.float64)
        stab["full lesion range"] = _scores_summary(pf, full, pkg.threshold, pkg.temperature)
    res["stability"] = stab
    # classical baseline
    baseline = None
    if baseline_train is None:
        if isinstance(data, dict) and data.get("generator") == "medimg_edge.synth":
            n_tr = int(data["n_train"])
            if n_baseline_train is not None:
                n_tr = min(n_tr, n_baseline_train)
            baseline_train = gen(n_tr, int(data["train_seed"]), True)
    if (
        baseline_train is not None
        and baseline_train.features is not None
        and test.features is not None
        and test2.features is not None
    ):
        baseline = fit_baseline(baseline_train)
        bp = baseline.predict_proba(np.nan_to_num(test.features)).astype(np.float64)
        res["baseline"] = _scores_summary(bp, test, None, None)
        bp2 = baseline.predict_proba(np.nan_to_num(test2.features)).astype(np.float64)
        res["baseline"]["auc_second_seed_base"] = roc_auc(
            test2.positive, positive_score(bp2, test2.negative_index)
        )
        res["baseline"]["bytes"] = len(pickle.dumps(baseline))
        res["baseline"]["n_train"] = len(baseline_train)
        res["_baseline_probs"] = bp
    res["seeds"] = bases
    res["latency"] = _latency(model, baseline, modality, fsize or 256, 200, seed)
    extra_md = ""
    if robustness:
        from ..runtime._ood import appearance_of, guard_of
        from ._ood import appearance_matrix
        from ._robustness import combined_distance, holdout_eval, ood_suite, robustness_matrix

        guard = guard_of(pkg.meta, pkg.outputs, pkg.sidecar.name)
        rob = robustness_matrix(
            model,
            modality,
            seed=seed + 400,
            n=n_robust,
            n_size=n_size,
            workers=workers,
            progress=progress,
            lesion_prior=prior,
            sizes=robustness_sizes,
        )
        res["robustness"] = rob
        ood_res: dict[str, Any] | None = None
        if guard is not None and "features" in out:
            id_dist = guard.distances(out["features"])
            app = appearance_of(pkg.meta, pkg.sidecar.name)
            if app is not None:
                id_app = app.distances(appearance_matrix(test.x))
                id_dist = combined_distance(id_dist, id_app, guard.threshold, app)
            ood_res = ood_suite(
                pkg.sidecar, modality, id_distances=id_dist, seed=seed + 500, progress=progress
            )
            res["ood"] = ood_res
        else:
            res["ood"] = {"guard": "absent"}
        hold = holdout_eval(pkg.sidecar, modality, n=n_holdout, progress=progress)
        res["holdout"] = hold
        if report_dir is not None:
            from ._robustness import write_robustness_report

            extra_md = write_robustness_report(Path(report_dir), rob, ood_res, hold)
    if report_dir is not None:
        from ._report import write_report

        write_report(Path(report_dir), res, test, probs, out["heatmap"], extra_md=extra_md)
    res.pop("_baseline_probs", None)
    if progress:
        print(json.dumps(_brief(res), indent=1), file=sys.stderr)
    return res


def _brief(res: dict[str, Any]) -> dict[str, Any]:
    keys = ("auc", "accuracy", "ece", "ece_calibrated", "sensitivity", "specificity")
    return {
        "model": res["model"],
        "cnn": {k: res["cnn"].get(k) for k in keys},
        "baseline_auc": res.get("baseline", {}).get("auc"),
        "agreement": res.get("float_int8_agreement"),
        "latency": res["latency"],
    }
