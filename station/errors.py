# Every station error, one class each: a one-line docstring, and the builtin it stands for as a second base,
# so callers can catch the builtin and the CLI can print one line naming the file, key, device or value.
from __future__ import annotations

# Device errors live with the drivers, which import nothing of station; re-exported so station code has one place.
from drivers.errors import (  # noqa: F401
    DeviceBusy,
    DeviceError,
    DeviceNotFound,
    DeviceTimeout,
    ProtocolError,
    Unsupported,
)


class StationError(Exception):
    """Base of every error the station reports to a user as one line."""


# ---- configuration, keys, files ----------------------------------------------------------------------------
class ConfigError(StationError, ValueError):
    """A config file, table or key is missing, unknown or out of bounds; the message has file:line."""

    def __init__(self, path: str, key: str, problem: str, line: int | None = None):
        self.path, self.key, self.problem, self.line = path, key, problem, line
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {key}: {problem}" if key else f"{where}: {problem}")


class KeyFileError(StationError, OSError):
    """A signing or trust key is missing, unreadable, or not an Ed25519 key."""


class StorageError(StationError, OSError):
    """A file could not be written durably or a storage policy was given a bad value."""


class ClockStateError(StationError, ValueError):
    """The persisted boot counter is unreadable or the clock override has a bad value."""


class CalibrationError(StationError, ValueError):
    """The calibration store is unreadable or a calibration value is out of bounds."""


class SeriesRefused(CalibrationError, ValueError):
    """A series of standards cannot support a cutoff (too few levels, non-monotonic, LOD above the limit …)."""


class QCError(StationError, ValueError):
    """The QC control-card store is unreadable or a control reading has a bad value."""


# ---- the wire contract ---------------------------------------------------------------------------------------
class SignatureError(StationError, ValueError):
    """A JWS message is malformed or its signature does not verify."""


class NonCanonicalError(SignatureError, ValueError):
    """A JWS that may verify but is not the one serialisation the contract allows (envelope or base64url)."""


class PayloadError(SignatureError, ValueError):
    """A JWS whose signature verifies but whose payload is not acceptable JSON (too deep, NaN, huge number)."""


class WireFormatError(StationError, ValueError):
    """Untrusted JSON from the wire is too big, too deep, not UTF-8, or holds a value JSON must not carry."""


class RecordError(StationError, ValueError):
    """A result record is malformed; the message names the field (JSON path) and the value."""

    def __init__(self, field: str, problem: str):
        self.field, self.problem = field, problem
        super().__init__(f"result record: {field}: {problem}")


class Refused(StationError, ValueError):
    """A town message (ack or command) was refused; str() is the one-line reason."""

    def __init__(self, kind: str, reason: str):
        self.kind, self.reason = kind, reason
        super().__init__(f"{kind} refused: {reason}")


class BrokerURLError(StationError, ValueError):
    """The broker URL is not mqtt://host:port or mqtts://host:port."""


class TLSFileError(StationError, OSError):
    """A CA / client certificate / client key file named in the broker settings is missing or unusable."""


# ---- the station at work ---------------------------------------------------------------------------------------
class JournalError(StationError, OSError):
    """The results journal cannot be opened, is damaged, or refused a write."""


class JournalDamagedError(JournalError):
    """The file is corrupt or its hash chain is broken: move it aside with Journal.quarantine_damaged.

    Kept apart from other JournalErrors (locked, unreadable, disk full) so that nobody moves a healthy
    journal aside because of a transient or permission problem.
    """


class ReleaseError(StationError, ValueError):
    """A release archive is malformed, or its signature is missing or not made by the configured release key."""


class UpdateError(StationError, RuntimeError):
    """An update could not be installed or switched to, or failed its probation and was rolled back."""


class UpdateRefused(UpdateError):
    """An update may not start now: the station is at work or positives wait for the town's acknowledgement."""


class ImageError(StationError, ValueError):
    """An image file cannot be read or decoded."""


class ControlError(StationError, ConnectionError):
    """The control socket has no daemon behind it, refused us, or did not answer in time."""


# ---- the town and the lab wings -----------------------------------------------------------------------------
class TownStoreError(StationError, RuntimeError):
    """The town database cannot be opened or the trust directory is unusable."""


class TownOptionError(StationError, ValueError):
    """A town server option (webhook, month, filter, address, output file) is not one it accepts; names it."""


class CertError(StationError, ValueError):
    """The certificate authority or a certificate request is unusable; the message names the file or value."""


class BrokerError(StationError, RuntimeError):
    """The local Mosquitto could not be configured, started or stopped; the message has its log tail."""


class BrokerNotInstalled(BrokerError, FileNotFoundError):
    """No mosquitto executable: callers such as the demo fall back to running offline."""


class DaemonRefused(StationError, RuntimeError):
    """`station run` exited instead of serving (a damaged journal, a bad config …); carries its last line."""


class DuplicateRecord(StationError, ValueError):
    """An instrument record already stored (a replay, "print again", a repeated poll): ignored, never twice."""


class LotError(StationError, ValueError):
    """A cassette lot given to `station lot set` is malformed, or the lot store is unreadable."""
