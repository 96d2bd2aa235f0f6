"""The mixed-workload loop of the issue-17 benchmarks (bench/test_bench_extract.py,
test_bench_glcm.py, test_bench_lbp.py): before every call a NumPy neighbour allocates and
frees frame-sized temporaries (glibc returns the pages, a fresh allocation faults them in
again), and each call's own time and minor page faults are recorded, so that
``extra_info`` can report the kernel-only median (``kernel_ms``) and the faults per call
(``faults_per_call``) next to pytest-benchmark's time of the whole loop body."""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def neighbour(img: np.ndarray) -> float:
    """Allocate and free two frame-sized float32 temporaries and a 4x-frame array."""
    t = img.astype(np.float32) * np.float32(2.0)
    u = np.sqrt(t + np.float32(1.0))
    big = np.ones(4 * img.size, np.float32)
    return float(u[0, 0] + big[-1])


class MixedLoop:
    """``once()`` runs ``call`` (after :func:`neighbour` when ``mode == "mixed"``) and
    records its time and page faults; :meth:`record` writes them to ``extra_info``."""

    def __init__(self, img: np.ndarray, mode: str, call: Callable[[], Any]) -> None:
        self.img, self.mode, self.call = img, mode, call
        self.times: list[float] = []
        self.faults = 0

    def once(self) -> Any:
        if self.mode == "mixed":
            neighbour(self.img)
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        res = self.call()
        self.times.append(time.perf_counter() - t0)
        self.faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
        return res

    def record(self, benchmark: Any) -> None:
        benchmark.extra_info["kernel_ms"] = round(1e3 * float(np.median(self.times)), 4)
        benchmark.extra_info["faults_per_call"] = round(self.faults / max(len(self.times), 1), 1)
