"""What runs on a worker: one chunk of files -> one Arrow record batch.

Each worker process keeps one :class:`~medimg_edge.Diagnoser` per (modality, model
sha256, quality gate) in a process-wide cache: it is built the first time a file needs it
and reused for every later file, task and run (a warm pool builds it once, whatever the
salt or run number of each run).  The same functions run in the driver for
``scheduler="serial"``, in the local process pool and on Dask workers.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import io
from .._errors import InvalidInputError, MedimgEdgeError
from .._version import __version__
from ._config import BatchConfig
from ._schema import feature_column, schema

if TYPE_CHECKING:
    import pyarrow as pa

    from ..diagnosis import Diagnoser, Diagnosis

__all__ = [
    "Item",
    "base_row",
    "diagnosers_built",
    "init_process",
    "process_chunk",
    "remote_chunk",
    "salted_hash",
    "to_batch",
]

_STAGE_CODES = {
    "read": "unreadable_image",
    "quality": "quality_failed",
    "features": "features_failed",
    "diagnosis": "diagnosis_failed",
}
#: Bytes of a file's head that :func:`medimg_edge.io._kind` needs (DICOM: "DICM" at 128).
_HEAD = 132


@dataclass(frozen=True)
class Item:
    """One file of a task.

    ``expected_sha256`` is the content hash of an earlier successful row for this file
    with the same config id: the file is skipped when its content still has that hash.
    """

    source_id: str
    path: str
    modality: str | None = None
    expected_sha256: str | None = None


def salted_hash(salt: bytes, kind: str, value: str) -> str:
    """HMAC-SHA256 (hex) of ``"<kind>:<value>"`` keyed with ``salt``."""
    msg = f"{kind}:{value}".encode("utf-8", "surrogatepass")
    return hmac.new(salt, msg, hashlib.sha256).hexdigest()


def base_row(config: BatchConfig, item: Item) -> dict[str, Any]:
    """The columns every row of ``item`` has, success or failure: ids, package version,
    config id, ``what``, run (and ``path`` with ``keep_ids``)."""
    row: dict[str, Any] = {
        "source_id": item.source_id,
        "package_version": __version__,
        "config_id": config.config_id,
        "what": ",".join(config.what),
        "run": config.run,
    }
    if config.keep_ids:
        row["path"] = item.path
    return row


#: (modality, model sha256, quality gate) -> Diagnoser, for the life of the process.
_DIAGNOSERS: dict[tuple[str, str, bool], Diagnoser] = {}
_DIAGNOSERS_LOCK = threading.Lock()
_BUILT = 0
_INITIALISED = False


def diagnosers_built() -> int:
    """How many Diagnosers this process has built (tests check there is one per
    worker and modality, whatever the number of tasks and runs)."""
    return _BUILT


def _diagnoser(config: BatchConfig, modality: str) -> Diagnoser:
    """The process's Diagnoser for ``modality`` and the config's model and quality gate,
    built on first use; its model must have the sha256 the driver resolved."""
    global _BUILT
    ref = config.model_for(modality)
    if ref is None:
        raise InvalidInputError(
            f"no model for {modality} frames in this run (--model is for another modality)",
            code="no_model",
        )
    key = (modality, ref.sha256, config.quality_gate)
    with _DIAGNOSERS_LOCK:
        d = _DIAGNOSERS.get(key)
        if d is None:
            from ..diagnosis import Diagnoser

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                d = Diagnoser(
                    ref.ref,
                    modality,
                    delegate="cpu",
                    num_threads=1,
                    quality_gate=config.quality_gate,
                )
            if d.model.info["sha256"] != ref.sha256:
                raise InvalidInputError(
                    f"model {ref.name} on this worker differs from the driver's (sha256 "
                    "mismatch): install the same medimg-edge and models everywhere",
                    code="model_mismatch",
                )
            _DIAGNOSERS[key] = d
            _BUILT += 1
        return d


def init_process() -> None:
    """Worker-process set-up: one OpenCV thread (the pool runs one process per core)."""
    global _INITIALISED
    if _INITIALISED:
        return
    import cv2

    cv2.setNumThreads(1)
    _INITIALISED = True


class _NotRegular(OSError):
    """The path is a FIFO, socket, device or directory: never read (it could block)."""


def _hash_file(path: str) -> tuple[str, int, str | None]:
    """(sha256 of the content, size, format from :func:`medimg_edge.io._kind`).

    Opened without blocking and checked with ``fstat`` before any read, so a FIFO or a
    device in an archive is refused (:class:`_NotRegular`) instead of hanging the run.
    Empty files are hashed too.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _NotRegular("not a regular file")
        os.set_blocking(fd, True)
        fh = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with fh:
        head = fh.read(_HEAD)
        digest = io._sha256_of(fh)
    return digest, int(st.st_size), io._kind(Path(path), head)


def _load(
    path: str, keep_ids: bool
) -> tuple[np.ndarray[Any, Any], str | None, str | None, int, tuple[str, ...]]:
    """(first frame, modality from the DICOM tag, SOP Instance UID, number of frames,
    reader flags) by :func:`medimg_edge.io.read_input` (only the first frame of a cine
    is decoded).  Without ``keep_ids`` its messages name the file ``<file>``."""
    inp = io.read_input(
        path, label=None if keep_ids else "<file>", cine_frames=1, content_hash=False
    )  # hashed already by _hash_file (before reading, for resume)
    uid = None
    if inp.dataset is not None:
        uid = str(inp.dataset.get("SOPInstanceUID", "") or "").strip() or None
    return np.asarray(inp.frames[0]), inp.modality, uid, inp.n_frames, tuple(inp.flags)


def _process(config: BatchConfig, item: Item) -> dict[str, Any] | None:
    cfg = config
    t0 = time.perf_counter()
    row = base_row(cfg, item)
    stage = "read"
    try:
        digest, size, fmt = _hash_file(item.path)
        row.update(content_sha256=digest, file_size=size, format=fmt)
        if item.expected_sha256 is not None and item.expected_sha256 == digest:
            return None
        image, dicom_modality, uid, n_frames, flags = _load(item.path, cfg.keep_ids)
        if uid is not None:
            row["instance_id"] = salted_hash(cfg.salt, "uid", uid)
            if cfg.keep_ids:
                row["sop_instance_uid"] = uid
        row.update(
            height=int(image.shape[0]),
            width=int(image.shape[1]),
            dtype=str(image.dtype),
            n_frames=n_frames,
            read_flags=list(flags),
        )
        modality, source = cfg.modality, "option"
        if modality is None:
            modality, source = item.modality, "manifest"
        if modality is None:
            modality, source = dicom_modality, "dicom"
        if modality is not None:
            row.update(modality=modality, modality_source=source)
        # With both quality and diagnosis, the Diagnosis's own quality report (the same
        # measures of the same frame) fills the quality columns.  A diagnosis that fails
        # is raised at its own stage, after quality and features, as before.
        diag: Diagnosis | None = None
        diag_error: Exception | None = None
        if "quality" in cfg.what and "diagnosis" in cfg.what and modality is not None:
            try:
                diag = _diagnoser(cfg, modality).diagnose(image)
            except Exception as exc:
                diag_error = exc
        if "quality" in cfg.what:
            stage = "quality"
            if diag is not None:
                rep = diag.quality
            else:
                from ..quality import assess

                rep = assess(image, modality=modality)
            row.update(
                quality_ok=rep.ok,
                quality_issues=list(rep.issues),
                quality_thresholds=rep.modality,
            )
            row.update({f"quality_{k}": float(v) for k, v in rep.measures.items()})
        if "features" in cfg.what:
            stage = "features"
            from ..features import extract

            feats = extract(image)
            row.update({feature_column(k): float(v) for k, v in feats.items()})
        if "diagnosis" in cfg.what:
            stage = "diagnosis"
            if modality is None:
                raise InvalidInputError(
                    "unknown modality: pass --modality, give the manifest a 'modality' "
                    "column, or use DICOM files with a Modality tag (US, CR, DX)",
                    code="unknown_modality",
                )
            if diag_error is not None:
                raise diag_error
            d = diag if diag is not None else _diagnoser(cfg, modality).diagnose(image)
            row.update(
                diag_status=d.status,
                diag_label=d.label,
                diag_confidence=d.confidence,
                diag_positive_score=d.positive_score,
                diag_scores=dict(d.scores),
                diag_reasons=list(d.reasons),
                model_name=d.model["name"],
                model_version=d.model["version"],
                model_sha256=d.model["sha256"],
            )
    except FileNotFoundError:
        row.update(error_code="no_such_file", error_message="no such file")
    except _NotRegular:
        row.update(
            error_code="unreadable",
            error_message="not a regular file (FIFO, socket, device or folder): not read",
        )
    except OSError as exc:
        row.update(
            error_code="unreadable", error_message=f"cannot read the file ({type(exc).__name__})"
        )
    except InvalidInputError as exc:
        # The reader names the file "<file>" (read_input's label) and the later stages
        # never see the path, so messages carry no file name.
        code = exc.code if exc.code != "invalid_input" else _STAGE_CODES[stage]
        row.update(error_code=code, error_message=str(exc))
    except MedimgEdgeError as exc:
        row.update(error_code="model_error", error_message=str(exc))
    except Exception as exc:  # a bug or a library failure: keep going, say what type
        row.update(
            error_code="internal_error",
            error_message=f"{stage}: unexpected {type(exc).__name__}",
        )
    row["elapsed_ms"] = (time.perf_counter() - t0) * 1e3
    return row


def to_batch(rows: Sequence[dict[str, Any]]) -> pa.RecordBatch:
    """Rows (dicts; missing keys are null) -> a record batch with :func:`schema`.

    Built column by column: ten times faster than ``RecordBatch.from_pylist`` on this
    wide, sparse schema (it matters at a few ms per file)."""
    import pyarrow as pa

    sch = schema()
    n = len(rows)
    arrays = []
    for f in sch:
        values = [r.get(f.name) for r in rows]
        if all(v is None for v in values):
            arrays.append(pa.nulls(n, f.type))
        else:
            arrays.append(pa.array(values, type=f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=sch)


def process_chunk(config: BatchConfig, items: Sequence[Item]) -> tuple[pa.RecordBatch, int]:
    """Process ``items`` in order: (record batch of the rows, number skipped as done)."""
    rows: list[dict[str, Any]] = []
    skipped = 0
    for item in items:
        row = _process(config, item)
        if row is None:
            skipped += 1
        else:
            rows.append(row)
    return to_batch(rows), skipped


def remote_chunk(config: BatchConfig, items: Sequence[Item]) -> tuple[pa.RecordBatch, int]:
    """:func:`process_chunk` in a pool or Dask worker process: the process's set-up
    (:func:`init_process`, once per process) comes first."""
    init_process()
    return process_chunk(config, items)
