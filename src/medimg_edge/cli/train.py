"""``medimg-edge train``: train a CNN on phantoms or a folder and export an int8 model
package (the ``[train]`` extra)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .._modality import MODALITIES
from ._common import HelpFormatter, missing_extra

#: training.NetConfig.freeze choices (kept here: the CLI must not import TensorFlow).
FREEZE_CHOICES = ("none", "backbone")

__all__ = ["TRAIN_MODULES", "add_parser", "cmd_train"]

TRAIN_HELP = """\
Train the two-head (classification + heatmap) depthwise-separable CNN on phantoms of
medimg_edge.synth, or on a folder DATA/<class>/*.png|*.dcm (masks in DATA/masks/), and
export a full-int8 TFLite package (model, sidecar JSON with the sha256, model card).
--reference builds both reference models and their reports.  --init MODEL --data DIR
fine-tunes an existing package (e.g. us_lesion) on a labelled folder: it starts from the
package's own (dequantised int8) weights, keeps its modality, input size and labels,
re-fits calibration, threshold, the OOD guards and the drift reference, and writes a new
package whose provenance names its parent.  Needs the [train] extra
(TensorFlow, scikit-learn, matplotlib): without it the command stops at once with the
install command.
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "train",
        help="train a CNN on phantoms or a folder and export an int8 package ([train] extra)",
        description=TRAIN_HELP,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--modality", choices=MODALITIES, help="frames to train on")
    p.add_argument("--reference", action="store_true", help="build both reference models")
    p.add_argument("--name", help="package name (default <modality>_model)")
    p.add_argument("--out", help="output folder (default trained-models; models with --reference)")
    p.add_argument(
        "--data", metavar="DIR", help="train on DIR/<class>/*.png|*.dcm (masks: DIR/masks/)"
    )
    ft = p.add_argument_group("fine-tuning (with --init)")
    ft.add_argument(
        "--init", metavar="MODEL", help="start from this package (name or sidecar path)"
    )
    ft.add_argument(
        "--freeze",
        choices=FREEZE_CHOICES,
        default="none",
        help="layers kept fixed: none, or the backbone (only the heads learn)",
    )
    ft.add_argument(
        "--replay",
        type=int,
        default=0,
        metavar="N",
        help="mix N phantoms of the parent's domain into training (keeps what it knew)",
    )
    ft.add_argument("--version", help="package version (default <parent version>+ft.<date>)")
    p.add_argument(
        "--learning-rate", type=float, help="Adam learning rate (default 3e-3, 3e-4 with --init)"
    )
    p.add_argument("--size", type=int, default=128, help="model input side")
    p.add_argument("--frame-size", type=int, default=256, help="phantom side")
    p.add_argument("--n-train", type=int, default=8000, help="phantom training frames")
    p.add_argument("--n-val", type=int, default=1000, help="phantom validation frames")
    p.add_argument("--epochs", type=int, default=12, help="training epochs")
    p.add_argument("--batch-size", type=int, default=64, help="frames per batch")
    p.add_argument("--seed", type=int, default=0, help="network seed")
    p.add_argument("--evaluate", action="store_true", help="also evaluate and write a report")
    p.add_argument("--n-test", type=int, default=2000, help="test frames with --evaluate")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)


#: What the [train] extra installs (checked before train / evaluate start any work).
TRAIN_MODULES = ("tensorflow", "sklearn", "matplotlib")


def cmd_train(args: argparse.Namespace) -> int:
    error = missing_extra(TRAIN_MODULES, "train")
    if error is not None:
        print(error, file=sys.stderr)
        return 2
    from .. import training

    progress = not args.no_progress
    if args.reference:
        out = Path(args.out or "models")
        training.build_reference(out, command="medimg-edge train --reference", progress=progress)
        print(f"wrote the reference models and reports to {out}")
        return 0
    if args.init is not None and args.data is None:
        print("error: --init needs --data DIR (the folder to fine-tune on)", file=sys.stderr)
        return 2
    if args.init is None and (args.freeze != "none" or args.replay or args.version):
        print("error: --freeze, --replay and --version apply with --init only", file=sys.stderr)
        return 2
    if args.modality is None and args.init is None:
        print("error: --modality is required (or --reference, or --init)", file=sys.stderr)
        return 2
    argv = [a if a != args.data else "DATA_DIR" for a in sys.argv[1:]] if args.data else None
    default_lr = 3e-4 if args.init is not None else 3e-3
    name = args.name or (
        f"{Path(args.init).stem if args.init.endswith(('.json', '.tflite')) else args.init}_ft"
        if args.init is not None
        else f"{args.modality}_model"
    )
    out = Path(args.out or "trained-models")
    cfg = training.TrainConfig(
        modality=args.modality or "",
        name=name,
        out_dir=out,
        size=args.size,
        frame_size=args.frame_size,
        n_train=args.n_train,
        n_val=args.n_val,
        data_dir=Path(args.data) if args.data else None,
        net=training.NetConfig(
            epochs=args.epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            learning_rate=args.learning_rate or default_lr,
            freeze=args.freeze,
        ),
        init_package=args.init,
        replay=args.replay,
        version=args.version,
        features=args.evaluate,
        progress=progress,
        command="medimg-edge " + " ".join(argv if argv is not None else sys.argv[1:]),
    )
    if args.evaluate:
        res = training.train_and_report(cfg, n_test=args.n_test)
        print(training.metrics_tables(res))
    else:
        result = training.train(cfg)
        training.write_model_card(
            result.sidecar,
            None,
            training.model_ops(cfg.out_dir.joinpath(f"{name}.tflite").read_bytes()),
            result.summary,
            None,
        )
        (out / "reports" / name).mkdir(parents=True, exist_ok=True)
        (out / "reports" / name / f"{name}_float.tflite").write_bytes(result.float_tflite)
    print(f"wrote {out / name}.tflite, .json and .md")
    return 0
