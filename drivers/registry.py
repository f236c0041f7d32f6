# Role + config name → driver: the one place that turns a config section into a device, importing it only then.
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drivers.errors import Unsupported

# Each factory takes the role's config section first, then the role's own arguments:
#   camera(cfg: CameraConfig, resolve: Callable[[str], Path]) -> Camera
#   panel(cfg: GpioConfig, on_press: Callable[[], None]) -> Panel
#   reader(cfg: ReaderConfig, post: Callable[[Heard | Link], None], last_record: Callable) -> SerialReader
#   scanner(target: str) -> Scanner | None, target being what follows "driver:" in [scanner] device
#   printer(cfg: PrinterConfig) -> Printer   (cfg.device is the whole spec, e.g. "escpos-serial:/dev/ttyUSB0@9600")
# Imports stay inside the factories so that naming a driver never loads cv2 or gpiozero for another one.


def _folder(cfg: Any, resolve: Callable) -> Any:
    from drivers.camera.folder import FolderCamera

    return FolderCamera(resolve(cfg.folder))


def _v4l2(cfg: Any, resolve: Callable) -> Any:
    from drivers.camera.v4l2 import V4L2Camera  # cv2 video I/O only where a real camera is used

    return V4L2Camera(cfg.device, cfg.width, cfg.height, cfg.warmup_frames, cfg.jpeg_quality)


def _picamera2(cfg: Any, resolve: Callable) -> Any:
    from drivers.camera.picamera2 import Locked, Picamera2Camera  # picamera2 itself is imported on open

    locked = Locked(cfg.exposure_us, cfg.analogue_gain, cfg.red_gain, cfg.blue_gain, cfg.lens_position)
    # CSI cameras are numbered by libcamera, not by /dev/video*: device "1" is the second one, anything else 0.
    index = int(cfg.device) if cfg.device.isdigit() else 0
    return Picamera2Camera(index, cfg.width, cfg.height, locked, warmup_frames=cfg.warmup_frames,
                           jpeg_quality=cfg.jpeg_quality)


def _gpiozero_panel(cfg: Any, on_press: Callable[[], None]) -> Any:
    from drivers.panel import Panel

    return Panel(cfg, on_press)


def _fake_panel(cfg: Any, on_press: Callable[[], None]) -> Any:
    from drivers.panel import Panel

    return Panel(cfg, on_press, pins="mock")  # MockFactory even where $GPIOZERO_PIN_FACTORY names real pins


def _reader(dialect: str) -> Callable[..., Any]:
    def make(cfg: Any, post: Callable, last_record: Callable) -> Any:
        from drivers.reader import dialects
        from drivers.reader.reader import SerialReader

        return SerialReader(cfg.name, dialects.get(dialect), cfg.port, cfg.baud, post, last_record)

    return make


def _fake_reader(cfg: Any, post: Callable, last_record: Callable) -> Any:
    """cfg.dialect's pty twin at cfg.port with the real reader thread on it (tests, the demo, a bench)."""
    from drivers.reader.fake import TwinReader

    return TwinReader(cfg, post, last_record)


def _serial_scanner(target: str) -> Any:
    from drivers.scanner.base import port_baud
    from drivers.scanner.serial import DEFAULT_BAUD, SerialScanner

    return SerialScanner(*port_baud(target, DEFAULT_BAUD))


def _hid_scanner(target: str) -> Any:
    from drivers.scanner.hid import HidScanner  # evdev itself is imported when the thread opens the device

    return HidScanner(target)


def _fake_scanner(target: str) -> Any:
    """A pty twin fed by the lines appended to the file `target`, read by the real serial scanner."""
    from drivers.scanner.fake import FakeScanner

    return FakeScanner(target)
def _printer(cfg: Any) -> Any:
    from drivers.printer.base import parse_spec

    spec = parse_spec(cfg.device)
    if spec.driver == "fake":
        from drivers.printer.fake import FakePrinter

        return FakePrinter(spec, cfg.width_dots)
    from drivers.printer.escpos import EscposPrinter

    return EscposPrinter(spec, cfg.width_dots)


def _reader_names() -> tuple[str, ...]:
    from drivers.reader.dialects import names as dialect_names  # no pyserial import: only module names

    return dialect_names()


# Order is the order errors list the names in. `fake` is every role's simulation, asked for by name; for the
# camera it is the photograph-folder twin, which can also fail on request (FolderCamera.fail_next).
# Later: third-party drivers (e.g. reader dialects) would be added here from an entry-point group, the way
# gpiozero finds pin factories; not needed while every driver ships in this package.
_ROLES: dict[str, dict[str, Callable[..., Any]]] = {
    # "none": a station with serial instruments only (`station init --no-camera`); presses are refused.
    "camera": {"folder": _folder, "v4l2": _v4l2, "picamera2": _picamera2, "fake": _folder,
               "none": lambda cfg, resolve: None},
    "panel": {"gpiozero": _gpiozero_panel, "fake": _fake_panel},
    # One driver per dialect; the pty twin (drivers/reader/fake.py) is a device, not a driver: the station
    # opens its link path exactly as it opens a real /dev/serial/by-id port.
    "reader": {**{name: _reader(name) for name in _reader_names()}, "fake": _fake_reader},
    # "none" (the default): sample ids come from `station press --sample` or the cassette's QR.
    "scanner": {"serial": _serial_scanner, "hid": _hid_scanner, "fake": _fake_scanner,
                "none": lambda target: None},
    # The name is the spec's prefix; the rest of the spec (port, VID:PID, path) is the driver's to parse.
    "printer": {"escpos-serial": _printer, "escpos-usb": _printer, "escpos-file": _printer, "fake": _printer},
}


def roles() -> tuple[str, ...]:
    return tuple(_ROLES)


def names(role: str) -> tuple[str, ...]:
    """The driver names a config may give for role (config.py builds its allowed choices from these)."""
    if role not in _ROLES:
        raise Unsupported("driver registry", f"role {role!r} unknown; one of {', '.join(_ROLES)}")
    return tuple(_ROLES[role])


def factory(role: str, name: str) -> Callable[..., Any]:
    known = names(role)
    if name not in known:
        raise Unsupported(role, f"driver {name!r} unknown; one of {', '.join(known)}")
    return _ROLES[role][name]


def open_device(role: str, name: str, *args: Any) -> Any:
    """Build the driver `name` for `role` from its config section and the role's arguments (see above)."""
    return factory(role, name)(*args)
