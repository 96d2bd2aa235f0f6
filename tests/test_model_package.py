"""Model packages: sidecar schema and rules, integrity checks before parsing, lookup by name.

The fixtures in ``tests/data/models`` are real TFLite models made by
``scripts/make_test_models.py`` (see its README).
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import medimg_edge as me
from medimg_edge import runtime
from medimg_edge.runtime import _backend

FIXTURES = Path(__file__).parent / "data" / "models"
FIXTURE_NAMES = ["tiny_float", "tiny_int8", "tiny_uint8", "tiny_int8_floatio", "bench224_int8"]


def _copy_package(name: str, dest: Path) -> Path:
    for suffix in (".tflite", ".json", ".md"):
        shutil.copy(FIXTURES / f"{name}{suffix}", dest / f"{name}{suffix}")
    return dest / f"{name}.json"


def _load_meta(sidecar: Path) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads(sidecar.read_text())
    return meta


def _write_meta(sidecar: Path, meta: dict[str, Any]) -> None:
    sidecar.write_text(json.dumps(meta))


@pytest.fixture
def package(tmp_path: Path) -> Path:
    """A private copy of the tiny_int8 package that a test may corrupt."""
    return _copy_package("tiny_int8", tmp_path)


@pytest.fixture
def no_interpreter(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """Replace the interpreter class by one that records every construction."""
    made: list[bytes] = []
    real = _backend.backend()

    class Recorder:
        def __init__(self, model_content: bytes, **kwargs: Any) -> None:
            made.append(model_content)
            raise AssertionError("the interpreter must not see this model")

    fake = _backend.Backend(
        real.name, real.distribution, real.version, Recorder, real.load_delegate, None
    )
    monkeypatch.setattr(_backend, "backend", lambda: fake)
    monkeypatch.setattr("medimg_edge.runtime._model.backend", lambda: fake)
    yield made


# -- schema ---------------------------------------------------------------------------------
def test_shipped_schema_is_a_valid_json_schema() -> None:
    schema = json.loads(runtime.SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["schema_version"] == {"const": 1}


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_fixture_sidecars_validate(name: str) -> None:
    schema = json.loads(runtime.SCHEMA_PATH.read_text())
    meta = _load_meta(FIXTURES / f"{name}.json")
    jsonschema.Draft202012Validator(schema).validate(meta)
    pkg = runtime.read_package(FIXTURES / f"{name}.json")
    assert pkg.name == name
    assert pkg.cpu.path == FIXTURES / f"{name}.tflite"
    assert pkg.cpu.sha256 == runtime.sha256_file(pkg.cpu.path)
    assert pkg.cpu.bytes == pkg.cpu.path.stat().st_size
    assert pkg.negative_label in pkg.labels
    assert pkg.model_card.is_file()


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    keys = path.split(".")

    def edit(meta: dict[str, Any]) -> None:
        node = meta
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value

    return edit


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    keys = path.split(".")

    def edit(meta: dict[str, Any]) -> None:
        node = meta
        for k in keys[:-1]:
            node = node[k]
        del node[keys[-1]]

    return edit


# (edit, text that the error message must contain: the field)
INVALID_SIDECARS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "labels missing": (_delete("labels"), "'labels'"),
    "one label": (_set("labels", ["only"]), "field 'labels'"),
    "duplicate labels": (_set("labels", ["a", "a", "b"]), "field 'labels'"),
    "negative label unknown": (_set("negative_label", "nothing"), "field 'negative_label'"),
    "channels 2": (_set("input.channels", 2), "field 'input.channels'"),
    "height 0": (_set("input.height", 0), "field 'input.height'"),
    "height float": (_set("input.height", 16.5), "field 'input.height'"),
    "std zero": (_set("input.std", [0.0]), "field 'input.std.0'"),
    "mean length": (_set("input.mean", [0.5, 0.5, 0.5]), "field 'input.mean'"),
    "rgb with one channel": (_set("input.color_order", "rgb"), "field 'input.color_order'"),
    "output kind": (_set("outputs.scores.kind", "softmax"), "field 'outputs.scores.kind'"),
    "no scores output": (_delete("outputs.scores"), "'scores'"),
    "threshold > 1": (_set("decision.threshold", 1.5), "field 'decision.threshold'"),
    "band excludes threshold": (
        _set("decision.abstain_band", [0.6, 0.7]),
        "field 'decision.abstain_band'",
    ),
    "temperature negative": (
        _set("calibration.temperature", -1.0),
        "field 'calibration.temperature'",
    ),
    "temperature missing": (_delete("calibration.temperature"), "calibration.temperature"),
    "sha256 not hex": (_set("files.cpu.sha256", "xyz"), "field 'files.cpu.sha256'"),
    "path escapes folder": (
        _set("files.cpu.path", "../elsewhere.tflite"),
        "field 'files.cpu.path'",
    ),
    "absolute path": (_set("files.cpu.path", "/etc/passwd"), "field 'files.cpu.path'"),
    "not a tflite": (_set("files.cpu.path", "model.bin"), "field 'files.cpu.path'"),
    "schema version 2": (_set("schema_version", 2), "field 'schema_version'"),
    "wrong format": (_set("format", "other"), "field 'format'"),
    "unknown field": (_set("extra_field", 1), "extra_field"),
    "bad name": (_set("name", "Bad Name"), "field 'name'"),
    "bad version": (_set("version", "v1"), "field 'version'"),
    "modality": (_set("modality", "mri"), "field 'modality'"),
    "created date": (_set("provenance.created", "yesterday"), "field 'provenance.created'"),
}


@pytest.mark.parametrize("case", sorted(INVALID_SIDECARS))
def test_invalid_sidecar_names_the_field(package: Path, case: str) -> None:
    edit, expected = INVALID_SIDECARS[case]
    meta = _load_meta(package)
    edit(meta)
    _write_meta(package, meta)
    with pytest.raises(me.ModelError, match=r"model sidecar tiny_int8.json") as err:
        runtime.read_package(package)
    assert expected in str(err.value)
    with pytest.raises(me.ModelError):
        me.load_model(package)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"{not json", "not valid UTF-8 JSON"),
        (b"\xff\xfe", "not valid UTF-8 JSON"),
        (b"[1, 2]", "must hold a JSON object"),
        (b" " * (1 << 20) + b"{}", "larger than 1 MiB"),
    ],
)
def test_unparseable_sidecar(package: Path, content: bytes, expected: str) -> None:
    package.write_bytes(content)
    with pytest.raises(me.ModelError, match=expected):
        runtime.read_package(package)


def test_missing_sidecar_file(tmp_path: Path) -> None:
    with pytest.raises(me.ModelError, match="does not exist"):
        me.load_model(tmp_path / "absent.json")


# -- integrity: checked before the flatbuffer is parsed ----------------------------------------
def _tflite(package: Path) -> Path:
    return package.with_suffix(".tflite")


def test_flipped_byte_is_refused_before_parsing(package: Path, no_interpreter: list[bytes]) -> None:
    data = bytearray(_tflite(package).read_bytes())
    data[len(data) // 2] ^= 0x01
    _tflite(package).write_bytes(bytes(data))
    with pytest.raises(me.ModelError, match="failed its integrity check"):
        me.load_model(package, delegate="cpu")
    assert no_interpreter == []


def test_truncated_file_is_refused_before_parsing(
    package: Path, no_interpreter: list[bytes]
) -> None:
    data = _tflite(package).read_bytes()
    _tflite(package).write_bytes(data[: len(data) - 100])
    with pytest.raises(me.ModelError, match="is truncated"):
        me.load_model(package, delegate="cpu")
    _tflite(package).write_bytes(data + b"\0")
    with pytest.raises(me.ModelError, match="longer than recorded"):
        me.load_model(package, delegate="cpu")
    _tflite(package).write_bytes(b"")
    with pytest.raises(me.ModelError, match="is truncated"):
        me.load_model(package, delegate="cpu")
    assert no_interpreter == []


def test_swapped_model_is_refused_before_parsing(
    package: Path, no_interpreter: list[bytes]
) -> None:
    other = (FIXTURES / "tiny_uint8.tflite").read_bytes()
    _tflite(package).write_bytes(other)
    meta = _load_meta(package)
    meta["files"]["cpu"]["bytes"] = len(other)  # even with the size adjusted
    _write_meta(package, meta)
    with pytest.raises(me.ModelError, match="belongs to another model"):
        me.load_model(package, delegate="cpu")
    assert no_interpreter == []


def test_missing_model_file(package: Path) -> None:
    _tflite(package).unlink()
    with pytest.raises(me.ModelError, match=r"cannot read model file tiny_int8.tflite"):
        me.load_model(package, delegate="cpu")


@pytest.mark.parametrize(
    "content",
    [
        b"\x89PNG\r\n\x1a\n" + bytes(200),  # a PNG renamed .tflite
        b"MZ" + bytes(300),  # a Windows executable
        b"\x7fELF" + bytes(300),  # an ELF executable
        (8).to_bytes(4, "little") + b"TFL2" + bytes(64),  # wrong flatbuffer identifier
        (10**6).to_bytes(4, "little") + b"TFL3" + bytes(64),  # root offset outside the file
    ],
)
def test_wrong_file_type_with_matching_digest(
    package: Path, content: bytes, no_interpreter: list[bytes]
) -> None:
    """A sidecar whose digest matches a file that is not a TFLite model is still refused."""
    _tflite(package).write_bytes(content)
    meta = _load_meta(package)
    meta["files"]["cpu"]["bytes"] = len(content)
    meta["files"]["cpu"]["sha256"] = runtime.sha256_file(_tflite(package))
    _write_meta(package, meta)
    with pytest.raises(me.ModelError, match=r"TFLite flatbuffer|root offset"):
        me.load_model(package, delegate="cpu")
    assert no_interpreter == []


def test_verified_bytes_are_what_the_interpreter_gets(package: Path) -> None:
    """The file is read once; the interpreter gets those bytes, not the path."""
    pkg = runtime.read_package(package)
    data = runtime.read_verified(pkg.cpu)
    assert data == _tflite(package).read_bytes()
    model = me.load_model(package, delegate="cpu")
    assert model.info["sha256"] == pkg.cpu.sha256


def test_sidecar_that_does_not_match_the_model(package: Path) -> None:
    meta = _load_meta(package)
    bad = copy.deepcopy(meta)
    bad["labels"] = ["a", "b"]
    bad["negative_label"] = "a"
    _write_meta(package, bad)
    with pytest.raises(me.ModelError, match="3 values but the sidecar lists 2 labels"):
        me.load_model(package, delegate="cpu")
    bad = copy.deepcopy(meta)
    bad["input"]["height"] = 32
    _write_meta(package, bad)
    with pytest.raises(me.ModelError, match="input tensor has shape"):
        me.load_model(package, delegate="cpu")
    bad = copy.deepcopy(meta)
    bad["outputs"]["heatmap"]["name"] = "mask"
    _write_meta(package, bad)
    with pytest.raises(me.ModelError, match=r"field 'outputs.heatmap.name': 'mask'"):
        me.load_model(package, delegate="cpu")
    bad = copy.deepcopy(meta)
    bad["input"]["name"] = "pixels"
    _write_meta(package, bad)
    with pytest.raises(me.ModelError, match=r"field 'input.name'"):
        me.load_model(package, delegate="cpu")


# -- lookup -----------------------------------------------------------------------------------
def test_lookup_by_name_path_and_tflite(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, package: Path
) -> None:
    monkeypatch.setenv(runtime.MODEL_PATH_ENV, str(tmp_path))
    assert me.load_model("tiny_int8", delegate="cpu").info["sidecar"] == str(package)
    assert me.load_model(str(package), delegate="cpu").info["name"] == "tiny_int8"
    assert me.load_model(_tflite(package), delegate="cpu").info["name"] == "tiny_int8"
    edgetpu_path = package.with_name("tiny_int8_edgetpu.tflite")
    assert runtime._package.find_sidecar(edgetpu_path) == package


def test_unknown_name_lists_what_exists(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _copy_package("tiny_float", tmp_path)
    monkeypatch.setenv(runtime.MODEL_PATH_ENV, str(tmp_path))
    with pytest.raises(me.ModelError, match=r"no model named 'nope'.*available: .*tiny_float"):
        me.load_model("nope")


def test_tflite_without_sidecar(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "tiny_int8.tflite", tmp_path / "lonely.tflite")
    with pytest.raises(me.ModelError, match=r"has no sidecar lonely.json"):
        me.load_model(tmp_path / "lonely.tflite")


def test_list_models(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("tiny_int8", "tiny_float"):
        _copy_package(name, tmp_path)
    broken = _copy_package("tiny_uint8", tmp_path)
    meta = _load_meta(broken)
    del meta["labels"]
    _write_meta(broken, meta)
    monkeypatch.setenv(runtime.MODEL_PATH_ENV, str(tmp_path))
    listed = {m["name"]: m for m in me.list_models()}
    assert listed["tiny_int8"]["labels"] == ["normal", "class_a", "class_b"]
    assert listed["tiny_int8"]["edgetpu"] is False
    assert "labels" in listed["tiny_uint8"]["error"]
    names = [m["name"] for m in me.info()["models"]]
    assert {"tiny_int8", "tiny_float", "tiny_uint8"} <= set(names)
