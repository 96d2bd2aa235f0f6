"""Evaluation that would catch a model that only works on its own generator's frames.

Four parts, each written into the model report (:func:`write_robustness_report`):

* **Robustness matrix** (:func:`robustness_matrix`): held-out phantoms passed through each
  device-processing transform of :mod:`medimg_edge.training._augment` at fixed strengths
  (tone curves, windowing, unsharp masking, CLAHE, edge enhancement, noise, blur, geometric
  changes, collimation, burned-in text), rendered at frame sides 256-3072 px, and rendered
  with generator settings outside the training ranges. Per cell: ROC AUC, false-positive
  rate at the shipped threshold, the fraction the OOD guard rejects, and for tone curves
  the median change of the positive score against the untransformed frame.
* **AUC by lesion size and density** from the generator's recorded lesion parameters.
* **Out-of-distribution suite** (:func:`ood_suite`) from data the installed packages ship:
  scikit-image's photographs and micrographs, pydicom's CT / MR / NM (and the other
  modality's) DICOM frames, noise, ramps, blank frames, the other modality's phantoms of
  both phantom families, and nuisance-shifted phantoms (inverted polarity, extreme tone
  curves, heavy noise and blur): AUROC of the guard's distance against the held-out
  in-distribution frames, rejection rate per group, and how many far-OOD inputs the full
  :class:`~medimg_edge.Diagnoser` (quality gate + guard + decision) calls ``positive``.
* **The second phantom family** (:mod:`medimg_edge.holdout`): a simulator written apart
  from ``me.synth`` and never used for training, augmentation design or model selection.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .._errors import InvalidInputError
from ..runtime._ood import appearance_of, guard_of
from ._metrics import apply_temperature, positive_score, roc_auc

__all__ = [
    "GENERATOR_SHIFTS",
    "ROBUSTNESS_SIZES",
    "ood_suite",
    "robustness_matrix",
    "score_frames",
    "write_robustness_report",
]

F64 = npt.NDArray[np.float64]

#: Frame sides of the size rows of the matrix.
ROBUSTNESS_SIZES = (256, 512, 1024, 2048, 3072)
#: Generator settings outside the training ranges (``me.synth`` keyword arguments).
GENERATOR_SHIFTS: dict[str, dict[str, dict[str, Any]]] = {
    "xray": {
        "dose=400 (below range)": {"dose": 400.0},
        "dose=4e5 (above range)": {"dose": 4.0e5},
        "16-bit container": {"bits": 16},
        "10-bit container": {"bits": 10},
    },
    "ultrasound": {
        "snr_db=3 (below range)": {"snr_db": 3.0},
        "snr_db=45 (above range)": {"snr_db": 45.0},
        "linear probe only": {"geometry": "linear"},
        "convex probe only": {"geometry": "convex"},
    },
}


def _progress(progress: bool, text: str) -> None:
    if progress:
        print(text, file=sys.stderr, flush=True)


def score_frames(
    model: Any, frames: Iterable[npt.NDArray[Any]], guard: Any | None
) -> tuple[F64, F64]:
    """Calibrated positive score and guard distance (NaN without a guard) of raw frames,
    preprocessed with :func:`~medimg_edge.preprocess.to_model_input` (the runtime's own step).

    With the second signal (``ood.appearance``) the distance is :func:`combined_distance`:
    above ``guard.threshold`` exactly when the Diagnoser calls the frame out of distribution.
    """
    from .._appearance import appearance_features
    from ..preprocess import to_model_input

    pkg = model.package
    neg = pkg.labels.index(pkg.negative_label)
    app = appearance_of(pkg.meta, pkg.sidecar.name) if guard is not None else None
    work: dict[str, Any] = {}
    pos, dist = [], []
    for f in frames:
        x = to_model_input(f, pkg.input)
        out = model.predict(x)
        p = apply_temperature(out["scores"].astype(np.float64), pkg.temperature)
        pos.append(float(positive_score(p, neg)[0]))
        if guard is not None:
            d = guard.distance(out[guard.output][0])
            a = None if app is None else app.distance(appearance_features(x, work=work))
            dist.append(combined_distance(d, a, guard.threshold, app))
        else:
            dist.append(math.nan)
    return np.asarray(pos), np.asarray(dist)


def combined_distance(d: Any, a: Any, threshold: float, app: Any) -> Any:
    """The guard distance the evaluation reports: the feature distance ``d``, or the
    appearance distance ``a`` scaled to the feature guard's threshold when that is larger
    (``max(d, a * threshold / app.threshold)``), so that one threshold decides what either
    guard rejects. ``d`` and ``a`` may be arrays; ``app`` None (no second signal) or ``a``
    None returns ``d``."""
    if app is None or a is None:
        return d
    return np.maximum(d, np.asarray(a, np.float64) * (threshold / app.threshold))


def _cell(
    pos: F64, dist: F64, y: npt.NDArray[np.bool_], threshold: float, guard: Any
) -> dict[str, Any]:
    neg = ~y
    out: dict[str, Any] = {
        "n": int(y.size),
        "auc": roc_auc(y, pos) if y.any() and neg.any() else math.nan,
        "fpr": float(np.mean(pos[neg] >= threshold)) if neg.any() else math.nan,
        "tpr": float(np.mean(pos[y] >= threshold)) if y.any() else math.nan,
    }
    if guard is not None:
        out["ood_rejected"] = float(np.mean(dist > guard.threshold))
    return out


def _lesion_bins(modality: str, params: list[dict[str, Any]], scale: float) -> dict[str, list[int]]:
    """Indices of positive samples per lesion-size and density/contrast bin (sizes in
    pixels at the model's resolution)."""
    bins: dict[str, list[int]] = {}

    def put(name: str, i: int) -> None:
        bins.setdefault(name, []).append(i)

    for i, p in enumerate(params):
        if modality == "xray":
            nod = p.get("nodule")
            if not nod:
                continue
            r = float(nod["radius_px"]) * scale
            d = float(nod["density"])
            put(
                "radius "
                + ("< 3" if r < 3 else "3-6" if r < 6 else "6-10" if r < 10 else ">= 10")
                + " px",
                i,
            )
            put(
                "density "
                + (
                    "< 0.7"
                    if d < 0.7
                    else "0.7-1.0"
                    if d < 1.0
                    else "1.0-2.0"
                    if d < 2.0
                    else ">= 2.0"
                ),
                i,
            )
        else:
            les = p.get("lesion")
            if not les:
                continue
            a = float(max(les["semi_axes_px"])) * scale
            put(
                "semi-axis "
                + ("< 4" if a < 4 else "4-8" if a < 8 else "8-12" if a < 12 else ">= 12")
                + " px",
                i,
            )
            put("type " + str(les["type"]), i)
    return bins


def robustness_matrix(
    model: Any,
    modality: str,
    *,
    seed: int,
    n: int = 300,
    n_size: int = 160,
    base_size: int | None = None,
    sizes: Sequence[int] = ROBUSTNESS_SIZES,
    strengths: dict[str, Sequence[float]] | None = None,
    workers: int = 2,
    progress: bool = True,
    lesion_prior: str = "full",
) -> dict[str, Any]:
    """Robustness matrix, AUC by lesion size/density, gamma score shifts (see module).

    Parameters
    ----------
    model : Model
        The loaded int8 package.
    modality : {"xray", "ultrasound"}
    seed : int
        Generator seed base of the held-out phantoms (must differ from training and
        validation; the caller checks).
    n : int
        Frames per transform cell (half with a lesion).
    n_size : int
        Frames per size row (sides >= 2048 use half of it: they cost seconds each).
    base_size : int, optional
        Side of the frames the transforms are applied to (default 512 for X-ray, 256 for
        ultrasound).
    sizes : sequence of int
        Frame sides of the size rows.
    strengths : dict, optional
        Transform name -> strengths; default ``_augment.STRENGTHS``.
    workers : int
        Threads generating phantoms.
    progress : bool
        Progress lines on stderr.
    lesion_prior : {"full", "conspicuous"}
        The lesion distribution of the matrix's phantoms (the one the model was trained
        on, so that the cells measure the processing, not the lesions); AUC by lesion size
        and density always uses the full range.
    """
    from concurrent.futures import ThreadPoolExecutor

    from .. import synth
    from . import _augment

    pkg = model.package
    guard = guard_of(pkg.meta, pkg.outputs, pkg.sidecar.name)
    msize = int(pkg.input.height)
    bsize = base_size or (512 if modality == "xray" else 256)
    table = dict(strengths or _augment.STRENGTHS)
    thr = pkg.threshold

    def gen(count: int, base: int, side: int, **kw: Any) -> list[Any]:
        chunks = [min(50, count - k) for k in range(0, count, 50)]
        kw = {"lesion_prior": lesion_prior, **kw}

        def one(c: int) -> list[Any]:
            return list(synth.generate(modality, chunks[c], seed=base * 1000 + c, size=side, **kw))

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            parts = list(pool.map(one, range(len(chunks))))
        return [s for part in parts for s in part]

    _progress(progress, f"robustness: {n} base frames at {bsize} px")
    base = gen(n, seed, bsize)
    y = np.asarray([s.label != pkg.negative_label for s in base])
    frames = [s.image for s in base]
    pos0, dist0 = score_frames(model, frames, guard)
    res: dict[str, Any] = {
        "seed": seed,
        "base_size": bsize,
        "threshold": thr,
        "clean": _cell(pos0, dist0, y, thr, guard),
        "transforms": {},
        "sizes": {},
        "generator": {},
    }
    for name, levels in table.items():
        row: dict[str, Any] = {}
        for level in levels:
            out_frames = []
            for i, f in enumerate(frames):
                rng = np.random.default_rng([seed, i, 7])
                out_frames.append(
                    _augment.apply(
                        name, f, float(level), modality=modality, model_size=msize, rng=rng
                    )
                )
            pos, dist = score_frames(model, out_frames, guard)
            cell = _cell(pos, dist, y, thr, guard)
            cell["median_abs_score_change"] = float(np.median(np.abs(pos - pos0)))
            row[f"{level:g}"] = cell
        res["transforms"][name] = row
        _progress(progress, f"robustness: {name} done")
    for k, side in enumerate(sizes):
        count = n_size if side < 2048 else max(20, n_size // 2)
        samples = gen(count, seed + 1 + k, int(side))
        ys = np.asarray([s.label != pkg.negative_label for s in samples])
        pos, dist = score_frames(model, [s.image for s in samples], guard)
        res["sizes"][str(side)] = _cell(pos, dist, ys, thr, guard)
        _progress(progress, f"robustness: size {side} done")
    for k, (name, kw) in enumerate(GENERATOR_SHIFTS[modality].items()):
        try:
            samples = gen(n_size, seed + 10 + k, bsize, **kw)
        except InvalidInputError as exc:  # an option this generator does not take
            res["generator"][name] = {"error": str(exc)}
            continue
        ys = np.asarray([s.label != pkg.negative_label for s in samples])
        pos, dist = score_frames(model, [s.image for s in samples], guard)
        res["generator"][name] = _cell(pos, dist, ys, thr, guard)
    # AUC by lesion size and density over the generator's full lesion range (positives
    # of one bin against all negatives).
    full = gen(n, seed + 20, bsize, lesion_prior="full")
    yf = np.asarray([s.label != pkg.negative_label for s in full])
    posf, distf = score_frames(model, [s.image for s in full], guard)
    res["full_lesion_range"] = _cell(posf, distf, yf, thr, guard)
    negs = ~yf
    by: dict[str, Any] = {}
    for name, idx in sorted(
        _lesion_bins(modality, [s.params for s in full], msize / bsize).items()
    ):
        sel = negs.copy()
        sel[idx] = True
        by[name] = {
            "n_positive": len(idx),
            "auc": roc_auc(yf[sel], posf[sel]),
            "tpr": float(np.mean(posf[idx] >= thr)),
        }
    res["by_lesion"] = by
    return res


# -- out-of-distribution suite --------------------------------------------------------------


def _skimage_frames() -> dict[str, npt.NDArray[Any]]:
    from skimage import data

    names = (
        "astronaut",
        "brick",
        "camera",
        "chelsea",
        "checkerboard",
        "clock",
        "coffee",
        "coins",
        "colorwheel",
        "grass",
        "gravel",
        "hubble_deep_field",
        "immunohistochemistry",
        "moon",
        "page",
        "text",
        "retina",
        "rocket",
        "cell",
        "shepp_logan_phantom",
    )
    out = {}
    for n in names:
        img = np.asarray(getattr(data, n)())
        if img.ndim == 3:
            img = img[..., :3].mean(axis=2)
        if img.dtype == bool or img.dtype.kind == "f":
            img = np.clip(img.astype(np.float64) * (255.0 if img.max() <= 1.0 else 1.0), 0, 255)
        out[n] = np.asarray(img, np.uint8)
    return out


def _dicom_frames(modalities: Sequence[str]) -> dict[str, npt.NDArray[Any]]:
    """First frames of pydicom's bundled test files of the given Modality values, read with
    the package's own reader (MONOCHROME1 inverted, rescale applied)."""
    import pydicom
    from pydicom.data import get_testdata_files

    from ..io import read_input

    out: dict[str, npt.NDArray[Any]] = {}
    for path in get_testdata_files("*"):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:
            continue
        if getattr(ds, "Modality", None) not in modalities:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                frame = read_input(path).frames[0]
        except Exception:
            continue
        if frame.ndim != 2 or min(frame.shape) < 32:
            continue
        out[f"{ds.Modality}:{Path(path).name}"] = frame
    return out


def _synthetic_frames(seed: int) -> dict[str, npt.NDArray[Any]]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:256, 0:256].astype(np.float64) / 255.0
    return {
        "uniform noise": (rng.random((256, 256)) * 255).astype(np.uint8),
        "gaussian noise": np.clip(rng.normal(128, 40, (256, 256)), 0, 255).astype(np.uint8),
        "horizontal ramp": (xx * 255).astype(np.uint8),
        "radial ramp": (np.hypot(yy - 0.5, xx - 0.5) * 360).clip(0, 255).astype(np.uint8),
        "checkerboard 16px": (((yy * 16).astype(int) + (xx * 16).astype(int)) % 2 * 255).astype(
            np.uint8
        ),
        "blank grey": np.full((256, 256), 128, np.uint8),
        "blank black": np.zeros((256, 256), np.uint8),
    }


def ood_suite(
    sidecar: str | Path,
    modality: str,
    *,
    id_distances: F64,
    seed: int,
    n_phantoms: int = 40,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the OOD suite (see the module docstring) through the guard and the Diagnoser.

    ``id_distances``: the guard's distances of held-out in-distribution frames (the
    negatives of the AUROC). Groups: ``photos`` (scikit-image), ``dicom_other`` (pydicom
    CT/MR/NM/... and the other modality), ``synthetic`` (noise, ramps, blank),
    ``other_modality_phantoms`` (both phantom families), ``nuisance_shifted`` (this
    modality's phantoms, inverted, or under extreme tone curves, noise or blur: near-OOD).
    """
    from .. import holdout, synth
    from ..diagnosis import Diagnoser
    from . import _augment

    diag = Diagnoser(sidecar, modality, delegate="cpu", num_threads=1)
    model = diag.model
    guard = guard_of(model.package.meta, model.package.outputs, model.package.sidecar.name)
    if guard is None:
        return {"guard": "absent"}
    app = appearance_of(model.package.meta, model.package.sidecar.name)
    other = "ultrasound" if modality == "xray" else "xray"
    msize = int(model.package.input.height)
    groups: dict[str, dict[str, npt.NDArray[Any]]] = {
        "photos": _skimage_frames(),
        "dicom_other": _dicom_frames(
            (
                "CT",
                "MR",
                "NM",
                "PT",
                "OT",
                "US" if modality == "xray" else "CR",
                "DX" if modality == "ultrasound" else "XA",
            )
        ),
        "synthetic": _synthetic_frames(seed),
    }
    oth: dict[str, npt.NDArray[Any]] = {}
    for i, s in enumerate(synth.generate(other, n_phantoms // 2, seed=seed * 1000 + 1, size=256)):
        oth[f"synth {other} {i}"] = s.image
    for i, s in enumerate(holdout.generate(other, n_phantoms // 2, seed=seed + 7, size=256)):
        oth[f"holdout {other} {i}"] = s.image
    groups["other_modality_phantoms"] = oth
    near: dict[str, npt.NDArray[Any]] = {}
    base = synth.generate(modality, n_phantoms, seed=seed * 1000 + 2, size=256)
    shifts: list[
        tuple[str, Callable[[npt.NDArray[Any], np.random.Generator], npt.NDArray[Any]]]
    ] = [
        (
            "inverted",
            lambda f, r: (np.iinfo(f.dtype).max - f).astype(f.dtype) if f.dtype.kind == "u" else -f,
        ),
        (
            "gamma 4",
            lambda f, r: _augment.apply(
                "gamma", f, 4.0, modality=modality, model_size=msize, rng=r
            ),
        ),
        (
            "gamma 0.2",
            lambda f, r: _augment.apply(
                "gamma", f, 0.2, modality=modality, model_size=msize, rng=r
            ),
        ),
        (
            "noise 0.15",
            lambda f, r: _augment.apply(
                "noise", f, 0.15, modality=modality, model_size=msize, rng=r
            ),
        ),
        (
            "blur 5 px",
            lambda f, r: _augment.apply("blur", f, 5.0, modality=modality, model_size=msize, rng=r),
        ),
    ]
    for i, s in enumerate(base):
        name, fn = shifts[i % len(shifts)]
        near[f"{name} {i}"] = fn(s.image, np.random.default_rng([seed, i]))
    groups["nuisance_shifted"] = near
    far = ("photos", "dicom_other", "synthetic", "other_modality_phantoms")
    res: dict[str, Any] = {
        "guard": "mahalanobis",
        "threshold": guard.threshold,
        "appearance": None if app is None else {"threshold": app.threshold},
        "groups": {},
    }
    all_ood: list[float] = []
    far_positive: list[str] = []
    for gname, frames in groups.items():
        dists, statuses, reasons = [], [], []
        for name, frame in frames.items():
            r = diag.diagnose(frame)
            statuses.append(r.status)
            reasons.append(r.reasons[0] if r.reasons else "")
            d = r.ood.get("distance")
            if d is None:  # refused by the quality gate: the guard distance of the frame
                d = score_frames(model, [frame], guard)[1][0]
            else:
                a = r.ood.get("appearance", {}).get("distance")
                d = combined_distance(d, a, guard.threshold, app)
            dists.append(float(d))
            if gname in far and r.status == "positive":
                far_positive.append(f"{gname}/{name}")
        dd = np.asarray(dists)
        all_ood.extend(dists)
        lab = np.r_[np.zeros(id_distances.size, bool), np.ones(dd.size, bool)]
        res["groups"][gname] = {
            "n": int(dd.size),
            "auroc": roc_auc(lab, np.r_[id_distances, dd]) if dd.size else math.nan,
            "rejected_by_guard": float(np.mean(dd > guard.threshold)) if dd.size else math.nan,
            "status_counts": {
                s: statuses.count(s) for s in ("positive", "negative", "indeterminate")
            },
            "refused_by_quality": int(sum(1 for r in reasons if r.startswith("quality:"))),
            "distances": [round(v, 3) for v in dists],
            "names": list(frames),
        }
        _progress(progress, f"ood suite: {gname} done")
    lab = np.r_[np.zeros(id_distances.size, bool), np.ones(len(all_ood), bool)]
    res["auroc_all"] = roc_auc(lab, np.r_[id_distances, np.asarray(all_ood)])
    res["id_rejection"] = float(np.mean(id_distances > guard.threshold))
    res["far_ood_positive"] = far_positive
    res["id_distances"] = [round(float(v), 3) for v in id_distances]
    return res


# -- report ---------------------------------------------------------------------------------


def _fmt(v: Any, d: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.{d}f}" if isinstance(v, float) else str(v)


def _matrix_rows(rob: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    rows: list[tuple[str, str, dict[str, Any]]] = [("clean", "-", rob["clean"])]
    if "full_lesion_range" in rob:
        rows.append(("full lesion range", "-", rob["full_lesion_range"]))
    for name, row in rob["transforms"].items():
        rows += [(name, level, cell) for level, cell in row.items()]
    rows += [("size", side, cell) for side, cell in rob["sizes"].items()]
    rows += [("generator", name, cell) for name, cell in rob["generator"].items() if "auc" in cell]
    return rows


def robustness_markdown(
    rob: dict[str, Any], ood: dict[str, Any] | None, hold: dict[str, Any] | None
) -> str:
    """The report sections (Markdown)."""
    lines = [
        "## Robustness matrix",
        "",
        f"Held-out phantoms (generator seed base {rob['seed']}, {rob['clean']['n']} frames at "
        f"{rob['base_size']} px, half with a lesion) under each transform; size rows are rendered "
        f"at that side; generator rows use settings outside the training ranges. FPR and TPR at "
        f"the shipped threshold {rob['threshold']:.3f}; 'OOD' = fraction the guard rejects; "
        "'score change' = median |change of the positive score| against the untransformed "
        "frame.",
        "",
        "| transform | strength | n | AUC | FPR | TPR | OOD | score change |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, level, c in _matrix_rows(rob):
        lines.append(
            f"| {name} | {level} | {c['n']} | {_fmt(c['auc'])} | {_fmt(c['fpr'])} "
            f"| {_fmt(c['tpr'])} | {_fmt(c.get('ood_rejected'))} "
            f"| {_fmt(c.get('median_abs_score_change'))} |"
        )
    lines += [
        "",
        "AUC by lesion size (at the model's resolution) and density / type (positives of "
        "the bin against all negatives of the clean set):",
        "",
        "| bin | positives | AUC | TPR at threshold |",
        "|---|---|---|---|",
    ]
    for name, b in rob["by_lesion"].items():
        lines.append(f"| {name} | {b['n_positive']} | {_fmt(b['auc'])} | {_fmt(b['tpr'])} |")
    if hold is not None:
        lines += [
            "",
            "## Second phantom family (never used for training, augmentation or model selection)",
            "",
            f"{hold['source']}: n = {hold['n']}, AUC **{_fmt(hold['auc'])}**, "
            f"FPR {_fmt(hold['fpr'])}, TPR {_fmt(hold['tpr'])} at the shipped threshold, "
            f"OOD guard rejects {_fmt(hold.get('ood_rejected'))}; "
            f"through the Diagnoser: {hold.get('status_counts')}.",
        ]
    if ood is not None and ood.get("guard") == "mahalanobis":
        lines += [
            "",
            "## Out-of-distribution suite",
            "",
            f"Guard threshold {ood['threshold']:.3f} (99th percentile of the validation "
            "distances)"
            + (
                f"; second, model-independent signal on the input's texture descriptor "
                f"(threshold {ood['appearance']['threshold']:.3f}, 99.5th percentile): the "
                "distance below is the feature distance, or the appearance distance scaled "
                "to the same threshold when larger"
                if ood.get("appearance")
                else ""
            )
            + ". In-distribution rejection on the held-out clean frames: "
            f"**{_fmt(ood['id_rejection'])}**; AUROC of the distance, all OOD groups vs "
            f"in-distribution: **{_fmt(ood['auroc_all'], 4)}**. "
            f"Far-OOD inputs diagnosed positive: **{len(ood['far_ood_positive'])}**"
            + (f" ({', '.join(ood['far_ood_positive'][:10])})" if ood["far_ood_positive"] else "")
            + ".",
            "",
            "| group | n | AUROC | rejected by guard | refused by quality gate "
            "| positive / negative / indeterminate |",
            "|---|---|---|---|---|---|",
        ]
        for g, r in ood["groups"].items():
            sc = r["status_counts"]
            lines.append(
                f"| {g} | {r['n']} | {_fmt(r['auroc'], 4)} | {_fmt(r['rejected_by_guard'])} | "
                f"{r['refused_by_quality']} | "
                f"{sc['positive']} / {sc['negative']} / {sc['indeterminate']} |"
            )
    return "\n".join(lines) + "\n"


def write_robustness_report(
    out: Path, rob: dict[str, Any], ood: dict[str, Any] | None, hold: dict[str, Any] | None
) -> str:
    """Plots (``robustness.png``: the matrix as a heatmap; ``ood_distances.png``: distance
    histograms) in ``out``; returns the Markdown sections."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _matrix_rows(rob)
    labels = [f"{n} {lv}" for n, lv, _ in rows]
    vals = np.array(
        [[c["auc"], c["fpr"], c.get("ood_rejected", math.nan)] for _, _, c in rows], float
    )
    fig, ax = plt.subplots(figsize=(6.5, 0.26 * len(rows) + 1.5))
    im = ax.imshow(vals, aspect="auto", cmap="RdYlGn", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(3), ["AUC", "FPR @ thr", "OOD rejected"])
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    for i in range(vals.shape[0]):
        for j in range(3):
            if not math.isnan(vals[i, j]):
                ax.text(j, i, f"{vals[i, j]:.2f}", ha="center", va="center", fontsize=6)
    ax.set_title("Robustness matrix (held-out phantoms)")
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    fig.savefig(out / "robustness.png", dpi=110)
    plt.close(fig)
    if ood is not None and ood.get("guard") == "mahalanobis":
        fig, ax = plt.subplots(figsize=(7, 4))
        allv = [np.asarray(ood["id_distances"])] + [
            np.asarray(g["distances"]) for g in ood["groups"].values()
        ]
        hi = max(float(np.max(v)) for v in allv if v.size) * 1.05
        lo = max(0.5, min(float(np.min(v)) for v in allv if v.size))
        bins = [float(b) for b in np.geomspace(lo, hi, 50)]
        ax.hist(allv[0], bins=bins, alpha=0.6, label="in-distribution (held-out)", density=True)
        for name, g in ood["groups"].items():
            if g["distances"]:
                ax.hist(
                    g["distances"], bins=bins, histtype="step", lw=1.5, label=name, density=True
                )
        ax.axvline(ood["threshold"], color="k", ls="--", label="threshold")
        ax.set_xscale("log")
        ax.set_xlabel(
            "guard distance (model features; appearance scaled to the same threshold)"
            if ood.get("appearance")
            else "Mahalanobis distance of the model features"
        )
        ax.set_ylabel("density")
        ax.legend(fontsize=7)
        ax.set_title("Out-of-distribution guard")
        fig.tight_layout()
        fig.savefig(out / "ood_distances.png", dpi=110)
        plt.close(fig)
    md = robustness_markdown(rob, ood, hold)
    md += "\n![robustness matrix](robustness.png)\n"
    if ood is not None and ood.get("guard") == "mahalanobis":
        md += "\n![OOD distances](ood_distances.png)\n"
    return md


def holdout_eval(
    sidecar: str | Path,
    modality: str,
    *,
    n: int = 400,
    seed: int = 9001,
    size: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """AUC and decisions on the second phantom family (:mod:`medimg_edge.holdout`): model
    scores at the shipped threshold, guard rejection, and the Diagnoser's statuses."""
    from .. import holdout
    from ..diagnosis import Diagnoser

    diag = Diagnoser(sidecar, modality, delegate="cpu", num_threads=1)
    model = diag.model
    guard = guard_of(model.package.meta, model.package.outputs, model.package.sidecar.name)
    from concurrent.futures import ThreadPoolExecutor

    side = size or (512 if modality == "xray" else 256)
    # Four parts of n/4 (seeds seed .. seed + 3) rendered on two threads.
    counts = [n // 4 + (1 if k < n % 4 else 0) for k in range(4)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        parts = list(
            pool.map(
                lambda k: holdout.generate(modality, counts[k], seed=seed + k, size=side),
                range(4),
            )
        )
    samples = [s for part in parts for s in part]
    y = np.asarray([s.label != model.package.negative_label for s in samples])
    frames = [s.image for s in samples]
    pos, dist = score_frames(model, frames, guard)
    res = _cell(pos, dist, y, model.package.threshold, guard)
    statuses = [diag.diagnose(f).status for f in frames]
    res["status_counts"] = {s: statuses.count(s) for s in ("positive", "negative", "indeterminate")}
    res["source"] = (
        f"medimg_edge.holdout.generate('{modality}', n/4, seed={seed}+k, size={side}) for "
        f"k = 0..3 ({n} frames)"
    )
    _progress(progress, f"holdout family: AUC {res['auc']:.3f}")
    return res
