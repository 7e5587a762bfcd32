"""The evaluator's transports, as dcp-client's and dcp-worker's: one sandbox on standard input and
output, or one sandbox per TCP connection, each in a sandbox host process of its own.

On a port, a host is started ahead of each connection (one spare), so that a connection does not
wait for V8 to load; connections beyond ``max_connections`` are closed at once, as
``dcp-evaluator-manager`` refuses them, and the supervisor sees its evaluator close. The server
can be governed (``dcp_worker.cli.governing``): while the governor says to take no work, new
connections are refused the same way; when it says to give work back, every connection is
closed, and the supervisor returns the slices it had running on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable
from typing import Any

from dcp_worker.errors import SandboxError, UsageError
from dcp_worker.evaluator.lines import MAX_LINE_BYTES, LineChannel, open_stdio
from dcp_worker.evaluator.sandbox import EvaluatorSandbox
from dcp_worker.evaluator.session import EvaluatorSession


async def serve_stdio(memory_mb: int, require_lockdown: bool) -> None:
    channel = await open_stdio()
    sandbox = await EvaluatorSandbox.start(memory_mb, require_lockdown)
    await EvaluatorSession(channel, sandbox, finish_at_end_of_input=True).run()


class EvaluatorServer:
    """Serves sandboxes on a TCP port until cancelled (SIGTERM cancels it too)."""

    def __init__(
        self, host: str, port: int, max_connections: int, memory_mb: int, require_lockdown: bool = False
    ) -> None:
        if max_connections < 1:
            raise UsageError(f"--max-connections must be at least 1, not {max_connections}")
        self.host = host
        self.port = port
        self.max_connections = max_connections
        self.memory_mb = memory_mb
        self.require_lockdown = require_lockdown
        self.active = 0
        self.refused = 0
        self.accepting = True  # False while the governor says to take no work
        self._spare: asyncio.Task[EvaluatorSandbox] | None = None
        self._sessions: set[asyncio.Task[None]] = set()
        self._sandboxes: dict[asyncio.Task[None], EvaluatorSandbox] = {}  # in the order they began
        self._given_back: set[asyncio.Task[None]] = set()  # sessions the governor ended

    def host_pids(self) -> list[int]:
        """The sandbox host of every connection, the oldest first."""
        return [sandbox.pid for sandbox in self._sandboxes.values()]

    def govern(self, fetch: bool, held_back: bool, give_back: bool, summary: str) -> None:
        """The governor's word (see ``dcp_worker.cli.governing.Governed``)."""
        self.accepting = fetch
        if give_back:
            for session in self._sessions - self._given_back:
                self._given_back.add(session)
                session.cancel()

    def status(self) -> dict[str, Any]:
        return {
            "evaluator": {
                "connections": self.active,
                "maxConnections": self.max_connections,
                "accepting": self.accepting,
                "refused": self.refused,
            }
        }

    async def serve(self, on_listening: Callable[[str, int], None]) -> None:
        try:
            server = await asyncio.start_server(self._accept, self.host, self.port, limit=MAX_LINE_BYTES)
        except OSError as error:
            raise UsageError(f"cannot listen on {self.host}:{self.port}: {error.strerror or error}") from None
        serving = asyncio.current_task()
        assert serving is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, serving.cancel)
        self._spare = asyncio.create_task(EvaluatorSandbox.start(self.memory_mb, self.require_lockdown))
        address = server.sockets[0].getsockname()
        on_listening(str(address[0]), int(address[1]))
        try:
            async with server:
                await server.serve_forever()
        finally:
            for session in list(self._sessions):
                session.cancel()
            await asyncio.gather(*self._sessions, return_exceptions=True)
            await self._close_spare()

    async def _close_spare(self) -> None:
        spare, self._spare = self._spare, None
        if spare is not None:
            spare.cancel()
            with contextlib.suppress(asyncio.CancelledError, SandboxError):
                await (await spare).close()

    async def _take_sandbox(self) -> EvaluatorSandbox:
        spare, self._spare = (
            self._spare,
            asyncio.create_task(EvaluatorSandbox.start(self.memory_mb, self.require_lockdown)),
        )
        if spare is None:
            return await EvaluatorSandbox.start(self.memory_mb, self.require_lockdown)
        return await spare

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        refusal = None
        if not self.accepting:
            refusal = "the governor says to take no work now"
        elif self.active >= self.max_connections:
            refusal = f"{self.active} sandboxes already running"
        if refusal is not None:
            writer.close()
            self.refused += 1
            print(f"dcp-worker evaluator: refused a connection: {refusal}", file=sys.stderr)
            return
        self.active += 1
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        try:
            sandbox = self._sandboxes[task] = await self._take_sandbox()
            await EvaluatorSession(LineChannel(reader, writer), sandbox).run()
        except SandboxError as error:
            print(f"dcp-worker evaluator: {error}", file=sys.stderr)
            writer.close()
        except asyncio.CancelledError:
            if task not in self._given_back:
                raise
            task.uncancel()  # the connection ends, the server goes on
            print("dcp-worker evaluator: closed a connection: the governor gives work back", file=sys.stderr)
        finally:
            self.active -= 1
            self._sessions.discard(task)
            self._sandboxes.pop(task, None)
            self._given_back.discard(task)
