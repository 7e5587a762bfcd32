"""The governor around a running worker or evaluator server: its decisions applied, SIGUSR1/SIGUSR2,
the control socket."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from dcp_worker.errors import ControlError
from dcp_worker.governor.control import governor_handlers, serve_control
from dcp_worker.governor.governor import Decision, Governor
from dcp_worker.governor.settings import GovernorSettings
from dcp_worker.governor.throttle import Throttler

__all__ = ["Governed", "governing"]

log = logging.getLogger("dcp_worker")


class Governed(Protocol):
    """What the governor governs: a worker (``WorkerRun``) or an evaluator server."""

    def host_pids(self) -> list[int]:
        """Every sandbox host's process id, the oldest first."""
        ...

    def govern(self, fetch: bool, held_back: bool, give_back: bool, summary: str) -> None:
        """Whether to take new work, whether some sandboxes are held stopped, whether to give
        back every slice held; ``summary`` is the governor's state."""
        ...


@contextlib.asynccontextmanager
async def governing(
    worker: Governed, settings: GovernorSettings, sandboxes: int, status: Callable[[], dict[str, Any]]
) -> AsyncIterator[None]:
    """While the block runs: the governor decides, its throttler holds sandbox hosts stopped,
    ``worker`` takes work and gives it back as it says, and ``dcp-worker pause|resume|status``
    (or SIGUSR1 and SIGUSR2) reach it, ``status`` answering for ``worker``. Everything is
    stopped, and every host continued, after."""
    governor = Governor(settings, sandboxes, hosts=worker.host_pids)
    throttler = Throttler(worker.host_pids)

    def on_decision(decision: Decision) -> None:
        summary = decision.summary()
        log.info(" * Governor: %s", summary)
        throttler.apply(decision)
        worker.govern(decision.fetch, decision.sandboxes < sandboxes, decision.give_back, summary)

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, governor.pause)
    loop.add_signal_handler(signal.SIGUSR2, governor.resume)
    handlers = governor_handlers(governor, status)
    async with contextlib.AsyncExitStack() as stack:
        try:
            path = await stack.enter_async_context(serve_control(handlers))
            log.debug(" . Control socket %s", path)
        except ControlError as error:
            log.warning(" ! %s; dcp-worker pause/resume/status will not reach this worker", error)
        tasks = [
            asyncio.create_task(governor.run(on_decision), name="governor"),
            asyncio.create_task(throttler.run(), name="throttler"),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            loop.remove_signal_handler(signal.SIGUSR1)
            loop.remove_signal_handler(signal.SIGUSR2)
