"""``train``: data -> network -> int8 package, reproducible from one call."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import time
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import InvalidInputError
from .._modality import check_modality
from ._data import Dataset, augmented_inputs, folder_dataset, synth_dataset
from ._network import NetConfig, fit, to_tflite
from ._package import code_version, export_package

__all__ = ["SEEDS", "TrainConfig", "TrainResult", "train"]

#: Seed bases of the generated sets (chunk c of a set uses seed ``base * 1000 + c``):
#: training, validation (threshold + temperature), test, second test, and one per
#: stability level. The test bases are never used for training or validation.
SEEDS = {
    "train": 101,
    "val": 202,
    "test": 303,
    "test2": 404,
    "stability": 505,
    "replay": 606,
}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained package.

    Attributes
    ----------
    modality : {"xray", "ultrasound"}
    name : str
        Package name (``<name>.tflite``/``.json``/``.md``).
    out_dir : Path
        Where the package is written.
    size : int
        Model input side (divisible by 8); the heatmap is ``size / 8``.
    frame_size : int or None
        Side of the generated phantoms (resized to ``size`` by ``to_model_input``);
        ``None`` draws the side of every chunk of 50 frames from
        :data:`~medimg_edge.training.FRAME_SIZES` (128-3072 px).
    n_train, n_val : int
        Generated training and validation frames (ignored with ``data_dir``).
    data_dir : Path or None
        Train on ``data_dir/<class>/*`` instead of phantoms (``val_fraction`` held out).
    n_representative : int
        Training frames (augmented) used to calibrate the int8 quantisation ranges.
    val_augment_fraction : float
        Fraction of the validation frames passed once through random device processing
        (the threshold, the temperature and the OOD threshold are fitted on them).
    n_ood : int
        Augmented training frames the out-of-distribution guard is fitted on (0: no guard).
    ood_quantile : float
        Validation quantile of the guard's distance used as its threshold.
    lesion_prior : {"conspicuous", "full"}
        The phantoms' lesion distribution for training and validation (``me.synth``'s
        ``lesion_prior``); evaluation reports the full range too.
    net : NetConfig
        Network, optimiser and seed.
    init_package : str, Path or None
        Fine-tune: start from this model package (a name, sidecar or ``.tflite`` path;
        see :func:`medimg_edge.load_model`) instead of random weights. Its verified int8
        file is dequantised into the float network (:func:`load_tflite_weights`: the
        shipped wheel carries no float weights; every weight lies within half a
        quantisation step of the original's), and its modality, input size and labels
        are used (a folder's classes must be among the parent's labels). Calibration,
        threshold, both OOD guards and the drift reference are re-fitted; the sidecar's
        ``provenance.parent`` names the parent (name, version, sha256).
    replay : int
        Phantoms of the parent's modality (:mod:`medimg_edge.synth`, seed base
        ``SEEDS["replay"]``) mixed into the training split so that the network and the
        OOD guard keep the domain it was trained on (0: only the new data).
    version : str or None
        Package version (default ``"1.0.0"``; with ``init_package`` the parent's
        version plus ``+ft.<YYYYMMDD>``).
    workers : int
        Threads generating phantoms.
    features : bool
        Also extract handcrafted features of the training frames (classical baseline).
    command : str
        Recorded in the sidecar's provenance.
    """

    modality: str
    name: str
    out_dir: Path
    size: int = 128
    frame_size: int | None = 256
    n_train: int = 8000
    n_val: int = 1000
    data_dir: Path | None = None
    val_fraction: float = 0.2
    n_representative: int = 300
    val_augment_fraction: float = 0.5
    n_ood: int = 3000
    ood_quantile: float = 0.99
    lesion_prior: str = "conspicuous"
    net: NetConfig = dataclasses.field(default_factory=NetConfig)
    workers: int = 2
    features: bool = False
    progress: bool = True
    command: str = ""
    init_package: str | Path | None = None
    replay: int = 0
    version: str | None = None


@dataclasses.dataclass
class TrainResult:
    """A trained package and what evaluation needs from the run."""

    sidecar: Path
    float_tflite: bytes
    train: Dataset
    val: Dataset
    summary: dict[str, Any]


def _split_folder(ds: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    rng = np.random.default_rng(seed)
    val_idx: list[int] = []
    for k in range(len(ds.labels)):
        idx = np.flatnonzero(ds.y == k)
        rng.shuffle(idx)
        val_idx.extend(idx[: max(1, round(fraction * idx.size))].tolist())
    is_val = np.zeros(len(ds), bool)
    is_val[val_idx] = True
    return ds.subset(~is_val), ds.subset(is_val)


def _parent(cfg: TrainConfig) -> tuple[TrainConfig, dict[str, Any], tuple[str, ...]]:
    """Resolve and verify ``cfg.init_package``: the config with the parent's modality,
    input size and network, its provenance record and its labels."""
    from .._errors import ModelError
    from ..runtime import read_package, read_verified
    from ..runtime._package import find_sidecar

    assert cfg.init_package is not None
    try:
        pkg = read_package(find_sidecar(cfg.init_package))
        data = read_verified(pkg.cpu)
    except ModelError as exc:
        raise InvalidInputError(f"cannot fine-tune from {cfg.init_package}: {exc}") from exc
    if cfg.modality and cfg.modality != pkg.modality:
        raise InvalidInputError(
            f"cannot fine-tune {pkg.name} ({pkg.modality}) for modality {cfg.modality!r}"
        )
    if pkg.input.channels != 1 or pkg.input.height != pkg.input.width:
        raise InvalidInputError(
            f"cannot fine-tune from {pkg.name}: only square 1-channel inputs are supported"
        )
    net_meta = pkg.meta.get("provenance", {}).get("network", {})
    net = dataclasses.replace(
        cfg.net,
        widths=tuple(net_meta.get("widths", cfg.net.widths)),
        depth=int(net_meta.get("depth", cfg.net.depth)),
        init_from=str(pkg.cpu.path),
        batchnorm=False,
    )
    record = {
        "name": pkg.name,
        "version": pkg.version,
        "sha256": pkg.cpu.sha256,
        "weights": "dequantised from the parent's int8 file (training.load_tflite_weights)",
        "freeze": net.freeze,
        "replay_phantoms": cfg.replay,
    }
    version = cfg.version or f"{pkg.version.split('+')[0]}+ft.{datetime.date.today():%Y%m%d}"
    new = dataclasses.replace(
        cfg, modality=pkg.modality, size=pkg.input.height, net=net, version=version
    )
    # the bytes were verified above; fit() re-reads the same path
    record["bytes"] = len(data)
    return new, record, pkg.labels


def _load(
    cfg: TrainConfig, labels: tuple[str, ...] | None = None
) -> tuple[Dataset, Dataset, dict[str, Any]]:
    if cfg.data_dir is not None:
        if labels is not None:
            found = sorted(
                d.name for d in Path(cfg.data_dir).iterdir() if d.is_dir() and d.name != "masks"
            )
            extra = [c for c in found if c not in labels]
            if extra:
                raise InvalidInputError(
                    f"class folders {extra} are not labels of the parent model {list(labels)}"
                )
        ds = folder_dataset(
            cfg.data_dir,
            size=cfg.size,
            features=cfg.features,
            progress=cfg.progress,
            labels=labels,
            keep_frames=cfg.net.augment > 0,
            modality=cfg.modality,
        )
        train, val = _split_folder(ds, cfg.val_fraction, cfg.net.seed)
        n_cls = len(ds.labels)
        desc = (
            f"user folder: {len(ds)} images in {n_cls} classes, "
            f"{'with' if ds.has_masks else 'without'} lesion masks; stratified split "
            f"{len(train)} train / {len(val)} validation (seed {cfg.net.seed})"
        )
        if cfg.replay > 0:
            replay = synth_dataset(
                cfg.modality,
                cfg.replay,
                seed=SEEDS["replay"],
                size=cfg.size,
                frame_size=None,
                workers=cfg.workers,
                progress=cfg.progress,
                keep_frames=train.frames is not None,
                chunk=50,
                lesion_prior=cfg.lesion_prior,
            )
            if replay.labels != train.labels:
                raise InvalidInputError(
                    f"replay phantoms have labels {replay.labels}, the model {train.labels}"
                )
            if not train.has_masks:
                replay.heat_weight[:] = 0.0  # one localisation rule for the whole set
            train = train.concat(replay)
            desc += f"; plus {cfg.replay} replay phantoms ({replay.source}) in training"
        return train, val, {"training_data": desc}
    train, val = (
        synth_dataset(
            cfg.modality,
            n,
            seed=SEEDS[split],
            size=cfg.size,
            frame_size=cfg.frame_size,
            features=cfg.features and split == "train",
            workers=cfg.workers,
            progress=cfg.progress,
            keep_frames=split == "train" and cfg.net.augment > 0,
            augment_fraction=cfg.val_augment_fraction if split == "val" else 0.0,
            chunk=50 if cfg.frame_size is None else 250,
            lesion_prior=cfg.lesion_prior,
        )
        for split, n in (("train", cfg.n_train), ("val", cfg.n_val))
    )
    data = {
        "generator": "medimg_edge.synth",
        "modality": cfg.modality,
        "train_seed": SEEDS["train"],
        "n_train": cfg.n_train,
        "val_seed": SEEDS["val"],
        "n_val": cfg.n_val,
        "frame_size": cfg.frame_size if cfg.frame_size is not None else "FRAME_SIZES",
        "chunk": 50 if cfg.frame_size is None else 250,
        "val_augment_fraction": cfg.val_augment_fraction,
        "lesion_prior": cfg.lesion_prior,
    }
    desc = f"synthetic phantoms only: {train.source}; validation {val.source}. No patient data."
    return train, val, {"training_data": desc, "data": data}


def train(cfg: TrainConfig) -> TrainResult:
    """Generate or read the data, train the CNN, export the int8 package.

    Returns
    -------
    TrainResult
        The sidecar path, the float TFLite bytes (for float-vs-int8 agreement), the
        datasets and a summary (validation threshold, temperature, timings).

    Raises
    ------
    InvalidInputError
        Unknown modality, bad sizes or counts, an unusable data folder.
    """
    parent: dict[str, Any] | None = None
    labels: tuple[str, ...] | None = None
    if cfg.init_package is not None:
        if cfg.data_dir is None:
            raise InvalidInputError("fine-tuning (init_package) needs a data folder (data_dir)")
        cfg, parent, labels = _parent(cfg)
    check_modality(cfg.modality)
    if cfg.n_representative < 1:
        raise InvalidInputError("n_representative must be >= 1")
    if cfg.replay < 0 or (cfg.replay > 0 and cfg.data_dir is None):
        raise InvalidInputError("replay must be >= 0 and needs a data folder (data_dir)")
    t0 = time.perf_counter()
    train_ds, val_ds, prov = _load(cfg, labels)
    t_data = time.perf_counter() - t0
    if len(train_ds) < 2 or len(val_ds) < 2:
        raise InvalidInputError("need at least 2 training and 2 validation frames")
    t1 = time.perf_counter()
    try:
        model = fit(train_ds, val_ds, cfg.net, progress=cfg.progress)
    except ValueError as exc:
        if parent is None:
            raise
        raise InvalidInputError(
            f"cannot fine-tune from {parent['name']}: its network does not match this "
            f"architecture ({exc})"
        ) from exc
    t_fit = time.perf_counter() - t1
    rng = np.random.default_rng(cfg.net.seed)
    n_aug = min(max(cfg.n_ood, cfg.n_representative), len(train_ds))
    aug_idx = np.sort(rng.choice(len(train_ds), n_aug, replace=False))
    aug_ds = train_ds.subset(aug_idx)
    if train_ds.frames is not None and cfg.net.augment > 0:
        # One more augmentation pass (a seed no epoch used): the quantisation ranges and
        # the OOD guard see processed frames like those of training.
        aug_ds.x, aug_ds.heat = augmented_inputs(
            train_ds,
            cfg.net.seed * 1_000_003 + 999_999,
            strength=cfg.net.augment,
            workers=cfg.net.workers,
            indices=aug_idx.tolist(),
        )
    rep_idx = rng.choice(len(aug_ds), min(cfg.n_representative, len(aug_ds)), replace=False)
    t2 = time.perf_counter()
    float_bytes = to_tflite(model, None)
    int8_bytes = to_tflite(model, aug_ds.x[np.sort(rep_idx)])
    t_convert = time.perf_counter() - t2
    provenance = {
        **prov,
        "created": datetime.date.today().isoformat(),
        "code_version": code_version(),
        "command": cfg.command or f"medimg_edge.training.train({cfg.modality!r})",
        **({"parent": parent} if parent is not None else {}),
        "network": {
            "widths": list(cfg.net.widths),
            "depth": cfg.net.depth,
            "epochs": cfg.net.epochs,
            "batch_size": cfg.net.batch_size,
            "learning_rate": cfg.net.learning_rate,
            "heatmap_weight": cfg.net.heatmap_weight if train_ds.has_masks else 0.0,
            "seed": cfg.net.seed,
            "n_representative": int(rep_idx.size),
            "augment": cfg.net.augment,
            "batchnorm": cfg.net.batchnorm,
            "initialised_from": None
            if cfg.net.init_from is None
            else {
                "file": Path(cfg.net.init_from).name,
                "sha256": hashlib.sha256(Path(cfg.net.init_from).read_bytes()).hexdigest(),
            },
        },
    }
    label_text = ", ".join(train_ds.labels)
    description = (
        f"Compact depthwise-separable CNN ({cfg.modality}, {cfg.size}x{cfg.size} gray): "
        f"class scores over [{label_text}] and a 1/8-resolution lesion heatmap; full int8. "
        "Trained on synthetic phantoms. NOT FOR CLINICAL USE."
        if cfg.data_dir is None
        else f"Compact depthwise-separable CNN trained on a user folder, labels [{label_text}]; "
        "full int8. NOT FOR CLINICAL USE."
    )
    if parent is not None:
        description = (
            f"{parent['name']} {parent['version']} fine-tuned on a user folder "
            f"({cfg.modality}, {cfg.size}x{cfg.size} gray), labels [{label_text}]; full int8. "
            "NOT FOR CLINICAL USE."
        )
    sidecar, summary = export_package(
        int8_bytes,
        cfg.out_dir,
        cfg.name,
        modality=cfg.modality,
        val=val_ds,
        provenance=provenance,
        description=description,
        ood_train=aug_ds if cfg.n_ood > 0 else None,
        ood_quantile=cfg.ood_quantile,
        version=cfg.version or "1.0.0",
    )
    summary.update(
        {
            "n_train": len(train_ds),
            "seconds_data": t_data,
            "seconds_fit": t_fit,
            "seconds_convert": t_convert,
            "float_bytes": len(float_bytes),
            "params": int(model.count_params()),
        }
    )
    return TrainResult(sidecar, float_bytes, train_ds, val_ds, summary)
