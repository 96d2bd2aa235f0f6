"""Intake reconciliation of the watch-folder daemon: what the inbox holds against what the
ledger knows.

A scan lists the inbox (:func:`~medimg_edge.daemon._scan.scan_inbox`), records new inputs
(``seen``), follows renames inside the inbox (same signature: same input), forgets inputs
that vanished (``gone``), quarantines symbolic links and special files unread, and marks
files whose size, mtime and inode have settled ``stable``; stable rows wait in a heap by
their not-before time until the main loop claims them (``processing``) as jobs.  All of
it runs on the main thread, inside the main loop's ledger transaction.
"""

from __future__ import annotations

import heapq
import logging
import os
import time
from collections.abc import Callable

from ._config import Config
from ._finish import Finisher, Job, job_suffix
from ._ledger import Ledger, Row
from ._observe import Metrics
from ._scan import Settler, scan_inbox

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
    ) -> None:
        self.ledger = ledger
        self._config = config
        self._finisher = finisher
        self._metrics = metrics
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

    def recover(self) -> None:
        """Finish or re-queue rows left in ``processing`` by a crash (idempotent)."""
        c = self._config()
        ledger = self.ledger
        with ledger.transaction():
            for row in ledger.unmoved():
                self.unmoved.add((row.path, row.signature))
            for row in ledger.active():
                if row.state == "processing":
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
        entries = scan_inbox(c.inbox, c.is_ignored)
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
                    size, mtime_ns, dev, ino = e.signature
                    ledger.update(row, size=size, mtime_ns=mtime_ns, dev=dev, ino=ino, state="seen")
                    self.ready_rows.pop(row.rowid, None)
                stable = self._settler.observe(e.relpath, e.signature, c.settle_seconds, mono, wall)
                if stable and row.state == "seen":
                    self.mark_stable(row)
                    self._settler.forget(e.relpath)
                elif not stable:
                    pending = True
            for row in vanished.values():
                ledger.update(row, state="gone")
                self.ready_rows.pop(row.rowid, None)
                self.active.pop(row.path, None)
                self._settler.forget(row.path)
        self._settler.keep_only(present)
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
                    "modality": c.modality_for(row.path),
                    "overlay": c.overlay,
                    "sr": c.sr,
                    "sc": c.sc,
                    "deidentify": c.deidentify,
                    "cpu_seconds": c.cpu_seconds,
                }
                jobs.append(Job(row, rid, job_suffix(row.path), msg))
        return jobs
