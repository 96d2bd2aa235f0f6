"""Exception hierarchy of medimg-edge (the public contract, DESIGN.md section 3)."""

from __future__ import annotations

__all__ = ["DelegateError", "InvalidInputError", "MedimgEdgeError", "ModelError"]


class MedimgEdgeError(Exception):
    """Base class of every error medimg-edge raises on purpose."""


class InvalidInputError(MedimgEdgeError, ValueError):
    """An input image or parameter is unusable; the message says how to fix it.

    Parameters
    ----------
    message : str
        What is wrong and how to fix it.  Never carries patient identifiers.
    code : str, optional
        A short machine-readable reason (``"truncated"``, ``"too_large"``,
        ``"unsupported_format"``, ...) for logs, quarantine records and batch summaries;
        ``"invalid_input"`` when nothing more specific applies.
    """

    def __init__(self, message: str = "", *, code: str = "invalid_input") -> None:
        super().__init__(message)
        self.code = code


class ModelError(MedimgEdgeError):
    """A model file or its sidecar is missing, corrupt, tampered with or unsupported."""


class DelegateError(MedimgEdgeError):
    """A requested hardware delegate (e.g. the Edge TPU) could not be used."""
