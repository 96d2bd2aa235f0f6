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

from .features._extract import appearance_values

__all__ = ["DESCRIPTOR", "SIDE", "appearance_features"]

#: Side of the area-reduced model input the descriptor is computed on.
SIDE = 64
#: Name and version of the descriptor, as stored in the sidecar (``ood.appearance``):
#: a package fitted on another descriptor is refused, not silently mis-scored.
DESCRIPTOR = "extract-u8-64-v1"


#: The descriptor's parameters: features.extract's defaults (levels 32, distance 1, four
#: angles, uniform LBP P = 8 R = 1, 64 first-order bins, 8 orientation bins).
_LEVELS, _DISTANCES, _ANGLES = 32, (1,), 4
_LBP_P, _LBP_R, _FO_BINS, _GRAD_BINS = 8, 1.0, 64, 8


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

    Notes
    -----
    After the area reduction (``cv2.resize``, ``INTER_AREA``) everything is one C++ call
    with the GIL released (:func:`medimg_edge.features._extract.appearance_values`,
    csrc/kernels/extract.hpp): the rounding
    to uint8, ``extract`` (the same kernels and arithmetic, bit for bit) and the
    transform.  Against the NumPy composition (``np.rint``, ``extract``, ``np.log1p``)
    the values differ at most in the last bit, where NumPy's SIMD ``log1p`` and the C
    library's round differently (tests/test_ood.py); the guard casts them to float32.
    """
    a = np.asarray(x, dtype=np.float32)
    if a.ndim == 3:
        a = a[:, :, 0]
    buf = {} if work is None else work
    small = buf.get("small")
    if small is None:
        small = buf["small"] = np.empty((SIDE, SIDE), np.float32)
    cv2.resize(a, (SIDE, SIDE), dst=small, interpolation=cv2.INTER_AREA)
    return appearance_values(
        small,
        levels=_LEVELS,
        distances=_DISTANCES,
        angles=_ANGLES,
        lbp_points=_LBP_P,
        lbp_radius=_LBP_R,
        firstorder_bins=_FO_BINS,
        gradient_bins=_GRAD_BINS,
    )
