# `station town serve`: the read-only dashboard over HTTP (stdlib ThreadingHTTPServer), localhost by default.
# Threads: one per request (ThreadingHTTPServer); each opens its own read-only SQLite connection, so the listener
# writing the same database is never blocked by a page and no page can write.
from __future__ import annotations

import logging
import re
import sqlite3
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

from station.errors import TownOptionError, TownStoreError
from station.town import dashboard, pages
from station.town.db import is_url, pg_errors

if TYPE_CHECKING:
    from station.town.trust import TrustStore

log = logging.getLogger("station.town")

ROUTES = (
    (re.compile(r"/"), "index"),
    (re.compile(r"/search"), "search"),
    (re.compile(r"/result/([^/]+)/([0-9]{1,18})"), "result"),
    (re.compile(r"/r/([^/]+)/([0-9]{1,18})"), "receipt"),
)


def parse_http(text: str) -> tuple[str, int]:
    """'HOST:PORT' (or ':PORT' for localhost) as given to --http."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise TownOptionError(f"--http {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return (host.strip("[]") or "127.0.0.1"), int(port)


class Dashboard:
    """The HTTP server; serve_forever() blocks, stop() ends it from another thread."""

    def __init__(self, db_path: str | Path, host: str = "127.0.0.1", port: int = 8080,
                 trust: TrustStore | None = None, tz: str = "Asia/Shanghai"):
        from station.town.store import TownStore

        if not is_url(db_path) and not Path(db_path).is_file():
            raise TownOptionError(f"--db {db_path}: town database not found")
        TownStore(db_path).close()     # bring an older database's tables up to date once, read-write
        self.db_path, self.trust, self.tz = (str(db_path) if is_url(db_path) else Path(db_path)), trust, tz
        handler = type("Handler", (_Handler,), {"app": self})
        try:
            self.server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise TownOptionError(f"--http {host}:{port}: cannot listen: {exc.strerror or exc}") from None
        self.server.daemon_threads = True

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def serve_forever(self) -> None:
        self.server.serve_forever(poll_interval=0.25)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def render(self, path: str, query: dict[str, list[str]]) -> tuple[int, bytes]:
        found = next(((m, name) for pattern, name in ROUTES if (m := pattern.fullmatch(path))), None)
        if found is None:
            return 404, pages.error(404, f"没有这个页面：{path}")
        m, name = found
        db = dashboard.connect(self.db_path)
        try:
            if name == "index":
                return 200, pages.index(dashboard.stations(db), dashboard.today(db, tz=self.tz),
                                        dashboard.alerts(db))
            if name == "search":
                q = (query.get("q") or [""])[0]
                return 200, pages.search(q, dashboard.search(db, q))
            station_id, seq = unquote(m.group(1)), int(m.group(2))
            if not dashboard.STATION_ID.fullmatch(station_id):
                return 400, pages.error(400, f"检测站编号不对：{station_id}")
            if name == "result":
                found = dashboard.find(db, station_id, seq, self.trust)
                return (200 if found else 404), pages.result(found)
            h = (query.get("h") or [""])[0].lower()
            if not dashboard.RECEIPT_H.fullmatch(h):
                return 400, pages.error(400, "收据校验码应为 16 位十六进制字符（h=…）")
            state, found = dashboard.receipt(db, station_id, seq, h, self.trust)
            return (404 if state == "not-found" else 200), pages.receipt(state, station_id, seq, found)
        finally:
            db.close()


class _Handler(BaseHTTPRequestHandler):
    app: Dashboard
    server_version = "nongan-town"

    def do_GET(self) -> None:
        self._answer(head=False)

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def _refuse(self) -> None:
        self._send(405, pages.error(405, "只读看板：只接受 GET"), head=False, allow=True)

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

    def _answer(self, head: bool) -> None:
        url = urlsplit(self.path)
        try:
            status, body = self.app.render(url.path, parse_qs(url.query))
        except (sqlite3.Error, TownStoreError, *pg_errors()) as exc:
            log.error("dashboard: %s: %s", url.path, exc)
            status, body = 503, pages.error(503, f"数据库暂时不可读：{exc}")
        self._send(status, body, head)

    def _send(self, status: int, body: bytes, head: bool, allow: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
        if allow:
            self.send_header("Allow", "GET, HEAD")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, fmt: str, *args: object) -> None:
        log.debug("dashboard %s " + fmt, self.address_string(), *args)
