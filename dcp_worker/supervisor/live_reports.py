"""What a running slice reports as it runs, read from a live sandbox host (see
``dcp_worker.sandbox.live``): console lines, events and, where a supervisor answers
(``LiveMode.SUPERVISED``, the evaluator's), progress and fetch requests."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from dcp_worker.jsvalues import Undefined
from dcp_worker.sandbox.live import LiveMode
from dcp_worker.tagged_json import from_json

__all__ = [
    "LiveConsole",
    "LiveEvent",
    "LiveFetch",
    "LiveMode",
    "LiveProgress",
    "LiveReport",
    "live_reports",
]


@dataclass(frozen=True, slots=True)
class LiveConsole:
    number: int  # the slice's
    level: str
    text: str


@dataclass(frozen=True, slots=True)
class LiveEvent:
    number: int  # the slice's
    name: str
    data: Any


@dataclass(frozen=True, slots=True)
class LiveProgress:
    """``calls`` progress() calls since the last report, the last with ``value`` (its argument,
    Undefined for none), which is ``percent`` (None when it was none, or not a valid one)."""

    calls: int
    percent: float | None
    value: Any


@dataclass(frozen=True, slots=True)
class LiveFetch:
    """A ``fetch()`` of the slice's, for the supervisor to make (or refuse)."""

    id: int
    url: str
    method: str
    headers: list[tuple[str, str]]
    body: bytes | None


LiveReport = LiveConsole | LiveEvent | LiveProgress | LiveFetch



def live_reports(records: list[Any]) -> list[LiveReport]:
    """A live host's records (see ``sendLive`` in runtime.js) as LiveReports."""
    reports: list[LiveReport] = []
    for record in records:
        kind = record["kind"]
        if kind == "console":
            reports.append(LiveConsole(int(record["n"]), str(record["level"]), str(record["text"])))
        elif kind == "event":
            reports.append(LiveEvent(int(record["n"]), str(record["name"]), from_json(record["payload"])))
        elif kind == "fetch":
            body = record["body"]
            reports.append(
                LiveFetch(
                    int(record["id"]),
                    str(record["url"]),
                    str(record["method"]),
                    [(str(name), str(value)) for name, value in record["headers"]],
                    None if body is None else base64.b64decode(body),
                )
            )
        else:
            value = record["value"]
            reports.append(
                LiveProgress(int(record["calls"]), record["percent"], Undefined if value is None else value)
            )
    return reports
