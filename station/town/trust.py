# Who the town believes: the station public keys it trusts (each bound to one grid path) and the town's own key.
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from station.errors import KeyFileError, TownStoreError
from station.protocol.signing import create_private_key, load_jwk_file_with_station, load_private_key, public_jwk

log = logging.getLogger("station.town")


@dataclass
class TrustStore:
    """Station public keys: *.jwk / *.json files in a directory, kid '<station>/<serial>'."""

    directory: Path
    keys: dict[str, tuple[Ed25519PublicKey, str]] = field(default_factory=dict)
    _scanned: float = 0.0

    @classmethod
    def load(cls, directory: str | Path) -> TrustStore:
        d = Path(directory)
        if not d.is_dir():
            raise TownStoreError(f"{d}: trust directory not found")
        t = cls(d)
        t.rescan()
        return t

    def rescan(self) -> None:
        # A station key signs for one grid path only (the JWK's "station" member, as `station pubkey` prints
        # it): the broker ACL lets st-0001 write under any village, so the id alone would not bind it.
        keys: dict[str, tuple[Ed25519PublicKey, str]] = {}
        clashes: set[str] = set()
        for p in sorted(self.directory.iterdir()):
            if p.suffix in (".jwk", ".json") and p.is_file():
                try:
                    kid, key, station = load_jwk_file_with_station(p)
                except KeyFileError as exc:
                    log.warning("trust: skipping %s", exc)
                    continue
                if not station or station.rsplit("/", 1)[-1] != kid.split("/", 1)[0]:
                    log.error("trust: skipping %s: needs a 'station' path ending in its kid's station id", p)
                    continue
                if kid in keys:
                    clashes.add(kid)
                keys[kid] = (key, station)
        for kid in clashes:
            log.error("trust: kid %s appears in more than one key file: trusting neither", kid)
            del keys[kid]
        self.keys, self._scanned = keys, time.monotonic()

    def get(self, kid: str) -> tuple[Ed25519PublicKey, str] | None:
        """(key, station path) for a kid."""
        found = self.keys.get(kid)
        if found is None and time.monotonic() - self._scanned > 5.0:   # new station enrolled: pick it up
            self.rescan()
            found = self.keys.get(kid)
        return found

    def trusts_path(self, path: str) -> bool:
        """Does some trusted key sign for this grid path (is it a station the town knows)?"""
        if any(p == path for _, p in self.keys.values()):
            return True
        if time.monotonic() - self._scanned > 5.0:
            self.rescan()
            return any(p == path for _, p in self.keys.values())
        return False


def load_or_create_town_key(path: str | Path) -> Ed25519PrivateKey:
    """The town's Ed25519 signing key; created (mode 0600) on first use."""
    p = Path(path)
    if not p.exists():
        key = create_private_key(p)
        log.info("created town signing key %s", p)
        return key
    return load_private_key(p)


def town_public_jwk(key: Ed25519PrivateKey, kid: str = "town/1") -> dict:
    return public_jwk(key.public_key(), kid)
