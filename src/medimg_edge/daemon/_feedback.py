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

Modules: ``_feedback_store.py`` (the ledger beside a running daemon, validation,
:func:`record`, :func:`labels`), ``_feedback_csv.py`` (:func:`import_csv`),
``_feedback_export.py`` (:func:`export`).
"""

from ._feedback_csv import MAX_CSV_BYTES, ImportReport, import_csv
from ._feedback_export import EXPORT_MANIFEST, ExportReport, export
from ._feedback_store import FeedbackStoreError, history, labels, record, rows

__all__ = [
    "EXPORT_MANIFEST",
    "MAX_CSV_BYTES",
    "ExportReport",
    "FeedbackStoreError",
    "ImportReport",
    "export",
    "history",
    "import_csv",
    "labels",
    "record",
    "rows",
]
