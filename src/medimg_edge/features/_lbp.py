"""Local binary patterns.  C++: csrc/kernels/lbp.hpp; binding: csrc/bindings/register_lbp.cpp;
tests: tests/test_lbp.py; benchmarks: bench/test_bench_lbp.py."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import _core
from .._errors import InvalidInputError
from .._validation import MAX_ABS_VALUE, check_float, check_int, check_out, checked_array

__all__ = ["LBP_METHODS", "MAX_P", "MAX_R", "lbp"]

F64 = npt.NDArray[np.float64]

#: Method names and their codes in the C++ kernel (medimg::LbpMethod).
LBP_METHODS: dict[str, int] = {
    "default": 0,
    "ror": 1,
    "uniform": 2,
    "nri_uniform": 3,
    "var": 4,
}
#: Most neighbours: scikit-image builds the 'default' and 'ror' codes in a C ``int``
#: (int32 weights ``2 ** i`` and 32-bit rotations), so P = 32 is the last value for which
#: its output is defined (beyond it the weights wrap to 0 and the rotation shifts by 32 or
#: more bits, undefined behaviour in C).
MAX_P = 32
#: Largest radius: every sample farther away lies outside any accepted image (sides are
#: at most 65536 pixels), and the offsets stay small enough for exact column arithmetic.
MAX_R = 65536.0


@functools.lru_cache(maxsize=256)
def _offsets(P: int, R: float) -> tuple[F64, F64]:
    """Row and column offsets of the P samples, computed as scikit-image computes them.

    ``skimage.feature._texture._local_binary_pattern`` (scikit-image 0.26) takes ``R`` as
    a C ``double``, forms ``rr = -R * sin(2 pi i / P)``, ``cc = R * cos(2 pi i / P)`` with
    NumPy in float64 and rounds both with ``np.round(x, 5)``.  The same NumPy calls here
    give the same bits.  (An earlier version of this function rounded ``R`` to float32
    first, as if it were a C ``float``: for the rare radii where that moves an offset's
    fifth decimal, the 'var' values differed from scikit-image's in the sixth digit; found
    by ``tests/test_lbp.py::test_hypothesis_matches_skimage``, with regression cases there.)
    """
    r = float(R)
    angles = 2 * np.pi * np.arange(P, dtype=np.double) / P
    rp = np.round(-r * np.sin(angles), 5)
    cp = np.round(r * np.cos(angles), 5)
    rp.setflags(write=False)
    cp.setflags(write=False)
    return rp, cp


def _as_image(image: Any) -> np.ndarray:
    """Validate a 2-D image and return it C-contiguous, native byte order, dtype kept."""
    return np.ascontiguousarray(checked_array(image, ndims=(2,)))


def _bad_values(img: np.ndarray) -> InvalidInputError:
    finite = np.isfinite(img)
    if not finite.all():
        bad = int(img.size - np.count_nonzero(finite))
        return InvalidInputError(
            f"image contains {bad} NaN or infinite value(s); replace them, "
            "e.g. numpy.nan_to_num(image), or mask the frame out"
        )
    peak = float(np.max(np.abs(img)))
    return InvalidInputError(
        f"image has values up to {peak:.3g} in magnitude, beyond the supported "
        f"{MAX_ABS_VALUE:.0e}; rescale the image, e.g. image / numpy.abs(image).max()"
    )


def lbp(
    image: Any, P: int = 8, R: float = 1.0, method: str = "default", *, out: F64 | None = None
) -> F64:
    """Local binary patterns, identical to ``skimage.feature.local_binary_pattern``.

    For every pixel ``c``, ``P`` neighbours are sampled on a circle of radius ``R``
    (neighbour ``i`` at row offset ``-R sin(2 pi i / P)`` and column offset
    ``R cos(2 pi i / P)``, both rounded to 5 decimals), with bilinear interpolation between
    the four nearest pixels and 0 outside the image.  Bit ``s_i`` is 1 where the
    neighbour is not darker than the centre (``t_i - c >= 0``).  The value of each pixel
    is, by ``method``:

    ``"default"``
        ``sum_i s_i 2^i`` (grey-scale invariant, not rotation invariant).
    ``"ror"``
        the smallest value of the code over its ``P`` circular rotations (rotation
        invariant).
    ``"uniform"``
        the number of ones if the pattern has at most two 0/1 changes between
        consecutive bits, else ``P + 1`` (``P + 2`` distinct values; Ojala et al. 2002).
    ``"nri_uniform"``
        a distinct value for each of the ``P (P - 1) + 2`` uniform patterns and one for
        all the others (not rotation invariant; Ahonen et al. 2004).
    ``"var"``
        the variance of the ``P`` neighbour values (contrast; not grey-scale invariant);
        NaN where it is 0.

    The result is bit-identical to scikit-image's for every accepted input, including its
    quirks: the image is converted to float64; the change count of ``"uniform"`` and
    ``"nri_uniform"`` does not include the change between the last and the first bit;
    with ``P = 32`` the ``"default"`` and ``"ror"`` codes are those of scikit-image's
    int32 arithmetic (bit 31 counts as ``-2^31``); ``R`` is rounded to float32 first.
    Unlike scikit-image it emits no warning for floating-point images.  Every product and
    sum is rounded on its own, as in scikit-image's x86-64 builds; a scikit-image build
    whose compiler fuses ``a * b + c`` into FMA instructions (possible on aarch64) can
    differ from both in the last bit of interpolated samples, hence in rare near-ties.

    Parameters
    ----------
    image : (M, N) array of uint8, uint16, float32 or float64
        Grey-level image of any size (1 x 1 included).  Integer types give results that
        do not depend on tiny numerical differences, as scikit-image recommends.
    P : int, default 8
        Number of neighbours, 1 to :data:`MAX_P` (32).
    R : float, default 1.0
        Radius of the circle in pixels, ``0 < R <= 65536``.
    method : {"default", "ror", "uniform", "nri_uniform", "var"}, default "default"
        Code to compute (case-insensitive).
    out : (M, N) float64 ndarray, optional
        Where to write the codes (C-contiguous, writeable, not overlapping the image).
        With ``out`` and the per-thread scratch buffer the kernel reuses, a loop over
        frames allocates nothing.

    Returns
    -------
    (M, N) float64 ndarray

    Raises
    ------
    InvalidInputError
        For an image that is not 2-D, empty, of another dtype, with NaN/Inf or values
        beyond 1e15 in magnitude, or for ``P``, ``R`` or ``method`` out of range.

    References
    ----------
    .. [1] T. Ojala, M. Pietikainen and T. Maenpaa, "Multiresolution gray-scale and
       rotation invariant texture classification with local binary patterns," IEEE
       Trans. PAMI 24(7):971-987, 2002. doi:10.1109/TPAMI.2002.1017623
    .. [2] T. Ahonen, A. Hadid and M. Pietikainen, "Face recognition with local binary
       patterns," Proc. ECCV 2004, LNCS 3021:469-481. doi:10.1007/978-3-540-24670-1_36
    .. [3] S. van der Walt et al., "scikit-image: image processing in Python," PeerJ
       2:e453, 2014. doi:10.7717/peerj.453 (``skimage.feature.local_binary_pattern``)

    Examples
    --------
    >>> import numpy as np
    >>> import medimg_edge as me
    >>> img = np.array([[5, 9, 1], [4, 4, 6], [7, 2, 3]], dtype=np.uint8)
    >>> float(me.features.lbp(img, P=8, R=1, method="uniform")[1, 1])
    9.0
    """
    img = _as_image(image)
    P = check_int("P", P, 1, MAX_P)
    R = check_float("R", R, 0.0, MAX_R, lo_open=True)
    if not isinstance(method, str):
        raise InvalidInputError(f"method must be one of {', '.join(LBP_METHODS)}, got {method!r}")
    code = LBP_METHODS.get(method.lower())
    if code is None:
        raise InvalidInputError(f"method must be one of {', '.join(LBP_METHODS)}, got {method!r}")
    rp, cp = _offsets(P, R)
    dst = check_out(out, img.shape, source=img, dtype=np.float64, allow_source=False)
    res, ok = _core.lbp(img, P, rp, cp, code, MAX_ABS_VALUE, out=dst)
    if not ok:
        raise _bad_values(img)
    result: F64 = res
    return result


def _uniform_counts(
    image: Any, P: int, R: float, mask: npt.NDArray[np.uint8] | None
) -> npt.NDArray[np.uint32]:
    """Counts of the uniform LBP codes ``0 .. P + 1`` (:func:`lbp`, ``method="uniform"``)
    over the pixels where ``mask != 0`` (all without a mask), counted in the kernel
    without a float64 codes image.  ``mask``: C-contiguous uint8 of the image's shape."""
    img = _as_image(image)
    P = check_int("P", P, 1, MAX_P)
    R = check_float("R", R, 0.0, MAX_R, lo_open=True)
    rp, cp = _offsets(P, R)
    counts, ok = _core.lbp_histogram(img, P, rp, cp, LBP_METHODS["uniform"], mask, MAX_ABS_VALUE)
    if not ok:
        raise _bad_values(img)
    result: npt.NDArray[np.uint32] = counts
    return result
