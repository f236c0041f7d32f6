# End to end on simulated hardware: press → photograph → score → journal → signed MQTT result → town verifies and acks.
from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from station.lab.demo import run_demo, town_results
from station.lab.rig import spawn, station_cmd, wait_for
from station.protocol import result as records
from station.protocol import signing

PHOTOS = ("negative.jpg", "positive.jpg", "invalid-no-control.jpg", "four-cassettes.jpg")


@pytest.fixture
def rig(tmp_path, local_broker):
    """A station home on the bundled photographs, a town listener and the daemon, all as real processes."""
    photos = tmp_path / "photos"
    photos.mkdir()
    samples = resources.files("station.lab").joinpath("samples")
    for i, name in enumerate(PHOTOS):
        (photos / f"{i}-{name}").write_bytes(samples.joinpath(name).read_bytes())
    town = tmp_path / "town"
    (town / "trust").mkdir(parents=True)
    town_jwk = json.loads(station_cmd("town", "pubkey", "--key", str(town / "town.key")).stdout)
    (tmp_path / "town.jwk").write_text(json.dumps(town_jwk))
    home = tmp_path / "home"
    station_cmd("init", "--home", str(home), "--station", "st-0007", "--grid", "changchun/nongan/halahai",
                "--broker", local_broker.url, "--sim-images", str(photos), "--town-key", str(tmp_path / "town.jwk"))
    jwk = json.loads(station_cmd("pubkey", "--home", str(home)).stdout)
    (town / "trust" / "st-0007.jwk").write_text(json.dumps(jwk))
    logs = tmp_path / "logs"
    logs.mkdir()
    town_proc = spawn("town", ["town", "listen", "--broker", local_broker.url, "--trust", str(town / "trust"),
                               "--db", str(town / "town.sqlite"), "--key", str(town / "town.key")], logs)
    daemon = spawn("station", ["run", "--home", str(home)], logs)
    wait_for(lambda: station_cmd("status", "--home", str(home), check=False).returncode == 0, 20, "daemon")
    yield {"home": home, "jwk": jwk, "db": town / "town.sqlite", "daemon": daemon, "logs": logs}
    for p in (daemon, town_proc):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=10)


def press(home: Path) -> dict:
    done = station_cmd("press", "--home", str(home), "--json", check=False)
    return json.loads(done.stdout)


def test_press_to_town_verified(rig):
    home = rig["home"]
    shown = []
    expected_verdicts = [["negative"], ["positive"], ["invalid"], None]
    for want in expected_verdicts:
        reply = press(home)
        assert reply["ok"], reply
        verdicts = [r["verdict"] for r in reply["results"]]
        if want:
            assert verdicts == want
        else:
            assert len(verdicts) == 4
        shown += reply["results"]
        status = json.loads(station_cmd("status", "--home", str(home), "--json").stdout)
        assert status["town_key"] is True  # acks can be verified
        # The panel shows the most consequential verdict of the press.
        lights = status["lights"]
        worst = "positive" if "positive" in verdicts else "invalid" if "invalid" in verdicts else "negative"
        if worst == "positive":
            # A first positive asks for its re-test: red steady, amber blinking (so either reading of amber).
            assert status["panel"] == "retest" and lights["red"] and not lights["green"], status
            continue
        assert lights == {"negative": {"green": True, "amber": False, "red": False},
                          "invalid": {"green": False, "amber": True, "red": True}}[worst]
    assert [r["seq"] for r in shown] == list(range(1, len(shown) + 1))

    want_ids = {r["id"] for r in shown}
    rows = wait_for(lambda: (lambda got: got if want_ids <= {g["id"] for g in got} else None)(town_results(rig["db"])),
                    20, "town to store all results")
    rows.sort(key=lambda r: r["seq"])
    schema = records.load_schema()
    key = signing.jwk_public_key(rig["jwk"])
    prev = records.GENESIS_PREV
    images = rig["home"] / "data" / "images"
    for row, seen in zip(rows, shown, strict=True):
        message = row["message"].encode()
        payload = signing.verify_jws(message, key, typ=records.RESULT_TYP)
        jsonschema.validate(payload, schema)
        assert payload["seq"] == seen["seq"] and payload["id"] == seen["id"]
        assert payload["verdict"] == seen["verdict"]
        assert payload["station"] == "changchun/nongan/halahai/st-0007"
        assert payload["prev"] == prev, f"seq {payload['seq']} does not chain"
        prev = hashlib.sha256(message).hexdigest()
        photo = images / f"{payload['image_sha256']}.jpg"
        assert hashlib.sha256(photo.read_bytes()).hexdigest() == payload["image_sha256"]
        assert signing.jws_header(message)["kid"] == "st-0007/1"

    def all_acked():
        res = json.loads(station_cmd("results", "--home", str(home), "--json").stdout)
        return res["acked_seq"] == len(shown) and all(r["delivery"] == "acked by town" for r in res["results"])

    wait_for(all_acked, 20, "the town's acknowledgement of every result")

    rig["daemon"].send_signal(signal.SIGTERM)
    assert rig["daemon"].wait(timeout=15) == 0


def test_press_without_daemon_is_one_clear_line(tmp_path):
    done = station_cmd("press", "--home", str(tmp_path), check=False)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "no station daemon is listening on" in done.stderr and "Traceback" not in done.stderr


def test_demo_prints_town_verified_results(tmp_path, capsys):
    assert shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()
    assert run_demo(tmp_path / "demo", presses=3) == 0
    out = capsys.readouterr().out
    assert "Results as the TOWN received and verified them" in out
    assert " OK" in out and "FAILED" not in out
    assert "0 failed verification" in out


def test_station_module_runs_as_command():
    done = subprocess.run([sys.executable, "-m", "station", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("station ")
