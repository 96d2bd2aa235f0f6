"""Cost of the out-of-distribution guard per frame (``runtime/_ood.py``).

The guard reads the reference X-ray model's ``features`` output (the model is run anyway)
and computes the class-conditional Mahalanobis distance from the Cholesky factor stored in
the sidecar. Peer, in the same run: SciPy's ``scipy.spatial.distance.mahalanobis`` with the
precision matrix, once per class (what a script would write). Both must give the same
distance.

Run: ``python -m pytest bench/test_bench_ood.py --benchmark-only``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import medimg_edge as me
from medimg_edge.runtime._ood import decode_matrix, guard_of

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
