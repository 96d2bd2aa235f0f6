"""Intake reconciliation of the watch-folder daemon: what the inbox holds against what the
ledger knows.

A scan lists the inbox (:func:`~medimg_edge.daemon._scan.scan_inbox`), records new inputs
(``seen``), follows renames inside the inbox (same signature: same input), forgets inputs
that vanished (``gone``), quarantines symbolic links and special files unread, and marks
files that are complete ``stable`` (:class:`~medimg_edge.daemon._scan.Settler`: never
while their writer holds them open, else settled size, mtime and inode); stable rows wait
in a heap by their not-before time until the main loop claims them (``processing``) as
jobs.  A row whose file changed after it was taken (:meth:`Intake.retake`) goes back to
``seen``; a quarantined original that changes in ``failed/`` (a writer still had it
open) is moved back into the inbox and taken again (:meth:`Intake.watch_quarantine`).
All of it runs on the main thread, inside the main loop's ledger transaction.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import os
import time
from collections.abc import Callable, Collection
from pathlib import Path

from .._durable import fsync_dir
from ._config import Config
from ._finish import Finisher, Job, job_suffix
from ._ledger import Ledger, Row
from ._observe import Metrics
from ._scan import Evidence, Settler, scan_inbox

#: Quarantine codes of entries moved unread (links, FIFOs): nothing writes into them.
_UNREAD_CODES = ("symlink", "symlink_outside_inbox", "unreadable")

__all__ = ["Intake"]

log = logging.getLogger("medimg_edge.daemon")


class Intake:
    """The intake state: rows not finished yet (:attr:`active`, by inbox path), finished
    rows whose original could not be moved out (:attr:`unmoved`, never taken again), the
    settle tracker and the ready heap; plus the scan schedule (:attr:`next_scan`)."""

    def __init__(
        self,
        ledger: Ledger,
        config: Callable[[], Config],
        finisher: Finisher,
        metrics: Metrics,
        evidence: Evidence | None = None,
    ) -> None:
        self.ledger = ledger
        self._config = config
        self._finisher = finisher
        self._metrics = metrics
        self.evidence = evidence or Evidence()
        # rows made stable by their writer's close (a truncated read is then final)
        self._closed: set[int] = set()
        # quarantined originals watched for late writes: row id -> (row, copy, until)
        self._watched: dict[int, tuple[Row, Path, float]] = {}
        self.active: dict[str, Row] = {}
        self.unmoved: set[tuple[str, tuple[int, int, int, int]]] = set()
        self._settler = Settler()
        # stable rows by (not before, row id): the dispatch order
        self._ready: list[tuple[float, int]] = []
        self.ready_rows: dict[int, Row] = {}
        self.scans = 0
        self.next_scan = 0.0
        self.last_scan_end = 0.0
        self.hint_gap = 0.05

    def recover(self, keep: Collection[int] = ()) -> None:
        """Finish or re-queue rows left in ``processing`` by a crash (idempotent); rows in
        ``keep`` (their outcome is known and applied next) stay ``processing``.  Also
        resumes watching the originals quarantined in the last ``quarantine_watch_seconds``.
        One durable write (:meth:`Ledger.probe`) proves that the ledger can be written."""
        c = self._config()
        ledger = self.ledger
        with contextlib.suppress(OSError):
            if os.stat(c.inbox).st_dev != os.stat(c.failed_dir).st_dev:
                log.warning(
                    "failed/ is on another file system than the inbox: a quarantined file "
                    "is copied, and a writer still writing into it cannot be followed "
                    "(keep failed_dir on the inbox's file system)",
                    extra={"event": "failed_dir_elsewhere"},
                )
        with ledger.transaction():
            ledger.probe()
            now = time.time()
            for row in ledger.recently_failed(now - c.quarantine_watch_seconds):
                self.watch_quarantine(row, job_suffix(row.path))
            for row in ledger.unmoved():
                self.unmoved.add((row.path, row.signature))
            for row in ledger.active():
                if row.state == "processing" and row.rowid not in keep:
                    rid = ledger.result_id(row.rowid)
                    src = c.inbox / row.path
                    present = os.path.lexists(src)
                    if not present and (c.outbox / f"{rid}.json").exists():
                        ledger.update(row, state="done", moved=1)
                        log.info("recovered done", extra={"event": "recovered", "id": rid})
                        continue
                    if not present and (c.failed_dir / f"{rid}.reason.json").exists():
                        ledger.update(row, state="failed", moved=1)
                        log.info("recovered failed", extra={"event": "recovered", "id": rid})
                        continue
                    if not present:
                        ledger.update(row, state="gone")
                        continue
                    ledger.update(row, state="seen")
                    log.info("re-queued", extra={"event": "requeued", "id": rid})
                elif row.state == "stable":
                    self.push_ready(row)
                self.active[row.path] = row

    def scan(self) -> None:
        """One reconciliation of the inbox with the ledger (module docstring); schedules
        the next scan (sooner while files are still settling)."""
        ledger = self.ledger
        c = self._config()
        if self._watched:
            self._check_quarantined()
        notes_before, seq = self.evidence.snapshot()
        entries = scan_inbox(c.inbox, c.is_ignored)
        notes, _ = self.evidence.snapshot() if self.evidence.active else ({}, 0)
        self.scans += 1
        mono, wall = time.monotonic(), time.time()
        present = {e.relpath for e in entries}
        vanished = {
            r.signature: r
            for p, r in self.active.items()
            if p not in present and r.state in ("seen", "stable")
        }
        pending = False
        with ledger.transaction():
            for e in entries:
                row = self.active.get(e.relpath)
                if row is None:
                    if (e.relpath, e.signature) in self.unmoved:
                        continue
                    moved = vanished.pop(e.signature, None) if e.kind == "file" else None
                    if moved is not None:  # renamed inside the inbox: same input
                        del self.active[moved.path]
                        self._settler.forget(moved.path)
                        ledger.update(moved, path=e.relpath)
                        row = moved
                    else:
                        row = ledger.add(e.relpath, e.signature)
                        log.debug(
                            "new input",
                            extra={"event": "seen", "id": ledger.result_id(row.rowid)},
                        )
                    self.active[e.relpath] = row
                if row.state == "processing":
                    continue
                if e.kind != "file":
                    self.ready_rows.pop(row.rowid, None)
                    self._quarantine_unread(row, e.kind, e.outside)
                    continue
                if row.signature != e.signature:
                    # new content: a new take, with its own attempts
                    size, mtime_ns, dev, ino = e.signature
                    ledger.update(
                        row,
                        size=size,
                        mtime_ns=mtime_ns,
                        dev=dev,
                        ino=ino,
                        state="seen",
                        attempts=0,
                        not_before=0.0,
                    )
                    self.ready_rows.pop(row.rowid, None)
                    self._closed.discard(row.rowid)
                note = notes.get(e.relpath)
                stable = self._settler.observe(
                    e.relpath, e.signature, c.settle_seconds, mono, wall, note, c.close_wait_seconds
                )
                if stable and row.state == "seen":
                    # closed by its writer, and no event since the scan began
                    if note is not None and note[0] == "closed":
                        if notes_before.get(e.relpath) == note:
                            self._closed.add(row.rowid)
                    self.mark_stable(row)
                    self._settler.forget(e.relpath)
                elif not stable:
                    pending = True
            for row in vanished.values():
                ledger.update(row, state="gone")
                self.ready_rows.pop(row.rowid, None)
                self.active.pop(row.path, None)
                self._settler.forget(row.path)
                self._closed.discard(row.rowid)
        self._settler.keep_only(present)
        self.evidence.keep_only(present, seq)
        end = time.monotonic()
        self.last_scan_end = end
        self.hint_gap = max(0.05, 2.0 * (end - mono))
        delay = c.rescan_seconds
        if pending:
            delay = min(delay, max(c.settle_seconds / 2, 0.05))
        self.next_scan = end + delay

    def _quarantine_unread(self, row: Row, kind: str, outside: bool) -> None:
        """Symbolic links and special files are quarantined without being opened."""
        rid = self.ledger.result_id(row.rowid)
        if kind == "symlink":
            code = "symlink_outside_inbox" if outside else "symlink"
            message = (
                f"{rid}: symbolic link"
                + (" pointing outside the inbox" if outside else "")
                + " (not followed)"
            )
        else:
            code, message = "unreadable", f"{rid}: not a regular file (FIFO, socket, device)"
        moved = self._finisher.quarantine(
            rid, row.path, job_suffix(row.path), code, message, attempts=0
        )
        self.ledger.update(row, state="failed", code=code, moved=int(moved))
        self.active.pop(row.path, None)
        if not moved:
            self.unmoved.add((row.path, row.signature))
        self._metrics.failed.labels(code=code).inc()
        log.warning("quarantined", extra={"event": "failed", "id": rid, "code": code})

    def retake(self, row: Row) -> None:
        """The file changed after it was taken: back to ``seen`` (a fresh take with its
        own attempts, once complete again), rescanned soon."""
        self.ledger.update(row, state="seen", attempts=0, not_before=0.0)
        self.ready_rows.pop(row.rowid, None)
        self._closed.discard(row.rowid)
        self._settler.forget(row.path)
        self.active[row.path] = row
        self.next_scan = 0.0
        self._metrics.retakes.inc()

    def finished(self, row: Row) -> None:
        """Forget a row that reached ``done``, ``failed`` or ``gone``."""
        self._closed.discard(row.rowid)

    def watch_quarantine(self, row: Row, suffix: str) -> None:
        """Watch a quarantined original (``failed/<id><suffix>``) for
        ``quarantine_watch_seconds``: if a writer still had it open and it changes there,
        :meth:`_check_quarantined` moves it back into the inbox and it is taken again.
        Entries moved unread (links, FIFOs) are not watched."""
        c = self._config()
        if row.code in _UNREAD_CODES or c.quarantine_watch_seconds <= 0:
            return
        copy = c.failed_dir / f"{self.ledger.result_id(row.rowid)}{suffix}"
        self._watched[row.rowid] = (row, copy, time.monotonic() + c.quarantine_watch_seconds)

    def _check_quarantined(self) -> None:
        """Quarantined originals that changed since they were read (same inode, other size
        or mtime) go back into the inbox, their reason record removed, the row ``seen``
        again under the same id."""
        c = self._config()
        now = time.monotonic()
        for rowid, (row, copy, until) in list(self._watched.items()):
            try:
                st = os.lstat(copy)
            except OSError:
                st = None
            same = st is not None and (st.st_dev, st.st_ino) == (row.dev, row.ino)
            if now > until or not same:  # expired, removed, replaced or copied across
                del self._watched[rowid]
                continue
            assert st is not None
            if (st.st_size, st.st_mtime_ns) == (row.size, row.mtime_ns):
                continue
            del self._watched[rowid]
            self._put_back(row, copy, c)

    def _put_back(self, row: Row, copy: Path, c: Config) -> None:
        rid = self.ledger.result_id(row.rowid)
        rel = row.path
        if rel in self.active or os.path.lexists(c.inbox / rel):  # the name was taken
            stem, dot, ext = rel.rpartition(".")
            rel = f"{stem}-{rid}.{ext}" if dot and "/" not in ext else f"{rel}-{rid}"
        dst = c.inbox / rel
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.rename(copy, dst)
        except OSError as exc:
            log.error(
                "could not move a changed quarantined file back into the inbox",
                extra={"event": "requeue_failed", "id": rid, "errno": exc.errno},
            )
            return
        fsync_dir(dst.parent, best_effort=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(c.failed_dir / f"{rid}.reason.json")
        fsync_dir(c.failed_dir, best_effort=True)
        st = os.lstat(dst)
        self.ledger.update(
            row,
            path=rel,
            size=st.st_size,
            mtime_ns=st.st_mtime_ns,
            dev=st.st_dev,
            ino=st.st_ino,
            state="seen",
            code=None,
            moved=0,
            attempts=0,
            not_before=0.0,
        )
        self.active[rel] = row
        self._metrics.retakes.inc()
        log.warning(
            "a quarantined file changed (its writer still had it open): taken again",
            extra={"event": "retake", "id": rid, "where": "failed"},
        )

    def push_ready(self, row: Row) -> None:
        """Queue a stable row for dispatch at its not-before time."""
        self.ready_rows[row.rowid] = row
        heapq.heappush(self._ready, (row.not_before, row.rowid))

    def mark_stable(self, row: Row, **fields: object) -> None:
        """``stable`` in the ledger (with ``fields``) and ready for dispatch."""
        self.ledger.update(row, state="stable", **fields)
        self.push_ready(row)

    def claim(self, free: int) -> list[Job]:
        """Claim up to ``free`` stable rows that are due (state ``processing``, in one
        transaction) as jobs; the caller queues them once the claim is committed."""
        c = self._config()
        now = time.time()
        ready: list[Row] = []
        while self._ready and len(ready) < free and self._ready[0][0] <= now:
            _, rowid = heapq.heappop(self._ready)
            row = self.ready_rows.pop(rowid, None)
            if row is not None and row.state == "stable":
                ready.append(row)
        if not ready:
            return []
        jobs: list[Job] = []
        with self.ledger.transaction():
            for row in ready:
                self.ledger.update(row, state="processing")
                rid = self.ledger.result_id(row.rowid)
                msg = {
                    "id": rid,
                    "path": row.path,
                    "signature": list(row.signature),
                    "modality": c.modality_for(row.path),
                    "overlay": c.overlay,
                    "sr": c.sr,
                    "sc": c.sc,
                    "deidentify": c.deidentify,
                    "sr_series_number": c.sr_series_number,
                    "cpu_seconds": c.cpu_seconds,
                }
                job = Job(row, rid, job_suffix(row.path), msg)
                job.closed = row.rowid in self._closed
                jobs.append(job)
        return jobs
