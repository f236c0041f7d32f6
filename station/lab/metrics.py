# Reader metrics against generator truth: detection, ratio error, linearity, repeatability, gate hit rates.
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

GATE_KINDS = {"glare": "GLARE", "blur": "BLURRED", "overexposed": "OVEREXPOSED", "underexposed": "UNDEREXPOSED",
              "cut_off": "CUT_OFF", "tilted": "TILTED", "face_down": "WINDOW_NOT_FOUND"}
READ = ("negative", "positive")


@dataclass
class Row:
    name: str
    value: float | None
    target: str
    ok: bool | None
    detail: str = ""


def match(truth: dict[str, Any],
          strips: list[dict[str, Any]]) -> tuple[list[tuple[dict, dict]], list[dict], list[dict]]:
    """Greedy nearest-centre matching; returns (pairs, missed truth cassettes, phantom strips)."""
    cands = []
    for i, c in enumerate(truth["cassettes"]):
        for j, s in enumerate(strips):
            d = math.dist(c["center"], s["center"])
            if d < 0.3 * c["length_px"]:
                cands.append((d, i, j))
    cands.sort()
    ti, sj, pairs = set(), set(), []
    for _, i, j in cands:
        if i not in ti and j not in sj:
            ti.add(i)
            sj.add(j)
            pairs.append((truth["cassettes"][i], strips[j]))
    missed = [c for i, c in enumerate(truth["cassettes"]) if i not in ti]
    phantoms = [s for j, s in enumerate(strips) if j not in sj]
    return pairs, missed, phantoms


def _ratios(d: dict[str, Any]) -> dict[str, float]:
    """Per-test-line ratios of a truth cassette or a strip reading (single-T strips: {"T": ratio})."""
    r = {k: v for k, v in (d.get("tc_ratios") or {}).items() if v is not None}
    if not r and d.get("tc_ratio") is not None:
        r = {"T": d["tc_ratio"]}
    return r


def _within(c: dict[str, Any], s: dict[str, Any], tol: float) -> bool:
    """Every test line's ratio read within tol of the truth."""
    true, meas = _ratios(c), _ratios(s)
    return bool(true) and all(n in meas and abs(meas[n] - v) <= tol for n, v in true.items())


def _clean(truth: dict[str, Any], c: dict[str, Any]) -> bool:
    return not truth["faults"] and not c["faults"] and c["fully_visible"]


def compute(records: list[tuple[dict[str, Any], dict[str, Any], float]]) -> dict[str, Any]:
    """records: (truth, score JSON for the image, milliseconds). Returns rows plus raw numbers."""
    visible = detected = phantoms = 0
    errs, meas, true = [], [], []
    false_retake = clean_total = 0
    groups: dict[int, list[float]] = {}
    no_c = [0, 0]
    faint = [0, 0]
    gates: dict[str, list[int]] = {k: [0, 0] for k in GATE_KINDS}
    empty = [0, 0]
    reversed_ = [0, 0]
    qr = [0, 0]
    times = [ms for _, _, ms in records]
    crashes = gross = 0
    for truth, score, _ in records:
        if score.get("error"):
            crashes += 1
            continue
        pairs, missed, ph = match(truth, score["strips"])
        phantoms += len(ph)
        for c in truth["cassettes"]:
            if c["fully_visible"] and "tilted" not in c["faults"]:
                visible += 1
        for c, _ in pairs:
            if c["fully_visible"] and "tilted" not in c["faults"]:
                detected += 1
        if "empty_tray" in truth["faults"]:
            empty[1] += 1
            empty[0] += int(not score["strips"])
        for c, s in pairs:
            kind_faults = list(truth["faults"]) + list(c["faults"])
            # A ratio given that is far from the truth, whatever the photograph: the one error a reader must not make.
            if s["verdict"] in READ and any(abs(_ratios(s).get(n, v) - v) > 0.2 for n, v in _ratios(c).items()):
                gross += 1
            if _clean(truth, c):
                clean_total += 1
                if s["verdict"] not in READ:
                    false_retake += 1
                    continue
                if "group" in truth:
                    groups.setdefault(truth["group"], []).append(s["tc_ratio"])
                elif c["c_peak"] >= 0.15:
                    # Every test line counts (3-in-1 cards have several).
                    for name, t_true in _ratios(c).items():
                        t_meas = _ratios(s).get(name)
                        if t_meas is not None and 0 <= t_true <= 1.5:
                            errs.append(abs(t_meas - t_true))
                            meas.append(t_meas)
                            true.append(t_true)
            if "no_c" in c["faults"] and not truth["faults"]:
                no_c[1] += 1
                no_c[0] += int(s["verdict"] == "invalid")
            if "reversed" in c["faults"] and not truth["faults"]:
                reversed_[1] += 1
                reversed_[0] += int(s["verdict"] in READ and _within(c, s, 0.08))
            if c.get("qr"):
                qr[1] += 1
                qr[0] += int(s.get("qr") == c["qr"])
            if "faint_c" in c["faults"] and not truth["faults"]:
                faint[1] += 1
                faint[0] += int(s["verdict"] in READ and _within(c, s, 0.25))
            for kind in GATE_KINDS:
                if kind in kind_faults:
                    gates[kind][1] += 1
                    gates[kind][0] += int(s["verdict"] == "retake")
        for c in missed:
            for kind in GATE_KINDS:
                if kind in list(truth["faults"]) + list(c["faults"]) and kind in ("cut_off",):
                    gates[kind][1] += 1

    def rate(a: list[int]) -> float | None:
        return a[0] / a[1] if a[1] else None

    e = np.array(errs) if errs else np.array([np.nan])
    r = float(np.corrcoef(meas, true)[0, 1]) if len(meas) > 2 else None
    cvs = [float(np.std(v, ddof=1) / np.mean(v)) for v in groups.values() if len(v) >= 3 and np.mean(v) > 0]
    recall = detected / visible if visible else None
    rows = [
        Row("cassette detection recall", recall, ">= 0.99", None if recall is None else recall >= 0.99,
            f"{detected}/{visible}"),
        Row("phantom cassettes", float(phantoms), "0", phantoms == 0),
        Row("T/C abs error, mean", float(np.mean(e)), "<= 0.03", bool(np.mean(e) <= 0.03), f"n={len(errs)}"),
        Row("T/C abs error, p95", float(np.percentile(e, 95)), "<= 0.08", bool(np.percentile(e, 95) <= 0.08)),
        Row("linearity, Pearson r", r, ">= 0.995", None if r is None else r >= 0.995),
        Row("repeatability CV, mean of groups", float(np.mean(cvs)) if cvs else None, "<= 0.02",
            bool(np.mean(cvs) <= 0.02) if cvs else None, f"{len(cvs)} groups x 12"),
        Row("repeatability CV, worst group", float(np.max(cvs)) if cvs else None, "(info)", None),
        Row("control line absent -> invalid", rate(no_c), "1.00", None if not no_c[1] else no_c[0] == no_c[1],
            f"{no_c[0]}/{no_c[1]}"),
        Row("faint C read, ratio within 0.25", rate(faint), "(all)", None if not faint[1] else
            faint[0] == faint[1], f"{faint[0]}/{faint[1]}"),
    ]
    for kind, code in GATE_KINDS.items():
        target = ">= 0.90" if kind in ("glare", "blur", "overexposed") else "(info)"
        v = rate(gates[kind])
        rows.append(Row(f"gated retake: {kind} ({code})", v, target,
                        None if v is None or target == "(info)" else v >= 0.9, f"{gates[kind][0]}/{gates[kind][1]}"))
    rows += [
        Row("reversed cassette read, ratio within 0.08", rate(reversed_), "(info)", None,
            f"{reversed_[0]}/{reversed_[1]}"),
        Row("QR code decoded and tied to its cassette", rate(qr), "(info)", None, f"{qr[0]}/{qr[1]}"),
        Row("empty tray -> no strips", rate(empty), "1.00", None if not empty[1] else empty[0] == empty[1],
            f"{empty[0]}/{empty[1]}"),
        Row("clean strips wrongly gated", false_retake / clean_total if clean_total else None, "(info)", None,
            f"{false_retake}/{clean_total}"),
        Row("ms per photograph, median", float(np.median(times)) if times else None, "(info, eval process)", None),
        Row("gross misreads (abs error > 0.2)", float(gross), "0", gross == 0),
        Row("unreadable images", float(crashes), "0", crashes == 0),
    ]
    return {"rows": rows, "errors": errs}
