# Hostile messages sent straight to the broker, and a count of how many the town listener wrongly accepted.
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from station.protocol import result as records
from station.protocol import signing, topics, wire
from station.protocol.mqtt import parse_broker_url

KINDS = ("forged", "tampered", "replayed", "wrong-path", "equivocation")


@dataclass(frozen=True)
class Attack:
    kind: str
    topic: str
    message: bytes


def _payload(message: bytes) -> dict:
    return signing.unverified_payload(message)  # the town's own copies: genuine, already verified there


def _with_payload(message: bytes, payload: dict) -> bytes:
    """The same protected header and signature over a different payload: what a tamperer can do."""
    jws = json.loads(message)
    jws["payload"] = wire.b64url(wire.canonical_json(payload))
    return json.dumps(jws, separators=(",", ":")).encode()


def craft(genuine: list[bytes], station_key: Ed25519PrivateKey, kid: str, grid: str, station_id: str,
          other_station: str = "st-imposter") -> list[Attack]:
    """Attacks built from the town's own copies of genuine messages (the newest one last).

    forged, tampered and wrong-path carry the next seq with a correct prev, so accepting one would show as a
    new result; equivocation re-signs a stored seq with the station's own key but different content.
    """
    result_topic = topics.topic(grid, station_id, "result")
    last = genuine[-1]
    nxt = {**_payload(last), "seq": _payload(last)["seq"] + 1, "prev": wire.message_hash(last)}
    nxt["id"] = f"{station_id}:{nxt['seq']}"
    attacks = []
    for i, msg in enumerate(genuine):
        fake = {**nxt, "verdict": "negative", "sample": {"id": f"FAKE-{i}", "producer": None}}
        stranger = Ed25519PrivateKey.generate()
        attacks.append(Attack("forged", result_topic, signing.sign_jws(fake, stranger, kid, records.RESULT_TYP)))
        attacks.append(Attack("tampered", result_topic, _with_payload(last, fake)))
        attacks.append(Attack("replayed", result_topic, msg))
        attacks.append(Attack("wrong-path", topics.topic(grid, other_station, "result"),
                              signing.sign_jws(fake, station_key, kid, records.RESULT_TYP)))
        flipped = {**_payload(msg), "verdict": "negative" if _payload(msg)["verdict"] != "negative" else "positive"}
        attacks.append(Attack("equivocation", result_topic,
                              signing.sign_jws(flipped, station_key, kid, records.RESULT_TYP)))
    return attacks


def send(broker_url: str, attacks: list[Attack], timeout: float = 10.0) -> None:
    addr = parse_broker_url(broker_url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="nongan-attacker", protocol=mqtt.MQTTv5)
    client.connect(addr.host, addr.port)
    client.loop_start()
    try:
        infos = [client.publish(a.topic, a.message, qos=1) for a in attacks]
        for info in infos:
            info.wait_for_publish(timeout)
    finally:
        client.disconnect()
        client.loop_stop()


def accepted(before: dict[int, str], after: dict[int, str]) -> int:
    """Stored results (seq → message hash) that appeared or changed: each is a hostile message accepted."""
    return sum(1 for seq, h in after.items() if before.get(seq) != h)


def run_attacks(broker_url: str, stored: Callable[[], dict[int, str]], refused: Callable[[], int],
                genuine: list[bytes], station_key: Ed25519PrivateKey, kid: str, grid: str, station_id: str,
                settle_s: float = 15.0) -> dict[str, dict[str, int]]:
    """Send each kind in turn and report {kind: {tried, accepted}}; waits for the town to refuse each batch."""
    report = {}
    all_attacks = craft(genuine, station_key, kid, grid, station_id)
    for kind in KINDS:
        batch = [a for a in all_attacks if a.kind == kind]
        before, refused_before = stored(), refused()
        send(broker_url, batch)
        # Replays are recognised as duplicates, not refused; everything else must show up as a refusal.
        want = 0 if kind == "replayed" else len(batch)
        deadline = time.monotonic() + settle_s
        while refused() - refused_before < want and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5 if kind == "replayed" else 0)
        report[kind] = {"tried": len(batch), "accepted": accepted(before, stored()),
                        "refused": refused() - refused_before}
    return report

