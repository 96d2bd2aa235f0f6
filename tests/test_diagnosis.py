"""``diagnose`` / ``Diagnoser``: inputs, rejections, quality gate, decision rule,
calibration, JSON schema, video mode, threads, and the ``diagnose`` CLI with overlays.

The model is the 224x224 int8 benchmark fixture of ``tests/data/models`` (a real TFLite
model with random weights: its *answers* mean nothing, the pipeline around it is tested);
the frames are real images (scikit-image, pydicom's test files) and the package samples.
"""

from __future__ import annotations

import json
import shutil
import threading
import warnings
from pathlib import Path
from typing import Any

import cv2
import jsonschema
import numpy as np
import pytest

import medimg_edge as me
from medimg_edge.cli import main
from medimg_edge.cli.diagnose import overlay_name

FIXTURES = Path(__file__).parent / "data" / "models"
SCHEMA = json.loads(Path(me.diagnosis.SCHEMA_PATH).read_text())


def _diagnoser(sidecar: Path = FIXTURES / "bench224_int8.json", **kwargs: Any) -> me.Diagnoser:
    kwargs.setdefault("modality", "ultrasound")
    kwargs.setdefault("delegate", "cpu")
    return me.Diagnoser(sidecar, **kwargs)


@pytest.fixture(scope="module")
def diagnoser() -> me.Diagnoser:
    return _diagnoser()


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    # a linear-array B-mode phantom as float32 (the tests scale and square it)
    return me.synth.ultrasound(3, size=256, geometry="linear").image.astype(np.float32)


def _package(tmp_path: Path, **decision: Any) -> Path:
    for suffix in (".tflite", ".json", ".md"):
        shutil.copy(FIXTURES / f"bench224_int8{suffix}", tmp_path / f"bench224_int8{suffix}")
    sidecar = tmp_path / "bench224_int8.json"
    meta = json.loads(sidecar.read_text())
    for key, value in decision.items():
        section, field = key.split("__")
        meta[section][field] = value
    sidecar.write_text(json.dumps(meta))
    return sidecar


def _valid(d: me.Diagnosis, *, include_heatmap: bool = False) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(d.to_json(include_heatmap=include_heatmap))
    jsonschema.validate(obj, SCHEMA)
    return obj


# -- inputs -----------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
def test_accepts_grayscale_dtypes(diagnoser: me.Diagnoser, frame: np.ndarray, dtype: Any) -> None:
    scaled = frame / frame.max() * (255 if dtype == np.uint8 else 4000)
    d = diagnoser.diagnose(scaled.astype(dtype))
    assert d.status in ("positive", "negative", "indeterminate")
    assert d.frame == {"shape": [256, 256], "dtype": np.dtype(dtype).name, "modality": "ultrasound"}
    _valid(d)


def test_colour_frames_and_colour_order(frame: np.ndarray) -> None:
    u8 = (frame / frame.max() * 255).astype(np.uint8)
    bgr = np.dstack([u8, (u8 * 0.5).astype(np.uint8), (255 - u8)])
    bgra = np.dstack([bgr, np.full_like(u8, 255)])
    d_bgr = _diagnoser(color_order="bgr")
    d_rgb = _diagnoser(color_order="rgb")
    a = d_bgr.diagnose(bgr)
    b = d_bgr.diagnose(bgra)
    assert a.scores == b.scores  # alpha is ignored
    want = d_bgr.diagnose(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    assert a.scores == want.scores
    c = d_rgb.diagnose(bgr)  # the same bytes read as RGB give another gray image
    assert c.scores == d_rgb.diagnose(cv2.cvtColor(bgr, cv2.COLOR_RGB2GRAY)).scores


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.full((64, 64), np.nan, np.float32), "NaN"),
        (np.full((64, 64), np.inf), "NaN or infinite"),
        (np.zeros((0, 64), np.uint8), "empty"),
        (np.zeros(4096, np.uint8), "1-D"),
        (np.zeros((2, 64, 64, 1), np.uint8), "4-D"),
        (np.zeros((64, 64), object), "dtype object"),
        (np.zeros((64, 64), np.complex64), "dtype complex64"),
        (np.zeros((16, 64), np.uint8), "at least 32 pixels"),
        (np.zeros((64, 64, 2), np.uint8), "colour frame must be"),
        (np.zeros((64, 64, 3), np.uint16), "colour frame must be"),
        ("frame.png", "NumPy array"),
        (None, "NumPy array"),
    ],
)
def test_rejects_unusable_frames(diagnoser: me.Diagnoser, bad: Any, match: str) -> None:
    with pytest.raises(me.InvalidInputError, match=match):
        diagnoser.diagnose(bad)


def test_rejects_absurd_sizes(diagnoser: me.Diagnoser) -> None:
    huge = np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), (1 << 15, 1 << 14), (0, 0))
    with pytest.raises(me.InvalidInputError, match="pixels"):
        diagnoser.diagnose(huge)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"modality": "mri"}, "modality must be"),
        ({"denoise": "median"}, "denoise must be one of"),
        ({"color_order": "yuv"}, "color_order"),
        ({"smoothing_ms": -1.0}, "smoothing_ms"),
        ({"modality": None}, "for any modality"),
    ],
)
def test_constructor_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(me.InvalidInputError, match=match):
        _diagnoser(**kwargs)


def test_reference_model_needs_a_modality() -> None:
    with pytest.raises(me.InvalidInputError, match="pass modality"):
        me.Diagnoser()


# -- quality gate and decision ------------------------------------------------------------------
def test_quality_gate_refuses_to_guess(diagnoser: me.Diagnoser) -> None:
    blank = np.full((128, 128), 7, np.uint8)
    d = diagnoser.diagnose(blank)
    assert d.status == "indeterminate" and d.label is None and d.scores == {}
    assert "quality:blank" in d.reasons and not d.quality.ok
    assert "model" not in d.timings_ms  # the model was not run
    obj = _valid(d, include_heatmap=True)
    assert "heatmap" not in obj
    ungated = _diagnoser(quality_gate=False).diagnose(blank)
    assert ungated.label is not None and "model" in ungated.timings_ms


def test_decision_follows_threshold_and_band(tmp_path: Path, frame: np.ndarray) -> None:
    probe = _diagnoser().diagnose(frame)
    assert probe.positive_score is not None
    s = probe.positive_score
    cases = {
        "below": (
            {
                "decision__threshold": min(1.0, s + 0.01),
                "decision__abstain_band": [min(1.0, s + 0.01)] * 2,
            },
            "negative",
        ),
        "above": (
            {
                "decision__threshold": max(0.0, s - 0.01),
                "decision__abstain_band": [max(0.0, s - 0.01)] * 2,
            },
            "positive",
        ),
        "inside band": (
            {
                "decision__threshold": s,
                "decision__abstain_band": [max(0.0, s - 0.05), min(1.0, s + 0.05)],
            },
            "indeterminate",
        ),
    }
    for name, (decision, want) in cases.items():
        folder = tmp_path / name.replace(" ", "_")
        folder.mkdir()
        d = _diagnoser(_package(folder, **decision)).diagnose(frame)
        assert d.status == want, name
        if want == "negative":
            assert d.label == "absent" and d.reasons == ("threshold",)
        elif want == "positive":
            assert d.label == "present"
        else:
            assert d.reasons == ("abstain_band",)


def test_temperature_calibration(tmp_path: Path, frame: np.ndarray) -> None:
    base = _diagnoser()
    d1 = base.diagnose(frame)
    hot = _diagnoser(_package(tmp_path, calibration__temperature=4.0)).diagnose(frame)
    # softmax(log p / T) by hand from the model's raw output
    x = me.preprocess.robust_unit(frame)
    x = cv2.resize(x, (224, 224), interpolation=cv2.INTER_AREA)
    raw = base.model.predict(x)["scores"][0].astype(np.float64)
    z = np.log(np.clip(raw, 1e-7, 1)) / 4.0
    p = np.exp(z - z.max())
    p /= p.sum()
    assert hot.scores == pytest.approx(dict(zip(base.model.labels, p, strict=True)), abs=1e-6)
    assert abs(hot.scores["present"] - 0.5) <= abs(d1.scores["present"] - 0.5) + 1e-9


def test_heatmap_and_provenance(diagnoser: me.Diagnoser, frame: np.ndarray) -> None:
    d = diagnoser.diagnose(frame)
    assert d.heatmap is not None and d.heatmap.shape == frame.shape
    assert d.heatmap_grid is not None and d.heatmap_grid.shape == (14, 14)
    assert 0.0 <= d.heatmap.min() and d.heatmap.max() <= 1.0
    obj = _valid(d, include_heatmap=True)
    assert obj["heatmap"]["grid_shape"] == [14, 14] and obj["heatmap"]["frame_shape"] == [256, 256]
    assert obj["model"]["sha256"] == me.runtime.sha256_file(FIXTURES / "bench224_int8.tflite")
    assert obj["runtime"]["simd_target"] == me.simd.active_target()
    assert obj["package_version"] == me.__version__
    assert "Not for clinical use" in obj["notice"]
    assert set(d.timings_ms) >= {"validate", "quality", "denoise", "preprocess", "model", "total"}
    with pytest.raises(AttributeError):
        d.status = "negative"  # type: ignore[misc]


def test_module_level_diagnose_caches_the_diagnoser(frame: np.ndarray) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", me.DelegateFallbackWarning)
        a = me.diagnose(frame, modality="ultrasound", model=FIXTURES / "bench224_int8.json")
        b = me.diagnose(frame, modality="ultrasound", model=FIXTURES / "bench224_int8.json")
    assert a.scores == b.scores


# -- video mode ---------------------------------------------------------------------------------
def test_video_smoothing_and_timestamps(frame: np.ndarray) -> None:
    d = _diagnoser(smoothing_ms=100.0)
    other = np.ascontiguousarray(np.flipud(frame) ** 1.5)
    first = d.diagnose(frame, timestamp_ms=0.0)
    assert not first.smoothed
    raw_second = _diagnoser(smoothing_ms=0.0).diagnose(other)
    second = d.diagnose(other, timestamp_ms=50.0)
    assert second.smoothed and second.timestamp_ms == 50.0
    alpha = 1.0 - np.exp(-50.0 / 100.0)
    for label in first.scores:
        want = (1 - alpha) * first.scores[label] + alpha * raw_second.scores[label]
        assert second.scores[label] == pytest.approx(want, abs=1e-9)
    with pytest.raises(me.InvalidInputError, match="must increase"):
        d.diagnose(frame, timestamp_ms=50.0)
    with pytest.raises(me.InvalidInputError, match="must be finite"):
        d.diagnose(frame, timestamp_ms=float("nan"))
    with pytest.raises(me.InvalidInputError, match="must be a number"):
        d.diagnose(frame, timestamp_ms="later")  # type: ignore[arg-type]
    d.reset()
    assert not d.diagnose(frame, timestamp_ms=1.0).smoothed


def test_video_drops_frames_when_the_caller_outruns_the_pipeline(frame: np.ndarray) -> None:
    d = _diagnoser()
    last = d.diagnose(frame, timestamp_ms=10.0)
    d._video_lock.acquire()  # a frame of this stream is being processed
    try:
        dropped = d.diagnose(frame, timestamp_ms=20.0)
    finally:
        d._video_lock.release()
    assert dropped.dropped and dropped.timestamp_ms == 20.0 and dropped.timings_ms == {}
    assert dropped.scores == last.scores
    _valid(dropped)
    assert not d.diagnose(frame, timestamp_ms=30.0).dropped


def _frames_of_every_kind(frame: np.ndarray) -> dict[str, np.ndarray]:
    u8 = np.clip(frame / np.percentile(frame, 99.9) * 255, 0, 255).astype(np.uint8)
    return {
        "uint8": u8,
        "uint16": u8.astype(np.uint16) * 16,
        "float32": u8.astype(np.float32) / 255,
        "float64": u8 / 255.0,
        "bgr": np.dstack([u8, u8, u8]),
        "rgba": np.dstack([u8, u8, u8, np.full_like(u8, 255)]),
    }


@pytest.mark.parametrize("video", [False, True], ids=["single", "video"])
def test_steady_state_allocates_no_frame_sized_buffer(frame: np.ndarray, video: bool) -> None:
    """After the first frame of a size, the window, the resized input and the quantised
    tensor live in reused per-thread buffers: what one call allocates (traced by
    tracemalloc, which sees NumPy's and OpenCV's array allocations) is a small fixed
    amount for the result, far below one frame-sized float32 array."""
    import tracemalloc

    d = _diagnoser(smoothing_ms=100.0)
    frame_bytes = frame.shape[0] * frame.shape[1] * 4
    for kind, f in _frames_of_every_kind(frame).items():
        d.reset()
        ts = iter(range(0, 10_000, 33))
        for _ in range(3):  # warm-up: buffers for this size and dtype
            d.diagnose(f, timestamp_ms=next(ts) if video else None)
        kept, peaks = [], []
        tracemalloc.start()
        try:
            for _ in range(5):
                tracemalloc.reset_peak()
                base, _ = tracemalloc.get_traced_memory()
                kept.append(d.diagnose(f, timestamp_ms=next(ts) if video else None))
                peaks.append(tracemalloc.get_traced_memory()[1] - base)
        finally:
            tracemalloc.stop()
        assert all(r.label is not None for r in kept), kind  # the model ran
        assert max(peaks) < frame_bytes // 8, (kind, peaks, frame_bytes)
        # Reading the frame-sized heatmap is what allocates it, once.
        assert kept[0].heatmap is not None and kept[0].heatmap is kept[0].heatmap


def test_reused_buffers_never_leak_into_results(diagnoser: me.Diagnoser, frame: np.ndarray) -> None:
    """A result stays what it was when later frames (reusing the buffers) are diagnosed."""
    a = diagnoser.diagnose(frame)
    grid = a.heatmap_grid.copy() if a.heatmap_grid is not None else None
    scores = dict(a.scores)
    other = np.ascontiguousarray(np.flipud(frame) ** 2)
    b = diagnoser.diagnose(other)
    diagnoser.diagnose(frame[:200, :180])  # another size: the buffers are replaced
    assert a.scores == scores and b.scores != a.scores
    assert grid is not None and np.array_equal(a.heatmap_grid, grid)
    assert a.heatmap is not None
    want = cv2.resize(grid, (frame.shape[1], frame.shape[0]), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(a.heatmap, want)
    again = diagnoser.diagnose(frame)
    assert again.scores == a.scores


def test_window_matches_numpy_percentile_definition() -> None:
    """``robust_unit`` (order-statistics kernel, LUT path for uint8) equals the plain
    NumPy definition: ``np.percentile`` of the strided subsample, float32 affine, clip."""

    def reference(image: np.ndarray) -> np.ndarray:
        img = image.astype(np.float32)
        step0, step1 = max(1, img.shape[0] // 256), max(1, img.shape[1] // 256)
        small = img if img.size <= 65536 else img[::step0, ::step1]
        lo, hi = np.percentile(small, (0.5, 99.5))
        if not hi > lo:
            return np.zeros_like(img)
        return np.clip((img - np.float32(lo)) * np.float32(1.0 / (hi - lo)), 0.0, 1.0)

    rng = np.random.default_rng(5)
    for k in range(24):
        h, w = (int(v) for v in rng.integers(32, 700, 2))
        image = [
            rng.integers(0, 256, (h, w)).astype(np.uint8),
            rng.integers(0, 4096, (h, w)).astype(np.uint16),
            (rng.random((h, w)) * 3).astype(np.float32),
            rng.normal(size=(h, w)),
        ][k % 4]
        want = reference(image)
        assert np.array_equal(me.preprocess.robust_unit(image), want), (k, image.dtype)
        out = np.full((h, w), np.nan, np.float32)
        assert me.preprocess.robust_unit(image, out=out) is out
        assert np.array_equal(out, want)
    flat = np.full((40, 50), 9, np.uint8)
    assert not me.preprocess.robust_unit(flat).any()


# -- threads ------------------------------------------------------------------------------------
def test_one_diagnoser_shared_by_threads(frame: np.ndarray) -> None:
    d = _diagnoser()
    frames = [np.ascontiguousarray(np.roll(frame, 9 * k, axis=1)) for k in range(6)]
    want = [d.diagnose(f).scores for f in frames]
    got: list[list[Any]] = [[], []]
    barrier = threading.Barrier(2)

    def work(t: int) -> None:
        barrier.wait()
        for _ in range(5):
            got[t].append([d.diagnose(f).scores for f in frames])

    threads = [threading.Thread(target=work, args=(t,)) for t in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for per_thread in got:
        assert len(per_thread) == 5 and all(r == want for r in per_thread)


# -- real images ----------------------------------------------------------------------------------
def test_scikit_image_samples(diagnoser: me.Diagnoser) -> None:
    data = pytest.importorskip("skimage.data")
    for img in (data.camera(), data.astronaut(), data.moon()):
        bgr = img[:, :, ::-1].copy() if img.ndim == 3 else img
        _valid(diagnoser.diagnose(bgr), include_heatmap=True)


DICOM_FILES = ["CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm"]


@pytest.mark.parametrize("name", DICOM_FILES)
def test_real_dicom_through_diagnose(diagnoser: me.Diagnoser, name: str) -> None:
    pydicom_data = pytest.importorskip("pydicom.data")
    from medimg_edge.io import read_image

    frame = read_image(pydicom_data.get_testdata_file(name))
    _valid(diagnoser.diagnose(frame))


def test_cli_diagnose_json_and_overlays(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pydicom_data = pytest.importorskip("pydicom.data")
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in DICOM_FILES:
        shutil.copy(pydicom_data.get_testdata_file(name), inputs / name)
    cv2.imwrite(str(inputs / "camera.png"), pytest.importorskip("skimage.data").camera())
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "overlays"
    code = main(
        [
            "diagnose", str(inputs), "--model", str(FIXTURES / "bench224_int8.json"),
            "--modality", "xray", "--json", "--overlay", str(out), "--delegate", "cpu",
        ]
    )  # fmt: skip
    assert code == 1  # broken.png failed, the rest went on
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 6
    errors = {Path(r["path"]).name: r.get("code") for r in rows if "error" in r}
    # CT and MR DICOM are refused by the modality rule (no model serves them), whatever
    # --modality says; the broken PNG is unreadable; the camera PNG is diagnosed.
    assert errors == {
        **dict.fromkeys(DICOM_FILES, "unsupported_modality"),
        "broken.png": "bad_header",
    }
    for row in rows:
        if "error" in row:
            continue
        # The CLI row is the Diagnosis plus where it came from (path, overlay, input, clip).
        extra = ("path", "overlay", "input", "clip", "frame_index")
        body = {k: v for k, v in row.items() if k not in extra}
        jsonschema.validate(body, SCHEMA)
        png = Path(row["overlay"])
        assert png.name == overlay_name(Path(row["path"]))
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        img = cv2.imread(str(png))
        assert img is not None and img.ndim == 3 and img.shape[2] == 3
    # Overlay names carry no part of the input names.
    assert not any(stem in p.name for p in out.iterdir() for stem in ("CT", "MR", "camera"))


def test_cli_diagnose_usage_errors(tmp_path: Path) -> None:
    assert main(["diagnose", str(tmp_path / "missing.png"), "--modality", "xray"]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["diagnose", str(empty), "--modality", "xray"]) == 2
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((64, 64), np.uint8))
    assert main(["diagnose", str(tmp_path / "a.png")]) == 2
