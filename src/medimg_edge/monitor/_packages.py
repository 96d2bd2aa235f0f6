"""Which package a result came from, and its drift reference."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
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
    from ..runtime import list_models, read_package
    from ..runtime._package import find_sidecar

    name, sha = model.get("name"), model.get("sha256")
    candidates: list[Path] = []
    for item in search:
        p = Path(item)
        if p.is_dir():
            candidates.extend(sorted(p.glob("*.json")))
            continue
        with contextlib.suppress(Exception):
            candidates.append(find_sidecar(item))
    with contextlib.suppress(Exception):
        candidates.extend(Path(m["sidecar"]) for m in list_models())
    for sidecar in candidates:
        try:
            pkg = read_package(sidecar)
        except Exception:
            continue
        shas = {pkg.cpu.sha256} | ({pkg.edgetpu.sha256} if pkg.edgetpu else set())
        if pkg.name != name or sha not in shas:
            continue
        try:
            ref = reference_of(pkg.meta)
        except ValueError as exc:
            return None, f"the drift reference cannot be read ({exc})"
        return ref, "" if ref is not None else "the model's sidecar has no drift reference"
    return None, "no package of that name and sha256 was found"
