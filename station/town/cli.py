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

    for kind, what in (("plan", "the town's test plan (tasks: product, analytes, quota, window, deadline)"),
                       ("roster", "the roster of registered producers (id, name, contact, origin)")):
        op = tsub.add_parser(kind, help=f"send {what} to a station")
        osub = op.add_subparsers(dest="order_command", metavar="ACTION", required=True)
        s = osub.add_parser("send", help="sign FILE (.toml or .json) with the town key and send it to --station")
        s.add_argument("file", metavar="FILE")
        s.add_argument("--station", required=True, metavar="PATH", help="district/town/village/station")
        s.add_argument("--broker", required=True, metavar="URL", help="mqtt://HOST:PORT or mqtts://HOST:PORT")
        s.add_argument("--key", required=True, metavar="FILE", help="town Ed25519 signing key (as for listen)")
        s.add_argument("--kid", default="town/1")
        s.add_argument("--db", metavar="FILE", help="town database: keep what was sent (plan fulfilment reports)")
        s.add_argument("--ttl", type=int, default=3600, metavar="S", help="the command expires after S seconds "
                       "(default 3600, at most 86400); the station must be online to receive it")
        s.add_argument("--wait", type=float, default=0.0, metavar="S",
                       help="wait up to S seconds for the station's status to report this version")
        s.add_argument("--ca", metavar="FILE", help="CA certificate (mqtts)")
        s.add_argument("--cert", metavar="FILE", help="client certificate (mqtts)")
        s.add_argument("--key-file", metavar="FILE", help="client certificate key (mqtts)")
        s.set_defaults(func=run_order_send, kind=kind)
        if kind == "plan":
            f = osub.add_parser("show", help="plan fulfilment per station (done/quota) from the stored results")
            f.add_argument("--db", required=True, metavar="FILE")
            f.add_argument("--station", metavar="PATH")
            f.add_argument("--json", action="store_true")
            f.set_defaults(func=run_plan_show)
    up = tsub.add_parser("update", help="order a station to update itself from a signed release on a web server")
    usub = up.add_subparsers(dest="update_command", metavar="UPDATE_COMMAND", required=True)
    us = usub.add_parser("send", help="sign an update order for one station and publish it on its cmd topic")
    us.add_argument("--station", required=True, metavar="PATH", help="district/town/village/station")
    us.add_argument("--release", required=True, type=Path, metavar="FILE",
                    help="the archive from scripts/build-release (FILE.sig beside it names the version)")
    us.add_argument("--url", required=True, help="where the station fetches FILE (and URL.sig): https://, or "
                    "http:// on the broker's host")
    us.add_argument("--broker", required=True, metavar="URL", help="mqtt://HOST:PORT or mqtts://HOST:PORT")
    us.add_argument("--key", required=True, metavar="FILE", help="town signing key (the one stations trust)")
    us.add_argument("--kid", default="town/1")
    us.add_argument("--ttl", type=int, default=6 * 3600, metavar="S",
                    help="the order expires after S seconds if the station could not start it (default 6 h)")
    us.add_argument("--ca", metavar="FILE")
    us.add_argument("--cert", metavar="FILE")
    us.add_argument("--key-file", metavar="FILE", help="client certificate key (mqtts)")
    us.set_defaults(func=run_update_send)

    kp = tsub.add_parser("pubkey", help="print the town public key as a JWK for stations to trust")
    kp.add_argument("--key", required=True, metavar="FILE", help="town signing key (created 0600 if missing)")
    kp.add_argument("--kid", default="town/1")
    kp.set_defaults(func=run_pubkey)


def run_pubkey(args: argparse.Namespace) -> int:
    from station.town.trust import load_or_create_town_key, town_public_jwk

    key = load_or_create_town_key(args.key)
    print(json.dumps(town_public_jwk(key, args.kid), indent=2))
    return 0


def run_order_send(args: argparse.Namespace) -> int:
    from station.town.listener import TownBroker
    from station.town.orders import load_body, send
    from station.town.trust import load_or_create_town_key

    body = load_body(args.file, args.kind)
    if not Path(args.key).is_file():
        raise StationError(f"--key {args.key}: town signing key not found (the one `station town listen` uses)")
    out = send(TownBroker(args.broker, args.ca, args.cert, args.key_file), args.station, args.kind, body,
               load_or_create_town_key(args.key), args.kid, ttl_s=args.ttl, db_path=args.db, wait_s=args.wait)
    name = body.get("plan_id") or body.get("roster_id")
    if out.get("not_sent"):
        print(f"{args.kind} {name} v{body['version']} NOT sent: {args.station} already has v{out['station_version']}; "
              "give the file a higher version", file=sys.stderr)
        return 1
    told = {None: "", True: "; the station reports it applied",
            False: f"; the station did NOT report it within {args.wait:.0f} s (reports version "
                   f"{out['station_version']}; see its log)"}[out["applied"]]
    print(f"{args.kind} {name} v{body['version']} sent to {args.station} ({out['bytes']} bytes){told}")
    return 1 if out["applied"] is False else 0


def run_plan_show(args: argparse.Namespace) -> int:
    from station.town.monthly import open_readonly
    from station.town.orders import fulfilment

    db = open_readonly(args.db)
    try:
        rows = fulfilment(db, args.station)
    finally:
        db.close()
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    elif not rows:
        print("no plan sent from this database (send with --db to keep it)")
    for r in [] if args.json else rows:
        print(f"{r['station']}  {r['plan_id']} v{r['version']}  {r['task']}  {r['product']}  "
              f"{r['done']}/{r['quota']}  deadline {r['deadline']}")
    return 0


def run_update_send(args: argparse.Namespace) -> int:
    import hashlib
    import secrets

    from station.protocol import topics
    from station.protocol.messages import MAX_TTL_S, build_update
    from station.protocol.mqtt import make_client
    from station.protocol.signing import unverified_payload
    from station.town.listener import TownBroker
    from station.town.trust import load_or_create_town_key

    if not 60 <= args.ttl <= MAX_TTL_S:
        raise StationError(f"--ttl {args.ttl}: between 60 and {MAX_TTL_S} seconds")
    try:
        data, sig = args.release.read_bytes(), args.release.with_name(args.release.name + ".sig").read_bytes()
        version = unverified_payload(sig).get("version")
    except (OSError, StationError) as exc:
        raise StationError(f"{args.release}: cannot read it and its .sig: {exc}") from None
    if not isinstance(version, str):
        raise StationError(f"{args.release}.sig: names no version; build it with scripts/build-release")
    key = load_or_create_town_key(args.key)
    nonce = secrets.token_hex(16)
    msg = build_update(key, args.kid, args.station, version, args.url, hashlib.sha256(data).hexdigest(), len(data),
                       nonce, int(time.time()) + args.ttl)
    client, addr = make_client(TownBroker(args.broker, args.ca, args.cert, args.key_file),
                               f"nongan-town-update-{nonce[:8]}")
    try:
        client.connect(addr.host, addr.port, keepalive=30)
        client.loop_start()
        info = client.publish(topics.station_topic(args.station, "cmd"), msg, qos=1, retain=False)
        info.wait_for_publish(timeout=30)
        if not info.is_published():
            raise StationError(f"{args.broker}: the order was not acknowledged by the broker within 30 s")
    except OSError as exc:
        raise StationError(f"{args.broker}: {exc}") from None
    finally:
        client.loop_stop()
        client.disconnect()
    print(f"update {version} ordered for {args.station} (nonce {nonce}, {len(data)} bytes from {args.url}); "
          "the station's log says when it installs: journalctl -u nongan-station")
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
