# `station pubkey`: the station's public key as a JWK (RFC 8037) with its kid, for the town's trust folder.
from __future__ import annotations

import argparse

from station.cli.common import add_home, home_of, print_json
from station.config import load_config
from station.home import signing_key_path
from station.protocol import signing


def add_parser(sub) -> None:
    p = sub.add_parser("pubkey", help="print the station public key as a JWK")
    add_home(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    home = home_of(args)
    cfg = load_config(home.root)
    key = signing.load_private_key(signing_key_path(home, cfg.station.key_file))
    print_json(signing.public_jwk(key.public_key(), cfg.station.kid, cfg.station.path))
    return 0
