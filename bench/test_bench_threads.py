"""Thread scaling: the kernels release the GIL, so two threads run two frames at once.

Each benchmark processes the same batch of 8 frames (512x512 float32 speckle image from
``bench/conftest.py``) either in one thread or split over a 2-worker
``ThreadPoolExecutor``, and checks that both give the same outputs as a direct call.
On a 2-core machine the 2-thread rows should approach half the 1-thread time; a
kernel that held the GIL would show no gain.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

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
