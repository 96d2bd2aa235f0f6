"""Archive-scale batch analysis: features, quality and diagnoses of many image files.

::

    import medimg_edge as me
    table = me.batch.run(["archive/", "more/**/*.dcm", "manifest.csv"],
                         out="results.parquet", what="features,quality,diagnosis")
    df = table.to_pandas()

The same as ``medimg-edge batch INPUT... --out results.parquet``.  Inputs are folders
(searched recursively), glob patterns and CSV / Parquet manifests with a ``path`` column
(and optionally a ``modality`` column).  Work is cut into chunks of many files; each
worker process builds one :class:`~medimg_edge.Diagnoser` per modality and reuses it
(the triage layer's pool, :mod:`medimg_edge.triage`, shared by every client).
Engines (``scheduler``):

=====================  ===============================================================
``None`` / "local"     a spawn-safe ``ProcessPoolExecutor`` of ``workers`` processes
                       (default ``os.cpu_count()``), one OpenCV thread each
``"serial"``           in the calling process (the single-process reference path)
``"local-dask"``       a Dask ``LocalCluster`` on 127.0.0.1 (``workers`` processes)
``"tcp://host:8786"``  an existing Dask distributed scheduler (any address Dask takes)
a ``distributed.Client`` or a ``concurrent.futures.Executor``: used as given (not closed)
=====================  ===============================================================

**Output.** ``out`` is a folder of Parquet parts, written atomically as rows arrive
(``part-r<run>-<n>.parquet``; see :mod:`medimg_edge.batch._sink`); any Parquet reader
reads the folder as one table.  :func:`read` gives one row per file (its latest run).

**Resume.** Running again with the same ``out`` skips every file whose latest row
succeeded with the same ``config_id`` (package version, schema version, ``what``,
modality option, models' name/version/sha256, quality gate) *and* whose content still
has the same sha256; failed files and changed files are redone, in new parts.

**Privacy.** By default no identifier is written: ``source_id`` is the HMAC-SHA256 of
the file's absolute path and ``instance_id`` that of the DICOM SOP Instance UID, keyed
with a salt (``salt_file``; else the ``MEDIMG_EDGE_SALT`` environment variable; else the
file ``<out>.salt``, created with mode 0600 on the first run).  Error messages never
quote the file's path or name.  ``keep_ids=True`` adds the ``path`` and
``sop_instance_uid`` columns.

**Schema** (:func:`schema`; the same columns whatever ``what`` asks for, null when not
computed; version :data:`SCHEMA_VERSION`):

===========================  =========================  =====================================
column                       type                       content
===========================  =========================  =====================================
``source_id``                string, not null           HMAC-SHA256 (hex) of the absolute path
``instance_id``              string                     HMAC-SHA256 of the SOP Instance UID
                                                        (DICOM), else null
``path``                     string                     the absolute path (``keep_ids`` only)
``sop_instance_uid``         string                     the UID (``keep_ids`` only)
``content_sha256``           string                     sha256 of the file's bytes
``file_size``                int64                      bytes
``format``                   string                     png, jpeg, tiff, npy, dicom
``height``, ``width``        int32                      of the frame analysed: the one
                                                        the diagnosis rests on (clip
                                                        rule, ``medimg_edge._clip``), the
                                                        first without a diagnosis
``dtype``                    string                     the frame's NumPy dtype
``n_frames``                 int32                      frames in the file (cine: > 1)
``frame_index``              int32                      0-based index of that frame
``read_flags``               list<string>               reader flags: burned_in_annotation,
                                                        monochrome1_inverted,
                                                        lossy_compressed, cine_sampled
``modality``                 string                     ultrasound / xray / null (unknown)
``modality_source``          string                     dicom (the header decides: Modality
                                                        tag / SOP class), option, manifest
                                                        (non-DICOM and untagged DICOM), or
                                                        override
``package_version``          string, not null           medimg-edge version
``config_id``                string, not null           16 hex: see Resume
``what``                     string, not null           e.g. ``features,quality,diagnosis``
``run``                      int32, not null            run number in this output
``error_code``               string                     null on success, else a short code
                                                        (``no_such_file``, ``unreadable``,
                                                        a reader code of
                                                        ``medimg_edge.io.ERROR_CODES``
                                                        such as ``bad_header``, else
                                                        ``unreadable_image``;
                                                        ``unknown_modality``, ``no_model``,
                                                        ``model_mismatch``,
                                                        ``quality_failed``,
                                                        ``features_failed``,
                                                        ``diagnosis_failed``,
                                                        ``model_error``, ``worker_crashed``,
                                                        ``task_failed``, ``internal_error``)
``error_message``            string                     how to fix it (no path, no file name)
``elapsed_ms``               float64                    time on the worker for this file
``quality_ok``               bool                       :func:`medimg_edge.quality.assess`
``quality_issues``           list<string>               its issue codes
``quality_thresholds``       string                     threshold set used (generic, ...)
``quality_<measure>``        float64                    each of ``quality.MEASURES``
``diag_status``              string                     positive / negative / indeterminate
``diag_label``               string                     most probable class (null: refused)
``diag_confidence``          float64                    its calibrated probability
``diag_positive_score``      float64                    ``1 - P(negative)``
``diag_scores``              map<string, float64>       calibrated probability per class
``diag_reasons``             list<string>               threshold / abstain_band / quality:..
``model_name``               string                     model used (per modality)
``model_version``            string
``model_sha256``             string
``feat_<name>``              float64                    each key of
                                                        :func:`medimg_edge.features.extract`
===========================  =========================  =====================================

Needs the ``[batch]`` extra (pandas, pyarrow, dask[distributed]).  Not for clinical use.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from .._errors import InvalidInputError

try:
    import pyarrow  # noqa: F401  (the [batch] extra, checked here for a helpful message)
except ModuleNotFoundError as _exc:
    raise ModuleNotFoundError(
        f"medimg_edge.batch needs the [batch] extra ({_exc.name} is missing): "
        "pip install 'medimg-edge[batch]'",
        name=_exc.name,
    ) from None

from ._config import SALT_ENV, load_salt, make_config, parse_what, salt_path
from ._engine import Summary, check_scheduler, dispatch
from ._inputs import collect
from ._schema import FEATURE_COLUMNS, QUALITY_COLUMNS, SCHEMA_VERSION, WHAT, schema
from ._sink import MemorySink, ParquetSink, read
from ._worker import Item, salted_hash

if TYPE_CHECKING:
    from typing import Unpack  # Python >= 3.11; annotations only

    import pyarrow as pa

__all__ = [
    "FEATURE_COLUMNS",
    "QUALITY_COLUMNS",
    "SALT_ENV",
    "SCHEMA_VERSION",
    "WHAT",
    "Options",
    "Summary",
    "collect",
    "execute",
    "read",
    "run",
    "salt_path",
    "schema",
]

Inputs = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


class Options(TypedDict, total=False):
    """The keyword options shared by :func:`run` and :func:`execute` (meaning and defaults:
    :func:`run`)."""

    what: str | Sequence[str]
    modality: str | None
    model: str | os.PathLike[str] | None
    workers: int | None
    scheduler: Any
    chunk_size: int | None
    keep_ids: bool
    salt_file: str | os.PathLike[str] | None
    quality_gate: bool
    override_dicom_modality: bool
    rows_per_part: int
    flush_seconds: float
    progress: bool


def _execute(
    inputs: Inputs,
    *,
    out: str | os.PathLike[str] | None,
    what: str | Sequence[str] = WHAT,
    modality: str | None = None,
    model: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    scheduler: Any = None,
    chunk_size: int | None = None,
    keep_ids: bool = False,
    salt_file: str | os.PathLike[str] | None = None,
    quality_gate: bool = True,
    override_dicom_modality: bool = False,
    rows_per_part: int = 5000,
    flush_seconds: float = 60.0,
    progress: bool = False,
) -> tuple[Summary, MemorySink | ParquetSink]:
    """The one implementation of :func:`run` and :func:`execute` (the defaults of
    :class:`Options` are here)."""
    names = parse_what(what)
    if workers is not None and (isinstance(workers, bool) or int(workers) < 1):
        raise InvalidInputError(f"workers must be >= 1, got {workers!r}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or int(chunk_size) < 1):
        raise InvalidInputError(f"chunk_size must be >= 1, got {chunk_size!r}")
    check_scheduler(scheduler)
    sources = collect(inputs)
    if not sources:
        raise InvalidInputError(
            "no image files found in the inputs (suffixes: .png .jpg .jpeg .tif .tiff .npy "
            ".dcm .dicom, or DICOM files without a suffix)",
            code="no_input",
        )
    out_path = Path(out) if out is not None else None
    sink: MemorySink | ParquetSink
    if out_path is None:
        sink = MemorySink()
    else:
        sink = ParquetSink(out_path, rows_per_part=rows_per_part, flush_seconds=flush_seconds)
    salt = load_salt(salt_file, out_path)
    config = make_config(
        what=names,
        modality=modality,
        model=os.fspath(model) if model is not None else None,
        quality_gate=quality_gate,
        override_dicom_modality=bool(override_dicom_modality),
        keep_ids=keep_ids,
        salt=salt,
        run=sink.run,
    )
    previous = sink.previous(config.config_id)
    items = []
    for src in sources:
        sid = salted_hash(salt, "path", src.path)
        items.append(Item(sid, src.path, src.modality, previous.get(sid)))
    return dispatch(
        config,
        items,
        sink,
        scheduler=scheduler,
        workers=workers,
        chunk_size=chunk_size,
        progress=progress,
    ), sink


def execute(inputs: Inputs, *, out: str | os.PathLike[str], **options: Unpack[Options]) -> Summary:
    """Analyse ``inputs`` into the Parquet folder ``out`` and return the :class:`Summary`
    (the command line's engine; :func:`run` returns the table instead).

    Parameters (keyword options: :class:`Options`) are those of :func:`run`, with ``out``
    required.
    """
    summary, _ = _execute(inputs, out=out, **options)
    return summary


def run(
    inputs: Inputs, *, out: str | os.PathLike[str] | None = None, **options: Unpack[Options]
) -> pa.Table:
    """Analyse image files and return one row per file (schema: module docstring).

    Parameters
    ----------
    inputs : path-like or sequence of path-like
        Folders (recursive), image files, glob patterns, CSV / Parquet manifests with a
        ``path`` column (and optionally ``modality``).
    out : path-like, optional
        Output folder of Parquet parts (resumable).  Without it the rows stay in memory
        (fine for a few thousand files) and nothing is resumable.
    what : str or sequence of str
        Any of ``"features"``, ``"quality"``, ``"diagnosis"`` (comma-separated or a list;
        default all three, :data:`WHAT`).
    modality : {"ultrasound", "xray"}, optional
        For non-DICOM files and DICOM without a usable Modality; wins over the manifest's
        ``modality`` column.  A DICOM header decides for itself by the one modality rule
        of :mod:`medimg_edge._modality` (US, IVUS -> ultrasound; CR, DX, DR, RG, RF, MG,
        XA, PX, IO -> xray; CT, MR, NM, ... refused with ``unsupported_modality`` when
        ``diagnosis`` is asked for).
    model : str or path, optional
        Model name or sidecar path for the diagnosis (default: the reference model of
        each modality, ``diagnosis.REFERENCE_MODELS``).
    workers : int, optional
        Processes of the local pool / LocalCluster (default ``os.cpu_count()``).
    scheduler : None, str, distributed.Client or Executor
        See the engine table in the module docstring (default None: the local pool).
    chunk_size : int, optional
        Files per task (default ``ceil(n / (4 * workers))``, at most 64).
    keep_ids : bool
        Write ``path`` and ``sop_instance_uid`` (identifiers!; default False).
    salt_file : path-like, optional
        Salt of the identifier hashes (see the module docstring).
    quality_gate : bool
        Passed to the Diagnoser: frames that fail the quality check are refused (default
        True).
    override_dicom_modality : bool
        Research only: ``modality`` (or the manifest's) wins over every DICOM header,
        including CT / MR / ... (default False: the header decides, and DICOM of a
        modality no model serves is refused with ``unsupported_modality``).
    rows_per_part, flush_seconds
        A part file is written every ``rows_per_part`` rows (default 5000) or
        ``flush_seconds`` (default 60).
    progress : bool
        A tqdm progress bar (files/s, ETA) on stderr (default False).

    Returns
    -------
    pyarrow.Table
        The latest row of every file in ``out`` (also files of earlier runs), sorted by
        ``source_id``; ``.to_pandas()`` for a DataFrame.

    Raises
    ------
    InvalidInputError
        Bad arguments, missing inputs, a broken manifest, an output folder that is not
        a batch output, a model that cannot be loaded (:class:`ModelError`).  Problems
        with single files never raise: they are rows with an ``error_code``.
    """
    _, sink = _execute(inputs, out=out, **options)
    if isinstance(sink, MemorySink):
        from ._sink import latest_rows

        return latest_rows(sink.table())
    return read(sink.out)
