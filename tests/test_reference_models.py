"""The shipped reference model packages (``models/``): valid, verified, int8, Edge-TPU-shaped,
documented, and working end to end on held-out phantoms (no TensorFlow needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import medimg_edge as me
from medimg_edge import runtime

MODELS = Path(__file__).resolve().parent.parent / "models"
NAMES = {"xray_chest_nodule": "xray", "us_lesion": "ultrasound"}
#: Builtin ops the Edge TPU compiler maps (coral.ai, "TensorFlow models on the Edge TPU").
EDGETPU_OPS = {
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D",
    "FULLY_CONNECTED", "LOGISTIC", "MAX_POOL_2D", "MEAN", "MUL", "QUANTIZE", "RELU",
    "RELU6", "RESHAPE", "SOFTMAX", "REDUCE_MAX",
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(NAMES))
def test_package_is_valid_and_listed(name: str) -> None:
    pkg = runtime.read_package(MODELS / f"{name}.json")
    assert pkg.modality == NAMES[name] and pkg.negative_label == "normal"
    assert pkg.cpu.path.stat().st_size <= 500 * 1024
    assert pkg.cpu.sha256 == runtime.sha256_file(pkg.cpu.path)
    card = pkg.model_card.read_text()
    assert "NOT FOR CLINICAL USE" in card and "Edge TPU" in card
    assert name in {m["name"] for m in me.list_models()}


@pytest.mark.parametrize("name", sorted(NAMES))
def test_int8_and_edgetpu_shaped(name: str) -> None:
    model = me.load_model(name, delegate="cpu")
    assert model.input_details["dtype"] == np.int8
    assert all(d["dtype"] == np.int8 for d in model.output_details.values())
    b = runtime.backend()
    interp = b.interpreter_cls(
        model_content=(MODELS / f"{name}.tflite").read_bytes(),
        experimental_op_resolver_type=b.op_resolver_type.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )  # no XNNPACK: list the model's own operators
    interp.allocate_tensors()
    ops = {op["op_name"] for op in interp._get_ops_details()}
    assert ops <= EDGETPU_OPS, ops - EDGETPU_OPS
    for det in interp.get_tensor_details():
        assert all(int(s) > 0 for s in det["shape"])  # static shapes
        if det["dtype"] == np.float32:
            pytest.fail(f"float tensor {det['name']} in the int8 model")


def test_us_lesion_finds_and_types_lesions() -> None:
    """Held-out phantoms (a generator seed never used in training) of the lesion range the
    model was trained on: the reference model recognises the lesion type of most."""
    d = me.Diagnoser(modality="ultrasound", delegate="cpu")
    correct = decided = 0
    for k, lesion in enumerate(["none", "cyst", "hypoechoic", "hyperechoic"] * 10):
        s = me.synth.ultrasound(9_000_000 + k, lesion=lesion, lesion_prior="conspicuous")
        r = d.diagnose(s.image)
        decided += r.status != "indeterminate"
        correct += r.label == s.label
    assert decided >= 30 and correct >= 0.7 * decided, (correct, decided)


def test_xray_model_separates_nodules() -> None:
    """Held-out phantoms of the training lesion range. xray_chest_nodule v1.1 is the v1.0
    network re-exported with the OOD guard on the widened phantoms, where its held-out AUC
    is only ~0.65 (it does NOT meet the reference target; see its model card): this checks
    that it still ranks nodules above normals on 60 fixed frames (AUC 0.61 measured)."""
    from medimg_edge.training import roc_auc

    d = me.Diagnoser(modality="xray", delegate="cpu")
    truth, scores = [], []
    for k in range(60):
        s = me.synth.chest_xray(9_100_000 + k, nodule=bool(k % 2), lesion_prior="conspicuous")
        score = d.diagnose(s.image).positive_score
        if score is None:  # quality gate or OOD guard refused the frame
            continue
        truth.append(s.label == "nodule")
        scores.append(score)
    assert len(scores) >= 50
    assert roc_auc(np.array(truth), np.array(scores)) > 0.55


def test_sidecar_metrics_match_the_report() -> None:
    for name in NAMES:
        meta = json.loads((MODELS / f"{name}.json").read_text())
        report = json.loads((MODELS / "reports" / name / "metrics.json").read_text())
        assert meta["metrics"]["cnn_int8"]["auc"] == pytest.approx(report["cnn"]["auc"])
