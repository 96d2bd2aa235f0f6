"""``medimg-edge synth``: labelled phantoms (class folders, masks, manifest.csv)."""

from __future__ import annotations

import argparse

from .._modality import MODALITIES
from ._common import HelpFormatter

__all__ = ["add_parser", "cmd_synth"]

SYNTH_HELP = """\
Simulate labelled phantom frames with medimg_edge.synth (X-ray: chest projections with
or without a nodule; ultrasound: B-mode with a cyst, a hypoechoic or a hyperechoic lesion
or none) and write them as class folders OUT/<label>/, their lesion masks under
OUT/masks/<label>/ and OUT/manifest.csv (path, label, modality, bounding box).
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "synth",
        help="simulate labelled phantoms (class folders, masks, manifest.csv)",
        description=SYNTH_HELP,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--modality", required=True, choices=MODALITIES)
    p.add_argument("-n", type=int, default=100, help="number of samples")
    p.add_argument("--seed", type=int, default=0, help="seed of the set")
    p.add_argument("--size", type=int, default=256, help="image side, 64-2048")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--format", default="png", choices=("png", "npy", "dcm"), help="file format")
    p.add_argument("--positive-fraction", type=float, default=0.5, help="fraction with a lesion")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_synth)


def cmd_synth(args: argparse.Namespace) -> int:
    from collections import Counter

    from .. import synth

    samples = synth.generate(
        args.modality,
        args.n,
        seed=args.seed,
        size=args.size,
        positive_fraction=args.positive_fraction,
        progress=not args.no_progress,
    )
    manifest = synth.write(samples, args.out, fmt=args.format)
    counts = Counter(s.label for s in samples)
    summary = ", ".join(f"{label} {counts[label]}" for label in synth.LABELS[args.modality])
    print(f"synth {args.modality}: {len(samples)} samples ({summary}); wrote {manifest}")
    return 0
