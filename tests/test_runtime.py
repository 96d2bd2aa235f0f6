"""The inference runtime: backend selection, quantisation, golden outputs, threads.

Models are the real TFLite fixtures in ``tests/data/models`` (float32, int8, uint8 I/O and
int8 with float I/O of one tiny network whose float weights are stored in ``golden.npz``),
run on the installed LiteRT interpreter; no interpreter is mocked.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

import medimg_edge as me
from medimg_edge import runtime
from medimg_edge.runtime import QuantParams, _backend

FIXTURES = Path(__file__).parent / "data" / "models"
TINY = ["tiny_float", "tiny_int8", "tiny_uint8", "tiny_int8_floatio"]
IO_DTYPES = {
    "tiny_float": np.float32,
    "tiny_int8": np.int8,
    "tiny_uint8": np.uint8,
    "tiny_int8_floatio": np.float32,
}


@pytest.fixture(scope="module")
def golden() -> dict[str, npt.NDArray[Any]]:
    with np.load(FIXTURES / "golden.npz") as data:
        return {k: data[k] for k in data.files}


def _load(name: str, **kwargs: Any) -> me.Model:
    return me.load_model(FIXTURES / f"{name}.json", delegate="cpu", **kwargs)


def reference_network(x: npt.NDArray[Any], w: dict[str, npt.NDArray[Any]]) -> dict[str, Any]:
    """The tiny fixture network in float64 NumPy, from its stored weights."""
    img = x[..., 0].astype(np.float64)
    n, h, wd = img.shape
    pad = np.pad(img, ((0, 0), (1, 1), (1, 1)))
    feat = np.zeros((n, h, wd, 4))
    for dy in range(3):
        for dx in range(3):
            feat += pad[:, dy : dy + h, dx : dx + wd, None] * w["conv_w"][dy, dx, 0, :]
    feat = np.maximum(feat + w["conv_b"], 0.0)
    logits = feat.mean(axis=(1, 2)) @ w["dense_w"] + w["dense_b"]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    heat = feat @ w["head_w"][0, 0] + w["head_b"]
    return {
        "scores": e / e.sum(axis=1, keepdims=True),
        "heatmap": 1.0 / (1.0 + np.exp(-heat[..., 0])),
    }


# -- backend ----------------------------------------------------------------------------------
def test_backend_is_litert_and_reported() -> None:
    b = runtime.backend()
    assert b.name == "litert" and b.distribution.startswith("ai-edge-litert")
    info = me.info()
    assert info["runtime"] == {"name": b.name, "distribution": b.distribution, "version": b.version}
    assert _load("tiny_int8").info["runtime"]["name"] == "litert"


def test_unknown_runtime_pin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(runtime.RUNTIME_ENV, "onnx")
    _backend._reset_cache()
    with pytest.raises(me.ModelError, match="'onnx' is not one of litert, tflite_runtime"):
        runtime.backend()
    assert me.info()["runtime"]["name"] is None


def test_no_runtime_installed_explains_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    for mod in ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime"):
        monkeypatch.setitem(sys.modules, mod, None)  # makes the import fail
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    monkeypatch.setitem(sys.modules, "tensorflow.lite", None)
    _backend._reset_cache()
    with pytest.raises(me.ModelError) as err:
        runtime.backend()
    text = str(err.value)
    for module in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow.lite"):
        assert module in text
    assert "pip install ai-edge-litert" in text
    with pytest.raises(me.ModelError, match="no TFLite runtime"):
        _load("tiny_int8")


@pytest.fixture(autouse=True)
def _fresh_backend() -> Any:
    _backend._reset_cache()
    yield
    _backend._reset_cache()


@pytest.mark.skipif(
    importlib.util.find_spec("tensorflow") is None,
    reason="the tensorflow fallback needs tensorflow (the [train] extra)",
)
def test_tensorflow_fallback_gives_the_same_outputs(
    monkeypatch: pytest.MonkeyPatch, golden: dict[str, Any]
) -> None:
    want = _load("tiny_int8").predict(golden["inputs"])
    monkeypatch.setenv(runtime.RUNTIME_ENV, "tensorflow")
    _backend._reset_cache()
    model = _load("tiny_int8")
    assert model.info["runtime"]["name"] == "tensorflow"
    got = model.predict(golden["inputs"])
    np.testing.assert_array_equal(got["scores"], want["scores"])


# -- quantisation -----------------------------------------------------------------------------
def _params(dtype: Any, scales: list[float], zps: list[int], axis: int = 0) -> QuantParams:
    return QuantParams(
        np.dtype(dtype), np.asarray(scales, np.float64), np.asarray(zps, np.int64), axis
    )


@given(
    st.sampled_from([np.int8, np.uint8]),
    st.floats(1e-4, 10.0),
    st.integers(-128, 255),
    st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=40),
)
def test_per_tensor_round_trip(dtype: Any, scale: float, zp: int, values: list[float]) -> None:
    info = np.iinfo(dtype)
    zp = int(np.clip(zp, info.min, info.max))
    p = _params(dtype, [scale], [zp])
    x = np.asarray(values)
    q = runtime.quantize(x, p)
    assert q.dtype == dtype
    back = runtime.dequantize(q, p).astype(np.float64)
    lo, hi = scale * (info.min - zp), scale * (info.max - zp)
    inside = (x >= lo) & (x <= hi)
    # Inside the representable range the error is at most half a step; outside it saturates.
    assert np.all(np.abs(back[inside] - x[inside]) <= scale * 0.5 * (1 + 1e-6) + 1e-6)
    assert np.all(q[x < lo] == info.min) and np.all(q[x > hi] == info.max)


@given(st.integers(0, 3), st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_per_axis_round_trip(axis: int, channels: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = [2, 3, 4, 2]
    shape[axis] = channels
    scales = rng.uniform(0.03, 0.5, channels)  # so that [-3, 3] is representable
    zps = rng.integers(-20, 20, channels)
    p = _params(np.int8, scales.tolist(), zps.tolist(), axis)
    x = rng.uniform(-3, 3, shape)
    q = runtime.quantize(x, p)
    back = runtime.dequantize(q, p)
    bshape = [1, 1, 1, 1]
    bshape[axis] = channels
    step = scales.reshape(bshape)
    assert np.all(np.abs(back - x) <= step / 2 + 1e-6)
    # Each channel is quantised with its own scale.
    for c in range(channels):
        sl: list[Any] = [slice(None)] * 4
        sl[axis] = c
        want = np.clip(np.rint(x[tuple(sl)] / scales[c]) + zps[c], -128, 127)
        np.testing.assert_array_equal(q[tuple(sl)], want.astype(np.int8))


def test_per_axis_shape_mismatch() -> None:
    p = _params(np.int8, [0.1, 0.2, 0.3], [0, 0, 0], axis=1)
    with pytest.raises(me.InvalidInputError, match="axis 1 has length 2 but there are 3"):
        runtime.quantize(np.zeros((4, 2)), p)
    with pytest.raises(me.InvalidInputError, match="needs at least 4 dimensions"):
        runtime.quantize(np.zeros(3), _params(np.int8, [0.1, 0.2, 0.3], [0, 0, 0], axis=3))


def test_invalid_quantisation_parameters() -> None:
    with pytest.raises(me.ModelError, match="scales must be finite and > 0"):
        _params(np.int8, [0.0], [0])
    with pytest.raises(me.ModelError, match="out of range"):
        _params(np.int8, [0.1], [200])
    with pytest.raises(me.ModelError, match="2 scales but 3 zero points"):
        _params(np.int8, [0.1, 0.2], [0, 0, 0])


def test_real_per_axis_weights_dequantise_to_the_float_weights(
    golden: dict[str, npt.NDArray[Any]],
) -> None:
    """The converter quantised the conv weights per output channel; our dequantize turns
    the interpreter's int8 weights back into the float weights within half a step."""
    b = runtime.backend()
    interp = b.interpreter_cls(model_content=(FIXTURES / "tiny_int8.tflite").read_bytes())
    interp.allocate_tensors()
    conv_w = golden["conv_w"]  # (3, 3, 1, 4) in Keras layout; TFLite stores (4, 3, 3, 1)
    want = np.transpose(conv_w, (3, 0, 1, 2))
    found = False
    for det in interp.get_tensor_details():
        p = QuantParams.from_details(det)
        if tuple(det["shape"]) != want.shape or not p.per_axis:
            continue
        found = True
        assert p.axis == 0 and p.scales.size == 4 and p.dtype == np.int8
        got = runtime.dequantize(interp.get_tensor(det["index"]), p)
        step = p.scales.reshape(4, 1, 1, 1)
        assert np.all(np.abs(got - want) <= step / 2 + 1e-7)
    assert found, "no per-axis quantised conv weight tensor in tiny_int8"


# -- golden outputs ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", TINY)
def test_io_types(name: str) -> None:
    model = _load(name)
    assert model.input_details["dtype"] == IO_DTYPES[name]
    for details in model.output_details.values():
        assert details["dtype"] == IO_DTYPES[name]
    assert model.info["input"]["shape"] == [1, 16, 16, 1]
    assert model.labels == ("normal", "class_a", "class_b")


@pytest.mark.parametrize("name", TINY)
def test_bare_interpreter_golden_outputs(name: str, golden: dict[str, npt.NDArray[Any]]) -> None:
    """Model.invoke_raw on the stored quantised inputs reproduces the raw outputs recorded
    when the fixtures were made (one quantisation step of slack for runtime versions)."""
    model = _load(name)
    for i in range(golden["inputs"].shape[0]):
        raw = model.invoke_raw(golden[f"{name}__input_raw"][i : i + 1])
        for role in ("scores", "heatmap"):
            want = golden[f"{name}__{role}_raw"][i : i + 1]
            assert raw[role].dtype == want.dtype
            diff = np.abs(raw[role].astype(np.float64) - want.astype(np.float64))
            assert diff.max() <= (1 if want.dtype.kind in "iu" else 1e-5)


@pytest.mark.parametrize("name", TINY)
def test_quantize_input_matches_the_fixture_quantisation(
    name: str, golden: dict[str, npt.NDArray[Any]]
) -> None:
    model = _load(name)
    for i in range(golden["inputs"].shape[0]):
        q = model.quantize_input(golden["inputs"][i])
        assert q.dtype == IO_DTYPES[name]
        diff = np.abs(q.astype(np.float64) - golden[f"{name}__input_raw"][i : i + 1])
        assert diff.max() <= (1 if q.dtype.kind in "iu" else 0)


@pytest.mark.parametrize(
    ("name", "tol_scores", "tol_heatmap"),
    [
        ("tiny_float", 1e-5, 1e-5),
        ("tiny_int8", 0.03, 0.03),
        ("tiny_uint8", 0.03, 0.03),
        ("tiny_int8_floatio", 0.03, 0.03),
    ],
)
def test_predict_matches_the_float_network(
    name: str, tol_scores: float, tol_heatmap: float, golden: dict[str, npt.NDArray[Any]]
) -> None:
    """Dequantised outputs agree with an independent float64 NumPy implementation of the
    network (and with TensorFlow's float outputs stored at fixture creation)."""
    ref = reference_network(golden["inputs"], golden)
    np.testing.assert_allclose(ref["scores"], golden["float_scores"], atol=1e-5)
    out = _load(name).predict(golden["inputs"])
    assert out["scores"].shape == (8, 3) and out["scores"].dtype == np.float32
    assert out["heatmap"].shape == (8, 16, 16)
    assert np.abs(out["scores"] - ref["scores"]).max() <= tol_scores
    assert np.abs(out["heatmap"] - ref["heatmap"]).max() <= tol_heatmap
    assert np.array_equal(out["scores"].argmax(1), ref["scores"].argmax(1))


def test_golden_inputs_are_not_degenerate(golden: dict[str, npt.NDArray[Any]]) -> None:
    assert len(set(golden["float_scores"].argmax(1).tolist())) >= 2


def test_predict_accepts_2d_3d_4d(golden: dict[str, npt.NDArray[Any]]) -> None:
    model = _load("tiny_int8")
    x = golden["inputs"][3]
    want = model.predict(x[None])["scores"]
    np.testing.assert_array_equal(model.predict(x)["scores"], want)
    np.testing.assert_array_equal(model.predict(x[..., 0])["scores"], want)
    np.testing.assert_array_equal(model.predict(x.astype(np.float64))["scores"], want)


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (np.zeros((16, 16), np.uint8), "float values in"),
        (np.zeros((32, 32), np.float32), r"has shape \(32, 32\)"),
        (np.zeros((16, 16, 3), np.float32), "has shape"),
        (np.full((16, 16), np.nan, np.float32), "NaN"),
        (np.zeros((1, 1, 16, 16, 1), np.float32), "5-D"),
        (np.zeros((0, 16, 16, 1), np.float32), "empty"),
    ],
)
def test_predict_rejects_bad_input(x: npt.NDArray[Any], match: str) -> None:
    with pytest.raises(me.InvalidInputError, match=match):
        _load("tiny_int8").predict(x)


def test_invoke_raw_checks_the_tensor() -> None:
    with pytest.raises(me.InvalidInputError, match="dtype int8"):
        _load("tiny_int8").invoke_raw(np.zeros((1, 16, 16, 1), np.float32))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"delegate": "gpu"}, "delegate must be one of"),
        ({"num_threads": 0}, "num_threads"),
        ({"num_threads": 2.5}, "num_threads"),
        ({"device": "usb0"}, "device must be"),
        ({"device": ""}, "device must be"),
    ],
)
def test_load_model_rejects_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    kwargs.setdefault("delegate", "cpu")
    with pytest.raises(me.InvalidInputError, match=match):
        me.load_model(FIXTURES / "tiny_int8.json", **kwargs)


def test_threads_and_info(golden: dict[str, npt.NDArray[Any]]) -> None:
    one = _load("tiny_int8")
    two = _load("tiny_int8", num_threads=2)
    assert one.info["num_threads"] == 1 and two.info["num_threads"] == 2
    np.testing.assert_array_equal(
        one.predict(golden["inputs"])["scores"], two.predict(golden["inputs"])["scores"]
    )
    info = one.info
    assert info["delegate"] == "cpu" and info["file"] == "tiny_int8.tflite"
    assert info["sha256"] == runtime.sha256_file(FIXTURES / "tiny_int8.tflite")
    info["labels"].append("mutated")
    assert one.info["labels"] == ["normal", "class_a", "class_b"]
    assert "tiny_int8" in repr(one)


# -- thread safety ----------------------------------------------------------------------------
def _hammer(fn: Any, n_threads: int) -> list[Any]:
    results: list[Any] = [None] * n_threads
    errors: list[BaseException] = []
    start = threading.Barrier(n_threads)

    def work(i: int) -> None:
        try:
            start.wait()
            results[i] = fn(i)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def test_shared_model_is_thread_safe(golden: dict[str, npt.NDArray[Any]]) -> None:
    """Documented: one Model may be shared; calls are serialised by its lock."""
    model = _load("tiny_int8")
    inputs = golden["inputs"]
    want = [model.predict(inputs[i])["scores"] for i in range(len(inputs))]

    def run(t: int) -> bool:
        for rep in range(40):
            i = (t + rep) % len(inputs)
            if not np.array_equal(model.predict(inputs[i])["scores"], want[i]):
                return False
        return True

    assert all(_hammer(run, 4))


def test_clones_run_in_parallel(golden: dict[str, npt.NDArray[Any]]) -> None:
    """Documented: one clone per thread for parallel inference."""
    model = _load("tiny_uint8")
    inputs = golden["inputs"]
    want = model.predict(inputs)["scores"]
    clones = [model.clone() for _ in range(3)]
    assert all(c.info == model.info for c in clones)
    got = _hammer(lambda t: clones[t].predict(inputs)["scores"], 3)
    for g in got:
        np.testing.assert_array_equal(g, want)


# -- the fused quantisation kernel on every SIMD target ---------------------------------------
@pytest.mark.parametrize("target", me.simd.supported_targets())
@pytest.mark.parametrize("name", TINY)
def test_predict_is_identical_on_every_simd_target(
    name: str, target: str, golden: dict[str, npt.NDArray[Any]]
) -> None:
    model = _load(name)
    want = model.predict(golden["inputs"])
    with me.simd.use_target(target):
        got = model.predict(golden["inputs"])
    for role in want:
        np.testing.assert_array_equal(got[role], want[role])


@pytest.mark.parametrize("target", me.simd.supported_targets())
@given(
    st.integers(1, 4),
    st.integers(1, 300),
    st.sampled_from([np.int8, np.uint8, np.float32]),
    st.integers(0, 2**31 - 1),
)
def test_quantize_affine_kernel_matches_numpy(
    target: str, channels: int, pixels: int, dtype: Any, seed: int
) -> None:
    from medimg_edge import _core

    rng = np.random.default_rng(seed)
    x = rng.uniform(-0.6, 1.6, pixels * channels).astype(np.float32)
    a = rng.uniform(0.5, 400, channels).astype(np.float32)
    b = rng.uniform(-200, 200, channels).astype(np.float32)
    y = (x.reshape(-1, channels) * a + b).reshape(-1)  # float32 product, then sum
    if dtype == np.float32:
        want = y
    else:
        info = np.iinfo(dtype)
        want = np.clip(np.rint(y), info.min, info.max).astype(dtype)
    out = np.empty(x.size, dtype)
    finite, lo, hi = _core.quantize_affine(x, a, b, out, target)
    assert finite and lo == x.min() and hi == x.max()
    np.testing.assert_array_equal(out, want)


def test_predict_refuses_unscaled_frames() -> None:
    model = _load("tiny_int8")
    with pytest.raises(me.InvalidInputError, match=r"scaled to \[0, 1\].*frame / 255"):
        model.predict(np.full((16, 16), 200.0, np.float32))
    with pytest.raises(me.InvalidInputError, match="NaN or infinite"):
        model.predict(np.full((16, 16), 1e300, np.float64))  # overflows float32
    # Small overshoots saturate instead.
    over = model.predict(np.full((16, 16), 1.2, np.float32))["scores"]
    np.testing.assert_array_equal(over, model.predict(np.ones((16, 16), np.float32))["scores"])


# -- what a user sees on the terminal (issue 15) ------------------------------------------
def test_quiet_native_stderr_drops_only_the_xnnpack_info(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """What native code writes to fd 2 inside the block comes back afterwards, without
    the runtime's XNNPACK INFO line (logged at debug), also when the block raises."""
    import logging
    import os

    info = b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
    with caplog.at_level(logging.DEBUG, logger="medimg_edge.runtime"):
        with _backend.quiet_native_stderr():
            os.write(2, info + b"ERROR: the model is broken\n")
        with pytest.raises(RuntimeError), _backend.quiet_native_stderr():
            os.write(2, b"WARNING: kept when the block raises\n" + info)
            raise RuntimeError("refused")
    err = capfd.readouterr().err
    assert "XNNPACK" not in err
    assert "ERROR: the model is broken\n" in err and "WARNING: kept when the block raises" in err
    assert sum("XNNPACK" in r.getMessage() for r in caplog.records) == 2


_QUIET_PROBE = r"""
import threading, numpy as np, medimg_edge as me
frame = me.synth.ultrasound(2, size=128).image
d = me.Diagnoser(modality="ultrasound")          # delegate="auto"
m = me.load_model("us_lesion")                    # delegate="auto"
m.clone().predict(np.zeros(m.input_shape, np.float32))
threads = [threading.Thread(target=d.diagnose, args=(frame,)) for _ in range(3)]
for t in threads: t.start()
for t in threads: t.join()
print(d.model.delegate, m.delegate)
"""


def test_auto_delegate_without_an_edge_tpu_is_quiet() -> None:
    """On a machine without an Edge TPU, ``delegate="auto"`` Diagnosers and models, their
    per-thread clones included, run on the CPU and print nothing to stderr (no
    DelegateFallbackWarning, no LiteRT XNNPACK INFO line; the C++ writes to fd 2, so this
    runs in a fresh interpreter)."""
    import os
    import subprocess

    if runtime.edgetpu_present():
        pytest.skip("this machine shows an Edge TPU")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    run = subprocess.run(
        [sys.executable, "-W", "always", "-c", _QUIET_PROBE],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["cpu", "cpu"]
    assert run.stderr == "", run.stderr
