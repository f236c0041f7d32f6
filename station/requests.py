# Control-socket requests, on the socket's thread: check every field, post the loop's event, wait for its answer.
from __future__ import annotations

import queue

from station.events import Press, StatusRequest
from station.record import bad_sample_id

REPLY_TIMEOUT_S = 120.0  # beyond any incubation the strip type asks for


def handle(daemon, req: dict) -> dict:
    """Runs on a socket thread: post to the loop and wait for its answer."""
    cmd = req.get("cmd")
    answer: queue.Queue[dict] = queue.Queue(maxsize=1)

    def put(reply: dict) -> None:
        try:
            answer.put_nowait(reply)  # the first answer wins; a no-wait press is not waited for again
        except queue.Full:
            pass

    if cmd == "press":
        starting = None if daemon.workflow else daemon.refusal() or "the station is starting"
        problem = bad_press(daemon, req) or starting
        if problem:
            return {"ok": False, "error": problem}
        wait = req.get("wait", True)
        # The same event the button posts, carrying this request's sample, strip type and reply; the loop
        # checks the press's own lot and QC gate (workflow.press → refusal(press)).
        daemon.post(Press("socket", req.get("sample"), req.get("strip_type"), task=req.get("task"),
                        product=req.get("product"), reply=put, started=None if wait else put,
                        qc=req.get("qc"), retest_of=req.get("retest_of"), slot=req.get("slot")))
        # Even --no-wait waits for the loop to take the press: "queued" for a press ignored as busy is a lie.
        timeout = REPLY_TIMEOUT_S + daemon.workflow.incubation_s(req.get("strip_type")) if wait else 10.0
        try:
            return answer.get(timeout=timeout)
        except queue.Empty:
            return {"ok": False, "error": f"no answer from the station loop within {timeout:.0f} s"}
    if cmd == "status":
        daemon.post(StatusRequest(put))
        try:
            return {"ok": True, **answer.get(timeout=10)}
        except queue.Empty:
            return {"ok": False, "error": "the station loop is busy; try again"}
    if cmd == "reprint":
        return daemon.printing.reprint_request(req) if daemon.printing else {"ok": False, "error": (
            "no printer configured ([printer] device in station.toml)")}
    return {"ok": False, "error": f"unknown command {str(cmd)[:40]!r}; one of press, status, reprint"}

def bad_press(daemon, req: dict) -> str | None:
    """Why a press request cannot be taken as sent, or None; every field is checked before it is used."""
    st = req.get("strip_type")
    if st is not None and (not isinstance(st, str) or st not in daemon.strip_types):
        return (f"strip type {str(st)[:40]!r} unknown; known: {', '.join(sorted(daemon.strip_types))}")
    if not isinstance(req.get("wait", True), bool):
        return "wait must be true or false"
    slot, slots = req.get("slot"), daemon.cfg.tray.slots
    if slot is not None and (not isinstance(slot, int) or isinstance(slot, bool) or not 1 <= slot <= slots):
        return f"slot {str(slot)[:20]!r} does not exist: this tray has slots 1..{slots} ([tray] slots)"
    product = req.get("product")
    if product is not None and (not isinstance(product, str) or not 0 < len(product) <= 64):
        return "product must be text of 1..64 characters"
    if req.get("qc") not in (None, "negative", "positive"):
        return f"qc control {str(req.get('qc'))[:40]!r}: one of negative, positive"
    rt = req.get("retest_of")
    if rt is not None and (not isinstance(rt, str) or not rt.rpartition(":")[2].isdigit()):
        return f"retest_of {str(rt)[:60]!r}: a result id such as {daemon.cfg.station.id}:12"
    if rt is not None and req.get("qc"):
        return "a control card is not a re-test: give qc or retest_of, not both"
    return daemon.orders.bad_task(req.get("task"), daemon.strip_types[st or daemon.cfg.assay.strip_type].analyte) \
        or bad_sample_id(req.get("sample"))
