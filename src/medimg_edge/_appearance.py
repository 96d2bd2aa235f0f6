"""The appearance descriptor of the second out-of-distribution signal.

The model-feature guard (:mod:`medimg_edge.runtime._ood`) measures how far a frame's
pooled CNN features lie from the training frames. Those features are only as good as the
model: a network that separates its classes poorly also maps photographs, CT slices or the
other modality close to its training frames (measured on the reference X-ray model: 31 of
106 far out-of-distribution inputs diagnosed positive). The appearance guard is a second,
model-independent Mahalanobis distance on the package's handcrafted texture features
(:func:`medimg_edge.features.extract`: first order, GLCM, LBP, gradient orientation; the
radiomics descriptors of Haralick et al. [1]_ and Ojala et al. [2]_) of the model input,
area-reduced to ``SIDE`` x ``SIDE`` and quantised to 8 bits. Texture separates speckle
from smooth projection images, photographs from both, and noise, ramps and blank frames
from everything (sidecar field ``ood.appearance``; fitted by ``medimg-edge train``).

References
----------
.. [1] R. M. Haralick, K. Shanmugam, I. Dinstein, "Textural features for image
   classification", IEEE Trans. SMC 3(6):610-621, 1973.
.. [2] T. Ojala, M. Pietikainen, T. Maenpaa, "Multiresolution gray-scale and rotation
   invariant texture classification with local binary patterns", IEEE TPAMI
   24(7):971-987, 2002.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

__all__ = ["DESCRIPTOR", "SIDE", "appearance_features"]

#: Side of the area-reduced model input the descriptor is computed on.
SIDE = 64
#: Name and version of the descriptor, as stored in the sidecar (``ood.appearance``):
#: a package fitted on another descriptor is refused, not silently mis-scored.
DESCRIPTOR = "extract-u8-64-v1"


def appearance_features(
    x: npt.ArrayLike, *, work: dict[str, Any] | None = None
) -> npt.NDArray[np.float64]:
    """The appearance descriptor of one model input.

    Parameters
    ----------
    x : (H, W) or (H, W, 1) array of float32 in [0, 1]
        The model input (:func:`medimg_edge.preprocess.to_model_input`).
    work : dict, optional
        Per-thread buffers reused between calls (the Diagnoser passes one).

    Returns
    -------
    (D,) float64
        ``sign(v) log1p(10 |v|)`` of the :func:`~medimg_edge.features.extract` values of
        the input area-reduced to ``SIDE`` x ``SIDE`` and rounded to uint8 (non-finite
        values, e.g. a correlation of a flat frame, are 0).
    """
    from .features import extract

    a = np.asarray(x, dtype=np.float32)
    if a.ndim == 3:
        a = a[:, :, 0]
    buf = {} if work is None else work
    small = buf.get("small")
    if small is None:
        small = buf["small"] = np.empty((SIDE, SIDE), np.float32)
        buf["u8"] = np.empty((SIDE, SIDE), np.uint8)
    cv2.resize(a, (SIDE, SIDE), dst=small, interpolation=cv2.INTER_AREA)
    u8 = buf["u8"]
    # x in [0, 1]: scale, round half to even (np.rint), saturate, as uint8
    np.multiply(small, 255.0, out=small)
    np.rint(small, out=small)
    np.clip(small, 0.0, 255.0, out=small)
    u8[...] = small
    feats = extract(u8)
    v = np.fromiter(feats.values(), dtype=np.float64, count=len(feats))
    v[~np.isfinite(v)] = 0.0
    out: npt.NDArray[np.float64] = np.sign(v) * np.log1p(10.0 * np.abs(v))
    return out
