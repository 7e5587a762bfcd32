"""Results go to the result submitter over one session, and over a second when one cannot keep up.

A DCP session answers requests in batches of at most 20, one batch per ack, and dcp-client's
session builds each batch a message at a time, yielding to its event loop between messages.
Against dcp-client 5.6.1 as the scheduler (the test double), one session carried about 450
answers a second, so a worker whose slices take microseconds waited on answers, not on its
sandboxes. When every open lane has ``BACKLOG`` results unanswered, another session opens (up to
``MAX_LANES``), and each result goes on the lane with the fewest unanswered. Each session keeps
the protocol's rules on its own: one unacknowledged message at a time, batches as the peer takes
them. Slices that take seconds never open a second lane.

``result_lanes`` makes them, the first lane being the caller's session. Each extra lane is a
task of the context's own task group: it opens its session, holds it until the context is left,
and closes it; leave the context only when no result waits for its answer. A lane that cannot
be opened is logged once, and no further lane is tried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from dcp_worker.errors import ProtocolError
from dcp_worker.protocol.identity import Identity
from dcp_worker.protocol.session import Session, SessionOptions, open_session

__all__ = ["BACKLOG", "MAX_LANES", "ResultLanes", "result_lanes"]

log = logging.getLogger(__name__)

MAX_LANES = 2
BACKLOG = 40  # two of dcp-client's batches of answers


class ResultLanes:
    def __init__(
        self, first: Session, identity: Identity, options: SessionOptions, tasks: asyncio.TaskGroup
    ) -> None:
        self._lanes = [first]
        self._identity = identity
        self._options = options
        self._tasks = tasks
        self._opening = False
        self._given_up = False
        self._closing = asyncio.Event()

    async def request(self, operation: str, data: Any) -> Any:
        """``Session.request`` on the open lane with the fewest requests unanswered."""
        lane = min(self._lanes, key=lambda session: (session.closed.done(), session.unanswered))
        if lane.unanswered >= BACKLOG:
            self._widen()
        return await lane.request(operation, data)

    def close(self) -> None:
        """Open no more lanes, and close the extra ones (their owners leave their sessions)."""
        self._closing.set()

    def _widen(self) -> None:
        if self._opening or self._given_up or self._closing.is_set() or len(self._lanes) >= MAX_LANES:
            return
        self._opening = True
        self._tasks.create_task(self._lane(), name="result lane")

    async def _lane(self) -> None:
        location = self._lanes[0].location
        try:
            async with open_session(location, self._identity, options=self._options) as session:
                self._opening = False
                self._lanes.append(session)
                log.debug(" . Results now go to %s over %d sessions", location, len(self._lanes))
                try:
                    await self._closing.wait()
                finally:
                    self._lanes.remove(session)
        except ProtocolError as error:
            self._given_up = True
            log.warning(" ! Could not open another session to the result submitter: %s", error)
        finally:
            self._opening = False


@contextlib.asynccontextmanager
async def result_lanes(
    first: Session, identity: Identity, options: SessionOptions
) -> AsyncIterator[ResultLanes]:
    """Lanes to ``first``'s service, the first being ``first``; the others close on the way out."""
    async with asyncio.TaskGroup() as tasks:
        lanes = ResultLanes(first, identity, options, tasks)
        try:
            yield lanes
        finally:
            lanes.close()
