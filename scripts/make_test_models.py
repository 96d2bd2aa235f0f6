"""Generate the small, deterministic TFLite test fixtures in ``tests/data/models/``.

The fixtures are real TFLite flatbuffers (float32, full int8, uint8 I/O, int8 with float I/O)
of a tiny 3-class toy CNN with a heatmap head, plus a benchmark-sized CNN, their JSON sidecars
and model cards, and ``golden.npz`` with the float weights, golden inputs, the TensorFlow float
reference outputs and the raw interpreter outputs of every tiny variant.

They are test fixtures with fixed (seeded) weights: NOT medical models, not for clinical use.

Run (outside the package's own environment; medimg_edge is not needed)::

    pip install tensorflow-cpu ai-edge-litert
    python scripts/make_test_models.py [--out DIR]

``--out`` defaults to ``tests/data/models`` under the repository root. Re-running overwrites
the generated files (the hand-written README.md there is left alone). The output is
byte-for-byte reproducible with the same TensorFlow / numpy versions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

REPO_ROOT = Path(__file__).resolve().parents[1]
WEIGHT_SEED = 20261124  # all weights (tiny, then bench224) come from this generator
REP_SEED = 20261125  # representative (calibration) images, tiny model
GOLDEN_SEED = 20261126  # golden inputs
BENCH_REP_SEED = 20261127  # representative images, bench224
CREATED = "2026-11-24"
MIN_MARGIN = 0.05  # golden inputs: float top-2 probability margin
RNG_TEXT = f"numpy.random.default_rng({WEIGHT_SEED})"
TINY_VARIANTS = ("tiny_float", "tiny_int8", "tiny_uint8", "tiny_int8_floatio")
Array = np.ndarray


def sample_images(rng: np.random.Generator, n: int, size: int, block: int) -> Array:
    """Images in [0, 1]: per-image range [lo, hi] filled with a mix of blocky and iid noise.

    Pure iid uniform[0, 1] pixels would make the global-average-pooled features (and hence
    the class scores) almost identical for every image, so brightness, contrast and texture
    are varied per image.
    """
    lo = rng.uniform(0.0, 0.5, (n, 1, 1, 1))
    hi = rng.uniform(0.5, 1.0, (n, 1, 1, 1))
    mix = rng.uniform(0.0, 1.0, (n, 1, 1, 1))
    coarse = rng.uniform(0.0, 1.0, (n, size // block, size // block, 1))
    coarse = coarse.repeat(block, axis=1).repeat(block, axis=2)
    noise = rng.uniform(0.0, 1.0, (n, size, size, 1))
    return (lo + (hi - lo) * (mix * coarse + (1.0 - mix) * noise)).astype(np.float32)


def with_extremes(calib: Array) -> Array:
    """Make the first two calibration images all-0 and all-1 so the input range is exactly
    [0, 1] (int8 input scale 1/255, zero point -128; uint8 zero point 0)."""
    calib = calib.copy()
    calib[0], calib[1] = 0.0, 1.0
    return calib


def conv_features(x: Array, conv_w: Array, conv_b: Array) -> Array:
    """NumPy 3x3 'same' convolution (pre-activation), used only to centre the biases."""
    h, w = x.shape[1:3]
    pad = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros((*x.shape[:3], conv_w.shape[-1]), np.float64)
    for i in range(3):
        for j in range(3):
            out += pad[:, i : i + h, j : j + w, :] @ conv_w[i, j]
    return out + conv_b


def tiny_weights(rng: np.random.Generator, calib: Array) -> dict[str, Array]:
    """Seeded weights; conv_b and dense_b are shifted (data-dependent init) so that every conv
    channel is active on about half of the calibration pixels and the classes are balanced."""
    conv_w = rng.normal(0.0, 0.5, (3, 3, 1, 4))
    conv_b = rng.normal(0.0, 0.1, (4,))
    dense_w = rng.normal(0.0, 3.0, (4, 3))
    dense_b = rng.normal(0.0, 0.1, (3,))
    head_w = rng.normal(0.0, 1.0, (1, 1, 4, 1))
    head_b = rng.normal(0.0, 0.1, (1,))
    pre = conv_features(calib, conv_w, np.zeros(4))
    conv_b = conv_b - np.median(pre.reshape(-1, 4), axis=0)
    gap = np.maximum(conv_features(calib, conv_w, conv_b), 0.0).mean(axis=(1, 2))
    dense_b = dense_b - gap.mean(axis=0) @ dense_w
    w = dict(
        conv_w=conv_w, conv_b=conv_b, dense_w=dense_w, dense_b=dense_b, head_w=head_w, head_b=head_b
    )
    return {k: v.astype(np.float32) for k, v in w.items()}


def bench_weights(rng: np.random.Generator) -> dict[str, Array]:
    def he(shape: tuple[int, ...], fan_in: int) -> Array:
        return rng.normal(0.0, np.sqrt(2.0 / fan_in), shape).astype(np.float32)

    def bias(n: int) -> Array:
        return rng.normal(0.0, 0.05, (n,)).astype(np.float32)

    w = {"stem_w": he((3, 3, 1, 16), 9), "stem_b": bias(16)}
    cin = 16
    for i, cout in enumerate((32, 64, 64)):
        w[f"dw{i}_w"], w[f"dw{i}_b"] = he((3, 3, cin, 1), 9), bias(cin)
        w[f"pw{i}_w"], w[f"pw{i}_b"] = he((1, 1, cin, cout), cin), bias(cout)
        cin = cout
    w["head_w"], w["head_b"] = he((1, 1, cin, 1), cin), bias(1)
    w["dense_w"], w["dense_b"] = he((cin, 2), cin), bias(2)
    return w


def tiny_forward(w: dict[str, Array]) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    c = {k: tf.constant(v) for k, v in w.items()}

    def forward(image: tf.Tensor) -> dict[str, tf.Tensor]:
        f = tf.nn.relu(tf.nn.conv2d(image, c["conv_w"], 1, "SAME") + c["conv_b"])
        logits = tf.matmul(tf.reduce_mean(f, axis=[1, 2]), c["dense_w"]) + c["dense_b"]
        heat = tf.sigmoid(tf.nn.conv2d(f, c["head_w"], 1, "SAME") + c["head_b"])
        return {"scores": tf.nn.softmax(logits), "heatmap": heat}

    return forward


def bench_forward(w: dict[str, Array]) -> Callable[[tf.Tensor], dict[str, tf.Tensor]]:
    c = {k: tf.constant(v) for k, v in w.items()}

    def forward(image: tf.Tensor) -> dict[str, tf.Tensor]:
        f = tf.nn.relu6(tf.nn.conv2d(image, c["stem_w"], 2, "SAME") + c["stem_b"])
        for i in range(3):
            f = tf.nn.depthwise_conv2d(f, c[f"dw{i}_w"], [1, 2, 2, 1], "SAME")
            f = tf.nn.relu6(f + c[f"dw{i}_b"])
            f = tf.nn.relu6(tf.nn.conv2d(f, c[f"pw{i}_w"], 1, "SAME") + c[f"pw{i}_b"])
        heat = tf.sigmoid(tf.nn.conv2d(f, c["head_w"], 1, "SAME") + c["head_b"])
        logits = tf.matmul(tf.reduce_mean(f, axis=[1, 2]), c["dense_w"]) + c["dense_b"]
        return {"scores": tf.nn.softmax(logits), "heatmap": heat}

    return forward


def convert(forward: Callable[..., Any], size: int, mode: str, calib: Array) -> bytes:
    """mode: float | int8 | uint8 | int8_floatio."""
    module = tf.Module()
    spec = tf.TensorSpec([1, size, size, 1], tf.float32, name="image")
    module.f = tf.function(forward, input_signature=[spec])
    cf = module.f.get_concrete_function()
    conv = tf.lite.TFLiteConverter.from_concrete_functions([cf], module)
    if mode != "float":

        def rep() -> Iterator[list[Array]]:
            for x in calib:
                yield [x[None]]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if mode in ("int8", "uint8"):
            io = tf.int8 if mode == "int8" else tf.uint8
            conv.inference_input_type = io
            conv.inference_output_type = io
    return bytes(conv.convert())


def qparams(detail: dict[str, Any]) -> Array:
    scale, zp = detail["quantization"]
    if detail["dtype"] == np.float32 or scale == 0.0:
        return np.array([1.0, 0.0])
    return np.array([float(scale), float(zp)])


def run_raw(model: bytes, inputs: Array) -> dict[str, Any]:
    """Bare interpreter: quantise inputs ourselves, set_tensor/invoke/get_tensor."""
    interp = Interpreter(model_content=model, num_threads=1)
    interp.allocate_tensors()
    runner = interp.get_signature_runner()
    ins, outs = runner.get_input_details(), runner.get_output_details()
    del runner  # a live SignatureRunner holds the wrapper, and then invoke() refuses to run
    assert set(ins) == {"image"} and set(outs) == {"scores", "heatmap"}, (ins, outs)
    d_in = ins["image"]
    qp_in = qparams(d_in)
    if np.issubdtype(d_in["dtype"], np.integer):
        info = np.iinfo(d_in["dtype"])
        q = np.round(inputs / qp_in[0]) + qp_in[1]
        raw_in = np.clip(q, info.min, info.max).astype(d_in["dtype"])
    else:
        raw_in = inputs.astype(d_in["dtype"])
    res: dict[str, Any] = {"input_raw": raw_in, "input_qparams": qp_in}
    res["input_dtype"] = np.dtype(d_in["dtype"]).name
    got: dict[str, list[Array]] = {"scores": [], "heatmap": []}
    for x in raw_in:
        interp.set_tensor(d_in["index"], x[None])
        interp.invoke()
        for key in got:
            got[key].append(interp.get_tensor(outs[key]["index"])[0])
    for key in got:
        res[f"{key}_raw"] = np.stack(got[key])
        res[f"{key}_qparams"] = qparams(outs[key])
        res[f"{key}_dtype"] = np.dtype(outs[key]["dtype"]).name
    res["per_axis"] = []
    for t in interp.get_tensor_details():
        qp = t["quantization_parameters"]
        if qp["scales"].size > 1:
            res["per_axis"].append(
                (t["name"], t["shape"].tolist(), qp["scales"].size, int(qp["quantized_dimension"]))
            )
    return res


def dequant(raw: Array, qp: Array) -> Array:
    return (raw.astype(np.float64) - qp[1]) * qp[0]


def tf_reference(fwd: Callable[..., Any], x: Array) -> tuple[Array, Array]:
    outs = [fwd(tf.constant(xi[None])) for xi in x]
    return tuple(np.concatenate([o[k].numpy() for o in outs]) for k in ("scores", "heatmap"))


def summarise(name: str, model: bytes, res: dict[str, Any], ref_s: Array, ref_h: Array) -> None:
    err_s = np.abs(dequant(res["scores_raw"], res["scores_qparams"]) - ref_s).max()
    err_h = np.abs(dequant(res["heatmap_raw"], res["heatmap_qparams"]) - ref_h).max()
    print(f"\n{name}: {len(model)} bytes")
    for key in ("input", "scores", "heatmap"):
        qp = res[f"{key}_qparams"]
        shape = res[f"{key}_raw"].shape[1:]
        print(f"  {key:8s} {res[f'{key}_dtype']:8s} {shape} scale={qp[0]:.8g} zero_point={qp[1]:g}")
    print(f"  max|deq - float| on {len(ref_s)} inputs: scores {err_s:.5f}, heatmap {err_h:.5f}")
    print(f"  argmax {res['scores_raw'].argmax(1).tolist()} (float {ref_s.argmax(1).tolist()})")
    print(f"  per-axis quantised tensors: {len(res['per_axis'])}")
    for t_name, shape, n_scales, qdim in res["per_axis"]:
        if len(shape) == 4:
            print(f"    {t_name}: shape {shape}, {n_scales} scales, quantized_dimension {qdim}")


def pick_golden(fwd: Callable[..., Any], rng: np.random.Generator, n: int = 8) -> Array:
    """n of 64 candidate images whose float top-2 score margin is >= MIN_MARGIN (so int8
    rounding cannot flip the argmax), taken round-robin over the predicted classes."""
    cand = sample_images(rng, 64, 16, 4)
    scores = tf_reference(fwd, cand)[0]
    top2 = np.sort(scores, axis=1)[:, -2:]
    ok = np.flatnonzero(top2[:, 1] - top2[:, 0] >= MIN_MARGIN)
    cls = scores.argmax(axis=1)
    rank = {i: int(np.sum(cls[ok[ok < i]] == cls[i])) for i in ok}
    keep = sorted(ok, key=lambda i: (rank[i], i))[:n]
    assert len(keep) == n, "not enough golden candidates with a clear winner"
    return cand[keep]


def describe(mode: str) -> str:
    return {
        "float": "float32 weights and float32 I/O",
        "int8": "full int8 (int8 I/O)",
        "uint8": "full int8 internals with uint8 I/O",
        "int8_floatio": "full int8 internals with float32 I/O (quantize/dequantize ops inside)",
    }[mode]


def write_package(out: Path, name: str, model: bytes, mode: str, bench: bool) -> None:
    (out / f"{name}.tflite").write_bytes(model)
    size = 224 if bench else 16
    if bench:
        what = "Benchmark fixture: Edge-TPU-friendly depthwise-separable CNN, random weights"
        labels, neg = ["absent", "present"], "absent"
    else:
        what = "Test fixture: 3-class toy CNN with a heatmap head"
        labels, neg = ["normal", "class_a", "class_b"], "normal"
    desc = f"{what}, {describe(mode)}. Not a medical model."
    sha256 = hashlib.sha256(model).hexdigest()
    sidecar = {
        "format": "medimg-edge-model",
        "schema_version": 1,
        "name": name,
        "version": "1.0.0",
        "modality": "any",
        "task": "classification",
        "description": desc,
        "labels": labels,
        "negative_label": neg,
        "input": {
            "name": "image",
            "height": size,
            "width": size,
            "channels": 1,
            "color_order": "gray",
            "mean": [0.0],
            "std": [1.0],
        },
        "outputs": {
            "scores": {"name": "scores", "kind": "probabilities"},
            "heatmap": {"name": "heatmap", "kind": "probabilities"},
        },
        "decision": {"threshold": 0.5, "abstain_band": [0.4, 0.6]},
        "calibration": {"method": "temperature", "temperature": 1.0},
        "files": {"cpu": {"path": f"{name}.tflite", "sha256": sha256, "bytes": len(model)}},
        "provenance": {
            "training_data": f"none: fixed weights drawn from {RNG_TEXT}",
            "created": CREATED,
            "code_version": "scripts/make_test_models.py",
            "command": "python scripts/make_test_models.py",
        },
        "model_card": f"{name}.md",
    }
    (out / f"{name}.json").write_text(json.dumps(sidecar, indent=2, sort_keys=False) + "\n")
    heat = "(1, 14, 14, 1)" if bench else "(1, 16, 16, 1)"
    card = f"""# {name}

{desc}

**Not for clinical use.** This is a {"benchmark" if bench else "unit-test"} fixture generated by
`scripts/make_test_models.py` with weights drawn from `numpy.random.default_rng({WEIGHT_SEED})`;
it was never trained and its outputs mean nothing.

- Input `image`: (1, {size}, {size}, 1), gray, values in [0, 1] before quantisation.
- Output `scores`: (1, {len(labels)}) softmax probabilities over {labels}.
- Output `heatmap`: {heat} sigmoid probabilities.
- Quantisation: {describe(mode)}.
"""
    (out / f"{name}.md").write_text(card)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "tests" / "data" / "models")
    out: Path = ap.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    tf.random.set_seed(0)

    rng = np.random.default_rng(WEIGHT_SEED)
    calib = with_extremes(sample_images(np.random.default_rng(REP_SEED), 200, 16, 4))
    tw = tiny_weights(rng, calib)
    bw = bench_weights(rng)
    bench_rng = np.random.default_rng(BENCH_REP_SEED)
    bench_calib = with_extremes(sample_images(bench_rng, 100, 224, 16))

    fwd = tiny_forward(tw)
    golden_in = pick_golden(fwd, np.random.default_rng(GOLDEN_SEED))
    golden: dict[str, Array] = {"inputs": golden_in, **tw}
    golden["float_scores"], golden["float_heatmap"] = tf_reference(fwd, golden_in)
    argmax = golden["float_scores"].argmax(axis=1)
    assert len(set(argmax.tolist())) > 1, f"degenerate golden scores: argmax {argmax}"
    print(f"tensorflow {tf.__version__}, numpy {np.__version__}")
    top = golden["float_scores"].max(axis=1).astype(float).round(3).tolist()
    print(f"float golden argmax {argmax.tolist()}, top probability {top}")
    for name in TINY_VARIANTS:
        mode = name.removeprefix("tiny_")
        model = convert(fwd, 16, mode, calib)
        write_package(out, name, model, mode, bench=False)
        res = run_raw(model, golden_in)
        for key in ("input", "scores", "heatmap"):
            golden[f"{name}__{key}_qparams"] = res[f"{key}_qparams"]
            golden[f"{name}__{key}_raw"] = res[f"{key}_raw"]
        summarise(name, model, res, golden["float_scores"], golden["float_heatmap"])

    bfwd = bench_forward(bw)
    bench_x = bench_calib[2:6]
    bench_s, bench_h = tf_reference(bfwd, bench_x)
    for name, mode in (("bench224_float", "float"), ("bench224_int8", "int8")):
        model = convert(bfwd, 224, mode, bench_calib)
        write_package(out, name, model, mode, bench=True)
        summarise(name, model, run_raw(model, bench_x), bench_s, bench_h)

    np.savez(out / "golden.npz", **golden)
    total = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    print(f"\nwrote {len(list(out.iterdir()))} files to {out} ({total} bytes)")


if __name__ == "__main__":
    main()
