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

Damage: at open the file is checked (``PRAGMA quick_check``: every page, b-tree and
index of every table, also tables other modules keep in this file); a file that is not
a database, is truncated or was overwritten in part raises :class:`LedgerDamaged`, whose
message names the file and the fix (the daemon exits 2 with it: a ledger that may be
wrong about which inputs were processed is never used).  Write failures (disk full,
I/O error: ``sqlite3.OperationalError``) roll the transaction back completely and leave
the connection usable, so that the caller can retry.

Reviewer feedback (:mod:`medimg_edge.daemon._feedback`) lives in the same file: table
``feedback`` (one row per result id: its latest reviewer label, the model that produced the
result as ``name@version`` and its sha256, when and from where it was recorded) and the
append-only ``feedback_history`` (every change, with the label it replaced).  Neither
holds a path, a file name or a tag value: ids, model labels and model names only.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ACTIVE_STATES",
    "FEEDBACK_COLS",
    "Feedback",
    "Ledger",
    "LedgerDamaged",
    "Row",
    "is_damage",
]

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
CREATE TABLE IF NOT EXISTS feedback (
    result_id TEXT PRIMARY KEY,
    label TEXT NOT NULL,
    model TEXT,
    recorded REAL NOT NULL,
    source TEXT NOT NULL,
    model_sha256 TEXT
);
CREATE TABLE IF NOT EXISTS feedback_history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    result_id TEXT NOT NULL,
    label TEXT NOT NULL,
    previous TEXT,
    model TEXT,
    recorded REAL NOT NULL,
    source TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_history_result ON feedback_history(result_id);
"""

#: Columns of :meth:`Ledger.feedback_rows`, in order.
FEEDBACK_COLS = ("result_id", "label", "model", "recorded", "source", "model_sha256")


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


@dataclass(frozen=True)
class Feedback:
    """One reviewer label (a row of the ``feedback`` table)."""

    result_id: str
    label: str
    model: str | None
    recorded: float
    source: str
    model_sha256: str | None


_COLS = (
    "rowid, path, size, mtime_ns, dev, ino, state, attempts, not_before, sha256, kind, code, moved"
)


def is_damage(exc: BaseException) -> bool:
    """Whether a SQLite error means a damaged file (``SQLITE_CORRUPT``, ``SQLITE_NOTADB``:
    retrying cannot help) rather than a failed write (``OperationalError``: disk full,
    I/O error, locked; a retry may succeed)."""
    return isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError)


class LedgerDamaged(RuntimeError):
    """The ledger file is damaged; the message names the file and the fix."""

    def __init__(self, path: Path, detail: str) -> None:
        detail = " ".join(detail.split())[:200]
        side = ", ".join(f"{path.name}{s}" for s in ("-wal", "-shm") if _exists(path, s))
        super().__init__(
            f"the ledger {path} is damaged ({detail}): it cannot say which inputs were "
            f"already processed, so the daemon does not start on it.  Fix: stop every "
            f"medimg-edge watch on this outbox, move the file aside "
            f"(mv {path} {path}.damaged{'; also ' + side if side else ''}) and start "
            f"again: a new ledger is created, the results in the outbox stay, the inputs "
            f"still in the inbox are processed (again, for those that were in flight), and "
            f"the forward queue kept in the same file starts empty."
        )
        self.path = path


def _exists(path: Path, suffix: str) -> bool:
    return os.path.exists(f"{path}{suffix}")


class Ledger:
    """The SQLite ledger (file mode ``0600``).  Use from one thread only.

    Parameters
    ----------
    path : Path
        The database file; created (with its folder, ``0700``) if missing.
    check : bool
        Run ``PRAGMA quick_check`` at open (the daemon does; a reader that only looks
        may skip it).

    Raises
    ------
    LedgerDamaged
        The file is not a database, or is truncated or overwritten in part.
    sqlite3.OperationalError
        The file cannot be opened or written now (disk full, I/O error): retry later.
    """

    def __init__(self, path: Path, *, check: bool = True) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        os.chmod(path, 0o600)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        self._in_tx = False
        try:
            self._open(check)
        except (sqlite3.Error, LedgerDamaged) as exc:
            self._db.close()
            if is_damage(exc):
                raise LedgerDamaged(path, str(exc)) from None
            raise

    def _open(self, check: bool) -> None:
        db = self._db
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        if check:
            found = [str(r[0]) for r in db.execute("PRAGMA quick_check(5)")]
            if found != ["ok"]:
                raise LedgerDamaged(self.path, "; ".join(found))
        db.executescript(_SCHEMA)
        # Row ids are never handed out twice by this process, even when the transaction
        # that inserted one was rolled back (a file moved to failed/ under its id then keeps
        # an id of its own).
        seq = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'files'").fetchone()
        self._next_rowid = (int(seq[0]) if seq else 0) + 1
        row = db.execute("SELECT value FROM meta WHERE key = 'instance'").fetchone()
        if row is None:
            self.instance = secrets.token_hex(4)
            db.execute("INSERT INTO meta (key, value) VALUES ('instance', ?)", (self.instance,))
        else:
            self.instance = str(row[0])

    def close(self, *, checkpoint: bool = True) -> None:
        """Checkpoint (best effort: it needs room on a full disk; the WAL is replayed at
        the next open either way) and close the database.  ``checkpoint=False``: close
        only (a short-lived client beside a running daemon leaves the WAL to it)."""
        try:
            if checkpoint:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._db.close()

    def probe(self) -> None:
        """One small durable write (raises ``sqlite3.OperationalError`` while the ledger
        cannot be written)."""
        with self.transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('probe', ?)", (str(time.time()),)
            )

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
            self._db.execute("COMMIT")
        except BaseException:
            # A failed COMMIT (disk full, I/O error) may have rolled back already.
            if self._db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            raise
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

    def get(self, rowid: int) -> Row | None:
        """The row ``rowid`` (``None``: no such row)."""
        rows = self._rows("WHERE rowid = ?", (rowid,))
        return rows[0] if rows else None

    def feedback_rows(self) -> list[Feedback]:
        """Every result's latest reviewer label, by result id."""
        cols = ", ".join(FEEDBACK_COLS)
        return [
            Feedback(*r)
            for r in self._db.execute(f"SELECT {cols} FROM feedback ORDER BY result_id")
        ]

    def feedback_history(self, result_id: str | None = None) -> list[tuple[object, ...]]:
        """``(seq, result_id, label, previous, model, recorded, source)`` of every
        change (of one result's with ``result_id``), oldest first."""
        sql = (
            "SELECT seq, result_id, label, previous, model, recorded, source FROM feedback_history"
        )
        if result_id is None:
            return list(self._db.execute(sql + " ORDER BY seq"))
        return list(self._db.execute(sql + " WHERE result_id = ? ORDER BY seq", (result_id,)))

    def recently_failed(self, since: float) -> list[Row]:
        """Rows quarantined (``failed``, original moved) at or after ``since`` (epoch s)."""
        return self._rows("WHERE state = 'failed' AND moved = 1 AND updated >= ?", (since,))

    # -- writes ----------------------------------------------------------------------
    def add(self, path: str, signature: tuple[int, int, int, int]) -> Row:
        """A new row in ``seen``."""
        now = time.time()
        size, mtime_ns, dev, ino = signature
        rowid = self._next_rowid
        self._db.execute(
            "INSERT INTO files (rowid, path, size, mtime_ns, dev, ino, state, first_seen, "
            "updated) VALUES (?, ?, ?, ?, ?, ?, 'seen', ?, ?)",
            (rowid, path, size, mtime_ns, dev, ino, now, now),
        )
        self._next_rowid += 1
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

    def put_feedback(self, fb: Feedback) -> bool:
        """Record ``fb`` as the result's label (call inside :meth:`transaction`): the row
        is replaced and the change appended to ``feedback_history`` with the label it
        replaces.  Recording the label a result already has changes nothing (``False``)."""
        old = self._db.execute(
            "SELECT label FROM feedback WHERE result_id = ?", (fb.result_id,)
        ).fetchone()
        previous = None if old is None else str(old[0])
        if previous == fb.label:
            return False
        self._db.execute(
            f"INSERT OR REPLACE INTO feedback ({', '.join(FEEDBACK_COLS)}) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (fb.result_id, fb.label, fb.model, fb.recorded, fb.source, fb.model_sha256),
        )
        self._db.execute(
            "INSERT INTO feedback_history (result_id, label, previous, model, recorded, "
            "source) VALUES (?, ?, ?, ?, ?, ?)",
            (fb.result_id, fb.label, previous, fb.model, fb.recorded, fb.source),
        )
        return True
