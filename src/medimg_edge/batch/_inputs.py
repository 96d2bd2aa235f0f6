"""Inputs of a batch run: folders (recursive), glob patterns and CSV / Parquet manifests."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .._errors import InvalidInputError
from ..io import find_images

__all__ = ["MANIFEST_SUFFIXES", "Source", "collect"]

#: Suffixes read as manifests (a table with a ``path`` column), not as images.
MANIFEST_SUFFIXES: tuple[str, ...] = (".csv", ".parquet", ".pq")

_MODALITY_WORDS = {"ultrasound": "ultrasound", "us": "ultrasound", "xray": "xray", "x-ray": "xray"}
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class Source:
    """One input file: its absolute path and the modality its manifest gives, if any."""

    path: str
    modality: str | None = None


def _walk(root: Path) -> list[Path]:
    """Image files under ``root`` (:func:`medimg_edge.io.find_images`: a known suffix, or
    no suffix and the DICOM signature; hidden files and a synth data set's ``masks/``
    skipped; sorted, so runs are reproducible)."""
    return find_images(root)


def _modality_of(value: object, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value != value:  # NaN from pandas
        return None
    text = str(value).strip().lower()
    if not text:
        return None
    if text not in _MODALITY_WORDS:
        raise InvalidInputError(
            f"{where}: modality must be 'ultrasound' or 'xray' (or empty), got {value!r}",
            code="bad_manifest",
        )
    return _MODALITY_WORDS[text]


def _read_manifest(path: Path) -> list[Source]:
    """Rows of a CSV or Parquet manifest: a ``path`` column (absolute, or relative to the
    manifest's folder) and an optional ``modality`` column."""
    import pyarrow as pa

    where = f"manifest {path.name}"
    try:
        if path.suffix.lower() == ".csv":
            from pyarrow import csv as pacsv

            table = pacsv.read_csv(
                path,
                convert_options=pacsv.ConvertOptions(
                    column_types={"path": pa.string(), "modality": pa.string()}
                ),
            )
        else:
            import pyarrow.parquet as pq

            table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInputError(
            f"{where}: not a readable {path.suffix.lstrip('.').upper()} table "
            f"({type(exc).__name__})",
            code="bad_manifest",
        ) from None
    if "path" not in table.column_names:
        raise InvalidInputError(
            f"{where}: no 'path' column (columns: {', '.join(table.column_names)})",
            code="bad_manifest",
        )
    paths = table.column("path").to_pylist()
    mods: list[object] = (
        table.column("modality").to_pylist()
        if "modality" in table.column_names
        else [None] * len(paths)
    )
    base = path.parent
    out: list[Source] = []
    for k, (p, m) in enumerate(zip(paths, mods, strict=True)):
        if p is None or not str(p).strip():
            raise InvalidInputError(f"{where}: empty path in row {k + 1}", code="bad_manifest")
        full = Path(str(p))
        if not full.is_absolute():
            full = base / full
        out.append(Source(os.path.abspath(full), _modality_of(m, f"{where}, row {k + 1}")))
    return out


def _expand(arg: str) -> Iterable[Source]:
    p = Path(arg)
    if p.is_dir():
        return (Source(os.path.abspath(f)) for f in _walk(p))
    if p.is_file():
        if p.suffix.lower() in MANIFEST_SUFFIXES:
            return _read_manifest(p)
        return [Source(os.path.abspath(p))]
    if _GLOB_CHARS.intersection(arg):
        matches = sorted(glob.glob(arg, recursive=True))
        files: list[Source] = []
        for m in matches:
            mp = Path(m)
            if mp.is_dir():
                files.extend(Source(os.path.abspath(f)) for f in _walk(mp))
            elif mp.is_file() and mp.suffix.lower() not in MANIFEST_SUFFIXES:
                files.append(Source(os.path.abspath(mp)))
        if not files:
            raise InvalidInputError(f"the pattern {arg!r} matches no file", code="no_input")
        return files
    raise InvalidInputError(f"no such file, folder or pattern: {arg!r}", code="no_input")


def collect(inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Source]:
    """Every input file, in order, each once (the first mention wins).

    Parameters
    ----------
    inputs : path-like or sequence of path-like
        Folders (searched recursively for image files: see :func:`_walk`), image files,
        glob patterns (``**`` allowed) and manifests (``.csv`` / ``.parquet`` with a
        ``path`` column and optionally a ``modality`` column; relative paths are taken
        relative to the manifest's folder).  A manifest may list files of any suffix.

    Raises
    ------
    InvalidInputError
        For a path that does not exist, a pattern without matches or a broken manifest.
        (The message quotes the argument the user typed, never a path read from a
        manifest.)
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    seen: set[str] = set()
    out: list[Source] = []
    for arg in inputs:
        for src in _expand(os.fspath(arg)):
            if src.path not in seen:
                seen.add(src.path)
                out.append(src)
    return out
