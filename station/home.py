# The station home: where config, keys, journal, photographs and the control socket live, and `station init`.
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from station.config import CONFIG_NAME, parse_config
from station.errors import ConfigError, StationError
from station.host.files import atomic_write, fsync_dir
from station.protocol import signing

DEFAULT_HOME = "/var/lib/nongan-station"


@dataclass(frozen=True)
class Home:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def journal(self) -> Path:
        return self.root / "data" / "journal.sqlite"

    @property
    def images(self) -> Path:
        return self.root / "data" / "images"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def control_socket(self) -> Path:
        return self.root / "run" / "control.sock"

    @property
    def log(self) -> Path:
        return self.root / "data" / "events.log"


def home_from(arg: str | None) -> Home:
    """--home wins, then $STATION_HOME, then the system location the systemd unit uses."""
    return Home(Path(arg or os.environ.get("STATION_HOME") or DEFAULT_HOME).expanduser().absolute())


def signing_key_path(home: Home, key_file: str) -> Path:
    """systemd's LoadCredential= puts the key in $CREDENTIALS_DIRECTORY, outside the writable home."""
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if creds and (Path(creds) / "station.key").is_file():
        return Path(creds) / "station.key"
    p = Path(key_file).expanduser()
    return p if p.is_absolute() else home.root / p


CONFIG_TEMPLATE = """\
# Nong'an Station configuration, written by `station init`. Unknown keys are rejected.
# Paths are relative to this file's folder (the station home). Calibration lives apart, in calib/.

[station]
id = {station}            # this station's id; also the MQTT client-certificate CN
grid = {grid}             # district/town/village
key_file = "keys/station.key"   # Ed25519 signing key; $CREDENTIALS_DIRECTORY/station.key wins if present
key_serial = 1              # bump when the key is rotated: kid = "<id>/<key_serial>"

[broker]
url = {broker}            # mqtt://HOST:PORT, mqtts://HOST:PORT (TLS), or "" to run offline
ca_file = {ca_file}       # CA of the town broker (mqtts)
cert_file = {cert_file}   # this station's client certificate (mqtts)
key_file = {key_file}     # its private key
keepalive_s = 30
max_payload_bytes = 131072  # client-side cap, below the broker's message_size_limit
checkpoint_every = 50       # publish a signed checkpoint every N results

[town]
trust_key = "trust/town.jwk"    # town public key (JWK); acks and commands signed by anything else are refused

[camera]
driver = {camera}         # picamera2 (CSI) | v4l2 (USB camera) | folder or fake (simulated photographs)
                          # | none (serial instruments only: presses are refused)
folder = {folder}
device = "/dev/video0"
width = 1640
height = 1232
warmup_frames = 5
jpeg_quality = 92
# picamera2: exposure, gain, white balance and focus are locked; measure them once for the light box.
exposure_us = 10000
analogue_gain = 1.0
red_gain = 1.6
blue_gain = 1.9
lens_position = 6.0         # dioptres: 1 / distance in metres to the tray

[gpio]
pin_factory = {pin_factory}   # mock (simulation) | lgpio (Raspberry Pi OS Bookworm); $GPIOZERO_PIN_FACTORY wins
button_pin = 17             # BCM numbering
green_led_pin = 22
amber_led_pin = 23
red_led_pin = 27
buzzer_pin = 24
debounce_ms = 50

[assay]
strip_type = "pesticide-generic"   # default strip type, from the built-in catalog or [[strip_types]] below
wait_incubation = {wait}    # wait the strip type's incubation time after the button press
retakes = 1                 # extra photographs when a quality gate asks for a retake

[tray]
slots = {slots}                   # tray positions, each with its own timer; 1: every cassette in view is one press
incubation_s = {incubation}           # -1: each strip type's own incubation_s; else this for all (training, tests)

[storage]
warn_pct = 80               # disk use that raises a warning in status
refuse_pct = 95             # disk use at which new samples are refused (results are never evicted)

# Extra strip types, e.g.:
# [[strip_types]]
# name = "carbofuran-card"
# analyte = "carbofuran"
# format = "competitive"
# lines = [["T", 0.35], ["C", 0.65]]
# cutoff = 0.8
# incubation_s = 600
"""


def toml_string(value: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped, so any path or URL survives."""
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def render_config(*, station: str, grid: str, broker: str = "", ca_file: str = "", cert_file: str = "",
                  key_file: str = "", camera: str = "v4l2", folder: str = "sim-images", pin_factory: str = "lgpio",
                  wait: bool = True, slots: int = 1, incubation: int = -1) -> str:
    """The commented station.toml `station init` writes, every value escaped."""
    q = {k: toml_string(v) for k, v in dict(station=station, grid=grid, broker=broker, ca_file=ca_file,
                                             cert_file=cert_file, key_file=key_file, camera=camera, folder=folder,
                                             pin_factory=pin_factory).items()}
    return CONFIG_TEMPLATE.format(**q, wait="true" if wait else "false", slots=slots, incubation=incubation)


READER_TABLE = """
[[readers]]
name = {name}
dialect = {dialect}       # {dialects}
port = {port}
baud = {baud}
# strip_type = ""           # the record's strip.type (default: the dialect and item code)
# analyte = ""              # when the instrument names no item (enzyme-print)
items = {{ IMI = "imidacloprid", CBZ = "carbendazim", CBF = "carbofuran", PCM = "procymidone" }}  # code = analyte
"""


SCANNER_TABLE = """
[scanner]
device = {device}   # serial:/dev/serial/by-id/…[@BAUD] (virtual-COM mode, recommended: carries Chinese)
                    # | hid:/dev/input/by-id/…-event-kbd (keyboard mode) | fake:FILE (lines appended are scans) | ""
# A code matching one of these (regular expressions, searched) is a producer information card (主体信息卡)
# and sets sample.producer; any other code becomes the sample id. A group, e.g. 'code=(ZT\\w+)', gives the id.
producer_patterns = {patterns}
"""


def scanner_table(device: str = "") -> str:
    from station.scans import DEFAULT_PRODUCER_PATTERNS

    return SCANNER_TABLE.format(device=toml_string(device),
                                patterns="[" + ", ".join(toml_string(p) for p in DEFAULT_PRODUCER_PATTERNS) + "]")


def reader_tables(readers: list[tuple[str, str, int | None]]) -> str:
    """`--reader DIALECT:PORT[@BAUD]` → one [[readers]] table each, named dialect-1, dialect-2 …"""
    from drivers.reader import dialects

    out, seen = [], {}
    for dialect, port, baud in readers:
        seen[dialect] = seen.get(dialect, 0) + 1
        default = dialects.get(dialect).baud if dialect in dialects.names() else 9600
        out.append(READER_TABLE.format(name=toml_string(f"{dialect}-{seen[dialect]}"),
                                       dialect=toml_string(dialect), port=toml_string(port),
                                       baud=baud or default, dialects=" | ".join(dialects.names())))
    return "".join(out)


PRINTER_TABLES = """
[printer]
device = {device}   # escpos-serial:PORT[@BAUD] | escpos-usb:VID:PID | escpos-file:PATH | fake:PATH
width_dots = {width}            # 384 for 58 mm paper, 576 for 80 mm

[receipt]
verify_url = {verify_url}   # the town's receipt page, e.g. "https://town.example/r"; the QR points there
operator = ""               # printed as 检测员
certificate = true          # print the 承诺达标合格证 prefill for a known producer's all-negative sample
"""


def printer_tables(device: str, width_dots: int = 384, verify_url: str = "") -> str:
    return PRINTER_TABLES.format(device=toml_string(device), width=width_dots,
                                 verify_url=toml_string(verify_url)) if device else ""


def init_home(home: Home, *, station: str, grid: str, broker: str = "", sim_images: str | None = None,
              ca_file: str = "", cert_file: str = "", key_file: str = "", town_key: str | None = None,
              readers: list[tuple[str, str, int | None]] = (), camera: bool = True,
              camera_driver: str | None = None, slots: int = 1, incubation: int | None = None,
              scanner: str = "", printer: str = "", verify_url: str = "") -> Path:
    """Check every input first, then build the home in a staging folder and rename it into place.

    A mistyped path or a refused write leaves nothing behind, so re-running init with the fix just works.
    """
    try:
        if home.config.exists():
            raise StationError(f"{home.config} already exists; refusing to overwrite a station home")
        if home.root.exists() and (not home.root.is_dir() or any(home.root.iterdir())):
            raise StationError(f"{home.root} exists and is not an empty folder; give --home a new or empty folder")
    except OSError as exc:
        raise StationError(f"station init: cannot look into {home.root}: {exc.strerror or exc}") from None
    text = render_config(
        station=station, grid=grid, broker=broker, ca_file=ca_file, cert_file=cert_file, key_file=key_file,
        camera="none" if not camera else camera_driver or ("folder" if sim_images else "v4l2"),
        folder=str(Path(sim_images).absolute()) if sim_images else "sim-images",
        pin_factory="mock" if sim_images else "lgpio", slots=slots,
        # An incubation asked for is waited for, also in simulation (a training station, the slot tests).
        wait=not sim_images or incubation is not None, incubation=-1 if incubation is None else incubation,
    ) + scanner_table(scanner) + reader_tables(list(readers)) + printer_tables(printer, verify_url=verify_url)
    try:
        parse_config(text, path=str(home.config), home=home.root)
    except ConfigError as exc:
        raise StationError(f"station init: {exc.key.removeprefix('station.')}: {exc.problem}") from None
    if not camera and not readers:
        raise StationError("station init: --no-camera needs at least one --reader DIALECT:PORT")
    if sim_images and not Path(sim_images).is_dir():
        raise StationError(f"--sim-images {sim_images}: not a folder of photographs")
    if broker:
        from station.protocol.mqtt import parse_broker_url

        parse_broker_url(broker)
    if town_key:
        signing.load_jwk_file(town_key)  # a one-line KeyFileError naming the file, before anything is written
    parent = home.root.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{home.root.name}.init-", dir=parent))
    except OSError as exc:
        raise StationError(f"station init: cannot create {home.root}: {exc.strerror or exc}") from None
    try:
        _fill(Home(stage), text, town_key)
        os.replace(stage, home.root)  # rename(2) may replace an empty folder: the home appears whole or not at all
        fsync_dir(parent)
    except OSError as exc:
        raise StationError(f"station init: cannot write {home.root}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return home.config


def _fill(stage: Home, text: str, town_key: str | None) -> None:
    cfg = parse_config(text, path=str(stage.config), home=stage.root)
    os.chmod(stage.root, 0o755)
    for d in (stage.images, stage.state, stage.control_socket.parent, stage.root / "keys", stage.root / "trust"):
        d.mkdir(parents=True, exist_ok=True)
    os.chmod(stage.root / "keys", 0o700)
    signing.create_private_key(cfg.resolve(cfg.station.key_file))
    if town_key:
        shutil.copyfile(town_key, cfg.resolve(cfg.town.trust_key))
    atomic_write(stage.config, text.encode("utf-8"))
