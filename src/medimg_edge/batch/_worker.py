"""What runs on a worker: one chunk of files -> one Arrow record batch.

Every file goes through :class:`medimg_edge.triage.Triage` (the reader, the modality rule
and the clip rule every client shares); its Diagnosers come from the process-wide pool
(keyed by modality, model sha256 and settings): built the first time a file needs one and
reused for every later file, task and run (a warm pool builds it once, whatever the salt or
run number of each run).  The same functions run in the driver for ``scheduler="serial"``,
in the local process pool and on Dask workers.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import io
from .._errors import InvalidInputError, MedimgEdgeError
from .._modality import ModalitySource
from .._version import __version__
from ._config import BatchConfig
from ._schema import feature_column, schema

if TYPE_CHECKING:
    import pyarrow as pa

    from ..triage import Triage

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


_INITIALISED = False
_TRIAGES: dict[tuple[Any, ...], Triage] = {}


def diagnosers_built() -> int:
    """How many Diagnosers this process has built (tests check there is one per
    worker and modality, whatever the number of tasks and runs): the triage pool's count."""
    from ..triage import diagnosers_built as built

    return built()


def _triage(config: BatchConfig) -> Triage:
    """The process's :class:`~medimg_edge.triage.Triage` for the config's models and
    quality gate (its Diagnosers come from the process-wide pool, keyed by modality,
    model sha256 and settings, and must have the sha256 the driver resolved)."""
    key = (config.models, config.quality_gate, config.override_dicom_modality)
    t = _TRIAGES.get(key)
    if t is None:
        from ..triage import Triage

        t = Triage(
            models={m: ref.ref for m, ref in config.models},
            expected_sha256={m: ref.sha256 for m, ref in config.models},
            reference_fallback=False,
            delegate="cpu",
            num_threads=1,
            quality_gate=config.quality_gate,
            override_dicom_modality=config.override_dicom_modality,
        )
        _TRIAGES[key] = t
    return t


def init_process() -> None:
    """Worker-process set-up: one OpenCV thread (the pool runs one process per core)."""
    global _INITIALISED
    if _INITIALISED:
        return
    import cv2

    cv2.setNumThreads(1)
    _INITIALISED = True


def _hash_file(path: str, name: str) -> tuple[str, int, str | None]:
    """(sha256 of the content, size, format by :func:`medimg_edge.io.sniff_format`).

    Opened with :func:`medimg_edge.io.open_regular` (without blocking, ``fstat``-checked
    before any read), so a FIFO or a device in an archive is refused instead of hanging
    the run.  Empty files are hashed too.
    """
    with io.open_regular(path, name, image=False) as f:
        return io.sha256_of(f.fh), f.size, f.kind


def _process(config: BatchConfig, item: Item) -> dict[str, Any] | None:
    cfg = config
    t0 = time.perf_counter()
    row = base_row(cfg, item)
    stage = "read"
    name = Path(item.path).name if cfg.keep_ids else "<file>"
    diagnosing = "diagnosis" in cfg.what
    try:
        digest, size, fmt = _hash_file(item.path, name)
        row.update(content_sha256=digest, file_size=size, format=fmt)
        if item.expected_sha256 is not None and item.expected_sha256 == digest:
            return None
        triage = _triage(cfg)
        # Hashed already (before reading, for resume).  Without a diagnosis a DICOM file
        # of any modality is read (features / quality are asked for, not an answer).
        inp = triage.read(
            item.path,
            label=None if cfg.keep_ids else "<file>",
            content_hash=False,
            check_modality=diagnosing,
            cine_frames=None if diagnosing else 1,
        )
        if inp.dataset is not None:
            uid = str(inp.dataset.get("SOPInstanceUID", "") or "").strip() or None
            if uid is not None:
                row["instance_id"] = salted_hash(cfg.salt, "uid", uid)
                if cfg.keep_ids:
                    row["sop_instance_uid"] = uid
        row.update(n_frames=inp.n_frames, read_flags=list(inp.flags))
        requested: str | None = cfg.modality
        source: ModalitySource = "option"
        if requested is None:
            requested, source = item.modality, "manifest"
        modality: str | None = None
        decided: Exception | None = None
        try:
            modality, source = triage.decide_modality(
                inp, requested=requested, source=source, name=name
            )
            row.update(modality=modality, modality_source=source)
        except InvalidInputError as exc:
            decided = exc
        # The diagnosis runs first (the clip rule picks the frame); quality and features
        # are of the frame its answer rests on (the first frame without a diagnosis).
        got = None
        diag_error: Exception | None = None
        if diagnosing and decided is None:
            try:
                got = triage.run(inp, modality=(modality, source), name=name)  # type: ignore[arg-type]
            except Exception as exc:
                diag_error = exc
        image = got.frame if got is not None else inp.frames[0]
        row.update(
            height=int(image.shape[0]),
            width=int(image.shape[1]),
            dtype=str(image.dtype),
            frame_index=got.clip.frame_index if got is not None else int(inp.frame_indices[0]),
        )
        if "quality" in cfg.what:
            stage = "quality"
            if got is not None:
                rep = got.result.quality
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
        if diagnosing:
            stage = "diagnosis"
            if decided is not None:
                raise decided
            if diag_error is not None:
                raise diag_error
            assert got is not None
            d = got.result
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
