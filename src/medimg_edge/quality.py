"""Image-quality gate: is this frame good enough to diagnose?

:func:`assess` measures sharpness, noise, contrast and exposure of one frame and reports
stable issue codes.  C++ (sharpness sums and the histogram summary):
csrc/kernels/stats.hpp; tests: tests/test_quality.py; benchmarks:
bench/test_bench_extract.py.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _core
from ._errors import InvalidInputError
from ._validation import as_image2d, check_float
from ._validation import value_range as _min_max
from .denoise._noise import _immerkaer_sigma_of_sum

__all__ = [
    "ISSUE_CODES",
    "MEASURES",
    "MODALITIES",
    "THRESHOLDS",
    "QualityReport",
    "assess",
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

#: Accepted ``modality`` values (``None`` selects the ``"generic"`` thresholds).
MODALITIES: tuple[str, ...] = ("ultrasound", "xray")


def _frozen(d: dict[str, float]) -> Mapping[str, float]:
    return MappingProxyType(d)


#: Thresholds per modality (see :func:`assess` for the table and the rules).
THRESHOLDS: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {
        "generic": _frozen(
            {
                "blank_contrast_rms": 0.004,
                "blurred_blur_effect": 0.5,
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
                "blurred_blur_effect": 0.6,
                "too_noisy_sigma": 0.08,
                "saturated_fraction": 0.02,
                "underexposed_fraction": 0.75,
                "underexposed_p99": 0.1,
                "low_contrast_dynamic_range": 0.15,
            }
        ),
        "xray": _frozen(
            {
                "blank_contrast_rms": 0.004,
                "blurred_blur_effect": 0.5,
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
    "mean",
    "contrast_rms",
    "contrast_michelson",
    "dynamic_range",
    "p99",
    "fraction_saturated",
    "fraction_underexposed",
    "noise_sigma",
    "sharpness_laplacian_var",
    "sharpness_tenengrad",
    "blur_effect",
)

_QUANTILES = np.array([0.01, 0.05, 0.95, 0.99])
_BIT_DEPTHS = (12, 14, 16)


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
        Every measure (keys :data:`MEASURES`), on the normalised image.
    modality : str
        The threshold set used (``"generic"``, ``"ultrasound"`` or ``"xray"``).
    """

    ok: bool
    issues: tuple[str, ...]
    measures: dict[str, float] = field(default_factory=dict)
    modality: str = "generic"

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


def assess(
    image: Any,
    *,
    modality: str | None = None,
    value_range: tuple[float, float] | None = None,
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

    **Measures** (keys of ``measures``, all floats):

    * ``range_lo``, ``range_hi``: the nominal range used, in image units;
    * ``mean``, ``contrast_rms`` (standard deviation), ``p99`` of ``u``;
    * ``contrast_michelson``: ``(p95 - p5) / (p95 + p5)`` of ``u`` (0 when both are 0);
    * ``dynamic_range``: ``p99 - p1`` of ``u``, the fraction of the nominal range in use;
    * ``fraction_saturated``: fraction of pixels ``x >= hi``; ``fraction_underexposed``:
      fraction of pixels ``x <= lo`` (clipped to the top / bottom code);
    * ``noise_sigma``: :func:`medimg_edge.denoise.estimate_noise` (Immerkaer) / ``(hi -
      lo)``;
    * ``sharpness_laplacian_var``: variance of the 4-neighbour Laplacian of ``u``
      (``cv2.Laplacian(u, cv2.CV_64F).var()``, reflect-101 border);
      ``sharpness_tenengrad``: mean of ``gx^2 + gy^2`` (3x3 Sobel of ``u``);
    * ``blur_effect``: the no-reference blur measure of Crete-Roffet et al. (2007) in
      ``[0, 1]`` (0 sharp, 1 fully blurred), the larger of the horizontal and vertical
      values: ``1 - sum max(0, D - D_b) / sum D`` with ``D`` the absolute differences of
      adjacent pixels and ``D_b`` the same after a 9-pixel box blur along that axis
      (reflect-101 border).  It does not depend on contrast or scale.

    **Issues** (stable codes, reported in this order; ``blank`` suppresses the others):

    ================  ==============================  =========  ===========  ======
    code              fires when                      generic    ultrasound   xray
    ================  ==============================  =========  ===========  ======
    ``blank``         ``contrast_rms <``              0.004      0.004        0.004
    ``blurred``       ``blur_effect >``               0.5        0.6          0.5
    ``too_noisy``     ``noise_sigma >``               0.05       0.08         0.06
    ``saturated``     ``fraction_saturated >``        0.05       0.02         0.25
    ``underexposed``  ``fraction_underexposed >``     0.25       0.75         0.5
                      or ``p99 <``                    0.15       0.1          0.15
    ``low_contrast``  ``dynamic_range <``             0.15       0.15         0.1
    ================  ==============================  =========  ===========  ======

    The same numbers are in :data:`THRESHOLDS`.  Ultrasound tolerates more speckle and
    a black background around the sector; X-ray tolerates quantum noise and saturated
    direct-exposure areas.  The thresholds were set on scikit-image and pydicom sample
    images and on the package's synthetic phantoms; they are a screening aid, not a
    clinical standard.

    Parameters
    ----------
    image : (M, N) array of uint8, uint16, float32 or float64, M, N >= 3
    modality : {None, "ultrasound", "xray"}, optional
        Threshold set; ``None`` uses the generic one.
    value_range : (float, float), optional
        Nominal ``(lo, hi)`` in image units, ``lo < hi``, overriding the table above (e.g.
        the stored bit depth of a DICOM frame).

    Returns
    -------
    QualityReport

    Raises
    ------
    InvalidInputError
        For an invalid image, modality or value range.

    References
    ----------
    .. [1] F. Crete, T. Dolmiere, P. Ladret and M. Nicolas, "The blur effect: perception
       and estimation with a new no-reference perceptual blur metric," Proc. SPIE 6492,
       Human Vision and Electronic Imaging XII, 2007. doi:10.1117/12.702790
    .. [2] J. L. Pech-Pacheco et al., "Diatom autofocusing in brightfield microscopy: a
       comparative study," ICPR 2000, pp. 314-317 (variance of the Laplacian).
    .. [3] E. Krotkov, "Focusing," Int. J. Computer Vision 1(3):223-237, 1988
       (Tenengrad).
    .. [4] J. Immerkaer, "Fast noise variance estimation," Computer Vision and Image
       Understanding 64(2):300-302, 1996.
    .. [5] E. Peli, "Contrast in complex images," J. Opt. Soc. Am. A 7(10):2032-2040, 1990
       (RMS and Michelson contrast).
    """
    mod = _check_modality(modality)
    dtype = image.dtype if isinstance(image, np.ndarray) else None
    native = dtype.newbyteorder("=") if dtype is not None and dtype.byteorder in "<>" else dtype
    img = as_image2d(image, min_side=3)
    return _assess_float(img, native, mod, value_range)


def _assess_float(
    img: npt.NDArray[np.float32],
    native: np.dtype[Any] | None,
    mod: str,
    value_range: tuple[float, float] | None = None,
) -> QualityReport:
    """:func:`assess` of a validated C-contiguous float32 image whose original dtype was
    ``native`` (``Diagnoser`` converts a frame once and shares it between the stages)."""
    if value_range is not None:
        lo, hi = _check_value_range(value_range)
        known = True
    else:
        lo, hi, known = _nominal_range(native, img)
    scale = hi - lo if hi > lo else 1.0
    # One call, the GIL released once: summary, sharpness sums and the noise sum.
    s, q, sh, noise_sum = _core.quality_stats(img, _QUANTILES, lo, hi)
    n = float(s["count"])
    p1, p5, p95, p99 = ((float(x) - lo) / scale for x in q)
    m2 = float(s["m2"])
    lap_mean = sh["lap_sum"] / n
    lap_var = max(sh["lap_sumsq"] / n - lap_mean * lap_mean, 0.0)
    blur = max(_blur(sh["diff_h"], sh["lost_h"]), _blur(sh["diff_v"], sh["lost_v"]))
    measures = {
        "range_lo": float(lo),
        "range_hi": float(hi),
        "mean": (float(s["mean"]) - lo) / scale,
        "contrast_rms": math.sqrt(m2) / scale if m2 > 0.0 else 0.0,
        "contrast_michelson": (p95 - p5) / (p95 + p5) if p95 + p5 > 0.0 else 0.0,
        "dynamic_range": p99 - p1,
        "p99": p99,
        "fraction_saturated": float(s["n_above"]) / n,
        "fraction_underexposed": float(s["n_below"]) / n,
        "noise_sigma": _immerkaer_sigma_of_sum(noise_sum, img.shape) / scale,
        "sharpness_laplacian_var": lap_var / (scale * scale),
        "sharpness_tenengrad": sh["tenengrad_sum"] / n / (scale * scale),
        "blur_effect": blur,
    }
    issues = _issues(measures, THRESHOLDS[mod], exposure_known=known)
    return QualityReport(ok=not issues, issues=issues, measures=measures, modality=mod)


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


def _blur(diff: float, lost: float) -> float:
    """Crete-Roffet blur along one axis: 1 - lost / diff (1.0 when the axis is flat)."""
    return 1.0 - lost / diff if diff > 0.0 else 1.0


def _issues(
    m: Mapping[str, float], t: Mapping[str, float], *, exposure_known: bool
) -> tuple[str, ...]:
    if m["contrast_rms"] < t["blank_contrast_rms"]:
        return ("blank",)
    found = []
    if m["blur_effect"] > t["blurred_blur_effect"]:
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
