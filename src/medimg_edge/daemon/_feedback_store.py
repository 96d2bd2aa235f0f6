"""Where feedback is stored and how it is checked: the ledger beside a running daemon,
result ids, the labels of the model that produced a result; :func:`record`,
:func:`labels` and the readers of the ``feedback`` tables."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import InvalidInputError, MedimgEdgeError
from ._ledger import Feedback, Ledger, LedgerDamaged, is_damage

__all__ = [
    "FeedbackStoreError",
    "Labels",
    "Place",
    "check_source",
    "entry",
    "history",
    "labels",
    "locate",
    "open_ledger",
    "read_result",
    "record",
    "rows",
    "validated",
]

_LEDGER = "ledger.sqlite"
_STATE = ".medimg-edge"
#: ``<ledger instance: 8 hex digits>-<row: at least 8 digits>``; nothing else can name a
#: result (and nothing else reaches a path).
_RESULT_ID = re.compile(r"^[0-9a-f]{8}-[0-9]{8,12}$")
_SOURCE = re.compile(r"^[a-z][a-z0-9_.:-]{0,31}$")
_MAX_RESULT_BYTES = 64 << 20


# -- where things are -----------------------------------------------------------------
@dataclass(frozen=True)
class Place:
    """The outbox (where the result records are) and the ledger file."""

    outbox: Path
    ledger: Path


def locate(path: Path, state_dir: Path | None = None) -> Place:
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
    return Place(outbox, ledger)


class FeedbackStoreError(MedimgEdgeError):
    """The ledger could not be read or written (locked beyond the busy timeout, disk
    full, no permission, or damaged); the message says which and what to do."""


def _store_error(path: Path, exc: BaseException) -> FeedbackStoreError:
    detail = " ".join(str(exc).split())[:200]
    if isinstance(exc, LedgerDamaged) or is_damage(exc):
        return FeedbackStoreError(
            f"the ledger {path} is damaged ({detail}): nothing was read or written; see "
            "'A damaged ledger' in the daemon's README"
        )
    return FeedbackStoreError(
        f"the ledger {path} could not be read or written now ({detail}): nothing was "
        "recorded; retry (a daemon holds it only for short commits)"
    )


@contextmanager
def open_ledger(place: Place) -> Iterator[Ledger]:
    """The ledger, opened beside a daemon that may be running (no integrity pass: the
    daemon checks at its start; no checkpoint at close: the daemon's business).  SQLite
    errors become :class:`FeedbackStoreError` (a failed transaction is rolled back)."""
    try:
        ledger = Ledger(place.ledger, check=False)
    except (sqlite3.Error, LedgerDamaged) as exc:
        raise _store_error(place.ledger, exc) from None
    try:
        yield ledger
    except sqlite3.Error as exc:
        raise _store_error(place.ledger, exc) from None
    finally:
        ledger.close(checkpoint=False)


# -- validation -----------------------------------------------------------------------
def _check_id(result_id: object) -> str:
    """``result_id`` if it has the form of a result id (so it can name a file)."""
    if not isinstance(result_id, str) or not _RESULT_ID.match(result_id):
        # never quote it: a mistyped column could hold anything, a name included
        raise InvalidInputError(
            "not a result id (a result id looks like 1a2b3c4d-00000042: the name of its "
            "OUTBOX/<id>.json)",
            code="bad_result_id",
        )
    return result_id


def read_result(outbox: Path, result_id: str) -> dict[str, Any]:
    """The record ``OUTBOX/<id>.json`` of a well-formed result id (else
    InvalidInputError ``unknown_result``: missing, unreadable, or not a result of that
    id)."""
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


class Labels:
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
            from ..runtime._package import iter_packages, package_sha256s

            self._sidecars = [
                (pkg.name, pkg.version, package_sha256s(pkg), pkg.labels)
                for pkg in iter_packages(self._extra)
            ]
        return self._sidecars

    def of(self, doc: dict[str, Any]) -> tuple[str, ...]:
        """The labels of the model that produced the result ``doc`` (InvalidInputError
        ``unknown_model`` when neither its scores nor a sidecar tell them)."""
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


def check_source(source: object) -> str:
    """``source`` if it is a short lower-case word (never a name or a path)."""
    if not isinstance(source, str) or not _SOURCE.match(source):
        raise InvalidInputError(
            "source must be a short lower-case word such as 'cli' or 'csv' (it is stored "
            "in the ledger: never a name or a path)",
            code="invalid_input",
        )
    return source


def entry(doc: dict[str, Any], label: str, source: str, now: float) -> Feedback:
    """The ledger row of ``label`` for the result ``doc``."""
    name, version, sha = _model_of(doc)
    return Feedback(str(doc["id"]), label, f"{name}@{version}", now, source, sha)


def validated(
    place: Place, ledger: Ledger, known: Labels, result_id: object, label: object
) -> tuple[str, str, dict[str, Any]]:
    """(result id, label, its record) once both are checked (else InvalidInputError)."""
    rid = _check_id(result_id)
    doc = read_result(place.outbox, rid)
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
    FeedbackStoreError
        The ledger cannot be read or written now (nothing recorded), or is damaged.
    """
    place = locate(Path(state_or_outbox), state_dir)
    src = check_source(source)
    with open_ledger(place) as ledger:
        _, lab, doc = validated(place, ledger, Labels(models), result_id, label)
        with ledger.transaction():
            ledger.put_feedback(entry(doc, lab, src, time.time()))


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
    with open_ledger(locate(Path(outbox), state_dir)) as ledger:
        return {fb.result_id: fb.label for fb in ledger.feedback_rows()}


def rows(outbox: Path, *, state_dir: Path | None = None) -> list[Feedback]:
    """Every result's latest label with its model, time and source (``--list``)."""
    with open_ledger(locate(Path(outbox), state_dir)) as ledger:
        return ledger.feedback_rows()


def history(
    outbox: Path, result_id: str | None = None, *, state_dir: Path | None = None
) -> list[tuple[object, ...]]:
    """Every change of a label (``(seq, result_id, label, previous, model, recorded,
    source)``, oldest first), of one result's with ``result_id``."""
    with open_ledger(locate(Path(outbox), state_dir)) as ledger:
        return ledger.feedback_history(result_id)
