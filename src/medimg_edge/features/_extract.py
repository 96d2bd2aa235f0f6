"""All handcrafted features of one image in one flat, stable dict.  Tests:
tests/test_extract.py; benchmarks: bench/test_bench_extract.py."""

from __future__ import annotations

import functools
import math
import numbers
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import _core
from .._errors import InvalidInputError
from .._validation import check_float, check_int
from ._firstorder import _QUANTILES as _FO_QUANTILES
from ._firstorder import (
    FIRSTORDER_FEATURES,
    _as_mask,
    _firstorder_from,
    _summary,
    _u8_or_float,
    gradient_feature_names,
    gradient_histogram,
)
from ._glcm import _NEEDS, GLCM_PROPS, _offsets, glcm, quantize
from ._lbp import _offsets as _lbp_offsets
from ._lbp import _uniform_counts

__all__ = ["extract", "feature_names"]

_MAX_LEVELS = 256
_MAX_DISTANCE = 64
_MAX_ANGLES = 16


@dataclass(frozen=True)
class _Params:
    levels: int
    distances: tuple[int, ...]
    angles: tuple[float, ...]
    lbp_points: int
    lbp_radius: float
    firstorder_bins: int
    gradient_bins: int


def _params(
    levels: Any,
    distances: Any,
    angles: Any,
    lbp_points: Any,
    lbp_radius: Any,
    firstorder_bins: Any,
    gradient_bins: Any,
) -> _Params:
    levels = check_int("levels", levels, 2, _MAX_LEVELS)
    if isinstance(distances, numbers.Integral) and not isinstance(distances, bool):
        distances = (distances,)
    if not isinstance(distances, Sequence) or isinstance(distances, str) or not distances:
        raise InvalidInputError(
            f"distances must be a non-empty sequence of pixel distances, got {distances!r}"
        )
    dist = tuple(check_int("distances[i]", d, 1, _MAX_DISTANCE) for d in distances)
    if len(set(dist)) != len(dist):
        raise InvalidInputError(f"distances must be distinct, got {dist}")
    if isinstance(angles, numbers.Integral) and not isinstance(angles, bool):
        n = check_int("angles", angles, 1, _MAX_ANGLES)
        ang = tuple(k * math.pi / n for k in range(n))
    elif isinstance(angles, Sequence) and not isinstance(angles, str) and angles:
        if len(angles) > _MAX_ANGLES:
            raise InvalidInputError(f"at most {_MAX_ANGLES} angles, got {len(angles)}")
        ang = tuple(check_float("angles[i]", a, -2 * math.pi, 2 * math.pi) for a in angles)
    else:
        raise InvalidInputError(
            "angles must be a count of equally spaced angles in [0, pi) or a non-empty "
            f"sequence of angles in radians, got {angles!r}"
        )
    p = check_int("lbp_points", lbp_points, 1, 32)
    r = check_float("lbp_radius", lbp_radius, 0.0, 64.0, lo_open=True)
    fb = check_int("firstorder_bins", firstorder_bins, 1, 4096)
    gb = check_int("gradient_bins", gradient_bins, 1, 64)
    return _Params(levels, dist, ang, p, r, fb, gb)


# Per-thread reusable intermediates of extract() (quantised image, GLCM counts, LBP codes):
# a stream of frames of one size allocates them once per thread, not once per frame (no
# fresh pages to fault in when other code allocates and frees memory in between).
_local = threading.local()


def _scratch(name: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """The calling thread's reusable array ``name`` of this shape and dtype (contents
    undefined)."""
    bufs: dict[str, np.ndarray] | None = getattr(_local, "bufs", None)
    if bufs is None:
        bufs = {}
        _local.bufs = bufs
    a = bufs.get(name)
    if a is None or a.shape != shape or a.dtype != np.dtype(dtype):
        a = np.empty(shape, dtype)
        bufs[name] = a
    return a


def _glcm_names(params: _Params) -> list[str]:
    return [f"glcm_{prop.lower()}_d{d}" for prop in GLCM_PROPS for d in params.distances]


@functools.lru_cache(maxsize=64)
def _names_of(params: _Params) -> tuple[str, ...]:
    return tuple(_names(params))


def _names(params: _Params) -> list[str]:
    return [
        *(f"firstorder_{k}" for k in FIRSTORDER_FEATURES),
        *_glcm_names(params),
        *(f"lbp_uniform_hist_{k:02d}" for k in range(params.lbp_points + 2)),
        *(f"gradient_{k}" for k in gradient_feature_names(params.gradient_bins)),
    ]


def feature_names(
    *,
    levels: int = 32,
    distances: Sequence[int] | int = (1,),
    angles: Sequence[float] | int = 4,
    lbp_points: int = 8,
    lbp_radius: float = 1.0,
    firstorder_bins: int = 64,
    gradient_bins: int = 8,
) -> list[str]:
    """The keys :func:`extract` returns for these parameters, in its order.

    Parameters are those of :func:`extract` (the names depend on ``distances``,
    ``lbp_points`` and ``gradient_bins`` only; the others are validated all the same).
    """
    params = _params(
        levels, distances, angles, lbp_points, lbp_radius, firstorder_bins, gradient_bins
    )
    return _names(params)


def _bbox(mask: npt.NDArray[np.uint8], margin: int) -> tuple[slice, slice]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    r0 = max(int(rows[0]) - margin, 0)
    r1 = min(int(rows[-1]) + 1 + margin, mask.shape[0])
    c0 = max(int(cols[0]) - margin, 0)
    c1 = min(int(cols[-1]) + 1 + margin, mask.shape[1])
    return slice(r0, r1), slice(c0, c1)


# All properties in one kernel call (GLCM_PROPS is the kernel's row order).
_NEED_ALL = 0
for _p in GLCM_PROPS:
    _NEED_ALL |= _NEEDS.get(_p, 0)


@functools.lru_cache(maxsize=64)
def _u8_offsets(
    params: _Params, rows: int, cols: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """GLCM offsets of the fused uint8 call (clamped to this image size)."""
    dr, dc = _offsets(
        np.asarray(params.distances, np.float64), np.asarray(params.angles, np.float64), rows, cols
    )
    dr.setflags(write=False)
    dc.setflags(write=False)
    return dr, dc


def _fused(image: np.ndarray, params: _Params, appearance: bool) -> npt.NDArray[np.float64]:
    dr, dc = _u8_offsets(params, image.shape[0], image.shape[1])
    rp, cp = _lbp_offsets(params.lbp_points, params.lbp_radius)
    out: npt.NDArray[np.float64] = _core.extract_u8(
        image,
        params.levels,
        dr,
        dc,
        len(params.distances),
        rp,
        cp,
        params.firstorder_bins,
        params.gradient_bins,
        appearance,
    )
    return out


def _extract_u8(img: npt.NDArray[np.uint8], params: _Params) -> list[float]:
    """Every value of a uint8 image without a mask in one kernel call (csrc/kernels/
    extract.hpp, the GIL released once): the same kernels and the same arithmetic as
    :func:`_composed`, bit for bit (tests/test_extract.py)."""
    values: list[float] = _fused(img, params, False).tolist()
    return values


_cached_params = functools.lru_cache(maxsize=16)(_params)


def appearance_values(
    unit: npt.NDArray[np.float32],
    *,
    levels: int = 32,
    distances: tuple[int, ...] = (1,),
    angles: int = 4,
    lbp_points: int = 8,
    lbp_radius: float = 1.0,
    firstorder_bins: int = 64,
    gradient_bins: int = 8,
) -> npt.NDArray[np.float64]:
    """``sign(v) log1p(10 |v|)`` of the :func:`extract` values ``v`` (non-finite ones 0)
    of ``unit`` rounded to uint8, in :func:`feature_names` order: the appearance
    descriptor of :mod:`medimg_edge._appearance`, in one kernel call with the GIL released.

    Parameters
    ----------
    unit : (M, N) float32 C-contiguous ndarray
        Intensities in [0, 1]; the uint8 image is ``clip(rint(255 unit), 0, 255)`` (half
        to even, as ``numpy.rint``).
    levels, distances, angles, lbp_points, lbp_radius, firstorder_bins, gradient_bins
        As in :func:`extract` (hashable forms: a tuple of distances, a count of angles).

    Returns
    -------
    (D,) float64 ndarray

    Raises
    ------
    InvalidInputError
        For an image that is not a C-contiguous 2-D float32 array, or a bad parameter.
    """
    if not (
        isinstance(unit, np.ndarray)
        and unit.dtype == np.dtype(np.float32)
        and unit.ndim == 2
        and unit.size > 0
        and unit.flags.c_contiguous
    ):
        raise InvalidInputError(
            "unit must be a non-empty C-contiguous 2-D float32 array, got "
            f"{type(unit).__name__} {getattr(unit, 'dtype', '')} {getattr(unit, 'shape', '')}"
        )
    params = _cached_params(
        levels, distances, angles, lbp_points, lbp_radius, firstorder_bins, gradient_bins
    )
    return _fused(unit, params, True)


def _glcm_features(
    img: npt.NDArray[Any],
    mask: npt.NDArray[np.uint8] | None,
    params: _Params,
    lo: float,
    hi: float,
) -> list[float]:
    """GLCM keys; ``lo``, ``hi``: the minimum and maximum of the pixels used (the first-order
    summary's, shared: quantize would compute the same two numbers again)."""
    levels = params.levels
    nd, na = len(params.distances), len(params.angles)
    if mask is None:
        q = quantize(
            img,
            levels,
            vmin=lo,
            vmax=hi,
            out=_scratch("q", img.shape, np.uint8 if levels <= 256 else np.uint16),
        )
        dr, dc = _offsets(
            np.asarray(params.distances, np.float64),
            np.asarray(params.angles, np.float64),
            q.shape[0],
            q.shape[1],
        )
        if levels <= 64:
            # The kernel's own (K, L, L) counts (at most 66 KB: no fresh pages per call),
            # read in place by the properties kernel.
            P, _ = _core.glcm(q, levels, dr, dc, True, False)
            assert P is not None  # quantize's levels are < levels
        else:
            counts = _scratch("glcm", (levels, levels, nd * na), np.uint32)
            _core.glcm(q, levels, dr, dc, True, False, out=counts)
            P = np.ascontiguousarray(counts.transpose(2, 0, 1))
    else:
        # Pixels outside the mask get an extra grey level; dropping its row and column
        # keeps exactly the pairs with both pixels inside the mask.
        q = quantize(img, levels, vmin=lo, vmax=hi, mask=mask)
        q = np.where(mask != 0, q, levels).astype(np.uint16 if levels > 255 else np.uint8)
        full = glcm(q, params.distances, params.angles, levels=levels + 1, symmetric=True)
        P = np.ascontiguousarray(full[:levels, :levels].transpose(2, 3, 0, 1)).reshape(
            nd * na, levels, levels
        )
    ok, out = _core.glcm_props(P, _NEED_ALL)
    if not ok:  # counts are finite and non-negative
        raise RuntimeError("extract: glcm_props refused the counts")
    # (distance, angle) matrices without any pixel pair are left out of the angle mean.
    has = (P.sum(axis=(1, 2), dtype=np.uint64) > 0).reshape(nd, na)
    n = has.sum(axis=1)
    vals = np.where(has, out.reshape(len(GLCM_PROPS), nd, na), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(n > 0, vals.sum(axis=2) / n, math.nan)
    return [float(x) for x in means.ravel()]


def _lbp_features(
    image: npt.NDArray[Any], mask: npt.NDArray[np.uint8] | None, params: _Params
) -> list[float]:
    """Fractions of the uniform LBP codes 0 .. P + 1 inside the mask, counted by the
    kernel (no codes image)."""
    counts = _uniform_counts(image, params.lbp_points, params.lbp_radius, mask)
    total = float(image.size if mask is None else int(counts.sum()))
    return [float(x) for x in counts / total]


def extract(
    image: Any,
    mask: Any = None,
    *,
    levels: int = 32,
    distances: Sequence[int] | int = (1,),
    angles: Sequence[float] | int = 4,
    lbp_points: int = 8,
    lbp_radius: float = 1.0,
    firstorder_bins: int = 64,
    gradient_bins: int = 8,
) -> dict[str, float]:
    """Every handcrafted feature of one 2-D image as a flat ``dict[str, float]``.

    The keys are stable and documented, always in the same order
    (:func:`feature_names` with the same parameters returns them), so the values can be
    stacked into an ML feature matrix or written as CSV columns.

    ====================================  ======================================================
    keys (in this order)                  definition
    ====================================  ======================================================
    ``firstorder_<stat>``                 :func:`firstorder` of the pixels (``bins =
                                          firstorder_bins``); ``<stat>`` in
                                          :data:`~medimg_edge.features._firstorder.
                                          FIRSTORDER_FEATURES`: mean, std, skewness, kurtosis
                                          (Pearson, not excess), entropy, uniformity, energy,
                                          rms, min, p10, p50, p90, max, range, iqr,
                                          mean/median/robust mean absolute deviation
    ``glcm_<prop>_d<d>``                  :func:`glcm_props` property ``<prop>`` (lower case,
                                          every name of :data:`GLCM_PROPS`) of the symmetric
                                          GLCM at distance ``d``, averaged over the angles
                                          (as PyRadiomics does); the image is first quantised
                                          to ``levels`` grey levels by :func:`quantize`
                                          between the minimum and maximum of the pixels used
    ``lbp_uniform_hist_<k>``              fraction of pixels whose uniform LBP code
                                          (:func:`lbp` with ``method="uniform"``,
                                          ``P = lbp_points``, ``R = lbp_radius``) is ``k``,
                                          ``k = 0 .. P + 1`` (``P + 1``: non-uniform)
    ``gradient_magnitude_mean|std|p90``   :func:`gradient_histogram`
    ``gradient_orientation_hist_<k>``     (``bins = gradient_bins``), normalised to sum 1
    ====================================  ======================================================

    ``<k>`` is zero-padded to two digits.  A ``mask`` (region of interest) restricts each
    family as follows:

    * **first order**: statistics of the pixels inside the mask only;
    * **GLCM**: the quantisation range is the minimum and maximum inside the mask, and
      only pixel pairs with *both* pixels inside the mask are counted (computed on the
      mask's bounding box).  A distance with no such pair at some angle ignores that
      angle; with none at any angle its features are NaN;
    * **LBP**: codes of the pixels inside the mask, computed on the whole image (so from
      neighbours inside or outside the mask; at the image border as scikit-image: samples
      outside the image read 0);
    * **gradient**: Sobel gradients of the pixels inside the mask, computed from their
      3x3 neighbourhood in the whole image (reflect-101 at the image border).

    Parameters
    ----------
    image : (M, N) array of uint8, uint16, float32 or float64
    mask : (M, N) array of bool or uint8, optional
        Region of interest (non-zero = inside).  An all-zero mask is an error.
    levels : int, default 32
        Grey levels of the GLCM, in ``[2, 256]``.
    distances : int or sequence of int, default (1,)
        GLCM pixel distances, distinct, in ``[1, 64]``; one set of GLCM keys each.
    angles : int or sequence of float, default 4
        GLCM angles: a count ``n`` of equally spaced angles ``k pi / n`` (4: 0, 45, 90,
        135 degrees), or the angles in radians.
    lbp_points, lbp_radius : int, float, default 8, 1.0
        LBP neighbours ``P`` in ``[1, 32]`` and radius ``R`` in ``(0, 64]``.
    firstorder_bins : int, default 64
        Bins of the first-order entropy / uniformity histogram.
    gradient_bins : int, default 8
        Orientation bins over ``[0, pi)``.

    Returns
    -------
    dict of str to float

    Raises
    ------
    InvalidInputError
        For an invalid image, mask or parameter.

    Notes
    -----
    A uint8 image without a mask is computed in one C++ call that releases the GIL once
    (csrc/kernels/extract.hpp: the same kernels and arithmetic as the family-by-family
    path other inputs take, with bit-identical values); its intermediates live in the
    calling thread's reusable scratch.

    References
    ----------
    .. [1] R. M. Haralick, K. Shanmugam and I. Dinstein, "Textural features for image
       classification," IEEE Trans. SMC 3(6):610-621, 1973. doi:10.1109/TSMC.1973.4309314
    .. [2] T. Ojala, M. Pietikainen and T. Maenpaa, "Multiresolution gray-scale and
       rotation invariant texture classification with local binary patterns," IEEE
       Trans. PAMI 24(7):971-987, 2002. doi:10.1109/TPAMI.2002.1017623
    .. [3] J. J. M. van Griethuysen et al., "Computational radiomics system to decode the
       radiographic phenotype," Cancer Research 77(21):e104-e107, 2017.
       doi:10.1158/0008-5472.CAN-17-0339
    """
    params = _params(
        levels, distances, angles, lbp_points, lbp_radius, firstorder_bins, gradient_bins
    )
    # The validated input in its own type (uint8 takes the integer paths of every family
    # and needs no float copy; uint16 the faster paths of quantize and lbp), or its
    # float32 copy.
    img = _u8_or_float(image)
    m = _as_mask(mask, img.shape)
    names = _names_of(params)
    if m is None and img.dtype == np.dtype(np.uint8):
        # The common case (and the appearance descriptor's): one fused kernel call.
        values = _extract_u8(img, params)
    else:
        is_u16 = isinstance(image, np.ndarray) and image.dtype == np.dtype(np.uint16)
        values = _composed(img, image if is_u16 else img, m, params)
    if len(names) != len(values):  # a peer function changed its output size
        raise RuntimeError(f"extract: {len(values)} values for {len(names)} names")
    return dict(zip(names, values, strict=True))


def _composed(
    img: npt.NDArray[Any], raw: npt.NDArray[Any], m: npt.NDArray[np.uint8] | None, params: _Params
) -> list[float]:
    """The values family by family: ``img`` the validated image (uint8 or its float32
    copy), ``raw`` the image the GLCM and LBP read (uint16 stays uint16), ``m`` the mask."""
    # LBP runs on the whole image: scikit-image's bilinear sampling rounds differently at
    # other absolute coordinates, so a crop could change some codes.
    lbp_image, lbp_mask = raw, m
    if m is not None:
        rs, cs = _bbox(m, 1)
        if (rs.stop - rs.start, cs.stop - cs.start) != img.shape:
            img = np.ascontiguousarray(img[rs, cs])
            raw = np.ascontiguousarray(raw[rs, cs])
            m = np.ascontiguousarray(m[rs, cs])
    values: list[float] = []
    # First order.
    s, hist, q = _summary(
        img, m, bins=params.firstorder_bins, q=_FO_QUANTILES, mad=True, rmad=(0.1, 0.9)
    )
    values.extend(_firstorder_from(s, hist, q).values())
    # GLCM.
    values.extend(_glcm_features(raw, m, params, float(s["min"]), float(s["max"])))
    # Uniform LBP histogram.
    values.extend(_lbp_features(lbp_image, lbp_mask, params))
    # Gradients.
    values.extend(gradient_histogram(img, m, bins=params.gradient_bins).values())
    return values
