"""Reviewer feedback on the daemon's results: recorded in its ledger, exported for training.

A reviewer who reads a result (``OUTBOX/<id>.json``) records the label the image really
has: :func:`record` (one result) or :func:`import_csv` (a CSV keyed by result id).  The
label is stored in the ledger (tables ``feedback`` and ``feedback_history`` of
``OUTBOX/.medimg-edge/ledger.sqlite``, see :mod:`medimg_edge.daemon._ledger`) with the
result id, the model that produced the result, the time and where it came from
(``cli``, ``csv``, ...): no path, file name or tag value, so nothing there identifies a
patient.  :func:`labels` reads the latest label of every result (what shadow evaluation
and ``promote`` score models against); :func:`export` writes the labelled frames as a
training folder ``DEST/<label>/<result id>.png`` that ``medimg-edge train --data DEST``
reads (:func:`medimg_edge.training.folder_dataset`).

Validation: the result id must name a result of this outbox (its ``<id>.json``; for ids
of the current ledger the row must be ``done``), and the label must be one of the labels
of the model that produced it (the result names the model; its labels are the keys of
the result's scores, else those of the model's sidecar found by name and sha256).  Bad
input raises :class:`~medimg_edge.InvalidInputError` (the CLI exits 2).

The daemon may run meanwhile: the ledger is SQLite in WAL mode, writes are short
``BEGIN IMMEDIATE`` transactions, and every connection waits up to 30 s for a lock
(``timeout``), so a label recorded while the daemon commits waits for that commit.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .._durable import TEMP_PREFIX, atomic_write, fsync_dir
from .._errors import InvalidInputError, MedimgEdgeError
from ._ledger import Feedback, Ledger

__all__ = [
    "EXPORT_MANIFEST",
    "ExportReport",
    "ImportReport",
    "export",
    "import_csv",
    "labels",
    "record",
]

#: The file :func:`export` writes at the top of its folder (what was exported; no PHI).
EXPORT_MANIFEST = "export.json"
_EXPORT_FORMAT = "medimg-edge-feedback-export"
#: Largest CSV :func:`import_csv` reads.
MAX_CSV_BYTES = 64 << 20

_LEDGER = "ledger.sqlite"
_STATE = ".medimg-edge"
#: ``<ledger instance: 8 hex digits>-<row: at least 8 digits>``; nothing else can name a
#: result (and nothing else reaches a path).
_RESULT_ID = re.compile(r"^[0-9a-f]{8}-[0-9]{8,12}$")
_SOURCE = re.compile(r"^[a-z][a-z0-9_.:-]{0,31}$")
_MAX_RESULT_BYTES = 64 << 20


# -- where things are -----------------------------------------------------------------
@dataclass(frozen=True)
class _Place:
    outbox: Path
    ledger: Path


def _locate(path: Path, state_dir: Path | None = None) -> _Place:
    """The outbox and the ledger file from an outbox (``OUTBOX/.medimg-edge/``) or the
    daemon's state folder (``state_dir``, holding ``ledger.sqlite``)."""
    path = Path(path)
    if state_dir is not None:
        ledger = Path(state_dir) / _LEDGER
        outbox = path
    elif (path / _STATE / _LEDGER).is_file():
        outbox, ledger = path, path / _STATE / _LEDGER
    elif (path / _LEDGER).is_file():
        outbox, ledger = path.parent, path / _LEDGER
    else:
        raise InvalidInputError(
            f"no medimg-edge ledger in {path}: pass the outbox of a `medimg-edge watch` "
            f"(its ledger is OUTBOX/{_STATE}/{_LEDGER}), or its state_dir",
            code="no_ledger",
        )
    if not ledger.is_file():
        raise InvalidInputError(f"no ledger file {ledger}", code="no_ledger")
    return _Place(outbox, ledger)


@contextmanager
def _open_ledger(place: _Place) -> Iterator[Ledger]:
    """The ledger, opened beside a daemon that may be running (no integrity pass: the
    daemon checks at its start; no checkpoint at close: the daemon's business)."""
    ledger = Ledger(place.ledger, check=False)
    try:
        yield ledger
    finally:
        ledger.close(checkpoint=False)


# -- validation -----------------------------------------------------------------------
def _check_id(result_id: object) -> str:
    if not isinstance(result_id, str) or not _RESULT_ID.match(result_id):
        # never quote it: a mistyped column could hold anything, a name included
        raise InvalidInputError(
            "not a result id (a result id looks like 1a2b3c4d-00000042: the name of its "
            "OUTBOX/<id>.json)",
            code="bad_result_id",
        )
    return result_id


def _read_result(outbox: Path, result_id: str) -> dict[str, Any]:
    path = outbox / f"{result_id}.json"
    try:
        with path.open("rb") as fh:
            raw = fh.read(_MAX_RESULT_BYTES + 1)
    except FileNotFoundError:
        raise InvalidInputError(
            f"result {result_id}: no {result_id}.json in the outbox {outbox}",
            code="unknown_result",
        ) from None
    except OSError as exc:
        raise InvalidInputError(
            f"result {result_id}: cannot read its record ({exc.strerror or 'error'})",
            code="unknown_result",
        ) from None
    try:
        doc = json.loads(raw) if len(raw) <= _MAX_RESULT_BYTES else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or doc.get("id") != result_id:
        raise InvalidInputError(
            f"result {result_id}: {result_id}.json is not a medimg-edge result record",
            code="unknown_result",
        )
    return doc


def _check_ledger_row(ledger: Ledger, result_id: str) -> None:
    """A result of the current ledger must be a ``done`` row (ids of an earlier ledger,
    one moved aside after damage, are taken on their record in the outbox alone)."""
    instance, row = result_id.split("-")
    if instance != ledger.instance:
        return
    found = ledger.get(int(row))
    if found is None or found.state != "done":
        state = "no such row" if found is None else f"state {found.state}"
        raise InvalidInputError(
            f"result {result_id} is not a finished result of this ledger ({state})",
            code="unknown_result",
        )


def _model_of(doc: dict[str, Any]) -> tuple[str, str, str | None]:
    """(name, version, sha256) of the model a result names."""
    m = doc.get("model")
    if not isinstance(m, dict) or not isinstance(m.get("name"), str):
        raise InvalidInputError(
            f"result {doc.get('id')}: its record names no model", code="unknown_model"
        )
    sha = m.get("sha256")
    return str(m["name"]), str(m.get("version", "")), sha if isinstance(sha, str) else None


class _Labels:
    """The labels of the models results name, found once per model: the keys of a
    result's scores (every label of the model that produced it), else the sidecar of that
    model (by name and sha256, then name and version) among ``models`` and the model
    search path (:func:`medimg_edge.list_models`)."""

    def __init__(self, models: Sequence[str | os.PathLike[str]] = ()) -> None:
        self._extra = [Path(m) for m in models]
        self._cache: dict[tuple[str, str, str | None], tuple[str, ...]] = {}
        self._sidecars: list[tuple[str, str, set[str], tuple[str, ...]]] | None = None

    def _known(self) -> list[tuple[str, str, set[str], tuple[str, ...]]]:
        if self._sidecars is None:
            from ..runtime import list_models, read_package

            found: list[tuple[str, str, set[str], tuple[str, ...]]] = []
            paths = [*self._extra, *(Path(m["sidecar"]) for m in list_models() if "sidecar" in m)]
            for p in paths:
                try:
                    pkg = read_package(p)
                except MedimgEdgeError:
                    continue
                shas = {pkg.cpu.sha256} | ({pkg.edgetpu.sha256} if pkg.edgetpu else set())
                found.append((pkg.name, pkg.version, shas, pkg.labels))
            self._sidecars = found
        return self._sidecars

    def of(self, doc: dict[str, Any]) -> tuple[str, ...]:
        key = _model_of(doc)
        if key in self._cache:
            return self._cache[key]
        scores = [doc.get("scores")] + [
            f.get("scores") for f in doc.get("frame_results", []) if isinstance(f, dict)
        ]
        for s in scores:
            if isinstance(s, dict) and s:
                self._cache[key] = tuple(str(k) for k in s)
                return self._cache[key]
        name, version, sha = key
        known = self._known()
        match = [lab for n, _, shas, lab in known if n == name and sha in shas] or [
            lab for n, v, _, lab in known if n == name and v == version
        ]
        if not match:
            raise InvalidInputError(
                f"result {doc.get('id')}: cannot tell the labels of its model {name} "
                f"{version}: the result has no scores and no sidecar of that model is in "
                "the model path; pass the sidecar (--model SIDECAR)",
                code="unknown_model",
            )
        self._cache[key] = match[0]
        return match[0]


def _check_label(result_id: str, label: object, allowed: tuple[str, ...]) -> str:
    if not isinstance(label, str) or label not in allowed:
        # the value is not quoted: a swapped column could put anything there
        raise InvalidInputError(
            f"result {result_id}: the label must be one of its model's labels "
            f"({', '.join(allowed)})",
            code="invalid_label",
        )
    return label


def _check_source(source: object) -> str:
    if not isinstance(source, str) or not _SOURCE.match(source):
        raise InvalidInputError(
            "source must be a short lower-case word such as 'cli' or 'csv' (it is stored "
            "in the ledger: never a name or a path)",
            code="invalid_input",
        )
    return source


def _entry(doc: dict[str, Any], label: str, source: str, now: float) -> Feedback:
    name, version, sha = _model_of(doc)
    return Feedback(str(doc["id"]), label, f"{name}@{version}", now, source, sha)


def _validated(
    place: _Place, ledger: Ledger, known: _Labels, result_id: object, label: object
) -> tuple[str, str, dict[str, Any]]:
    """(result id, label, its record) once both are checked (else InvalidInputError)."""
    rid = _check_id(result_id)
    doc = _read_result(place.outbox, rid)
    _check_ledger_row(ledger, rid)
    return rid, _check_label(rid, label, known.of(doc)), doc


# -- the API --------------------------------------------------------------------------
def record(
    state_or_outbox: Path,
    result_id: str,
    label: str,
    *,
    source: str = "cli",
    models: Sequence[str | os.PathLike[str]] = (),
    state_dir: Path | None = None,
) -> None:
    """Record a reviewer's label for one result (a later call corrects it).

    Parameters
    ----------
    state_or_outbox : Path
        The daemon's outbox (its ledger is ``OUTBOX/.medimg-edge/ledger.sqlite``), or that
        state folder itself.
    result_id : str
        The result's id (``OUTBOX/<id>.json``).
    label : str
        The true label: one of the labels of the model that produced the result.
    source : str
        Where the label comes from (a short lower-case word stored with it).
    models : sequence of path, optional
        Sidecars to look a model's labels up in, besides the model search path (needed
        only for a result without scores from a model outside that path).
    state_dir : Path, optional
        The daemon's ``state_dir`` when it is not ``OUTBOX/.medimg-edge``.

    Raises
    ------
    InvalidInputError
        No ledger there, a malformed or unknown result id, a result not finished, or a
        label the model does not have (``code``: ``no_ledger``, ``bad_result_id``,
        ``unknown_result``, ``invalid_label``, ``unknown_model``).
    """
    place = _locate(Path(state_or_outbox), state_dir)
    src = _check_source(source)
    with _open_ledger(place) as ledger:
        _, lab, doc = _validated(place, ledger, _Labels(models), result_id, label)
        with ledger.transaction():
            ledger.put_feedback(_entry(doc, lab, src, time.time()))


def labels(outbox: Path, *, state_dir: Path | None = None) -> dict[str, str]:
    """The latest reviewer label of every result that has one.

    Parameters
    ----------
    outbox : Path
        The daemon's outbox (or its state folder).
    state_dir : Path, optional
        The daemon's ``state_dir`` when it is not ``OUTBOX/.medimg-edge``.

    Returns
    -------
    dict of str to str
        Result id -> label (empty when nothing was recorded).

    Raises
    ------
    InvalidInputError
        No ledger there.
    """
    with _open_ledger(_locate(Path(outbox), state_dir)) as ledger:
        return {fb.result_id: fb.label for fb in ledger.feedback_rows()}


def rows(outbox: Path, *, state_dir: Path | None = None) -> list[Feedback]:
    """Every result's latest label with its model, time and source (``--list``)."""
    with _open_ledger(_locate(Path(outbox), state_dir)) as ledger:
        return ledger.feedback_rows()


def history(
    outbox: Path, result_id: str | None = None, *, state_dir: Path | None = None
) -> list[tuple[object, ...]]:
    """Every change of a label (``(seq, result_id, label, previous, model, recorded,
    source)``, oldest first), of one result's with ``result_id``."""
    with _open_ledger(_locate(Path(outbox), state_dir)) as ledger:
        return ledger.feedback_history(result_id)


# -- CSV import -----------------------------------------------------------------------
@dataclass
class ImportReport:
    """What :func:`import_csv` did with each data row of the CSV.

    Attributes
    ----------
    rows : int
        Data rows read (blank lines not counted).
    accepted : list of str
        Result ids whose row is valid (recorded when :attr:`applied`).
    changed : list of str
        Those whose stored label changed (new, or a correction).
    unknown_id : list of int
        Line numbers (1 = the header) whose result id is malformed or names no finished
        result of the outbox.
    invalid_label : list of int
        Line numbers whose label is not one of the labels of the result's model (or
        whose model's labels cannot be found, see ``models``).
    malformed : list of int
        Line numbers without both cells, or repeating a result id with another label.
    messages : list of str
        One line per bad row (line number, what is wrong; ids only when well-formed,
        never the cell's text otherwise).
    applied : bool
        Whether the labels were written: all valid rows at once, or (default, not
        ``partial``) none at all when any row is bad.
    """

    rows: int = 0
    accepted: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unknown_id: list[int] = field(default_factory=list)
    invalid_label: list[int] = field(default_factory=list)
    malformed: list[int] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    applied: bool = False

    @property
    def ok(self) -> bool:
        """No bad row."""
        return not (self.unknown_id or self.invalid_label or self.malformed)


def _csv_rows(csv_path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) of a CSV with a header naming ``result_id`` and ``label``
    (other columns ignored; ``,`` ``;`` or tab separated; a UTF-8 byte order mark is
    skipped)."""
    try:
        size = csv_path.stat().st_size
        if size > MAX_CSV_BYTES:
            raise InvalidInputError(
                f"{csv_path.name}: larger than {MAX_CSV_BYTES >> 20} MiB", code="too_large"
            )
        text = csv_path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InvalidInputError(f"no such file: {csv_path}", code="no_such_file") from None
    except UnicodeDecodeError:
        raise InvalidInputError(
            f"{csv_path.name}: not UTF-8 text", code="unsupported_format"
        ) from None
    except OSError as exc:
        raise InvalidInputError(
            f"{csv_path.name}: cannot read it ({exc.strerror or 'error'})", code="unreadable"
        ) from None
    first = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=first.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [h.strip().lower() for h in next(reader, [])]
    if "result_id" not in header or "label" not in header:
        raise InvalidInputError(
            f"{csv_path.name}: the first line must be a header naming the columns "
            "result_id and label (e.g. `result_id,label`)",
            code="bad_header",
        )
    k_id, k_label = header.index("result_id"), header.index("label")
    for cells in reader:
        line = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        padded = [c.strip() for c in cells] + [""] * (max(k_id, k_label) + 1)
        yield line, {"result_id": padded[k_id], "label": padded[k_label]}


def import_csv(
    outbox: Path,
    csv_path: Path,
    *,
    partial: bool = False,
    source: str = "csv",
    models: Sequence[str | os.PathLike[str]] = (),
    state_dir: Path | None = None,
) -> ImportReport:
    """Record the labels of a CSV keyed by result id (columns ``result_id,label``).

    Every row is validated like :func:`record` first.  Then, by default, all valid rows
    are written in one transaction if no row is bad, and nothing is written otherwise
    (``applied`` False: fix the CSV and import it again; re-importing rows already
    recorded changes nothing).  ``partial=True`` writes the valid rows and reports the
    bad ones.  A result id repeated with the same label counts once; with another label
    it is a bad row.

    Parameters
    ----------
    outbox : Path
        The daemon's outbox (or its state folder).
    csv_path : Path
        The CSV: a header line naming ``result_id`` and ``label`` (other columns, e.g.
        those of ``medimg-edge feedback OUTBOX --list``, are ignored), UTF-8.
    partial : bool
        Write the valid rows even when some are bad.
    source : str
        Stored with each label.
    models : sequence of path, optional
        Extra sidecars (see :func:`record`).
    state_dir : Path, optional
        The daemon's ``state_dir`` when it is not ``OUTBOX/.medimg-edge``.

    Returns
    -------
    ImportReport

    Raises
    ------
    InvalidInputError
        No ledger, or a CSV that cannot be read or has no such header.
    """
    place = _locate(Path(outbox), state_dir)
    src = _check_source(source)
    report = ImportReport()
    known = _Labels(models)
    good: dict[str, tuple[str, dict[str, Any], int]] = {}
    now = time.time()
    with _open_ledger(place) as ledger:
        for line, row in _csv_rows(Path(csv_path)):
            report.rows += 1
            if not row["result_id"] or not row["label"]:
                report.malformed.append(line)
                report.messages.append(f"line {line}: needs a result_id and a label")
                continue
            try:
                rid, lab, doc = _validated(place, ledger, known, row["result_id"], row["label"])
            except InvalidInputError as exc:
                labelled = exc.code in ("invalid_label", "unknown_model")
                bad = report.invalid_label if labelled else report.unknown_id
                bad.append(line)
                report.messages.append(f"line {line}: {exc}")
                continue
            if rid in good:
                if good[rid][0] != lab:
                    report.malformed.append(line)
                    report.messages.append(
                        f"line {line}: result {rid} again, with another label than on "
                        f"line {good[rid][2]}"
                    )
                continue
            good[rid] = (lab, doc, line)
        report.accepted = list(good)
        if partial or report.ok:
            with ledger.transaction():
                for rid, (lab, doc, _) in good.items():
                    if ledger.put_feedback(_entry(doc, lab, src, now)):
                        report.changed.append(rid)
            report.applied = True
    return report


# -- export for training --------------------------------------------------------------
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
    place = _locate(Path(outbox), state_dir)
    dest = Path(dest)
    processed = Path(processed_dir) if processed_dir is not None else place.outbox / "processed"
    with _open_ledger(place) as ledger:
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
        for fb in labelled:
            if model is not None and model not in (fb.model, (fb.model or "").split("@")[0]):
                report.skipped[fb.result_id] = "other_model"
                continue
            if not _folder_name_ok(fb.label):
                report.skipped[fb.result_id] = "label_not_a_folder_name"
                continue
            try:
                doc = _read_result(place.outbox, fb.result_id)
            except InvalidInputError:
                report.skipped[fb.result_id] = "no_result"
                continue
            originals = _original(processed, fb.result_id)
            if not originals:
                report.missing.append(fb.result_id)
                continue
            frame: npt.NDArray[Any] | str = "unreadable"
            for path in originals:
                frame = _read_frame(path, fb.result_id, doc)
                if not isinstance(frame, str):
                    break
            if isinstance(frame, str):
                report.skipped[fb.result_id] = frame
                continue
            folder = tmp / fb.label
            folder.mkdir(mode=0o700, exist_ok=True)
            atomic_write(folder / f"{fb.result_id}.png", _frame_png(frame))
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
        atomic_write(tmp / EXPORT_MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
        for sub in [*(tmp / lab for lab in report.counts), tmp]:
            fsync_dir(sub)
        _replace_dir(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report
