"""Affine quantisation of model inputs and outputs (TFLite's scheme).

A quantised tensor stores ``q`` with ``real = scale * (q - zero_point)``; the parameters are
one (scale, zero point) pair for the whole tensor (*per-tensor*) or one pair per index along
``quantized_dimension`` (*per-axis*). Quantising rounds half to even and saturates to the
integer type.

References
----------
.. [1] B. Jacob et al., "Quantization and Training of Neural Networks for Efficient
   Integer-Arithmetic-Only Inference", CVPR 2018.
.. [2] TensorFlow Lite 8-bit quantization specification,
   https://ai.google.dev/edge/litert/models/quantization_spec
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from .._errors import InvalidInputError, ModelError

__all__ = ["QuantParams", "dequantize", "quantize"]

_INT_TYPES = (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int16), np.dtype(np.int32))


@dataclasses.dataclass(frozen=True)
class QuantParams:
    """Quantisation of one tensor.

    Attributes
    ----------
    dtype : numpy.dtype
        Storage type (float32 for an unquantised tensor).
    scales : ndarray of float64
        One scale (per-tensor) or one per index along ``axis`` (per-axis); empty if the
        tensor is not quantised.
    zero_points : ndarray of int64
        Same length as ``scales``.
    axis : int
        The quantised dimension of a per-axis tensor (0 for per-tensor).
    """

    dtype: np.dtype[Any]
    scales: npt.NDArray[np.float64]
    zero_points: npt.NDArray[np.int64]
    axis: int = 0

    def __post_init__(self) -> None:
        if self.scales.shape != self.zero_points.shape or self.scales.ndim != 1:
            raise ModelError(
                f"quantisation has {self.scales.size} scales but {self.zero_points.size} "
                "zero points"
            )
        if self.quantized:
            if self.dtype not in _INT_TYPES:
                raise ModelError(f"quantised tensor of unsupported type {self.dtype}")
            if not (np.all(np.isfinite(self.scales)) and np.all(self.scales > 0)):
                raise ModelError(f"quantisation scales must be finite and > 0: {self.scales}")
            info = np.iinfo(self.dtype)
            if np.any(self.zero_points < info.min) or np.any(self.zero_points > info.max):
                raise ModelError(f"zero points {self.zero_points} out of range of {self.dtype}")

    @property
    def quantized(self) -> bool:
        """True when the tensor stores integers with a scale (not a float tensor)."""
        return self.scales.size > 0 and self.dtype.kind in "iu"

    @property
    def per_axis(self) -> bool:
        """True for per-axis (per-channel) quantisation."""
        return self.scales.size > 1

    @classmethod
    def from_details(cls, details: Mapping[str, Any]) -> QuantParams:
        """Read the parameters of an interpreter's tensor details dictionary."""
        dtype = np.dtype(details["dtype"])
        qp = details.get("quantization_parameters") or {}
        scales = np.asarray(qp.get("scales", ()), dtype=np.float64).reshape(-1)
        zps = np.asarray(qp.get("zero_points", ()), dtype=np.int64).reshape(-1)
        axis = int(qp.get("quantized_dimension", 0))
        if scales.size == 0:  # older runtimes fill only the legacy (scale, zero_point) pair
            scale, zp = details.get("quantization", (0.0, 0))
            if scale:
                scales = np.array([scale], dtype=np.float64)
                zps = np.array([zp], dtype=np.int64)
        if scales.size and zps.size == 1 and scales.size > 1:
            zps = np.full(scales.shape, zps[0], dtype=np.int64)
        if dtype.kind == "f":
            scales = np.zeros(0, dtype=np.float64)
            zps = np.zeros(0, dtype=np.int64)
        return cls(dtype, scales, zps, axis)

    def _broadcast(
        self, shape: tuple[int, ...]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
        """Scales and zero points shaped to broadcast against an array of ``shape``."""
        ndim = len(shape)
        if not self.per_axis:
            return self.scales, self.zero_points
        if not 0 <= self.axis < ndim:
            raise InvalidInputError(
                f"per-axis quantisation on axis {self.axis} needs at least {self.axis + 1} "
                f"dimensions, got {ndim}"
            )
        if shape[self.axis] != self.scales.size:
            raise InvalidInputError(
                f"axis {self.axis} has length {shape[self.axis]} but there are "
                f"{self.scales.size} per-axis scales"
            )
        bshape = [1] * ndim
        bshape[self.axis] = self.scales.size
        return self.scales.reshape(bshape), self.zero_points.reshape(bshape)


def quantize(x: npt.ArrayLike, params: QuantParams) -> npt.NDArray[Any]:
    """Quantise real values: ``clip(round(x / scale) + zero_point)`` in ``params.dtype``.

    Parameters
    ----------
    x : array_like of float
        Real values; for per-axis parameters, ``x.shape[params.axis]`` must equal the number
        of scales.
    params : QuantParams
        Target quantisation; a float tensor just casts to its dtype.

    Returns
    -------
    ndarray
        Of ``params.dtype``.
    """
    arr = np.asarray(x, dtype=np.float64)
    if not params.quantized:
        return arr.astype(params.dtype)
    scales, zps = params._broadcast(arr.shape)
    info = np.iinfo(params.dtype)
    q = np.rint(arr / scales) + zps
    return np.clip(q, info.min, info.max).astype(params.dtype)


def dequantize(q: npt.ArrayLike, params: QuantParams) -> npt.NDArray[np.float32]:
    """Real values of a quantised array: ``scale * (q - zero_point)`` as float32."""
    arr = np.asarray(q)
    if not params.quantized:
        return arr.astype(np.float32)
    scales, zps = params._broadcast(arr.shape)
    return ((arr.astype(np.float64) - zps) * scales).astype(np.float32)
