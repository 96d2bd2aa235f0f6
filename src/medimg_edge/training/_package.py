"""int8 export: the ``.tflite`` + sidecar + model card of a trained network, with the
decision threshold and calibration temperature fitted on a validation split."""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import InvalidInputError
from .._version import __version__
from ._data import Dataset
from ._drift import fit_drift
from ._metrics import (
    apply_temperature,
    fit_temperature,
    positive_score,
    youden_threshold,
)
from ._ood import DEFAULT_QUANTILE, fit_appearance, fit_ood

__all__ = [
    "ABSTAIN_HALF_WIDTH",
    "code_version",
    "export_package",
    "predict_package",
    "record_refit",
]

#: Half-width of the abstain band around the threshold (clipped to [0, 1]).
ABSTAIN_HALF_WIDTH = 0.1
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_REPO = Path(__file__).resolve().parents[3]


def code_version() -> str:
    """``medimg-edge <version>`` plus ``git describe`` of the source checkout if available."""
    text = f"medimg-edge {__version__}"
    if (_REPO / ".git").exists():
        try:
            out = subprocess.run(
                ["git", "-C", str(_REPO), "describe", "--always", "--dirty", "--tags"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            if out.returncode == 0 and out.stdout.strip():
                text += f" (git {out.stdout.strip()})"
        except (OSError, subprocess.SubprocessError):
            pass
    return text


def record_refit(
    meta: dict[str, Any], key: str, *, command: str, note: str, bump: bool = True, **counts: int
) -> str:
    """Stamp a sidecar whose guards or references were refitted in place (network and int8
    file unchanged): with ``bump`` the patch version goes up by one, and
    ``provenance[key]`` records the date, the version it came from, ``command``, the frame
    ``counts`` and ``note``. Returns the version it came from."""
    old = str(meta["version"])
    if bump:
        major, minor, patch = (int(p) for p in old.split("+")[0].split("."))
        meta["version"] = f"{major}.{minor}.{patch + 1}"
    meta["provenance"][key] = {
        "added": datetime.date.today().isoformat(),
        "from_version": old,
        "command": command,
        **counts,
        "note": note,
    }
    return old


def predict_package(path: str | Path, x: Any) -> dict[str, Any]:
    """Outputs of the int8 package on ``(N, H, W, 1)`` frames via ``me.load_model`` (CPU,
    one thread): the dequantised, uncalibrated ``scores``, ``heatmap`` and ``features``."""
    from ..runtime import load_model

    model = load_model(Path(path), delegate="cpu", num_threads=1)
    return model.predict(np.asarray(x, np.float32))


def _sidecar(
    name: str,
    modality: str,
    description: str,
    ds: Dataset,
    tflite: bytes,
    provenance: dict[str, Any],
    version: str = "1.0.0",
) -> dict[str, Any]:
    return {
        "format": "medimg-edge-model",
        "schema_version": 1,
        "name": name,
        "version": version,
        "modality": modality,
        "task": "classification",
        "description": description,
        "labels": list(ds.labels),
        "negative_label": ds.negative_label,
        "input": {
            "name": "image",
            "height": int(ds.x.shape[1]),
            "width": int(ds.x.shape[2]),
            "channels": 1,
            "color_order": "gray",
            "mean": [0.0],
            "std": [1.0],
            "denoise": "none",
        },
        "outputs": {
            "scores": {"name": "scores", "kind": "probabilities"},
            "heatmap": {"name": "heatmap", "kind": "probabilities"},
            "features": {"name": "features", "kind": "embedding"},
        },
        "decision": {"threshold": 0.5, "abstain_band": [0.4, 0.6]},
        "calibration": {"method": "temperature", "temperature": 1.0},
        "files": {
            "cpu": {
                "path": f"{name}.tflite",
                "sha256": hashlib.sha256(tflite).hexdigest(),
                "bytes": len(tflite),
            }
        },
        "provenance": provenance,
        "model_card": f"{name}.md",
    }


def export_package(
    tflite: bytes,
    out_dir: str | Path,
    name: str,
    *,
    modality: str,
    val: Dataset,
    provenance: dict[str, Any],
    description: str = "",
    ood_train: Dataset | None = None,
    ood_quantile: float = DEFAULT_QUANTILE,
    version: str = "1.0.0",
) -> tuple[Path, dict[str, Any]]:
    """Write ``<name>.tflite`` and ``<name>.json``; fit calibration and threshold on ``val``.

    On the validation split, the int8 model (loaded through ``me.load_model``, so the
    runtime's own quantisation path is exercised) gives probabilities ``p``. The temperature
    ``T`` minimises the NLL of ``softmax(log p / T)`` (Guo et al. 2017); the threshold on
    the calibrated positive score ``1 - P(negative_label)`` maximises Youden's J; the
    abstain band is the threshold +- ``ABSTAIN_HALF_WIDTH`` clipped to [0, 1]. With
    ``ood_train`` (training frames, preprocessed and augmented like the training data), the
    out-of-distribution guard is fitted on their int8 ``features`` and its threshold set at
    the ``ood_quantile`` of the validation frames' distances (:func:`fit_ood`). A
    placeholder model card is written if none exists (see :func:`write_model_card`).

    Returns
    -------
    (Path, dict)
        The sidecar path and the validation summary (temperature, threshold, J, sizes).
    """
    if not _NAME.match(name):
        raise InvalidInputError(
            f"model name {name!r} must be lower case letters, digits, '_', '-', '.' "
            "(1-64 characters, starting with a letter or digit)"
        )
    if len(val) == 0 or val.positive.all() or not val.positive.any():
        raise InvalidInputError(
            "the validation split needs frames with and without a lesion to fit the threshold"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.tflite").write_bytes(tflite)
    meta = _sidecar(name, modality, description, val, tflite, provenance, version)
    sidecar = out / f"{name}.json"
    sidecar.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    card = out / f"{name}.md"
    if not card.exists():
        card.write_text(f"# {name}\n\nModel card pending evaluation. NOT FOR CLINICAL USE.\n")
    pred_val = predict_package(sidecar, val.x)
    probs = pred_val["scores"]
    ood_summary: dict[str, Any] = {}
    if ood_train is not None:
        feats = predict_package(sidecar, ood_train.x)["features"]
        meta["ood"], _ = fit_ood(
            feats, ood_train.y, pred_val["features"], val.labels, quantile=ood_quantile
        )
        meta["ood"]["appearance"], _ = fit_appearance(ood_train.x, val.x)
        ood_summary = {
            "ood_threshold": meta["ood"]["threshold"],
            **meta["ood"]["fit"],
            "appearance_threshold": meta["ood"]["appearance"]["threshold"],
            "appearance_val_rejection": meta["ood"]["appearance"]["fit"]["val_rejection"],
        }
    temp = fit_temperature(probs, val.y)
    cal = apply_temperature(probs, temp)
    pos = positive_score(cal, val.negative_index)
    thr = youden_threshold(val.positive, pos)
    band = [max(0.0, thr - ABSTAIN_HALF_WIDTH), min(1.0, thr + ABSTAIN_HALF_WIDTH)]
    meta["decision"] = {"threshold": round(thr, 6), "abstain_band": [round(b, 6) for b in band]}
    meta["calibration"] = {"method": "temperature", "temperature": round(temp, 6)}
    sidecar.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    # the drift reference: the final package's signals on the raw validation frames
    drift = fit_drift(sidecar, val, provenance)
    if drift is not None:
        meta["drift"] = drift
        sidecar.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    sens = float((pos[val.positive] >= thr).mean())
    spec = float((pos[~val.positive] < thr).mean())
    summary = {
        "n_val": len(val),
        "temperature": temp,
        "threshold": thr,
        "abstain_band": band,
        "val_sensitivity": sens,
        "val_specificity": spec,
        "val_youden_j": sens + spec - 1.0,
        "bytes": len(tflite),
        "created": datetime.date.today().isoformat(),
        **ood_summary,
    }
    return sidecar, summary
