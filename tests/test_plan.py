# The town's plan and roster: validators, the loop's version rule, task matching and progress, and the whole path
# with a real broker, town tools and daemon (sent, applied, cited by results, counted; forged/expired/replayed/old
# orders refused and counted).
from __future__ import annotations

import csv
import json
import time
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from station.errors import Refused
from station.events import Order
from station.lab.rig import StationRig, station_cmd, wait_for
from station.orders import Orders, producer_name, progress, required_analytes
from station.protocol import topics
from station.protocol.messages import OrderCommand, build_order, verify_command
from station.town.trust import load_or_create_town_key

TOWN = Ed25519PrivateKey.generate()
PATH = "changchun/nongan/halahai/st-0001"
NOW = 1_800_000_000
TODAY = date.today()


def day(offset: int) -> str:
    return str(TODAY + timedelta(days=offset))


def task(tid="T1", product="韭菜", analytes=("imidacloprid",), quota=3, start=-1, end=5, deadline=7):
    return {"task_id": tid, "product": product, "analytes": list(analytes), "quota": quota,
            "window": {"from": day(start), "to": day(end)}, "deadline": day(deadline)}


def plan(version=1, tasks=None, **extra):
    return {"plan_id": "P-2026-03", "version": version, "tasks": tasks or [task()], **extra}


def roster(version=1):
    return {"roster_id": "R-xinmin", "version": version, "producers": [
        {"id": "P-0001", "name": "张三家庭农场", "contact": "13800000000", "origin": "新民村"},
        {"id": "P-0002", "name": "李四合作社", "contact": "", "origin": ""}]}


def nonces():
    seen: set[str] = set()
    return lambda n, exp: not (n in seen or seen.add(n))


def order(kind="plan", body=None, *, key=TOWN, nonce="nonce-0001", expires=NOW + 600, issued_at=NOW - 5):
    return build_order(key, "town/1", PATH, kind, body or (plan() if kind == "plan" else roster()), nonce,
                       expires, issued_at)


def verify(message, now=NOW, remember=None):
    return verify_command(message, TOWN.public_key(), PATH, now=now, remember_nonce=remember or nonces())


# ---- the wire: strict shapes, signature, expiry, nonce ------------------------------------------------------

def test_valid_plan_and_roster_verify_to_their_bodies():
    c = verify(order())
    assert isinstance(c, OrderCommand) and c.cmd == "plan"
    assert c.body == {**plan(), "issued_at": NOW - 5}
    r = verify(order("roster"))
    assert r.cmd == "roster" and [p["id"] for p in r.body["producers"]] == ["P-0001", "P-0002"]


@pytest.mark.parametrize("body, why", [
    (plan(tasks=[task(), task()]), "appears twice"),
    (plan(tasks=[{**task(), "colour": "red"}]), "unknown field 'colour'"),
    (plan(tasks=[{k: v for k, v in task().items() if k != "quota"}]), "missing field 'quota'"),
    (plan(tasks=[task(quota=0)]), "quota must be an integer in 1..100000"),
    (plan(tasks=[task(analytes=())]), "analytes must be a list of 1..20"),
    (plan(tasks=[task(analytes=("a", "a"))]), "analyte twice"),
    (plan(tasks=[task(start=3, end=1)]), "ends"),
    (plan(tasks=[task(start=3, end=5, deadline=1)]), "before the window opens"),
    (plan(tasks=[{**task(), "deadline": "2026-02-30"}]), "must be a date YYYY-MM-DD"),
    (plan(tasks=[task(tid="bad id!")]), "task_id must be an id"),
    (plan(tasks=[task(product="x" * 65)]), "product must be printable text"),
    (plan(tasks=[task(tid=f"T{i}") for i in range(201)]), "1..200 tasks"),
    (plan(version=0), "version must be an integer"),
    (plan(version=True), "version must be an integer"),
    (plan(owner="me"), "unknown field 'owner'"),
])
def test_plan_shapes_refused_with_the_field_named(body, why):
    with pytest.raises(Refused) as exc:
        verify(order(body=body))
    assert why in str(exc.value) and str(exc.value).startswith("plan refused")


def test_roster_shapes_refused():
    dup = roster()
    dup["producers"].append(dict(dup["producers"][0]))
    for body, why in ((dup, "appears twice"), ({**roster(), "producers": [{"id": "x", "name": "\x07"}]}, "missing"),
                      ({**roster(), "producers": [{"id": "x", "name": "\x07", "contact": "", "origin": ""}]},
                       "name must be printable")):
        with pytest.raises(Refused) as exc:
            verify(order("roster", body))
        assert why in str(exc.value)


@pytest.mark.parametrize("message, now, why", [
    (lambda: order(key=Ed25519PrivateKey.generate()), NOW, "bad signature"),
    (lambda: order(expires=NOW - 3600, issued_at=NOW - 7200), NOW, "expired"),
    (lambda: order(expires=NOW + 3 * 86400), NOW, "exceeds"),
    (lambda: order(issued_at=NOW + 3600, expires=NOW + 7200), NOW, "issued_at"),
    (lambda: order(nonce="short"), NOW, "nonce"),
    (lambda: order(), None, "no trusted time"),
])
def test_forged_expired_untimed_orders_refused(message, now, why):
    with pytest.raises(Refused) as exc:
        verify(message(), now=now)
    assert why in str(exc.value)


def test_replayed_order_refused_and_a_refused_one_does_not_burn_its_nonce():
    remember = nonces()
    with pytest.raises(Refused):
        verify(order(body=plan(version=0)), remember=remember)   # refused before the nonce is consumed
    verify(order(), remember=remember)
    with pytest.raises(Refused, match="replay"):
        verify(order(), remember=remember)


# ---- the loop's store: versions, matching, progress, lookups ------------------------------------------------

def test_newer_version_replaces_and_keeps_the_previous_older_or_equal_refused(tmp_path):
    o = Orders(tmp_path)
    assert o.apply(Order("plan", {**plan(1), "issued_at": NOW}, b"m1"))
    assert o.apply(Order("plan", {**plan(3, [task("T9")]), "issued_at": NOW}, b"m3"))
    for v in (3, 2):
        assert not o.apply(Order("plan", {**plan(v), "issued_at": NOW}, b"old"))
    assert o.refused == 2 and "already has v3" in o.last_refusal
    again = Orders(tmp_path)   # what a restarted daemon, or `station plan`, reads
    assert [t.task_id for t in again.tasks] == ["T9"] and again.body("plan")["version"] == 3
    prev = json.loads((tmp_path / "orders" / "plan.prev.json").read_text())
    assert prev["body"]["version"] == 1 and prev["message"] == "m1"


def test_task_matching_required_analytes_and_roster(tmp_path):
    o = Orders(tmp_path)
    o.apply(Order("plan", {**plan(1, [task("T1", "韭菜"), task("T2", "芹菜", ("imidacloprid", "carbofuran")),
                                      task("T3", "黄瓜", ("clenbuterol",), start=3, end=9)]), "issued_at": NOW}))
    o.apply(Order("roster", {**roster(), "issued_at": NOW}))
    assert o.task_for(None, "imidacloprid", "芹菜") == "T2"
    assert o.task_for(None, "imidacloprid", None) is None            # two open tasks cover it: nothing guessed
    assert o.task_for(None, "carbofuran,imidacloprid,carbendazim", None) is None
    assert o.task_for(None, "carbofuran", None) == "T2"
    assert o.task_for(None, "clenbuterol", None) is None             # T3's window has not opened
    assert o.task_for("T1", "imidacloprid", None) == "T1"
    assert "not in the town's plan" in o.bad_task("T7", "imidacloprid")
    assert "this strip type tests clenbuterol" in o.bad_task("T1", "clenbuterol")
    assert "is open" in o.bad_task("T3", "clenbuterol")
    assert o.required_analytes("芹菜") == {"imidacloprid", "carbofuran"}
    assert o.required_analytes("黄瓜") == set() and o.required_analytes("黄瓜", TODAY + timedelta(4)) == {"clenbuterol"}
    assert o.producer_name("P-0001") == "张三家庭农场" and o.producer_name("P-9") is None
    assert producer_name(tmp_path, "P-0002") == "李四合作社"
    assert required_analytes(tmp_path, "韭菜") == {"imidacloprid"}


def test_progress_counts_distinct_usable_first_results():
    def rec(sample, verdict="negative", **kw):
        return {"task": "T1", "sample": {"id": sample}, "verdict": verdict, **kw}

    payloads = [rec("a"), rec("a"), rec("b", "positive"), rec("b", retest={"round": 2}), rec("c", "invalid"),
                rec("d", kind="qc"), {"sample": {"id": "e"}, "verdict": "negative"}, rec("f", "suspect")]
    (row,) = progress([_task()], payloads)
    assert (row["done"], row["quota"], row["days_left"], row["open"]) == (3, 3, 7, True)


def _task():
    from station.orders import Task

    return Task.of(task())


# ---- the whole path: town tools, broker, daemon ------------------------------------------------------------

@pytest.fixture
def live(tmp_path, local_broker):
    rig = StationRig(tmp_path, local_broker.url, photos=("negative.jpg", "positive.jpg"))
    town = rig.town().start()
    daemon = rig.daemon().start()
    yield rig, daemon
    daemon.terminate()
    town.terminate()


def send(rig, kind, path, *extra):
    return station_cmd("town", kind, "send", str(path), "--station", rig.station_path, "--broker", rig.broker_url,
                       "--key", str(rig.town_key), "--db", str(rig.town_db), *extra, check=False)


def publish(url, topic, message):
    from station.lab.attacks import Attack
    from station.lab.attacks import send as send_raw

    send_raw(url, [Attack("order", topic, message)])


def test_plan_sent_by_the_town_is_applied_cited_counted_and_bad_orders_refused(live, tmp_path):
    rig, daemon = live
    home = str(rig.home.root)
    # Trusted time first: the town's signed ack of a result (the test machine's clock is not NTP-synced).
    assert daemon.press()["results"][0].get("task") is None
    wait_for(lambda: daemon.status()["acked_seq"] >= 1, 20, "the town's ack")

    toml = tmp_path / "plan.toml"
    toml.write_text(f'plan_id = "P-2026-03"\nversion = 2\n[[tasks]]\ntask_id = "T-jiucai"\nproduct = "韭菜"\n'
                    f'analytes = ["imidacloprid"]\nquota = 4\nwindow = {{from = {day(-1)}, to = {day(5)}}}\n'
                    f'deadline = {day(7)}\n', encoding="utf-8")
    out = send(rig, "plan", toml, "--wait", "20")
    assert out.returncode == 0 and "the station reports it applied" in out.stdout, out.stdout + out.stderr

    shown = json.loads(station_cmd("plan", "--home", home, "--json").stdout)
    assert shown["plan"]["version"] == 2
    assert [(t["task"], t["done"], t["quota"], t["days_left"]) for t in shown["tasks"]] == [("T-jiucai", 0, 4, 7)]

    # Results cite the task (the only open one for the analyte), and count once per sample.
    first = daemon.press(sample="S-1", product="韭菜")["results"]
    assert [r["task"] for r in first] == ["T-jiucai"]
    assert daemon.press(sample="S-2", task="T-jiucai")["results"][0]["task"] == "T-jiucai"
    refused = daemon.press(sample="S-3", task="T-nope")
    assert not refused["ok"] and "not in the town's plan" in refused["error"]
    shown = json.loads(station_cmd("plan", "--home", home, "--json").stdout)
    assert shown["tasks"][0]["done"] == 2
    text = station_cmd("plan", "--home", home).stdout
    assert "T-jiucai" in text and "2/4" in text
    results = json.loads(station_cmd("results", "--home", home, "--json").stdout)["results"]
    wait_for(lambda: daemon.status()["acked_seq"] >= len(results), 20, "the town to hold every result")
    rows = json.loads(station_cmd("town", "plan", "show", "--db", str(rig.town_db), "--json").stdout)
    assert [(r["task"], r["done"], r["quota"]) for r in rows] == [("T-jiucai", 2, 4)]
    month = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
    station_cmd("town", "report", "--db", str(rig.town_db), "--month", month, "--out", str(tmp_path / "m.csv"))
    (row,) = csv.DictReader((tmp_path / "m.csv").open(encoding="utf-8"))
    assert (row["plan_done"], row["plan_quota"]) == ("2", "4")

    # Forged, expired, replayed and older orders are refused, each counted with its reason.
    key = load_or_create_town_key(rig.town_key)
    t_cmd = topics.station_topic(rig.station_path, "cmd")
    now = int(time.time())
    body = {"plan_id": "P-2026-03", "version": 5, "tasks": [task("T-x")]}
    bad = [(build_order(Ed25519PrivateKey.generate(), "town/1", rig.station_path, "plan", body, "forged-0001",
                        now + 600, now), "bad signature"),
           (build_order(key, "town/1", rig.station_path, "plan", body, "expired-0001", now - 300, now - 900),
            "expired"),
           (_sent_message(rig.town_db), "replay")]
    for i, (message, why) in enumerate(bad, start=1):
        publish(rig.broker_url, t_cmd, message)
        st = wait_for(lambda n=i: (s := daemon.status())["orders"]["orders_refused"] >= n and s, 15, why)
        assert why in st["orders"]["last_order_refusal"], st["orders"]
    older = tmp_path / "older.json"
    older.write_text(json.dumps({"plan_id": "P-2026-03", "version": 2, "tasks": [task("T-old")]}))
    out = send(rig, "plan", older, "--wait", "3")   # the town tool sees the station's version and holds it back
    assert out.returncode == 1 and "already has v2" in out.stderr, out.stdout + out.stderr
    publish(rig.broker_url, t_cmd, build_order(key, "town/1", rig.station_path, "plan",
                                               {**body, "version": 1}, "older-0001", now + 600, now))
    st = wait_for(lambda: (s := daemon.status())["orders"]["orders_refused"] >= 4 and s, 15, "the older plan")
    assert "already has v2" in st["orders"]["last_order_refusal"]
    assert json.loads(station_cmd("plan", "--home", home, "--json").stdout)["plan"]["version"] == 2

    # The roster: cached in the home, listed, looked up.
    ros = tmp_path / "roster.json"
    ros.write_text(json.dumps(roster(3), ensure_ascii=False), encoding="utf-8")
    out = send(rig, "roster", ros, "--wait", "20")
    assert out.returncode == 0, out.stdout + out.stderr
    listed = station_cmd("roster", "--home", home).stdout
    assert "张三家庭农场" in listed and "P-0002" in listed
    assert producer_name(rig.home.root, "P-0001") == "张三家庭农场"
    assert daemon.status()["orders"]["roster"].startswith("R-xinmin v3")


def _sent_message(db) -> bytes:
    """The plan the town sent, exactly as sent: publishing it again is a replay."""
    import sqlite3

    con = sqlite3.connect(db)
    try:
        return bytes(con.execute("SELECT message FROM sent_orders WHERE kind='plan'").fetchone()[0])
    finally:
        con.close()
