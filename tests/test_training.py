"""Training, int8 export and evaluation (needs the [train] extra: TensorFlow, scikit-learn)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("sklearn")

import medimg_edge as me
from medimg_edge import synth, training

# -- metrics against hand-computed cases -----------------------------------------------------


def test_ece_hand_computed() -> None:
    # confidences 0.9 (correct), 0.6 (wrong), 0.8 (correct), each alone in its bin
    p = np.array([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2]])
    y = np.array([0, 1, 0])
    assert training.expected_calibration_error(p, y) == pytest.approx((0.1 + 0.6 + 0.2) / 3)
    # two samples in one bin: |mean acc 0.5 - mean conf 0.7| = 0.2
    p2 = np.array([[0.7, 0.3], [0.3, 0.7]])
    assert training.expected_calibration_error(p2, np.array([0, 0])) == pytest.approx(0.2)
    r = training.reliability_bins(p, y, 15)
    assert r["count"].sum() == 3 and r["edges"].size == 16


def test_temperature_hand_computed() -> None:
    # p = (0.9, 0.1) for every sample, 75% class 0: the MLE 0.75 = 1 / (1 + (1/9)^(1/T)),
    # so (1/9)^(1/T) = 1/3 and T = 2.
    p = np.tile([0.9, 0.1], (400, 1))
    y = np.array([0] * 300 + [1] * 100)
    t = training.fit_temperature(p, y)
    assert t == pytest.approx(2.0, rel=1e-4)
    cal = training.apply_temperature(p, t)
    assert cal[0, 0] == pytest.approx(0.75, rel=1e-4)
    assert np.allclose(training.apply_temperature(p, 1.0), p)
    with pytest.raises(me.InvalidInputError):
        training.apply_temperature(p, 0.0)


def test_hit_rate_hand_computed() -> None:
    hm = np.zeros((4, 4, 4))
    hm[0, 1, 1] = 1  # cell centre (12, 12): inside the box (8, 8, 16, 16)
    hm[1, 2, 2] = 1  # centre (20, 20): inside the box dilated by one cell (8 px)
    hm[2, 3, 3] = 1  # centre (28, 28): outside [0, 24)
    hm[3, 0, 0] = 1  # no bbox: skipped
    boxes = [(8, 8, 16, 16)] * 3 + [None]
    assert training.hit_rate(hm, boxes, [(32, 32)] * 4) == pytest.approx(2 / 3)
    assert math.isnan(training.hit_rate(hm[3:], [None], [(32, 32)]))


def test_auc_matches_sklearn_with_ties() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    s = np.round(rng.random(500) + 0.3 * y, 1)  # many ties
    assert training.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert training.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert math.isnan(training.roc_auc([1, 1], [0.2, 0.3]))


def test_threshold_confusion_sensitivity() -> None:
    y = np.array([0, 0, 1, 1])
    assert training.youden_threshold(y, [0.1, 0.2, 0.7, 0.9]) == pytest.approx(0.45)
    assert training.sensitivity_specificity(y, [0.1, 0.6, 0.7, 0.3], 0.5) == (0.5, 0.5)
    cm = training.confusion_matrix([0, 1, 2, 2], [0, 2, 2, 1], 3)
    assert cm.tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 1]]
    with pytest.raises(me.InvalidInputError):
        training.youden_threshold([1, 1], [0.2, 0.3])


def test_heat_target_is_lesion_fraction() -> None:
    mask = np.zeros((16, 16), bool)
    mask[0:4, 0:2] = True  # half of cell (0, 0) of a 4x4 grid
    t = training.heat_target(mask, (4, 4))
    assert t[0, 0] == pytest.approx(0.5) and t.sum() == pytest.approx(0.5)


def test_bad_input() -> None:
    with pytest.raises(me.InvalidInputError, match="size"):
        training.input_spec(100)
    with pytest.raises(me.InvalidInputError, match="modality"):
        training.synth_dataset("mri", 4, seed=0)
    with pytest.raises(me.InvalidInputError, match="class folders"):
        training.folder_dataset(Path(__file__).parent / "data" / "models")


# -- end to end (tiny: 64x64, one epoch) -------------------------------------------------------


def _cfg(tmp: Path, modality: str, name: str, **kw: object) -> training.TrainConfig:
    return training.TrainConfig(
        modality=modality,
        name=name,
        out_dir=tmp,
        size=64,
        frame_size=64,
        n_train=48,
        n_val=24,
        n_representative=16,
        net=training.NetConfig(widths=(8, 8, 16, 16), depth=1, epochs=1, batch_size=16),
        workers=1,
        progress=False,
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def xray_run(tmp_path_factory: pytest.TempPathFactory) -> training.TrainResult:
    out = tmp_path_factory.mktemp("xray")
    return training.train(_cfg(out, "xray", "tiny_xray", features=True))


def test_train_export_load_predict(xray_run: training.TrainResult) -> None:
    sidecar = xray_run.sidecar
    meta = json.loads(sidecar.read_text())
    assert meta["labels"] == ["normal", "nodule"] and meta["input"]["height"] == 64
    assert meta["input"]["denoise"] == "none"
    lo, hi = meta["decision"]["abstain_band"]
    assert lo <= meta["decision"]["threshold"] <= hi
    model = me.load_model(sidecar, delegate="cpu")
    frame = synth.chest_xray(7, size=96).image
    x = me.runtime.to_model_input(frame, model.package.input)
    out = model.predict(x)
    assert out["scores"].shape == (1, 2) and out["heatmap"].shape == (1, 8, 8)
    assert out["scores"].sum() == pytest.approx(1.0, abs=0.02)
    # Every trained package carries the OOD guard on its features output.
    assert meta["outputs"]["features"]["kind"] == "embedding"
    assert meta["ood"]["method"] == "mahalanobis" and meta["ood"]["threshold"] > 0
    assert out["features"].shape == (1, meta["ood"]["dim"])
    assert me.Diagnoser(sidecar, "xray", delegate="cpu").diagnose(frame).ood["guard"] == (
        "mahalanobis"
    )
    # ... and the second, model-independent signal on the input's texture descriptor.
    app = meta["ood"]["appearance"]
    assert app["threshold"] > 0 and app["fit"]["n_train"] == meta["ood"]["fit"]["n_train"]
    assert "appearance" in me.Diagnoser(sidecar, "xray", delegate="cpu").diagnose(frame).ood
    assert model.input_details["dtype"] == np.int8
    ops = training.model_ops((sidecar.parent / "tiny_xray.tflite").read_bytes())
    assert not ops["edgetpu_unsupported"], ops
    assert ops["tensor_dtypes"] == ["int8"] and not ops["dynamic"]
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "SOFTMAX", "LOGISTIC"} <= set(ops["ops"])
    # float TFLite matches the int8 model's shape contract
    fl = training.run_float_tflite(xray_run.float_tflite, x[None])
    assert fl["scores"].shape == (1, 2) and fl["heatmap"].shape == (1, 8, 8)


def test_evaluate_writes_report(xray_run: training.TrainResult, tmp_path: Path) -> None:
    res = training.evaluate(
        xray_run.sidecar,
        "xray",
        n_test=24,
        n_stability=12,
        frame_size=64,
        report_dir=tmp_path,
        float_tflite=xray_run.float_tflite,
        baseline_train=xray_run.train,
        workers=1,
        progress=False,
        n_robust=8,
        n_size=4,
        n_holdout=8,
        robustness_sizes=(256,),
    )
    assert 0.0 <= res["cnn"]["auc"] <= 1.0 and "baseline" in res
    assert 0.0 <= res["float_int8_agreement"] <= 1.0
    assert len(res["stability"]) == 5 and "full lesion range" in res["stability"]
    files = ("report.md", "metrics.json", "roc.png", "reliability.png", "examples.png")
    for f in (*files, "robustness.png", "ood_distances.png"):
        assert (tmp_path / f).is_file(), f
    # The evaluation that would catch a generator-bound model: every transform, the OOD
    # suite through the Diagnoser and the second phantom family are in the report.
    assert set(res["robustness"]["transforms"]) >= {"gamma", "clahe", "unsharp", "blur"}
    assert res["ood"]["guard"] == "mahalanobis" and res["ood"]["groups"]["photos"]["n"] >= 10
    assert res["holdout"]["n"] == 8
    text = (tmp_path / "report.md").read_text()
    assert "Robustness matrix" in text and "Out-of-distribution suite" in text
    with pytest.raises(me.InvalidInputError, match="seed"):
        training.evaluate(xray_run.sidecar, "xray", seed=0, n_test=4, progress=False)


def test_train_from_folder(tmp_path: Path) -> None:
    samples = synth.generate("ultrasound", 16, seed=5, size=64)
    synth.write(samples, tmp_path / "data")
    cfg = _cfg(tmp_path / "out", "ultrasound", "tiny_us", data_dir=tmp_path / "data")
    result = training.train(cfg)
    assert result.train.has_masks
    assert set(result.train.labels) <= set(synth.LABELS["ultrasound"])
    model = me.load_model(result.sidecar, delegate="cpu")
    assert model.labels == result.train.labels
    assert "user folder" in json.loads(result.sidecar.read_text())["provenance"]["training_data"]


def test_cli_train_and_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from medimg_edge.cli import main

    args = ["train", "--modality", "xray", "--name", "cli_x", "--out", str(tmp_path)]
    args += ["--size", "64", "--frame-size", "64", "--n-train", "32", "--n-val", "16"]
    assert main([*args, "--epochs", "1", "--batch-size", "16", "--no-progress"]) == 0
    sidecar = tmp_path / "cli_x.json"
    assert (tmp_path / "cli_x.md").read_text().count("NOT FOR CLINICAL USE") >= 1
    code = main(
        [
            "evaluate",
            str(sidecar),
            "--modality",
            "xray",
            "--n-test",
            "16",
            "--n-stability",
            "8",
            "--baseline-n",
            "16",
            "--no-robustness",
            "--no-progress",
        ]
    )
    assert code == 0
    assert "ROC AUC" in capsys.readouterr().out
    assert main(["evaluate", str(sidecar), "--modality", "ultrasound", "--no-progress"]) == 2


def test_batchnorm_recalibration_matches_the_final_weights() -> None:
    """After training, the moving statistics are re-estimated for the final weights: stale
    statistics (here: set to nonsense) are replaced by the batch statistics of the data,
    so inference-mode outputs follow training-mode ones."""
    import tensorflow as tf

    from medimg_edge.training._network import NetConfig, build_network, recalibrate_batchnorm

    tf.keras.utils.set_random_seed(3)
    model = build_network(32, 2, NetConfig(widths=(8, 8, 8, 8), depth=1))
    rng = np.random.default_rng(0)
    x = (0.5 + 0.2 * rng.standard_normal((256, 32, 32, 1))).astype(np.float32)
    bns = [layer for layer in model.layers if isinstance(layer, tf.keras.layers.BatchNormalization)]
    for layer in bns:
        layer.moving_mean.assign(np.full(layer.moving_mean.shape, 50.0, np.float32))
        layer.moving_variance.assign(np.full(layer.moving_variance.shape, 1e4, np.float32))
    stale = model(x[:64], training=False)["scores"].numpy()
    live = model(x[:64], training=True)["scores"].numpy()
    assert np.abs(stale - live).max() > 0.05  # the stale statistics change the answer
    assert recalibrate_batchnorm(model, x, batch_size=32) == len(bns)
    first = bns[0]
    probe = tf.keras.Model(model.inputs, first.input)
    z = probe(x, training=False).numpy()
    np.testing.assert_allclose(first.moving_mean.numpy(), z.mean(axis=(0, 1, 2)), atol=0.02)
    # the average of batch variances (what BatchNorm normalises with in training), which
    # is within a small factor of the population variance; the stale value was 1e4
    np.testing.assert_allclose(
        first.moving_variance.numpy(), z.var(axis=(0, 1, 2)), rtol=0.6, atol=1e-4
    )
    after = model(x[:64], training=False)["scores"].numpy()
    assert np.abs(after - live).max() < np.abs(stale - live).max() / 5
    assert all(layer.momentum == 0.9 for layer in bns)  # the training momentum is restored
    no_bn = build_network(32, 2, NetConfig(widths=(8, 8, 8, 8), depth=1, batchnorm=False))
    assert recalibrate_batchnorm(no_bn, x) == 0


# -- detector-first curriculum (issue 14) ----------------------------------------------------


def test_detector_crops_centre_lesions_and_keep_negatives_clean() -> None:
    from medimg_edge.training._network import detector_crops

    rng = np.random.default_rng(0)
    x = rng.random((5, 256, 256, 1), dtype=np.float32)
    heat = np.zeros((5, 32, 32, 1), np.float32)
    heat[1, 3, 30] = 0.8  # a lesion near the top right corner
    heat[2, 16, 16] = heat[2, 16, 17] = 0.5
    y = np.array([0, 1, 1, 0, 1])  # frame 4: a lesion of unknown place (no target)
    xc, yc, hc = detector_crops(x, heat, y, 0, 64, 3, rng)
    assert xc.shape[1:] == (64, 64, 1) and hc.shape[1:] == (8, 8, 1)
    assert len(xc) == len(yc) == len(hc) == 2 + 5 * 3
    assert int(np.sum(yc == 1)) == 2
    # each lesion crop holds its lesion's strongest cell and is the frame's pixels there
    for k in np.nonzero(yc == 1)[0]:
        assert hc[k].max() >= 0.5
        hits = [
            i
            for i in (1, 2)
            for r in range(0, 193, 8)
            for c in range(0, 193, 8)
            if np.array_equal(x[i, r : r + 64, c : c + 64], xc[k])
            and np.array_equal(heat[i, r // 8 : r // 8 + 8, c // 8 : c // 8 + 8], hc[k])
        ]
        assert len(hits) == 1
    assert not np.any(hc[yc == 0] > 0)  # no negative crop holds a lesion cell
    empty = detector_crops(x[:, :32, :32], heat[:, :4, :4], y, 0, 64, 3, rng)
    assert len(empty[0]) == 0 and empty[0].shape[1:] == (64, 64, 1)
    with pytest.raises(ValueError, match="crop_size"):
        training.NetConfig(crop_size=40)
    with pytest.raises(ValueError, match="crop_epochs"):
        training.NetConfig(crop_epochs=-1)


def test_detector_phase_weights_start_the_whole_frame_network(tmp_path: Path) -> None:
    """The crop-size network's weights are the whole-frame network's start (every layer,
    same names), and a curriculum run trains, exports and loads like any other."""
    import tensorflow as tf

    from medimg_edge.training._network import NetConfig, _copy_weights, build_network

    cfg = NetConfig(widths=(8, 8, 8, 8), depth=1, max_pool=True)
    tf.keras.utils.set_random_seed(1)
    small, big = build_network(32, 2, cfg), build_network(64, 2, cfg)
    _copy_weights(small, big)
    for layer in small.layers:
        for a, b in zip(layer.get_weights(), big.get_layer(layer.name).get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    cfg_run = _cfg(tmp_path, "xray", "tiny_curriculum")
    net = dataclasses.replace(cfg_run.net, crop_epochs=1, crop_size=32, crop_negatives=1)
    res = training.train(dataclasses.replace(cfg_run, net=net))
    model = me.load_model(str(res.sidecar))
    out = model.predict(res.val.x[:4])["scores"]
    assert out.shape == (4, 2) and np.all(np.isfinite(out))


# -- fine-tuning from a package (issue 18 item 3) ---------------------------------------------


def test_int8_package_weights_reconstruct_the_network() -> None:
    """The shipped int8 file, dequantised into the float network, predicts what the package
    predicts: the reconstruction fine-tuning starts from."""
    from medimg_edge.training._network import build_network, load_tflite_weights
    from medimg_edge.training._package import predict_package

    sidecar = Path(me.runtime._package.find_sidecar("us_lesion"))
    meta = json.loads(sidecar.read_text())
    net = meta["provenance"]["network"]
    model = build_network(
        128,
        len(meta["labels"]),
        training.NetConfig(widths=tuple(net["widths"]), depth=net["depth"], batchnorm=False),
    )
    assert load_tflite_weights(model, sidecar.with_suffix(".tflite").read_bytes()) == "int8"
    spec = training.input_spec(128)
    frames = synth.generate("ultrasound", 40, seed=9)
    x = np.stack([me.preprocess.to_model_input(s.image, spec) for s in frames])
    rebuilt = model.predict(x, verbose=0)["scores"]
    packaged = predict_package(sidecar, x)["scores"]
    assert (rebuilt.argmax(1) == packaged.argmax(1)).mean() >= 0.95
    assert np.abs(rebuilt - packaged).max() < 0.1
    # a network of another shape is refused, not silently half-loaded
    other = build_network(128, 4, training.NetConfig(widths=(8, 8, 16, 16), batchnorm=False))
    with pytest.raises(ValueError):
        load_tflite_weights(other, sidecar.with_suffix(".tflite").read_bytes())


def test_finetune_from_package(xray_run: training.TrainResult, tmp_path: Path) -> None:
    import dataclasses
    import datetime

    from medimg_edge.training._network import build_network, load_tflite_weights

    parent = json.loads(xray_run.sidecar.read_text())
    synth.write(synth.generate("xray", 24, seed=31, size=96), tmp_path / "data")
    base = _cfg(tmp_path / "out", "xray", "tiny_xray_ft", data_dir=tmp_path / "data")
    cfg = dataclasses.replace(
        base,
        size=128,  # ignored: the parent's input size wins
        init_package=str(xray_run.sidecar),
        replay=8,
        net=dataclasses.replace(base.net, freeze="backbone", learning_rate=1e-3),
    )
    res = training.train(cfg)
    child = json.loads(res.sidecar.read_text())
    assert child["input"]["height"] == parent["input"]["height"] == 64
    assert child["labels"] == parent["labels"]
    p = child["provenance"]["parent"]
    assert (p["name"], p["version"], p["sha256"]) == (
        parent["name"],
        parent["version"],
        parent["files"]["cpu"]["sha256"],
    )
    assert child["version"] == f"{parent['version']}+ft.{datetime.date.today():%Y%m%d}"
    assert "replay phantoms" in child["provenance"]["training_data"]
    assert child["ood"]["threshold"] > 0 and "appearance" in child["ood"]
    got = me.Diagnoser(res.sidecar, "xray", delegate="cpu").diagnose(
        synth.chest_xray(3, size=96).image
    )
    assert (got.model["name"], got.model["version"]) == ("tiny_xray_ft", child["version"])
    # frozen backbone: the child's float stem equals the parent's dequantised stem
    widths = tuple(parent["provenance"]["network"]["widths"])
    nets = []
    for data in (xray_run.sidecar.with_suffix(".tflite").read_bytes(), res.float_tflite):
        m = build_network(64, 2, training.NetConfig(widths=widths, depth=1, batchnorm=False))
        load_tflite_weights(m, data)
        nets.append(m)
    for layer in ("stem_conv", "s3b0_pw_conv"):
        np.testing.assert_allclose(
            nets[0].get_layer(layer).get_weights()[0], nets[1].get_layer(layer).get_weights()[0]
        )
    assert not np.allclose(
        nets[0].get_layer("scores").get_weights()[0], nets[1].get_layer("scores").get_weights()[0]
    )


def test_finetune_refusals(xray_run: training.TrainResult, tmp_path: Path) -> None:
    import dataclasses

    from medimg_edge.cli import main
    from medimg_edge.cli.train import FREEZE_CHOICES
    from medimg_edge.training._network import FREEZE_CHOICES as NET_FREEZE

    assert FREEZE_CHOICES == NET_FREEZE  # the CLI keeps its copy to stay TensorFlow-free
    with pytest.raises(ValueError, match="freeze"):
        training.NetConfig(freeze="all")
    synth.write(synth.generate("ultrasound", 8, seed=3, size=64), tmp_path / "us")
    cfg = _cfg(tmp_path / "out", "xray", "bad", data_dir=tmp_path / "us")
    cfg = dataclasses.replace(cfg, modality="", init_package=str(xray_run.sidecar))
    with pytest.raises(me.InvalidInputError, match="not labels of the parent"):
        training.train(cfg)
    with pytest.raises(me.InvalidInputError, match="needs a data folder"):
        training.train(dataclasses.replace(cfg, data_dir=None))
    with pytest.raises(me.InvalidInputError, match="cannot fine-tune"):
        training.train(dataclasses.replace(cfg, init_package=str(tmp_path / "none.json")))
    with pytest.raises(me.InvalidInputError, match="for modality"):
        training.train(dataclasses.replace(cfg, modality="ultrasound"))
    out = str(tmp_path / "o")
    assert main(["train", "--init", str(xray_run.sidecar), "--out", out]) == 2
    assert main(["train", "--modality", "xray", "--freeze", "backbone", "--out", out]) == 2
    args = ["train", "--init", str(xray_run.sidecar), "--data", str(tmp_path / "us")]
    assert main([*args, "--out", out, "--no-progress"]) == 2
