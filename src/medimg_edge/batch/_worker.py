"""What runs on a worker: one chunk of files -> one Arrow record batch.

Each worker process keeps one :class:`_State` per configuration (module-level cache), and
the state builds one :class:`~medimg_edge.Diagnoser` per modality the first time it is
needed and reuses it for every later file and task.  The same functions run in the
driver for ``scheduler="serial"``, in the local process pool and on Dask workers.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._errors import InvalidInputError, MedimgEdgeError
from .._version import __version__
from ._config import BatchConfig
from ._schema import feature_column, schema

if TYPE_CHECKING:
    import pyarrow as pa

    from ..diagnosis import Diagnoser

__all__ = [
    "Item",
    "diagnosers_built",
    "init_process",
    "process_chunk",
    "remote_chunk",
    "salted_hash",
    "to_batch",
]

#: DICOM Modality (0008,0060) values read as each modality.
DICOM_MODALITIES = {
    "US": "ultrasound",
    "IVUS": "ultrasound",
    "CR": "xray",
    "DX": "xray",
    "RG": "xray",
    "DR": "xray",
}
_STAGE_CODES = {
    "read": "unreadable_image",
    "quality": "quality_failed",
    "features": "features_failed",
    "diagnosis": "diagnosis_failed",
}
_HASH_BLOCK = 1 << 20


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


class _State:
    """Per-process, per-configuration worker state: the Diagnosers, built once."""

    def __init__(self, config: BatchConfig) -> None:
        self.config = config
        self._diagnosers: dict[str, Diagnoser] = {}
        self._lock = threading.Lock()

    def diagnoser(self, modality: str) -> Diagnoser:
        global _BUILT
        with self._lock:
            d = self._diagnosers.get(modality)
            if d is None:
                ref = self.config.model_for(modality)
                if ref is None:
                    raise InvalidInputError(
                        f"no model for {modality} frames in this run (--model is for "
                        "another modality)",
                        code="no_model",
                    )
                from ..diagnosis import Diagnoser

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    d = Diagnoser(
                        ref.ref,
                        modality,
                        delegate="cpu",
                        num_threads=1,
                        quality_gate=self.config.quality_gate,
                    )
                if d.model.info["sha256"] != ref.sha256:
                    raise InvalidInputError(
                        f"model {ref.name} on this worker differs from the driver's (sha256 "
                        "mismatch): install the same medimg-edge and models everywhere",
                        code="model_mismatch",
                    )
                self._diagnosers[modality] = d
                _BUILT += 1
            return d


_STATES: dict[str, _State] = {}
_STATES_LOCK = threading.Lock()
_BUILT = 0
_INITIALISED = False


def diagnosers_built() -> int:
    """How many Diagnosers this process has built (tests check there is one per
    worker and modality, whatever the number of tasks)."""
    return _BUILT


def init_process() -> None:
    """Worker-process set-up: one OpenCV thread (the pool runs one process per core)."""
    global _INITIALISED
    if _INITIALISED:
        return
    import cv2

    cv2.setNumThreads(1)
    _INITIALISED = True


def _state(config: BatchConfig) -> _State:
    with _STATES_LOCK:
        st = _STATES.get(config.config_id)
        if st is None or st.config != config:
            if len(_STATES) >= 4:
                _STATES.pop(next(iter(_STATES)))
            st = _State(config)
            _STATES[config.config_id] = st
        return st


def _hash_file(path: str) -> tuple[str, int, bytes]:
    h = hashlib.sha256()
    size = 0
    head = b""
    with open(path, "rb") as fh:
        while True:
            block = fh.read(_HASH_BLOCK)
            if not block:
                break
            if not head:
                head = block[:132]
            size += len(block)
            h.update(block)
    return h.hexdigest(), size, head


def _format(head: bytes, path: str) -> str | None:
    if head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if os.path.splitext(path)[1].lower() in (".dcm", ".dicom"):
        return "dicom"
    return None


def _dicom_header(path: str) -> tuple[str | None, str | None]:
    """(Modality, SOP Instance UID) from the header, or Nones (never raises)."""
    try:
        import pydicom

        ds = pydicom.dcmread(
            path, stop_before_pixels=True, force=True, specific_tags=["Modality", "SOPInstanceUID"]
        )
        mod = str(ds.get("Modality", "") or "").strip().upper() or None
        uid = str(ds.get("SOPInstanceUID", "") or "").strip() or None
        return mod, uid
    except Exception:
        return None, None


def _load(
    path: str, fmt: str | None, keep_ids: bool
) -> tuple[np.ndarray[Any, Any], str | None, str | None, int, tuple[str, ...]]:
    """(first frame, modality from the DICOM tag, SOP Instance UID, number of frames,
    reader flags).

    Uses :func:`medimg_edge.io.read_input` when the installed package has it (only the
    first frame of a cine is decoded), else :func:`medimg_edge.io.read_image` plus the
    DICOM header read with pydicom.
    """
    from .. import io

    read_input = getattr(io, "read_input", None)
    if read_input is not None:
        label = None if keep_ids else "<file>"
        inp = read_input(path, label=label, cine_frames=1)
        frame = np.asarray(inp.frames[0])
        uid = None
        ds = inp.dataset
        if ds is not None:
            uid = str(ds.get("SOPInstanceUID", "") or "").strip() or None
        n = int(getattr(inp, "n_frames", 1) or 1)
        return frame, inp.modality, uid, n, tuple(inp.flags)
    frame = io.read_image(path)
    if fmt != "dicom":
        return frame, None, None, 1, ()
    tag, uid = _dicom_header(path)
    return frame, DICOM_MODALITIES.get(tag or ""), uid, 1, ()


def _clean(message: str, path: str, keep_ids: bool) -> str:
    """The message without the file's path or name (they may carry patient names)."""
    if keep_ids:
        return message
    name = os.path.basename(path)
    out = message.replace(path, "<file>")
    if name:
        out = out.replace(name, "<file>")
    return out


def _process(state: _State, item: Item) -> dict[str, Any] | None:
    cfg = state.config
    t0 = time.perf_counter()
    row: dict[str, Any] = {
        "source_id": item.source_id,
        "package_version": __version__,
        "config_id": cfg.config_id,
        "what": ",".join(cfg.what),
        "run": cfg.run,
    }
    if cfg.keep_ids:
        row["path"] = item.path
    stage = "read"
    try:
        digest, size, head = _hash_file(item.path)
        fmt = _format(head, item.path)
        row.update(content_sha256=digest, file_size=size, format=fmt)
        if item.expected_sha256 is not None and item.expected_sha256 == digest:
            return None
        image, dicom_modality, uid, n_frames, flags = _load(item.path, fmt, cfg.keep_ids)
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
        if "quality" in cfg.what:
            stage = "quality"
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
            d = state.diagnoser(modality).diagnose(image)
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
    except OSError as exc:
        row.update(
            error_code="unreadable", error_message=f"cannot read the file ({type(exc).__name__})"
        )
    except InvalidInputError as exc:
        code = exc.code if exc.code != "invalid_input" else _STAGE_CODES[stage]
        row.update(error_code=code, error_message=_clean(str(exc), item.path, cfg.keep_ids))
    except MedimgEdgeError as exc:
        row.update(
            error_code="model_error", error_message=_clean(str(exc), item.path, cfg.keep_ids)
        )
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
    state = _state(config)
    rows: list[dict[str, Any]] = []
    skipped = 0
    for item in items:
        row = _process(state, item)
        if row is None:
            skipped += 1
        else:
            rows.append(row)
    return to_batch(rows), skipped


def remote_chunk(config: BatchConfig, items: Sequence[Item]) -> tuple[pa.RecordBatch, int]:
    """:func:`process_chunk` in a pool or Dask worker process (one OpenCV thread)."""
    init_process()
    return process_chunk(config, items)
