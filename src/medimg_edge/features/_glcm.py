"""Grey-level co-occurrence matrices (GLCM), their properties, and grey-level quantisation.

C++: csrc/kernels/glcm.hpp; binding: csrc/bindings/register_glcm.cpp; tests:
tests/test_glcm.py; benchmarks: bench/test_bench_glcm.py.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from .. import _core
from .._errors import InvalidInputError
from .._validation import (
    ACCEPTED_DTYPES,
    MAX_PIXELS,
    MAX_SIDE,
    check_float,
    check_int,
    check_out,
)

__all__ = ["GLCM_PROPS", "MAX_GLCM_CELLS", "MAX_LEVELS", "glcm", "glcm_props", "quantize"]

#: Every property :func:`glcm_props` computes, in this (stable) order: first the ten of
#: ``skimage.feature.graycoprops`` in its documentation order, then the PyRadiomics GLCM
#: features scikit-image lacks, alphabetically.
GLCM_PROPS: tuple[str, ...] = (
    "contrast",
    "dissimilarity",
    "homogeneity",
    "ASM",
    "energy",
    "correlation",
    "mean",
    "variance",
    "std",
    "entropy",
    "autocorrelation",
    "cluster_prominence",
    "cluster_shade",
    "cluster_tendency",
    "difference_average",
    "difference_entropy",
    "difference_variance",
    "id",
    "idmn",
    "idn",
    "imc1",
    "imc2",
    "inverse_variance",
    "joint_entropy",
    "maximum_probability",
    "sum_average",
    "sum_entropy",
)
#: Most grey levels (the uint16 range).
MAX_LEVELS = 65536
#: Most cells ``levels**2 * len(distances) * len(angles)`` of one call (1 GiB of uint32
#: counts); quantise to fewer levels beyond that.
MAX_GLCM_CELLS = 1 << 28

# The kernel's output rows must be GLCM_PROPS (checked once at import: a mismatch is a
# build error, not a user error).
if tuple(_core.glcm_prop_names()) != GLCM_PROPS:  # pragma: no cover
    raise ImportError("medimg_edge._core and features/_glcm.py disagree on the GLCM properties")
_PROP_INDEX = {name: i for i, name in enumerate(GLCM_PROPS)}
_NEED_DIF, _NEED_SUM, _NEED_LOG = _core.glcm_need_bits()
_NEEDS: dict[str, int] = {
    **{
        p: _NEED_DIF
        for p in (
            "contrast",
            "dissimilarity",
            "homogeneity",
            "difference_average",
            "difference_entropy",
            "difference_variance",
            "id",
            "idmn",
            "idn",
            "inverse_variance",
        )
    },
    **{
        p: _NEED_SUM
        for p in (
            "cluster_prominence",
            "cluster_shade",
            "cluster_tendency",
            "sum_average",
            "sum_entropy",
        )
    },
    **{p: _NEED_LOG for p in ("entropy", "joint_entropy", "imc1", "imc2")},
}
_U32_MAX = np.iinfo(np.uint32).max


def _as_array(obj: Any, name: str) -> np.ndarray:
    if isinstance(obj, np.ndarray):
        return obj
    if obj is None or isinstance(obj, (str, bytes, dict)):
        raise InvalidInputError(
            f"{name} must be a NumPy array, got {type(obj).__name__}; pass e.g. numpy.asarray(x)"
        )
    try:
        return np.asarray(obj)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} could not be converted to a NumPy array ({exc})") from None


def _check_shape(arr: np.ndarray, name: str, ndims: tuple[int, ...]) -> None:
    if arr.ndim not in ndims:
        want = " or ".join(f"{d}-D" for d in ndims)
        hint = ""
        if arr.ndim == 3 and arr.shape[-1] in (1, 3, 4):
            hint = (
                "; for a colour frame convert to grayscale first "
                "(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)), for a single channel use "
                "image[..., 0]"
            )
        raise InvalidInputError(f"{name} must be {want}, got shape {arr.shape}{hint}")
    if arr.size == 0:
        raise InvalidInputError(f"{name} is empty (shape {arr.shape}); pass a non-empty image")
    if (arr.ndim > 1 and max(arr.shape) > MAX_SIDE) or arr.size > MAX_PIXELS:
        raise InvalidInputError(
            f"{name} has shape {arr.shape}, beyond the limits of {MAX_SIDE} pixels per side "
            f"and {MAX_PIXELS} pixels in all; crop or downsample it first"
        )


def _native(arr: np.ndarray) -> np.dtype[Any]:
    """The array's element type in the machine's byte order (the NumPy singleton)."""
    return arr.dtype if arr.dtype.isnative else np.dtype(arr.dtype.newbyteorder("=").name)


def _as_vector(values: Any, name: str) -> npt.NDArray[np.float64]:
    try:
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be a sequence of real numbers ({exc})") from None
    if v.ndim == 0:
        v = v.reshape(1)
    if v.ndim != 1 or v.size == 0:
        raise InvalidInputError(f"{name} must be a non-empty 1-D sequence, got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise InvalidInputError(f"{name} must be finite, got {values!r}")
    return v


def _round_half_away(x: float) -> int:
    """scikit-image's ``round`` (skimage/_shared/interpolation.pxd): ``(Py_ssize_t)(x +
    0.5)`` for x > 0, else ``(Py_ssize_t)(x - 0.5)``, in double precision."""
    return int(x + 0.5) if x > 0.0 else int(x - 0.5)


def _offsets(
    distances: npt.NDArray[np.float64], angles: npt.NDArray[np.float64], rows: int, cols: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(dr, dc) of every (distance, angle), distance-major, as skimage's ``_glcm_loop``
    rounds ``sin(angle) * distance`` and ``cos(angle) * distance`` (libm sin/cos, which
    ``math`` calls too), clamped to the image size (a longer offset pairs no pixel)."""
    dr, dc = [], []
    for d in distances.tolist():
        for a in angles.tolist():
            r = _round_half_away(math.sin(a) * d)
            c = _round_half_away(math.cos(a) * d)
            dr.append(min(max(r, -rows), rows))
            dc.append(min(max(c, -cols), cols))
    return np.array(dr, dtype=np.int64), np.array(dc, dtype=np.int64)


def _glcm_image(image: Any, levels: Any) -> tuple[np.ndarray, int]:
    """Validate a GLCM input image and ``levels``; return a C-contiguous uint8/uint16
    image and the number of levels."""
    arr = _as_array(image, "image")
    kind = arr.dtype.kind
    if kind == "b":
        raise InvalidInputError(
            "image is boolean; convert it with image.astype(numpy.uint8) and pass levels=2"
        )
    if kind not in "iu":
        hint = ""
        if kind in "fc":
            hint = (
                "; map it to integer grey levels first, e.g. "
                "medimg_edge.features.quantize(image, levels=32)"
            )
        raise InvalidInputError(
            f"image has dtype {arr.dtype}; the GLCM needs integer grey levels "
            f"(uint8, uint16, or any non-negative integer type){hint}"
        )
    _check_shape(arr, "image", (2,))
    native = _native(arr)
    if levels is None:
        if native not in (np.dtype(np.uint8), np.dtype(np.int8)):
            raise InvalidInputError(
                f"levels is required for a {arr.dtype} image (as in scikit-image); pass "
                "levels=int(image.max()) + 1, or quantise first, e.g. "
                "medimg_edge.features.quantize(image, levels=64)"
            )
        levels = 256
    lv = check_int("levels", levels, 1, MAX_LEVELS)
    if native in (np.dtype(np.uint8), np.dtype(np.uint16)):
        return np.ascontiguousarray(arr, dtype=native), lv
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0:
        raise InvalidInputError(
            f"image has negative values (minimum {lo}); grey levels must be 0 .. levels - 1: "
            "shift the image or quantise it, e.g. medimg_edge.features.quantize(image, levels)"
        )
    if hi >= lv:
        raise _too_large(hi, lv)
    out_type = np.uint8 if lv <= 256 else np.uint16
    return np.ascontiguousarray(arr, dtype=out_type), lv


def _too_large(max_value: int, levels: int) -> InvalidInputError:
    return InvalidInputError(
        f"image has values up to {max_value}, but levels={levels}: every grey level must be "
        f"< levels. Quantise the image first, e.g. medimg_edge.features.quantize(image, "
        f"{levels}), or pass levels={max_value + 1}"
    )


def glcm(
    image: Any,
    distances: Any,
    angles: Any,
    *,
    levels: int | None = None,
    symmetric: bool = False,
    normed: bool = False,
    out: npt.NDArray[np.uint32] | None = None,
) -> np.ndarray:
    """Grey-level co-occurrence matrices, identical to ``skimage.feature.graycomatrix``.

    ``P[i, j, d, a]`` counts the pixel pairs with grey level ``i`` at ``(r, c)`` and ``j``
    at ``(r + dr, c + dc)``, where ``dr = round(sin(angles[a]) * distances[d])`` and
    ``dc = round(cos(angles[a]) * distances[d])``, rounded half away from zero as
    scikit-image rounds them (so angle 0 pairs a pixel with its right neighbour and
    ``pi / 2`` with the pixel *below*, exactly as ``graycomatrix`` does).  Pairs that leave
    the image are not counted.  Distances need not be integers or positive; only the
    rounded offsets matter.

    Parameters
    ----------
    image : (M, N) array of integers
        Grey levels in ``[0, levels)``.  uint8 and uint16 are used as they are; other
        integer types are accepted if non-negative.  Float images must be quantised first
        (:func:`quantize`), as in scikit-image.
    distances : sequence of float
        Pixel-pair distances.
    angles : sequence of float
        Pixel-pair angles in radians.
    levels : int, optional
        Number of grey levels ``L`` (1 to 65536).  Default 256 for uint8 (and int8)
        images; required for every other type, as in scikit-image.
    symmetric : bool, default False
        Return ``P + P^T`` for every (distance, angle): pairs counted in both orders.
    normed : bool, default False
        Divide every matrix by its sum (float64 output; an all-zero matrix stays zero).
    out : (L, L, n_dist, n_angle) uint32 ndarray, optional
        Where to write the counts (C-contiguous, writeable; not with ``normed``): the
        kernel counts in the calling thread's reusable scratch buffer and copies them
        there, so a loop over frames allocates nothing.  Without ``out`` the result is a
        view of a new (padded) counts buffer.

    Returns
    -------
    P : (L, L, len(distances), len(angles)) ndarray of uint32 (float64 if normed)
        The same values as ``graycomatrix``.  The array is a view in ``(distance, angle,
        i, j)`` memory order, so that every ``P[:, :, d, a]`` is one contiguous matrix
        (what :func:`glcm_props` reads); use ``numpy.ascontiguousarray(P)`` for C order.

    Raises
    ------
    InvalidInputError
        A float, boolean, negative or non-2-D image, a grey level ``>= levels`` (the
        message suggests :func:`quantize`), missing ``levels`` for a non-8-bit image,
        non-finite or empty distances/angles, or more than ``MAX_GLCM_CELLS`` cells.

    Notes
    -----
    All offsets are counted in one pass over the image (C++, GIL released); see
    csrc/kernels/glcm.hpp.

    References
    ----------
    .. [1] R. M. Haralick, K. Shanmugam and I. Dinstein, "Textural features for image
       classification," IEEE Trans. Systems, Man, and Cybernetics SMC-3(6):610-621,
       1973. doi:10.1109/TSMC.1973.4309314
    .. [2] S. van der Walt et al., "scikit-image: image processing in Python," PeerJ
       2:e453, 2014 (``skimage.feature.graycomatrix``). doi:10.7717/peerj.453
    """
    img, lv = _glcm_image(image, levels)
    d = _as_vector(distances, "distances")
    a = _as_vector(angles, "angles")
    nd, na = d.size, a.size
    if lv * lv * nd * na > MAX_GLCM_CELLS:
        raise InvalidInputError(
            f"levels={lv} with {nd} distance(s) and {na} angle(s) needs "
            f"{lv * lv * nd * na} cells, more than {MAX_GLCM_CELLS}; quantise to fewer "
            "levels, e.g. medimg_edge.features.quantize(image, levels=256)"
        )
    dr, dc = _offsets(d, a, img.shape[0], img.shape[1])
    if out is not None:
        if normed:
            raise InvalidInputError("out is for the uint32 counts; pass normed=False with it")
        dst = check_out(out, (lv, lv, nd, na), dtype=np.uint32)
        assert dst is not None
        P, max_value = _core.glcm(
            img, lv, dr, dc, bool(symmetric), False, out=dst.reshape(lv, lv, nd * na)
        )
        if P is None:
            raise _too_large(int(max_value), lv)
        return dst
    P, max_value = _core.glcm(img, lv, dr, dc, bool(symmetric), bool(normed))
    if P is None:
        raise _too_large(int(max_value), lv)
    res: np.ndarray = P.reshape(nd, na, lv, lv).transpose(2, 3, 0, 1)
    return res


def _props_input(P: Any) -> tuple[np.ndarray, int, int, int]:
    """Validate a 4-D GLCM and return it as (K, L, L) matrices the kernel reads in place
    when it can (uint32 or float64, contiguous rows), with (L, n_dist, n_angle)."""
    arr = _as_array(P, "P")
    if arr.ndim != 4:
        raise InvalidInputError(
            f"P must be 4-D (levels, levels, n_distances, n_angles) as glcm() returns, got "
            f"shape {arr.shape}; for one matrix M use M[:, :, None, None]"
        )
    L, L2, nd, na = arr.shape
    if L != L2 or min(arr.shape) < 1:
        raise InvalidInputError(
            f"P must have shape (L, L, n_distances, n_angles) with every axis >= 1, got {arr.shape}"
        )
    kind = arr.dtype.kind
    native = _native(arr)
    if native == np.dtype(np.uint32) or native == np.dtype(np.float64):
        want = native
    elif kind in "bu":
        want = np.dtype(np.uint32)
        if kind == "u" and arr.dtype.itemsize > 4 and int(arr.max()) > _U32_MAX:
            want = np.dtype(np.float64)
    elif kind == "i":
        if int(arr.min()) < 0:
            raise InvalidInputError("P has negative entries; co-occurrence counts are >= 0")
        want = np.dtype(np.uint32) if int(arr.max()) <= _U32_MAX else np.dtype(np.float64)
    elif kind == "f":
        want = np.dtype(np.float64)
    else:
        raise InvalidInputError(
            f"P has dtype {arr.dtype}; pass co-occurrence counts or probabilities "
            "(uint32 or float64, as glcm() returns)"
        )
    q = arr.transpose(2, 3, 0, 1).reshape(nd * na, L, L)  # a view when the layout allows
    isz = want.itemsize
    if (
        q.dtype != want
        or q.strides[1:] != (L * isz, isz)
        or (q.shape[0] > 1 and (q.strides[0] < L * L * isz or q.strides[0] % isz))
    ):
        q = np.ascontiguousarray(q, dtype=want)
    return q, L, nd, na


def _prop_names(props: Any) -> tuple[str, ...]:
    names: Iterable[Any] = (props,) if isinstance(props, str) else props
    try:
        out = tuple(names)
    except TypeError:
        raise InvalidInputError(
            f"props must be a property name or a sequence of names, got {props!r}"
        ) from None
    if not out:
        raise InvalidInputError("props is empty; pass e.g. props=('contrast', 'energy')")
    for p in out:
        if p not in _PROP_INDEX:
            raise InvalidInputError(
                f"unknown GLCM property {p!r}; choose from {', '.join(GLCM_PROPS)}"
            )
    return out


def glcm_props(P: Any, props: Any = GLCM_PROPS) -> dict[str, npt.NDArray[np.float64]]:
    """Texture properties of co-occurrence matrices (scikit-image's and PyRadiomics').

    Every matrix ``P[:, :, d, a]`` is first normalised to probabilities
    ``p(i, j) = P[i, j] / sum(P)`` (an all-zero matrix gives 0 for every property but
    ``correlation``, which is 1, as in scikit-image).  Grey levels are ``i, j = 0 .. L-1``
    (``L = P.shape[0]``); ``p_x(i) = sum_j p(i, j)``, ``p_y(j) = sum_i p(i, j)`` with means
    ``mu_x, mu_y`` and standard deviations ``s_x, s_y``; ``p_{x+y}(k)`` sums ``p`` over
    ``i + j = k`` and ``p_{x-y}(k)`` over ``|i - j| = k``.

    The properties of ``skimage.feature.graycoprops`` (same values, natural logarithm):

    ============== ==================================================================
    contrast       ``sum p (i - j)^2``
    dissimilarity  ``sum p |i - j|``
    homogeneity    ``sum p / (1 + (i - j)^2)``
    ASM            ``sum p^2``;  energy: ``sqrt(ASM)``
    correlation    ``sum p (i - mu_x)(j - mu_y) / (s_x s_y)``; 1 if ``s_x`` or
                   ``s_y < 1e-15``
    mean           ``mu_x = sum p i``;  variance: ``sum p (i - mu_x)^2``;  std
    entropy        ``-sum p ln p``
    ============== ==================================================================

    The PyRadiomics GLCM features scikit-image lacks, as defined in the PyRadiomics
    documentation [3]_ (entropies in bits, ``log2``; ``0 log 0 = 0``, without
    PyRadiomics' ``+ eps`` inside the logarithms, which changes nothing at 1e-12):

    =================== =============================================================
    autocorrelation     ``sum p (i + 1)(j + 1)``  (1-based levels, see below)
    cluster_prominence  ``sum p (i + j - mu_x - mu_y)^4``
    cluster_shade       ``sum p (i + j - mu_x - mu_y)^3``
    cluster_tendency    ``sum p (i + j - mu_x - mu_y)^2``
    difference_average  ``sum_k k p_{x-y}(k)``  (equal to dissimilarity)
    difference_entropy  ``-sum_k p_{x-y}(k) log2 p_{x-y}(k)``
    difference_variance ``sum_k (k - difference_average)^2 p_{x-y}(k)``
    id                  ``sum p / (1 + |i - j|)``  (inverse difference)
    idmn                ``sum p / (1 + (i - j)^2 / L^2)``
    idn                 ``sum p / (1 + |i - j| / L)``
    imc1                ``(HXY - HXY1) / max(HX, HY)``; 0 if ``HX = HY = 0``
    imc2                ``sqrt(1 - exp(-2 (HXY2 - HXY)))``; 0 if ``HXY >= HXY2``
    inverse_variance    ``sum_{k >= 1} p_{x-y}(k) / k^2``
    joint_entropy       ``HXY = -sum p log2 p``
    maximum_probability ``max p``
    sum_average         ``sum_k (k + 2) p_{x+y}(k)``  (1-based levels, see below)
    sum_entropy         ``-sum_k p_{x+y}(k) log2 p_{x+y}(k)``
    =================== =============================================================

    with ``HX = -sum p_x log2 p_x``, ``HY`` likewise, and ``HXY1 = -sum p log2(p_x p_y)``,
    ``HXY2 = -sum p_x p_y log2(p_x p_y)``, both equal to ``HX + HY`` (PyRadiomics notes
    this; it is computed that way).  ``L`` in idmn and idn is the matrix size
    ``P.shape[0]`` (PyRadiomics' ``N_g`` when its GLCM has every level).

    **Grey-level convention.**  PyRadiomics numbers grey levels from 1, this module (like
    scikit-image) from 0.  Shift-invariant properties are unaffected; the two that are
    not, ``autocorrelation`` and ``sum_average``, use PyRadiomics' 1-based levels (level
    index ``i`` is grey level ``i + 1``), so they equal PyRadiomics' values for a matrix
    whose row ``i`` is its level ``i + 1``.  ``mean`` keeps scikit-image's 0-based
    definition (PyRadiomics' "joint average" is ``mean + 1``).

    Parameters
    ----------
    P : (L, L, n_dist, n_angle) array_like
        Non-negative co-occurrence counts or probabilities, e.g. from :func:`glcm` or
        ``graycomatrix`` (any real or integer dtype; uint32 and float64 are read in
        place when each matrix is contiguous, as :func:`glcm` returns them).
    props : str or sequence of str, default GLCM_PROPS
        The properties to compute (see :data:`GLCM_PROPS`).  Only the sums the requested
        properties need are gathered: the entropies cost one logarithm per non-zero cell.

    Returns
    -------
    dict of str to (n_dist, n_angle) float64 ndarray
        One array per requested property, in the order requested.

    Raises
    ------
    InvalidInputError
        If P is not 4-D with two equal leading axes, has negative, NaN or infinite
        entries, or a property name is unknown.

    References
    ----------
    .. [1] R. M. Haralick, K. Shanmugam and I. Dinstein, "Textural features for image
       classification," IEEE Trans. Systems, Man, and Cybernetics SMC-3(6):610-621,
       1973. doi:10.1109/TSMC.1973.4309314
    .. [2] M. Hall-Beyer, "GLCM Texture: A Tutorial," v. 3.0, University of Calgary, 2017.
       doi:10.11575/PRISM/33280
    .. [3] J. J. M. van Griethuysen et al., "Computational radiomics system to decode the
       radiographic phenotype," Cancer Research 77(21):e104-e107, 2017
       (PyRadiomics; feature definitions: pyradiomics.readthedocs.io, "Gray Level
       Co-occurrence Matrix (GLCM) Features"). doi:10.1158/0008-5472.CAN-17-0339
    """
    names = _prop_names(props)
    q, _, nd, na = _props_input(P)
    need = 0
    for p in names:
        need |= _NEEDS.get(p, 0)
    ok, out = _core.glcm_props(q, need)
    if not ok:
        raise InvalidInputError(
            "P has negative, NaN or infinite entries; co-occurrence counts or "
            "probabilities must be finite and >= 0"
        )
    return {p: out[_PROP_INDEX[p]].reshape(nd, na).copy() for p in names}


def quantize(
    image: Any,
    levels: int,
    *,
    vmin: float | None = None,
    vmax: float | None = None,
    mask: Any = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Map intensities to integer grey levels ``0 .. levels - 1`` by uniform binning.

    ``q = floor((x - vmin) * (levels / (vmax - vmin)))`` computed in float64, then clipped
    to ``[0, levels - 1]``: ``levels`` bins of equal width between ``vmin`` and ``vmax``,
    the last bin closed (``x = vmax`` gives ``levels - 1``); values below ``vmin`` go to 0
    and values above ``vmax`` to ``levels - 1``.  If ``vmin == vmax``, values ``<= vmin``
    give 0 and larger ones ``levels - 1`` (a constant image maps to 0).  This is the
    fixed bin-count discretisation of IBSI / PyRadiomics' ``binCount``, 0-based.

    Parameters
    ----------
    image : array of uint8, uint16, float32, float64 or another integer type (1-D to 3-D)
        Finite intensities (e.g. int16 CT values).
    levels : int
        Number of grey levels, 1 to 65536.
    vmin, vmax : float, optional
        Binning range; default the minimum and maximum of the image, or of the pixels
        inside ``mask``.
    mask : array of bool or integers, optional
        Region of interest (non-zero = inside), same shape as the image.  It only sets
        the default range: every pixel is quantised.
    out : ndarray of uint8 (levels <= 256) or uint16, optional
        Where to write the levels (C-contiguous, writeable, the image's shape, not
        overlapping it).

    Returns
    -------
    ndarray of uint8 (levels <= 256) or uint16, same shape as the image

    Raises
    ------
    InvalidInputError
        Unsupported dtype or shape, NaN/infinite values, ``levels`` out of range,
        ``vmin > vmax``, a mask of another shape, or an empty mask.

    References
    ----------
    .. [1] A. Zwanenburg et al., "The Image Biomarker Standardization Initiative,"
       Radiology 295(2):328-338, 2020 (section 2.7, fixed bin number discretisation).
       doi:10.1148/radiol.2020191145
    """
    arr = _as_array(image, "image")
    native = _native(arr)
    if native not in ACCEPTED_DTYPES and native.kind not in "iu":
        hint = " (for a mask, use image.astype(np.uint8))" if arr.dtype == np.bool_ else ""
        names = ", ".join(str(d) for d in ACCEPTED_DTYPES)
        raise InvalidInputError(
            f"image has dtype {arr.dtype}; accepted dtypes are {names} and the other integer "
            f"types{hint}"
        )
    _check_shape(arr, "image", (1, 2, 3))
    lv = check_int("levels", levels, 1, MAX_LEVELS)
    arr = np.asarray(arr, dtype=native)
    if native.kind == "f" and not np.all(np.isfinite(arr)):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise InvalidInputError(
            f"image contains {bad} NaN or infinite value(s); replace them, e.g. "
            "numpy.nan_to_num(image)"
        )
    inside: np.ndarray = arr
    if mask is not None:
        m = _as_array(mask, "mask")
        if m.dtype.kind not in "biu":
            raise InvalidInputError(
                f"mask has dtype {m.dtype}; pass a boolean or integer array (non-zero = inside)"
            )
        if m.shape != arr.shape:
            raise InvalidInputError(
                f"mask has shape {m.shape} but the image has shape {arr.shape}; they must match"
            )
        inside = arr[m != 0]
        if inside.size == 0:
            raise InvalidInputError(
                "mask is empty (no non-zero pixel): there is no region to take the range from"
            )
    lo = float(inside.min()) if vmin is None else check_float("vmin", vmin)
    hi = float(inside.max()) if vmax is None else check_float("vmax", vmax)
    if lo > hi:
        raise InvalidInputError(f"vmin ({lo:g}) must not exceed vmax ({hi:g})")
    if not math.isfinite(hi - lo):
        raise InvalidInputError(
            f"the range [{lo:g}, {hi:g}] is too wide for float64 binning; rescale the image"
        )
    out_type = np.uint8 if lv <= 256 else np.uint16
    dst = check_out(out, arr.shape, source=arr, dtype=out_type, allow_source=False)
    if native.kind == "u" and native.itemsize <= 2 and arr.size >= (1 << (8 * native.itemsize)):
        # Integer images: the same float64 formula on every possible value, then a lookup.
        lut = _bins(np.arange(1 << (8 * native.itemsize), dtype=np.float64), lv, lo, hi)
        table = lut.astype(out_type)
        if native.itemsize == 1 and out_type == np.uint8 and arr.ndim == 2:
            # A 256-entry table on uint8: cv2.LUT (SIMD gather-free byte lookup) gives the
            # same bytes as numpy.take in ~1/5 of the time.
            src8: npt.NDArray[np.uint8] = np.ascontiguousarray(arr, dtype=np.uint8)
            table8: npt.NDArray[np.uint8] = table.astype(np.uint8, copy=False)
            res: np.ndarray = (
                cv2.LUT(src8, table8) if dst is None else cv2.LUT(src8, table8, dst=dst)
            )
            return res
        return np.take(table, arr, out=dst)
    levels_f = _bins(arr.astype(np.float64), lv, lo, hi)
    if dst is None:
        return levels_f.astype(out_type)
    np.copyto(dst, levels_f, casting="unsafe")
    return dst


def _bins(x: npt.NDArray[np.float64], levels: int, lo: float, hi: float) -> npt.NDArray[np.float64]:
    """The bin index of every x (float64, in place): see :func:`quantize`."""
    scale = levels / (hi - lo) if hi > lo else math.inf
    if math.isfinite(scale):  # a range so narrow that the scale overflows acts as a point
        x -= lo
        x *= scale
        np.floor(x, out=x)
        np.clip(x, 0.0, levels - 1.0, out=x)
        return x
    return np.where(x <= lo, 0.0, levels - 1.0)
