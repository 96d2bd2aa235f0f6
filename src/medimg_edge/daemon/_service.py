"""The watch-folder daemon: main loop, worker pool, signals, systemd, logs, health.

Threads of the daemon process:

* the **main thread** owns the ledger (all state changes), scans the inbox, claims stable
  files into the bounded job queue, applies results, reloads the config on SIGHUP and
  pings the systemd watchdog;
* one **slot thread per worker** takes a job, runs it in its worker subprocess, writes the
  outputs (or the quarantine record) atomically, moves the original and hands the outcome
  back to the main thread;
* the watchdog observer (events only wake the main thread) and the loopback HTTP server.

Order of a file's finish (what makes ``kill -9`` at any moment safe): outputs written
atomically (JSON last) -> original moved to ``processed/`` -> ledger row ``done``.  A crash
before the move leaves the original in the inbox and the row in ``processing``: at the next
start the row goes back to ``seen`` and the file is processed again, its outputs replaced
under the same names.  A crash after the move is completed from the outputs found.  The
same holds for the quarantine record (``failed/<id>.reason.json``) and ``failed/``.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import heapq
import importlib
import json
import logging
import os
import queue
import re
import shutil
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

from .._durable import (
    atomic_write,
    atomic_write_many,
    clean_temp_files,
    ensure_dir,
    move_file,
    move_many,
)
from ._config import Config, ConfigError, load_config
from ._ledger import Ledger, Row
from ._scan import Settler, Watcher, scan_inbox
from ._worker import WorkerDied, WorkerProcess, WorkerReply

__all__ = ["Daemon", "JsonFormatter", "sd_notify", "setup_logging"]

log = logging.getLogger("medimg_edge.daemon")

#: Config keys a SIGHUP cannot change (they need a restart).
RESTART_KEYS = (
    "inbox",
    "outbox",
    "processed_dir",
    "failed_dir",
    "state_dir",
    "workers",
    "queue_size",
    "health_host",
    "health_port",
    "memory_limit_mb",
    "models",
    "quality_gate",
    "cine_frames",
    "max_file_mb",
)
# How long the writer thread waits for more replies to finish in the same batch, and the
# largest batch.
_BATCH_SECONDS = 0.01
_BATCH_MAX = 64

_SAFE_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,10}$")


# ---- logging -------------------------------------------------------------------------------

_STD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg`` and the record's
    extra fields (``event``, ``id``, ``code``, ...).  Exception tracebacks are reduced to
    the exception type: their text may quote paths or tag values."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                out[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            out["exc_type"] = record.exc_info[0].__name__
        return json.dumps(out, default=str)


def setup_logging(level: str, stream: Any = None) -> None:
    """JSON lines on ``stream`` (stderr) for the ``medimg_edge`` loggers; other loggers
    (libraries, which may log paths) are capped at WARNING."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("medimg_edge").setLevel(level)
    logging.getLogger("watchdog").setLevel(logging.WARNING)


# ---- systemd -------------------------------------------------------------------------------


def sd_notify(state: str) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``) to systemd's ``$NOTIFY_SOCKET``.

    The sd_notify protocol is one datagram on a Unix socket (an abstract one when the
    address starts with ``@``); it is implemented here in a few lines rather than with
    ``sdnotify`` (unmaintained since 2017) or ``systemd-python`` / ``cysystemd`` (they
    need libsystemd to build or load, which an edge device may not have).  Returns whether
    a notification was sent; never raises.
    """
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr[0] == "@":
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            s.sendall(state.encode())
    except OSError:
        return False
    return True


def _watchdog_interval() -> float | None:
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec) / 2e6, 0.05)
    except ValueError:
        return None


# ---- metrics -------------------------------------------------------------------------------


class Metrics:
    """Prometheus metrics (``prometheus-client``, the ``[daemon]`` extra) in a private
    registry."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.processed = Counter(
            "medimg_edge_files_processed", "Inputs diagnosed (outputs written)", registry=r
        )
        self.failed = Counter(
            "medimg_edge_files_failed", "Inputs quarantined in failed/", ["code"], registry=r
        )
        self.retries = Counter(
            "medimg_edge_retries", "Attempts that failed and were retried", registry=r
        )
        self.worker_restarts = Counter(
            "medimg_edge_worker_restarts", "Worker subprocesses killed or crashed", registry=r
        )
        self.worker_idle = Counter(
            "medimg_edge_worker_idle_seconds",
            "Time the workers waited for a job (summed over the workers)",
            registry=r,
        )
        self.queue_depth = Gauge(
            "medimg_edge_queue_depth", "Complete inputs waiting or being processed", registry=r
        )
        self.in_flight = Gauge("medimg_edge_in_flight", "Inputs being processed", registry=r)
        self.paused = Gauge(
            "medimg_edge_intake_paused", "1 while intake is paused (free disk)", registry=r
        )
        self.latency = Histogram(
            "medimg_edge_processing_seconds",
            "Time from claiming an input to its outputs being durable",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


# ---- jobs ----------------------------------------------------------------------------------


@dataclass
class Job:
    row: Row
    rid: str
    suffix: str
    message: dict[str, Any]
    claimed: float = field(default_factory=time.monotonic)


@dataclass
class Outcome:
    """What became of a job (applied to the ledger by the main thread)."""

    job: Job
    result: str  # done | failed | retry | gone
    code: str | None = None
    message: str = ""
    sha256: str | None = None
    kind: str | None = None
    moved: bool = True
    worker_restarted: bool = False


Reply = WorkerReply | WorkerDied | RuntimeError


def _suffix(relpath: str) -> str:
    suffix = os.path.splitext(relpath)[1]
    return suffix.lower() if _SAFE_SUFFIX.match(suffix) else ""


class Daemon:
    """The watch-folder daemon.

    Parameters
    ----------
    config : Config
        The settings (from :func:`~medimg_edge.daemon.load_config`).
    config_file : path, optional
        Re-read on SIGHUP (with ``overrides`` on top, as at start).
    overrides : dict, optional
        The command-line settings.
    exit_when_idle : bool
        Stop once the inbox holds nothing left to do (batch mode).
    """

    def __init__(
        self,
        config: Config,
        *,
        config_file: str | os.PathLike[str] | None = None,
        overrides: dict[str, Any] | None = None,
        exit_when_idle: bool = False,
    ) -> None:
        self.config = config
        self.config_file = config_file
        self.overrides = dict(overrides or {})
        self.exit_when_idle = exit_when_idle
        self.metrics = Metrics()
        self._wake = threading.Event()
        self._stop = False
        self._reload = False
        self._paused = False
        self._active: dict[str, Row] = {}
        self._unmoved: set[tuple[str, tuple[int, int, int, int]]] = set()
        self._settler = Settler()
        # stable rows by (not before, row id): the dispatch order
        self._ready: list[tuple[float, int]] = []
        self._ready_rows: dict[int, Row] = {}
        self._jobs: queue.Queue[Job | None] = queue.Queue(maxsize=config.effective_queue_size)
        self._results: queue.Queue[Outcome] = queue.Queue()
        self._in_flight = 0
        self._running = 0
        self._lock = threading.Lock()
        self._slots: list[threading.Thread] = []
        # replies of the workers, finished (written, moved) in batches by the writer thread
        self._replies: queue.Queue[tuple[Job, Reply] | None] = queue.Queue()
        self._writer = threading.Thread(target=self._write_loop, name="writer", daemon=True)
        self._workers: list[WorkerProcess] = []
        self._http: ThreadingHTTPServer | None = None
        self._next_scan = 0.0
        self._next_disk = 0.0
        self._scans = 0
        self._started = time.time()
        self.ledger: Ledger | None = None
        self._watcher_active = False
        self._locks: list[int] = []
        self._hinted = False
        self._last_scan_end = 0.0
        self._hint_gap = 0.05

    # -- start / stop ----------------------------------------------------------------------
    def _worker_settings(self) -> dict[str, Any]:
        c = self.config
        preload = sorted({m for m in (c.modality, *c.folders.values()) if m})
        return {
            "inbox": str(c.inbox),
            "models": dict(c.models),
            "quality_gate": c.quality_gate,
            "override_dicom_modality": c.override_dicom_modality,
            "memory_limit_mb": c.memory_limit_mb,
            "preload": preload,
            "cine_frames": c.cine_frames,
            "max_file_mb": c.max_file_mb,
        }

    def _setup(self) -> None:
        c = self.config
        for d in (c.outbox, c.processed_dir, c.failed_dir, c.state_dir):
            ensure_dir(d)
        if c.sr or c.sc:
            try:
                importlib.import_module(f"{__package__}._dicom")
            except ImportError as exc:
                raise ConfigError(
                    f"--sr / --sc need the DICOM writer ({exc}); install medimg-edge[dicom]"
                ) from None
        # One daemon per inbox and per outbox: two would process the same files twice.
        # (flock on the state folder and on the inbox folder itself: nothing is created)
        for lock in (c.state_dir, c.inbox):
            fd = os.open(lock, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                where = "outbox" if lock == c.state_dir else "inbox"
                raise ConfigError(f"another medimg-edge watch is running on this {where}") from None
            self._locks.append(fd)
        removed = clean_temp_files(c.outbox, c.processed_dir, c.failed_dir, c.state_dir)
        self.ledger = Ledger(c.state_dir / "ledger.sqlite")
        self._recover()
        log.info(
            "started",
            extra={
                "event": "start",
                "pid": os.getpid(),
                "workers": c.workers,
                "temp_files_removed": removed,
                "ledger": self.ledger.counts(),
            },
        )

    def _recover(self) -> None:
        """Finish or re-queue rows left in ``processing`` by a crash (idempotent)."""
        assert self.ledger is not None
        c = self.config
        with self.ledger.transaction():
            for row in self.ledger.unmoved():
                self._unmoved.add((row.path, row.signature))
            for row in self.ledger.active():
                if row.state == "processing":
                    rid = self.ledger.result_id(row.rowid)
                    src = c.inbox / row.path
                    present = os.path.lexists(src)
                    if not present and (c.outbox / f"{rid}.json").exists():
                        self.ledger.update(row, state="done", moved=1)
                        log.info("recovered done", extra={"event": "recovered", "id": rid})
                        continue
                    if not present and (c.failed_dir / f"{rid}.reason.json").exists():
                        self.ledger.update(row, state="failed", moved=1)
                        log.info("recovered failed", extra={"event": "recovered", "id": rid})
                        continue
                    if not present:
                        self.ledger.update(row, state="gone")
                        continue
                    self.ledger.update(row, state="seen")
                    log.info("re-queued", extra={"event": "requeued", "id": rid})
                elif row.state == "stable":
                    self._push_ready(row)
                self._active[row.path] = row

    def _start_workers(self) -> None:
        settings = self._worker_settings()
        for _ in range(self.config.workers):
            w = WorkerProcess(settings)
            w.spawn()  # all load their models in parallel
            self._workers.append(w)
        for i, w in enumerate(self._workers):
            w.wait_ready()  # raises RuntimeError when the models cannot be loaded
            t = threading.Thread(target=self._slot, args=(w,), name=f"slot-{i}", daemon=True)
            self._slots.append(t)
        for t in self._slots:
            t.start()
        self._writer.start()

    def _start_http(self) -> None:
        c = self.config
        if c.health_port is None:
            return
        daemon = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    body, ctype = daemon.metrics.render()
                    code = 200
                elif self.path in ("/healthz", "/health", "/"):
                    status = daemon.health()
                    body = json.dumps(status).encode()
                    ctype = "application/json"
                    code = 503 if status["status"] == "stopping" else 200
                else:
                    body, ctype, code = b"not found\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return  # no access log

        family = socket.AF_INET6 if ":" in c.health_host else socket.AF_INET

        class Server(ThreadingHTTPServer):
            address_family = family
            daemon_threads = True

        self._http = Server((c.health_host, c.health_port), Handler)
        port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, name="http", daemon=True).start()
        log.info(
            "health endpoint",
            extra={"event": "http", "host": c.health_host, "port": port},
        )

    def health(self) -> dict[str, Any]:
        """The ``/healthz`` document (also written to ``<state_dir>/daemon.json``)."""
        with self._lock:
            running = self._running
        waiting = len(self._ready_rows)
        status = "stopping" if self._stop else ("paused" if self._paused else "ok")
        return {
            "status": status,
            "pid": os.getpid(),
            "paused": self._paused,
            "queue_depth": waiting + self._jobs.qsize() + running,
            "in_flight": running,
            "scans": self._scans,
            "watcher": self._watcher_active,
            "uptime_s": round(time.time() - self._started, 3),
            "health": None
            if self._http is None
            else [self.config.health_host, self._http.server_address[1]],
        }

    def _write_status(self) -> None:
        doc = self.health()
        atomic_write(self.config.state_dir / "daemon.json", json.dumps(doc).encode())

    def _on_hint(self) -> None:
        self._hinted = True
        self._wake.set()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self._reload = True
        else:
            self._stop = True
        self._wake.set()

    def run(self) -> int:
        """Run until SIGTERM / SIGINT (or idle, with ``exit_when_idle``); returns the exit
        status (0 clean stop, 2 configuration or model error)."""
        try:
            self._setup()
            self._start_workers()
            self._start_http()
        except (ConfigError, RuntimeError, OSError) as exc:
            msg = f"{type(exc).__name__}: {exc.strerror}" if isinstance(exc, OSError) else str(exc)
            log.error(msg, extra={"event": "startup_failed"})
            self._shutdown_workers()
            if self.ledger is not None:
                self.ledger.close()
            return 2
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        watcher = Watcher(self.config.inbox, self._on_hint)
        self._watcher_active = watcher.active
        self._write_status()
        sd_notify("READY=1\nSTATUS=watching")
        wd = _watchdog_interval()
        next_wd = 0.0
        ledger = self.ledger
        assert ledger is not None
        try:
            while True:
                now = time.monotonic()
                if wd is not None and now >= next_wd:
                    sd_notify("WATCHDOG=1")
                    next_wd = now + wd
                if self._reload:
                    self._reload = False
                    self._do_reload()
                self._check_disk(now)
                # One ledger transaction (one fsync) per round; claimed jobs are queued only
                # after their claim is durable.
                with ledger.transaction():
                    self._drain_results()
                    if self._stop:
                        break
                    if now >= self._next_scan:
                        self._scan()
                    claimed = self._dispatch()
                for job in claimed:
                    self._jobs.put(job)
                self._update_gauges()
                if self.exit_when_idle and self._idle():
                    log.info("idle: exiting", extra={"event": "idle_exit"})
                    break
                timeout = max(0.0, min(self._next_scan - time.monotonic(), 1.0))
                if wd is not None:
                    timeout = min(timeout, max(0.0, next_wd - time.monotonic()))
                if self._wake.wait(timeout):
                    self._wake.clear()
                if self._hinted:
                    # a file-system event: rescan soon, at most as often as scans take
                    # (a burst of events costs one scan)
                    self._hinted = False
                    self._next_scan = min(self._next_scan, self._last_scan_end + self._hint_gap)
        finally:
            sd_notify("STOPPING=1")
            self._stop = True
            log.info("stopping", extra={"event": "stopping"})
            watcher.stop()
            self._finish_in_flight()
            if self._http is not None:
                self._http.shutdown()
                self._http.server_close()
            assert self.ledger is not None
            counts = self.ledger.counts()
            self.ledger.close()
            log.info("stopped", extra={"event": "stopped", "ledger": counts})
        return 0

    def _idle(self) -> bool:
        if self._scans < 1:
            return False
        with self._lock:
            busy = self._in_flight
        return busy == 0 and not self._active

    def _finish_in_flight(self) -> None:
        """Give back queued jobs, wait for running ones, stop the workers."""
        assert self.ledger is not None
        given_back: list[Job] = []
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                given_back.append(job)
        with self.ledger.transaction():
            for job in given_back:
                self.ledger.update(job.row, state="stable")
        with self._lock:
            self._in_flight -= len(given_back)
        for _ in self._slots:
            self._jobs.put(None)
        for t in self._slots:
            t.join()
        self._replies.put(None)
        self._writer.join()
        self._drain_results()
        self._shutdown_workers()

    def _shutdown_workers(self) -> None:
        for w in self._workers:
            w.stop()

    # -- config reload / disk --------------------------------------------------------------
    def _do_reload(self) -> None:
        sd_notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            new = load_config(self.config_file, self.overrides)
        except ConfigError as exc:
            log.error(
                f"reload failed, keeping the old config: {exc}", extra={"event": "reload_failed"}
            )
            sd_notify("READY=1")
            return
        kept = [k for k in RESTART_KEYS if getattr(new, k) != getattr(self.config, k)]
        if kept:
            import dataclasses

            new = dataclasses.replace(new, **{k: getattr(self.config, k) for k in kept})
            log.warning(
                "some settings need a restart and were not changed",
                extra={"event": "reload_partial", "keys": kept},
            )
        self.config = new
        logging.getLogger("medimg_edge").setLevel(new.log_level)
        self._next_disk = 0.0
        self._next_scan = 0.0
        log.info("config reloaded", extra={"event": "reloaded"})
        sd_notify("READY=1")

    def _check_disk(self, now: float) -> None:
        if now < self._next_disk:
            return
        self._next_disk = now + 1.0
        free_mb = shutil.disk_usage(self.config.outbox).free / (1 << 20)
        paused = free_mb < self.config.min_free_mb
        if paused != self._paused:
            self._paused = paused
            self.metrics.paused.set(1 if paused else 0)
            log.warning(
                "intake paused: free disk below min_free_mb" if paused else "intake resumed",
                extra={
                    "event": "paused" if paused else "resumed",
                    "free_mb": round(free_mb, 1),
                    "min_free_mb": self.config.min_free_mb,
                },
            )
            with contextlib.suppress(OSError):
                self._write_status()

    # -- scanning --------------------------------------------------------------------------
    def _scan(self) -> None:
        assert self.ledger is not None
        c = self.config
        entries = scan_inbox(c.inbox, c.is_ignored)
        self._scans += 1
        mono, wall = time.monotonic(), time.time()
        present = {e.relpath for e in entries}
        vanished = {
            r.signature: r
            for p, r in self._active.items()
            if p not in present and r.state in ("seen", "stable")
        }
        pending = False
        with self.ledger.transaction():
            for e in entries:
                row = self._active.get(e.relpath)
                if row is None:
                    if (e.relpath, e.signature) in self._unmoved:
                        continue
                    moved = vanished.pop(e.signature, None) if e.kind == "file" else None
                    if moved is not None:  # renamed inside the inbox: same input
                        del self._active[moved.path]
                        self._settler.forget(moved.path)
                        self.ledger.update(moved, path=e.relpath)
                        row = moved
                    else:
                        row = self.ledger.add(e.relpath, e.signature)
                        log.debug(
                            "new input",
                            extra={"event": "seen", "id": self.ledger.result_id(row.rowid)},
                        )
                    self._active[e.relpath] = row
                if row.state == "processing":
                    continue
                if e.kind != "file":
                    self._ready_rows.pop(row.rowid, None)
                    self._quarantine_unread(row, e.kind, e.outside)
                    continue
                if row.signature != e.signature:
                    size, mtime_ns, dev, ino = e.signature
                    self.ledger.update(
                        row, size=size, mtime_ns=mtime_ns, dev=dev, ino=ino, state="seen"
                    )
                    self._ready_rows.pop(row.rowid, None)
                stable = self._settler.observe(e.relpath, e.signature, c.settle_seconds, mono, wall)
                if stable and row.state == "seen":
                    self._mark_stable(row)
                    self._settler.forget(e.relpath)
                elif not stable:
                    pending = True
            for row in vanished.values():
                self.ledger.update(row, state="gone")
                self._ready_rows.pop(row.rowid, None)
                self._active.pop(row.path, None)
                self._settler.forget(row.path)
        self._settler.keep_only(present)
        end = time.monotonic()
        self._last_scan_end = end
        self._hint_gap = max(0.05, 2.0 * (end - mono))
        delay = c.rescan_seconds
        if pending:
            delay = min(delay, max(c.settle_seconds / 2, 0.05))
        self._next_scan = end + delay

    def _quarantine_unread(self, row: Row, kind: str, outside: bool) -> None:
        """Symbolic links and special files are quarantined without being opened."""
        assert self.ledger is not None
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
        moved = self._quarantine(rid, row.path, _suffix(row.path), code, message, attempts=0)
        self.ledger.update(row, state="failed", code=code, moved=int(moved))
        self._active.pop(row.path, None)
        if not moved:
            self._unmoved.add((row.path, row.signature))
        self.metrics.failed.labels(code=code).inc()
        log.warning("quarantined", extra={"event": "failed", "id": rid, "code": code})

    # -- dispatch / results ----------------------------------------------------------------
    def _push_ready(self, row: Row) -> None:
        self._ready_rows[row.rowid] = row
        heapq.heappush(self._ready, (row.not_before, row.rowid))

    def _mark_stable(self, row: Row, **fields: object) -> None:
        assert self.ledger is not None
        self.ledger.update(row, state="stable", **fields)
        self._push_ready(row)

    def _dispatch(self) -> list[Job]:
        """Claim stable rows (state ``processing``) up to the free room; the caller
        queues them once the claim is committed."""
        assert self.ledger is not None
        if self._paused or self._stop:
            return []
        c = self.config
        now = time.time()
        with self._lock:
            outstanding = self._in_flight
        # bounded: the queue, two jobs per worker (one running, one in its pipe) and one
        # batch of replies being written
        free = min(
            self._jobs.maxsize - self._jobs.qsize(),
            self._jobs.maxsize + 2 * c.workers + _BATCH_MAX - outstanding,
        )
        if free <= 0:
            return []
        ready: list[Row] = []
        while self._ready and len(ready) < free and self._ready[0][0] <= now:
            _, rowid = heapq.heappop(self._ready)
            row = self._ready_rows.pop(rowid, None)
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
                jobs.append(Job(row, rid, _suffix(row.path), msg))
        with self._lock:
            self._in_flight += len(jobs)
        return jobs

    def _drain_results(self) -> None:
        assert self.ledger is not None
        outcomes: list[Outcome] = []
        while True:
            try:
                outcomes.append(self._results.get_nowait())
            except queue.Empty:
                break
        if not outcomes:
            return
        c = self.config
        with self.ledger.transaction():
            for o in outcomes:
                row, rid = o.job.row, o.job.rid
                if o.worker_restarted:
                    self.metrics.worker_restarts.inc()
                if o.result == "done":
                    self.ledger.update(
                        row, state="done", sha256=o.sha256, kind=o.kind, moved=int(o.moved)
                    )
                    self.metrics.processed.inc()
                    self.metrics.latency.observe(time.monotonic() - o.job.claimed)
                    log.info("done", extra={"event": "done", "id": rid, "kind": o.kind})
                elif o.result == "failed":
                    self.ledger.update(
                        row,
                        state="failed",
                        code=o.code,
                        attempts=row.attempts + 1,
                        sha256=o.sha256,
                        moved=int(o.moved),
                    )
                    self.metrics.failed.labels(code=o.code or "unknown").inc()
                    log.warning(
                        "quarantined",
                        extra={"event": "failed", "id": rid, "code": o.code, "reason": o.message},
                    )
                elif o.result == "retry":
                    attempts = row.attempts + 1
                    delay = c.retry_seconds * (2 ** (attempts - 1))
                    self._mark_stable(row, attempts=attempts, not_before=time.time() + delay)
                    self.metrics.retries.inc()
                    log.warning(
                        "attempt failed, will retry",
                        extra={
                            "event": "retry",
                            "id": rid,
                            "code": o.code,
                            "reason": o.message,
                            "attempts": attempts,
                        },
                    )
                else:  # gone
                    self.ledger.update(row, state="gone")
                    log.info("vanished", extra={"event": "gone", "id": rid})
                if row.state in ("done", "failed", "gone"):
                    self._active.pop(row.path, None)
                    if row.state != "gone" and not o.moved:
                        self._unmoved.add((row.path, row.signature))
        with self._lock:
            self._in_flight -= len(outcomes)

    def _update_gauges(self) -> None:
        doc = self.health()
        self.metrics.queue_depth.set(doc["queue_depth"])
        self.metrics.in_flight.set(doc["in_flight"])

    # -- slot threads ----------------------------------------------------------------------
    def _slot(self, worker: WorkerProcess) -> None:
        """Feed one worker: one job running and the next one already in its pipe.  The
        replies are finished (written, moved) by the writer threads, so the worker never
        waits for an ``fsync`` or for this thread."""
        sent: collections.deque[Job] = collections.deque()
        stopping = False
        while True:
            while not stopping and len(sent) < 2:
                if sent:
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                else:
                    t0 = time.monotonic()
                    job = self._jobs.get()
                    self.metrics.worker_idle.inc(time.monotonic() - t0)
                if job is None:
                    stopping = True
                    break
                self._send(worker, job, sent)
            if not sent:
                if stopping:
                    return
                continue
            head = sent[0]
            reply: WorkerReply | WorkerDied
            try:
                reply = worker.receive(self.config.timeout_seconds)
            except WorkerDied as exc:
                reply = exc
            sent.popleft()
            with self._lock:
                self._running -= 1
            self._replies.put((head, reply))
            if isinstance(reply, WorkerDied) and sent:
                # the jobs behind the one that killed the worker never started
                again = list(sent)
                sent.clear()
                with self._lock:
                    self._running -= len(again)
                for job in again:
                    self._send(worker, job, sent)

    def _send(self, worker: WorkerProcess, job: Job, sent: collections.deque[Job]) -> None:
        try:
            worker.send(job.message)
        except RuntimeError as exc:  # a restarted worker could not load its models
            self._replies.put((job, exc))
            return
        sent.append(job)
        with self._lock:
            self._running += 1

    def _write_loop(self) -> None:
        """Finish the workers' replies in batches: one ``fsync`` of the outbox and of the
        processed folder per batch instead of per file."""
        while True:
            item = self._replies.get()
            if item is None:
                return
            batch = [item]
            last = False
            # Gather the replies of the next few milliseconds too: one fsync of each folder
            # (and one ledger commit in the main thread) then covers several files.
            deadline = time.monotonic() + _BATCH_SECONDS
            while len(batch) < _BATCH_MAX:
                try:
                    nxt = self._replies.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    last = True
                    break
                batch.append(nxt)
            try:
                outcomes = self._finish_batch(batch)
            except Exception as exc:  # never lose a job: retried by the main thread
                outcomes = [
                    Outcome(j, "retry", "internal_error", type(exc).__name__) for j, _ in batch
                ]
            for o in outcomes:
                self._results.put(o)
            self._wake.set()
            if last:
                return

    def _finish_batch(self, batch: list[tuple[Job, Reply]]) -> list[Outcome]:
        """Outputs of every successful reply written atomically (JSON last), the outbox
        flushed, then the originals moved to ``processed/`` and flushed (:meth:`_done`);
        other replies one by one (:meth:`_process`)."""
        good = [(job, r) for job, r in batch if isinstance(r, WorkerReply) and r.header.get("ok")]
        taken = {id(job) for job, _ in good}
        outcomes = [self._process(job, r) for job, r in batch if id(job) not in taken]
        return outcomes + self._done(good) if good else outcomes

    def _done(self, good: list[tuple[Job, WorkerReply]]) -> list[Outcome]:
        """Write the outputs of successful replies and move their originals to
        ``processed/``.  When the writes fail (e.g. disk full) several replies are retried
        one by one; a single one counts as a failed attempt (``output_error``)."""
        c = self.config
        writes = [
            (c.outbox / f"{job.rid}.{name}", data)
            for job, r in good
            for name, data in sorted(r.blobs.items(), key=lambda kv: kv[0] == "json")
        ]
        try:
            atomic_write_many(writes)
        except OSError as exc:
            if len(good) > 1:
                return [o for pair in good for o in self._done([pair])]
            job = good[0][0]
            return [self._failed_attempt(job, "output_error", exc.strerror or "write error")]
        moves = [
            (c.inbox / job.row.path, c.processed_dir / f"{job.rid}{job.suffix}") for job, _ in good
        ]
        outcomes = []
        for (job, r), err in zip(good, move_many(moves), strict=True):
            h = r.header
            moved = self._moved_out(job.rid, err)
            outcomes.append(
                Outcome(job, "done", sha256=h.get("sha256"), kind=h.get("kind"), moved=moved)
            )
        return outcomes

    def _process(self, job: Job, reply: Reply) -> Outcome:
        if isinstance(reply, WorkerDied):
            return self._failed_attempt(job, reply.code, str(reply), restarted=True)
        if isinstance(reply, RuntimeError):  # a restarted worker could not load its models
            return Outcome(job, "retry", "worker_start_failed", str(reply)[:200])
        h = reply.header
        if h.get("ok"):
            return self._done([(job, reply)])[0]
        code = str(h.get("code", "error"))
        if code == "vanished":
            return Outcome(job, "gone", code)
        message = str(h.get("message", ""))
        if h.get("permanent"):
            moved = self._quarantine(
                job.rid, job.row.path, job.suffix, code, message, job.row.attempts + 1
            )
            return Outcome(job, "failed", code, message, moved=moved)
        return self._failed_attempt(job, code, message)

    def _failed_attempt(
        self, job: Job, code: str, message: str, *, restarted: bool = False
    ) -> Outcome:
        attempts = job.row.attempts + 1
        if attempts >= self.config.max_attempts:
            moved = self._quarantine(job.rid, job.row.path, job.suffix, code, message, attempts)
            return Outcome(job, "failed", code, message, moved=moved, worker_restarted=restarted)
        return Outcome(job, "retry", code, message, worker_restarted=restarted)

    @staticmethod
    def _moved_out(rid: str, err: OSError | None) -> bool:
        """Whether the original left the inbox after a move that ended with ``err``
        (``FileNotFoundError``: it was gone meanwhile, nothing is left); logs a failure."""
        if err is None or isinstance(err, FileNotFoundError):
            return True
        log.error(
            "could not move the original out of the inbox",
            extra={"event": "move_failed", "id": rid, "errno": err.errno},
        )
        return False

    def _quarantine(
        self, rid: str, relpath: str, suffix: str, code: str, message: str, attempts: int
    ) -> bool:
        """``failed/<id>.reason.json`` then the original to ``failed/<id><suffix>``."""
        c = self.config
        reason = {
            "id": rid,
            "code": code,
            "message": message,
            "attempts": attempts,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        # atomic_write flushes failed/ itself: the reason file is durable even when the
        # original is gone
        atomic_write(c.failed_dir / f"{rid}.reason.json", (json.dumps(reason) + "\n").encode())
        try:
            move_file(c.inbox / relpath, c.failed_dir / f"{rid}{suffix}")
        except OSError as exc:
            return self._moved_out(rid, exc)
        return True
