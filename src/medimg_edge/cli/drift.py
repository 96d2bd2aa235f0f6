"""``medimg-edge drift``: the drift report of an outbox (the results the daemon wrote)."""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._errors import InvalidInputError
from ._common import HelpFormatter

__all__ = ["add_parser", "cmd_drift", "drift_report", "read_outbox"]

DRIFT_HELP = """\
Read the result records (<id>.json) of an outbox in the order they were written, replay
them per model through the drift monitor the daemon runs (the same windows and tests
against the reference in the model's sidecar), print a report (per model: results, the
alarms raised and when, each signal's latest PSI and p-value, its recent median against
the reference's 5-95 % band) and, with --png, plot every signal over time against its
reference band. Models whose sidecar has no drift reference are listed as unavailable.
Exit status 0 when no signal is in alarm at the end, 1 when one is, 2 for a usage error.
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "drift",
        help="drift report of an outbox's results against the models' references",
        description=DRIFT_HELP,
        formatter_class=HelpFormatter,
    )
    p.add_argument("outbox", metavar="OUTBOX", help="the daemon's output folder")
    p.add_argument(
        "--since", metavar="ISO", help="only results written at or after this time (ISO 8601)"
    )
    p.add_argument("--png", metavar="FILE", help="write the plot of the signals here")
    p.add_argument(
        "--models",
        action="append",
        default=[],
        metavar="PATH",
        help="a sidecar or folder of sidecars to look the models up in (repeatable; the "
        "bundled models and $MEDIMG_EDGE_MODEL_PATH are searched too)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_drift)


def _since(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        t = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInputError(
            f"--since {text!r} is not an ISO 8601 time (e.g. 2026-12-04T02:00:00Z)"
        ) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.timezone.utc)
    return t.timestamp()


def read_outbox(
    outbox: str | Path, since: float | None = None
) -> list[tuple[float, dict[str, Any]]]:
    """``(written, record)`` of every result record in ``outbox`` (``<id>.json`` at its top
    level; reason files, hidden and temporary files are not results), oldest first.

    Raises
    ------
    InvalidInputError
        ``outbox`` is not a folder.
    """
    root = Path(outbox)
    if not root.is_dir():
        raise InvalidInputError(f"{root} is not a folder (give the daemon's outbox)")
    out: list[tuple[float, str, dict[str, Any]]] = []
    for f in root.glob("*.json"):
        if f.name.startswith(".") or f.name.endswith(".reason.json"):
            continue
        try:
            mtime = f.stat().st_mtime
            if since is not None and mtime < since:
                continue
            doc = json.loads(f.read_bytes())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and "status" in doc and "model" in doc:
            out.append((mtime, f.name, doc))
    out.sort(key=lambda t: (t[0], t[1]))
    return [(t, d) for t, _, d in out]


def drift_report(
    records: Sequence[tuple[float, dict[str, Any]]], search: Sequence[str] = ()
) -> dict[str, Any]:
    """Replay ``records`` through a :class:`~medimg_edge.monitor.DriftMonitor` per model.

    Returns
    -------
    dict
        ``{"models": {key: {...}}, "config": {...}}``: per model the results, the first
        and last time, the alarm events (with the result index and time), the monitor's
        final status and the series of every signal (for :func:`plot`).
    """
    import logging

    from ..monitor import (
        DriftMonitor,
        find_reference,
        key_of_result,
        signals_of_result,
    )

    quiet = logging.getLogger("medimg_edge.monitor.replay")  # the report lists the alarms
    quiet.propagate = False
    if not quiet.handlers:
        quiet.addHandler(logging.NullHandler())
    mon = DriftMonitor(logger=quiet)
    models: dict[str, Any] = {}
    for t, doc in records:
        key = key_of_result(doc)
        if key is None:
            continue
        m = models.get(key)
        if m is None:
            ref, why = find_reference(doc["model"], search)
            mon.add_model(key, ref)
            m = models[key] = {
                "ref": ref,
                "why": why,
                "n": 0,
                "first": t,
                "last": t,
                "events": [],
                "series": {},
                "outcomes": [],
            }
        values, outcome = signals_of_result(doc)
        idx = m["n"]
        for name, v in values.items():
            m["series"].setdefault(name, ([], []))
            m["series"][name][0].append(idx)
            m["series"][name][1].append(v)
        m["outcomes"].append(outcome)
        for ev in mon.observe(key, values, outcome):
            m["events"].append({**ev, "index": idx, "time": _iso(t)})
        m["n"] += 1
        m["last"] = t
    status = mon.status()
    for key, m in models.items():
        m["status"] = status["models"].get(key, {})
    cfg = {k: status[k] for k in ("window", "check_every", "alpha", "psi_min", "persistence")}
    return {"config": cfg, "models": models}


def _iso(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _median_recent(series: tuple[list[int], list[float]], window: int) -> float | None:
    vals = series[1][-window:]
    if not vals:
        return None
    s = sorted(vals)
    return s[len(s) // 2]


def _format(rep: dict[str, Any]) -> str:
    cfg = rep["config"]
    lines = [
        f"drift monitor: window {cfg['window']}, a check every {cfg['check_every']} results, "
        f"family-wise alpha {cfg['alpha']:g} per check, PSI >= {cfg['psi_min']:g}, "
        f"{cfg['persistence']} checks in a row"
    ]
    if not rep["models"]:
        lines.append("no results")
    for key, m in rep["models"].items():
        lines.append("")
        lines.append(f"{key}: {m['n']} results, {_iso(m['first'])} .. {_iso(m['last'])}")
        if m["ref"] is None:
            lines.append(f"  drift monitoring unavailable: {m['why']}")
            continue
        st = m["status"]
        state = st.get("status", "warming_up")
        alarms = st.get("alarms", [])
        lines.append(
            f"  status: {state.upper()}"
            + (f" ({', '.join(alarms)})" if alarms else "")
            + f"; {st.get('checks', 0)} checks, {st.get('alarms_raised', 0)} alarm(s) raised"
        )
        for ev in m["events"]:
            what = "ALARM" if ev["event"] == "drift_alarm" else "cleared"
            lines.append(
                f"  {ev['time']} result {ev['index']}: {what} {ev['signal']} "
                f"(PSI {ev['psi']:.2f}, p {ev['p']:.2g})"
            )
        lines.append(
            f"  {'signal':28s} {'median':>10s} {'ref p05':>10s} {'ref p50':>10s} "
            f"{'ref p95':>10s} {'PSI':>6s} {'p':>8s}"
        )
        ref = m["ref"]
        for name, sig in st.get("signals", {}).items():
            med = _median_recent(m["series"].get(name, ([], [])), cfg["window"])
            band = ref.bands.get(name, {})

            def num(x: float | None) -> str:
                return f"{x:10.4g}" if x is not None else f"{'-':>10s}"

            flag = "  ALARM" if sig["alarm"] else ""
            lines.append(
                f"  {name:28s} {num(med)} {num(band.get('p05'))} {num(band.get('p50'))} "
                f"{num(band.get('p95'))} {sig['psi']:6.2f} {sig['p']:8.2g}{flag}"
            )
    return "\n".join(lines)


def plot(rep: dict[str, Any], path: str | Path) -> Path:
    """One panel per signal (values, their rolling median over the window, the reference's
    5-95 % and 1-99 % bands and median, alarms as red lines) and the outcome mix, one
    figure per model stacked in one PNG.

    Raises
    ------
    InvalidInputError
        matplotlib is not installed (the ``[train]`` extra).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InvalidInputError(
            "--png needs matplotlib: pip install matplotlib (or 'medimg-edge[train]')"
        ) from None
    import numpy as np

    win = int(rep["config"]["window"])
    panels: list[tuple[str, str, dict[str, Any]]] = []
    for key, m in rep["models"].items():
        if m["ref"] is None:
            continue
        for name in m["status"].get("signals", {}):
            panels.append((key, name, m))
    if not panels:
        raise InvalidInputError("nothing to plot: no results of a model with a drift reference")
    cols = 3
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    for ax, (key, name, m) in zip(axes.flat, panels, strict=False):
        ref = m["ref"]
        if name == "outcome":
            cats = list(ref.outcome_labels)
            outs = m["outcomes"]
            x = np.arange(len(outs))
            total = ref.outcome_counts.sum() or 1
            for j, c in enumerate(cats):
                ind = np.array([o == c for o in outs], float)
                csum = np.concatenate([[0.0], np.cumsum(ind)])
                lo = np.maximum(0, x + 1 - win)
                roll = (csum[x + 1] - csum[lo]) / (x + 1 - lo)  # the mean of the last window
                (line,) = ax.plot(x, roll, lw=1, label=c)
                ax.axhline(ref.outcome_counts[j] / total, ls="--", lw=0.8, color=line.get_color())
            ax.legend(fontsize=6, loc="upper right")
            ax.set_ylim(0, 1)
        else:
            idx, vals = m["series"].get(name, ([], []))
            band = ref.bands.get(name, {})
            if "p01" in band and "p99" in band:
                ax.axhspan(band["p01"], band["p99"], color="tab:green", alpha=0.12, lw=0)
            if "p05" in band and "p95" in band:
                ax.axhspan(band["p05"], band["p95"], color="tab:green", alpha=0.2, lw=0)
            if "p50" in band:
                ax.axhline(band["p50"], color="tab:green", lw=0.8, ls="--")
            if vals:
                v = np.asarray(vals, float)
                ax.plot(idx, v, ".", ms=1.5, color="0.55")
                med = [float(np.median(v[max(0, i - win + 1) : i + 1])) for i in range(v.size)]
                ax.plot(idx, med, color="tab:blue", lw=1.2)
        for ev in m["events"]:
            if ev["signal"] == name:
                ax.axvline(
                    ev["index"],
                    color="tab:red" if ev["event"] == "drift_alarm" else "tab:gray",
                    lw=1,
                )
        ax.set_title(f"{key}: {name}", fontsize=8)
        ax.tick_params(labelsize=6)
        ax.set_xlabel("result", fontsize=6)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def cmd_drift(args: argparse.Namespace) -> int:
    try:
        records = read_outbox(args.outbox, _since(args.since))
        rep = drift_report(records, args.models)
        if args.png:
            plot(rep, args.png)
    except InvalidInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        doc = {
            "config": rep["config"],
            "models": {
                k: {
                    "results": m["n"],
                    "first": _iso(m["first"]),
                    "last": _iso(m["last"]),
                    "available": m["ref"] is not None,
                    "reason": m["why"] or None,
                    "events": m["events"],
                    "status": m["status"],
                }
                for k, m in rep["models"].items()
            },
        }
        print(json.dumps(doc, indent=1))
    else:
        print(_format(rep))
        if args.png:
            print(f"plot: {args.png}")
    alarm = any(m["status"].get("alarms") for m in rep["models"].values())
    return 1 if alarm else 0
