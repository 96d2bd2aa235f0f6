"""Handcrafted image features: texture (GLCM, LBP), first-order statistics, gradients.

GLCM
    :func:`glcm`, :func:`glcm_props` (same layout and counts as scikit-image's
    ``graycomatrix`` / ``graycoprops``, plus PyRadiomics features), :func:`quantize`.
LBP
    :func:`lbp` (identical values to ``skimage.feature.local_binary_pattern``).
First order
    :func:`firstorder` (optionally inside a mask), :func:`gradient_histogram`.
All at once
    :func:`extract`: a stable, flat ``dict[str, float]`` for classical ML or export;
    :func:`feature_names` lists its keys.
"""

from __future__ import annotations

from ._extract import extract, feature_names
from ._firstorder import firstorder, gradient_histogram
from ._glcm import GLCM_PROPS, glcm, glcm_props, quantize
from ._lbp import lbp

__all__ = [
    "GLCM_PROPS",
    "extract",
    "feature_names",
    "firstorder",
    "glcm",
    "glcm_props",
    "gradient_histogram",
    "lbp",
    "quantize",
]
