# Typed exceptions: each names the file, key, device or value at fault so the CLI can print one clear line.
from __future__ import annotations


class StationError(Exception):
    """Base of every error the station reports to a user as one line."""


class ConfigError(StationError):
    def __init__(self, path: str, key: str, problem: str, line: int | None = None):
        self.path, self.key, self.problem, self.line = path, key, problem, line
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {key}: {problem}" if key else f"{where}: {problem}")


class KeyFileError(StationError):
    """A signing or trust key is missing, unreadable, or not an Ed25519 key."""


class SignatureError(StationError):
    """A JWS message is malformed or its signature does not verify."""


class JournalError(StationError):
    """The results journal cannot be opened, is damaged, or refused a write."""


# Device errors live with the drivers, which import nothing of station; re-exported so station code has one place.
from drivers.errors import (  # noqa: E402, F401
    DeviceBusy,
    DeviceError,
    DeviceNotFound,
    DeviceTimeout,
    ProtocolError,
    Unsupported,
)


class ImageError(StationError):
    """An image file cannot be read or decoded."""
