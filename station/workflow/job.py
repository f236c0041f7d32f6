# One sample: from a press through incubation, photographs and retakes to recorded results and replies.
from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from station.events import Press, Reply, Scanned, Scored, StationState
from station.workflow import rules

log = logging.getLogger("station.app")

SHOW_RESULT_S = 600.0  # how long a verdict stays lit before the panel returns to idle

_job_ids = itertools.count(1)


@dataclass
class Job:
    """A press being served. Lives in the loop only; workers get the fields they need."""

    origin: str  # "button" or "socket"
    sample_id: str | None = None
    producer: str | None = None  # from a scanned producer information card: the record's sample.producer
    strip_type_name: str | None = None
    replies: list[Reply] = field(default_factory=list)
    scanned: dict[str, str] = field(default_factory=dict)  # scans this press took; given back if nothing is recorded
    attempt: int = 0
    id: int = field(default_factory=lambda: next(_job_ids))


class Workflow:
    """The sample being served and what the panel shows; driven only by the loop's events and ticks.

    `acquire(job)` starts a worker that posts Scored back; `record(job, frame, strips)` commits results;
    `refusal()` says why no sample may be taken now (a full disk), or None.
    """

    def __init__(self, *, strip_types: dict, default_type: str, retakes: int, wait_incubation: bool,
                 camera, panel, acquire: Callable[[Job], None], record: Callable, refusal: Callable[[], str | None],
                 on_done: Callable[[], None], producer_patterns: tuple[str, ...] = ()):
        from station.workflow.tray import Tray

        self.strip_types, self.default_type = strip_types, default_type
        self.retakes, self.wait_incubation = retakes, wait_incubation
        self.camera, self.panel = camera, panel
        self._acquire, self._record, self._refusal, self._on_done = acquire, record, refusal, on_done
        self.tray = Tray()
        self.job: Job | None = None
        self.state = StationState.STARTING
        self._shown_at: float | None = None  # when the panel began showing the last verdict
        self.producer_patterns = producer_patterns
        self.scans: dict[str, str] = {}  # "sample" / "producer" → the code scanned for the next press

    def strip_type(self, name: str | None):
        return self.strip_types[name or self.default_type]

    def incubation_s(self, strip_type_name: str | None) -> float:
        """The one place that decides how long a press waits; the control socket's reply timeout uses it too."""
        if not self.wait_incubation:
            return 0.0
        return float(self.strip_type(strip_type_name).incubation_s)

    def ready(self) -> None:
        self.state = StationState.IDLE
        self.show_ready()

    def show_ready(self) -> None:
        self.panel.show("refused" if self._refusal() else "idle")

    def refresh_panel(self) -> None:
        """The refusal changed (disk filled or freed): relight unless a sample is being read. A refusal
        replaces a verdict still lit (the verdict was told already; "call the technician" is news), while
        the end of one does not hide a verdict."""
        if self.job is not None:
            return
        if self._refusal():
            self._shown_at = None
            self.panel.show("refused")
        elif self._shown_at is None:
            self.show_ready()

    def press(self, ev: Press) -> None:
        if self.job is not None:
            log.info("press from %s ignored: sample %d is being read", ev.origin, self.job.id)
            if ev.reply:
                ev.reply({"ok": False, "error": "busy: a sample is being read; press again when it is shown"})
            return
        refusal = self._refusal()
        if refusal:
            log.error(refusal)
            self.panel.show("refused")
            if ev.reply:
                ev.reply({"ok": False, "error": refusal})
            return
        # A scanned sample id serves the next press that names none; a producer card, the next press.
        taken = {k: self.scans.pop(k) for k in ("sample", "producer") if k in self.scans and not (k == "sample"
                                                                                                and ev.sample)}
        job = Job(origin=ev.origin, sample_id=ev.sample or taken.get("sample"), producer=taken.get("producer"),
                  strip_type_name=ev.strip_type, scanned=taken)
        if ev.reply:
            job.replies.append(ev.reply)
        self.job = job
        if ev.started:
            ev.started({"ok": True, "queued": True, "job": job.id})
        self.camera.new_sample()
        self.state = StationState.WORKING
        self.panel.show("working")
        wait_s = self.incubation_s(job.strip_type_name)
        if wait_s > 0:
            log.info("sample %d: incubating %d s", job.id, wait_s)
            # A deadline the loop checks, not a timer thread: a stop during incubation is not held up.
            self.tray.lay(job, time.monotonic() + wait_s)
        else:
            self._acquire(job)

    def scanned(self, ev: Scanned) -> None:
        from station.scans import accept_scan

        taken = accept_scan(ev.code, self.producer_patterns)
        if isinstance(taken, str):
            log.warning("%s: code refused: %s", ev.device or "scanner", taken)
            return
        kind, value = taken
        if kind in self.scans and self.scans[kind] != value:
            log.info("scanned %s %s replaces %s", kind, value, self.scans[kind])
        self.scans[kind] = value
        log.info("scanned %s %s: for the next press", kind, value)
        self.panel.beep()

    def tick(self, now: float) -> None:
        for job in self.tray.due(now):
            self._acquire(job)
        if self._shown_at is not None and now - self._shown_at >= SHOW_RESULT_S and self.job is None:
            # A verdict left lit for hours would be read as the verdict of whatever lies on the tray now.
            self._shown_at = None
            self.show_ready()

    def scored(self, ev: Scored) -> None:
        job, frame, score = ev.job, ev.frame, ev.score
        if ev.error is not None:
            log.error("sample %d: %s", job.id, ev.error)
            self._finish(job, "refused", {"ok": False, "error": str(ev.error)})
            return
        if rules.needs_retake(score, job.attempt, self.retakes):
            job.attempt += 1
            log.info("sample %d: photographing again (%s)", job.id, rules.problems(score))
            self._acquire(job)
            return
        strips = rules.recordable(score)
        recorded, failure, fault = self._record(job, frame, strips) if strips else ([], None, False)
        problems = "; ".join(p for p in (rules.problems(score), failure) if p)
        state = rules.indication([s.verdict for s in strips], bool(problems), storage_fault=fault)
        reply = {"ok": bool(recorded), "results": recorded, "photo": frame.source}
        if fault:
            # Photographing again cannot help when the photograph or the result cannot be stored.
            reply["error"] = f"{rules.REFUSED_WORDS}: {failure}"
        elif problems:
            reply["retake"] = problems
        if not recorded and not fault:
            reply["error"] = f"nothing recorded: {problems or 'no cassette could be read'}"
        self._finish(job, state, reply)

    def _finish(self, job: Job, state: str, reply: dict) -> None:
        if job.scanned and not reply.get("results"):
            # Nothing recorded (empty tray, a fault): the scans still belong to the cassette about to be laid,
            # unless the operator has scanned another code since.
            for kind, value in job.scanned.items():
                self.scans.setdefault(kind, value)
            log.info("sample %d: nothing recorded; scanned %s kept for the next press", job.id,
                     ", ".join(job.scanned.values()))
        self.job = None
        self.panel.show(state)
        self._shown_at = time.monotonic()
        self.state = StationState.IDLE
        for send in job.replies:
            send(reply)
        self._on_done()
