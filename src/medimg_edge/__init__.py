"""medimg-edge: AI triage for point-of-care medical imaging, on the device.

Public API (see README.md and DESIGN.md section 3)::

    import medimg_edge as me
    me.info()                     # version, SIMD targets, library versions
    me.denoise.srad(frame)        # speckle reduction for ultrasound
    me.denoise.xray(radiograph)   # Poisson-Gaussian denoising for X-ray
    me.load_model("name")         # verified int8 TFLite model on the CPU or an Edge TPU
    me.diagnose(frame, modality="ultrasound")   # quality gate + model + decision
    me.Diagnoser(modality="xray").diagnose_clip(frames)  # a clip: 3 sampled frames
    me.diagnose_file("study.dcm")                # a file as every client reads it (triage)
    me.preprocess.to_model_input(frame, spec)    # the frame -> model-input step
    me.batch.run(["archive/"], out="results")    # archive analysis into Parquet ([batch])

Not for clinical use: the reference models and defaults are research tools.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from . import denoise, features, preprocess, quality, runtime, simd
from ._errors import DelegateError, InvalidInputError, MedimgEdgeError, ModelError
from ._version import __version__
from .diagnosis import Diagnoser, Diagnosis, diagnose
from .runtime import DelegateFallbackWarning, Model, list_models, load_model

if TYPE_CHECKING:  # imported on first use (below)
    from . import batch, synth, triage
    from .triage import Triage, TriageResult, diagnose_clip, diagnose_file

__all__ = [
    "DelegateError",
    "DelegateFallbackWarning",
    "Diagnoser",
    "Diagnosis",
    "InvalidInputError",
    "MedimgEdgeError",
    "Model",
    "ModelError",
    "Triage",
    "TriageResult",
    "__version__",
    "batch",
    "denoise",
    "diagnose",
    "diagnose_clip",
    "diagnose_file",
    "features",
    "info",
    "list_models",
    "load_model",
    "preprocess",
    "quality",
    "runtime",
    "simd",
    "synth",
    "triage",
]


#: Submodules imported on first use: ``batch`` needs the ``[batch]`` extra, ``synth`` (the
#: phantom generators) is not on the device path, ``triage`` (the one input path for
#: files, with the image and DICOM readers) is not needed for frames; importing them
#: lazily keeps ``import medimg_edge`` fast (see ``medimg-edge info``, "cold start").
_LAZY_SUBMODULES = ("batch", "synth", "triage")
#: Entry points of :mod:`medimg_edge.triage`, resolved (and the module imported) on first
#: use.
_LAZY_TRIAGE = ("Triage", "TriageResult", "diagnose_clip", "diagnose_file")


def __getattr__(name: str) -> Any:
    """Import :mod:`medimg_edge.batch` / ``synth`` / ``triage`` (and the triage entry
    points) on first use."""
    import importlib

    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY_TRIAGE:
        value = getattr(importlib.import_module(".triage", __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_SUBMODULES) | set(_LAZY_TRIAGE))


def info() -> dict[str, Any]:
    """Describe this installation: version, SIMD targets, platform and library versions.

    Returns
    -------
    dict
        JSON-serialisable; keys ``version``, ``simd`` (``compiled``, ``supported``,
        ``active``, ``cap``), ``compiler``, ``python``, ``platform``, ``machine``,
        ``numpy``, ``opencv``, ``runtime`` (the TFLite interpreter package in use),
        ``edgetpu`` (whether the Edge TPU library loads) and ``models`` (names found).
    """
    import platform

    import cv2
    import numpy as np

    from . import _core

    return {
        "version": __version__,
        "simd": {
            "compiled": list(simd.compiled_targets()),
            "supported": list(simd.supported_targets()),
            "active": simd.active_target(),
            "cap": simd.target_cap(),
        },
        "compiler": str(_core.compiler),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "runtime": runtime.backend_info(),
        "edgetpu": runtime.edgetpu_status(),
        "models": [
            {k: m[k] for k in ("name", "version", "modality", "edgetpu") if k in m}
            | ({"error": m["error"]} if "error" in m else {})
            for m in runtime.list_models()
        ],
    }
