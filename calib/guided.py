# `calib standards run`: the guided form; the station's camera photographs each standard, then fit, show, accept.
from __future__ import annotations

import argparse
from collections.abc import Callable

from calib.commands import accept, fit_series, report, strip_type_of
from calib.standards import write_series_file
from station.config import load_config
from station.errors import CalibrationError, SeriesRefused, StationError
from station.home import Home
from station.protocol.wire import now_rfc3339


def _levels(text: str, limit: float) -> list[float]:
    try:
        mults = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CalibrationError(f"--levels {text!r}: need multiples of the limit, e.g. 0,0.25,0.5,1,2,4") from None
    if not mults or any(m < 0 for m in mults):
        raise CalibrationError(f"--levels {text!r}: multiples must be 0 or positive")
    return [m * limit for m in mults]


def _input(prompt: str) -> str:
    try:
        return input(prompt)
    except EOFError:  # stdin closed (a script ran out of answers): stop rather than guess
        raise CalibrationError("no answer on standard input; guided run stopped") from None


def guided(home: Home, args: argparse.Namespace, ask: Callable[[str], str] = _input) -> int:
    """Lay, photograph, check each standard in turn; the photographs and series file stay under calib/series/."""
    from calib.cli import technician
    from drivers import registry
    from drivers.errors import DeviceError
    from station.acquire import decode_jpeg
    from station.decide.verdict import read_photo

    cfg = load_config(home.root)
    st = strip_type_of(cfg, args.strip_type)
    levels = _levels(args.levels, args.limit)
    folder = home.root / "calib" / "series" / f"{st.name}-{args.lot}-{now_rfc3339()[:19].replace(':', '')}"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        camera = registry.open_device("camera", cfg.camera.driver, cfg.camera, cfg.resolve)
    except DeviceError as exc:
        raise StationError(f"{exc} (is the daemon running? it holds the camera: "
                           "sudo systemctl stop nongan-station)") from None
    rows: list[tuple[str, float]] = []
    try:
        for k, conc in enumerate(levels):
            for j in range(args.photos):
                what = "blanks (0)" if conc == 0 else f"standard {conc:g} {args.unit}"
                ans = ask(f"[{k + 1}/{len(levels)}] lay the cassettes run with {what} (photo {j + 1}/{args.photos}), "
                          "incubate, then Enter (q quits): ").strip().lower()
                if ans == "q":
                    print(f"stopped; photographs so far are in {folder}")
                    return 1
                camera.new_sample()
                while True:
                    frame = camera.capture()
                    strips = read_photo(decode_jpeg(frame.jpeg, frame.source), st).strips
                    shown = ", ".join(f"slot {s.slot} T/C {s.tc_ratio:.3f}" if s.tc_ratio is not None else
                                      f"slot {s.slot} unreadable ({s.reason or s.verdict})" for s in strips)
                    ans = ask(f"    read {shown or 'no cassette'}; keep? [Y/r=retake] ").strip().lower()
                    if ans != "r":
                        break
                name = f"level{k}-{j}.jpg"
                (folder / name).write_bytes(frame.jpeg)
                rows.append((name, conc))
    finally:
        camera.close()
    series = write_series_file(folder, rows)
    plot = str(folder / "curve.png")
    try:
        analysis, out = fit_series(home, st, args.lot, series, args.limit, args.unit, plot)
    except SeriesRefused as exc:
        raise SeriesRefused(f"{exc} (series kept in {series})") from None
    report(analysis, out, plot)
    if ask(f"accept as the calibration for {st.name} lot {args.lot}? [y/N] ").strip().lower() != "y":
        print(f"not stored; the series is {series} (calib standards fit --series {series} ... --accept)")
        return 0
    cal = accept(home, st, args.lot, series, analysis, out, by=args.by or technician(), reason=args.reason)
    print(f"accepted as calibration {cal.id} (restart the daemon to apply)")
    return 0
