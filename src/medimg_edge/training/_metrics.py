"""Evaluation metrics in NumPy (no TensorFlow): ROC AUC, calibration, thresholds, localisation.

References
----------
.. [1] C. Guo, G. Pleiss, Y. Sun, K. Q. Weinberger, "On calibration of modern neural
   networks", ICML 2017 (temperature scaling, reliability diagrams).
.. [2] M. P. Naeini, G. F. Cooper, M. Hauskrecht, "Obtaining well calibrated probabilities
   using Bayesian binning", AAAI 2015 (expected calibration error).
.. [3] W. J. Youden, "Index for rating diagnostic tests", Cancer 3(1), 1950.
.. [4] J. A. Hanley, B. J. McNeil, "The meaning and use of the area under a receiver
   operating characteristic (ROC) curve", Radiology 143(1), 1982.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .._errors import InvalidInputError

__all__ = [
    "PROB_FLOOR",
    "apply_temperature",
    "confusion_matrix",
    "expected_calibration_error",
    "fit_temperature",
    "hit_rate",
    "log_probs",
    "positive_score",
    "reliability_bins",
    "roc_auc",
    "sensitivity_specificity",
    "youden_threshold",
]

F64 = npt.NDArray[np.float64]

#: Probabilities are floored here before the log (an int8 softmax emits exact zeros; the
#: floor is half of its quantisation step 1/256).
PROB_FLOOR = 1.0 / 512.0


def _labels(y: Any, n: int | None = None, name: str = "labels") -> npt.NDArray[np.int64]:
    arr = np.asarray(y)
    if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "iub":
        raise InvalidInputError(f"{name} must be a non-empty 1-D integer array, got {arr.shape}")
    out = arr.astype(np.int64)
    if n is not None and (out.min() < 0 or out.max() >= n):
        raise InvalidInputError(f"{name} must be class indices in [0, {n}), got {out.min()}..")
    return out


def _probs(p: Any) -> F64:
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] < 2:
        raise InvalidInputError(f"probabilities must be (N, n_classes>=2), got {arr.shape}")
    if not np.all(np.isfinite(arr)) or arr.min() < 0.0:
        raise InvalidInputError("probabilities must be finite and non-negative")
    return arr


def roc_auc(y_true: Any, score: Any) -> float:
    """Area under the ROC curve of a binary score (Mann-Whitney U with tied ranks [4]_).

    Parameters
    ----------
    y_true : array_like of {0, 1} or bool, shape (N,)
        1 = positive (lesion present).
    score : array_like of float, shape (N,)
        Higher = more likely positive.

    Returns
    -------
    float
        P(score of a random positive > that of a random negative) + 0.5 P(tie); NaN if
        one class is missing.
    """
    y = _labels(y_true, 2, "y_true").astype(bool)
    s = np.asarray(score, dtype=np.float64)
    if s.shape != y.shape:
        raise InvalidInputError(f"score has shape {s.shape}, y_true {y.shape}")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size, np.float64)
    sorted_s = s[order]
    # Average ranks over ties.
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def positive_score(probs: Any, negative_index: int) -> F64:
    """``1 - P(negative class)`` for each row: the lesion-present score."""
    p = _probs(probs)
    out: F64 = 1.0 - p[:, negative_index]
    return out


def log_probs(probs: Any) -> F64:
    """``log(max(p, PROB_FLOOR))``: the 'logits' a probability output is calibrated on."""
    out: F64 = np.log(np.maximum(_probs(probs), PROB_FLOOR))
    return out


def apply_temperature(probs: Any, temperature: float) -> F64:
    """Temperature-scaled probabilities ``softmax(log p / T)`` (Guo et al. [1]_)."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise InvalidInputError(f"temperature must be finite and > 0, got {temperature}")
    z = log_probs(probs) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: F64 = e / e.sum(axis=1, keepdims=True)
    return out


def _nll(logits: F64, y: npt.NDArray[np.int64], beta: float) -> float:
    z = logits * beta
    z = z - z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(lse - z[np.arange(y.size), y]))


def fit_temperature(
    probs: Any, y_true: Any, *, bounds: tuple[float, float] = (0.05, 20.0)
) -> float:
    """The temperature ``T`` minimising the negative log-likelihood of
    ``softmax(log p / T)`` on a validation set (Guo et al. [1]_).

    The NLL is convex in ``1 / T`` (a log-sum-exp of linear functions), so a golden-section
    search over ``1 / T`` finds the optimum inside ``bounds``.

    Parameters
    ----------
    probs : array_like, shape (N, n_classes)
        Uncalibrated probabilities (e.g. the int8 model's dequantised softmax).
    y_true : array_like of int, shape (N,)
        True class indices.
    bounds : (float, float)
        Search range of ``T``.

    Returns
    -------
    float
        The fitted temperature (> 1 softens over-confident scores).
    """
    p = _probs(probs)
    y = _labels(y_true, p.shape[1], "y_true")
    if y.size != p.shape[0]:
        raise InvalidInputError(f"{y.size} labels for {p.shape[0]} rows of probabilities")
    logits = log_probs(p)
    lo, hi = 1.0 / bounds[1], 1.0 / bounds[0]
    g = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = lo, hi
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = _nll(logits, y, c), _nll(logits, y, d)
    for _ in range(100):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = _nll(logits, y, c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = _nll(logits, y, d)
        if b - a < 1e-6:
            break
    return float(1.0 / ((a + b) / 2.0))


def reliability_bins(probs: Any, y_true: Any, n_bins: int = 15) -> dict[str, F64]:
    """Top-label reliability statistics in ``n_bins`` equal-width confidence bins.

    Returns
    -------
    dict
        ``count``, ``confidence`` (mean top probability), ``accuracy`` per bin (NaN when
        empty) and ``edges`` (``n_bins + 1``). Bins are ``(lo, hi]``, the first ``[0, hi]``.
    """
    p = _probs(probs)
    y = _labels(y_true, p.shape[1], "y_true")
    if y.size != p.shape[0]:
        raise InvalidInputError(f"{y.size} labels for {p.shape[0]} rows of probabilities")
    conf = p.max(axis=1) / p.sum(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(idx, weights=conf, minlength=n_bins) / count
        acc = np.bincount(idx, weights=correct, minlength=n_bins) / count
    return {"count": count, "confidence": mean_conf, "accuracy": acc, "edges": edges}


def expected_calibration_error(probs: Any, y_true: Any, n_bins: int = 15) -> float:
    """Expected calibration error (Naeini et al. [2]_; top-label form of Guo et al. [1]_).

    ``sum_b (n_b / N) |accuracy_b - confidence_b|`` over ``n_bins`` equal-width bins of the
    top probability.
    """
    r = reliability_bins(probs, y_true, n_bins)
    n = r["count"].sum()
    used = r["count"] > 0
    gap = np.abs(r["accuracy"][used] - r["confidence"][used])
    return float(np.sum(r["count"][used] / n * gap))


def youden_threshold(y_true: Any, score: Any) -> float:
    """Threshold on a binary score maximising Youden's J = sensitivity + specificity - 1 [3]_.

    Positive means ``score >= threshold``. Candidates are midpoints between consecutive
    distinct scores; when several maximise J the middle one of the maximising run is taken
    (the widest margin on a separable validation set).
    """
    y = _labels(y_true, 2, "y_true").astype(bool)
    s = np.asarray(score, dtype=np.float64)
    if s.shape != y.shape or not y.any() or y.all():
        raise InvalidInputError("youden_threshold needs both classes and one score per label")
    u = np.unique(s)
    cand = np.concatenate([[u[0] - 1e-9], (u[:-1] + u[1:]) / 2.0, [u[-1] + 1e-9]])
    sens = np.array([(s[y] >= t).mean() for t in cand])
    spec = np.array([(s[~y] < t).mean() for t in cand])
    j = sens + spec - 1.0
    best = np.flatnonzero(j >= j.max() - 1e-12)
    return float(np.clip(cand[best[len(best) // 2]], 0.0, 1.0))


def sensitivity_specificity(y_true: Any, score: Any, threshold: float) -> tuple[float, float]:
    """Sensitivity and specificity of ``score >= threshold`` (NaN when a class is absent)."""
    y = _labels(y_true, 2, "y_true").astype(bool)
    pred = np.asarray(score, dtype=np.float64) >= threshold
    sens = float(pred[y].mean()) if y.any() else float("nan")
    spec = float((~pred[~y]).mean()) if (~y).any() else float("nan")
    return sens, spec


def confusion_matrix(y_true: Any, y_pred: Any, n_classes: int) -> npt.NDArray[np.int64]:
    """``C[i, j]`` = number of samples of true class ``i`` predicted as ``j``."""
    t = _labels(y_true, n_classes, "y_true")
    p = _labels(y_pred, n_classes, "y_pred")
    if t.shape != p.shape:
        raise InvalidInputError(f"y_true {t.shape} and y_pred {p.shape} differ in length")
    out: npt.NDArray[np.int64] = np.bincount(
        t * n_classes + p, minlength=n_classes * n_classes
    ).reshape(n_classes, n_classes)
    return out


def hit_rate(
    heatmaps: Any,
    bboxes: Sequence[tuple[int, int, int, int] | None],
    frame_shapes: Sequence[tuple[int, int]],
) -> float:
    """Fraction of lesions whose heatmap maximum falls inside the lesion's bounding box
    dilated by one heatmap cell.

    The argmax cell ``(i, j)`` of an ``(h, w)`` heatmap covers the frame rows
    ``[i H/h, (i+1) H/h)``; it is a hit when its centre ``((i + 0.5) H/h, (j + 0.5) W/w)``
    lies in ``[y0 - H/h, y1 + H/h) x [x0 - W/w, x1 + W/w)`` (``bbox = (y0, x0, y1, x1)``
    in frame pixels, exclusive ends). Samples whose bbox is None are skipped.

    Returns
    -------
    float
        The hit rate; NaN when no sample has a bbox.
    """
    hm = np.asarray(heatmaps, dtype=np.float64)
    if hm.ndim != 3 or hm.shape[0] != len(bboxes) or len(frame_shapes) != len(bboxes):
        raise InvalidInputError(
            f"heatmaps must be (N, h, w) with one bbox and frame shape per map, got "
            f"{hm.shape}, {len(bboxes)} bboxes, {len(frame_shapes)} shapes"
        )
    h, w = hm.shape[1:]
    hits, total = 0, 0
    for k, box in enumerate(bboxes):
        if box is None:
            continue
        total += 1
        fh, fw = frame_shapes[k]
        ch, cw = fh / h, fw / w
        i, j = np.unravel_index(int(np.argmax(hm[k])), (h, w))
        cy, cx = (i + 0.5) * ch, (j + 0.5) * cw
        y0, x0, y1, x1 = box
        hits += int(y0 - ch <= cy < y1 + ch and x0 - cw <= cx < x1 + cw)
    return hits / total if total else float("nan")
