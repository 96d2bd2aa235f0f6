"""Cold start (issue 17): ``import medimg_edge`` and the first ``me.diagnose()`` of a fresh
process, against ``import numpy, cv2`` and a bare LiteRT interpreter (construct + allocate
+ first invoke) in fresh processes of the same run.

Each round starts a new interpreter (``sys.executable``) with the bytecode cache enabled
(``PYTHONDONTWRITEBYTECODE`` removed, as on an installed device: a wheel ships or writes
``.pyc`` files); the first round of each benchmark warms that cache and the disk cache and
is not counted.  The probe prints its own ``time.perf_counter`` deltas, so process start-up
and interpreter tear-down are not in the numbers: ``extra_info`` has the medians
(``probe_ms``) that ``bench/RESULTS.md`` reports; the pytest-benchmark time is the whole
subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

import medimg_edge as me

MODEL = "us_lesion"

PRELUDE = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np, cv2
t1 = time.perf_counter()
out = {"numpy_cv2": 1e3 * (t1 - t0)}
frame = (np.random.default_rng(0).random((256, 256)) * 255).astype(np.uint8)
"""

PROBES = {
    # import medimg_edge after numpy and cv2
    "import": PRELUDE
    + r"""
t = time.perf_counter()
import medimg_edge as me
out["probe"] = 1e3 * (time.perf_counter() - t)
""",
    # the peer of "import": numpy and cv2 alone (the probe value is their import time)
    "import-numpy-cv2": PRELUDE + 'out["probe"] = out["numpy_cv2"]\n',
    # first diagnose after import medimg_edge (includes the lazy runtime import)
    "first-diagnose": PRELUDE
    + r"""
import medimg_edge as me
t = time.perf_counter()
d = me.diagnose(frame, model=MODEL)
out["probe"] = 1e3 * (time.perf_counter() - t)
out["status"] = d.status
""",
    # the same with the LiteRT package already imported (what the bare peer measures)
    "first-diagnose-runtime-imported": PRELUDE
    + r"""
import medimg_edge as me
import ai_edge_litert.interpreter
t = time.perf_counter()
d = me.diagnose(frame, model=MODEL)
out["probe"] = 1e3 * (time.perf_counter() - t)
out["status"] = d.status
""",
    # bare LiteRT: read the model, construct, allocate, first invoke
    "bare-litert": PRELUDE
    + r"""
from ai_edge_litert.interpreter import Interpreter
t = time.perf_counter()
data = open(PATH, "rb").read()
it = Interpreter(model_content=data)
it.allocate_tensors()
inp = it.get_input_details()[0]
it.set_tensor(inp["index"], np.zeros(inp["shape"], inp["dtype"]))
it.invoke()
out["probe"] = 1e3 * (time.perf_counter() - t)
""",
}


def _model_path() -> str:
    from medimg_edge.runtime._package import find_sidecar, read_package

    return str(read_package(find_sidecar(MODEL)).cpu.path)


def _run(code: str) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    full = f"MODEL = {MODEL!r}\nPATH = {_model_path()!r}\n" + code + "\nprint(json.dumps(out))\n"
    proc = subprocess.run(
        [sys.executable, "-c", full], capture_output=True, text=True, env=env, check=True
    )
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.benchmark(group="cold-start-import")
@pytest.mark.parametrize("probe", ["import", "import-numpy-cv2"])
def test_cold_import(benchmark: Any, probe: str) -> None:
    _run(PROBES[probe])  # warm the bytecode and disk caches
    values: list[float] = []

    def once() -> dict[str, Any]:
        r = _run(PROBES[probe])
        values.append(r["probe"])
        return r

    r = benchmark.pedantic(once, rounds=7, iterations=1)
    assert r["probe"] > 0.0
    benchmark.extra_info.update(probe=probe, probe_ms=round(float(np.median(values)), 2))


@pytest.mark.benchmark(group="cold-start-first-diagnose")
@pytest.mark.parametrize(
    "probe", ["first-diagnose", "first-diagnose-runtime-imported", "bare-litert"]
)
def test_cold_first_diagnose(benchmark: Any, probe: str) -> None:
    if MODEL not in {m["name"] for m in me.list_models() if "error" not in m}:
        pytest.fail(f"the bundled reference model {MODEL} is missing")
    _run(PROBES[probe])
    values: list[float] = []

    def once() -> dict[str, Any]:
        r = _run(PROBES[probe])
        values.append(r["probe"])
        return r

    r = benchmark.pedantic(once, rounds=7, iterations=1)
    if probe.startswith("first-diagnose"):
        assert r["status"] in ("positive", "negative", "indeterminate")
    benchmark.extra_info.update(probe=probe, probe_ms=round(float(np.median(values)), 2))
