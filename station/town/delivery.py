# Delivers the alerts table to webhooks: one worker thread per webhook, retries with backoff, a rate limit.
# Threads: "town-alert-<n>" per webhook, each with its own SQLite connection. The listener's worker calls wake()
# after each COMMIT, so an alert leaves within milliseconds of being stored; a poll every poll_s also picks up
# alerts raised by another process on the same database. Delivery is at-least-once: the per-webhook cursor is
# advanced only after the target accepted the message, so a crash in between sends it again.
from __future__ import annotations

import collections
import logging
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from station.protocol.wire import now_rfc3339
from station.town import alerts, webhooks
from station.town import db as dbmod
from station.town.webhooks import Webhook

log = logging.getLogger("station.town")

BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
WINDOW_S = 60.0


class AlertDelivery:
    """Send every alert raised after a webhook was first configured to that webhook, in order."""

    def __init__(self, db_path: str | Path, hooks: list[Webhook], *, poll_s: float = 1.0,
                 backoff_s: tuple[float, ...] = BACKOFF_S, timeout_s: float = 5.0):
        self.db_path, self.hooks = db_path, list(hooks)
        self.poll_s, self.backoff_s, self.timeout_s = poll_s, backoff_s, timeout_s
        self._stop = threading.Event()
        self._wake = [threading.Event() for _ in self.hooks]
        self._threads = [threading.Thread(target=self._run, args=(i,), name=f"town-alert-{i}", daemon=True)
                         for i in range(len(self.hooks))]
        self.sent = collections.Counter()   # messages accepted per webhook URL (for logs and tests)

    def start(self) -> None:
        """Set up each webhook's cursor before returning, so an alert raised right after start() is sent."""
        db = dbmod.connect(self.db_path)
        try:
            for hook in self.hooks:
                self._cursor(db, f"{hook.fmt} {hook.url}")
        finally:
            db.close()
        for t in self._threads:
            t.start()

    def wake(self) -> None:
        for e in self._wake:
            e.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.wake()
        for t in self._threads:
            t.join(timeout)

    # ------------------------------------------------------------ one webhook's thread

    def _run(self, i: int) -> None:
        hook, wake = self.hooks[i], self._wake[i]
        key = f"{hook.fmt} {hook.url}"
        db = dbmod.connect(self.db_path)
        try:
            cursor = self._cursor(db, key)
            window: collections.deque[float] = collections.deque()   # when each message reached the target
            failures, not_before = 0, 0.0
            while not self._stop.is_set():
                now = time.monotonic()
                while window and window[0] <= now - WINDOW_S:
                    window.popleft()
                allowed = hook.rate_per_min - len(window)
                wait = self.poll_s
                batch = alerts.pending(db, cursor) if now >= not_before and allowed > 0 else []
                if batch:
                    # Under the limit: one message per alert. At the last message of the window: everything
                    # still pending in one aggregate, so a burst costs one robot message, not a minute's delay each.
                    send = batch[:1] if allowed > 1 else batch
                    why, reached = self._post(hook, send)
                    if reached:
                        window.append(time.monotonic())
                    if why is None:
                        cursor = send[-1].id
                        db.execute("UPDATE alert_cursors SET delivered=?, updated_at=? WHERE webhook=?",
                                   (cursor, now_rfc3339(), key))
                        self.sent[hook.url] += 1
                        failures, wait = 0, 0.0
                    else:
                        failures += 1
                        delay = self.backoff_s[min(failures, len(self.backoff_s)) - 1]
                        not_before = time.monotonic() + delay
                        log.warning("ALERT webhook %s: %s; %d alert(s) wait, retry in %.0f s", hook.url, why,
                                    len(send), delay)
                        wait = delay
                elif allowed <= 0 and window:
                    wait = max(0.0, window[0] + WINDOW_S - now)
                elif now < not_before:
                    wait = not_before - now
                if wait > 0 and wake.wait(min(wait, self.poll_s)):
                    wake.clear()
        except Exception:
            log.exception("alert delivery to %s crashed; alerts stay in the table", hook.url)
        finally:
            db.close()

    def _cursor(self, db: Any, key: str) -> int:
        # A webhook configured for the first time starts at the newest alert: history is on the dashboard, and a
        # robot flooded with last year's alerts would hide today's.
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO alert_cursors VALUES (?, (SELECT COALESCE(MAX(id), 0) FROM alerts), ?) "
                   "ON CONFLICT DO NOTHING", (key, now_rfc3339()))
        db.execute("COMMIT")
        return db.execute("SELECT delivered FROM alert_cursors WHERE webhook=?", (key,)).fetchone()[0]

    def _post(self, hook: Webhook, batch: list[alerts.Alert]) -> tuple[str | None, bool]:
        """(why it failed or None, whether the target answered at all)."""
        req = urllib.request.Request(hook.url, data=webhooks.body(hook, batch), method="POST",
                                     headers={"Content-Type": "application/json; charset=utf-8"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return webhooks.accepted(hook, resp.status, resp.read(65536)), True
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}", True
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}", False
