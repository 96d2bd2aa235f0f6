"""Issue 18 item 3: fine-tune ``us_lesion`` on 300 labelled frames of a shifted domain and
measure both models on that domain and on the original test phantoms.

    python scripts/measure_finetune.py [--n-train 300] [--n-test 600] [--blur 3.0]

The shifted domain is a lower-frequency probe: the ultrasound phantoms of ``me.synth`` with
a PSF blur of ``--blur`` px (sigma at 256 px; the training range is 0-1.5 px). The labelled
folder (PNG, DIR/<label>/) is written with seeds no reference set uses, fine-tuned with
``medimg_edge.training.train(init_package="us_lesion", ...)`` (what ``medimg-edge train
--init us_lesion --data DIR`` runs), and both packages are scored through ``load_model`` on
fresh shifted frames and on the original generator's test seeds (base 303). Prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from medimg_edge import synth
from medimg_edge.training import NetConfig, TrainConfig, input_spec, train
from medimg_edge.training._metrics import roc_auc
from medimg_edge.training._package import predict_package
from medimg_edge.training._train import SEEDS

#: Seed bases of this measurement (no reference set uses them).
FT_TRAIN_SEED, FT_TEST_SEED = 7_100_000, 7_200_000


def frames(
    n: int, seed: int, blur: float | None, size: int = 256, domain: str = "blur"
) -> list[synth.Sample]:
    """``n`` frames of the original generator (``blur=None``) or of the shifted domain."""
    if domain == "device" and blur is not None:
        from medimg_edge import holdout

        return [holdout.ultrasound(seed + i, size=size) for i in range(n)]
    kw = {} if blur is None else {"blur_px": blur}
    return [
        synth.ultrasound(seed + i, size=size, lesion_prior="conspicuous", **kw) for i in range(n)
    ]


def write_folder(samples: list[synth.Sample], root: Path) -> None:
    for i, s in enumerate(samples):
        d = root / s.label
        d.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / f"f{i:05d}.png"), s.image)


def auc_of(sidecar: Path, samples: list[synth.Sample]) -> float:
    from medimg_edge.preprocess import to_model_input

    meta = json.loads(sidecar.read_text())
    spec = input_spec(int(meta["input"]["height"]))
    x = np.stack([to_model_input(s.image, spec) for s in samples])
    p = predict_package(sidecar, x)["scores"]
    neg = meta["labels"].index(meta["negative_label"])
    y = np.array([s.label != meta["negative_label"] for s in samples])
    return float(roc_auc(y, 1.0 - p[:, neg]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=300)
    ap.add_argument("--n-test", type=int, default=600)
    ap.add_argument("--blur", type=float, default=3.0)
    ap.add_argument(
        "--domain",
        choices=("blur", "device"),
        default="blur",
        help="blur: me.synth with a wider PSF; device: the second phantom family "
        "(medimg_edge.holdout, an RF point-scatterer simulator with convex, phased and "
        "linear probes) standing in for a new scanner",
    )
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--freeze", default="none")
    ap.add_argument("--replay", type=int, default=300)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--out", type=Path, default=None, help="keep the fine-tuned package here")
    args = ap.parse_args()
    from medimg_edge.runtime._package import find_sidecar

    parent = find_sidecar("us_lesion")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "shifted"
        write_folder(frames(args.n_train, FT_TRAIN_SEED, args.blur, domain=args.domain), data)
        out = args.out or Path(tmp) / "out"
        cfg = TrainConfig(
            modality="ultrasound",
            name="us_lesion_ft",
            out_dir=out,
            data_dir=data,
            init_package="us_lesion",
            replay=args.replay,
            net=dataclasses.replace(
                NetConfig(), epochs=args.epochs, learning_rate=args.lr, freeze=args.freeze
            ),
            progress=False,
        )
        res = train(cfg)
        t_ft = time.perf_counter() - t0
        shifted = frames(args.n_test, FT_TEST_SEED, args.blur, domain=args.domain)
        original = frames(args.n_test, SEEDS["test"] * 1000, None)
        rows = []
        for name, sc in (("us_lesion (parent)", parent), ("fine-tuned", res.sidecar)):
            rows.append((name, auc_of(sc, shifted), auc_of(sc, original)))
    what = f"blur {args.blur} px" if args.domain == "blur" else "second phantom family"
    print(
        f"fine-tune: {args.n_train} labelled frames ({what}), replay "
        f"{args.replay}, freeze {args.freeze}, {args.epochs} epochs, lr {args.lr}: "
        f"{t_ft:.0f} s"
    )
    print("| model | shifted-domain AUC | original test AUC |")
    print("|---|---:|---:|")
    for name, a, b in rows:
        print(f"| {name} | {a:.3f} | {b:.3f} |")
    d_new, d_old = rows[1][1] - rows[0][1], rows[1][2] - rows[0][2]
    print(f"\nshifted domain {d_new:+.3f} (target >= +0.05), original {d_old:+.3f} (>= -0.01)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
