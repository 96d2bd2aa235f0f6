"""``medimg-edge evaluate``: evaluate an int8 package on held-out phantoms (the ``[train]``
extra)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .._modality import MODALITIES
from ._common import HelpFormatter, missing_extra
from .train import TRAIN_MODULES

__all__ = ["add_parser", "cmd_evaluate"]

EVALUATE_HELP = """\
Evaluate an int8 model package on held-out phantoms of medimg_edge.synth: AUC,
sensitivity / specificity at the package's threshold, calibration, a classical baseline
(handcrafted features + logistic regression), stability over blur / dose levels and, with
--float-model, agreement with the float model; tables on stdout, a report with plots with
--report.  Needs the [train] extra: without it the command stops at once with the install
command.
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate an int8 package on held-out phantoms ([train] extra)",
        description=EVALUATE_HELP,
        formatter_class=HelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="model name, sidecar .json or .tflite")
    p.add_argument("--modality", required=True, choices=MODALITIES)
    p.add_argument("--n-test", type=int, default=2000, help="test frames")
    p.add_argument("--n-stability", type=int, default=600, help="frames per level")
    p.add_argument("--seed", type=int, default=303, help="test seed base")
    p.add_argument("--report", metavar="DIR", help="write report.md + plots here")
    p.add_argument("--float-model", metavar="PATH", help="float .tflite for agreement")
    p.add_argument("--baseline-n", type=int, help="cap the baseline's training frames")
    p.add_argument(
        "--no-robustness",
        action="store_true",
        help="skip the robustness matrix, the OOD suite and the second phantom family",
    )
    p.add_argument("--n-robust", type=int, default=300, help="frames per robustness cell")
    p.add_argument("--n-size", type=int, default=160, help="frames per size row (half >= 2048)")
    p.add_argument("--n-holdout", type=int, default=400, help="second-family frames")
    p.add_argument(
        "--robustness-sizes",
        type=lambda s: tuple(int(v) for v in s.split(",")),
        default=(256, 512, 1024, 2048, 3072),
        help="frame sides of the size rows, comma-separated",
    )
    p.add_argument("--json", action="store_true", help="print all metrics as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    error = missing_extra(TRAIN_MODULES, "train")
    if error is not None:
        print(error, file=sys.stderr)
        return 2
    from .. import training

    float_bytes = Path(args.float_model).read_bytes() if args.float_model else None
    res = training.evaluate(
        args.model,
        args.modality,
        n_test=args.n_test,
        n_stability=args.n_stability,
        seed=args.seed,
        report_dir=args.report,
        float_tflite=float_bytes,
        n_baseline_train=args.baseline_n,
        progress=not args.no_progress,
        robustness=not args.no_robustness,
        n_robust=args.n_robust,
        n_size=args.n_size,
        n_holdout=args.n_holdout,
        robustness_sizes=args.robustness_sizes,
    )
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(training.metrics_tables(res))
    return 0
