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


# -- the runtime's schema validator against jsonschema ----------------------------------------
# read_package validates with medimg_edge.runtime._package._SchemaValidator (built from the
# shipped schema file, no jsonschema import at run time); here it must agree with
# jsonschema's Draft202012Validator on every fixture and every broken sidecar: same verdict,
# and the field it names is the one jsonschema's best_match names.

_MORE_BROKEN: dict[str, Callable[[dict[str, Any]], None]] = {
    "labels not a list": _set("labels", "a,b"),
    "label empty": _set("labels", ["", "b"]),
    "width too large": _set("input.width", 5000),
    "mean empty": _set("input.mean", []),
    "std string": _set("input.std", ["1"]),
    "color order": _set("input.color_order", "cmyk"),
    "denoise": _set("input.denoise", "median"),
    "bool as integer": _set("input.height", True),
    "integral float height": _set("input.height", 16.0),
    "bytes too small": _set("files.cpu.bytes", 3),
    "file extra key": _set("files.cpu.extra", 1),
    "provenance missing": _delete("provenance"),
    "created missing": _delete("provenance.created"),
    "name too long": _set("name", "a" * 80),
    "ood wrong method": _set(
        "ood",
        {
            "method": "knn",
            "version": 1,
            "output": "features",
            "dim": 4,
            "classes": ["a", "b"],
            "means": "",
            "cholesky": "",
            "threshold": 1.0,
            "quantile": 0.95,
        },
    ),
    "ood incomplete": _set("ood", {"method": "mahalanobis"}),
    "metrics not object": _set("metrics", [1, 2]),
}


def _jsonschema_verdict(meta: dict[str, Any]) -> tuple[bool, list[Any]]:
    schema = json.loads(runtime.SCHEMA_PATH.read_text())
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(meta))
    if not errors:
        return True, []
    best = jsonschema.exceptions.best_match(errors)
    assert best is not None
    return False, list(best.absolute_path)


def _ours(meta: dict[str, Any]) -> tuple[bool, list[Any]]:
    from medimg_edge.runtime import _package

    errors = _package._validator().errors(meta)
    if not errors:
        return True, []
    return False, list(min(errors, key=lambda e: len(e[0]))[0])


@pytest.mark.parametrize(
    "case",
    ["fixture:" + n for n in FIXTURE_NAMES]
    + ["broken:" + n for n in sorted(INVALID_SIDECARS)]
    + ["more:" + n for n in sorted(_MORE_BROKEN)],
)
def test_runtime_validator_agrees_with_jsonschema(case: str) -> None:
    kind, name = case.split(":", 1)
    meta = _load_meta(FIXTURES / f"{name if kind == 'fixture' else 'tiny_int8'}.json")
    if kind == "broken":
        INVALID_SIDECARS[name][0](meta)
    elif kind == "more":
        _MORE_BROKEN[name](meta)
    want_ok, want_path = _jsonschema_verdict(meta)
    got_ok, got_path = _ours(meta)
    assert got_ok == want_ok
    if not want_ok:
        # Ties between errors at the same depth may be broken differently; the depth and,
        # for a single error at that depth, the field agree.
        assert len(got_path) == len(want_path)
        schema = json.loads(runtime.SCHEMA_PATH.read_text())
        same_depth = {
            tuple(e.absolute_path)
            for e in jsonschema.Draft202012Validator(schema).iter_errors(meta)
            if len(e.absolute_path) == len(want_path)
        }
        assert tuple(got_path) in same_depth


def test_runtime_validator_reads_the_schema_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, package: Path
) -> None:
    """An edit of the schema file takes effect (the validator is built from it), and a
    keyword the validator does not implement is refused, not ignored."""
    from medimg_edge.runtime import _package

    schema = json.loads(runtime.SCHEMA_PATH.read_text())
    schema["properties"]["name"]["maxLength"] = 3  # tiny_int8 is longer
    edited = tmp_path / "edited.schema.json"
    edited.write_text(json.dumps(schema))
    monkeypatch.setattr(_package, "SCHEMA_PATH", edited)
    _package._validator.cache_clear()
    try:
        with pytest.raises(me.ModelError, match=r"field 'name': 'tiny_int8' is too long"):
            runtime.read_package(package)
        schema["properties"]["name"]["dependentRequired"] = {"a": ["b"]}
        edited.write_text(json.dumps(schema))
        _package._validator.cache_clear()
        with pytest.raises(me.ModelError, match=r"'dependentRequired'.*not supported"):
            runtime.read_package(package)
    finally:
        _package._validator.cache_clear()


def test_reading_a_package_does_not_import_jsonschema() -> None:
    import subprocess
    import sys

    code = (
        "import sys, medimg_edge.runtime as r; "
        f"r.read_package({str(FIXTURES / 'tiny_int8.json')!r}); "
        "print('jsonschema' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


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


def test_cold_start_is_measured_in_a_fresh_interpreter() -> None:
    from medimg_edge.runtime._backend import cold_start

    cs = cold_start()
    assert "error" not in cs, cs
    assert cs["import_ms"] > 0.0 and cs["import_numpy_cv2_ms"] > 0.0
    assert cs["model"] in {m["name"] for m in me.list_models() if "error" not in m}
    assert cs["first_diagnose_ms"] > 0.0
