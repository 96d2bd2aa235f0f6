"""Worker subprocesses: reading and diagnosing one input at a time, bounded in memory,
CPU time and wall-clock time.

A worker is ``python -m medimg_edge.daemon._worker``.  It applies ``RLIMIT_AS`` (address
space) once at start and, before each file, ``RLIMIT_CPU`` = CPU used so far + the per-file
budget (the kernel kills it with ``SIGXCPU`` past that); the parent enforces the wall-clock
timeout by killing it (``SIGKILL``) and starting a new one.  A worker builds one
:class:`~medimg_edge.Diagnoser` per modality, once, and reuses it for every file.

With a **shadow** candidate (``settings["shadow"]``, modality -> model) the worker runs a
second :class:`~medimg_edge.triage.Triage` on the frames the champion diagnosed; only the
champion's result becomes outputs; both answers (model name, version, sha256, status,
label, positive score) go back in the reply header's ``models`` list, which the daemon
records in the ledger's ``model_results`` table (``_models.py``).  The ready message names
the models loaded (``loaded``: role -> modality -> name, version, sha256): the daemon
checks them against the ones it asked for before it hands the worker any file.

Protocol (private): the parent writes one JSON object per line on the worker's stdin (the
first one the settings, then one per job, with the file's ``signature`` when it was taken:
a file whose signature differs, or changes while it is read, is answered ``changed``); the
worker answers each with a 4-byte big-endian length, a JSON header and the blobs (output
file contents) the header lists.  The worker's
own stdout is moved to its stderr, and its stderr goes to ``/dev/null``: library warnings
(pydicom quotes tag values) must never reach the daemon's logs.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import signal
import stat
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .._errors import InvalidInputError
from .._modality import Modality, check_modality

__all__ = ["WorkerDied", "WorkerProcess", "WorkerReply"]

_HEADER = struct.Struct(">I")
_MAX_HEADER = 1 << 24


# ---- the worker process ------------------------------------------------------------------


def _monitor() -> Any:
    """:mod:`medimg_edge.monitor`, imported at the first finding."""
    return importlib.import_module("medimg_edge.monitor")


def _send(out: IO[bytes], header: dict[str, Any], blobs: dict[str, bytes] | None = None) -> None:
    blobs = blobs or {}
    header = {**header, "blobs": [[k, len(v)] for k, v in blobs.items()]}
    raw = json.dumps(header).encode()
    out.write(_HEADER.pack(len(raw)) + raw + b"".join(blobs.values()))
    out.flush()


class _Work:
    def __init__(self, settings: dict[str, Any]) -> None:
        from ..triage import Triage

        self.settings = settings
        self.inbox = Path(settings["inbox"])
        common: dict[str, Any] = {
            "delegate": "cpu" if settings.get("cpu_only") else "auto",
            "num_threads": 1,
            "quality_gate": settings["quality_gate"],
            "cine_frames": settings["cine_frames"],
            "max_bytes": settings["max_file_mb"] * (1 << 20),
            "override_dicom_modality": bool(settings.get("override_dicom_modality")),
        }
        self.triage = Triage(models=settings["models"], **common)
        # The shadow candidate (``_models.py``): its own Triage on the same frames; its
        # answers go back in the reply header only, never into an output.
        shadow = dict(settings.get("shadow") or {})
        self.shadow = Triage(models=shadow, reference_fallback=False, **common) if shadow else None

    def diagnoser(self, modality: Modality) -> Any:
        return self.triage.diagnoser(modality)

    def preload(self, modalities: list[Modality]) -> dict[str, Any]:
        """Load (and verify: size, sha256, flatbuffer) the champion and the shadow of each
        modality; returns what was loaded (name, version, sha256 per role and modality)."""
        loaded: dict[str, dict[str, Any]] = {"champion": {}, "shadow": {}}
        for modality in modalities:
            loaded["champion"][modality] = _model_id(self.diagnoser(modality))
        if self.shadow is not None:
            for served in self.shadow.models:
                loaded["shadow"][served] = _model_id(self.shadow.diagnoser(check_modality(served)))
        return loaded

    def shadow_summary(self, got: Any) -> dict[str, Any] | None:
        """The shadow's answer on the frames the champion diagnosed (None when no shadow
        serves that modality); an error of the candidate is recorded as status ``error``
        and never touches the champion's result."""
        from . import _models

        if self.shadow is None or got.modality not in self.shadow.models:
            return None
        try:
            sg = self.shadow.run(got.input, modality=(got.modality, got.modality_source))
        except Exception as exc:  # the type only: the text may quote data
            out = _models.result_summary("shadow", got.modality, {"status": "error"})
            out["label"] = type(exc).__name__
            with contextlib.suppress(Exception):
                out.update(_model_id(self.shadow.diagnoser(got.modality)))
            return out
        return _models.result_summary("shadow", got.modality, _brief(sg.result))

    def run(self, job: dict[str, Any]) -> tuple[dict[str, Any], dict[str, bytes]]:
        import cv2
        import numpy as np

        from .._overlay import render_overlay

        label = job["id"]
        path = self.inbox / job["path"]
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return {"ok": False, "code": "vanished", "message": "the file disappeared"}, {}
        if stat.S_ISLNK(st.st_mode):
            raise InvalidInputError(f"{label}: symbolic link (not followed)", code="symlink")
        if not stat.S_ISREG(st.st_mode):
            raise InvalidInputError(f"{label}: not a regular file", code="unreadable")
        if st.st_size == 0:
            raise InvalidInputError(f"{label}: empty file", code="empty")
        if st.st_size > self.settings["max_file_mb"] * (1 << 20):
            raise InvalidInputError(
                f"{label}: file of {st.st_size} bytes is beyond max_file_mb", code="too_large"
            )
        real = os.path.realpath(path)
        if not real.startswith(str(self.inbox) + os.sep):
            raise InvalidInputError(f"{label}: resolves outside the inbox", code="outside_inbox")
        # The folder rule or the configured default: for what the header leaves open.
        requested = job.get("modality")
        img = self.triage.read(path, label=label)
        got = self.triage.run(img, requested=requested, source="config", name=label)
        agg = got.result
        doc: dict[str, Any] = got.to_dict()
        doc["id"] = label
        frame_index = got.clip.frame_index
        blobs: dict[str, bytes] = {}
        overlay_bgr = None
        if job["overlay"] or (job["sc"] and img.kind == "dicom"):
            note = f"frame {frame_index + 1} of {img.n_frames}" if img.n_frames > 1 else None
            overlay_bgr = render_overlay(got.frame, agg, frame_note=note)
            if job["overlay"]:
                ok, png = cv2.imencode(".png", overlay_bgr)
                if not ok:
                    raise RuntimeError("PNG encoding failed")
                blobs["overlay.png"] = png.tobytes()
        skipped: dict[str, str] = {}
        if job["sr"] or job["sc"]:
            if img.kind != "dicom" or img.dataset is None:
                why = "the input is not DICOM (a DICOM output must reference a source study)"
                for what in ("sr", "sc"):
                    if job[what]:
                        skipped[what] = why
            else:
                _dicom = importlib.import_module(f"{__package__}._dicom")

                if job["sr"]:
                    blobs["sr.dcm"] = bytes(
                        _dicom.encode_sr(
                            agg,
                            img.dataset,
                            deidentify=job["deidentify"],
                            frame_index=frame_index if img.n_frames > 1 else None,
                            series_number=job.get("sr_series_number", _dicom.SR_SERIES_NUMBER),
                            negative_label=self.diagnoser(
                                got.modality
                            ).model.package.negative_label,
                        )
                    )
                if job["sc"] and overlay_bgr is not None:
                    rgb = np.ascontiguousarray(cv2.cvtColor(overlay_bgr, cv2.COLOR_BGR2RGB))
                    blobs["sc.dcm"] = bytes(
                        _dicom.encode_secondary_capture(
                            rgb,
                            agg,
                            img.dataset,
                            deidentify=job["deidentify"],
                            burned_in="burned_in_annotation" in img.flags,
                        )
                    )
        if skipped:
            doc["outputs_skipped"] = skipped
        if img.kind == "dicom" and img.dataset is not None:
            doc["source"] = _source_fields(img.dataset, bool(job["deidentify"]))
        doc["outputs"] = sorted([f"{label}.{k}" for k in blobs] + [f"{label}.json"])
        blobs["json"] = (json.dumps(doc, allow_nan=False) + "\n").encode()
        header: dict[str, Any] = {"ok": True, "sha256": img.sha256, "kind": img.kind}
        header.update(status=agg.status, label=agg.label)
        _models = importlib.import_module(f"{__package__}._models")
        records = [_models.result_summary("champion", got.modality, _brief(agg))]
        shadow = self.shadow_summary(got)
        if shadow is not None:
            records.append(shadow)
        header["models"] = records
        # the drift monitor's view of the finding, computed here so that the main process
        # adds it to its window without reading the result file back
        header["drift"] = _monitor().drift_summary(doc)
        return header, blobs


def _brief(result: Any) -> dict[str, Any]:
    """The fields of a Diagnosis the model records keep."""
    return {
        "model": result.model,
        "status": result.status,
        "label": result.label,
        "positive_score": result.positive_score,
    }


def _model_id(diagnoser: Any) -> dict[str, Any]:
    info = diagnoser.model.info
    return {"name": info["name"], "version": info["version"], "sha256": info["sha256"]}


def _source_fields(ds: Any, deidentified: bool) -> dict[str, Any]:
    """What of the source header the JSON record carries for correlation: its SOP
    Instance / Class, Series and Study Instance UIDs and Accession Number, or only
    ``{"deidentified": true}`` with ``--deidentify``."""
    if deidentified:
        return {"deidentified": True}
    keys = {
        "sop_instance_uid": "SOPInstanceUID",
        "sop_class_uid": "SOPClassUID",
        "series_instance_uid": "SeriesInstanceUID",
        "study_instance_uid": "StudyInstanceUID",
        "accession_number": "AccessionNumber",
    }
    out: dict[str, Any] = {"deidentified": False}
    for name, keyword in keys.items():
        value = str(ds.get(keyword, "") or "").strip()
        out[name] = value or None
    return out


def _signature(path: Path) -> tuple[int, int, int, int] | None:
    """``(size, mtime_ns, dev, ino)`` of ``path`` itself, None when it is gone."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino)


def _cpu_used() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def worker_main() -> int:
    """Entry point of a worker subprocess (see the module docstring)."""
    import logging
    import math
    import resource
    import warnings

    proto = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints of libraries must not corrupt the protocol
    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    settings = json.loads(sys.stdin.readline())
    limit = int(settings["memory_limit_mb"]) << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import cv2

    cv2.setNumThreads(1)
    try:
        work = _Work(settings)
        loaded = work.preload(settings["preload"])
    except Exception as exc:  # a model problem: the daemon reports it and stops
        _send(proto, {"ready": False, "error": f"{type(exc).__name__}: {exc}"})
        return 1
    _send(proto, {"ready": True, "pid": os.getpid(), "loaded": loaded})
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    for line in sys.stdin:
        job = json.loads(line)
        soft = math.ceil(_cpu_used()) + int(job["cpu_seconds"])
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
        blobs: dict[str, bytes] = {}
        path = work.inbox / job["path"]
        before = _signature(path)
        try:
            reply, blobs = work.run(job)
        except InvalidInputError as exc:
            reply = {"ok": False, "code": exc.code, "message": str(exc), "permanent": True}
        except MemoryError:
            blobs = {}
            reply = {"ok": False, "code": "memory_limit", "message": "memory limit reached"}
        except OSError as exc:
            # strerror only: str(exc) would quote the path
            reply = {
                "ok": False,
                "code": "io_error",
                "message": f"{type(exc).__name__}: {exc.strerror or exc.errno}",
            }
        except Exception as exc:  # the type only: the text may quote data
            reply = {"ok": False, "code": "internal_error", "message": type(exc).__name__}
        expected = job.get("signature")
        changed = before != _signature(path) or (
            expected is not None and before is not None and list(before) != list(expected)
        )
        if changed and reply.get("code") != "vanished":
            # what was read is not the file that was taken, or it changed while read
            blobs = {}
            reply = {"ok": False, "code": "changed", "message": "the file changed while read"}
        _send(proto, reply, blobs)
    return 0


# ---- the parent's handle on one worker ---------------------------------------------------


class WorkerDied(Exception):
    """The worker died or was killed during a job; ``code`` says how."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class WorkerReply:
    header: dict[str, Any]
    blobs: dict[str, bytes]


class WorkerProcess:
    """One worker subprocess, (re)started on demand.

    Parameters
    ----------
    settings : dict
        Sent to the worker at start (inbox, models, limits, modalities to preload).
    """

    def __init__(self, settings: dict[str, Any], startup_timeout: float = 120.0) -> None:
        self.settings = settings
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.outstanding = 0  # jobs sent and not answered
        self.loaded: dict[str, Any] = {}  # the models the worker loaded (its ready message)

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def start(self) -> None:
        """Start the worker and wait until its models are loaded.

        Raises
        ------
        RuntimeError
            When the worker cannot load its models (the message says why).
        """
        self.spawn()
        self.wait_ready()

    def spawn(self) -> None:
        """Start the worker process (without waiting for it)."""
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)  # only the daemon talks to systemd
        env.setdefault("OMP_NUM_THREADS", "1")
        # NumPy's OpenBLAS pool spins idle threads in processes that never call BLAS
        # (measured: 1-6 % of a worker's samples); the worker needs none.
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "medimg_edge.daemon._worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a terminal's Ctrl-C reaches the daemon only
            env=env,
        )
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(self.settings).encode() + b"\n")
        self.proc.stdin.flush()

    def wait_ready(self) -> None:
        """Wait for the worker's ready message (see :meth:`start`)."""
        try:
            reply = self._read(time.monotonic() + self.startup_timeout)
        except WorkerDied as exc:
            self.kill()
            raise RuntimeError(f"the worker did not start ({exc})") from None
        if not reply.header.get("ready"):
            self.kill()
            raise RuntimeError(str(reply.header.get("error", "the worker did not start")))
        self.loaded = dict(reply.header.get("loaded") or {})

    def send(self, job: dict[str, Any]) -> None:
        """Queue ``job`` in the worker's input pipe (the worker takes jobs in order, so a
        caller may send the next job before the current reply, keeping the worker busy).

        A worker that is gone is restarted first, unless replies are still owed (the
        caller's :meth:`receive` then raises :class:`WorkerDied` and the caller sends the
        unanswered jobs again).

        Raises
        ------
        RuntimeError
            When a restarted worker cannot load its models.
        """
        if self.outstanding == 0 and (self.proc is None or self.proc.poll() is not None):
            if self.proc is not None:
                self._reap()
            self.start()
        self.outstanding += 1
        if self.proc is None or self.proc.stdin is None:
            return
        try:
            self.proc.stdin.write(json.dumps(job).encode() + b"\n")
            self.proc.stdin.flush()
        except OSError:
            pass  # the worker died: receive() reports it

    def receive(self, timeout: float) -> WorkerReply:
        """The reply to the oldest job sent, waiting at most ``timeout`` seconds.

        Raises
        ------
        WorkerDied
            ``timeout`` (killed after ``timeout`` s), ``cpu_limit`` or ``worker_crashed``;
            the worker is gone (every job sent to it is unanswered) and the next
            :meth:`send` starts a new one.
        """
        if self.proc is None:
            self.outstanding = 0
            raise WorkerDied("worker_crashed", "the worker was gone")
        try:
            reply = self._read(time.monotonic() + timeout)
        except WorkerDied:
            self.outstanding = 0
            raise
        self.outstanding -= 1
        return reply

    def _read_exact(self, n: int, deadline: float) -> bytes:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        parts: list[bytes] = []
        while n > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise WorkerDied("timeout", "killed after the time limit")
            ready, _, _ = select.select([fd], [], [], min(left, 1.0))
            if not ready:
                continue
            chunk = os.read(fd, min(n, 1 << 20))
            if not chunk:
                code = self._reap()
                raise WorkerDied(*_death(code))
            parts.append(chunk)
            n -= len(chunk)
        return b"".join(parts)

    def _read(self, deadline: float) -> WorkerReply:
        (size,) = _HEADER.unpack(self._read_exact(_HEADER.size, deadline))
        if size > _MAX_HEADER:
            self.kill()
            raise WorkerDied("worker_crashed", "protocol error")
        header = json.loads(self._read_exact(size, deadline))
        blobs = {str(k): self._read_exact(int(n), deadline) for k, n in header.pop("blobs")}
        return WorkerReply(header, blobs)

    def _reap(self) -> int | None:
        if self.proc is None:
            return None
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._close()
        return code

    def _close(self) -> None:
        if self.proc is not None:
            for f in (self.proc.stdin, self.proc.stdout):
                try:
                    if f is not None:
                        f.close()
                except OSError:
                    pass
            self.proc = None

    def kill(self) -> None:
        """SIGKILL the worker (if running) and reap it."""
        if self.proc is not None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
            self.proc.wait()
            self._close()

    def stop(self, timeout: float = 10.0) -> None:
        """Close the worker's stdin (it exits after its job) and reap it."""
        if self.proc is None:
            return
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=timeout)
        except (subprocess.TimeoutExpired, OSError):
            self.proc.kill()
            self.proc.wait()
        self._close()


def _death(code: int | None) -> tuple[str, str]:
    if code is not None and code < 0:
        sig = -code
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        if sig == signal.SIGXCPU:
            return "cpu_limit", "killed by the CPU time limit (SIGXCPU)"
        return "worker_crashed", f"the worker died from signal {name}"
    return "worker_crashed", f"the worker exited with status {code}"


if __name__ == "__main__":
    sys.exit(worker_main())
