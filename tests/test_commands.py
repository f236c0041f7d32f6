# Town-signed acks and commands verified without MQTT: every refusal path and the unsynced-clock policy.
from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from station.errors import Refused
from station.protocol.messages import CMD_TYP, build_ack, build_resend, verify_ack, verify_command
from station.protocol.signing import sign_jws

TOWN = Ed25519PrivateKey.generate()
PATH = "changchun/nongan/halahai/st-0001"
NOW = 1_800_000_000


def nonces():
    seen: set[str] = set()

    def remember(n: str, exp: int) -> bool:
        if n in seen:
            return False
        seen.add(n)
        return True

    return remember


def cmd(**kw):
    p = {"v": 1, "station": PATH, "cmd": "resend", "from_seq": 3, "to_seq": 9, "nonce": "n-123456",
         "expires": NOW + 300}
    p.update(kw)
    return sign_jws(p, kw.pop("_key", TOWN), "town/1", CMD_TYP)


def test_valid_resend():
    c = verify_command(cmd(), TOWN.public_key(), PATH, now=NOW, remember_nonce=nonces())
    assert (c.cmd, c.from_seq, c.to_seq, c.expiry_checked) == ("resend", 3, 9, True)


@pytest.mark.parametrize("message, why", [
    (lambda: cmd(expires=NOW - 3600), "expired"),
    (lambda: cmd(expires=NOW + 10 * 86400), "exceeds"),
    (lambda: cmd(station="a/b/c/st-9"), "addressed to"),
    (lambda: cmd(cmd="format-disk"), "unknown command"),
    (lambda: cmd(from_seq=9, to_seq=3), "empty range"),
    (lambda: cmd(from_seq="1"), "from_seq"),
    (lambda: cmd(nonce="x"), "nonce"),
    (lambda: cmd(v=2), "version"),
    (lambda: build_resend(Ed25519PrivateKey.generate(), "town/1", PATH, 1, 2, "n-999999", NOW + 60), "signature"),
    (lambda: b"garbage", "bad signature or format"),
])
def test_refusals(message, why):
    with pytest.raises(Refused) as exc:
        verify_command(message(), TOWN.public_key(), PATH, now=NOW, remember_nonce=nonces())
    assert why in str(exc.value)


def test_replayed_nonce_refused_and_refused_command_does_not_burn_nonce():
    remember = nonces()
    with pytest.raises(Refused):
        verify_command(cmd(expires=NOW - 3600), TOWN.public_key(), PATH, now=NOW, remember_nonce=remember)
    verify_command(cmd(), TOWN.public_key(), PATH, now=NOW, remember_nonce=remember)
    with pytest.raises(Refused, match="already used"):
        verify_command(cmd(), TOWN.public_key(), PATH, now=NOW, remember_nonce=remember)


def test_unsynced_clock_policy_accepts_idempotent_resend_once_without_expiry_check():
    remember = nonces()
    c = verify_command(cmd(expires=NOW - 3600), TOWN.public_key(), PATH, now=None, remember_nonce=remember)
    assert not c.expiry_checked
    with pytest.raises(Refused, match="already used"):
        verify_command(cmd(expires=NOW - 3600), TOWN.public_key(), PATH, now=None, remember_nonce=remember)


def test_no_town_key_refuses_everything():
    with pytest.raises(Refused, match="no trusted town key"):
        verify_command(cmd(), None, PATH, now=NOW, remember_nonce=nonces())
    with pytest.raises(Refused, match="no trusted town key"):
        verify_ack(build_ack(TOWN, "town/1", PATH, 1, "a" * 64), None, PATH)


def test_ack_fields():
    a = verify_ack(build_ack(TOWN, "town/1", PATH, 4, "a" * 64, {"seq": 4, "head": "a" * 64, "jws_sha256": "b" * 64},
                             now=time.time()), TOWN.public_key(), PATH)
    assert a.acked_seq == 4 and a.checkpoint["seq"] == 4
    with pytest.raises(Refused, match="head"):
        verify_ack(build_ack(TOWN, "town/1", PATH, 4, "XYZ"), TOWN.public_key(), PATH)
    with pytest.raises(Refused, match="typ"):
        verify_ack(cmd(), TOWN.public_key(), PATH)
