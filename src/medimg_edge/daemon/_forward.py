"""Forwarding of the daemon's DICOM results (SR, and the Secondary Capture when written)
to PACS destinations by C-STORE (pynetdicom SCU): a durable queue per destination in the
ledger database, retried with capped exponential back-off.

Tables (created here, in the ledger's SQLite file, beside the ledger's own ``files``):

* ``forward_queue``, keyed by ``(destination, sop_uid)``: one row per object and
  destination (``pending`` -> ``sent`` | ``failed``), with the outbox file, attempts,
  the not-before time and the last status;
* ``forward_rows``: the ledger rows already looked at; ``forward_meta``: the watermark
  below which every ledger row is finished and looked at.

A *feeder* thread takes the ledger rows that became ``done`` (it is woken by the main loop
after each commit, and looks every few seconds anyway), reads the SOP Instance UID of
their ``<id>.sr.dcm`` (and ``<id>.sc.dcm``) and queues them for every destination, in
one transaction.  Because it reads only committed ledger state and durable outputs, a
crash anywhere loses nothing: a ``done`` row not yet looked at is looked at after the
restart; an output written by an interrupted attempt (row not ``done``) is never queued.

One *sender* thread per destination opens one association for up to 32 due objects, sends
them one by one and commits ``sent`` right after each success response (0x0000 or a
warning 0xB000 / 0xB006 / 0xB007).  No response (peer down, association rejected or
aborted, timeout) and ``0xA7xx`` (out of resources) leave the objects pending and back
off the whole destination: ``forward_retry_seconds`` x 2^k, at most
``forward_backoff_max_seconds``; a destination down for hours loses nothing and sends
each object when it returns.  Other failure statuses (the PACS refuses that object) back
off that object and give up after ``forward_max_attempts`` (``failed``; logged, counted).

Exactly once: a crash between the PACS's success response and the ``sent`` commit sends
that one object again after the restart, with the same SOP Instance UID.  A PACS that
treats a second C-STORE of a known SOP Instance UID as the same instance (keeps the first
copy or replaces it, as Orthanc and dcmtk's ``storescp -uf`` do) then holds it once.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._observe import Metrics

__all__ = ["Destination", "Forwarder", "parse_destination"]

log = logging.getLogger("medimg_edge.daemon")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS forward_queue (
    destination TEXT NOT NULL,
    sop_uid TEXT NOT NULL,
    sop_class TEXT NOT NULL,
    file TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    status TEXT,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (destination, sop_uid)
);
CREATE INDEX IF NOT EXISTS forward_queue_due ON forward_queue(destination, state, not_before);
CREATE TABLE IF NOT EXISTS forward_rows (file_row INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS forward_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_FINAL = "('done', 'failed', 'gone')"
_SUCCESS = {0x0000, 0xB000, 0xB006, 0xB007}
_BATCH = 32
_FEED_SECONDS = 2.0
_DEST = re.compile(r"^(?P<ae>[^@]{1,16})@(?P<host>\[[0-9A-Fa-f:.]+\]|[^:@\s]+):(?P<port>\d{1,5})$")


@dataclass(frozen=True)
class Destination:
    """A C-STORE destination (``--forward AE@HOST:PORT`` or a ``[[forward]]`` table:
    ``ae_title``, ``host``, ``port``, optional ``calling_ae``, ``sc`` (send the Secondary
    Capture too, default true), ``tls`` and ``tls_ca``) or a DICOMweb STOW-RS one
    (``--forward-stow URL`` or a table with ``url``, optional ``sc`` and ``tls_ca``)."""

    ae_title: str = ""
    host: str = ""
    port: int = 0
    calling_ae: str | None = None
    sc: bool = True
    tls: bool = False
    tls_ca: str | None = None
    url: str | None = None

    @property
    def name(self) -> str:
        """``AE@HOST:PORT`` or ``stow:<URL without user info>``: the queue key and the
        metrics label."""
        if self.url is not None:
            parts = urllib.parse.urlsplit(self.url)
            host = parts.hostname or ""
            netloc = f"{host}:{parts.port}" if parts.port else host
            return "stow:" + urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))
        return f"{self.ae_title}@{self.host}:{self.port}"


def parse_destination(value: object) -> Destination:
    """A :class:`Destination` from ``"AE@HOST:PORT"`` or a ``[[forward]]`` table;
    ``ValueError`` with a message naming the fix otherwise."""
    from ._scp import check_ae_title

    if isinstance(value, str):
        m = _DEST.match(value.strip())
        if m is None:
            raise ValueError(f"config key 'forward': expected AE@HOST:PORT, got {value!r}")
        value = {"ae_title": m["ae"], "host": m["host"].strip("[]"), "port": int(m["port"])}
    if not isinstance(value, dict):
        raise ValueError("config key 'forward': expected AE@HOST:PORT or a [[forward]] table")
    if "url" in value:
        return _parse_stow(value)
    known = {"ae_title", "host", "port", "calling_ae", "sc", "tls", "tls_ca"}
    unknown = set(value) - known
    if unknown:
        raise ValueError(f"config key 'forward': unknown key(s) {sorted(unknown)} (typo?)")
    for k in ("ae_title", "host", "port"):
        if k not in value:
            raise ValueError(f"config key 'forward.{k}' is required")
    port = value["port"]
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"config key 'forward.port': must be a TCP port, got {port!r}")
    host = value["host"]
    if not isinstance(host, str) or not host or any(c.isspace() for c in host):
        raise ValueError(f"config key 'forward.host': must be a host name or address, got {host!r}")
    for k in ("sc", "tls"):
        if not isinstance(value.get(k, False), bool):
            raise ValueError(f"config key 'forward.{k}': must be true or false")
    ca = value.get("tls_ca")
    if ca is not None and (not isinstance(ca, str) or not Path(ca).is_file()):
        raise ValueError(f"config key 'forward.tls_ca': {ca!r} is not a readable file")
    calling = value.get("calling_ae")
    return Destination(
        ae_title=check_ae_title(value["ae_title"], "forward.ae_title"),
        host=host,
        port=port,
        calling_ae=None if calling is None else check_ae_title(calling, "forward.calling_ae"),
        sc=bool(value.get("sc", True)),
        tls=bool(value.get("tls", False)),
        tls_ca=ca,
    )


def _parse_stow(value: dict[str, Any]) -> Destination:
    unknown = set(value) - {"url", "sc", "tls_ca"}
    if unknown:
        raise ValueError(f"config key 'forward' (STOW-RS): unknown key(s) {sorted(unknown)}")
    url = value["url"]
    parts = urllib.parse.urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"config key 'forward.url': expected an http(s) URL, got {url!r}")
    if not isinstance(value.get("sc", True), bool):
        raise ValueError("config key 'forward.sc': must be true or false")
    ca = value.get("tls_ca")
    if ca is not None and (not isinstance(ca, str) or not Path(ca).is_file()):
        raise ValueError(f"config key 'forward.tls_ca': {ca!r} is not a readable file")
    return Destination(url=url.rstrip("/"), sc=bool(value.get("sc", True)), tls_ca=ca)


def _read_ids(path: Path) -> tuple[str, str] | None:
    """``(SOP Instance UID, SOP Class UID)`` of an output file; None if it is missing or
    cannot be read (logged: an output the daemon wrote should always read)."""
    import pydicom

    try:
        ds = pydicom.dcmread(
            path, stop_before_pixels=True, specific_tags=["SOPInstanceUID", "SOPClassUID"]
        )
        return str(ds.SOPInstanceUID), str(ds.SOPClassUID)
    except FileNotFoundError:
        return None
    except Exception as exc:  # a damaged output: never stop the feeder for it
        log.error(
            "an output to forward cannot be read; it is not forwarded",
            extra={
                "event": "forward_unreadable",
                "file": path.name,
                "exc_type": type(exc).__name__,
            },
        )
        return None


class Forwarder:
    """The feeder and the sender threads (module docstring).

    Parameters
    ----------
    db_path : Path
        The ledger database.
    outbox : Path
    result_id : callable
        Ledger row id -> output id (``Ledger.result_id``).
    destinations : sequence of Destination
    metrics : Metrics
    calling_ae : str
        Our AE title (a destination's ``calling_ae`` wins).
    send_sc : bool
        Whether Secondary Captures are written (and so forwarded).
    retry_seconds, backoff_max_seconds : float
        First back-off and its cap.
    max_attempts : int
        Refusals of one object before it is given up.
    client_cert : tuple of Path, optional
        ``(cert, key)`` presented to TLS destinations.
    """

    def __init__(
        self,
        db_path: Path,
        outbox: Path,
        result_id: Callable[[int], str],
        destinations: tuple[Destination, ...],
        metrics: Metrics,
        *,
        calling_ae: str,
        send_sc: bool,
        retry_seconds: float,
        backoff_max_seconds: float,
        max_attempts: int,
        client_cert: tuple[Path, Path | None] | None = None,
    ) -> None:
        self.outbox = outbox
        self.destinations = tuple(destinations)
        self._result_id = result_id
        self._metrics = metrics
        self._calling_ae = calling_ae
        self._send_sc = send_sc
        self._retry = retry_seconds
        self._cap = backoff_max_seconds
        self._max_attempts = max_attempts
        self._client_cert = client_cert
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            db_path, isolation_level=None, timeout=30.0, check_same_thread=False
        )
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._stop = threading.Event()
        self._feed_wake = threading.Event()
        self._wakes = {d.name: threading.Event() for d in self.destinations}
        self._state: dict[str, dict[str, Any]] = {
            d.name: {"failures": 0, "next_try": 0.0, "last_error": None} for d in self.destinations
        }
        self._counts: dict[str, dict[str, int]] = {}
        self._threads: list[threading.Thread] = []
        with self._lock:
            self._init_watermark()
            for d in self.destinations:
                self._refresh_counts(d.name)

    # -- start / stop / status -------------------------------------------------------------
    def start(self) -> None:
        self._threads = [threading.Thread(target=self._feed_loop, name="forward-feed", daemon=True)]
        for i, d in enumerate(self.destinations):
            self._threads.append(
                threading.Thread(
                    target=self._send_loop, args=(d,), name=f"forward-{i}", daemon=True
                )
            )
        for t in self._threads:
            t.start()

    def wake(self) -> None:
        """Look for newly ``done`` ledger rows now (called by the main loop)."""
        self._feed_wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the threads (an object being sent is finished or, past ``timeout``, sent
        again at the next start) and close the connection."""
        self._stop.set()
        self._feed_wake.set()
        for e in self._wakes.values():
            e.set()
        end = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))
        with self._lock:
            self._db.close()

    def status(self) -> list[dict[str, Any]]:
        """Per destination: pending / sent / failed objects, consecutive failed attempts,
        the last error and seconds to the next attempt (for ``/healthz``)."""
        now = time.monotonic()
        out = []
        for d in self.destinations:
            st = self._state[d.name]
            counts = self._counts.get(d.name, {})
            out.append(
                {
                    "destination": d.name,
                    "pending": counts.get("pending", 0),
                    "sent": counts.get("sent", 0),
                    "failed": counts.get("failed", 0),
                    "consecutive_failures": st["failures"],
                    "last_error": st["last_error"],
                    "retry_in_s": round(max(0.0, st["next_try"] - now), 3),
                }
            )
        return out

    def _refresh_counts(self, name: str) -> None:
        counts = dict.fromkeys(("pending", "sent", "failed"), 0)
        rows = self._db.execute(
            "SELECT state, COUNT(*) FROM forward_queue WHERE destination = ? GROUP BY state",
            (name,),
        )
        for state, n in rows:
            counts[str(state)] = int(n)
        self._counts[name] = counts
        self._metrics.forward_queue.labels(destination=name).set(counts["pending"])

    # -- the feeder ------------------------------------------------------------------------
    def _init_watermark(self) -> None:
        """At the first start with forwarding, rows finished before are not forwarded."""
        if self._db.execute("SELECT 1 FROM forward_meta WHERE key = 'watermark'").fetchone():
            return
        amin = self._db.execute(
            f"SELECT MIN(rowid) FROM files WHERE state NOT IN {_FINAL}"
        ).fetchone()[0]
        top = self._db.execute("SELECT MAX(rowid) FROM files").fetchone()[0]
        wm = (int(amin) - 1) if amin is not None else int(top or 0)
        self._db.execute(
            "INSERT INTO forward_meta (key, value) VALUES ('watermark', ?)", (str(wm),)
        )

    def _feed_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.feed()
            except Exception as exc:  # disk full, busy, ...: next round, never stop
                log.warning(
                    "forward queue not updated, will retry",
                    extra={"event": "forward_feed_failed", "exc_type": type(exc).__name__},
                )
            self._feed_wake.wait(_FEED_SECONDS)
            self._feed_wake.clear()

    @staticmethod
    def _unseen(db: sqlite3.Connection) -> tuple[list[int], int | None, int | None, int]:
        """Done rows above the watermark not looked at, the lowest unfinished row, the
        highest row and the watermark."""
        wm = int(db.execute("SELECT value FROM forward_meta WHERE key = 'watermark'").fetchone()[0])
        rows = [
            int(r[0])
            for r in db.execute(
                "SELECT rowid FROM files WHERE rowid > ? AND state = 'done' "
                "AND rowid NOT IN (SELECT file_row FROM forward_rows) ORDER BY rowid",
                (wm,),
            )
        ]
        amin = db.execute(
            f"SELECT MIN(rowid) FROM files WHERE rowid > ? AND state NOT IN {_FINAL}", (wm,)
        ).fetchone()[0]
        top = db.execute("SELECT MAX(rowid) FROM files").fetchone()[0]
        return rows, amin, top, wm

    def feed(self) -> int:
        """Queue the outputs of the ``done`` rows not looked at yet; returns how many
        objects were queued."""
        with self._lock:
            db = self._db
            db.execute("BEGIN")  # one snapshot: a row finishing meanwhile is not skipped
            try:
                rows, amin, top, wm = self._unseen(db)
            finally:
                db.execute("COMMIT")
        items: list[tuple[int, list[tuple[str, str, str]]]] = []
        for row in rows:
            rid = self._result_id(row)
            found = []
            for suffix in ("sr.dcm", "sc.dcm") if self._send_sc else ("sr.dcm",):
                ids = _read_ids(self.outbox / f"{rid}.{suffix}")
                if ids is not None:
                    found.append((f"{rid}.{suffix}", *ids))
            items.append((row, found))
        new_wm = (int(amin) - 1) if amin is not None else int(top or wm)
        now = time.time()
        queued = 0
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                for row, found in items:
                    db.execute("INSERT OR IGNORE INTO forward_rows (file_row) VALUES (?)", (row,))
                    for name, uid, sop_class in found:
                        for d in self.destinations:
                            if name.endswith(".sc.dcm") and not d.sc:
                                continue
                            cur = db.execute(
                                "INSERT OR IGNORE INTO forward_queue (destination, sop_uid, "
                                "sop_class, file, state, created, updated) "
                                "VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                                (d.name, uid, sop_class, name, now, now),
                            )
                            queued += cur.rowcount
                if new_wm > wm:
                    db.execute(
                        "UPDATE forward_meta SET value = ? WHERE key = 'watermark'", (str(new_wm),)
                    )
                    db.execute("DELETE FROM forward_rows WHERE file_row <= ?", (new_wm,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            if queued:
                for d in self.destinations:
                    self._refresh_counts(d.name)
        if queued:
            for e in self._wakes.values():
                e.set()
        return queued

    # -- the senders -----------------------------------------------------------------------
    def _due(self, d: Destination) -> tuple[list[tuple[str, str, str, int]], float | None]:
        """Up to a batch of due objects, and the time of the next one not yet due."""
        now = time.time()
        with self._lock:
            due = [
                (str(u), str(c), str(f), int(a))
                for u, c, f, a in self._db.execute(
                    "SELECT sop_uid, sop_class, file, attempts FROM forward_queue "
                    "WHERE destination = ? AND state = 'pending' AND not_before <= ? "
                    "ORDER BY created LIMIT ?",
                    (d.name, now, _BATCH),
                )
            ]
            nxt = self._db.execute(
                "SELECT MIN(not_before) FROM forward_queue WHERE destination = ? "
                "AND state = 'pending' AND not_before > ?",
                (d.name, now),
            ).fetchone()[0]
        return due, (None if nxt is None else float(nxt) - now)

    def _send_loop(self, d: Destination) -> None:
        wake = self._wakes[d.name]
        st = self._state[d.name]
        while not self._stop.is_set():
            wait = st["next_try"] - time.monotonic()
            if wait > 0:
                wake.wait(wait)
                wake.clear()
                continue
            try:
                due, nxt = self._due(d)
            except sqlite3.Error:
                wake.wait(1.0)
                wake.clear()
                continue
            if not due:
                wake.wait(_FEED_SECONDS if nxt is None else min(max(nxt, 0.01), _FEED_SECONDS))
                wake.clear()
                continue
            try:
                self._send_batch(d, due)
            except sqlite3.Error as exc:  # the mark could not be committed: sent again later
                log.warning(
                    "forward state not recorded",
                    extra={"event": "forward_db_failed", "exc_type": type(exc).__name__},
                )
                wake.wait(1.0)
                wake.clear()
            except Exception as exc:  # never let the sender thread die: back off, retry
                self._down(d, f"error:{type(exc).__name__}")

    def _down(self, d: Destination, reason: str) -> None:
        st = self._state[d.name]
        st["failures"] += 1
        st["last_error"] = reason
        delay = min(self._cap, self._retry * 2 ** min(st["failures"] - 1, 30))
        st["next_try"] = time.monotonic() + delay
        self._metrics.forward_failures.labels(destination=d.name, reason=reason).inc()
        log.warning(
            "destination unavailable, will retry",
            extra={
                "event": "forward_retry",
                "destination": d.name,
                "reason": reason,
                "failures": st["failures"],
                "retry_in_s": round(delay, 3),
            },
        )

    def _tls_args(self, d: Destination) -> tuple[ssl.SSLContext, str] | None:
        if not d.tls:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=d.tls_ca)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self._client_cert is not None:
            cert, key = self._client_cert
            ctx.load_cert_chain(str(cert), None if key is None else str(key))
        return ctx, d.host

    def _send_batch(self, d: Destination, due: list[tuple[str, str, str, int]]) -> None:
        import pydicom
        from pynetdicom import AE

        datasets: list[tuple[str, str, int, Any]] = []
        for uid, _sop_class, name, attempts in due:
            try:
                ds = pydicom.dcmread(self.outbox / name)
            except Exception as exc:  # missing (deleted by hand) or damaged
                why = "missing" if isinstance(exc, FileNotFoundError) else "unreadable"
                self._mark(d, uid, "failed", why)
                log.error(
                    f"output to forward is {why}; given up",
                    extra={"event": "forward_missing", "destination": d.name, "file": name},
                )
                continue
            datasets.append((uid, name, attempts, ds))
        if not datasets:
            return
        if d.url is not None:
            self._send_stow(d, datasets)
            return
        ae = AE(ae_title=d.calling_ae or self._calling_ae)
        ae.acse_timeout = 15
        ae.dimse_timeout = 60
        ae.network_timeout = 30
        ae.connection_timeout = 10
        syntaxes = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]
        for sop_class in dict.fromkeys(str(ds.SOPClassUID) for _, _, _, ds in datasets):
            ae.add_requested_context(sop_class, syntaxes)
        try:
            assoc = ae.associate(d.host, d.port, ae_title=d.ae_title, tls_args=self._tls_args(d))
        except (OSError, ssl.SSLError, ValueError) as exc:
            self._down(d, f"connect:{type(exc).__name__}")
            return
        if not assoc.is_established:
            self._down(d, "rejected" if assoc.is_rejected else "no_association")
            return
        try:
            for uid, name, attempts, ds in datasets:
                if self._stop.is_set():
                    break
                try:
                    rsp = assoc.send_c_store(ds)
                except (ValueError, RuntimeError):  # no accepted context for the object
                    rsp = None
                    if assoc.is_established:
                        self._refused(d, uid, attempts, "no_context")
                        continue
                status = int(rsp.Status) if rsp is not None and "Status" in rsp else None
                if status is None:
                    self._down(d, "no_response")
                    return
                if status in _SUCCESS:
                    self._mark(d, uid, "sent", f"0x{status:04X}")
                    self._metrics.forward_sent.labels(destination=d.name).inc()
                    log.info(
                        "forwarded",
                        extra={"event": "forwarded", "destination": d.name, "file": name},
                    )
                elif 0xA700 <= status <= 0xA7FF:
                    self._down(d, f"0x{status:04X}")
                    return
                else:
                    self._refused(d, uid, attempts, f"0x{status:04X}")
            st = self._state[d.name]
            st["failures"], st["last_error"] = 0, None
        finally:
            if assoc.is_established:
                assoc.release()
            with self._lock:
                self._refresh_counts(d.name)

    def _send_stow(self, d: Destination, datasets: list[tuple[str, str, int, Any]]) -> None:
        """STOW-RS (dicomweb-client), one request per object: a 2xx response listing the
        SOP Instance UID under Referenced SOP Sequence marks it sent; a connection error,
        a 5xx, 408 or 429 backs the destination off; another 4xx or a Failed SOP Sequence
        entry is a refusal of that object."""
        import requests
        from dicomweb_client.api import DICOMwebClient

        assert d.url is not None
        session = requests.Session()
        session.verify = d.tls_ca if d.tls_ca else True
        client = DICOMwebClient(url=d.url, session=session)
        client.set_http_retry_params(retry=False)  # our back-off, not the client's own
        try:
            for uid, name, attempts, ds in datasets:
                if self._stop.is_set():
                    break
                try:
                    rsp = client.store_instances([ds])
                except requests.HTTPError as exc:
                    code = exc.response.status_code if exc.response is not None else 0
                    if code >= 500 or code in (408, 429) or code == 0:
                        self._down(d, f"http_{code}")
                        return
                    self._refused(d, uid, attempts, f"http_{code}")
                    continue
                except (requests.RequestException, OSError) as exc:
                    self._down(d, f"connect:{type(exc).__name__}")
                    return
                stored = {
                    str(item.get("ReferencedSOPInstanceUID", ""))
                    for item in (rsp.get("ReferencedSOPSequence") or [])
                }
                if uid in stored:
                    self._mark(d, uid, "sent", "stored")
                    self._metrics.forward_sent.labels(destination=d.name).inc()
                    log.info(
                        "forwarded",
                        extra={"event": "forwarded", "destination": d.name, "file": name},
                    )
                else:
                    failed = [
                        int(item.get("FailureReason", 0) or 0)
                        for item in (rsp.get("FailedSOPSequence") or [])
                    ]
                    reason = f"0x{failed[0]:04X}" if failed else "not_stored"
                    self._refused(d, uid, attempts, reason)
            st = self._state[d.name]
            st["failures"], st["last_error"] = 0, None
        finally:
            session.close()
            with self._lock:
                self._refresh_counts(d.name)

    def _refused(self, d: Destination, uid: str, attempts: int, status: str) -> None:
        attempts += 1
        give_up = attempts >= self._max_attempts
        delay = min(self._cap, self._retry * 2 ** min(attempts - 1, 30))
        with self._lock:
            self._db.execute(
                "UPDATE forward_queue SET state = ?, attempts = ?, not_before = ?, status = ?, "
                "updated = ? WHERE destination = ? AND sop_uid = ?",
                (
                    "failed" if give_up else "pending",
                    attempts,
                    time.time() + delay,
                    status,
                    time.time(),
                    d.name,
                    uid,
                ),
            )
        self._metrics.forward_failures.labels(destination=d.name, reason=status).inc()
        log.warning(
            "destination refused an object" + (", giving up" if give_up else ", will retry"),
            extra={
                "event": "forward_failed" if give_up else "forward_refused",
                "destination": d.name,
                "status": status,
                "attempts": attempts,
            },
        )

    def _mark(self, d: Destination, uid: str, state: str, status: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE forward_queue SET state = ?, status = ?, updated = ? "
                "WHERE destination = ? AND sop_uid = ?",
                (state, status, time.time(), d.name, uid),
            )
