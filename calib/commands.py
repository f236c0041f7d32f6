# What each `calib` sub-command does; the parser lives in calib/cli.py, the math in station/decide and calib/standards.
from __future__ import annotations

import argparse
import json
from pathlib import Path

from station.config import load_config
from station.decide.calibration import Calibration, CalibrationStore, make_calibration
from station.decide.qc import QCStore
from station.errors import StationError
from station.home import Home, signing_key_path


def strip_type_of(cfg, name: str):
    if name not in cfg.strip_types:
        raise StationError(f"strip type {name!r} unknown; known: {', '.join(sorted(cfg.strip_types))}")
    return cfg.strip_types[name]


def _line(cal: Calibration) -> str:
    curve = f"  curve LOD {cal.lod:.3g} {cal.unit or ''}".rstrip() if cal.curve and cal.lod is not None else ""
    return (f"{cal.created_at}  {cal.id}  {cal.strip_type:<22} lot {cal.lot or '-':<10} cutoff {cal.cutoff:<7.4g} "
            f"{cal.source:<9} by {cal.by}{curve}  {cal.reason}")


def run_show(home: Home, args: argparse.Namespace) -> int:
    cfg = load_config(home.root)
    store = CalibrationStore(home.root)
    try:
        if args.id:
            cal = store.get(args.id)
            print(json.dumps({"id": cal.id, **cal.body()}, indent=1, ensure_ascii=False))
            return 0
        rows = []
        for name, st in sorted(cfg.strip_types.items()):
            cal = store.current(name)
            rows.append({"strip_type": name, "cutoff": cal.cutoff if cal else st.cutoff,
                         "calibration": {"id": cal.id, **cal.body()} if cal else None})
        if args.json:
            print(json.dumps(rows, indent=1, ensure_ascii=False))
            return 0
        for r in rows:
            cal = r["calibration"]
            src = "strip-type default" if cal is None else (f"calibration {cal['id']} lot {cal['lot'] or '-'} "
                                                            f"({cal['source']}, {cal['created_at']}, by {cal['by']})")
            extra = ""
            if cal and cal.get("curve"):
                extra = f"; 4PL, LOD {cal['lod']:.3g} {cal['unit']}, limit {cal['limit']:g} {cal['unit']}"
            print(f"{r['strip_type']:<24} cutoff {r['cutoff']:<7.4g} {src}{extra}")
        print("(the daemon reads calibrations at start: restart it after accepting one)")
        return 0
    finally:
        store.close()


def run_set(home: Home, args: argparse.Namespace) -> int:
    from calib.cli import technician

    cfg = load_config(home.root)
    strip_type_of(cfg, args.strip_type)
    store = CalibrationStore(home.root)
    try:
        cal = store.add(args.strip_type, args.cutoff, lot=args.lot, by=technician(), note=args.reason)
    finally:
        store.close()
    print(f"calibration {cal.id}: {cal.strip_type} cutoff {cal.cutoff} (restart the daemon to apply)")
    return 0


def run_history(home: Home, args: argparse.Namespace) -> int:
    store = CalibrationStore(home.root)
    try:
        cals = store.history(args.strip_type, args.lot)
    finally:
        store.close()
    if args.json:
        print(json.dumps([{"id": c.id, **c.body()} for c in cals], indent=1, ensure_ascii=False))
    else:
        for cal in cals:
            print(_line(cal))
    return 0


def run_export(home: Home, args: argparse.Namespace) -> int:
    from calib.transfer import export_bytes
    from station.host.files import atomic_write
    from station.protocol import signing

    cfg = load_config(home.root)
    key = signing.load_private_key(signing_key_path(home, cfg.station.key_file))
    store = CalibrationStore(home.root)
    try:
        cals = store.history(args.strip_type, args.lot)
    finally:
        store.close()
    if not cals:
        raise StationError("no calibrations match; nothing exported")
    atomic_write(Path(args.out), export_bytes(cals, station=cfg.station.path, key=key, kid=cfg.station.kid))
    print(f"exported {len(cals)} calibrations to {args.out}, signed as {cfg.station.kid} "
          f"(the town verifies with this station's JWK: station pubkey)")
    return 0


def run_import(home: Home, args: argparse.Namespace) -> int:
    from calib.transfer import read_export
    from station.protocol import signing

    cfg = load_config(home.root)
    if args.trust:
        _, public = signing.load_jwk_file(args.trust)
    else:
        public = signing.load_private_key(signing_key_path(home, cfg.station.key_file)).public_key()
    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StationError(f"{path}: cannot read ({exc.strerror or exc})") from None
    payload, cals = read_export(data, public, str(path))
    for cal in cals:
        strip_type_of(cfg, cal.strip_type)
    store = CalibrationStore(home.root)
    try:
        known = {c.id for c in store.history()}
        new = [store.accept(c) for c in cals if c.id not in known]
    finally:
        store.close()
    print(f"{path}: signature and {len(cals)} content hashes verified (from {payload.get('station')}); "
          f"{len(new)} new, {len(cals) - len(new)} already here (restart the daemon to apply)")
    return 0


def fit_series(home: Home, st, lot: str, series: Path, limit: float, unit: str, plot: str | None = None):
    """Read, fit and judge a series (SeriesRefused says why not); the analysis and what `--json` prints."""
    from calib.standards import analyse, measure, read_series

    reps = measure(series, read_series(series), st)
    analysis = analyse(reps, limit, unit, st)
    out = {"ok": True, "strip_type": st.name, "lot": lot, **analysis.to_json(), "accepted": None}
    if plot:
        from calib.plots import curve_plot

        curve_plot(analysis, Path(plot), title=f"{st.name}, lot {lot}")
    return analysis, out


def accept(home: Home, st, lot: str, series: Path, analysis, out: dict, *, by: str, reason: str) -> Calibration:
    """Store the fitted calibration for strip type × lot, with the series it came from; returns it."""
    from calib.standards import series_record

    cal = make_calibration(
        strip_type=st.name, cutoff=round(analysis.cutoff, 4), lot=lot, by=by, reason=reason, source="standards",
        unit=analysis.unit, limit=analysis.limit, curve={k: float(v) for k, v in analysis.curve.to_json().items()},
        lod=analysis.lod, lod_tc=analysis.lod_tc, top=analysis.top, top_tc=analysis.top_tc,
        figures={k: out[k] for k in ("tc_at_limit", "blank_mean", "blank_sd", "sd_at_limit",
                                     "false_negative_at_limit", "false_positive_blank", "fit", "downweighted")},
        series=series_record(series, analysis))
    store = CalibrationStore(home.root)
    try:
        store.accept(cal)
    finally:
        store.close()
    out["accepted"] = cal.id
    return cal


def report(analysis, out: dict, plot: str | None) -> None:
    """The figures a technician reads before accepting."""
    u, c = analysis.unit, analysis.curve
    print(f"{out['strip_type']}, lot {out['lot']}: {out['fit']['points']} replicates at {out['fit']['levels']} levels")
    print(f"  4PL         a={c.a:.4f} b={c.b:.4f} c={c.c:.4g} {u} d={c.d:.4f}   R² {analysis.fit.r2:.4f}, "
          f"residual SD {analysis.fit.scale:.4f}")
    print(f"  blanks      T/C {analysis.blank_mean:.4f} ± {analysis.blank_sd:.4f} (SD)")
    print(f"  LOD         {analysis.lod:.4g} {u} (T/C {analysis.lod_tc:.4f}: blank mean − 3 SD)")
    print(f"  at limit    {analysis.limit:g} {u}: T/C {analysis.tc_at_limit:.4f} ± {analysis.sd_at_limit:.4f}")
    print(f"  cutoff      T/C {analysis.cutoff:.4f}: positive below it; expected false negatives at the limit "
          f"{100 * analysis.false_negative:.1f} %, false positives on blanks {100 * analysis.false_positive:.2f} %")
    for r in analysis.downweighted:
        print(f"  down-weighted: {r.photo} slot {r.slot} ({r.concentration:g} {u}, T/C {r.tc:.3f}, weight "
              f"{r.weight:.2f})")
    for w in analysis.warnings:
        print(f"  warning: {w}")
    if plot:
        print(f"  plot        {plot}")


def run_standards(home: Home, args: argparse.Namespace) -> int:
    from calib.cli import technician

    if args.standards_command == "run":
        from calib.guided import guided

        return guided(home, args)
    cfg = load_config(home.root)
    st = strip_type_of(cfg, args.strip_type)
    series = Path(args.series).absolute()
    analysis, out = fit_series(home, st, args.lot, series, args.limit, args.unit, args.plot)
    if args.accept:
        accept(home, st, args.lot, series, analysis, out, by=args.by or technician(), reason=args.reason)
    if args.json:
        print(json.dumps(out, indent=1, ensure_ascii=False))
        return 0
    report(analysis, out, args.plot)
    print(f"  accepted as calibration {out['accepted']} (restart the daemon to apply)" if out["accepted"] else
          "  not stored: add --accept to make it the calibration for this strip type and lot")
    return 0


def run_qc(home: Home, args: argparse.Namespace) -> int:
    store = QCStore(home.root)
    try:
        if args.qc_command == "add":
            r = store.add(args.lot, args.tc, args.at)
        state = store.state(args.lot)
    finally:
        store.close()
    if args.qc_command == "add":
        j = state.latest
        judged = "baseline" if j is None or j.baseline else f"{j.z:+.2f} SD"
        print(f"lot {args.lot}: control T/C {r.tc} at {r.at} ({judged}{', ' + j.rule if j and j.rule else ''})")
    elif args.qc_command == "chart":
        from calib.plots import qc_chart

        qc_chart(state, Path(args.out))
        print(f"lot {args.lot}: {len(state.judged)} control cards charted to {args.out}")
    else:
        doc = {"lot": args.lot, "mean": state.mean, "sd": state.sd, "readings": len(state.judged),
               "blocked": state.blocked, "warning": state.warning,
               "hits": [{"at": j.reading.at, "tc": j.reading.tc, "z": round(j.z, 3), "rule": j.rule}
                        for j in state.judged if j.rule]}
        if args.json:
            print(json.dumps(doc, indent=1))
            return 0
        target = "establishing baseline" if state.mean is None else f"target {state.mean:.4f} ± {state.sd:.4f}"
        print(f"lot {args.lot}: {doc['readings']} control cards, {target}")
        for h in doc["hits"]:
            print(f"  {h['at']}  T/C {h['tc']:.4f}  {h['z']:+.2f} SD  {h['rule']}")
    if state.blocked:
        print(state.blocked)
    elif state.warning:
        print(f"warning: {state.warning}")
    return 0
