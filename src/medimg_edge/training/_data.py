"""Training and evaluation data: ``me.synth`` phantoms or a folder of labelled images,
preprocessed with the runtime's own :func:`medimg_edge.preprocess.to_model_input`."""

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
from .._modality import MODALITIES, check_modality
from ..preprocess import to_model_input
from ..runtime import InputSpec

__all__ = [
    "FRAME_SIZES",
    "HEATMAP_STRIDE",
    "MODALITIES",
    "Dataset",
    "augmented_inputs",
    "draw_frame_sizes",
    "folder_dataset",
    "heat_target",
    "input_spec",
    "synth_dataset",
]

#: The heatmap has 1/HEATMAP_STRIDE of the input resolution.
HEATMAP_STRIDE = 8
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
    frames, masks : list of ndarray, or None
        The raw frames (before ``to_model_input``; frames larger than the builder's
        ``store_max`` side are area-reduced to it once) and their lesion masks (None
        where unknown), kept when the set is built with ``keep_frames=True`` so that
        training can re-augment them every epoch (:func:`augmented_inputs`).
    modality : str
        ``"xray"`` or ``"ultrasound"`` (what the augmentation simulates).
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
    frames: list[npt.NDArray[Any]] | None = None
    masks: list[npt.NDArray[np.bool_] | None] | None = None
    modality: str = ""

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

    def concat(self, other: Dataset) -> Dataset:
        """This set followed by ``other`` (same labels and input size; raw frames kept only
        if both keep them; handcrafted features only if both have them)."""
        if other.labels != self.labels or other.x.shape[1:] != self.x.shape[1:]:
            raise InvalidInputError(
                f"cannot join sets with labels {self.labels} / {other.labels} and inputs "
                f"{self.x.shape[1:]} / {other.x.shape[1:]}"
            )
        both_frames = self.frames is not None and other.frames is not None
        both_masks = self.masks is not None and other.masks is not None
        both_features = self.features is not None and other.features is not None
        return dataclasses.replace(
            self,
            x=np.concatenate([self.x, other.x]),
            y=np.concatenate([self.y, other.y]),
            heat=np.concatenate([self.heat, other.heat]),
            heat_weight=np.concatenate([self.heat_weight, other.heat_weight]),
            bboxes=[*self.bboxes, *other.bboxes],
            frame_shapes=[*self.frame_shapes, *other.frame_shapes],
            features=np.concatenate([self.features, other.features])  # type: ignore[list-item,unused-ignore]
            if both_features
            else None,
            frames=[*self.frames, *other.frames] if both_frames else None,  # type: ignore[misc]
            masks=[*self.masks, *other.masks] if both_masks else None,  # type: ignore[misc]
            source=f"{self.source} + {other.source}",
        )

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
            frames=None if self.frames is None else [self.frames[i] for i in ii],
            masks=None if self.masks is None else [self.masks[i] for i in ii],
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


#: Distribution of the rendered frame side per modality for the reference training sets:
#: ``(side, probability)``. Devices deliver 200-3000 px; the model input is 256 (X-ray) or
#: 128 (ultrasound), so most frames are area-reduced and some enlarged.
FRAME_SIZES: dict[str, tuple[tuple[int, float], ...]] = {
    "xray": (
        (128, 0.04),
        (192, 0.06),
        (256, 0.34),
        (320, 0.08),
        (384, 0.08),
        (512, 0.16),
        (768, 0.09),
        (1024, 0.09),
        (1536, 0.03),
        (2048, 0.02),
        (3072, 0.01),
    ),
    "ultrasound": (
        (128, 0.06),
        (192, 0.10),
        (256, 0.36),
        (384, 0.14),
        (512, 0.16),
        (768, 0.10),
        (1024, 0.06),
        (1536, 0.02),
    ),
}


def draw_frame_sizes(modality: str, n_chunks: int, seed: int) -> list[int]:
    """The rendered side of each chunk of a set (from :data:`FRAME_SIZES`), deterministic
    in ``seed``."""
    sizes, probs = zip(*FRAME_SIZES[check_modality(modality)], strict=True)
    p = np.asarray(probs, np.float64)
    rng = np.random.default_rng([int(seed), 0x51E5])
    return [int(s) for s in rng.choice(np.asarray(sizes), size=n_chunks, p=p / p.sum())]


def _reduce(frame: npt.NDArray[Any], mask: Any | None, store_max: int) -> tuple[Any, Any]:
    """Area-reduce a frame (and its mask) whose longer side exceeds ``store_max``."""
    h, w = frame.shape[:2]
    if store_max <= 0 or max(h, w) <= store_max:
        return frame, mask
    f = store_max / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    small = cv2.resize(frame.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    if np.issubdtype(frame.dtype, np.integer):
        small = np.clip(np.rint(small), 0, np.iinfo(frame.dtype).max).astype(frame.dtype)
    m = None
    if mask is not None:
        mm = cv2.resize(np.asarray(mask, np.float32), size, interpolation=cv2.INTER_AREA)
        m = np.asarray(mm >= 0.5)
    return small, m


class _Builder:
    """Accumulates preprocessed samples (and optionally the raw frames)."""

    def __init__(
        self, spec: InputSpec, with_features: bool, keep_frames: bool = False, store_max: int = 0
    ) -> None:
        self.spec = spec
        self.grid = (spec.height // HEATMAP_STRIDE, spec.width // HEATMAP_STRIDE)
        self.with_features = with_features
        self.keep_frames = keep_frames
        self.store_max = store_max
        self.x: list[F32] = []
        self.y: list[int] = []
        self.heat: list[F32] = []
        self.hw: list[float] = []
        self.boxes: list[Box | None] = []
        self.shapes: list[tuple[int, int]] = []
        self.feats: list[F32] = []
        self.frames: list[npt.NDArray[Any]] = []
        self.masks: list[npt.NDArray[np.bool_] | None] = []

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
        if self.keep_frames:
            small, m = _reduce(arr, mask, self.store_max)
            self.frames.append(small)
            self.masks.append(None if m is None else np.asarray(m, bool))

    def extend(self, other: _Builder) -> None:
        for key in ("x", "y", "heat", "hw", "boxes", "shapes", "feats", "frames", "masks"):
            getattr(self, key).extend(getattr(other, key))

    def build(self, labels: tuple[str, ...], negative: str, source: str, modality: str) -> Dataset:
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
            frames=self.frames if self.keep_frames else None,
            masks=self.masks if self.keep_frames else None,
            modality=modality,
        )


def augmented_inputs(
    ds: Dataset,
    seed: int,
    *,
    strength: float = 1.0,
    workers: int = 2,
    indices: Sequence[int] | None = None,
) -> tuple[F32, F32]:
    """One random augmentation of every kept raw frame, preprocessed like at run time.

    Each frame ``i`` draws from ``default_rng([seed, i])`` a device-processing chain
    (:func:`medimg_edge.training._augment.random_augment`: tone curves, windowing,
    unsharp masking / CLAHE / edge enhancement, noise, blur, flips, small rotations and
    shifts, collimation, burned-in text and calipers), then goes through
    :func:`medimg_edge.preprocess.to_model_input`; the lesion mask follows the geometric
    transforms and gives the new heatmap target.

    Returns
    -------
    (x, heat)
        ``(N, H, W, 1)`` model inputs and ``(N, H/8, W/8, 1)`` heatmap targets.
    """
    from ._augment import random_augment

    if ds.frames is None or ds.masks is None:
        raise InvalidInputError("the dataset keeps no raw frames (build it with keep_frames=True)")
    idx = list(range(len(ds))) if indices is None else [int(i) for i in indices]
    spec_h, spec_w = ds.x.shape[1], ds.x.shape[2]
    spec = input_spec(int(spec_h))
    grid = (spec_h // HEATMAP_STRIDE, spec_w // HEATMAP_STRIDE)
    x = np.empty((len(idx), spec_h, spec_w, 1), np.float32)
    heat = np.empty((len(idx), *grid, 1), np.float32)
    frames, masks = ds.frames, ds.masks

    def one(j: int) -> None:
        i = idx[j]
        rng = np.random.default_rng([int(seed), i])
        frame, mask = random_augment(
            frames[i],
            masks[i],
            rng,
            modality=ds.modality,
            model_size=int(spec_h),
            strength=strength,
        )
        x[j] = to_model_input(frame, spec)
        if mask is None:
            heat[j, ..., 0] = ds.heat[i, ..., 0]
        else:
            heat[j, ..., 0] = heat_target(mask, grid)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        list(pool.map(one, range(len(idx))))
    return x, heat


def synth_dataset(
    modality: str,
    n: int,
    *,
    seed: int,
    size: int = 128,
    frame_size: int | None = 256,
    features: bool = False,
    workers: int = 1,
    progress: bool = False,
    keep_frames: bool = False,
    augment_fraction: float = 0.0,
    chunk: int = CHUNK,
    **synth_kwargs: Any,
) -> Dataset:
    """Generate ``n`` phantoms with :func:`medimg_edge.synth.generate` and preprocess them.

    The set is made of chunks of ``chunk`` frames (250 by default); chunk ``c`` is
    ``generate(modality, chunk, seed=seed * 1000 + c, size=side_c, **synth_kwargs)``, so
    sets with different ``seed`` never share a generator seed (``me.synth`` guarantees
    sets with different seeds share no sample). Half the frames have a lesion
    (``positive_fraction=0.5``).

    Parameters
    ----------
    modality : {"xray", "ultrasound"}
    n : int
        Number of frames (1 to 1,000,000).
    seed : int
        Seed base (>= 0).
    size : int
        Model input side (divisible by 8).
    frame_size : int or None
        Side of the generated frames (>= 64), resized to ``size`` by ``to_model_input``;
        ``None`` draws the side of each chunk from :data:`FRAME_SIZES` (128-3072 px).
    features : bool
        Also compute :func:`medimg_edge.features.extract` of each raw frame.
    workers : int
        Threads generating chunks in parallel.
    progress : bool
        tqdm progress bar on stderr.
    keep_frames : bool
        Keep the raw frames (sides above ``2 * size`` area-reduced to ``2 * size``) for
        per-epoch augmentation (:func:`augmented_inputs`).
    augment_fraction : float
        Fraction of the frames passed once through a random device-processing chain
        (seeded by the frame) before preprocessing: validation sets use 0.5 so that the
        threshold, the calibration and the out-of-distribution guard see processed frames.
    chunk : int
        Frames per generator call.
    **synth_kwargs
        Passed to ``generate`` (e.g. ``dose=...`` for X-ray, ``snr_db=...`` for ultrasound).
    """
    from tqdm import tqdm

    from .. import synth

    check_modality(modality)
    if not isinstance(n, int) or not 1 <= n <= 1_000_000:
        raise InvalidInputError(f"n must be an integer in [1, 1000000], got {n!r}")
    if not isinstance(seed, int) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}")
    if not 0.0 <= augment_fraction <= 1.0:
        raise InvalidInputError(f"augment_fraction must be in [0, 1], got {augment_fraction!r}")
    if not isinstance(chunk, int) or not 1 <= chunk <= CHUNK_SEEDS:
        raise InvalidInputError(f"chunk must be an integer in [1, {CHUNK_SEEDS}], got {chunk!r}")
    spec = input_spec(size)
    labels = tuple(synth.LABELS[modality])
    n_chunks = (n + chunk - 1) // chunk
    if n_chunks > CHUNK_SEEDS:
        raise InvalidInputError(f"n / chunk must be at most {CHUNK_SEEDS} chunks")
    counts = [min(chunk, n - c * chunk) for c in range(n_chunks)]
    sides = (
        draw_frame_sizes(modality, n_chunks, seed)
        if frame_size is None
        else [int(frame_size)] * n_chunks
    )
    # The largest chunks first, so the pool is not left waiting on one at the end.
    order = sorted(range(n_chunks), key=lambda c: -sides[c])

    def make(c: int) -> _Builder:
        from ._augment import random_augment

        b = _Builder(spec, features, keep_frames, 2 * size)
        samples = synth.generate(
            modality, counts[c], seed=seed * CHUNK_SEEDS + c, size=sides[c], **synth_kwargs
        )
        rng = np.random.default_rng([seed, c, 0xA06])
        for s in samples:
            frame: npt.NDArray[Any] = s.image
            mask: npt.NDArray[np.bool_] | None = s.mask
            box = s.bbox
            if augment_fraction > 0.0 and rng.random() < augment_fraction:
                frame, mask = random_augment(frame, mask, rng, modality=modality, model_size=size)
                box = None if mask is None else _bbox(mask)  # the mask may have moved
            b.add(frame, labels.index(s.label), mask, box, True)
        return b

    parts: dict[int, _Builder] = {}
    bar = tqdm(
        total=n, desc=f"{modality} seed {seed}", unit="frame", disable=not progress, file=sys.stderr
    )
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for c, part in zip(order, pool.map(make, order), strict=True):
            parts[c] = part
            bar.update(len(part.y))
    bar.close()
    merged = _Builder(spec, features, keep_frames, 2 * size)
    for c in range(n_chunks):
        merged.extend(parts[c])
    kw = ", ".join(f"{k}={v}" for k, v in sorted(synth_kwargs.items()))
    side_text = (
        f"{frame_size}x{frame_size}"
        if frame_size is not None
        else "sides drawn per chunk from FRAME_SIZES (128-3072 px)"
    )
    source = (
        f"me.synth.generate('{modality}', seed base {seed}: chunks seed={seed}*{CHUNK_SEEDS}+c "
        f"of {chunk}), {n} frames, {side_text}, positive_fraction 0.5"
        + (
            f", {augment_fraction:.0%} passed once through random device processing"
            if augment_fraction
            else ""
        )
        + (f", {kw}" if kw else "")
    )
    return merged.build(labels, labels[0], source, modality)


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
    keep_frames: bool = False,
    modality: str = "",
) -> Dataset:
    """Load ``folder/<class_name>/*.(png|dcm|...)`` with :func:`medimg_edge.io.read_image`.

    Labels are the sorted class folder names (``masks`` excluded) unless ``labels`` is
    given; the negative label is ``"normal"`` if present, else the first. A lesion mask
    (non-zero = lesion) is looked up in the mirror ``folder/masks/<class_name>/<stem>.png``
    (or ``.npy``, ``.tif``, ``.tiff``, the image's suffix). Frames of the negative class
    without a mask get an all-zero heatmap target; lesion frames without a mask get heatmap
    weight 0 (no localisation loss). ``keep_frames`` keeps the raw frames for per-epoch
    augmentation (``modality`` selects what it simulates).
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
    b = _Builder(spec, features, keep_frames, 2 * size)
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
    ds = b.build(tuple(classes), negative, f"folder {root.name}/ ({len(files)} images)", modality)
    if not ds.has_masks:
        ds.heat_weight[:] = 0.0
    return ds
