"""``medimg-edge compare OUTBOX``: champion vs shadow candidate of a watch-folder daemon,
from the per-result model records of its ledger (:mod:`medimg_edge.daemon._models`) and
the reviewers' feedback, with a PNG of the scores."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from .._modality import MODALITIES
from ._common import HelpFormatter

__all__ = ["COMPARE_HELP", "add_parser", "cmd_compare", "plot_pair"]

COMPARE_HELP = """\
Compare the champion with the shadow candidate (`medimg-edge watch --shadow MODEL`) on
the results both answered: agreement (same status and label), positive-score deltas
(candidate - champion) and, on the results reviewers labelled (`medimg-edge feedback`),
AUC, sensitivity and specificity of both.  One block per (champion, candidate) pair; the
model history (starts, promotions, rollbacks, switches) follows.  A PNG per pair (score
scatter coloured by the reviewers' label, histogram of the deltas, ROC curves of both)
goes to --plot-dir (default OUTBOX/.medimg-edge; needs matplotlib).

exit status: 0; 2 no ledger there or usage error.
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "compare",
        help="champion vs shadow candidate of a watch daemon: agreement, deltas, AUC (PNG)",
        description=COMPARE_HELP,
        formatter_class=HelpFormatter,
    )
    p.add_argument("outbox", metavar="OUTBOX", help="the daemon's outbox")
    p.add_argument("--modality", choices=MODALITIES, help="only this modality")
    p.add_argument("--state-dir", dest="state_dir", metavar="DIR", help="the daemon's state_dir")
    p.add_argument("--plot-dir", dest="plot_dir", metavar="DIR", help="where the PNGs go")
    p.add_argument("--no-plot", action="store_true", dest="no_plot", help="write no PNG")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.set_defaults(func=cmd_compare)


def _roc(truth: list[bool], score: list[float]) -> tuple[list[float], list[float]]:
    """ROC curve points (false-positive rate, true-positive rate), every threshold."""
    pos = sum(truth)
    neg = len(truth) - pos
    fpr, tpr = [0.0], [0.0]
    tp = fp = 0
    ranked = sorted(zip(score, truth, strict=True), key=lambda t: -t[0])
    for i, (s, t) in enumerate(ranked):
        tp += int(t)
        fp += int(not t)
        if i + 1 == len(ranked) or ranked[i + 1][0] != s:
            fpr.append(fp / neg)
            tpr.append(tp / pos)
    return fpr, tpr


def plot_pair(
    path: Path,
    pairs: list[dict[str, Any]],
    truth: dict[str, bool],
    title: str,
    result: dict[str, Any],
) -> None:
    """The PNG of one (champion, candidate) pair: score scatter (red: lesion, blue: none,
    grey: unlabelled), histogram of the score deltas, ROC curves of both on the labelled
    results."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    both = [
        p
        for p in pairs
        if p["champion"]["positive_score"] is not None and p["shadow"]["positive_score"] is not None
    ]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.4))
    ax = axes[0]
    for key, colour, name in ((True, "tab:red", "lesion"), (False, "tab:blue", "no lesion")):
        sel = [p for p in both if truth.get(p["result_id"]) is key]
        ax.scatter(
            [p["champion"]["positive_score"] for p in sel],
            [p["shadow"]["positive_score"] for p in sel],
            s=12,
            c=colour,
            label=f"{name} ({len(sel)})",
        )
    rest = [p for p in both if p["result_id"] not in truth]
    ax.scatter(
        [p["champion"]["positive_score"] for p in rest],
        [p["shadow"]["positive_score"] for p in rest],
        s=10,
        c="0.6",
        label=f"unlabelled ({len(rest)})",
    )
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="champion positive score", ylabel="candidate positive score", xlim=(0, 1))
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title(f"agreement {result['agreement']:.3f} on {result['n']}")
    deltas = [p["shadow"]["positive_score"] - p["champion"]["positive_score"] for p in both]
    axes[1].hist(deltas or [0.0], bins=30, color="tab:gray")
    axes[1].set(xlabel="candidate - champion score", ylabel="results")
    axes[1].set_title("score deltas")
    ax = axes[2]
    for role, style in (("champion", "-"), ("shadow", "--")):
        lab = [
            (truth[p["result_id"]], p[role]["positive_score"])
            for p in pairs
            if p["result_id"] in truth and p[role]["positive_score"] is not None
        ]
        ys = [t for t, _ in lab]
        if lab and any(ys) and not all(ys):
            fpr, tpr = _roc(ys, [s for _, s in lab])
            auc = result[role]["auc"]
            name = "champion" if role == "champion" else "candidate"
            ax.plot(fpr, tpr, style, label=f"{name} AUC {auc:.3f}")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate")
    ax.set_title(f"ROC on {result['labelled']} labelled")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def cmd_compare(args: argparse.Namespace) -> int:
    from ..daemon import _models
    from .promote import print_comparison

    state_dir = Path(args.state_dir) if args.state_dir else Path(args.outbox) / ".medimg-edge"
    db = _models.connect(state_dir / "ledger.sqlite")
    try:
        groups = _models.paired_records(db, args.modality)
        hist = _models.history(db)
    finally:
        db.close()
    labels = _models.feedback_labels(args.outbox, state_dir=args.state_dir)
    out: list[dict[str, Any]] = []
    for (champ_sha, shadow_sha), pairs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        c, s = pairs[0]["champion"], pairs[0]["shadow"]
        champion = f"{c['name']} {c['version']} (sha256 {champ_sha[:12]})"
        candidate = f"{s['name']} {s['version']} (sha256 {shadow_sha[:12]})"
        result = _models.evaluate_pair(pairs, labels)
        entry: dict[str, Any] = {
            "champion": {k: c[k] for k in ("name", "version")} | {"sha256": champ_sha},
            "candidate": {k: s[k] for k in ("name", "version")} | {"sha256": shadow_sha},
            "modalities": sorted({p["modality"] for p in pairs}),
            **result,
        }
        if not args.no_plot:
            try:
                png = Path(args.plot_dir) if args.plot_dir else state_dir
                png = png / f"compare-{champ_sha[:12]}-{shadow_sha[:12]}.png"
                truth = {
                    p["result_id"]: labels[p["result_id"]].strip().lower()
                    not in _models.NEGATIVE_LABELS
                    for p in pairs
                    if p["result_id"] in labels
                }
                plot_pair(png, pairs, truth, f"{champion}  vs  {candidate}", result)
                entry["plot"] = str(png)
            except ImportError:
                entry["plot"] = None
                print("note: no PNG (matplotlib is not installed)", file=sys.stderr)
        out.append(entry)
        if not args.json:
            print_comparison(result, champion, candidate)
            if entry.get("plot"):
                print(f"plot: {entry['plot']}")
            print()
    if args.json:
        doc = {"pairs": out, "history": hist}
        print(json.dumps(_models.json_safe(doc), indent=1, allow_nan=False))
        return 0
    if not out:
        print("no result was answered by a shadow candidate (run watch --shadow MODEL)")
    print("model history:")
    for h in hist:
        when = _iso(h["time"])
        what = f"{h['name']} {h['version']} (sha256 {str(h['sha256'])[:12]})" if h["name"] else ""
        print(f"  {when}  {h['action']:16} {h['modality'] or '':11} {what}")
    return 0


def _iso(t: float) -> str:
    import time

    if not math.isfinite(t):
        return "?"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
