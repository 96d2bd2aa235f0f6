"""Watch-folder daemon (``medimg-edge watch``; the ``[daemon]`` extra).

Files dropped into an inbox folder are diagnosed exactly once, crash-safely: a persistent
SQLite ledger (not file-system events, which are only hints) decides what is new; only
complete files are taken (size and modification time stable over a settle interval,
temporary names ignored); each input is read and diagnosed in a worker subprocess bounded
in memory, CPU and wall-clock time; outputs are written atomically under an id that never
carries the original name; originals move to ``processed/`` or, with a reason record, to
``failed/``.  See :class:`Daemon` and the README section "Watch-folder daemon".
"""

from __future__ import annotations

from ._config import DEFAULT_IGNORE, Config, ConfigError, load_config
from ._ledger import Ledger
from ._service import Daemon, JsonFormatter, sd_notify, setup_logging

__all__ = [
    "DEFAULT_IGNORE",
    "Config",
    "ConfigError",
    "Daemon",
    "JsonFormatter",
    "Ledger",
    "load_config",
    "sd_notify",
    "setup_logging",
    "unit_file",
]


def unit_file() -> str:
    """The systemd unit shipped with the package (``medimg-edge-watch.service``)."""
    from importlib.resources import files

    return (files(__package__) / "medimg-edge-watch.service").read_text(encoding="utf-8")
