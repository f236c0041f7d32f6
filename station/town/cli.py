# `station town …` (the reference town server: listen, show, pubkey) and `station certs …` (the town's broker CA).
from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import sys
import threading
import time
from pathlib import Path

from station.errors import StationError
from station.town import ca

# paho and the store are imported inside the run_* functions: `station --help` builds this parser.


def add_town_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("town", help="reference town server: listen for results, show what it holds")
    tsub = p.add_subparsers(dest="town_command", metavar="TOWN_COMMAND", required=True)

    lp = tsub.add_parser("listen", help="subscribe to nongan/v1/#, verify, store, ack, ask for resends")
    lp.add_argument("--broker", required=True, metavar="URL", help="mqtt://HOST:PORT or mqtts://HOST:PORT")
    lp.add_argument("--trust", required=True, metavar="DIR", help="station public keys (*.jwk, *.json)")
    lp.add_argument("--db", required=True, metavar="FILE|URL", help="town SQLite database (created if missing) or "
                    "postgresql://USER@HOST/DB (a district's shared database; tables created if missing)")
    lp.add_argument("--share", metavar="GROUP", help="join the MQTT 5 shared subscription $share/GROUP/… (several "
                    "listeners on one database split the stations' messages)")
    lp.add_argument("--key", metavar="FILE", help="town Ed25519 signing key for acks/commands (created 0600 if "
                    "missing); without it nothing is acknowledged")
    lp.add_argument("--kid", default="town/1", help="kid of the town key (default town/1)")
    lp.add_argument("--ca", metavar="FILE", help="CA certificate (mqtts)")
    lp.add_argument("--cert", metavar="FILE", help="client certificate (mqtts)")
    lp.add_argument("--key-file", metavar="FILE", help="client certificate key (mqtts)")
    lp.add_argument("--client-id", help="MQTT client id (default: stable per --db, so the broker session resumes)")
    lp.add_argument("--resend-after", type=float, default=15.0, metavar="S",
                    help="ask a station to resend a gap that persists this long (default 15)")
    lp.add_argument("--webhook", action="append", default=[], metavar="URL[,FORMAT]",
                    help="send alerts here (repeatable); FORMAT json (default), wecom, wecom-text, dingtalk, "
                    "dingtalk-text")
    lp.add_argument("--webhook-rate", type=int, default=20, metavar="N",
                    help="messages per minute per webhook before alerts are aggregated (default 20, the robots' "
                    "limit)")
    lp.add_argument("--silent-after", type=float, metavar="S",
                    help="raise a 'silent' alert for a station that sent nothing for S seconds (default: off)")
    lp.add_argument("--duration", type=float, metavar="S", help="exit after S seconds (demos, tests)")
    lp.add_argument("-v", "--verbose", action="store_true", help="log every stored/duplicate message too")
    lp.set_defaults(func=run_listen)

    sp = tsub.add_parser("show", help="print results, refusals and gaps held in a town database")
    sp.add_argument("--db", required=True, metavar="FILE|URL", help="town SQLite database or postgresql:// URL")
    sp.add_argument("--json", action="store_true", help="machine-readable, with each message exactly as received")
    sp.add_argument("--station", metavar="PATH", help="only this station (district/town/village/station)")
    sp.add_argument("--trust", metavar="DIR", help="re-verify every stored signature against these keys now")
    sp.set_defaults(func=run_show)

    rp = tsub.add_parser("report", help="the month's report (月报) per station: .csv, .xlsx or .pdf")
    rp.add_argument("--db", required=True, metavar="FILE|URL", help="town SQLite database or postgresql:// URL")
    rp.add_argument("--month", required=True, metavar="YYYY-MM", help="the month, in --tz (default Asia/Shanghai)")
    who = rp.add_mutually_exclusive_group()
    who.add_argument("--village", metavar="NAME", help="only this village (name or district/town/village)")
    who.add_argument("--station", metavar="ID", help="only this station (id or full path)")
    rp.add_argument("--out", required=True, metavar="FILE", help="report.csv | report.xlsx | report.pdf")
    rp.add_argument("--tz", default="Asia/Shanghai", help="time zone the month is counted in")
    rp.set_defaults(func=run_report)

    ep = tsub.add_parser("export", help="the month's results as a provincial platform's batch file")
    ep.add_argument("--db", required=True, metavar="FILE|URL", help="town SQLite database or postgresql:// URL")
    ep.add_argument("--month", required=True, metavar="YYYY-MM")
    ewho = ep.add_mutually_exclusive_group()
    ewho.add_argument("--village", metavar="NAME", help="only this village (name or district/town/village)")
    ewho.add_argument("--station", metavar="ID", help="only this station (id or full path)")
    ep.add_argument("--adapter", default="nyt4712-json", help="batch format (default nyt4712-json)")
    ep.add_argument("--out", required=True, metavar="FILE")
    ep.add_argument("--tz", default="Asia/Shanghai")
    ep.set_defaults(func=run_export)

    vp = tsub.add_parser("serve", help="read-only dashboard (Chinese UI): stations, today's results, search, "
                         "receipt check")
    vp.add_argument("--db", required=True, metavar="FILE|URL", help="town SQLite database or postgresql:// URL")
    vp.add_argument("--http", default="127.0.0.1:8080", metavar="HOST:PORT",
                    help="where to listen (default 127.0.0.1:8080: this machine only)")
    vp.add_argument("--trust", metavar="DIR", help="station public keys: re-verify signatures on every result page")
    vp.add_argument("--tz", default="Asia/Shanghai", help="time zone of 'today' and of the times shown")
    vp.add_argument("--duration", type=float, metavar="S", help="exit after S seconds (demos, tests)")
    vp.set_defaults(func=run_serve)

    kp = tsub.add_parser("pubkey", help="print the town public key as a JWK for stations to trust")
    kp.add_argument("--key", required=True, metavar="FILE", help="town signing key (created 0600 if missing)")
    kp.add_argument("--kid", default="town/1")
    kp.set_defaults(func=run_pubkey)


def run_pubkey(args: argparse.Namespace) -> int:
    from station.town.trust import load_or_create_town_key, town_public_jwk

    key = load_or_create_town_key(args.key)
    print(json.dumps(town_public_jwk(key, args.kid), indent=2))
    return 0


def run_listen(args: argparse.Namespace) -> int:
    from station.town.listener import TownBroker, TownListener
    from station.town.trust import load_or_create_town_key
    from station.town.webhooks import Webhook

    hooks = [Webhook.parse(w, args.webhook_rate) for w in args.webhook]
    if args.share is not None and not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", args.share):
        raise StationError(f"--share {args.share!r}: a group name is 1-64 letters, digits, '_', '.' or '-' "
                           "(no '/', '+' or '#')")
    if args.webhook_rate < 1:
        raise StationError(f"--webhook-rate {args.webhook_rate}: must be at least 1 message per minute")
    if args.silent_after is not None and args.silent_after <= 0:
        raise StationError(f"--silent-after {args.silent_after}: must be a positive number of seconds")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s town %(levelname)s %(message)s")
    logging.getLogger("station.town").setLevel(logging.INFO)
    key = load_or_create_town_key(args.key) if args.key else None
    if key is None:
        logging.getLogger("station.town").warning("no --key: results are stored but never acknowledged")

    def outcome(out) -> None:
        if args.verbose and out.action in ("stored", "duplicate", "checkpoint"):
            logging.getLogger("station.town").info("%s", out)

    listener = TownListener(
        TownBroker(args.broker, args.ca, args.cert, args.key_file, client_id=args.client_id),
        args.trust, args.db, key, args.kid, resend_after_s=args.resend_after, on_outcome=outcome,
        webhooks=hooks, silent_after_s=args.silent_after, share=args.share)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    listener.start()
    deadline = None if args.duration is None else time.monotonic() + args.duration
    try:
        while not done.wait(0.5):
            if listener.failed.is_set():
                # Paho would go on acknowledging messages that nothing stores: exit so a supervisor restarts us.
                raise StationError("the store worker died (see the log above); exiting so nothing is "
                                   "acknowledged that was not stored")
            if deadline is not None and time.monotonic() >= deadline:
                break
    finally:
        listener.stop()
    return 0


def run_show(args: argparse.Namespace) -> int:
    from station.errors import TownStoreError
    from station.town.db import is_url
    from station.town.reports import holdings, print_holdings
    from station.town.store import TownStore
    from station.town.trust import TrustStore

    if not is_url(args.db) and not Path(args.db).is_file():
        raise TownStoreError(f"{args.db}: town database not found")
    store = TownStore(args.db)
    trust = TrustStore.load(args.trust) if args.trust else None
    out = holdings(store, args.station, trust)
    store.close()
    if args.json:
        print(json.dumps(out, indent=2, ensure_ascii=False, allow_nan=False))
    else:
        print_holdings(out)
    return 0


def run_report(args: argparse.Namespace) -> int:
    from station.town import monthly, report_files

    report = monthly.build(args.db, args.month, village=args.village, station=args.station, tz_name=args.tz)
    out = report_files.write(report, args.out)
    print(f"{out}: {len(report.stations)} stations, {report.total('tests')} tests, "
          f"{report.total('positives')} positives in {report.month}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from station.town.export import export

    n = export(args.db, args.month, args.adapter, args.out, village=args.village, station=args.station,
               tz_name=args.tz)
    print(f"{args.out}: {n} results of {args.month} as {args.adapter}")
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from station.town.trust import TrustStore
    from station.town.web import Dashboard, parse_http

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s town %(levelname)s %(message)s")
    host, port = parse_http(args.http)
    trust = TrustStore.load(args.trust) if args.trust else None
    app = Dashboard(args.db, host, port, trust, args.tz)
    print(f"dashboard: {app.url}/  (read-only, database {args.db})", file=sys.stderr, flush=True)
    stopper = threading.Thread(target=app.serve_forever, name="dashboard", daemon=True)
    stopper.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait(args.duration)
    app.stop()
    return 0


def add_certs_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("certs", help="town certificate authority for the MQTT broker",
                              description="Create a town CA and issue TLS certificates. A client "
                              "certificate's CN is the MQTT username the broker ACL uses.")
    sub = p.add_subparsers(dest="certs_cmd", required=True, metavar="{init-ca,issue}")

    init = sub.add_parser("init-ca", help="create ca.crt and ca.key (0600) in DIR")
    init.add_argument("--dir", required=True, type=Path, help="directory for the CA files")
    init.add_argument("--name", default=ca.DEFAULT_CA_NAME, help="CA common name (default: %(default)s)")
    init.add_argument("--days", type=int, default=ca.CA_DAYS, help="validity (default: %(default)s)")

    iss = sub.add_parser("issue", help="issue <CN>.crt and <CN>.key (0600) signed by the CA")
    iss.add_argument("--ca-dir", required=True, type=Path, help="directory holding ca.crt and ca.key")
    iss.add_argument("--cn", required=True,
                     help="station id (e.g. st-0001), 'town-server', or the broker host name with --server")
    iss.add_argument("--out", required=True, type=Path, help="directory to write the certificate and key")
    iss.add_argument("--server", action="store_true", help="broker (TLS server) certificate")
    iss.add_argument("--san", default="",
                     help="comma-separated DNS names / IP addresses for --server (default: the CN)")
    iss.add_argument("--days", type=int, default=ca.LEAF_DAYS, help="validity (default: %(default)s)")
    p.set_defaults(func=run_certs)
    return p


def run_certs(args: argparse.Namespace) -> int:
    try:
        if args.certs_cmd == "init-ca":
            files = ca.init_ca(args.dir, name=args.name, days=args.days)
            print(f"CA certificate {files.cert_file}\nCA key         {files.key_file} (keep offline, mode 0600)")
        else:
            if args.san and not args.server:
                raise ca.CertError("--san is only meaningful with --server")
            san = [s for s in args.san.split(",") if s.strip()] if args.san else None
            out = ca.issue(args.ca_dir, args.cn, args.out, server=args.server, san=san, days=args.days)
            print(f"certificate {out.cert_file}\nkey         {out.key_file} (mode 0600)")
    except ca.CertError as e:
        print(f"station certs: {e}", file=sys.stderr)
        return 1
    return 0
