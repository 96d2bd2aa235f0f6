"""Configuration of the watch-folder daemon: TOML file + command-line overrides.

Every key has a default; a key the daemon does not know, a value of the wrong type or out of
range is a :class:`ConfigError` that names the key (so a typo never silently falls back to a
default).  The file is read with :mod:`tomllib` (Python >= 3.11) or ``tomli`` (3.10).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import ipaddress
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .._errors import MedimgEdgeError
from .._modality import MODALITIES as _MODALITIES

__all__ = [
    "DEFAULT_IGNORE",
    "MODALITIES",
    "Config",
    "ConfigError",
    "load_config",
]

#: Names the daemon never treats as inputs (temporary files of writers and sync tools).
DEFAULT_IGNORE: tuple[str, ...] = ("*.part", "*.tmp", ".*", "~syncthing~*", ".syncthing.*")
MODALITIES = _MODALITIES


class ConfigError(MedimgEdgeError, ValueError):
    """The daemon configuration is invalid; the message names the key and the fix."""


@dataclass(frozen=True)
class Config:
    """Settings of one daemon run (see the README section "Watch-folder daemon").

    Paths are absolute after :func:`load_config`.  Times are in seconds, sizes in MiB.
    """

    inbox: Path
    outbox: Path
    processed_dir: Path
    failed_dir: Path
    state_dir: Path
    modality: str | None = None
    folders: dict[str, str] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)
    # candidate run beside the champion (``_models.py``): a model, or modality -> model
    shadow: str | dict[str, str] | None = None
    overlay: bool = False
    sr: bool = False
    sc: bool = False
    deidentify: bool = False
    sr_series_number: int = 9901  # Series Number of the SRs (_dicom.SR_SERIES_NUMBER)
    record_source_name: bool = False  # the original's name in the JSON record (opt-in)
    cine_frames: int = 3
    workers: int = 2
    queue_size: int = 0  # 0: 16 x workers
    settle_seconds: float = 2.0
    rescan_seconds: float = 10.0
    max_attempts: int = 3
    retry_seconds: float = 1.0
    retry_max_seconds: float = 300.0  # cap of the doubling retry back-off
    close_wait_seconds: float = 300.0  # a file held open (no event) waits this long for its close
    incomplete_attempts: int = 4  # reads of a truncated-looking file before quarantine
    incomplete_window_seconds: float = 60.0  # ... spread over this window
    quarantine_watch_seconds: float = 3600.0  # quarantined originals watched for late writes
    timeout_seconds: float = 120.0
    cpu_seconds: int = 120
    memory_limit_mb: int = 4096
    max_file_mb: int = 2048
    min_free_mb: float = 256.0
    ignore: tuple[str, ...] = DEFAULT_IGNORE
    health_host: str = "127.0.0.1"
    health_port: int | None = None
    log_level: str = "INFO"
    quality_gate: bool = True
    override_dicom_modality: bool = False
    # DICOM node (C-STORE SCP ``_scp.py``, forwarding ``_forward.py``)
    dicom_port: int | None = None
    dicom_host: str = "127.0.0.1"
    dicom_folder: str = "dicom"
    ae_title: str = "MEDIMG"
    allow_ae: tuple[str, ...] = ()
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    forward: tuple[Any, ...] = ()  # _forward.Destination
    forward_retry_seconds: float = 2.0
    forward_backoff_max_seconds: float = 300.0
    forward_max_attempts: int = 10

    @property
    def effective_queue_size(self) -> int:
        """The bound of the work queue (``queue_size``, or 16 per worker: claims are
        committed once per main-loop round, and the workers must not run dry between
        rounds)."""
        return self.queue_size or 16 * self.workers

    def is_ignored(self, name: str) -> bool:
        """Whether a file or folder name matches one of the ``ignore`` patterns."""
        return _ignore_regex(self.ignore).match(name) is not None

    def modality_for(self, relpath: str) -> str | None:
        """The modality of a file by its folder rule (longest matching prefix), else the
        default ``modality``.  ``relpath`` is relative to the inbox, ``/``-separated."""
        parts = PurePosixPath(relpath).parts[:-1]
        for n in range(len(parts), 0, -1):
            key = "/".join(parts[:n])
            if key in self.folders:
                return self.folders[key]
        return self.modality


@functools.lru_cache(maxsize=8)
def _ignore_regex(patterns: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


_BOOL: tuple[str, ...] = ("overlay", "sr", "sc", "deidentify", "quality_gate")
_BOOL += ("override_dicom_modality", "record_source_name")
_INT = {
    "workers": (1, 64),
    "queue_size": (0, 4096),
    "max_attempts": (1, 100),
    "cpu_seconds": (1, 86400),
    "memory_limit_mb": (64, 1 << 22),
    "max_file_mb": (1, 1 << 22),
    "cine_frames": (1, 64),
    "incomplete_attempts": (1, 20),
    "forward_max_attempts": (1, 1000),
    "sr_series_number": (0, 2**31 - 1),
}
_FLOAT = {
    "settle_seconds": (0.0, 3600.0),
    "rescan_seconds": (0.05, 3600.0),
    "retry_seconds": (0.0, 3600.0),
    "timeout_seconds": (0.5, 86400.0),
    "min_free_mb": (0.0, float(1 << 40)),
    "retry_max_seconds": (0.0, 86400.0),
    "close_wait_seconds": (0.0, 86400.0),
    "incomplete_window_seconds": (0.0, 86400.0),
    "quarantine_watch_seconds": (0.0, 30 * 86400.0),
    "forward_retry_seconds": (0.01, 3600.0),
    "forward_backoff_max_seconds": (0.01, 86400.0),
}
_PATHS = ("inbox", "outbox", "processed_dir", "failed_dir", "state_dir")
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _err(key: str, what: str) -> ConfigError:
    return ConfigError(f"config key {key!r}: {what}")


def _check_modality(key: str, value: object) -> str:
    if value not in MODALITIES:
        raise _err(key, f"must be one of {', '.join(MODALITIES)}, got {value!r}")
    return str(value)


def _coerce(key: str, value: object) -> Any:
    if key in _BOOL:
        if not isinstance(value, bool):
            raise _err(key, f"must be true or false, got {value!r}")
        return value
    if key in _INT:
        lo, hi = _INT[key]
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise _err(key, f"must be an integer in [{lo}, {hi}], got {value!r}")
        return value
    if key in _FLOAT:
        lo_f, hi_f = _FLOAT[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _err(key, f"must be a number in [{lo_f:g}, {hi_f:g}], got {value!r}")
        if not lo_f <= float(value) <= hi_f:
            raise _err(key, f"must be a number in [{lo_f:g}, {hi_f:g}], got {value!r}")
        return float(value)
    if key in _PATHS:
        if not isinstance(value, (str, os.PathLike)) or not str(value):
            raise _err(key, f"must be a path, got {value!r}")
        return Path(value).expanduser()
    if key == "modality":
        return None if value in (None, "") else _check_modality(key, value)
    if key == "folders":
        if not isinstance(value, dict):
            raise _err(key, 'must be a table: folder = "ultrasound" | "xray"')
        out: dict[str, str] = {}
        for folder, mod in value.items():
            clean = str(PurePosixPath(str(folder).strip("/")))
            if clean in ("", ".") or ".." in PurePosixPath(clean).parts:
                raise _err(key, f"folder {folder!r} must be a relative path inside the inbox")
            out[clean] = _check_modality(f"{key}.{folder}", mod)
        return out
    if key == "models":
        if not isinstance(value, dict):
            raise _err(key, 'must be a table: ultrasound = "name or sidecar path"')
        models: dict[str, str] = {}
        for mod, name in value.items():
            _check_modality(f"{key}.{mod}", mod)
            if not isinstance(name, str) or not name:
                raise _err(f"{key}.{mod}", f"must be a model name or path, got {name!r}")
            models[str(mod)] = name
        return models
    if key == "shadow":
        return _coerce_shadow(value)
    if key == "ignore":
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise _err(key, "must be a list of glob patterns")
        # The built-in patterns always apply: a config can add, never remove them.
        return tuple(dict.fromkeys([*DEFAULT_IGNORE, *value]))
    if key == "health_host":
        try:
            addr = ipaddress.ip_address(str(value))
        except ValueError:
            raise _err(key, f"must be a loopback IP address, got {value!r}") from None
        if not addr.is_loopback:
            raise _err(key, f"must be a loopback address (127.0.0.0/8 or ::1), got {value!r}")
        return str(addr)
    if key == "health_port":
        if value is None or value == "":
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
            raise _err(key, f"must be a TCP port in [0, 65535] (0: any free), got {value!r}")
        return value
    if key in _DICOM_KEYS:
        return _coerce_dicom(key, value)
    if key == "log_level":
        if not isinstance(value, str) or value.upper() not in _LEVELS:
            raise _err(key, f"must be one of {', '.join(_LEVELS)}, got {value!r}")
        return value.upper()
    raise _err(key, "unknown key (typo?)")


def _coerce_shadow(value: object) -> str | dict[str, str] | None:
    """``shadow``: a model name or sidecar path (it shadows the modality its package
    declares), or a table modality -> model; each must resolve to a valid sidecar."""
    from ._models import describe

    if value is None or value == "":
        return None
    items = {"": value} if isinstance(value, str) else value
    if not isinstance(items, dict):
        raise _err("shadow", 'must be a model name or path, or a table: ultrasound = "..."')
    for mod, ref in items.items():
        where = "shadow" if mod == "" else f"shadow.{mod}"
        if mod != "":
            _check_modality(where, mod)
        if not isinstance(ref, str) or not ref:
            raise _err(where, f"must be a model name or path, got {ref!r}")
        try:
            spec = describe(ref)
        except MedimgEdgeError as exc:
            raise _err(where, str(exc)) from None
        if mod != "" and spec.modality not in ("any", mod):
            raise _err(where, f"model {spec.name} is for {spec.modality} frames, not {mod}")
    return value if isinstance(value, str) else {str(k): str(v) for k, v in items.items()}


_DICOM_KEYS: tuple[str, ...] = ("dicom_port", "dicom_host", "dicom_folder", "ae_title")
_DICOM_KEYS += ("allow_ae", "forward", "tls_cert", "tls_key", "tls_ca")


def _coerce_dicom(key: str, value: object) -> Any:
    """The keys of the DICOM node (``_scp.py``, ``_forward.py``)."""
    from ._forward import parse_destination
    from ._scp import check_ae_title

    try:
        if key == "dicom_port":
            if value is None or value == "":
                return None
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
                raise _err(key, f"must be a TCP port in [0, 65535] (0: any free), got {value!r}")
            return value
        if key == "dicom_host":
            try:
                return str(ipaddress.ip_address(str(value)))
            except ValueError:
                raise _err(key, f"must be an IP address to bind, got {value!r}") from None
        if key == "dicom_folder":
            clean = str(PurePosixPath(str(value).strip("/")))
            parts = PurePosixPath(clean).parts
            if clean in ("", ".") or ".." in parts or any(p.startswith(".") for p in parts):
                raise _err(key, "must be a relative folder inside the inbox (no dot names)")
            return clean
        if key == "ae_title":
            return check_ae_title(value, key)
        if key == "allow_ae":
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, (list, tuple)):
                raise _err(key, "must be a list of AE titles")
            return tuple(check_ae_title(v, key) for v in items)
        if key == "forward":
            items = [value] if isinstance(value, (str, dict)) else value
            if not isinstance(items, (list, tuple)):
                raise _err(key, 'must be a list of "AE@HOST:PORT" or [[forward]] tables')
            return tuple(parse_destination(v) for v in items)
        # tls_cert / tls_key / tls_ca
        if value is None or value == "":
            return None
        if not isinstance(value, (str, os.PathLike)):
            raise _err(key, f"must be a path, got {value!r}")
        path = Path(value).expanduser().absolute()
        if not path.is_file():
            raise _err(key, f"{path} is not a readable file")
        return path
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


_KNOWN = {f.name for f in dataclasses.fields(Config)}


def _read_toml(path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path} ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: invalid TOML ({exc})") from None
    # Accept either top-level keys or a [watch] table.
    if "watch" in data and isinstance(data["watch"], dict):
        rest = {k: v for k, v in data.items() if k != "watch"}
        data = {**data["watch"], **rest}
    return data


def load_config(
    config_file: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Build a :class:`Config` from a TOML file (optional) and overrides (the command
    line; ``None`` values are ignored), validate it and make the paths absolute.

    Raises
    ------
    ConfigError
        For an unknown key, a value of the wrong type or range, an inbox that does not
        exist, or an outbox / state folder inside the inbox.
    """
    raw: dict[str, Any] = {}
    if config_file is not None:
        raw.update(_read_toml(Path(config_file)))
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _KNOWN:
            raise _err(key, "unknown key (typo?)")
        values[key] = _coerce(key, value)
    for key in ("inbox", "outbox"):
        if key not in values:
            raise _err(key, "is required")
    inbox = Path(os.path.realpath(values["inbox"]))
    if not inbox.is_dir():
        raise _err("inbox", f"{inbox} is not a folder")
    outbox = Path(os.path.abspath(values["outbox"]))
    values["inbox"] = inbox
    values["outbox"] = outbox
    values.setdefault("processed_dir", outbox / "processed")
    values.setdefault("failed_dir", outbox / "failed")
    values.setdefault("state_dir", outbox / ".medimg-edge")
    for key in ("outbox", "processed_dir", "failed_dir", "state_dir"):
        p = Path(os.path.realpath(os.path.abspath(values[key])))
        if p == inbox or inbox in p.parents:
            raise _err(key, "must not be inside the inbox (outputs would be read as inputs)")
        values[key] = p
    if values.get("record_source_name") and values.get("deidentify"):
        raise _err(
            "record_source_name",
            "cannot be combined with deidentify (a file name may identify the patient)",
        )
    if values.get("tls_key") is not None and values.get("tls_cert") is None:
        raise _err("tls_key", "needs tls_cert")
    if values.get("tls_ca") is not None and values.get("tls_cert") is None:
        raise _err("tls_ca", "needs tls_cert (the listener's certificate)")
    if values.get("record_source_name") and values.get("deidentify"):
        raise _err(
            "record_source_name",
            "cannot be combined with deidentify (a file name may identify the patient)",
        )
    return Config(**values)
