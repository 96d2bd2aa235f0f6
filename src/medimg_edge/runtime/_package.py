"""Model packages: ``<name>.tflite`` + ``<name>.json`` sidecar (+ ``<name>_edgetpu.tflite``).

The sidecar is validated against the shipped JSON Schema
(``medimg_edge/schemas/model-package.v1.schema.json``) and then against the rules a schema
cannot express. A model file is read into memory once, its size and sha256 compared with
the sidecar and its flatbuffer identifier checked; only those verified bytes are ever
handed to the interpreter (never the path, so the file cannot change in between).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .._errors import ModelError

__all__ = [
    "MODEL_PATH_ENV",
    "SCHEMA_PATH",
    "InputSpec",
    "ModelFile",
    "ModelPackage",
    "bundled_model_dir",
    "find_sidecar",
    "iter_sidecars",
    "model_dirs",
    "read_package",
    "read_verified",
    "sha256_file",
]

MODEL_PATH_ENV = "MEDIMG_EDGE_MODEL_PATH"
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "model-package.v1.schema.json"
_MAX_SIDECAR_BYTES = 1 << 20
_TFLITE_IDENTIFIER = b"TFL3"


@dataclasses.dataclass(frozen=True)
class ModelFile:
    """One ``.tflite`` file of a package and its expected size and digest."""

    path: Path
    sha256: str
    bytes: int


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """What the model expects: an ``(1, height, width, channels)`` tensor of
    ``(x - mean) / std`` where ``x`` is the frame scaled to [0, 1] in ``color_order``."""

    name: str
    height: int
    width: int
    channels: int
    color_order: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    denoise: str = "none"


@dataclasses.dataclass(frozen=True)
class ModelPackage:
    """A validated sidecar; see ``models/README.md`` for every field."""

    sidecar: Path
    meta: dict[str, Any]
    name: str
    version: str
    modality: str
    labels: tuple[str, ...]
    negative_label: str
    input: InputSpec
    outputs: dict[str, dict[str, str]]
    threshold: float
    abstain_band: tuple[float, float]
    temperature: float
    cpu: ModelFile
    edgetpu: ModelFile | None
    model_card: Path


# ---- sidecar schema validation ----------------------------------------------------------
# A small interpreter of the JSON Schema (draft 2020-12) keywords the shipped schema uses,
# built from SCHEMA_PATH once per process: importing the general-purpose ``jsonschema``
# package and checking the schema itself cost ~75 ms at every cold start, more than the
# rest of the first diagnosis.  The schema file stays the single source of truth (edits to
# it take effect at the next process start); a keyword this interpreter does not implement
# makes it refuse the schema (ModelError), never ignore the keyword.  The tests check the
# schema itself with jsonschema and compare the two validators' verdicts and error fields on
# valid and broken sidecars (tests/test_model_package.py).

# Keywords that only annotate (no assertion under the 2020-12 default vocabularies).
_ANNOTATIONS = frozenset(
    {
        "$schema",
        "$id",
        "$comment",
        "$defs",
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
        "format",
        "contentEncoding",
        "contentMediaType",
    }
)
_ASSERTIONS = frozenset(
    {
        "$ref",
        "type",
        "enum",
        "const",
        "pattern",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "required",
        "properties",
        "patternProperties",
        "additionalProperties",
        "minProperties",
        "maxProperties",
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "uniqueItems",
        "allOf",
        "anyOf",
        "oneOf",
        "not",
        "if",
        "then",
        "else",
    }
)
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs")
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SUBSCHEMAS = ("additionalProperties", "items", "not", "if", "then", "else")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_type(x: Any, name: str) -> bool:
    if name == "object":
        return isinstance(x, dict)
    if name == "array":
        return isinstance(x, list)
    if name == "string":
        return isinstance(x, str)
    if name == "boolean":
        return isinstance(x, bool)
    if name == "null":
        return x is None
    if name == "number":
        return _is_number(x)
    if name == "integer":  # 2020-12: a number with a zero fractional part
        return _is_number(x) and (isinstance(x, int) or float(x).is_integer())
    raise ModelError(f"model sidecar schema {SCHEMA_PATH.name}: unknown type {name!r}")


def _json_equal(a: Any, b: Any) -> bool:
    """JSON equality: booleans are not numbers, 1 equals 1.0, containers compare deeply."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


class _SchemaValidator:
    """Validates JSON values against one JSON Schema document (the keywords above)."""

    def __init__(self, schema: Any) -> None:
        self._root = schema
        self._patterns: dict[str, re.Pattern[str]] = {}
        self._check(schema, "#")

    def _check(self, node: Any, where: str) -> None:
        if isinstance(node, bool):
            return
        if not isinstance(node, dict):
            raise ModelError(f"model sidecar schema {SCHEMA_PATH.name}: {where} is not a schema")
        for key, value in node.items():
            if key not in _ANNOTATIONS and key not in _ASSERTIONS:
                raise ModelError(
                    f"model sidecar schema {SCHEMA_PATH.name}: keyword {key!r} at {where} is "
                    "not supported by medimg_edge.runtime's validator; extend _SchemaValidator"
                )
            if key in _SUBSCHEMA_MAPS:
                for name, sub in value.items():
                    self._check(sub, f"{where}/{key}/{name}")
            elif key in _SUBSCHEMA_LISTS:
                for i, sub in enumerate(value):
                    self._check(sub, f"{where}/{key}/{i}")
            elif key in _SUBSCHEMAS:
                self._check(value, f"{where}/{key}")
            elif key == "pattern":
                self._patterns[value] = re.compile(value)
            elif key == "$ref":
                self._resolve(value)
        for name in node.get("patternProperties", {}):
            self._patterns[name] = re.compile(name)

    def _resolve(self, ref: str) -> Any:
        if not ref.startswith("#"):
            raise ModelError(
                f"model sidecar schema {SCHEMA_PATH.name}: only local $ref, not {ref!r}"
            )
        node = self._root
        for part in ref[1:].split("/")[1:]:
            part = part.replace("~1", "/").replace("~0", "~")
            try:
                node = node[int(part)] if isinstance(node, list) else node[part]
            except (KeyError, IndexError, ValueError):
                raise ModelError(
                    f"model sidecar schema {SCHEMA_PATH.name}: $ref {ref!r} does not resolve"
                ) from None
        return node

    def errors(self, instance: Any) -> list[tuple[tuple[Any, ...], str]]:
        """Every (path, message) the instance breaks, in document order."""
        out: list[tuple[tuple[Any, ...], str]] = []
        self._validate(self._root, instance, (), out)
        return out

    def _ok(self, node: Any, x: Any) -> bool:
        probe: list[tuple[tuple[Any, ...], str]] = []
        self._validate(node, x, (), probe)
        return not probe

    def _validate(self, node: Any, x: Any, path: tuple[Any, ...], out: list[Any]) -> None:
        if node is True:
            return
        if node is False:
            out.append((path, f"{x!r} is not allowed here"))
            return

        def err(msg: str) -> None:
            out.append((path, msg))

        if "$ref" in node:
            self._validate(self._resolve(node["$ref"]), x, path, out)
        if "type" in node:
            types = node["type"] if isinstance(node["type"], list) else [node["type"]]
            if not any(_is_type(x, t) for t in types):
                err(f"{x!r} is not of type {', '.join(repr(t) for t in types)}")
                return
        if "const" in node and not _json_equal(x, node["const"]):
            err(f"{node['const']!r} was expected")
        if "enum" in node and not any(_json_equal(x, v) for v in node["enum"]):
            err(f"{x!r} is not one of {node['enum']!r}")
        if isinstance(x, str):
            if "pattern" in node and not self._patterns[node["pattern"]].search(x):
                err(f"{x!r} does not match {node['pattern']!r}")
            if "minLength" in node and len(x) < node["minLength"]:
                err(f"{x!r} is too short")
            if "maxLength" in node and len(x) > node["maxLength"]:
                err(f"{x!r} is too long")
        if _is_number(x):
            if "minimum" in node and x < node["minimum"]:
                err(f"{x!r} is less than the minimum of {node['minimum']!r}")
            if "maximum" in node and x > node["maximum"]:
                err(f"{x!r} is greater than the maximum of {node['maximum']!r}")
            if "exclusiveMinimum" in node and x <= node["exclusiveMinimum"]:
                err(f"{x!r} is less than or equal to the minimum of {node['exclusiveMinimum']!r}")
            if "exclusiveMaximum" in node and x >= node["exclusiveMaximum"]:
                err(
                    f"{x!r} is greater than or equal to the maximum of {node['exclusiveMaximum']!r}"
                )
            if "multipleOf" in node and not float(x / node["multipleOf"]).is_integer():
                err(f"{x!r} is not a multiple of {node['multipleOf']!r}")
        if isinstance(x, dict):
            for name in node.get("required", ()):
                if name not in x:
                    err(f"{name!r} is a required property")
            if "minProperties" in node and len(x) < node["minProperties"]:
                err(f"{x!r} does not have enough properties")
            if "maxProperties" in node and len(x) > node["maxProperties"]:
                err(f"{x!r} has too many properties")
            props = node.get("properties", {})
            pats = node.get("patternProperties", {})
            extra = []
            for key, value in x.items():
                matched = key in props
                if matched:
                    self._validate(props[key], value, (*path, key), out)
                for pat, sub in pats.items():
                    if self._patterns[pat].search(key):
                        matched = True
                        self._validate(sub, value, (*path, key), out)
                if not matched:
                    extra.append(key)
            add = node.get("additionalProperties", True)
            if extra and add is False:
                listed = ", ".join(repr(k) for k in extra)
                verb = "was" if len(extra) == 1 else "were"
                err(f"Additional properties are not allowed ({listed} {verb} unexpected)")
            elif extra and add is not True:
                for key in extra:
                    self._validate(add, x[key], (*path, key), out)
        if isinstance(x, list):
            if "minItems" in node and len(x) < node["minItems"]:
                err(f"{x!r} is too short")
            if "maxItems" in node and len(x) > node["maxItems"]:
                err(f"{x!r} is too long")
            if node.get("uniqueItems") and any(
                _json_equal(x[i], x[j]) for i in range(len(x)) for j in range(i)
            ):
                err(f"{x!r} has non-unique elements")
            prefix = node.get("prefixItems", [])
            for i, (sub, value) in enumerate(zip(prefix, x, strict=False)):
                self._validate(sub, value, (*path, i), out)
            if "items" in node:
                for i in range(len(prefix), len(x)):
                    self._validate(node["items"], x[i], (*path, i), out)
        for sub in node.get("allOf", ()):
            self._validate(sub, x, path, out)
        if "anyOf" in node and not any(self._ok(sub, x) for sub in node["anyOf"]):
            err(f"{x!r} is not valid under any of the given schemas")
        if "oneOf" in node and sum(self._ok(sub, x) for sub in node["oneOf"]) != 1:
            err(f"{x!r} is not valid under exactly one of the given schemas")
        if "not" in node and self._ok(node["not"], x):
            err(f"{x!r} should not be valid under {node['not']!r}")
        if "if" in node:
            branch = node.get("then") if self._ok(node["if"], x) else node.get("else")
            if branch is not None:
                self._validate(branch, x, path, out)


@functools.lru_cache(maxsize=1)
def _validator() -> _SchemaValidator:
    try:
        schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the model sidecar schema {SCHEMA_PATH}: {exc}") from None
    return _SchemaValidator(schema)


def _where(path: Any) -> str:
    parts = [str(p) for p in path]
    return ".".join(parts) if parts else "(top level)"


def _fail(sidecar: Path, field: str, message: str) -> ModelError:
    return ModelError(f"model sidecar {sidecar.name}: field '{field}': {message}")


def _semantic_checks(sidecar: Path, meta: dict[str, Any]) -> None:
    labels = meta["labels"]
    if meta["negative_label"] not in labels:
        raise _fail(sidecar, "negative_label", f"{meta['negative_label']!r} is not in labels")
    inp = meta["input"]
    for key in ("mean", "std"):
        if len(inp[key]) != inp["channels"]:
            raise _fail(
                sidecar,
                f"input.{key}",
                f"has {len(inp[key])} value(s) for {inp['channels']} channel(s)",
            )
    if (inp["channels"] == 1) != (inp["color_order"] == "gray"):
        raise _fail(
            sidecar,
            "input.color_order",
            f"{inp['color_order']!r} does not fit {inp['channels']} channel(s) "
            "(1 channel is 'gray', 3 are 'rgb' or 'bgr')",
        )
    dec = meta["decision"]
    lo, hi = dec["abstain_band"]
    if not lo <= dec["threshold"] <= hi:
        raise _fail(
            sidecar,
            "decision.abstain_band",
            f"[{lo}, {hi}] must contain the threshold {dec['threshold']}",
        )
    cal = meta["calibration"]
    if cal["method"] == "temperature" and "temperature" not in cal:
        raise _fail(sidecar, "calibration.temperature", "required when method is 'temperature'")
    files = meta["files"]
    for key, entry in files.items():
        if not entry["path"].endswith(".tflite"):
            raise _fail(sidecar, f"files.{key}.path", f"{entry['path']!r} is not a .tflite file")
    if "edgetpu" in files and files["edgetpu"]["path"] == files["cpu"]["path"]:
        raise _fail(sidecar, "files.edgetpu.path", "must differ from files.cpu.path")


def read_package(sidecar: str | os.PathLike[str]) -> ModelPackage:
    """Read and validate a sidecar (schema, then semantic rules); files are not read yet.

    Raises
    ------
    ModelError
        Missing or unreadable file, invalid JSON, or a field that breaks the schema or a
        rule; the message names the field.
    """
    path = Path(sidecar)
    try:
        with path.open("rb") as fh:
            raw = fh.read(_MAX_SIDECAR_BYTES + 1)
    except OSError as exc:
        raise ModelError(f"cannot read model sidecar {path}: {exc.strerror or exc}") from None
    if len(raw) > _MAX_SIDECAR_BYTES:
        raise ModelError(f"model sidecar {path.name} is larger than 1 MiB; not a sidecar")
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"model sidecar {path.name} is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(meta, dict):
        raise ModelError(f"model sidecar {path.name} must hold a JSON object")
    if meta.get("format") == "medimg-edge-model" and meta.get("schema_version") not in (1, None):
        raise _fail(
            path,
            "schema_version",
            f"{meta.get('schema_version')!r} is not supported by this medimg-edge "
            "(supports 1); upgrade medimg-edge",
        )
    errors = _validator().errors(meta)
    if errors:
        # As jsonschema's best_match: the error highest up in the document (shortest path).
        where, message = min(errors, key=lambda e: len(e[0]))
        raise _fail(path, _where(where), message)
    _semantic_checks(path, meta)
    folder = path.parent

    def _file(entry: dict[str, Any]) -> ModelFile:
        return ModelFile(folder / entry["path"], entry["sha256"], int(entry["bytes"]))

    inp = meta["input"]
    return ModelPackage(
        sidecar=path,
        meta=meta,
        name=meta["name"],
        version=meta["version"],
        modality=meta["modality"],
        labels=tuple(meta["labels"]),
        negative_label=meta["negative_label"],
        input=InputSpec(
            name=inp["name"],
            height=int(inp["height"]),
            width=int(inp["width"]),
            channels=int(inp["channels"]),
            color_order=inp["color_order"],
            mean=tuple(float(v) for v in inp["mean"]),
            std=tuple(float(v) for v in inp["std"]),
            denoise=inp.get("denoise", "none"),
        ),
        outputs={k: dict(v) for k, v in meta["outputs"].items()},
        threshold=float(meta["decision"]["threshold"]),
        abstain_band=(
            float(meta["decision"]["abstain_band"][0]),
            float(meta["decision"]["abstain_band"][1]),
        ),
        temperature=float(meta["calibration"].get("temperature", 1.0))
        if meta["calibration"]["method"] == "temperature"
        else 1.0,
        cpu=_file(meta["files"]["cpu"]),
        edgetpu=_file(meta["files"]["edgetpu"]) if "edgetpu" in meta["files"] else None,
        model_card=folder / meta["model_card"],
    )


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file (streamed)."""
    import hashlib  # on first use: loading OpenSSL costs ~2 ms at import

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _small_sha256(data: bytes) -> str:
    """Hex sha256 of an in-memory model (tens of KB): CPython's built-in implementation
    where present, so a cold start does not load OpenSSL (``hashlib``/``hmac``: ~3 ms) for
    it; the digest is the same."""
    try:
        from _sha2 import sha256  # type: ignore[import-not-found,unused-ignore]  # CPython >= 3.12
    except ImportError:
        try:
            from _sha256 import sha256  # type: ignore[import-not-found,no-redef,unused-ignore]
        except ImportError:
            from hashlib import sha256  # type: ignore[assignment,unused-ignore]
    return str(sha256(data).hexdigest())


def _compare_digest(a: str, b: str) -> bool:
    """Constant-time comparison (``hmac.compare_digest`` without importing ``hmac``)."""
    try:
        from _operator import _compare_digest as compare
    except ImportError:
        from hmac import compare_digest as compare  # type: ignore[no-redef,unused-ignore]
    return bool(compare(a, b))


def read_verified(entry: ModelFile) -> bytes:
    """Read a model file and verify size, sha256 and flatbuffer identifier.

    Only the returned bytes may be given to an interpreter.

    Raises
    ------
    ModelError
        The file is missing, truncated or extended, its digest differs from the sidecar
        (tampered, corrupted or swapped), or it is not a TFLite flatbuffer.
    """
    name = entry.path.name
    try:
        with entry.path.open("rb") as fh:
            data = fh.read(entry.bytes + 1)
    except OSError as exc:
        raise ModelError(f"cannot read model file {name}: {exc.strerror or exc}") from None
    if len(data) != entry.bytes:
        what = "truncated" if len(data) < entry.bytes else "longer than recorded"
        raise ModelError(
            f"model file {name} is {what}: "
            f"{len(data) if len(data) <= entry.bytes else 'more than ' + str(entry.bytes)} "
            f"bytes, the sidecar records {entry.bytes}; re-install or re-download the model"
        )
    digest = _small_sha256(data)
    if not _compare_digest(digest, entry.sha256):
        raise ModelError(
            f"model file {name} failed its integrity check: sha256 {digest[:16]}... differs "
            f"from the sidecar's {entry.sha256[:16]}...; the file is corrupted, tampered "
            "with or belongs to another model. It was not loaded"
        )
    if data[4:8] != _TFLITE_IDENTIFIER:
        raise ModelError(
            f"model file {name} is not a TFLite flatbuffer (identifier {data[4:8]!r}, "
            f"expected {_TFLITE_IDENTIFIER!r})"
        )
    root = int.from_bytes(data[0:4], "little")
    if not 8 <= root < len(data):
        raise ModelError(f"model file {name} has a root offset outside the file; not loaded")
    return data


def bundled_model_dir() -> Path | None:
    """The folder of the reference models shipped with the package (None if absent)."""
    pkg = Path(__file__).resolve().parent.parent
    for candidate in (pkg / "models", pkg.parent.parent / "models"):  # wheel, source checkout
        if candidate.is_dir():
            return candidate
    return None


def model_dirs() -> list[Path]:
    """Folders searched by name: ``$MEDIMG_EDGE_MODEL_PATH`` entries, then the bundled one."""
    dirs = [Path(p) for p in os.environ.get(MODEL_PATH_ENV, "").split(os.pathsep) if p.strip()]
    bundled = bundled_model_dir()
    if bundled is not None:
        dirs.append(bundled)
    return dirs


def iter_sidecars() -> Iterator[Path]:
    """Sidecar files (``*.json`` with a ``.tflite`` sibling of the same stem) in model_dirs."""
    seen: set[str] = set()
    for folder in model_dirs():
        if not folder.is_dir():
            continue
        for sidecar in sorted(folder.glob("*.json")):
            if sidecar.stem in seen or not sidecar.with_suffix(".tflite").exists():
                continue
            seen.add(sidecar.stem)
            yield sidecar


def iter_packages(search: Iterable[str | os.PathLike[str]] = ()) -> Iterator[ModelPackage]:
    """The readable packages of ``search`` (model names, sidecar paths or folders of
    sidecars), then every package of the model path (:func:`iter_sidecars`); an entry that
    does not resolve or a sidecar that does not validate is skipped."""
    candidates: list[Path] = []
    for item in search:
        p = Path(item)
        if p.is_dir():
            candidates.extend(sorted(p.glob("*.json")))
            continue
        try:
            candidates.append(find_sidecar(item))
        except (ModelError, OSError, ValueError):
            continue
    candidates.extend(iter_sidecars())
    for sidecar in candidates:
        try:
            yield read_package(sidecar)
        except (ModelError, OSError, ValueError):
            continue


def package_sha256s(pkg: ModelPackage) -> set[str]:
    """The sha256 of every model file of a package (CPU, and Edge TPU if any): what a
    result's ``model.sha256`` may be."""
    return {pkg.cpu.sha256} | ({pkg.edgetpu.sha256} if pkg.edgetpu else set())


def find_package(
    name: object, sha256: object, search: Iterable[str | os.PathLike[str]] = ()
) -> ModelPackage | None:
    """The package named ``name`` one of whose model files has ``sha256``, among
    :func:`iter_packages` of ``search`` (None when there is none): the package a result's
    ``model`` names."""
    for pkg in iter_packages(search):
        if pkg.name == name and sha256 in package_sha256s(pkg):
            return pkg
    return None


def find_sidecar(name_or_path: str | os.PathLike[str]) -> Path:
    """Resolve a model name, a sidecar path or a ``.tflite`` path to the sidecar path.

    Raises
    ------
    ModelError
        Nothing found; the message lists the folders searched and the models available.
    """
    text = os.fspath(name_or_path)
    path = Path(text)
    if path.suffix in (".json", ".tflite") or os.sep in text or "/" in text:
        if path.suffix == ".tflite":
            stem = path.stem[: -len("_edgetpu")] if path.stem.endswith("_edgetpu") else path.stem
            sidecar = path.with_name(stem + ".json")
            if not sidecar.is_file():
                raise ModelError(
                    f"model file {path.name} has no sidecar {sidecar.name} beside it; a model "
                    "needs its sidecar (labels, input spec, sha256); see models/README.md"
                )
            return sidecar
        if path.is_file():
            return path
        raise ModelError(f"model sidecar {text} does not exist")
    for sidecar in iter_sidecars():
        if sidecar.stem == text:
            return sidecar
    available = ", ".join(s.stem for s in iter_sidecars()) or "none"
    searched = ", ".join(str(d) for d in model_dirs()) or "no folders"
    raise ModelError(
        f"no model named {text!r} (searched {searched}; available: {available}); pass a path "
        f"to a sidecar .json or add its folder to {MODEL_PATH_ENV}"
    )
