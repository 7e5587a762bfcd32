"""The evaluator protocol for one sandbox: what the supervisor says, what the sandbox answers.

Every ``workerMessage`` is acknowledged as soon as it is read; its KVIN payload (a request) is
then handled in arrival order, except ``moduleGroup`` (the answer to a ``dependency`` request,
awaited by ``assign``) and ``die``, which take effect at once. Answers are KVIN envelopes
``{ringSource, value}`` on the ring DCP's supervisor expects each on: 1 for
``applyRequirementsDone``; 2 for ``describe``, ``dependency``, ``assigned``, ``reject``,
``resetStateDone``, ``evalResult::*`` and ``error``; 3 for the slice stream (``console``,
``progress``, ``emitEvent``, ``measurement``, then ``complete``, ``workError``, ``workReject``
or ``sandboxError``).

Where dcp-client's ``evaluator-node.js`` crashes (an error during ``assign``, ``main`` before
``assign``), this answers with the protocol's error messages instead: ``reject`` for a job that
cannot be assigned, ``sandboxError`` for a slice that cannot run.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Any

from dcp_worker import kvin
from dcp_worker.errors import KVINError
from dcp_worker.evaluator.lines import LineChannel, LineTooLong
from dcp_worker.evaluator.sandbox import (
    EvaluatorSandbox,
    FetchAnswer,
    FetchedResponse,
    FetchFailed,
    SandboxLost,
    SliceReport,
)
from dcp_worker.json_parse import parse_json
from dcp_worker.jsvalues import JSError, Undefined
from dcp_worker.supervisor.job import WORKTIMES, JobSpec, Module
from dcp_worker.supervisor.live_reports import LiveConsole, LiveEvent, LiveFetch, LiveReport
from dcp_worker.tagged_json import to_json, to_json_many

RING_REQUIREMENTS = 1
RING_JOB = 2
RING_WORK = 3
ACK = {"type": "result", "step": "workerMessage", "success": True, "origin": "workerMessage"}
# How long a request's ack may wait for the request's answer to leave with it.
ACK_HOLD_SECONDS = 0.01
NOT_ASSIGNED = "this sandbox has no job: 'main' arrived before 'assign'"


def exception_of(name: str, message: str) -> dict[str, Any]:
    """An ack's ``exception``: the shape dcp-client's sandbox gives a thrown error."""
    return {"name": name, "message": message, "fileName": "", "lineNumber": 0, "stack": f"{name}: {message}"}


def failed_ack(step: str, name: str, message: str, *, origin: str | None = None) -> dict[str, Any]:
    ack: dict[str, Any] = {"type": "result", "step": step, "success": False}
    if origin is not None:
        ack["origin"] = origin
    ack["exception"] = exception_of(name, message)
    ack["e"] = {}
    return ack


def fetch_answer(message: dict[str, Any]) -> FetchAnswer:
    """A supervisor's ``fetchResponse`` or ``fetchError``, as the sandbox takes it."""
    try:
        if message["request"] == "fetchResponse":
            data = message["data"]
            body = data.get("bodyBuffer")
            return FetchedResponse(
                str(data.get("url", "")),
                int(data["status"]),
                str(data.get("statusText", "")),
                [(str(name), str(value)) for name, value in data.get("headersEntries") or ()],
                None if body is None or body is Undefined else bytes(body),
            )
        error = message["error"]
        code = error.get("code")
        return FetchFailed(
            str(error.get("name", "Error")),
            str(error.get("message", "")),
            None if code is None else str(code),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        return FetchFailed("TypeError", f"the supervisor's answer to a fetch is malformed ({error})")


def date_text() -> str:
    """The time as JavaScript's ``Date()`` writes it, for ``DIE:`` lines."""
    return time.strftime("%a %b %d %Y %H:%M:%S GMT%z", time.localtime())


def normalised_module_id(module_id: str) -> str:
    """A module id as BravoJS normalises a dependency of the main module ('./x' is 'x')."""
    parts: list[str] = []
    for part in module_id.split("/"):
        if part == "..":
            if parts:
                parts.pop()
        elif part not in ("", "."):
            parts.append(part)
    return "/".join(parts)


def modules_answering(ids: list[str], data: Any) -> dict[str, Module]:
    """A ``moduleGroup``'s sources ({package: {file: source}}) by the id each is required as:
    ``package/file``, as dcp-client's sandbox keys them, or ``file`` alone when that is the id
    asked for (a package manager that answers by job, as the scheduler double's does)."""
    modules: dict[str, Module] = {}
    for package, files in data.items() if isinstance(data, dict) else ():
        for file_name, source in files.items() if isinstance(files, dict) else ():
            if isinstance(source, str):
                key = f"{package}/{file_name}"
                if key not in ids and file_name in ids:
                    key = file_name
                modules[key] = Module(source, key)
    return modules


class AssignRejected(Exception):
    """The job cannot be assigned to this sandbox; the message says why."""


class EvaluatorSession:
    """One connection: one sandbox, one job for life. ``run`` until the peer leaves or ``die``."""

    def __init__(
        self, channel: LineChannel, sandbox: EvaluatorSandbox, *, finish_at_end_of_input: bool = False
    ) -> None:
        """``finish_at_end_of_input``: at the end of input, answer the requests read before it
        (standard input); otherwise the peer has gone and the session ends at once (a socket)."""
        self._channel = channel
        self._sandbox = sandbox
        self._finish_at_end_of_input = finish_at_end_of_input
        # Requests for _work, in order; None: the input has ended.
        self._requests: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._modules: dict[float, asyncio.Future[Any]] = {}
        self._assigned = False
        self._last_percent: float | None = None  # the running slice's last progress, as DCP reports it
        self._handling = False  # whether _work is answering a request now
        self._ended = asyncio.Event()

    async def run(self) -> None:
        reader = asyncio.create_task(self._read())
        worker = asyncio.create_task(self._work())
        ended = asyncio.create_task(self._ended.wait())
        try:
            last = {worker, ended} if self._finish_at_end_of_input else {reader, worker, ended}
            await asyncio.wait(last, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, worker, ended):
                task.cancel()
            for task in (reader, worker, ended):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self._sandbox.close()
            await self._channel.close()

    def _end(self, why: str) -> None:
        """Say that the sandbox is gone (``DIE:``, as the reference does) and end the session."""
        self._channel.send_die(why)
        self._ended.set()

    # ---- reading: acks, die and moduleGroup at once; requests queued ----

    async def _read(self) -> None:
        while True:
            try:
                line = await self._channel.read_line()
            except LineTooLong as error:
                self._channel.send_message(failed_ack("parseInput::parse", "RangeError", str(error)))
                continue
            if line is None:
                self._requests.put_nowait(None)
                return
            if line.strip() and not (self._receive(line) and not self._handling):
                # A request _work takes up at once has its ack leave with its answer; any other
                # line's ack (or error) leaves now.
                await self._channel.drain()

    def _receive(self, line: bytes) -> bool:
        """Answer or queue one line; whether it was queued for ``_work``."""
        try:
            outer = parse_json(line)
        except ValueError as error:
            self._channel.send_message(failed_ack("parseInput::parse", "SyntaxError", str(error)))
            return False
        kind = outer.get("type") if isinstance(outer, dict) else None
        if kind == "die":
            self._end(date_text())
        elif kind == "workerMessage":
            return self._receive_worker_message(outer.get("message"))
        elif kind == "newSerializer":
            self._channel.send_message(ACK)
        else:
            name = str(kind) if isinstance(kind, str) else "undefined"
            invalid = f"Invalid message type '{name}'"
            self._channel.send_message(failed_ack(name, "Error", invalid, origin=name))
        return False

    def _receive_worker_message(self, envelope: Any) -> bool:
        if not (isinstance(envelope, dict) and "_serializeVerId" in envelope):
            # dcp-client's sandbox hands such a message on undecoded, and every handler drops it.
            self._channel.send_message(ACK)
            self._channel.send_log("dropped a workerMessage that is not KVIN")
            return False
        try:
            request = kvin.unmarshal(envelope)
        except KVINError as error:
            self._channel.send_message(
                failed_ack("workerMessage", "Error", str(error), origin="workerMessage")
            )
            return False
        self._channel.send_message(ACK)
        if not isinstance(request, dict):
            self._channel.send_log("dropped a workerMessage that is not a request object")
            return False
        name = request.get("request")
        if name in ("moduleGroup", "moduleGroupError"):
            waiting = self._modules.pop(request.get("id"), None)  # type: ignore[arg-type]
            if waiting is not None and not waiting.done():
                waiting.set_result(request)
            return False
        if name in ("fetchResponse", "fetchError"):
            fetch_id = request.get("id")
            if isinstance(fetch_id, int | float):
                self._sandbox.deliver_fetch(int(fetch_id), fetch_answer(request))
            return False
        self._requests.put_nowait(request)
        return True

    # ---- handling requests, in order ----

    async def _work(self) -> None:
        handlers = {
            "describe": self._describe,
            "applyRequirements": self._apply_requirements,
            "assign": self._assign,
            "resetState": self._reset_state,
            "main": self._main,
            "eval": self._eval,
        }
        while True:
            request = await self._requests.get()
            if request is None:
                return
            handler = handlers.get(request.get("request"))  # type: ignore[arg-type]
            self._handling = True
            # The ack leaves with the answer, or on its own if the answer takes a while: each
            # write wakes the supervisor, and most answers (a slice's end) come within the hold.
            send_ack = asyncio.get_running_loop().call_later(ACK_HOLD_SECONDS, self._channel.flush)
            try:
                if handler is None:
                    self._channel.send_log(f"ignored request {request.get('request')!r}")
                else:
                    await handler(request)
            except SandboxLost as lost:
                self._channel.send_log(f"sandbox lost: {lost}")
                self._end(f"sandbox lost: {lost}")
                return
            finally:
                send_ack.cancel()
                self._handling = False
            await self._channel.drain()

    def _post(self, ring: int, value: dict[str, Any]) -> None:
        self._channel.send_message(
            {"type": "workerMessage", "message": kvin.marshal({"ringSource": ring, "value": value})}
        )

    async def _describe(self, request: dict[str, Any]) -> None:
        capabilities = await self._sandbox.capabilities()
        self._post(
            RING_JOB, {"request": "describe", "capabilities": capabilities, "worktimes": list(WORKTIMES)}
        )

    async def _apply_requirements(self, request: dict[str, Any]) -> None:
        # Only map-basic, with no WebGPU or OffscreenCanvas: describe says so, and the
        # supervisor matches jobs to it; this sandbox's globals are the same for every job.
        self._post(RING_REQUIREMENTS, {"request": "applyRequirementsDone"})

    async def _reset_state(self, request: dict[str, Any]) -> None:
        # The runtime starts each slice's bookkeeping (progress, console) afresh by itself.
        self._post(RING_JOB, {"request": "resetStateDone"})

    async def _assign(self, request: dict[str, Any]) -> None:
        job = request.get("job")
        try:
            if self._assigned:
                raise AssignRejected("this sandbox already has a job; a sandbox runs one job for life")
            if not isinstance(job, dict):
                raise AssignRejected("'assign' carries no job object")
            spec = await self._job_spec(job)
        except AssignRejected as rejected:
            self._post(RING_JOB, {"request": "reject", "error": JSError("Error", str(rejected))})
            return
        error = await self._sandbox.assign(spec)
        if error is not None:
            self._post(RING_JOB, {"request": "reject", "error": error})
            return
        self._assigned = True
        self._post(RING_JOB, {"request": "assigned", "jobAddress": job.get("address", Undefined)})

    async def _job_spec(self, job: dict[str, Any]) -> JobSpec:
        worktime = job.get("worktime")
        if isinstance(worktime, dict):
            name, version = worktime.get("name"), worktime.get("version")
            if {"name": name, "version": version} not in WORKTIMES:
                available = ", ".join(f"{w['name']}@{w['version']}" for w in WORKTIMES)
                raise AssignRejected(
                    f"worktime {name}@{version} is not available; this evaluator has {available}"
                )
        work_function = job.get("workFunction")
        if not isinstance(work_function, str):
            raise AssignRejected("the job has no work function (job.workFunction is not a string)")
        arguments = job.get("arguments", [])
        if not isinstance(arguments, list):
            raise AssignRejected("job.arguments is not an array")
        if job.get("modulePath"):
            raise AssignRejected("job.modulePath must be empty: module.paths is not supported")
        try:
            tagged_arguments = to_json_many(list(arguments))
        except TypeError as error:
            raise AssignRejected(f"job.arguments cannot be passed to the work function: {error}") from None
        public = job.get("public")
        return JobSpec(
            work_function=work_function,
            filename=f"{job.get('id') or 'job'}/work-function.js",
            arguments=tagged_arguments,
            modules=await self._dependencies(job.get("dependencies")),
            public={k: v for k, v in public.items() if isinstance(v, str)}
            if isinstance(public, dict)
            else {},
            strict=bool(job.get("useStrict")),
        )

    async def _dependencies(self, dependencies: Any) -> dict[str, Module]:
        """The job's modules, asked of the supervisor in one ``dependency`` round trip."""
        if not dependencies:
            return {}
        if not (isinstance(dependencies, list) and all(isinstance(d, str) for d in dependencies)):
            raise AssignRejected("job.dependencies is not an array of module ids")
        request_id = time.time() * 1000 + random.random()
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._modules[request_id] = answer
        ids = [normalised_module_id(d) for d in dependencies]
        self._post(RING_JOB, {"request": "dependency", "data": ids, "id": request_id})
        await self._channel.drain()
        group = await answer
        if group.get("request") == "moduleGroupError":
            raise AssignRejected(f"the job's modules could not be loaded: {group.get('stack')}")
        return modules_answering(ids, group.get("data"))

    async def _main(self, request: dict[str, Any]) -> None:
        if not self._assigned:
            self._end_slice_with_sandbox_error(NOT_ASSIGNED)
            return
        try:
            datum = to_json(request.get("data", Undefined))
        except TypeError as error:
            self._end_slice_with_sandbox_error(
                f"the slice's datum cannot be passed to the work function: {error}"
            )
            return
        self._last_percent = None
        try:
            report = await self._sandbox.run_slice(datum, self._post_live)
        except SandboxLost as lost:
            # The host is gone (its memory cap, a V8 crash): the supervisor hears it of this
            # slice before the DIE line.
            self._end_slice_with_sandbox_error(f"the sandbox died during the slice: {lost}")
            raise
        self._stream_slice(report)

    def _end_slice_with_sandbox_error(self, message: str) -> None:
        self._post_measurement(0)
        self._post(RING_WORK, {"request": "sandboxError", "error": JSError("Error", message)})

    def _post_measurement(self, milliseconds: float) -> None:
        self._post(
            RING_WORK,
            {"request": "measurement", "total": milliseconds, "webGL": 0, "webGPU": 0, "CPU": milliseconds},
        )

    def _post_progress(self, percent: float, value: Any, indeterminate: bool, calls: int) -> None:
        """One ``progress`` message for ``calls`` progress() calls, the last with ``value``."""
        self._post(
            RING_WORK,
            {
                "request": "progress",
                "progress": percent,
                "value": value,
                "indeterminate": int(indeterminate),
                "throttledReports": calls - 1,
            },
        )

    def _post_console(self, level: str, text: str) -> None:
        self._post(
            RING_WORK, {"request": "console", "payload": {"level": level, "message": [text], "same": 1}}
        )

    def _post_event(self, name: str, data: Any) -> None:
        self._post(
            RING_WORK,
            {"request": "emitEvent", "payload": {"eventName": "custom", "customEvent": name, "data": data}},
        )

    async def _post_live(self, reports: list[LiveReport]) -> None:
        """What a slice reports while it runs, sent on at once (and waited for while the
        supervisor does not read: the sandbox then keeps its reports for the slice's end)."""
        self._post_reports(reports)
        await self._channel.drain()

    def _post_reports(self, reports: list[LiveReport]) -> None:
        for report in reports:
            if isinstance(report, LiveConsole):
                self._post_console(report.level, report.text)
            elif isinstance(report, LiveEvent):
                self._post_event(report.name, report.data)
            elif isinstance(report, LiveFetch):
                self._post_fetch_request(report)
            else:
                # As DCP's sandbox: progress() with no value repeats the last one, and is
                # indeterminate only before there is one; going backwards keeps the last value,
                # indeterminate. A bad value is indeterminate too (and keeps the last value).
                advanced = report.percent is not None and (
                    self._last_percent is None or report.percent >= self._last_percent
                )
                if advanced:
                    self._last_percent = report.percent
                repeated = (
                    report.percent is None and report.value is Undefined and self._last_percent is not None
                )
                self._post_progress(
                    self._last_percent or 0, report.value, not (advanced or repeated), report.calls
                )

    def _post_fetch_request(self, fetch: LiveFetch) -> None:
        """As DCP's sandbox asks: the supervisor checks the origin, fetches and answers."""
        self._post(
            RING_JOB,
            {
                "request": "fetchRequest",
                "id": fetch.id,
                "data": {
                    "url": fetch.url,
                    "headersEntries": [list(header) for header in fetch.headers],
                    "method": fetch.method,
                    "bodyBuffer": fetch.body,
                    "mode": "cors",
                    "credentials": "same-origin",
                },
            },
        )

    def _stream_slice(self, report: SliceReport) -> None:
        """The end of a slice: what it reported that did not go live, then its outcome."""
        self._post_reports(report.live)
        for level, text in report.console:
            self._post_console(level, text)
        for name, data in report.events:
            self._post_event(name, data)
        if report.progress_calls:
            # Calls not reported live (throttled); the slice has finished when they are reported.
            self._post_progress(100, Undefined, True, report.progress_calls)
        self._post_measurement(report.seconds * 1000)
        if report.outcome == "complete":
            self._post(RING_WORK, {"request": "complete", "result": report.value})
        elif report.outcome == "error":
            self._post(RING_WORK, {"request": "workError", "error": report.error})
        elif report.outcome == "reject":
            self._post(
                RING_WORK,
                {"request": "workReject", "workRejectData": {"reason": report.reason, "retries": 0}},
            )
            self._end("worker close called")
        else:
            self._post(RING_WORK, {"request": "sandboxError", "error": report.error})
            self._end(f"sandbox memory cap reached: {report.error.message if report.error else ''}")

    async def _eval(self, request: dict[str, Any]) -> None:
        code = request.get("data")
        if not isinstance(code, str):
            self._post(
                RING_JOB, {"request": "error", "error": JSError("TypeError", "'eval' carries no code")}
            )
            return
        ok, value = await self._sandbox.evaluate(code)
        if ok:
            self._post(RING_JOB, {"request": f"evalResult::{request.get('msgId')}", "data": value})
        else:
            self._post(RING_JOB, {"request": "error", "error": value})
