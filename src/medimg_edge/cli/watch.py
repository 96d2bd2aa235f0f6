"""``medimg-edge watch INBOX --out OUTBOX``: the watch-folder daemon (the ``[daemon]``
extra); ``python -m medimg_edge.cli.watch`` runs it without the other commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from .._modality import MODALITIES
from ._common import HelpFormatter

__all__ = ["WATCH_HELP", "add_parser", "cmd_watch", "main"]

WATCH_HELP = """\
Watch INBOX (and every subfolder, also ones created later) and diagnose each complete
image file dropped into it exactly once: PNG, JPEG, TIFF, .npy, DICOM, through the same
input path as the API and `medimg-edge diagnose` (a DICOM header decides its modality;
CT, MR, NM, ... DICOM are quarantined as unsupported_modality; a multi-frame file is
diagnosed on 3 sampled frames and the result names its frame).  A file is complete
when its size and modification time have not changed for the settle interval; temporary
names (*.part, *.tmp, dotfiles, ~syncthing~*, .syncthing.*) are ignored.  For each input
OUTBOX gets <id>.json (the diagnosis), and with --overlay <id>.overlay.png, with --sr a
DICOM Comprehensive SR <id>.sr.dcm, with --sc a Secondary Capture <id>.sc.dcm (both for
DICOM inputs only).  The original moves to OUTBOX/processed/<id>.<ext>, or, if it
cannot be read, to OUTBOX/failed/ with <id>.reason.json (error code, message, attempts).
<id> never carries the original file name; a SQLite ledger in OUTBOX/.medimg-edge/
remembers every input, so a restart (even after kill -9 or power loss) neither loses nor
repeats one.

Settings come from --config FILE.toml (keys: modality, settle_seconds, rescan_seconds,
workers, queue_size, timeout_seconds, cpu_seconds, memory_limit_mb, max_file_mb,
max_attempts, retry_seconds, min_free_mb, overlay, sr, sc, deidentify,
sr_series_number, record_source_name, cine_frames,
override_dicom_modality, ignore, health_host, health_port, log_level, processed_dir,
failed_dir, state_dir, dicom_port, dicom_host, dicom_folder, ae_title, allow_ae,
tls_cert, tls_key, tls_ca, forward_retry_seconds, forward_backoff_max_seconds,
forward_max_attempts, shadow; a [folders] table maps subfolders to modalities, us =
"ultrasound"; a [models] table names a model per modality; one [[forward]] table per
PACS: ae_title, host, port, calling_ae, sc, tls, tls_ca) and the options below, which
win.  Signals: SIGTERM / SIGINT finish
the files in flight and stop; SIGHUP reloads the config.  Logs are JSON lines on stderr,
without patient data at any level.

A file held open by its writer is not taken (Linux close-write events) until it is
closed (or close_wait_seconds pass without an event); a file that changes after it
was taken is taken again; a read that looks incomplete is retried (incomplete_attempts
over incomplete_window_seconds) before quarantine.  Intake pauses while the disk of the
outbox or of the ledger has less than min_free_mb free or the ledger cannot be written
(disk full): the daemon waits and retries, it does not exit.  More keys:
retry_max_seconds, close_wait_seconds, incomplete_attempts, incomplete_window_seconds,
quarantine_watch_seconds.

Models: the champion of each modality is the one `medimg-edge promote` / `rollback`
recorded in the ledger, as long as the config still names the model it named then;
otherwise the config's [models] entry (else the reference model).  --shadow MODEL (or
shadow = "MODEL") runs a candidate beside it; SIGHUP switches to newly recorded models
(loaded and verified in new workers first) and to a changed shadow.

exit status: 0 stopped cleanly; 1 the daemon failed (an internal error; the log says
what; restart it: nothing is lost); 2 usage, configuration or model error, or a damaged
ledger (the message names the file and the fix; systemd does not restart on 2).
Not for clinical use.
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "watch",
        help="watch-folder daemon: diagnose every file dropped into a folder, exactly once",
        description=WATCH_HELP,
        formatter_class=HelpFormatter,
    )
    _add_arguments(p)
    p.set_defaults(func=cmd_watch)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inbox", metavar="INBOX", help="folder to watch")
    p.add_argument("--out", required=True, metavar="OUTBOX", help="folder for the results")
    p.add_argument("--config", metavar="FILE.toml", help="configuration file (TOML)")
    p.add_argument(
        "--modality",
        choices=MODALITIES,
        help="modality of non-DICOM inputs and of DICOM without a usable Modality tag "
        "(a DICOM header decides for itself; CT/MR/... DICOM are refused)",
    )
    p.add_argument(
        "--override-dicom-modality",
        action="store_true",
        default=None,
        dest="override_dicom_modality",
        help="DANGER, research only: --modality wins over every DICOM header, including "
        "CT/MR/... (answers are meaningless for such frames)",
    )
    p.add_argument("--overlay", action="store_true", default=None, help="write overlay PNGs")
    p.add_argument("--sr", action="store_true", default=None, help="write DICOM SR (DICOM in)")
    p.add_argument("--sc", action="store_true", default=None, help="write DICOM Secondary Capture")
    p.add_argument(
        "--deidentify",
        action="store_true",
        default=None,
        help="de-identify DICOM outputs (PS3.15 Basic Profile)",
    )
    p.add_argument(
        "--sr-series-number",
        type=int,
        metavar="N",
        dest="sr_series_number",
        help="Series Number of the SRs (default 9901)",
    )
    p.add_argument(
        "--record-source-name",
        action="store_true",
        default=None,
        dest="record_source_name",
        help="put the original file name (path in the inbox) in the JSON record (opt-in: "
        "a file name may identify the patient)",
    )
    p.add_argument("--workers", type=int, metavar="N", help="worker processes (default 2)")
    p.add_argument(
        "--settle",
        type=float,
        metavar="S",
        dest="settle_seconds",
        help="a file is complete when unchanged for S seconds (default 2)",
    )
    p.add_argument(
        "--rescan",
        type=float,
        metavar="S",
        dest="rescan_seconds",
        help="full rescan of the inbox every S seconds (default 10; events come sooner)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        dest="timeout_seconds",
        help="wall-clock limit per file; the worker is killed past it (default 120)",
    )
    p.add_argument(
        "--max-attempts",
        type=int,
        metavar="N",
        dest="max_attempts",
        help="attempts before a file that crashes or hangs a worker is quarantined (3)",
    )
    p.add_argument(
        "--min-free-mb",
        type=float,
        metavar="MB",
        dest="min_free_mb",
        help="pause intake while the outbox has less free space (default 256)",
    )
    p.add_argument(
        "--health-port",
        type=int,
        metavar="PORT",
        dest="health_port",
        help="serve /healthz and /metrics on 127.0.0.1:PORT (0: any free port)",
    )
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], dest="log_level")
    p.add_argument(
        "--shadow",
        metavar="MODEL",
        help="run this candidate model (name or sidecar path) beside the champion on the "
        "same frames; its answers go to the ledger only, never into a result "
        "(medimg-edge compare / promote OUTBOX)",
    )
    _add_dicom_arguments(p)
    p.add_argument(
        "--exit-when-idle",
        action="store_true",
        help="stop once every file in the inbox is done (batch mode)",
    )


def _add_dicom_arguments(p: argparse.ArgumentParser) -> None:
    """The DICOM node: C-STORE listener and forwarding (see daemon/README.md)."""
    g = p.add_argument_group("DICOM node")
    g.add_argument(
        "--dicom-port",
        type=int,
        metavar="PORT",
        dest="dicom_port",
        help="receive images by DICOM C-STORE on PORT (0: any free); each instance enters "
        "the inbox (INBOX/dicom/) before it is acknowledged",
    )
    g.add_argument("--ae-title", metavar="AE", dest="ae_title", help="our AE title (MEDIMG)")
    g.add_argument(
        "--allow-ae",
        nargs="+",
        action="extend",
        metavar="AE",
        dest="allow_ae",
        help="accept associations only from these calling AE titles",
    )
    g.add_argument(
        "--bind",
        metavar="ADDR",
        dest="dicom_host",
        help="address of the listener (default 127.0.0.1; 0.0.0.0: every interface)",
    )
    g.add_argument("--tls-cert", metavar="PEM", dest="tls_cert", help="TLS certificate")
    g.add_argument("--tls-key", metavar="PEM", dest="tls_key", help="TLS private key")
    g.add_argument(
        "--tls-ca", metavar="PEM", dest="tls_ca", help="require client certificates from this CA"
    )
    g.add_argument(
        "--forward",
        action="append",
        metavar="AE@HOST:PORT",
        help="send every SR (and SC with --sc) by C-STORE to this PACS; repeatable; "
        "queued durably, retried with back-off",
    )
    g.add_argument(
        "--forward-stow",
        action="append",
        metavar="URL",
        dest="forward",
        type=lambda url: {"url": url},
        help="the same by DICOMweb STOW-RS to this service root (e.g. "
        "https://pacs/dicom-web); repeatable",
    )


#: Parsed options that are not configuration overrides (``command`` and ``func`` are set
#: by ``medimg-edge``'s own parser).
_NOT_OVERRIDES = frozenset({"inbox", "out", "config", "exit_when_idle", "command", "func"})


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Every option named like its configuration key (``None``: not given), the inbox and
    the outbox."""
    out = {k: v for k, v in vars(args).items() if k not in _NOT_OVERRIDES}
    out["inbox"] = args.inbox
    out["outbox"] = args.out
    return out


def cmd_watch(args: argparse.Namespace) -> int:
    import importlib

    # The [daemon] extra, checked before anything starts (the daemon imports some lazily).
    missing = []
    for module in ("prometheus_client", "watchdog", "pydicom", "highdicom"):
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        print(
            f"error: the watch daemon needs the [daemon] extra ({', '.join(missing)} "
            "missing): pip install 'medimg-edge[daemon]'",
            file=sys.stderr,
        )
        return 2
    from ..daemon import ConfigError, Daemon, load_config, setup_logging

    overrides = _overrides(args)
    try:
        config = load_config(args.config, overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.log_level)
    daemon = Daemon(
        config,
        config_file=args.config,
        overrides=overrides,
        exit_when_idle=args.exit_when_idle,
    )
    try:
        return daemon.run()
    except Exception as exc:
        import logging

        logging.getLogger("medimg_edge.daemon").critical(
            f"the daemon failed: {_describe(exc)}; restart it (nothing is lost)",
            extra={"event": "crashed", "exc_type": type(exc).__name__},
        )
        return 1


def _describe(exc: BaseException) -> str:
    """A human message for an unexpected error, without its text where that may quote a
    path (``OSError``: the error's name and meaning only)."""
    import errno
    import os
    import sqlite3

    if isinstance(exc, OSError) and exc.errno is not None:
        name = errno.errorcode.get(exc.errno, str(exc.errno))
        return f"{os.strerror(exc.errno)} ({name})"
    if isinstance(exc, sqlite3.Error):  # SQLite's messages name no file
        return f"ledger error: {exc}"
    return f"unexpected internal error ({type(exc).__name__}; a bug: please report the log)"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m medimg_edge.cli.watch INBOX --out OUTBOX ...`` (same as
    ``medimg-edge watch``)."""
    p = argparse.ArgumentParser(
        prog="medimg-edge watch",
        description=WATCH_HELP,
        formatter_class=HelpFormatter,
    )
    _add_arguments(p)
    return cmd_watch(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
