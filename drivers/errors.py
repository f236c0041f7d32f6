# Device errors: each names its device first and is also the builtin a caller would catch without knowing drivers/.
from __future__ import annotations


class DeviceError(Exception):
    """A hardware device (camera, serial reader, GPIO) failed; str() is "<device>: <message>"."""

    def __init__(self, device: str, message: str):
        # One argument to the base, so the OSError subclasses below do not read (device, message) as (errno, text).
        super().__init__(f"{device}: {message}")
        self.device, self.message = device, message

    def __str__(self) -> str:
        return f"{self.device}: {self.message}"

    def __reduce__(self):
        return type(self), (self.device, self.message)


class DeviceNotFound(DeviceError, FileNotFoundError):
    """The device is not there: unplugged, a wrong path, or never attached."""


class DeviceBusy(DeviceError, OSError):
    """The device exists but another process or driver holds it."""


class DeviceTimeout(DeviceError, TimeoutError):
    """The device did not answer in time."""


class NotReady(DeviceError, OSError):
    """The device is there and answering but cannot do the job now: paper out, cover open."""


class Unsupported(DeviceError, ValueError):
    """The device, driver name or setting asked for is not one this code supports."""


class ProtocolError(DeviceError, ValueError):
    """The device answered, but with bytes that do not follow its protocol (framing, checksum, fields)."""
