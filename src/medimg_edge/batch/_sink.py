"""Where rows go: Parquet part files written atomically (resumable), or memory.

Layout of an output folder ``OUT``::

    OUT/_medimg_edge_batch.json        marker: schema version and one record per run
    OUT/part-r0001-00000.parquet       rows of run 1, in the order they completed
    OUT/part-r0001-00001.parquet
    OUT/part-r0002-00000.parquet       a resumed run appends parts, never rewrites
    OUT.salt                           the generated salt (mode 0600), if any

A part is written to ``OUT/.tmp-<name>`` and renamed into place, so a killed run leaves
only whole parts (and maybe a temporary file, removed by the next run).  Readers
(pyarrow, pandas, DuckDB, Spark) read ``OUT`` as one dataset and ignore names starting
with ``.`` or ``_``.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._durable import atomic_write, fsync_dir
from .._errors import InvalidInputError
from ._schema import SCHEMA_VERSION, schema

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["MARKER", "MemorySink", "ParquetSink", "latest_rows", "read"]

MARKER = "_medimg_edge_batch.json"
_PART = re.compile(r"^part-r(\d{4,})-(\d{5,})\.parquet$")
_TMP_PREFIX = ".tmp-"


def latest_rows(table: pa.Table) -> pa.Table:
    """One row per ``source_id``: the one of the latest run; sorted by ``source_id``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = table.sort_by([("source_id", "ascending"), ("run", "descending")])
    n = t.num_rows
    if n < 2:
        return t
    ids = t.column("source_id").combine_chunks()
    changed = pc.not_equal(ids.slice(1), ids.slice(0, n - 1))
    mask = pa.concat_arrays([pa.array([True]), changed])
    return t.filter(mask)


def _check_folder(out: Path) -> dict[str, Any] | None:
    """Check that ``out`` may be a batch output; its marker's content, if it has one."""
    if out.exists() and not out.is_dir():
        raise InvalidInputError(
            f"--out {out.name} exists and is not a folder: batch output is a folder of "
            "Parquet parts; choose a new name",
            code="bad_output",
        )
    marker = out / MARKER
    if out.is_dir() and any(out.iterdir()) and not marker.is_file():
        raise InvalidInputError(
            f"--out {out.name} is a folder that was not written by medimg-edge batch: "
            "choose a new or empty folder",
            code="bad_output",
        )
    if marker.is_file():
        try:
            meta = json.loads(marker.read_text(encoding="utf-8"))
            version = int(meta["schema_version"])
        except (ValueError, KeyError, TypeError, OSError):
            raise InvalidInputError(
                f"{out.name}/{MARKER} is unreadable: choose a new --out", code="bad_output"
            ) from None
        if version != SCHEMA_VERSION:
            raise InvalidInputError(
                f"{out.name} holds batch schema version {version}, this package writes "
                f"version {SCHEMA_VERSION}: choose a new --out",
                code="bad_output",
            )
        return dict(meta)
    return None


def read(out: str | os.PathLike[str], *, all_runs: bool = False) -> pa.Table:
    """Read a batch output folder.

    Parameters
    ----------
    out : path-like
        The ``--out`` folder.
    all_runs : bool
        Every row ever written (failed attempts that were retried included).  By default
        one row per file: the latest (see :func:`latest_rows`).

    Returns
    -------
    pyarrow.Table
        With :func:`~medimg_edge.batch.schema`; ``.to_pandas()`` for a DataFrame.
    """
    import pyarrow.dataset as pads

    folder = Path(out)
    if not (folder / MARKER).is_file():
        raise InvalidInputError(f"{folder.name} is not a medimg-edge batch output folder")
    parts = sorted(str(p) for p in folder.iterdir() if _PART.match(p.name))
    table = pads.dataset(parts, format="parquet", schema=schema()).to_table()
    return table if all_runs else latest_rows(table)


class MemorySink:
    """Keeps the record batches in memory (``run()`` without ``out``)."""

    run = 1

    def __init__(self) -> None:
        self._batches: list[pa.RecordBatch] = []

    def previous(self, config_id: str) -> dict[str, str]:
        return {}

    def add(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            self._batches.append(batch)

    def close(self, record: dict[str, Any] | None = None) -> None:
        pass

    def table(self) -> pa.Table:
        import pyarrow as pa

        return pa.Table.from_batches(self._batches, schema=schema())


class ParquetSink:
    """Streams record batches into part files of about ``rows_per_part`` rows (a part is
    also written when ``flush_seconds`` have passed since the last one, so a slow run
    keeps its progress)."""

    def __init__(
        self, out: Path, *, rows_per_part: int = 5000, flush_seconds: float = 60.0
    ) -> None:
        meta = _check_folder(out)
        out.mkdir(parents=True, exist_ok=True)
        for p in out.iterdir():
            if p.name.startswith(_TMP_PREFIX):
                p.unlink()  # a part a killed run did not finish
        if meta is not None:
            self._meta: dict[str, Any] = meta
        else:
            self._meta = {"schema_version": SCHEMA_VERSION, "runs": []}
            self._write_marker(out)
        runs = [int(m.group(1)) for p in out.iterdir() if (m := _PART.match(p.name))]
        recorded = [int(r.get("run", 0)) for r in self._meta.get("runs", [])]
        self.run = max([0, *runs, *recorded]) + 1
        self.out = out
        self.rows_per_part = max(1, int(rows_per_part))
        self.flush_seconds = float(flush_seconds)
        self._buffer: list[pa.RecordBatch] = []
        self._buffered = 0
        self._part = 0
        self._last_flush = time.monotonic()

    def _write_marker(self, out: Path) -> None:
        data = json.dumps(self._meta, indent=1).encode("utf-8")
        atomic_write(out / MARKER, data, mode=0o666, prefix=_TMP_PREFIX)

    def previous(self, config_id: str) -> dict[str, str]:
        """``source_id -> content_sha256`` of the files whose latest row succeeded under
        ``config_id`` (the files a resumed run may skip if their content is unchanged)."""
        import pyarrow.compute as pc
        import pyarrow.dataset as pads

        parts = [str(p) for p in self.out.iterdir() if _PART.match(p.name)]
        if not parts:
            return {}
        cols = ["source_id", "run", "content_sha256", "error_code", "config_id"]
        table = pads.dataset(parts, format="parquet", schema=schema()).to_table(columns=cols)
        latest = latest_rows(table)
        ok = pc.and_(
            pc.is_null(latest.column("error_code")),
            pc.equal(latest.column("config_id"), config_id),
        )
        done = latest.filter(ok)
        return dict(
            zip(
                done.column("source_id").to_pylist(),
                done.column("content_sha256").to_pylist(),
                strict=True,
            )
        )

    def add(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows:
            self._buffer.append(batch)
            self._buffered += batch.num_rows
        if self._buffered >= self.rows_per_part or (
            self._buffered and time.monotonic() - self._last_flush >= self.flush_seconds
        ):
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows as one part (temporary file + rename)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._last_flush = time.monotonic()
        if not self._buffered:
            return
        table = pa.Table.from_batches(self._buffer, schema=schema())
        name = f"part-r{self.run:04d}-{self._part:05d}.parquet"
        tmp = self.out / f"{_TMP_PREFIX}{name}"
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.out / name)
        fsync_dir(self.out, best_effort=True)
        self._part += 1
        self._buffer = []
        self._buffered = 0

    def close(self, record: dict[str, Any] | None = None) -> None:
        """Write what is buffered and append ``record`` (the run's summary) to the
        marker."""
        self.flush()
        if record is not None:
            self._meta.setdefault("runs", []).append(record)
            self._write_marker(self.out)
