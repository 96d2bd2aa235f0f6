"""Helpers of the watch-folder daemon tests: real daemon processes, real writer processes.

Also a small command line used by the tests to run *writer processes*::

    python tests/daemon_helpers.py write MODE FOLDER START COUNT [SIZE]

MODE ``direct`` (one write), ``chunked`` (three chunks with pauses, like a slow network
copy), ``rename`` (write ``<name>.tmp`` then rename), ``part`` (write ``<name>.part`` then
rename, like a browser).  Every PNG is unique (its pixels depend on its index).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dicom_helpers import us_dataset

WAIT_S = 120.0  # liveness bound of every wait (never a speed assertion)

#: Daemon options of the tests: a fixed modality, short settle and rescan intervals.
FAST = ["--modality", "ultrasound", "--settle", "0.3", "--rescan", "0.5"]
#: The throughput benchmarks' daemon: ultrasound, short settle, rare rescans, quiet log.
BENCH = ["--modality", "ultrasound", "--settle", "0.2", "--rescan", "5", "--log-level", "WARNING"]


def make_dirs(tmp_path: Path) -> tuple[Path, Path]:
    """``(inbox, outbox)`` under ``tmp_path``; the inbox exists, the daemon makes the outbox."""
    inbox, outbox = tmp_path / "inbox", tmp_path / "outbox"
    inbox.mkdir()
    return inbox, outbox


def png_bytes(index: int, size: int = 64) -> bytes:
    """A unique grey PNG: smooth blob + index-seeded noise."""
    import cv2

    rng = np.random.default_rng(index)
    yy, xx = np.mgrid[0:size, 0:size]
    blob = 120 + 80 * np.exp(-((yy - size / 2) ** 2 + (xx - size / 3) ** 2) / (size * 2.0))
    img = np.clip(blob + rng.normal(0, 12, (size, size)), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return buf.tobytes()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_files(mode: str, folder: Path, start: int, count: int, size: int = 64) -> list[str]:
    """Write ``count`` PNGs named ``img_<index>.png``; returns their sha256."""
    folder.mkdir(parents=True, exist_ok=True)
    shas = []
    for i in range(start, start + count):
        data = png_bytes(i, size)
        shas.append(sha256(data))
        final = folder / f"img_{i:05d}.png"
        if mode == "direct":
            final.write_bytes(data)
        elif mode == "chunked":
            with open(final, "wb") as fh:
                third = len(data) // 3
                for k in range(3):
                    fh.write(data[k * third : (k + 1) * third if k < 2 else len(data)])
                    fh.flush()
                    time.sleep(0.05)
        elif mode in ("rename", "part"):
            tmp = final.with_name(final.name + (".tmp" if mode == "rename" else ".part"))
            tmp.write_bytes(data)
            os.rename(tmp, final)
        else:
            raise ValueError(mode)
    return shas


def writer_process(mode: str, folder: Path, start: int, count: int) -> subprocess.Popen[bytes]:
    """A separate writer process (see the module docstring)."""
    return subprocess.Popen(
        [sys.executable, __file__, "write", mode, str(folder), str(start), str(count)]
    )


class DaemonProc:
    """``python -m medimg_edge.cli.watch INBOX --out OUTBOX ...`` as a real process, its
    JSON log in ``<log>``."""

    def __init__(
        self,
        inbox: Path,
        outbox: Path,
        *args: str,
        log: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.inbox, self.outbox, self.args = inbox, outbox, list(args)
        self.log = log or outbox.parent / f"{outbox.name}-daemon.log"
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, wait: bool = True) -> DaemonProc:
        env = dict(os.environ, **(self.env or {}))
        # a fatal signal (and the SIGABRT of a stop that times out, see stop()) writes
        # every thread's stack into the log
        env.setdefault("PYTHONFAULTHANDLER", "1")
        logfh = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "medimg_edge.cli.watch",
                str(self.inbox),
                "--out",
                str(self.outbox),
                *self.args,
            ],
            stdout=logfh,
            stderr=logfh,
            env=env,
        )
        logfh.close()
        if wait:
            self.wait_ready()
        return self

    def status(self) -> dict[str, Any] | None:
        try:
            doc: dict[str, Any] = json.loads(
                (self.outbox / ".medimg-edge" / "daemon.json").read_text()
            )
        except (OSError, ValueError):
            return None
        return doc

    def wait_ready(self) -> dict[str, Any]:
        assert self.proc is not None
        found: dict[str, Any] = {}

        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}: {self.log_text()}")
            doc = self.status()
            if doc is not None and doc.get("pid") == self.proc.pid:
                found.update(doc)
                return True
            return False

        wait_for(ready, "daemon ready")
        return found

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self, timeout: float = WAIT_S) -> int:
        """SIGTERM and the exit status; a daemon still running after ``timeout`` s is
        aborted (its thread stacks go to the log) and the test fails with the log's end."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill9()
            raise AssertionError(
                f"the daemon did not stop within {timeout:.0f} s of SIGTERM; the end of its "
                f"log (thread stacks last):\n{self.log_text()[-12000:]}"
            ) from None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def log_events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"raw": line})
        return out

    def http(self, path: str) -> tuple[int, bytes]:
        doc = self.status()
        assert doc and doc["health"], "no health endpoint"
        host, port = doc["health"]
        try:
            with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=10) as r:
                return int(r.status), bytes(r.read())
        except urllib.error.HTTPError as e:
            return int(e.code), e.read()


def wait_for(pred: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    """Poll ``pred`` until true; fail after ``timeout`` s (a liveness bound)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {what}")


def results(outbox: Path) -> list[dict[str, Any]]:
    """Every ``<id>.json`` in the outbox."""
    return [json.loads(p.read_text()) for p in sorted(outbox.glob("*.json"))]


def reasons(outbox: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((outbox / "failed").glob("*.reason.json"))]


def temp_files(*folders: Path) -> list[Path]:
    out: list[Path] = []
    for f in folders:
        out += [p for p in f.rglob(".medimg-tmp-*")]
    return out


def main(argv: Sequence[str]) -> int:
    if argv[0] == "write":
        mode, folder, start, count = argv[1], Path(argv[2]), int(argv[3]), int(argv[4])
        size = int(argv[5]) if len(argv) > 5 else 64
        write_files(mode, folder, start, count, size)
        return 0
    raise SystemExit(f"unknown command {argv[0]}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


def dicom_bytes(
    *,
    name: str = "DOE^JOHN",
    patient_id: str = "DOE123456",
    birth_date: str = "19XX0231",
    modality: str = "US",
    size: int = 64,
    seed: int = 0,
    preamble: bytes = b"\0" * 128,
    frames: int = 1,
) -> bytes:
    """A small DICOM (Explicit VR Little Endian) with patient data; ``frames`` > 1 makes
    a multi-frame (cine) file."""
    import io

    import pydicom

    rng = np.random.default_rng(seed)
    ds = us_dataset(
        rng.integers(40, 200, (frames, size, size), dtype=np.uint8),
        PatientName=name,
        PatientID=patient_id,
        PatientBirthDate=birth_date,  # pydicom warns about the (deliberately) bad date
        Modality=modality,
        StudyDate="20240101",
    )
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    data = buf.getvalue()
    return preamble + data[128:]


def png_bomb(width: int = 60000, height: int = 60000) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` pixels over a few bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def daemon_children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (the daemon's workers), sorted."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry))
    return sorted(out)
