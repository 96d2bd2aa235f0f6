"""Image-quality gate: is this frame good enough to diagnose?

:func:`assess` measures sharpness, noise, contrast and exposure of one frame *at the
resolution the model sees* and *inside the field of view*, and reports stable issue
codes; :func:`field_of_view` returns the field-of-view mask alone.  Everything runs on an
area-downsampled copy of the frame: OpenCV for the downsampling and the ultrasound
connected components, the rest in one call of the fused C++ kernels of
csrc/kernels/quality.hpp (``_core.quality_measures``).  Tests: tests/test_quality.py (the
previous OpenCV formulation, tests/quality_helpers.py, is the reference); benchmarks:
bench/test_bench_quality.py; calibration sweep: scripts/calibrate_quality.py.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from . import _core
from ._errors import InvalidInputError
from ._modality import MODALITIES as _MODALITIES
from ._validation import as_image2d, check_float, check_int
from ._validation import value_range as _min_max

__all__ = [
    "ANALYSIS_SIZE",
    "ISSUE_CODES",
    "MEASURES",
    "MODALITIES",
    "THRESHOLDS",
    "QualityReport",
    "assess",
    "field_of_view",
]

#: Every issue code :func:`assess` can report, in the order it reports them.
ISSUE_CODES: tuple[str, ...] = (
    "blank",
    "blurred",
    "too_noisy",
    "saturated",
    "underexposed",
    "low_contrast",
)

#: Accepted ``modality`` values (``None`` selects the ``"generic"`` thresholds): the
#: package's one vocabulary, ``medimg_edge._modality.MODALITIES``.
MODALITIES: tuple[str, ...] = _MODALITIES

#: Side of the analysis image per threshold set: the input side of the reference models
#: (X-ray 256 x 256, ultrasound 128 x 128); override with ``analysis_size=``.
ANALYSIS_SIZE: Mapping[str, int] = MappingProxyType(
    {"generic": 256, "ultrasound": 128, "xray": 256}
)


def _frozen(d: dict[str, float]) -> Mapping[str, float]:
    return MappingProxyType(d)


#: Thresholds per modality (see :func:`assess` for the table and the rules; calibrated by
#: scripts/calibrate_quality.py, tables in bench/RESULTS.md).
THRESHOLDS: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {
        "generic": _frozen(
            {
                "blank_contrast_rms": 0.004,
                "blurred_edge_sigma_px": 2.5,
                "too_noisy_sigma": 0.05,
                "saturated_fraction": 0.05,
                "underexposed_fraction": 0.25,
                "underexposed_p99": 0.15,
                "low_contrast_dynamic_range": 0.15,
            }
        ),
        "ultrasound": _frozen(
            {
                "blank_contrast_rms": 0.004,
                "blurred_edge_sigma_px": 1.0,
                "too_noisy_sigma": 0.2,
                "saturated_fraction": 0.02,
                "underexposed_fraction": 0.5,
                "underexposed_p99": 0.1,
                "low_contrast_dynamic_range": 0.15,
            }
        ),
        "xray": _frozen(
            {
                "blank_contrast_rms": 0.004,
                "blurred_edge_sigma_px": 3.0,
                "too_noisy_sigma": 0.06,
                "saturated_fraction": 0.25,
                "underexposed_fraction": 0.5,
                "underexposed_p99": 0.15,
                "low_contrast_dynamic_range": 0.1,
            }
        ),
    }
)

#: Keys of :attr:`QualityReport.measures`, in order.
MEASURES: tuple[str, ...] = (
    "range_lo",
    "range_hi",
    "analysis_scale",
    "fov_fraction",
    "annotation_fraction",
    "mean",
    "contrast_rms",
    "contrast_michelson",
    "dynamic_range",
    "p99",
    "fraction_saturated",
    "fraction_underexposed",
    "noise_sigma",
    "edge_sigma_px",
    "edge_count",
)

_BIT_DEPTHS = (12, 14, 16)
#: Two analysis scales of the gradient-ratio edge-width estimate (px at analysis size).
_RA, _RB = 1.0, 2.0
#: Edges must be this many noise sigmas strong at scale ``_RB`` (ultrasound: the
#: Immerkaer sigma is mostly speckle, which is signal, so a lower factor).
_EDGE_K: Mapping[str, float] = MappingProxyType({"generic": 10.0, "ultrasound": 4.0, "xray": 10.0})
#: Fewer qualifying edge points than this: the edge width is not measured.
_MIN_EDGES = 16
#: Fraction of the strongest qualifying edge points the estimate uses.
_EDGE_TOP = 0.25
#: Intrinsic ``s^2`` of a perfect step seen through the 3x3 Sobel derivative on a pixel
#: grid (measured on a slanted ideal step: the estimate gives 0.67 px for s = 0).
_S0_SQ = 0.45
#: Ultrasound background: analysis pixels at or below this fraction of the range.
_US_BACKGROUND = 0.04
#: Annotation strokes: white top-hat above this and value above ``_STROKE_LEVEL``.
_STROKE_TOPHAT = 0.25
_STROKE_LEVEL = 0.6


#: The two Gaussian blurs (sigma ``_RA``, then ``sqrt(_RB^2 - _RA^2)`` for a total of
#: ``_RB``), kernels truncated at 3 sigma.
_BLURS = (
    (_RA, 2 * math.ceil(3 * _RA) + 1),
    (math.sqrt(_RB * _RB - _RA * _RA), 2 * math.ceil(3 * math.sqrt(_RB * _RB - _RA * _RA)) + 1),
)


def _kernel_noise_gain(n_blurs: int) -> float:
    """L2 norm of the kernel ``Sobel_x / 8`` after the first ``n_blurs`` of
    :data:`_BLURS`: the standard deviation of that gradient component on unit white
    noise."""
    z = np.zeros((41, 41), np.float32)
    z[20, 20] = 1.0
    for sigma, k in _BLURS[:n_blurs]:
        z = np.asarray(cv2.GaussianBlur(z, (k, k), sigma), np.float32)
    g = np.asarray(cv2.Sobel(z, cv2.CV_32F, 1, 0, ksize=3), np.float64) * 0.125
    return float(np.sqrt(np.sum(g * g)))


_NA = _kernel_noise_gain(1)
_NB = _kernel_noise_gain(2)
#: The two blurs' taps (OpenCV's float32 Gaussian kernels, as ``cv2.GaussianBlur`` uses).
_TAPS: tuple[npt.NDArray[np.float32], ...] = tuple(
    np.ascontiguousarray(cv2.getGaussianKernel(k, sigma, cv2.CV_32F).ravel(), dtype=np.float32)
    for sigma, k in _BLURS
)
_K3 = np.ones((3, 3), np.uint8)
#: Edge points keep ``3 R_b + 1`` px from the field-of-view border, 3 px from strokes.
_INNER_MARGIN = math.ceil(3 * _RB) + 1
_STROKE_MARGIN = 3
#: Border bands: a row / column is uniform when its std and step are at most this.
_BAND_TOL = 1.0 / 1024.0
_QUANTILES = np.array([0.01, 0.05, 0.95, 0.99])


@dataclass(frozen=True)
class QualityReport:
    """Result of :func:`assess`.

    Attributes
    ----------
    ok : bool
        True when no issue was found.
    issues : tuple of str
        Issue codes from :data:`ISSUE_CODES`, in that order.
    measures : dict of str to float
        Every measure (keys :data:`MEASURES`).
    modality : str
        The threshold set used (``"generic"``, ``"ultrasound"`` or ``"xray"``).
    fov : (H, W) bool array or None
        The field-of-view mask at the analysis resolution (not part of :meth:`to_dict`).
        Kept bit-packed (1 bit per analysis pixel, so a report stays small when a
        stream of them is kept) and unpacked on first access.
    """

    ok: bool
    issues: tuple[str, ...]
    measures: dict[str, float] = field(default_factory=dict)
    modality: str = "generic"
    fov_packed: tuple[npt.NDArray[np.uint8], tuple[int, int]] | None = field(
        default=None, repr=False, compare=False
    )

    @functools.cached_property
    def fov(self) -> npt.NDArray[np.bool_] | None:
        """The field-of-view mask, (H, W) bool (a new array, unpacked once)."""
        if self.fov_packed is None:
            return None
        bits, shape = self.fov_packed
        n = shape[0] * shape[1]
        return np.unpackbits(bits, count=n).view(bool).reshape(shape)  # 0/1: no copy

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form: ``{"ok", "issues" (list), "measures", "modality"}``."""
        return {
            "ok": self.ok,
            "issues": list(self.issues),
            "measures": dict(self.measures),
            "modality": self.modality,
        }


def _nominal_range(
    dtype: np.dtype[Any] | None, img: npt.NDArray[np.float32]
) -> tuple[float, float, bool]:
    """Nominal value range of a frame (see the table in :func:`assess`) and whether it is
    a known range (False: the frame's own ``[min, max]``).  ``img`` is the frame as
    float32; it is scanned for its minimum and maximum only when the dtype does not fix
    the range (not for uint8)."""
    if dtype == np.uint8:
        return 0.0, 255.0, True
    lo, hi = _min_max(img)

    def bits_range(top: float) -> tuple[float, float, bool]:
        for b in _BIT_DEPTHS:
            if top <= float(2**b - 1):
                return 0.0, float(2**b - 1), True
        return 0.0, 65535.0, True

    if dtype == np.uint16:
        return bits_range(hi)
    if lo >= 0.0 and hi <= 1.0:
        return 0.0, 1.0, True
    if lo >= 0.0 and hi <= 255.0:
        return 0.0, 255.0, True
    return lo, hi, False


def _check_modality(modality: object) -> str:
    if modality is None:
        return "generic"
    if not isinstance(modality, str) or modality not in MODALITIES:
        raise InvalidInputError(f"modality must be None, 'ultrasound' or 'xray', got {modality!r}")
    return modality


def _check_analysis_size(analysis_size: object, mod: str) -> int:
    if analysis_size is None:
        return ANALYSIS_SIZE[mod]
    return check_int("analysis_size", analysis_size, 32, 4096)


def assess(
    image: Any,
    *,
    modality: str | None = None,
    value_range: tuple[float, float] | None = None,
    analysis_size: int | None = None,
) -> QualityReport:
    """Measure the quality of one frame and flag what makes it unfit for diagnosis.

    **Normalisation.** Every measure is computed on ``u = (x - lo) / (hi - lo)``, where
    ``[lo, hi]`` is the nominal range of the frame, so that thresholds mean the same for
    8-bit, 12/16-bit and float frames:

    =====================================  ===============================================
    frame                                  nominal range ``[lo, hi]``
    =====================================  ===============================================
    ``uint8``                              ``[0, 255]``
    ``uint16``                             ``[0, 2^b - 1]``, ``b`` the smallest of 12, 14
                                           and 16 bits that holds the maximum (12-bit
                                           detectors and up)
    float, values in ``[0, 1]``            ``[0, 1]``
    float, values in ``[0, 255]``          ``[0, 255]``
    any other float frame                  ``[min, max]`` of the frame: float data has no
                                           conventional range beyond these, so exposure
                                           cannot be judged (``underexposed`` does not
                                           fire, ``saturated`` counts the pixels at the
                                           maximum); pass ``value_range`` when it is known
    ``value_range=(lo, hi)`` given         ``[lo, hi]``
    =====================================  ===============================================

    **Analysis resolution.** The model sees the frame resized to its input size, so the
    gate does too: ``u`` is area-averaged (``cv2.INTER_AREA``) to ``S x S`` with ``S =
    analysis_size`` (default :data:`ANALYSIS_SIZE`: 256 for X-ray and generic, 128 for
    ultrasound, the reference models' inputs).  A side shorter than ``S`` is kept (not
    upsampled) and edge widths are scaled to model pixels by the geometric mean of the
    missing zoom factors (``analysis_scale``).  Area averaging also averages noise, as
    the model's own resize does.

    **Field of view** (:func:`field_of_view`, :attr:`QualityReport.fov`).  Ultrasound:
    of the four largest 8-connected components of ``u > 0.04`` after a 3x3 opening
    (which cuts thin text and graphics off the imaged area), the largest that is not
    flat (no single grey level, to 1/256, holds half of its pixels: caption bands and
    logos are flat, speckle is not), its holes filled (anechoic cysts), i.e. the sector
    or the linear-array rectangle; when there is none or it covers less than 2 % of the
    frame, the whole frame.  X-ray and generic: the frame minus uniform border bands
    (collimator shadows, shutters, padding): starting at each side, rows or columns
    whose standard deviation and step from the outermost one are at most 1/1024 of the
    range are cut, up to 45 % of the side, twice (so that side bands do not hide
    top/bottom bands); air beside the body is not that uniform unless the display
    clipped it.  **Annotations**: inside the field of view,
    pixels of a white top-hat (``u - opening_5x5(u)``) above 0.25 with ``u > 0.6`` are
    burned-in text, calipers and graphics; they are excluded from every statistic below
    and, dilated by 3 px, from the edge points.

    **Measures** (keys of ``measures``, all floats; pixels are analysis pixels inside the
    field of view, annotations excluded):

    ===========================  =========================================================
    key                          meaning
    ===========================  =========================================================
    ``range_lo``, ``range_hi``   the nominal range used, in image units
    ``analysis_scale``           model px per analysis px (1 unless the frame is smaller
                                 than ``S``)
    ``fov_fraction``             field-of-view pixels / analysis pixels
    ``annotation_fraction``      annotation pixels / field-of-view pixels
    ``mean``, ``contrast_rms``   mean and standard deviation of ``u``
    ``contrast_michelson``       ``(p95 - p5) / (p95 + p5)`` of ``u`` (0 when both are 0)
    ``dynamic_range``            ``p99 - p1`` of ``u``, the fraction of the range in use
    ``p99``                      99th percentile of ``u``
    ``fraction_saturated``       fraction of pixels whose whole footprint is at the top
                                 code (area average within half a code of ``hi``; half an
                                 8-bit code, 0.5/255 of the range, for float frames)
    ``fraction_underexposed``    the same at the bottom code ``lo``
    ``noise_sigma``              Immerkaer [1]_ noise sigma of ``u`` at the analysis
                                 resolution, over the eroded field of view
    ``edge_sigma_px``            sharpness: Gaussian edge-spread sigma of the strongest
                                 edges in model px (0 when not measured, see below)
    ``edge_count``               edge points the estimate used
    ===========================  =========================================================

    Percentiles come from a 1024-bin histogram of ``u`` on ``[0, 1]`` (interpolated in
    the bin, so to within 1/1024), on every second analysis pixel in each direction when
    there are more than 16384.

    **Edge sharpness** (gradient-ratio estimate of the edge-spread function, in the
    spirit of the ISO 12233 edge-spread / MTF concept [3]_ and of edge-width blur
    measures [2]_, [4]_).  For an edge blurred by a Gaussian of sigma ``s`` the peak of
    the derivative after a further Gaussian blur of ``R`` is proportional to ``1 /
    sqrt(s^2 + R^2)`` whatever the edge height.  The gradient (3x3 Sobel / 8) is taken
    at ``R_a = 1`` and ``R_b = 2`` px; edge points are the local maxima of the ``R_b``
    gradient magnitude along its direction (non-maximum suppression, 4 directions) that
    exceed ``k N_b sigma`` (``N_b`` the noise gain of that derivative, ``k = 10``, so
    only edges well above the noise count; ultrasound ``k = 4``: there ``sigma`` is
    mostly speckle, the signal whose grain the blur widens), lie inside the field of
    view eroded by 7 px (the sector rim and collimator edges are not anatomy) and away
    from annotations; the strongest quarter of them is kept (magnitudes at or above the
    1/256 histogram bin of the largest where a quarter is reached).  With ``r^2 = (mean
    g_b^2 - 2 N_b^2 sigma^2) / (mean g_a^2 - 2 N_a^2 sigma^2)`` over those points (noise
    power removed from both), ``s^2 = (r^2 R_b^2 - R_a^2) / (1 - r^2) - 0.45`` (0.45:
    the derivative's own width on a perfect step), times ``analysis_scale``.  Both
    scales are smoother than the noise, so the estimate hardly changes with dose or
    denoising, while a blur before the noise widens it; a slanted step blurred by ``s =
    1 ... 3`` px reads ``s`` to about 0.1 px.  Fewer than 16 edge points: not measured
    (0, and ``blurred`` cannot fire).

    **Issues** (stable codes, reported in this order; ``blank`` suppresses the others):

    ================  ==============================  =========  ===========  ======
    code              fires when                      generic    ultrasound   xray
    ================  ==============================  =========  ===========  ======
    ``blank``         ``contrast_rms <``              0.004      0.004        0.004
    ``blurred``       ``edge_sigma_px >``             2.5        1.0          3.0
    ``too_noisy``     ``noise_sigma >``               0.05       0.2          0.06
    ``saturated``     ``fraction_saturated >``        0.05       0.02         0.25
    ``underexposed``  ``fraction_underexposed >``     0.25       0.5          0.5
                      or ``p99 <``                    0.15       0.1          0.15
    ``low_contrast``  ``dynamic_range <``             0.15       0.15         0.1
    ================  ==============================  =========  ===========  ======

    The same numbers are in :data:`THRESHOLDS`.  ``blurred`` was calibrated on a blur x
    dose x size sweep of the package's phantoms (scripts/calibrate_quality.py, tables in
    bench/RESULTS.md); ultrasound speckle is signal (``too_noisy`` only catches frames
    far noisier than any B-mode phantom).  They are a screening aid, not a clinical
    standard.

    **X-ray ``blurred``: the issue-14 targets cannot all be met on the package's
    phantoms.**  The targets ask for <= 1 % refusal of in-distribution frames and >= 90 %
    refusal of frames whose detector blur is 2 model px.  In ``me.synth.chest_xray`` the
    anatomy's own edge blur (0-1.5 px) and the detector blur (0.4-1.4 px in
    distribution) are the same Gaussian on the same edges, both before the noise, so a
    frame only shows their quadrature sum: in-distribution frames reach a total of 1.93
    px at their 99th percentile (2.05 at most), blur-2 frames start at 2.00 (2.006 at
    their 10th percentile); in the calibration sweep's 316 in-distribution frames the
    99th percentile is 2.016, and the true total blur itself, thresholded there, would
    refuse only 83.5 % of the blur-2 frames.  Meeting both needs a per-frame estimate of
    the total edge blur accurate to ~0.03 px, while the anatomy's non-step structure
    (ribs 3-8 px wide, the square-root profiles of body and spine, the random display
    curves) scatters every edge-width measure tried by 0.5 px or more (bench/RESULTS.md:
    this estimate, other scales and fractions of the strongest edges, low percentiles of
    per-point widths).  The threshold, 3.0, is the lowest that keeps in-distribution refusal <= 1 %
    at every dose and size; it refuses ~20 % of blur-2 and ~87 % of blur-3 frames.

    **Implementation.**  The measures equal those of the previous OpenCV / NumPy
    formulation of these rules (tests/quality_helpers.py) on every SIMD target: the
    masks, pixel counts and quantiles exactly, mean and contrast to 1e-6, the noise sigma
    to 1e-7, ``edge_sigma_px`` to 2e-3 px and ``edge_count`` to 1 % (the blurs sum their
    taps in another order than OpenCV's, which can move a point across the
    non-maximum-suppression or strongest-quarter cut).

    Parameters
    ----------
    image : (M, N) array of uint8, uint16, float32 or float64, M, N >= 3
    modality : {None, "ultrasound", "xray"}, optional
        Threshold set and field-of-view rule; ``None`` uses the generic ones.
    value_range : (float, float), optional
        Nominal ``(lo, hi)`` in image units, ``lo < hi``, overriding the table above (e.g.
        the stored bit depth of a DICOM frame).
    analysis_size : int, optional
        Side of the analysis image (32 ... 4096); default :data:`ANALYSIS_SIZE`.

    Returns
    -------
    QualityReport

    Raises
    ------
    InvalidInputError
        For an invalid image, modality, value range or analysis size.

    References
    ----------
    .. [1] J. Immerkaer, "Fast noise variance estimation," Computer Vision and Image
       Understanding 64(2):300-302, 1996.
    .. [2] P. Marziliano, F. Dufaux, S. Winkler and T. Ebrahimi, "A no-reference
       perceptual blur metric," Proc. IEEE ICIP 2002, vol. 3, pp. 57-60 (blur as edge
       width).
    .. [3] ISO 12233:2017, "Photography - Electronic still picture imaging - Resolution
       and spatial frequency responses" (edge-spread function, slanted-edge method).
    .. [4] S. Zhuo and T. Sim, "Defocus map estimation from a single image," Pattern
       Recognition 44(9):1852-1858, 2011 (edge blur from the gradient ratio of an image
       and its re-blurred copy).
    .. [5] E. Peli, "Contrast in complex images," J. Opt. Soc. Am. A 7(10):2032-2040, 1990
       (RMS and Michelson contrast).
    """
    mod = _check_modality(modality)
    size = _check_analysis_size(analysis_size, mod)
    dtype = image.dtype if isinstance(image, np.ndarray) else None
    native = dtype.newbyteorder("=") if dtype is not None and dtype.byteorder in "<>" else dtype
    img = as_image2d(image, min_side=3)
    return _assess_float(img, native, mod, value_range, size)


def field_of_view(
    image: Any,
    *,
    modality: str | None = None,
    value_range: tuple[float, float] | None = None,
) -> npt.NDArray[np.bool_]:
    """The field-of-view mask of a frame at the frame's own resolution.

    The imaged area (ultrasound sector or linear-array rectangle, X-ray collimated area)
    without the background around it; computed at the analysis resolution (the rules are
    in :func:`assess`) and resized back with nearest-neighbour sampling.  Burned-in text
    and graphics outside the imaged area are outside the mask.

    Parameters
    ----------
    image : (M, N) array of uint8, uint16, float32 or float64, M, N >= 3
    modality : {None, "ultrasound", "xray"}, optional
        ``"ultrasound"``: largest bright region, filled; otherwise the frame minus
        uniform border bands.
    value_range : (float, float), optional
        Nominal ``(lo, hi)`` as in :func:`assess`.

    Returns
    -------
    (M, N) bool array

    Raises
    ------
    InvalidInputError
        For an invalid image, modality or value range.
    """
    mod = _check_modality(modality)
    dtype = image.dtype if isinstance(image, np.ndarray) else None
    native = dtype.newbyteorder("=") if dtype is not None and dtype.byteorder in "<>" else dtype
    img = as_image2d(image, min_side=3)
    lo, hi, _ = _range_of(img, native, value_range)
    a, _, work = _analysis_image(img, lo, hi, ANALYSIS_SIZE[mod])
    fov = _fov(a, mod, work)
    h, w = img.shape
    full = cv2.resize(fov, (w, h), interpolation=cv2.INTER_NEAREST)
    return np.asarray(full, bool)


def _range_of(
    img: npt.NDArray[np.float32],
    native: np.dtype[Any] | None,
    value_range: tuple[float, float] | None,
) -> tuple[float, float, bool]:
    if value_range is not None:
        lo, hi = _check_value_range(value_range)
        return lo, hi, True
    return _nominal_range(native, img)


F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]


class _Work:
    """Scratch buffers of one analysis shape, reused frame after frame by one thread, so
    that a steady stream of frames allocates only the small results (the Diagnoser's
    rule: no frame-sized allocation per frame; the C++ kernels take theirs from the
    thread's reusable scratch).  Masks are 0/255 uint8."""

    def __init__(self, shape: tuple[int, int]) -> None:
        h, w = shape
        self.shape = shape
        self.a: F32 = np.empty(shape, np.float32)
        self.m = [np.empty(shape, np.uint8) for _ in range(3)]
        self.fov: U8 = np.empty(shape, np.uint8)
        self.labels = np.empty(shape, np.int32)
        self.pad: U8 = np.empty((h + 2, w + 2), np.uint8)
        self.flood: U8 = np.empty((h + 4, w + 4), np.uint8)
        self.hist256: F32 = np.empty((256, 1), np.float32)


_local = threading.local()


def _cmp(src: npt.NDArray[Any], value: float, op: int, dst: U8) -> None:
    """``dst = 255 where src <op> value else 0`` (``cv2.compare`` with a scalar, which
    OpenCV's stubs do not declare)."""
    cv2.compare(src, value, op, dst)  # type: ignore[call-overload]


def _work(shape: tuple[int, int]) -> _Work:
    work: _Work | None = getattr(_local, "work", None)
    if work is None or work.shape != shape:
        work = _Work(shape)
        _local.work = work
    return work


def _analysis_image(img: F32, lo: float, hi: float, size: int) -> tuple[F32, float, _Work]:
    """``u`` area-averaged to at most ``size x size`` (in the thread's buffer), the model
    px per analysis px and the thread's buffers."""
    h, w = img.shape
    th, tw = min(h, size), min(w, size)
    work = _work((th, tw))
    a = work.a
    if (th, tw) != (h, w):
        cv2.resize(img, (tw, th), dst=a, interpolation=cv2.INTER_AREA)
    else:
        np.copyto(a, img)
    scale = hi - lo if hi > lo else 1.0
    np.subtract(a, np.float32(lo), out=a)
    np.multiply(a, np.float32(1.0 / scale), out=a)
    zoom = math.sqrt((size / th) * (size / tw))
    return a, zoom, work


def _imaged_region(work: _Work, binary: U8) -> bool:
    """Fill ``work.fov`` with the largest of the (at most 4 largest) components of
    ``binary`` that is not flat (no single grey level, to 1/256, holds half of its
    pixels: a caption band or a logo is flat, speckle is not, even blurred), its holes
    filled; False when there is none."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(
        binary, labels=work.labels, connectivity=8, ltype=cv2.CV_32S
    )
    if n <= 1:
        return False
    comp = work.m[2]
    order = 1 + np.argsort(stats[1:, cv2.CC_STAT_AREA])[::-1][:4]
    for k in order:
        _cmp(labels, int(k), cv2.CMP_EQ, comp)
        hist = cv2.calcHist([work.a], [0], comp, [256], [0.0, 1.0 + 1e-6], hist=work.hist256)
        if float(hist.max()) <= 0.5 * float(stats[k, cv2.CC_STAT_AREA]):
            # fill holes: what the border cannot reach through the background
            pad = work.pad
            pad[:] = 0
            pad[1:-1, 1:-1] = comp
            work.flood[:] = 0
            cv2.floodFill(pad, work.flood, (0, 0), 128)
            _cmp(pad[1:-1, 1:-1], 128, cv2.CMP_NE, work.fov)
            return True
    return False


def _ultrasound_fov(a: F32, work: _Work) -> U8:
    """The ultrasound imaged region (0/255) in ``work.fov`` (rules in :func:`assess`)."""
    h, w = a.shape
    fov = work.fov
    binary, opened = work.m[0], work.m[1]
    _cmp(a, _US_BACKGROUND, cv2.CMP_GT, binary)
    cv2.morphologyEx(binary, cv2.MORPH_OPEN, _K3, dst=opened)
    if not _imaged_region(work, opened) or cv2.countNonZero(fov) < 0.02 * h * w:
        fov[:] = 255
    return fov


def _border_bands(a: F32) -> tuple[int, int, int, int]:
    """Rows/columns cut at each side (top, bottom, left, right): uniform border bands
    (``_core.quality_bands``, csrc/kernels/quality.hpp)."""
    t, b, left, r = _core.quality_bands(a, _BAND_TOL)
    return int(t), int(b), int(left), int(r)


def _fov(a: F32, mod: str, work: _Work) -> U8:
    """The field-of-view mask (0/255) in ``work.fov`` (rules in :func:`assess`)."""
    if mod == "ultrasound":
        return _ultrasound_fov(a, work)
    t, b, left, r = _border_bands(a)
    fov = work.fov
    fov[:] = 0
    fov[t:b, left:r] = 255
    return fov


def _edge_width(
    n_all: float, n_used: float, mean_a2: float, mean_b2: float, sigma: float
) -> tuple[float, int]:
    """Gradient-ratio Gaussian edge sigma (analysis px) from the edge statistics of
    ``_core.quality_measures`` (mean ``|g_a|^2`` and ``|g_b|^2`` over the strongest edge
    points) and the number of edge points it reports (see :func:`assess`)."""
    if n_all < _MIN_EDGES:
        return 0.0, int(n_all)
    sa = mean_a2 - 2.0 * (_NA * sigma) ** 2
    sb = mean_b2 - 2.0 * (_NB * sigma) ** 2
    if sa <= 0.0:
        return 0.0, 0
    r2 = min(max(sb / sa, 0.0), 0.9999)
    v = (r2 * _RB * _RB - _RA * _RA) / (1.0 - r2) - _S0_SQ
    return math.sqrt(max(v, 0.0)), int(n_used)


def _assess_float(
    img: F32,
    native: np.dtype[Any] | None,
    mod: str,
    value_range: tuple[float, float] | None = None,
    analysis_size: int | None = None,
) -> QualityReport:
    """:func:`assess` of a validated C-contiguous float32 image whose original dtype was
    ``native`` (``Diagnoser`` converts a frame once and shares it between the stages).
    The area downsampling is OpenCV's, the ultrasound imaged region OpenCV's connected
    components; everything else is one call of ``_core.quality_measures`` (the region
    and edge passes of csrc/kernels/quality.hpp, the GIL released once)."""
    size = ANALYSIS_SIZE[mod] if analysis_size is None else analysis_size
    lo, hi, known = _range_of(img, native, value_range)
    scale = hi - lo if hi > lo else 1.0
    a, zoom, work = _analysis_image(img, lo, hi, size)
    ah, aw = a.shape
    given = mod == "ultrasound"
    if given:
        _ultrasound_fov(a, work)
    integer = native is not None and native.kind in "ui" and value_range is None
    tol = 0.5 / scale if integer else 0.5 / 255.0
    region, quant, edges, _ = _core.quality_measures(
        a,
        work.fov,
        given,
        _BAND_TOL,
        _STROKE_TOPHAT,
        _STROKE_LEVEL,
        _INNER_MARGIN,
        _STROKE_MARGIN,
        tol,
        1.0 - tol,
        _QUANTILES,
        _TAPS[0],
        _TAPS[1],
        _EDGE_K[mod] * _NB,
        1e-3,
        _EDGE_TOP,
        _MIN_EDGES,
    )
    n_fov, n_strokes, n_stat, _n_inner, sigma, mean, std, n_sat, n_under = region
    p1, p5, p95, p99 = quant
    if std < 1e-6:  # sqrt(E[u^2] - E[u]^2) of a constant frame: rounding, not contrast
        std = 0.0
    edge_sigma, n_edges = _edge_width(*edges, sigma)
    measures = {
        "range_lo": float(lo),
        "range_hi": float(hi),
        "analysis_scale": zoom,
        "fov_fraction": n_fov / float(ah * aw),
        "annotation_fraction": n_strokes / max(n_fov, 1.0),
        "mean": mean,
        "contrast_rms": std,
        "contrast_michelson": (p95 - p5) / (p95 + p5) if p95 + p5 > 0.0 else 0.0,
        "dynamic_range": p99 - p1,
        "p99": p99,
        "fraction_saturated": n_sat / n_stat,
        "fraction_underexposed": n_under / n_stat,
        "noise_sigma": sigma,
        "edge_sigma_px": edge_sigma * zoom,
        "edge_count": float(n_edges),
    }
    issues = _issues(measures, THRESHOLDS[mod], exposure_known=known)
    packed = (np.packbits(work.fov.ravel()), (ah, aw))  # nonzero packs as 1
    return QualityReport(
        ok=not issues, issues=issues, measures=measures, modality=mod, fov_packed=packed
    )


def _check_value_range(value_range: object) -> tuple[float, float]:
    if not isinstance(value_range, (tuple, list)) or len(value_range) != 2:
        raise InvalidInputError(
            f"value_range must be a (lo, hi) pair of numbers, got {value_range!r}"
        )
    lo = check_float("value_range[0]", value_range[0])
    hi = check_float("value_range[1]", value_range[1])
    if not hi > lo:
        raise InvalidInputError(f"value_range must have lo < hi, got ({lo:g}, {hi:g})")
    return lo, hi


def _issues(
    m: Mapping[str, float], t: Mapping[str, float], *, exposure_known: bool
) -> tuple[str, ...]:
    if m["contrast_rms"] < t["blank_contrast_rms"]:
        return ("blank",)
    found = []
    if m["edge_count"] > 0 and m["edge_sigma_px"] > t["blurred_edge_sigma_px"]:
        found.append("blurred")
    if m["noise_sigma"] > t["too_noisy_sigma"]:
        found.append("too_noisy")
    if m["fraction_saturated"] > t["saturated_fraction"]:
        found.append("saturated")
    if exposure_known and (
        m["fraction_underexposed"] > t["underexposed_fraction"] or m["p99"] < t["underexposed_p99"]
    ):
        found.append("underexposed")
    if m["dynamic_range"] < t["low_contrast_dynamic_range"]:
        found.append("low_contrast")
    return tuple(found)
