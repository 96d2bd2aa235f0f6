"""Network ingest (C-STORE) against folder ingest of the watch-folder daemon, on the same
files, in one run (issue 16 target: network >= 0.8x the folder daemon's throughput).

Files: 512x512 uint8 linear-array B-mode phantoms (``me.synth.ultrasound``, 32 bases with
the index in a corner: all different) as DICOM Ultrasound Image Storage, Explicit VR
Little Endian.  Model: the ultrasound reference model.  Every case runs a fresh
``medimg-edge watch`` with 2 workers, already running and idle, and times until the last
``<id>.json`` exists:

* ``folder``: every file hard-linked into the inbox (the peer: the folder daemon as
  ``bench/test_bench_daemon.py`` measures it; no writer cost at all);
* ``dcmtk``: dcmtk ``storescu`` sends every file in one association to ``--dicom-port``
  (each instance parsed, written with ``fsync`` and recorded before its response, then
  settled, claimed and diagnosed like a file);
* ``dcmtk-4``: four ``storescu`` processes, a quarter of the files each, in parallel
  (four associations, as a PACS or a router sends);
* ``pynetdicom``: the same with a pynetdicom SCU in the benchmark process.

``extra_info``: files/s, the time the sender took, and ``ratio_to_folder`` (folder time /
network time: >= 0.8 meets the target).  With ``--benchmark-disable`` (CI) every case
runs once over 12 files and still checks that each instance got exactly one result.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import medimg_edge as me

pytest.importorskip("watchdog")
pytest.importorskip("prometheus_client")
pydicom = pytest.importorskip("pydicom")
pytest.importorskip("pynetdicom")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from daemon_helpers import BENCH, DaemonProc, make_dirs, results  # noqa: E402
from dicom_helpers import us_dataset  # noqa: E402

SIZE = 512
N_FULL = 400
N_CI = 12
_FOLDER_S: dict[int, float] = {}


@functools.cache
def _base(k: int) -> np.ndarray:
    frame: np.ndarray = me.synth.ultrasound(2000 + k, size=SIZE, geometry="linear").image
    return frame


def _dcmtk(tool: str) -> str:
    """dcmtk's tool (pynetdicom installs scripts of the same names in the venv)."""
    for folder in ("/usr/bin", "/usr/local/bin"):
        path = Path(folder) / tool
        if path.is_file():
            return str(path)
    raise AssertionError(f"dcmtk's {tool} is needed: apt-get install dcmtk")


@pytest.fixture(scope="module")
def corpus() -> Iterator[dict[int, tuple[list[Path], list[str]]]]:
    root = Path(tempfile.mkdtemp(prefix="bench-node-"))

    class Files(dict[int, tuple[list[Path], list[str]]]):
        def __missing__(self, n: int) -> tuple[list[Path], list[str]]:
            folder = root / str(n)
            folder.mkdir()
            paths, uids = [], []
            for i in range(n):
                f = _base(i % 32).copy()
                f[0, :4] = np.frombuffer(i.to_bytes(4, "little"), np.uint8)
                ds = us_dataset(f, PatientName="BENCH^PHANTOM")
                p = folder / f"f{i:05d}.dcm"
                pydicom.dcmwrite(p, ds, enforce_file_format=True)
                paths.append(p)
                uids.append(str(ds.SOPInstanceUID))
            old = time.time() - 60
            for p in paths:
                os.utime(p, (old, old))
            self[n] = (paths, uids)
            return self[n]

    yield Files()
    shutil.rmtree(root, ignore_errors=True)


class _Node:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="bench-node-watch-"))
        self.inbox, self.outbox = make_dirs(self.root)
        self.daemon = DaemonProc(
            self.inbox,
            self.outbox,
            *BENCH,
            "--workers",
            "2",
            "--dicom-port",
            "0",
        ).start()
        doc = self.daemon.wait_ready()
        self.port = int(doc["dicom"][1])

    def count(self) -> int:
        return sum(1 for e in os.scandir(self.outbox) if e.name.endswith(".json"))

    def wait(self, n: int) -> None:
        assert self.daemon.proc is not None
        end = time.monotonic() + 900
        while self.count() < n:
            assert time.monotonic() < end and self.daemon.proc.poll() is None
            time.sleep(0.02)

    def close(self) -> list[dict[str, Any]]:
        assert self.daemon.stop() == 0, self.daemon.log_text()[-2000:]
        out = results(self.outbox)
        shutil.rmtree(self.root, ignore_errors=True)
        return out


def _send_pynetdicom(port: int, paths: list[Path]) -> None:
    from pynetdicom import AE

    ae = AE(ae_title="BENCH")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.6.1", "1.2.840.10008.1.2.1")
    assoc = ae.associate("127.0.0.1", port, ae_title="MEDIMG", max_pdu=0)
    assert assoc.is_established
    try:
        for p in paths:
            assert assoc.send_c_store(p).Status == 0x0000
    finally:
        assoc.release()


@pytest.mark.parametrize("role", ["folder", "dcmtk", "dcmtk-4", "pynetdicom"])
def test_network_ingest_throughput(benchmark: Any, corpus: Any, role: str) -> None:
    n = N_CI if getattr(benchmark, "disabled", False) else N_FULL
    paths, uids = corpus[n]
    benchmark.group = "dicom-node-ingest"
    holder: dict[str, Any] = {}
    t0 = 0.0

    def setup() -> tuple[tuple[()], dict[str, Any]]:
        nonlocal t0
        holder["node"] = _Node()
        t0 = time.perf_counter()
        return (), {}

    def run() -> None:
        node: _Node = holder["node"]
        if role == "folder":
            for p in paths:
                os.link(p, node.inbox / p.name)
        elif role.startswith("dcmtk"):
            k = int(role.partition("-")[2] or 1)  # parallel associations
            procs = []
            for j in range(k):
                cmd = [_dcmtk("storescu"), "-aet", "BENCH", "-aec", "MEDIMG"]
                cmd += ["127.0.0.1", str(node.port), *map(str, paths[j::k])]
                procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL))
            assert all(p.wait(timeout=900) == 0 for p in procs)
        else:
            _send_pynetdicom(node.port, paths)
        holder["sent_s"] = time.perf_counter() - t0
        node.wait(n)

    benchmark.pedantic(run, setup=setup, rounds=1, iterations=1)
    elapsed = time.perf_counter() - t0
    got = holder["node"].close()
    assert len(got) == n
    if role != "folder":  # one result per instance, by the SOP Instance UID hash
        keys = sorted(r["input"]["instance_key"] for r in got)
        assert keys == sorted(hashlib.sha256(u.encode()).hexdigest() for u in uids)
    assert all(r["status"] in ("positive", "negative", "indeterminate") for r in got)
    info: dict[str, Any] = {
        "label": f"medimg-edge watch 2 workers, {n} DICOM {SIZE}x{SIZE} via {role}",
        "role": "peer" if role == "folder" else "wrapper",
        "files_per_s": n / elapsed,
        "sender_s": holder["sent_s"],
    }
    if role == "folder":
        _FOLDER_S[n] = elapsed
    elif n in _FOLDER_S:
        info["ratio_to_folder"] = _FOLDER_S[n] / elapsed
    benchmark.extra_info.update(info)
