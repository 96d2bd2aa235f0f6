"""Fitting the out-of-distribution guard of a package at training time.

The guard (:mod:`medimg_edge.runtime._ood`) is a class-conditional Mahalanobis distance on
the model's ``features`` output with one shared covariance (Lee et al. [1]_), estimated
with Ledoit-Wolf shrinkage [2]_ (160 dimensions from a few thousand frames: the sample
covariance alone is poorly conditioned). The features are those of the int8 package run
through ``me.load_model``, i.e. exactly what the runtime computes. The threshold is the
``quantile`` (99 % by default) of the validation frames' distances.

:func:`fit_appearance` fits the second, model-independent signal (``ood.appearance``): the
same distance on the texture descriptor of the model input (:mod:`medimg_edge._appearance`).

References
----------
.. [1] K. Lee, K. Lee, H. Lee, J. Shin, "A simple unified framework for detecting
   out-of-distribution samples and adversarial attacks", NeurIPS 2018.
.. [2] O. Ledoit, M. Wolf, "A well-conditioned estimator for large-dimensional covariance
   matrices", J. Multivariate Analysis 88(2):365-411, 2004.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .._errors import InvalidInputError
from ..runtime._ood import OOD_METHOD, OODGuard, appearance_of, encode_matrix, guard_of

__all__ = [
    "APPEARANCE_QUANTILE",
    "DEFAULT_QUANTILE",
    "appearance_matrix",
    "fit_appearance",
    "fit_ood",
]

#: Validation quantile of the distance the threshold is set at.
DEFAULT_QUANTILE = 0.99
#: The same for the appearance guard (a frame is rejected when either guard fires, so each
#: keeps its own false-rejection budget small).
APPEARANCE_QUANTILE = 0.995


def _shrunk_cholesky(centred: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], float]:
    """Cholesky factor ``L`` (``L L^T`` = the inverse of the Ledoit-Wolf covariance of the
    centred rows) and the shrinkage used."""
    from sklearn.covariance import LedoitWolf

    lw = LedoitWolf(assume_centered=True).fit(centred)
    precision = np.linalg.inv(np.asarray(lw.covariance_, np.float64))
    chol = np.asarray(np.linalg.cholesky(0.5 * (precision + precision.T)), np.float64)
    return chol, float(lw.shrinkage_)


def _set_threshold(
    obj: dict[str, Any],
    guard: OODGuard,
    f: npt.NDArray[np.float64],
    v: npt.NDArray[np.float64],
    quantile: float,
    shrinkage: float,
    estimator: str,
) -> None:
    """Threshold at the ``quantile`` of the validation distances, and the ``fit`` record."""
    d_val = guard.distances(v)
    threshold = float(np.quantile(d_val, quantile))
    obj["threshold"] = round(threshold, 6)
    obj["fit"] = {
        "n_train": int(f.shape[0]),
        "n_val": int(v.shape[0]),
        "shrinkage": round(shrinkage, 6),
        "train_distance_median": round(float(np.median(guard.distances(f))), 4),
        "val_distance_median": round(float(np.median(d_val)), 4),
        "val_rejection": round(float(np.mean(d_val > threshold)), 6),
        "estimator": estimator,
    }


def fit_ood(
    features: npt.ArrayLike,
    y: npt.ArrayLike,
    val_features: npt.ArrayLike,
    labels: Sequence[str],
    *,
    quantile: float = DEFAULT_QUANTILE,
    output: str = "features",
) -> tuple[dict[str, Any], OODGuard]:
    """Fit the guard; return the sidecar's ``ood`` object and the guard it decodes to.

    Parameters
    ----------
    features : (N, D) array
        Features of the training frames (dequantised model output).
    y : (N,) int array
        Class index of each training frame (into ``labels``).
    val_features : (M, D) array
        Features of the validation frames: the threshold is their ``quantile``.
    labels : sequence of str
        The package's labels.
    quantile : float
        In (0, 1).
    output : str
        The output role the runtime reads the features from.
    """
    f = np.asarray(features, np.float64)
    v = np.asarray(val_features, np.float64)
    yy = np.asarray(y, np.int64)
    if f.ndim != 2 or v.ndim != 2 or f.shape[1] != v.shape[1] or yy.shape != (f.shape[0],):
        raise InvalidInputError(
            f"features must be (N, D) with y (N,) and val_features (M, D); got {f.shape}, "
            f"{yy.shape}, {v.shape}"
        )
    if not 0.0 < quantile < 1.0:
        raise InvalidInputError(f"quantile must be in (0, 1), got {quantile!r}")
    k = len(labels)
    present = [c for c in range(k) if np.any(yy == c)]
    if len(present) != k:
        missing = [labels[c] for c in range(k) if c not in present]
        raise InvalidInputError(
            f"the guard needs training frames of every class; none of {missing}"
        )
    means = np.stack([f[yy == c].mean(axis=0) for c in range(k)])
    centred = f - means[yy]
    chol, shrinkage = _shrunk_cholesky(centred)
    obj: dict[str, Any] = {
        "method": OOD_METHOD,
        "version": 1,
        "output": output,
        "dim": int(f.shape[1]),
        "classes": list(labels),
        "means": encode_matrix(means),
        "cholesky": encode_matrix(chol),
        "threshold": 1.0,
        "quantile": float(quantile),
    }
    meta = {"labels": list(labels), "ood": obj}
    guard = guard_of(meta, {output: {}}, "(fitting)")
    assert guard is not None
    _set_threshold(
        obj,
        guard,
        f,
        v,
        quantile,
        shrinkage,
        "class means + shared Ledoit-Wolf covariance (sklearn.covariance)",
    )
    guard = guard_of(meta, {output: {}}, "(fitting)")
    assert guard is not None
    return obj, guard


def appearance_matrix(x: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Appearance descriptors (:func:`medimg_edge._appearance.appearance_features`) of a
    batch of model inputs ``(N, H, W[, 1])``, shape ``(N, D)``."""
    from .._appearance import appearance_features

    arr = np.asarray(x, np.float32)
    work: dict[str, Any] = {}
    return np.stack([appearance_features(a, work=work) for a in arr])


def fit_appearance(
    train_x: npt.ArrayLike, val_x: npt.ArrayLike, *, quantile: float = APPEARANCE_QUANTILE
) -> tuple[dict[str, Any], OODGuard]:
    """Fit the second, model-independent guard on the model inputs of the training and
    validation frames; return the sidecar's ``ood.appearance`` object and its guard.

    One mean and a Ledoit-Wolf covariance of the descriptors of ``train_x``; the threshold
    is the ``quantile`` of the distances of ``val_x``.
    """
    from .._appearance import DESCRIPTOR

    if not 0.0 < quantile < 1.0:
        raise InvalidInputError(f"quantile must be in (0, 1), got {quantile!r}")
    f = appearance_matrix(train_x)
    v = appearance_matrix(val_x)
    if f.shape[0] < 2 or v.shape[0] < 1:
        raise InvalidInputError("the appearance guard needs at least 2 training frames")
    mean = f.mean(axis=0, keepdims=True)
    chol, shrinkage = _shrunk_cholesky(f - mean)
    obj: dict[str, Any] = {
        "method": OOD_METHOD,
        "version": 1,
        "descriptor": DESCRIPTOR,
        "dim": int(f.shape[1]),
        "mean": encode_matrix(mean),
        "cholesky": encode_matrix(chol),
        "threshold": 1.0,
        "quantile": float(quantile),
    }
    guard = appearance_of({"ood": {"appearance": obj}}, "(fitting)")
    assert guard is not None
    _set_threshold(
        obj,
        guard,
        f,
        v,
        quantile,
        shrinkage,
        "mean + Ledoit-Wolf covariance (sklearn.covariance) of the texture descriptor of "
        "the model input (medimg_edge._appearance)",
    )
    guard = appearance_of({"ood": {"appearance": obj}}, "(fitting)")
    assert guard is not None
    return obj, guard
