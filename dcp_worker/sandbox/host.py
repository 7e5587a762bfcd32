"""The sandbox host: one V8 isolate in a process of its own, driven by a supervisor.

A supervisor starts this module as a subprocess and talks to it over its standard input and
output with length-prefixed JSON frames (see ``framing``). Whatever the job does to this
process (a wedged isolate, a memory bomb, a V8 crash) ends only this process; the
supervisor sees the channel close and starts another host.

Messages, supervisor to host:
  {"op": "assign", "job": {...}}        -> {"op": "assigned"} or {"op": "assignError", "error": {...}}
  {"op": "run"}, then a frame {"first": n, "data": [...]}  -> {"op": "results", "results": report}
      (or "numbers": [n, ...] in place of "first", when the slices' numbers do not run on; or
      "from": a, "step": s, "count": k in place of "data", for the integers a, a + s, ...)
  {"op": "eval", "code": "..."}          -> {"op": "evalResult", "ok": true, "value": tagged JSON}
                                            or {"op": "evalResult", "ok": false, "error": {...}}
      (the code runs as a global script; a promise it yields is awaited)
  {"op": "exit"}                         -> the process exits
A report is built by ``runtime.js`` (see ``newReport`` there). When the isolate's heap limit
is hit, the host answers {"op": "fatal", "kind": "memory", "message": ...} and exits. A host
started with ``--live MODE`` also sends {"op": "live", "records": [...]} while a batch runs: the
console lines and events (with ``supervised``, progress and fetch requests too) its slices make
as they happen (see ``live``), which its report then leaves out; those not sent yet when the
batch ends come with its answer, as {"op": "results", "live": [...], "results": report}. The
supervisor answers a fetch request with {"op": "fetched", "id": n, "ok": true, "response": {url,
status, statusText, headers, body}} (body in base64, or null) or {"op": "fetched", "id": n,
"ok": false, "error": {name, message, code?}}, at any time.

Before it reads the first message, a host locks itself down (see ``lockdown``): once V8 is
loaded and before it receives any job, it can compute and answer on its channel, nothing else.
With ``--lockdown required`` a host that cannot raise every wall answers
{"op": "fatal", "kind": "lockdown", "message": ...} and exits.

Test-only: ``--test-probes`` (which the supervisor never passes) makes the host answer
{"op": "probe", ...} messages and run the probe a work function names (see ``probes``), and
``--test-without WALL`` leaves a wall down, as on a machine that lacks it.

This module imports nothing from the rest of the package but ``json_dump``, ``json_parse``,
``framing``, ``limits``, ``live`` and ``lockdown``, so a host starts quickly.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import re
import sys
from collections.abc import Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

from dcp_worker.json_dump import dump_json
from dcp_worker.json_parse import parse_json
from dcp_worker.sandbox import limits
from dcp_worker.sandbox.framing import read_frame, write_frame
from dcp_worker.sandbox.live import ChannelReader, LiveMode, LivePoller, LiveRings
from dcp_worker.sandbox.lockdown import WALLS, Lockdown, Mode

if TYPE_CHECKING:
    from dcp_worker.sandbox.probes import Prober

SCRIPTS = ("encoding.js", "runtime.js")
# mini-racer reports a failed script as "<where>:<line>: <Name>: <message>" and then the source.
ERROR_LOCATION = re.compile(r"^(.*?):(\d+): (.*)$", re.MULTILINE)
# A script that does not parse is "<anonymous>", since its sourceURL comment was never read.
UNPARSED_SCRIPT = "<anonymous>"
# On the work function's first line, so that line numbers stay the file's own.
STRICT_PROLOGUE = '"use strict";'
# A batch's report is often larger than a pipe's default 64 KiB: with room for all of it, the
# host writes it and runs its next batch at once instead of waiting for the supervisor to read.
ANSWER_PIPE_BYTES = 1 << 20
# Each of the live rings, in UTF-16 code units: 1 MiB.
LIVE_RING_UNITS = 1 << 19


class Channel:
    """The host's end of its channel; stdout is pointed at stderr so stray writes can't corrupt it."""

    def __init__(self) -> None:
        self.read_fd = os.dup(0)
        self.write_fd = os.dup(1)
        with contextlib.suppress(OSError):  # not a pipe, or more than this system allows
            fcntl.fcntl(self.write_fd, fcntl.F_SETPIPE_SZ, ANSWER_PIPE_BYTES)
        self.reader: ChannelReader | None = None
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.dup2(2, 1)

    def receive(self) -> dict[str, Any]:
        message = parse_json(self.receive_raw())
        if not isinstance(message, dict):
            raise ValueError("expected a JSON object")
        return message

    def receive_raw(self) -> bytes:
        return read_frame(self.read_fd) if self.reader is None else self.reader.receive_raw()

    def read_in_thread(self, rings: LiveRings) -> None:
        """From now on a thread reads the channel, and hands fetch answers to ``rings``."""
        self.reader = ChannelReader(self.read_fd, rings)

    def send(self, message: dict[str, Any]) -> None:
        write_frame(self.write_fd, dump_json(message))

    def send_raw(self, body: bytes) -> None:
        write_frame(self.write_fd, body)


def js_string(text: str) -> str:
    """A JavaScript string literal for ``text`` (JSON's string syntax is JavaScript's)."""
    return dump_json(text).decode()


def describe_compile_error(error: Exception, filename: str) -> dict[str, Any]:
    """The error a job's script raised while loading, with its line when the line is the job's."""
    text = str(error)
    match = ERROR_LOCATION.search(text)
    headline = match.group(3) if match else text.partition("\n")[0]
    name, _, message = headline.partition(": ")
    described: dict[str, Any] = {"name": name or "Error", "message": message.strip(), "file": filename}
    if match and match.group(1) in (UNPARSED_SCRIPT, filename):
        described["line"] = int(match.group(2))
    return described


def load_v8(memory_mb: int) -> list[tuple[str, str]]:
    """Load V8 and read the runtime's scripts: what a host needs from files. Starts no thread."""
    from py_mini_racer import init_mini_racer

    init_mini_racer(flags=limits.v8_flags(memory_mb), ignore_duplicate_init=True)
    package = resources.files("dcp_worker.sandbox") / "js"
    return [(script, (package / script).read_text(encoding="utf-8")) for script in SCRIPTS]


class Sandbox:
    """A mini-racer isolate loaded with the DCP runtime and one job.

    Make it, and call it, in a running asyncio loop: mini-racer then answers on the calling thread
    rather than through an event-loop thread of its own, two thread switches fewer a call (on a
    quiet machine, ~80 µs a call rather than ~300 µs); only a promise needs the loop.
    """

    def __init__(self, memory_mb: int, runtime: Sequence[tuple[str, str]]) -> None:
        import asyncio

        from py_mini_racer import MiniRacer

        asyncio.get_running_loop()  # raises at once if there is none, where mini-racer would start one
        self.racer = MiniRacer()
        for script, source in runtime:
            self.racer.eval(f"{source}\n//# sourceURL=dcp-{script}")
        # V8 finds the local time zone through /etc/localtime on first use: use it while
        # files can still be read.
        self.racer.eval("new Date().getTimezoneOffset()")
        if memory_mb:
            self.racer.set_hard_memory_limit(memory_mb << 20)

    def assign(self, job: dict[str, Any]) -> dict[str, Any] | None:
        """Compile the work function and modules; return an error description or None."""
        from py_mini_racer import JSEvalException

        modules: dict[str, dict[str, str]] = job.get("modules", {})
        for name, module in modules.items():
            filename = module["filename"]
            script = (
                f"__dcpHost.defineModule({js_string(name)}, function (exports, require, module) {{"
                f"{module['source']}\n}});\n//# sourceURL={filename}"
            )
            try:
                self.racer.eval(script)
            except JSEvalException as error:
                return describe_compile_error(error, filename)
        filename = job["filename"]
        prologue = STRICT_PROLOGUE if job["strict"] else ""
        script = f"{prologue}__dcpHost.setWorkFunction(({job['workFunction']}\n));\n//# sourceURL={filename}"
        try:
            self.racer.eval(script)
            self.racer.eval(f"__dcpHost.configure({js_string(dump_json(job['config']).decode())})")
        except JSEvalException as error:
            return describe_compile_error(error, filename)
        return None

    async def run(self, slices_json: str) -> str:
        """Run a batch, given as JSON text; return the runtime's report, as JSON text."""
        return await self._call_runtime("runBatch", slices_json, "a report")

    def open_live(self, mode: LiveMode) -> LiveRings:
        """Have the runtime report live (and fetch, when supervised) through rings; the host's
        end of them."""
        supervised = "true" if mode == LiveMode.SUPERVISED else "false"
        memory = self.racer.eval(f"__dcpHost.openLive({LIVE_RING_UNITS}, {supervised})")
        if not isinstance(memory, memoryview):
            raise TypeError(f"runtime returned {type(memory).__name__}, not a SharedArrayBuffer")
        return LiveRings(memory)

    async def evaluate(self, code: str) -> str:
        """Evaluate ``code`` as a global script; return the runtime's JSON verdict on it."""
        return await self._call_runtime("evaluate", code, "a verdict")

    async def _call_runtime(self, function: str, text: str, answer: str) -> str:
        """``__dcpHost[function](text)``, its promise awaited; its answer is JSON text."""
        from py_mini_racer import JSPromise

        outcome = self.racer.eval(f"__dcpHost.{function}({js_string(text)})")
        if isinstance(outcome, JSPromise):
            outcome = await outcome
        if not isinstance(outcome, str):
            raise TypeError(f"runtime returned {type(outcome).__name__}, not {answer}")
        return outcome

    def close(self) -> None:
        self.racer.close()


def results_frame(report: str, live_records: list[bytes]) -> bytes:
    """The answer to a run, with the live records the poller had not sent yet (one write, not two)."""
    live = b'"live":[' + b",".join(live_records) + b"]," if live_records else b""
    return b'{"op":"results",' + live + b'"results":' + report.encode() + b"}"


async def serve(channel: Channel, sandbox: Sandbox, prober: Prober | None, live: LivePoller | None) -> None:
    from py_mini_racer import JSOOMException

    while True:
        try:
            message = channel.receive()
        except EOFError:
            return
        op = message.get("op")
        if op == "run":
            batch = channel.receive_raw().decode()
            if live is not None:
                live.begin()
            try:
                report = await sandbox.run(batch)
            except JSOOMException as error:
                channel.send({"op": "fatal", "kind": "memory", "message": str(error)})
                return
            finally:
                unsent = live.end() if live is not None else []
            if prober is not None:
                prober.after_batch(sandbox.racer)
            channel.send_raw(results_frame(report, unsent))
        elif op == "assign":
            problem = sandbox.assign(message["job"])
            channel.send({"op": "assigned"} if problem is None else {"op": "assignError", "error": problem})
        elif op == "eval":
            try:
                verdict = await sandbox.evaluate(message["code"])
            except JSOOMException as error:
                channel.send({"op": "fatal", "kind": "memory", "message": str(error)})
                return
            channel.send_raw(b'{"op":"evalResult",' + verdict.encode()[1:])
        elif op == "exit":
            return
        elif op == "probe" and prober is not None:
            channel.send(prober.answer(message))
        else:
            raise ValueError(f"unknown operation {op!r}")


def main(argv: list[str] | None = None) -> None:
    # A host never opens a TLS connection, and asyncio loads OpenSSL only when it can: keep it
    # out of the locked-down process (4 MB and ~10 ms a host). Only this program does so, before
    # anything imports asyncio; the supervisor imports this module too.
    sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]
    import asyncio

    parser = argparse.ArgumentParser(prog="dcp-worker sandbox-host")
    parser.add_argument("--memory-mb", type=int, default=0)
    parser.add_argument("--lockdown", type=Mode, choices=list(Mode), default=Mode.BEST_EFFORT)
    parser.add_argument("--live", type=LiveMode, choices=list(LiveMode), help="report as slices run")
    parser.add_argument("--test-probes", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--test-without", action="append", choices=WALLS, default=[], help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    channel = Channel()
    status = limits.StatusFile()
    runtime = load_v8(options.memory_mb)
    prober = load_prober() if options.test_probes else None
    lockdown = None
    if options.lockdown != Mode.OFF:
        lockdown = Lockdown(keep=(channel.read_fd, channel.write_fd, status.fd), without=options.test_without)
        lockdown.before_threads()
    # Made after before_threads closed every other descriptor, since the loop has descriptors too.
    loop = asyncio.new_event_loop()
    loop.run_until_complete(host(options, channel, status, runtime, prober, lockdown))


async def host(
    options: argparse.Namespace,
    channel: Channel,
    status: limits.StatusFile,
    runtime: Sequence[tuple[str, str]],
    prober: Prober | None,
    lockdown: Lockdown | None,
) -> None:
    sandbox = Sandbox(options.memory_mb, runtime)
    try:
        # Their threads start before the memory cap is measured and the walls rise.
        live = None
        if options.live is not None:
            rings = sandbox.open_live(options.live)
            live = LivePoller(rings, channel.send_raw)
            channel.read_in_thread(rings)
        limits.cap_process_memory(options.memory_mb, status)
        status.close()
        if lockdown is not None:
            report = lockdown.seal()
            if options.lockdown == Mode.REQUIRED and not report.complete:
                channel.send({"op": "fatal", "kind": "lockdown", "message": report.summary()})
                return
        await serve(channel, sandbox, prober, live)
    finally:
        sandbox.close()
        sys.stderr.flush()
        os._exit(0)


def load_prober() -> Prober:
    from dcp_worker.sandbox.probes import Prober

    return Prober()


if __name__ == "__main__":
    main()
