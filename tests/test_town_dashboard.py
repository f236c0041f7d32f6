# `station town serve`: the read-only dashboard as a real subprocess, asked with real HTTP requests and, when
# Chromium is installed, looked at in a real headless browser (screenshots checked for what they must show).
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from townkit import TownKit

from station.town.web import parse_http


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, method: str = "GET") -> tuple[int, str]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dash")
    kit = TownKit(tmp, {"st-0001": "halahai", "st-0002": "xinglong"})
    now = time.time()
    kit.result("st-0001", "negative", "A-1", producer="张家农场", now=now - 2 * 86400)   # not today
    kit.result("st-0001", "negative", "A-2", producer="张家农场")
    kit.result("st-0001", "positive", "A-3", producer="李家菜园")
    kit.result("st-0002", "negative", "B-1", producer="<b>王</b>")
    kit.result("st-0002", "negative", "B-2")
    kit.status("st-0001", {"v": 1, "state": "online", "outbox": 3, "clock_synced": True,
                           "disk": {"free_mb": 5120, "used_pct": 41.5}})
    kit.status("st-0002", {"v": 1, "state": "offline", "outbox": 0, "clock_synced": False})
    messages = {r["seq"]: bytes(r["message"]) for r in kit.store.results(kit.path("st-0001"))}
    kit.store.close()
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "station", "town", "serve", "--db", str(kit.db_path),
                             "--http", f"127.0.0.1:{port}", "--trust", str(kit.trust_dir)],
                            stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    assert "dashboard: http://127.0.0.1:" in line, line
    yield f"http://127.0.0.1:{port}", kit, messages, tmp
    proc.terminate()
    proc.wait(10)


def test_overview_lists_stations_and_today_positives_first(served):
    base, kit, _, _ = served
    status, html = get(base + "/")
    assert status == 200
    assert kit.path("st-0001") in html and "在线" in html and "离线" in html and "5120 MB" in html
    today = html[html.index("今日结果"):html.index("最近预警")]
    assert "（4 条，阳性 1 条，阳性在前）" in today
    assert today.index("A-3") < min(today.index(s) for s in ("A-2", "B-1", "B-2"))
    assert "A-1" not in today                                  # received two days ago
    assert 'class="positive"' in today and "阳性检出" in html   # the alert list shows the positive


def test_search_by_sample_or_producer_escapes_html(served):
    base, *_ = served
    _, html = get(base + "/search?q=" + urllib.request.quote("张家"))
    assert "A-1" in html and "A-2" in html and "A-3" not in html
    _, html = get(base + "/search?q=B-")
    assert "&lt;b&gt;王&lt;/b&gt;" in html and "<b>王</b>" not in html
    _, html = get(base + "/search?q=" + urllib.request.quote("%"))
    assert 'id="found"' not in html                            # a LIKE wildcard is searched for literally


def test_result_page_reverifies_and_receipt_landing(served):
    base, kit, messages, _ = served
    status, html = get(base + "/result/st-0001/3")
    assert status == 200 and "签名有效（刚刚重新验证）" in html and "与上一条结果的哈希链相连" in html
    assert "李家菜园" in html and "阳性" in html
    h = hashlib.sha256(messages[3]).hexdigest()[:16]
    status, html = get(f"{base}/r/st-0001/3?h={h}")
    assert status == 200 and 'data-state="match"' in html and "A-3" in html
    status, html = get(f"{base}/r/st-0001/3?h={hashlib.sha256(messages[2]).hexdigest()[:16]}")
    assert status == 200 and 'data-state="mismatch"' in html and "A-3" not in html
    status, html = get(f"{base}/r/st-0001/99?h={h}")
    assert status == 404 and 'data-state="not-found"' in html
    assert get(f"{base}/r/st-0001/3?h=xyz")[0] == 400
    assert get(f"{base}/r/st%2F..%2Fx/3?h={h}")[0] == 400
    assert get(base + "/nothing")[0] == 404
    assert get(base + "/", method="POST")[0] == 405


def test_http_option_parsing():
    assert parse_http("0.0.0.0:80") == ("0.0.0.0", 80) and parse_http(":8080") == ("127.0.0.1", 8080)
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        parse_http("localhost")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot(url: str, out, tmp) -> object:
    import cv2

    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run",
                    f"--user-data-dir={tmp / ('profile-' + out.stem)}", "--hide-scrollbars",
                    "--window-size=1200,900", f"--screenshot={out}", url],
                   capture_output=True, timeout=120, check=True)
    img = cv2.imread(str(out))
    assert img is not None, f"chromium wrote no screenshot for {url}"
    return img


def share(img, bgr: tuple[int, int, int]) -> float:
    """Fraction of the screenshot's pixels within a few levels of one colour."""
    import numpy as np

    return float(np.mean(np.all(np.abs(img.astype(int) - np.array(bgr)) <= 6, axis=2)))


PINK, GREEN = (0xda, 0xd7, 0xf8), (0xda, 0xed, 0xd4)     # BGR of #f8d7da (positive, bad) and #d4edda (ok)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_in_a_real_browser_positives_and_receipts_are_seen(served):
    base, kit, messages, tmp = served
    index = screenshot(base + "/", tmp / "index.png", tmp)
    assert index.std() > 10, "blank page"
    assert share(index, PINK) > 0.003, "the positive row is not highlighted"
    ok = screenshot(f"{base}/r/st-0001/3?h={hashlib.sha256(messages[3]).hexdigest()[:16]}", tmp / "ok.png", tmp)
    bad = screenshot(f"{base}/r/st-0001/3?h={'0' * 16}", tmp / "bad.png", tmp)
    assert share(ok, GREEN) > 0.01 and share(ok, PINK) < 0.001, "a matching receipt must show a green banner"
    assert share(bad, PINK) > 0.01 and share(bad, GREEN) < 0.001, "a mismatching receipt must show a red banner"
