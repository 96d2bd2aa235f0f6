"""Fitting the out-of-distribution guard of a package at training time.

The guard (:mod:`medimg_edge.runtime._ood`) is a class-conditional Mahalanobis distance on
the model's ``features`` output with one shared covariance (Lee et al. [1]_), estimated
with Ledoit-Wolf shrinkage [2]_ (160 dimensions from a few thousand frames: the sample
covariance alone is poorly conditioned). The features are those of the int8 package run
through ``me.load_model``, i.e. exactly what the runtime computes. The threshold is the
``quantile`` (99 % by default) of the validation frames' distances.

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
from ..runtime._ood import OOD_METHOD, OODGuard, encode_matrix, guard_of

__all__ = ["DEFAULT_QUANTILE", "fit_ood"]

#: Validation quantile of the distance the threshold is set at.
DEFAULT_QUANTILE = 0.99


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
    from sklearn.covariance import LedoitWolf

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
    lw = LedoitWolf(assume_centered=True).fit(centred)
    cov = np.asarray(lw.covariance_, np.float64)
    precision = np.linalg.inv(cov)
    precision = 0.5 * (precision + precision.T)
    chol = np.linalg.cholesky(precision)
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
    d_val = guard.distances(v)
    d_train = guard.distances(f)
    threshold = float(np.quantile(d_val, quantile))
    obj["threshold"] = round(threshold, 6)
    obj["fit"] = {
        "n_train": int(f.shape[0]),
        "n_val": int(v.shape[0]),
        "shrinkage": round(float(lw.shrinkage_), 6),
        "train_distance_median": round(float(np.median(d_train)), 4),
        "val_distance_median": round(float(np.median(d_val)), 4),
        "val_rejection": round(float(np.mean(d_val > threshold)), 6),
        "estimator": "class means + shared Ledoit-Wolf covariance (sklearn.covariance)",
    }
    guard = guard_of(meta, {output: {}}, "(fitting)")
    assert guard is not None
    return obj, guard
