# What a chaos run counts, the figures it is judged by (each with its target) and the table it prints.
from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from station.lab.rig import check_journal, town_show

if TYPE_CHECKING:
    from station.lab.chaos import Chaos

DRAIN_TIMEOUT_S = 150.0
TARGET_RESULTS, TARGET_KILLS, TARGET_BROKER_RESTARTS = 2000, 20, 5
LONG_OUTAGE_S = (6.0, 9.0)


@dataclass
class Tally:
    """Everything the threads count; one lock guards it."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    shown: dict[int, dict] = field(default_factory=dict)   # seq -> the result as the operator saw it
    shown_twice: list[int] = field(default_factory=list)     # a seq shown for two different results
    presses: int = 0
    outcomes: Counter = field(default_factory=Counter)
    kills: int = 0
    kill_modes: Counter = field(default_factory=Counter)
    daemon_starts: int = 0
    broker_restarts: int = 0
    broker_long_outage_s: float = 0.0
    town_kills: int = 0
    corrupt: list[str] = field(default_factory=list)
    missing_at_station: list[str] = field(default_factory=list)
    missing_ids: set[str] = field(default_factory=set)
    fatal: str | None = None
    sends: int = 0
    replies: int = 0

    def __post_init__(self) -> None:
        self.signal = threading.Condition(self.lock)   # waiting on press events shares the one lock


def report(run: Chaos, drain_s: float | None, daemon_exit: int | None) -> dict:
    """The figures of a finished run, each with its target and whether it was met, plus the details."""
    final = check_journal(run.rig.home.journal, rows=True)
    town, refusals = town_show(run.rig.town_db, run.rig.trust, run.rig.station_path)
    at_town = {r["seq"]: r for r in town["results"]}
    lost = []
    for seq, r in sorted(run.t.shown.items()):
        got = at_town.get(seq)
        if got is None or (got["sample"], got["verdict"]) != (r["sample"], r["verdict"]):
            lost.append(f"{r['id']} shown as {r['verdict']} {r['sample']}; town has "
                        f"{None if got is None else (got['sample'], got['verdict'])}")
    lost += [f"seq {s} shown for two different results" for s in run.t.shown_twice]
    differing = [s for s, r in at_town.items() if final.rows.get(s, (None, None, None))[2] != r["msg_hash"]]
    bad_sigs = sum(1 for r in town["results"] if not r["signature_ok"])
    seqs = sorted(at_town)
    contiguous_ok = (seqs == list(range(1, final.last_seq + 1)) and town["contiguous"] == final.last_seq
                     and not town["gaps"])
    corrupt = list(run.t.corrupt) + [f"final check: {p}" for p in final.problems]
    attacked = run.attacks or {}
    poison = getattr(run, "poison", None) or {}
    n_refusals = (sum(r["count"] for r in refusals) - sum(a["refused"] for a in attacked.values())
                  - poison.get("refused_total", 0))
    t = run.t
    figures = [
        ("results produced (journal last seq)", f">= {TARGET_RESULTS}", final.last_seq,
         final.last_seq >= TARGET_RESULTS),
        ("results shown to the operator", "reported", len(t.shown), True),
        ("daemon SIGKILLs", f">= {TARGET_KILLS}", t.kills, t.kills >= TARGET_KILLS),
        ("broker restarts", f">= {TARGET_BROKER_RESTARTS}", t.broker_restarts,
         t.broker_restarts >= TARGET_BROKER_RESTARTS),
        ("longest broker outage (s)", f">= {LONG_OUTAGE_S[0]:.0f}", round(t.broker_long_outage_s, 1),
         t.broker_long_outage_s >= LONG_OUTAGE_S[0]),
        ("town listener SIGKILLs", ">= 1", t.town_kills, t.town_kills >= 1),
        ("results lost (shown, not stored by the town)", "0", len(lost), not lost),
        ("shown results missing from the journal after a kill", "0", len(t.missing_at_station),
         not t.missing_at_station),
        ("corrupted journals", "0", len(corrupt), not corrupt),
        ("town seqs contiguous 1..N, no gaps", f"1..{final.last_seq}",
         f"{len(seqs)} stored, contiguous {town['contiguous']}, gaps {len(town['gaps'])}", contiguous_ok),
        ("town copies differing from the journal", "0", len(differing), not differing),
        ("bad signatures at the town (re-verified)", "0", bad_sigs, bad_sigs == 0),
        ("duplicates delivered (town counter)", "reported", town["counters"].get("duplicates", 0), True),
        ("refusals by the town (genuine traffic)", "0", n_refusals, n_refusals == 0),
        *[(f"{kind} results accepted by the town", "0", f"{a['accepted']} of {a['tried']}",
           a["accepted"] == 0 and a["tried"] > 0) for kind, a in attacked.items()],
        *([("town poison sent during the faults", "reported",
             f"{poison['sent_during_faults']} in {poison['rounds_during_faults']} rounds "
             f"({poison['rounds_missed_broker_down']} missed: broker down)", True),
           ("town poison refused (final round, each counted)", str(poison["tried"]), poison["refused"],
            poison["refused"] == poison["tried"] > 0),
           ("town poison accepted as results", "0", poison["accepted"], poison["accepted"] == 0)]
          if poison else []),
        ("station acked seq = last seq", str(final.last_seq), final.acked_seq, final.acked_seq == final.last_seq),
        ("drain time after faults stop (s)", f"< {DRAIN_TIMEOUT_S:.0f}",
         "timeout" if drain_s is None else round(drain_s, 1), drain_s is not None),
        ("presses refused while daemon down", "reported", t.outcomes["refused: daemon down"], True),
        ("presses unanswered (daemon killed mid-press)", "reported",
         t.outcomes["unanswered: daemon killed mid-press"], True),
        ("presses timed out", "0", t.outcomes["unanswered: timed out"],
         t.outcomes["unanswered: timed out"] == 0),
        ("clean stop of the last daemon (exit status)", "0", daemon_exit, daemon_exit == 0),
    ]
    if t.fatal:
        figures.append(("run completed", "yes", t.fatal, False))
    return {
        "passed": all(f[3] for f in figures),
        "figures": [{"figure": f[0], "target": f[1], "measured": f[2], "pass": bool(f[3])} for f in figures],
        "seed": run.seed, "duration_s": run.duration, "work": str(run.work),
        "presses": t.presses, "press_outcomes": dict(t.outcomes), "kill_modes": dict(t.kill_modes),
        "daemon_starts": t.daemon_starts, "refusals": refusals,
        "details": {"lost": lost[:20], "corrupt": corrupt[:20], "missing_at_station": t.missing_at_station[:20],
                    "differing_seqs": differing[:20], "gaps": town["gaps"][:20]},
    }


def print_table(report: dict) -> None:
    rows = [(f["figure"], f["target"], str(f["measured"]), "yes" if f["pass"] else "NO") for f in report["figures"]]
    head = ("figure", "target", "measured", "pass")
    w = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    line = "| " + " | ".join(f"{{:<{x}}}" for x in w) + " |"
    print(line.format(*head))
    print("|" + "|".join("-" * (x + 2) for x in w) + "|")
    for r in rows:
        print(line.format(*r))
    print(f"\npresses {report['presses']}: {report['press_outcomes']}")
    print(f"kill moments: {report['kill_modes']}; daemon starts {report['daemon_starts']}")
    for name, items in report["details"].items():
        for item in items:
            print(f"{name}: {item}")
    verdict = "PASS" if report["passed"] else "FAIL"
    print(f"\n{verdict} (seed {report['seed']}, faults for {report['duration_s']:.0f} s)")
