"""Thread scaling: the kernels release the GIL, so two threads run two frames at once.

Each benchmark processes the same batch of 8 frames (512x512 float32 speckle image from
``bench/conftest.py``) either in one thread or split over a 2-worker
``ThreadPoolExecutor``, and checks that both give the same outputs as a direct call.
On a 2-core machine the 2-thread rows should approach half the 1-thread time; a
kernel that held the GIL would show no gain.

``diagnose`` on two streams, the shipped ``us_lesion`` package with both out-of-distribution
signals and a copy without ``ood.appearance`` (group ``threads-diagnose-<package>``: 16
linear 512 px frames, one thread or two threads with a stream of 8 each).  The same
measurement as a plain script (best of 30 rounds, no pytest-benchmark machinery):
``python bench/test_bench_threads.py [us_lesion|xray_chest_nodule]``.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import medimg_edge as me

BATCH = 8

KERNELS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "srad-10it": lambda f: me.denoise.srad(f, iterations=10, q0=0.5),
    "lee-7x7": lambda f: me.denoise.lee(f, window=7, noise_cv=0.5),
    "frost-7x7": lambda f: me.denoise.frost(f, window=7),
}


@pytest.fixture(scope="module")
def frames(speckle) -> list[np.ndarray]:
    base = speckle.noisy
    # Distinct frames (shifted copies) so no result can be reused between calls.
    return [np.ascontiguousarray(np.roll(base, 7 * k, axis=1)) for k in range(BATCH)]


@pytest.fixture(scope="module")
def pool():
    with ThreadPoolExecutor(max_workers=2) as ex:
        yield ex


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kernel", list(KERNELS))
def test_thread_scaling(benchmark, frames, pool, kernel, threads):
    fn = KERNELS[kernel]
    benchmark.group = f"threads-{kernel}"
    benchmark.extra_info.update(
        {
            "label": f"{BATCH} frames, {threads} thread(s)",
            "target": me.simd.active_target(),
        }
    )
    if threads == 1:
        out = benchmark(lambda: [fn(f) for f in frames])
    else:
        out = benchmark(lambda: list(pool.map(fn, frames)))
    expected = [fn(f) for f in frames]
    for a, b in zip(out, expected, strict=True):
        np.testing.assert_array_equal(a, b)


# ---- diagnose on two streams, with and without the appearance guard ----------------------

MODELS = Path(__file__).resolve().parent.parent / "models"


def _packages(name: str, tmp: Path) -> dict[str, Any]:
    """The shipped package and a copy of it without ``ood.appearance``."""
    for suffix in (".tflite", ".json", ".md"):
        shutil.copy(MODELS / f"{name}{suffix}", tmp / f"{name}{suffix}")
    meta = json.loads((tmp / f"{name}.json").read_text())
    del meta["ood"]["appearance"]
    (tmp / f"{name}.json").write_text(json.dumps(meta))
    return {"both guards": name, "without ood.appearance": tmp / f"{name}.json"}


def _stream_frames(name: str) -> list[np.ndarray]:
    if name.startswith("xray"):
        base = me.synth.chest_xray(3, size=512).image
    else:
        base = me.synth.ultrasound(11, size=512, geometry="linear").image
    return [np.ascontiguousarray(np.roll(base, 13 * k, axis=1)) for k in range(16)]


def _two_streams(diag: me.Diagnoser, frames: list[np.ndarray]) -> list[me.Diagnosis]:
    out: list[list[me.Diagnosis]] = [[], []]

    def run(k: int) -> None:
        out[k] = [diag.diagnose(f) for f in frames[8 * k : 8 * k + 8]]

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out[0] + out[1]


@pytest.fixture(scope="module", params=["both guards", "without ood.appearance"])
def stream_diagnoser(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    path = _packages("us_lesion", tmp_path_factory.mktemp("us_lesion"))[request.param]
    return request.param, me.Diagnoser(path, "ultrasound", delegate="cpu", num_threads=1)


@pytest.mark.parametrize("threads", [1, 2])
def test_diagnose_two_streams(benchmark, stream_diagnoser, threads):  # type: ignore[no-untyped-def]
    label, diag = stream_diagnoser
    frames = _stream_frames("us_lesion")
    benchmark.group = f"threads-diagnose-us_lesion-{label}"
    benchmark.extra_info["label"] = f"16 frames 512x512, {threads} thread(s), {label}"
    want = [diag.diagnose(f).scores for f in frames]
    if threads == 1:
        got = benchmark(lambda: [diag.diagnose(f) for f in frames])
    else:
        got = benchmark(lambda: _two_streams(diag, frames))
    assert [g.scores for g in got] == want


def main(argv: list[str]) -> int:
    """Plain-script measurement: ms per frame, best of 30 rounds, 1 vs 2 threads."""
    import tempfile

    name = argv[0] if argv else "us_lesion"
    modality = "xray" if name.startswith("xray") else "ultrasound"
    frames = _stream_frames(name)
    print("| package | t1 ms/frame | t2 ms/frame | scaling |")
    print("|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, path in _packages(name, Path(tmp)).items():
            diag = me.Diagnoser(path, modality, delegate="cpu", num_threads=1)
            for f in frames:
                diag.diagnose(f)
            t1, t2 = [], []
            for _ in range(30):
                t = time.perf_counter()
                for f in frames:
                    diag.diagnose(f)
                t1.append(time.perf_counter() - t)
                t = time.perf_counter()
                _two_streams(diag, frames)
                t2.append(time.perf_counter() - t)
            a, b = min(t1) / len(frames) * 1e3, min(t2) / len(frames) * 1e3
            print(f"| {name} ({label}) | {a:.3f} | {b:.3f} | {a / b:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
