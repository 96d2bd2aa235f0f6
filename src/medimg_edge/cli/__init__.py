"""Command-line interface: ``medimg-edge <command>``, one module per command.

``info``, ``demo``, ``features``, ``train``, ``evaluate``, ``synth``, ``diagnose`` (through
:mod:`medimg_edge.triage`), ``bench``, ``watch`` (the watch-folder daemon), ``batch``
(archive analysis into Parquet); ``_common`` holds what they share and ``_main`` the
parser.  :func:`main` returns a process exit code: 0 success, 1 runtime failure (some
files failed), 2 usage or input error.

This module only re-exports :func:`main` and :func:`build_parser`, lazily: ``python -m
medimg_edge.cli.watch`` (and ``.batch``) run one command without importing the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._main import build_parser, main

__all__ = ["build_parser", "main"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import _main

        return getattr(_main, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
