"""Configuration of a batch run: what to compute, the models, the salt, the config id."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .._durable import atomic_write
from .._errors import InvalidInputError
from .._modality import MODALITIES as _MODALITIES
from .._version import __version__
from ._schema import SCHEMA_VERSION, WHAT

__all__ = ["SALT_ENV", "BatchConfig", "load_salt", "make_config", "parse_what", "salt_path"]

#: Environment variable holding the salt (text; at least 16 characters).
SALT_ENV = "MEDIMG_EDGE_SALT"
_MIN_SALT = 16


@dataclass(frozen=True)
class ModelRef:
    """A model as the workers load it (``ref``: name or absolute sidecar path)."""

    ref: str
    name: str
    version: str
    sha256: str


@dataclass(frozen=True)
class BatchConfig:
    """Everything a worker needs (small and picklable: it travels with every task)."""

    what: tuple[str, ...]
    modality: str | None
    models: tuple[tuple[str, ModelRef], ...]
    quality_gate: bool
    keep_ids: bool
    salt: bytes
    run: int
    config_id: str
    override_dicom_modality: bool = False

    def model_for(self, modality: str) -> ModelRef | None:
        for mod, ref in self.models:
            if mod == modality:
                return ref
        return None


def parse_what(what: str | Sequence[str]) -> tuple[str, ...]:
    """``"features,quality"`` or a sequence of names -> the names in canonical order."""
    items = what.split(",") if isinstance(what, str) else list(what)
    names = {str(w).strip().lower() for w in items if str(w).strip()}
    if not names:
        raise InvalidInputError(f"what must name at least one of {', '.join(WHAT)}")
    unknown = sorted(names - set(WHAT))
    if unknown:
        raise InvalidInputError(f"unknown what {', '.join(unknown)}: choose from {', '.join(WHAT)}")
    return tuple(w for w in WHAT if w in names)


def salt_path(out: Path) -> Path:
    """Where a generated salt is kept: ``<out>.salt`` beside the output (not inside it,
    so the output folder can be shared without the salt)."""
    return out.with_name(out.name + ".salt")


def load_salt(salt_file: str | os.PathLike[str] | None, out: Path | None) -> bytes:
    """The salt of the identifier hashes, in this order: ``salt_file``; the environment
    variable :data:`SALT_ENV`; ``<out>.salt``; else a new random salt (32 bytes, hex),
    written atomically (temporary file, fsync, rename) to ``<out>.salt`` with mode 0600
    (only the owner may read it) so that a resumed run hashes the same way.  Without
    ``out`` a new salt is used and not kept.
    """
    if salt_file is not None:
        p = Path(salt_file)
        try:
            data = p.read_bytes().strip()
        except OSError as exc:
            raise InvalidInputError(
                f"cannot read the salt file {p.name} ({type(exc).__name__})"
            ) from None
        if len(data) < _MIN_SALT:
            raise InvalidInputError(f"the salt file must hold at least {_MIN_SALT} bytes")
        return data
    env = os.environ.get(SALT_ENV, "").strip()
    if env:
        if len(env) < _MIN_SALT:
            raise InvalidInputError(f"{SALT_ENV} must hold at least {_MIN_SALT} characters")
        return env.encode("utf-8")
    if out is None:
        return secrets.token_hex(32).encode("ascii")
    kept = salt_path(out)
    if kept.is_file():
        data = kept.read_bytes().strip()
        if len(data) >= _MIN_SALT:
            return data
    kept.parent.mkdir(parents=True, exist_ok=True)
    salt = secrets.token_hex(32).encode("ascii")
    atomic_write(kept, salt + b"\n", mode=0o600, prefix=".")
    return salt


def _model_ref(name_or_path: str) -> tuple[ModelRef, str]:
    """The model's reference and its modality (``"any"`` for both).

    The package is read and its model file verified against the sidecar's sha256 (so a
    missing or damaged model stops the run before it starts), without building an
    interpreter: the workers build theirs, and check they got the same sha256."""
    from ..runtime import read_package, read_verified
    from ..runtime._package import find_sidecar

    ref = name_or_path
    if os.path.exists(name_or_path):
        ref = os.path.abspath(name_or_path)  # workers see the same absolute path
    pkg = read_package(find_sidecar(ref))
    read_verified(pkg.cpu)
    found = ModelRef(ref, str(pkg.name), str(pkg.version), str(pkg.cpu.sha256))
    return found, str(pkg.modality)


def _resolve_models(
    what: tuple[str, ...], modality: str | None, model: str | None
) -> tuple[tuple[str, ModelRef], ...]:
    if "diagnosis" not in what:
        return ()
    from ..diagnosis import REFERENCE_MODELS

    if model is None:
        # Both: a DICOM header decides its file's modality, whatever --modality says.
        return tuple((m, _model_ref(REFERENCE_MODELS[m])[0]) for m in _MODALITIES)
    ref, pkg_modality = _model_ref(model)
    if modality is not None:
        if pkg_modality not in ("any", modality):
            raise InvalidInputError(
                f"model {ref.name} is for {pkg_modality} frames, not {modality}"
            )
        return ((modality, ref),)
    if pkg_modality == "any":
        return tuple((m, ref) for m in _MODALITIES)
    return ((pkg_modality, ref),)


def make_config(
    *,
    what: tuple[str, ...],
    modality: str | None,
    model: str | None,
    quality_gate: bool,
    keep_ids: bool,
    salt: bytes,
    run: int,
    override_dicom_modality: bool = False,
) -> BatchConfig:
    """Resolve the models and compute the config id: the sha256 (16 hex) of the package
    version, the schema version, ``what``, the modality option, the models' names,
    versions and sha256 and the quality gate.  A file is skipped on resume only when a
    successful row with the same config id exists (so a new package or model version, or
    a different ``what``, redoes everything)."""
    if modality is not None and modality not in _MODALITIES:
        raise InvalidInputError(f"modality must be 'ultrasound' or 'xray', got {modality!r}")
    models = _resolve_models(what, modality, model)
    canon = {
        "package_version": __version__,
        "schema_version": SCHEMA_VERSION,
        "what": list(what),
        "modality": modality,
        "models": [[m, r.name, r.version, r.sha256] for m, r in models],
        "quality_gate": quality_gate,
    }
    if override_dicom_modality:
        canon["override_dicom_modality"] = True
    config_id = hashlib.sha256(json.dumps(canon, sort_keys=True).encode()).hexdigest()[:16]
    return BatchConfig(
        what=what,
        modality=modality,
        models=models,
        quality_gate=quality_gate,
        keep_ids=keep_ids,
        salt=salt,
        run=run,
        config_id=config_id,
        override_dicom_modality=override_dicom_modality,
    )
