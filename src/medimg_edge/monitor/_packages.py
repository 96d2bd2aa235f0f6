"""Which package a result came from, and its drift reference."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from ._drift import Reference, reference_of

__all__ = ["find_reference"]


def find_reference(
    model: Mapping[str, Any], search: Iterable[str | os.PathLike[str]] = ()
) -> tuple[Reference | None, str]:
    """The drift reference of the package a result's ``model`` names.

    The packages searched are ``search`` (model names, sidecar paths or folders of
    sidecars) and then every model of ``me.list_models()`` (the bundled ones and
    ``$MEDIMG_EDGE_MODEL_PATH``); the one with the result's name whose CPU or Edge TPU
    file has the result's sha256 is taken.

    Returns
    -------
    (Reference or None, str)
        The reference (None when none is found or the package has none) and, for None,
        why (for the log and ``/healthz``).
    """
    from ..runtime._package import find_package

    pkg = find_package(model.get("name"), model.get("sha256"), search)
    if pkg is None:
        return None, "no package of that name and sha256 was found"
    try:
        ref = reference_of(pkg.meta)
    except ValueError as exc:
        return None, f"the drift reference cannot be read ({exc})"
    return ref, "" if ref is not None else "the model's sidecar has no drift reference"
