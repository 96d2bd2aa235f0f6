"""Finding input files: a periodic rescan of the inbox plus watchdog events as hints and
as evidence of open writers.

File-system events are not reliable (inotify queues overflow, a create fires while the
file is still being written, a move looks like a create), so an event only wakes the
scanner early; the scan itself is what the ledger reconciles.  The scan walks every
subfolder (also ones created after start) without following symbolic links: a link is
reported as such, never opened, and the service quarantines it unread.

Where the platform reports closes (Linux inotify ``IN_CLOSE_WRITE``, watchdog's
``FileClosedEvent``), the events are also *evidence* (:class:`Evidence`): a file whose
writer was seen writing it (``IN_MODIFY``) is ``writing`` until its close-write (or a
rename into place) makes it ``closed``.  The :class:`Settler` never calls a ``writing`` file
complete, however long its writer pauses (up to ``close_wait_seconds`` without any event:
a lost close event or a writer that never closes then falls back to the settle rule);
files without evidence (present at start, moved in as a folder, written by another host
on a network mount, no inotify) use the settle rule alone.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Entry", "Evidence", "Settler", "Watcher", "scan_inbox"]

log = logging.getLogger("medimg_edge.daemon")


@dataclass(frozen=True)
class Entry:
    """A candidate found in the inbox.

    ``kind`` is ``"file"`` (a regular file), ``"symlink"`` (never followed; ``outside``
    says whether it resolves outside the inbox) or ``"special"`` (FIFO, socket, device).
    ``signature`` is ``(size, mtime_ns, dev, ino)`` of the entry itself (``lstat``).
    """

    relpath: str
    kind: str
    signature: tuple[int, int, int, int]
    outside: bool = False


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def scan_inbox(inbox: Path, is_ignored: Callable[[str], bool]) -> list[Entry]:
    """Every non-ignored entry below ``inbox`` (recursively; folders whose name is
    ignored, e.g. dot-folders, are skipped whole; symbolic links to folders are not
    descended)."""
    root = str(inbox)
    prefix = len(root.rstrip(os.sep)) + 1
    out: list[Entry] = []
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            it = os.scandir(folder)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        with it:
            for entry in it:
                if is_ignored(entry.name):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                rel = entry.path[prefix:].replace(os.sep, "/")
                sig = (st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino)
                if entry.is_symlink():
                    target = os.path.realpath(entry.path)
                    out.append(Entry(rel, "symlink", sig, outside=not _inside(target, root)))
                elif entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    out.append(Entry(rel, "file", sig))
                else:
                    out.append(Entry(rel, "special", sig))
    return out


#: What the events say of a file: ``(state, sequence number, monotonic time)``; state
#: ``"writing"`` (created or written) or ``"closed"`` (closed after writing, renamed in).
Note = tuple[str, int, float]


class Evidence:
    """Per inbox path (relative, ``/``-separated), the last writer event; filled by the
    watchdog thread, read by the main thread (a lock guards it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._notes: dict[str, Note] = {}
        self._seq = 0
        self.active = False  # set by the Watcher once events flow

    def note(self, path: str, state: str) -> None:
        """Record an event of ``path``'s writer."""
        with self._lock:
            self._seq += 1
            self._notes[path] = (state, self._seq, time.monotonic())

    def pop(self, path: str) -> Note | None:
        with self._lock:
            return self._notes.pop(path, None)

    def snapshot(self) -> tuple[dict[str, Note], int]:
        """A copy of the notes and the sequence number so far."""
        with self._lock:
            return dict(self._notes), self._seq

    def keep_only(self, paths: set[str], upto: int) -> None:
        """Forget notes of paths not in ``paths`` recorded up to sequence ``upto`` (files
        that left; later notes are of files the scan could not see yet)."""
        with self._lock:
            for p in [p for p, n in self._notes.items() if p not in paths and n[1] <= upto]:
                del self._notes[p]


class Settler:
    """Decides when a file is complete (see the module docstring and the README section
    "When a file is complete"): never while its writer holds it open (``writing``
    evidence younger than ``close_wait`` seconds); otherwise when its ``(size, mtime,
    dev, inode)`` has not changed for ``settle`` seconds of observation, or it was seen
    twice unchanged and its modification time is at least ``settle`` seconds old (files
    moved in with an old time are taken at the second scan)."""

    def __init__(self) -> None:
        self._first: dict[str, tuple[tuple[int, int, int, int], float, int]] = {}

    def observe(
        self,
        path: str,
        sig: tuple[int, int, int, int],
        settle: float,
        mono: float,
        wall: float,
        note: Note | None = None,
        close_wait: float = 0.0,
    ) -> bool:
        prev = self._first.get(path)
        if prev is None or prev[0] != sig:
            self._first[path] = (sig, mono, 1)
            prev = None
        else:
            self._first[path] = (sig, prev[1], prev[2] + 1)
        if note is not None and note[0] == "writing" and mono - note[2] < close_wait:
            return False  # its writer still has it open: its close-write will tell
        if prev is None:
            return settle <= 0.0
        _, since, _ = prev
        return mono - since >= settle or wall - sig[1] / 1e9 >= settle

    def forget(self, path: str) -> None:
        self._first.pop(path, None)

    def keep_only(self, paths: set[str]) -> None:
        for p in [p for p in self._first if p not in paths]:
            del self._first[p]


class Watcher:
    """watchdog observer on the inbox whose events only call ``on_hint`` (hints).

    Without watchdog installed (the ``[daemon]`` extra) or when inotify cannot be used
    (watch limit), the daemon still works from the periodic rescan alone.
    """

    def __init__(
        self, inbox: Path, on_hint: Callable[[], None], evidence: Evidence | None = None
    ) -> None:
        self._observer: Any = None
        self.active = False
        self._evidence = evidence
        try:
            from watchdog.events import (
                DirCreatedEvent,
                DirMovedEvent,
                FileClosedEvent,
                FileCreatedEvent,
                FileModifiedEvent,
                FileMovedEvent,
                FileSystemEvent,
                FileSystemEventHandler,
            )
            from watchdog.observers import Observer
        except ImportError:
            log.warning(
                "watchdog is not installed: rescans only",
                extra={"event": "watcher_unavailable"},
            )
            return

        root = str(inbox)
        prefix = len(root.rstrip(os.sep)) + 1
        make_observer: Callable[[], Any] = Observer
        try:  # Linux: closes are reported, and moves from outside are told from creates
            from watchdog.observers import inotify

            def make_observer() -> Any:
                return inotify.InotifyObserver(generate_full_events=True)
        except ImportError:  # no close events: writer evidence would never end
            evidence = None
        notes = evidence

        def rel(path: bytes | str) -> str | None:
            p = os.fsdecode(path)
            return p[prefix:].replace(os.sep, "/") if p and _inside(p, root) and p != root else None

        class _Hint(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                kind = event.event_type
                if notes is not None:
                    self._note(event)
                # Only what can bring an input matters (our own moves out of the inbox
                # and the reads of the workers would otherwise wake the scanner).
                # A folder's "modified" event fires whenever an entry leaves it, a file's
                # on every write: neither wakes the scanner (the close does).
                if kind in ("created", "moved", "closed"):
                    if kind != "moved" or _inside(os.fsdecode(event.dest_path), root):
                        on_hint()

            def _note(self, event: FileSystemEvent) -> None:
                assert notes is not None
                kind = event.event_type
                if event.is_directory:
                    return
                if kind == "moved":
                    # a rename keeps what was known of the writer; into place (from an
                    # ignored temporary name or from outside): its writer is done
                    old, new = rel(event.src_path), rel(event.dest_path)
                    known = notes.pop(old) if old is not None else None
                    if new is not None:
                        notes.note(new, known[0] if known is not None else "closed")
                    return
                # A write is the evidence of a writer, not a create: watchdog also reports
                # files found in a folder that was just created or moved in as created.
                path = rel(event.src_path)
                if path is not None and kind in ("modified", "closed"):
                    notes.note(path, "writing" if kind == "modified" else "closed")

        # watchdog logs paths at DEBUG: paths may carry patient names.
        logging.getLogger("watchdog").setLevel(logging.WARNING)
        try:
            observer = make_observer()
            # Only events that can bring an input (the kernel then does not even report
            # the opens and reads of the workers, nor our moves out of the inbox).
            observer.schedule(
                _Hint(),
                str(inbox),
                recursive=True,
                event_filter=[
                    FileCreatedEvent,
                    FileModifiedEvent,
                    FileMovedEvent,
                    FileClosedEvent,
                    DirCreatedEvent,
                    DirMovedEvent,
                ],
            )
            observer.daemon = True
            observer.start()
        except OSError as exc:
            log.warning(
                "file-system events unavailable: rescans only",
                extra={"event": "watcher_unavailable", "errno": exc.errno},
            )
            return
        self._observer = observer
        self.active = True
        self._evidence = evidence
        if evidence is not None:
            evidence.active = True

    def stop(self) -> None:
        if self._observer is not None:
            # watchdog logs a spurious error when its emitter stops mid-read
            logging.getLogger("watchdog").setLevel(logging.CRITICAL)
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
            self.active = False
            if self._evidence is not None:
                self._evidence.active = False
