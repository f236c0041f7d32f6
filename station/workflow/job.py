# Samples in flight, one per tray slot: press, incubation, photographs and retakes to recorded results and replies.
from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from station.events import Press, Reply, Scanned, Scored, StationState
from station.workflow import rules
from station.workflow.scans import Scans
from station.workflow.tray import Tray

log = logging.getLogger("station.app")

SHOW_RESULT_S = 600.0  # how long a verdict stays lit before the panel returns to idle
SHOW_REFUSAL_S = 10.0  # "press with --slot" is a hint, not a state of the station
# A control card's outcome is news for a moment only: the lot's gate (the red blink while it still refuses
# samples) is what the panel must go back to, not a green that reads as "go ahead".
SHOW_QC_S = 8.0

_job_ids = itertools.count(1)


@dataclass
class Job:
    """A press being served. Lives in the loop only; workers get the fields they need."""

    origin: str  # "button" or "socket"
    sample_id: str | None = None
    producer: str | None = None  # from a scanned producer information card: the record's sample.producer
    strip_type_name: str | None = None
    task: str | None = None  # the plan task named at the press; else station/orders.py matches one
    product: str | None = None
    replies: list[Reply] = field(default_factory=list)
    scanned: dict[str, str] = field(default_factory=dict)  # scans this press took; given back if nothing is recorded
    attempt: int = 0
    qc: str | None = None  # a control card's control (negative|positive); see workflow/daily.py
    retest_of: str | None = None
    id: int = field(default_factory=lambda: next(_job_ids))
    position: int = 1  # the tray slot it lies in
    slot: int | None = None  # sample.slot in the record: None on a one-slot tray pressed without --slot
    laid_at: float = 0.0  # monotonic
    survey: bool = False  # not laid yet: a photograph to find which free slot the button's cassette lies in
    started: Reply | None = None


class Workflow:
    """The samples in flight on the tray and what the panel shows; driven only by the loop's events and ticks.

    `acquire(job)` starts a worker that posts Scored back (one at a time: the camera is one device);
    `record(job, frame, strips)` commits results; `refusal()` says why no sample may be taken now, or None.
    """

    def __init__(self, *, strip_types: dict, default_type: str, retakes: int, wait_incubation: bool,
                 camera, panel, acquire: Callable[[Job], None], record: Callable, refusal: Callable[..., str | None],
                 on_done: Callable[[], None], slots: int = 1, incubation_s: int = -1,
                 producer_patterns: tuple[str, ...] = ()):
        self.strip_types, self.default_type = strip_types, default_type
        self.retakes, self.wait_incubation, self.incubation_override = retakes, wait_incubation, incubation_s
        self.camera, self.panel = camera, panel
        self._acquire, self._record, self._refusal, self._on_done = acquire, record, refusal, on_done
        self.tray = Tray(slots)
        self.scans = Scans(producer_patterns)
        self._waiting: deque[Job] = deque()  # due for a photograph while the camera serves another job
        self._camera_job: Job | None = None
        self.state = StationState.STARTING
        self._shown_at: float | None = None  # when the panel began showing the last verdict
        self._show_for = SHOW_RESULT_S

    def strip_type(self, name: str | None):
        return self.strip_types[name or self.default_type]

    def incubation_s(self, strip_type_name: str | None) -> float:
        """The one place that decides how long a press waits; the control socket's reply timeout uses it too."""
        if not self.wait_incubation:
            return 0.0
        if self.incubation_override >= 0:
            return float(self.incubation_override)
        return float(self.strip_type(strip_type_name).incubation_s)

    @property
    def busy(self) -> bool:
        return bool(self.tray.busy() or self._camera_job or self._waiting)

    def ready(self) -> None:
        self.state = StationState.IDLE
        self.show_ready()

    def show_ready(self) -> None:
        self.panel.show("refused" if self._refusal() else "working" if self.busy else "idle")

    def refresh_panel(self) -> None:
        """The refusal changed (disk filled or freed): relight unless a sample is being read. A refusal
        replaces a verdict still lit (the verdict was told already; "call the technician" is news), while
        the end of one does not hide a verdict."""
        if self.busy:
            return
        if self._refusal():
            self._shown_at = None
            self.panel.show("refused")
        elif self._shown_at is None:
            self.show_ready()

    # ---- events -------------------------------------------------------------------------------------
    def press(self, ev: Press) -> None:
        many = self.tray.size > 1
        if ev.slot is not None and not 1 <= ev.slot <= self.tray.size:
            return _refuse(ev, f"slot {ev.slot} does not exist: this tray has slots 1..{self.tray.size}")
        if many and ev.slot is None:
            return self._find_slot(ev)
        slot = self.tray.slot(ev.slot or 1)
        if slot.busy:
            log.info("press from %s ignored: slot %d is %s", ev.origin, slot.number, slot.state)
            if not many:
                return _refuse(ev, "busy: a sample is being read; press again when it is shown")
            return _refuse(ev, f"slot {slot.number} is busy ({slot.state}, sample {slot.job.sample_id or 'unnamed'})"
                           "; lay the card in a free slot and press with its --slot")
        if self._refused(ev):
            return
        job = _job_of(ev, slot=ev.slot)
        self.camera.new_sample()
        self._lay(job, slot.number)

    def scanned(self, ev: Scanned) -> None:
        problem = self.scans.add(ev.code, ev.device)
        if problem:
            log.error(problem)
            return
        if hasattr(self.panel, "acknowledge"):
            self.panel.acknowledge()

    def tick(self, now: float) -> None:
        for job in self.tray.due(now):
            self._photograph(job)
        if self._shown_at is not None and now - self._shown_at >= self._show_for:
            # A verdict left lit for hours would be read as the verdict of whatever lies on the tray now.
            self._shown_at = None
            self.show_ready()

    def scored(self, ev: Scored) -> None:
        if ev.job is self._camera_job:
            self._camera_job = None
        try:
            if ev.job.survey:
                self._surveyed(ev)
            else:
                self._read(ev)
        finally:
            self._pump()

    def status(self, now: float) -> dict:
        return {"slots": self.tray.status(now), "scanned": self.scans.waiting()}

    # ---- steps --------------------------------------------------------------------------------------
    def _refused(self, ev: Press) -> bool:
        refusal = self._refusal(ev)  # this press's own: its strip type's lot and QC, its --retest-of
        if refusal:
            log.error(refusal)
            self.panel.show("refused")
            _refuse(ev, refusal)
        return bool(refusal)

    def _find_slot(self, ev: Press) -> None:
        """The button on a tray of several slots: photograph the tray to see where the new card lies."""
        if any(j.survey for j in (self._camera_job, *self._waiting) if j):
            return _refuse(ev, "busy: finding which slot was just laid; press again in a moment")
        if not any(not s.busy for s in self.tray.slots):
            return _refuse(ev, "every slot is busy; press again when a slot is shown")
        if self._refused(ev):
            return
        job = _job_of(ev, survey=True)
        self.camera.new_sample()
        self.state = StationState.WORKING
        self._photograph(job)

    def _surveyed(self, ev: Scored) -> None:
        job = ev.job
        if ev.error is not None:
            self._hint(job, f"the tray could not be photographed to find the slot laid: {ev.error}")
            return
        new = sorted(self.tray.look(ev.score.strips, ev.score.size))
        if len(new) != 1:
            why = (f"new cards in slots {', '.join(map(str, new))}" if new else "no new card in a free slot")
            self._hint(job, f"cannot tell which slot was laid ({why}): press with --slot N")
            return
        job.survey, job.slot = False, new[0]
        log.info("sample %d: found laid in slot %d", job.id, new[0])
        self._lay(job, new[0])

    def _hint(self, job: Job, message: str) -> None:
        log.warning("press from %s: %s", job.origin, message)
        self.state = StationState.WORKING if self.busy else StationState.IDLE
        self.panel.show("refused")
        self._shown_at, self._show_for = time.monotonic(), SHOW_REFUSAL_S
        for send in (*job.replies, job.started):
            if send:
                send({"ok": False, "error": message})

    def _lay(self, job: Job, number: int) -> None:
        got = self.scans.take(job.sample_id)
        job.scanned = {k: v for k, v in (("sample", None if job.sample_id else got.sample),
                                         ("producer", got.producer)) if v}
        job.sample_id, job.producer, job.position = got.sample, got.producer, number
        wait_s = self.incubation_s(job.strip_type_name)
        # Laid (and its read window started) before anyone is told so: the clock of the card runs from here.
        job.laid_at = now = time.monotonic()
        # A deadline the loop checks, not a timer thread: a stop during incubation is not held up.
        self.tray.lay(number, job, now + wait_s)
        if job.started:
            job.started({"ok": True, "queued": True, "job": job.id,
                         **({"slot": number} if self.tray.size > 1 or job.slot is not None else {})})
        self.state = StationState.WORKING
        self.panel.show("working")
        self._shown_at = None
        if wait_s > 0:
            log.info("sample %d: slot %d incubating %d s", job.id, number, wait_s)
        if wait_s <= 0:
            self.tick(now)

    def _photograph(self, job: Job, first: bool = False) -> None:
        (self._waiting.appendleft if first else self._waiting.append)(job)
        self._pump()

    def _pump(self) -> None:
        if self._camera_job is None and self._waiting:
            self._camera_job = self._waiting.popleft()
            self._acquire(self._camera_job)

    def _read(self, ev: Scored) -> None:
        job, frame = ev.job, ev.frame
        if ev.error is not None:
            log.error("sample %d: %s", job.id, ev.error)
            self._finish(job, "refused", {"ok": False, "error": str(ev.error)})
            return
        self.tray.look(ev.score.strips, ev.score.size)
        score = self._view(job, ev.score)
        st = self.strip_type(job.strip_type_name)
        late = rules.read_late(job.laid_at, ev.taken_at, self.incubation_s(job.strip_type_name), st.read_window_s)
        if not late and rules.needs_retake(score, job.attempt, self.retakes):
            job.attempt += 1
            log.info("sample %d: photographing again (%s)", job.id, rules.problems(score))
            self._photograph(job, first=True)  # the same card, as close to its read window as it can be
            return
        if late:
            log.error("sample %d: slot %d photographed %.0f s after it was laid, past its read window (%d + %d s):"
                      " recorded as invalid, %s", job.id, job.position, ev.taken_at - job.laid_at,
                      self.incubation_s(job.strip_type_name), st.read_window_s, rules.READ_WINDOW_MISSED)
        strips = rules.miss_read_window(score.strips) if late else rules.recordable(score)
        recorded, failure, fault = self._record(job, frame, strips) if strips else ([], None, False)
        problems = "; ".join(p for p in (None if late else rules.problems(score), failure) if p)
        state = rules.indication([s.verdict for s in strips], bool(problems), storage_fault=fault)
        state = rules.chain_indication(state, recorded)  # "re-test this sample", "confirmed positive"
        reply = {"ok": bool(recorded), "results": recorded, "photo": frame.source}
        if any(r.get("retest_required") for r in recorded):
            reply["retest_required"] = True  # a positive (or a dispute): the operator re-tests the same sample
        if self.tray.size > 1 or job.slot is not None:
            reply["slot"] = job.position
        if fault:
            # Photographing again cannot help when the photograph or the result cannot be stored.
            reply["error"] = f"{rules.REFUSED_WORDS}: {failure}"
        elif problems:
            reply["retake"] = problems
        if not recorded and not fault:
            reply["error"] = f"nothing recorded: {problems or 'no cassette could be read'}"
        self._finish(job, state, reply)

    def _view(self, job: Job, score):
        """The photograph as this slot's job sees it: only the cassettes in its region."""
        if self.tray.size == 1:
            return score
        mine = self.tray.in_slot(job.position, score.strips, score.size)
        reason = score.reason if mine or not score.strips else (
            f"no cassette in slot {job.position}: lay it inside its region of the tray")
        return dataclasses.replace(score, strips=mine, reason=reason)

    def _finish(self, job: Job, state: str, reply: dict) -> None:
        self.tray.finish(job.position, bool(reply.get("results")))
        if job.scanned and not reply.get("results"):
            # Nothing recorded (empty tray, a fault): the scans still belong to the cassette about to be laid,
            # unless the operator has scanned another code since.
            self.scans.give_back(job.scanned)
            log.info("sample %d: nothing recorded; scanned %s kept for the next press", job.id,
                     ", ".join(job.scanned.values()))
        many = self.tray.size > 1
        self.panel.show(state, slot=job.position) if many else self.panel.show(state)
        self._shown_at, self._show_for = time.monotonic(), SHOW_QC_S if job.qc else SHOW_RESULT_S
        self.state = StationState.WORKING if self.busy else StationState.IDLE
        for send in job.replies:
            send(reply)
        self._on_done()


def _refuse(ev: Press, error: str) -> None:
    if ev.reply:
        ev.reply({"ok": False, "error": error})
    elif ev.started:
        ev.started({"ok": False, "error": error})


def _job_of(ev: Press, **where) -> Job:
    """The job a press asks for: its sample, strip type, plan task, control card or re-test, and its replies."""
    return Job(origin=ev.origin, sample_id=ev.sample, strip_type_name=ev.strip_type, task=ev.task,
               product=ev.product, qc=ev.qc, retest_of=ev.retest_of, replies=[ev.reply] if ev.reply else [],
               started=ev.started, **where)
