"""The one image collector (``medimg-edge diagnose`` / ``features`` and ``medimg-edge batch``
walk folders with it)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ._open import sniff_format

__all__ = ["IMAGE_SUFFIXES", "find_images"]

#: File name suffixes the readers recognise (lower case).  Files with another suffix are
#: still read when their content starts with a known signature.
IMAGE_SUFFIXES: tuple[str, ...] = (
    ".png",
    ".jpg",
    ".jpeg",
    ".tif",
    ".tiff",
    ".npy",
    ".dcm",
    ".dicom",
)


def _is_dicom_without_suffix(path: Path) -> bool:
    """The file is regular and has the DICOM signature (opened without blocking and
    checked with ``fstat`` before the read: a FIFO or a device is never read)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        head = os.pread(fd, 132, 0)
    except OSError:
        return False
    finally:
        os.close(fd)
    return sniff_format(head) == "dicom"


def find_images(root: str | os.PathLike[str]) -> list[Path]:
    """Image files under the folder ``root``, recursively, sorted by their path relative
    to ``root`` (runs are reproducible).

    A file is an image when its suffix is one of :data:`IMAGE_SUFFIXES`, or when it has no
    suffix and the DICOM signature (archives store ``IM000001``-style names).  Skipped:
    hidden files and folders (``.name``), and the ``masks/`` folder of a data set written
    by :func:`medimg_edge.synth.write` (a ``masks`` folder beside a ``manifest.csv``):
    its segmentation masks are not frames to diagnose.
    """
    base = Path(root)
    found: list[Path] = []
    for folder, dirs, files in os.walk(base):
        keep = [d for d in dirs if not d.startswith(".")]
        if "masks" in keep and "manifest.csv" in files:
            keep.remove("masks")
        dirs[:] = sorted(keep)
        for name in files:
            if name.startswith("."):
                continue
            p = Path(folder, name)
            suffix = p.suffix.lower()
            if suffix in IMAGE_SUFFIXES or (suffix == "" and _is_dicom_without_suffix(p)):
                found.append(p)
    found.sort(key=lambda f: f.relative_to(base).as_posix())
    return found
