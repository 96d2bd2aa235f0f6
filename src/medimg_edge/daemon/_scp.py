"""The DICOM C-STORE SCP of the watch-folder daemon (pynetdicom): a modality sends its
images over the network and each received instance enters the same ledger-backed intake
as a file dropped into the inbox.

Order of a C-STORE (what makes ``kill -9`` at any moment safe):

1. refusals that need no data: intake paused (free disk below ``min_free_mb`` on the
   outbox's or the inbox's file system) -> ``0xA700`` *out of resources*;
2. the received data set is parsed (header and pixel-data structure, not the pixel
   codestream): not DICOM, no SOP Instance UID, no or short pixel data, broken
   encapsulation -> ``0xC0xx`` *cannot understand*; a data set of another SOP class than
   its presentation context -> ``0xA900`` *does not match SOP class*;
3. an instance whose SOP Instance UID was received before -> success without a second
   copy (a modality re-sending after a lost response gets one result, not two);
4. the encoded data set (DICOM file format, as sent) is written durably (temp + ``fsync``
   + rename + ``fsync`` of the folder) to ``INBOX/<dicom_folder>/<key>.dcm`` where
   ``<key>`` is the SHA-256 of the SOP Instance UID (never a patient identifier), then the
   key is committed to the ``scp_received`` table of the ledger database (``ENOSPC`` or a
   failed commit: the file is removed again and the answer is ``0xA700``);
5. only then the success response is sent.

A crash between 4 and 5: the file is in the inbox and is diagnosed once; the modality,
which saw no response, sends it again and step 3 answers success.  A crash between the
rename and the commit of step 4: :meth:`Receiver.recover` (at start, before the first
scan) records the key of every ``<key>.dcm`` found in the folder.

SOP classes not served are refused at association negotiation (their presentation
contexts are rejected with "abstract syntax not supported"; an association with none
accepted is aborted, by the peer or by the listener), so ``0x0122`` is never needed.  A
calling AE title outside ``allow_ae`` (when set) or a called AE title other than
``ae_title`` rejects the association.  The pixel codestream itself is decoded by the
worker: a JPEG that does not decode is acknowledged and then quarantined in ``failed/``
with its reason, like a file.
"""

from __future__ import annotations

import errno
import hashlib
import io
import logging
import os
import queue
import re
import shutil
import sqlite3
import ssl
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._durable import atomic_write, clean_temp_files, ensure_dir, fsync_dir
from ._config import Config
from ._observe import Metrics

__all__ = [
    "SERVED_SOP_CLASSES",
    "TRANSFER_SYNTAXES",
    "Receiver",
    "check_ae_title",
    "received_key",
]

log = logging.getLogger("medimg_edge.daemon")

#: Storage SOP classes the listener accepts (UID -> name).
SERVED_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.6.1": "Ultrasound Image Storage",
    "1.2.840.10008.5.1.4.1.1.3.1": "Ultrasound Multi-frame Image Storage",
    "1.2.840.10008.5.1.4.1.1.6": "Ultrasound Image Storage (Retired)",
    "1.2.840.10008.5.1.4.1.1.3": "Ultrasound Multi-frame Image Storage (Retired)",
    "1.2.840.10008.5.1.4.1.1.1": "Computed Radiography Image Storage",
    "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "Digital X-Ray Image Storage - For Processing",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.1": "Multi-frame Single Bit Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.3": "Multi-frame Grayscale Word Secondary Capture Image Storage",
    "1.2.840.10008.5.1.4.1.1.7.4": "Multi-frame True Color Secondary Capture Image Storage",
}

#: Transfer syntaxes accepted for every served SOP class (UID -> name); the readers
#: decode all of them (pylibjpeg plugins, pydicom's RLE decoder).
TRANSFER_SYNTAXES: dict[str, str] = {
    "1.2.840.10008.1.2.1": "Explicit VR Little Endian",
    "1.2.840.10008.1.2": "Implicit VR Little Endian",
    "1.2.840.10008.1.2.1.99": "Deflated Explicit VR Little Endian",
    "1.2.840.10008.1.2.2": "Explicit VR Big Endian",
    "1.2.840.10008.1.2.4.50": "JPEG Baseline (Process 1)",
    "1.2.840.10008.1.2.4.51": "JPEG Extended (Process 2 and 4)",
    "1.2.840.10008.1.2.4.57": "JPEG Lossless (Process 14)",
    "1.2.840.10008.1.2.4.70": "JPEG Lossless (Process 14, Selection Value 1)",
    "1.2.840.10008.1.2.4.80": "JPEG-LS Lossless",
    "1.2.840.10008.1.2.4.81": "JPEG-LS Near-Lossless",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 (Lossless Only)",
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
    "1.2.840.10008.1.2.5": "RLE Lossless",
}
_NATIVE = {
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.2",
}

# DIMSE statuses (PS3.4 Annex B.2.3 for the Storage Service Class, PS3.7 Annex C)
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000  # 0xC000-0xC0FF: which check failed
PROCESSING_FAILURE = 0x0110

_SCHEMA = "CREATE TABLE IF NOT EXISTS scp_received (key TEXT PRIMARY KEY, received REAL NOT NULL)"
_KEY_NAME = re.compile(r"^[0-9a-f]{64}\.dcm$")
# AE titles: 1-16 characters of the Default Character Repertoire without backslash or
# control characters, not only spaces (PS3.5 Table 6.2-1, VR AE)
_AE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")


def check_ae_title(value: object, key: str) -> str:
    """``value`` as an AE title (leading / trailing spaces removed), or ``ValueError``
    naming ``key``."""
    if not isinstance(value, str) or not _AE.match(value) or not value.strip():
        raise ValueError(
            f"config key {key!r}: an AE title is 1-16 ASCII characters without "
            f"backslash, not only spaces, got {value!r}"
        )
    return value.strip()


def received_key(sop_instance_uid: str) -> str:
    """The name stem of a received instance: SHA-256 (hex) of its SOP Instance UID (the
    same hash as the results' ``instance_key``)."""
    return hashlib.sha256(sop_instance_uid.encode("ascii", "replace")).hexdigest()


class _Refused(Exception):
    def __init__(self, status: int, comment: str) -> None:
        super().__init__(comment)
        self.status = status
        self.comment = comment


def _check_dataset(data: bytes, abstract_syntax: str) -> str:
    """Parse the received file (header and pixel-data structure); return its SOP
    Instance UID, or raise :class:`_Refused`."""
    import pydicom
    from pydicom.encaps import generate_fragments

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's warnings quote tag values
        try:
            ds = pydicom.dcmread(io.BytesIO(data))
            for _ in ds:  # parse every top-level element now (values stay raw)
                pass
            sop_class = str(ds.get("SOPClassUID", ""))
            uid = str(ds.get("SOPInstanceUID", ""))
            tsuid = str(ds.file_meta.get("TransferSyntaxUID", ""))
            has_pixels = "PixelData" in ds
            rows, cols = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
            frames = int(ds.get("NumberOfFrames") or 1)
            spp = int(ds.get("SamplesPerPixel") or 1)
            bits = int(ds.get("BitsAllocated") or 0)
            pixels = ds.PixelData if has_pixels else b""
        except Exception:  # anything pydicom cannot parse: the peer's data is broken
            raise _Refused(CANNOT_UNDERSTAND, "the data set cannot be parsed") from None
        if not uid:
            raise _Refused(CANNOT_UNDERSTAND + 1, "no SOP Instance UID")
        if sop_class != abstract_syntax:
            raise _Refused(DOES_NOT_MATCH, "SOP Class UID differs from the presentation context")
        if not has_pixels or rows <= 0 or cols <= 0 or frames <= 0 or bits <= 0:
            raise _Refused(CANNOT_UNDERSTAND + 2, "no pixel data or no image size")
        if tsuid in _NATIVE:
            need = (rows * cols * frames * spp * bits + 7) // 8
            if len(pixels) < need:
                raise _Refused(CANNOT_UNDERSTAND + 3, "pixel data shorter than declared")
        else:
            try:
                n = sum(1 for _ in generate_fragments(pixels))
            except Exception:
                n = 0
            if n == 0:
                raise _Refused(CANNOT_UNDERSTAND + 4, "encapsulated pixel data is malformed")
    return uid


class Receiver:
    """The C-STORE SCP: binds ``dicom_host:dicom_port`` (pynetdicom's threaded server,
    one thread per association) and writes each accepted instance into the inbox.

    Parameters
    ----------
    config : Config
        ``ae_title``, ``allow_ae``, ``dicom_host``, ``dicom_port``, ``dicom_folder``,
        ``tls_cert`` / ``tls_key`` / ``tls_ca``, ``min_free_mb``, the inbox and outbox.
    db_path : Path
        The ledger database (the ``scp_received`` table lives there).
    paused : callable
        True while the daemon's intake is paused (free-space guard).
    hint : callable
        Called after each received instance (wakes the scanner).
    metrics : Metrics
    """

    def __init__(
        self,
        config: Config,
        db_path: Path,
        paused: Callable[[], bool],
        hint: Callable[[], None],
        metrics: Metrics,
    ) -> None:
        self.config = config
        self.folder = config.inbox / config.dicom_folder
        self._paused = paused
        self._hint = hint
        self._metrics = metrics
        # one connection per concurrent association (pynetdicom: a thread each); the
        # same key is handled by one thread at a time (striped locks)
        self._db_path = db_path
        self._pool: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all: list[sqlite3.Connection] = []
        self._pool_lock = threading.Lock()
        self._stripes = [threading.Lock() for _ in range(64)]
        self._put(self._connect())
        self._server: Any = None
        self._ae: Any = None
        self.port: int | None = None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self._db_path, isolation_level=None, timeout=30.0, check_same_thread=False
        )
        # NORMAL (no fsync per commit) is enough in WAL mode: a record can only be lost to
        # a power cut together with every later WAL frame, so either its file is still in
        # the inbox (recover() records it again) or the ledger commit that finished that
        # file (synchronous=FULL, later in the same WAL) is lost too and it is processed
        # again from the inbox.
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(_SCHEMA)
        with self._pool_lock:
            self._all.append(db)
        return db

    def _get(self) -> sqlite3.Connection:
        try:
            return self._pool.get_nowait()
        except queue.Empty:
            return self._connect()

    def _put(self, db: sqlite3.Connection) -> None:
        self._pool.put(db)

    # -- start / stop ----------------------------------------------------------------------
    def recover(self) -> int:
        """Create the folder, remove temporary files a crash left in it and record the key
        of every received file found (a crash between rename and commit); returns how many
        keys were added."""
        ensure_dir(self.folder)
        clean_temp_files(self.folder)
        names = [e.name for e in os.scandir(self.folder) if _KEY_NAME.match(e.name)]
        db = self._get()
        try:
            db.execute("BEGIN IMMEDIATE")
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO scp_received (key, received) VALUES (?, ?)",
                [(n[:64], time.time()) for n in names],
            )
            added = db.total_changes - before
            db.execute("COMMIT")
        finally:
            self._put(db)
        return added

    def _ssl_context(self) -> ssl.SSLContext | None:
        c = self.config
        if c.tls_cert is None:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(c.tls_cert), str(c.tls_key) if c.tls_key else None)
        if c.tls_ca is not None:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(str(c.tls_ca))
        return ctx

    def start(self) -> int:
        """Bind and serve (non-blocking); returns the port."""
        from pynetdicom import AE, evt

        c = self.config
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)
        ae = AE(ae_title=c.ae_title)
        ae.maximum_pdu_size = 1 << 20
        ae.network_timeout = 60
        ae.acse_timeout = 30
        ae.dimse_timeout = 60
        ae.maximum_associations = 16
        ae.require_called_aet = True
        if c.allow_ae:
            ae.require_calling_aet = list(c.allow_ae)
        for sop_class in SERVED_SOP_CLASSES:
            ae.add_supported_context(sop_class, list(TRANSFER_SYNTAXES))
        handlers: list[Any] = [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_ESTABLISHED, self._on_established),
        ]
        self._ae = ae
        self._server = ae.start_server(
            (c.dicom_host, c.dicom_port or 0),
            block=False,
            ssl_context=self._ssl_context(),
            evt_handlers=handlers,
        )
        self.port = int(self._server.server_address[1])
        if not c.allow_ae and c.dicom_host not in ("127.0.0.1", "::1"):
            log.warning(
                "the DICOM listener accepts any calling AE title on a non-loopback address "
                "(set allow_ae)",
                extra={"event": "dicom_open"},
            )
        log.info(
            "DICOM listener",
            extra={
                "event": "dicom_listen",
                "host": c.dicom_host,
                "port": self.port,
                "ae_title": c.ae_title,
                "tls": c.tls_cert is not None,
            },
        )
        return self.port

    def close(self) -> None:
        """Stop accepting, abort open associations (their unanswered instances are sent
        again by the peer), close the database connection."""
        if self._ae is not None:
            self._ae.shutdown()  # aborts the open associations, stops the server
            self._ae = self._server = None
        with self._pool_lock:
            for db in self._all:
                db.close()
            self._all.clear()

    # -- events ----------------------------------------------------------------------------
    def _on_established(self, event: Any) -> None:
        if not event.assoc.accepted_contexts:  # only SOP classes we do not serve
            log.info(
                "association without a served SOP class: aborted",
                extra={"event": "dicom_no_context", "calling_ae": event.assoc.requestor.ae_title},
            )
            event.assoc.abort()
            return
        log.info(
            "association",
            extra={
                "event": "dicom_association",
                "calling_ae": event.assoc.requestor.ae_title,
                "contexts": len(event.assoc.accepted_contexts),
            },
        )

    def _low_disk(self) -> bool:
        min_free = self.config.min_free_mb * (1 << 20)
        try:
            return shutil.disk_usage(self.folder).free < min_free
        except OSError:
            return True

    def _on_store(self, event: Any) -> Any:
        try:
            status = self._store(event)
            comment = ""
        except _Refused as r:
            status, comment = r.status, r.comment
        except Exception as exc:  # never let a handler raise into pynetdicom
            status, comment = PROCESSING_FAILURE, f"internal error ({type(exc).__name__})"
        if status != SUCCESS:
            self._metrics.dicom_refused.labels(status=f"0x{status:04X}").inc()
            log.warning(
                "C-STORE refused",
                extra={"event": "dicom_refused", "status": f"0x{status:04X}", "reason": comment},
            )
        from pydicom.dataset import Dataset

        rsp = Dataset()
        rsp.Status = status
        if comment:
            rsp.ErrorComment = comment[:64]
        return rsp

    def _write(self, db: sqlite3.Connection, key: str, path: Path, data: bytes) -> bool:
        """Write and record one instance; False when its key was received before."""
        if db.execute("SELECT 1 FROM scp_received WHERE key = ?", (key,)).fetchone():
            if path.exists() or not self._vanished(db, key):
                log.info(
                    "duplicate instance acknowledged",
                    extra={"event": "dicom_duplicate", "key": key[:16]},
                )
                return False
            # received before, but its file left the inbox unprocessed (deleted): again
            db.execute("DELETE FROM scp_received WHERE key = ?", (key,))
        try:
            atomic_write(path, data)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise _Refused(OUT_OF_RESOURCES, "no space left for the instance") from None
            msg = f"cannot write the instance ({exc.strerror})"
            raise _Refused(PROCESSING_FAILURE, msg) from None
        try:
            db.execute("INSERT INTO scp_received (key, received) VALUES (?, ?)", (key, time.time()))
        except sqlite3.Error:
            path.unlink(missing_ok=True)
            fsync_dir(self.folder, best_effort=True)
            raise _Refused(OUT_OF_RESOURCES, "cannot record the instance (ledger)") from None
        return True

    def _vanished(self, db: sqlite3.Connection, key: str) -> bool:
        """Whether the received file of ``key`` left the inbox without being processed:
        the ledger's newest row for it is ``gone``, or there is none (a file is in the
        inbox until its row is finished).  Only asked for re-sent instances."""
        row = db.execute(
            "SELECT state FROM files WHERE path = ? ORDER BY rowid DESC LIMIT 1",
            (f"{self.config.dicom_folder}/{key}.dcm",),
        ).fetchone()
        return row is None or row[0] == "gone"

    def _store(self, event: Any) -> int:
        if self._paused() or self._low_disk():
            raise _Refused(OUT_OF_RESOURCES, "intake paused: free disk below min_free_mb")
        data = event.encoded_dataset(include_meta=True)
        uid = _check_dataset(data, str(event.context.abstract_syntax))
        key = received_key(uid)
        path = self.folder / f"{key}.dcm"
        db = self._get()
        try:
            with self._stripes[int(key[:4], 16) % len(self._stripes)]:
                if not self._write(db, key, path, data):
                    return SUCCESS
        finally:
            self._put(db)
        self._metrics.dicom_received.inc()
        log.info("received", extra={"event": "dicom_received", "key": key[:16]})
        self._hint()
        return SUCCESS
