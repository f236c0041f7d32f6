# Shared pytest fixtures: real brokers and other real parts used across test modules.
from __future__ import annotations

# --- Broker fixtures (station/lab/broker.py): real mosquitto processes on loopback ---
import pytest

from station.lab.broker import LocalBroker


@pytest.fixture
def local_broker(tmp_path):
    """A fresh plain (anonymous, loopback) broker per test; free to stop, kill or restart."""
    with LocalBroker(tmp_path / "broker") as broker:
        yield broker


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory):
    """The shipped town TLS config with a test CA, shared by a module; tests must not stop it."""
    with LocalBroker(tmp_path_factory.mktemp("tls-broker"), tls=True) as broker:
        yield broker


# --- Publisher / town fixtures: a station identity and keys without a station home ---
import types  # noqa: E402

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402


@pytest.fixture
def station_kit(tmp_path):
    """A station identity, its signing key and trusted JWK, a town key and JWK, and a result maker."""
    import json

    from station.config import StationIdentity
    from station.protocol.result import RESULT_TYP, build_result_payload
    from station.protocol.signing import public_jwk, sign_jws

    ident = StationIdentity(id="st-0001", grid="changchun/nongan/halahai", key_serial=1)
    key = Ed25519PrivateKey.generate()
    town_key = Ed25519PrivateKey.generate()
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "st-0001.jwk").write_text(json.dumps(public_jwk(key.public_key(), ident.kid, ident.path)))
    town_jwk = tmp_path / "town.jwk"
    town_jwk.write_text(json.dumps(public_jwk(town_key.public_key(), "town/1")))

    def maker(verdict="negative", sample_id="S-1", *, ident=ident, key=key, pad=0):
        def make(seq, prev):
            payload = build_result_payload(
                seq=seq, prev=prev, station_path=ident.path, station_id=ident.id,
                boot={"counter": 1, "monotonic_s": 10.0}, read_at="2026-11-24T00:00:00.000Z", clock_synced=True,
                sample={"id": sample_id, "producer": "x" * pad if pad else None},
                strip={"type": "pesticide-generic", "analyte": "carbofuran", "lot": None, "slot": 0},
                reading={"tc_ratio": 0.3 if verdict == "positive" else 0.9, "c_area": 1.0, "t_area": 0.9,
                         "c_peak": 0.2, "t_peak": 0.18, "snr": 30.0},
                verdict=verdict, quality=[], calibration={"id": None, "cutoff": 0.6}, image_sha256=None,
                source="camera",
            )
            return sign_jws(payload, key, ident.kid, RESULT_TYP)
        return make

    def fill(journal, n, verdict="negative"):
        for i in range(n):
            journal.append(maker(verdict, f"S-{i}"), verdict=verdict, sample_id=f"S-{i}", image_path=None)

    return types.SimpleNamespace(ident=ident, key=key, town_key=town_key, trust_dir=trust, town_jwk=town_jwk,
                                 maker=maker, fill=fill, tmp=tmp_path)
