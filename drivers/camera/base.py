# The camera contract: capture() returns one still as the JPEG bytes to keep as evidence, plus where it came from.
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Frame:
    jpeg: bytes  # exactly the bytes stored and hashed; scoring decodes these same bytes
    source: str  # device or file it came from, for the log and the record


class Camera(Protocol):
    name: str

    def new_sample(self) -> None:
        """A new press begins: the next capture is of a new tray; captures until then are retakes of this one."""

    def capture(self) -> Frame: ...

    def close(self) -> None: ...
