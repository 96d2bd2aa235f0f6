"""``medimg-edge features PATH... --csv OUT.csv``: handcrafted features into a CSV."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .._errors import MedimgEdgeError
from ._common import HelpFormatter, collect_or_report

__all__ = ["add_parser", "cmd_features"]

_FEATURES_HELP = """\
Extract the handcrafted features of every image (PNG, JPEG, TIFF, .npy, DICOM) into one
CSV file: a row per image with the columns path, error, then the features of
medimg_edge.features.feature_names() in that order.  PATH may be a file (read whatever
its extension) or a folder (searched recursively for the extensions .png .jpg .jpeg .tif
.tiff .npy .dcm .dicom, in sorted order).  A file that cannot be read or analysed gets
an error code and message in the error column (read_error, mask_error, feature_error or
internal_error) and empty feature cells; the run goes on.

exit status: 0 every file analysed; 1 some files failed (see the error column); 2 usage
error (bad option, missing PATH, no image found, CSV not writable).
"""


_MASK_SUFFIXES = (".png", ".npy", ".tif", ".tiff")


def _find_mask(mask_dir: Path, key: Path) -> Path | None:
    for suffix in (*_MASK_SUFFIXES, key.suffix):
        candidate = mask_dir / key.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def _features_row(
    path: Path, key: Path, mask_dir: Path | None, levels: int, n_features: int
) -> tuple[str, list[str]]:
    """(error, feature cells) of one file; error is "" on success."""
    from .. import features
    from ..io import read_image

    empty = [""] * n_features
    try:
        image = read_image(path)
    except MedimgEdgeError as exc:
        return f"read_error: {exc}", empty
    mask = None
    if mask_dir is not None:
        mask_path = _find_mask(mask_dir, key)
        if mask_path is None:
            return f"mask_error: no mask for {key.as_posix()} in the mask folder", empty
        try:
            mask = read_image(mask_path) != 0
        except MedimgEdgeError as exc:
            return f"mask_error: {exc}", empty
    try:
        values = features.extract(image, mask, levels=levels)
    except MedimgEdgeError as exc:
        code = "mask_error" if mask is not None and "mask" in str(exc) else "feature_error"
        return f"{code}: {exc}", empty
    except Exception as exc:  # never stop the run on one file
        return f"internal_error: {type(exc).__name__}", empty
    return "", [repr(v) for v in values.values()]


def cmd_features(args: argparse.Namespace) -> int:
    import csv

    from tqdm import tqdm

    from .. import features

    files = collect_or_report(args.paths)
    if not files:
        return 2
    mask_dir = Path(args.mask_dir) if args.mask_dir else None
    if mask_dir is not None and not mask_dir.is_dir():
        print(f"error: --mask-dir {args.mask_dir} is not a folder", file=sys.stderr)
        return 2
    names = features.feature_names(levels=args.levels)
    failed = 0
    try:
        out = open(args.csv, "w", newline="", encoding="utf-8")
    except OSError as exc:
        print(f"error: cannot write {args.csv}: {exc.strerror}", file=sys.stderr)
        return 2
    with out:
        writer = csv.writer(out)
        writer.writerow(["path", "error", *names])
        for path, key in tqdm(
            files, desc="features", unit="file", file=sys.stderr, disable=args.no_progress
        ):
            error, cells = _features_row(path, key, mask_dir, args.levels, len(names))
            failed += bool(error)
            writer.writerow([str(path), error, *cells])
            out.flush()
    print(
        f"{len(files)} file(s), {failed} failed; wrote {args.csv}",
        file=sys.stderr,
    )
    return 1 if failed else 0


def _levels(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 2 <= value <= 256:
        raise argparse.ArgumentTypeError("must be in [2, 256]")
    return value


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "features",
        help="extract handcrafted features of image files into a CSV",
        description=_FEATURES_HELP,
        formatter_class=HelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    p.add_argument("--csv", required=True, metavar="OUT.csv", help="output CSV file")
    p.add_argument("--levels", type=_levels, default=32, help="GLCM grey levels, 2-256")
    p.add_argument(
        "--mask-dir",
        metavar="DIR",
        help="folder of masks (non-zero = region of interest) mirroring the images: the mask "
        "of image a/b.dcm found in a PATH folder is DIR/a/b.png (or .npy, .tif, .tiff, or the "
        "image's own extension), that of a PATH file x.jpg is DIR/x.png (...); an image "
        "without a mask fails with mask_error",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_features)
