"""``load_model`` and :class:`Model`: a verified model package on a TFLite interpreter."""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import _core
from .._errors import DelegateError, InvalidInputError, ModelError
from .._validation import check_int, checked_array
from ._backend import Backend, backend, debug, quiet_native_stderr
from ._delegate import check_device, edgetpu_present, load_edgetpu
from ._package import (
    ModelFile,
    ModelPackage,
    find_sidecar,
    iter_sidecars,
    read_package,
    read_verified,
)
from ._quant import QuantParams

__all__ = ["DelegateFallbackWarning", "Model", "list_models", "load_model"]

_DELEGATES = ("auto", "cpu", "edgetpu")
# How far outside [0, 1] an input may go (and saturate) before it counts as unscaled.
_SLACK = 0.5


class DelegateFallbackWarning(RuntimeWarning):
    """``delegate="auto"`` could not use the Edge TPU this machine shows and runs the
    model on the CPU (never raised on a machine without an Edge TPU)."""


def _make_interpreter(
    b: Backend, data: bytes, num_threads: int, delegates: list[Any] | None
) -> Any:
    try:
        with quiet_native_stderr():  # no XNNPACK INFO line in the terminal
            interp = b.interpreter_cls(
                model_content=data, num_threads=num_threads, experimental_delegates=delegates
            )
            interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise ModelError(f"the {b.name} interpreter refused the model: {detail}") from None
    return interp


class _Binding:
    """One resolved input or output tensor: index, shape, quantisation."""

    __slots__ = ("index", "name", "params", "shape")

    def __init__(self, name: str, details: Mapping[str, Any]) -> None:
        self.name = name
        self.index = int(details["index"])
        self.shape = tuple(int(s) for s in details["shape"])
        self.params = QuantParams.from_details(details)


def _resolve(interp: Any, pkg: ModelPackage) -> tuple[_Binding, dict[str, _Binding]]:
    """Map the sidecar's input/output names to tensors (signature keys, else tensor names)."""
    in_all = interp.get_input_details()
    out_all = interp.get_output_details()
    by_index_in = {d["index"]: d for d in in_all}
    by_index_out = {d["index"]: d for d in out_all}
    named_in: dict[str, Any] = {d["name"]: d for d in in_all}
    named_out: dict[str, Any] = {d["name"]: d for d in out_all}
    signatures = interp.get_signature_list() if hasattr(interp, "get_signature_list") else {}
    if signatures:
        key = "serving_default" if "serving_default" in signatures else next(iter(signatures))
        runner = interp.get_signature_runner(key)
        for name, det in runner.get_input_details().items():
            named_in.setdefault(name, by_index_in.get(det["index"], det))
        for name, det in runner.get_output_details().items():
            named_out.setdefault(name, by_index_out.get(det["index"], det))
        del runner  # a live SignatureRunner blocks Interpreter.invoke() in LiteRT 2.3
    spec = pkg.input
    if spec.name not in named_in:
        raise ModelError(
            f"model {pkg.name}: field 'input.name': {spec.name!r} is not an input of the "
            f"model (inputs: {', '.join(sorted(named_in))})"
        )
    inp = _Binding(spec.name, named_in[spec.name])
    want = (1, spec.height, spec.width, spec.channels)
    if inp.shape != want:
        raise ModelError(
            f"model {pkg.name}: the input tensor has shape {inp.shape}, the sidecar's "
            f"input.height/width/channels say {want}"
        )
    outs: dict[str, _Binding] = {}
    for role, out in pkg.outputs.items():
        if out["name"] not in named_out:
            raise ModelError(
                f"model {pkg.name}: field 'outputs.{role}.name': {out['name']!r} is not an "
                f"output of the model (outputs: {', '.join(sorted(named_out))})"
            )
        outs[role] = _Binding(out["name"], named_out[out["name"]])
    n_scores = int(np.prod(outs["scores"].shape))
    if n_scores != len(pkg.labels):
        raise ModelError(
            f"model {pkg.name}: the scores output has {n_scores} values but the sidecar "
            f"lists {len(pkg.labels)} labels"
        )
    return inp, outs


class Model:
    """A model package loaded on an interpreter; create with :func:`load_model`.

    Thread safety: :meth:`predict` holds a per-model lock around the interpreter (TFLite
    interpreters are not re-entrant), so one ``Model`` may be shared by threads but runs
    one inference at a time. For parallel inference give each thread its own
    :meth:`clone` (same verified bytes, new interpreter); the kernel releases the GIL.
    """

    def __init__(
        self,
        package: ModelPackage,
        entry: ModelFile,
        data: bytes,
        *,
        backend_: Backend,
        delegate_obj: Any,
        num_threads: int,
        device: str | None,
    ) -> None:
        """``data``: the verified bytes of ``entry`` (``read_verified``); ``delegate_obj``:
        the Edge TPU delegate, or None for the CPU."""
        self._package = package
        self._entry = entry
        self._data = data
        self._backend = backend_
        self._delegate = "cpu" if delegate_obj is None else "edgetpu"
        self._delegate_obj = delegate_obj  # kept alive as long as the interpreter
        self._num_threads = num_threads
        self._device = None if delegate_obj is None else device
        self._interp = _make_interpreter(
            backend_, data, num_threads, [delegate_obj] if delegate_obj is not None else None
        )
        self._in, self._outs = _resolve(self._interp, package)
        self._lock = threading.Lock()
        # Normalisation and quantisation fused into one affine map q = x * a + b (per channel).
        spec = package.input
        mean = np.asarray(spec.mean, dtype=np.float64)
        std = np.asarray(spec.std, dtype=np.float64)
        p = self._in.params
        if p.quantized:
            if p.per_axis:
                if p.axis != 3 or p.scales.size != spec.channels:
                    raise ModelError(f"model {package.name}: unsupported per-axis input layout")
                scale, zp = p.scales, p.zero_points.astype(np.float64)
            else:
                scale, zp = (
                    np.repeat(p.scales, spec.channels),
                    np.repeat(p.zero_points.astype(np.float64), spec.channels),
                )
            a = 1.0 / (std * scale)
            b = zp - mean / (std * scale)
        else:
            a, b = 1.0 / std, -mean / std
        self._a = np.ascontiguousarray(a, dtype=np.float32)
        self._b = np.ascontiguousarray(b, dtype=np.float32)
        self._qbuf = np.empty(self._in.shape, dtype=p.dtype)
        # Outputs: (h, w) for a heatmap, (n_labels,) for scores; dequantisation as float32.
        self._out_shapes: dict[str, tuple[int, ...]] = {}
        self._out_affine: dict[str, tuple[Any, Any]] = {}
        for role, ob in self._outs.items():
            if role == "heatmap":
                self._out_shapes[role] = (ob.shape[1], ob.shape[2])
            else:
                self._out_shapes[role] = (int(np.prod(ob.shape)),)
            q = ob.params
            if not q.quantized:
                self._out_affine[role] = (None, None)
            elif q.per_axis:
                raise ModelError(f"model {package.name}: per-axis quantised outputs unsupported")
            else:
                self._out_affine[role] = (np.float32(q.scales[0]), np.float32(q.zero_points[0]))
        self._info = self._make_info()

    # -- description -------------------------------------------------------------------
    def _make_info(self) -> dict[str, Any]:
        pkg = self._package
        return {
            "name": pkg.name,
            "version": pkg.version,
            "modality": pkg.modality,
            "labels": list(pkg.labels),
            "negative_label": pkg.negative_label,
            "sha256": self._entry.sha256,
            "file": self._entry.path.name,
            "sidecar": str(pkg.sidecar),
            "delegate": self._delegate,
            "device": self._device,
            "num_threads": self._num_threads,
            "runtime": {
                "name": self._backend.name,
                "distribution": self._backend.distribution,
                "version": self._backend.version,
            },
            "input": {
                "shape": list(self._in.shape),
                "dtype": str(self._in.params.dtype),
                "color_order": pkg.input.color_order,
            },
            "outputs": {
                role: {"shape": list(b.shape), "dtype": str(b.params.dtype)}
                for role, b in self._outs.items()
            },
            "threshold": pkg.threshold,
            "abstain_band": list(pkg.abstain_band),
            "temperature": pkg.temperature,
            "model_card": str(pkg.model_card),
        }

    @property
    def info(self) -> dict[str, Any]:
        """Provenance and I/O description (JSON-serialisable copy)."""
        import copy

        return copy.deepcopy(self._info)

    @property
    def package(self) -> ModelPackage:
        """The validated sidecar."""
        return self._package

    @property
    def labels(self) -> tuple[str, ...]:
        """Class names in score order."""
        return self._package.labels

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(height, width, channels)`` of one model input."""
        s = self._package.input
        return (s.height, s.width, s.channels)

    @property
    def input_details(self) -> dict[str, Any]:
        """The interpreter's details of the input tensor."""
        return self._details(self._interp.get_input_details(), self._in.index)

    @property
    def output_details(self) -> dict[str, dict[str, Any]]:
        """The interpreter's details of each output tensor, by role (``scores``, ...)."""
        all_out = self._interp.get_output_details()
        return {role: self._details(all_out, b.index) for role, b in self._outs.items()}

    @staticmethod
    def _details(details: list[dict[str, Any]], index: int) -> dict[str, Any]:
        return next(d for d in details if d["index"] == index)

    @property
    def delegate(self) -> str:
        """``"cpu"`` or ``"edgetpu"``: where the model runs."""
        return self._delegate

    def __repr__(self) -> str:
        p = self._package
        return (
            f"Model(name={p.name!r}, version={p.version!r}, delegate={self._delegate!r}, "
            f"input={self._in.shape} {self._in.params.dtype})"
        )

    # -- inference ---------------------------------------------------------------------
    def _quantize_into(self, item: npt.NDArray[np.float32], out: npt.NDArray[Any]) -> None:
        """Normalise + quantise one ``(H, W, C)`` float32 C-contiguous image into ``out``
        (one fused SIMD pass that also validates the values)."""
        finite, lo, hi = _core.quantize_affine(item, self._a, self._b, out)
        if not finite:
            raise InvalidInputError(
                "x contains NaN or infinite values (float64 values beyond the float32 "
                "range count too); replace them, e.g. numpy.nan_to_num(x), or skip the frame"
            )
        if lo < -_SLACK or hi > 1.0 + _SLACK:
            raise InvalidInputError(
                f"x has values in [{lo:.4g}, {hi:.4g}] but the model takes the frame scaled "
                "to [0, 1] (e.g. frame / 255 for 8-bit, frame / 65535 or by its bit depth "
                "for 16-bit); small overshoots (within 0.5) saturate"
            )

    def quantize_input(self, x: npt.ArrayLike) -> npt.NDArray[Any]:
        """The input tensor ``predict`` would feed for one image: normalised with the
        sidecar's mean/std and quantised (``(1, H, W, C)`` in the input dtype)."""
        arr = self._check(x)
        if arr.shape[0] != 1:
            raise InvalidInputError(f"quantize_input takes one image, got {arr.shape[0]}")
        out = np.empty(self._in.shape, dtype=self._in.params.dtype)
        self._quantize_into(arr[0], out)
        return out

    def _check(self, x: Any) -> npt.NDArray[np.float32]:
        arr = checked_array(x, name="x", ndims=(2, 3, 4))
        if arr.dtype.kind != "f":
            raise InvalidInputError(
                f"predict expects float values in [0, 1] (the frame scaled), got dtype "
                f"{arr.dtype}; e.g. frame.astype(np.float32) / 255 for an 8-bit frame"
            )
        h, w, c = self.input_shape
        shape = arr.shape
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim == 3:
            arr = arr[None]
        if arr.shape[1:] != (h, w, c):
            raise InvalidInputError(
                f"x has shape {shape}; model {self._package.name} takes ({h}, {w}), "
                f"({h}, {w}, {c}) or (N, {h}, {w}, {c}) in {self._package.input.color_order} "
                "order (resize first, e.g. cv2.resize(frame, (width, height)))"
            )
        if arr.dtype == np.float32 and arr.flags.c_contiguous:
            return arr
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is reported as inf
            return np.ascontiguousarray(arr, dtype=np.float32)

    def predict(self, x: npt.ArrayLike) -> dict[str, npt.NDArray[np.float32]]:
        """Run the model on one image or a batch.

        Parameters
        ----------
        x : array_like of float
            The frame scaled to [0, 1] (normalisation with the sidecar's mean/std and the
            input quantisation are applied here, fused in one SIMD pass), shape ``(H, W)``,
            ``(H, W, C)`` or ``(N, H, W, C)`` with the model's input size and colour order.
            Values slightly outside [0, 1] (within 0.5) saturate; beyond that the frame
            was evidently not scaled and is refused.

        Returns
        -------
        dict of str to ndarray of float32
            Dequantised outputs by role: ``"scores"`` of shape ``(N, n_labels)`` and, if the
            model has one, ``"heatmap"`` of shape ``(N, h, w)``; as the model emits them
            (probabilities or logits, see ``package.outputs``), uncalibrated.

        Raises
        ------
        InvalidInputError
            Wrong dtype or shape, non-finite values, or values far outside [0, 1].
        """
        arr = self._check(x)
        n = arr.shape[0]
        out = {role: np.empty((n, *shape), np.float32) for role, shape in self._out_shapes.items()}
        for i in range(n):
            with self._lock:
                self._quantize_into(arr[i], self._qbuf)
                raw = self._invoke_locked(self._qbuf)
            for role, value in raw.items():
                scale, zp = self._out_affine[role]
                dst = out[role][i]
                if scale is None:
                    dst[...] = value.reshape(dst.shape)
                else:
                    np.subtract(value.reshape(dst.shape), zp, out=dst, dtype=np.float32)
                    dst *= scale
        return out

    def _invoke_locked(self, tensor: npt.NDArray[Any]) -> dict[str, npt.NDArray[Any]]:
        """set_tensor + invoke + get_tensor (copies) of every output; hold ``_lock``."""
        self._interp.set_tensor(self._in.index, tensor)
        self._interp.invoke()
        return {role: self._interp.get_tensor(b.index) for role, b in self._outs.items()}

    def invoke_raw(self, tensor: npt.NDArray[Any]) -> dict[str, npt.NDArray[Any]]:
        """Run one already-quantised input tensor; outputs in their storage dtype.

        For callers that quantise themselves (benchmarks, golden tests).
        """
        arr = np.asarray(tensor)
        if arr.shape != self._in.shape or arr.dtype != self._in.params.dtype:
            raise InvalidInputError(
                f"tensor must have shape {self._in.shape} and dtype {self._in.params.dtype}, "
                f"got {arr.shape} {arr.dtype}"
            )
        with self._lock:
            return self._invoke_locked(arr)

    def clone(self) -> Model:
        """A new :class:`Model` on its own interpreter from the same verified bytes
        (for one model per thread); the delegate is shared."""
        return Model(
            self._package,
            self._entry,
            self._data,
            backend_=self._backend,
            delegate_obj=self._delegate_obj,
            num_threads=self._num_threads,
            device=self._device,
        )


def load_model(
    name_or_path: str | os.PathLike[str],
    *,
    delegate: str = "auto",
    num_threads: int | None = None,
    device: str | None = None,
) -> Model:
    """Load a verified model package on the CPU (XNNPACK) or an Edge TPU.

    Parameters
    ----------
    name_or_path : str or path
        A model name (searched in ``$MEDIMG_EDGE_MODEL_PATH``, then the bundled models),
        a sidecar ``.json`` path, or a ``.tflite`` path with its sidecar beside it.
    delegate : {"auto", "cpu", "edgetpu"}
        ``"cpu"``: the interpreter's CPU kernels (XNNPACK where the runtime applies it).
        ``"edgetpu"``: the package's ``_edgetpu.tflite`` variant on the Edge TPU delegate;
        raises :class:`~medimg_edge.DelegateError` if that is impossible.
        ``"auto"``: on a machine that shows no Edge TPU (:func:`edgetpu_present`), the
        CPU quietly (a debug log line); where one is present, the Edge TPU if it works,
        else the CPU with one :class:`DelegateFallbackWarning` saying why.
    num_threads : int, optional
        CPU threads of the interpreter (1-64); default 1, the predictable choice on a
        device that also acquires and displays images.
    device : str, optional
        Edge TPU selector: ``"usb"``, ``"pci"``, ``":N"``, ``"usb:N"``, ``"pci:N"``.

    Raises
    ------
    ModelError
        Missing or invalid package, failed integrity check, or a model the runtime refuses.
    DelegateError
        ``delegate="edgetpu"`` and the Edge TPU cannot be used.
    InvalidInputError
        Bad argument values.
    """
    if delegate not in _DELEGATES:
        raise InvalidInputError(f"delegate must be one of {_DELEGATES}, got {delegate!r}")
    threads = 1 if num_threads is None else check_int("num_threads", num_threads, 1, 64)
    device = check_device(device)
    pkg = read_package(find_sidecar(name_or_path))
    b = backend()

    def make(entry: ModelFile, data: bytes, delegate_obj: Any) -> Model:
        return Model(
            pkg, entry, data, backend_=b, delegate_obj=delegate_obj, num_threads=threads,
            device=device,
        )  # fmt: skip

    def on_cpu() -> Model:
        return make(pkg.cpu, read_verified(pkg.cpu), None)

    if delegate == "cpu":
        return on_cpu()
    if delegate == "auto" and not edgetpu_present():
        debug("model %s: delegate auto, no Edge TPU on this machine: CPU", pkg.name)
        return on_cpu()
    try:
        if pkg.edgetpu is None:
            raise DelegateError(
                f"model {pkg.name} is not compiled for the Edge TPU (its sidecar has no "
                "files.edgetpu); compile the CPU model with `edgetpu_compiler` and add the "
                "_edgetpu.tflite file and its sha256 to the sidecar, or use delegate='cpu'"
            )
        data = read_verified(pkg.edgetpu)  # integrity first: a bad file never reaches a device
        delegate_obj = load_edgetpu(b, device)
        try:
            return make(pkg.edgetpu, data, delegate_obj)
        except ModelError as exc:
            raise DelegateError(f"Edge TPU model {pkg.edgetpu.path.name}: {exc}") from None
    except DelegateError as exc:
        if delegate == "edgetpu":
            raise
        warnings.warn(
            f"running model {pkg.name} on the CPU: {exc}", DelegateFallbackWarning, stacklevel=2
        )
        return on_cpu()


def list_models() -> list[dict[str, Any]]:
    """Model packages found by name (``$MEDIMG_EDGE_MODEL_PATH``, then the bundled ones).

    Returns
    -------
    list of dict
        ``name``, ``version``, ``modality``, ``labels``, ``edgetpu`` (has an Edge TPU
        variant), ``sidecar`` path, ``model_card`` path; an invalid sidecar is listed with
        ``error`` (its message) instead of failing the listing.
    """
    found: list[dict[str, Any]] = []
    for sidecar in iter_sidecars():
        try:
            pkg = read_package(sidecar)
        except ModelError as exc:
            found.append({"name": sidecar.stem, "sidecar": str(sidecar), "error": str(exc)})
            continue
        found.append(
            {
                "name": pkg.name,
                "version": pkg.version,
                "modality": pkg.modality,
                "labels": list(pkg.labels),
                "edgetpu": pkg.edgetpu is not None,
                "sidecar": str(sidecar),
                "model_card": str(pkg.model_card),
            }
        )
    return found
