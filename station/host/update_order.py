# A town-ordered update as the loop carries it out: fetch the archive into the home, then, once the station may be
# interrupted, hand it to the root updater (nongan-station-update.path runs `station update --request`).
#
# Threads
#   loop    UpdateOrders.accept / tick: every state change, every file in home/update/ except the download.
#   fetch   one download at a time (a future the loop polls); it writes only the .part and final files.
#
# Files in home/update/ (the daemon, user nongan, may write nowhere else; installing needs root):
#   order.json    the accepted order, so a restart or a power cut does not forget it
#   <v>.tar.gz(.sig)  the verified download
#   request.json  "install this now": its appearance starts the root updater, which renames it to request.taken
#   result.json   the root updater's answer: updated | rolled back | failed | refused (busy; the loop retries)
from __future__ import annotations

import json
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from urllib.parse import urlsplit

from station.errors import StationError
from station.host.files import atomic_write
from station.protocol.messages import UpdateCommand

log = logging.getLogger("station.update")

POSITIVE_MAX_AGE_S = 60.0   # a positive older than this should have reached the town; an update would delay it
RETRY_S = (30.0, 60.0, 300.0, 600.0)  # download retries back off to every 10 minutes
BUSY_RETRY_S = 60.0
SIG_MAX_BYTES = 64 * 1024
REQUEST_STALE_S = 1800.0    # no answer from the root updater in this long: it is not installed or not running


def order_from_json(text: str) -> UpdateCommand:
    """The verified order as the publisher hands it to the loop, and as order.json keeps it across restarts."""
    d = json.loads(text)
    return UpdateCommand(str(d["version"]), str(d["url"]), str(d["sha256"]), int(d["size"]), str(d["nonce"]),
                         int(d["expires"]))


def stale_positives(entries: list, now_monotonic: float, max_age_s: float = POSITIVE_MAX_AGE_S) -> list:
    """Unacknowledged positives older than max_age_s. A created_monotonic above now is from an earlier boot."""
    return [e for e in entries if not 0 <= now_monotonic - e.created_monotonic <= max_age_s]


def loop_busy(state: str, journal, now_monotonic: float | None = None) -> str | None:
    """The loop's own answer to `station update --check`: never mid-sample, never with a positive waiting."""
    if state != "idle":
        return f"the station is {state}: a sample is being read or incubating"
    now = time.monotonic() if now_monotonic is None else now_monotonic
    stale = stale_positives(journal.unacked_positives(limit=1000), now) if journal else []
    if stale:
        return (f"{len(stale)} positive result(s) older than {POSITIVE_MAX_AGE_S:.0f} s not yet acknowledged by the "
                f"town (oldest seq {stale[0].seq})")
    return None


class UpdateOrders:
    def __init__(self, folder: Path, broker_host: str | None, *, timeout_s: float = 30.0,
                 max_bytes: int = 512 * 1024 * 1024, recheck_s: float = 5.0, busy_retry_s: float = BUSY_RETRY_S):
        self.dir, self.broker_host, self.timeout_s, self.max_bytes = Path(folder), broker_host, timeout_s, max_bytes
        self.recheck_s, self.busy_retry_s = recheck_s, busy_retry_s  # how soon to ask again: busy, refused
        self.order: UpdateCommand | None = None
        self.phase = "none"  # none | fetching | fetched | requested
        self._job: Future | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._next_try = 0.0
        self._failures = 0
        self._said = ""  # the last waiting reason logged, so it is logged once per change
        self._requested_at = 0.0
        self._load()

    # ---- loop ---------------------------------------------------------------------------------------------
    def accept(self, detail: str) -> None:
        """A PublisherNote("update") from the publisher, whose detail is the verified command's fields."""
        try:
            order = order_from_json(detail)
        except (ValueError, KeyError, TypeError) as exc:
            log.error("update order unreadable: %s", exc)
            return
        problem = self._policy(order)
        if problem:
            log.error("update %s refused: %s", order.version, problem)
            return
        if self.phase == "requested":
            log.error("update %s refused: update %s is being installed", order.version, self.order.version)
            return
        self.dir.mkdir(mode=0o750, exist_ok=True)
        atomic_write(self.dir / "order.json", json.dumps(asdict(order)).encode())
        self.order, self.phase, self._next_try, self._failures = order, "fetching", 0.0, 0
        self._job = None
        log.warning("update %s ordered by the town: fetching %s (%d bytes)", order.version, order.url, order.size)

    def tick(self, busy) -> None:
        """Called every loop tick with a callable giving why the station may not be interrupted now, or None."""
        now = time.monotonic()
        self._read_result()
        if self.order is None:
            return
        if self.phase != "requested" and time.time() > self.order.expires:
            log.error("update %s dropped: its order expired before it could be installed; the town may resend it",
                      self.order.version)
            self._clear()
            return
        if self.phase == "fetching":
            self._step_fetch(now)
        elif self.phase == "fetched" and now >= self._next_try:
            reason = busy()
            if reason:
                self._say(f"update {self.order.version} waits: {reason}")
                self._next_try = now + self.recheck_s
                return
            atomic_write(self.dir / "request.json", json.dumps({
                "version": self.order.version, "nonce": self.order.nonce, "archive": str(self._archive()),
                "signature": str(self._signature())}).encode())
            self.phase, self._requested_at = "requested", now
            log.warning("update %s fetched and verified; the station is idle: installing now", self.order.version)
        elif self.phase == "requested" and now - self._requested_at > REQUEST_STALE_S:
            self._say(f"update {self.order.version}: no answer from the root updater in {REQUEST_STALE_S:.0f} s; "
                      "is nongan-station-update.path enabled? (systemctl status nongan-station-update.path)")

    def close(self) -> None:
        if self._pool:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def status(self) -> dict:
        return {"version": self.order.version, "phase": self.phase} if self.order else {}

    # ---- helpers --------------------------------------------------------------------------------------------
    def _policy(self, order: UpdateCommand) -> str | None:
        parts = urlsplit(order.url)
        if parts.scheme == "http" and parts.hostname != self.broker_host:
            return (f"{order.url}: plain http only from the town's server ({self.broker_host}); use https "
                    "for any other host")
        if order.size > self.max_bytes:
            return f"size {order.size} exceeds the {self.max_bytes} byte limit"
        return None

    def _archive(self) -> Path:
        return self.dir / f"nongan-station-{self.order.version}.tar.gz"

    def _signature(self) -> Path:
        return self.dir / f"nongan-station-{self.order.version}.tar.gz.sig"

    def _step_fetch(self, now: float) -> None:
        if self._job is None:
            if now < self._next_try:
                return
            self._pool = self._pool or ThreadPoolExecutor(1, thread_name_prefix="update-fetch")
            self._job = self._pool.submit(self._fetch_both, self.order)
            return
        if not self._job.done():
            return
        job, self._job = self._job, None
        exc = job.exception()
        if exc is None:
            self.phase, self._next_try, self._said = "fetched", 0.0, ""
            return
        wait = RETRY_S[min(self._failures, len(RETRY_S) - 1)]
        self._failures += 1
        self._next_try = now + wait
        log.error("update %s: %s; retrying in %.0f s", self.order.version, exc, wait)

    def _fetch_both(self, order: UpdateCommand) -> None:
        from station.host.fetch import fetch  # urllib and ssl only once a download is due

        archive, sig = self._archive(), self._signature()
        if not archive.exists():
            fetch(order.url, archive, sha256=order.sha256, size=order.size, max_bytes=self.max_bytes,
                  timeout_s=self.timeout_s)
        if not sig.exists():
            fetch(order.url + ".sig", sig, sha256=None, size=None, max_bytes=SIG_MAX_BYTES, timeout_s=self.timeout_s)

    def _read_result(self) -> None:
        path = self.dir / "result.json"
        if not path.exists():
            return
        try:
            res = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.error("%s unreadable: %s", path, exc)
            path.unlink(missing_ok=True)
            return
        path.unlink(missing_ok=True)
        mine = self.order is not None and res.get("nonce") == self.order.nonce
        log.warning("update %s: %s%s", res.get("version"), res.get("outcome"),
                    f": {res['detail']}" if res.get("detail") else "")
        if not mine:
            return
        if res.get("outcome") == "refused":
            self.phase, self._next_try = "fetched", time.monotonic() + self.busy_retry_s  # busy after all: try again
        else:
            self._clear()  # updated, or failed and rolled back: a failed release is not retried by itself

    def _say(self, text: str) -> None:
        if text != self._said:
            self._said = text
            log.warning("%s", text)

    def _clear(self) -> None:
        if self.order is not None:
            for p in (self._archive(), self._signature()):
                p.unlink(missing_ok=True)
                p.with_name(p.name + ".part").unlink(missing_ok=True)
        for name in ("order.json", "request.json", "request.taken"):
            (self.dir / name).unlink(missing_ok=True)
        self.order, self.phase, self._job = None, "none", None

    def _load(self) -> None:
        try:
            self.order = order_from_json((self.dir / "order.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, StationError) as exc:
            log.error("%s unreadable (%s); dropped", self.dir / "order.json", exc)
            (self.dir / "order.json").unlink(missing_ok=True)
            return
        # After a restart: an install was asked for (and perhaps is what restarted us), or the fetch resumes.
        pending = (self.dir / "request.json").exists() or (self.dir / "request.taken").exists()
        self.phase = "requested" if pending else "fetching"
        self._requested_at = time.monotonic()
