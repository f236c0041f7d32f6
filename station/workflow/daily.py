# The operator's day for the loop: the lot in use, the QC gate (expiry, today's control cards, Westgard), and
# what each recorded strip is (a sample result, a re-test in a chain, a control card). Runs on the loop only.
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from station.decide import dailyqc, lots
from station.decide.qc import lot_blocked
from station.errors import LotError
from station.protocol.signing import unverified_payload
from station.workflow import retests


@dataclass
class Mark:
    """What one strip is recorded as: its sample id, lot, extra record fields, and what the reply adds."""

    sample_id: str
    lot: str | None
    fields: dict = field(default_factory=dict)  # kind/qc/retest for build_result_payload
    priority: bool | None = None  # None: the journal's rule (positives first); a control card never jumps
    shown: dict = field(default_factory=dict)


class Daily:
    def __init__(self, home_root: Path, journal: Callable, calibrations: dict, default_type: str,
                 clock_synced: Callable[[], bool], today: Callable[[], date] = date.today):
        self.root, self._journal, self.calibrations = Path(home_root), journal, calibrations
        self.default_type, self.clock_synced, self.today = default_type, clock_synced, today

    # ---- the lot and its gate ---------------------------------------------------------------------------
    def lot_in_use(self, strip_type: str) -> tuple[lots.Lot | None, str | None]:
        """(the lot set with `station lot set`, the lot cited): a lot set wins over the calibration's lot,
        because it is what lies on the tray; without one, records cite the calibration's lot as before."""
        lot = lots.current(self.root).get(strip_type)
        cal = self.calibrations.get(strip_type)
        return lot, lot.lot if lot else (cal.lot if cal else None)

    def refusal(self, strip_type: str | None, press=None) -> str | None:
        """Why a sample (or the press) of this strip type is refused now; None if it may be read."""
        strip_type = strip_type or self.default_type
        try:
            lot, cited = self.lot_in_use(strip_type)
        except LotError as exc:
            return str(exc)  # in use or not cannot be told: refuse rather than record an unknown lot
        if lot is not None:
            expired = lots.expiry_refusal(lot, self.today(), self.clock_synced())
            if expired:
                return expired
        if press is not None and getattr(press, "qc", None):
            if lot is None:
                return (f"no lot set for {strip_type}: a control card is run for a lot; "
                        f"set it first with `station lot set {strip_type} LOT`")
            return None  # a control card is how a blocked lot is released
        if press is not None and getattr(press, "retest_of", None):
            chain = self._chain_of(press.retest_of)
            problem = retests.explicit_problem(chain, press.retest_of)
            if problem:
                return problem
            if press.sample is not None and press.sample != chain.first["sample"]["id"]:
                return (f"--retest-of {press.retest_of} re-tests sample {chain.first['sample']['id']}, "
                        f"not {press.sample}: leave out --sample")
        if lot is not None:
            gate = dailyqc.gate_refusal(self._latest_qc(strip_type, lot.lot), strip_type, lot.lot)
            if gate:
                return gate
        return lot_blocked(self.root, cited)  # Westgard 1-3s from `calib qc add`, as before

    def _latest_qc(self, strip_type: str, lot: str) -> dict[str, dict | None]:
        ids = [dailyqc.qc_sample_id(strip_type, lot, c) for c in dailyqc.CONTROLS]
        return dailyqc.latest_today(self._payloads(ids, 40), strip_type, lot, self.today())

    def _payloads(self, sample_ids: list[str], limit: int = 200) -> list[dict]:
        return [unverified_payload(e.message) for e in self._journal().by_samples(sample_ids, limit)]

    def _chain_of(self, result_id: str) -> retests.Chain | None:
        station, _, seq = str(result_id).rpartition(":")
        entry = self._journal().get(int(seq)) if seq.isdigit() and int(seq) > 0 else None
        if entry is None or entry.id != result_id or entry.sample_id is None:
            return None
        return next((c for c in retests.chains(self._payloads([entry.sample_id]))
                     if c.first["id"] == result_id), None)

    # ---- what each strip is recorded as -----------------------------------------------------------------
    def check(self, job, strips: list) -> str | None:
        if (job.qc or job.retest_of) and len(strips) != 1:
            what = "a control card" if job.qc else "a re-test"
            return f"{what} reads one cassette; {len(strips)} were in view: leave only that one on the tray"
        return None

    def mark(self, job, strip, sample_id: str, strip_type: str) -> Mark:
        lot, cited = self.lot_in_use(strip_type)
        if job.qc:
            fields = dailyqc.qc_fields(job.qc, cited, strip_type, strip.verdict)
            return Mark(dailyqc.qc_sample_id(strip_type, cited, job.qc), cited, fields, False, {"qc": fields["qc"]})
        if job.retest_of:
            chain = self._chain_of(job.retest_of)
            sample_id = chain.first["sample"]["id"]  # checked at the press; the first test's sample, exactly
        else:
            chain = retests.open_chain(self._payloads([sample_id]), self.today())
        retest = retests.retest_field(chain, strip.verdict) if chain else None
        shown = {"retest_required": retests.retest_required(strip.verdict, retest, chain is not None)}
        if retest:
            shown["retest"] = retest
        return Mark(sample_id, cited, {"retest": retest} if retest else {}, None, shown)

    def status(self) -> dict:
        """What `station status` says about lots: which are in use, and when results go without lot or QC."""
        try:
            current = lots.current(self.root)
        except LotError as exc:
            return {"lots": {}, "lot_warning": str(exc)}
        out, warnings = {}, []
        for name in sorted({self.default_type, *current}):
            lot = current.get(name)
            if lot is None:
                warnings.append(f"{name}: no lot set: results are recorded without a lot and without daily QC")
                continue
            gate = self.refusal(name)
            out[name] = {"lot": lot.lot, "expires": lot.expires, "refused": gate}
        return {"lots": out, "lot_warning": "; ".join(warnings) or None}
