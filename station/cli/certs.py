# `station certs`: create a town CA and issue broker / station / town-server certificates.
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from station import certs


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("certs", help="town certificate authority for the MQTT broker",
                              description="Create a town CA and issue TLS certificates. A client "
                              "certificate's CN is the MQTT username the broker ACL uses.")
    sub = p.add_subparsers(dest="certs_cmd", required=True, metavar="{init-ca,issue}")

    init = sub.add_parser("init-ca", help="create ca.crt and ca.key (0600) in DIR")
    init.add_argument("--dir", required=True, type=Path, help="directory for the CA files")
    init.add_argument("--name", default=certs.DEFAULT_CA_NAME, help="CA common name (default: %(default)s)")
    init.add_argument("--days", type=int, default=certs.CA_DAYS, help="validity (default: %(default)s)")

    iss = sub.add_parser("issue", help="issue <CN>.crt and <CN>.key (0600) signed by the CA")
    iss.add_argument("--ca-dir", required=True, type=Path, help="directory holding ca.crt and ca.key")
    iss.add_argument("--cn", required=True,
                     help="station id (e.g. st-0001), 'town-server', or the broker host name with --server")
    iss.add_argument("--out", required=True, type=Path, help="directory to write the certificate and key")
    iss.add_argument("--server", action="store_true", help="broker (TLS server) certificate")
    iss.add_argument("--san", default="",
                     help="comma-separated DNS names / IP addresses for --server (default: the CN)")
    iss.add_argument("--days", type=int, default=certs.LEAF_DAYS, help="validity (default: %(default)s)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    try:
        if args.certs_cmd == "init-ca":
            ca = certs.init_ca(args.dir, name=args.name, days=args.days)
            print(f"CA certificate {ca.cert_file}\nCA key         {ca.key_file} (keep offline, mode 0600)")
        else:
            if args.san and not args.server:
                raise certs.CertError("--san is only meaningful with --server")
            san = [s for s in args.san.split(",") if s.strip()] if args.san else None
            out = certs.issue(args.ca_dir, args.cn, args.out, server=args.server, san=san, days=args.days)
            print(f"certificate {out.cert_file}\nkey         {out.key_file} (mode 0600)")
    except certs.CertError as e:
        print(f"station certs: {e}", file=sys.stderr)
        return 1
    return 0
