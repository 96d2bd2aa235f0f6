"""The Coral Edge TPU delegate: library lookup, device selection and honest error messages.

The delegate is the ``libedgetpu`` shared library (``libedgetpu.so.1`` on Linux,
``libedgetpu.1.dylib`` on macOS, ``edgetpu.dll`` on Windows) loaded through the runtime's
``load_delegate``. ``MEDIMG_EDGE_EDGETPU_LIB`` overrides the library name or path.
The library is opened with :mod:`ctypes` first, so that "not installed" and "not a TFLite
delegate" are told apart from "no Edge TPU device" (which only the delegate itself can say).
"""

from __future__ import annotations

import ctypes
import os
import platform
import re
from typing import Any

from .._errors import DelegateError, InvalidInputError
from ._backend import Backend

__all__ = [
    "EDGETPU_LIB_ENV",
    "check_device",
    "edgetpu_library",
    "edgetpu_present",
    "edgetpu_status",
    "load_edgetpu",
]

EDGETPU_LIB_ENV = "MEDIMG_EDGE_EDGETPU_LIB"
_LIBRARY_BY_SYSTEM = {
    "Linux": "libedgetpu.so.1",
    "Darwin": "libedgetpu.1.dylib",
    "Windows": "edgetpu.dll",
}
_DEVICE_RE = re.compile(r"^(usb|pci)?(:[0-9]{1,3})?$")
_PLUGIN_SYMBOLS = ("tflite_plugin_create_delegate", "tflite_plugin_destroy_delegate")
_INSTALL_HINT = (
    "install the Edge TPU runtime (Debian/Ubuntu: add the Coral apt repository and "
    "`apt-get install libedgetpu1-std`; macOS/Windows: see https://coral.ai/software/), "
    f"or set {EDGETPU_LIB_ENV} to the library's path"
)


def edgetpu_library() -> str:
    """Name or path of the Edge TPU library to load on this platform."""
    override = os.environ.get(EDGETPU_LIB_ENV, "").strip()
    if override:
        return override
    return _LIBRARY_BY_SYSTEM.get(platform.system(), "libedgetpu.so.1")


_USB_IDS = {("1a6e", "089a"), ("18d1", "9302")}  # Coral USB before / after firmware load


def edgetpu_present() -> bool:
    """Whether this machine shows an Edge TPU: a Coral USB accelerator on the USB bus
    (vendor:product ``1a6e:089a`` or ``18d1:9302`` in ``/sys/bus/usb/devices``), a PCIe /
    M.2 one (``/dev/apex_*``), or ``MEDIMG_EDGE_EDGETPU_LIB`` pointing at a delegate
    library (the user asked for one).  No device or library is opened; ``delegate="auto"``
    tries the Edge TPU (and warns when it cannot use it) only when this is true."""
    import glob
    from pathlib import Path

    if os.environ.get(EDGETPU_LIB_ENV, "").strip():
        return True
    if glob.glob("/dev/apex_*"):
        return True
    for dev in glob.glob("/sys/bus/usb/devices/*"):
        try:
            vendor = Path(dev, "idVendor").read_text().strip().lower()
            product = Path(dev, "idProduct").read_text().strip().lower()
        except OSError:
            continue
        if (vendor, product) in _USB_IDS:
            return True
    return False


def check_device(device: str | None) -> str | None:
    """Validate an Edge TPU device selector: ``None`` (first found), ``"usb"``, ``"pci"``,
    ``":N"`` (N-th device of any type), ``"usb:N"`` or ``"pci:N"``."""
    if device is None:
        return None
    if not isinstance(device, str) or not device or not _DEVICE_RE.match(device):
        raise InvalidInputError(
            f"device must be None, 'usb', 'pci', ':N', 'usb:N' or 'pci:N' (N a device "
            f"index), got {device!r}"
        )
    return device


def _probe(library: str) -> str | None:
    """Why ``library`` cannot be a TFLite delegate plugin, or None if it can be loaded."""
    try:
        handle = ctypes.CDLL(library)
    except OSError as exc:
        return f"library {library} could not be loaded ({exc})"
    missing = [s for s in _PLUGIN_SYMBOLS if not hasattr(handle, s)]
    if missing:
        return (
            f"library {library} loaded but is not a TFLite delegate plugin "
            f"(missing symbol {', '.join(missing)})"
        )
    return None


def edgetpu_status() -> dict[str, Any]:
    """Whether the Edge TPU library can be loaded (no device is opened): for ``info()``."""
    library = edgetpu_library()
    reason = _probe(library)
    return {"library": library, "loadable": reason is None, "reason": reason}


def load_edgetpu(backend: Backend, device: str | None) -> Any:
    """Create the Edge TPU delegate.

    Raises
    ------
    DelegateError
        With what was tried, why it failed and how to fix it.
    """
    library = edgetpu_library()
    reason = _probe(library)
    if reason is not None:
        raise DelegateError(f"Edge TPU delegate unavailable: {reason}; {_INSTALL_HINT}")
    options = {"device": device} if device else {}
    try:
        return backend.load_delegate(library, options)
    except (ValueError, RuntimeError, OSError, AttributeError) as exc:
        detail = " ".join(str(exc).split()) or "no message from the delegate"
        where = f"device {device!r}" if device else "any device"
        raise DelegateError(
            f"Edge TPU delegate from {library} could not be created for {where} "
            f"({detail}); is an Edge TPU plugged in and visible (`lsusb` shows "
            "1a6e:089a or 18d1:9302, or /dev/apex_0 exists for PCIe), is the user in the "
            "plugdev/apex group, and is the device not used by another process? "
            "Use delegate='cpu' to run on the CPU"
        ) from None
