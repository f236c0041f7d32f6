# The operator panel: one button, green/amber/red LEDs and a buzzer on gpiozero (MockFactory in simulation).
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from drivers.errors import DeviceBusy, DeviceError, Unsupported

PIN_FACTORY_ENV = "GPIOZERO_PIN_FACTORY"

# (green, amber, red) as "on" | "off" | "blink" | "pulse", and beeps: how an operator tells states apart.
INDICATIONS: dict[str, tuple[tuple[str, str, str], int]] = {
    "idle": (("pulse", "off", "off"), 0),  # a heartbeat, so ready is never mistaken for a negative
    "working": (("off", "blink", "off"), 0),
    "negative": (("on", "off", "off"), 1),
    "positive": (("off", "off", "on"), 3),
    # A first positive (or a dispute) asks for a re-test of the same sample: red with amber blinking, "not done".
    "retest": (("off", "blink", "on"), 3),
    # Two positives of one sample: confirmed, send it to the lab; red with an amber heartbeat, five beeps.
    "confirmed": (("off", "pulse", "on"), 5),
    "invalid": (("off", "on", "on"), 2),
    "suspect": (("off", "on", "blink"), 2),  # an instrument's 可疑: re-test needed
    "retake": (("off", "blink", "off"), 2),
    "refused": (("off", "off", "blink"), 4),  # disk full or a device fault: samples are not accepted
}


PATTERN_STEP_S = 0.12  # one step of a slot pattern: a blink is one step on, one off


def slot_pattern(slot: int):
    """Endless groups of `slot` blinks, each group followed by a pause of 6 steps."""
    group = [1, 0] * slot + [0] * 6
    while True:
        yield from group


class Panel:
    def __init__(self, cfg, on_press: Callable[[], None], pins: str | None = None):
        """cfg is a GpioConfig. on_press runs on gpiozero's thread, so it must only post an event.

        pins names a pin factory that overrides both $GPIOZERO_PIN_FACTORY and the config: the fake panel
        passes "mock" so a test never drives real pins.
        """
        self._cfg = cfg
        self._on_press = on_press
        self._last_press = 0.0
        self._lock = threading.Lock()
        self.state = "idle"
        self.slot: int | None = None  # the tray slot the lit verdict belongs to, if the tray has several
        self.pin_factory_name = pins or pin_factory_name(cfg.pin_factory)
        device = f"GPIO ({self.pin_factory_name or 'gpiozero default'}, button pin {cfg.button_pin})"
        try:
            # None: the devices share gpiozero's Device.pin_factory, which gpiozero creates and closes itself.
            self._factory = _pin_factory(self.pin_factory_name) if self.pin_factory_name else None
            from gpiozero import LED, Button, Buzzer

            f = self._factory
            # bounce_time is left to the app: MockPin ignores it and lgpio's varies, so debounce here.
            self.button = Button(cfg.button_pin, pull_up=True, pin_factory=f)
            self.green = LED(cfg.green_led_pin, pin_factory=f)
            self.amber = LED(cfg.amber_led_pin, pin_factory=f)
            self.red = LED(cfg.red_led_pin, pin_factory=f)
            self.buzzer = Buzzer(cfg.buzzer_pin, pin_factory=f)
        except DeviceError:
            raise
        except Exception as exc:  # gpiozero raises many types (BadPinFactory, PinInvalidPin, GPIOPinInUse …)
            raise _error_class(exc)(device, str(exc)) from exc
        self.button.when_pressed = self._pressed
        self.show("idle")

    def _pressed(self) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last_press < self._cfg.debounce_ms / 1000:
                return
            self._last_press = now
        self._on_press()

    def show(self, state: str, slot: int | None = None) -> None:
        """Light a state; with slot k (a tray of several), its steady lights blink in groups of k and the buzzer
        adds k long beeps after the state's own, so the operator can tell which slot the verdict belongs to."""
        if state not in INDICATIONS:
            raise ValueError(f"panel state {state!r} unknown; one of {', '.join(INDICATIONS)}")
        self.state = state
        self.slot = slot
        leds, beeps = INDICATIONS[state]
        for dev in (self.green, self.amber, self.red, self.buzzer):
            if dev.source is not None:
                dev.source = None  # a slot pattern's thread would otherwise keep writing over the new state
        for led, mode in zip((self.green, self.amber, self.red), leds, strict=True):
            if mode == "on" and slot:
                led.source_delay = PATTERN_STEP_S
                led.source = slot_pattern(slot)
            elif mode == "on":
                led.on()
            elif mode == "blink":
                led.blink(on_time=0.25, off_time=0.25)
            elif mode == "pulse":
                led.blink(on_time=0.1, off_time=1.9)
            else:
                led.off()
        if beeps and slot:
            self.buzzer.source_delay = PATTERN_STEP_S
            self.buzzer.source = iter([1, 0] * beeps + [0] * 4 + [1, 1, 1, 0, 0] * slot)
        elif beeps:
            self.buzzer.beep(on_time=0.12, off_time=0.12, n=beeps)

    def beep(self, n: int = 1) -> None:
        """A short chirp that tells a scan was taken; it leaves the LEDs as they are."""
        self.buzzer.beep(on_time=0.05, off_time=0.05, n=n)

    def acknowledge(self) -> None:
        """One short beep: a scanned code was taken (the lights keep telling the station's state)."""
        self.beep(1)

    def lights(self) -> dict[str, bool]:
        return {"green": bool(self.green.value), "amber": bool(self.amber.value), "red": bool(self.red.value)}

    def close(self) -> None:
        for dev in (self.button, self.green, self.amber, self.red, self.buzzer):
            dev.close()
        if self._factory is not None:
            self._factory.close()


def pin_factory_name(configured: str | None) -> str | None:
    """The pins to use: $GPIOZERO_PIN_FACTORY wins (the systemd unit sets it), then gpio.pin_factory.

    None leaves the choice to gpiozero, which tries lgpio, rpigpio, pigpio and native in turn.
    """
    return os.environ.get(PIN_FACTORY_ENV) or configured or None


def _pin_factory(name: str):
    # gpiozero's own registry of pin factories ("mock" is MockFactory), so a name means what it means to gpiozero.
    from importlib.metadata import entry_points

    found = {ep.name: ep for ep in entry_points(group="gpiozero_pin_factories")}
    ep = found.get(name) or found.get(name.lower())
    if ep is None:
        # The config only lets known names through, so an unknown one almost always comes from the environment.
        where = f"${PIN_FACTORY_ENV}=" if os.environ.get(PIN_FACTORY_ENV) == name else ""
        raise Unsupported("GPIO", f"pin factory {where}{name!r} unknown; one of {', '.join(sorted(found))}")
    return ep.load()()


def _error_class(exc: Exception) -> type[DeviceError]:
    from gpiozero import BadPinFactory, GPIOPinInUse

    if isinstance(exc, GPIOPinInUse):
        return DeviceBusy
    if isinstance(exc, BadPinFactory):
        return Unsupported
    return DeviceError
