# `station init`: make a station home with a commented config, a fresh signing key and the data folders.
from __future__ import annotations

import argparse

from station.cli.common import add_home, home_of
from station.errors import StationError
from station.home import init_home


def add_parser(sub) -> None:
    p = sub.add_parser("init", help="create a station home (config, signing key, folders)")
    add_home(p)
    p.add_argument("--station", required=True, help="station id, e.g. st-0001")
    p.add_argument("--grid", required=True, help="district/town/village")
    p.add_argument("--broker", default="", help="mqtt://HOST:PORT or mqtts://HOST:PORT (default: offline)")
    p.add_argument("--ca-file", default="", help="town broker CA certificate (mqtts)")
    p.add_argument("--cert-file", default="", help="station client certificate (mqtts)")
    p.add_argument("--key-file", default="", help="station client certificate key (mqtts)")
    p.add_argument("--town-key", help="town public key (JWK) to trust for acks and commands")
    p.add_argument("--camera", help="camera driver: picamera2 (CSI camera), v4l2 (USB; the default), folder")
    p.add_argument("--sim-images", metavar="DIR", help="simulate the camera with this folder of photographs "
                   "and the button with the control socket and gpiozero's MockFactory")
    p.add_argument("--reader", action="append", default=[], metavar="DIALECT:PORT[@BAUD]",
                   help="a serial instrument (repeatable), e.g. gold-csv:/dev/serial/by-id/usb-…; dialects: "
                   "gold-csv, enzyme-print, frame-crc8 (see `station readers --probe`)")
    p.add_argument("--slots", type=int, default=1, help="tray positions, each with its own "
                   "incubation timer (1..8; default 1: every cassette in view is read at once)")
    p.add_argument("--incubation", type=int, metavar="S", help="incubation seconds for every strip type, "
                   "instead of each type's own (training and tests); also turns the wait on in simulation")
    p.add_argument("--scanner", default="", metavar="SPEC", help="barcode/QR scanner: serial:PORT[@BAUD] "
                   "(virtual-COM mode, recommended), hid:/dev/input/by-id/…-event-kbd (keyboard mode), fake:FILE")
    p.add_argument("--no-camera", action="store_true", help="a station with serial instruments only")
    p.add_argument("--printer", default="", metavar="SPEC", help="receipt printer: escpos-serial:PORT[@BAUD], "
                   "escpos-usb:VID:PID, escpos-file:PATH (e.g. /dev/usb/lp0) or fake:PATH")
    p.add_argument("--verify-url", default="", metavar="URL", help="the town's receipt page the receipt QR points "
                   "to, e.g. https://town.example/r (with --printer)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from station.readers import parse_reader_arg

    home = home_of(args)
    try:
        readers = [parse_reader_arg(r) for r in args.reader]
    except StationError as exc:
        raise StationError(f"station init: {exc}") from None
    path = init_home(home, station=args.station, grid=args.grid, broker=args.broker, sim_images=args.sim_images,
                     ca_file=args.ca_file, cert_file=args.cert_file, key_file=args.key_file,
                     town_key=args.town_key, readers=readers, camera=not args.no_camera,
                     camera_driver=args.camera, slots=args.slots, incubation=args.incubation,
                     scanner=args.scanner, printer=args.printer, verify_url=args.verify_url)
    print(f"station home ready: {path}")
    print(f"next: station pubkey --home {home.root}   (give this key to the town)")
    print(f"      station run --home {home.root}")
    return 0
