"""Watch-folder daemon under faults (issue 7): kill -9 of the daemon and of its workers,
poison files, a corpus of malformed inputs, a PHI canary, recovery from every crash point;
slow writers (issue 16): a writer pausing mid-file, one still writing into a quarantined
copy.  Disk-full and damaged-ledger faults are in ``test_daemon_disk.py``.

Real processes and real files; every wait has a liveness bound only.
"""

from __future__ import annotations

import importlib.util
import os
import random
import signal
import subprocess
import sys
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("watchdog")
pytest.importorskip("prometheus_client")
pytest.importorskip("pydicom")

from daemon_helpers import (
    FAST,
    DaemonProc,
    daemon_children,
    dicom_bytes,
    make_dirs,
    png_bomb,
    png_bytes,
    reasons,
    results,
    sha256,
    temp_files,
    wait_for,
    write_files,
)
from medimg_edge.daemon import Ledger


def _rows(outbox: Path) -> list[tuple[str, str]]:
    led = Ledger(outbox / ".medimg-edge" / "ledger.sqlite")
    try:
        return [(r.path, r.state) for r in led.all_rows()]
    finally:
        led.close()


def _config(tmp_path: Path, **keys: float) -> list[str]:
    """``--config FILE`` of a TOML holding ``keys``."""
    toml = tmp_path / "watch.toml"
    toml.write_text("".join(f"{k} = {v}\n" for k, v in keys.items()))
    return ["--config", str(toml)]


def _run_until_idle(inbox: Path, outbox: Path, *args: str) -> DaemonProc:
    d = DaemonProc(inbox, outbox, *args, "--exit-when-idle").start(wait=False)
    assert d.proc is not None
    assert d.proc.wait(timeout=180) == 0, d.log_text()[-2000:]
    return d


def test_repeated_kill9_nothing_lost_or_duplicated(tmp_path: Path) -> None:
    inbox, outbox = make_dirs(tmp_path)
    n = 400
    write_files("direct", inbox, 0, 200, size=128)
    write_files("rename", inbox / "b", 200, 200, size=128)
    rng = random.Random(7)
    progress = []
    for _ in range(6):
        d = DaemonProc(inbox, outbox, *FAST, "--overlay").start()
        # let it make some progress, then kill it in the middle of its work
        target = min(len(list(outbox.glob("*.json"))) + rng.randint(5, 40), n)
        wait_for(lambda t=target: len(list(outbox.glob("*.json"))) >= t, "progress")
        d.kill9()
        progress.append(len(list(outbox.glob("*.json"))))
    assert progress[-1] < n, "the kills should land before the end: raise n"
    _run_until_idle(inbox, outbox, *FAST, "--overlay")
    got = results(outbox)
    assert len(got) == n
    assert Counter(r["input"]["sha256"] for r in got).most_common(1)[0][1] == 1
    expected = {sha256(png_bytes(i, 128)) for i in range(n)}
    assert {r["input"]["sha256"] for r in got} == expected
    assert len(list(outbox.glob("*.overlay.png"))) == n
    assert len(list((outbox / "processed").iterdir())) == n
    assert not list((outbox / "failed").iterdir())
    assert not any(p.is_file() for p in inbox.rglob("*"))
    assert not temp_files(outbox)
    assert Counter(s for _, s in _rows(outbox)) == Counter({"done": n})


def test_poison_file_and_killed_worker(tmp_path: Path) -> None:
    """A file that outlives the time limit is killed, retried and quarantined after
    --max-attempts; a worker killed with SIGKILL costs a retry, not a file; the daemon
    serves the other files all along."""
    import cv2

    inbox, outbox = make_dirs(tmp_path)
    # 12000 x 12000 pixels: seconds of decoding and diagnosing, far beyond 0.5 s.  Every
    # 40th row is noise so that the file is not a decompression bomb (<= 100:1).
    big = np.tile(np.arange(12000, dtype=np.uint16) % 251, (12000, 1)).astype(np.uint8)
    rng = np.random.default_rng(0)
    big[::40] = rng.integers(0, 256, big[::40].shape, dtype=np.uint8)
    ok, buf = cv2.imencode(".png", big)
    assert ok
    (inbox / "poison.png").write_bytes(buf.tobytes())
    d = DaemonProc(
        inbox, outbox, *FAST, "--timeout", "0.5", "--max-attempts", "2", "--health-port", "0"
    ).start()
    write_files("direct", inbox, 0, 200, size=256)
    wait_for(lambda: len(list(outbox.glob("*.json"))) >= 20, "some results")
    assert d.proc is not None
    pid = d.proc.pid
    # (a worker killed at the poison's time limit is being replaced for a moment)
    wait_for(lambda: len(daemon_children(pid)) == 2, "both workers running")
    os.kill(daemon_children(pid)[0], signal.SIGKILL)
    wait_for(lambda: len(list(outbox.glob("*.json"))) == 200, "all 200 good files")
    wait_for(lambda: len(reasons(outbox)) == 1, "poison quarantined")
    (reason,) = reasons(outbox)
    assert reason["code"] in ("timeout", "memory_limit", "cpu_limit", "worker_crashed")
    assert reason["attempts"] == 2
    assert "poison" not in reason["message"]
    assert (outbox / "failed" / f"{reason['id']}.png").exists()

    def restarts() -> float:
        _, body = d.http("/metrics")
        values = [
            float(line.split()[-1])
            for line in body.decode().splitlines()
            if line.startswith("medimg_edge_worker_restarts_total")
        ]
        assert values, "medimg_edge_worker_restarts_total missing"
        return values[0]

    # Both attempts of the poison cost its worker (killed at the time limit, or by us when
    # our SIGKILL hit the worker running it: that is then one of its two attempts); a
    # SIGKILL that hit a good file adds one.  The main thread counts a restart when it
    # records the outcome, just after the reason file is written: wait for it.
    want = 2 if reason["code"] == "timeout" else 1
    wait_for(lambda: restarts() >= want, "restarts counted")
    assert d.proc.poll() is None  # still serving
    assert d.stop() == 0


def _malformed_corpus(inbox: Path, outside: Path) -> dict[str, str]:
    """Writes the corpus; returns file name -> what it is."""
    good = dicom_bytes(seed=3)
    corpus: dict[str, bytes] = {}
    for k, cut in enumerate((1, 64, 128, 131, 140, 200, 300, 600, len(good) // 2, len(good) - 7)):
        corpus[f"trunc_{k:02d}.dcm"] = good[:cut]
    rng = np.random.default_rng(5)
    for k in range(4):
        flipped = bytearray(good)
        for pos in rng.integers(132, len(good), 8):
            flipped[int(pos)] ^= 0xFF
        corpus[f"flip_{k}.dcm"] = bytes(flipped)
    corpus["zero.dcm"] = b""
    corpus["zero.png"] = b""
    corpus["mz_preamble.dcm"] = dicom_bytes(preamble=b"MZ" + b"\x90" * 126, seed=4)
    corpus["elf_preamble.dcm"] = dicom_bytes(preamble=b"\x7fELF" + b"\0" * 124, seed=4)
    # huge declared length of an element right after the file meta
    huge = bytearray(good)
    idx = huge.find(b"\x08\x00\x16\x00")  # (0008,0016) SOP Class UID in the data set
    if idx > 200:
        huge[idx + 6 : idx + 8] = b"\xff\xfe"
    corpus["huge_length.dcm"] = bytes(huge)
    # deep sequence nesting after the pixel data, undefined lengths
    deep = b"\xe1\x7f\x10\x00SQ\x00\x00\xff\xff\xff\xff"  # (7FE1,0010) SQ, undefined length
    item = b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    nest = b""
    for _ in range(3000):
        nest += item + b"\x09\x00\x10\x00SQ\x00\x00\xff\xff\xff\xff"  # (0009,0010) SQ
    corpus["deep_nesting.dcm"] = good + deep + nest
    corpus["bomb.png"] = png_bomb()
    corpus["garbage.png"] = os.urandom(3000)
    corpus["text.dcm"] = b"hello, this is not DICOM at all\n" * 20
    import io

    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}] * 4, dtype=object), allow_pickle=True)
    corpus["pickled.npy"] = buf.getvalue()
    header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (100000, 100000), }"
    header += b" " * (118 - len(header)) + b"\n"
    corpus["absurd_shape.npy"] = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header
    truncated_png = png_bytes(1, 256)
    corpus["trunc.png"] = truncated_png[: len(truncated_png) // 2]
    bad_crc = bytearray(png_bytes(2, 256))
    bad_crc[60:80] = zlib.compress(b"x")[:20].ljust(20, b"\0")
    corpus["corrupt_idat.png"] = bytes(bad_crc)
    for name, data in corpus.items():
        (inbox / name).write_bytes(data)
    os.symlink(outside, inbox / "link_out.png")
    os.mkfifo(inbox / "fifo.png")
    return {name: "file" for name in corpus} | {"link_out.png": "link", "fifo.png": "fifo"}


#: inputs that must be quarantined (the others may be readable after all, e.g. a bit flip
#: in pixel data): each must end with exactly one record either way.
MUST_FAIL = {
    "zero.dcm",
    "zero.png",
    "mz_preamble.dcm",
    "elf_preamble.dcm",
    "bomb.png",
    "garbage.png",
    "text.dcm",
    "pickled.npy",
    "absurd_shape.npy",
    "trunc.png",
    "link_out.png",
    "fifo.png",
    *(f"trunc_{k:02d}.dcm" for k in range(10)),
}


def test_malformed_corpus_quarantined_daemon_keeps_serving(tmp_path: Path) -> None:
    inbox, outbox = make_dirs(tmp_path)
    outside = tmp_path / "outside.png"
    outside.write_bytes(png_bytes(99))
    d = DaemonProc(inbox, outbox, *FAST, "--health-port", "0").start()
    corpus = _malformed_corpus(inbox, outside)
    write_files("direct", inbox / "good", 0, 30)
    total = len(corpus) + 30
    wait_for(
        lambda: len(list(outbox.glob("*.json"))) + len(reasons(outbox)) >= total,
        "a record for every input",
    )
    # The outputs are written (and fsynced) before the ledger transaction that marks the
    # file done commits: wait for that too.
    wait_for(
        lambda: all(s in ("done", "failed") for _, s in _rows(outbox)),
        "every ledger row finished",
    )
    assert d.proc is not None and d.proc.poll() is None
    code, _ = d.http("/healthz")
    assert code == 200
    rows = dict(_rows(outbox))
    led = Ledger(outbox / ".medimg-edge" / "ledger.sqlite")
    by_path = {r.path: r for r in led.all_rows()}
    led.close()
    assert set(rows) == set(corpus) | {f"good/img_{i:05d}.png" for i in range(30)}
    unfinished = {k: s for k, s in rows.items() if s not in ("done", "failed")}
    assert not unfinished, unfinished
    ok_ids = {r["id"] for r in results(outbox)}
    bad = {r["id"]: r for r in reasons(outbox)}
    assert not ok_ids & set(bad)
    assert len(ok_ids) + len(bad) == total
    for name in MUST_FAIL:
        rid = led.result_id(by_path[name].rowid)
        assert rid in bad, f"{name} was not quarantined"
        assert bad[rid]["code"] and bad[rid]["message"].startswith(rid)
    for rec in bad.values():
        assert not any(part in rec["message"] for part in ("trunc", "flip", ".dcm", ".png"))
    for i in range(30):
        assert by_path[f"good/img_{i:05d}.png"].state == "done"
    codes = {bad[led.result_id(by_path[n].rowid)]["code"] for n in ("link_out.png", "fifo.png")}
    assert codes == {"symlink_outside_inbox", "unreadable"}
    assert outside.read_bytes() == png_bytes(99)
    assert not any(p.is_file() or p.is_symlink() for p in inbox.rglob("*"))
    assert d.stop() == 0


def test_phi_canary_nowhere(tmp_path: Path) -> None:
    """PatientName DOE^JOHN, a PatientID, a bad birth date and a file name with DOE: no
    trace in the DEBUG logs, the reason files, the outputs or the names we create."""
    inbox, outbox = make_dirs(tmp_path)
    folder = inbox / "DOE^JOHN"
    folder.mkdir()
    good = dicom_bytes()
    (folder / "DOE_JOHN_19XX0231.dcm").write_bytes(good)
    (folder / "DOE_JOHN_broken.dcm").write_bytes(good[:400])
    (inbox / "DOE_JOHN.png").write_bytes(png_bytes(1))
    (inbox / "DOE_JOHN_bad.png").write_bytes(b"\x89PNG\r\n\x1a\nDOE^JOHN")
    # the broken files are present at start (no writer evidence): quarantined after a
    # short incomplete-read window
    extra = ["--deidentify", "--overlay", *_config(tmp_path, incomplete_window_seconds=1)]
    have_dicom_out = importlib.util.find_spec("medimg_edge.daemon._dicom") is not None
    if have_dicom_out:
        extra += ["--sr", "--sc"]
    d = _run_until_idle(inbox, outbox, *FAST, "--log-level", "DEBUG", *extra)
    assert len(results(outbox)) == 2 and len(reasons(outbox)) == 2
    canaries = [b"DOE", b"JOHN", b"DOE123456", b"19XX0231"]
    log = d.log_text().encode()
    assert b'"event": "done"' in log  # the DEBUG log is there, and carries no PHI
    for c in canaries:
        assert c not in log, c
    created = [p for p in outbox.rglob("*")]
    for p in created:
        assert "DOE" not in p.name and "JOHN" not in p.name, p.name
    for p in [*outbox.glob("*.json"), *(outbox / "failed").glob("*.reason.json")]:
        text = p.read_bytes()
        for c in canaries:
            assert c not in text, (p.name, c)
    if have_dicom_out:
        dcm_outputs = list(outbox.glob("*.dcm"))
        assert dcm_outputs
        for p in dcm_outputs:
            data = p.read_bytes()
            assert data[:128] == b"\0" * 128  # zeroed preamble
            for c in canaries:
                assert c not in data, (p.name, c)


def test_recovery_from_every_crash_point(tmp_path: Path) -> None:
    """Ledger rows left in ``processing`` by a crash at each point of a file's finish,
    and a stale temp file: one restart completes each exactly once."""
    inbox, outbox = make_dirs(tmp_path)
    for i in range(3):
        (inbox / f"f{i}.png").write_bytes(png_bytes(i))
    _run_until_idle(inbox, outbox, *FAST)
    assert len(results(outbox)) == 3
    led = Ledger(outbox / ".medimg-edge" / "ledger.sqlite")
    rows = led.all_rows()
    rid = [led.result_id(r.rowid) for r in rows]
    # A: crashed after outputs + move, before the ledger: must become done, no rerun
    a_json = (outbox / f"{rid[0]}.json").read_bytes()
    led.update(rows[0], state="processing")
    # B: crashed after the outputs, before the move: must be processed again, same names
    os.replace(outbox / "processed" / f"{rid[1]}.png", inbox / rows[1].path)
    led.update(rows[1], state="processing")
    # C: crashed before any output: the JSON is missing, the original in the inbox
    os.replace(outbox / "processed" / f"{rid[2]}.png", inbox / rows[2].path)
    (outbox / f"{rid[2]}.json").unlink()
    led.update(rows[2], state="processing")
    led.close()
    (outbox / ".medimg-tmp-123-abcdef").write_bytes(b"partial")
    (outbox / "processed" / ".medimg-tmp-9-x").write_bytes(b"partial")
    d = _run_until_idle(inbox, outbox, *FAST)
    assert (outbox / f"{rid[0]}.json").read_bytes() == a_json
    got = results(outbox)
    assert sorted(r["id"] for r in got) == sorted(rid)
    assert {r["input"]["sha256"] for r in got} == {sha256(png_bytes(i)) for i in range(3)}
    assert Counter(s for _, s in _rows(outbox)) == Counter({"done": 3})
    assert not temp_files(outbox)
    assert not any(p.is_file() for p in inbox.rglob("*"))
    events = [e.get("event") for e in d.log_events()]
    assert events.count("recovered") == 1 and events.count("requeued") == 2


# ---- slow writers (issue 16) ------------------------------------------------------------

#: A writer process: writes the first half of DATA to PATH, flushes, waits (PAUSE seconds,
#: or until the file GO exists), writes the rest and closes.
_SLOW_WRITER = """
import os, sys, time
path, data_path, pause, go = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
data = open(data_path, "rb").read()
with open(path, "wb") as fh:
    fh.write(data[: len(data) // 2])
    fh.flush()
    end = time.monotonic() + pause
    while time.monotonic() < end or (go and not os.path.exists(go)):
        time.sleep(0.02)
    fh.write(data[len(data) // 2 :])
"""


def _slow_writer(
    tmp_path: Path, dest: Path, data: bytes, pause: float, go: Path | None = None
) -> subprocess.Popen[bytes]:
    src = tmp_path / f"{dest.name}.source"
    src.write_bytes(data)
    argv = [sys.executable, "-c", _SLOW_WRITER, str(dest), str(src), str(pause), str(go or "")]
    return subprocess.Popen(argv)


@pytest.mark.parametrize("completeness", ["close_write", "settle_only"])
def test_writer_pausing_3x_settle_gets_one_result(tmp_path: Path, completeness: str) -> None:
    """A DICOM writer that pauses mid-file for 3x the settle interval gets exactly one
    correct result and no quarantine: with close-write events (Linux inotify) the file is
    not taken before its writer closes it; with the settle rule alone
    (``close_wait_seconds = 0``) it is taken while incomplete, its truncated read is
    retried, and the resumed writer's change makes it taken again."""
    inbox, outbox = make_dirs(tmp_path)
    settle = 1.0
    keys: dict[str, float] = {"incomplete_window_seconds": 20}
    if completeness == "settle_only":
        keys["close_wait_seconds"] = 0
    args = ["--modality", "ultrasound", "--settle", str(settle), "--rescan", "0.2"]
    args += ["--health-port", "0"]
    d = DaemonProc(inbox, outbox, *args, *_config(tmp_path, **keys)).start()
    data = dicom_bytes(seed=11, size=256)
    writer = _slow_writer(tmp_path, inbox / "slow.dcm", data, pause=3 * settle)
    assert writer.wait(timeout=60) == 0
    wait_for(lambda: len(results(outbox)) == 1, "one result")
    wait_for(lambda: [s for _, s in _rows(outbox)] == ["done"], "the row done")
    (got,) = results(outbox)
    assert got["input"]["sha256"] == sha256(data)  # the whole file, not a prefix
    assert not reasons(outbox) and not list((outbox / "failed").iterdir())
    events = [e.get("event") for e in d.log_events()]
    assert events.count("done") == 1 and "failed" not in events
    # the done line and /metrics carry the result's status and label
    (done,) = [e for e in d.log_events() if e.get("event") == "done"]
    assert (done["status"], done["label"]) == (got["status"], got["label"])
    _, body = d.http("/metrics")
    label = got["label"] or "none"
    want = f'medimg_edge_results_total{{label="{label}",status="{got["status"]}"}} 1.0'
    assert want in body.decode()
    if completeness == "close_write":
        # never taken while its writer had it open
        assert "retry" not in events and "retake" not in events
    else:
        # taken incomplete (the settle interval passed during the pause), not quarantined
        assert "retry" in events or "retake" in events
    assert d.stop() == 0


def test_writer_finishing_into_a_quarantined_copy_is_taken_again(tmp_path: Path) -> None:
    """A writer still holding the file when it is quarantined as truncated (settle rule
    alone, no incomplete retries) finishes it in ``failed/``: the daemon sees the copy
    change, moves it back into the inbox, removes the reason record and diagnoses the
    complete file under the same id."""
    inbox, outbox = make_dirs(tmp_path)
    keys = {"close_wait_seconds": 0, "incomplete_attempts": 1}
    d = DaemonProc(inbox, outbox, *FAST, *_config(tmp_path, **keys)).start()
    data = dicom_bytes(seed=12, size=256)
    go = tmp_path / "go"
    writer = _slow_writer(tmp_path, inbox / "late.dcm", data, pause=0, go=go)
    wait_for(lambda: len(reasons(outbox)) == 1, "quarantined while incomplete")
    (reason,) = reasons(outbox)
    assert reason["code"] == "truncated"
    assert (outbox / "failed" / f"{reason['id']}.dcm").exists()
    go.touch()  # the writer finishes, into the copy in failed/
    assert writer.wait(timeout=60) == 0
    wait_for(lambda: len(results(outbox)) == 1, "one result")
    wait_for(lambda: [s for _, s in _rows(outbox)] == ["done"], "the row done")
    (got,) = results(outbox)
    assert got["id"] == reason["id"] and got["input"]["sha256"] == sha256(data)
    assert not reasons(outbox) and not list((outbox / "failed").iterdir())
    assert (outbox / "processed" / f"{reason['id']}.dcm").read_bytes() == data
    retakes = [e for e in d.log_events() if e.get("event") == "retake"]
    assert [e.get("where") for e in retakes] == ["failed"]
    assert d.stop() == 0
