"""What the ``medimg-edge`` commands share: the help formatter, the input collector and
the check for an optional extra."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["HelpFormatter", "collect_images", "collect_or_report", "missing_extra"]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks and appends ``(default: X)`` to every option
    whose help does not state its default already (flags and options without a default
    are left alone)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or "%(default)" in text:
            return text
        default = action.default
        if default is None or default is False or default is argparse.SUPPRESS:
            return text
        if not action.option_strings:
            return text
        return text + " (default: %(default)s)"


def collect_images(paths: Sequence[str]) -> list[tuple[Path, Path]]:
    """(file, key) for every image to process; key is the path relative to the folder
    argument it was found in (the file name for a file argument), used to find masks.
    Folders are walked by :func:`medimg_edge.io.find_images`; a file argument is taken
    whatever its extension."""
    from ..io import find_images

    found: list[tuple[Path, Path]] = []
    seen: set[Path] = set()
    for arg in paths:
        root = Path(arg)
        if root.is_dir():
            items = [(f, f.relative_to(root)) for f in find_images(root)]
        elif root.is_file():
            items = [(root, Path(root.name))]
        else:
            raise FileNotFoundError(arg)
        for f, key in items:
            resolved = f.resolve()
            if resolved not in seen:
                seen.add(resolved)
                found.append((f, key))
    return found


def collect_or_report(paths: Sequence[str]) -> list[tuple[Path, Path]]:
    """:func:`collect_images`, printing the usage error (and returning []) when a path
    does not exist or no image is found."""
    try:
        files = collect_images(paths)
    except FileNotFoundError as exc:
        print(f"error: no such file or folder: {exc.args[0]}", file=sys.stderr)
        return []
    if not files:
        print("error: no image files found (extensions: see --help)", file=sys.stderr)
    return files


def missing_extra(modules: Sequence[str], extra: str) -> str | None:
    """The error line for a command whose optional extra is not installed (None when
    every module in ``modules`` can be imported); checked before any work starts."""
    missing = []
    for m in modules:
        try:
            found = importlib.util.find_spec(m) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(m)
    if not missing:
        return None
    return (
        f"error: this command needs the [{extra}] extra ({', '.join(missing)} not "
        f"installed): pip install 'medimg-edge[{extra}]'"
    )
