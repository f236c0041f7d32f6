# Raspberry Pi CSI camera through picamera2 (apt only; OpenCV cannot open CSI cameras on Bookworm).
#
# A strip reading compares line intensities between photographs, so nothing may float between them: exposure,
# gain, white balance and focus are fixed before start, and every frame kept is one whose metadata shows those
# values in force. Frames are discarded until it does (the pipeline applies controls a few frames late).
from __future__ import annotations

from dataclasses import dataclass

from drivers.camera.base import Frame
from drivers.errors import DeviceError, DeviceNotFound, DeviceTimeout

MAX_SETTLE_FRAMES = 30  # ~1-2 s at still-mode frame rates; beyond that the controls are not going to take
FRESH_FRAMES = 2  # frames queued before this capture may show the tray as it was: drop them every time
EXPOSURE_TOLERANCE = 0.02  # sensors quantise exposure to whole lines, gain to register steps
GAIN_TOLERANCE = 0.03
COLOUR_TOLERANCE = 0.01
LENS_TOLERANCE = 0.1  # dioptres


@dataclass(frozen=True)
class Locked:
    """The fixed settings; the technician measures them once for the station's light box."""

    exposure_us: int
    analogue_gain: float
    red_gain: float
    blue_gain: float
    lens_position: float  # dioptres (1 / metres); ignored by fixed-focus modules


class Picamera2Camera:
    def __init__(self, index: int, width: int, height: int, locked: Locked, *, warmup_frames: int = 5,
                 jpeg_quality: int = 92):
        self.index, self.size, self.locked = index, (width, height), locked
        self.name = f"picamera2:{index}"
        self._device = f"camera picamera2:{index}"
        self._warmup, self._quality = max(warmup_frames, FRESH_FRAMES), jpeg_quality
        self._cam = None
        self._focus = False
        self.last_metadata: dict = {}  # of the frame last returned: what was really in force, for the log
        self._open()

    # ---- open / close ----------------------------------------------------------------------------------------
    def _open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise DeviceNotFound(self._device, "picamera2 is not installed: sudo apt install python3-picamera2, "
                                 "and the venv needs --system-site-packages") from None
        try:
            cam = Picamera2(self.index)
        except (IndexError, RuntimeError, OSError) as exc:
            raise DeviceNotFound(self._device, f"cannot open ({exc}); is the ribbon cable seated and "
                                 "`rpicam-hello --list-cameras` listing it?") from None
        try:
            controls = self._controls(cam.camera_controls)
            # Controls in the configuration take effect from the first frame; set_controls before start says it
            # again for picamera2 versions that apply configuration controls only after start.
            config = cam.create_still_configuration(main={"size": self.size, "format": "RGB888"}, buffer_count=2,
                                                    controls=controls)
            cam.configure(config)
            cam.set_controls(controls)
            cam.start()
        except Exception as exc:  # noqa: BLE001 - libcamera raises bare RuntimeErrors and more; always close
            _close_quietly(cam)
            raise DeviceError(self._device, f"cannot configure {self.size[0]}x{self.size[1]} with locked "
                              f"controls: {exc}") from None
        self._cam, self._fresh_open = cam, True

    def _controls(self, available: dict) -> dict:
        lk = self.locked
        controls = {"AeEnable": False, "ExposureTime": int(lk.exposure_us), "AnalogueGain": float(lk.analogue_gain),
                    "AwbEnable": False, "ColourGains": (float(lk.red_gain), float(lk.blue_gain))}
        # Only modules with a motor (Camera Module 3) have AfMode; a fixed-focus one is focused by hand.
        self._focus = "AfMode" in available
        if self._focus:
            from libcamera import controls as lc

            controls["AfMode"] = lc.AfModeEnum.Manual
            controls["LensPosition"] = float(lk.lens_position)
        return controls

    def close(self) -> None:
        cam, self._cam = self._cam, None
        _close_quietly(cam)

    # ---- capture ---------------------------------------------------------------------------------------------
    def probe(self) -> None:
        """A settled frame at start: proves the camera delivers and the locked controls take (before READY)."""
        self.capture()

    def new_sample(self) -> None:
        pass  # a live camera always sees the tray as it is now

    def unsettled(self, md: dict) -> list[str]:
        """What in this frame's metadata differs from the locked settings (empty: the frame may be kept)."""
        lk, off = self.locked, []

        def far(name: str, got: object, want: float, tol: float, relative: bool = True) -> None:
            if not isinstance(got, int | float):
                off.append(f"{name} missing from metadata")
            elif abs(got - want) > (tol * abs(want) if relative else tol):
                off.append(f"{name} {got} (want {want})")

        far("ExposureTime", md.get("ExposureTime"), lk.exposure_us, EXPOSURE_TOLERANCE)
        far("AnalogueGain", md.get("AnalogueGain"), lk.analogue_gain, GAIN_TOLERANCE)
        gains = md.get("ColourGains")
        if not (isinstance(gains, list | tuple) and len(gains) == 2):
            off.append("ColourGains missing from metadata")
        else:
            far("ColourGains[red]", gains[0], lk.red_gain, COLOUR_TOLERANCE)
            far("ColourGains[blue]", gains[1], lk.blue_gain, COLOUR_TOLERANCE)
        if self._focus:
            far("LensPosition", md.get("LensPosition"), lk.lens_position, LENS_TOLERANCE, relative=False)
        return off

    def capture(self) -> Frame:
        if self._cam is None:
            self._open()  # closed after an earlier error: a fresh open is what clears a wedged pipeline
        try:
            img, md = self._settled_frame()
        except DeviceTimeout:
            raise
        except Exception as exc:  # noqa: BLE001 - any libcamera failure: close now, reopen on the next capture
            self.close()
            raise DeviceError(self._device, f"capture failed ({exc}); closed, will reopen on the next capture") \
                from None
        import cv2

        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self._quality])
        if not ok:
            raise DeviceError(self._device, "JPEG encoding failed")
        self.last_metadata = md
        return Frame(jpeg=buf.tobytes(), source=self.name)

    def _settled_frame(self) -> tuple[object, dict]:
        skip = self._warmup if self._fresh_open else FRESH_FRAMES
        self._fresh_open = False
        off: list[str] = []
        for n in range(skip + MAX_SETTLE_FRAMES):
            request = self._cam.capture_request()
            try:
                md = dict(request.get_metadata())
                off = self.unsettled(md)
                if n >= skip and not off:
                    return request.make_array("main"), md
            finally:
                request.release()  # a request not released starves the pipeline of buffers
        self.close()
        raise DeviceTimeout(self._device, f"controls not in force after {MAX_SETTLE_FRAMES} frames: "
                            f"{'; '.join(off)}; closed, will reopen on the next capture")


def _close_quietly(cam: object) -> None:
    if cam is None:
        return
    for step in ("stop", "close"):
        try:
            getattr(cam, step)()
        except Exception:  # noqa: BLE001, S110 - closing a failed camera must not hide the original error
            pass
