# Serial instruments end to end: pty twins, the real daemon, a real broker and town; faults on the wire.
from __future__ import annotations

import base64
import json
import sqlite3
import threading

import pytest
from stationkit import eventually

from drivers.reader.dialects.gold_csv import sentence as gold_sentence
from drivers.reader.fake import Twin
from station.lab.rig import StationRig, check_journal, station_cmd, town_show

READERS = (("gold-1", "gold-csv"), ("enzyme-1", "enzyme-print"), ("frame-1", "frame-crc8"))


def _attach(rig: StationRig, tmp_path) -> dict[str, Twin]:
    twins, tables = {}, []
    for name, dialect in READERS:
        link = tmp_path / "by-id" / f"usb-twin-{name}-if00"
        twins[name] = Twin(dialect, link)
        tables.append(f'\n[[readers]]\nname = "{name}"\ndialect = "{dialect}"\nport = "{link}"\n'
                      f'items = {{ IMI = "imidacloprid", CBZ = "carbendazim" }}\n')
    with rig.home.config.open("a", encoding="utf-8") as f:
        f.writelines(tables)
    return twins


def _payloads(journal) -> list[dict]:
    with sqlite3.connect(journal) as db:
        rows = db.execute("SELECT message FROM results ORDER BY seq").fetchall()
    out = []
    for (msg,) in rows:
        body = json.loads(msg)["payload"]
        out.append(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))
    return out


def _by(payloads, name) -> list[int]:
    return [p["instrument"]["record"] for p in payloads if p.get("instrument", {}).get("name") == name]


def _inst(daemon, name) -> dict:
    return next(i for i in daemon.status()["instruments"] if i["name"] == name)


@pytest.fixture
def station(tmp_path, local_broker):
    rig = StationRig(tmp_path, broker_url=local_broker.url, photos=("negative.jpg",))
    twins = _attach(rig, tmp_path)
    town = rig.town().start()
    daemon = rig.daemon().start()
    yield rig, twins, daemon, town
    daemon.terminate()
    town.terminate()
    for t in twins.values():
        t.close()


def test_every_record_reaches_the_town_once_through_faults(station, tmp_path):
    rig, twins, daemon, town = station
    gold, enzyme, frame = twins["gold-1"], twins["enzyme-1"], twins["frame-1"]
    eventually(lambda: all(i["connected"] for i in daemon.status()["instruments"]), 10, "instruments connected")
    eventually(lambda: _inst(daemon, "frame-1")["identity"] is not None, 10, "frame-crc8 identity")
    # Power-up noise, NUL bursts, a bad checksum, a sentence cut short by a new one, then good records.
    gold.noise(300, nul=True)
    gold.noise(500)
    gold.send(b"\r\n")
    gold.send(Twin.corrupted(gold.device.make(sample="S-BAD")))  # record 1: only its corrupt copy is sent
    cut = gold.device.make(sample="S-CUT")  # record 2: cut short, then a new sentence
    gold.send_cut(cut, 20)
    gold.make(sample="S-3", res="P")  # record 3
    enzyme.noise(200, nul=True)
    enzyme.make(name="青菜", pct=62.5, res="阳性", sample="S-E1")
    enzyme.make(name="豇豆", pct=-3.2, res="阴性", colon="：", order=["结果", "抑制率", "检测时间", "编号", "样品"],
                more=[("操作员", "李")], when="2026-12-01 10:40:00")
    enzyme.send(enzyme.device.print_again())  # "print again": stored once
    enzyme.make(res="可疑", pct=48.0, when="2026-12-01 10:50:00")
    enzyme.send_cut(enzyme.device.make(when="2026-12-01 11:00:00"), 60)  # power cut mid-report
    enzyme.send(b"\x00" * 40 + "   农药残留快速检测仪 V3.1\r\n".encode("gb18030"))  # powered up again
    enzyme.make(name="韭菜", when="2026-12-01 11:05:00")  # its separator closes the cut report
    # Frames with 0x7E/0xAA inside DATA (T signal bytes), polled.
    frame.make(t=0x7EAA7E, c=0xAA7EAA, sample="F-1")
    frame.make(res=1)
    journal = rig.home.journal
    eventually(lambda: len(_by(_payloads(journal), "frame-1")) == 2, 15, "frame-crc8 records polled")
    eventually(lambda: len(_by(_payloads(journal), "enzyme-1")) == 4, 10, "enzyme-print reports")
    # 1 (bad checksum) and 2 (cut) were lost on the wire; 3 skipped them, so the station asked for a replay.
    eventually(lambda: sorted(_by(_payloads(journal), "gold-1")) == [1, 2, 3], 10, "gold-csv gap replay")
    p = {(x["instrument"]["name"], x["instrument"]["record"]): x for x in _payloads(journal) if "instrument" in x}
    g3 = p[("gold-1", 3)]
    assert g3["source"] == "serial" and g3["verdict"] == "positive" and g3["strip"]["analyte"] == "imidacloprid"
    assert g3["sample"]["id"] == "S-3" and g3["instrument"]["serial"] == "GR0001"
    assert base64.b64decode(g3["instrument"]["raw_b64"]).startswith(b"$GR,3,1,IMI,S-3,")
    e1, e2, e3 = p[("enzyme-1", 1)], p[("enzyme-1", 2)], p[("enzyme-1", 3)]
    assert (e1["verdict"], e1["reading"]["inhibition_pct"], e1["sample"]["name"]) == ("positive", 62.5, "青菜")
    assert (e2["verdict"], e2["reading"]["inhibition_pct"], e2["sample"]["name"]) == ("negative", -3.2, "豇豆")
    assert e3["verdict"] == "suspect" and e1["instrument"]["serial"] is None
    assert "农药残留检测报告".encode("gb18030") in base64.b64decode(e1["instrument"]["raw_b64"])
    f1 = p[("frame-1", 1)]
    assert (f1["reading"]["t_signal"], f1["reading"]["c_signal"], f1["sample"]["id"]) == (0x7EAA7E, 0xAA7EAA, "F-1")
    assert p[("frame-1", 2)]["verdict"] == "positive" and f1["strip"]["analyte"] == "carbendazim"
    assert base64.b64decode(f1["instrument"]["raw_b64"])[:2] == b"\x7e\x83"
    # Counted and kept as evidence, never results: the corrupt sentences, the cut report, the duplicate.
    st = {i["name"]: i for i in daemon.status()["instruments"]}
    assert st["gold-1"]["corrupt"] >= 2 and st["gold-1"]["garbage_bytes"] >= 300
    assert st["enzyme-1"]["duplicates"] == 1 and st["enzyme-1"]["incomplete"] == 1
    assert st["gold-1"]["identity"]["serial"] == "GR0001" and st["frame-1"]["records"] == 2
    with sqlite3.connect(journal) as db:
        faults = db.execute("SELECT instrument, kind, raw FROM reader_faults").fetchall()
    cut_report = [raw for name, kind, raw in faults if name == "enzyme-1" and kind == "incomplete"]
    assert len(cut_report) == 1 and "编号".encode("gb18030") in cut_report[0]
    # Everything reaches the town, signed and acknowledged, like camera results.
    eventually(lambda: daemon.status()["acked_seq"] == daemon.status()["last_seq"] == 9, 20, "town acks")
    entry, refusals = town_show(rig.town_db, rig.trust, rig.station_path)
    assert entry["contiguous"] == 9 and refusals == [], (entry, refusals)
    with sqlite3.connect(rig.town_db) as db:
        town = sorted(r[0] for r in db.execute("SELECT verdict FROM results WHERE kind = 'result'"))
    assert town == sorted(x["verdict"] for x in p.values())
    assert check_journal(journal).problems == []
    shown = station_cmd("status", "--home", str(rig.home.root)).stdout
    assert "instrument: enzyme-1 [enzyme-print]" in shown and "1 duplicates ignored" in shown, shown


def _records(journal) -> list[tuple[str, int]]:
    return [(x["instrument"]["name"], x["instrument"]["record"]) for x in _payloads(journal) if "instrument" in x]


def test_unplug_replug_and_sigkill_lose_nothing_the_instrument_keeps(station):
    rig, twins, daemon, town = station
    gold, frame = twins["gold-1"], twins["frame-1"]
    journal = rig.home.journal
    eventually(lambda: _inst(daemon, "frame-1")["identity"] is not None, 10, "frame-crc8 identity")
    gold.make(sample="A-1")
    frame.make(sample="F-1")
    eventually(lambda: {("gold-1", 1), ("frame-1", 1)} <= set(_records(journal)), 10, "first records")
    # Unplug: the by-id link vanishes. Tests made meanwhile stay in the instruments' memory.
    gold.unplug()
    frame.unplug()
    eventually(lambda: not _inst(daemon, "gold-1")["connected"] and not _inst(daemon, "frame-1")["connected"],
               10, "unplug noticed")
    gold.make(sample="A-2")
    gold.make(sample="A-3")
    frame.make(sample="F-2")
    old_tty = gold.tty
    gold.plug()  # a new pty behind the same link, as a replugged USB adapter gets a new ttyUSBN
    frame.plug()
    assert gold.tty != old_tty
    eventually(lambda: _inst(daemon, "gold-1")["connected"] and _inst(daemon, "frame-1")["connected"], 10,
               "replug noticed")
    eventually(lambda: {("gold-1", 2), ("gold-1", 3), ("frame-1", 2)} <= set(_records(journal)), 10,
               "replay after replug (identity asked again)")
    # SIGKILL with tests made while the daemon is dead: fetched from where the journal says it stopped.
    daemon.kill()
    gold.make(sample="A-4")
    frame.make(sample="F-3")
    frame.make(sample="F-4")
    daemon.start()
    want = {("gold-1", n) for n in (1, 2, 3, 4)} | {("frame-1", n) for n in (1, 2, 3, 4)}
    eventually(lambda: want <= set(_records(journal)), 15, "records made while the daemon was dead")
    gold.send(gold.device.answer(gold_sentence("GQ,LAST")))  # a repeated record: a duplicate, ignored
    eventually(lambda: _inst(daemon, "gold-1")["duplicates"] >= 1, 10, "duplicate counted")
    recs = _records(journal)
    assert sorted(recs) == sorted(set(recs)), "an instrument record was stored twice"
    assert _inst(daemon, "gold-1")["last_record"]["record"] == 4
    eventually(lambda: daemon.status()["acked_seq"] == daemon.status()["last_seq"] == len(recs), 20, "town acks")
    assert check_journal(journal).problems == []


def test_silent_reader_and_garbage_burst_never_block_the_camera(station):
    rig, twins, daemon, town = station
    frame, gold = twins["frame-1"], twins["gold-1"]
    frame.silent = True  # a reader that never answers
    frame.unplug()
    frame.plug()
    eventually(lambda: _inst(daemon, "frame-1")["connected"], 10, "silent reader's port opened")
    assert daemon.press(sample="CAM-0")["ok"]  # OpenCV loaded and warm before memory is measured
    pid = daemon.proc.pid
    rss0 = _rss_kb(pid)
    burst = threading.Thread(target=lambda: [gold.noise(1 << 20) for _ in range(10)])  # 10 MiB of garbage
    burst.start()
    reply = daemon.press(sample="CAM-1")  # the camera path works while a reader is silent and one is noisy
    burst.join()
    assert reply["ok"] and reply["results"][0]["sample"] == "CAM-1", reply
    gold.make(sample="AFTER")
    eventually(lambda: ("gold-1", 1) in _records(rig.home.journal), 15, "a record after the burst")
    st = _inst(daemon, "gold-1")
    assert st["garbage_bytes"] + st["corrupt"] > 0 and daemon.proc.poll() is None
    # Memory: a second 10 MiB burst, with no camera work beside it, must not grow the daemon.
    rss1 = _rss_kb(pid)
    for _ in range(10):
        gold.noise(1 << 20)
    gold.make(sample="AFTER-2")
    eventually(lambda: ("gold-1", 2) in _records(rig.home.journal), 15, "a record after the second burst")
    assert _rss_kb(pid) - rss1 < 4_000, f"garbage held in memory: {rss0} {rss1} {_rss_kb(pid)} kB"
    assert _inst(daemon, "frame-1")["identity"] is None and _inst(daemon, "frame-1")["records"] == 0
    eventually(lambda: daemon.status()["acked_seq"] == daemon.status()["last_seq"] == 4, 20, "town acks")


def _rss_kb(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# ---- the pieces around the daemon: init, probe, config, journal upgrade ------------------------------------

def test_init_writes_reader_tables_and_a_camera_free_station(tmp_path):
    from station.config import load_config
    from station.lab.rig import station_cmd

    home = tmp_path / "home"
    station_cmd("init", "--home", str(home), "--station", "st-7", "--grid", "a/b/c", "--no-camera",
                "--reader", "gold-csv:/dev/serial/by-id/usb-GR-if00", "--reader", "frame-crc8:socket://x:1@57600")
    cfg = load_config(home)
    assert cfg.camera.driver == "none"
    assert [(r.name, r.dialect, r.port, r.baud) for r in cfg.readers] == [
        ("gold-csv-1", "gold-csv", "/dev/serial/by-id/usb-GR-if00", 9600),
        ("frame-crc8-1", "frame-crc8", "socket://x:1", 57600)]
    assert cfg.readers[0].items["IMI"] == "imidacloprid"
    bad = station_cmd("init", "--home", str(tmp_path / "h2"), "--station", "st-7", "--grid", "a/b/c",
                      "--reader", "nmea:/dev/ttyUSB0", check=False)
    assert bad.returncode == 2 and "'nmea' unknown; known: gold-csv, enzyme-print, frame-crc8" in bad.stderr
    assert not (tmp_path / "h2" / "station.toml").exists()


def test_readers_probe_names_the_dialect_that_answers(tmp_path):
    from station.lab.rig import station_cmd

    twins = [Twin(d, tmp_path / "by-id" / f"usb-{d}") for d in ("gold-csv", "enzyme-print", "frame-crc8")]
    try:
        out = json.loads(station_cmd("readers", "--by-id", str(tmp_path / "by-id"), "--probe", "--json").stdout)
    finally:
        for t in twins:
            t.close()
    got = {r["port"].rsplit("usb-", 1)[1]: (r["dialect"], r["serial"]) for r in out["ports"]}
    assert got == {"gold-csv": ("gold-csv", "GR0001"), "frame-crc8": ("frame-crc8", "FR0001"),
                   "enzyme-print": (None, None)}


def test_a_version_1_journal_is_upgraded_in_place_and_takes_suspect(tmp_path):
    from station.journal import Journal, schema

    path = tmp_path / "j.sqlite"
    v1 = schema.SCHEMA.replace(schema._CHECK_V2, schema._CHECK_V1).split("-- Serial instruments")[0]
    with sqlite3.connect(path, isolation_level=None) as db:
        db.executescript(f"BEGIN; {v1} PRAGMA application_id={schema.APPLICATION_ID}; PRAGMA user_version=1; COMMIT;")
        db.execute("INSERT INTO results (seq, id, message, msg_hash, prev, verdict, created_monotonic)"
                   " VALUES (1, 'x:1', x'00', 'h', 'p', 'negative', 0)")
        with pytest.raises(sqlite3.IntegrityError):
            db.execute("INSERT INTO results (seq, id, message, msg_hash, prev, verdict, created_monotonic)"
                       " VALUES (2, 'x:2', x'00', 'h', 'p', 'suspect', 0)")
    j = Journal(path, check=False)
    try:
        db = j._db
        assert db.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        db.execute("INSERT INTO results (seq, id, message, msg_hash, prev, verdict, created_monotonic)"
                   " VALUES (2, 'x:2', x'00', 'h', 'p', 'suspect', 0)")
        assert db.execute("SELECT COUNT(*) FROM instrument_records").fetchone()[0] == 0
        assert db.execute("SELECT verdict FROM results WHERE seq = 1").fetchone()[0] == "negative"
    finally:
        j.close()


def test_duplicate_key_survives_wraparound_and_is_per_instrument(tmp_path):
    from station.errors import DuplicateRecord
    from station.journal.instruments import WRAP_WINDOW, claim, instrument_key

    db = sqlite3.connect(tmp_path / "d.sqlite")
    from station.journal.schema import SCHEMA
    db.executescript(SCHEMA)
    k = instrument_key("gold-1", "SN1")
    claim(k, 5, "")(db, 1)
    with pytest.raises(DuplicateRecord):
        claim(k, 5, "")(db, 2)
    claim(instrument_key("gold-1", "SN2"), 5, "")(db, 3)  # another unit on the same port: not a duplicate
    claim(k, 5, "2026-12-01 10:00:00")(db, 4)  # enzyme-print: same 编号, another 检测时间 (memory cleared)
    for i in range(WRAP_WINDOW):
        claim(k, 10 + i, "")(db, 10 + i)
    claim(k, 5, "")(db, 99999)  # the number came round again, long after: a new test


def test_batch_commit_leaves_out_duplicates_and_bad_items_alone(tmp_path, station_kit):
    from station.errors import DuplicateRecord, RecordError
    from station.journal import Journal, verify_chain
    from station.journal.batch import Item, append_batch
    from station.journal.instruments import claim

    def bad(seq, prev):
        raise RecordError("$.verdict", "synthetic")

    j = Journal(tmp_path / "j.sqlite")
    try:
        make = station_kit.maker
        got = append_batch(j, [Item(make(), "negative", "S-1", claim("g|1", 1, "")),
                               Item(make(), "negative", "S-1", claim("g|1", 1, "")),  # the same record again
                               Item(bad, "negative", "S-1"),
                               Item(make("positive"), "positive", "S-1", claim("g|1", 2, ""))])
        assert [type(g).__name__ for g in got] == ["Entry", "DuplicateRecord", "RecordError", "Entry"]
        assert [g.seq for g in got if not isinstance(g, Exception)] == [1, 2]
        assert isinstance(got[1], DuplicateRecord)
        assert verify_chain(j) == []
        assert [e.seq for e in j.iter_entries()] == [1, 2] and j.stats().positives_unacked == 1
    finally:
        j.close()


def test_port_errors_name_the_device_and_a_port_is_held_exclusively(tmp_path):
    from drivers.errors import DeviceBusy, DeviceNotFound
    from drivers.reader.port import open_port

    with pytest.raises(DeviceNotFound, match=f"^{tmp_path}/nope: no such serial port"):
        open_port(str(tmp_path / "nope"), 9600)
    twin = Twin("gold-csv", tmp_path / "by-id" / "usb-x")
    try:
        first = open_port(str(twin.link), 9600)
        with pytest.raises(DeviceBusy, match="in use by another process"):
            open_port(str(twin.link), 9600)
        first.close()
    finally:
        twin.close()


@pytest.mark.parametrize(("table", "words"), [
    ('name = "g"\ndialect = "gold-csv"\nport = "/dev/x"\nparity = "N"', "readers[0].parity: unknown key; allowed:"),
    ('name = "g"\ndialect = "gold-csv"\nport = "/dev/x"\nbaud = 9601', "readers[0].baud: 9601 not allowed; one of"),
    ('name = "g"\ndialect = "gold-csv"', "readers[0].port: is required"),
    ('name = "g"\ndialect = "frame"\nport = "/dev/x"', "'frame' unknown; known: gold-csv, enzyme-print, frame-crc8"),
    ('name = "g"\ndialect = "gold-csv"\nport = "/dev/x"\nitems = { IMI = 3 }', 'item code = "analyte name"'),
])
def test_reader_tables_are_strict(tmp_path, table, words):
    from station.config import parse_config
    from station.errors import ConfigError
    from station.home import render_config

    text = render_config(station="st-1", grid="a/b/c", camera="none", folder="x", pin_factory="mock", wait=False)
    with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        parse_config(text + "\n[[readers]]\n" + table + "\n", path="s.toml", home=tmp_path)


def test_twin_replays_a_capture_through_a_real_pty_into_the_reader_thread(tmp_path):
    """A capture (here synthetic: power-up noise, a header, reports split at odd places) replayed in 7-byte
    pieces through the pty; the real SerialReader thread must hear exactly the reports in it."""
    import queue

    from drivers.reader import dialects
    from drivers.reader.dialects import enzyme_print
    from drivers.reader.reader import SerialReader

    dev = enzyme_print.Device(first=40)
    capture = tmp_path / "enzyme-powerup.bin"
    capture.write_bytes(b"\x00" * 64 + b"\xfe\xff\r\n" + dev.hello() + dev.make(res="阳性", pct=71.0) +
                        b"\r\n" + dev.make(colon="：", when="2026-12-01 12:00:00") + dev.print_again())
    twin = Twin("enzyme-print", tmp_path / "by-id" / "usb-enzyme", power_on=False)
    heard: queue.Queue = queue.Queue()
    reader = SerialReader("e", dialects.get("enzyme-print"), str(twin.link), 9600, heard.put, lambda serial: None)
    reader.start()
    try:
        assert heard.get(timeout=5).connected
        twin.replay(capture, chunk=7)
        got = []
        while len(got) < 3:
            item = heard.get(timeout=5)
            if type(item).__name__ == "Reading":
                got.append((item.record, item.verdict, item.stamp))
    finally:
        reader.close()
        twin.close()
    assert got == [(40, "positive", "2026-12-01 10:31:05"), (41, "negative", "2026-12-01 12:00:00"),
                   (41, "negative", "2026-12-01 12:00:00")]  # the reprint is heard; the journal stores it once


def test_an_error_in_the_second_reader_table_names_its_own_line(tmp_path):
    from station.config import parse_config
    from station.errors import ConfigError
    from station.home import render_config

    text = render_config(station="st-1", grid="a/b/c", camera="none", folder="x", pin_factory="mock", wait=False)
    text += '\n[[readers]]\nname = "a"\ndialect = "gold-csv"\nport = "/x"\n\n[[readers]]\nname = "b"\n' \
            'port = "/y"\ndialect = "goldy"\n'
    with pytest.raises(ConfigError) as err:
        parse_config(text, path="s.toml", home=tmp_path)
    assert err.value.line == len(text.splitlines()) and err.value.key == "readers[1].dialect"
