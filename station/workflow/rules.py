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
