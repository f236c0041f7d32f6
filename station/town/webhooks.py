# Webhook targets and their message formats: generic JSON, WeCom (企业微信) and DingTalk (钉钉) group robots.
# Pure builders: what goes on the wire for one alert or for an aggregate of many, testable without HTTP.
from __future__ import annotations

import json
from dataclasses import dataclass

from station.errors import TownOptionError
from station.town.alerts import Alert

FORMATS = ("json", "wecom", "wecom-text", "dingtalk", "dingtalk-text")
# Group robots accept 20 messages a minute each (WeCom documents it, DingTalk says the same); over that they
# answer errcode 45009 / 130101 and drop the message, so the worker stays under it and aggregates instead.
ROBOT_RATE_PER_MIN = 20
AGGREGATE_LISTED = 30    # alerts named one by one in an aggregate; the rest are counted


@dataclass(frozen=True)
class Webhook:
    """One configured target: URL, message format and its rate limit (messages per minute)."""

    url: str
    fmt: str = "json"
    rate_per_min: int = ROBOT_RATE_PER_MIN

    @classmethod
    def parse(cls, text: str, rate_per_min: int = ROBOT_RATE_PER_MIN) -> Webhook:
        """'URL[,format]' as given to --webhook."""
        url, sep, fmt = text.rpartition(",")
        if not sep or "/" in fmt:      # no format given (a comma inside the URL's query is no format)
            url, fmt = text, "json"
        fmt = fmt.strip() or "json"
        if not url.startswith(("http://", "https://")):
            raise TownOptionError(f"--webhook {text!r}: the URL must start with http:// or https://")
        if fmt not in FORMATS:
            raise TownOptionError(f"--webhook {text!r}: format {fmt!r} is not one of {', '.join(FORMATS)}")
        return cls(url, fmt, rate_per_min)

    @property
    def robot(self) -> bool:
        return self.fmt != "json"


def _line(a: Alert) -> str:
    d = a.detail
    where = (a.station or "?").rsplit("/", 2)[-2:]
    seq = f" #{a.seq}" if a.seq is not None else ""
    what = ""
    if a.kind in ("positive", "confirmed-positive", "qc-failed"):
        what = f" 样品 {d.get('sample')} 项目 {d.get('analyte')}"
        if d.get("producer"):
            what += f" 生产者 {d.get('producer')}"
    elif a.kind == "gap":
        what = f" 缺失序号 {d.get('missing')}"
    elif a.kind == "silent":
        what = f" 最后联系 {d.get('last_seen')}"
    else:
        what = f" {str(d.get('reason', ''))[:120]}"
    return f"【{a.title}】{'/'.join(where)}{seq}{what}（{a.raised_at}）"


def body(hook: Webhook, batch: list[Alert]) -> bytes:
    """The POST body for one alert (len 1) or an aggregate of several."""
    if hook.fmt == "json":
        items = [{"id": a.id, "kind": a.kind, "title": a.title, "station": a.station, "seq": a.seq,
                  "raised_at": a.raised_at, "detail": a.detail} for a in batch]
        doc = items[0] if len(items) == 1 else {"kind": "aggregate", "count": len(items), "alerts": items}
        return json.dumps(doc, ensure_ascii=False).encode("utf-8")
    listed = batch[:AGGREGATE_LISTED]
    lines = [_line(a) for a in listed]
    if len(batch) > len(listed):
        lines.append(f"……另有 {len(batch) - len(listed)} 条预警，请在看板查看")
    title = batch[0].title if len(batch) == 1 else f"农安检测预警汇总（{len(batch)} 条）"
    if hook.fmt.endswith("-text"):
        text = "\n".join([title] + lines if len(batch) > 1 else lines)
        return json.dumps({"msgtype": "text", "text": {"content": text}}, ensure_ascii=False).encode("utf-8")
    md = f"### {title}\n" + "\n".join(f"> {ln}" for ln in lines)
    if hook.fmt == "wecom":
        doc = {"msgtype": "markdown", "markdown": {"content": md}}
    else:
        doc = {"msgtype": "markdown", "markdown": {"title": title, "text": md}}
    return json.dumps(doc, ensure_ascii=False).encode("utf-8")


def accepted(hook: Webhook, status: int, response: bytes) -> str | None:
    """None if the target took the message, else why not. Robots answer HTTP 200 with an errcode."""
    if not 200 <= status < 300:
        return f"HTTP {status}"
    if hook.robot:
        try:
            code = json.loads(response or b"{}").get("errcode", 0)
        except (ValueError, AttributeError):
            return f"robot answered non-JSON {response[:80]!r}"
        if code != 0:
            return f"robot errcode {code}"
    return None
