"""``medimg-edge batch INPUT... --out DIR``: archive-scale analysis (kept apart from
``cli.py``; the engine is :mod:`medimg_edge.batch`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from .._errors import MedimgEdgeError
from .._modality import MODALITIES
from ._common import HelpFormatter

__all__ = ["BATCH_HELP", "add_parser", "cmd_batch", "main"]

BATCH_HELP = """\
Analyse every image of folders (recursive), glob patterns ('archive/**/*.dcm', quoted) or
CSV / Parquet manifests (a 'path' column, optionally 'modality') into a folder of Parquet
parts: texture features, quality measures and diagnoses, one row per file (schema: the
README or `python -c "import medimg_edge.batch as b; help(b)"`).

Work runs in a local process pool (--workers, default: all cores), or on a Dask
distributed cluster with --scheduler tcp://HOST:8786 (workers need the same medimg-edge
version and the same file paths). Re-running with the same --out resumes: files already
done with the same package/model versions and unchanged content are skipped, failed
files are retried. A file that cannot be read or analysed gets an error_code in its row;
the run goes on.

Privacy: rows carry salted hashes (HMAC-SHA256) of the path and the DICOM SOP Instance
UID, never the path or the UID, unless --keep-ids. The salt comes from --salt-file, else
$MEDIMG_EDGE_SALT, else OUT.salt (created with mode 0600 beside OUT; keep it to resume).

exit status: 0 every file done or skipped; 1 some files failed (see the summary); 2
usage error (bad option, no input, unusable --out, model not loadable); 130 interrupted
(the rows finished so far are kept: run again to resume).
Not for clinical use.
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "batch",
        help="analyse an archive into Parquet (features, quality, diagnosis; Dask)",
        description=BATCH_HELP,
        formatter_class=HelpFormatter,
    )
    p.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="folders, files, glob patterns, manifests"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder of Parquet parts")
    p.add_argument(
        "--what",
        default="features,quality,diagnosis",
        help="comma-separated: features, quality, diagnosis (default: all)",
    )
    p.add_argument(
        "--modality",
        choices=MODALITIES,
        help="modality of non-DICOM files and of DICOM without a usable Modality tag "
        "(wins over the manifest column; a DICOM header decides for itself)",
    )
    p.add_argument(
        "--override-dicom-modality",
        action="store_true",
        help="DANGER, research only: --modality / the manifest wins over every DICOM "
        "header, including CT/MR/... (answers are meaningless for such frames)",
    )
    p.add_argument("--model", help="model name or sidecar path (default: reference models)")
    p.add_argument(
        "--workers", type=int, metavar="N", help="local worker processes (default: all cores)"
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDR",
        help="local (default), serial, local-dask, or a Dask scheduler address (tcp://host:8786)",
    )
    p.add_argument("--chunk-size", type=int, metavar="N", help="files per task")
    p.add_argument("--rows-per-part", type=int, default=5000, metavar="N", help="rows per part")
    p.add_argument("--keep-ids", action="store_true", help="write paths and SOP Instance UIDs")
    p.add_argument("--salt-file", metavar="FILE", help="salt of the identifier hashes")
    p.add_argument("--no-quality-gate", action="store_true", help="run the model on any frame")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar with files/s and ETA (default: when stderr is a terminal)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.set_defaults(func=cmd_batch)


def cmd_batch(args: argparse.Namespace) -> int:
    try:
        from .. import batch
    except ImportError as exc:
        print(
            f"error: medimg-edge batch needs the [batch] extra ({exc.name} is missing): "
            "pip install 'medimg-edge[batch]'",
            file=sys.stderr,
        )
        return 2
    progress = sys.stderr.isatty() if args.progress is None else bool(args.progress)
    try:
        summary = batch.execute(
            args.inputs,
            out=args.out,
            what=args.what,
            modality=args.modality,
            model=args.model,
            workers=args.workers,
            scheduler=args.scheduler,
            chunk_size=args.chunk_size,
            keep_ids=args.keep_ids,
            salt_file=args.salt_file,
            quality_gate=not args.no_quality_gate,
            override_dicom_modality=args.override_dicom_modality,
            rows_per_part=args.rows_per_part,
            progress=progress,
        )
    except KeyboardInterrupt:
        print("interrupted: finished rows are kept; run again to resume", file=sys.stderr)
        return 130
    except (MedimgEdgeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary.format(), file=sys.stderr)
    print("Not for clinical use.", file=sys.stderr)
    if args.json:
        print(json.dumps(summary.to_dict()))
    return 1 if summary.failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """``medimg-edge batch`` on its own (``python -m medimg_edge.cli.batch ...``)."""
    parser = argparse.ArgumentParser(prog="medimg-edge")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(["batch", *(sys.argv[1:] if argv is None else argv)])
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
