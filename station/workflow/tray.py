# The tray's incubation deadlines, checked by the loop on every tick: no timer threads to race a stop.
from __future__ import annotations

from dataclasses import dataclass

from station.workflow.job import Job


@dataclass
class Tray:
    """Which job is incubating and until when (monotonic seconds); one deadline for the whole tray today."""

    _incubating: tuple[float, Job] | None = None

    def lay(self, job: Job, deadline: float) -> None:
        self._incubating = (deadline, job)

    def due(self, now: float) -> list[Job]:
        """Jobs whose incubation is over; each is returned once."""
        if self._incubating and now >= self._incubating[0]:
            job = self._incubating[1]
            self._incubating = None
            return [job]
        return []
