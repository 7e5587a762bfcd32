"""One evaluator sandbox: a sandbox host process (``dcp_worker.sandbox.host``) seen as the
evaluator protocol needs it: probe its capabilities, assign it a job, run one slice at a time,
evaluate code.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from dcp_worker.errors import LockdownError, SandboxError
from dcp_worker.json_dump import dump_json
from dcp_worker.jsvalues import JSError, Undefined
from dcp_worker.supervisor.host_process import START_TIMEOUT_SECONDS, HostDied, HostTimeout, SandboxHost
from dcp_worker.supervisor.job import JobSpec
from dcp_worker.supervisor.live_reports import LiveMode, LiveReport, live_reports
from dcp_worker.tagged_json import from_json

# DCP's fdlibm check (calculate-capabilities in dcp-client): Math.exp of these inputs must give
# exactly these doubles, as fdlibm computes them.
FDLIBM_PROBE = """(() => {
  const inputs = [7.330382858376182753090688493103, 9.424777960769379347993890405633,
    14.660765716752370835251895186957, 16.755160819145565653798257699236, 7.33038285837618];
  const outputs = [1525.965888988748247356852516531944, 12391.64780791669181780889630317688,
    2328571.89435723237693309783935546875, 18909231.8632431328296661376953125,
    1525.965888988744154630694538354874];
  const strict = (function () { 'use strict'; return this === undefined; })();
  return { fdlibm: inputs.every((x, i) => Math.exp(x) === outputs[i]), useStrict: strict };
})()"""


class SandboxLost(SandboxError):
    """The sandbox host died or stopped answering; the sandbox is gone."""


@dataclass
class SliceReport:
    """What one slice did, in the order the protocol reports it."""

    seconds: float
    # Live reports (see run_slice's on_live) the host had not sent when the slice ended.
    live: list[LiveReport] = field(default_factory=list)
    progress_calls: int = 0
    console: list[tuple[str, str]] = field(default_factory=list)
    events: list[tuple[str, Any]] = field(default_factory=list)
    # "complete" (value), "error" (error), "reject" (reason), or "memory" (error)
    outcome: str = "complete"
    value: Any = Undefined
    error: JSError | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class FetchedResponse:
    url: str
    status: int
    status_text: str
    headers: list[tuple[str, str]]
    body: bytes | None


@dataclass(frozen=True, slots=True)
class FetchFailed:
    name: str
    message: str
    code: str | None = None


FetchAnswer = FetchedResponse | FetchFailed


def _js_error(described: dict[str, Any]) -> JSError:
    return JSError(
        str(described.get("name", "Error")), str(described.get("message", "")), described.get("stack")
    )


def slice_report(report: dict[str, Any], seconds: float, live: list[LiveReport]) -> SliceReport:
    """A one-slice batch report from the runtime (see ``newReport`` in runtime.js) as a SliceReport."""
    value = report["values"][0]
    if value is not None or not report["details"]:
        return SliceReport(
            seconds, live, progress_calls=1, value=from_json(value) if report["tagged"] else value
        )
    details = report["details"][0]
    outcome = SliceReport(
        seconds,
        live,
        progress_calls=int(details.get("progress", 0)),
        console=[(str(level), str(text)) for level, text in details.get("console", ())],
        events=[(str(name), from_json(payload)) for name, payload in details.get("events", ())],
    )
    if details["ok"]:
        outcome.value = from_json(details["value"])
    elif details["kind"] == "reject":
        outcome.outcome, outcome.reason = "reject", str(details["error"]["message"])
    else:
        outcome.outcome, outcome.error = details["kind"], _js_error(details["error"])
    return outcome


class EvaluatorSandbox:
    """A sandbox host process driven one request at a time. Always ``close`` it."""

    def __init__(self, host: SandboxHost) -> None:
        self._host = host
        self._slices = 0
        self._capabilities: dict[str, Any] | None = None

    @property
    def pid(self) -> int:
        return self._host.pid

    @classmethod
    async def start(cls, memory_mb: int, require_lockdown: bool = False) -> EvaluatorSandbox:
        """Spawn the host; it loads V8 and the runtime while the first request is on its way."""
        return cls(
            await SandboxHost.spawn(memory_mb, require_lockdown=require_lockdown, live=LiveMode.SUPERVISED)
        )

    async def _request(self, body: bytes, timeout: float | None) -> dict[str, Any]:
        try:
            return await self._host.request(body, timeout)
        except (HostDied, HostTimeout, LockdownError) as failure:
            raise SandboxLost(str(failure)) from None

    async def capabilities(self) -> dict[str, Any]:
        """``describe``'s capabilities, as this engine really has them (probed once)."""
        if self._capabilities is None:
            ok, probed = await self.evaluate(FDLIBM_PROBE, START_TIMEOUT_SECONDS)
            if not ok:
                raise SandboxLost(f"the capability probe failed: {probed}")
            self._capabilities = {
                "environment": {"webgpu": False, "offscreenCanvas": False, "fdlibm": bool(probed["fdlibm"])},
                "useStrict": bool(probed["useStrict"]),
            }
        return self._capabilities

    async def assign(self, job: JobSpec) -> JSError | None:
        """Load the job; the error that stopped it (a SyntaxError, say), or None."""
        reply = await self._request(job.assign_message(), START_TIMEOUT_SECONDS)
        if reply.get("op") == "assignError":
            return _js_error(reply["error"])
        return None

    async def run_slice(
        self, datum_json: Any, on_live: Callable[[list[LiveReport]], Awaitable[None]]
    ) -> SliceReport:
        """Run the work function on one datum (tagged JSON); no timeout, as DCP's supervisor keeps
        time. What the slice reports while it runs goes to ``on_live``; the SliceReport has the rest
        (so that it leaves with the slice's end, in one write)."""
        self._slices += 1
        started = time.perf_counter()
        self._host.send_batch(dump_json({"first": self._slices, "data": [datum_json]}))
        try:
            answer = await self._host.receive(None, lambda records: on_live(live_reports(records)))
        except (HostDied, LockdownError) as died:
            raise SandboxLost(str(died)) from None
        seconds = time.perf_counter() - started
        return slice_report(answer["results"], seconds, live_reports(answer.get("live", [])))

    def deliver_fetch(self, fetch_id: int, answer: FetchAnswer) -> None:
        """The supervisor's answer to the slice's ``fetch`` ``fetch_id``, for it to resume with."""
        if isinstance(answer, FetchedResponse):
            body = None if answer.body is None else base64.b64encode(answer.body).decode()
            fields: dict[str, Any] = {
                "ok": True,
                "response": {
                    "url": answer.url,
                    "status": answer.status,
                    "statusText": answer.status_text,
                    "headers": answer.headers,
                    "body": body,
                },
            }
        else:
            fields = {
                "ok": False,
                "error": {"name": answer.name, "message": answer.message, "code": answer.code},
            }
        self._host.send(dump_json({"op": "fetched", "id": fetch_id, **fields}))

    async def evaluate(self, code: str, timeout: float | None = None) -> tuple[bool, Any]:
        """(True, value) or (False, JSError) for ``code`` run as a global script, its promise awaited."""
        reply = await self._request(dump_json({"op": "eval", "code": code}), timeout)
        if reply["ok"]:
            return True, from_json(reply["value"])
        return False, _js_error(reply["error"])

    async def close(self) -> None:
        await self._host.close()
