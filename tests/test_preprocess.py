"""``medimg_edge.preprocess``: the one frame -> model-input step (issue 15).

The Diagnoser runs the steps with per-thread reused buffers (the denoising preset writes
into one through ``out=``); what the model is fed must be bit-identical to
:func:`~medimg_edge.preprocess.to_model_input`, which allocates every array afresh.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import medimg_edge as me
from medimg_edge import preprocess

FIXTURES = Path(__file__).parent / "data" / "models"


def _frames() -> dict[str, np.ndarray]:
    us = me.synth.ultrasound(4, size=200, geometry="linear").image  # uint8 B-mode
    xr = me.synth.chest_xray(5, size=192).image  # uint16, 12 bits
    return {"ultrasound": us, "xray": xr}


@pytest.mark.parametrize("preset", ["ultrasound", "xray"])
def test_apply_denoise_into_a_buffer_is_bit_identical(preset: str) -> None:
    for name, frame in _frames().items():
        fresh = preprocess.apply_denoise(frame, preset)
        want = (me.denoise.ultrasound if preset == "ultrasound" else me.denoise.xray)(frame)
        assert np.array_equal(fresh, want), (preset, name)
        buf = np.full(frame.shape, np.nan, np.float32)  # stale contents must not matter
        got = preprocess.apply_denoise(frame, preset, out=buf)
        assert got is buf
        assert np.array_equal(got, fresh), (preset, name)
        again = preprocess.apply_denoise(frame, preset, out=buf)  # reused as is
        assert np.array_equal(again, fresh), (preset, name)


def test_apply_denoise_none_and_bad_presets() -> None:
    frame = _frames()["ultrasound"]
    assert preprocess.apply_denoise(frame, "none") is frame
    with pytest.raises(me.InvalidInputError, match="denoise preset"):
        preprocess.apply_denoise(frame, "median")


def test_runtime_names_still_resolve_to_preprocess() -> None:
    """``me.runtime.to_model_input`` and friends (the names before the module existed)
    are the preprocessing module's functions, not copies."""
    for name in ("apply_denoise", "resize_to_input", "robust_unit", "to_gray", "to_model_input"):
        assert getattr(me.runtime, name) is getattr(preprocess, name)
    with pytest.raises(AttributeError):
        me.runtime.no_such_name  # noqa: B018


@pytest.mark.parametrize("preset", ["none", "ultrasound", "xray"])
def test_diagnoser_feeds_the_model_what_to_model_input_makes(
    preset: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Frames of two sizes and dtypes through one Diagnoser, twice each (the second call
    reuses the thread's buffers, including the denoised frame): every model input equals
    ``to_model_input`` of the frame with the same preset, bit for bit."""
    fed: list[np.ndarray] = []
    real_predict = me.Model.predict

    def recording(self: me.Model, x: Any) -> Any:
        fed.append(np.array(x, copy=True))
        return real_predict(self, x)

    monkeypatch.setattr(me.Model, "predict", recording)
    d = me.Diagnoser(
        FIXTURES / "bench224_int8.json",
        modality="ultrasound",
        delegate="cpu",
        denoise=preset,
        quality_gate=False,
    )
    spec = dataclasses.replace(d.model.package.input, denoise=preset)
    for name, frame in [*_frames().items(), *_frames().items()]:
        fed.clear()
        d.diagnose(frame)
        assert len(fed) == 1, name
        want = preprocess.to_model_input(frame, spec)
        assert np.array_equal(fed[0].reshape(want.shape), want), (preset, name)


@pytest.mark.parametrize("preset", ["ultrasound", "xray"])
def test_denoising_diagnoser_allocates_no_frame_sized_array(preset: str) -> None:
    """With a denoising preset the denoised frame lives in the thread's reused buffer:
    after warm-up one call allocates (tracemalloc sees NumPy's allocations) far less than
    one frame-sized float32 array, where a fresh ``apply_denoise`` result alone is one."""
    import tracemalloc

    d = me.Diagnoser(
        FIXTURES / "bench224_int8.json", modality="ultrasound", delegate="cpu", denoise=preset
    )
    frame = me.synth.ultrasound(8, size=512, geometry="linear").image
    frame_bytes = frame.size * 4
    for _ in range(3):
        d.diagnose(frame)
    peaks = []
    tracemalloc.start()
    try:
        for _ in range(3):
            tracemalloc.reset_peak()
            base, _ = tracemalloc.get_traced_memory()
            assert d.diagnose(frame).label is not None  # the model ran
            peaks.append(tracemalloc.get_traced_memory()[1] - base)
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        preprocess.apply_denoise(frame, preset)  # the allocation the buffer avoids
        fresh = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert fresh >= frame_bytes
    assert max(peaks) < frame_bytes // 8, (peaks, frame_bytes)
