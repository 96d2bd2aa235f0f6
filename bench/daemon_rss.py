"""Memory of the watch-folder daemon over many files (issue 7 item 10: RSS flat).

Runs ``medimg-edge watch`` (2 workers) and feeds it ``--files`` PNGs (``--size`` square,
B-mode phantoms; 64 distinct images written under distinct names), keeping at most 500
files waiting in the inbox.  At each checkpoint (number of finished files) it records the
resident set size (VmRSS) of the daemon and of each worker and their sum, and at the end
their peaks (VmHWM).  Target: the total RSS at the last checkpoint is within 10% of the
one at the second (1000 -> 5000 files by default).

Usage::

    python bench/daemon_rss.py                       # 5000 files of 512x512, ~1 minute
    python bench/daemon_rss.py --files 300 --checkpoints 100,300 --size 128 --no-target
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# the daemon runner and /proc helpers of the daemon tests
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from daemon_helpers import DaemonProc, daemon_children


def _status(pid: int) -> dict[str, int]:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])  # kB
    except OSError:
        pass
    return out


def _images(size: int, n: int = 64) -> list[bytes]:
    import cv2

    import medimg_edge as me

    out = []
    for i in range(n):
        img = me.synth.ultrasound(i, size=size, geometry="linear").image
        ok, buf = cv2.imencode(".png", img)
        assert ok
        out.append(buf.tobytes())
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=5000)
    p.add_argument("--checkpoints", default="500,1000,2000,3000,4000,5000")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json", help="write the measurements to this file")
    p.add_argument("--no-target", action="store_true", help="do not fail on the RSS target")
    args = p.parse_args(argv)
    checkpoints = sorted(int(c) for c in args.checkpoints.split(","))
    root = Path(tempfile.mkdtemp(prefix="daemon-rss-"))
    inbox, outbox = root / "in", root / "out"
    inbox.mkdir()
    blobs = _images(args.size)
    daemon = DaemonProc(
        inbox,
        outbox,
        "--modality",
        "ultrasound",
        "--workers",
        str(args.workers),
        "--settle",
        "0.2",
        "--rescan",
        "2",
        "--log-level",
        "WARNING",
        log=root / "daemon.log",
    )
    try:
        daemon.start()  # waits until the daemon's status file names its pid
    except AssertionError as exc:  # it exited, or was not ready in time
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.stop()
        print(f"the daemon did not start: {exc}", file=sys.stderr)
        return 1
    proc = daemon.proc
    assert proc is not None
    rows: list[dict[str, Any]] = []
    try:
        written = 0
        t0 = time.monotonic()
        pending = list(checkpoints)
        old = time.time() - 60
        done = 0
        while pending:
            done = sum(1 for e in os.scandir(outbox) if e.name.endswith(".json"))
            while written < args.files and written - done < 500:
                tmp = inbox / f".w{written:06d}.png"
                tmp.write_bytes(blobs[written % len(blobs)])
                os.utime(tmp, (old, old))
                os.rename(tmp, inbox / f"img{written:06d}.png")
                written += 1
            if done >= pending[0]:
                kids = daemon_children(proc.pid)
                rss = {proc.pid: _status(proc.pid).get("VmRSS", 0)}
                rss.update({k: _status(k).get("VmRSS", 0) for k in kids})
                row = {
                    "done": pending.pop(0),
                    "seconds": round(time.monotonic() - t0, 2),
                    "rss_daemon_mb": round(rss[proc.pid] / 1024, 1),
                    "rss_workers_mb": [round(rss[k] / 1024, 1) for k in kids],
                    "rss_total_mb": round(sum(rss.values()) / 1024, 1),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
                continue
            if proc.poll() is not None:
                print("the daemon died", file=sys.stderr)
                return 1
            time.sleep(0.01)
        peaks = {"daemon": _status(proc.pid).get("VmHWM", 0) / 1024}
        for i, k in enumerate(daemon_children(proc.pid)):
            peaks[f"worker{i}"] = _status(k).get("VmHWM", 0) / 1024
    finally:
        code = daemon.stop(timeout=120)
    results = sum(1 for e in os.scandir(outbox) if e.name.endswith(".json"))
    failed = len(list((outbox / "failed").glob("*.reason.json")))
    shutil.rmtree(root, ignore_errors=True)
    base = rows[1] if len(rows) > 1 else rows[0]
    growth = rows[-1]["rss_total_mb"] / base["rss_total_mb"] - 1.0
    doc = {
        "files": args.files,
        "size": args.size,
        "workers": args.workers,
        "results": results,
        "failed": failed,
        "exit_code": code,
        "checkpoints": rows,
        "peak_rss_mb": {k: round(v, 1) for k, v in peaks.items()},
        "growth_from": base["done"],
        "growth_to": rows[-1]["done"],
        "growth": round(growth, 4),
    }
    print(json.dumps({k: v for k, v in doc.items() if k != "checkpoints"}))
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1))
    if results != args.files or failed or code != 0:
        print("FAILED: not every file got exactly one result", file=sys.stderr)
        return 1
    if not args.no_target and growth > 0.10:
        print(f"FAILED: RSS grew {100 * growth:.1f}% (target <= 10%)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
