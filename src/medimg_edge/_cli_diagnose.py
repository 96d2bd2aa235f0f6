"""Deprecated location of :mod:`medimg_edge.cli.diagnose` (kept for callers of
``overlay_name``; import from ``medimg_edge.cli.diagnose``)."""

from __future__ import annotations

from .cli.diagnose import overlay_name

__all__ = ["overlay_name"]
