# Writes a MonthReport as .csv (one row per station), .xlsx (openpyxl, four sheets) or .pdf (report_pdf.py).
from __future__ import annotations

import csv
import os
from pathlib import Path

from station.errors import TownOptionError
from station.town.monthly import MonthReport, StationMonth

# (csv column, Chinese heading, value) for each station row; the csv keeps the English names scripts rely on.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("station", "检测站"), ("village", "村"), ("tests", "检测数"), ("positives", "阳性"), ("negatives", "阴性"),
    ("invalid", "无效"), ("retests", "复检"), ("retest_positive", "复检阳性"), ("retest_negative", "复检阴性"),
    ("confirmed_positives", "复检确认阳性"), ("qc_pass_rate", "质控合格率"), ("qc_basis", "质控依据"),
    ("qc_runs", "质控次数"), ("withheld", "未全文送达"), ("late", "迟到结果"), ("unsynced_clock", "时钟未同步"),
    ("missing_seq", "缺失序号"), ("refusals", "拒收消息"), ("last_seen", "最后联系"),
    ("plan_done", "计划已检"), ("plan_quota", "计划任务数"), ("plan", "计划完成（完成/下达）"),
    ("offline_hours", "离线小时"),
)
FORMATS = (".csv", ".xlsx", ".pdf")


def value(s: StationMonth, name: str) -> object:
    v = getattr(s, name)
    if name == "qc_pass_rate":
        return None if v is None else round(v, 4)
    return v


def write(report: MonthReport, out: str | Path) -> Path:
    """Write the report in the format its suffix names; the file appears complete or not at all."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise TownOptionError(f"--out {out}: the suffix must be one of {', '.join(FORMATS)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    if suffix == ".csv":
        write_csv(report, tmp)
    elif suffix == ".xlsx":
        write_xlsx(report, tmp)
    else:
        from station.town.report_pdf import write_pdf

        write_pdf(report, tmp)
    os.replace(tmp, out)
    return out


def write_csv(report: MonthReport, path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([c for c, _ in COLUMNS])
        for s in report.stations:
            w.writerow(["" if (v := value(s, c)) is None else v for c, _ in COLUMNS])


def write_xlsx(report: MonthReport, path: Path) -> None:
    try:
        from openpyxl import Workbook
        from openpyxl.styles import Font
    except ImportError:
        raise TownOptionError("--out: an .xlsx report needs openpyxl (pip install "
                              "'nongan-station[town]'); .csv needs nothing") from None
    wb = Workbook()
    ws = wb.active
    ws.title = "站点汇总"
    ws.append([f"{report.month} 月报（{report.tz}）"])
    ws.append([h for _, h in COLUMNS])
    for s in report.stations:
        ws.append([value(s, c) for c, _ in COLUMNS])
    ws.append(["合计", ""] + [report.total(c) for c, _ in COLUMNS[2:10]])
    for cell in ws[2]:
        cell.font = Font(bold=True)
    ws.column_dimensions["A"].width = 40
    sheet = wb.create_sheet("产品与项目")
    sheet.append(["检测站", "试纸类型", "检测项目", "检测数", "阳性"])
    for (station, typ, analyte), c in sorted(report.products.items()):
        sheet.append([station, typ, analyte, c["tests"], c["positives"]])
    sheet = wb.create_sheet("阳性明细")
    sheet.append(["检测站", "序号", "时间", "样品", "生产者", "检测项目", "试纸类型", "复检"])
    for p in report.positives:
        sheet.append([p["station"], p["seq"], p["time"], p["sample"], p["producer"], p["analyte"], p["strip"],
                      "是" if p["retest"] else "否"])
    sheet = wb.create_sheet("每日")
    sheet.append(["日期", "检测数", "阳性"])
    for day, c in sorted(report.daily.items()):
        sheet.append([day, c["tests"], c["positives"]])
    wb.save(path)
