"""``medimg-edge feedback``: record reviewers' labels of the daemon's results, import them
from a CSV, list them, export the labelled frames as a training folder."""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path
from typing import Any

from .._errors import InvalidInputError
from ._common import HelpFormatter

__all__ = ["add_parser", "cmd_feedback"]

FEEDBACK_HELP = """\
Reviewer feedback on the results of `medimg-edge watch` (stored in the daemon's ledger,
OUTBOX/.medimg-edge/ledger.sqlite, with no patient data: result ids, labels, model names).

  medimg-edge feedback OUTBOX RESULT_ID LABEL      record (or correct) one result's label
  medimg-edge feedback OUTBOX --import FILE.csv    columns result_id,label (all or nothing)
  medimg-edge feedback OUTBOX --list               the latest labels, as a CSV (re-importable)
  medimg-edge feedback OUTBOX --history [ID]       every change of a label (of one result)
  medimg-edge feedback OUTBOX --export DIR         DIR/<label>/<result id>.png for
                                                   `medimg-edge train --data DIR`

RESULT_ID is the name of the result's OUTBOX/<id>.json; LABEL must be one of the labels of
the model that produced it. The export holds the pixels of the frame each result rests on
(no DICOM header, no original file names); burned-in annotations in the pixels are NOT
removed. The daemon may keep running meanwhile. Exit status: 0 done, 1 an import applied
in part, an export without some results (reported) or a ledger that cannot be written now,
2 bad input (nothing written).
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "feedback",
        help="record reviewers' labels of daemon results; export them for training",
        description=FEEDBACK_HELP,
        formatter_class=HelpFormatter,
    )
    p.add_argument("outbox", metavar="OUTBOX", help="the daemon's outbox (or its state folder)")
    p.add_argument("result_id", metavar="RESULT_ID", nargs="?", help="a result's id")
    p.add_argument("label", metavar="LABEL", nargs="?", help="its true label")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--import", dest="import_csv", metavar="FILE.csv", help="import a CSV")
    what.add_argument("--export", metavar="DIR", help="write the labelled frames to DIR")
    what.add_argument("--list", action="store_true", help="print the latest labels (CSV)")
    what.add_argument(
        "--history",
        metavar="RESULT_ID",
        nargs="?",
        const="",
        help="print every change of a label (of that result's only)",
    )
    p.add_argument(
        "--partial",
        action="store_true",
        help="--import: record the valid rows even when some are bad",
    )
    p.add_argument(
        "--model",
        metavar="SIDECAR",
        action="append",
        help="a model sidecar to find a result's labels in (repeatable; for models "
        "outside the model search path)",
    )
    p.add_argument(
        "--only-model", metavar="NAME", help="--export: only results of this model (name[@version])"
    )
    p.add_argument("--state-dir", metavar="DIR", help="the daemon's state_dir, if not the default")
    p.add_argument(
        "--processed-dir", metavar="DIR", help="the daemon's processed_dir, if not the default"
    )
    p.set_defaults(func=cmd_feedback)


def _iso(t: object) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(str(t))))


def cmd_feedback(args: argparse.Namespace) -> int:
    from ..daemon import _feedback as fb

    try:
        return _run(args, fb)
    except fb.FeedbackStoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, fb: Any) -> int:

    outbox = Path(args.outbox)
    state = Path(args.state_dir) if args.state_dir else None
    history = args.history is not None
    other = args.import_csv or args.export or args.list or history
    pair = args.result_id is not None and args.label is not None
    if other and args.result_id is not None:
        raise InvalidInputError(
            "RESULT_ID LABEL cannot be combined with --import, --export, --list, --history"
        )
    if not (other or pair):
        raise InvalidInputError(
            "give RESULT_ID LABEL, or one of --import, --export, --list, --history"
        )
    if args.partial and not args.import_csv:
        raise InvalidInputError("--partial goes with --import")
    if args.only_model and not args.export:
        raise InvalidInputError("--only-model goes with --export")
    if pair:
        fb.record(outbox, args.result_id, args.label, models=args.model or (), state_dir=state)
        print(f"recorded: {args.result_id} = {args.label}")
        return 0
    if args.list:
        out = csv.writer(sys.stdout, lineterminator="\n")
        out.writerow(["result_id", "label", "model", "recorded", "source"])
        for row in fb.rows(outbox, state_dir=state):
            out.writerow(
                [row.result_id, row.label, row.model or "", _iso(row.recorded), row.source]
            )
        return 0
    if history:
        out = csv.writer(sys.stdout, lineterminator="\n")
        out.writerow(["seq", "result_id", "label", "previous", "model", "recorded", "source"])
        for seq, rid, lab, prev, model, rec, src in fb.history(
            outbox, args.history or None, state_dir=state
        ):
            out.writerow([seq, rid, lab, prev or "", model or "", _iso(rec), src])
        return 0
    if args.import_csv:
        rep = fb.import_csv(
            outbox,
            Path(args.import_csv),
            partial=args.partial,
            models=args.model or (),
            state_dir=state,
        )
        for line in rep.messages:
            print(f"  {line}", file=sys.stderr)
        bad = len(rep.unknown_id) + len(rep.invalid_label) + len(rep.malformed)
        print(
            f"{rep.rows} rows: {len(rep.accepted)} valid ({len(rep.changed)} changed a "
            f"label), {len(rep.unknown_id)} unknown id, {len(rep.invalid_label)} invalid "
            f"label, {len(rep.malformed)} malformed; "
            + ("recorded" if rep.applied else "nothing recorded")
        )
        if not bad:
            return 0
        if not rep.applied:
            print("error: fix those rows (or use --partial) and import again", file=sys.stderr)
            return 2
        return 1
    rep_e = fb.export(
        outbox,
        Path(args.export),
        model=args.only_model,
        processed_dir=Path(args.processed_dir) if args.processed_dir else None,
        state_dir=state,
    )
    counts = ", ".join(f"{lab} {n}" for lab, n in sorted(rep_e.counts.items())) or "none"
    print(f"wrote {len(rep_e.written)} frames to {rep_e.dest} ({counts})")
    if rep_e.missing:
        print(
            f"  {len(rep_e.missing)} labelled results have no original in processed/ any "
            f"more (not exported): {', '.join(rep_e.missing)}"
        )
    for rid, why in sorted(rep_e.skipped.items()):
        if why != "other_model":
            print(f"  not exported: {rid} ({why})")
    if rep_e.burned_in:
        print(
            f"  warning: {len(rep_e.burned_in)} exported frames may show burned-in "
            f"annotation (text in the pixels, possibly a patient's name; not removed): "
            f"{', '.join(rep_e.burned_in)}"
        )
    for w in rep_e.warnings:
        print(f"  warning: {w}")
    incomplete = rep_e.missing or any(w != "other_model" for w in rep_e.skipped.values())
    return 1 if incomplete else 0
