# Flattened JWS: round trip, and every malformed or hostile message is a SignatureError, never another exception.
from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from station.errors import SignatureError
from station.protocol import signing, wire

KEY = Ed25519PrivateKey.generate()
GOOD = signing.sign_jws({"seq": 1, "verdict": "negative"}, KEY, "st-1/1", "nongan-result+json")


def test_round_trip_and_header():
    assert signing.verify_jws(GOOD, KEY.public_key(), typ="nongan-result+json") == {"seq": 1, "verdict": "negative"}
    assert signing.jws_header(GOOD) == {"alg": "Ed25519", "kid": "st-1/1", "typ": "nongan-result+json"}


def _mutate(**fields) -> bytes:
    jws = json.loads(GOOD)
    jws.update(fields)
    return json.dumps(jws).encode()


@pytest.mark.parametrize("message", [
    b"not json", b"[]", b'{"protected": "a"}',
    _mutate(payload="é" + json.loads(GOOD)["payload"]),         # non-ASCII text where base64url belongs
    _mutate(signature=12),
    _mutate(payload=wire.b64url(b'{"seq":2,"verdict":"negative"}')),   # tampered payload
    _mutate(protected=wire.b64url(b'{"alg":"none","kid":"st-1/1"}')),  # algorithm downgrade
    _mutate(signature=json.loads(GOOD)["signature"][:-4] + "AAAA"),
])
def test_hostile_messages_are_signature_errors(message):
    with pytest.raises(SignatureError):
        signing.verify_jws(message, KEY.public_key())


def test_wrong_key_and_wrong_typ():
    with pytest.raises(SignatureError, match="does not verify"):
        signing.verify_jws(GOOD, Ed25519PrivateKey.generate().public_key())
    with pytest.raises(SignatureError, match="typ"):
        signing.verify_jws(GOOD, KEY.public_key(), typ="nongan-ack+json")
