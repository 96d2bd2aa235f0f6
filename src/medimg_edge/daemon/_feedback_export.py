"""The labelled frames as a training folder (:func:`export`)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .._durable import TEMP_PREFIX, atomic_write, atomic_write_many, fsync_dir
from .._errors import InvalidInputError
from ._feedback_store import locate, open_ledger, read_result
from ._ledger import Feedback

__all__ = ["EXPORT_MANIFEST", "ExportReport", "export"]

#: The file :func:`export` writes at the top of its folder (what was exported; no PHI).
EXPORT_MANIFEST = "export.json"
_EXPORT_FORMAT = "medimg-edge-feedback-export"
#: Frames written per batch (each file fsync-ed, each folder once per batch).
_WRITE_BATCH = 64


@dataclass
class ExportReport:
    """What :func:`export` wrote.

    Attributes
    ----------
    dest : Path
        The training folder: ``dest/<label>/<result id>.png`` and :data:`EXPORT_MANIFEST`.
    written : dict of str to str
        Result id -> label of every frame written.
    counts : dict of str to int
        Frames per label.
    missing : list of str
        Labelled results whose original is no longer in ``processed/`` (moved, deleted,
        or the input was quarantined): not exported.
    skipped : dict of str to str
        Other labelled results not exported, with why: ``no_result`` (the record left
        the outbox), ``changed`` (the file in ``processed/`` is not the one diagnosed),
        ``unreadable`` (it cannot be read now), ``frame_unavailable``, ``other_model``
        (``model`` filter), ``label_not_a_folder_name``.
    burned_in : list of str
        Exported frames whose result says the image may carry burned-in annotation
        (their pixels may show text, a patient's name included).
    models : dict of str to int
        Frames per model (``name@version``) that produced the results.
    warnings : list of str
        E.g. fewer than two labels (``medimg-edge train`` needs two class folders).
    """

    dest: Path
    written: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    burned_in: list[str] = field(default_factory=list)
    models: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _original(processed: Path, rid: str) -> list[Path]:
    """The files ``processed/<id>`` and ``processed/<id>.<ext>`` (the daemon's names)."""
    if not processed.is_dir():
        return []
    return sorted(
        p
        for p in processed.glob(f"{rid}*")
        if (p.name == rid or p.name.startswith(rid + ".")) and p.is_file()
    )


def _frame_png(frame: npt.NDArray[Any]) -> bytes:
    """The frame as a grey PNG with nothing but pixels (IHDR, IDAT, IEND): ``uint8`` and
    ``uint16`` as they are; other types (float after a DICOM rescale) shifted by their
    minimum to ``uint16`` when integer-valued within 65535 levels, else mapped linearly
    onto 0..65535 (the model's input windowing, percentiles of the frame, is unchanged
    by such a map up to the rounding)."""
    import cv2

    arr = np.asarray(frame)
    if arr.dtype not in (np.uint8, np.uint16):
        x = arr.astype(np.float64)
        if not np.isfinite(x).all():
            x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(x.min()), float(x.max())
        if hi - lo <= 65535 and np.array_equal(x, np.round(x)):
            arr = (x - lo).astype(np.uint16)
        else:
            span = hi - lo if hi > lo else 1.0
            arr = np.round((x - lo) * (65535.0 / span)).astype(np.uint16)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(arr))
    if not ok:  # pragma: no cover - OpenCV encodes any 2-D uint8/uint16 array
        raise InvalidInputError("could not encode a frame as PNG")
    return bytes(buf.tobytes())


def _part(doc: dict[str, Any], key: str) -> dict[str, Any]:
    """``doc[key]`` when it is an object, else ``{}``."""
    value = doc.get(key)
    return value if isinstance(value, dict) else {}


def _read_frame(path: Path, rid: str, doc: dict[str, Any]) -> npt.NDArray[Any] | str:
    """The frame of ``path`` the result rests on, or why not (a skip reason)."""
    from ..io import read_input

    inp, clip = _part(doc, "input"), _part(doc, "clip")
    index = doc.get("frame_index", inp.get("frame_index", 0))
    diagnosed = clip.get("frames_diagnosed") or [index]
    if not isinstance(index, int) or not isinstance(diagnosed, list):
        return "frame_unavailable"
    try:
        got = read_input(path, label=rid, cine_frames=max(1, len(diagnosed)))
    except InvalidInputError:
        return "unreadable"
    if inp.get("sha256") and got.sha256 != inp["sha256"]:
        return "changed"
    if index not in got.frame_indices:
        return "frame_unavailable"
    return got.frames[got.frame_indices.index(index)]


def _frame_for(
    fb: Feedback, outbox: Path, processed: Path, model: str | None, report: ExportReport
) -> tuple[npt.NDArray[Any], dict[str, Any]] | None:
    """(frame, result record) of a labelled result, or ``None`` with the reason noted in
    ``report`` (missing original, skipped and why)."""
    if model is not None and model not in (fb.model, (fb.model or "").split("@")[0]):
        report.skipped[fb.result_id] = "other_model"
        return None
    if not _folder_name_ok(fb.label):
        report.skipped[fb.result_id] = "label_not_a_folder_name"
        return None
    try:
        doc = read_result(outbox, fb.result_id)
    except InvalidInputError:
        report.skipped[fb.result_id] = "no_result"
        return None
    originals = _original(processed, fb.result_id)
    if not originals:
        report.missing.append(fb.result_id)
        return None
    why = "unreadable"
    for path in originals:
        frame = _read_frame(path, fb.result_id, doc)
        if not isinstance(frame, str):
            return frame, doc
        why = frame
    report.skipped[fb.result_id] = why
    return None


def _folder_name_ok(label: str) -> bool:
    return (
        label not in ("", ".", "..", "masks")
        and not label.startswith(".")
        and "/" not in label
        and "\\" not in label
        and "\0" not in label
    )


def _check_dest(dest: Path) -> None:
    """``dest`` may be new, an empty folder or an earlier export (it is replaced)."""
    if not dest.exists() and not dest.is_symlink():
        return
    if dest.is_symlink() or not dest.is_dir():
        raise InvalidInputError(f"{dest} exists and is not a folder", code="invalid_input")
    entries = list(dest.iterdir())
    if not entries:
        return
    try:
        manifest = json.loads((dest / EXPORT_MANIFEST).read_text())
    except (OSError, ValueError):
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != _EXPORT_FORMAT:
        raise InvalidInputError(
            f"{dest} is not empty and is not an earlier feedback export (no "
            f"{EXPORT_MANIFEST}): choose a new folder",
            code="invalid_input",
        )


def _replace_dir(tmp: Path, dest: Path) -> None:
    """Put the finished folder ``tmp`` at ``dest`` (an earlier export there goes)."""
    old = None
    if dest.exists():
        old = dest.with_name(f"{TEMP_PREFIX}old-{secrets.token_hex(6)}")
        os.rename(dest, old)
    os.rename(tmp, dest)
    fsync_dir(dest.parent)
    if old is not None:
        shutil.rmtree(old)


def export(
    outbox: Path,
    dest: Path,
    *,
    model: str | None = None,
    processed_dir: Path | None = None,
    state_dir: Path | None = None,
) -> ExportReport:
    """Write every labelled result's frame as a training folder ``dest/<label>/<id>.png``.

    ``medimg-edge train --data DEST`` (:func:`medimg_edge.training.folder_dataset`) reads
    it.  Each frame is the one the result rests on (``frame_index`` of a multi-frame
    input), read from the original in ``processed/`` (checked against the SHA-256 the
    result names) exactly as the daemon read it (grey, rescaled, MONOCHROME1 inverted),
    and written as a PNG of **pixels only**: no DICOM header, no PNG text chunk, and file
    names made of the result id (never the original's name).  Burned-in annotations *in
    the pixels* are not removed (the daemon does not clean pixels, ``--deidentify``
    neither): :attr:`ExportReport.burned_in` lists the frames whose result flags them.

    The export is built in a temporary folder beside ``dest`` and renamed into place, so
    ``dest`` holds a complete export (an earlier one is replaced whole) or none.
    A result whose original is gone is reported (:attr:`ExportReport.missing`), not an
    error.

    Parameters
    ----------
    outbox : Path
        The daemon's outbox (or its state folder).
    dest : Path
        New, empty, or an earlier export.
    model : str, optional
        Only results of this model (its name, or ``name@version``).
    processed_dir : Path, optional
        The daemon's ``processed_dir`` when it is not ``OUTBOX/processed``.
    state_dir : Path, optional
        The daemon's ``state_dir`` when it is not ``OUTBOX/.medimg-edge``.

    Returns
    -------
    ExportReport

    Raises
    ------
    InvalidInputError
        No ledger, no labelled result, or ``dest`` is something else than the above.
    """
    place = locate(Path(outbox), state_dir)
    dest = Path(dest)
    processed = Path(processed_dir) if processed_dir is not None else place.outbox / "processed"
    with open_ledger(place) as ledger:
        labelled = ledger.feedback_rows()
    if not labelled:
        raise InvalidInputError(
            "no result has a reviewer label yet: record some first (medimg-edge feedback "
            "OUTBOX RESULT_ID LABEL, or --import FILE.csv)",
            code="no_feedback",
        )
    _check_dest(dest)
    report = ExportReport(dest)
    dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = dest.with_name(f"{TEMP_PREFIX}export-{secrets.token_hex(6)}")
    tmp.mkdir(mode=0o700)
    entries: list[dict[str, Any]] = []
    try:
        pending: list[tuple[Path, bytes]] = []
        for fb in labelled:
            got = _frame_for(fb, place.outbox, processed, model, report)
            if got is None:
                continue
            frame, doc = got
            folder = tmp / fb.label
            folder.mkdir(mode=0o700, exist_ok=True)
            pending.append((folder / f"{fb.result_id}.png", _frame_png(frame)))
            if len(pending) >= _WRITE_BATCH:  # one fsync per folder per batch
                atomic_write_many(pending)
                pending.clear()
            report.written[fb.result_id] = fb.label
            report.counts[fb.label] = report.counts.get(fb.label, 0) + 1
            key = fb.model or "unknown"
            report.models[key] = report.models.get(key, 0) + 1
            flags = _part(doc, "input").get("flags") or []
            if "burned_in_annotation" in flags:
                report.burned_in.append(fb.result_id)
            entries.append(
                {
                    "id": fb.result_id,
                    "label": fb.label,
                    "model": fb.model,
                    "model_sha256": fb.model_sha256,
                    "frame_index": doc.get("frame_index", 0),
                    "burned_in_annotation": "burned_in_annotation" in flags,
                }
            )
        if len(report.counts) < 2:
            report.warnings.append(
                f"{len(report.counts)} label(s) exported: medimg-edge train needs at least "
                "two class folders"
            )
        manifest = {
            "format": _EXPORT_FORMAT,
            "version": 1,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "notice": (
                "Pixels only (no DICOM header, no file names of the originals). Burned-in "
                "annotations in the pixels are NOT removed: see burned_in_annotation."
            ),
            "counts": report.counts,
            "models": report.models,
            "frames": entries,
            "missing": report.missing,
            "skipped": report.skipped,
        }
        atomic_write_many(pending)
        atomic_write(tmp / EXPORT_MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
        for sub in [*(tmp / lab for lab in report.counts), tmp]:
            fsync_dir(sub)
        _replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report
