# The month's report as a PDF: summary table, charts per station and per day, the positives (matplotlib, Agg).
# Chinese labels need a CJK font on the machine; without one the PDF is written with English labels and a
# warning, rather than with boxes where the characters should be.
from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from station.errors import TownOptionError
from station.town.monthly import MonthReport

log = logging.getLogger("station.town")

# Families tried in order (Debian: fonts-wqy-zenhei, fonts-noto-cjk; others as installed by hand).
CJK_FAMILIES = ("WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "Noto Sans CJK SC", "Noto Serif CJK SC",
                "Source Han Sans SC", "Source Han Sans CN", "SimHei", "Microsoft YaHei", "AR PL UMing CN")

ZH = {"title": "{m} 农产品快检月报", "station": "检测站", "tests": "检测数", "positives": "阳性",
      "retests": "复检", "qc": "质控合格率", "missing": "缺失序号", "plan": "计划完成",
      "offline": "离线小时", "no_plan": "无计划",
      "per_station": "各检测站检测数与阳性数",
      "per_day": "每日检测数与阳性数", "list": "阳性明细", "none": "本月无阳性", "total": "合计",
      "sample": "样品", "producer": "生产者", "analyte": "项目", "time": "时间"}
EN = {"title": "{m} rapid-test monthly report", "station": "station", "tests": "tests", "positives": "positives",
      "retests": "retests", "qc": "QC pass", "missing": "missing seq", "plan": "plan done/asked",
      "offline": "offline h", "no_plan": "no plan", "per_station": "tests and positives per station",
      "per_day": "tests and positives per day", "list": "positives", "none": "no positives this month",
      "total": "total", "sample": "sample", "producer": "producer", "analyte": "analyte", "time": "time"}


def cjk_font() -> str | None:
    """The family name of an installed CJK font matplotlib can use, or None."""
    from matplotlib import font_manager

    have = {f.name for f in font_manager.fontManager.ttflist}
    return next((f for f in CJK_FAMILIES if f in have), None)


def write_pdf(report: MonthReport, path: Path) -> str | None:
    """Write the PDF; returns the CJK font family used (None: English labels, and a warning was logged)."""
    try:
        import matplotlib

        matplotlib.use("Agg")    # no display on a town server; must precede pyplot
        import matplotlib.pyplot as plt
        from matplotlib.backends.backend_pdf import PdfPages
    except ImportError:
        raise TownOptionError("--out: a .pdf report needs matplotlib (pip install 'nongan-station[town]'); "
                              ".csv needs nothing") from None
    font = cjk_font()
    if font is None:
        log.warning("no CJK font found (tried %s): the PDF has English labels; install fonts-wqy-zenhei or "
                    "fonts-noto-cjk for Chinese", ", ".join(CJK_FAMILIES[:3]))
    L = ZH if font else EN
    rc = {"font.family": [font, "DejaVu Sans"] if font else ["DejaVu Sans"], "axes.unicode_minus": False,
          "pdf.fonttype": 42}
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)   # "weight normal" noise for .ttc
    with plt.rc_context(rc), PdfPages(path) as pdf:
        pdf.infodict()["Title"] = L["title"].format(m=report.month)
        for fig in figures(report, L, plt):
            pdf.savefig(fig)
            plt.close(fig)
    return font


def figures(report: MonthReport, L: dict[str, str], plt) -> Iterator:
    """The pages: summary table, bars per station and lines per day, the positives."""
    short = [s.station.split("/", 2)[-1] for s in report.stations]
    fig = plt.figure(figsize=(8.27, 11.69))              # A4
    fig.suptitle(L["title"].format(m=report.month), fontsize=16)
    ax = fig.add_axes((0.05, 0.05, 0.9, 0.85))
    ax.axis("off")
    rows = [[n, s.tests, s.positives, s.retests, "-" if s.qc_pass_rate is None else f"{s.qc_pass_rate:.1%}",
             s.missing_seq, L["no_plan"] if not s.plan_quota else s.plan.split(" ")[0], f"{s.offline_hours:g}"]
            for n, s in zip(short, report.stations, strict=True)][:45]
    rows.append([L["total"], report.total("tests"), report.total("positives"), report.total("retests"), "",
                 report.total("missing_seq"), "", ""])
    table = ax.table(cellText=rows, colLabels=[L[k] for k in ("station", "tests", "positives", "retests", "qc",
                                                                "missing", "plan", "offline")], loc="upper center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    yield fig

    fig, (a1, a2) = plt.subplots(2, 1, figsize=(11.69, 8.27))
    x = range(len(report.stations))
    a1.bar(x, [s.tests for s in report.stations], label=L["tests"], color="#7aa6c2")
    a1.bar(x, [s.positives for s in report.stations], label=L["positives"], color="#c0392b")
    a1.set_xticks(list(x), short, rotation=60, fontsize=6, ha="right")
    a1.set_title(L["per_station"])
    a1.legend()
    days = sorted(report.daily)
    a2.plot([d[8:] for d in days], [report.daily[d]["tests"] for d in days], label=L["tests"], marker="o")
    a2.plot([d[8:] for d in days], [report.daily[d]["positives"] for d in days], label=L["positives"],
            marker="o", color="#c0392b")
    a2.set_title(L["per_day"])
    a2.legend()
    fig.tight_layout()
    yield fig

    fig = plt.figure(figsize=(8.27, 11.69))
    fig.suptitle(L["list"], fontsize=14)
    ax = fig.add_axes((0.03, 0.05, 0.94, 0.85))
    ax.axis("off")
    if report.positives:
        cells = [[p["time"][5:16], p["station"].rsplit("/", 2)[-1] + f"#{p['seq']}", str(p["sample"])[:18],
                  str(p["producer"] or "-")[:18], str(p["analyte"])[:16]] for p in report.positives[:50]]
        t = ax.table(cellText=cells, colLabels=[L[k] for k in ("time", "station", "sample", "producer",
                                                               "analyte")], loc="upper center")
        t.auto_set_font_size(False)
        t.set_fontsize(7)
    else:
        ax.text(0.5, 0.9, L["none"], ha="center", fontsize=12)
    yield fig
