# The sample workflow's decisions: when to photograph again, what to record, what the panel shows.
from __future__ import annotations

from types import SimpleNamespace as NS

import pytest

from station.workflow import rules


def score(*verdicts, error=None, reason=None):
    strips = [NS(slot=i, verdict=v, quality=["GLARE"] if v == "retake" else [], reason="glare on the window: "
                 "shade the tray" if v == "retake" else None) for i, v in enumerate(verdicts)]
    return NS(strips=strips, error=error, reason=reason)


@pytest.mark.parametrize(("sc", "attempt", "retakes", "want"), [
    (score("negative"), 0, 1, False),
    (score("negative", "retake"), 0, 1, True),
    (score("negative", "retake"), 1, 1, False),  # attempts used up: record what was read
    (score(reason="no cassette found"), 0, 1, True),
    (score(reason="no cassette found"), 0, 0, False),
])
def test_needs_retake(sc, attempt, retakes, want):
    assert rules.needs_retake(sc, attempt, retakes) is want


def test_retake_is_never_recorded():
    assert [s.verdict for s in rules.recordable(score("negative", "retake", "invalid"))] == ["negative", "invalid"]


@pytest.mark.parametrize(("verdicts", "problem", "want"), [
    (["negative", "negative"], False, "negative"),
    (["negative", "positive"], False, "positive"),
    (["invalid", "negative"], False, "invalid"),
    (["positive"], True, "positive"),        # a positive is shown even if another cassette needs a retake
    (["negative"], True, "retake"),          # an all-clear would hide the cassette that was not read
    ([], True, "retake"),
])
def test_indication(verdicts, problem, want):
    assert rules.indication(verdicts, problem) == want


def test_problems_name_the_slot_and_the_remedy():
    assert rules.problems(score("negative", "retake")) == "slot 1: glare on the window: shade the tray"
    assert rules.problems(score(reason="no cassette found: place cassettes")) == \
        "no cassette found: place cassettes"
    assert rules.problems(score("negative")) == ""


@pytest.mark.parametrize(("state", "recorded", "want"), [
    ("positive", [{"retest_required": True}], "retest"),
    ("negative", [{"retest_required": True, "retest": {"status": "disputed"}}], "retest"),  # no all-clear
    ("positive", [{"retest": {"status": "confirmed_positive"}}], "confirmed"),
    ("positive", [{"retest": {"status": "resolved_positive"}}], "confirmed"),
    ("negative", [{"retest": {"status": "resolved_negative"}}], "negative"),
    ("invalid", [{"retest_required": True}], "invalid"),  # lay a new card: invalid already says so
    ("positive", [{}], "positive"),
])
def test_chain_indication(state, recorded, want):
    assert rules.chain_indication(state, recorded) == want
