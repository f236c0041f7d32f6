# The tray: one Slot per position with its own state and incubation deadline, checked by the loop on every tick
# (no timer threads to race a stop), and which region of the photograph each slot owns.
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class SlotState(StrEnum):
    """A slot's life: laid → incubating → reading (photographs, retakes) → done, or retake when nothing could be
    recorded; done and retake are free for the next cassette."""

    EMPTY = "empty"
    INCUBATING = "incubating"
    READING = "reading"
    DONE = "done"
    RETAKE = "retake"


BUSY = (SlotState.INCUBATING, SlotState.READING)


@dataclass
class Slot:
    number: int  # 1-based, as the operator counts them and `station press --slot` names them
    state: SlotState = SlotState.EMPTY
    job: Any = None  # workflow.job.Job while busy, the last one after
    deadline: float | None = None  # monotonic end of incubation
    spent: bool = False  # its read cassette still lies there (until a photograph shows the region empty)

    @property
    def busy(self) -> bool:
        return self.state in BUSY


class Tray:
    def __init__(self, slots: int = 1):
        self.slots = [Slot(k) for k in range(1, slots + 1)]

    @property
    def size(self) -> int:
        return len(self.slots)

    def slot(self, number: int) -> Slot:
        return self.slots[number - 1]

    def busy(self) -> list[Slot]:
        return [s for s in self.slots if s.busy]

    def lay(self, number: int, job, deadline: float) -> None:
        s = self.slot(number)
        s.state, s.job, s.deadline = SlotState.INCUBATING, job, deadline

    def due(self, now: float) -> list:
        """Jobs whose incubation is over, earliest deadline first; each is returned once (its slot is reading)."""
        out = sorted((s for s in self.slots if s.state == SlotState.INCUBATING and now >= s.deadline),
                     key=lambda s: s.deadline)
        for s in out:
            s.state = SlotState.READING
        return [s.job for s in out]

    def finish(self, number: int, recorded: bool) -> None:
        s = self.slot(number)
        s.state, s.deadline, s.spent = (SlotState.DONE if recorded else SlotState.RETAKE), None, True

    # ---- geometry: slot k is the k-th of N equal regions along the photograph's long side -------------------
    def slot_at(self, center: tuple[float, float], size: tuple[int, int]) -> int:
        """The slot whose region holds a cassette centred at `center` in a photograph of `size` (width, height)."""
        w, h = size
        along, length = (center[0], w) if w >= h else (center[1], h)
        return min(self.size, max(1, int(along * self.size // max(length, 1)) + 1))

    def in_slot(self, number: int, strips: list, size: tuple[int, int] | None) -> list:
        """The cassettes of one slot; with one slot, every cassette in view, exactly as before slots existed."""
        if self.size == 1 or size is None:
            return list(strips)
        return [s for s in strips if self.slot_at(s.center, size) == number]

    def look(self, strips: list, size: tuple[int, int] | None) -> set[int]:
        """The candidates for "the slot the operator just laid": free slots holding a cassette that is not one
        already read. Every photograph of the tray also tells which read cassettes have been taken away."""
        occupied = {self.slot_at(s.center, size) for s in strips} if size else set()
        for s in self.slots:
            s.spent = s.spent and s.number in occupied
        return {s.number for s in self.slots if s.number in occupied and not s.busy and not s.spent}

    def status(self, now: float) -> list[dict]:
        out = []
        for s in self.slots:
            job = s.job
            left = max(0.0, s.deadline - now) if s.state == SlotState.INCUBATING else None
            out.append({"slot": s.number, "state": str(s.state), "sample": job.sample_id if job else None,
                        "producer": job.producer if job else None,
                        "left_s": None if left is None else round(left, 1)})
        return out
