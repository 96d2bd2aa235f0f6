"""Training and evaluation data: ``me.synth`` phantoms or a folder of labelled images,
preprocessed with the runtime's own :func:`medimg_edge.runtime.to_model_input`."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from .._errors import InvalidInputError
from ..runtime import InputSpec, to_model_input

__all__ = [
    "HEATMAP_STRIDE",
    "MODALITIES",
    "Dataset",
    "folder_dataset",
    "heat_target",
    "input_spec",
    "synth_dataset",
]

#: The heatmap has 1/HEATMAP_STRIDE of the input resolution.
HEATMAP_STRIDE = 8
MODALITIES = ("xray", "ultrasound")
#: Seeds of the chunks of a generated set: ``seed * CHUNK_SEEDS + c`` for chunk ``c``.
CHUNK_SEEDS = 1000
CHUNK = 250

F32 = npt.NDArray[np.float32]
Box = tuple[int, int, int, int]


@dataclasses.dataclass
class Dataset:
    """Preprocessed frames with labels, heatmap targets and (optionally) handcrafted features.

    Attributes
    ----------
    x : ndarray of float32, shape (N, H, W, 1)
        ``to_model_input`` of each frame (values in [0, 1]).
    y : ndarray of int64, shape (N,)
        Class index into ``labels``.
    heat : ndarray of float32, shape (N, H/8, W/8, 1)
        Fraction of lesion pixels per heatmap cell (area-downsampled mask).
    heat_weight : ndarray of float32, shape (N,)
        1 where the heatmap target is known (mask given, or a negative frame), else 0.
    bboxes, frame_shapes : list
        Lesion bounding box ``(y0, x0, y1, x1)`` in frame pixels (None without lesion or
        mask) and the frame's ``(height, width)``.
    features : ndarray of float32, shape (N, 66), or None
        :func:`medimg_edge.features.extract` of each raw frame (classical baseline).
    labels, negative_label, source : str
        Class names, the lesion-free class, a description of where the data came from.
    """

    x: F32
    y: npt.NDArray[np.int64]
    heat: F32
    heat_weight: F32
    bboxes: list[Box | None]
    frame_shapes: list[tuple[int, int]]
    features: F32 | None
    labels: tuple[str, ...]
    negative_label: str
    source: str

    def __len__(self) -> int:
        return int(self.y.size)

    @property
    def negative_index(self) -> int:
        return self.labels.index(self.negative_label)

    @property
    def positive(self) -> npt.NDArray[np.bool_]:
        """Lesion present (label is not the negative label)."""
        out: npt.NDArray[np.bool_] = self.y != self.negative_index
        return out

    @property
    def has_masks(self) -> bool:
        return bool(np.any(self.heat_weight[self.positive] > 0))

    def subset(self, idx: Any) -> Dataset:
        """The samples at ``idx`` (an index array or boolean mask)."""
        ii = np.flatnonzero(idx) if np.asarray(idx).dtype == bool else np.asarray(idx)
        return dataclasses.replace(
            self,
            x=self.x[ii],
            y=self.y[ii],
            heat=self.heat[ii],
            heat_weight=self.heat_weight[ii],
            bboxes=[self.bboxes[i] for i in ii],
            frame_shapes=[self.frame_shapes[i] for i in ii],
            features=None if self.features is None else self.features[ii],
        )


def input_spec(size: int) -> InputSpec:
    """The model input: ``size x size`` gray, mean 0, std 1, no denoising."""
    if not isinstance(size, int) or size < 32 or size > 1024 or size % HEATMAP_STRIDE:
        raise InvalidInputError(
            f"size must be an integer in [32, 1024] divisible by {HEATMAP_STRIDE}, got {size!r}"
        )
    return InputSpec("image", size, size, 1, "gray", (0.0,), (1.0,), "none")


def heat_target(mask: Any, grid: tuple[int, int]) -> F32:
    """Fraction of lesion pixels in each cell of a ``grid = (h, w)`` heatmap (area resize)."""
    m = np.asarray(mask, dtype=np.float32)
    out = np.asarray(cv2.resize(m, (grid[1], grid[0]), interpolation=cv2.INTER_AREA))
    clipped: F32 = np.clip(out, 0.0, 1.0).astype(np.float32)
    return clipped


def _check_modality(modality: str) -> str:
    if modality not in MODALITIES:
        raise InvalidInputError(f"modality must be one of {MODALITIES}, got {modality!r}")
    return modality


class _Builder:
    """Accumulates preprocessed samples."""

    def __init__(self, spec: InputSpec, with_features: bool) -> None:
        self.spec = spec
        self.grid = (spec.height // HEATMAP_STRIDE, spec.width // HEATMAP_STRIDE)
        self.with_features = with_features
        self.x: list[F32] = []
        self.y: list[int] = []
        self.heat: list[F32] = []
        self.hw: list[float] = []
        self.boxes: list[Box | None] = []
        self.shapes: list[tuple[int, int]] = []
        self.feats: list[F32] = []

    def add(self, frame: Any, label: int, mask: Any | None, box: Box | None, known: bool) -> None:
        arr = np.asarray(frame)
        self.x.append(to_model_input(arr, self.spec))
        self.y.append(label)
        if mask is None:
            self.heat.append(np.zeros(self.grid, np.float32))
        else:
            self.heat.append(heat_target(mask, self.grid))
        self.hw.append(1.0 if known else 0.0)
        self.boxes.append(box)
        self.shapes.append((int(arr.shape[0]), int(arr.shape[1])))
        if self.with_features:
            from .. import features

            vals = features.extract(arr)
            self.feats.append(np.fromiter(vals.values(), np.float32, len(vals)))

    def build(self, labels: tuple[str, ...], negative: str, source: str) -> Dataset:
        n = len(self.y)
        h, w = self.spec.height, self.spec.width
        return Dataset(
            x=np.stack(self.x) if n else np.zeros((0, h, w, 1), np.float32),
            y=np.asarray(self.y, np.int64),
            heat=(np.stack(self.heat) if n else np.zeros((0, *self.grid), np.float32))[..., None],
            heat_weight=np.asarray(self.hw, np.float32),
            bboxes=self.boxes,
            frame_shapes=self.shapes,
            features=np.stack(self.feats) if self.with_features and n else None,
            labels=labels,
            negative_label=negative,
            source=source,
        )


def synth_dataset(
    modality: str,
    n: int,
    *,
    seed: int,
    size: int = 128,
    frame_size: int = 256,
    features: bool = False,
    workers: int = 1,
    progress: bool = False,
    **synth_kwargs: Any,
) -> Dataset:
    """Generate ``n`` phantoms with :func:`medimg_edge.synth.generate` and preprocess them.

    The set is made of chunks of 250 frames; chunk ``c`` is ``generate(modality, 250,
    seed=seed * 1000 + c, size=frame_size, **synth_kwargs)``, so sets with different
    ``seed`` never share a generator seed (``me.synth`` guarantees sets with different seeds
    share no sample). Half the frames have a lesion (``positive_fraction=0.5``).

    Parameters
    ----------
    modality : {"xray", "ultrasound"}
    n : int
        Number of frames (1 to 1,000,000).
    seed : int
        Seed base (>= 0).
    size : int
        Model input side (divisible by 8).
    frame_size : int
        Side of the generated frames (>= 64), area-resized to ``size`` by
        ``to_model_input``.
    features : bool
        Also compute :func:`medimg_edge.features.extract` of each raw frame.
    workers : int
        Threads generating chunks in parallel.
    progress : bool
        tqdm progress bar on stderr.
    **synth_kwargs
        Passed to ``generate`` (e.g. ``dose=...`` for X-ray, ``snr_db=...`` for ultrasound).
    """
    from tqdm import tqdm

    from .. import synth

    _check_modality(modality)
    if not isinstance(n, int) or not 1 <= n <= 1_000_000:
        raise InvalidInputError(f"n must be an integer in [1, 1000000], got {n!r}")
    if not isinstance(seed, int) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}")
    spec = input_spec(size)
    labels = tuple(synth.LABELS[modality])
    sizes = [min(CHUNK, n - c * CHUNK) for c in range((n + CHUNK - 1) // CHUNK)]

    def make(c: int) -> _Builder:
        b = _Builder(spec, features)
        samples = synth.generate(
            modality, sizes[c], seed=seed * CHUNK_SEEDS + c, size=frame_size, **synth_kwargs
        )
        for s in samples:
            b.add(s.image, labels.index(s.label), s.mask, s.bbox, True)
        return b

    parts: list[_Builder] = []
    bar = tqdm(
        total=n, desc=f"{modality} seed {seed}", unit="frame", disable=not progress, file=sys.stderr
    )
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for part in pool.map(make, range(len(sizes))):
            parts.append(part)
            bar.update(len(part.y))
    bar.close()
    merged = _Builder(spec, features)
    for part in parts:
        for key in ("x", "y", "heat", "hw", "boxes", "shapes", "feats"):
            getattr(merged, key).extend(getattr(part, key))
    kw = ", ".join(f"{k}={v}" for k, v in sorted(synth_kwargs.items()))
    source = (
        f"me.synth.generate('{modality}', seed base {seed}: chunks seed={seed}*{CHUNK_SEEDS}+c "
        f"of {CHUNK}), {n} frames {frame_size}x{frame_size}, positive_fraction 0.5"
        + (f", {kw}" if kw else "")
    )
    return merged.build(labels, labels[0], source)


def _mask_for(folder: Path, rel: Path) -> Path | None:
    base = folder / "masks" / rel
    for suffix in (".png", ".npy", ".tif", ".tiff", rel.suffix):
        cand = base.with_suffix(suffix)
        if cand.is_file():
            return cand
    return None


def _bbox(mask: npt.NDArray[np.bool_]) -> Box | None:
    if not mask.any():
        return None
    ys, xs = np.nonzero(mask)
    return (int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1)


def folder_dataset(
    folder: str | Path,
    *,
    size: int = 128,
    features: bool = False,
    progress: bool = False,
    labels: Sequence[str] | None = None,
    on_file: Callable[[Path], None] | None = None,
) -> Dataset:
    """Load ``folder/<class_name>/*.(png|dcm|...)`` with :func:`medimg_edge.io.read_image`.

    Labels are the sorted class folder names (``masks`` excluded) unless ``labels`` is
    given; the negative label is ``"normal"`` if present, else the first. A lesion mask
    (non-zero = lesion) is looked up in the mirror ``folder/masks/<class_name>/<stem>.png``
    (or ``.npy``, ``.tif``, ``.tiff``, the image's suffix). Frames of the negative class
    without a mask get an all-zero heatmap target; lesion frames without a mask get heatmap
    weight 0 (no localisation loss).
    """
    from tqdm import tqdm

    from ..io import IMAGE_SUFFIXES, read_image

    root = Path(folder)
    if not root.is_dir():
        raise InvalidInputError(f"training folder {root} does not exist or is not a folder")
    spec = input_spec(size)
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and d.name != "masks")
    if labels is not None:
        classes = list(labels)
    if len(classes) < 2:
        raise InvalidInputError(
            f"{root} must contain at least two class folders (e.g. normal/ and nodule/) with "
            f"images, found {classes}"
        )
    negative = "normal" if "normal" in classes else classes[0]
    b = _Builder(spec, features)
    files = [
        (f, k)
        for k, c in enumerate(classes)
        for f in sorted((root / c).glob("*"))
        if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not files:
        raise InvalidInputError(
            f"no image files ({', '.join(IMAGE_SUFFIXES)}) under {root}/<class>/"
        )
    for f, k in tqdm(files, desc="read", unit="file", disable=not progress, file=sys.stderr):
        if on_file is not None:
            on_file(f)
        frame = read_image(f)
        mpath = _mask_for(root, f.relative_to(root))
        mask = None if mpath is None else np.asarray(read_image(mpath)) != 0
        if mask is not None and mask.shape != frame.shape[:2]:
            raise InvalidInputError(
                f"mask {mpath.name if mpath else ''} has shape {mask.shape}, image {f.name} "
                f"{frame.shape[:2]}"
            )
        is_neg = classes[k] == negative
        box = None if mask is None else _bbox(mask)
        b.add(frame, k, mask, box, known=mask is not None or is_neg)
    ds = b.build(tuple(classes), negative, f"folder {root.name}/ ({len(files)} images)")
    if not ds.has_masks:
        ds.heat_weight[:] = 0.0
    return ds
