"""On-device inference: verified model packages on LiteRT / TFLite, CPU or Edge TPU.

::

    import medimg_edge as me
    me.list_models()                              # bundled + $MEDIMG_EDGE_MODEL_PATH
    model = me.load_model("us_lesion")            # delegate="auto": Edge TPU, else CPU
    out = model.predict(frame01)                  # {"scores": (1, n), "heatmap": (1, h, w)}

Model packages (``<name>.tflite`` + ``<name>.json`` sidecar) are documented in
``models/README.md``; the sidecar's JSON Schema ships as
``medimg_edge/schemas/model-package.v1.schema.json``. What was and was not exercised without
Edge TPU hardware is written in ``docs``/README ("Edge TPU").

The frame -> model-input step (grayscale, denoising preset, window, resize) is
:mod:`medimg_edge.preprocess`, a layer above this one: the runtime imports nothing of
:mod:`medimg_edge.denoise`.
"""

from __future__ import annotations

from typing import Any

from ._backend import ENV_VAR as RUNTIME_ENV
from ._backend import Backend, backend, backend_info
from ._delegate import EDGETPU_LIB_ENV, edgetpu_library, edgetpu_present, edgetpu_status
from ._model import DelegateFallbackWarning, Model, list_models, load_model
from ._package import (
    MODEL_PATH_ENV,
    SCHEMA_PATH,
    InputSpec,
    ModelFile,
    ModelPackage,
    model_dirs,
    read_package,
    read_verified,
    sha256_file,
)
from ._quant import QuantParams, dequantize, quantize

__all__ = [
    "EDGETPU_LIB_ENV",
    "MODEL_PATH_ENV",
    "RUNTIME_ENV",
    "SCHEMA_PATH",
    "Backend",
    "DelegateFallbackWarning",
    "InputSpec",
    "Model",
    "ModelFile",
    "ModelPackage",
    "QuantParams",
    "backend",
    "backend_info",
    "dequantize",
    "edgetpu_library",
    "edgetpu_present",
    "edgetpu_status",
    "list_models",
    "load_model",
    "model_dirs",
    "quantize",
    "read_package",
    "read_verified",
    "sha256_file",
]


#: Names of :mod:`medimg_edge.preprocess` that lived here before it existed; resolved on
#: first use (``medimg_edge.runtime.to_model_input`` still works) without the runtime
#: importing the preprocessing, and through it the denoising, layer.  New code imports
#: them from :mod:`medimg_edge.preprocess`.
_MOVED_TO_PREPROCESS = (
    "apply_denoise",
    "resize_to_input",
    "robust_unit",
    "to_gray",
    "to_model_input",
)


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_PREPROCESS:
        import importlib

        return getattr(importlib.import_module("medimg_edge.preprocess"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
