# The printer worker: receipts of committed results, printed off the loop; a fault is logged, never fatal.
#
# Threads
#   caller   (the loop; the control socket)  committed(), reprint(), status(), close(): each only posts to
#                                            the inbox or copies a snapshot under the lock.
#   worker   ("printer")                     owns the printer device and its own read-only journal
#                                            connection; reads results the loop has committed (so nothing
#                                            is ever printed before its commit), renders and prints them,
#                                            and keeps the print log <home>/data/prints.json (atomic).
#
# Why the worker reads the journal itself rather than being handed receipts: the loop's only job after a
# commit is one put() (it never waits for paper), the receipt is built from the signed bytes as journaled,
# and `station reprint` years later goes through exactly the same path.
from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from station.certificate import base_sample, certificate_lines, refusal, tested_analyte_only
from station.errors import StorageError
from station.host.files import atomic_write
from station.receipt import Receipt, producer_by_id, receipt_of

log = logging.getLogger("station.printing")

KEEP_JOBS = 1000          # print-log entries kept (newest); older results can still be reprinted
SAMPLE_LOOKBACK = 1000    # a sample's other analytes are looked for among this many newest results
REPRINT_WAIT_S = 60.0


class PrintLog:
    """seq → {status: printed | failed | skipped, at, attempts, error, certificate}; one writer (the worker)."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.jobs: dict[str, dict] = json.loads(path.read_text(encoding="utf-8")).get("jobs", {})
        except FileNotFoundError:
            self.jobs = {}
        except (OSError, ValueError, AttributeError) as exc:
            log.error("print log %s unreadable (%s): starting a new one; the journal still holds every result",
                      path, exc)
            self.jobs = {}

    def note(self, seq: int, **fields: Any) -> dict:
        """Record a job's outcome: on disk first, then in memory, so no reader ever sees one the file lacks."""
        jobs = dict(self.jobs)
        job = jobs.pop(str(seq), {"attempts": 0})  # re-inserted last: dict order is age order
        job = {**job, **fields, "attempts": job["attempts"] + 1, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        jobs[str(seq)] = job
        for old in list(jobs)[:-KEEP_JOBS]:
            del jobs[old]
        try:
            atomic_write(self.path, json.dumps({"version": 1, "jobs": jobs}, ensure_ascii=False).encode())
        except StorageError as exc:  # a full disk must not stop printing; the status still tells
            log.error("print log %s not saved: %s", self.path, exc)
        self.jobs = jobs
        return job


class Printing:
    def __init__(self, cfg, journal_path: Path, log_path: Path, *, open_printer: Callable[[], Any] | None = None,
                 producer: Callable[[str], Mapping[str, str]] = producer_by_id,
                 required: Callable[[Mapping], set[str]] = tested_analyte_only,
                 product: Callable[[Mapping], str | None] = lambda body: None):
        self.cfg, self.journal_path = cfg, journal_path
        self.producer, self.required, self.product = producer, required, product
        self._open_printer = open_printer or self._registry_printer
        self.log = PrintLog(log_path)
        self._inbox: queue.Queue[tuple] = queue.Queue()
        self._lock = threading.Lock()
        self._last_error = ""
        self._after = 0
        self._thread: threading.Thread | None = None

    def _registry_printer(self) -> Any:
        from drivers import registry
        from drivers.printer.base import parse_spec

        return registry.open_device("printer", parse_spec(self.cfg.printer.device).driver, self.cfg.printer)

    # ---- caller side ------------------------------------------------------------------------------
    def start(self, after_seq: int) -> None:
        """Print results committed after after_seq (the journal's last seq when the station starts), and
        first the few committed before it that a crash kept from the paper (catch_up_from)."""
        self._after = catch_up_from(self.log.jobs, after_seq)
        if self._after < after_seq:
            log.warning("receipts of results %d..%d were never printed (the station stopped between the commit "
                        "and the paper): printing them now", self._after + 1, after_seq)
            self._inbox.put(("new", 0, None))
        self._thread = threading.Thread(target=self._run, name="printer", daemon=True)
        self._thread.start()

    def committed(self) -> None:
        """The loop committed results: one put, never a wait."""
        self._inbox.put(("new", 0, None))

    def reprint(self, seq: int, timeout: float = REPRINT_WAIT_S) -> dict:
        answer: queue.Queue[dict] = queue.Queue(maxsize=1)
        self._inbox.put(("reprint", seq, answer.put))
        try:
            return answer.get(timeout=timeout)
        except queue.Empty:
            return {"ok": False, "error": f"the printer did not finish within {timeout:.0f} s; see station status"}

    def reprint_request(self, req: dict) -> dict:
        """A control-socket `reprint` request, every field checked; runs on the socket thread."""
        seq = req.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            return {"ok": False, "error": f"seq must be a result number ≥ 1, got {str(seq)[:40]!r}"}
        return self.reprint(seq)

    def status(self) -> dict:
        with self._lock:
            jobs = dict(self.log.jobs)
            error = self._last_error
        failed = [int(s) for s, j in jobs.items() if j.get("status") == "failed"]
        return {"device": self.cfg.printer.device, "printed": sum(j.get("status") == "printed" for j in jobs.values()),
                "failed": failed[-20:], "last_error": error}

    def close(self, timeout: float = 5.0) -> None:
        if self._thread:
            self._inbox.put(("stop", 0, None))
            self._thread.join(timeout)

    # ---- worker -----------------------------------------------------------------------------------
    def _run(self) -> None:
        from station.journal import Journal

        journal = Journal(self.journal_path, check=False)  # this thread's own connection
        printer = self._open_printer()
        try:
            try:
                printer.probe()
            except Exception as exc:  # a missing printer is told, and each receipt still tries it again
                self._failed_note(f"{exc}")
                log.error("%s; receipts will be marked failed until it answers (station reprint ID)", exc)
            while True:
                kind, seq, reply = self._inbox.get()
                if kind == "stop":
                    return
                if kind == "new":
                    for entry in journal.range(self._after + 1, journal.stats().last_seq):
                        self._after = entry.seq
                        self._job(journal, printer, entry)
                else:
                    entry = journal.get(seq)
                    if entry is None:
                        reply({"ok": False, "error": f"no result with seq {seq} in this station's journal"})
                        continue
                    job = self._job(journal, printer, entry)
                    reply({"ok": job.get("status") == "printed", "seq": seq, **job})
        finally:
            printer.close()
            journal.close()

    def _failed_note(self, error: str) -> None:
        with self._lock:
            self._last_error = error

    def receipt(self, journal, entry) -> Receipt | None:
        """The receipt of a journal entry (None for records that are not sample results, e.g. QC)."""
        from station.protocol.signing import unverified_payload

        body = unverified_payload(entry.message)  # our own journal, checked at every start
        if body.get("kind", "result") != "result":
            return None
        cert: tuple = ()
        if self.cfg.receipt.certificate and (body.get("sample") or {}).get("producer"):
            others = [unverified_payload(e.message) for e in journal.entries(limit=SAMPLE_LOOKBACK)
                      if base_sample(e.sample_id) == base_sample(entry.sample_id) and e.seq != entry.seq]
            why = refusal(body, [body, *others], self.required)
            if why is None:
                cert = certificate_lines(body, producer=self.producer, product=self.product(body))
            else:
                log.info("result %s: no certificate: %s", entry.id, why)
        return receipt_of(body, entry.msg_hash, verify_url=self.cfg.receipt.verify_url,
                          operator=self.cfg.receipt.operator, producer=self.producer, certificate=cert)

    def _job(self, journal, printer, entry) -> dict:
        from station.receipt_render import render

        try:
            receipt = self.receipt(journal, entry)
            if receipt is None:
                with self._lock:
                    return self.log.note(entry.seq, status="skipped", error=None, certificate=False)
            image = render(receipt, self.cfg.printer.width_dots)
            printer.print_image(image)
            printer.cut()
        except Exception as exc:  # device faults above all, but no receipt may ever stop the worker
            log.error("result %s: receipt NOT printed (the result is safe in the journal; station reprint %d): "
                      "%s", entry.id, entry.seq, exc)
            self._failed_note(str(exc))
            with self._lock:
                return self.log.note(entry.seq, status="failed", error=str(exc), certificate=False)
        log.info("result %s: receipt printed%s", entry.id, " with certificate" if receipt.certificate else "")
        self._failed_note("")
        with self._lock:
            return self.log.note(entry.seq, status="printed", error=None, certificate=bool(receipt.certificate))


CATCH_UP_MAX = 20  # at most this many receipts are printed at a start for results the paper never got


def catch_up_from(jobs: Mapping[str, dict], last_seq: int) -> int:
    """The seq after which the worker prints at a start: results committed after the newest one the print log
    knows (printed, failed or skipped) were committed by a run that died before their paper; at most the last
    CATCH_UP_MAX of them. An empty log on a station with results is a printer new to it: no year of slips."""
    known = [int(s) for s in jobs if s.isdigit()]
    if not known:
        return last_seq
    return min(last_seq, max(max(known), last_seq - CATCH_UP_MAX))


def start_printing(cfg, home, last_seq: int, **lookups: Any) -> Printing:
    """The daemon's printer worker, printing results committed after last_seq and those a crash kept from the
    paper (catch_up_from); earlier ones were printed by the run that committed them, or can be reprinted.
    lookups: Printing's producer=, required=, product=
    (the roster and the town's plan, once the station holds them); called from the worker thread."""
    printing = Printing(cfg, home.journal, home.root / "data" / "prints.json", **(lookups or plan_lookups(home.root)))
    printing.start(after_seq=last_seq)
    return printing


def plan_lookups(root) -> dict[str, Any]:
    """The roster and the town's plan as the printer thread sees them: read from the home for each slip, so the
    worker never touches the loop's Orders, and a plan the town sends later is on the next slip."""
    from station.orders import Orders

    def product(body: dict, orders: Orders | None = None) -> str | None:
        return (body.get("sample") or {}).get("product") or (orders or Orders(root)).product_of(body.get("task"))

    def producer(pid: str) -> dict:
        return Orders(root).producer(pid) or {}

    def required(body: dict) -> set[str]:
        # Without a plan for the product, the certificate covers the analyte tested (certificate.py's default).
        orders = Orders(root)  # one read of the stored plan for both questions
        name = product(body, orders)
        analyte = (body.get("strip") or {}).get("analyte")
        return (orders.required_analytes(name) if name else set()) or ({analyte} if analyte else set())

    return {"product": product, "producer": producer, "required": required}
