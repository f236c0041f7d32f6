# MQTT topic names of the message contract: nongan/v1/<district>/<town>/<village>/<station>/<kind>.
from __future__ import annotations

PREFIX = "nongan/v1"
KINDS = ("result", "status", "image", "ack", "cmd", "checkpoint")


def topic(grid: str, station: str, kind: str) -> str:
    """grid is 'district/town/village'; kind one of KINDS."""
    if kind not in KINDS:
        raise ValueError(f"topic kind {kind!r} not one of {', '.join(KINDS)}")
    return f"{PREFIX}/{grid}/{station}/{kind}"


def station_topic(path: str, kind: str) -> str:
    """The same, from a station's full grid path 'district/town/village/station'."""
    grid, station = path.rsplit("/", 1)
    return topic(grid, station, kind)


def parse(name: str) -> tuple[str, str, str] | None:
    """(grid, station, kind) of a contract topic, or None for anything else."""
    parts = name.split("/")
    if len(parts) != 7 or "/".join(parts[:2]) != PREFIX or parts[6] not in KINDS:
        return None
    if not all(parts[2:6]):
        return None
    return "/".join(parts[2:5]), parts[5], parts[6]
