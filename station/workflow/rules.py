# The rules of one sample: photograph again?, what is recordable, which light to show.
from __future__ import annotations

from station.protocol.result import RESULT_VERDICTS


def needs_retake(score, attempt: int, retakes: int) -> bool:
    """Photograph again while attempts remain and the picture as a whole, or any cassette, asked for it."""
    if attempt >= retakes:
        return False
    return bool(score.error) or not score.strips or any(s.verdict == "retake" for s in score.strips)


def problems(score) -> str:
    """What kept the photograph, or some cassettes on it, from being read, in words the operator can act on."""
    parts = [p for p in (score.error, None if score.strips else score.reason) if p]
    parts += [f"slot {s.slot}: {s.reason or ', '.join(s.quality) or 'unreadable'}"
              for s in score.strips if s.verdict == "retake"]
    return "; ".join(parts)


def recordable(score) -> list:
    """Strips whose verdict is a finding about the sample; a retake is a request, never a result."""
    return [s for s in score.strips if s.verdict in RESULT_VERDICTS]


REFUSED_WORDS = "refused — call the technician"  # what the operator is told when storage failed


def indication(verdicts: list[str], had_problem: bool, storage_fault: bool = False) -> str:
    """The panel state for a press: a storage fault (nothing could be kept) first, then the most consequential
    verdict; "retake" only where photographing again can help."""
    if storage_fault:
        return "refused"
    for v in ("positive", "invalid", "negative"):
        if v in verdicts:
            return "retake" if had_problem and v == "negative" else v
    return "retake"


CONFIRMED = ("confirmed_positive", "resolved_positive")  # a re-test chain's statuses that end in "positive"


def chain_indication(state: str, recorded: list[dict]) -> str:
    """A verdict's light refined by the re-test chain: "re-test this sample" for a first positive or a dispute
    (a negative re-test of a positive is no all-clear), "confirmed" once the chain ends positive."""
    if state not in ("positive", "negative"):
        return state
    if any((r.get("retest") or {}).get("status") in CONFIRMED for r in recorded) and state == "positive":
        return "confirmed"
    if any(r.get("retest_required") for r in recorded):
        return "retest"
    return state


# A quality code of the workflow, not of the picture: the card was photographed after its read window closed.
READ_WINDOW_MISSED = "READ_WINDOW_MISSED"
READ_WINDOW_REASON = "read after its read window closed: lay a new card"


def read_late(laid_at: float, taken_at: float | None, incubation_s: float, read_window_s: float) -> bool:
    """Photographed later than incubation plus the strip type's read window after the card was laid."""
    return taken_at is not None and taken_at - laid_at > incubation_s + read_window_s


def miss_read_window(strips: list) -> list:
    """Late cards are recorded, never dropped (regulatory evidence), but as invalid: the lines measured are kept
    for the record while neither the card's verdict nor any line's stands."""
    for s in strips:
        s.verdict, s.reason = "invalid", READ_WINDOW_REASON
        s.line_verdicts = {}
        if READ_WINDOW_MISSED not in s.quality:
            s.quality.append(READ_WINDOW_MISSED)
    return strips
