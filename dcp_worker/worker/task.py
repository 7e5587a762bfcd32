"""The worker's side of the task protocol: what it asks, what it is given, what it reports.

``requestTask@3`` asks for work and is answered with a TDPayload: the scheduler-signed
``{owner, signature, auth}`` (the slices' authorization, echoed verbatim in every report on
them) and a ``body`` of new jobs and slices. Slices are then reported with ``status`` (begin,
return), ``result`` and ``workEmit``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dcp_worker.errors import ProtocolError
from dcp_worker.protocol.canonical_json import Verbatim

__all__ = [
    "CAPABILITIES",
    "FetchState",
    "JobMessage",
    "SliceMessage",
    "Task",
    "parse_task",
    "result_body",
    "soteria_period",
    "status_body",
    "work_emit_body",
]

log = logging.getLogger(__name__)

KVIN_V9 = 64
FDLIBM = 16
# V8 engine, fdlibm maths, KVIN v9: what the Node worker reports (80), plus the engine bit.
CAPABILITIES = 1 | FDLIBM | KVIN_V9
DEFAULT_SOTERIA_MS = 4 * 60 * 1000


class FetchState:
    NORMAL = 1
    NOTIFY_SOTERIA = 2
    STARTUP_CHECK = 4
    ROUND_ROBIN = 8
    RETURN_ALL_SLICES = 16


class TaskError(ProtocolError):
    """A task (or a part of one) that cannot be used; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class JobMessage:
    job_id: str
    code_location: str
    arguments: tuple[Any, ...] = ()
    arguments_location: tuple[tuple[int, str], ...] = ()
    use_strict: bool = False
    public: Mapping[str, Any] = field(default_factory=dict)
    dependencies: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        name = self.public.get("name")
        return name if isinstance(name, str) and name else self.job_id[:22]


@dataclass(frozen=True, slots=True)
class SliceMessage:
    job_id: str
    number: int
    datum_uri: str
    is_estimation: bool = False


@dataclass(frozen=True, slots=True)
class Task:
    """What one ``requestTask@3`` answer gives: jobs and slices, and their authorization."""

    authorization: Verbatim  # written once, echoed with every report on these slices
    jobs: Mapping[str, JobMessage]
    slices: Sequence[SliceMessage]
    compute_group_origins: Mapping[str, Mapping[str, Sequence[str]]]
    refused: Sequence[str] = ()  # why parts of the task were refused, one line each
    scheduler_config: Mapping[str, Any] = field(default_factory=dict)  # Soteria's tuning

    def origin_grants(self) -> Iterator[tuple[str, str]]:
        """(origin, purpose) pairs the task's compute groups are allowed; malformed ones skipped."""
        for purposes in self.compute_group_origins.values():
            if not isinstance(purposes, Mapping):
                continue
            for purpose, urls in purposes.items():
                if isinstance(urls, list):
                    yield from ((url, str(purpose)) for url in urls if isinstance(url, str))


def parse_task(payload: object, known_jobs: Mapping[str, JobMessage]) -> Task | None:
    """The task in a ``requestTask@3`` answer, or ``None`` when there is no work.

    A malformed payload raises ``TaskError``; a malformed job or slice is left out, with the
    reason in ``Task.refused``, so that one bad slice costs only itself.
    """
    if not isinstance(payload, Mapping):
        raise TaskError("a task that is not an object")
    body = payload.get("body")
    if not isinstance(body, Mapping) or (not body.get("newJobs") and not body.get("task")):
        return None
    authorization = {key: value for key, value in payload.items() if key != "body"}
    if not isinstance(authorization.get("auth"), Mapping) or "signature" not in authorization:
        raise TaskError("a task without the scheduler's signed authorization")
    refused: list[str] = []
    jobs = dict(known_jobs)
    new_jobs = body.get("newJobs") or {}
    if not isinstance(new_jobs, Mapping):
        raise TaskError("a task whose newJobs is not an object")
    for job_id, message in new_jobs.items():
        try:
            jobs[job_id] = _job(job_id, message)
        except TaskError as error:
            refused.append(f"job {job_id}: {error}")
    slices: list[SliceMessage] = []
    task = body.get("task") or {}
    if not isinstance(task, Mapping):
        raise TaskError("a task whose slices are not an object of lists")
    for job_id, messages in task.items():
        if not isinstance(messages, list):
            refused.append(f"job {job_id}: its slices are not a list")
            continue
        for message in messages:
            try:
                slices.append(_slice(job_id, message, jobs))
            except TaskError as error:
                refused.append(f"job {job_id}: {error}")
    origins = body.get("computeGroupOrigins") or {}
    scheduler_config = body.get("schedulerConfig") or {}
    return Task(
        Verbatim(authorization),
        jobs,
        slices,
        origins if isinstance(origins, Mapping) else {},
        refused,
        scheduler_config if isinstance(scheduler_config, Mapping) else {},
    )


def _job(job_id: object, message: object) -> JobMessage:
    if not isinstance(message, Mapping):
        raise TaskError("the job message is not an object")
    code = message.get("codeLocation")
    if not isinstance(code, str) or not code:
        raise TaskError("the job has no codeLocation")
    arguments = message.get("arguments") or ()
    locations = message.get("argumentsLocation") or ()
    if not isinstance(arguments, list | tuple) or not isinstance(locations, list | tuple):
        raise TaskError("the job's arguments are not lists")
    located: list[tuple[int, str]] = []
    for entry in locations:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("argIndex"), int):
            raise TaskError("an argumentsLocation entry without an argIndex")
        located.append((entry["argIndex"], str(entry.get("value"))))
    dependencies = message.get("dependencies") or ()
    if not isinstance(dependencies, list | tuple):
        raise TaskError("the job's dependencies are not a list")
    public = message.get("public")
    return JobMessage(
        job_id=str(job_id),
        code_location=code,
        arguments=tuple(arguments),
        arguments_location=tuple(located),
        use_strict=bool(message.get("useStrict")),
        public=public if isinstance(public, Mapping) else {},
        dependencies=tuple(str(name) for name in dependencies),
    )


def _slice(job_id: str, message: object, jobs: Mapping[str, JobMessage]) -> SliceMessage:
    if not isinstance(message, Mapping):
        raise TaskError("a slice message that is not an object")
    number = message.get("sliceNumber")
    if not isinstance(number, int) or isinstance(number, bool) or number < 1:
        raise TaskError(f"a slice with a bad sliceNumber {number!r}")
    if job_id not in jobs:
        raise TaskError(f"slice {number} of a job the scheduler never described")
    datum = message.get("datumUri")
    if not isinstance(datum, str) or not datum:
        raise TaskError(f"slice {number} has no datumUri")
    return SliceMessage(job_id, number, datum, bool(message.get("isEstimationSlice")))


def status_body(
    worker_id: str,
    job_id: str,
    numbers: Sequence[int],
    authorization: Verbatim,
    status: str,
    reason: object = None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "sliceNumbers": list(numbers),
        "job": job_id,
        "authorizationMessage": authorization,
        "status": status,
    }
    if status == "return":
        entry["reason"] = reason
        entry["isEstimationSlice"] = False
    return {"worker": worker_id, "slices": [entry]}


def result_body(
    worker_id: str,
    slice_message: SliceMessage,
    payment_address: str,
    authorization: Verbatim,
    result: Any,
    metrics: Mapping[str, float],
) -> dict[str, Any]:
    return {
        "slice": slice_message.number,
        "job": slice_message.job_id,
        "worker": worker_id,
        "paymentAddress": payment_address,
        "metrics": dict(metrics),
        "authorizationMessage": authorization,
        "resultV2": result,
    }


def work_emit_body(
    worker_id: str,
    slice_message: SliceMessage,
    authorization: Verbatim,
    event_name: str,
    payload: Any,
) -> dict[str, Any]:
    return {
        "eventName": event_name,
        "payload": payload,
        "job": slice_message.job_id,
        "slice": slice_message.number,
        "worker": worker_id,
        "authorizationMessage": authorization,
    }


def soteria_period(scheduler_config: Mapping[str, Any]) -> float:
    """Seconds between notifications of held slices, as a task's ``schedulerConfig`` sets them
    (dcp-client: ``shared.frequencyMs`` times ``shared.debuggingFactor``, 4 minutes if unset)."""
    shared = scheduler_config.get("shared")
    shared = shared if isinstance(shared, Mapping) else {}

    def positive(name: str, default: float) -> float:
        value = shared.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return float(value)
        return default

    return positive("frequencyMs", DEFAULT_SOTERIA_MS) * positive("debuggingFactor", 1.0) / 1000
