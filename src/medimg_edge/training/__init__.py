"""Training, int8 export and evaluation of the compact two-head CNNs (``[train]`` extra).

::

    from medimg_edge import training
    cfg = training.TrainConfig("xray", "my_xray", Path("out"), n_train=2000)
    result = training.train(cfg)                       # out/my_xray.{tflite,json,md}
    res = training.evaluate(result.sidecar, "xray", report_dir=Path("out/reports/my_xray"))
    training.build_reference("models")                 # the shipped reference models

TensorFlow, scikit-learn and matplotlib are imported inside the functions that need them:
importing this package (or ``medimg_edge``) never imports TensorFlow. Every frame goes
through :func:`medimg_edge.preprocess.to_model_input`, the preprocessing the runtime applies
at inference.
"""

from __future__ import annotations

from ._data import HEATMAP_STRIDE, Dataset, folder_dataset, heat_target, input_spec, synth_dataset
from ._evaluate import STABILITY_LEVELS, evaluate, fit_baseline
from ._metrics import (
    PROB_FLOOR,
    apply_temperature,
    confusion_matrix,
    expected_calibration_error,
    fit_temperature,
    hit_rate,
    log_probs,
    positive_score,
    reliability_bins,
    roc_auc,
    sensitivity_specificity,
    youden_threshold,
)
from ._network import EDGETPU_OPS, NetConfig, build_network, model_ops, run_float_tflite, to_tflite
from ._package import code_version, export_package
from ._reference import REFERENCE, build_reference, train_and_report
from ._report import metrics_tables, write_model_card, write_report
from ._train import SEEDS, TrainConfig, TrainResult, train

__all__ = [
    "EDGETPU_OPS",
    "HEATMAP_STRIDE",
    "PROB_FLOOR",
    "REFERENCE",
    "SEEDS",
    "STABILITY_LEVELS",
    "Dataset",
    "NetConfig",
    "TrainConfig",
    "TrainResult",
    "apply_temperature",
    "build_network",
    "build_reference",
    "code_version",
    "confusion_matrix",
    "evaluate",
    "expected_calibration_error",
    "export_package",
    "fit_baseline",
    "fit_temperature",
    "folder_dataset",
    "heat_target",
    "hit_rate",
    "input_spec",
    "log_probs",
    "metrics_tables",
    "model_ops",
    "positive_score",
    "reliability_bins",
    "roc_auc",
    "run_float_tflite",
    "sensitivity_specificity",
    "synth_dataset",
    "to_tflite",
    "train",
    "train_and_report",
    "write_model_card",
    "write_report",
    "youden_threshold",
]
