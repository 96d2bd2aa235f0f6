"""The out-of-distribution (applicability) guard of a model package.

A model answers only for frames like those it was trained on. The guard measures how far
a frame's pooled penultimate features (the model's ``features`` output, so the guard works
on the Edge TPU path too: it is computed from the model's own outputs) lie from the
training frames: the class-conditional Mahalanobis distance with one shared, shrunk
covariance (Lee et al. [1]_; Ledoit-Wolf shrinkage [2]_)::

    d(f) = min_c sqrt((f - mu_c)^T S^-1 (f - mu_c))

``S^-1 = L L^T`` is stored as its Cholesky factor ``L``, so ``d(f)^2 = ||(f - mu_c) L||^2``
costs one small matrix-vector product. A frame is out of distribution when ``d`` exceeds
the threshold fitted at training time (a high quantile, 99 % by default, of the distances of
the validation frames, which carry the same augmentation as the training frames).

The sidecar's ``ood`` object (schema ``model-package.v1``, optional)::

    {"method": "mahalanobis", "version": 1, "output": "features", "dim": 160,
     "classes": [...labels...], "means": "<base64 float32 (n_classes, dim)>",
     "cholesky": "<base64 float32 (dim, dim)>", "threshold": 12.3, "quantile": 0.99,
     "fit": {...how it was fitted...},
     "appearance": {"method": "mahalanobis", "version": 1, "descriptor": "extract-u8-64-v1",
                    "dim": 66, "mean": "<base64 float32 (1, dim)>",
                    "cholesky": "<base64 float32 (dim, dim)>", "threshold": 9.1,
                    "quantile": 0.995, "fit": {...}}}

``appearance`` (optional) is a second, model-independent signal: the Mahalanobis distance
of the model input's handcrafted texture descriptor (:mod:`medimg_edge._appearance`) from
the training frames' (one mean, Ledoit-Wolf covariance). A frame is out of distribution
when either distance exceeds its threshold.

Max-softmax probability and energy scores are deliberately not used: on this package's
models they did not separate photographs, CT/MR frames or the other modality from the
training frames (AUROC 0.0-0.45), the feature distance did.

References
----------
.. [1] K. Lee, K. Lee, H. Lee, J. Shin, "A simple unified framework for detecting
   out-of-distribution samples and adversarial attacks", NeurIPS 2018.
.. [2] O. Ledoit, M. Wolf, "A well-conditioned estimator for large-dimensional covariance
   matrices", J. Multivariate Analysis 88(2):365-411, 2004.
"""

from __future__ import annotations

import base64
import dataclasses
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from .._errors import ModelError

__all__ = [
    "OOD_METHOD",
    "OODGuard",
    "appearance_of",
    "decode_matrix",
    "encode_matrix",
    "guard_of",
]

OOD_METHOD = "mahalanobis"
F32 = npt.NDArray[np.float32]


def encode_matrix(a: npt.ArrayLike) -> str:
    """Base64 of a float32 little-endian C-order array (the sidecar's matrix encoding)."""
    arr = np.ascontiguousarray(np.asarray(a, dtype="<f4"))
    return base64.b64encode(arr.tobytes()).decode("ascii")


def decode_matrix(text: str, shape: tuple[int, ...], *, field: str = "ood") -> F32:
    """Inverse of :func:`encode_matrix`; raises :class:`ModelError` on a size mismatch."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as exc:
        raise ModelError(f"field '{field}': not valid base64 ({exc})") from None
    want = int(np.prod(shape)) * 4
    if len(raw) != want:
        raise ModelError(
            f"field '{field}': {len(raw)} bytes, expected {want} for a float32 array of "
            f"shape {shape}"
        )
    out = np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)
    if not np.all(np.isfinite(out)):
        raise ModelError(f"field '{field}': contains NaN or Inf")
    return out


@dataclasses.dataclass(frozen=True)
class OODGuard:
    """A fitted guard (see the module docstring).

    Attributes
    ----------
    output : str
        The model output role holding the features (``"features"``).
    cholesky : ndarray (dim, dim)
        ``L`` with ``L L^T`` the inverse shared covariance.
    means_w : ndarray (n_classes, dim)
        Class means multiplied by ``L`` (``mu_c L``).
    threshold : float
        Distances above it are out of distribution.
    quantile : float
        The validation quantile the threshold was set at.
    """

    output: str
    cholesky: F32
    means_w: F32
    threshold: float
    quantile: float

    @property
    def dim(self) -> int:
        return int(self.cholesky.shape[0])

    def distance(self, features: npt.ArrayLike) -> float:
        """Distance of one feature vector (dequantised, shape ``(dim,)``)."""
        f = np.asarray(features, dtype=np.float32).reshape(-1)
        if f.size != self.dim:
            raise ModelError(f"OOD guard expects {self.dim} features, the model gave {f.size}")
        z = f @ self.cholesky
        diff = self.means_w - z[None, :]
        d2 = float(np.min(np.einsum("ij,ij->i", diff, diff)))
        return math.sqrt(max(d2, 0.0))

    def distances(self, features: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Distances of a batch ``(N, dim)``."""
        f = np.asarray(features, dtype=np.float64).reshape(-1, self.dim)
        z = f @ self.cholesky.astype(np.float64)
        m = self.means_w.astype(np.float64)
        d2 = (np.sum(z * z, axis=1)[:, None] - 2.0 * z @ m.T + np.sum(m * m, axis=1)[None, :]).min(
            axis=1
        )
        out: npt.NDArray[np.float64] = np.sqrt(np.maximum(d2, 0.0))
        return out


def _check_version(obj: dict[str, Any], where: str) -> None:
    if obj.get("method") != OOD_METHOD or obj.get("version") != 1:
        raise ModelError(
            f"{where}.method': {obj.get('method')!r} version {obj.get('version')!r} is not "
            f"supported (this medimg-edge knows {OOD_METHOD!r} version 1); upgrade medimg-edge"
        )


def _threshold(obj: dict[str, Any], where: str) -> float:
    threshold = float(obj["threshold"])
    if not (math.isfinite(threshold) and threshold > 0.0):
        raise ModelError(f"{where}.threshold': must be a positive number, got {threshold!r}")
    return threshold


def guard_of(meta: dict[str, Any], outputs: dict[str, Any], sidecar_name: str) -> OODGuard | None:
    """The :class:`OODGuard` of a validated sidecar (``None`` when it has no ``ood``).

    Raises
    ------
    ModelError
        When the ``ood`` object does not fit the package (unknown method, an output the
        package does not declare, matrices of the wrong size).
    """
    ood = meta.get("ood")
    if ood is None:
        return None
    where = f"model sidecar {sidecar_name}: field 'ood"
    _check_version(ood, where)
    if ood["output"] not in outputs:
        raise ModelError(
            f"{where}.output': {ood['output']!r} is not one of the package's outputs "
            f"({', '.join(sorted(outputs))})"
        )
    dim = int(ood["dim"])
    n_classes = len(ood["classes"])
    if list(ood["classes"]) != list(meta["labels"]):
        raise ModelError(f"{where}.classes': must equal the package's labels")
    chol = decode_matrix(ood["cholesky"], (dim, dim), field="ood.cholesky")
    means = decode_matrix(ood["means"], (n_classes, dim), field="ood.means")
    threshold = _threshold(ood, where)
    return OODGuard(
        output=str(ood["output"]),
        cholesky=chol,
        means_w=(means @ chol).astype(np.float32),
        threshold=threshold,
        quantile=float(ood.get("quantile", 0.99)),
    )


def appearance_of(meta: dict[str, Any], sidecar_name: str) -> OODGuard | None:
    """The appearance guard of a validated sidecar (``ood.appearance``; ``None`` without).

    Returned as an :class:`OODGuard` with one "class" (the training frames) whose
    ``output`` is ``"appearance"``: its input is
    :func:`medimg_edge._appearance.appearance_features` of the model input.

    Raises
    ------
    ModelError
        When the object does not fit (unknown method or descriptor, matrices of the wrong
        size, a threshold that is not positive).
    """
    from .._appearance import DESCRIPTOR

    app = (meta.get("ood") or {}).get("appearance")
    if app is None:
        return None
    where = f"model sidecar {sidecar_name}: field 'ood.appearance"
    _check_version(app, where)
    if app.get("descriptor") != DESCRIPTOR:
        raise ModelError(
            f"{where}.descriptor': {app.get('descriptor')!r} is not this medimg-edge's "
            f"appearance descriptor ({DESCRIPTOR!r}); upgrade medimg-edge or refit the guard"
        )
    dim = int(app["dim"])
    chol = decode_matrix(app["cholesky"], (dim, dim), field="ood.appearance.cholesky")
    mean = decode_matrix(app["mean"], (1, dim), field="ood.appearance.mean")
    threshold = _threshold(app, where)
    return OODGuard(
        output="appearance",
        cholesky=chol,
        means_w=(mean @ chol).astype(np.float32),
        threshold=threshold,
        quantile=float(app.get("quantile", 0.995)),
    )
