"""The scheduler's commands to its workers (SchedMsg): stop, reload, drop a job, priority jobs, news.

As dcp-client's worker does, a session of its own to the event router subscribes
(``subscribeMany``) to ``schedmsg::broadcast`` and ``schedmsg::command`` for this worker's
identity, its worker id and broadcasts. The scheduler then sends ``event`` requests,
``{token, event: {eventId, data: {eventName, command, payload}}}``. One whose token is not the
subscription's, or whose eventId was seen before, is refused with an error answer; a command this
worker does not know is logged and answered, as dcp-client answers it.

The commands, and what this worker does:

  kill {temporary}                      stop at once, returning every slice held; exit status 130;
                                        unless temporary, the worker stays disabled (``disabled``)
  reload                                the same, with exit status 13 (for a service manager to
                                        start the worker again)
  remove {jobId}                        return the job's slices, ending its sandboxes
  addPriorityJob {jobId, immediate}     add the job to the jobs this worker works on (``--job-id``),
                                        and with ``immediate`` return the slices of every other job
  removePriorityJob {jobId, immediate}  take it out again; with ``immediate`` return its slices
  announce {message}                    log the message
  restart                               logged: dcp-client does not support it either
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol

from dcp_worker.errors import ProtocolError
from dcp_worker.protocol.identity import Identity
from dcp_worker.protocol.session import SessionOptions, open_session
from dcp_worker.worker import disabled

__all__ = ["EXIT_KILLED", "EXIT_RELOAD", "SCHEDMSG_EVENTS", "CommandTarget", "SchedMsg", "listen"]

log = logging.getLogger(__name__)

SCHEDMSG_EVENTS = ("schedmsg::broadcast", "schedmsg::command")
EXIT_KILLED = 130  # dcp-client's worker exits with these
EXIT_RELOAD = 13
SEEN_EVENTS_KEPT = 1000
SHOWN_CHARACTERS = 500  # of a message or a name the scheduler sends, in a log line


class CommandTarget(Protocol):
    """What the commands act on: the worker's run."""

    def stop_now(self, exit_status: int) -> None:
        """Stop at once, returning every slice held, and exit with ``exit_status``."""

    def give_back_job(self, job_id: str, reason: str) -> None:
        """Return every slice of ``job_id`` held, ending its sandboxes."""

    def prioritise(self, job_id: str, immediate: bool) -> None:
        """Work on ``job_id`` and the other priority jobs only; ``immediate``: give back the rest now."""

    def unprioritise(self, job_id: str, immediate: bool) -> None:
        """No longer a priority job; ``immediate``: give back its slices now."""


class SchedMsg:
    def __init__(self, identity_address: str, worker_id: str, target: CommandTarget) -> None:
        self._identity_address = identity_address
        self._worker_id = worker_id
        self._target = target
        self._tokens: dict[str, str] = {}  # event name -> our subscription's token
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()

    def subscription(self) -> dict[str, Any]:
        """The data of the ``subscribeMany`` request."""
        targets = [{"target": self._identity_address}, {"target": self._worker_id}, {"broadcast": True}]
        return {"schedmsgEvents": list(SCHEDMSG_EVENTS), "options": {"filter": {"$or": targets}}}

    def subscribed(self, answer: Any) -> None:
        """Keep the tokens of the ``subscribeMany`` answer, ``{tokens: [{event, token}]}``."""
        tokens = answer.get("tokens") if isinstance(answer, Mapping) else None
        if not isinstance(tokens, list):
            raise ProtocolError("subscribeMany: the answer holds no tokens")
        for pair in tokens:
            event, token = (pair.get("event"), pair.get("token")) if isinstance(pair, Mapping) else (0, 0)
            if isinstance(event, str) and isinstance(token, str):
                self._tokens[event] = token

    async def handle(self, operation: str, data: Any) -> str:
        """The session's request handler: an ``event`` is checked, acted on, and answered."""
        if operation != "event":
            raise ProtocolError(f"unknown operation {shown(operation)}")
        event = data.get("event") if isinstance(data, Mapping) else None
        body = event.get("data") if isinstance(event, Mapping) else None
        if not isinstance(event, Mapping) or not isinstance(body, Mapping):
            raise ProtocolError("an event with no data")
        name = body.get("eventName")
        token = self._tokens.get(name) if isinstance(name, str) else None
        if token is None:
            raise ProtocolError(f"no subscription to {shown(name)}")
        if data.get("token") != token:
            raise ProtocolError(f"no subscription to {shown(name)} with token {shown(data.get('token'))}")
        event_id = event.get("eventId")
        if isinstance(event_id, str) and event_id:
            if event_id in self._seen:
                raise ProtocolError(f"event {shown(event_id)} was sent before")
            self._seen[event_id] = None
            if len(self._seen) > SEEN_EVENTS_KEPT:
                self._seen.popitem(last=False)
        payload = body.get("payload")
        self._act(body.get("command"), payload if isinstance(payload, Mapping) else {})
        return "success"

    def _act(self, command: Any, payload: Mapping[str, Any]) -> None:
        if command == "kill":
            if payload.get("temporary"):
                log.warning(" ! The scheduler sent kill: returning every slice and stopping")
            else:
                log.warning(" ! The scheduler sent kill: returning every slice and stopping, for good")
                when = time.strftime("%Y-%m-%d %H:%M:%S %Z")
                try:
                    disabled.disable(f"a kill command at {when}")
                except OSError as error:
                    log.warning(" ! Could not leave the mark that keeps this worker stopped: %s", error)
            self._target.stop_now(EXIT_KILLED)
        elif command == "reload":
            log.warning(" ! The scheduler sent reload: returning every slice and exiting (status 13)")
            self._target.stop_now(EXIT_RELOAD)
        elif command in ("remove", "addPriorityJob", "removePriorityJob"):
            job_id = payload.get("jobId")
            if not isinstance(job_id, str) or not job_id:
                raise ProtocolError(f"{command}: no jobId")
            immediate = bool(payload.get("immediate"))
            log.info(" . The scheduler sent %s for job %s", command, shown(job_id))
            if command == "remove":
                self._target.give_back_job(job_id, "SchedMsg")
            elif command == "addPriorityJob":
                self._target.prioritise(job_id, immediate)
            else:
                self._target.unprioritise(job_id, immediate)
        elif command == "announce":
            log.info(" 💬 Broadcast message: %s", shown(payload.get("message"), quoted=False))
        elif command == "restart":
            log.warning(" ! The scheduler sent restart, which DCP workers do not support")
        else:
            log.warning(" ! The scheduler sent a command this worker does not know: %s", shown(command))


def shown(value: Any, quoted: bool = True) -> str:
    """Something the scheduler sent, as one printable line of bounded length."""
    text = repr(value) if quoted or not isinstance(value, str) else value
    printable = "".join(character if character.isprintable() else " " for character in text)
    if len(printable) > SHOWN_CHARACTERS:
        return printable[:SHOWN_CHARACTERS] + "…"
    return printable


async def listen(
    location: str, identity: Identity, options: SessionOptions, commands: SchedMsg, until: asyncio.Event
) -> None:
    """Hear the scheduler's commands over a session of their own to the event router at
    ``location``, until ``until`` is set; a scheduler that will not subscribe this worker is
    logged, and the worker works on without its commands."""
    try:
        async with open_session(location, identity, commands.handle, options) as session:
            commands.subscribed(await session.request("subscribeMany", commands.subscription()))
            await until.wait()
    except ProtocolError as error:
        log.warning(" ! Not listening to the scheduler's commands: %s", error)
