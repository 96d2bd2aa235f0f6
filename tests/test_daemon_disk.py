"""Watch-folder daemon and its own disk (issue 16): an outbox (with the ledger) on a small
tmpfs that another writer fills to the last block mid-run and a restart on the still-full
disk (the daemon pauses and retries, never exits, loses nothing); a ledger overwritten in
the middle or truncated (refused with exit 2 and a message naming the file and the fix,
every time, and the fix works); moves that refuse a file that changed.

Real processes, a real tmpfs (mounted here: root only), real files; every wait has a
liveness bound only.
"""

from __future__ import annotations

import errno
import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("watchdog")
pytest.importorskip("prometheus_client")

from daemon_helpers import (
    FAST,
    DaemonProc,
    make_dirs,
    png_bytes,
    reasons,
    results,
    sha256,
    temp_files,
    wait_for,
    write_files,
)
from medimg_edge._durable import FileChangedError, move_file, signature
from medimg_edge.daemon import Ledger, unit_file


@contextmanager
def _tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``path`` (created), always unmounted after."""
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=True)


def _fill(path: Path) -> int:
    """Another writer: fill the file system of ``path`` to its last block (1 MiB writes,
    then 4 KiB, then single bytes, each until ENOSPC); returns the bytes written."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in (1 << 20, 4096, 1):
            block = b"\0" * chunk
            while True:
                try:
                    n = os.write(fd, block)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
                written += n
                if n < chunk:
                    break
        os.fsync(fd)
    finally:
        os.close(fd)
    return written


def _events(*daemons: DaemonProc) -> list[str]:
    return [str(e.get("event")) for d in daemons for e in d.log_events()]


def _states(outbox: Path) -> Counter[str]:
    led = Ledger(outbox / ".medimg-edge" / "ledger.sqlite", check=False)
    try:
        return Counter(r.state for r in led.all_rows())
    finally:
        led.close()


def test_full_disk_mid_run_and_restart_on_it_never_exits(tmp_path: Path) -> None:
    """Outbox and ledger on a 24 MiB tmpfs; after 10 files another writer fills it to the
    last block while 20 more arrive: the ledger commits and the output writes fail, the
    daemon pauses intake and retries instead of exiting; stopped and started again on the
    still-full disk it waits (it does not exit); once the space is freed every input ends
    with exactly one result, no temporary file is left, every ledger row is done."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    d1 = d2 = None
    with _tmpfs(tmp_path / "outbox", "24m") as outbox:
        try:
            args = (*FAST, "--min-free-mb", "1", "--health-port", "0")
            d1 = DaemonProc(inbox, outbox, *args, log=tmp_path / "d1.log").start()
            write_files("direct", inbox, 0, 10)
            wait_for(lambda: len(results(outbox)) == 10, "10 results")
            filler = outbox / "filler.bin"
            assert _fill(filler) > 0
            assert os.statvfs(outbox).f_bavail == 0  # to the last block
            write_files("direct", inbox / "during", 10, 20)
            # the new files reach the ledger (a commit that fails: the disk is full) and
            # the guard pauses intake (less than min_free_mb free on that disk)
            wait_for(lambda: "ledger_write_failed" in _events(d1), "a failed ledger write")
            wait_for(lambda: "paused" in _events(d1), "intake paused")
            time.sleep(1.0)
            assert d1.proc is not None and d1.proc.poll() is None  # alive
            assert len(results(outbox)) == 10
            # a stop and a start on the still-full disk: the start waits for room
            assert d1.stop() == 0
            d2 = DaemonProc(inbox, outbox, *args, log=tmp_path / "d2.log").start(wait=False)
            wait_for(lambda: "ledger_unavailable" in _events(d2), "the start waits")
            time.sleep(1.5)
            assert d2.proc is not None and d2.proc.poll() is None
            filler.unlink()  # room again
            wait_for(lambda: len(results(outbox)) == 30, "30 results")
            wait_for(lambda: _states(outbox) == Counter({"done": 30}), "every row done")
            got = results(outbox)
            assert Counter(r["input"]["sha256"] for r in got) == Counter(
                {sha256(png_bytes(i)): 1 for i in range(30)}
            )
            assert not reasons(outbox)
            assert not any(p.is_file() for p in inbox.rglob("*"))
            assert len(list((outbox / "processed").iterdir())) == 30
            assert not temp_files(outbox)
            assert d2.proc.poll() is None
            code, _ = d2.http("/healthz")
            assert code == 200
            _, body = d2.http("/metrics")
            assert b"medimg_edge_ledger_errors_total" in body
            assert d2.stop() == 0
            # every fatal or error line says what happened in words
            for d in (d1, d2):
                for e in d.log_events():
                    if e.get("level") in ("ERROR", "CRITICAL"):
                        assert len(str(e.get("msg", ""))) > 20, e
                assert "crashed" not in _events(d)
        finally:
            for left in (d1, d2):
                if left is not None and left.proc is not None and left.proc.poll() is None:
                    left.kill9()


def test_full_outbox_outputs_retried_never_quarantined(tmp_path: Path) -> None:
    """The ledger on another disk, the outbox on a tmpfs filled to the last block, no
    free-space threshold (``--min-free-mb 0``): the outputs cannot be written, every input
    is retried (``disk_full``, not counted as an attempt, ``--max-attempts 1``) instead of
    being quarantined, no temporary file is left on the full disk, and once the space is
    freed each input gets exactly one result."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (tmp_path / "state").mkdir(mode=0o700)
    d = None
    with _tmpfs(tmp_path / "outbox", "8m") as outbox:
        try:
            # the state folder (ledger) resolves to the other disk
            (outbox / ".medimg-edge").symlink_to(tmp_path / "state")
            args = (*FAST, "--min-free-mb", "0", "--max-attempts", "1")
            d = DaemonProc(inbox, outbox, *args, log=tmp_path / "d.log").start()
            assert (tmp_path / "state" / "ledger.sqlite").exists()
            filler = outbox / "filler.bin"
            _fill(filler)
            write_files("direct", inbox, 0, 12)

            def disk_full_retries() -> int:
                assert d is not None
                return sum(
                    e.get("event") == "retry" and e.get("code") == "disk_full"
                    for e in d.log_events()
                )

            wait_for(lambda: disk_full_retries() >= 12, "every input retried for disk_full")
            assert not temp_files(outbox)  # every failed write removed its temporary file
            assert not list(outbox.glob("*.json")) and not list((outbox / "failed").iterdir())
            assert d.proc is not None and d.proc.poll() is None
            filler.unlink()
            wait_for(lambda: len(results(outbox)) == 12, "12 results")
            wait_for(lambda: not any(p.is_file() for p in inbox.rglob("*")), "inbox emptied")
            got = results(outbox)
            assert sorted(r["input"]["sha256"] for r in got) == sorted(
                sha256(png_bytes(i)) for i in range(12)
            )
            assert not reasons(outbox) and not temp_files(outbox)
            assert d.stop() == 0
        finally:
            if d is not None and d.proc is not None and d.proc.poll() is None:
                d.kill9()


def _damage(path: Path, how: str) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        if how == "overwritten":  # the middle half of the file: garbage
            fh.seek(size // 4)
            fh.write(os.urandom(size // 2))
        else:  # truncated to half
            fh.truncate(size // 2)


@pytest.mark.parametrize("how", ["overwritten", "truncated"])
def test_damaged_ledger_refused_exit_2_with_file_and_fix(tmp_path: Path, how: str) -> None:
    """A ledger overwritten in the middle or truncated is detected at start (quick_check):
    exit 2 with a message naming the file and the fix, the same at every start (the
    shipped unit does not restart on 2: no crash loop); the fix it names works: the
    results stay, new inputs are processed under new ids."""
    inbox, outbox = make_dirs(tmp_path)
    write_files("direct", inbox, 0, 300)
    first = DaemonProc(inbox, outbox, *FAST, "--exit-when-idle").start(wait=False)
    assert first.proc is not None and first.proc.wait(timeout=300) == 0
    assert len(results(outbox)) == 300
    ledger = outbox / ".medimg-edge" / "ledger.sqlite"
    assert not Path(f"{ledger}-wal").exists()  # checkpointed at the clean stop
    _damage(ledger, how)
    damaged = ledger.read_bytes()
    for attempt in range(2):
        d = DaemonProc(inbox, outbox, *FAST, log=tmp_path / f"refused{attempt}.log")
        d.start(wait=False)
        assert d.proc is not None and d.proc.wait(timeout=60) == 2
        (line,) = [e for e in d.log_events() if e.get("level") == "ERROR"]
        msg = str(line["msg"])
        assert str(ledger) in msg and "damaged" in msg
        assert f"mv {ledger} {ledger}.damaged" in msg
        assert "exc_type" not in line
    assert ledger.read_bytes() == damaged  # never written to
    assert "RestartPreventExitStatus=2" in unit_file()
    # the fix, as the message says it
    os.replace(ledger, f"{ledger}.damaged")
    (inbox / "new.png").write_bytes(png_bytes(1000))
    after = DaemonProc(inbox, outbox, *FAST, "--exit-when-idle", log=tmp_path / "after.log")
    after.start(wait=False)
    assert after.proc is not None and after.proc.wait(timeout=120) == 0
    got = results(outbox)
    assert len(got) == 301 and len({r["id"] for r in got}) == 301
    assert sha256(png_bytes(1000)) in {r["input"]["sha256"] for r in got}


def test_move_refuses_a_file_that_changed(tmp_path: Path) -> None:
    """``move_file(expect=...)`` moves an unchanged file and leaves a changed one where it
    is (same file system: a rename; across file systems: a verified copy, no temporary
    file left)."""
    src, dst = tmp_path / "a.dcm", tmp_path / "moved.dcm"
    src.write_bytes(b"x" * 1000)
    sig = signature(src)
    with open(src, "ab") as fh:
        fh.write(b"more")
    with pytest.raises(FileChangedError):
        move_file(src, dst, sig)
    assert src.read_bytes() == b"x" * 1000 + b"more" and not dst.exists()
    move_file(src, dst, signature(src))
    assert dst.read_bytes() == b"x" * 1000 + b"more" and not src.exists()
    with _tmpfs(tmp_path / "other", "1m") as other:
        dst.write_bytes(b"y" * 100)
        sig = signature(dst)
        os.utime(dst, ns=(sig[1] + 10**9, sig[1] + 10**9))  # touched by a writer
        with pytest.raises(FileChangedError):
            move_file(dst, other / "copy.dcm", sig)
        assert dst.exists() and not list(other.iterdir())
        # a copy that does not fit: the temporary file is removed, the source kept
        dst.write_bytes(os.urandom(2 << 20))
        with pytest.raises(OSError) as err:
            move_file(dst, other / "big.dcm", signature(dst))
        assert err.value.errno == errno.ENOSPC
        assert dst.exists() and not list(other.iterdir())
