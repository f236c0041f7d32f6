# The quick-start demo: a simulated station and a town listener on a private broker, a few presses, verified results.
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

from station.errors import StationError
from station.lab.rig import spawn, station_cmd, stop_process, wait_for
from station.protocol import signing

STATION, GRID = "st-0001", "nongan/hetao/xinmin"


RETEST_PHOTO = "positive~retest.jpg"


def say(msg: str) -> None:
    print(f"demo: {msg}", flush=True)


def sample_photos(dest: Path) -> int:
    """The bundled photographs become the simulated camera's folder."""
    dest.mkdir(parents=True, exist_ok=True)
    n = 0
    for item in sorted(resources.files("station.lab").joinpath("samples").iterdir(), key=lambda p: p.name):
        if item.name.endswith(".jpg"):
            (dest / item.name).write_bytes(item.read_bytes())
            n += 1
    if not n:
        raise StationError("no bundled sample photographs in station/lab/samples (run scripts/gen-samples)")
    if (dest / "positive.jpg").is_file():
        # The positive's re-test: a second cassette of the same sample, served right after it ('~' sorts after '.').
        (dest / RETEST_PHOTO).write_bytes((dest / "positive.jpg").read_bytes())
        n += 1
    return n


def start_broker(work: Path):
    from station.errors import BrokerError
    from station.lab.broker import LocalBroker

    try:
        return LocalBroker(work / "broker").start()
    except BrokerError as exc:
        say(f"no local MQTT broker ({exc}); running OFFLINE: results stay queued in the station journal")
        return None


def town_results(db: Path) -> list[dict]:
    shown = station_cmd("town", "show", "--db", str(db), "--json", check=False)
    if shown.returncode != 0:
        return []
    rows = []
    for st in json.loads(shown.stdout).get("stations", []):
        rows += [{**r, "id": f"{st['station'].rsplit('/', 1)[1]}:{r['seq']}"} for r in st.get("results", [])]
    return rows


def verify_row(message: str, jwk: dict) -> tuple[dict | None, str]:
    """The demo checks the town's copy itself, with nothing but the station's public JWK."""
    try:
        payload = signing.verify_jws(message.encode(), signing.jwk_public_key(jwk))
        return payload, "OK"
    except StationError as exc:
        return None, f"FAILED ({exc})"


def run_demo(work: Path, presses: int | None = None) -> int:
    home, town_dir, logs = work / "station", work / "town", work / "logs"
    for d in (town_dir / "trust", logs):
        d.mkdir(parents=True, exist_ok=True)
    photos = sample_photos(work / "photos")
    presses = presses or photos
    broker = start_broker(work)
    procs: list[subprocess.Popen] = []
    twins = demo_instruments(work / "by-id")
    scanner = demo_scanner(work / "by-id")
    try:
        town_key, town_db = town_dir / "town.key", town_dir / "town.sqlite"
        town_jwk = json.loads(station_cmd("town", "pubkey", "--key", str(town_key)).stdout)
        (work / "town.jwk").write_text(json.dumps(town_jwk))
        init = ["init", "--home", str(home), "--station", STATION, "--grid", GRID, "--sim-images",
                str(work / "photos"), "--town-key", str(work / "town.jwk")]
        if broker:
            init += ["--broker", broker.url]
        for twin in twins:
            init += ["--reader", f"{twin.dialect}:{twin.link}"]
        init += ["--scanner", f"serial:{scanner.link}"]
        # The receipt printer's twin writes ESC/POS bytes to a file; its QR points at the demo town's dashboard.
        init += ["--printer", f"fake:{work / 'paper.bin'}", "--verify-url", "http://127.0.0.1:8080/r"]
        station_cmd(*init)
        say(f"station home {home} (simulated camera: {photos} bundled photographs; MockFactory GPIO)")
        station_jwk = json.loads(station_cmd("pubkey", "--home", str(home)).stdout)
        (town_dir / "trust" / f"{STATION}.jwk").write_text(json.dumps(station_jwk))
        if broker:
            procs.append(spawn("town", ["town", "listen", "--broker", broker.url, "--trust", str(town_dir / "trust"),
                                        "--db", str(town_db), "--key", str(town_key)], logs))
            say(f"town listener on {broker.url}")
        procs.append(spawn("station", ["run", "--home", str(home)], logs))
        wait_for(lambda: station_cmd("status", "--home", str(home), check=False).returncode == 0, 30,
                 "the station daemon to start")
        say("station daemon running; pressing the button")
        local, retest_of = [], None
        for i in range(presses):
            if i == 0:
                scan_codes(home, scanner)
            again = ["--retest-of", retest_of] if retest_of else []
            reply = json.loads(station_cmd("press", "--home", str(home), "--json", *again, check=False).stdout)
            shown = ", ".join(f"{r['id']} {r['verdict']}" for r in reply.get("results", []))
            say(f"press {i + 1}{f' (re-test of {retest_of})' if retest_of else ''}: {shown or reply.get('error')}")
            retest_of = None if again else next_retest(reply)
            if again:
                show_retest(reply)
            if reply.get("results") and not any(r.get("producer") for r in local):
                show_scanned(reply)  # the first press that records: an empty tray keeps the scans for the next
            for r in reply.get("results", []):
                local.append(r)
        if not local:
            raise StationError("no press produced a result")
        # A positive shows most of the slip (the re-test request); any result will do when none is positive.
        save_receipt(work, home, next((r for r in local if r["verdict"] == "positive"), local[0])["seq"])
        local += instrument_results(home, twins)
        if not broker:
            say("offline: results are journaled locally; `station results` lists them as queued")
            print(station_cmd("results", "--home", str(home)).stdout)
            return 0
        want = {r["id"] for r in local}
        rows = wait_for(lambda: (lambda got: got if want <= {g["id"] for g in got} else None)(town_results(town_db)),
                        30, "the town to store every result")
        wait_for(lambda: json.loads(station_cmd("results", "--home", str(home), "--json").stdout)["acked_seq"]
                 >= max(r["seq"] for r in local), 30, "the town's acknowledgement")
        rc = print_table(rows, station_jwk, len(want))
        show_town_outputs(town_db, town_dir)
        return rc
    finally:
        for p in procs:
            stop_process(p)
        for twin in twins:
            twin.close()
        scanner.close()
        if broker:
            broker.stop()


def show_town_outputs(town_db: Path, town_dir: Path) -> None:
    """Where the town's month report and dashboard are: what town staff would rather look at than read."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    month = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    report = town_dir / f"report-{month}.pdf"
    made = station_cmd("town", "report", "--db", str(town_db), "--month", month, "--out", str(report), check=False)
    if made.returncode == 0:
        say(f"the month's report (月报): {report}")
    else:
        say(f"the month's report could not be made: {(made.stderr or made.stdout).strip()[-300:]}")
    say(f"dashboard: station town serve --db {town_db} --trust {town_dir / 'trust'}  ->  http://127.0.0.1:8080/"
        "  (run the demo with --keep DIR to keep them)")


def save_receipt(work: Path, home: Path, seq: int) -> Path:
    """The first result's receipt as the paper would show it: the printer twin's bytes decoded to a PNG. It is
    written beside the work folder, so it outlives a demo run that cleans up after itself."""
    from station.lab.escpos_decode import decode

    prints = home / "data" / "prints.json"
    job = wait_for(lambda: prints.exists() and json.loads(prints.read_text())["jobs"].get(str(seq)), 30,
                   f"the receipt of result {seq}")
    paper = decode((work / "paper.bin").read_bytes())
    png = work.parent / f"{work.name}-receipt-{seq}.png"
    paper.images[seq - 1].save(png)  # one slip per result, printed in seq order (none failed in the demo)
    say(f"receipt of {STATION}:{seq} ({job['status']}; ESC/POS decoded back to pixels): {png}")
    return png


def demo_instruments(by_id: Path) -> list:
    """Pty twins of a gold-csv reader and an enzyme-print tester, behind by-id style links."""
    from drivers.reader.fake import Twin

    return [Twin("gold-csv", by_id / "usb-demo_GR-12_GR0001-if00", serial="GR0001"),
            Twin("enzyme-print", by_id / "usb-demo_enzyme_tester-if00")]


DEMO_SAMPLE, DEMO_PRODUCER = "S-20261201-1", "ZT0012345"


def demo_scanner(by_id: Path):
    """The pty twin of a virtual-COM barcode scanner, behind a by-id style link."""
    from drivers.scanner.fake import ScannerTwin

    return ScannerTwin(by_id / "usb-demo_HR32_Scanner-if00")


def scan_codes(home: Path, scanner) -> None:
    """The operator scans the producer's information card and the sample sheet before laying the cassette."""
    wait_for(lambda: (_status(home).get("scanner") or {}).get("connected"), 15, "the scanner to connect")
    for code in (DEMO_PRODUCER, DEMO_SAMPLE):
        before = _status(home)["scanner"]["codes"]
        scanner.scan(code)
        wait_for(lambda before=before: _status(home)["scanner"]["codes"] > before, 10, f"the scan of {code}")
    say(f"scanned a producer card ({DEMO_PRODUCER}) and a sample sheet ({DEMO_SAMPLE}) on the serial scanner")


def next_retest(reply: dict) -> str | None:
    """A lone positive asks for its re-test; the demo lays the second cassette of that sample next."""
    results = reply.get("results", [])
    if len(results) == 1 and results[0].get("retest_required"):
        say(f"{results[0]['id']} is positive: the station asks for a re-test of sample {results[0]['sample']}")
        return results[0]["id"]
    return None


def show_retest(reply: dict) -> None:
    retest = next((r.get("retest") for r in reply.get("results", []) if r.get("retest")), None)
    if not retest:
        raise StationError(f"the re-test was not linked to its first test: {reply}")
    say(f"re-test round {retest['round']} of {retest['of']}: {retest['status']}"
        + (" (send the sample to the lab)" if retest["status"] == "confirmed_positive" else ""))


def show_scanned(reply: dict) -> None:
    """Every cassette of that press carries the scanned codes (a tray adds /slot to the sample id)."""
    results = reply["results"]
    got = {(r.get("sample") or "").split("/")[0] for r in results}, {r.get("producer") for r in results}
    if got != ({DEMO_SAMPLE}, {DEMO_PRODUCER}):
        raise StationError(f"the scanned codes did not reach the results: samples, producers = {got}")
    say(f"results {', '.join(r['id'] for r in results)} carry the scanned sample "
        f"({', '.join(r['sample'] for r in results)}) and producer {DEMO_PRODUCER}")


def instrument_results(home: Path, twins: list) -> list[dict]:
    """Each instrument makes one test; its result is journaled and published like the camera's."""
    gold, enzyme = twins
    wait_for(lambda: all(i["connected"] for i in _status(home)["instruments"]), 15, "the instruments to connect")
    gold.make(ch=2, item="IMI", sample="S-20261201-07", t=48213, c=60114, res="N")
    enzyme.make(name="青菜", sample="S-20261201-08", pct=62.5, res="阳性")
    done = wait_for(lambda: (lambda st: st if all(i["records"] for i in st) else None)(_status(home)["instruments"]),
                    15, "the instruments' records to be journaled")
    out = []
    for i in done:
        out.append({"id": f"{STATION}:{i['last_record']['seq']}", "seq": i["last_record"]["seq"]})
        say(f"instrument {i['name']} ({i['dialect']}, {i['identity']['serial'] if i['identity'] else 'one-way'}): "
            f"record {i['last_record']['record']} journaled as {out[-1]['id']}")
    return out


def _status(home: Path) -> dict:
    return json.loads(station_cmd("status", "--home", str(home), "--json").stdout)


def print_table(rows: list[dict], jwk: dict, expected: int) -> int:
    print()
    print("Results as the TOWN received and verified them:")
    print(f"{'seq':>4}  {'id':<12} {'sample':<14} {'slot':>4}  {'verdict':<9} {'T/C':>6}  {'source':<14} signature")
    bad = 0
    for row in sorted(rows, key=lambda r: r["seq"]):
        payload, sig = verify_row(row["message"], jwk)
        bad += payload is None
        p = payload or {}
        tc = (p.get("reading") or {}).get("tc_ratio")
        print(f"{row['seq']:>4}  {row['id']:<12} {(p.get('sample') or {}).get('id', '?'):<14} "
              f"{(p.get('strip') or {}).get('slot', '?'):>4}  {p.get('verdict', '?'):<9} "
              f"{'-' if tc is None else f'{tc:.3f}':>6}  {(p.get('instrument') or {}).get('name', 'camera'):<14} {sig}")
    print(f"\n{len(rows)} results at the town, {expected} expected, {bad} failed verification; "
          "every one acknowledged back to the station.")
    return 0 if bad == 0 and len(rows) >= expected else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="demo", description=__doc__)
    p.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temporary folder)")
    p.add_argument("--presses", type=int, help="button presses (default: one per bundled photograph)")
    args = p.parse_args(argv)
    work = Path(args.keep).absolute() if args.keep else Path(tempfile.mkdtemp(prefix="nongan-demo-"))
    started = time.monotonic()
    rc = 1
    try:
        rc = run_demo(work, args.presses)
    except StationError as exc:
        print(f"demo: error: {exc} (logs in {work / 'logs'})", file=sys.stderr)
    if rc == 0 and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    say(f"done in {time.monotonic() - started:.1f} s")
    return rc


if __name__ == "__main__":
    sys.exit(main())
