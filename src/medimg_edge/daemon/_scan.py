"""Finding input files: a periodic rescan of the inbox plus watchdog events as hints.

File-system events are not reliable (inotify queues overflow, a create fires while the
file is still being written, a move looks like a create), so an event only wakes the
scanner early; the scan itself is what the ledger reconciles.  The scan walks every
subfolder (also ones created after start) without following symbolic links: a link is
reported as such, never opened, and the service quarantines it unread.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Entry", "Settler", "Watcher", "scan_inbox"]

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


class Settler:
    """Decides when a file is complete: its ``(size, mtime, dev, inode)`` has not changed
    for ``settle`` seconds of observation, or it was seen twice unchanged and its
    modification time is at least ``settle`` seconds old (files moved in with an old
    time are taken at the second scan)."""

    def __init__(self) -> None:
        self._first: dict[str, tuple[tuple[int, int, int, int], float, int]] = {}

    def observe(
        self, path: str, sig: tuple[int, int, int, int], settle: float, mono: float, wall: float
    ) -> bool:
        prev = self._first.get(path)
        if prev is None or prev[0] != sig:
            self._first[path] = (sig, mono, 1)
            return settle <= 0.0
        _, since, seen = prev
        self._first[path] = (sig, since, seen + 1)
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

    def __init__(self, inbox: Path, on_hint: Callable[[], None]) -> None:
        self._observer: Any = None
        self.active = False
        try:
            from watchdog.events import (
                DirCreatedEvent,
                DirMovedEvent,
                FileClosedEvent,
                FileCreatedEvent,
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

        class _Hint(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                # Only what can bring an input matters (our own moves out of the inbox
                # and the reads of the workers would otherwise wake the scanner).
                # A folder's "modified" event fires whenever an entry leaves it: skip it.
                if event.is_directory and event.event_type == "modified":
                    return
                if event.event_type in ("created", "modified", "moved", "closed"):
                    if event.event_type != "moved" or _inside(os.fsdecode(event.dest_path), root):
                        on_hint()

        root = str(inbox)

        # watchdog logs paths at DEBUG: paths may carry patient names.
        logging.getLogger("watchdog").setLevel(logging.WARNING)
        try:
            observer = Observer()
            # Only events that can bring an input (the kernel then does not even report
            # the opens and reads of the workers, nor our moves out of the inbox).
            observer.schedule(
                _Hint(),
                str(inbox),
                recursive=True,
                event_filter=[
                    FileCreatedEvent,
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

    def stop(self) -> None:
        if self._observer is not None:
            # watchdog logs a spurious error when its emitter stops mid-read
            logging.getLogger("watchdog").setLevel(logging.CRITICAL)
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None
            self.active = False
