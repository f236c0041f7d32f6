# Re-tests of positives: a sample's chain (first positive, re-tests citing it) and what the next test of it is.
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from station.decide.dailyqc import local_date
from station.protocol.result import RETEST_ROUND_STATUS

OPEN = (None, "disputed")  # awaiting round 2, or a dispute awaiting the third test
DECIDES = {"positive", "negative"}  # an invalid or suspect re-test decides nothing: the sample is tested again


@dataclass
class Chain:
    """A first positive test of a sample and the re-tests that cite it, in seq order."""

    first: dict
    retests: list[dict] = field(default_factory=list)

    @property
    def status(self) -> str | None:
        return self.retests[-1]["retest"]["status"] if self.retests else None

    @property
    def open(self) -> bool:
        return self.status in OPEN

    @property
    def next_round(self) -> int:
        return 2 if self.status is None else 3


def chains(records: list[dict]) -> list[Chain]:
    """The chains among one sample's sample results (any order); QC records never start one."""
    by_id: dict[str, Chain] = {}
    for rec in sorted(records, key=lambda r: r["seq"]):
        if rec.get("kind", "result") != "result":
            continue
        rt = rec.get("retest")
        if rt is None and rec["verdict"] == "positive":
            by_id[rec["id"]] = Chain(rec)
        elif rt is not None and rt["of"] in by_id:
            by_id[rt["of"]].retests.append(rec)
    return list(by_id.values())


def status_of(round_: int, verdict: str) -> str:
    """Round 2: confirmed_positive or disputed; round 3: resolved_positive or resolved_negative."""
    when_positive, when_negative = RETEST_ROUND_STATUS[round_]
    return when_positive if verdict == "positive" else when_negative


def open_chain(records: list[dict], today: date) -> Chain | None:
    """The sample's open chain whose first test was today: the next test of that sample is its re-test."""
    for chain in reversed(chains(records)):
        if chain.open and local_date(chain.first["time"]["read_at"]) == today:
            return chain
    return None


def explicit_problem(chain: Chain | None, of: str) -> str | None:
    """Why `--retest-of of` cannot be taken, or None."""
    if chain is None:
        return f"--retest-of {of}: no positive first test with that id in this station's journal"
    if not chain.open:
        return (f"--retest-of {of}: sample {chain.first['sample']['id']} is {chain.status} already "
                f"(round {len(chain.retests) + 1}); no further re-test is asked for")
    return None


def retest_field(chain: Chain, verdict: str) -> dict | None:
    """The record's `retest` for a re-test reading `verdict`; None when that reading decides nothing."""
    if verdict not in DECIDES:
        return None
    rnd = chain.next_round
    return {"of": chain.first["id"], "round": rnd, "status": status_of(rnd, verdict)}


def retest_required(verdict: str, retest: dict | None, in_chain: bool) -> bool:
    """A first positive asks for a re-test; so does a dispute, and a re-test that could not decide."""
    if retest is not None:
        return retest["status"] == "disputed"
    return verdict == "positive" or (in_chain and verdict not in DECIDES)
