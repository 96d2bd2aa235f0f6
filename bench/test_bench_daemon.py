"""Watch-folder daemon throughput (issue 7 item 10) against a bare loop, in one run.

Files: 512x512 uint8 B-mode phantoms (``me.synth.ultrasound``, linear array), as PNG and as DICOM
(Explicit VR Little Endian, Modality US), all different.  Model: the ultrasound reference
model, one thread.

Groups ``daemon-png`` and ``daemon-dicom``, each with:

* ``bare``: a Python loop ``Diagnoser.diagnose(read_input(path, content_hash=False)
  .frames[0])`` over the files (the same reader and Diagnoser the workers use, without
  the content hash the daemon needs for its ledger, nothing written);
* ``daemon-<k>w``: ``medimg-edge watch`` with ``k`` worker processes, already running
  and idle; the time from hard-linking all files into its inbox (one ``link`` each, the
  files keep their old modification time) until the last ``<id>.json`` exists.  It
  includes the settle rule (a file with an old modification time is taken at its second
  sighting), the ledger transactions, the IPC, the atomic writes with ``fsync`` and the
  moves to ``processed/``.  ``extra_info`` has files/s and the ratio to ``bare``.

Files per case: 1000.  Polling for the results costs the daemon cases up to 20 ms.  With
``--benchmark-disable`` (CI) every case runs once over 12 files and still checks that each
file got exactly one correct result.  The 5000-file RSS run is ``bench/daemon_rss.py``.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

import medimg_edge as me

pytest.importorskip("watchdog")
pytest.importorskip("prometheus_client")
pydicom = pytest.importorskip("pydicom")

# the daemon and DICOM helpers of the tests (real daemon processes, the DICOM builder)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from daemon_helpers import BENCH, DaemonProc, make_dirs, results  # noqa: E402
from dicom_helpers import us_dataset  # noqa: E402

SIZE = 512
N_FULL = 1000
N_CI = 12
_BARE_S: dict[tuple[str, int], float] = {}


@functools.cache
def _base(k: int) -> np.ndarray:
    frame: np.ndarray = me.synth.ultrasound(1000 + k, size=SIZE, geometry="linear").image
    return frame


def _frame(i: int) -> np.ndarray:
    """One of 32 phantoms with the index written into its corner (every file differs)."""
    f = _base(i % 32).copy()
    f[0, :4] = np.frombuffer(i.to_bytes(4, "little"), np.uint8)
    return f


def _dicom(frame: np.ndarray, path: Path) -> None:
    pydicom.dcmwrite(path, us_dataset(frame, PatientName="BENCH^PHANTOM"), enforce_file_format=True)


@pytest.fixture(scope="module")
def corpus() -> Iterator[dict[tuple[str, int], list[Path]]]:
    root = Path(tempfile.mkdtemp(prefix="bench-daemon-"))

    class Files(dict[tuple[str, int], list[Path]]):
        def __missing__(self, key: tuple[str, int]) -> list[Path]:
            kind, n = key
            folder = root / f"{kind}-{n}"
            folder.mkdir()
            paths = []
            for i in range(n):
                frame = _frame(i)
                p = folder / f"f{i:05d}.{'png' if kind == 'png' else 'dcm'}"
                if kind == "png":
                    assert cv2.imwrite(str(p), frame)
                else:
                    _dicom(frame, p)
                paths.append(p)
            old = time.time() - 60
            for p in paths:
                os.utime(p, (old, old))
            self[key] = paths
            return paths

    files = Files()
    yield files
    shutil.rmtree(root, ignore_errors=True)


def _n(benchmark: Any) -> int:
    return N_CI if getattr(benchmark, "disabled", False) else N_FULL


class _Daemon:
    def __init__(self, workers: int) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="bench-watch-"))
        self.inbox, self.outbox = make_dirs(self.root)
        self.daemon = DaemonProc(
            self.inbox,
            self.outbox,
            *BENCH,
            "--workers",
            str(workers),
        ).start()

    def count(self) -> int:
        return sum(1 for e in os.scandir(self.outbox) if e.name.endswith(".json"))

    def feed_and_wait(self, files: list[Path]) -> None:
        assert self.daemon.proc is not None
        for p in files:
            os.link(p, self.inbox / p.name)
        n = len(files)
        end = time.monotonic() + 600
        while self.count() < n:
            assert time.monotonic() < end and self.daemon.proc.poll() is None
            time.sleep(0.02)

    def close(self) -> list[dict[str, Any]]:
        assert self.daemon.stop() == 0, self.daemon.log_text()[-2000:]
        out = results(self.outbox)
        shutil.rmtree(self.root, ignore_errors=True)
        return out


def _diagnoser() -> me.Diagnoser:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return me.Diagnoser(modality="ultrasound", num_threads=1)


@pytest.mark.parametrize("kind", ["png", "dicom"])
@pytest.mark.parametrize("role", ["bare", "daemon-1w", "daemon-2w"])
def test_daemon_throughput(benchmark: Any, corpus: Any, kind: str, role: str) -> None:
    from medimg_edge.io import read_input

    n = _n(benchmark)
    files: list[Path] = corpus[(kind, n)]
    benchmark.group = f"daemon-{kind}"
    if role == "bare":
        diagnoser = _diagnoser()

        def bare() -> list[str]:
            return [
                diagnoser.diagnose(read_input(p, content_hash=False).frames[0]).status
                for p in files
            ]

        t0 = time.perf_counter()
        statuses = benchmark.pedantic(bare, rounds=1, iterations=1)
        elapsed = time.perf_counter() - t0
        _BARE_S[(kind, n)] = elapsed
        assert len(statuses) == n
        assert set(statuses) <= {"positive", "negative", "indeterminate"}
        benchmark.extra_info.update(
            {
                "label": f"bare loop read_input + diagnose, {n} {kind} {SIZE}x{SIZE}",
                "role": "peer",
                "files_per_s": n / elapsed,
            }
        )
        return
    workers = int(role.split("-")[1][0])
    holder: dict[str, _Daemon] = {}

    def setup() -> tuple[tuple[()], dict[str, Any]]:
        holder["d"] = _Daemon(workers)
        return (), {}

    def run() -> None:
        holder["d"].feed_and_wait(files)

    t0 = 0.0

    def timed_setup() -> tuple[tuple[()], dict[str, Any]]:
        nonlocal t0
        out = setup()
        t0 = time.perf_counter()
        return out

    benchmark.pedantic(run, setup=timed_setup, rounds=1, iterations=1)
    elapsed = time.perf_counter() - t0
    results = holder["d"].close()
    assert len(results) == n
    assert len({r["input"]["sha256"] for r in results}) == n
    assert {r["input"]["kind"] for r in results} == {kind}
    assert all(r["status"] in ("positive", "negative", "indeterminate") for r in results)
    info: dict[str, Any] = {
        "label": f"medimg-edge watch, {workers} worker(s), {n} {kind} {SIZE}x{SIZE}",
        "role": "wrapper",
        "files_per_s": n / elapsed,
    }
    bare_s = _BARE_S.get((kind, n))
    if bare_s is not None:
        info["ratio_to_bare"] = bare_s / elapsed
    benchmark.extra_info.update(info)


def test_daemon_rss_script_small(tmp_path: Path) -> None:
    """The CI variant of ``bench/daemon_rss.py`` (300 files; it checks that every file got
    one result and reports RSS; the 5000-file run is the script run by hand)."""
    out = tmp_path / "rss.json"
    script = Path(__file__).with_name("daemon_rss.py")
    proc = subprocess.run(
        [
            sys.executable,
            str(script),
            "--files",
            "300",
            "--checkpoints",
            "100,300",
            "--size",
            "128",
            "--json",
            str(out),
            "--no-target",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    assert doc["files"] == 300 and doc["results"] == 300
    assert [c["done"] for c in doc["checkpoints"]] == [100, 300]
    assert all(c["rss_total_mb"] > 0 for c in doc["checkpoints"])
