"""One input path for every client: from a file or an array to the clip answer.

The Python API on files (:func:`diagnose_file`), ``medimg-edge diagnose``, the watch-folder
daemon and ``medimg-edge batch`` all go through :class:`Triage`, so they agree on every
input (the corpus test ``tests/test_triage.py`` feeds the same files to all four):

* **reading**: :func:`medimg_edge.io.read_input` (the hardened reader and the one
  photometric path of :mod:`medimg_edge.io._dicom`: MONOCHROME1 inversion, rescale,
  palette / YBR to RGB, planar configuration, bits stored / pixel representation, VOI LUT);
* **modality**: the one rule of :mod:`medimg_edge._modality` (the DICOM header decides;
  CT / MR / NM / ... DICOM are refused with ``unsupported_modality``; the user's modality
  for everything else; :attr:`Triage.override_dicom_modality` as the loud exception);
* **frames**: the one clip rule of :mod:`medimg_edge._clip` (3 sampled frames, the decisive
  one with the highest positive score is the answer and is named), through
  :meth:`medimg_edge.Diagnoser.diagnose_clip`;
* **Diagnosers**: one process-wide pool (:func:`pooled_diagnoser`) keyed by (modality,
  model sha256, quality gate, delegate, threads, colour order), shared with
  :func:`medimg_edge.diagnose`.

``delegate="auto"`` runs on the CPU quietly (a debug log line) on a machine without an
Edge TPU (:func:`medimg_edge.runtime.edgetpu_present`); it tries the Edge TPU, and warns
when it cannot use it, only when one is present (:func:`medimg_edge.load_model` does the
same for a Diagnoser built directly).  The TFLite runtime's ``INFO: Created TensorFlow
Lite XNNPACK delegate for CPU.`` line is kept out of the terminal by the runtime (logged at
debug level).

Not for clinical use.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._clip import AGGREGATE_RULE, CLIP_FRAMES, ClipDiagnosis, sample_frame_indices
from ._errors import InvalidInputError
from ._modality import (
    MODALITIES,
    MODALITY_MAP,
    Modality,
    ModalitySource,
    check_modality,
    decide,
    dicom_modality,
)
from .diagnosis import REFERENCE_MODELS, Diagnoser
from .runtime import Model, edgetpu_present, read_package
from .runtime._backend import debug
from .runtime._package import find_sidecar

if TYPE_CHECKING:  # the reader is imported on first use: diagnose(array) never needs it
    from . import io as _io

__all__ = [
    "AGGREGATE_RULE",
    "CLIP_FRAMES",
    "MODALITIES",
    "MODALITY_MAP",
    "ClipDiagnosis",
    "Modality",
    "Triage",
    "TriageResult",
    "clear_pool",
    "diagnose_clip",
    "diagnose_file",
    "diagnosers_built",
    "edgetpu_present",
    "pooled_diagnoser",
    "resolve_delegate",
    "sample_frame_indices",
]

_LOGGER = "medimg_edge.triage"

ModelRef = str | os.PathLike[str] | Model

# ---- the Edge TPU, quietly ------------------------------------------------------------------

_present: bool | None = None


def resolve_delegate(delegate: str) -> str:
    """``"auto"`` -> ``"cpu"`` when no Edge TPU is present (logged at debug level: no
    warning, nothing to fix), else unchanged (``"auto"`` then warns if the present Edge
    TPU cannot be used)."""
    global _present
    if delegate != "auto":
        return delegate
    if _present is None:
        _present = edgetpu_present()
    if not _present:
        debug("delegate auto: no Edge TPU on this machine, running on the CPU", logger=_LOGGER)
        return "cpu"
    return delegate


# ---- the one Diagnoser pool ---------------------------------------------------------------

_POOL: dict[tuple[Any, ...], Diagnoser] = {}
_BY_REF: dict[tuple[Any, ...], Diagnoser] = {}
_POOL_LOCK = threading.Lock()
_BUILT = 0


def diagnosers_built() -> int:
    """How many Diagnosers this process has built (one per pool key)."""
    return _BUILT


def clear_pool() -> None:
    """Forget every pooled Diagnoser (tests; a process that swapped its model files)."""
    with _POOL_LOCK:
        _POOL.clear()
        _BY_REF.clear()


def _ref_key(model: ModelRef | None) -> Any:
    if isinstance(model, Model):
        return ("model", id(model))
    return ("ref", os.fspath(model) if model is not None else None)


def pooled_diagnoser(
    model: ModelRef | None = None,
    modality: str | None = None,
    *,
    delegate: str = "auto",
    num_threads: int | None = None,
    quality_gate: bool = True,
    color_order: str = "rgb",
    expected_sha256: str | None = None,
) -> Diagnoser:
    """The process's :class:`~medimg_edge.Diagnoser` for these settings, built on first use.

    Pooled by (modality, model sha256, quality gate, delegate, threads, colour order): two
    names or paths of the same model bytes share one Diagnoser.  ``delegate="auto"`` goes
    through :func:`resolve_delegate` (the runtime keeps its XNNPACK INFO line out of the
    terminal).

    Parameters
    ----------
    model, modality, delegate, num_threads, quality_gate, color_order
        As :class:`~medimg_edge.Diagnoser`.
    expected_sha256 : str, optional
        The model's sha256 as the caller resolved it (batch: the driver's); a different
        model here raises ``InvalidInputError(code="model_mismatch")``.
    """
    global _BUILT
    delegate = resolve_delegate(delegate)
    settings = (bool(quality_gate), delegate, num_threads, color_order)
    ref_key = (_ref_key(model), modality, settings)
    with _POOL_LOCK:
        d = _BY_REF.get(ref_key)
        if d is None:
            built = Diagnoser(
                model,
                modality,
                delegate=delegate,
                num_threads=num_threads,
                quality_gate=quality_gate,
                color_order=color_order,
            )
            key = (built.modality, built.model.info["sha256"], settings)
            d = _POOL.get(key)
            if d is None:
                d = _POOL[key] = built
                _BUILT += 1
            _BY_REF[ref_key] = d
    if expected_sha256 is not None and d.model.info["sha256"] != expected_sha256:
        raise InvalidInputError(
            f"model {d.model.info['name']} here differs from the one the run resolved "
            "(sha256 mismatch): install the same medimg-edge and models everywhere",
            code="model_mismatch",
        )
    return d


# ---- files -> answers ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TriageResult:
    """What :meth:`Triage.run` found for one input.

    Attributes
    ----------
    clip : ClipDiagnosis
        The answer (``clip.result``), the frame it rests on and every sampled frame's result.
    modality : {"ultrasound", "xray"}
    modality_source : str
        ``dicom``, ``option``, ``manifest``, ``config``, ``model`` or ``override``.
    input : medimg_edge.io.InputImage
        What was read (frames, header, flags, hashes).
    """

    clip: ClipDiagnosis
    modality: Modality
    modality_source: str
    input: _io.InputImage

    @property
    def result(self) -> Any:
        """The answer (a :class:`~medimg_edge.Diagnosis`)."""
        return self.clip.result

    @property
    def frame(self) -> Any:
        """The decoded grey frame the answer rests on (for overlays)."""
        return self.input.frames[self.clip.position]

    def to_dict(self, *, include_heatmap: bool = False) -> dict[str, Any]:
        """:meth:`ClipDiagnosis.to_dict` plus ``input`` (kind, hashes, flags, modality and
        its source, frames in the file, frames diagnosed, the frame the answer rests on)."""
        doc = self.clip.to_dict(include_heatmap=include_heatmap)
        img = self.input
        doc["input"] = {
            "kind": img.kind,
            "sha256": img.sha256,
            "instance_key": img.instance_key,
            "flags": list(img.flags),
            "modality": self.modality,
            "modality_source": self.modality_source,
            "frames_in_file": img.n_frames,
            "frames_diagnosed": len(img.frames),
            "frame_index": self.clip.frame_index,
        }
        return doc


class Triage:
    """The one adapter from inputs to answers (module docstring); one per client
    configuration, cheap to build (Diagnosers come from the pool).

    Parameters
    ----------
    modality : {"ultrasound", "xray"}, optional
        The user's modality: for non-DICOM inputs and DICOM without a usable Modality.
    models : mapping of modality to model, optional
        The model of each modality (name, sidecar path or loaded Model).  A modality
        without one gets its reference model when ``reference_fallback`` is true, else
        ``code="no_model"``.
    model : model, optional
        One model: it serves its own modality (both for an ``any`` model) and, when
        ``modality`` is None, gives the default modality (source ``model``).  Exclusive
        with ``models``; implies ``reference_fallback=False``.
    delegate, num_threads, quality_gate, color_order
        As :class:`~medimg_edge.Diagnoser`.
    cine_frames : int
        Frames sampled from a multi-frame input (the clip rule's 3 by default).
    override_dicom_modality : bool
        The user's modality (``modality``, or the one each input is run with) wins over
        any DICOM header, including CT / MR / ... (research only: a model run on frames
        of another modality gives meaningless answers); an input without one is
        ``unknown_modality``.
    max_bytes : int, optional
        Largest input file read (default :data:`medimg_edge.io.MAX_FILE_BYTES`, 2 GiB).
    expected_sha256 : mapping of modality to str, optional
        The sha256 each modality's model must have (batch: as the driver resolved it).
    reference_fallback : bool
        See ``models``.
    """

    def __init__(
        self,
        *,
        modality: str | None = None,
        models: Mapping[str, ModelRef | None] | None = None,
        model: ModelRef | None = None,
        delegate: str = "auto",
        num_threads: int | None = None,
        quality_gate: bool = True,
        color_order: str = "rgb",
        cine_frames: int = CLIP_FRAMES,
        override_dicom_modality: bool = False,
        max_bytes: int | None = None,
        expected_sha256: Mapping[str, str] | None = None,
        reference_fallback: bool = True,
    ) -> None:
        self.modality: Modality | None = (
            None if modality is None else check_modality(modality, what="modality")
        )
        self.modality_source: ModalitySource = "option"
        self.models: dict[str, ModelRef] = {}
        if model is not None:
            if models:
                raise InvalidInputError("pass either model or models, not both")
            served = _model_modality(model)
            for m in MODALITIES if served == "any" else (served,):
                self.models[m] = model
            reference_fallback = False
            if self.modality is None and served != "any":
                self.modality = check_modality(served)
                self.modality_source = "model"
        for m, ref in (models or {}).items():
            if ref is not None:
                self.models[check_modality(m, what="models key")] = ref
        self.reference_fallback = reference_fallback
        self.delegate = delegate
        self.num_threads = num_threads
        self.quality_gate = bool(quality_gate)
        self.color_order = color_order
        if isinstance(cine_frames, bool) or not isinstance(cine_frames, int) or cine_frames < 1:
            raise InvalidInputError(f"cine_frames must be an integer >= 1, got {cine_frames!r}")
        self.cine_frames = cine_frames
        self.override_dicom_modality = bool(override_dicom_modality)
        self.max_bytes: int | None = max_bytes
        self.expected_sha256 = dict(expected_sha256 or {})

    def model_for(self, modality: Modality) -> ModelRef:
        """The model that serves ``modality`` here (``code="no_model"`` if none)."""
        ref = self.models.get(modality)
        if ref is not None:
            return ref
        if self.reference_fallback:
            return REFERENCE_MODELS[modality]
        raise InvalidInputError(
            f"no model for {modality} frames here (the model given is for "
            f"{', '.join(sorted(self.models)) or 'nothing'}): pass a model for {modality} "
            "or leave the model out to use the reference models",
            code="no_model",
        )

    def diagnoser(self, modality: Modality) -> Diagnoser:
        """The pooled Diagnoser of ``modality`` with these settings."""
        return pooled_diagnoser(
            self.model_for(modality),
            modality,
            delegate=self.delegate,
            num_threads=self.num_threads,
            quality_gate=self.quality_gate,
            color_order=self.color_order,
            expected_sha256=self.expected_sha256.get(modality),
        )

    def decide_modality(
        self,
        inp: _io.InputImage | None,
        *,
        requested: str | None = None,
        source: ModalitySource = "option",
        name: str = "input",
    ) -> tuple[Modality, ModalitySource]:
        """The modality of ``inp`` (None: an array) by the one rule; ``requested`` (a
        manifest row, a folder rule) wins over this Triage's own modality."""
        if requested is None and self.modality is not None:
            requested, source = self.modality, self.modality_source
        header = inp.dataset if inp is not None and inp.kind == "dicom" else None
        return decide(
            header, requested, source=source, override=self.override_dicom_modality, name=name
        )

    def read(
        self,
        path: str | os.PathLike[str],
        *,
        label: str | None = None,
        content_hash: bool = True,
        check_modality: bool = True,
        cine_frames: int | None = None,
    ) -> _io.InputImage:
        """:func:`medimg_edge.io.read_input` with this Triage's limits and cine sampling
        (``cine_frames`` overrides it); a DICOM file of a modality no model serves is
        refused (``unsupported_modality``) from its header, before any pixel is decoded
        (``check_modality=False``: read anyway, for features)."""
        name = label if label is not None else (Path(path).name or "input")

        def check(header: Any) -> None:
            if check_modality and not self.override_dicom_modality:
                found, tag = dicom_modality(header)
                if found is None and tag not in ("", "OT"):
                    decide(header, None, name=name)  # raises unsupported_modality

        from .io import MAX_FILE_BYTES, read_input

        return read_input(
            path,
            label=label,
            cine_frames=self.cine_frames if cine_frames is None else cine_frames,
            max_bytes=MAX_FILE_BYTES if self.max_bytes is None else self.max_bytes,
            content_hash=content_hash,
            header_check=check,
        )

    def run(
        self,
        inp: _io.InputImage,
        *,
        requested: str | None = None,
        source: ModalitySource = "option",
        name: str = "input",
        modality: tuple[Modality, ModalitySource] | None = None,
    ) -> TriageResult:
        """Diagnose what :meth:`read` returned: modality by the rule (or ``modality``
        when the caller decided it already), then the clip rule on its frames."""
        mod, src = modality or self.decide_modality(
            inp, requested=requested, source=source, name=name
        )
        clip = self.diagnoser(mod).diagnose_clip(
            list(inp.frames), frame_indices=inp.frame_indices, n_frames=inp.n_frames
        )
        return TriageResult(clip=clip, modality=mod, modality_source=src, input=inp)

    def diagnose_file(
        self,
        path: str | os.PathLike[str],
        *,
        label: str | None = None,
        requested: str | None = None,
        source: ModalitySource = "option",
        content_hash: bool = True,
    ) -> TriageResult:
        """:meth:`read` then :meth:`run`."""
        inp = self.read(path, label=label, content_hash=content_hash)
        name = label if label is not None else (Path(path).name or "input")
        return self.run(inp, requested=requested, source=source, name=name)


def _model_modality(model: ModelRef) -> str:
    """The modality a model package declares (``any`` for both)."""
    if isinstance(model, Model):
        return str(model.package.modality)
    return str(read_package(find_sidecar(model)).modality)


def diagnose_file(
    path: str | os.PathLike[str],
    *,
    modality: str | None = None,
    model: ModelRef | None = None,
    override_dicom_modality: bool = False,
    color_order: str = "rgb",
) -> TriageResult:
    """Diagnose an image file (PNG, JPEG, TIFF, ``.npy``, DICOM) as every client does.

    Parameters
    ----------
    path : path-like
    modality : {"ultrasound", "xray"}, optional
        For non-DICOM files and DICOM without a usable Modality (a DICOM header decides
        for itself: :mod:`medimg_edge._modality`).
    model : str, path or Model, optional
        Default the reference model of the input's modality.
    override_dicom_modality : bool
        ``modality`` wins over any DICOM header (research only).
    color_order : {"rgb", "bgr"}
        Passed to the Diagnoser (file readers deliver grey frames already).

    Returns
    -------
    TriageResult
        ``.result`` is the answer; ``.clip`` names the frame(s) it rests on.
    """
    triage = Triage(
        modality=modality,
        model=model,
        override_dicom_modality=override_dicom_modality,
        color_order=color_order,
    )
    return triage.diagnose_file(path)


def diagnose_clip(
    frames: Any,
    *,
    modality: str | None = None,
    model: ModelRef | None = None,
    color_order: str = "rgb",
) -> ClipDiagnosis:
    """:meth:`medimg_edge.Diagnoser.diagnose_clip` with a pooled Diagnoser (as
    :func:`medimg_edge.diagnose` for one frame): ``frames`` is ``(n, H, W)``,
    ``(n, H, W, 3|4)`` or a list of frames."""
    d = pooled_diagnoser(model, modality, color_order=color_order)
    return d.diagnose_clip(frames)
