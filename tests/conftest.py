"""Shared fixtures and settings of the medimg-edge test suite.

* Hypothesis runs derandomised (fixed seed) with no example database, so every run tests
  the same examples; ``HYPOTHESIS_PROFILE=thorough`` runs many more.
* Every test leaves the process-wide SIMD cap as it found it.
* Real test images (scikit-image samples, pydicom test files) are loaded once per session;
  all of them ship inside the installed wheels, so nothing touches the network.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import medimg_edge as me

settings.register_profile(
    "default",
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    max_examples=1000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(autouse=True)
def _restore_simd_cap() -> Iterator[None]:
    """Undo any SIMD cap a test leaves behind (e.g. after a failing ``set_target_cap``)."""
    cap = me.simd.target_cap()
    yield
    me.simd.set_target_cap(cap)


def _skimage_images() -> dict[str, np.ndarray]:
    data = pytest.importorskip("skimage.data")
    return {
        "camera": data.camera(),
        "moon": data.moon(),
    }


def _dicom_images() -> dict[str, np.ndarray]:
    pytest.importorskip("pydicom")
    import pydicom
    from pydicom.data import get_testdata_file

    out = {}
    # Both files are bundled in the pydicom wheel (asking for a file that is not bundled
    # would try to download it).
    for key, name in (("ct", "CT_small.dcm"), ("mr", "MR_small.dcm")):
        path = get_testdata_file(name)
        assert path is not None, f"pydicom test file {name} is missing"
        out[key] = pydicom.dcmread(path).pixel_array
    return out


@pytest.fixture(scope="session")
def real_images() -> dict[str, np.ndarray]:
    """Clean real images, as float64 (native value ranges).

    ``camera`` (512x512) and ``moon`` (512x512) from scikit-image; ``ct`` (128x128,
    ``CT_small.dcm``) and ``mr`` (64x64, ``MR_small.dcm``) from pydicom's test files.
    """
    images = {**_skimage_images(), **_dicom_images()}
    return {k: np.asarray(v, dtype=np.float64) for k, v in images.items()}
