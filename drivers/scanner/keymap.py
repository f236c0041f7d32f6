# Keyboard-wedge scanners type codes as US-layout key presses: Linux key codes → characters, Enter ends a code.
"""Pure: no device, no evdev import, so every mapping is tested without hardware. The numbers are the
kernel's (linux/input-event-codes.h), the same that python-evdev's ecodes carries."""
from __future__ import annotations

from collections.abc import Iterable

from drivers.scanner.base import MAX_CODE_CHARS

EV_KEY = 1
KEY_UP, KEY_DOWN, KEY_REPEAT = 0, 1, 2
SHIFTS = {42, 54}  # KEY_LEFTSHIFT, KEY_RIGHTSHIFT
CAPSLOCK = 58
ENTERS = {28, 96}  # KEY_ENTER, KEY_KPENTER
IGNORED = {29, 97, 56, 100, 125, 126}  # Ctrl, Alt and Meta keys: some scanners send them around a code

# code: (plain, shifted), US layout.
_ROWS = [(2, "1234567890-=", "!@#$%^&*()_+"), (16, "qwertyuiop[]", "QWERTYUIOP{}"),
         (30, "asdfghjkl;'`", 'ASDFGHJKL:"~'), (43, "\\zxcvbnm,./", "|ZXCVBNM<>?")]
US: dict[int, tuple[str, str]] = {first + i: (p, s) for first, plain, shifted in _ROWS
                                   for i, (p, s) in enumerate(zip(plain, shifted, strict=True))}
US[57] = (" ", " ")  # KEY_SPACE
# The keypad types the same with or without shift (NumLock on, as scanners assume).
US.update({55: ("*", "*"), 74: ("-", "-"), 78: ("+", "+"), 83: (".", "."), 98: ("/", "/"),
           **{code: (d, d) for code, d in zip((82, 79, 80, 81, 75, 76, 77, 71, 72, 73), "0123456789", strict=True)}})


class KeyDecoder:
    """Key events in, finished codes out. Shift is tracked by its own key events, so a shifted character
    needs no lookahead; an unknown key is skipped and counted, never guessed."""

    def __init__(self) -> None:
        self._chars: list[str] = []
        self._shift: set[int] = set()
        self._caps = False
        self._too_long = False
        self.unknown = 0  # key codes with no character in the US map
        self.dropped = 0  # codes longer than MAX_CODE_CHARS

    def feed(self, code: int, value: int) -> str | None:
        """One EV_KEY event (value 1 down, 0 up, 2 repeat); the finished code when it is Enter going down."""
        if code in SHIFTS:
            (self._shift.add if value != KEY_UP else self._shift.discard)(code)
            return None
        if value != KEY_DOWN:
            return None  # releases carry nothing, and a scanner never holds a key long enough to repeat
        if code in ENTERS:
            text, too_long = "".join(self._chars).strip(), self._too_long
            self._chars.clear()
            self._too_long = False
            if too_long:
                self.dropped += 1
                return None
            return text or None
        if code == CAPSLOCK:
            self._caps = not self._caps
            return None
        if code in IGNORED:
            return None
        pair = US.get(code)
        if pair is None:
            self.unknown += 1
            return None
        ch = pair[1] if self._shift else pair[0]
        if self._caps and ch.isalpha():
            ch = ch.swapcase()
        if len(self._chars) >= MAX_CODE_CHARS:
            self._too_long = True
        else:
            self._chars.append(ch)
        return None


def decode_keys(events: Iterable[tuple[int, int]]) -> tuple[list[str], int]:
    """(codes, unknown keys) for a sequence of (key code, value) EV_KEY events."""
    dec = KeyDecoder()
    codes = [c for code, value in events if (c := dec.feed(code, value)) is not None]
    return codes, dec.unknown
