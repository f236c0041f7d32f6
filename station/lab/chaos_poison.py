# Town poisoning: hostile messages that once dropped batches, faked equivocation or broke `town show` (issue 8).
"""Each poison message must be refused and counted by the town, one by one, while genuine results travelling
in the same listener batch are stored. Built from the town's own copies of genuine results (the newest last),
so the signed ones are signed by the station's real key: only their content or wrapping is hostile."""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from station.lab.attacks import Attack, send
from station.protocol import result as records
from station.protocol import signing, topics, wire

# Refusal codes genuine traffic never earns: the poison's refusals are told apart from the station's by them.
POISON_CODES = ("malformed", "non-canonical", "bad-status", "unknown-station", "unknown-kid")


def _sign_raw(body: bytes, key: Ed25519PrivateKey, kid: str) -> bytes:
    """A JWS over payload bytes as given (not canonical JSON): how a key holder writes 1e400 or a huge int."""
    protected = wire.b64url(wire.canonical_json({"alg": signing.ALG, "kid": kid, "typ": records.RESULT_TYP}))
    b = wire.b64url(body)
    return signing.envelope(protected, b, wire.b64url(key.sign(f"{protected}.{b}".encode("ascii"))))


def _bump_last_char(text: str) -> str:
    """Same bytes in base64url with non-zero unused trailing bits (a lenient decoder cannot tell): the last
    character of a 64-byte Ed25519 signature carries 2 bits and 4 zero bits, so +1 stays in the alphabet."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return text[:-1] + alphabet[alphabet.index(text[-1]) + 1]


def rewrapped(genuine: bytes) -> list[bytes]:
    """Copies of one genuine result that verify under a lenient reader yet hash differently."""
    jws = json.loads(genuine)
    sig = jws["signature"]
    return [
        json.dumps(jws).encode(),                                          # spaces after ':' and ','
        json.dumps({k: jws[k] for k in ("signature", "payload", "protected")}, separators=(",", ":")).encode(),
        json.dumps({**jws, "signature": _bump_last_char(sig)}, separators=(",", ":")).encode(),
        json.dumps({**jws, "signature": sig[:40] + "\n" + sig[40:]}, separators=(",", ":")).encode(),
        genuine.replace(b'"payload"', b'"\\u0070ayload"'),                   # an escaped member name
    ]


def craft_poison(genuine: list[bytes], key: Ed25519PrivateKey, kid: str, grid: str, station_id: str,
                 phantoms: int = 20) -> list[Attack]:
    """Every message here must end as exactly one refusal at the town, none as a stored result."""
    result_t = topics.topic(grid, station_id, "result")
    status_t = topics.topic(grid, station_id, "status")
    last = signing.unverified_payload(genuine[-1])
    body = {**last, "seq": last["seq"] + 1, "prev": wire.message_hash(genuine[-1]),
            "id": f"{station_id}:{last['seq'] + 1}"}
    text = wire.canonical_json(body).decode()
    out = [
        Attack("deep-json", result_t, b"[" * 60000),
        Attack("deep-json", result_t, b'{"protected":' * 5000 + b"1" + b"}" * 5000),
        Attack("huge-seq", result_t, _sign_raw(text.replace(f'"seq":{body["seq"]}', '"seq":' + "9" * 30)
                                               .encode(), key, kid)),
        Attack("huge-float", result_t, _sign_raw(text.replace('"reading":{', '"reading":{"tc_ratio":1e400,', 1)
                                                 .replace(',"tc_ratio":', ',"tc_old":', 1).encode(), key, kid)),
        Attack("huge-int", result_t, _sign_raw(text.replace('"reading":{', '"reading":{"t_area":' + "1" * 401
                                                            + ",", 1).replace(',"t_area":', ',"t_old":', 1)
                                               .encode(), key, kid)),
        Attack("nan", result_t, _sign_raw(text.replace('"reading":{', '"reading":{"snr":NaN,', 1)
                                          .replace(',"snr":', ',"snr_old":', 1).encode(), key, kid)),
        Attack("bad-status", status_t, b"[1,2,3]"),
        Attack("bad-status", status_t, b'{"state":"online","disk_pct":NaN}'),
        Attack("bad-status", status_t, b"{" * 50 + b"}" * 50),
    ]
    out += [Attack("rewrapped", result_t, m) for g in genuine for m in rewrapped(g)]
    for i in range(phantoms):
        junk = f"ph-{i:04d}"
        out.append(Attack("phantom", topics.topic("x/y/z", junk, "status"), b'{"state":"online"}'))
        out.append(Attack("phantom", topics.topic("x/y/z", junk, "result"), b"junk %d" % i))
    return out


def run_poison(broker_url: str, stored: Callable[[], dict[int, str]], refused: Callable[[], int],
               genuine: list[bytes], key: Ed25519PrivateKey, kid: str, grid: str, station_id: str,
               settle_s: float = 15.0, phantoms: int = 20) -> dict[str, int]:
    """Send one round and wait for the town to refuse it: {tried, accepted, refused}. `refused` counts
    refusals with POISON_CODES (see poison_refusals)."""
    batch = craft_poison(genuine, key, kid, grid, station_id, phantoms)
    before, refused_before = stored(), refused()
    send(broker_url, batch)
    deadline = time.monotonic() + settle_s
    while refused() - refused_before < len(batch) and time.monotonic() < deadline:
        time.sleep(0.2)
    after = stored()
    return {"tried": len(batch), "accepted": sum(1 for s, h in after.items() if before.get(s) != h),
            "refused": refused() - refused_before}


POISON_REFUSALS_SQL = (f"SELECT COALESCE(SUM(n), 0) FROM refusal_counts WHERE code IN "
                       f"({','.join(repr(c) for c in POISON_CODES)})")


class Poisoner:
    """For scripts/chaos: a round of poison every `every_s` s of the fault phase (so it shares listener
    batches with genuine results while daemon, broker and town are killed), then one exact final round."""

    def __init__(self, broker_url: str, query: Callable[..., list[tuple]], station_path: str,
                 key: Ed25519PrivateKey, kid: str, grid: str, station_id: str, every_s: float = 15.0):
        self.broker_url, self.query, self.path = broker_url, query, station_path
        self.key, self.kid, self.grid, self.station_id, self.every_s = key, kid, grid, station_id, every_s
        self.rounds, self.sent, self.missed_rounds = 0, 0, 0

    def _genuine(self) -> list[bytes]:
        try:
            rows = self.query("SELECT message FROM results WHERE station=? AND kind='result' ORDER BY seq DESC "
                              "LIMIT 2", self.path)
        except sqlite3.Error:   # the town is being killed and restarted: next round
            return []
        return [bytes(m) for (m,) in rows][::-1]

    def during(self, stop: threading.Event) -> None:
        while not stop.wait(self.every_s):
            genuine = self._genuine()
            if not genuine:
                continue
            batch = craft_poison(genuine, self.key, self.kid, self.grid, self.station_id, phantoms=10)
            try:
                send(self.broker_url, batch)
            except (OSError, RuntimeError, ValueError):   # the broker is down for this round
                self.missed_rounds += 1
                continue
            self.rounds += 1
            self.sent += len(batch)

    def final(self) -> dict[str, int]:
        """The exact round after the drain, plus the totals: every poison message ever refused is counted."""
        stored = dict(self.query("SELECT seq, msg_hash FROM results WHERE station=?", self.path))
        out = run_poison(self.broker_url, lambda: dict(self.query(
            "SELECT seq, msg_hash FROM results WHERE station=?", self.path)),
            lambda: self.query(POISON_REFUSALS_SQL)[0][0], self._genuine() or [], self.key, self.kid,
            self.grid, self.station_id) if stored else {"tried": 0, "accepted": 0, "refused": 0}
        return {**out, "rounds_during_faults": self.rounds, "sent_during_faults": self.sent,
                "rounds_missed_broker_down": self.missed_rounds,
                "refused_total": self.query(POISON_REFUSALS_SQL)[0][0]}
