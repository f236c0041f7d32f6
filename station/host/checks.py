# Hardware and host checks for `station doctor --hardware`: each says OK, WARN or FAIL, what it saw, and the fix.
#
# Checks take plain values (paths, names, URLs), not the station config, so they stay in the host layer; every
# check catches its own surprises, because a doctor that dies with a traceback tells the technician nothing.
from __future__ import annotations

import datetime as dt
import grp
import os
import pwd
import shutil
import socket
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

OK, WARN, FAIL = "OK", "WARN", "FAIL"
SERVICE_USER = "nongan"
DEVICE_GROUPS = ("gpio", "video", "dialout", "input")  # SupplementaryGroups= of the unit
CERT_WARN_DAYS = 30


@dataclass(frozen=True)
class Check:
    level: str
    name: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.level:<4} {self.name:<14} {self.detail}"
        return text + (f"\n{'':19}fix: {self.fix}" if self.fix and self.level != OK else "")


def guarded(name: str, fn: Callable[[], list[Check]]) -> list[Check]:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - report, never crash: the next check may be the one that matters
        return [Check(FAIL, name, f"the check itself failed: {type(exc).__name__}: {exc}",
                      "report this with the output of `station doctor --hardware`")]


def user_and_groups(technician: str | None) -> list[Check]:
    out = []
    try:
        pwd.getpwnam(SERVICE_USER)
        out.append(Check(OK, "service user", f"{SERVICE_USER} exists"))
    except KeyError:
        out.append(Check(FAIL, "service user", f"no user {SERVICE_USER}",
                         "sudo systemd-sysusers /usr/lib/sysusers.d/nongan-station.conf (or rerun install-pi)"))
    missing = []
    for g in DEVICE_GROUPS:
        try:
            grp.getgrnam(g)
        except KeyError:
            missing.append(g)
    out.append(Check(FAIL, "device groups", f"group(s) {', '.join(missing)} missing; the unit's "
                     "SupplementaryGroups= cannot grant them", f"sudo groupadd --system {missing[0]}") if missing
               else Check(OK, "device groups", f"{', '.join(DEVICE_GROUPS)} exist (the unit joins them)"))
    if technician and technician != "root":
        try:
            members = grp.getgrnam(SERVICE_USER).gr_mem
        except KeyError:
            members = []
        out.append(Check(OK, "technician", f"{technician} is in group {SERVICE_USER}") if technician in members else
                   Check(WARN, "technician", f"{technician} is not in group {SERVICE_USER}: `station status` and "
                         "`station press` cannot reach the control socket", f"sudo usermod -aG {SERVICE_USER} "
                         f"{technician}, then log in again"))
    return out


def _device_line(name: str, path: Path, group: str) -> Check:
    st = path.stat()
    try:
        owner = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        owner = str(st.st_gid)
    if owner != group and st.st_mode & 0o006 != 0o006:
        return Check(WARN, name, f"{path} belongs to group {owner} (mode {stat.S_IMODE(st.st_mode):o}), not {group}",
                     f"check the udev rules: ls -l {path}; the service joins group {group} only")
    if not st.st_mode & 0o060 and not st.st_mode & 0o006:
        return Check(WARN, name, f"{path}: group {owner} may not read/write it", f"ls -l {path}; udev rules")
    return Check(OK, name, f"{path} (group {owner}, mode {stat.S_IMODE(st.st_mode):o})")


def gpio_chip(dev: Path = Path("/dev")) -> list[Check]:
    chips = sorted(dev.glob("gpiochip*"))
    if not chips:
        return [Check(FAIL, "gpio chip", f"no {dev}/gpiochip*: the button and LEDs cannot work",
                      "on a Pi this is the kernel's GPIO driver: check `ls /dev/gpiochip*`, update the firmware")]
    out = [_device_line("gpio chip", chips[0], "gpio")]
    try:
        import lgpio  # noqa: F401
        out.append(Check(OK, "lgpio", "importable (GPIOZERO_PIN_FACTORY=lgpio)"))
    except ImportError:
        out.append(Check(FAIL, "lgpio", "python lgpio not importable", "sudo apt install python3-lgpio (the venv "
                         "needs --system-site-packages)"))
    return out


def serial_ports(by_id: Path = Path("/dev/serial/by-id")) -> list[Check]:
    ports = sorted(by_id.glob("*")) if by_id.is_dir() else []
    if not ports:
        return [Check(WARN, "serial", f"nothing in {by_id}: no USB serial reader or printer plugged in",
                      "plug it in and rerun; name readers by /dev/serial/by-id/..., never /dev/ttyUSB0 "
                      "(the number changes between boots)")]
    return [_device_line("serial", p.resolve(), "dialout") for p in ports] + \
        [Check(OK, "serial by id", ", ".join(p.name for p in ports))]


def scanner(driver: str, target: str) -> list[Check]:
    """The [scanner] device: there, in the group the service joins, and (keyboard mode) evdev importable."""
    if driver == "none":
        return [Check(OK, "scanner", "none configured: sample ids come from `station press --sample` or the QR")]
    if driver == "fake":
        return [Check(WARN, "scanner", f"simulated (fake): lines appended to {target} are scans",
                      "set [scanner] device = \"serial:/dev/serial/by-id/…\" for a real scanner")]
    path = Path(target.rpartition("@")[0] if driver == "serial" and target.rpartition("@")[2].isdigit() else target)
    if "://" in target:
        return [Check(OK, "scanner", f"{driver}: {target} (a URL: not checked here)")]
    if not path.exists():
        return [Check(FAIL, "scanner", f"{path} does not exist (unplugged?)", "plug the scanner in; name it by "
                      + ("/dev/serial/by-id/…" if driver == "serial" else "/dev/input/by-id/…-event-kbd"))]
    out = [_device_line("scanner", path.resolve(), "dialout" if driver == "serial" else "input")]
    if driver == "hid":
        try:
            import evdev  # noqa: F401
        except ImportError:
            out.append(Check(FAIL, "scanner", "python evdev not importable (keyboard mode needs it)",
                             "sudo apt install python3-evdev, or set the scanner to virtual-COM mode"))
    return out


def camera(driver: str, device: str, folder: Path) -> list[Check]:
    if driver in ("folder", "fake"):
        n = len([p for p in folder.glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")]) \
            if folder.is_dir() else 0
        return [Check(WARN if n else FAIL, "camera", f"simulated ({driver}): {n} photographs in {folder}",
                      "set [camera] driver = \"picamera2\" (CSI) or \"v4l2\" (USB) in station.toml for a real one")]
    if driver == "v4l2":
        path = Path(device if not device.isdigit() else f"/dev/video{device}")
        if not path.exists():
            return [Check(FAIL, "camera", f"{path} does not exist", "plug the USB camera in; `v4l2-ctl "
                          "--list-devices` shows the right /dev/video*")]
        return [_device_line("camera", path, "video")]
    if driver == "picamera2":
        try:
            from picamera2 import Picamera2
        except ImportError:
            return [Check(FAIL, "camera", "picamera2 not importable", "sudo apt install python3-picamera2; "
                          "the venv must be made with --system-site-packages")]
        found = Picamera2.global_camera_info()  # lists without opening: safe while the daemon holds the camera
        if not found:
            return [Check(FAIL, "camera", "libcamera sees no CSI camera", "power off, reseat the ribbon cable "
                          "(contacts towards the board), then `rpicam-hello --list-cameras`")]
        return [Check(OK, "camera", "; ".join(f"{i}: {c.get('Model')}" for i, c in enumerate(found)))]
    return [Check(FAIL, "camera", f"driver {driver!r} unknown", "see station.toml [camera] driver")]


def clock_sync(run: Callable = subprocess.run) -> list[Check]:
    if not shutil.which("timedatectl"):
        return [Check(WARN, "clock", "timedatectl not found: cannot tell whether the clock is synchronised",
                      "results are ordered by seq and marked clock_synced=false until NTP is known to be good")]
    done = run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"], capture_output=True, text=True,
               timeout=10)
    if done.returncode != 0:
        why = " ".join(done.stderr.split()) or f"exit {done.returncode}"
        return [Check(WARN, "clock", f"timedatectl failed: {why}", "is systemd running?")]
    if done.stdout.strip() == "yes":
        return [Check(OK, "clock", "NTP synchronised")]
    return [Check(WARN, "clock", "not NTP-synchronised (the Pi has no RTC): results say clock_synced=false",
                  "give it network; systemctl status systemd-timesyncd; timedatectl timesync-status")]


def disk(path: Path, warn_pct: float, refuse_pct: float) -> list[Check]:
    u = shutil.disk_usage(path)
    pct = 100.0 * (u.total - u.free) / u.total
    detail = f"{path}: {pct:.1f}% used, {u.free / 2**30:.1f} GiB free"
    if pct >= refuse_pct:
        return [Check(FAIL, "disk", detail + f" (refusing new samples at {refuse_pct}%)",
                      "free space; the station prunes only town-acknowledged photographs")]
    if pct >= warn_pct:
        return [Check(WARN, "disk", detail + f" (warning at {warn_pct}%)", "free space or move data to a larger card")]
    return [Check(OK, "disk", detail)]


def broker(url: str, timeout_s: float = 3.0) -> list[Check]:
    if not url:
        return [Check(WARN, "broker", "no broker.url: offline, results stay queued in the journal",
                      "set [broker] url in station.toml")]
    from station.protocol.mqtt import parse_broker_url

    parsed = parse_broker_url(url)
    host, port = parsed.host, parsed.port
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return [Check(OK, "broker", f"{host}:{port} accepts TCP connections")]
    except socket.gaierror as exc:
        return [Check(FAIL, "broker", f"{host}: name does not resolve ({exc})", "check DNS / the URL")]
    except OSError as exc:
        return [Check(FAIL, "broker", f"{host}:{port} unreachable: {exc}", "check network, firewall, broker")]


def certificate(name: str, path: Path, now: dt.datetime | None = None) -> list[Check]:
    from cryptography import x509

    if not path.is_file():
        return [Check(FAIL, name, f"{path} not found", "install-pi --ca-file/--cert-file, or fix station.toml")]
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    now = now or dt.datetime.now(dt.UTC)
    left = cert.not_valid_after_utc - now
    detail = f"{path.name}: {cert.subject.rfc4514_string()}, valid until {cert.not_valid_after_utc:%Y-%m-%d}"
    if left.total_seconds() <= 0:
        return [Check(FAIL, name, detail + " - EXPIRED", "ask the town technician for a new certificate")]
    if left.days < CERT_WARN_DAYS:
        return [Check(WARN, name, detail + f" - {left.days} days left", "ask the town for a renewal now")]
    return [Check(OK, name, detail)]


def signing_key(home_key: Path, credential: Path = Path("/etc/nongan/station.key")) -> list[Check]:
    for p in (credential, home_key):
        try:
            present = p.is_file()
        except PermissionError:
            return [Check(WARN, "signing key", f"{p.parent} is not readable by this user (root only, as it should)",
                          "run with sudo to check the key")]
        if present:
            mode = stat.S_IMODE(p.stat().st_mode)
            if mode & 0o077:
                return [Check(FAIL, "signing key", f"{p} mode {mode:o}: readable by others", f"chmod 600 {p}")]
            return [Check(OK, "signing key", f"{p} (mode {mode:o})")]
    return [Check(FAIL, "signing key", f"neither {credential} nor {home_key} exists",
                  "restore the key from backup; a new key needs the town to register it")]


def service(unit: str = "nongan-station.service", run: Callable = subprocess.run) -> list[Check]:
    if not shutil.which("systemctl") or not Path("/run/systemd/system").is_dir():
        return [Check(WARN, "service", "systemd is not running here", "on the Pi: systemctl status " + unit)]
    done = run(["systemctl", "show", unit, "-p", "ActiveState,WatchdogUSec,NRestarts"], capture_output=True,
               text=True, timeout=10)
    props = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    if props.get("ActiveState") != "active":
        return [Check(FAIL, "service", f"{unit} is {props.get('ActiveState', 'unknown')}",
                      f"journalctl -u {unit} -n 50; sudo systemctl restart {unit}")]
    return [Check(OK, "service", f"{unit} active, watchdog {props.get('WatchdogUSec')}, "
                  f"{props.get('NRestarts', '?')} restarts")]


def home_owner(home: Path) -> list[Check]:
    st = os.stat(home)
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    if owner != SERVICE_USER:
        return [Check(WARN, "home", f"{home} belongs to {owner}, not {SERVICE_USER}",
                      f"sudo chown -R {SERVICE_USER}:{SERVICE_USER} {home} (if the service runs it)")]
    return [Check(OK, "home", f"{home} owned by {SERVICE_USER}")]
