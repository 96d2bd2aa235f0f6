"""The Parquet schema of a batch output (documented in :mod:`medimg_edge.batch`)."""

from __future__ import annotations

import functools

import pyarrow as pa

from .. import quality
from ..features import feature_names

__all__ = [
    "FEATURE_COLUMNS",
    "QUALITY_COLUMNS",
    "SCHEMA_VERSION",
    "WHAT",
    "feature_column",
    "schema",
]

#: Version of the column layout below; bumped when a column changes meaning or type.
SCHEMA_VERSION = 1

#: What a batch run can compute, in this order.
WHAT: tuple[str, ...] = ("features", "quality", "diagnosis")


def feature_column(name: str) -> str:
    """Column of the feature ``name`` of :func:`medimg_edge.features.extract`."""
    return f"feat_{name}"


#: ``feat_<name>`` for every key of :func:`medimg_edge.features.extract` (default
#: parameters), in its order.
FEATURE_COLUMNS: tuple[str, ...] = tuple(feature_column(n) for n in feature_names())

#: ``quality_<measure>`` for every measure of :func:`medimg_edge.quality.assess`.
QUALITY_COLUMNS: tuple[str, ...] = tuple(f"quality_{m}" for m in quality.MEASURES)

_STR = pa.string()
_F64 = pa.float64()


def _identity() -> list[pa.Field]:
    return [
        pa.field("source_id", _STR, nullable=False),
        pa.field("instance_id", _STR),
        pa.field("path", _STR),
        pa.field("sop_instance_uid", _STR),
        pa.field("content_sha256", _STR),
        pa.field("file_size", pa.int64()),
        pa.field("format", _STR),
        pa.field("height", pa.int32()),
        pa.field("width", pa.int32()),
        pa.field("dtype", _STR),
        pa.field("n_frames", pa.int32()),
        pa.field("frame_index", pa.int32()),
        pa.field("read_flags", pa.list_(_STR)),
        pa.field("modality", _STR),
        pa.field("modality_source", _STR),
    ]


def _provenance() -> list[pa.Field]:
    return [
        pa.field("package_version", _STR, nullable=False),
        pa.field("config_id", _STR, nullable=False),
        pa.field("what", _STR, nullable=False),
        pa.field("run", pa.int32(), nullable=False),
        pa.field("error_code", _STR),
        pa.field("error_message", _STR),
        pa.field("elapsed_ms", _F64),
    ]


def _quality() -> list[pa.Field]:
    return [
        pa.field("quality_ok", pa.bool_()),
        pa.field("quality_issues", pa.list_(_STR)),
        pa.field("quality_thresholds", _STR),
        *(pa.field(c, _F64) for c in QUALITY_COLUMNS),
    ]


def _diagnosis() -> list[pa.Field]:
    return [
        pa.field("diag_status", _STR),
        pa.field("diag_label", _STR),
        pa.field("diag_confidence", _F64),
        pa.field("diag_positive_score", _F64),
        pa.field("diag_scores", pa.map_(_STR, _F64)),
        pa.field("diag_reasons", pa.list_(_STR)),
        pa.field("model_name", _STR),
        pa.field("model_version", _STR),
        pa.field("model_sha256", _STR),
    ]


@functools.cache
def schema() -> pa.Schema:
    """The Arrow schema of every part file (the same whatever ``what`` asks for: columns
    of what was not computed are null).  The schema version is in the metadata key
    ``medimg_edge.batch.schema_version``."""
    fields = [
        *_identity(),
        *_provenance(),
        *_quality(),
        *_diagnosis(),
        *(pa.field(c, _F64) for c in FEATURE_COLUMNS),
    ]
    return pa.schema(fields, metadata={"medimg_edge.batch.schema_version": str(SCHEMA_VERSION)})
