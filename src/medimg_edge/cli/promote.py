"""``medimg-edge promote OUTBOX MODEL`` and ``medimg-edge rollback OUTBOX``: safe model
upgrade of a watch-folder daemon (state and history in its ledger:
:mod:`medimg_edge.daemon._models`)."""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from .._errors import InvalidInputError, MedimgEdgeError, ModelError
from .._modality import MODALITIES
from ._common import HelpFormatter

__all__ = ["PROMOTE_HELP", "ROLLBACK_HELP", "add_parser", "cmd_promote", "cmd_rollback"]

PROMOTE_HELP = """\
Make MODEL (a model name or sidecar path) the champion of its modality in the watch
daemon of OUTBOX, if it is safe:

* its package verifies (sidecar schema and rules; every model file's size, sha256 and
  TFLite identifier; the model loads and runs a frame), else refused;
* it ran as the shadow (`medimg-edge watch --shadow MODEL`) on at least --min-labelled
  results that reviewers labelled (`medimg-edge feedback`), and on those results its AUC,
  sensitivity and specificity are each no more than --margin below the champion's, else
  refused (the comparison is printed either way).

The new champion and the history are recorded in the ledger (one transaction); a running
daemon is told by SIGHUP, loads and verifies the model in new workers, and switches each
worker once the files in it are done (no file lost, none diagnosed by a half-loaded
model); this command waits for it (--wait).  A daemon that is not running uses the new
champion at its next start.  Every result names the model (name, version, sha256) that
produced it.  `medimg-edge rollback OUTBOX` returns to the previous champion.

exit status: 0 promoted (or already the champion); 1 refused, or the daemon could not
load it (it keeps its model; the state is set back); 2 usage error.
"""

ROLLBACK_HELP = """\
Return the watch daemon of OUTBOX to the champion it had before the last promotion (or
rollback) of that modality, after verifying that model's package again (it must still be
the same file: same sha256).  Recorded in the ledger's history; a running daemon switches
as for promote.  Repeat to go further back.

exit status: 0 done; 1 refused (nothing to return to, the package does not verify) or the
daemon could not load it; 2 usage error.
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "promote",
        help="make a shadow-evaluated model the daemon's champion (gated on feedback)",
        description=PROMOTE_HELP,
        formatter_class=HelpFormatter,
    )
    p.add_argument("outbox", metavar="OUTBOX", help="the daemon's outbox")
    p.add_argument("model", metavar="MODEL", help="candidate model: name or sidecar path")
    p.add_argument(
        "--modality", choices=MODALITIES, help="for a model that declares modality 'any'"
    )
    p.add_argument(
        "--margin",
        type=float,
        default=None,
        metavar="X",
        help="largest drop of AUC, sensitivity or specificity accepted (default 0.02)",
    )
    p.add_argument(
        "--min-labelled",
        type=int,
        default=None,
        dest="min_labelled",
        metavar="N",
        help="labelled results both models answered, needed (default 20)",
    )
    _common_arguments(p)
    p.set_defaults(func=cmd_promote)

    r = sub.add_parser(
        "rollback",
        help="return the daemon to its previous champion model",
        description=ROLLBACK_HELP,
        formatter_class=HelpFormatter,
    )
    r.add_argument("outbox", metavar="OUTBOX", help="the daemon's outbox")
    r.add_argument(
        "--modality",
        choices=MODALITIES,
        help="which modality (default: the one changed last)",
    )
    _common_arguments(r)
    r.set_defaults(func=cmd_rollback)


def _common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--state-dir",
        dest="state_dir",
        metavar="DIR",
        help="the daemon's state_dir (default OUTBOX/.medimg-edge)",
    )
    p.add_argument(
        "--wait",
        type=float,
        default=120.0,
        metavar="S",
        help="wait this long for a running daemon to switch (0: do not wait; default 120)",
    )
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")


def _state_dir(args: argparse.Namespace) -> Path:
    return Path(args.state_dir) if args.state_dir else Path(args.outbox) / ".medimg-edge"


def _fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def print_comparison(result: dict[str, Any], champion: str, candidate: str) -> None:
    """The side-by-side table of :func:`~medimg_edge.daemon._models.evaluate_pair`."""
    d = result["score_delta"]
    print(f"champion : {champion}")
    print(f"candidate: {candidate}")
    print(
        f"results answered by both: {result['n']}, agreement {_fmt(result['agreement'])} "
        f"(status {_fmt(result['status_agreement'])}), score delta mean {_fmt(d['mean'])} "
        f"mean |d| {_fmt(d['mean_abs'])} max |d| {_fmt(d['max_abs'])}"
    )
    c, s = result["champion"], result["shadow"]
    print(
        f"labelled: {result['labelled']} ({c['positives']} with lesion, {c['negatives']} without)"
    )
    print(f"{'':14}{'champion':>10}{'candidate':>11}")
    for key in ("auc", "sensitivity", "specificity", "indeterminate"):
        print(f"{key:14}{_fmt(c[key]):>10}{_fmt(s[key]):>11}")


def _daemon_pid(state_dir: Path) -> int | None:
    """The pid of the daemon running on this state folder (it holds a ``flock`` on it),
    None when none runs."""
    try:
        fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pass  # held: a daemon runs
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
    finally:
        os.close(fd)
    try:
        doc = json.loads((state_dir / "daemon.json").read_text())
        pid = int(doc["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    # daemon.json is written once the daemon handles SIGHUP; a stale one (the daemon is
    # still starting) names a process that is gone, or another program: never signalled
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return pid if b"medimg" in cmdline else None


def _tell_daemon(db: sqlite3.Connection, state_dir: Path, seq: int, wait: float) -> int:
    """SIGHUP the running daemon and wait for it to report the switch (history rows after
    ``seq``); returns the exit status."""
    from ..daemon import _models

    pid = _daemon_pid(state_dir)
    if pid is None:
        print(
            "no daemon is running on this outbox (or it is still starting): the model is "
            "used from its next start (a starting daemon: send it SIGHUP once it is ready)"
        )
        return 0
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        print(f"could not signal the daemon (pid {pid}: {exc.strerror}); send it SIGHUP")
        return 0
    if wait <= 0:
        print(f"daemon (pid {pid}) told to switch (SIGHUP); not waiting")
        return 0
    end = time.monotonic() + wait
    while time.monotonic() < end:
        for h in _models.history(db, seq):
            if h["detail"].get("pid") != pid:
                continue
            if h["action"] == "applied":
                print(f"daemon (pid {pid}) switched: new files are diagnosed by the new model")
                return 0
            if h["action"] == "switch_failed":
                print(
                    f"refused by the daemon: it could not load the model "
                    f"({h['detail'].get('error')}); it keeps its model",
                    file=sys.stderr,
                )
                return 1
        time.sleep(0.1)
    print(f"the daemon (pid {pid}) did not report the switch within {wait:g} s", file=sys.stderr)
    return 1


def cmd_promote(args: argparse.Namespace) -> int:
    from ..daemon import _models

    margin = _models.DEFAULT_MARGIN if args.margin is None else args.margin
    min_labelled = _models.DEFAULT_MIN_LABELLED if args.min_labelled is None else args.min_labelled
    if not (0.0 <= margin <= 1.0) or min_labelled < 1:
        raise InvalidInputError("--margin must be in [0, 1] and --min-labelled >= 1")
    state_dir = _state_dir(args)
    db = _models.connect(state_dir / "ledger.sqlite")
    try:
        try:
            spec = _models.verify_package(args.model, args.modality)
        except ModelError as exc:
            print(f"refused: the package {args.model} does not verify: {exc}", file=sys.stderr)
            _models.record(db, "promote_refused", detail={"model": args.model, "why": str(exc)})
            return 1
        modality = args.modality or spec.modality
        if modality == "any":
            raise InvalidInputError(
                f"model {spec.name} serves any modality: pass --modality", code="usage"
            )
        row = _models.read_state(db).get(modality)
        if row is None:
            raise InvalidInputError(
                f"no {modality} champion recorded: start the daemon on this outbox first",
                code="no_champion",
            )
        if row.spec.sha256 == spec.sha256:
            print(f"{spec.label()} is already the {modality} champion")
            return 0
        pairs = _models.paired_records(db, modality).get((row.spec.sha256, spec.sha256), [])
        labels = _models.feedback_labels(args.outbox, state_dir=args.state_dir)
        negatives = frozenset(n for n in (_negative(row.spec.ref), _negative(spec.ref)) if n)
        result = _models.evaluate_pair(pairs, labels, negative_labels=negatives)
        ok, reasons = _models.gate(result, margin=margin, min_labelled=min_labelled)
        detail = {
            "comparison": result,
            "margin": margin,
            "min_labelled": min_labelled,
            "reasons": reasons,
        }
        if args.json:
            print(json.dumps({"promoted": ok, **_models.json_safe(detail)}, indent=1))
        else:
            print_comparison(result, row.spec.label(), spec.label())
        if not ok:
            for why in reasons:
                print(f"refused: {why}", file=sys.stderr)
            _models.record(
                db,
                "promote_refused",
                modality=modality,
                spec=spec,
                previous=row.spec,
                detail=detail,
            )
            return 1
        seq = _models.promote(db, modality, spec, detail)
        print(f"promoted: {spec.label()} is the {modality} champion (was {row.spec.label()})")
        return _tell_daemon(db, state_dir, seq, args.wait)
    finally:
        db.close()


def _negative(ref: str) -> str | None:
    from ..runtime import read_package

    try:
        return read_package(ref).negative_label
    except MedimgEdgeError:
        return None


def cmd_rollback(args: argparse.Namespace) -> int:
    from ..daemon import _models

    state_dir = _state_dir(args)
    db = _models.connect(state_dir / "ledger.sqlite")
    try:
        modality = args.modality
        if modality is None:
            changed = [
                h["modality"]
                for h in _models.history(db)
                if h["action"] in ("promote", "rollback", "config") and h["modality"]
            ]
            if not changed:
                print("refused: no promotion recorded: nothing to return to", file=sys.stderr)
                return 1
            modality = changed[-1]
        try:
            seq, old, new = _models.rollback(db, modality, {"pid": os.getpid()})
        except (ModelError, InvalidInputError) as exc:
            print(f"refused: {exc}", file=sys.stderr)
            return 1
        print(f"rolled back: the {modality} champion is {new.label()} (was {old.label()})")
        return _tell_daemon(db, state_dir, seq, args.wait)
    finally:
        db.close()
