"""The supervisor's handle on one sandbox-host subprocess."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import dcp_worker
from dcp_worker.errors import LockdownError, SandboxError, WorkFunctionError
from dcp_worker.json_parse import parse_json
from dcp_worker.sandbox.framing import HEADER, encode_frame, frame_length
from dcp_worker.sandbox.live import LiveMode
from dcp_worker.sandbox.lockdown import Mode, requested_mode
from dcp_worker.self_command import compiled_executable, program_command
from dcp_worker.supervisor.job import JobSpec

START_TIMEOUT_SECONDS = 60.0
EXIT_GRACE_SECONDS = 2.0
STDERR_TAIL_LINES = 40
OUT_OF_MEMORY_MARKERS = ("out of memory", "memory limit", "allocation failed")


class HostTimeout(Exception):
    """The host did not answer in time; it has been killed."""


class HostDied(Exception):
    """The host's channel closed before it answered."""

    def __init__(self, reason: str, *, out_of_memory: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.out_of_memory = out_of_memory


# What takes a live host's records (see ``dcp_worker.sandbox.live``) as they come.
LiveHandler = Callable[[list[Any]], Awaitable[None]]


def host_command(memory_mb: int, lockdown: Mode, live: LiveMode | None = None) -> list[str]:
    """In the single-file build a host is the executable itself (see ``self_command``)."""
    options = ["--memory-mb", str(memory_mb), "--lockdown", lockdown.value]
    if live is not None:
        options += ["--live", live.value]
    return [*program_command("dcp_worker.sandbox.host"), *options]


def host_environment() -> dict[str, str]:
    """Nothing of the supervisor's environment, only what finds this package."""
    if compiled_executable() is not None:
        return {}
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(dcp_worker.__file__)))
    return {"PYTHONPATH": package_parent, "PYTHONDONTWRITEBYTECODE": "1"}


class SandboxHost:
    """One running host. Use ``start``; always ``close`` (or ``kill``) it."""

    def __init__(self, process: asyncio.subprocess.Process, memory_mb: int) -> None:
        self._process = process
        self._memory_mb = memory_mb
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._stderr_reader = asyncio.create_task(self._drain_stderr())

    @classmethod
    async def spawn(
        cls, memory_mb: int, *, require_lockdown: bool = False, live: LiveMode | None = None
    ) -> SandboxHost:
        """A host process with no job yet, locked down (see ``dcp_worker.sandbox.lockdown``): it
        loads V8 and the runtime while its first message waits. With ``require_lockdown``, a host
        that cannot raise every wall makes ``receive`` raise ``LockdownError``. With ``live``, its
        slices report as they run (see ``receive`` and ``dcp_worker.sandbox.live``)."""
        lockdown = requested_mode(require_lockdown)
        try:
            process = await asyncio.create_subprocess_exec(
                *host_command(memory_mb, lockdown, live),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=host_environment(),
            )
        except OSError as error:
            raise SandboxError(f"cannot start a sandbox host: {error}") from error
        return cls(process, memory_mb)

    @classmethod
    async def start(
        cls, job: JobSpec, memory_mb: int, *, require_lockdown: bool = False, live: LiveMode | None = None
    ) -> SandboxHost:
        """Start a host for ``job`` (see ``spawn``)."""
        host = await cls.spawn(memory_mb, require_lockdown=require_lockdown, live=live)
        try:
            reply = await host.request(job.assign_message(), START_TIMEOUT_SECONDS)
        except (HostDied, HostTimeout) as failure:
            await host.close()
            raise SandboxError(f"the sandbox host failed to start: {failure}") from None
        except BaseException:
            # Cancelled (Ctrl-C, a stopping worker) while V8 may still be loading: no grace.
            await asyncio.shield(host.kill())
            raise
        if reply.get("op") == "assignError":
            await host.close()
            problem = reply["error"]
            raise WorkFunctionError(problem["name"], problem["message"], problem["file"], problem.get("line"))
        return host

    @property
    def pid(self) -> int:
        return self._process.pid

    async def _drain_stderr(self) -> None:
        stream = self._process.stderr
        assert stream is not None
        while line := await stream.readline():
            self._stderr_tail.append(line.decode("utf-8", "replace").rstrip())

    def send(self, *bodies: bytes) -> None:
        """Queue messages for the host, in one write. Not awaited: the host reads them when it is
        ready, and waiting here while the host writes a large answer nobody reads would deadlock."""
        stdin = self._process.stdin
        assert stdin is not None
        stdin.write(b"".join(map(encode_frame, bodies)))

    async def receive(self, timeout: float | None, on_live: LiveHandler | None = None) -> dict[str, Any]:
        """The host's next message; kills the host if it takes longer than ``timeout`` seconds.
        A live host's reports of a running slice go to ``on_live`` as they come; while it is
        busy with them, the host's next reports wait (in the end, for the slice's end). Those
        still unsent when a batch ends stay in its answer, under ``"live"``, for the caller."""
        stdout = self._process.stdout
        assert stdout is not None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    reply = await stdout.readexactly(frame_length(await stdout.readexactly(HEADER.size)))
                    message = parse_json(reply)
                    if not (isinstance(message, dict) and message.get("op") == "live"):
                        break
                    if on_live is not None:
                        await on_live(message["records"])
        except TimeoutError:
            await self.kill()
            raise HostTimeout(f"no answer within {timeout:g} s") from None
        except (asyncio.IncompleteReadError, ConnectionError):
            raise await self._death() from None
        if not isinstance(message, dict):
            raise SandboxError("the sandbox host sent a message that is not an object")
        if message.get("op") == "fatal":
            await self.close()
            if message.get("kind") == "lockdown":
                raise LockdownError(f"a sandbox host cannot lock down fully: {message.get('message')}")
            raise HostDied(
                message.get("message", "fatal error"), out_of_memory=message.get("kind") == "memory"
            )
        return message

    async def request(self, body: bytes, timeout: float | None) -> dict[str, Any]:
        self.send(body)
        return await self.receive(timeout)

    def send_batch(self, batch_json: bytes) -> None:
        """Queue a batch (see SliceBatch.to_json): a header, then the batch as a frame of its
        own, which the host hands to the isolate without parsing it."""
        self.send(b'{"op":"run"}', batch_json)

    async def batch_report(self, timeout: float, on_live: LiveHandler | None = None) -> dict[str, Any]:
        """The report on the oldest batch sent and not yet answered (see runtime.js, newReport);
        a live host's reports meanwhile go to ``on_live``, and then those that came with it."""
        answer = await self.receive(timeout, on_live)
        if on_live is not None and "live" in answer:
            await on_live(answer["live"])
        report: dict[str, Any] = answer["results"]
        return report

    async def _death(self) -> HostDied:
        code = await self._process.wait()
        await self._stderr_reader
        tail = "\n".join(self._stderr_tail)
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
        if code == -signal.SIGSYS:
            how += " for a system call its lockdown forbids"
        last_line = next((line for line in reversed(self._stderr_tail) if line.strip("# ")), "")
        reason = f"the sandbox host {how}" + (f" ({last_line.strip('# ')})" if last_line else "")
        out_of_memory = any(marker in tail.lower() for marker in OUT_OF_MEMORY_MARKERS) or (
            # V8 aborts with a breakpoint trap when it cannot map memory under RLIMIT_DATA.
            self._memory_mb > 0 and code == -signal.SIGTRAP
        )
        return HostDied(reason, out_of_memory=out_of_memory)

    async def kill(self) -> None:
        if self._process.returncode is None:
            self._process.kill()
        await self._process.wait()
        await self._stderr_reader

    async def close(self) -> None:
        """Ask the host to exit; kill it if it does not."""
        stdin = self._process.stdin
        assert stdin is not None
        if self._process.returncode is None:
            try:
                self.send(b'{"op":"exit"}')
                stdin.close()
                async with asyncio.timeout(EXIT_GRACE_SECONDS):
                    await self._process.wait()
            except (TimeoutError, ConnectionError):
                pass
            except asyncio.CancelledError:
                await asyncio.shield(self.kill())
                raise
        await self.kill()
