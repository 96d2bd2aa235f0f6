"""The finisher of the watch-folder daemon: the writer thread that turns the workers'
replies into durable results (outputs written atomically, JSON last; the outbox flushed;
originals moved to ``processed/`` or quarantined in ``failed/`` with a reason file) and
hands each :class:`Outcome` to the main loop, which applies it in a ledger transaction.

An original leaves the inbox only unchanged: its signature (size, mtime, inode) must be
the one it had when it was taken, checked by the worker before and after reading, here
before anything is written, and by the move itself (:func:`~medimg_edge._durable.move_file`
with ``expect``: after a rename a file that changed is put back).  A changed file is an
outcome ``changed`` (nothing written, nothing moved, no attempt counted): it is taken
again.  A read that looks like an incomplete file (:data:`INCOMPLETE_CODES`) of a file
whose writer was not seen closing it is retried with back-off before it is quarantined;
outputs that cannot be written for want of disk space are retried without counting an
attempt.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._durable import (
    FileChangedError,
    atomic_write,
    atomic_write_many,
    move_file,
    move_many,
    signature,
)
from ._config import Config
from ._ledger import Row
from ._worker import WorkerDied, WorkerReply

__all__ = [
    "BATCH_MAX",
    "INCOMPLETE_CODES",
    "Finisher",
    "Job",
    "Outcome",
    "Reply",
    "Waker",
    "job_suffix",
    "moved_out",
]

log = logging.getLogger("medimg_edge.daemon")

# How long the writer thread waits for more replies to finish in the same batch, and the
# largest batch.
_BATCH_SECONDS = 0.01
BATCH_MAX = 64

_SAFE_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,10}$")

#: Reader codes an incomplete file gives (a PNG cut short is ``undecodable``, a DICOM cut
#: in its header ``bad_dicom``, a few bytes ``unsupported_format``).
INCOMPLETE_CODES = frozenset(
    ("truncated", "empty", "undecodable", "bad_header", "bad_dicom", "unsupported_format")
)

#: Errors of a full or failing disk: retried without counting an attempt.
_DISK_ERRNOS = frozenset((errno.ENOSPC, errno.EDQUOT, errno.EIO))

# back-off of writes that failed for want of disk space (seconds, doubled, capped)
_DISK_RETRY_FIRST, _DISK_RETRY_MAX = 0.5, 30.0


@dataclass
class Job:
    row: Row
    rid: str
    suffix: str
    message: dict[str, Any]
    claimed: float = field(default_factory=time.monotonic)
    closed: bool = False  # complete by its writer's close-write (a truncated read is final)


@dataclass
class Outcome:
    """What became of a job (applied to the ledger by the main thread)."""

    job: Job
    result: str  # done | failed | retry | gone | changed
    code: str | None = None
    message: str = ""
    sha256: str | None = None
    kind: str | None = None
    moved: bool = True
    worker_restarted: bool = False
    delay: float | None = None  # retry: not before this many seconds (else the back-off)
    count: bool = True  # retry: whether it counts as an attempt
    status: str | None = None  # the result's (done only): for the done log line
    label: str | None = None
    drift: dict[str, Any] | None = None  # the worker's monitor.drift_summary (done only)


Reply = WorkerReply | WorkerDied | RuntimeError


def job_suffix(relpath: str) -> str:
    """The original's suffix, lower case, kept only when it is short and plain."""
    suffix = os.path.splitext(relpath)[1]
    return suffix.lower() if _SAFE_SUFFIX.match(suffix) else ""


def moved_out(rid: str, err: OSError | None) -> bool:
    """Whether the original left the inbox after a move that ended with ``err``
    (``FileNotFoundError``: it was gone meanwhile, nothing is left); logs a failure."""
    if err is None or isinstance(err, FileNotFoundError):
        return True
    log.error(
        "could not move the original out of the inbox",
        extra={"event": "move_failed", "id": rid, "errno": err.errno},
    )
    return False


def _with_source_name(record: bytes, relpath: str) -> bytes:
    """The JSON record with ``source_name`` (the original's path in the inbox) added
    (``record_source_name``; the name is never logged)."""
    doc = json.loads(record)
    if doc.get("source_name") == relpath:  # already added (a batch retried one by one)
        return record
    doc["source_name"] = relpath
    return (json.dumps(doc, allow_nan=False) + "\n").encode()


class Waker:
    """The main loop's wake-up call: :meth:`set` from any thread and from a signal
    handler, :meth:`wait` in the main loop.

    A :class:`threading.Event` cannot be set from a signal handler: the handler runs in
    the main thread between two bytecodes, possibly while that thread holds the Event's
    lock inside ``Event.wait`` or ``Event.clear``, and ``set`` then waits for that lock
    forever (the lock is not reentrant). One such SIGTERM left the daemon unable to stop
    (CI, 2026-12-04). A :class:`queue.SimpleQueue` put is reentrant (Python documents it
    as safe to call from signal handlers), so this class is built on one.
    """

    def __init__(self) -> None:
        self._q: queue.SimpleQueue[None] = queue.SimpleQueue()

    def set(self) -> None:
        """Wake the next (or the current) :meth:`wait`."""
        self._q.put(None)

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for a :meth:`set` (those made since the last wait
        count); True when woken. Every pending wake-up is consumed: one per burst."""
        try:
            self._q.get(timeout=timeout) if timeout > 0 else self._q.get_nowait()
        except queue.Empty:
            return False
        while True:
            try:
                self._q.get_nowait()
            except queue.Empty:
                return True


class Finisher:
    """The writer thread (:attr:`thread`) and what it does; ``config()`` gives the
    current settings (a SIGHUP may replace them).  Replies go in :attr:`replies` (``None``
    stops the thread); outcomes come out in ``results``, and ``wake`` is set after each
    batch."""

    def __init__(
        self,
        config: Callable[[], Config],
        results: queue.Queue[Outcome],
        wake: Waker,
    ) -> None:
        self._config = config
        self._results = results
        self._wake = wake
        self.replies: queue.Queue[tuple[Job, Reply] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._write_loop, name="writer", daemon=True)
        self._disk_delay, self._disk_until = 0.0, 0.0

    def _disk_full(self, job: Job, exc: OSError) -> Outcome:
        """A write that failed for want of disk space: retried (not an attempt) after a
        delay doubled once per round of retries (not per file), capped."""
        now = time.monotonic()
        if now >= self._disk_until:
            self._disk_delay = min(max(2 * self._disk_delay, _DISK_RETRY_FIRST), _DISK_RETRY_MAX)
            self._disk_until = now + self._disk_delay
        why = os.strerror(exc.errno) if exc.errno else "write error"
        return Outcome(job, "retry", "disk_full", why, delay=self._disk_delay, count=False)

    def _write_loop(self) -> None:
        """Finish the workers' replies in batches: one ``fsync`` of the outbox and of the
        processed folder per batch instead of per file."""
        while True:
            item = self.replies.get()
            if item is None:
                return
            batch = [item]
            last = False
            # Gather the replies of the next few milliseconds too: one fsync of each folder
            # (and one ledger commit in the main thread) then covers several files.
            deadline = time.monotonic() + _BATCH_SECONDS
            while len(batch) < BATCH_MAX:
                try:
                    nxt = self.replies.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    last = True
                    break
                batch.append(nxt)
            try:
                outcomes = self.finish_batch(batch)
            except Exception as exc:  # never lose a job: retried by the main thread
                outcomes = [
                    Outcome(j, "retry", "internal_error", type(exc).__name__) for j, _ in batch
                ]
            for o in outcomes:
                self._results.put(o)
            self._wake.set()
            if last:
                return

    def finish_batch(self, batch: list[tuple[Job, Reply]]) -> list[Outcome]:
        """Outputs of every successful reply written atomically (JSON last), the outbox
        flushed, then the originals moved to ``processed/`` and flushed (:meth:`done`);
        other replies one by one (:meth:`process`)."""
        good = [(job, r) for job, r in batch if isinstance(r, WorkerReply) and r.header.get("ok")]
        taken = {id(job) for job, _ in good}
        outcomes = [self.process(job, r) for job, r in batch if id(job) not in taken]
        return outcomes + self.done(good) if good else outcomes

    def done(self, good: list[tuple[Job, WorkerReply]]) -> list[Outcome]:
        """Write the outputs of successful replies and move their originals to
        ``processed/``, for originals unchanged since they were taken (else ``changed``).
        When the writes fail several replies are retried one by one; a single one is
        retried without counting an attempt when the disk is full (``disk_full``), else
        counts as a failed attempt (``output_error``)."""
        c = self._config()
        # changed since it was taken (the worker checked while it read): nothing written
        outcomes: list[Outcome] = []
        kept: list[tuple[Job, WorkerReply]] = []
        for job, r in good:
            try:
                same = signature(c.inbox / job.row.path) == job.row.signature
            except FileNotFoundError:
                same = True  # gone meanwhile: its outputs are written, the move says so
            if same:
                kept.append((job, r))
            else:
                outcomes.append(_changed(job))
        good = kept
        if not good:
            return outcomes
        if c.record_source_name:  # opt-in: the original's path in the inbox
            for job, r in good:
                r.blobs["json"] = _with_source_name(r.blobs["json"], job.row.path)
        writes = [
            (c.outbox / f"{job.rid}.{name}", data)
            for job, r in good
            for name, data in sorted(r.blobs.items(), key=lambda kv: kv[0] == "json")
        ]
        try:
            atomic_write_many(writes)
        except OSError as exc:
            if len(good) > 1:
                return outcomes + [o for pair in good for o in self.done([pair])]
            job = good[0][0]
            if exc.errno in _DISK_ERRNOS:
                return [*outcomes, self._disk_full(job, exc)]
            return [
                *outcomes,
                self.failed_attempt(job, "output_error", exc.strerror or "write error"),
            ]
        moves = [
            (c.inbox / job.row.path, c.processed_dir / f"{job.rid}{job.suffix}") for job, _ in good
        ]
        expect = [job.row.signature for job, _ in good]
        for (job, r), err in zip(good, move_many(moves, expect), strict=True):
            if isinstance(err, FileChangedError):
                # outputs of the old content stay until the new take replaces them
                outcomes.append(_changed(job))
                continue
            if err is not None and err.errno in _DISK_ERRNOS:
                # outputs written, original still in the inbox: the retry replaces them
                outcomes.append(self._disk_full(job, err))
                continue
            h = r.header
            moved = moved_out(job.rid, err)
            outcomes.append(
                Outcome(
                    job,
                    "done",
                    sha256=h.get("sha256"),
                    kind=h.get("kind"),
                    moved=moved,
                    status=h.get("status"),
                    label=h.get("label"),
                    drift=h.get("drift") if isinstance(h.get("drift"), dict) else None,
                )
            )
        self._disk_delay = 0.0
        return outcomes

    def process(self, job: Job, reply: Reply) -> Outcome:
        if isinstance(reply, WorkerDied):
            return self.failed_attempt(job, reply.code, str(reply), restarted=True)
        if isinstance(reply, RuntimeError):  # a restarted worker could not load its models
            return Outcome(job, "retry", "worker_start_failed", str(reply)[:200])
        h = reply.header
        if h.get("ok"):
            return self.done([(job, reply)])[0]
        code = str(h.get("code", "error"))
        if code == "vanished":
            return Outcome(job, "gone", code)
        if code == "changed":
            return _changed(job)
        message = str(h.get("message", ""))
        if h.get("permanent"):
            again = self.incomplete_retry(job, code, message)
            if again is not None:
                return again
            return self._quarantine_job(job, code, message, job.row.attempts + 1)
        return self.failed_attempt(job, code, message)

    def incomplete_retry(self, job: Job, code: str, message: str) -> Outcome | None:
        """A read that looks like an incomplete file, of a file its writer was not seen
        closing: retried, ``incomplete_attempts`` reads over ``incomplete_window_seconds``
        (delays doubling: w/7, 2w/7, 4w/7 for 4 reads), while the file stays in the inbox
        (a writer that resumes changes it, and it is taken again).  ``None``: quarantine
        now (closed by its writer, reads used up, or unchanged for the whole window)."""
        c = self._config()
        if job.closed or code not in INCOMPLETE_CODES:
            return None
        n = job.row.attempts + 1
        idle = time.time() - job.row.mtime_ns / 1e9
        if n >= c.incomplete_attempts or idle >= c.incomplete_window_seconds:
            return None
        unit = c.incomplete_window_seconds / (2 ** (c.incomplete_attempts - 1) - 1)
        return Outcome(job, "retry", code, message, delay=unit * 2 ** (n - 1))

    def failed_attempt(
        self, job: Job, code: str, message: str, *, restarted: bool = False
    ) -> Outcome:
        attempts = job.row.attempts + 1
        if attempts >= self._config().max_attempts:
            o = self._quarantine_job(job, code, message, attempts)
            o.worker_restarted = restarted
            return o
        return Outcome(job, "retry", code, message, worker_restarted=restarted)

    def _quarantine_job(self, job: Job, code: str, message: str, attempts: int) -> Outcome:
        """:meth:`quarantine` of a job's original, only unchanged since it was read."""
        try:
            moved = self.quarantine(
                job.rid, job.row.path, job.suffix, code, message, attempts, job.row.signature
            )
        except FileChangedError:
            return _changed(job)
        return Outcome(job, "failed", code, message, moved=moved)

    def quarantine(
        self,
        rid: str,
        relpath: str,
        suffix: str,
        code: str,
        message: str,
        attempts: int,
        expect: tuple[int, int, int, int] | None = None,
    ) -> bool:
        """``failed/<id>.reason.json`` then the original to ``failed/<id><suffix>``
        (with ``expect``: only if unchanged, else the reason file is removed again and
        :class:`~medimg_edge._durable.FileChangedError` raised)."""
        c = self._config()
        reason = {
            "id": rid,
            "code": code,
            "message": message,
            "attempts": attempts,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        # atomic_write flushes failed/ itself: the reason file is durable even when the
        # original is gone
        reason_file = c.failed_dir / f"{rid}.reason.json"
        atomic_write(reason_file, (json.dumps(reason) + "\n").encode())
        try:
            move_file(c.inbox / relpath, c.failed_dir / f"{rid}{suffix}", expect)
        except FileChangedError:
            reason_file.unlink(missing_ok=True)
            raise
        except OSError as exc:
            return moved_out(rid, exc)
        return True


def _changed(job: Job) -> Outcome:
    return Outcome(job, "changed", "changed", "the file changed after it was taken")
