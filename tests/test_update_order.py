# Town-ordered updates: the signed command, a real HTTP download with checks and resume, the loop's order state,
# and the whole way from `station town update send` through a real broker and daemon to an install in a tmp root.
from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from notifyservice import NotifyService
from stationkit import eventually

from station.errors import Refused, UpdateError
from station.host import releases as rel
from station.host import update
from station.host.fetch import fetch
from station.host.update_order import UpdateOrders, loop_busy
from station.journal import Journal
from station.protocol import signing
from station.protocol.messages import build_update, verify_update

REPO = Path(__file__).resolve().parent.parent
PATH = "d/t/v/st-0001"
NOW = 1_800_000_000
DIGEST = "ab" * 32


class Files(http.server.BaseHTTPRequestHandler):
    """Serves server.files {name: bytes} with Range support; server.cut_once makes the first reply stop halfway."""

    def do_GET(self):  # noqa: N802 - http.server's name
        srv = self.server
        srv.hits.append((self.path, self.headers.get("Range")))
        data = srv.files.get(self.path.lstrip("/"))
        if data is None:
            self.send_error(404)
            return
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if srv.cut_once and not start:
            srv.cut_once = False
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)  # the line drops mid-download
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Files)
    srv.files, srv.hits, srv.cut_once = {}, [], False
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    srv.base = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()


# ---------------------------------------------------------------- the signed command

def _verify(msg: bytes, key, now=NOW, seen=None):
    seen = set() if seen is None else seen

    def remember(nonce, expires):
        fresh = nonce not in seen
        seen.add(nonce)
        return fresh

    return verify_update(msg, key, PATH, now=now, remember_nonce=remember)


def test_update_command_verified_forged_expired_replayed_refused():
    town = Ed25519PrivateKey.generate()
    good = build_update(town, "town/1", PATH, "0.2.0", "https://town.example/r.tar.gz", DIGEST, 1000, "n-12345678",
                        NOW + 600)
    seen: set = set()
    cmd = _verify(good, town.public_key(), seen=seen)
    assert (cmd.version, cmd.url, cmd.sha256, cmd.size) == ("0.2.0", "https://town.example/r.tar.gz", DIGEST, 1000)
    with pytest.raises(Refused, match="already used"):
        _verify(good, town.public_key(), seen=seen)
    forged = build_update(Ed25519PrivateKey.generate(), "town/1", PATH, "0.2.0", "https://x/r", DIGEST, 1, "n-2222222",
                          NOW + 600)
    with pytest.raises(Refused, match="bad signature"):
        _verify(forged, town.public_key())
    expired = build_update(town, "town/1", PATH, "0.2.0", "https://x/r", DIGEST, 1, "n-3333333", NOW - 600)
    with pytest.raises(Refused, match="expired 600 s ago"):
        _verify(expired, town.public_key())
    with pytest.raises(Refused, match="no trusted time"):
        _verify(build_update(town, "town/1", PATH, "0.2.0", "https://x/r", DIGEST, 1, "n-4444444", NOW + 60),
                town.public_key(), now=None)
    for url in ("ftp://x/r", "https://user:pw@x/r", "file:///etc/passwd"):
        with pytest.raises(Refused, match="url must be"):
            _verify(build_update(town, "town/1", PATH, "0.2.0", url, DIGEST, 1, "n-5555555", NOW + 60),
                    town.public_key())
    other = build_update(town, "town/1", "d/t/v/st-0002", "0.2.0", "https://x/r", DIGEST, 1, "n-6666666", NOW + 60)
    with pytest.raises(Refused, match="addressed to station"):
        _verify(other, town.public_key())


# ---------------------------------------------------------------- the download

def test_fetch_checks_sha256_size_and_resumes(server, tmp_path):
    import hashlib

    data = bytes(range(256)) * 4000
    server.files["r.tar.gz"] = data
    digest = hashlib.sha256(data).hexdigest()
    server.cut_once = True
    with pytest.raises(UpdateError, match="will resume"):
        fetch(f"{server.base}/r.tar.gz", tmp_path / "r.tar.gz", sha256=digest, size=len(data), max_bytes=10**7,
              timeout_s=5)
    assert 0 < (tmp_path / "r.tar.gz.part").stat().st_size < len(data)
    fetch(f"{server.base}/r.tar.gz", tmp_path / "r.tar.gz", sha256=digest, size=len(data), max_bytes=10**7)
    assert (tmp_path / "r.tar.gz").read_bytes() == data
    assert server.hits[-1][1] and server.hits[-1][1].startswith("bytes=")  # the second request resumed

    with pytest.raises(UpdateError, match="SHA-256 .* is not the ordered"):
        fetch(f"{server.base}/r.tar.gz", tmp_path / "bad", sha256="0" * 64, size=len(data), max_bytes=10**7)
    assert not (tmp_path / "bad").exists() and not (tmp_path / "bad.part").exists()
    with pytest.raises(UpdateError, match="more than the 1000 bytes"):
        fetch(f"{server.base}/r.tar.gz", tmp_path / "big", sha256=None, size=None, max_bytes=1000)
    with pytest.raises(UpdateError, match="HTTP 404"):
        fetch(f"{server.base}/nope", tmp_path / "nope", sha256=None, size=None, max_bytes=1000)


# ---------------------------------------------------------------- the loop's side

def _order(server, data: bytes, sha: str | None = None, version: str = "0.2.0", nonce: str = "n-abcdefgh") -> str:
    import hashlib

    return json.dumps({"version": version, "url": f"{server.base}/r.tar.gz", "size": len(data), "nonce": nonce,
                       "sha256": sha or hashlib.sha256(data).hexdigest(), "expires": int(time.time()) + 600})


def _tick_until(orders: UpdateOrders, phase: str, busy=lambda: None, timeout: float = 10) -> None:
    eventually(lambda: orders.tick(busy) or orders.phase == phase, timeout=timeout, what=f"phase {phase}")


def test_order_fetched_then_waits_while_a_positive_is_unacknowledged(server, tmp_path, station_kit):
    data = b"release" * 1000
    server.files |= {"r.tar.gz": data, "r.tar.gz.sig": b"sig"}
    orders = UpdateOrders(tmp_path / "update", "127.0.0.1", recheck_s=0, busy_retry_s=0)
    orders.accept(_order(server, data))
    _tick_until(orders, "fetched")
    assert (tmp_path / "update" / "nongan-station-0.2.0.tar.gz").read_bytes() == data

    with Journal(tmp_path / "journal.sqlite") as j:
        station_kit.fill(j, 1, verdict="positive")
        created = j.unacked_positives()[0].created_monotonic
        assert loop_busy("idle", j, created + 5) is None  # fresh: the publisher is still on it
        reason = loop_busy("idle", j, created + 61)
        assert "1 positive result(s) older than 60 s" in reason
        assert "incubating" in loop_busy("working", j, created + 5)
        for _ in range(3):
            orders.tick(lambda: loop_busy("idle", j, created + 61))
        assert orders.phase == "fetched" and not (tmp_path / "update" / "request.json").exists()
    orders.tick(lambda: None)
    assert orders.phase == "requested"
    req = json.loads((tmp_path / "update" / "request.json").read_text())
    assert req["version"] == "0.2.0" and req["nonce"] == "n-abcdefgh"

    # The root updater said "refused" (busy after all): the loop asks again later; "updated" clears everything.
    (tmp_path / "update" / "request.json").unlink()
    (tmp_path / "update" / "result.json").write_text(json.dumps({"nonce": "n-abcdefgh", "version": "0.2.0",
                                                                 "outcome": "refused", "detail": "busy"}))
    orders.tick(lambda: None)
    assert orders.phase == "fetched"
    (tmp_path / "update" / "result.json").write_text(json.dumps({"nonce": "n-abcdefgh", "version": "0.2.0",
                                                                 "outcome": "updated"}))
    orders.tick(lambda: None)
    assert orders.order is None and sorted(p.name for p in (tmp_path / "update").iterdir()) == []


def test_order_with_wrong_sha256_is_never_requested_and_survives_a_restart(server, tmp_path):
    data = b"release" * 1000
    server.files |= {"r.tar.gz": data, "r.tar.gz.sig": b"sig"}
    orders = UpdateOrders(tmp_path / "update", "127.0.0.1")
    orders.accept(_order(server, data, sha="0" * 64))
    eventually(lambda: orders.tick(lambda: None) or orders._failures >= 1, timeout=10, what="a failed fetch")
    assert orders.phase == "fetching" and not (tmp_path / "update" / "nongan-station-0.2.0.tar.gz").exists()
    assert not (tmp_path / "update" / "request.json").exists()
    again = UpdateOrders(tmp_path / "update", "127.0.0.1")  # the order was kept across a restart
    assert again.order.version == "0.2.0" and again.phase == "fetching"


def test_plain_http_only_from_the_brokers_host(server, tmp_path):
    orders = UpdateOrders(tmp_path / "update", "town.example")
    orders.accept(_order(server, b"x"))
    assert orders.order is None and not (tmp_path / "update" / "order.json").exists()


# ---------------------------------------------------------------- the whole way, with real parts

@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(REPO)], check=True, capture_output=True)
    return next(out.glob("nongan_station-*.whl"))


@pytest.mark.slow
def test_town_ordered_update_over_broker_http_and_root_updater(local_broker, server, tmp_path, wheel):
    from test_update import OfflineInstaller

    from station.cli.update import busy_reason
    from station.lab.rig import StationRig, station_cmd

    rig = StationRig(tmp_path / "rig", broker_url=local_broker.url)
    town = rig.town().start()
    daemon = rig.daemon().start()
    service = None
    try:
        daemon.press()  # a result the town acks: its signed time is the station's trusted time
        eventually(lambda: daemon.status()["acked_seq"] >= 1, timeout=30, what="the town's ack")
        key = signing.create_private_key(tmp_path / "release.key")
        jwk = tmp_path / "release.jwk"
        jwk.write_text(json.dumps(signing.public_jwk(key.public_key(), "release/1")))
        built = subprocess.run([sys.executable, str(REPO / "scripts" / "build-release"), "--key",
                               str(tmp_path / "release.key"), "--version", "0.2.0", "--wheel", str(wheel), "--out",
                               str(tmp_path / "dist")], capture_output=True, text=True, check=True)
        archive = Path(built.stdout.split()[0])
        server.files |= {"r.tar.gz": archive.read_bytes(),
                         "r.tar.gz.sig": archive.with_name(archive.name + ".sig").read_bytes()}

        # A forged order (another key) is refused and fetches nothing.
        forged = tmp_path / "forged.key"
        station_cmd("town", "update", "send", "--station", rig.station_path, "--release", str(archive), "--url",
                    f"{server.base}/r.tar.gz", "--broker", local_broker.url, "--key", str(forged))
        sent = station_cmd("town", "update", "send", "--station", rig.station_path, "--release", str(archive),
                           "--url", f"{server.base}/r.tar.gz", "--broker", local_broker.url, "--key",
                           str(rig.town_key))
        assert "update 0.2.0 ordered" in sent.stdout
        request = rig.home.root / "update" / "request.json"
        eventually(request.exists, timeout=30, what="the daemon's install request")
        assert [h[0] for h in server.hits] == ["/r.tar.gz", "/r.tar.gz.sig"]  # the forged order fetched nothing
        log = daemon.log_file.read_text()
        assert "update refused: bad signature" in log and "installing now" in log

        daemon.terminate()  # the root updater restarts the station as the new release (here: NotifyService)
        service = NotifyService(tmp_path / "opt", rig.home.root, watchdog_s=3)
        releases = rel.Releases(tmp_path / "opt")
        res = update.run_request(request, jwk, releases, OfflineInstaller(), service, lambda: busy_reason(rig.home),
                                 probation_s=3, ready_timeout_s=60)
        assert res["outcome"] == "updated" and res["version"] == "0.2.0", res
        assert releases.current() == "0.2.0" and not request.exists()
        # The new daemon reads the answer and forgets the order and the download.
        eventually(lambda: not (rig.home.root / "update" / "order.json").exists(), timeout=20,
                   what="the order cleared by the updated daemon")
        assert not list((rig.home.root / "update").glob("*.tar.gz*"))
    finally:
        if service:
            service.stop()
        daemon.terminate()
        town.terminate()


def test_root_updater_refuses_an_archive_not_signed_by_the_release_key(tmp_path):
    folder = tmp_path / "update"
    folder.mkdir()
    (folder / "a.tar.gz").write_bytes(b"not a release")
    (folder / "a.tar.gz.sig").write_bytes(b"{}")
    key = signing.create_private_key(tmp_path / "k")
    jwk = tmp_path / "release.jwk"
    jwk.write_text(json.dumps(signing.public_jwk(key.public_key(), "release/1")))
    req = folder / "request.json"
    req.write_text(json.dumps({"version": "0.2.0", "nonce": "n-1", "archive": str(folder / "a.tar.gz"),
                               "signature": str(folder / "a.tar.gz.sig")}))
    res = update.run_request(req, jwk, rel.Releases(tmp_path / "opt"), None, None, lambda: None)
    assert res["outcome"] == "failed" and "not signed by the release key" in res["detail"]
    assert json.loads((folder / "result.json").read_text())["outcome"] == "failed"
    assert not req.exists() and not (tmp_path / "opt" / "releases").exists()
    # An archive outside the update folder is not taken, whatever the request says.
    req.write_text(json.dumps({"version": "0.2.0", "nonce": "n-2", "archive": "/etc/passwd",
                               "signature": str(folder / "a.tar.gz.sig")}))
    res = update.run_request(req, jwk, rel.Releases(tmp_path / "opt"), None, None, lambda: None)
    assert res["outcome"] == "failed" and "is not a file in" in res["detail"]
