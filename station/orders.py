# Town-signed orders the loop carries out: the test plan (tasks results count toward) and the producer roster.
#
# Threads: the loop alone calls Orders.apply and note; lookups (task_for, producer_name, required_analytes)
# read one snapshot the loop replaces whole, so the control socket and printer threads may call them too.
# The publisher has verified signature, expiry and nonce; the version is judged here, against what is stored.
from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from station.events import Order
from station.host.files import atomic_write

log = logging.getLogger("station.app")

KINDS = ("plan", "roster")
COUNTED_VERDICTS = ("negative", "positive", "suspect")  # an invalid card tested nothing


def orders_dir(root: Path) -> Path:
    return Path(root) / "orders"


def analytes_of(strip_analyte: str) -> set[str]:
    """A multi-line card names its analytes comma-separated ("carbofuran,imidacloprid")."""
    return {a.strip() for a in strip_analyte.split(",") if a.strip()}


@dataclass(frozen=True)
class Task:
    task_id: str
    product: str
    analytes: tuple[str, ...]
    quota: int
    start: date
    end: date
    deadline: date

    @classmethod
    def of(cls, t: dict) -> Task:
        day = date.fromisoformat
        return cls(t["task_id"], t["product"], tuple(t["analytes"]), t["quota"], day(t["window"]["from"]),
                   day(t["window"]["to"]), day(t["deadline"]))

    def open_on(self, day: date) -> bool:
        return self.start <= day <= self.end

    def covers(self, strip_analyte: str) -> bool:
        return bool(analytes_of(strip_analyte) & set(self.analytes))


class Orders:
    """The plan and roster in force, as stored in <home>/orders/{plan,roster}.json (previous one in *.prev.json)."""

    def __init__(self, root: Path) -> None:
        self.dir = orders_dir(root)
        self.stored: dict[str, dict | None] = {k: self._load(k) for k in KINDS}
        self.refused = 0
        self.last_refusal = ""
        self._index()

    def _load(self, kind: str) -> dict | None:
        path = self.dir / f"{kind}.json"
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(doc, dict) or doc.get("kind") != kind or not isinstance(doc.get("body"), dict):
                raise ValueError("not a stored order")
            return doc
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.error("%s: unreadable (%s); working without a %s until the town sends one", path, exc, kind)
            return None

    def _index(self) -> None:
        plan, roster = self.body("plan"), self.body("roster")
        self.tasks = tuple(Task.of(t) for t in plan["tasks"]) if plan else ()
        self.producers = {p["id"]: p for p in roster["producers"]} if roster else {}

    def body(self, kind: str) -> dict | None:
        doc = self.stored.get(kind)
        return doc["body"] if doc else None

    # ---- the loop -----------------------------------------------------------------------------------
    def apply(self, order: Order) -> bool:
        """Store a newer plan or roster (atomically, the one it replaces kept as *.prev.json); refuse an older
        or equal version with the reason in the log and the status."""
        name = order.body.get("plan_id") or order.body.get("roster_id")
        current = self.body(order.kind)
        if current is not None and order.body["version"] <= current["version"]:
            return self._refuse(f"{order.kind} {name} v{order.body['version']} refused: this station already "
                                f"has v{current['version']} ({current.get('plan_id') or current.get('roster_id')}); "
                                "only a newer version replaces it")
        doc = {"kind": order.kind, "body": order.body, "applied_at": int(time.time()),
               "message": order.message.decode("ascii", "replace")}
        path = self.dir / f"{order.kind}.json"
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            if path.exists():
                atomic_write(self.dir / f"{order.kind}.prev.json", path.read_bytes())
            atomic_write(path, json.dumps(doc, ensure_ascii=False, indent=1).encode())
        except OSError as exc:
            return self._refuse(f"{order.kind} {name} v{order.body['version']} not applied: cannot store {path}: {exc}")
        self.stored[order.kind] = doc
        self._index()
        log.warning("town %s %s v%d applied (%s)", order.kind, name, order.body["version"],
                    f"{len(self.tasks)} tasks" if order.kind == "plan" else f"{len(self.producers)} producers")
        return True

    def _refuse(self, why: str) -> bool:
        self.refused += 1
        self.last_refusal = why
        log.error("%s", why)
        return False

    def note(self, event) -> None:
        """A PublisherEvent: a town command the publisher refused (forged, expired, replayed) is counted too."""
        detail = getattr(event, "detail", "")
        if getattr(event, "kind", "") == "refused" and detail.split(" ", 1)[0] in ("command", *KINDS):
            self.refused += 1
            self.last_refusal = detail

    def status(self) -> dict:
        plan, roster = self.body("plan"), self.body("roster")
        return {"plan": None if plan is None else f"{plan['plan_id']} v{plan['version']} ({len(self.tasks)} tasks)",
                "roster": None if roster is None else f"{roster['roster_id']} v{roster['version']} "
                f"({len(self.producers)} producers)",
                "plan_version": plan["version"] if plan else 0, "roster_version": roster["version"] if roster else 0,
                "orders_refused": self.refused, "last_order_refusal": self.last_refusal}

    # ---- lookups ------------------------------------------------------------------------------------
    def task(self, task_id: str) -> Task | None:
        return next((t for t in self.tasks if t.task_id == task_id), None)

    def bad_task(self, task_id: object, strip_analyte: str, day: date | None = None) -> str | None:
        """Why a result of this strip cannot count toward the task the operator named, or None."""
        if task_id is None:
            return None
        t = self.task(task_id) if isinstance(task_id, str) else None
        if t is None:
            known = ", ".join(x.task_id for x in self.tasks) or "none: no plan received"
            return f"task {str(task_id)[:40]!r} is not in the town's plan (tasks: {known})"
        if not t.covers(strip_analyte):
            return f"task {t.task_id} asks for {', '.join(t.analytes)}; this strip type tests {strip_analyte}"
        day = day or date.today()
        if not t.open_on(day):
            return f"task {t.task_id} is open {t.start}..{t.end}, not on {day}"
        return None

    def task_for(self, explicit: str | None, strip_analyte: str, product: str | None,
                 day: date | None = None) -> str | None:
        """The task a result counts toward: the one named, else the only open task covering the strip's analyte
        (and the sample's product, when known); None when none or several match (nothing is guessed)."""
        if explicit is not None:
            return explicit if self.bad_task(explicit, strip_analyte, day) is None else None
        day = day or date.today()
        fits = [t for t in self.tasks if t.open_on(day) and t.covers(strip_analyte)
                and (product is None or t.product == product)]
        return fits[0].task_id if len(fits) == 1 else None

    def product_of(self, task_id: str | None) -> str | None:
        t = self.task(task_id) if task_id else None
        return t.product if t else None

    def required_analytes(self, product: str, day: date | None = None) -> set[str]:
        """Every analyte the plan's tasks open today ask for this product (the certificate needs each negative)."""
        day = day or date.today()
        return {a for t in self.tasks if t.product == product and t.open_on(day) for a in t.analytes}

    def producer(self, producer_id: str | None) -> dict | None:
        return self.producers.get(producer_id) if producer_id else None

    def producer_name(self, producer_id: str | None) -> str | None:
        """The registered name for a producer id from a scanned card, or None if the roster does not list it."""
        p = self.producer(producer_id)
        return p["name"] if p else None


def producer_name(root: Path, producer_id: str | None) -> str | None:
    """For processes other than the daemon (reprint): the roster as stored in the home."""
    return Orders(root).producer_name(producer_id)


def required_analytes(root: Path, product: str, day: date | None = None) -> set[str]:
    return Orders(root).required_analytes(product, day)


def progress(tasks: Iterable[Task], payloads: Iterable[dict], day: date | None = None) -> list[dict]:
    """Per task: distinct samples with a usable result citing it (a re-test or a QC card counts nothing more)."""
    day = day or date.today()
    done: dict[str, set[str]] = {}
    for p in payloads:
        if p.get("task") and p.get("kind", "result") == "result" and p.get("verdict") in COUNTED_VERDICTS \
                and not p.get("retest"):
            done.setdefault(p["task"], set()).add(p["sample"]["id"])
    return [{"task": t.task_id, "product": t.product, "analytes": list(t.analytes),
             "done": len(done.get(t.task_id, ())),
             "quota": t.quota, "window": {"from": str(t.start), "to": str(t.end)}, "deadline": str(t.deadline),
             "days_left": (t.deadline - day).days, "open": t.open_on(day)} for t in tasks]
