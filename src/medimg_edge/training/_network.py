"""The compact two-head CNN, its training and the TFLite conversion (TensorFlow imported
lazily inside each function).

References
----------
.. [1] A. G. Howard et al., "MobileNets: Efficient convolutional neural networks for mobile
   vision applications", arXiv:1704.04861, 2017 (depthwise-separable blocks).
.. [2] B. Jacob et al., "Quantization and training of neural networks for efficient
   integer-arithmetic-only inference", CVPR 2018 (full-integer quantisation).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ._data import Dataset

__all__ = [
    "EDGETPU_OPS",
    "FREEZE_CHOICES",
    "NetConfig",
    "build_network",
    "detector_crops",
    "fit",
    "load_tflite_weights",
    "model_ops",
    "run_float_tflite",
    "to_tflite",
]

F32 = npt.NDArray[np.float32]

#: TFLite builtin ops the Edge TPU compiler maps to the TPU (coral.ai "TensorFlow models on
#: the Edge TPU", supported operations; the subset this network may use).
EDGETPU_OPS = frozenset(
    {
        "ADD",
        "AVERAGE_POOL_2D",
        "CONCATENATION",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "FULLY_CONNECTED",
        "LOGISTIC",
        "MAX_POOL_2D",
        "MEAN",
        "MUL",
        "QUANTIZE",
        "RELU",
        "REDUCE_MAX",
        "RELU6",
        "RESHAPE",
        "SOFTMAX",
    }
)


#: BatchNorm moving-average momentum. Keras' 0.99 averages over ~100 steps: with ~125
#: steps per epoch the inference statistics lagged the weights by about an epoch and the
#: validation accuracy stayed at chance while training accuracy rose (X-ray, 2026-11-24).
_BN_MOMENTUM = 0.9
#: Forward passes (training batches, weights fixed) that re-estimate the BatchNorm
#: statistics after training (:func:`recalibrate_batchnorm`).
BN_RECALIBRATION_STEPS = 150
#: Pixels per heatmap cell (the heatmap head reads the 1/8-resolution features).
_HEAT_STRIDE = 8


def recalibrate_batchnorm(
    model: Any, x: F32, *, batch_size: int = 32, steps: int = BN_RECALIBRATION_STEPS, seed: int = 0
) -> int:
    """Re-estimate every BatchNorm layer's moving mean and variance for the final weights:
    ``steps`` forward passes in training mode over random batches of ``x``, with momentum
    0.9 and no gradient step ("precise BN", Wu and Johnson [3]_). Returns the number of
    layers recalibrated.

    The moving averages kept during training lag the weights; on the widened X-ray
    phantoms the lag alone kept inference at chance: a network whose training-mode
    validation AUC was 0.998 scored 0.504 in inference mode, and 0.998 after this
    recalibration (2026-12-03, bench/RESULTS.md). The int8 export folds these statistics.

    References
    ----------
    .. [3] Y. Wu, J. Johnson, "Rethinking 'Batch' in BatchNorm", arXiv:2105.07576, 2021.
    """
    import tensorflow as tf

    bns = [layer for layer in model.layers if isinstance(layer, tf.keras.layers.BatchNormalization)]
    if not bns or len(x) == 0:
        return 0
    saved = [layer.momentum for layer in bns]
    for layer in bns:
        layer.momentum = 0.9
    rng = np.random.default_rng(seed)
    n = min(batch_size, len(x))
    try:
        for _ in range(steps):
            model(x[np.sort(rng.choice(len(x), n, replace=False))], training=True)
    finally:
        for layer, m in zip(bns, saved, strict=True):
            layer.momentum = m
    return len(bns)


#: :attr:`NetConfig.freeze` choices.
FREEZE_CHOICES = ("none", "backbone")


@dataclasses.dataclass(frozen=True)
class NetConfig:
    """Network and optimiser settings.

    ``widths``: output channels of the stem (stride 2) and of the depthwise-separable
    stages; stages 1-3 start with stride 2, so the heatmap head reads the 1/8-resolution
    features after stage 2 and the classifier the 1/16 features after stage 3. Every stage
    has ``depth`` blocks.
    """

    widths: tuple[int, ...] = (16, 32, 64, 96)
    depth: int = 2
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 3e-3
    heatmap_weight: float = 0.5
    seed: int = 0
    #: Strength of the per-epoch device-processing augmentation (0 = off); applies when
    #: the training set keeps its raw frames.
    augment: float = 1.0
    #: Threads preparing each epoch's augmented frames.
    workers: int = 2
    #: Weight of the lesion cells in the heatmap loss.
    heat_pos_weight: float = 1.0
    #: Classifier on [global mean, global max] of the last features (else the mean only).
    max_pool: bool = False
    #: BatchNorm after every convolution (False: convolutions with a bias, as exported).
    batchnorm: bool = True
    #: Start from the weights of a TFLite model of this network: a float export (e.g. the
    #: previous reference model's ``<name>_float.tflite``) or an int8 package file
    #: (dequantised, :func:`load_tflite_weights`); implies the same widths and depth and
    #: ``batchnorm=False``.
    init_from: str | None = None
    #: What stays fixed while training: ``"none"`` (every layer learns) or
    #: ``"backbone"`` (stem and the three stages frozen; the heatmap head and the
    #: classifier learn): fine-tuning on a few hundred frames of a new device.
    freeze: str = "none"
    #: Detector-first curriculum (0: off): before the whole frames, ``crop_epochs``
    #: epochs train the same network on ``crop_size`` px crops, every lesion (jittered
    #: around its centre) against ``crop_negatives`` lesion-free crops per frame taken from
    #: anywhere in it (:func:`detector_crops`). The network is convolutional up to its
    #: global pooling, so the weights carry over to the whole frame; a small lesion in a
    #: frame full of stronger anatomy is found from crops long before it is found from an
    #: image-level label (bench/RESULTS.md, "why the X-ray network does not learn").
    crop_epochs: int = 0
    crop_size: int = 64
    crop_negatives: int = 4

    def __post_init__(self) -> None:
        if self.freeze not in FREEZE_CHOICES:
            raise ValueError(f"freeze must be one of {FREEZE_CHOICES}, got {self.freeze!r}")
        if self.crop_epochs < 0 or self.crop_negatives < 0:
            raise ValueError("crop_epochs and crop_negatives must be >= 0")
        if self.crop_size < 32 or self.crop_size % 16:
            raise ValueError(f"crop_size must be a multiple of 16 >= 32, got {self.crop_size}")


def build_network(size: int, n_classes: int, cfg: NetConfig) -> Any:
    """Keras functional model ``image (size, size, 1) -> {"scores", "heatmap"}``.

    Stem conv 3x3/2 -> three stages of depthwise-separable blocks (depthwise 3x3 + BN +
    ReLU6, pointwise 1x1 + BN + ReLU6; Howard et al. [1]_), the first of each with stride
    2. ``heatmap``: depthwise-separable block + 1x1 conv + sigmoid on the 1/8 features.
    ``scores``: global average pooling (MEAN) + dense + softmax on the 1/16 features.
    """
    import tensorflow as tf

    layers = tf.keras.layers

    bn = cfg.batchnorm

    def cbr(x: Any, filters: int, kernel: int, stride: int, name: str) -> Any:
        x = layers.Conv2D(filters, kernel, stride, "same", use_bias=not bn, name=f"{name}_conv")(x)
        if bn:
            x = layers.BatchNormalization(momentum=_BN_MOMENTUM, name=f"{name}_bn")(x)
        return layers.ReLU(6.0, name=f"{name}_relu")(x)

    def ds(x: Any, filters: int, stride: int, name: str) -> Any:
        x = layers.DepthwiseConv2D(3, stride, "same", use_bias=not bn, name=f"{name}_dw")(x)
        if bn:
            x = layers.BatchNormalization(momentum=_BN_MOMENTUM, name=f"{name}_dwbn")(x)
        x = layers.ReLU(6.0, name=f"{name}_dwrelu")(x)
        return cbr(x, filters, 1, 1, f"{name}_pw")

    inp = tf.keras.Input((size, size, 1), name="image")
    x = cbr(inp, cfg.widths[0], 3, 2, "stem")
    heat_feat = None
    for s, width in enumerate(cfg.widths[1:], start=1):
        for d in range(cfg.depth):
            x = ds(x, width, 2 if d == 0 else 1, f"s{s}b{d}")
        if s == 2:
            heat_feat = x
    assert heat_feat is not None
    h = ds(heat_feat, cfg.widths[2] // 2, 1, "heat")
    heat = layers.Conv2D(1, 1, activation="sigmoid", name="heatmap")(h)
    g = layers.GlobalAveragePooling2D(name="gap")(x)
    if cfg.max_pool:
        # A small lesion moves a few cells of the 1/16 map: the spatial maximum carries
        # it to the classifier undiluted, the mean carries the context.
        gm = layers.GlobalMaxPooling2D(name="gmp")(x)
        g = layers.Concatenate(name="pooled")([g, gm])
    scores = layers.Dense(n_classes, activation="softmax", name="scores")(g)
    return tf.keras.Model(inp, {"scores": scores, "heatmap": heat}, name="medimg_edge_cnn")


def load_tflite_weights(model: Any, data: bytes) -> str:
    """Set the weights of a network built with ``batchnorm=False`` from a TFLite model of
    the same architecture: the float export of :func:`to_tflite` (BatchNorm folded, so
    every convolution carries its bias) or the full-int8 package file itself, whose
    weights are *dequantised* (``scale * (q - zero_point)`` per output channel, biases
    ``int32 * input_scale * weight_scale``). The int8 reconstruction is what fine-tuning
    starts from when only the shipped package is at hand: every weight is within half a
    quantisation step of the float network's (per-channel symmetric int8: 1/254 of the
    channel's largest magnitude). Returns ``"float"`` or ``"int8"``.

    The TFLite graph is walked from its input: each CONV_2D / DEPTHWISE_CONV_2D in the
    chain maps to the next Keras convolution (stem, then the stage blocks); where the chain
    forks after stage 2, the branch that keeps the resolution is the heatmap head.

    Raises
    ------
    ValueError
        The network has BatchNorm layers, or the graph is not this architecture.
    """
    from ..runtime import backend

    if any(layer.name.endswith("_bn") for layer in model.layers):
        raise ValueError("load_tflite_weights needs a network built with batchnorm=False")
    interp = backend().interpreter_cls(model_content=data, num_threads=1)
    interp.allocate_tensors()
    ops = interp._get_ops_details()
    details = {int(d["index"]): d for d in interp.get_tensor_details()}
    shapes = {i: tuple(d["shape"]) for i, d in details.items()}
    kind = "float"

    def tensor(index: int) -> F32:
        """A weight tensor as float32 (dequantised when stored as integers)."""
        nonlocal kind
        arr = np.asarray(interp.get_tensor(index))
        if arr.dtype == np.float32:
            return arr
        q = details[index]["quantization_parameters"]
        scales = np.asarray(q["scales"], np.float64)
        zeros = np.asarray(q["zero_points"], np.float64)
        if scales.size == 0:
            raise ValueError(f"integer weight tensor {index} carries no quantisation scale")
        kind = "int8"
        shape = [1] * arr.ndim
        if scales.size > 1:
            shape[int(q["quantized_dimension"])] = scales.size
        return ((arr - zeros.reshape(shape)) * scales.reshape(shape)).astype(np.float32)

    consumers: dict[int, list[dict[str, Any]]] = {}
    for op in ops:
        for i in op["inputs"]:
            consumers.setdefault(int(i), []).append(op)
    conv_ops = ("CONV_2D", "DEPTHWISE_CONV_2D")

    def next_convs(tensor: int) -> list[dict[str, Any]]:
        """Convolution ops reached from ``tensor`` through non-convolution ops."""
        found, todo, seen = [], [tensor], set()
        while todo:
            t = todo.pop()
            for op in consumers.get(t, []):
                if id(op) in seen:
                    continue
                seen.add(id(op))
                if op["op_name"] in conv_ops or op["op_name"] == "FULLY_CONNECTED":
                    found.append(op)
                else:
                    todo.extend(int(o) for o in op["outputs"])
        return found

    def set_conv(layer: str, op: dict[str, Any]) -> None:
        w = tensor(int(op["inputs"][1]))
        b = tensor(int(op["inputs"][2]))
        model.get_layer(layer).set_weights([np.transpose(w, (1, 2, 3, 0)), b])

    names = [layer.name for layer in model.layers]
    blocks = sorted({n.rsplit("_", 1)[0] for n in names if n.endswith("_dw")})
    stages = [b for b in blocks if b != "heat"]
    chain = ["stem_conv"] + [n for b in stages for n in (f"{b}_dw", f"{b}_pw_conv")]
    first = interp.get_input_details()[0]["index"]
    current = next_convs(int(first))
    heat_start = None
    for k, layer in enumerate(chain):
        convs = [op for op in current if op["op_name"] in conv_ops]
        if len(convs) > 1:  # the fork after stage 2: the heat branch keeps the size
            size_of = {id(op): shapes[int(op["outputs"][0])][1] for op in convs}
            convs.sort(key=lambda op: size_of[id(op)])
            heat_start = convs[-1]
        op = convs[0]
        set_conv(layer, op)
        current = next_convs(int(op["outputs"][0]))
        if k == len(chain) - 1:
            fc = [o for o in current if o["op_name"] == "FULLY_CONNECTED"]
            w = tensor(int(fc[0]["inputs"][1]))
            b = tensor(int(fc[0]["inputs"][2]))
            model.get_layer("scores").set_weights([w.T, b])
    if heat_start is None:
        raise ValueError("float model has no heatmap branch")
    op = heat_start
    for layer in ("heat_dw", "heat_pw_conv", "heatmap"):
        set_conv(layer, op)
        nxt = [o for o in next_convs(int(op["outputs"][0])) if o["op_name"] in conv_ops]
        if nxt:
            op = nxt[0]
    return kind


def _heat_loss(pos_weight: float) -> Any:
    """Per-sample mean binary cross-entropy over the heatmap cells (shape (N,), so a
    per-sample weight switches it off for frames without a known target); lesion cells
    weigh ``pos_weight`` times more (a lesion covers a few cells of hundreds: without the
    weight the head learns "no lesion anywhere" first)."""
    import tensorflow as tf

    def loss(y_true: Any, y_pred: Any) -> Any:
        p = tf.clip_by_value(y_pred, 1e-6, 1.0 - 1e-6)
        bce = pos_weight * y_true * tf.math.log(p) + (1.0 - y_true) * tf.math.log(1.0 - p)
        return -tf.reduce_mean(bce, axis=[1, 2, 3])

    return loss


def detector_crops(
    x: F32,
    heat: F32,
    y: npt.NDArray[np.int64],
    negative_index: int,
    size: int,
    negatives: int,
    rng: np.random.Generator,
) -> tuple[F32, npt.NDArray[np.int64], F32]:
    """Training crops of the detector-first curriculum (:attr:`NetConfig.crop_epochs`).

    Every frame whose heatmap target has a lesion gives one ``size`` px crop around the
    lesion's strongest cell, shifted by up to ``size / 4`` px, labelled with the frame's
    class; every frame also gives ``negatives`` crops from uniformly random places that
    hold no lesion cell, labelled ``negative_index``. Crops start on the heatmap grid
    (multiples of 8 px) so their heatmap targets are the matching cells. A frame
    smaller than ``size`` gives nothing.

    Parameters
    ----------
    x : ndarray, shape (N, H, W, 1)
        Model inputs.
    heat : ndarray, shape (N, H/8, W/8, 1)
        Heatmap targets (:func:`~medimg_edge.training.heat_target`).
    y : ndarray of int, shape (N,)
        Class index per frame.

    Returns
    -------
    crops : ndarray, shape (M, size, size, 1)
    labels : ndarray of int, shape (M,)
    heat : ndarray, shape (M, size/8, size/8, 1)
    """
    n, h, w = x.shape[0], x.shape[1], x.shape[2]
    g, c = _HEAT_STRIDE, size // _HEAT_STRIDE
    xs: list[F32] = []
    ys: list[int] = []
    hs: list[F32] = []
    if h < size or w < size:
        return (
            np.zeros((0, size, size, 1), np.float32),
            np.zeros(0, np.int64),
            np.zeros((0, c, c, 1), np.float32),
        )
    gh, gw = (h - size) // g, (w - size) // g  # last grid start of a crop
    for i in range(n):
        cells = heat[i, :, :, 0]
        if y[i] != negative_index and float(cells.max()) > 0.0:
            cy, cx = np.unravel_index(int(np.argmax(cells)), cells.shape)
            jy, jx = rng.integers(-(c // 4), c // 4 + 1, 2)
            r0 = int(np.clip(cy - c // 2 + jy, 0, gh))
            c0 = int(np.clip(cx - c // 2 + jx, 0, gw))
            xs.append(x[i, r0 * g : r0 * g + size, c0 * g : c0 * g + size])
            ys.append(int(y[i]))
            hs.append(heat[i, r0 : r0 + c, c0 : c0 + c])
        for _ in range(negatives):
            for _try in range(8):  # a place without lesion cells (nearly always the first)
                r0, c0 = (int(v) for v in rng.integers(0, (gh + 1, gw + 1)))
                if not np.any(cells[r0 : r0 + c, c0 : c0 + c] > 0.0):
                    xs.append(x[i, r0 * g : r0 * g + size, c0 * g : c0 * g + size])
                    ys.append(negative_index)
                    hs.append(heat[i, r0 : r0 + c, c0 : c0 + c])
                    break
    return (
        np.stack(xs).astype(np.float32, copy=False),
        np.asarray(ys, np.int64),
        np.stack(hs).astype(np.float32, copy=False),
    )


def _detector_phase(train: Dataset, cfg: NetConfig, progress: bool) -> Any:
    """The detector-first curriculum (:attr:`NetConfig.crop_epochs`): the network built at
    the crop size and trained on :func:`detector_crops` of every epoch's augmented frames;
    returns it (its weights are the whole-frame network's start)."""
    import tensorflow as tf

    n_classes = len(train.labels)
    model = build_network(cfg.crop_size, n_classes, cfg)
    rng = np.random.default_rng(cfg.seed + 7919)
    per_epoch = int(np.sum(train.positive)) + cfg.crop_negatives * len(train)
    steps = cfg.crop_epochs * int(np.ceil(max(1, per_epoch) / cfg.batch_size))
    lr = tf.keras.optimizers.schedules.CosineDecay(cfg.learning_rate, max(1, steps), alpha=0.1)
    model.compile(
        optimizer=tf.keras.optimizers.Adam(lr),
        loss={
            "scores": tf.keras.losses.CategoricalCrossentropy(),
            "heatmap": _heat_loss(cfg.heat_pos_weight),
        },
        loss_weights={"scores": 1.0, "heatmap": cfg.heatmap_weight},
        metrics={"scores": ["accuracy"]},
    )
    verbose = 1 if progress and sys.stderr.isatty() else (2 if progress else 0)
    xc = None
    for epoch in range(cfg.crop_epochs):
        if cfg.augment > 0.0 and train.frames is not None:
            from ._data import augmented_inputs

            ramp = min(1.0, 0.4 + 0.6 * epoch / max(1.0, cfg.crop_epochs / 2.0))
            xa, heat = augmented_inputs(
                train,
                cfg.seed * 1_000_003 + 500_000 + epoch,
                strength=cfg.augment * ramp,
                workers=cfg.workers,
            )
        else:
            xa, heat = train.x, train.heat
        xc, yc, hc = detector_crops(
            xa, heat, train.y, train.negative_index, cfg.crop_size, cfg.crop_negatives, rng
        )
        if progress:
            print(
                f"detector epoch {epoch + 1}/{cfg.crop_epochs}: {len(xc)} crops of "
                f"{cfg.crop_size} px ({int(np.sum(yc != train.negative_index))} with a lesion)",
                file=sys.stderr,
                flush=True,
            )
        model.fit(
            xc,
            {"scores": np.eye(n_classes, dtype=np.float32)[yc], "heatmap": hc},
            batch_size=cfg.batch_size,
            epochs=epoch + 1,
            initial_epoch=epoch,
            shuffle=True,
            verbose=verbose,
        )
    return model


def _copy_weights(src: Any, dst: Any) -> None:
    """Every layer's weights from ``src`` to the layer of the same name in ``dst`` (the
    same network built at another input size)."""
    for layer in src.layers:
        weights = layer.get_weights()
        if weights:
            dst.get_layer(layer.name).set_weights(weights)


def fit(train: Dataset, val: Dataset | None, cfg: NetConfig, *, progress: bool = True) -> Any:
    """Train the network (Adam, cosine-decayed learning rate; loss = categorical
    cross-entropy + ``heatmap_weight`` x per-cell binary cross-entropy, the latter only on
    samples with a known heatmap target). When ``train`` keeps its raw frames and
    ``cfg.augment > 0``, every epoch trains on a fresh random augmentation of every frame
    (:func:`medimg_edge.training.augmented_inputs`). BatchNorm statistics are re-estimated
    for the final weights at the end (:func:`recalibrate_batchnorm`). Deterministic for a
    given seed."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(cfg.seed)
    tf.config.experimental.enable_op_determinism()
    n_classes = len(train.labels)
    model = build_network(train.x.shape[1], n_classes, cfg)
    if cfg.init_from is not None:
        load_tflite_weights(model, Path(cfg.init_from).read_bytes())
    elif cfg.crop_epochs > 0 and train.has_masks:
        _copy_weights(_detector_phase(train, cfg, progress), model)
    if cfg.freeze == "backbone":
        for layer in model.layers:
            if layer.name.startswith(("stem_", "s1b", "s2b", "s3b")):
                layer.trainable = False
    steps = cfg.epochs * int(np.ceil(len(train) / cfg.batch_size))
    lr = tf.keras.optimizers.schedules.CosineDecay(cfg.learning_rate, max(1, steps), alpha=0.02)
    hw = cfg.heatmap_weight if train.has_masks else 0.0
    model.compile(
        optimizer=tf.keras.optimizers.Adam(lr),
        loss={
            "scores": tf.keras.losses.CategoricalCrossentropy(),
            "heatmap": _heat_loss(cfg.heat_pos_weight),
        },
        loss_weights={"scores": 1.0, "heatmap": hw},
        metrics={"scores": ["accuracy"]},
    )

    def arrays(d: Dataset) -> tuple[F32, dict[str, F32], dict[str, F32]]:
        onehot = np.eye(n_classes, dtype=np.float32)[d.y]
        ones = np.ones(len(d), np.float32)
        return (
            d.x,
            {"scores": onehot, "heatmap": d.heat},
            {"scores": ones, "heatmap": d.heat_weight},
        )

    x, y, w = arrays(train)
    val_data = None if val is None or len(val) == 0 else arrays(val)
    verbose = 1 if progress and sys.stderr.isatty() else (2 if progress else 0)
    if cfg.augment <= 0.0 or train.frames is None:
        model.fit(
            x,
            y,
            sample_weight=w,
            batch_size=cfg.batch_size,
            epochs=cfg.epochs,
            shuffle=True,
            validation_data=val_data,
            verbose=verbose,
        )
        recalibrate_batchnorm(model, x, batch_size=cfg.batch_size, seed=cfg.seed)
        return model
    from ._data import augmented_inputs

    for epoch in range(cfg.epochs):
        # A new random device-processing chain for every frame, every epoch.
        t0 = time.perf_counter()
        # Strength ramps up over the first third of the epochs (a short curriculum: the
        # network first finds the lesions, then learns to ignore the processing).
        ramp = min(1.0, 0.4 + 0.6 * epoch / max(1.0, cfg.epochs / 3.0))
        xa, heat = augmented_inputs(
            train, cfg.seed * 1_000_003 + epoch, strength=cfg.augment * ramp, workers=cfg.workers
        )
        if progress:
            print(
                f"epoch {epoch + 1}/{cfg.epochs}: augmented {len(train)} frames in "
                f"{time.perf_counter() - t0:.1f} s",
                file=sys.stderr,
                flush=True,
            )
        model.fit(
            xa,
            {"scores": y["scores"], "heatmap": heat},
            sample_weight=w,
            batch_size=cfg.batch_size,
            epochs=epoch + 1,
            initial_epoch=epoch,
            shuffle=True,
            validation_data=val_data if epoch == cfg.epochs - 1 or epoch % 3 == 2 else None,
            verbose=verbose,
        )
    if cfg.epochs > 0:
        # the statistics of the last epoch's processed frames, for the final weights
        recalibrate_batchnorm(model, xa, batch_size=cfg.batch_size, seed=cfg.seed)
    return model


def to_tflite(model: Any, representative: F32 | None) -> bytes:
    """Convert to TFLite with one ``serving_default`` signature (input ``image``, outputs
    ``scores``, ``heatmap`` and ``features``: the global means of the 1/8 and 1/16 feature
    maps, concatenated, which the out-of-distribution guard reads), batch 1, static shapes.

    With ``representative`` frames: full-integer post-training quantisation (Jacob et al.
    [2]_): int8 weights and activations, ``TFLITE_BUILTINS_INT8`` only, int8 input and
    outputs; BatchNorm is folded into the convolutions by the converter. Without: float32.
    """
    import tensorflow as tf

    size = int(model.inputs[0].shape[1])
    module = tf.Module()
    spec = tf.TensorSpec([1, size, size, 1], tf.float32, name="image")
    module.f = tf.function(_const_forward(model), input_signature=[spec])
    cf = module.f.get_concrete_function()
    return _convert(tf.lite.TFLiteConverter.from_concrete_functions([cf], module), representative)


def _folded(model: Any, conv: str, bn: str) -> tuple[F32, F32]:
    """Kernel and bias of layer ``conv`` with the BatchNorm ``bn`` folded in (or the
    layer's own bias when the network has no BatchNorm)."""
    if bn not in {layer.name for layer in model.layers}:
        kernel, bias = model.get_layer(conv).get_weights()
        return np.asarray(kernel, np.float32), np.asarray(bias, np.float32)
    w = np.asarray(model.get_layer(conv).get_weights()[0], np.float64)
    gamma, beta, mean, var = (np.asarray(v, np.float64) for v in model.get_layer(bn).get_weights())
    scale = gamma / np.sqrt(var + model.get_layer(bn).epsilon)
    if w.shape[-1] == 1 and w.shape[2] == scale.size and conv.endswith("_dw"):
        w = w * scale[None, None, :, None]
    else:
        w = w * scale
    return w.astype(np.float32), (beta - mean * scale).astype(np.float32)


def _const_forward(model: Any) -> Any:
    """The trained network as a function of constants (BatchNorm folded; TFLite ops CONV_2D,
    DEPTHWISE_CONV_2D with fused ReLU6, MEAN, FULLY_CONNECTED, SOFTMAX, LOGISTIC), whose
    output dict keys become the signature's output names."""
    import tensorflow as tf

    names = [layer.name for layer in model.layers]
    blocks = sorted({n.rsplit("_", 1)[0] for n in names if n.endswith("_dw")})
    stages = [b for b in blocks if b != "heat"]
    c: dict[str, tuple[Any, Any, int]] = {}

    def put(key: str, conv: str, bn: str) -> None:
        w, b = _folded(model, conv, bn)
        c[key] = (tf.constant(w), tf.constant(b), int(model.get_layer(conv).strides[0]))

    put("stem", "stem_conv", "stem_bn")
    for blk in [*stages, "heat"]:
        put(f"{blk}_dw", f"{blk}_dw", f"{blk}_dwbn")
        put(f"{blk}_pw", f"{blk}_pw_conv", f"{blk}_pw_bn")
    hw, hb = model.get_layer("heatmap").get_weights()
    dw, db = model.get_layer("scores").get_weights()
    head = (tf.constant(hw), tf.constant(hb), tf.constant(dw), tf.constant(db))

    def conv(x: Any, key: str) -> Any:
        w, b, s = c[key]
        return tf.nn.relu6(tf.nn.conv2d(x, w, s, "SAME") + b)

    def dwconv(x: Any, key: str) -> Any:
        w, b, s = c[key]
        return tf.nn.relu6(tf.nn.depthwise_conv2d(x, w, [1, s, s, 1], "SAME") + b)

    def forward(image: Any) -> dict[str, Any]:
        x = conv(image, "stem")
        heat_feat = None
        for blk in stages:
            x = conv(dwconv(x, f"{blk}_dw"), f"{blk}_pw")
            if blk.startswith("s2b"):
                heat_feat = x
        h = conv(dwconv(heat_feat, "heat_dw"), "heat_pw")
        heat = tf.sigmoid(tf.nn.conv2d(h, head[0], 1, "SAME") + head[1])
        pooled = tf.reduce_mean(x, axis=[1, 2])
        cls_in = pooled
        if head[2].shape[0] == 2 * pooled.shape[-1]:  # trained with max_pool
            cls_in = tf.concat([pooled, tf.reduce_max(x, axis=[1, 2])], axis=1)
        logits = tf.matmul(cls_in, head[2]) + head[3]
        # The OOD guard's input: pooled 1/8 (heatmap branch input) and 1/16 features.
        features = tf.concat([tf.reduce_mean(heat_feat, axis=[1, 2]), pooled], axis=1)
        return {"scores": tf.nn.softmax(logits), "heatmap": heat, "features": features}

    return forward


def _convert(conv: Any, representative: F32 | None) -> bytes:
    import tensorflow as tf

    if representative is not None:
        rep = np.asarray(representative, np.float32)

        def gen() -> Iterator[list[F32]]:
            for frame in rep:
                yield [frame[None]]

        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = gen
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return bytes(conv.convert())


def run_float_tflite(data: bytes, x: F32) -> dict[str, F32]:
    """Run a float TFLite model of this module on frames ``(N, H, W, 1)`` (one invoke per
    frame, one thread) with the runtime's interpreter; outputs ``scores`` ``(N, C)`` and
    ``heatmap`` ``(N, h, w)``."""
    from ..runtime import backend

    interp = backend().interpreter_cls(model_content=data, num_threads=1)
    interp.allocate_tensors()
    runner = interp.get_signature_runner()
    ins, outs = runner.get_input_details(), runner.get_output_details()
    del runner  # a live SignatureRunner blocks Interpreter.invoke in LiteRT
    idx_in = ins["image"]["index"]
    res: dict[str, list[F32]] = {k: [] for k in ("scores", "heatmap", "features") if k in outs}
    for frame in np.asarray(x, np.float32):
        interp.set_tensor(idx_in, frame[None])
        interp.invoke()
        for key in res:
            res[key].append(np.array(interp.get_tensor(outs[key]["index"])[0]))
    out = {k: np.stack(v).astype(np.float32) for k, v in res.items()}
    out["heatmap"] = out["heatmap"][..., 0]
    return out


def model_ops(data: bytes) -> dict[str, Any]:
    """Operators and tensor types of a TFLite model (from the interpreter's op details).

    Returns
    -------
    dict
        ``ops`` (sorted distinct builtin names), ``op_count``, ``tensor_dtypes`` (distinct
        dtypes of the input and of every op output), ``constant_dtypes`` (weights, biases),
        ``dynamic`` (True when a tensor has an unknown dimension), ``edgetpu_unsupported``
        (ops not in :data:`EDGETPU_OPS`).
    """
    import warnings

    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter deprecation notice
        interp = tf.lite.Interpreter(
            model_content=data,
            experimental_op_resolver_type=(
                tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            ),
        )
    interp.allocate_tensors()
    ops = interp._get_ops_details()
    names = sorted({op["op_name"] for op in ops})
    produced = {int(i) for op in ops for i in op["outputs"]}
    produced |= {int(d["index"]) for d in interp.get_input_details()}
    dtypes: set[str] = set()
    weights: set[str] = set()
    dynamic = False
    for t in interp.get_tensor_details():
        (dtypes if int(t["index"]) in produced else weights).add(np.dtype(t["dtype"]).name)
        sig = t.get("shape_signature")
        if sig is not None and np.any(np.asarray(sig) < 0):
            dynamic = True
    return {
        "ops": names,
        "op_count": len(ops),
        "tensor_dtypes": sorted(dtypes),
        "constant_dtypes": sorted(weights),
        "dynamic": dynamic,
        "edgetpu_unsupported": sorted(set(names) - EDGETPU_OPS),
    }
