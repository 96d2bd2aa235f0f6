"""The watch-folder daemon: the main loop (applies outcomes in ledger transactions), the
worker pool and its slot threads, signals, config reload, the free-disk guard.

The other seams live beside it: ``_intake.py`` (inbox vs ledger reconciliation, claims),
``_finish.py`` (the writer thread: durable outputs, moves, quarantine), ``_observe.py``
(JSON logs, systemd notifications, metrics, the health server).

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
import importlib
import json
import logging
import os
import queue
import shutil
import signal
import sqlite3
import threading
import time
from types import FrameType
from typing import Any

from .._durable import atomic_write, clean_temp_files, ensure_dir
from . import _models
from ._config import Config, ConfigError, load_config
from ._finish import BATCH_MAX, Finisher, Job, Outcome, Waker
from ._intake import Intake
from ._ledger import Ledger, LedgerDamaged, is_damage
from ._observe import (
    HealthServer,
    JsonFormatter,
    Metrics,
    sd_notify,
    setup_logging,
    watchdog_interval,
)
from ._scan import Evidence, Watcher
from ._worker import WorkerDied, WorkerProcess, WorkerReply

__all__ = ["Daemon", "JsonFormatter", "sd_notify", "setup_logging"]

log = logging.getLogger("medimg_edge.daemon")

# back-off of the retries while the ledger cannot be written (seconds, doubled, capped)
_LEDGER_RETRY_FIRST, _LEDGER_RETRY_MAX = 0.5, 30.0

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
    # the DICOM node
    "dicom_port",
    "dicom_host",
    "dicom_folder",
    "ae_title",
    "allow_ae",
    "tls_cert",
    "tls_key",
    "tls_ca",
    "forward",
)


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
        self._wake = Waker()  # set from signal handlers too: never a threading.Event
        self._stop = False
        self._reload = False
        self._paused = False
        self._jobs: queue.Queue[Job | None] = queue.Queue(maxsize=config.effective_queue_size)
        self._results: queue.Queue[Outcome] = queue.Queue()
        self._in_flight = 0
        self._running = 0
        self._lock = threading.Lock()
        self._slots: list[threading.Thread] = []
        # replies of the workers, finished (written, moved) in batches by the writer thread
        self._finisher = Finisher(lambda: self.config, self._results, self._wake)
        self._workers: list[WorkerProcess] = []
        self._http: HealthServer | None = None
        self._next_disk = 0.0
        self._started = time.time()
        self.ledger: Ledger | None = None
        self._intake: Intake | None = None
        self._watcher_active = False
        self._locks: list[int] = []
        self._hinted = False
        # the ledger could not be written: intake paused, outcomes held, retried
        self._evidence = Evidence()
        self._ledger_down = False
        self._disk_low = False
        self._held: list[Outcome] = []
        self._ledger_retry_at = 0.0
        self._ledger_backoff = _LEDGER_RETRY_FIRST
        self._free_mb, self._free_where = float("inf"), ""
        self._scp: Any = None  # _scp.Receiver (C-STORE listener)
        self._forward: Any = None  # _forward.Forwarder
        self._forward_due = False
        # models (_models.py): champions, shadow, workers waiting to take a slot over
        self._champions: dict[str, _models.ModelSpec] = {}
        self._shadow: dict[str, str] = {}
        self._swap: dict[int, WorkerProcess] = {}
        self._model_log: _models.ResultLog | None = None
        self._configured: dict[str, _models.ModelSpec] = {}  # the config's models

    # -- start / stop ----------------------------------------------------------------------
    def _worker_settings(self) -> dict[str, Any]:
        c = self.config
        preload = {m for m in (c.modality, *c.folders.values()) if m}
        # a promoted champion and the shadow are loaded (verified) before any file
        preload |= {m for m, s in self._champions.items() if s != self._configured.get(m)}
        return {
            "inbox": str(c.inbox),
            "models": {m: s.ref for m, s in self._champions.items()} or dict(c.models),
            "shadow": dict(self._shadow),
            "preload": sorted(preload | set(self._shadow)),
            "quality_gate": c.quality_gate,
            "override_dicom_modality": c.override_dicom_modality,
            "memory_limit_mb": c.memory_limit_mb,
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
        self._open_ledger()
        assert self.ledger is not None
        self._setup_dicom()
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

    def _setup_dicom(self) -> None:
        """The C-STORE listener's folder and recovery, the forward queue (both need
        pynetdicom); they start serving in :meth:`_start_dicom`."""
        c = self.config
        if c.dicom_port is None and not c.forward:
            return
        try:
            importlib.import_module("pynetdicom")
        except ImportError:
            raise ConfigError(
                "--dicom-port / --forward need pynetdicom: pip install 'medimg-edge[daemon]'"
            ) from None
        assert self.ledger is not None
        if c.dicom_port is not None:
            from ._scp import Receiver

            self._scp = Receiver(
                c, self.ledger.path, lambda: self._paused, self._on_hint, self.metrics
            )
            self._scp.recover()
        if c.forward:
            from ._forward import Forwarder

            self._forward = Forwarder(
                self.ledger.path,
                c.outbox,
                self.ledger.result_id,
                c.forward,
                self.metrics,
                calling_ae=c.ae_title,
                send_sc=c.sc,
                retry_seconds=c.forward_retry_seconds,
                backoff_max_seconds=c.forward_backoff_max_seconds,
                max_attempts=c.forward_max_attempts,
                client_cert=None if c.tls_cert is None else (c.tls_cert, c.tls_key),
            )

    def _start_dicom(self) -> None:
        if self._forward is not None:
            self._forward.start()
        if self._scp is not None:
            self._scp.start()

    def _stop_dicom(self) -> None:
        if self._scp is not None:
            self._scp.close()
            self._scp = None

    def _start_workers(self) -> None:
        self._init_models()
        settings = self._worker_settings()
        for _ in range(self.config.workers):
            w = WorkerProcess(settings)
            w.spawn()  # all load their models in parallel
            self._workers.append(w)
        for i, w in enumerate(self._workers):
            w.wait_ready()  # raises RuntimeError when the models cannot be loaded
            self._check_loaded(w)
            t = threading.Thread(target=self._slot, args=(w,), name=f"slot-{i}", daemon=True)
            self._slots.append(t)
        for t in self._slots:
            t.start()
        self._finisher.thread.start()

    def _start_http(self) -> None:
        c = self.config
        if c.health_port is not None:
            self._http = HealthServer(c.health_host, c.health_port, self.health, self.metrics)

    def health(self) -> dict[str, Any]:
        """The ``/healthz`` document (also written to ``<state_dir>/daemon.json``)."""
        with self._lock:
            running = self._running
        intake = self._intake
        waiting = 0 if intake is None else len(intake.ready_rows)
        status = "stopping" if self._stop else ("paused" if self._paused else "ok")
        return {
            "status": status,
            "pid": os.getpid(),
            "paused": self._paused,
            "ledger_writable": not self._ledger_down,
            "queue_depth": waiting + self._jobs.qsize() + running,
            "in_flight": running,
            "scans": 0 if intake is None else intake.scans,
            "watcher": self._watcher_active,
            "uptime_s": round(time.time() - self._started, 3),
            "health": None if self._http is None else [self._http.host, self._http.port],
            "dicom": None
            if self._scp is None or self._scp.port is None
            else [self.config.dicom_host, self._scp.port, self.config.ae_title],
            "forward": None if self._forward is None else self._forward.status(),
            "drift": self.metrics.drift.section(),
            # what the workers run now (as <state_dir>/models.json): champions and shadow
            "models": {  # both dicts are only ever replaced whole: read each once
                "champions": {m: s.to_dict() for m, s in dict(self._champions).items()},
                "shadow": dict(self._shadow),
            },
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
            self._start_dicom()
        except (ConfigError, RuntimeError, OSError) as exc:
            msg = f"{type(exc).__name__}: {exc.strerror}" if isinstance(exc, OSError) else str(exc)
            log.error(msg, extra={"event": "startup_failed"})
            self._stop_dicom()
            if self._forward is not None:
                self._forward.stop(timeout=1.0)
            self._shutdown_workers()
            if self.ledger is not None:
                self.ledger.close()
            return 2
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        watcher = Watcher(self.config.inbox, self._on_hint, self._evidence)
        self._watcher_active = watcher.active
        with contextlib.suppress(OSError):  # a full disk must not stop the start
            self._write_status()
        sd_notify("READY=1\nSTATUS=watching")
        wd = watchdog_interval()
        next_wd = 0.0
        ledger, intake = self.ledger, self._intake
        assert ledger is not None and intake is not None
        status = 0
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
                claimed: list[Job] = []
                if self._ledger_down:  # hold outcomes; rebuild the intake once writable
                    if self._stop:
                        break
                    intake = self._ledger_recover(now) or intake
                else:
                    # One ledger transaction (one fsync) per round; claimed jobs are queued
                    # only after their claim is durable.
                    try:
                        with ledger.transaction():
                            self._drain_results()
                            if self._stop:
                                break
                            if now >= intake.next_scan:
                                intake.scan()
                            claimed = self._dispatch()
                    except sqlite3.DatabaseError as exc:
                        if is_damage(exc):
                            raise LedgerDamaged(ledger.path, str(exc)) from None
                        self._ledger_failed(exc, claimed, now)
                        claimed = []
                for job in claimed:
                    self._jobs.put(job)
                if self._forward_due and self._forward is not None:
                    self._forward.wake()
                self._forward_due = False
                self._update_gauges()
                if self.exit_when_idle and self._idle():
                    log.info("idle: exiting", extra={"event": "idle_exit"})
                    break
                timeout = max(0.0, min(intake.next_scan - time.monotonic(), 1.0))
                if wd is not None:
                    timeout = min(timeout, max(0.0, next_wd - time.monotonic()))
                self._wake.wait(timeout)
                if self._hinted:
                    # a file-system event: rescan soon, at most as often as scans take
                    # (a burst of events costs one scan)
                    self._hinted = False
                    intake.next_scan = min(intake.next_scan, intake.last_scan_end + intake.hint_gap)
        except LedgerDamaged as exc:
            log.error(str(exc), extra={"event": "ledger_damaged"})
            status = 2
        finally:
            sd_notify("STOPPING=1")
            self._stop = True
            log.info("stopping", extra={"event": "stopping"})
            self._stop_dicom()  # no new instances; unanswered ones are sent again by peers
            watcher.stop()
            self._finish_in_flight()
            if self._forward is not None:
                self._forward.stop()
            if self._http is not None:
                self._http.close()
            assert self.ledger is not None
            counts: dict[str, int] | None = None
            with contextlib.suppress(sqlite3.Error):
                counts = self.ledger.counts()
            self.ledger.close()
            log.info("stopped", extra={"event": "stopped", "ledger": counts})
        return status

    def _idle(self) -> bool:
        intake = self._intake
        if intake is None or intake.scans < 1:
            return False
        with self._lock:
            busy = self._in_flight
        return busy == 0 and not intake.active

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
        # (a ledger that cannot be written leaves them processing: re-queued at the start)
        with contextlib.suppress(sqlite3.DatabaseError), self.ledger.transaction():
            for job in given_back:
                self.ledger.update(job.row, state="stable")
        with self._lock:
            self._in_flight -= len(given_back)
        for _ in self._slots:
            self._jobs.put(None)
        for t in self._slots:
            t.join()
        self._finisher.replies.put(None)
        self._finisher.thread.join()
        if self._ledger_down:  # outcomes on disk, rows processing: completed at the start
            self._held.clear()
        with contextlib.suppress(sqlite3.DatabaseError):
            for o in self._held:
                self._results.put(o)
            self._drain_results()
        self._shutdown_workers()

    def _shutdown_workers(self) -> None:
        for w in self._workers:
            w.stop()
        with self._lock:
            pending = list(self._swap.values())
            self._swap.clear()
        for w in pending:
            w.stop()
        if self._model_log is not None:
            self._model_log.close()
            self._model_log = None

    # -- config reload / disk --------------------------------------------------------------
    def _do_reload(self) -> None:
        sd_notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            new = load_config(self.config_file, self.overrides)
        except ConfigError as exc:
            log.error(
                f"reload failed, keeping the old config: {exc}", extra={"event": "reload_failed"}
            )
            self._reload_models()  # a promotion does not wait for a mended config
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
        if self._scp is not None:
            self._scp.config = new  # min_free_mb
        logging.getLogger("medimg_edge").setLevel(new.log_level)
        self._next_disk = 0.0
        if self._intake is not None:
            self._intake.next_scan = 0.0
        log.info("config reloaded", extra={"event": "reloaded"})
        self._reload_models()
        sd_notify("READY=1")

    def _check_disk(self, now: float) -> None:
        """Pause intake while the disk of the outbox, of ``processed/``, of ``failed/`` or
        of the ledger has less than ``min_free_mb`` free, or while the ledger cannot be
        written; resume by itself."""
        c = self.config
        if now >= self._next_disk:
            self._next_disk = now + 1.0
            free: dict[int, tuple[float, str]] = {}
            for where, folder in (
                ("outbox", c.outbox),
                ("processed", c.processed_dir),
                ("failed", c.failed_dir),
                ("ledger", c.state_dir),
            ):
                with contextlib.suppress(OSError):  # an unreadable folder: the writes tell
                    dev = os.stat(folder).st_dev
                    if dev not in free:
                        free[dev] = (shutil.disk_usage(folder).free / (1 << 20), where)
            self._free_mb, self._free_where = min(free.values(), default=(float("inf"), ""))
            self._disk_low = self._free_mb < c.min_free_mb
        paused = self._disk_low or self._ledger_down
        if paused != self._paused:
            self._paused = paused
            self.metrics.paused.set(1 if paused else 0)
            if not paused:
                msg = "intake resumed"
            elif self._disk_low:
                msg = f"intake paused: free disk below min_free_mb on the {self._free_where} disk"
            else:
                msg = "intake paused: the ledger cannot be written"
            log.warning(
                msg,
                extra={
                    "event": "paused" if paused else "resumed",
                    "free_mb": round(self._free_mb, 1),
                    "min_free_mb": c.min_free_mb,
                },
            )
            with contextlib.suppress(OSError):
                self._write_status()

    # -- the ledger: opening, write failures ----------------------------------------------
    def _open_ledger(self) -> None:
        """Open the ledger and recover the intake.  While that needs a write the disk
        cannot take (full: ``sqlite3.OperationalError``), wait with a capped back-off,
        saying why (a start on a full disk waits for room instead of exiting).

        Raises
        ------
        LedgerDamaged
            The ledger file is damaged (the message names the file and the fix).
        """
        c = self.config
        path = c.state_dir / "ledger.sqlite"
        delay = _LEDGER_RETRY_FIRST
        while True:
            try:
                if self.ledger is None:
                    self.ledger = Ledger(path)
                intake = Intake(
                    self.ledger, lambda: self.config, self._finisher, self.metrics, self._evidence
                )
                intake.recover()
            except sqlite3.DatabaseError as exc:
                if is_damage(exc):
                    raise LedgerDamaged(path, str(exc)) from None
                name = str(getattr(exc, "sqlite_errorname", ""))
                if name.startswith(("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_PERM")):
                    raise ConfigError(
                        f"the ledger {path} cannot be opened for writing ({exc}): make its "
                        "folder writable by the daemon's user (state_dir)"
                    ) from None
                if delay == _LEDGER_RETRY_FIRST:
                    log.error(
                        f"the ledger cannot be opened or written ({exc}): waiting for room "
                        f"on its disk (free some space there), retrying every "
                        f"{_LEDGER_RETRY_MAX:g} s at most",
                        extra={"event": "ledger_unavailable"},
                    )
                self.metrics.ledger_errors.inc()
                sd_notify(
                    f"STATUS=waiting for the ledger ({exc})\n"
                    f"EXTEND_TIMEOUT_USEC={int((delay + 60) * 1e6)}"
                )
                time.sleep(delay)
                delay = min(delay * 2, _LEDGER_RETRY_MAX)
                continue
            if delay > _LEDGER_RETRY_FIRST:
                log.warning("the ledger can be written again", extra={"event": "ledger_recovered"})
            self._intake = intake
            return

    def _ledger_failed(self, exc: sqlite3.Error, claimed: list[Job], now: float) -> None:
        """A ledger write failed (rolled back): pause intake (:meth:`_ledger_recover`)."""
        with self._lock:
            self._in_flight -= len(claimed)  # claimed in the failed transaction, not queued
        self.metrics.ledger_errors.inc()
        if not self._ledger_down:
            log.error(
                f"the ledger could not be written ({exc}): intake paused, nothing is lost; "
                "retrying",
                extra={
                    "event": "ledger_write_failed",
                    "sqlite_error": getattr(exc, "sqlite_errorname", None),
                },
            )
        self._ledger_down = True
        self._next_disk = 0.0  # the guard says how much room is left
        self._ledger_retry_at = now + self._ledger_backoff
        self._ledger_backoff = min(self._ledger_backoff * 2, _LEDGER_RETRY_MAX)

    def _ledger_recover(self, now: float) -> Intake | None:
        """While the ledger cannot be written: queued jobs are dropped (their rows stay
        ``processing`` in the ledger), outcomes of running ones held.  Once nothing runs,
        retry (capped back-off): a fresh intake from the ledger (:meth:`Intake.recover`,
        which completes the rows whose outcome was lost with the failed transaction from
        what is on disk) and the held outcomes applied as usual.  Returns the new intake."""
        while True:
            try:
                self._held.append(self._results.get_nowait())
            except queue.Empty:
                break
        dropped = 0
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            dropped += job is not None
        with self._lock:
            self._in_flight -= dropped
            busy = self._in_flight - len(self._held)
        if busy > 0 or now < self._ledger_retry_at:
            if self._intake is not None:  # the loop sleeps until then (or a result)
                self._intake.next_scan = max(self._ledger_retry_at, now + 0.05)
            return None
        assert self.ledger is not None
        intake = Intake(
            self.ledger, lambda: self.config, self._finisher, self.metrics, self._evidence
        )
        try:
            intake.recover(keep={o.job.row.rowid for o in self._held})
        except sqlite3.DatabaseError as exc:
            if is_damage(exc):
                raise LedgerDamaged(self.ledger.path, str(exc)) from None
            self._ledger_failed(exc, [], now)
            return None
        rows = {r.rowid: r for r in intake.active.values()}
        for o in self._held:
            o.job.row = rows.get(o.job.row.rowid, o.job.row)
            self._results.put(o)
        self._held.clear()
        self._intake = intake
        self._ledger_down = False
        self._ledger_backoff = _LEDGER_RETRY_FIRST
        log.warning("the ledger can be written again", extra={"event": "ledger_recovered"})
        return intake

    # -- dispatch / results ----------------------------------------------------------------
    def _dispatch(self) -> list[Job]:
        """Claim stable rows up to the free room (:meth:`Intake.claim`); the caller queues
        them once the claim is committed."""
        if self._paused or self._stop or self._intake is None:
            return []
        with self._lock:
            outstanding = self._in_flight
        # bounded: the queue, two jobs per worker (one running, one in its pipe) and one
        # batch of replies being written
        free = min(
            self._jobs.maxsize - self._jobs.qsize(),
            self._jobs.maxsize + 2 * self.config.workers + BATCH_MAX - outstanding,
        )
        if free <= 0:
            return []
        jobs = self._intake.claim(free)
        with self._lock:
            self._in_flight += len(jobs)
        return jobs

    def _drain_results(self) -> None:
        """Apply the finisher's outcomes to the ledger, in one transaction."""
        assert self.ledger is not None and self._intake is not None
        intake = self._intake
        outcomes: list[Outcome] = []
        while True:
            try:
                outcomes.append(self._results.get_nowait())
            except queue.Empty:
                break
        if not outcomes:
            return
        with self._lock:  # applied or, if the transaction fails, completed by recovery
            self._in_flight -= len(outcomes)
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
                    self.metrics.results.labels(
                        status=o.status or "unknown", label=o.label or "none"
                    ).inc()
                    self.metrics.latency.observe(time.monotonic() - o.job.claimed)
                    self.metrics.drift.observe(c, rid, o.drift)  # joins its model's window
                    log.info(
                        f"done: {o.status}" + (f" ({o.label})" if o.label else ""),
                        extra={
                            "event": "done",
                            "id": rid,
                            "kind": o.kind,
                            "status": o.status,
                            "label": o.label,
                        },
                    )
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
                    attempts = row.attempts + int(o.count)
                    delay = o.delay
                    if delay is None:  # doubling, capped
                        delay = min(c.retry_max_seconds, c.retry_seconds * 2.0 ** (attempts - 1))
                    intake.mark_stable(row, attempts=attempts, not_before=time.time() + delay)
                    self.metrics.retries.inc()
                    log.warning(
                        "attempt failed, will retry"
                        if o.count
                        else f"no room on the disk ({o.message}): will retry, not an attempt",
                        extra={
                            "event": "retry",
                            "id": rid,
                            "code": o.code,
                            "reason": o.message,
                            "attempts": attempts,
                        },
                    )
                elif o.result == "changed":  # taken again once complete
                    intake.retake(row)
                    log.info(
                        "the file changed after it was taken: taken again",
                        extra={"event": "retake", "id": rid},
                    )
                else:  # gone
                    self.ledger.update(row, state="gone")
                    log.info("vanished", extra={"event": "gone", "id": rid})
                if row.state == "failed" and o.moved:
                    intake.watch_quarantine(row, o.job.suffix)
                if row.state in ("done", "failed", "gone"):
                    intake.finished(row)
                    intake.active.pop(row.path, None)
                    if row.state != "gone" and not o.moved:
                        intake.unmoved.add((row.path, row.signature))
        self._forward_due = True  # wake the forward feeder once this is committed
        self.metrics.drift.save(force=self._stop)  # the drift windows, every few seconds

    def _update_gauges(self) -> None:
        doc = self.health()
        self.metrics.queue_depth.set(doc["queue_depth"])
        self.metrics.in_flight.set(doc["in_flight"])
        self.metrics.drift.update_gauges()

    # -- models: champions, shadow, switching (_models.py) ----------------------------------
    def _init_models(self) -> None:
        """The champions (ledger state vs config: ``_models`` precedence), the shadow, the
        recorder of per-result model records and ``<state_dir>/models.json``."""
        import dataclasses

        from .._errors import MedimgEdgeError
        from .._modality import MODALITIES
        from ..diagnosis import REFERENCE_MODELS

        assert self.ledger is not None
        c = self.config
        wanted: dict[str, str] = {m: c.models.get(m) or REFERENCE_MODELS[m] for m in MODALITIES}
        delay = _LEDGER_RETRY_FIRST
        while True:
            try:
                db = _models.connect(self.ledger.path)
                try:
                    self._champions = _models.init_state(db, wanted, pid=os.getpid())
                finally:
                    db.close()
                self._shadow = self._shadow_refs(self._champions)
                break
            except MedimgEdgeError as exc:
                raise ConfigError(f"models: {exc}") from None
            except sqlite3.OperationalError as exc:  # a full disk: wait, as for the ledger
                if delay == _LEDGER_RETRY_FIRST:
                    log.error(
                        f"the model state cannot be written to the ledger ({exc}): waiting "
                        "for room on its disk",
                        extra={"event": "ledger_unavailable"},
                    )
                time.sleep(delay)
                delay = min(delay * 2, _LEDGER_RETRY_MAX)
        for m, spec in self._champions.items():
            with contextlib.suppress(MedimgEdgeError):
                self._configured[m] = dataclasses.replace(_models.describe(wanted[m]), modality=m)
            if self._configured.get(m) != spec:
                log.warning(
                    f"the {m} champion is {spec.label()} (promoted; the config's model "
                    "is not used: medimg-edge rollback returns to it)",
                    extra={"event": "model_promoted_wins", "modality": m},
                )
        self._model_log = _models.ResultLog(self.ledger.path)
        self._write_models_file()

    def _shadow_refs(self, champions: dict[str, _models.ModelSpec]) -> dict[str, str]:
        """The config's shadow per modality, without one that is the champion itself."""
        refs = _models.shadow_refs(self.config.shadow)
        return {
            m: _models.describe(r).ref
            for m, r in refs.items()
            if m in champions and _models.describe(r).sha256 != champions[m].sha256
        }

    def _check_loaded(self, w: WorkerProcess) -> None:
        """The worker loaded exactly the champions recorded (same sha256), else it is
        killed and ``RuntimeError`` says what differs."""
        for m, got in (w.loaded.get("champion") or {}).items():
            want = self._champions.get(m)
            if want is not None and got.get("sha256") != want.sha256:
                w.kill()
                raise RuntimeError(
                    f"the {m} model loaded ({got.get('name')} {got.get('version')}, sha256 "
                    f"{str(got.get('sha256'))[:12]}) is not the champion recorded "
                    f"({want.label()}): its files changed; restore them or run "
                    "medimg-edge rollback"
                )

    def _write_models_file(self) -> None:
        """``<state_dir>/models.json``: what the workers run now (the ledger's
        ``model_state`` is what should run; this file says what does)."""
        doc = {
            "pid": os.getpid(),
            "time": time.time(),
            "champions": {m: s.to_dict() for m, s in self._champions.items()},
            "shadow": dict(self._shadow),
        }
        with contextlib.suppress(OSError):
            atomic_write(self.config.state_dir / "models.json", json.dumps(doc).encode())

    def _reload_models(self) -> None:
        """SIGHUP: switch to the champions recorded in the ledger (``promote``,
        ``rollback``) and the config's shadow when they changed.  New workers load and
        verify them while the old ones go on; only when every new worker is ready does
        each slot take one over, once the jobs already in its old worker are answered
        (:meth:`_take_over`): no file is diagnosed by a half-loaded model, none is lost.
        A model that cannot be loaded is refused: the old workers go on, the state goes
        back to what they run (history ``switch_failed``)."""
        from .._errors import MedimgEdgeError

        assert self.ledger is not None
        try:
            db = _models.connect(self.ledger.path)
            try:
                state = _models.read_state(db)
            finally:
                db.close()
            champions = {m: r.spec for m, r in state.items()} or self._champions
            shadow = self._shadow_refs(champions)
        except (MedimgEdgeError, sqlite3.Error) as exc:
            log.error(f"models not reloaded: {exc}", extra={"event": "models_reload_failed"})
            return
        if champions == self._champions and shadow == self._shadow:
            return
        old = (self._champions, self._shadow)
        self._champions, self._shadow = champions, shadow
        names = {m: s.label() for m, s in champions.items()}
        log.info(
            "switching models: loading them in new workers",
            extra={"event": "models_switching", "champions": names, "shadow": shadow},
        )
        settings = self._worker_settings()
        fresh: list[WorkerProcess] = []
        try:
            for _ in self._workers:
                w = WorkerProcess(settings)
                fresh.append(w)
                w.spawn()
            for w in fresh:
                w.wait_ready()
                self._check_loaded(w)
        except (RuntimeError, OSError) as exc:
            for w in fresh:
                w.kill()
            self._champions, self._shadow = old
            log.error(
                f"the new models could not be loaded ({exc}): the daemon keeps the models it runs",
                extra={"event": "models_switch_failed"},
            )
            with contextlib.suppress(sqlite3.Error, MedimgEdgeError):
                db = _models.connect(self.ledger.path)
                try:
                    _models.revert(db, old[0], str(exc)[:500], pid=os.getpid())
                finally:
                    db.close()
            return
        with self._lock:
            superseded = list(self._swap.values())  # an earlier switch not taken over yet
            self._swap = {id(cur): new for cur, new in zip(self._workers, fresh, strict=True)}
        for w in superseded:
            w.kill()
        with contextlib.suppress(sqlite3.Error, MedimgEdgeError):
            db = _models.connect(self.ledger.path)
            try:
                _models.record(
                    db,
                    "applied",
                    detail={"pid": os.getpid(), "champions": champions, "shadow": shadow},
                )
            finally:
                db.close()
        self._write_models_file()
        log.info(
            "models switched: each worker slot takes its new worker over once its jobs "
            "in flight are answered",
            extra={"event": "models_switched", "champions": names, "shadow": shadow},
        )

    def _take_over(self, worker: WorkerProcess) -> WorkerProcess:
        """The worker that replaces ``worker`` in its slot after a switch (``worker``,
        which has no job left, is stopped), else ``worker``."""
        with self._lock:
            new = self._swap.pop(id(worker), None)
            if new is None:
                return worker
            self._workers[self._workers.index(worker)] = new
        worker.stop()
        return new

    def _record_models(self, job: Job, reply: WorkerReply) -> None:
        """The champion's and the shadow's answers to ``model_results`` (never a finding)."""
        records = reply.header.pop("models", None)
        if records and self._model_log is not None:
            self._model_log.add(job.rid, records)

    # -- slot threads ----------------------------------------------------------------------
    def _slot(self, worker: WorkerProcess) -> None:
        """Feed one worker: one job running and the next one already in its pipe.  The
        replies are finished (written, moved) by the writer threads, so the worker never
        waits for an ``fsync`` or for this thread."""
        sent: collections.deque[Job] = collections.deque()
        stopping = False
        while True:
            if not sent:  # drained: a worker with new models may take this slot over
                worker = self._take_over(worker)
            while not stopping and len(sent) < 2 and not (sent and id(worker) in self._swap):
                if sent:
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                else:
                    t0 = time.monotonic()
                    while True:
                        try:
                            job = self._jobs.get(timeout=0.5)
                            break
                        except queue.Empty:
                            worker = self._take_over(worker)
                    self.metrics.worker_idle.inc(time.monotonic() - t0)
                if job is None:
                    stopping = True
                    break
                if not sent:
                    worker = self._take_over(worker)
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
            else:
                self._record_models(head, reply)
            sent.popleft()
            with self._lock:
                self._running -= 1
            self._finisher.replies.put((head, reply))
            if isinstance(reply, WorkerDied) and sent:
                # the jobs behind the one that killed the worker never started
                again = list(sent)
                sent.clear()
                with self._lock:
                    self._running -= len(again)
                worker = self._take_over(worker)
                for job in again:
                    self._send(worker, job, sent)

    def _send(self, worker: WorkerProcess, job: Job, sent: collections.deque[Job]) -> None:
        try:
            worker.send(job.message)
        except RuntimeError as exc:  # a restarted worker could not load its models
            self._finisher.replies.put((job, exc))
            return
        sent.append(job)
        with self._lock:
            self._running += 1
