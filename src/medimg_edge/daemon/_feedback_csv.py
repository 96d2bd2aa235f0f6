"""CSV import of reviewer labels keyed by result id (:func:`import_csv`)."""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import InvalidInputError
from ._feedback_store import Labels, check_source, entry, locate, open_ledger, validated

__all__ = ["MAX_CSV_BYTES", "ImportReport", "import_csv"]

#: Largest CSV :func:`import_csv` reads.
MAX_CSV_BYTES = 64 << 20


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
    place = locate(Path(outbox), state_dir)
    src = check_source(source)
    report = ImportReport()
    known = Labels(models)
    good: dict[str, tuple[str, dict[str, Any], int]] = {}
    now = time.time()
    with open_ledger(place) as ledger:
        for line, row in _csv_rows(Path(csv_path)):
            report.rows += 1
            if not row["result_id"] or not row["label"]:
                report.malformed.append(line)
                report.messages.append(f"line {line}: needs a result_id and a label")
                continue
            try:
                rid, lab, doc = validated(place, ledger, known, row["result_id"], row["label"])
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
                    if ledger.put_feedback(entry(doc, lab, src, now)):
                        report.changed.append(rid)
            report.applied = True
    return report
