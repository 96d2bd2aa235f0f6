"""The Edge TPU delegate path, without Edge TPU hardware.

What runs here for real: the runtime's ``load_delegate`` on (a) a library name that does
not exist, (b) a real shared object that is not a delegate (our own ``_core`` extension),
and (c) a real delegate plugin compiled by this test from ``delegate_plugin/fake_edgetpu.c``
with libedgetpu's plugin ABI, either refusing like libedgetpu without a device, or
creating a delegate that claims no ops (the graph then runs on the CPU kernels). What
cannot run here: libedgetpu itself and a model compiled by ``edgetpu_compiler`` executing
on a TPU (see the README section "Edge TPU").
"""

from __future__ import annotations

import json
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

import medimg_edge as me
from medimg_edge import _core, runtime

FIXTURES = Path(__file__).parent / "data" / "models"
PLUGIN_SOURCE = Path(__file__).parent / "delegate_plugin" / "fake_edgetpu.c"


@pytest.fixture(scope="session")
def fake_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    assert compiler, "a C compiler is needed to build the delegate plugin fixture"
    out = tmp_path_factory.mktemp("plugin") / "libfake_edgetpu.so"
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-O1", "-o", str(out), str(PLUGIN_SOURCE)], check=True
    )
    return out


def _package(tmp_path: Path, *, with_edgetpu: bool) -> Path:
    """A copy of tiny_int8; the 'Edge TPU variant' is the CPU model under the _edgetpu name
    (a compiled one needs the real libedgetpu to run)."""
    for suffix in (".tflite", ".json", ".md"):
        shutil.copy(FIXTURES / f"tiny_int8{suffix}", tmp_path / f"tiny_int8{suffix}")
    sidecar = tmp_path / "tiny_int8.json"
    if with_edgetpu:
        variant = tmp_path / "tiny_int8_edgetpu.tflite"
        shutil.copy(FIXTURES / "tiny_int8.tflite", variant)
        meta = json.loads(sidecar.read_text())
        meta["files"]["edgetpu"] = {
            "path": variant.name,
            "sha256": runtime.sha256_file(variant),
            "bytes": variant.stat().st_size,
        }
        sidecar.write_text(json.dumps(meta))
    return sidecar


# -- model without an Edge TPU variant -----------------------------------------------------
def test_auto_without_variant_warns_once_and_runs_on_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An Edge TPU is present (the user named its library) but the model has no variant
    for it: one warning saying why, then the CPU."""
    sidecar = _package(tmp_path, with_edgetpu=False)
    monkeypatch.setenv(runtime.EDGETPU_LIB_ENV, "libedgetpu.so.1")
    assert runtime.edgetpu_present()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = me.load_model(sidecar)  # delegate="auto"
    fallbacks = [w for w in caught if issubclass(w.category, me.DelegateFallbackWarning)]
    assert len(fallbacks) == 1
    assert "not compiled for the Edge TPU" in str(fallbacks[0].message)
    assert model.delegate == "cpu"


def test_auto_without_an_edge_tpu_is_quiet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No Edge TPU on the machine: ``delegate="auto"`` is the CPU with a debug log line
    and no warning (nothing to fix), whether or not the model has an Edge TPU variant."""
    import logging

    from medimg_edge.runtime import _model

    monkeypatch.setattr(_model, "edgetpu_present", lambda: False)
    for with_edgetpu in (False, True):
        folder = tmp_path / str(with_edgetpu)
        folder.mkdir()
        sidecar = _package(folder, with_edgetpu=with_edgetpu)
        caplog.clear()
        with warnings.catch_warnings(), caplog.at_level(logging.DEBUG, "medimg_edge.runtime"):
            warnings.simplefilter("error")
            model = me.load_model(sidecar)
        assert model.delegate == "cpu"
        assert any("no Edge TPU on this machine" in r.getMessage() for r in caplog.records)
        assert all(r.levelno == logging.DEBUG for r in caplog.records)


def test_edgetpu_without_variant_says_how_to_fix(tmp_path: Path) -> None:
    sidecar = _package(tmp_path, with_edgetpu=False)
    with pytest.raises(me.DelegateError, match="edgetpu_compiler") as err:
        me.load_model(sidecar, delegate="edgetpu")
    assert "delegate='cpu'" in str(err.value)


# -- library problems ----------------------------------------------------------------------
def test_missing_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sidecar = _package(tmp_path, with_edgetpu=True)
    monkeypatch.setenv(runtime.EDGETPU_LIB_ENV, str(tmp_path / "libedgetpu.so.1"))
    with pytest.raises(me.DelegateError) as err:
        me.load_model(sidecar, delegate="edgetpu")
    text = str(err.value)
    assert "could not be loaded" in text and "libedgetpu1-std" in text
    assert str(tmp_path / "libedgetpu.so.1") in text
    with pytest.warns(me.DelegateFallbackWarning, match="could not be loaded"):
        model = me.load_model(sidecar, delegate="auto")
    assert model.delegate == "cpu" and model.info["file"] == "tiny_int8.tflite"


def test_default_library_name_is_the_platform_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(runtime.EDGETPU_LIB_ENV, raising=False)
    import platform

    want = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}
    assert runtime.edgetpu_library() == want[platform.system()]
    for system, name in want.items():
        monkeypatch.setattr(platform, "system", lambda s=system: s)
        assert runtime.edgetpu_library() == name


def test_shared_object_that_is_not_a_delegate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sidecar = _package(tmp_path, with_edgetpu=True)
    monkeypatch.setenv(runtime.EDGETPU_LIB_ENV, str(_core.__file__))
    with pytest.raises(me.DelegateError, match="not a TFLite delegate plugin") as err:
        me.load_model(sidecar, delegate="edgetpu")
    assert "tflite_plugin_create_delegate" in str(err.value)
    status = me.info()["edgetpu"]
    assert status["loadable"] is False and "not a TFLite delegate" in status["reason"]


def test_delegate_without_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_plugin: Path
) -> None:
    sidecar = _package(tmp_path, with_edgetpu=True)
    monkeypatch.setenv(runtime.EDGETPU_LIB_ENV, str(fake_plugin))
    monkeypatch.setenv("FAKE_EDGETPU_MODE", "nodevice")
    with pytest.raises(me.DelegateError) as err:
        me.load_model(sidecar, delegate="edgetpu", device="pci:1")
    text = str(err.value)
    assert "no Edge TPU found (fake)" in text  # the delegate's own message is kept
    assert "device 'pci:1'" in text and "lsusb" in text
    with pytest.warns(me.DelegateFallbackWarning, match="could not be created"):
        assert me.load_model(sidecar).delegate == "cpu"
    assert me.info()["edgetpu"]["loadable"] is True  # the library is fine, the device is not


# -- a delegate that loads -------------------------------------------------------------------
def test_edgetpu_variant_is_used_when_the_delegate_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_plugin: Path
) -> None:
    sidecar = _package(tmp_path, with_edgetpu=True)
    log = tmp_path / "plugin.log"
    monkeypatch.setenv(runtime.EDGETPU_LIB_ENV, str(fake_plugin))
    monkeypatch.setenv("FAKE_EDGETPU_LOG", str(log))
    monkeypatch.delenv("FAKE_EDGETPU_MODE", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", me.DelegateFallbackWarning)
        model = me.load_model(sidecar, delegate="auto", device="usb:0")
    assert model.delegate == "edgetpu"
    assert model.info["file"] == "tiny_int8_edgetpu.tflite" and model.info["device"] == "usb:0"
    assert log.read_text().splitlines() == ["device=usb:0", "created"]
    golden = np.load(FIXTURES / "golden.npz")
    cpu = me.load_model(sidecar, delegate="cpu")
    np.testing.assert_array_equal(
        model.predict(golden["inputs"])["scores"], cpu.predict(golden["inputs"])["scores"]
    )
    clone = model.clone()
    assert clone.delegate == "edgetpu"
    explicit = me.load_model(sidecar, delegate="edgetpu")  # no device option: first found
    assert explicit.delegate == "edgetpu"
    assert log.read_text().splitlines()[-1:] == ["created"]


def test_tampered_edgetpu_variant_is_an_error_not_a_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_plugin: Path
) -> None:
    sidecar = _package(tmp_path, with_edgetpu=True)
    variant = tmp_path / "tiny_int8_edgetpu.tflite"
    data = bytearray(variant.read_bytes())
    data[100] ^= 0xFF
    variant.write_bytes(bytes(data))
    monkeypatch.setenv(runtime.EDGETPU_LIB_ENV, str(fake_plugin))
    with pytest.raises(me.ModelError, match=r"tiny_int8_edgetpu.tflite failed its integrity"):
        me.load_model(sidecar, delegate="auto")
