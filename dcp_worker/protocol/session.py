"""A DCP session with one service, from the initiator's (the worker's) side.

    async with open_session("http://scheduler/", identity, handler) as session:
        answer = await session.request("requestTask@3", {...})

What the session keeps, as dcp-client's Connection does:

- every message is sealed (signed by our identity) and every message from the peer is checked:
  its signature, its owner (the first owner met is the peer, and must match the identity cache),
  its session id, and the nonce of the ack we sent for the message before it;
- one message of ours is unacknowledged at a time ("on deck"); what queues behind it leaves as
  one batch once the ack comes, so waiting costs no throughput;
- every message from the peer is acknowledged at once, with a fresh nonce; a repeated message is
  acknowledged again but not acted on twice;
- when the socket drops, a new one resumes the session: our last ack goes first, the peer repeats
  its last ack, which shows whether the message on deck arrived (if not, it goes again), then a
  keepalive; so no request is lost and none is delivered twice;
- requests from the peer go to ``handler``; keepalive and close are answered here.

Every task the session starts belongs to the ``TaskGroup`` of ``open_session``; leaving the
``async with`` closes the session and ends them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dcp_worker.errors import (
    ConnectError,
    NonceError,
    PeerIdentityError,
    ProtocolError,
    RemoteError,
    SessionClosedError,
)
from dcp_worker.jsvalues import Undefined
from dcp_worker.protocol.canonical_json import stringify
from dcp_worker.protocol.identity import Identity
from dcp_worker.protocol.identity_cache import IdentityCache
from dcp_worker.protocol.messages import (
    PROTOCOL_VERSION,
    MessageIds,
    StampCache,
    ack_body,
    batch_entry,
    error_payload,
    random_string,
    request_payload,
    unbatch_payload,
    validity_error,
)
from dcp_worker.protocol.sealed import seal, unseal
from dcp_worker.protocol.transport import TRANSPORTS, Transport

__all__ = ["RequestHandler", "Session", "SessionOptions", "open_session", "open_sessions"]

log = logging.getLogger(__name__)

RequestHandler = Callable[[str, Any], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """Timings in seconds; the defaults are dcp-client's (its embedded dcpConfig where it has one)."""

    connect_timeout: float = 60.0
    reconnect_timeout: float = 7200.0
    close_timeout: float = 7.0
    max_rtt: float = 120.0
    ttl: int = 120
    max_messages_per_batch: int = 20
    transports: tuple[str, ...] = TRANSPORTS
    identity_cache: IdentityCache | None = None


@dataclass(slots=True)
class _Outgoing:
    body: dict[str, Any]
    reply: asyncio.Future[Any] | None = None
    operation: str = ""


@dataclass(slots=True)
class _OnDeck:
    token: str
    sealed: str
    entries: list[_Outgoing]
    timer: asyncio.TimerHandle | None = None


@dataclass(slots=True)
class _Pending:
    operation: str
    reply: asyncio.Future[Any]


@dataclass(slots=True)
class _Handshake:
    sid: str
    request_id: str
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Session:
    """One DCP session. Made by ``open_session``; see the module's docstring."""

    def __init__(
        self,
        location: str,
        identity: Identity,
        handler: RequestHandler | None,
        options: SessionOptions,
        tasks: asyncio.TaskGroup,
    ) -> None:
        self.location = location if location.endswith("/") else location + "/"
        self.identity = identity
        self.options = options
        self.dcpsid: str | None = None
        self.peer_address: str | None = None
        self.state = "connecting"
        self.transport_name: str | None = None
        self._handler = handler
        self._tasks = tasks
        self._ids = MessageIds()
        self._stamps = StampCache()
        self._transport: Transport | None = None
        self._outbox: deque[_Outgoing] = deque()
        self._on_deck: _OnDeck | None = None
        self._pending: dict[str, _Pending] = {}
        # The nonce our next message must carry (None before the first; False: none yet).
        self._peer_nonce: str | bool | None = None
        self._expected_nonce: str | None = None
        self._last_rx_id: object = None
        self._last_ack: str | None = None
        # Tokens of our messages the peer has acknowledged, the last one last.
        self._acked_tokens: deque[str] = deque(maxlen=64)
        self._handshake: _Handshake | None = None
        self._clock_offset = 0.0
        self._last_heard = time.monotonic()
        self._transport_lost = asyncio.Event()
        self._closing_after_delivery: _Outgoing | None = None
        self._serving: set[asyncio.Task[None]] = set()
        self.closed: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    # -- public API ----------------------------------------------------------------------------

    async def request(self, operation: str, data: Any = Undefined) -> Any:
        """Send a request and return the peer's answer; ``RemoteError`` if it answers with an error,
        ``SessionClosedError`` (or the protocol error that ended it) if the session ends first."""
        return await self.send_request(operation, data)

    def send_request(self, operation: str, data: Any = Undefined) -> asyncio.Future[Any]:
        """Queue a request now (requests leave in the order they are queued); the future holds
        the answer, or the error, as ``request`` would return or raise it."""
        if self.closed.done():
            refused: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            refused.set_exception(
                SessionClosedError(f"{operation}: the session with {self.location} is closed")
            )
            return refused
        entry = self._request_entry(operation, data)
        self._enqueue(entry)
        assert entry.reply is not None
        return entry.reply

    async def keepalive(self) -> None:
        await self.request("keepalive", int(self.now() * 1000))

    @property
    def unanswered(self) -> int:
        """How many of our requests wait for the peer's answer (sent or still queued)."""
        return len(self._pending)

    @property
    def idle_seconds(self) -> float:
        """Seconds since the peer last sent us anything."""
        return time.monotonic() - self._last_heard

    def now(self) -> float:
        """Seconds since the epoch on the peer's clock, as far as its responses tell."""
        return time.time() + self._clock_offset

    async def close(self, reason: str = "EPIPE") -> None:
        """Say goodbye (a ``close`` request, answered within ``close_timeout``) and end the session."""
        if self.closed.done():
            return
        if self.state == "established":
            self.state = "closing"
            with contextlib.suppress(ProtocolError, TimeoutError):
                async with asyncio.timeout(self.options.close_timeout):
                    await self.request("close", reason)
        self._end(SessionClosedError(f"the session with {self.location} is closed"))

    # -- opening and resuming ------------------------------------------------------------------

    async def _open(self) -> None:
        try:
            async with asyncio.timeout(self.options.connect_timeout):
                await self._connect_transport(self.options.connect_timeout)
                sid, request_id = random_string(), self._ids.message_id()
                self._handshake = _Handshake(sid, request_id)
                payload = request_payload("connect", {"version": PROTOCOL_VERSION, "sid": sid}, self.now())
                body = {"id": request_id, "type": "request", "payload": payload}
                self._send_now([_Outgoing(body, operation="connect")])
                await asyncio.shield(self._handshake.done)
        except TimeoutError:
            raise ConnectError(
                f"{self.location}: no session within {self.options.connect_timeout:g} s"
            ) from None
        self._tasks.create_task(self._keep_transport(), name=f"dcp-session {self.location}")

    async def _connect_transport(self, timeout: float) -> None:
        transport = Transport(self._receive, self._lost)
        await transport.connect(self.location, timeout, self.options.transports)
        self._transport = transport
        self.transport_name = transport.transport_name
        self._transport_lost.clear()

    async def _keep_transport(self) -> None:
        """Owns the socket: replaces it when it is lost, until the session ends."""
        while not self.closed.done():
            await self._transport_lost.wait()
            if self.closed.done():
                return
            if self.state == "closing":
                self._end(SessionClosedError(f"the session with {self.location} is closed"))
                return
            self.state = "disconnected"
            lost, self._transport = self._transport, None
            if lost is not None:
                await lost.close()
            try:
                await self._reconnect()
            except ConnectError as error:
                self._end(error)
                return

    async def _reconnect(self) -> None:
        deadline = time.monotonic() + self.options.reconnect_timeout
        attempt = 0
        while True:
            attempt += 1
            delay = min(30.0, 0.5 * (2**attempt - 1), max(0.0, deadline - time.monotonic()))
            await asyncio.sleep(delay if attempt > 1 else 0)
            try:
                await self._connect_transport(max(1.0, min(30.0, deadline - time.monotonic())))
                break
            except ConnectError as error:
                if time.monotonic() >= deadline:
                    raise ConnectError(f"lost {self.location} and could not resume: {error}") from None
                log.info("reconnecting to %s (attempt %d): %s", self.location, attempt, error)
        log.info("resumed the session with %s", self.location)
        if self.state == "disconnected":
            self.state = "established"
        assert self._transport is not None
        # Our last ack goes first: it names the session, and the peer answers it by repeating its
        # own last ack, which tells us whether our on-deck message arrived (see _receive_ack).
        if self._last_ack is not None:
            self._transport.send(self._last_ack)
        if self.state == "established":
            self._enqueue(self._keepalive_entry())
        self._wake_sender()

    def _keepalive_entry(self) -> _Outgoing:
        """A keepalive whose answer nobody waits for."""
        entry = self._request_entry("keepalive", Undefined)
        assert entry.reply is not None
        entry.reply.add_done_callback(_consume_outcome)
        return entry

    def _request_entry(self, operation: str, data: Any) -> _Outgoing:
        message_id = self._ids.message_id()
        body = {
            "id": message_id,
            "type": "request",
            "payload": request_payload(operation, data, self.now(), self.options.ttl),
        }
        reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[message_id] = _Pending(operation, reply)
        return _Outgoing(body, reply, operation)

    def _lost(self, transport: Transport, reason: str) -> None:
        if transport is not self._transport or self.closed.done():
            return
        if self.state == "connecting":
            self._end(
                ConnectError(f"{self.location} dropped the connection while opening a session ({reason})")
            )
            return
        log.log(
            logging.DEBUG if self.state == "closing" else logging.INFO,
            "lost the connection to %s: %s",
            self.location,
            reason,
        )
        self._transport_lost.set()

    # -- sending -------------------------------------------------------------------------------

    def _enqueue(self, entry: _Outgoing) -> None:
        self._outbox.append(entry)
        self._wake_sender()

    def _wake_sender(self) -> None:
        """Send what can be sent now: the outbox, as one message or a batch, if nothing is on deck."""
        if (
            self._on_deck is not None
            or not self._outbox
            or self._peer_nonce is False
            or self._transport is None
            or self.state not in ("established", "closing")
            or self.closed.done()
        ):
            return
        count = min(len(self._outbox), self.options.max_messages_per_batch)
        self._send_now([self._outbox.popleft() for _ in range(count)])

    def _send_now(self, entries: list[_Outgoing]) -> None:
        if len(entries) == 1:
            body = self._network_form(entries[0].body)
        else:
            inner = [batch_entry(self._network_form(entry.body)) for entry in entries]
            body = self._network_form({"id": self._ids.message_id(), "type": "batch", "payload": inner})
        token = self._ids.ack_token()
        body["ackToken"] = token
        body["nonce"] = self._peer_nonce
        self._peer_nonce = False
        self._on_deck = _OnDeck(token, seal(self.identity, body), entries)
        self._transmit_on_deck()

    def _network_form(self, body: dict[str, Any]) -> dict[str, Any]:
        network = dict(body)
        network["auth"] = {}
        if self.dcpsid is not None:
            network["dcpsid"] = self.dcpsid
        network["time"] = self.now()
        return network

    def _transmit_on_deck(self) -> None:
        on_deck = self._on_deck
        if on_deck is None or self._transport is None:
            return
        if on_deck.timer is not None:
            on_deck.timer.cancel()
        # No ack within max_rtt: the socket is taken for dead and replaced; the message goes again.
        on_deck.timer = asyncio.get_running_loop().call_later(
            self.options.max_rtt, self._rtt_expired, on_deck
        )
        self._transport.send(on_deck.sealed)

    def _rtt_expired(self, on_deck: _OnDeck) -> None:
        if on_deck is self._on_deck and self._transport is not None:
            self._lost(self._transport, f"no ack within {self.options.max_rtt:g} s")

    # -- receiving -----------------------------------------------------------------------------

    def _receive(self, text: str) -> None:
        """One whole message from the peer. Runs to completion without awaiting, so the ack of
        each message goes out before the next message is looked at."""
        if self.closed.done():
            return
        self._last_heard = time.monotonic()
        try:
            message = unseal(text)
            if self.peer_address is None:
                self.peer_address = message.owner
            elif message.owner != self.peer_address:
                raise PeerIdentityError(
                    f"a message signed by {message.owner}, not by {self.location}'s {self.peer_address}"
                )
            body = message.body
            if body.get("type") == "ack":
                self._receive_ack(body)
            else:
                self._receive_message(body)
        except ProtocolError as error:
            log.warning("ending the session with %s: %s", self.location, error)
            self._end(error)
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            malformed = ProtocolError(
                f"a malformed message from {self.location} ({type(error).__name__}: {error})"
            )
            log.warning("ending the session with %s: %s", self.location, malformed)
            self._end(malformed)

    def _receive_ack(self, ack: dict[str, Any]) -> None:
        on_deck = self._on_deck
        token = ack.get("token")
        if token in self._acked_tokens and token != self._acked_tokens[-1]:
            log.debug("ignoring a repeated old ack from %s", self.location)
            return
        nonce = ack.get("nonce")
        self._peer_nonce = nonce if isinstance(nonce, str) else False
        if on_deck is not None and token == on_deck.token:
            if on_deck.timer is not None:
                on_deck.timer.cancel()
            self._on_deck = None
            self._acked_tokens.append(on_deck.token)
            if self._closing_after_delivery in on_deck.entries:
                self._end(SessionClosedError(f"{self.location} closed the session"))
                return
        elif self._acked_tokens and token == self._acked_tokens[-1]:
            self._transmit_on_deck()  # the peer has not seen what is on deck: send it again
        else:
            raise ProtocolError(f"an ack for a message we did not send ({token!r})")
        self._wake_sender()

    def _receive_message(self, body: dict[str, Any]) -> None:
        message_id = body.get("id")
        if message_id is not None and message_id == self._last_rx_id and self._last_ack is not None:
            self._send_raw(self._last_ack)  # a repeat: acknowledged again, not acted on twice
            return
        self._last_rx_id = message_id
        if self.dcpsid is None and self._handshake is not None:
            self._adopt_session(body)
        expected, self._expected_nonce = self._expected_nonce, self._ids.nonce()
        self._last_ack = seal(
            self.identity, ack_body(self.dcpsid, body.get("ackToken"), self._expected_nonce, message_id)
        )
        self._send_raw(self._last_ack)
        if self.state == "connecting":
            self._receive_before_session(body)
            return
        if body.get("dcpsid") != self.dcpsid:
            raise ProtocolError(f"a message for session {body.get('dcpsid')!r}, not ours")
        if body.get("nonce") is None or body.get("nonce") != expected:
            raise NonceError(f"a message with nonce {body.get('nonce')!r}; our last ack gave {expected!r}")
        self._dispatch(body, inner=False)

    def _send_raw(self, sealed: str) -> None:
        if self._transport is not None:
            self._transport.send(sealed)

    def _adopt_session(self, body: dict[str, Any]) -> None:
        """Take the session id of the connect response early, so our ack of it carries it."""
        assert self._handshake is not None
        dcpsid = body.get("dcpsid")
        if body.get("type") == "response" and isinstance(dcpsid, str) and body.get("success") is True:
            if not dcpsid.startswith(self._handshake.sid) or len(dcpsid) <= len(self._handshake.sid):
                raise ProtocolError(f"{self.location} proposed a session id that is not ours ({dcpsid!r})")
            self.dcpsid = dcpsid

    def _receive_before_session(self, body: dict[str, Any]) -> None:
        assert self._handshake is not None
        kind, payload = body.get("type"), body.get("payload")
        if kind == "request" and isinstance(payload, dict) and payload.get("operation") == "close":
            raise ConnectError(f"{self.location} closed the connection before the session began")
        if kind != "response" or body.get("id") != self._handshake.request_id:
            raise ProtocolError(f"a {kind!r} message before the session began")
        if body.get("success") is not True:
            message = payload.get("message") if isinstance(payload, dict) else payload
            raise ConnectError(f"{self.location} refused a session: {message}")
        version = payload.get("version") if isinstance(payload, dict) else None
        if not _compatible(version):
            raise ConnectError(f"{self.location} speaks DCP protocol {version!r}; this worker speaks ^5.2.0")
        if self.dcpsid is None:
            raise ProtocolError(f"{self.location} gave no session id")
        assert self.peer_address is not None
        if self.options.identity_cache is not None:
            self.options.identity_cache.learn(self.location, self.peer_address)
        self._track_clock(body)
        self.state = "established"
        self._handshake.done.set_result(None)
        # A keepalive first, as dcp-client's worker does. It also spares a session resumed before
        # any other message the target's repeat of its pre-session ack, which carries no nonce.
        self._enqueue(self._keepalive_entry())

    def _dispatch(self, body: dict[str, Any], inner: bool) -> None:
        kind = body.get("type")
        if kind == "batch":
            if inner:
                raise ProtocolError("a batch inside a batch")
            entries = body.get("payload")
            if not isinstance(entries, list):
                raise ProtocolError("a batch whose payload is not a list")
            for entry in entries:
                if not isinstance(entry, dict):
                    raise ProtocolError("a batch entry that is not an object")
                self._dispatch(unbatch_payload(entry), inner=True)
        elif kind == "response":
            self._receive_response(body)
        elif kind == "request":
            self._receive_request(body)
        elif kind == "notification":
            log.debug("ignoring a notification from %s", self.location)
        else:
            raise ProtocolError(f"a message of unknown type {kind!r}")

    def _receive_response(self, body: dict[str, Any]) -> None:
        pending = self._pending.pop(str(body.get("id")), None)
        if pending is None:
            raise ProtocolError(f"a response to no request of ours ({body.get('id')!r})")
        self._track_clock(body)
        success, payload = body.get("success"), body.get("payload")
        if pending.reply.done():
            return
        if success is True:
            pending.reply.set_result(payload)
        elif success is False:
            fields = payload if isinstance(payload, dict) else {}
            message = fields.get("message") if isinstance(fields.get("message"), str) else repr(payload)
            code = fields.get("code") if isinstance(fields.get("code"), str) else None
            pending.reply.set_exception(RemoteError(pending.operation, str(message), code))
        else:
            raise ProtocolError(f"a response whose success is {success!r}")

    def _receive_request(self, body: dict[str, Any]) -> None:
        payload = body.get("payload")
        operation = payload.get("operation") if isinstance(payload, dict) else None
        if not isinstance(payload, dict) or not isinstance(operation, str):
            raise ProtocolError("a request with no operation")
        if operation == "close":
            closing = self._respond(body, True, "goodbye")
            self._fail_pending(
                SessionClosedError(f"{self.location} closed the session ({payload.get('data')})")
            )
            self.state = "closing"
            self._closing_after_delivery = closing
            return
        if operation == "connect":
            raise ProtocolError("a connect request inside a session")
        if operation == "keepalive":
            self._respond(body, True, {"success": True})
            return
        problem = validity_error(payload, self._stamps, self.now())
        if problem is not None:
            code, _, message = problem.partition(": ")
            self._respond(body, False, {"message": message, "code": code, "origin": self.identity.address})
            return
        task = self._tasks.create_task(
            self._serve(body, operation, payload.get("data")), name=f"dcp-serve {operation}"
        )
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)

    async def _serve(self, body: dict[str, Any], operation: str, data: Any) -> None:
        if self._handler is None:
            error: BaseException = ProtocolError(f"this worker does not serve {operation!r} requests")
            self._respond(body, False, error_payload(error, self.identity.address))
            return
        try:
            answer = await self._handler(operation, data)
            stringify(answer)  # an answer JSON cannot carry fails here, not in the sender
        except Exception as error:
            log.warning("the %r request from %s failed: %s", operation, self.location, error)
            self._respond(body, False, error_payload(error, self.identity.address))
            return
        self._respond(body, True, answer)

    def _respond(self, request: dict[str, Any], success: bool, payload: Any) -> _Outgoing:
        response = _Outgoing(
            {"id": request.get("id"), "type": "response", "success": success, "payload": payload}
        )
        if not self.closed.done():
            self._enqueue(response)
        return response

    def _track_clock(self, body: dict[str, Any]) -> None:
        sent = body.get("time")
        if isinstance(sent, int | float) and not isinstance(sent, bool):
            self._clock_offset = float(sent) - time.time()

    # -- ending --------------------------------------------------------------------------------

    def _end(self, reason: BaseException) -> None:
        if self.closed.done():
            return
        self.state = "closed"
        self.closed.set_result(reason)
        if self._on_deck is not None and self._on_deck.timer is not None:
            self._on_deck.timer.cancel()
        self._fail_pending(reason)
        if self._handshake is not None and not self._handshake.done.done():
            self._handshake.done.set_exception(reason)
        self._transport_lost.set()  # lets _keep_transport see the end

    def _fail_pending(self, reason: BaseException) -> None:
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            if not entry.reply.done():
                entry.reply.set_exception(reason)

    async def _shutdown(self) -> None:
        for task in self._serving:
            task.cancel()
        if self._transport is not None:
            await self._transport.close()
            self._transport = None


def _consume_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _compatible(version: object) -> bool:
    """Does ``version`` satisfy ^5.2.0?"""
    if not isinstance(version, str):
        return False
    parts = version.split("-")[0].split(".")
    try:
        major, minor = int(parts[0]), int(parts[1])
    except (ValueError, IndexError):
        return False
    return major == 5 and minor >= 2


@contextlib.asynccontextmanager
async def open_session(
    location: str,
    identity: Identity,
    handler: RequestHandler | None = None,
    options: SessionOptions | None = None,
) -> AsyncIterator[Session]:
    """Open a session with the DCP service at ``location`` (``ConnectError`` if none can be had),
    yield it, and close it on the way out."""
    async with _session(location, identity, handler, options) as session:
        await session._open()
        yield session


@contextlib.asynccontextmanager
async def open_sessions(
    locations: Sequence[str], identity: Identity, options: SessionOptions | None = None
) -> AsyncIterator[list[Session]]:
    """``open_session`` for each of ``locations``, their handshakes at the same time; yields the
    sessions in the same order, and closes them all on the way out."""
    async with contextlib.AsyncExitStack() as stack:
        sessions = [
            await stack.enter_async_context(_session(location, identity, None, options))
            for location in locations
        ]
        try:
            async with asyncio.TaskGroup() as opening:
                for session in sessions:
                    opening.create_task(session._open(), name=f"dcp-open {session.location}")
        except BaseExceptionGroup as group:
            raise _unwrapped(group) from None
        yield sessions


@contextlib.asynccontextmanager
async def _session(
    location: str, identity: Identity, handler: RequestHandler | None, options: SessionOptions | None
) -> AsyncIterator[Session]:
    """A session not yet opened, whose tasks belong to a task group of its own; closed on the way out."""
    try:
        async with asyncio.TaskGroup() as tasks:
            session = Session(location, identity, handler, options or SessionOptions(), tasks)
            try:
                yield session
            finally:
                try:
                    await session.close()
                finally:
                    await session._shutdown()
    except BaseExceptionGroup as group:
        # The task group wraps what the body raised; callers catch the error itself.
        raise _unwrapped(group) from None


def _unwrapped(error: BaseException) -> BaseException:
    """The error a group of one wraps (and so on, inwards)."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error
