"""The appearance descriptor (``extract-u8-64-v1``) as the NumPy composition computed it
before the fused kernel (``_core.extract_u8``): the reference of tests/test_ood.py and the
peer of bench/test_bench_ood.py.  The shipped guards (``ood.appearance``) were fitted on
these values."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from medimg_edge.features import _extract

SIDE = 64


def numpy_appearance(x: np.ndarray, work: dict[str, Any] | None = None) -> np.ndarray:
    """Area reduction to SIDE x SIDE, float32 ``* 255`` / ``np.rint`` / ``np.clip`` to
    uint8, ``extract`` family by family (``_extract._composed``), non-finite values 0,
    ``sign(v) log1p(10 |v|)``."""
    buf: dict[str, Any] = {} if work is None else work
    a = np.asarray(x, dtype=np.float32)
    if a.ndim == 3:
        a = a[:, :, 0]
    small = buf.setdefault("small", np.empty((SIDE, SIDE), np.float32))
    u8 = buf.setdefault("u8", np.empty((SIDE, SIDE), np.uint8))
    cv2.resize(a, (SIDE, SIDE), dst=small, interpolation=cv2.INTER_AREA)
    np.multiply(small, 255.0, out=small)
    np.rint(small, out=small)
    np.clip(small, 0.0, 255.0, out=small)
    u8[...] = small
    params = _extract._params(32, (1,), 4, 8, 1.0, 64, 8)
    v = np.asarray(_extract._composed(u8, u8, None, params), np.float64)
    v[~np.isfinite(v)] = 0.0
    out: np.ndarray = np.sign(v) * np.log1p(10.0 * np.abs(v))
    return out
