"""Augmentation of raw frames: the ordinary processing real devices apply, for training and
for the robustness matrix.

Every transform works on the *raw* frame (before :func:`medimg_edge.preprocess.to_model_input`)
and returns the same dtype, shape and nominal range as its input (except
``resize_render``, which changes the size on purpose):

- ``uint8`` stays ``uint8`` over the full range 0 ... 255;
- ``uint16`` stays ``uint16`` within the frame's bit depth: the smallest of 8, 10, 12, 14 and
  16 bits that holds the frame's maximum (a 12-bit radiograph with ``max <= 4095`` stays in
  0 ... 4095);
- float frames become ``float32``, within [0, 1] when the input lies there, else within the
  input's own minimum and maximum.

Tone curves, noise and windows are defined on the frame's *data range* (its minimum to its
maximum), so a strength means the same for a 12-bit radiograph that only fills half of its
codes as for a full-range ultrasound screen.  Spatial scales are given in *model pixels*,
pixels at the model's input resolution: ``model_size`` is the model's input side (256 for the
X-ray model, 128 for ultrasound) and one model pixel is ``max(H, W) / model_size`` frame
pixels, so a blur of 1 model px looks the same to the model whatever the native size.

::

    from medimg_edge.training import _augment as aug
    rng = np.random.default_rng(7)
    frame, mask = aug.random_augment(sample.image, sample.mask, rng,
                                     modality="xray", model_size=256)
    for name in aug.TRANSFORMS:                       # the robustness matrix
        for s in aug.STRENGTHS[name]:
            out = aug.apply(name, sample.image, s, modality="xray", model_size=256, rng=rng)

NumPy and OpenCV only (no TensorFlow); every operation is a vectorised OpenCV/NumPy call on
float32 or the native integer type.  Random draws come from the ``numpy.random.Generator``
passed in; Gaussian noise fields are drawn by ``cv2.randn`` seeded from that generator
(``cv2.setRNGSeed``, OpenCV's per-thread generator), which is 3-4x faster than NumPy's, so a
result is deterministic given the generator's state in a given thread.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import cv2
import numpy as np
import numpy.typing as npt

from .._errors import InvalidInputError
from .._modality import check_modality

__all__ = ["STRENGTHS", "TRANSFORMS", "apply", "random_augment"]

F32 = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]

#: Names accepted by :func:`apply`.
TRANSFORMS: tuple[str, ...] = (
    "gamma",
    "spline_lut",
    "window",
    "unsharp",
    "clahe",
    "edge_enhance",
    "noise",
    "correlated_noise",
    "blur",
    "flip",
    "rotate",
    "shift",
    "collimation",
    "text",
    "calipers",
    "resize_render",
)

#: Strengths of each transform in the robustness matrix (at least three each; see
#: :func:`apply` for what a strength means).  Identity strengths are left out.
STRENGTHS: dict[str, tuple[float, ...]] = {
    "gamma": (0.5, 0.7, 1.4, 2.0),
    "spline_lut": (0.3, 0.6, 1.0),
    "window": (-0.15, 0.05, 0.1, 0.2),
    "unsharp": (0.5, 1.0, 2.0),
    "clahe": (1.0, 2.0, 4.0),
    "edge_enhance": (0.5, 1.0, 2.0),
    "noise": (0.01, 0.02, 0.03),
    "correlated_noise": (0.01, 0.02, 0.03),
    "blur": (0.5, 1.0, 1.5),
    "flip": (1.0, 2.0, 3.0),
    "rotate": (-8.0, -4.0, 4.0, 8.0),
    "shift": (-0.06, 0.03, 0.06),
    "collimation": (0.05, 0.1, 0.15),
    "text": (1.0, 3.0, 6.0),
    "calipers": (1.0, 2.0, 3.0),
    "resize_render": (128.0, 512.0, 1024.0, 2048.0, 3072.0),
}

#: Valid strength interval of each transform (inclusive bounds).
_BOUNDS: dict[str, tuple[float, float]] = {
    "gamma": (0.1, 10.0),
    "spline_lut": (0.0, 1.0),
    "window": (-0.45, 0.45),
    "unsharp": (0.0, 10.0),
    "clahe": (0.0, 40.0),
    "edge_enhance": (0.0, 10.0),
    "noise": (0.0, 0.5),
    "correlated_noise": (0.0, 0.5),
    "blur": (0.0, 10.0),
    "flip": (0.0, 3.0),
    "rotate": (-45.0, 45.0),
    "shift": (-0.45, 0.45),
    "collimation": (0.0, 0.45),
    "text": (0.0, 40.0),
    "calipers": (0.0, 10.0),
    "resize_render": (16.0, 4096.0),
}
#: Transforms whose strength must be a whole number.
_INTEGRAL = frozenset({"flip", "text", "calipers", "resize_render"})
#: Transforms that draw random numbers (``rng`` is required).
_RANDOM = frozenset({"spline_lut", "noise", "correlated_noise", "collimation", "text", "calipers"})

#: Default radius of ``apply("unsharp")`` and correlation length of
#: ``apply("correlated_noise")`` in model px; scale of ``edge_enhance``.
UNSHARP_RADIUS = 2.0
NOISE_CORRELATION = 2.0
EDGE_SIGMA = 0.7

#: A tone curve: a monotone map of [0, 1] onto [0, 1], evaluated on float64 arrays.
Tone = Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]]

#: Probabilities of :func:`random_augment` at ``strength=1`` (scaled by ``strength``,
#: capped at 1).
PROBABILITIES: dict[str, float] = {
    "tone": 0.8,  # of which gamma 60 %, spline 40 %
    "window": 0.5,
    "sharpen": 0.5,  # one of unsharp / clahe / edge_enhance, equally likely
    "noise": 0.5,  # white or correlated, equally likely
    "blur": 0.4,
    "flip": 0.5,
    "affine": 0.5,  # rotation and shift together
    "collimation": 0.3,  # X-ray; ultrasound: black border with probability 0.1
    "collimation_us": 0.1,
    "text": 0.5,
    "calipers": 0.3,  # ultrasound only
}


# ----------------------------------------------------------------------------- validation


def _check_frame(frame: Any) -> npt.NDArray[Any]:
    if not isinstance(frame, np.ndarray):
        raise InvalidInputError(
            f"frame must be a NumPy array, got {type(frame).__name__}; pass np.asarray(image)"
        )
    if frame.ndim != 2:
        raise InvalidInputError(
            f"frame must be a 2-D grayscale array, got shape {frame.shape}; convert colour "
            "frames to gray first (cv2.cvtColor)"
        )
    if frame.shape[0] < 8 or frame.shape[1] < 8:
        raise InvalidInputError(f"frame must be at least 8x8 pixels, got {frame.shape}")
    if frame.dtype == np.float64:
        frame = frame.astype(np.float32)
    elif frame.dtype not in (np.uint8, np.uint16, np.float32):
        raise InvalidInputError(
            f"frame dtype must be uint8, uint16, float32 or float64, got {frame.dtype}; "
            "convert it with .astype(np.float32)"
        )
    if frame.dtype == np.float32 and not bool(np.isfinite(frame).all()):
        raise InvalidInputError("frame contains NaN or Inf; replace them (np.nan_to_num)")
    return np.ascontiguousarray(frame)


def _check_common(modality: Any, model_size: Any) -> None:
    check_modality(modality)
    if (
        isinstance(model_size, bool)
        or not isinstance(model_size, (int, np.integer))
        or not 8 <= model_size <= 4096
    ):
        raise InvalidInputError(
            f"model_size must be the model's input side in pixels (an int in 8 ... 4096, "
            f"e.g. 256 for X-ray, 128 for ultrasound), got {model_size!r}"
        )


def _check_strength(name: str, strength: Any) -> float:
    if isinstance(strength, bool) or not isinstance(
        strength, (int, float, np.integer, np.floating)
    ):
        raise InvalidInputError(f"strength of {name!r} must be a number, got {strength!r}")
    s = float(strength)
    lo, hi = _BOUNDS[name]
    if not math.isfinite(s) or not lo <= s <= hi:
        raise InvalidInputError(
            f"strength of {name!r} must lie in [{lo}, {hi}], got {strength!r} (see the "
            "docstring of medimg_edge.training._augment.apply)"
        )
    if name in _INTEGRAL and s != round(s):
        raise InvalidInputError(f"strength of {name!r} must be a whole number, got {strength!r}")
    return s


# ----------------------------------------------------------------------------- ranges


class _Range:
    """Nominal and data range of a frame, and the conversions to and from float32."""

    def __init__(self, frame: npt.NDArray[Any]) -> None:
        self.dtype = frame.dtype
        lo, hi, _, _ = cv2.minMaxLoc(frame)
        self.dlo, self.dhi = float(lo), float(hi)
        if frame.dtype == np.uint8:
            self.nlo, self.nhi = 0.0, 255.0
        elif frame.dtype == np.uint16:
            bits = next(b for b in (8, 10, 12, 14, 16) if hi <= 2**b - 1)
            self.nlo, self.nhi = 0.0, float(2**bits - 1)
        elif lo >= 0.0 and hi <= 1.0:
            self.nlo, self.nhi = 0.0, 1.0
        else:
            self.nlo, self.nhi = self.dlo, self.dhi
        span = self.dhi - self.dlo
        self.span = span if span > 0 else max(self.nhi - self.nlo, 1.0)

    def with_data_of(self, frame: npt.NDArray[Any]) -> _Range:
        """The same nominal range with the data range of ``frame`` (a processed copy)."""
        out = object.__new__(_Range)
        out.__dict__.update(self.__dict__)
        lo, hi, _, _ = cv2.minMaxLoc(frame)
        out.dlo, out.dhi = float(lo), float(hi)
        out.span = out.dhi - out.dlo if out.dhi > out.dlo else self.span
        return out

    @property
    def integer(self) -> bool:
        return self.dtype != np.float32

    def to_float(self, frame: npt.NDArray[Any]) -> F32:
        if frame.dtype == np.float32:
            return frame.copy()
        return frame.astype(np.float32)

    def to_native(self, x: F32) -> npt.NDArray[Any]:
        """Clip to the nominal range and round to the frame's dtype."""
        if self.dtype == np.uint8:
            return cv2.add(x, 0.0, dtype=cv2.CV_8U)  # rounds and saturates to 0..255
        if self.dtype == np.uint16:
            out = cv2.add(x, 0.0, dtype=cv2.CV_16U)
            if self.nhi < 65535:
                np.minimum(out, np.uint16(self.nhi), out=out)
            return out
        np.clip(x, self.nlo, self.nhi, out=x)
        return x


# ----------------------------------------------------------------------------- tone curves


def _pchip(
    xk: npt.NDArray[np.float64], yk: npt.NDArray[np.float64], x: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Monotone piecewise-cubic Hermite interpolant through increasing knots, at ``x``.

    Slopes are the weighted harmonic means of Fritsch & Butland (1984), which keep the
    interpolant monotone (Fritsch & Carlson 1980).
    """
    h = np.diff(xk)
    delta = np.diff(yk) / h
    d = np.empty_like(yk)
    d[0], d[-1] = delta[0], delta[-1]
    w1 = 2.0 * h[1:] + h[:-1]
    w2 = h[1:] + 2.0 * h[:-1]
    d[1:-1] = (w1 + w2) / (w1 / delta[:-1] + w2 / delta[1:])
    k = np.clip(np.searchsorted(xk, x, side="right") - 1, 0, h.size - 1)
    t = (x - xk[k]) / h[k]
    t2, t3 = t * t, t * t * t
    y = (
        (2 * t3 - 3 * t2 + 1) * yk[k]
        + (t3 - 2 * t2 + t) * h[k] * d[k]
        + (-2 * t3 + 3 * t2) * yk[k + 1]
        + (t3 - t2) * h[k] * d[k + 1]
    )
    return np.clip(y, 0.0, 1.0)


def _gamma(g: float) -> Tone:
    def curve(t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.power(t, g)

    return curve


def _spline(amplitude: float, rng: np.random.Generator) -> Tone:
    """A random smooth monotone curve from [0, 1] onto [0, 1]; 0 is the identity."""
    n = 5  # intervals between knots
    g = rng.gamma(2.0, size=n)
    inc = (1.0 - amplitude) / n + amplitude * g / g.sum()
    yk = np.concatenate([[0.0], np.cumsum(inc)])
    yk /= yk[-1]
    xk = np.linspace(0.0, 1.0, n + 1)

    def curve(t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return _pchip(xk, yk, t)

    return curve


def _window(black: float, white: float) -> Tone:
    def curve(t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return np.clip((t - black) / (white - black), 0.0, 1.0)

    return curve


def _compose(first: Tone | None, then: Tone) -> Tone:
    if first is None:
        return then

    def curve(t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return then(first(t))

    return curve


def _apply_tone(frame: npt.NDArray[Any], curve: Tone, rg: _Range) -> npt.NDArray[Any]:
    """Map ``frame`` through a tone curve on its data range: a value ``v`` becomes
    ``dlo + span * curve((v - dlo) / span)`` (values outside the data range are clipped to
    it first).  Integer frames: one lookup table, the curve evaluated exactly at every
    code; float frames: evaluated at every pixel."""
    if rg.integer:
        codes = np.arange(int(rg.nhi) + 1, dtype=np.float64)
        t = np.clip((codes - rg.dlo) / rg.span, 0.0, 1.0)
        lut = np.clip(np.rint(rg.dlo + rg.span * curve(t)), rg.nlo, rg.nhi)
        if frame.dtype == np.uint8:
            return cv2.LUT(frame, lut.astype(np.uint8))
        # mode="clip" with ``out`` is ~4x faster than the default (no bounds-error path)
        return np.take(lut.astype(np.uint16), frame, out=np.empty_like(frame), mode="clip")
    t = np.clip((frame.astype(np.float64) - rg.dlo) / rg.span, 0.0, 1.0)
    out = (rg.dlo + rg.span * curve(t)).astype(np.float32)
    return rg.to_native(out)


# ----------------------------------------------------------------------------- filters


def _gauss(x: F32, sigma: float) -> F32:
    """Gaussian filter of standard deviation ``sigma`` px (reflect borders).

    Sigmas above 3 px are filtered on a copy area-downsampled by ``f = max(2, sigma // 3)``
    (the box's variance ``(f**2 - 1) / 12`` subtracted) and interpolated back bilinearly:
    within about 4 % of the exact filter's peak response, at a fraction of the cost.
    """
    if sigma <= 0.0:
        return x.copy()
    if sigma <= 3.0:
        k = 2 * math.ceil(3.0 * sigma) + 1
        return cast(F32, cv2.GaussianBlur(x, (k, k), sigma, borderType=cv2.BORDER_REFLECT_101))
    f = max(2, int(sigma / 3.0))
    h, w = x.shape
    small = cv2.resize(
        x, (max(1, round(w / f)), max(1, round(h / f))), interpolation=cv2.INTER_AREA
    )
    s2 = math.sqrt(max(sigma * sigma - (f * f - 1) / 12.0, 0.25)) / f
    k = 2 * math.ceil(3.0 * s2) + 1
    small = cv2.GaussianBlur(small, (k, k), s2, borderType=cv2.BORDER_REFLECT_101)
    return cast(F32, cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR))


def _model_px(shape: tuple[int, ...], model_size: int) -> float:
    return max(shape[0], shape[1]) / float(model_size)


def _unsharp(x: F32, amount: float, radius_px: float) -> F32:
    blurred = _gauss(x, radius_px)
    # x + amount * (x - blurred)
    return cast(F32, cv2.addWeighted(x, 1.0 + amount, blurred, -amount, 0.0))


def _edge_enhance(x: F32, amount: float, sigma_px: float) -> F32:
    smooth = _gauss(x, sigma_px)
    lap = cv2.Laplacian(smooth, cv2.CV_32F, ksize=1, borderType=cv2.BORDER_REFLECT_101)
    return cast(F32, cv2.addWeighted(x, 1.0, lap, -amount * max(sigma_px, 0.5) ** 2, 0.0))


def _clahe(x: F32, clip: float, rg: _Range) -> F32:
    """CLAHE on an 8-bit quantisation ``q`` of the data range, applied as the change it
    makes, ``x + (clahe(q) - q) * span / 255``: detail finer than one 8-bit step is kept
    (OpenCV's 16-bit CLAHE uses 65536 histogram bins, which makes its clip limit
    degenerate at 1 count per bin for usual tile sizes)."""
    scale = 255.0 / rg.span
    y = cv2.addWeighted(x, scale, x, 0.0, -rg.dlo * scale)
    q = cv2.add(y, 0.0, dtype=cv2.CV_8U)
    eq = cv2.createCLAHE(clipLimit=clip, tileGridSize=(8, 8)).apply(q)
    change = cv2.subtract(eq, q, dtype=cv2.CV_32F)
    return cast(F32, cv2.scaleAdd(change, 1.0 / scale, x))


def _randn(shape: tuple[int, int], rng: np.random.Generator) -> F32:
    cv2.setRNGSeed(int(rng.integers(0, 2**31 - 1)))
    z = np.empty(shape, np.float32)
    cv2.randn(z, np.zeros(1), np.ones(1))
    return z


def _white_noise(x: F32, sigma: float, rg: _Range, rng: np.random.Generator) -> F32:
    z = _randn((x.shape[0], x.shape[1]), rng)
    return cast(F32, cv2.scaleAdd(z, sigma * rg.span, x))


def _correlated_noise(
    x: F32, sigma: float, corr_model_px: float, px: float, rg: _Range, rng: np.random.Generator
) -> F32:
    """Gaussian-filtered white noise of standard deviation ``sigma * span``, correlation
    length ``corr_model_px``; drawn on a grid of one model pixel and interpolated up."""
    h, w = x.shape
    step = max(px, 1.0)
    gh, gw = max(4, round(h / step)), max(4, round(w / step))
    z = _randn((gh, gw), rng)
    z = _gauss(z, corr_model_px * px / step)
    _, sd = cv2.meanStdDev(z)
    sd0 = float(sd[0, 0]) or 1.0
    if (gh, gw) != (h, w):
        z = cast(F32, cv2.resize(z, (w, h), interpolation=cv2.INTER_LINEAR))
    return cast(F32, cv2.scaleAdd(z, sigma * rg.span / sd0, x))


def _outside_fov(frame: npt.NDArray[Any], rg: _Range) -> Mask | None:
    """The black area outside an ultrasound sector: pixels at the nominal minimum, opened
    by a 5x5 square (so dark speckle inside the sector does not count); None if empty."""
    zero = (frame <= rg.nlo).view(np.uint8)
    if not zero.any():
        return None
    opened = cv2.morphologyEx(zero, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    return opened.astype(bool) if opened.any() else None


def _keep_outside(out: npt.NDArray[Any], ref: npt.NDArray[Any], outside: Mask | None) -> None:
    """Restore ``ref`` outside the field of view: a device's gain, tone curve, filters and
    noise act on the image, not on the black around the sector."""
    if outside is not None and out is not ref:
        np.copyto(out, ref, where=outside)


# ----------------------------------------------------------------------------- geometry


def _affine_matrix(shape: tuple[int, ...], angle: float, dx: float, dy: float) -> F32:
    h, w = shape[0], shape[1]
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle, 1.0)
    m[0, 2] += dx * w
    m[1, 2] += dy * h
    return m.astype(np.float32)


def _warp(
    frame: npt.NDArray[Any], mask: Mask | None, m: F32, modality: str
) -> tuple[npt.NDArray[Any], Mask | None]:
    h, w = frame.shape
    if modality == "xray":
        border, value = cv2.BORDER_REFLECT_101, 0.0
    else:  # the sector moves; what comes in is black
        border, value = cv2.BORDER_CONSTANT, 0.0
    out = cv2.warpAffine(
        frame, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=border, borderValue=value
    )
    if mask is None:
        return out, None
    return out, _warp_mask(mask, m)


def _warp_mask(mask: Mask, m: F32) -> Mask:
    """Nearest-neighbour warp of a bool mask, computed only over where its bounding box
    lands (a lesion mask is small; a full-frame warp would cost as much as the frame's)."""
    h, w = mask.shape
    out = np.zeros((h, w), np.bool_)
    src = mask.view(np.uint8)
    bx, by, bw, bh = cv2.boundingRect(src)
    if bw == 0 or bh == 0:
        return out
    corners = np.array(
        [[bx, by, 1], [bx + bw, by, 1], [bx, by + bh, 1], [bx + bw, by + bh, 1]], np.float64
    )
    dst = corners @ m.astype(np.float64).T
    x0 = max(0, int(np.floor(dst[:, 0].min())) - 2)
    y0 = max(0, int(np.floor(dst[:, 1].min())) - 2)
    x1 = min(w, int(np.ceil(dst[:, 0].max())) + 3)
    y1 = min(h, int(np.ceil(dst[:, 1].max())) + 3)
    if x1 <= x0 or y1 <= y0:
        return out
    shifted = m.astype(np.float64).copy()
    shifted[0, 2] -= x0
    shifted[1, 2] -= y0
    roi = cv2.warpAffine(
        src,
        shifted,
        (x1 - x0, y1 - y0),
        flags=cv2.INTER_NEAREST,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    out[y0:y1, x0:x1] = roi.view(np.bool_)
    return out


def _flip(
    frame: npt.NDArray[Any], mask: Mask | None, code: int
) -> tuple[npt.NDArray[Any], Mask | None]:
    # code 1: horizontal, 2: vertical, 3: both
    cv_code = {1: 1, 2: 0, 3: -1}[code]
    out = cv2.flip(frame, cv_code)
    if mask is None:
        return out, None
    return out, cv2.flip(mask.view(np.uint8), cv_code).astype(bool)


# ----------------------------------------------------------------------------- collimation


def _collimate(
    x: npt.NDArray[Any],
    fraction: float,
    rg: _Range,
    modality: str,
    rng: np.random.Generator,
) -> npt.NDArray[Any]:
    """Borders on 1-4 sides, each ``U(0.5, 1) * fraction`` of the side deep (the first
    side exactly ``fraction``).  X-ray: bright (beam blocked: high log-response) or dark
    (masked by the device), uniform or a linear gradient; ultrasound: black."""
    h, w = x.shape
    nsides = int(rng.integers(1, 5))
    sides = rng.permutation(4)[:nsides]
    for i, side in enumerate(sides):
        f = fraction if i == 0 else fraction * float(rng.uniform(0.5, 1.0))
        depth = max(1, round(f * (h if side in (0, 1) else w)))
        if modality == "ultrasound":
            v0 = v1 = rg.nlo
        elif rng.random() < 0.6:  # bright
            v0 = rg.dlo + rg.span * float(rng.uniform(0.85, 1.0))
            v1 = v0 if rng.random() < 0.5 else rg.dlo + rg.span * float(rng.uniform(0.6, 0.9))
        else:
            v0 = rg.nlo if rng.random() < 0.5 else rg.dlo + rg.span * float(rng.uniform(0, 0.1))
            v1 = v0 if rng.random() < 0.5 else rg.dlo + rg.span * float(rng.uniform(0.1, 0.3))
        ramp = np.linspace(v0, v1, depth, dtype=np.float32)  # from the edge inwards
        if side == 0:  # top
            x[:depth, :] = ramp[:, None]
        elif side == 1:  # bottom
            x[h - depth :, :] = ramp[::-1, None]
        elif side == 2:  # left
            x[:, :depth] = ramp[None, :]
        else:  # right
            x[:, w - depth :] = ramp[None, ::-1]
    return x


# ----------------------------------------------------------------------------- annotations

_FONTS = (
    cv2.FONT_HERSHEY_SIMPLEX,
    cv2.FONT_HERSHEY_PLAIN,
    cv2.FONT_HERSHEY_DUPLEX,
    cv2.FONT_HERSHEY_COMPLEX_SMALL,
)
_XRAY_WORDS = (
    "L", "R", "PA", "AP", "AP ERECT", "AP SUPINE", "PORTABLE", "SEMI-ERECT", "LAT", "INSP",
    "GRID", "CHEST", "MOBILE", "SITTING", "EXP",
)  # fmt: skip
_US_PROBES = ("C5-1", "C5-2", "C9-3", "L12-5", "L12-3", "L15-7", "P4-2", "C3-5", "E8-4")
_US_PRESETS = ("ABD", "OB", "GYN", "VASC", "MSK", "BREAST", "THY", "RENAL", "SMP", "LIVER")
_US_WORDS = ("LT", "RT", "SAG", "TRV", "LIVER", "RT KIDNEY", "LT KIDNEY", "GB", "BLADDER", "CW")


def _label(rng: np.random.Generator, modality: str) -> str:
    """A random burned-in label (device and acquisition data only, never a person)."""
    r = rng.integers
    date = f"{r(2015, 2031)}-{r(1, 13):02d}-{r(1, 29):02d}"
    clock = f"{r(0, 24):02d}:{r(0, 60):02d}:{r(0, 60):02d}"
    if modality == "xray":
        choices = (
            str(rng.choice(_XRAY_WORDS)),
            date,
            clock,
            f"{date} {clock}",
            f"{r(60, 131)} kV {r(1, 40) / 4:.2f} mAs",
            f"EI {r(100, 2500)}",
            f"S {r(50, 900)}",
            f"DAP {r(1, 400) / 100:.2f} dGycm2",
            f"SID {r(100, 181)}cm",
        )
    else:
        choices = (
            f"{rng.choice(_US_PROBES)} {rng.choice(_US_PRESETS)} {r(20, 180) / 10:.1f}cm "
            f"{r(8, 80)}fps",
            str(rng.choice(_US_WORDS)),
            f"G {r(20, 90)}  DR {r(40, 90)}",
            f"MI {r(2, 15) / 10:.1f}  TIS {r(1, 20) / 10:.1f}",
            f"FR {r(8, 80)}Hz",
            date,
            clock,
            f"{date} {clock}",
            f"{rng.choice(_US_PROBES)} {r(2, 16)}MHz",
        )
    return str(choices[int(rng.integers(len(choices)))])


def _stamp(
    out: npt.NDArray[Any],
    box: tuple[int, int, int, int],
    draw: Callable[[npt.NDArray[np.uint8], int, int], None],
    value: float,
) -> None:
    """Draw into a uint8 coverage patch (``draw(patch, y0, x0)`` in patch coordinates) over
    ``box = (y0, x0, y1, x1)`` and blend ``value`` into ``out`` by that coverage."""
    h, w = out.shape
    y0, x0, y1, x1 = max(0, box[0]), max(0, box[1]), min(h, box[2]), min(w, box[3])
    if y1 <= y0 or x1 <= x0:
        return
    patch = np.zeros((y1 - y0, x1 - x0), np.uint8)
    draw(patch, y0, x0)
    if not patch.any():
        return
    alpha = patch.astype(np.float32) * np.float32(1.0 / 255.0)
    region = out[y0:y1, x0:x1].astype(np.float32)
    region += alpha * (np.float32(value) - region)
    if out.dtype == np.float32:
        out[y0:y1, x0:x1] = region
    else:
        np.clip(np.rint(region), 0, np.iinfo(out.dtype).max, out=region)
        out[y0:y1, x0:x1] = region.astype(out.dtype)


def _ink(rg: _Range, rng: np.random.Generator) -> float:
    """White (the nominal maximum) or a light grey."""
    if rng.random() < 0.6:
        return rg.nhi
    return rg.nlo + (rg.nhi - rg.nlo) * float(rng.uniform(0.5, 0.9))


def _draw_text(out: npt.NDArray[Any], count: int, rg: _Range, modality: str,
               rng: np.random.Generator) -> None:  # fmt: skip
    h, w = out.shape
    side = max(h, w)
    for _ in range(count):
        text = _label(rng, modality)
        font = _FONTS[int(rng.integers(len(_FONTS)))]
        target = float(rng.uniform(0.02, 0.05)) * side
        (_, base_h), _ = cv2.getTextSize("Ag", font, 1.0, 1)
        scale = target / max(base_h, 1)
        thick = max(1, round(scale * float(rng.uniform(0.8, 1.8))))
        (tw, th), base = cv2.getTextSize(text, font, scale, thick)
        ox = int(rng.integers(-tw // 4, max(1, w - tw + tw // 4)))
        oy = int(rng.integers(th, max(th + 1, h)))
        pad = thick + 2

        def draw(
            p: npt.NDArray[np.uint8],
            y0: int,
            x0: int,
            text: str = text,
            org: tuple[int, int] = (ox, oy),
            font: int = font,
            scale: float = scale,
            thick: int = thick,
        ) -> None:
            pos = (org[0] - x0, org[1] - y0)
            cv2.putText(p, text, pos, font, scale, 255, thick, cv2.LINE_AA)

        _stamp(out, (oy - th - pad, ox - pad, oy + base + pad, ox + tw + pad), draw, _ink(rg, rng))
    if modality == "ultrasound" and rng.random() < 0.5:  # a depth scale with ticks
        x = (
            int(rng.integers(0, w))
            if rng.random() < 0.3
            else int(w - 1 - rng.integers(0, max(1, w // 10)))
        )
        n = int(rng.integers(4, 16))
        y0, y1 = int(h * rng.uniform(0.0, 0.2)), int(h * rng.uniform(0.7, 1.0))
        tick = max(2, side // 100)
        th_ = max(1, side // 300)

        def ruler(p: npt.NDArray[np.uint8], by: int, bx: int) -> None:
            for k in range(n + 1):
                y = y0 + (y1 - y0) * k // n - by
                ln = tick * (2 if k % 5 == 0 else 1)
                cv2.line(p, (x - bx - ln, y), (x - bx, y), 255, th_)

        _stamp(out, (y0 - 2 * th_, x - 3 * tick, y1 + 2 * th_ + 1, x + 2), ruler, _ink(rg, rng))


def _draw_calipers(out: npt.NDArray[Any], count: int, rg: _Range, modality: str,
                   rng: np.random.Generator) -> None:  # fmt: skip
    h, w = out.shape
    side = max(h, w)
    for i in range(count):
        p = np.array([rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h])
        length = float(rng.uniform(0.05, 0.35)) * side
        ang = float(rng.uniform(0.0, math.pi))
        q = p + length * np.array([math.cos(ang), math.sin(ang)])
        q = np.clip(q, [2, 2], [w - 3, h - 3])
        a, b = (round(p[0]), round(p[1])), (round(q[0]), round(q[1]))
        marker = cv2.MARKER_CROSS if rng.random() < 0.5 else cv2.MARKER_TILTED_CROSS
        msize = max(5, round(side * float(rng.uniform(0.015, 0.03))))
        th = max(1, side // 400)
        gap = max(3, side // 80)
        dist = math.hypot(b[0] - a[0], b[1] - a[1])
        ndots = int(dist // gap)

        def draw(
            pt: npt.NDArray[np.uint8],
            y0: int,
            x0: int,
            a: tuple[int, int] = a,
            b: tuple[int, int] = b,
            marker: int = marker,
            msize: int = msize,
            th: int = th,
            ndots: int = ndots,
        ) -> None:
            for c in (a, b):
                cv2.drawMarker(pt, (c[0] - x0, c[1] - y0), 255, marker, msize, th)
            for k in range(1, ndots):
                t = k / ndots
                cx = round(a[0] + t * (b[0] - a[0])) - x0
                cy = round(a[1] + t * (b[1] - a[1])) - y0
                cv2.circle(pt, (cx, cy), th, 255, -1)

        m = msize
        box = (min(a[1], b[1]) - m, min(a[0], b[0]) - m, max(a[1], b[1]) + m + 1,
               max(a[0], b[0]) + m + 1)  # fmt: skip
        ink = _ink(rg, rng)
        _stamp(out, box, draw, ink)
        # the measurement: "D1 2.34cm" next to the second marker
        cm = dist / side * float(rng.uniform(8.0, 20.0))
        text = f"{'D' if rng.random() < 0.7 else '+'}{i + 1} {cm:.2f}cm"
        font = cv2.FONT_HERSHEY_SIMPLEX
        scale = side * 0.025 / 22.0
        tk = max(1, round(scale * 1.3))
        (tw, tth), base = cv2.getTextSize(text, font, scale, tk)
        ox, oy = min(b[0] + m, w - tw), max(b[1] - m, tth)

        def label(
            pt: npt.NDArray[np.uint8],
            y0: int,
            x0: int,
            text: str = text,
            org: tuple[int, int] = (ox, oy),
            scale: float = scale,
            tk: int = tk,
        ) -> None:
            pos = (org[0] - x0, org[1] - y0)
            cv2.putText(pt, text, pos, cv2.FONT_HERSHEY_SIMPLEX, scale, 255, tk, cv2.LINE_AA)

        _stamp(out, (oy - tth - 2, ox - 2, oy + base + 2, ox + tw + 2), label, ink)


def _resize(frame: npt.NDArray[Any], target: int) -> npt.NDArray[Any]:
    h, w = frame.shape
    f = target / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    if size == (w, h):
        return frame.copy()
    interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
    return cv2.resize(frame, size, interpolation=interp)


# ----------------------------------------------------------------------------- public API


def apply(
    name: str,
    frame: npt.NDArray[Any],
    strength: float,
    *,
    modality: str,
    model_size: int,
    rng: np.random.Generator | None = None,
) -> npt.NDArray[Any]:
    """Apply one transform at a given strength (for the robustness matrix).

    Parameters
    ----------
    name : str
        One of :data:`TRANSFORMS`:

        ``gamma``
            ``t ** strength`` on the data range ``t = (v - min) / (max - min)``; 1 is the
            identity, < 1 brightens, > 1 darkens (0.1 ... 10).
        ``spline_lut``
            A random smooth monotone tone curve: a monotone cubic (Fritsch & Carlson 1980)
            through 6 knots whose increments mix a straight line with random Gamma(2)
            weights; ``strength`` (0 ... 1) is the weight of the random part (0 = identity).
        ``window``
            New black and white points ``strength`` and ``1 - strength`` of the data range
            (-0.45 ... 0.45): > 0 clips both tails (contrast stretch with saturation),
            < 0 compresses the contrast; 0 is the identity.
        ``unsharp``
            Unsharp masking ``v + strength * (v - G_r * v)``, ``G_r`` a Gaussian of
            ``UNSHARP_RADIUS`` (2) model px; ``strength`` is the amount (0 ... 10).
        ``clahe``
            Contrast-limited adaptive histogram equalisation (Zuiderveld 1994;
            ``cv2.createCLAHE``, 8x8 tiles) with clip limit ``strength`` (0 = identity),
            computed on the data range quantised to 8 bits, sub-step residual kept.
        ``edge_enhance``
            A Laplacian boost ``v - strength * s**2 * laplace(G_s * v)`` with ``s`` =
            ``EDGE_SIGMA`` (0.7) model px (the scale-normalised Laplacian of Gaussian,
            Lindeberg 1998); 0 is the identity.
        ``noise``
            Additive white Gaussian noise, sigma ``strength`` x the data range (0 ... 0.5).
        ``correlated_noise``
            Gaussian-filtered white noise (correlation length ``NOISE_CORRELATION`` = 2
            model px), renormalised to sigma ``strength`` x the data range.
        ``blur``
            Gaussian blur of sigma ``strength`` model px (0 ... 10).
        ``flip``
            1 horizontal, 2 vertical, 3 both (= rotation by 180 degrees), 0 identity.
        ``rotate``
            Rotation by ``strength`` degrees (counter-clockwise, about the centre; -45 ...
            45); X-ray borders are reflected, ultrasound borders black.
        ``shift``
            Translation by ``strength`` x the side along both axes (-0.45 ... 0.45).
        ``collimation``
            X-ray: uniform or gradient borders on 1-4 random sides, bright or dark, the
            first ``strength`` of the side deep, the others 0.5-1 x that; ultrasound: black
            borders (0 ... 0.45).
        ``text``
            ``strength`` burned-in labels (``cv2.putText``, white or light grey, random
            font, 2-5 % of the side high, anywhere in the frame): laterality and view
            markers, dates and times, exposure data, probe/preset/depth/frame-rate lines
            (ultrasound also a depth scale with half the probability).  Never a name.
        ``calipers``
            ``strength`` caliper pairs: ``+`` or ``x`` markers joined by a dotted line, with
            a measurement (``D1 2.34cm``).
        ``resize_render``
            Resample so that the longer side is ``strength`` px (16 ... 4096; area
            averaging when shrinking, bilinear when enlarging), a stand-in for rendering at
            another native size; the only transform that changes the shape.
    frame : ndarray, shape (H, W)
        uint8, uint16, float32 or float64 raw frame (never modified).
    strength : float
        See above; the bounds are checked.
    modality : {"xray", "ultrasound"}
    model_size : int
        The model's input side in pixels (the unit of "model px").
    rng : numpy.random.Generator, optional
        Required by the random transforms (``spline_lut``, ``noise``, ``correlated_noise``,
        ``collimation``, ``text``, ``calipers``); the result is deterministic given it.

    Returns
    -------
    ndarray
        Same dtype (float64 becomes float32), shape and nominal range as ``frame``.  The
        identity strength returns the frame itself (float64: as float32).  For
        ultrasound, the tone, filter and noise transforms leave the black area around the
        sector unchanged (see :func:`random_augment`).

    Raises
    ------
    InvalidInputError
        For an unknown name or modality, a strength out of bounds, a missing ``rng`` for a
        random transform, or an unusable frame.

    References
    ----------
    .. [1] K. Zuiderveld, "Contrast limited adaptive histogram equalization", in Graphics
       Gems IV, Academic Press, 1994, pp. 474-485.
    .. [2] F. N. Fritsch and R. E. Carlson, "Monotone piecewise cubic interpolation",
       SIAM J. Numer. Anal. 17(2), 1980, pp. 238-246; F. N. Fritsch and J. Butland, "A
       method for constructing local monotone piecewise cubic interpolants", SIAM J. Sci.
       Stat. Comput. 5(2), 1984, pp. 300-304.
    .. [3] R. C. Gonzalez and R. E. Woods, Digital Image Processing, 4th ed., Pearson,
       2018, sections 3.2 (gamma), 3.6 (unsharp masking, Laplacian sharpening).
    .. [4] T. Lindeberg, "Edge detection and ridge detection with automatic scale
       selection", Int. J. Comput. Vis. 30(2), 1998, pp. 117-156.
    """
    if name not in TRANSFORMS:
        raise InvalidInputError(f"unknown transform {name!r}; choose one of {TRANSFORMS}")
    _check_common(modality, model_size)
    arr = _check_frame(frame)
    s = _check_strength(name, strength)
    if name in _RANDOM and rng is None:
        raise InvalidInputError(
            f"transform {name!r} is random: pass rng=np.random.default_rng(seed)"
        )
    identity = {"gamma": 1.0, "resize_render": -1.0}.get(name, 0.0)
    if s == identity:
        return arr
    px = _model_px(arr.shape, model_size)
    rg = _Range(arr)
    if name in ("gamma", "spline_lut", "window"):
        if name == "gamma":
            curve = _gamma(s)
        elif name == "window":
            curve = _window(s, 1.0 - s)
        else:
            assert rng is not None
            curve = _spline(s, rng)
        out = _apply_tone(arr, curve, rg)
        if modality == "ultrasound":
            _keep_outside(out, arr, _outside_fov(arr, rg))
        return out
    if name == "flip":
        return _flip(arr, None, int(s))[0]
    if name in ("rotate", "shift"):
        m = (
            _affine_matrix(arr.shape, s, 0, 0)
            if name == "rotate"
            else _affine_matrix(arr.shape, 0.0, s, s)
        )
        return _warp(arr, None, m, modality)[0]
    if name == "resize_render":
        return _resize(arr, int(s))
    if name in ("text", "calipers"):
        assert rng is not None
        out = arr.copy()
        fn = _draw_text if name == "text" else _draw_calipers
        fn(out, int(s), rg, modality, rng)
        return out
    if name == "collimation":
        assert rng is not None
        x = rg.to_float(arr)
        return rg.to_native(_collimate(x, s, rg, modality, rng))
    x = rg.to_float(arr)
    if name == "unsharp":
        y = _unsharp(x, s, UNSHARP_RADIUS * px)
    elif name == "clahe":
        y = _clahe(x, s, rg)
    elif name == "edge_enhance":
        y = _edge_enhance(x, s, EDGE_SIGMA * px)
    elif name == "noise":
        assert rng is not None
        y = _white_noise(x, s, rg, rng)
    elif name == "correlated_noise":
        assert rng is not None
        y = _correlated_noise(x, s, NOISE_CORRELATION, px, rg, rng)
    else:  # blur
        y = _gauss(x, s * px)
    out = rg.to_native(y)
    if modality == "ultrasound":
        _keep_outside(out, arr, _outside_fov(arr, rg))
    return out


def random_augment(
    frame: npt.NDArray[Any],
    mask: npt.NDArray[Any] | None,
    rng: np.random.Generator,
    *,
    modality: str,
    model_size: int,
    strength: float = 1.0,
) -> tuple[npt.NDArray[Any], Mask | None]:
    """A random chain of device-like processing, for training (new draws on every call).

    The steps, in the order a device applies them, each with probability
    ``min(1, p * strength)`` (``p`` in :data:`PROBABILITIES`); ranges are scaled by
    ``strength`` towards the identity where the transform has one:

    1. flip, horizontal (p 0.5);
    2. rotation U(-8, 8) degrees and shift U(-6, 6) % of the side per axis, together
       (p 0.5); the mask moves with the frame (nearest neighbour);
    3. collimation, X-ray (p 0.3): borders of 2-15 % of the side, see :func:`apply`
       (ultrasound: a black border of 2-15 %, p 0.1, drawn after step 7);
    4. blur, sigma U(0.2, 1.5) model px (p 0.4);
    5. noise (p 0.5): white or correlated (correlation length U(1, 3) model px), sigma
       U(0.003, 0.03) of the data range;
    6. one of unsharp masking (amount U(0.3, 2), radius U(1, 4) model px), CLAHE (clip limit
       U(1, 4), 8x8 tiles; not scaled by ``strength``, CLAHE has no near-identity setting)
       and edge enhancement (amount U(0.3, 1.5)), equally likely (p 0.5);
    7. window (p 0.5): black point U(-0.1, 0.12), white point 1 - U(-0.1, 0.12) of the data
       range (of the frame as processed so far), then a tone curve (p 0.8): gamma
       log-uniform in [0.4, 2.5] (60 %) or a random spline of amplitude U(0.2, 1) (40 %);
       both are one lookup table;
    8. burned-in text (p 0.5, 1-6 labels) and, for ultrasound, calipers (p 0.3, 1-2 pairs).

    For ultrasound, steps 4-7 leave the black area around the sector (nominal-minimum
    pixels, morphologically opened) as it was: a scanner's gain, filters and noise act on
    the image only.

    ``resize_render`` is not part of the chain: size variation comes from rendering the
    phantoms at random sizes (or call :func:`apply` with it).

    Parameters
    ----------
    frame : ndarray, shape (H, W)
        uint8, uint16, float32 or float64 raw frame (never modified).
    mask : ndarray of bool, shape (H, W), or None
        The lesion mask; moved by the geometric steps.
    rng : numpy.random.Generator
        The source of every draw; the result is deterministic given its state.
    modality : {"xray", "ultrasound"}
    model_size : int
        The model's input side (the unit of "model px").
    strength : float, default 1.0
        0 ... 2; 0 is the identity: ``frame`` itself is returned (even a float64 one) and
        ``mask`` as it is (as bool if it was not).

    Returns
    -------
    frame : ndarray
        Same dtype (float64 becomes float32), shape and nominal range as the input.
    mask : ndarray of bool or None
        The moved mask (same shape), or None when ``mask`` is None.

    Raises
    ------
    InvalidInputError
        For an unusable frame or mask, an unknown modality, a strength outside 0 ... 2 or
        ``rng`` that is not a ``numpy.random.Generator``.

    References
    ----------
    See :func:`apply`.
    """
    _check_common(modality, model_size)
    if not isinstance(rng, np.random.Generator):
        raise InvalidInputError("rng must be a numpy.random.Generator (np.random.default_rng)")
    if isinstance(strength, bool) or not isinstance(
        strength, (int, float, np.integer, np.floating)
    ):
        raise InvalidInputError(f"strength must be a number in [0, 2], got {strength!r}")
    st = float(strength)
    if not math.isfinite(st) or not 0.0 <= st <= 2.0:
        raise InvalidInputError(f"strength must lie in [0, 2], got {strength!r}")
    arr = _check_frame(frame)
    m: Mask | None = None
    if mask is not None:
        if not isinstance(mask, np.ndarray) or mask.shape != arr.shape:
            raise InvalidInputError(
                f"mask must be an array of the frame's shape {arr.shape}, got "
                f"{getattr(mask, 'shape', type(mask).__name__)}"
            )
        m = np.ascontiguousarray(mask if mask.dtype == np.bool_ else mask != 0)
    if st == 0.0:  # exactly the input (a float64 frame stays float64)
        return frame, m

    def happens(key: str) -> bool:
        return bool(rng.random() < min(1.0, PROBABILITIES[key] * st))

    px = _model_px(arr.shape, model_size)
    out: npt.NDArray[Any] = arr
    # 1-2. geometry, on the native dtype
    if happens("flip"):
        out, m = _flip(out, m, 1)
    if happens("affine"):
        ang = float(rng.uniform(-8.0, 8.0)) * st
        dx, dy = (float(v) * st for v in rng.uniform(-0.06, 0.06, size=2))
        out, m = _warp(out, m, _affine_matrix(out.shape, ang, dx, dy), modality)
    rg = _Range(arr)  # the ranges of the input frame
    geo = out
    outside = _outside_fov(geo, rg) if modality == "ultrasound" else None
    x: F32 | None = None

    def flt() -> F32:
        nonlocal x
        if x is None:
            x = rg.to_float(out)
        return x

    # 3. collimation (X-ray: in the beam path, so blurred and noisy like the rest)
    us_border = modality == "ultrasound" and happens("collimation_us")
    if modality == "xray" and happens("collimation"):
        frac = float(rng.uniform(0.02, 0.15)) * min(st, 1.0)
        x = _collimate(flt(), frac, rg, modality, rng)
    # 4. blur
    if happens("blur"):
        x = _gauss(flt(), float(rng.uniform(0.2, 1.5)) * st * px)
    # 5. noise
    if happens("noise"):
        sigma = float(rng.uniform(0.003, 0.03)) * st
        if rng.random() < 0.5:
            x = _white_noise(flt(), sigma, rg, rng)
        else:
            x = _correlated_noise(flt(), sigma, float(rng.uniform(1.0, 3.0)), px, rg, rng)
    # 6. sharpening / local contrast
    if happens("sharpen"):
        kind = int(rng.integers(3))
        if kind == 0:
            amount = float(rng.uniform(0.3, 2.0)) * st
            x = _unsharp(flt(), amount, float(rng.uniform(1.0, 4.0)) * px)
        elif kind == 1:
            x = _clahe(flt(), float(rng.uniform(1.0, 4.0)), rg)
        else:
            x = _edge_enhance(flt(), float(rng.uniform(0.3, 1.5)) * st, EDGE_SIGMA * px)
    if x is not None:
        out = rg.to_native(x)
    # 7. window and tone curve, one table
    tone: Tone | None = None
    if happens("window"):
        b, w1 = (float(v) * st for v in rng.uniform(-0.1, 0.12, size=2))
        tone = _window(b, 1.0 - w1)
    if happens("tone"):
        if rng.random() < 0.6:
            g = math.exp(float(rng.uniform(math.log(0.4), math.log(2.5))) * st)
            tone = _compose(tone, _gamma(g))
        else:
            amp = float(rng.uniform(0.2, 1.0)) * min(st, 1.0)
            tone = _compose(tone, _spline(amp, rng))
    if tone is not None:  # on the data range of the processed frame (borders, overshoot)
        out = _apply_tone(out, tone, rg if out is arr else rg.with_data_of(out))
    _keep_outside(out, geo, outside)
    if us_border:  # a black display border, drawn after the image processing
        if out is arr:
            out = arr.copy()
        _collimate(out, float(rng.uniform(0.02, 0.15)) * min(st, 1.0), rg, modality, rng)
    # 8. annotations
    do_text = happens("text")
    do_cal = modality == "ultrasound" and happens("calipers")
    if do_text or do_cal:
        if out is arr:
            out = arr.copy()
        if do_text:
            _draw_text(out, int(rng.integers(1, 7)), rg, modality, rng)
        if do_cal:
            _draw_calipers(out, int(rng.integers(1, 3)), rg, modality, rng)
    return out, m
