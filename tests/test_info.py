"""``me.info()``: what this installation is, as a JSON-serialisable dict."""

from __future__ import annotations

import json

import cv2
import numpy as np

import medimg_edge as me

# The `medimg-edge info` command is tested in tests/test_cli.py.


def test_version():
    assert isinstance(me.__version__, str)
    major, minor, *_ = me.__version__.split(".")
    assert major.isdigit() and minor.isdigit()


def test_info_keys_and_types():
    info = me.info()
    for key in ("version", "simd", "compiler", "python", "platform", "machine", "numpy", "opencv"):
        assert key in info, key
    assert info["version"] == me.__version__
    assert info["numpy"] == np.__version__
    assert info["opencv"] == cv2.__version__
    assert set(info["simd"]) == {"compiled", "supported", "active", "cap"}


def test_info_is_json_serialisable():
    info = me.info()
    assert json.loads(json.dumps(info)) == info


def test_info_simd_matches_simd_module():
    simd = me.info()["simd"]
    assert simd["compiled"] == list(me.simd.compiled_targets())
    assert simd["supported"] == list(me.simd.supported_targets())
    assert simd["active"] == me.simd.active_target()
    assert simd["cap"] == me.simd.target_cap()
    assert simd["active"] in simd["supported"]
    assert set(simd["supported"]) <= set(simd["compiled"])


def test_info_reports_cap():
    with me.simd.use_target("scalar"):
        simd = me.info()["simd"]
        assert simd["active"] == "scalar"
        assert simd["cap"] == "scalar"
    with me.simd.use_target(None):
        simd = me.info()["simd"]
        assert simd["cap"] is None
        assert simd["active"] == simd["supported"][-1]
