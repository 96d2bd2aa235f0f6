"""The persistent ledger of the watch-folder daemon (SQLite, WAL, ``synchronous=FULL``).

One row per input file.  The ledger, not the file-system events, decides what is new:
a path with no *active* row is new.  States::

    seen -> stable -> processing -> done | failed
                 ^         |
                 +---------+   (transient failure: retried after a back-off)
    seen / stable -> gone         (the file vanished before it was processed)

``processing`` rows found at start were interrupted by a crash: the service checks their
outputs and either completes them (the outputs and the move had happened) or sends them
back to ``seen`` (processing restarts; outputs have deterministic names, so a re-run
replaces them and never duplicates them).  The output id of a row is
``<ledger instance>-<row id>``: unique across ledgers, stable across restarts, and free of
any part of the original file name.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ACTIVE_STATES", "Ledger", "Row"]

ACTIVE_STATES = ("seen", "stable", "processing")
_STATES = (*ACTIVE_STATES, "done", "failed", "gone")
_ACTIVE_SQL = f"state IN ({', '.join(repr(s) for s in ACTIVE_STATES)})"  # fixed literals

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    dev INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    sha256 TEXT,
    kind TEXT,
    code TEXT,
    moved INTEGER NOT NULL DEFAULT 0,
    first_seen REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS files_active_path ON files(path)
    WHERE {_ACTIVE_SQL};
CREATE INDEX IF NOT EXISTS files_state ON files(state);
"""


@dataclass
class Row:
    """One ledger row (paths are relative to the inbox, ``/``-separated)."""

    rowid: int
    path: str
    size: int
    mtime_ns: int
    dev: int
    ino: int
    state: str
    attempts: int
    not_before: float
    sha256: str | None
    kind: str | None
    code: str | None
    moved: int

    @property
    def signature(self) -> tuple[int, int, int, int]:
        """``(size, mtime_ns, dev, ino)``: what identifies an unchanged file."""
        return (self.size, self.mtime_ns, self.dev, self.ino)


_COLS = (
    "rowid, path, size, mtime_ns, dev, ino, state, attempts, not_before, sha256, kind, code, moved"
)


class Ledger:
    """The SQLite ledger (file mode ``0600``).  Use from one thread only.

    Parameters
    ----------
    path : Path
        The database file; created (with its folder, ``0700``) if missing.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        os.chmod(path, 0o600)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._in_tx = False
        found = self._db.execute("SELECT value FROM meta WHERE key = 'instance'").fetchone()
        if found is None:
            self.instance = secrets.token_hex(4)
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES ('instance', ?)", (self.instance,)
            )
        else:
            self.instance = str(found[0])

    def close(self) -> None:
        """Checkpoint and close the database."""
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._db.close()

    def result_id(self, rowid: int) -> str:
        """The output id of a row: ``<instance>-<rowid, 8 digits>``."""
        return f"{self.instance}-{rowid:08d}"

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes in one transaction (one fsync); re-entrant."""
        if self._in_tx:
            yield
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._in_tx = True
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")
        finally:
            self._in_tx = False

    # -- reads -----------------------------------------------------------------------
    def _rows(self, sql: str, params: tuple[object, ...] = ()) -> list[Row]:
        return [Row(*r) for r in self._db.execute(f"SELECT {_COLS} FROM files {sql}", params)]

    def active(self) -> list[Row]:
        """Rows in ``seen``, ``stable`` or ``processing``."""
        return self._rows(f"WHERE {_ACTIVE_SQL} ORDER BY rowid")

    def unmoved(self) -> list[Row]:
        """Finished rows whose original could not be moved out of the inbox (the scanner
        must not take them for new files)."""
        return self._rows("WHERE state IN ('done', 'failed') AND moved = 0")

    def counts(self) -> dict[str, int]:
        """Number of rows per state."""
        out = dict.fromkeys(_STATES, 0)
        for state, n in self._db.execute("SELECT state, COUNT(*) FROM files GROUP BY state"):
            out[str(state)] = int(n)
        return out

    def all_rows(self) -> list[Row]:
        return self._rows("ORDER BY rowid")

    # -- writes ----------------------------------------------------------------------
    def add(self, path: str, signature: tuple[int, int, int, int]) -> Row:
        """A new row in ``seen``."""
        now = time.time()
        size, mtime_ns, dev, ino = signature
        cur = self._db.execute(
            "INSERT INTO files (path, size, mtime_ns, dev, ino, state, first_seen, updated) "
            "VALUES (?, ?, ?, ?, ?, 'seen', ?, ?)",
            (path, size, mtime_ns, dev, ino, now, now),
        )
        rowid = cur.lastrowid
        assert rowid is not None
        return Row(rowid, path, size, mtime_ns, dev, ino, "seen", 0, 0.0, None, None, None, 0)

    def update(self, row: Row, **fields: object) -> None:
        """Set ``fields`` (column = value) on ``row`` and in the database."""
        if "state" in fields and fields["state"] not in _STATES:
            raise ValueError(f"unknown state {fields['state']!r}")
        cols = ", ".join(f"{k} = ?" for k in fields)
        self._db.execute(
            f"UPDATE files SET {cols}, updated = ? WHERE rowid = ?",
            (*fields.values(), time.time(), row.rowid),
        )
        for k, v in fields.items():
            setattr(row, k, v)
