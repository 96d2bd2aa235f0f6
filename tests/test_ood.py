"""The out-of-distribution guard: sidecar encoding, the distance, fitting, and what the
Diagnoser reports (``runtime/_ood.py``, ``training/_ood.py``, ``diagnosis.py``).

The Diagnoser-level tests use the bundled reference models (real int8 models with a
``features`` output and a fitted guard) and real images no one here wrote
(scikit-image's photographs, pydicom's CT file).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

import medimg_edge as me
from medimg_edge import synth
from medimg_edge.runtime._ood import decode_matrix, encode_matrix, guard_of

MODELS = Path(__file__).resolve().parent.parent / "models"
SCHEMA = json.loads(Path(me.diagnosis.SCHEMA_PATH).read_text())
FIXTURE = Path(__file__).parent / "data" / "models" / "bench224_int8.json"


def _meta_with(ood: dict[str, Any], labels: list[str]) -> dict[str, Any]:
    return {"labels": labels, "ood": ood}


def _ood_obj(means: np.ndarray, chol: np.ndarray, **kw: Any) -> dict[str, Any]:
    obj = {
        "method": "mahalanobis",
        "version": 1,
        "output": "features",
        "dim": int(chol.shape[0]),
        "classes": [f"c{i}" for i in range(means.shape[0])],
        "means": encode_matrix(means),
        "cholesky": encode_matrix(chol),
        "threshold": 3.0,
        "quantile": 0.99,
    }
    obj.update(kw)
    return obj


def test_matrix_encoding_roundtrip_and_errors() -> None:
    a = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    assert np.array_equal(decode_matrix(encode_matrix(a), (3, 4)), a)
    with pytest.raises(me.ModelError, match="bytes, expected"):
        decode_matrix(encode_matrix(a), (4, 4))
    with pytest.raises(me.ModelError, match="base64"):
        decode_matrix("not base64 !!", (1,))
    with pytest.raises(me.ModelError, match="NaN"):
        decode_matrix(encode_matrix(np.array([np.nan], np.float32)), (1,))


def test_distance_is_the_class_conditional_mahalanobis_distance() -> None:
    rng = np.random.default_rng(0)
    d, k = 6, 3
    a = rng.normal(size=(d, d))
    cov = a @ a.T + d * np.eye(d)
    prec = np.linalg.inv(cov)
    means = rng.normal(size=(k, d)) * 3
    meta = _meta_with(_ood_obj(means, np.linalg.cholesky(prec)), [f"c{i}" for i in range(k)])
    guard = guard_of(meta, {"features": {}}, "t.json")
    assert guard is not None
    f = rng.normal(size=(50, d)) * 4
    brute = np.array([min(float(np.sqrt((x - m) @ prec @ (x - m))) for m in means) for x in f])
    np.testing.assert_allclose(guard.distances(f), brute, rtol=1e-4)
    np.testing.assert_allclose([guard.distance(x) for x in f], brute, rtol=1e-4)
    with pytest.raises(me.ModelError, match="expects 6 features"):
        guard.distance(np.zeros(5))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"method": "energy"}, "not supported"),
        ({"version": 2}, "not supported"),
        ({"output": "logits"}, "not one of the package's outputs"),
        ({"classes": ["x", "y"]}, "must equal the package's labels"),
        ({"threshold": 0.0}, "positive number"),
    ],
)
def test_bad_guard_is_a_model_error(change: dict[str, Any], message: str) -> None:
    obj = _ood_obj(np.zeros((2, 3)), np.eye(3), **change)
    with pytest.raises(me.ModelError, match=message):
        guard_of(_meta_with(obj, ["c0", "c1"]), {"features": {}}, "t.json")


def test_no_guard_is_none() -> None:
    assert guard_of({"labels": ["a"]}, {}, "t.json") is None


def test_fit_sets_the_threshold_at_the_validation_quantile() -> None:
    from medimg_edge.training._ood import fit_ood  # the [train] extra (scikit-learn)

    rng = np.random.default_rng(1)
    d = 8
    centres = np.stack([np.zeros(d), np.full(d, 6.0)])
    y = rng.integers(0, 2, 4000)
    f = centres[y] + rng.normal(size=(4000, d))
    yv = rng.integers(0, 2, 2000)
    v = centres[yv] + rng.normal(size=(2000, d))
    obj, guard = fit_ood(f, y, v, ["a", "b"], quantile=0.99)
    assert obj["threshold"] == pytest.approx(np.quantile(guard.distances(v), 0.99), rel=1e-4)
    assert obj["fit"]["val_rejection"] == pytest.approx(0.01, abs=0.006)
    # Fresh in-distribution points: about 1 % rejected; far points: all rejected.
    fresh = centres[rng.integers(0, 2, 3000)] + rng.normal(size=(3000, d))
    assert np.mean(guard.distances(fresh) > guard.threshold) < 0.03
    far = rng.normal(size=(100, d)) + 30.0
    assert np.all(guard.distances(far) > guard.threshold)
    # Between the two classes (both coordinates ~3 sigma away from each mean): rejected.
    assert guard.distance(np.full(d, 3.0)) > guard.threshold
    with pytest.raises(me.InvalidInputError, match="every class"):
        fit_ood(f[y == 0], y[y == 0], v, ["a", "b"])
    with pytest.raises(me.InvalidInputError, match="quantile"):
        fit_ood(f, y, v, ["a", "b"], quantile=1.0)


def test_package_without_guard_says_absent() -> None:
    d = me.Diagnoser(FIXTURE, modality="ultrasound", delegate="cpu")
    res = d.diagnose(synth.ultrasound(3).image)
    assert res.ood == {"guard": "absent"}
    out = res.to_dict()
    jsonschema.validate(out, SCHEMA)
    assert out["ood"] == {"guard": "absent"}


# -- the reference models (real guard) -------------------------------------------------------


@pytest.fixture(scope="module", params=["xray_chest_nodule", "us_lesion"])
def reference(request: pytest.FixtureRequest) -> tuple[str, str]:
    name = request.param
    return name, "xray" if name.startswith("xray") else "ultrasound"


def test_reference_models_ship_a_guard(reference: tuple[str, str]) -> None:
    name, _ = reference
    meta = json.loads((MODELS / f"{name}.json").read_text())
    assert meta["ood"]["method"] == "mahalanobis" and meta["ood"]["output"] == "features"
    assert meta["outputs"]["features"]["kind"] == "embedding"
    model = me.load_model(name, delegate="cpu")
    x = me.runtime.to_model_input(synth.chest_xray(1).image, model.package.input)
    assert model.predict(x)["features"].shape == (1, meta["ood"]["dim"])


def _copy_package(
    tmp_path: Path, name: str, threshold: float, appearance: float | None = None
) -> Path:
    for suffix in (".tflite", ".json", ".md"):
        shutil.copy(MODELS / f"{name}{suffix}", tmp_path / f"{name}{suffix}")
    sidecar = tmp_path / f"{name}.json"
    meta = json.loads(sidecar.read_text())
    meta["ood"]["threshold"] = threshold
    if appearance is not None:
        meta["ood"]["appearance"]["threshold"] = appearance
    sidecar.write_text(json.dumps(meta))
    return sidecar


def test_flagged_frame_reports_no_finding(reference: tuple[str, str], tmp_path: Path) -> None:
    name, modality = reference
    frame = (synth.chest_xray(4) if modality == "xray" else synth.ultrasound(4)).image
    strict = me.Diagnoser(_copy_package(tmp_path, name, 1e-3), modality, delegate="cpu")
    res = strict.diagnose(frame)
    assert res.status == "indeterminate" and res.reasons == ("out_of_distribution",)
    assert res.label is None and res.confidence is None and res.positive_score is None
    assert res.scores == {} and res.heatmap is None
    assert res.ood["out_of_distribution"] is True and res.ood["distance"] > 1e-3
    jsonschema.validate(res.to_dict(include_heatmap=True), SCHEMA)
    # Video mode: a flagged frame does not enter the average.
    assert strict.diagnose(frame, timestamp_ms=0.0).smoothed is False
    lax = me.Diagnoser(_copy_package(tmp_path, name, 1e9, 1e9), modality, delegate="cpu")
    ok = lax.diagnose(frame)
    assert ok.ood["out_of_distribution"] is False and ok.label is not None
    assert ok.ood["distance"] == pytest.approx(res.ood["distance"], rel=1e-6)


def test_far_ood_inputs_are_never_positive(reference: tuple[str, str]) -> None:
    from skimage import data as skdata

    name, modality = reference
    d = me.Diagnoser(name, modality, delegate="cpu")
    frames = {
        "camera": skdata.camera(),
        "astronaut": skdata.astronaut(),
        "coins": skdata.coins(),
        "chelsea": skdata.chelsea(),
        "noise": (np.random.default_rng(5).random((256, 256)) * 255).astype(np.uint8),
    }
    other = synth.ultrasound(9).image if modality == "xray" else synth.chest_xray(9).image
    frames["other modality"] = other
    for label, f in frames.items():
        res = d.diagnose(f)
        assert res.status != "positive", (label, res.reasons, res.ood)
    flagged = [k for k, f in frames.items() if d.diagnose(f).reasons == ("out_of_distribution",)]
    assert len(flagged) >= 4, flagged


def test_in_distribution_frames_pass_the_guard(reference: tuple[str, str]) -> None:
    name, modality = reference
    d = me.Diagnoser(name, modality, delegate="cpu")
    samples = synth.generate(modality, 40, seed=777, size=256)
    flagged = sum(d.diagnose(s.image).reasons == ("out_of_distribution",) for s in samples)
    assert flagged <= 4, flagged


# ---- the second signal: the appearance guard (ood.appearance) ---------------------------


def _textures(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    """``n`` model inputs (32x32x1 in [0, 1]): smooth blobs or white noise."""
    import cv2

    out = np.empty((n, 32, 32, 1), np.float32)
    for i in range(n):
        a = rng.random((32, 32), dtype=np.float32)
        if kind == "smooth":
            a = cv2.GaussianBlur(a, (0, 0), 3.0)
            a = (a - a.min()) / max(float(a.max() - a.min()), 1e-6)
        out[i, :, :, 0] = a
    return out


def test_appearance_features_are_a_fixed_vector_of_the_model_input() -> None:
    from medimg_edge._appearance import SIDE, appearance_features

    x = synth.chest_xray(3).image.astype(np.float32) / 4095.0
    x = np.clip(x, 0.0, 1.0)
    a = appearance_features(x)
    assert a.shape == (len(me.features.feature_names()),) and np.isfinite(a).all()
    work: dict[str, Any] = {}
    assert np.array_equal(appearance_features(x[:, :, None], work=work), a)
    assert work["small"].shape == (SIDE, SIDE)
    assert np.array_equal(appearance_features(x, work=work), a)  # buffers reused
    flat = appearance_features(np.full((40, 40), 0.5, np.float32))
    assert np.isfinite(flat).all()  # undefined texture statistics of a flat frame are 0


def _appearance_inputs() -> dict[str, np.ndarray]:
    import cv2

    rng = np.random.default_rng(5)
    frames = {
        "xray": np.clip(synth.chest_xray(3).image.astype(np.float32) / 4095.0, 0.0, 1.0),
        "noise": rng.random((256, 256), dtype=np.float32),
        "smooth": cv2.GaussianBlur(rng.random((224, 224), dtype=np.float32), (0, 0), 4.0),
        "ramp": np.tile(np.linspace(0.0, 1.0, 200, dtype=np.float32), (150, 1)),
        "flat": np.full((64, 64), 0.5, np.float32),
        "black": np.zeros((128, 96), np.float32),
        "out of range": rng.normal(0.5, 0.6, (100, 100)).astype(np.float32),
        "halves": np.full((64, 64), 0.5 / 255.0, np.float32),  # rint ties: half to even
        "3-D": rng.random((96, 96, 1), dtype=np.float32),
    }
    us = synth.generate("ultrasound", 2, seed=9, size=256)
    for i, s in enumerate(us):
        img = s.image.astype(np.float32)
        frames[f"ultrasound {i}"] = img / max(float(img.max()), 1.0)
    return frames


def test_appearance_descriptor_equals_the_numpy_composition() -> None:
    """The fused kernel (one GIL-free call) keeps the descriptor the shipped guards were
    fitted on: every value equal to the NumPy composition's up to the last bit of NumPy's
    SIMD log1p, identical as float32 (what the guard reads), the same distances."""
    from appearance_helpers import numpy_appearance  # tests/: the NumPy composition
    from medimg_edge._appearance import appearance_features
    from medimg_edge.runtime._ood import appearance_of

    meta = json.loads((MODELS / "us_lesion.json").read_text())
    guard = appearance_of(meta, "us_lesion.json")
    assert guard is not None
    for name, x in _appearance_inputs().items():
        got, ref = appearance_features(x), numpy_appearance(x)
        np.testing.assert_array_max_ulp(got, ref, maxulp=2)
        np.testing.assert_array_equal(got.astype(np.float32), ref.astype(np.float32), name)
        assert guard.distance(got) == guard.distance(ref), name


def test_fit_appearance_threshold_and_separation() -> None:
    from medimg_edge.runtime._ood import appearance_of
    from medimg_edge.training._ood import fit_appearance  # the [train] extra

    rng = np.random.default_rng(2)
    train, val = _textures(rng, 300, "smooth"), _textures(rng, 200, "smooth")
    obj, guard = fit_appearance(train, val, quantile=0.95)
    from medimg_edge.training._ood import appearance_matrix

    d_val = guard.distances(appearance_matrix(val))
    assert obj["threshold"] == pytest.approx(np.quantile(d_val, 0.95), rel=1e-4)
    assert obj["fit"]["val_rejection"] == pytest.approx(0.05, abs=0.02)
    noise = appearance_matrix(_textures(rng, 40, "noise"))
    assert np.all(guard.distances(noise) > guard.threshold)
    # what the runtime decodes is the same guard
    again = appearance_of({"ood": {"appearance": obj}}, "x.json")
    assert again is not None and again.threshold == guard.threshold
    with pytest.raises(me.InvalidInputError, match="quantile"):
        fit_appearance(train, val, quantile=0.0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"descriptor": "extract-u8-32-v9"}, "descriptor"),
        ({"version": 2}, "version"),
        ({"dim": 5}, "bytes"),
        ({"threshold": 0.0}, "threshold"),
    ],
)
def test_bad_appearance_guard_is_a_model_error(change: dict[str, Any], message: str) -> None:
    from medimg_edge._appearance import DESCRIPTOR
    from medimg_edge.runtime._ood import appearance_of

    dim = 4
    app = {
        "method": "mahalanobis",
        "version": 1,
        "descriptor": DESCRIPTOR,
        "dim": dim,
        "mean": encode_matrix(np.zeros((1, dim))),
        "cholesky": encode_matrix(np.eye(dim)),
        "threshold": 2.0,
        "quantile": 0.995,
    }
    assert appearance_of({"ood": {"appearance": app}}, "m.json") is not None
    assert appearance_of({"ood": {}}, "m.json") is None
    with pytest.raises(me.ModelError, match=message):
        appearance_of({"ood": {"appearance": {**app, **change}}}, "m.json")


def test_reference_models_ship_the_appearance_guard(reference: tuple[str, str]) -> None:
    from medimg_edge._appearance import DESCRIPTOR

    name, _ = reference
    meta = json.loads((MODELS / f"{name}.json").read_text())
    app = meta["ood"]["appearance"]
    assert app["descriptor"] == DESCRIPTOR and app["dim"] == len(me.features.feature_names())
    assert app["fit"]["val_rejection"] <= 0.01


def test_appearance_alone_flags_a_frame(reference: tuple[str, str], tmp_path: Path) -> None:
    """The feature distance within its threshold, the appearance distance above: the
    frame is out of distribution all the same; with both lax it is diagnosed."""
    name, modality = reference
    frame = (synth.chest_xray(4) if modality == "xray" else synth.ultrasound(4)).image
    sidecar = _copy_package(tmp_path, name, 1e9, 1e-3)
    meta = json.loads(sidecar.read_text())
    res = me.Diagnoser(sidecar, modality, delegate="cpu").diagnose(frame)
    assert res.status == "indeterminate" and res.reasons == ("out_of_distribution",)
    assert res.ood["distance"] < 1e9 and res.ood["appearance"]["distance"] > 1e-3
    assert res.ood["out_of_distribution"] is True and res.label is None
    jsonschema.validate(res.to_dict(include_heatmap=True), SCHEMA)
    meta["ood"]["appearance"]["threshold"] = 1e9
    sidecar.write_text(json.dumps(meta))
    ok = me.Diagnoser(sidecar, modality, delegate="cpu").diagnose(frame)
    assert ok.ood["out_of_distribution"] is False and ok.label is not None
    assert ok.ood["appearance"]["distance"] == pytest.approx(res.ood["appearance"]["distance"])
