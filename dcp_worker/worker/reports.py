"""What the worker tells the scheduler about a slice's run, besides its result.

A slice's console output and ``work.emit`` events go to the event router as ``workEmit``
``console`` and ``custom`` events; a failure as a ``workEmit`` ``error`` (and ``noProgress``).
A work function that throws still has a result, as in dcp-client 5.6: the error, with the code
``EUNCAUGHT``. Any other failure returns the slice, with its code as the reason.
"""

from __future__ import annotations

import datetime
import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from dcp_worker import kvin
from dcp_worker.errors import KVINError, SliceError
from dcp_worker.jsvalues import JSError
from dcp_worker.supervisor.outcomes import SliceOutcome
from dcp_worker.tagged_json import from_json

__all__ = ["NO_PROGRESS", "Emit", "error_result", "failure_code", "metrics", "slice_emits"]

UNCAUGHT = "EUNCAUGHT"
NO_PROGRESS = "ENOPROGRESS"
NO_PROGRESS_MESSAGE = "Sandbox never emitted a progress event."
# dcp-client's codes where it has one (a slice too slow, work.reject); this worker's own for
# the limits dcp-client does not enforce.
FAILURE_CODES = {
    "error": UNCAUGHT,
    "timeout": "ESLICETOOSLOW",
    "memory": "EMEMORYLIMIT",
    "crash": "ESANDBOXCRASH",
    "reject": "EWORKREJECT",
}


@dataclass(frozen=True, slots=True)
class Emit:
    """One ``workEmit``: its event name and payload."""

    event: str
    payload: dict[str, Any]


def failure_code(error: SliceError) -> str:
    return FAILURE_CODES.get(error.kind, "ESANDBOX")


def _timestamp() -> str:
    """Now, as JSON writes a JavaScript Date."""
    now = datetime.datetime.now(datetime.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _error_payload(error: SliceError, job_name: str) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "name": error.name,
        "message": error.message,
        "timestamp": _timestamp(),
        "code": failure_code(error),
    }
    if error.stack:
        payload["stack"] = error.stack
    payload["jobName"] = job_name
    return payload


def _plain_json(value: Any) -> bool:
    """Whether JSON carries ``value`` unchanged: no typed arrays, no undefined, no -0 or NaN."""
    if value is None or isinstance(value, str | bool | int):
        return True
    if isinstance(value, float):
        return math.isfinite(value) and not (value == 0 and math.copysign(1, value) < 0)
    if type(value) is list:
        return all(_plain_json(item) for item in value)
    if type(value) is dict:
        return all(isinstance(key, str) and _plain_json(item) for key, item in value.items())
    return False


def _json_or_marshalled(value: Any) -> Any:
    """``value`` itself where JSON carries it unchanged, else its KVIN envelope."""
    if _plain_json(value):
        return value
    try:
        return kvin.marshal(value)
    except KVINError:
        return repr(value)


def _console_runs(lines: Sequence[tuple[str, str]]) -> Iterator[tuple[str, str, int]]:
    """Console lines with repeats folded: (level, text, how many times in a row)."""
    for (level, text), run in itertools.groupby(lines):
        yield level, text, sum(1 for _ in run)


def slice_emits(outcome: SliceOutcome, job_name: str, seconds: float) -> list[Emit]:
    """The events a slice's run sends, in the order it made them, its failure last."""
    emits = [
        Emit("console", {"level": level, "message": kvin.marshal([text]), "same": same, "jobName": job_name})
        for level, text, same in _console_runs(outcome.console)
    ]
    for name, data in outcome.events:
        custom = {"eventName": "custom", "customEvent": name, "data": _json_or_marshalled(from_json(data))}
        emits.append(Emit("custom", {**custom, "jobName": job_name}))
    if outcome.error is not None:
        emits.append(Emit("error", _error_payload(outcome.error, job_name)))
    elif not outcome.called_progress:
        payload = {"message": NO_PROGRESS_MESSAGE, "code": NO_PROGRESS, "timestamp": round(seconds * 1000)}
        emits.append(Emit("error", {"name": "NoProgressError", **payload, "jobName": job_name}))
        emits.append(Emit("noProgress", {**payload, "progressReports": {}, "jobName": job_name}))
    return emits


def error_result(error: SliceError) -> JSError:
    """The result dcp-client submits for a work function that threw: the error itself."""
    return JSError(error.name, error.message, error.stack, {"errorCode": UNCAUGHT})


def metrics(seconds: float, in_size: int, out_size: int) -> dict[str, float]:
    """A slice's ``result`` metrics: time in ms, data sizes in characters."""
    return {
        "CPUTime": round(seconds * 1000, 3),
        "GPUTime": 0,
        "CPUDensity": 1,
        "GPUDensity": 0,
        "InDataSize": in_size,
        "OutDataSize": out_size,
    }
