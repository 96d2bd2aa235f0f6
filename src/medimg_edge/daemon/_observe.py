"""Observability of the watch-folder daemon: JSON logs, the systemd notification protocol,
Prometheus metrics and the loopback health / metrics HTTP server."""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "DRIFT_ENV",
    "DriftTracker",
    "HealthServer",
    "JsonFormatter",
    "Metrics",
    "sd_notify",
    "setup_logging",
    "watchdog_interval",
]

log = logging.getLogger("medimg_edge.daemon")

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


def watchdog_interval() -> float | None:
    """Half the systemd watchdog period (``$WATCHDOG_USEC``) in seconds, when systemd
    watches this process; else None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return max(int(usec) / 2e6, 0.05)
    except ValueError:
        return None


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
        self.results = Counter(
            "medimg_edge_results",
            "Results written, by diagnosis status and label",
            ["status", "label"],
            registry=r,
        )
        self.retakes = Counter(
            "medimg_edge_retakes",
            "Inputs taken again because the file changed after it was taken",
            registry=r,
        )
        self.ledger_errors = Counter(
            "medimg_edge_ledger_errors",
            "Ledger writes that failed (disk full, I/O error); intake paused and retried",
            registry=r,
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
            "medimg_edge_intake_paused",
            "1 while intake is paused (free disk, or the ledger cannot be written)",
            registry=r,
        )
        # the DICOM node (_scp.py, _forward.py)
        self.dicom_received = Counter(
            "medimg_edge_dicom_received", "Instances received by C-STORE into the inbox", registry=r
        )
        self.dicom_refused = Counter(
            "medimg_edge_dicom_refused", "C-STORE requests refused", ["status"], registry=r
        )
        self.forward_queue = Gauge(
            "medimg_edge_forward_queue_depth",
            "Objects waiting to be forwarded",
            ["destination"],
            registry=r,
        )
        self.forward_sent = Counter(
            "medimg_edge_forward_sent",
            "Objects forwarded (success response)",
            ["destination"],
            registry=r,
        )
        self.forward_failures = Counter(
            "medimg_edge_forward_failures",
            "Failed forwarding attempts (destination down or object refused)",
            ["destination", "reason"],
            registry=r,
        )
        self.drift = DriftTracker(r)
        self.latency = Histogram(
            "medimg_edge_processing_seconds",
            "Time from claiming an input to its outputs being durable",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


#: ``MEDIMG_EDGE_DRIFT=0`` turns the daemon's drift monitoring off (benchmarks compare).
DRIFT_ENV = "MEDIMG_EDGE_DRIFT"
_DRIFT_SAVE_SECONDS = 5.0


def _champion_refs(state_dir: Any) -> list[str]:
    """Sidecars of the champions (and their predecessors) recorded in the ledger's
    ``model_state`` table by ``medimg-edge promote`` / ``rollback`` (``_models.py``),
    read on a read-only connection (never waits for the main loop's transaction)."""
    path = state_dir / "ledger.sqlite"
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=1.0)
        try:
            rows = db.execute("SELECT ref, previous FROM model_state").fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return []  # no ledger or no such table yet: nothing was promoted
    refs: list[str] = []
    for ref, previous in rows:
        refs.append(str(ref))
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            refs.extend(str(p["ref"]) for p in json.loads(previous))
    return refs


class DriftTracker:
    """Drift monitoring of the daemon's results (:mod:`medimg_edge.monitor`).

    The main loop hands it each result as it applies it (:meth:`observe`: the result's
    JSON record, just written to the outbox, is read back); the model's reference is the
    ``drift`` object of the sidecar the result names (the configured models and the
    model folders are searched for a package of that name and file sha256). Alarms are
    ``drift_alarm`` / ``drift_cleared`` log events; :meth:`section` is the ``/healthz``
    section ``drift`` and :meth:`update_gauges` sets the ``medimg_edge_drift_*`` gauges.
    The windows are saved to ``<state_dir>/drift.json`` (atomically, at most every
    ``_DRIFT_SAVE_SECONDS`` and at stop) and restored at the next start, so a restart
    does not reset them (a ``kill -9`` loses the results of the last few seconds, which
    only delays a check).
    """

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Gauge

        r = registry
        self.enabled = os.environ.get(DRIFT_ENV, "1").strip() not in ("0", "false", "no")
        self.alarm = Gauge(
            "medimg_edge_drift_alarm",
            "1 while the signal of the model is in drift alarm",
            ["model", "signal"],
            registry=r,
        )
        self.psi = Gauge(
            "medimg_edge_drift_psi",
            "Population stability index of the signal's window against the reference",
            ["model", "signal"],
            registry=r,
        )
        self.pvalue = Gauge(
            "medimg_edge_drift_pvalue",
            "p-value of the signal's test (KS, chi-square for the outcome mix)",
            ["model", "signal"],
            registry=r,
        )
        self.frames = Gauge(
            "medimg_edge_drift_frames", "Results the drift monitor has seen", ["model"], registry=r
        )
        self.available = Gauge(
            "medimg_edge_drift_available",
            "1 when the model's sidecar has a drift reference, else 0",
            ["model"],
            registry=r,
        )
        self.alarms = Counter(
            "medimg_edge_drift_alarms",
            "Drift alarms raised",
            ["model", "signal"],
            registry=r,
        )
        self.monitor: Any = None
        self._lock = threading.Lock()  # the main loop observes, the HTTP thread reads
        self._saved: dict[str, Any] = {}
        self._state_path: Any = None
        self._dirty = False
        self._gauges_due = False
        self._children: dict[tuple[int, str, str | None], Any] = {}
        self._next_save = 0.0

    def _start(self, config: Any) -> None:
        from ..monitor import DriftMonitor

        self.monitor = DriftMonitor(logger=log)
        self._state_path = config.state_dir / "drift.json"
        atexit.register(self.save, True)  # a clean stop keeps the last results too
        try:
            doc = json.loads(self._state_path.read_bytes())
            self._saved = doc if isinstance(doc, dict) else {}
        except (OSError, ValueError):
            self._saved = {}

    def observe(self, config: Any, rid: str, summary: dict[str, Any] | None = None) -> None:
        """Add a result applied as done to its model's window: ``summary`` is the worker's
        :func:`medimg_edge.monitor.drift_summary` of it; without one, the result file
        ``<outbox>/<rid>.json`` is read back."""
        if not self.enabled:
            return
        from ..monitor import drift_summary, key_of_result

        if summary is None:
            try:
                doc = json.loads((config.outbox / f"{rid}.json").read_bytes())
            except (OSError, ValueError):
                return  # replaced or removed meanwhile: one result less in the window
            summary = drift_summary(doc) if isinstance(doc, dict) else None
        if summary is None or not isinstance(summary.get("signals"), dict):
            return
        key = key_of_result(summary)
        if key is None:
            return
        with self._lock:
            checked = self._observe(config, key, summary)
            seen = self.monitor.frames(key)
        if seen:
            self._child(self.frames, key).set(seen)
        self._dirty = True
        self._gauges_due = self._gauges_due or checked

    def _observe(self, config: Any, key: str, summary: dict[str, Any]) -> bool:
        """Add one result (its drift summary); whether the gauges need an update (a check
        ran, a model was added)."""
        from ..monitor import find_reference

        if self.monitor is None:
            self._start(config)
        mon = self.monitor
        added = False
        if not mon.has_model(key) and key not in mon.unavailable:
            added = True
            search = [*dict(config.models).values(), *_champion_refs(config.state_dir)]
            ref, why = find_reference(summary["model"], search)
            mon.add_model(key, ref)
            if ref is None:
                log.warning(
                    f"drift monitoring unavailable for {key}: {why}",
                    extra={"event": "drift_unavailable", "model": key},
                )
            elif mon.restore(self._saved, key):
                log.info("drift windows restored", extra={"event": "drift_restored", "model": key})
        checks = mon.checks(key)
        for ev in mon.observe(key, summary["signals"], summary.get("outcome")):
            if ev["event"] == "drift_alarm":
                self.alarms.labels(model=key, signal=ev["signal"]).inc()
        return added or mon.checks(key) != checks

    def save(self, force: bool = False) -> None:
        """Write the windows to the state folder (at most every few seconds unless
        ``force``); a failed write is retried at the next call."""
        if self.monitor is None or not self._dirty:
            return
        now = time.monotonic()
        if not force and now < self._next_save:
            return
        from .._durable import atomic_write

        self._next_save = now + _DRIFT_SAVE_SECONDS
        with self._lock:
            doc = self.monitor.state()
            for key, saved in dict(self._saved.get("models") or {}).items():
                doc["models"].setdefault(key, saved)  # models not seen since the start
            data = json.dumps(doc).encode()
        try:
            atomic_write(self._state_path, data)
        except OSError as exc:
            log.warning(
                "the drift windows could not be saved",
                extra={"event": "drift_save_failed", "errno": exc.errno},
            )
            return
        self._dirty = False

    def section(self) -> dict[str, Any]:
        """The ``/healthz`` section ``drift``."""
        if not self.enabled:
            return {"enabled": False}
        if self.monitor is None:
            return {"enabled": True, "models": {}}
        with self._lock:
            return {"enabled": True, **self.monitor.status()}

    def update_gauges(self) -> None:
        """Set the gauges after a check (a no-op otherwise: cheap to call every loop)."""
        if self.monitor is None or not self._gauges_due:
            return
        self._gauges_due = False
        with self._lock:
            status = self.monitor.status()["models"]
        for key, st in status.items():
            self._child(self.available, key).set(1 if st["available"] else 0)
            if not st["available"]:
                continue
            self._child(self.frames, key).set(st["frames"])
            for name, sig in st["signals"].items():
                self._child(self.alarm, key, name).set(1 if sig["alarm"] else 0)
                self._child(self.psi, key, name).set(sig["psi"])
                self._child(self.pvalue, key, name).set(sig["p"])

    def _child(self, gauge: Any, model: str, signal: str | None = None) -> Any:
        """The labelled child of a gauge, looked up once (``labels()`` costs microseconds)."""
        k = (id(gauge), model, signal)
        child = self._children.get(k)
        if child is None:
            kw = {"model": model} if signal is None else {"model": model, "signal": signal}
            child = self._children[k] = gauge.labels(**kw)
        return child


class HealthServer:
    """``/healthz`` (the ``health()`` document; 503 while stopping) and ``/metrics``
    (Prometheus) on ``host:port`` (the config allows loopback addresses only), served by
    a daemon thread; no access log."""

    def __init__(
        self, host: str, port: int, health: Callable[[], dict[str, Any]], metrics: Metrics
    ) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    body, ctype = metrics.render()
                    code = 200
                elif self.path in ("/healthz", "/health", "/"):
                    status = health()
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

        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class Server(ThreadingHTTPServer):
            address_family = family
            daemon_threads = True

        self.host = host
        self._server = Server((host, port), Handler)
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, name="http", daemon=True).start()
        log.info("health endpoint", extra={"event": "http", "host": host, "port": self.port})

    def close(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
