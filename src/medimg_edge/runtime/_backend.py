"""Which TFLite interpreter runs the models: LiteRT first, then tflite-runtime, then TensorFlow.

The three packages expose the same ``Interpreter`` / ``load_delegate`` API (LiteRT is the
renamed successor of tflite-runtime). ``ai-edge-litert`` is a dependency of medimg-edge on
the platforms it has wheels for (Linux x86-64/aarch64, macOS arm64, Windows x86-64,
Python >= 3.10); elsewhere install ``tflite-runtime`` or ``tensorflow``.
``MEDIMG_EDGE_RUNTIME=litert|tflite_runtime|tensorflow`` pins one.

The runtime's C++ writes ``INFO: Created TensorFlow Lite XNNPACK delegate for CPU.`` to the
process's stderr when the first CPU interpreter is built; :func:`quiet_native_stderr` keeps
that line out of the terminal (it goes to the debug log) and passes everything else on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

from .._errors import ModelError

__all__ = [
    "ENV_VAR",
    "Backend",
    "backend",
    "backend_info",
    "cold_start",
    "quiet_native_stderr",
]

#: The runtime's logger (``logging`` is imported when the first line is logged: it is not
#: on the ``import medimg_edge`` path).
LOGGER = "medimg_edge.runtime"


def debug(msg: str, *args: object, logger: str = LOGGER) -> None:
    """Log a debug line (of the runtime unless ``logger`` names another).

    Without :mod:`logging` imported nothing can have configured a handler or a level for
    it, and a debug record would be dropped (the last-resort handler prints warnings and
    above only): the line is skipped instead of importing :mod:`logging` (~2 ms of a cold
    start)."""
    logging = sys.modules.get("logging")
    if logging is not None:
        logging.getLogger(logger).debug(msg, *args)


ENV_VAR = "MEDIMG_EDGE_RUNTIME"

# (key, import path of the module with Interpreter/load_delegate, distribution names)
_CANDIDATES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("litert", "ai_edge_litert.interpreter", ("ai-edge-litert", "ai-edge-litert-nightly")),
    ("tflite_runtime", "tflite_runtime.interpreter", ("tflite-runtime",)),
    ("tensorflow", "tensorflow.lite", ("tensorflow", "tensorflow-cpu")),
)


@dataclasses.dataclass(frozen=True)
class Backend:
    """A TFLite interpreter implementation.

    Attributes
    ----------
    name : str
        ``"litert"``, ``"tflite_runtime"`` or ``"tensorflow"``.
    distribution : str
        The installed PyPI distribution that provides it.
    version : str
        Its version.
    interpreter_cls : type
        The ``Interpreter`` class.
    load_delegate : callable
        The ``load_delegate(library, options)`` function.
    op_resolver_type : Any
        The ``OpResolverType`` enum (None if the backend lacks it).
    """

    name: str
    distribution: str
    version: str
    interpreter_cls: Any
    load_delegate: Any
    op_resolver_type: Any


_lock = threading.Lock()
_cache: dict[str, Backend] = {}


def _dist_version(names: tuple[str, ...], module: str = "") -> tuple[str, str]:
    """(distribution, version) of the first of ``names`` that is installed.

    Looks first for the ``<name>-<version>.dist-info`` folder beside the imported package
    (one directory listing); ``importlib.metadata``, which costs ~25 ms to import, only
    when that finds nothing (an unusual layout).
    """
    top = sys.modules.get(module.split(".")[0]) if module else None
    where = getattr(top, "__file__", None)
    if where:
        site = os.path.dirname(os.path.dirname(where))
        try:
            entries = os.listdir(site)
        except OSError:
            entries = []
        for dist in names:
            prefix = dist.replace("-", "_").lower() + "-"
            for entry in entries:
                low = entry.lower()
                if low.startswith(prefix) and low.endswith(".dist-info"):
                    return dist, entry[len(prefix) : -len(".dist-info")]
    import importlib.metadata

    for dist in names:
        try:
            return dist, importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return names[0], "unknown"


def _try(key: str, module: str, dists: tuple[str, ...]) -> Backend | str:
    try:
        if key == "tensorflow":  # the public API object, not the tensorflow/lite package
            mod = importlib.import_module("tensorflow").lite
        else:
            mod = importlib.import_module(module)
    except Exception as exc:  # ImportError, or a broken install (e.g. NumPy ABI mismatch)
        return f"{module}: {type(exc).__name__}: {exc}".strip()
    # TensorFlow keeps load_delegate and OpResolverType in tf.lite.experimental.
    extras = getattr(mod, "experimental", None) if key == "tensorflow" else mod
    interp = getattr(mod, "Interpreter", None)
    load = getattr(extras, "load_delegate", None)
    resolver = getattr(extras, "OpResolverType", None)
    if interp is None or load is None:
        return f"{module}: has no Interpreter/load_delegate"
    dist, version = _dist_version(dists, module)
    return Backend(key, dist, version, interp, load, resolver)


def backend() -> Backend:
    """Return the interpreter backend, importing it on first use.

    Raises
    ------
    ModelError
        No TFLite runtime can be imported; the message lists what was tried and why it
        failed, and what to install.
    """
    want = os.environ.get(ENV_VAR, "").strip().lower()
    with _lock:
        if want in _cache:
            return _cache[want]
        keys = [c[0] for c in _CANDIDATES]
        if want and want not in keys:
            raise ModelError(f"{ENV_VAR}={want!r} is not one of {', '.join(keys)}")
        errors = []
        for key, module, dists in _CANDIDATES:
            if want and key != want:
                continue
            got = _try(key, module, dists)
            if isinstance(got, Backend):
                _cache[want] = got
                return got
            errors.append(got)
        raise ModelError(
            "no TFLite runtime could be imported (tried: "
            + "; ".join(errors)
            + "). Install one: `pip install ai-edge-litert` (Linux x86-64/aarch64, macOS arm64, "
            "Windows; Python >= 3.10), or `pip install tflite-runtime` (needs numpy<2), "
            "or `pip install tensorflow`"
        )


def backend_info() -> dict[str, Any]:
    """Describe the runtime in use without raising: ``{"name", "distribution", "version"}``
    or ``{"name": None, "error": ...}``."""
    try:
        b = backend()
    except ModelError as exc:
        return {"name": None, "error": str(exc)}
    return {"name": b.name, "distribution": b.distribution, "version": b.version}


#: Lines of the interpreter's own console output that are informational only.
_INFO_LINES = (b"INFO: Created TensorFlow Lite XNNPACK delegate",)
# fd 2 is process-wide: one redirect at a time (interpreters built in parallel threads
# would otherwise restore each other's descriptors).
_stderr_lock = threading.Lock()


def _flush_stderr() -> None:
    with contextlib.suppress(AttributeError, OSError, ValueError):
        sys.stderr.flush()


def _replay(captured: bytes) -> None:
    """Write what the native code printed back to fd 2, without the informational lines
    (those go to the debug log)."""
    kept = []
    for line in captured.splitlines(keepends=True):
        if line.startswith(_INFO_LINES):
            debug("runtime: %s", line.decode("utf-8", "replace").strip())
        else:
            kept.append(line)
    data = b"".join(kept)
    while data:
        try:
            data = data[os.write(2, data) :]
        except OSError:
            return


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Run a block (building an interpreter) with the process's stderr (file descriptor 2,
    where the runtime's C++ logs) captured; afterwards, also when the block raises, write
    the capture back without the runtime's informational lines (``INFO: Created
    TensorFlow Lite XNNPACK delegate for CPU.``, logged at debug level instead).  Errors
    and warnings of the runtime still reach the terminal.  Serialised by a lock: fd 2 is
    shared by the whole process."""
    with _stderr_lock:
        _flush_stderr()
        try:
            fd = _capture_fd()
        except OSError:
            yield
            return
        try:
            saved = os.dup(2)
        except OSError:
            os.close(fd)
            yield
            return
        try:
            os.dup2(fd, 2)
            try:
                yield
            finally:
                _flush_stderr()
                os.dup2(saved, 2)
                _replay(_read_all(fd))
        finally:
            os.close(saved)
            os.close(fd)


def _capture_fd() -> int:
    """An anonymous file for the capture: ``memfd_create`` where the platform has it (no
    file-system entry, and no ``import tempfile``, ~3-4 ms of a cold start), else an
    unlinked temporary file."""
    if hasattr(os, "memfd_create"):
        return int(os.memfd_create("medimg-edge-stderr", getattr(os, "MFD_CLOEXEC", 0)))
    import tempfile

    fd, path = tempfile.mkstemp(prefix="medimg-edge-stderr-")
    os.unlink(path)
    return fd


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def _reset_cache() -> None:
    """Forget the imported backend (tests switch ``MEDIMG_EDGE_RUNTIME``)."""
    with _lock:
        _cache.clear()


_COLD_START_PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np, cv2
t1 = time.perf_counter()
import medimg_edge as me
t2 = time.perf_counter()
out = {"import_numpy_cv2_ms": 1e3 * (t1 - t0), "import_ms": 1e3 * (t2 - t1)}
models = [m for m in me.list_models() if "error" not in m]
if models:
    m = models[0]
    frame = (np.random.default_rng(0).random((256, 256)) * 255).astype(np.uint8)
    t3 = time.perf_counter()
    me.diagnose(frame, model=m["name"])
    out["first_diagnose_ms"] = 1e3 * (time.perf_counter() - t3)
    out["model"] = m["name"]
print(json.dumps(out))
"""


def cold_start(timeout: float = 60.0) -> dict[str, Any]:
    """Cold-start cost, measured in a fresh interpreter (this one's executable and env).

    Returns
    -------
    dict
        ``import_numpy_cv2_ms`` (``import numpy, cv2``), ``import_ms`` (``import
        medimg_edge`` after them), and with a valid model package found
        ``first_diagnose_ms`` (the first ``me.diagnose`` of a 256x256 frame: runtime import,
        sidecar validation, sha256, interpreter) and ``model``; or ``{"error": ...}``.
    """
    import json
    import subprocess

    try:
        proc = subprocess.run(
            [sys.executable, "-c", _COLD_START_PROBE],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"probe exited {proc.returncode}: {last}"}
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result
