# The dashboard's HTML (Chinese UI), rendered on the server from dashboard.py's data; every value is escaped.
from __future__ import annotations

import json
from html import escape
from urllib.parse import quote

from station.town.alerts import Alert
from station.town.dashboard import Checked, local_time, online_age

VERDICT = {"positive": "阳性", "negative": "阴性", "invalid": "无效"}
CSS = """
body{font-family:"WenQuanYi Zen Hei","Noto Sans CJK SC","Microsoft YaHei",sans-serif;margin:1.2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #bbb;padding:.25em .6em;font-size:14px}
th{background:#eef2f5}tr.positive td{background:#f8d7da;color:#721c24;font-weight:bold}
.ok{background:#d4edda;color:#155724}.bad{background:#f8d7da;color:#721c24}.warn{background:#fff3cd;color:#856404}
.banner{padding:1em 1.4em;font-size:22px;margin:1em 0;border-radius:6px}
pre{white-space:pre-wrap;word-break:break-all;background:#f6f6f6;padding:.6em;font-size:12px}
nav a{margin-right:1em}
"""


def page(title: str, body: str) -> bytes:
    return (f"<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>{escape(title)}</title>"
            f"<meta name=\"viewport\" content=\"width=device-width\"><style>{CSS}</style></head><body>"
            f"<nav><a href=\"/\">总览</a><a href=\"/search\">查询</a></nav><h1>{escape(title)}</h1>{body}"
            "<p style=\"color:#888;font-size:12px\">只读看板 · 农安快检镇级服务器</p></body></html>").encode()


def _e(v: object) -> str:
    return "-" if v is None else escape(str(v))


def _yes(v: object) -> str:
    return {True: "是", False: "<span class=\"bad\">否</span>"}.get(v, "未知")   # type: ignore[arg-type]


def stations_table(rows: list[dict]) -> str:
    if not rows:
        return "<p>尚无检测站数据。</p>"
    out = ["<table id=\"stations\"><tr><th>检测站</th><th>在线</th><th>最后联系</th><th>待发送</th><th>时钟同步</th>"
           "<th>磁盘剩余</th><th>连续收到</th><th>缺失</th></tr>"]
    for r in rows:
        age = online_age(r["last_seen"])
        online = "<span class=\"ok\">在线</span>" if r["online"] else "<span class=\"bad\">离线</span>" \
            if r["state"] == "offline" else "未知"
        disk = "-" if r["disk_free_mb"] is None else f"{r['disk_free_mb']} MB（已用 {_e(r['disk_used_pct'])}%）"
        ago = "" if age is None else f"（{int(age.total_seconds() // 60)} 分钟前）"
        missing = f"<span class=\"bad\">{r['missing']}</span>" if r["missing"] else "0"
        out.append(f"<tr><td>{_e(r['station'])}</td><td>{online}</td><td>{local_time(r['last_seen'])}{ago}</td>"
                   f"<td>{_e(r['outbox'])}</td><td>{_yes(r['clock_synced'])}</td><td>{disk}</td>"
                   f"<td>{r['contiguous']}</td><td>{missing}</td></tr>")
    return "".join(out) + "</table>"


def results_table(rows: list[dict], table_id: str = "results") -> str:
    if not rows:
        return "<p>没有结果。</p>"
    out = [f"<table id=\"{table_id}\"><tr><th>结果</th><th>时间</th><th>样品</th><th>生产者</th><th>结论</th>"
           "<th>T/C</th><th>检测站</th></tr>"]
    for r in rows:
        link = f"/result/{quote(r['id'])}/{r['seq']}"
        cls = " class=\"positive\"" if r["verdict"] == "positive" else ""
        tc = "-" if r["tc_ratio"] is None else f"{r['tc_ratio']:.3f}"
        out.append(f"<tr{cls}><td><a href=\"{link}\">{_e(r['id'])}#{r['seq']}</a></td>"
                   f"<td>{local_time(r['read_at'] or r['received_at'])}</td><td>{_e(r['sample'])}</td>"
                   f"<td>{_e(r['producer'])}</td><td>{_e(VERDICT.get(r['verdict'], r['verdict']))}</td>"
                   f"<td>{tc}</td><td>{_e(r['station'])}</td></tr>")
    return "".join(out) + "</table>"


def alerts_list(items: list[Alert]) -> str:
    if not items:
        return "<p>暂无预警。</p>"
    lis = "".join(f"<li><b>{escape(a.title)}</b> {_e(a.station)}{'' if a.seq is None else ' #' + str(a.seq)} "
                  f"{local_time(a.raised_at)} {escape(json.dumps(a.detail, ensure_ascii=False)[:200])}</li>"
                  for a in items)
    return f"<ul id=\"alerts\">{lis}</ul>"


def index(stations: list[dict], today: list[dict], alerts: list[Alert]) -> bytes:
    positives = sum(r["verdict"] == "positive" for r in today)
    form = "<form action=\"/search\"><input name=\"q\" placeholder=\"样品编号或生产者\"> <button>查询</button></form>"
    return page("农安快检总览", f"{form}<h2>检测站</h2>{stations_table(stations)}"
                f"<h2>今日结果（{len(today)} 条，阳性 {positives} 条，阳性在前）</h2>{results_table(today)}"
                f"<h2>最近预警</h2>{alerts_list(alerts)}")


def search(q: str, rows: list[dict]) -> bytes:
    form = (f"<form action=\"/search\"><input name=\"q\" value=\"{escape(q)}\" placeholder=\"样品编号或生产者\"> "
            "<button>查询</button></form>")
    return page("按样品或生产者查询", form + (results_table(rows, "found") if q else ""))


SIG = {"ok": ("ok", "签名有效（刚刚重新验证）"), "bad": ("bad", "签名无效！"),
       "unknown-key": ("bad", "签名密钥不在信任列表中"),
       "not-checked": ("warn", "未重新验证（看板未配置 --trust），入库时已验证")}
CHAIN = {"linked": ("ok", "与上一条结果的哈希链相连"), "broken": ("bad", "与上一条结果的哈希链不相连"),
         "unknown": ("warn", "镇里尚未收到上一条结果，无法核对哈希链")}


def result(items: list[Checked]) -> bytes:
    parts = []
    for c in items:
        b = c.body
        sample, strip = b.get("sample") or {}, b.get("strip") or {}
        sig_cls, sig_text = SIG[c.signature]
        ch_cls, ch_text = CHAIN[c.chain]
        fields = [("结论", VERDICT.get(b.get("verdict"), b.get("verdict"))), ("样品", sample.get("id")),
                  ("生产者", sample.get("producer")), ("检测项目", strip.get("analyte")), ("试纸", strip.get("type")),
                  ("批号", strip.get("lot")), ("读取时间", local_time((b.get("time") or {}).get("read_at"))),
                  ("时钟同步", "是" if (b.get("time") or {}).get("clock_synced") else "否"),
                  ("T/C", (b.get("reading") or {}).get("tc_ratio")), ("检测站", c.station), ("序号", c.seq),
                  ("镇里收到", local_time(c.received_at)), ("消息 SHA-256", c.msg_hash),
                  ("收据校验码", c.msg_hash[:16])]
        rows = "".join(f"<tr><th>{escape(k)}</th><td>{_e(v)}</td></tr>" for k, v in fields)
        kind = "<p class=\"warn\">仅收到“未全文发送”通知，完整记录尚未送达。</p>" if c.kind == "withheld" else ""
        parts.append(f"<div class=\"banner {sig_cls}\" id=\"signature\">{escape(sig_text)}</div>"
                     f"<p class=\"{ch_cls}\">{escape(ch_text)}</p>{kind}<table>{rows}</table>"
                     f"<h3>签名记录原文（JWS）</h3><pre>{escape(c.message.decode('utf-8', 'replace'))}</pre>")
    return page("检测结果", "".join(parts) if parts else "<p>未找到该结果。</p>")


RECEIPT = {"match": ("ok", "✔ 收据与镇里保存的签名结果一致"),
           "mismatch": ("bad", "✘ 收据与镇里保存的签名结果不一致（可能被改动或伪造）"),
           "not-found": ("warn", "镇里尚未收到这条结果（可能还在传送中），请稍后再查"),
           "withheld": ("warn", "校验码与检测站的通知一致，但完整记录尚未送达"),
           "bad-signature": ("bad", "✘ 镇里保存的这条记录签名无法验证")}


def receipt(state: str, station_id: str, seq: int, items: list[Checked]) -> bytes:
    cls, text = RECEIPT[state]
    body = f"<div class=\"banner {cls}\" id=\"verdict\" data-state=\"{state}\">{escape(text)}</div>"
    body += f"<p>检测站 {escape(station_id)}，序号 {seq}</p>"
    if state in ("match", "withheld") and items:
        b = items[0].body
        body += (f"<p>样品 <b>{_e((b.get('sample') or {}).get('id'))}</b>，检测项目 "
                 f"{_e((b.get('strip') or {}).get('analyte'))}，结论 "
                 f"<b>{_e(VERDICT.get(b.get('verdict'), b.get('verdict')))}</b>，读取时间 "
                 f"{local_time((b.get('time') or {}).get('read_at'))}</p>"
                 f"<p><a href=\"/result/{quote(station_id)}/{seq}\">查看完整签名记录</a></p>")
    return page("收据核验", body)


def error(status: int, text: str) -> bytes:
    return page("出错了" if status != 404 else "未找到", f"<p class=\"bad\">{escape(text)}</p>")
