"""Inference runtime benchmarks (issue 4, item 6): ``Model.predict`` vs the bare interpreter.

Groups:

* ``predict-<model>-t<threads>``: the 224x224 benchmark fixtures of ``tests/data/models``
  (``bench224_int8``: int8 I/O; ``bench224_float``: float32) and the shipped reference
  models (``xray_chest_nodule`` 256x256, ``us_lesion`` 128x128; int8 I/O) on the installed
  LiteRT at 1 and 2 interpreter threads. Rows:

  - ``Model.predict`` (role ``wrapper``): a float32 frame in [0, 1] in, dequantised float32
    outputs by name out: validation, the fused normalise+quantise SIMD kernel, set_tensor,
    invoke, get_tensor of both outputs, dequantisation, the per-model lock;
  - bare ``invoke()`` (role ``bare``): a second interpreter on the same bytes and thread
    count, fed a tensor quantised *before* timing: ``set_tensor`` + ``invoke`` +
    ``get_tensor`` of both outputs, nothing else -- the floor any wrapper adds to;
  - bare, builtin kernels (role ``peer``): the same with ``OpResolverType.BUILTIN_WITHOUT_
    DEFAULT_DELEGATES`` (no XNNPACK), to show what XNNPACK contributes.

  Checked: the wrapper's outputs equal the bare interpreter's dequantised outputs.
* ``quantize-224``: the input quantisation alone, float32 224x224 -> int8: the
  ``_core.quantize_affine`` kernel per SIMD target vs NumPy (``clip(rint(x * a + b))``)
  and ``cv2.addWeighted(..., dtype=CV_8S)``. Checked: identical outputs.

The issue-4 target: wrapper overhead ``median(predict) / median(bare) - 1`` under 5% at
224x224 (see ``bench/report.py``, "Runtime overhead").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

import medimg_edge as me
from medimg_edge import _core, runtime

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "tests" / "data" / "models"
THREADS = [1, 2]
#: name -> sidecar: the 224x224 fixtures and the shipped reference models.
PACKAGES = {
    "bench224_int8": MODELS / "bench224_int8.json",
    "bench224_float": MODELS / "bench224_float.json",
    "xray_chest_nodule": ROOT / "models" / "xray_chest_nodule.json",
    "us_lesion": ROOT / "models" / "us_lesion.json",
}


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    rng = np.random.default_rng(224)
    return rng.random((224, 224), dtype=np.float32)


def _bare(path: Path, threads: int, builtin: bool) -> Any:
    b = runtime.backend()
    kwargs: dict[str, Any] = {"num_threads": threads}
    if builtin:
        kwargs["experimental_op_resolver_type"] = (
            b.op_resolver_type.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        )
    interp = b.interpreter_cls(model_content=path.read_bytes(), **kwargs)
    interp.allocate_tensors()
    return interp


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("name", list(PACKAGES))
@pytest.mark.parametrize("role", ["wrapper", "bare", "peer"])
def test_predict_vs_bare(benchmark: Any, frame: np.ndarray, name: str, threads: int, role: str):
    model = me.load_model(PACKAGES[name], delegate="cpu", num_threads=threads)
    h, w, _ = model.input_shape
    if frame.shape != (h, w):
        frame = np.ascontiguousarray(cv2.resize(frame, (w, h)), dtype=np.float32)
    benchmark.group = f"predict-{name}-t{threads}"
    labels = {
        "wrapper": "Model.predict (float frame in, dequantised outputs)",
        "bare": "bare interpreter: set_tensor + invoke + get_tensor",
        "peer": "bare interpreter, builtin kernels (no XNNPACK)",
    }
    benchmark.extra_info.update(
        {"label": labels[role], "role": role, "target": me.simd.active_target()}
    )
    tensor = model.quantize_input(frame)
    want = model.predict(frame)
    if role == "wrapper":
        got = benchmark(model.predict, frame)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])
        return
    if role == "peer" and runtime.backend().op_resolver_type is None:
        pytest.skip("this runtime has no OpResolverType")
    interp = _bare(model.package.cpu.path, threads, builtin=role == "peer")
    in_index = interp.get_input_details()[0]["index"]
    details = {d["name"]: d for d in interp.get_output_details()}
    out_index = [d["index"] for d in details.values()]

    def bare() -> list[np.ndarray]:
        interp.set_tensor(in_index, tensor)
        interp.invoke()
        return [interp.get_tensor(i) for i in out_index]

    raw = benchmark(bare)
    # The wrapper's scores are the bare output dequantised (XNNPACK and the builtin int8
    # kernels may differ by one step).
    by_size = {r.size: r for r in raw}
    scores = by_size[want["scores"].size].reshape(-1)
    p = runtime.QuantParams.from_details(model.output_details["scores"])
    diff = np.abs(runtime.dequantize(scores, p) - want["scores"][0])
    step = p.scales[0] if p.quantized else 1e-6
    assert diff.max() <= step * (0 if role == "bare" else 1) + 1e-7


QUANT_A = np.array([255.0], np.float32)
QUANT_B = np.array([-128.0], np.float32)


@pytest.mark.parametrize(
    ("role", "target"),
    [("target", t) for t in me.simd.supported_targets()] + [("numpy", ""), ("opencv", "")],
)
def test_quantize(benchmark: Any, frame: np.ndarray, role: str, target: str) -> None:
    benchmark.group = "quantize-224"
    want = np.clip(np.rint(frame * QUANT_A[0] + QUANT_B[0]), -128, 127).astype(np.int8)
    if role == "target":
        out = np.empty(frame.shape, np.int8)
        benchmark.extra_info.update(
            {"label": f"_core.quantize_affine [{target}]", "role": "target", "target": target}
        )
        benchmark(_core.quantize_affine, frame, QUANT_A, QUANT_B, out, target)
        np.testing.assert_array_equal(out, want)
    elif role == "numpy":
        benchmark.extra_info.update({"label": "numpy clip(rint(x*a+b))", "role": "numpy"})
        got = benchmark(
            lambda: np.clip(np.rint(frame * QUANT_A[0] + QUANT_B[0]), -128, 127).astype(np.int8)
        )
        np.testing.assert_array_equal(got, want)
    else:
        benchmark.extra_info.update(
            {"label": "cv2.addWeighted(dtype=CV_8S)", "role": "opencv+numpy"}
        )
        got = benchmark(
            cv2.addWeighted,
            frame,
            float(QUANT_A[0]),
            frame,
            0.0,
            float(QUANT_B[0]),
            dtype=cv2.CV_8S,
        )
        assert np.abs(got.astype(int) - want).max() <= 1  # OpenCV rounds its own way
