"""Which SIMD target the C++ kernels run on, and how to cap it.

The extension carries one compiled copy of every kernel per SIMD target (x86-64:
``scalar``, ``sse4``, ``avx2``, ``avx512``; aarch64: ``scalar``, ``neon``) and picks the
best one this CPU supports at run time.  The environment variable ``MEDIMG_EDGE_SIMD``
(read at import) caps the choice, as does :func:`use_target` for a block of code.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from . import _core
from ._errors import InvalidInputError

__all__ = [
    "ENV_VAR",
    "active_target",
    "compiled_targets",
    "set_target_cap",
    "supported_targets",
    "target_cap",
    "use_target",
]

#: Environment variable that caps the SIMD target (``scalar``, ``sse4``, ``avx2``,
#: ``avx512``, ``neon``).
ENV_VAR = "MEDIMG_EDGE_SIMD"
KNOWN_TARGETS = ("scalar", "sse4", "avx2", "avx512", "neon")

_lock = threading.RLock()


def compiled_targets() -> tuple[str, ...]:
    """SIMD targets compiled into this build, weakest first."""
    return tuple(_core.compiled_targets())


def supported_targets() -> tuple[str, ...]:
    """Compiled SIMD targets this CPU can run, weakest first."""
    return tuple(_core.supported_targets())


def active_target() -> str:
    """The SIMD target the kernels use now."""
    return str(_core.active_target())


def target_cap() -> str | None:
    """The current cap, or ``None``."""
    cap = str(_core.target_cap())
    return cap or None


def set_target_cap(name: str | None) -> None:
    """Cap the SIMD target process-wide (``None`` removes the cap).

    The kernels use the best target the CPU supports that is not stronger than ``name``.

    Raises
    ------
    InvalidInputError
        If ``name`` is not a target compiled into this build.
    """
    if name is None:
        name = ""
    if not isinstance(name, str):
        raise InvalidInputError(f"SIMD target must be a string, got {name!r}")
    name = name.strip().lower()
    if name and name not in compiled_targets():
        raise InvalidInputError(
            f"SIMD target {name!r} is not compiled into this build; "
            f"choose one of {', '.join(compiled_targets())}"
        )
    with _lock:
        _core.set_target_cap(name)


@contextmanager
def use_target(name: str | None) -> Iterator[str]:
    """Run a block with the SIMD target capped at ``name``; yields the active target.

    The cap is process-wide: do not use this while other threads run kernels that must
    not be affected (it is meant for tests and benchmarks).
    """
    with _lock:
        previous = target_cap()
        set_target_cap(name)
        try:
            yield active_target()
        finally:
            _core.set_target_cap(previous or "")


def _apply_environment() -> None:
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if not value:
        return
    if value not in compiled_targets():
        warnings.warn(
            f"{ENV_VAR}={value!r} ignored: not a compiled SIMD target "
            f"(compiled: {', '.join(compiled_targets())})",
            RuntimeWarning,
            stacklevel=3,
        )
        return
    _core.set_target_cap(value)


_apply_environment()
