"""``diagnose(frame)`` and :class:`Diagnoser`: the device-facing API.

Pipeline per frame::

    validate -> grayscale -> quality gate -> denoise (the model's preset) -> robust
    [0, 1] window -> resize -> normalise + quantise -> model -> temperature calibration
    -> (video: temporal smoothing) -> decision

A frame that fails the quality gate gets ``status="indeterminate"`` with the quality codes
in ``reasons`` and the model is not run: the pipeline refuses to guess. Not for clinical use.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from . import quality as _quality
from . import simd
from ._appearance import appearance_features
from ._clip import ClipDiagnosis
from ._errors import InvalidInputError
from ._modality import check_modality
from ._validation import as_float_array, checked_array
from ._version import __version__
from .preprocess import apply_denoise, resize_to_input, to_gray, window_into
from .runtime import Model, load_model
from .runtime._ood import appearance_of, guard_of

__all__ = [
    "NOTICE",
    "REFERENCE_MODELS",
    "SCHEMA_PATH",
    "Diagnoser",
    "Diagnosis",
    "diagnose",
]

NOTICE = (
    "Not for clinical use: medimg-edge is research software; its output must not be used "
    "for diagnosis or treatment decisions."
)
#: The bundled reference model of each modality (``models/README.md``).
REFERENCE_MODELS = {"xray": "xray_chest_nodule", "ultrasound": "us_lesion"}
SCHEMA_PATH = os.path.join(os.path.dirname(__file__), "schemas", "diagnosis.v1.schema.json")
_DENOISE = ("auto", "none", "ultrasound", "xray")
_MIN_SIDE = 32


@dataclasses.dataclass(frozen=True)
class Diagnosis:
    """The result for one frame (JSON via :meth:`to_dict` / :meth:`to_json`; schema in
    ``medimg_edge/schemas/diagnosis.v1.schema.json``).

    Attributes
    ----------
    status : {"positive", "negative", "indeterminate"}
    label : str or None
        Most probable class after calibration (None if the model was not run).
    confidence : float or None
        Calibrated probability of ``label``.
    positive_score : float or None
        Calibrated ``1 - P(negative label)``; compared with the model's threshold.
    scores : dict of str to float
        Calibrated probability per label.
    reasons : tuple of str
        ``"quality:<code>"`` per quality issue, ``"out_of_distribution"``,
        ``"abstain_band"`` or ``"threshold"``.
    quality : QualityReport
    heatmap : ndarray of float32 or None
        Lesion localisation resized (bilinear) to the frame, values in [0, 1].  Computed
        on first access from ``heatmap_grid`` (a frame-sized array is allocated only
        when it is asked for) and then kept.
    heatmap_grid : ndarray of float32 or None
        The same at the model's resolution, weighted by the fraction of each cell inside
        the quality gate's field of view (:attr:`QualityReport.fov`: zero on the black
        background around an ultrasound sector and on X-ray collimation borders).
    timings_ms : dict of str to float
        Per stage: ``validate``, ``quality``, ``denoise``, ``preprocess``, ``model``,
        ``postprocess``, ``total``.
    model, runtime, frame : dict
        Provenance: model name/version/sha256/file; runtime package, delegate, SIMD target;
        frame shape/dtype/modality.
    package_version : str
    timestamp_ms : float or None
    smoothed : bool
        True when the scores are a temporal average (video mode).
    dropped : bool
        True when the frame was skipped because the previous one was still running.
    notice : str
        Not for clinical use.
    ood : dict
        The out-of-distribution guard's verdict: ``{"guard": "mahalanobis", "distance":
        float | None, "threshold": float, "out_of_distribution": bool | None}`` (distance
        None when the model was not run), or ``{"guard": "absent"}`` for a model package
        without a guard. Packages with the second, model-independent signal add
        ``"appearance": {"distance": float | None, "threshold": float}`` (the texture
        descriptor's distance, :mod:`medimg_edge._appearance`); ``out_of_distribution`` is
        true when either distance exceeds its threshold. An out-of-distribution frame is
        ``indeterminate`` with reason ``out_of_distribution``: the model was run (the
        distance needs it) but no label, score or heatmap is reported.
    """

    status: str
    label: str | None
    confidence: float | None
    positive_score: float | None
    scores: dict[str, float]
    reasons: tuple[str, ...]
    quality: _quality.QualityReport
    heatmap_grid: npt.NDArray[np.float32] | None
    timings_ms: dict[str, float]
    model: dict[str, Any]
    runtime: dict[str, Any]
    frame: dict[str, Any]
    package_version: str = __version__
    timestamp_ms: float | None = None
    smoothed: bool = False
    dropped: bool = False
    notice: str = NOTICE
    ood: dict[str, Any] = dataclasses.field(default_factory=lambda: {"guard": "absent"})

    @functools.cached_property
    def heatmap(self) -> npt.NDArray[np.float32] | None:
        """``heatmap_grid`` resized (bilinear) to the frame (see the class docstring)."""
        if self.heatmap_grid is None:
            return None
        h, w = (int(v) for v in self.frame["shape"][:2])
        heat = cv2.resize(self.heatmap_grid, (w, h), interpolation=cv2.INTER_LINEAR)
        return np.asarray(heat, dtype=np.float32)

    def to_dict(self, *, include_heatmap: bool = False) -> dict[str, Any]:
        """JSON-serialisable form (the heatmap, at the model's grid resolution, on request)."""
        out: dict[str, Any] = {
            "schema_version": 1,
            "status": self.status,
            "label": self.label,
            "confidence": self.confidence,
            "positive_score": self.positive_score,
            "scores": dict(self.scores),
            "reasons": list(self.reasons),
            "quality": self.quality.to_dict(),
            "timings_ms": {k: round(v, 4) for k, v in self.timings_ms.items()},
            "model": dict(self.model),
            "runtime": dict(self.runtime),
            "package_version": self.package_version,
            "frame": dict(self.frame),
            "timestamp_ms": self.timestamp_ms,
            "smoothed": self.smoothed,
            "dropped": self.dropped,
            "notice": self.notice,
            "ood": dict(self.ood),
        }
        if include_heatmap and self.heatmap_grid is not None:
            out["heatmap"] = {
                "grid_shape": list(self.heatmap_grid.shape),
                "frame_shape": list(self.frame["shape"][:2]),
                "grid": np.round(self.heatmap_grid.astype(np.float64), 4).tolist(),
            }
        return out

    def to_json(self, *, include_heatmap: bool = False, indent: int | None = None) -> str:
        """:meth:`to_dict` as a JSON string."""
        return json.dumps(self.to_dict(include_heatmap=include_heatmap), indent=indent)


# dtype -> name for Diagnosis.frame (str(dtype) costs microseconds on every frame).
_DTYPE_NAMES = {
    np.dtype(t): np.dtype(t).name for t in (np.uint8, np.uint16, np.float32, np.float64)
}


def _no_finding(reasons: tuple[str, ...], common: dict[str, Any]) -> Diagnosis:
    """An ``indeterminate`` result that reports no label, score or heatmap."""
    return Diagnosis(
        status="indeterminate",
        label=None,
        confidence=None,
        positive_score=None,
        scores={},
        reasons=reasons,
        heatmap_grid=None,
        **common,
    )


#: Number of set bits of every byte value.
_POPCOUNT = np.array([bin(v).count("1") for v in range(256)], dtype=np.uint8)


def _cell_fraction(
    packed: tuple[npt.NDArray[np.uint8], tuple[int, int]], grid: tuple[int, ...]
) -> npt.NDArray[np.float32]:
    """Fraction of each cell of a ``grid`` (h, w) covered by a bit-packed boolean mask
    (:attr:`QualityReport.fov_packed`). When a cell is 8 mask pixels wide (the analysis
    sides are 8 x the heatmap's for the reference models), each byte of a packed row is
    one cell row and the counts are a popcount table lookup: no mask-sized array.
    Otherwise a cell is 1 when at least half of it is inside, else 0."""
    bits, (mh, mw) = packed
    gh, gw = int(grid[0]), int(grid[1])
    if mw == 8 * gw and mh % gh == 0:
        rows = _POPCOUNT[bits].reshape(gh, mh // gh, gw)
        frac: npt.NDArray[np.float32] = rows.sum(axis=1, dtype=np.float32)
        frac *= np.float32(1.0 / (8 * (mh // gh)))
        return frac
    # Other grids: 1 where at least half of the cell is inside, else 0 (an area resize
    # of the 0/1 mask, rounded: one mask-sized uint8 array, no float copy).
    mask = np.unpackbits(bits, count=mh * mw).reshape(mh, mw)
    small = cv2.resize(mask, (gw, gh), interpolation=cv2.INTER_AREA)
    return np.asarray(small, np.float32)


class _Workspace:
    """Buffers of one thread reused from frame to frame while the frame size stays the
    same (none of them escapes into a result)."""

    def __init__(self) -> None:
        self._buffers: dict[str, npt.NDArray[Any]] = {}
        self._scratch: dict[str, dict[str, Any]] = {}

    def scratch(self, name: str) -> dict[str, Any]:
        """A dict of buffers a helper manages itself (e.g. the appearance descriptor's)."""
        return self._scratch.setdefault(name, {})

    def get(
        self, name: str, shape: tuple[int, ...], dtype: type[np.generic] = np.float32
    ) -> npt.NDArray[Any]:
        buf = self._buffers.get(name)
        if buf is None or buf.shape != tuple(shape) or buf.dtype != dtype:
            buf = np.empty(shape, dtype)
            self._buffers[name] = buf
        return buf


class Diagnoser:
    """Reusable per-device pipeline: one model, its preprocessing and the decision rule.

    Parameters
    ----------
    model : str, path or Model, optional
        A model name, sidecar path or loaded :class:`~medimg_edge.Model`; default the
        bundled reference model of ``modality`` (:data:`REFERENCE_MODELS`).
    modality : {"ultrasound", "xray"}, optional
        Default the model's modality; required when the model is for ``any``.
    delegate, num_threads, device
        Passed to :func:`~medimg_edge.load_model`.
    denoise : {"auto", "none", "ultrasound", "xray"}
        ``"auto"`` applies the preset the model was trained with (sidecar
        ``input.denoise``); anything else overrides it (the model then sees frames unlike
        its training data: measure before you do this).
    quality_gate : bool
        Refuse (``indeterminate``) frames that :func:`medimg_edge.quality.assess` flags.
    smoothing_ms : float
        Video mode time constant: with ``timestamp_ms``, calibrated scores are averaged
        with weight ``1 - exp(-dt / smoothing_ms)`` for the new frame (0 disables).
    color_order : {"rgb", "bgr"}
        Channel order of ``(H, W, 3|4)`` colour frames: ``"rgb"`` (default) for what
        pydicom, PIL, scikit-image and most SDKs deliver; ``"bgr"`` for frames captured
        with OpenCV (``cv2.VideoCapture``, ``cv2.imread``).  The luma weights differ for R
        and B, so the wrong order changes the grey frame the model sees.

    Notes
    -----
    **Threads.** One Diagnoser may be shared: every thread gets its own clone of the
    model (same verified bytes, its own interpreter) and the kernels release the GIL,
    so two threads diagnose two frames at once. Video state (smoothing, timestamps) is
    per Diagnoser: use one Diagnoser per video stream.

    **Buffers.** Each thread keeps its buffers (the float32 copy of the frame, the
    [0, 1] window, the model input, the quantised tensor) and reuses them while the frame
    size stays the same, so a steady stream allocates no frame-sized array per frame; no
    buffer escapes into a result (``Diagnosis.heatmap`` is made from ``heatmap_grid`` on
    first access).  A model with a denoising preset allocates the denoised frame.

    **Video mode.** Timestamps must increase strictly. When a frame arrives while the
    previous one of the same stream is still being processed, it is dropped: the call
    returns at once with the last result marked ``dropped=True`` (newest frames win; no
    queue builds up when the caller outruns the pipeline).
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | Model | None = None,
        modality: str | None = None,
        *,
        delegate: str = "auto",
        num_threads: int | None = None,
        device: str | None = None,
        denoise: str = "auto",
        quality_gate: bool = True,
        smoothing_ms: float = 300.0,
        color_order: str = "rgb",
    ) -> None:
        if modality is not None:
            modality = check_modality(modality)
        if model is None:
            if modality is None:
                raise InvalidInputError(
                    "pass modality='ultrasound' or 'xray' (or a model): the reference "
                    "model depends on it"
                )
            model = REFERENCE_MODELS[modality]
        if isinstance(model, Model):
            self._model = model
        else:
            self._model = load_model(
                model, delegate=delegate, num_threads=num_threads, device=device
            )
        pkg = self._model.package
        if modality is None:
            if pkg.modality == "any":
                raise InvalidInputError(
                    f"model {pkg.name} is for any modality: pass modality='ultrasound' or "
                    "'xray' (it selects the quality thresholds)"
                )
            modality = pkg.modality
        elif pkg.modality not in ("any", modality):
            raise InvalidInputError(
                f"model {pkg.name} is for {pkg.modality} frames, not {modality}"
            )
        if denoise not in _DENOISE:
            raise InvalidInputError(f"denoise must be one of {_DENOISE}, got {denoise!r}")
        if color_order not in ("rgb", "bgr"):
            raise InvalidInputError(
                f"color_order must be 'rgb' (pydicom, PIL, scikit-image) or 'bgr' (OpenCV "
                f"capture), got {color_order!r}"
            )
        if not (isinstance(smoothing_ms, (int, float)) and 0 <= smoothing_ms < math.inf):
            raise InvalidInputError(f"smoothing_ms must be >= 0, got {smoothing_ms!r}")
        if pkg.input.channels != 1:
            raise InvalidInputError(f"model {pkg.name}: only 1-channel models are supported")
        self.modality = modality
        self.quality_gate = bool(quality_gate)
        self.smoothing_ms = float(smoothing_ms)
        self.color_order = color_order
        self._denoise = pkg.input.denoise if denoise == "auto" else denoise
        self._labels = pkg.labels
        self._neg = pkg.labels.index(pkg.negative_label)
        self._heat_kind = pkg.outputs.get("heatmap", {}).get("kind")
        self._score_kind = pkg.outputs["scores"]["kind"]
        self._guard = guard_of(pkg.meta, pkg.outputs, pkg.sidecar.name)
        self._appearance = appearance_of(pkg.meta, pkg.sidecar.name)
        self._ood_skipped: dict[str, Any] = (
            {"guard": "absent"}
            if self._guard is None
            else {
                "guard": "mahalanobis",
                "distance": None,
                "threshold": self._guard.threshold,
                "out_of_distribution": None,
            }
        )
        if self._guard is not None and self._appearance is not None:
            self._ood_skipped["appearance"] = {
                "distance": None,
                "threshold": self._appearance.threshold,
            }
        self._local = threading.local()
        self._local.model = self._model
        self._video_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._last_ts: float | None = None
        self._ema: npt.NDArray[np.float64] | None = None
        self._last: Diagnosis | None = None
        info = self._model.info
        self._model_info = {
            "name": info["name"],
            "version": info["version"],
            "sha256": info["sha256"],
            "file": info["file"],
            "threshold": info["threshold"],
            "abstain_band": info["abstain_band"],
            "temperature": info["temperature"],
        }
        self._runtime_base = {
            "name": info["runtime"]["name"],
            "version": info["runtime"]["version"],
            "delegate": info["delegate"],
            "num_threads": info["num_threads"],
        }

    # -- properties ------------------------------------------------------------------
    @property
    def model(self) -> Model:
        """The model (this thread's clone is private)."""
        return self._model

    def reset(self) -> None:
        """Forget the video state (timestamps and smoothed scores)."""
        with self._state_lock:
            self._last_ts = None
            self._ema = None
            self._last = None

    def _workspace(self) -> _Workspace:
        ws: _Workspace | None = getattr(self._local, "workspace", None)
        if ws is None:
            ws = _Workspace()
            self._local.workspace = ws
        return ws

    def _thread_model(self) -> Model:
        model: Model | None = getattr(self._local, "model", None)
        if model is None:
            model = self._model.clone()
            self._local.model = model
        return model

    # -- pipeline --------------------------------------------------------------------
    def diagnose(self, frame: Any, *, timestamp_ms: float | None = None) -> Diagnosis:
        """Diagnose one frame.

        Parameters
        ----------
        frame : array_like
            2-D uint8, uint16, float32 or float64 grayscale, or ``(H, W, 3|4)`` uint8
            colour (see ``color_order``); any size from 32x32 up to 2^28 pixels.
        timestamp_ms : float, optional
            Video mode: the frame's capture time in ms (strictly increasing).

        Raises
        ------
        InvalidInputError
            Unusable frame (NaN/Inf, empty, wrong dimensions or dtype, too small or large)
            or a timestamp that does not increase.
        """
        if timestamp_ms is None:
            return self._run(frame, None)
        if isinstance(timestamp_ms, bool) or not isinstance(timestamp_ms, (int, float)):
            raise InvalidInputError(f"timestamp_ms must be a number, got {timestamp_ms!r}")
        ts = float(timestamp_ms)
        if not math.isfinite(ts):
            raise InvalidInputError(f"timestamp_ms must be finite, got {timestamp_ms!r}")
        if not self._video_lock.acquire(blocking=False):
            with self._state_lock:
                last = self._last
            if last is not None:
                return dataclasses.replace(last, dropped=True, timestamp_ms=ts, timings_ms={})
            self._video_lock.acquire()  # nothing to repeat yet: wait for the first result
        try:
            with self._state_lock:
                if self._last_ts is not None and ts <= self._last_ts:
                    raise InvalidInputError(
                        f"timestamp_ms must increase: got {ts} after {self._last_ts}; call "
                        "reset() when a new stream starts"
                    )
            return self._run(frame, ts)
        finally:
            self._video_lock.release()

    def _run(self, frame: Any, ts: float | None) -> Diagnosis:
        t_start = time.perf_counter()
        timings: dict[str, float] = {}

        def lap(name: str, t0: float) -> float:
            t1 = time.perf_counter()
            timings[name] = (t1 - t0) * 1e3
            return t1

        if isinstance(frame, np.ndarray):
            if frame.ndim == 4 or (frame.ndim == 3 and min(frame.shape[1:]) >= _MIN_SIDE):
                raise InvalidInputError(
                    f"frame has shape {frame.shape} ({frame.ndim}-D): a clip of "
                    f"{frame.shape[0]} frames? "
                    "diagnose it with Diagnoser.diagnose_clip(frames) (or "
                    "medimg_edge.triage.diagnose_clip), which diagnoses 3 sampled frames "
                    "and names the one its answer rests on; one colour frame is (H, W, 3) "
                    "or (H, W, 4) uint8",
                    code="clip_input",
                )
            if frame.dtype not in _DTYPE_NAMES:
                from ._validation import widen_integer  # int8/16/32/64, uint32/64: exact

                frame = widen_integer(frame)
        arr = checked_array(frame, name="frame", ndims=(2, 3))
        if min(arr.shape[:2]) < _MIN_SIDE:
            raise InvalidInputError(
                f"frame has shape {arr.shape}; height and width must be at least {_MIN_SIDE} pixels"
            )
        ws = self._workspace()
        hw = arr.shape[:2]
        gray = to_gray(
            arr,
            color_order=self.color_order,
            out=ws.get("gray", hw, np.uint8) if arr.ndim == 3 else None,
        )
        # One float32 copy of the frame, validated (finite, in range) and shared by the
        # quality measures and the window.
        native = gray.dtype.newbyteorder("=")
        img = as_float_array(gray, name="frame", out=ws.get("frame", hw))
        frame_info = {
            "shape": list(arr.shape),
            "dtype": _DTYPE_NAMES.get(arr.dtype) or str(arr.dtype),
            "modality": self.modality,
        }
        t = lap("validate", t_start)
        report = _quality._assess_float(img, native, self.modality)
        t = lap("quality", t)
        common: dict[str, Any] = {
            "quality": report,
            "timings_ms": timings,
            "model": dict(self._model_info),
            "runtime": {**self._runtime_base, "simd_target": simd.active_target()},
            "frame": frame_info,
            "timestamp_ms": ts,
            "ood": dict(self._ood_skipped),  # replaced once the guard has run
        }
        if self.quality_gate and not report.ok:
            timings["total"] = (time.perf_counter() - t_start) * 1e3
            refused = _no_finding(tuple(f"quality:{c}" for c in report.issues), common)
            return self._finish(refused, ts, None)
        source: npt.NDArray[Any] | None = gray  # what img holds, converted to float32
        if self._denoise != "none":
            # The preset reads the float32 copy (what it would convert gray to itself)
            # and writes into this thread's buffer: no frame-sized array per call, and
            # bit-identical to apply_denoise(gray, preset) (tests/test_preprocess.py).
            img = apply_denoise(img, self._denoise, out=ws.get("denoised", hw))
            source = None
        t = lap("denoise", t)
        model = self._thread_model()
        spec = model.package.input
        unit = window_into(img, ws.get("unit", hw), source=source)
        x = resize_to_input(unit, spec, out=ws.get("input", (spec.height, spec.width)))
        t = lap("preprocess", t)
        out = model.predict(x)
        t = lap("model", t)
        guard = self._guard
        if guard is not None:
            distance = guard.distance(out[guard.output][0])
            flagged = distance > guard.threshold
            common["ood"] = {
                "guard": "mahalanobis",
                "distance": distance,
                "threshold": guard.threshold,
                "out_of_distribution": flagged,
            }
            app = self._appearance
            if app is not None:
                # the second, model-independent signal: the input's texture descriptor
                a_dist = app.distance(appearance_features(x, work=ws.scratch("appearance")))
                flagged = flagged or a_dist > app.threshold
                common["ood"]["appearance"] = {"distance": a_dist, "threshold": app.threshold}
                common["ood"]["out_of_distribution"] = flagged
            if flagged:
                # Not a frame the model knows: no label, score or heatmap is reported,
                # and it does not enter the video average.
                rejected = _no_finding(("out_of_distribution",), common)
                lap("postprocess", t)
                timings["total"] = (time.perf_counter() - t_start) * 1e3
                return self._finish(rejected, ts, None)
        probs = self._calibrate(out["scores"][0])
        smoothed = False
        if ts is not None and self.smoothing_ms > 0:
            probs, smoothed = self._smooth(probs, ts)
        heat_grid = None
        if "heatmap" in out:
            g = out["heatmap"][0]  # a new float32 array of predict's: clipped in place
            if self._heat_kind == "logits":
                g = (1.0 / (1.0 + np.exp(-g))).astype(np.float32)
            heat_grid = np.clip(g, 0.0, 1.0, out=g)
            if report.fov_packed is not None:
                # Nothing is localised outside the field of view (the background around
                # an ultrasound sector, X-ray collimation): each cell is weighted by the
                # fraction of it inside the quality gate's field-of-view mask.
                heat_grid *= _cell_fraction(report.fov_packed, heat_grid.shape)
        status, k, reason = self._decide(probs)
        diag = Diagnosis(
            status=status,
            label=self._labels[k],
            confidence=float(probs[k]),
            positive_score=float(1.0 - probs[self._neg]),
            scores={lab: float(p) for lab, p in zip(self._labels, probs, strict=True)},
            reasons=(reason,),
            heatmap_grid=heat_grid,
            smoothed=smoothed,
            **common,
        )
        lap("postprocess", t)
        timings["total"] = (time.perf_counter() - t_start) * 1e3
        return self._finish(diag, ts, probs)

    def _calibrate(self, raw: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """Temperature-scaled softmax of the raw scores (log-probabilities first when the
        model emits probabilities), in Python floats: a handful of labels costs less than
        the NumPy calls would, and the GIL is held either way."""
        z = raw.tolist()
        if self._score_kind == "probabilities":
            z = [math.log(min(max(v, 1e-7), 1.0)) for v in z]
        temperature = self._model.package.temperature
        z = [v / temperature for v in z]
        top = max(z)
        e = [math.exp(v - top) for v in z]
        total = math.fsum(e)
        return np.array([v / total for v in e])

    def _smooth(
        self, probs: npt.NDArray[np.float64], ts: float
    ) -> tuple[npt.NDArray[np.float64], bool]:
        with self._state_lock:
            if self._ema is None or self._last_ts is None:
                return probs, False
            alpha = 1.0 - math.exp(-(ts - self._last_ts) / self.smoothing_ms)
            return (1.0 - alpha) * self._ema + alpha * probs, True

    def _decide(self, probs: npt.NDArray[np.float64]) -> tuple[str, int, str]:
        """(status, label index, reason) from calibrated probabilities: the abstain band
        first, then the threshold on the positive score ``1 - P(negative label)``."""
        pkg = self._model.package
        positive = float(1.0 - probs[self._neg])
        lo, hi = pkg.abstain_band
        if lo <= positive <= hi and not (lo == hi == pkg.threshold):
            return "indeterminate", int(np.argmax(probs)), "abstain_band"
        if positive >= pkg.threshold:
            # The most probable lesion class (never the negative label).
            masked = probs.copy()
            masked[self._neg] = -1.0
            return "positive", int(np.argmax(masked)), "threshold"
        return "negative", self._neg, "threshold"

    def _finish(
        self, diag: Diagnosis, ts: float | None, probs: npt.NDArray[np.float64] | None
    ) -> Diagnosis:
        if ts is not None:
            with self._state_lock:
                self._last_ts = ts
                if probs is not None:
                    self._ema = probs
                self._last = diag
        return diag

    def diagnose_clip(
        self,
        frames: Any,
        *,
        frame_indices: Sequence[int] | None = None,
        n_frames: int | None = None,
        sample: int = 3,
    ) -> ClipDiagnosis:
        """Diagnose a clip (multi-frame input) by the one clip rule of
        :mod:`medimg_edge._clip`: ``sample`` evenly spaced frames (first and last
        included) are diagnosed and the answer is the decisive frame with the highest
        positive score (all indeterminate: the first), naming that frame.

        Parameters
        ----------
        frames : array_like or sequence of array_like
            ``(n, H, W)`` or ``(n, H, W, 3|4)`` array, or a sequence of frames that
            :meth:`diagnose` accepts; one frame (2-D or ``(H, W, 3|4)``) is a clip of one.
        frame_indices : sequence of int, optional
            When ``frames`` are already the sampled frames of a longer clip (what
            :func:`medimg_edge.io.read_input` returns): their 0-based indices in it.
            Every given frame is then diagnosed.
        n_frames : int, optional
            Frames in the whole clip, with ``frame_indices`` (default ``len(frames)``).
        sample : int
            Frames to diagnose from a whole clip (>= 1).

        Returns
        -------
        ClipDiagnosis
            ``result`` (the answer), ``frame_index``, ``frame_indices``,
            ``frame_results``, ``n_frames``; ``to_dict()`` for JSON.

        Raises
        ------
        InvalidInputError
            For an unusable frame (as :meth:`diagnose`), an empty clip or indices that
            do not match the frames.
        """
        from ._clip import aggregate, sample_frame_indices

        if isinstance(sample, bool) or not isinstance(sample, int) or sample < 1:
            raise InvalidInputError(f"sample must be an integer >= 1, got {sample!r}")
        if isinstance(frames, np.ndarray):
            one = frames.ndim == 2 or (frames.ndim == 3 and frames.shape[2] in (3, 4))
            clip: Sequence[Any] = [frames] if one else list(frames)
        elif isinstance(frames, (list, tuple)):
            clip = frames
        else:
            raise InvalidInputError(
                f"frames must be an (n, H, W[, 3]) array or a list of frames, got "
                f"{type(frames).__name__}"
            )
        if len(clip) == 0:
            raise InvalidInputError("frames is empty: pass at least one frame")
        if frame_indices is None:
            indices = sample_frame_indices(len(clip), sample)
            chosen = [clip[i] for i in indices]
            total = len(clip)
        else:
            indices = tuple(int(i) for i in frame_indices)
            total = len(clip) if n_frames is None else int(n_frames)
            if len(indices) != len(clip) or any(not 0 <= i < total for i in indices):
                raise InvalidInputError(
                    f"frame_indices {list(indices)} do not match {len(clip)} frames of a "
                    f"clip of {total}: give one index in [0, n_frames) per frame"
                )
            chosen = list(clip)
        results = tuple(self.diagnose(f) for f in chosen)
        k = aggregate(results)
        return ClipDiagnosis(
            result=results[k],
            frame_index=indices[k],
            frame_indices=tuple(indices),
            frame_results=results,
            n_frames=total,
        )


def diagnose(
    frame: Any,
    *,
    modality: str | None = None,
    model: str | os.PathLike[str] | Model | None = None,
    color_order: str = "rgb",
) -> Diagnosis:
    """Diagnose one frame with a pooled :class:`Diagnoser` (see there).

    The Diagnoser comes from :func:`medimg_edge.triage.pooled_diagnoser`, the one pool
    every client shares (keyed by modality, model sha256 and settings): built on the
    first call, reused after.

    Parameters
    ----------
    frame : array_like
        2-D grayscale of any integer dtype (uint8, uint16, int8, int16, int32, uint32, ...:
        converted exactly, see :func:`medimg_edge._validation.widen_integer`) or float32 /
        float64; or ``(H, W, 3|4)`` uint8 colour in ``color_order``.  A clip ``(n, H, W)``
        / ``(n, H, W, 3)`` is refused with code ``clip_input``: use
        :meth:`Diagnoser.diagnose_clip`.
    modality : {"ultrasound", "xray"}, optional
        Required unless ``model`` names one for a single modality.
    model : str, path or Model, optional
        Default the bundled reference model of ``modality``.
    color_order : {"rgb", "bgr"}
        Channel order of a colour frame: ``"rgb"`` (pydicom, PIL, scikit-image) or
        ``"bgr"`` (OpenCV capture and ``cv2.imread``).

    Notes
    -----
    ``frame`` may also be the path of an image file (PNG, JPEG, TIFF, ``.npy``, DICOM):
    it is then read and diagnosed as every client does it
    (:func:`medimg_edge.triage.diagnose_file`: a DICOM header decides its modality,
    ``modality`` is for the other files; a multi-frame file by the clip rule), and the
    answer is returned (``triage.diagnose_file`` also says which frame it rests on).
    """
    from . import triage

    if isinstance(frame, (str, os.PathLike)):
        got = triage.diagnose_file(frame, modality=modality, model=model, color_order=color_order)
        result: Diagnosis = got.result
        return result
    return triage.pooled_diagnoser(model, modality, color_order=color_order).diagnose(frame)
