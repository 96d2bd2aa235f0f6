"""Cost of the out-of-distribution guard per frame (``runtime/_ood.py``).

The guard reads the reference X-ray model's ``features`` output (the model is run anyway)
and computes the class-conditional Mahalanobis distance from the Cholesky factor stored in
the sidecar. Peer, in the same run: SciPy's ``scipy.spatial.distance.mahalanobis`` with the
precision matrix, once per class (what a script would write). Both must give the same
distance.

The appearance guard (the second signal): ``diagnose`` with both guards against the same
package without ``ood.appearance``, and the descriptor alone.

Run: ``python -m pytest bench/test_bench_ood.py --benchmark-only``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import medimg_edge as me
from medimg_edge.runtime._ood import decode_matrix, guard_of

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import appearance_helpers  # tests/appearance_helpers.py: the NumPy composition (the peer)

MODELS = Path(__file__).resolve().parent.parent / "models"


@pytest.fixture(scope="module")
def setup() -> tuple[object, np.ndarray, np.ndarray, np.ndarray]:
    meta = json.loads((MODELS / "xray_chest_nodule.json").read_text())
    guard = guard_of(meta, meta["outputs"], "xray_chest_nodule.json")
    assert guard is not None
    model = me.load_model("xray_chest_nodule", delegate="cpu")
    x = me.runtime.to_model_input(me.synth.chest_xray(3).image, model.package.input)
    feats = model.predict(x)["features"][0]
    d, k = guard.dim, len(meta["labels"])
    chol = decode_matrix(meta["ood"]["cholesky"], (d, d)).astype(np.float64)
    means = decode_matrix(meta["ood"]["means"], (k, d)).astype(np.float64)
    return guard, feats, chol @ chol.T, means


def test_guard_distance(benchmark, setup) -> None:  # type: ignore[no-untyped-def]
    guard, feats, _, _ = setup
    d = benchmark(guard.distance, feats)
    assert d > 0


def test_scipy_mahalanobis_peer(benchmark, setup) -> None:  # type: ignore[no-untyped-def]
    from scipy.spatial.distance import mahalanobis

    guard, feats, precision, means = setup
    f = feats.astype(np.float64)

    def peer() -> float:
        return min(mahalanobis(f, m, precision) for m in means)

    d = benchmark(peer)
    assert d == pytest.approx(guard.distance(feats), rel=1e-3)


# ---- the second signal: the appearance guard (ood.appearance) ---------------------------


@pytest.fixture(scope="module", params=["xray_chest_nodule", "us_lesion"])
def diagnosers(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The shipped package and a copy of it without ``ood.appearance``, and a frame."""
    import shutil

    name = request.param
    tmp = tmp_path_factory.mktemp(name)
    for suffix in (".tflite", ".json", ".md"):
        shutil.copy(MODELS / f"{name}{suffix}", tmp / f"{name}{suffix}")
    meta = json.loads((tmp / f"{name}.json").read_text())
    assert "appearance" in meta["ood"]
    del meta["ood"]["appearance"]
    (tmp / f"{name}.json").write_text(json.dumps(meta))
    modality = "xray" if name.startswith("xray") else "ultrasound"
    frame = (me.synth.chest_xray(3) if modality == "xray" else me.synth.ultrasound(3)).image
    full = me.Diagnoser(name, modality, delegate="cpu", num_threads=1)
    bare = me.Diagnoser(tmp / f"{name}.json", modality, delegate="cpu", num_threads=1)
    return name, full, bare, frame


def test_diagnose_with_appearance_guard(benchmark, diagnosers) -> None:  # type: ignore[no-untyped-def]
    """Per-frame ``diagnose`` with both guards (the shipped packages)."""
    name, full, _, frame = diagnosers
    benchmark.group = f"appearance-guard-{name}"
    r = benchmark(full.diagnose, frame)
    assert r.ood["appearance"]["distance"] is not None


def test_diagnose_feature_guard_only_peer(benchmark, diagnosers) -> None:  # type: ignore[no-untyped-def]
    """The same package without ``ood.appearance`` (the overhead's baseline)."""
    name, full, bare, frame = diagnosers
    benchmark.group = f"appearance-guard-{name}"
    r = benchmark(bare.diagnose, frame)
    assert "appearance" not in r.ood
    assert r.ood["distance"] == pytest.approx(full.diagnose(frame).ood["distance"], rel=1e-6)


def test_appearance_descriptor(benchmark, diagnosers) -> None:  # type: ignore[no-untyped-def]
    """The descriptor alone on the model input (area-reduced to 64x64, 66 features)."""
    from medimg_edge._appearance import appearance_features

    name, full, _, frame = diagnosers
    benchmark.group = f"appearance-guard-{name}"
    x = me.preprocess.to_model_input(frame, full.model.package.input)
    work: dict[str, object] = {}
    v = benchmark(appearance_features, x, work=work)
    assert v.shape == (len(me.features.feature_names()),)


def test_appearance_descriptor_numpy_peer(benchmark, diagnosers) -> None:  # type: ignore[no-untyped-def]
    """Peer: the same descriptor through the NumPy composition (five kernel calls and
    their glue); equal to the fused call's as float32 (what the guard reads)."""
    from medimg_edge._appearance import appearance_features

    name, full, _, frame = diagnosers
    benchmark.group = f"appearance-guard-{name}"
    x = me.preprocess.to_model_input(frame, full.model.package.input)
    work: dict[str, object] = {}
    v = benchmark(appearance_helpers.numpy_appearance, x, work)
    np.testing.assert_array_equal(v.astype(np.float32), appearance_features(x).astype(np.float32))
