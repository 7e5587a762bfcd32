"""The governor around a running worker: its decisions applied, SIGUSR1/SIGUSR2, the control socket."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
from collections.abc import AsyncIterator

from dcp_worker.errors import ControlError
from dcp_worker.governor import (
    Decision,
    Governor,
    GovernorSettings,
    Throttler,
    governor_handlers,
    serve_control,
)
from dcp_worker.worker.runner import WorkerRun

__all__ = ["governing"]

log = logging.getLogger("dcp_worker")


@contextlib.asynccontextmanager
async def governing(worker: WorkerRun, settings: GovernorSettings, sandboxes: int) -> AsyncIterator[None]:
    """While the block runs: the governor decides, its throttler holds sandbox hosts stopped,
    the worker fetches and gives slices back as it says, and ``dcp-worker pause|resume|status``
    (or SIGUSR1 and SIGUSR2) reach it. Everything is stopped, and every host continued, after."""
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
    handlers = governor_handlers(governor, lambda: {"worker": dataclasses.asdict(worker.status())})
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
