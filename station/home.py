# The station home: where config, keys, journal, photographs and the control socket live, and `station init`.
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from station.config import CONFIG_NAME, parse_config
from station.errors import ConfigError, StationError
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
id = "{station}"            # this station's id; also the MQTT client-certificate CN
grid = "{grid}"             # district/town/village
key_file = "keys/station.key"   # Ed25519 signing key; $CREDENTIALS_DIRECTORY/station.key wins if present
key_serial = 1              # bump when the key is rotated: kid = "<id>/<key_serial>"

[broker]
url = "{broker}"            # mqtt://HOST:PORT, mqtts://HOST:PORT (TLS), or "" to run offline
ca_file = "{ca_file}"       # CA of the town broker (mqtts)
cert_file = "{cert_file}"   # this station's client certificate (mqtts)
key_file = "{key_file}"     # its private key
keepalive_s = 30
max_payload_bytes = 131072  # client-side cap, below the broker's message_size_limit
checkpoint_every = 50       # publish a signed checkpoint every N results

[town]
trust_key = "trust/town.jwk"    # town public key (JWK); acks and commands signed by anything else are refused

[camera]
driver = "{camera}"         # picamera2 (CSI) | v4l2 (USB camera) | folder or fake (simulated photographs)
folder = "{folder}"
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
pin_factory = "{pin_factory}"   # mock (simulation) | lgpio (Raspberry Pi OS Bookworm); $GPIOZERO_PIN_FACTORY wins
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


def init_home(home: Home, *, station: str, grid: str, broker: str = "", sim_images: str | None = None,
              ca_file: str = "", cert_file: str = "", key_file: str = "", town_key: str | None = None,
              camera: str | None = None) -> Path:
    if home.config.exists():
        raise StationError(f"{home.config} already exists; refusing to overwrite a station home")
    text = CONFIG_TEMPLATE.format(
        station=station, grid=grid, broker=broker, ca_file=ca_file, cert_file=cert_file, key_file=key_file,
        camera=camera or ("folder" if sim_images else "v4l2"),
        folder=str(Path(sim_images).absolute()) if sim_images else "sim-images",
        pin_factory="mock" if sim_images else "lgpio", wait="false" if sim_images else "true",
    )
    # Validate before writing anything, so a bad --station or --grid leaves no half-made home.
    try:
        cfg = parse_config(text, path=str(home.config), home=home.root)
    except ConfigError as exc:
        raise StationError(f"station init: {exc.key.removeprefix('station.')}: {exc.problem}") from None
    if sim_images and not Path(sim_images).is_dir():
        raise StationError(f"--sim-images {sim_images}: not a folder of photographs")
    if broker:
        from station.protocol.mqtt import parse_broker_url

        parse_broker_url(broker)
    for d in (home.root, home.images, home.state, home.control_socket.parent, home.root / "keys",
              home.root / "trust"):
        d.mkdir(parents=True, exist_ok=True)
    os.chmod(home.root / "keys", 0o700)
    signing.create_private_key(cfg.resolve(cfg.station.key_file))
    if town_key:
        shutil.copyfile(town_key, cfg.resolve(cfg.town.trust_key))
    tmp = home.config.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, home.config)
    return home.config
