"""One socket.io connection to a DCP service, carrying whole DCP messages both ways.

The socket is python-socketio's, opened on ``<service path>dcp5/socketio/`` over a websocket, or
over HTTP long-polling where a websocket cannot be opened. Frames are written by one task, in the
order they were sent; received frames are reassembled (``frames.FrameReader``) and handed to
``on_message`` in order, synchronously, so the session can acknowledge each before the next.
A transport is used once: when it is lost the session makes a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

import aiohttp
import socketio  # type: ignore[import-untyped]

from dcp_worker import __version__
from dcp_worker.errors import ConnectError, ProtocolError
from dcp_worker.protocol.frames import TRANSPORT_ACK, FrameReader, announcement, split_message

__all__ = ["TRANSPORTS", "Transport"]

log = logging.getLogger(__name__)

TRANSPORTS = ("websocket", "polling")


class Transport:
    """A socket.io connection; ``on_message`` gets each DCP message, ``on_lost`` the reason it ended."""

    def __init__(self, on_message: Callable[[str], None], on_lost: Callable[[Transport, str], None]) -> None:
        self._on_message = on_message
        self._on_lost = on_lost
        self._reader = FrameReader()
        self._outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._message_ids = itertools.count(1)
        self._closed = False
        self._lost = False
        # The HTTP session is ours, so that closing the transport closes it whatever state
        # python-engineio was left in.
        self._http = aiohttp.ClientSession()
        self._client = socketio.AsyncClient(
            reconnection=False, handle_sigint=False, logger=False, http_session=self._http
        )
        self._client.on("message", self._received)
        self._client.on("disconnect", self._disconnected)
        self.transport_name: str | None = None

    async def connect(self, location: str, timeout: float, transports: Sequence[str] = TRANSPORTS) -> None:
        """Open the socket with the first of ``transports`` that works (websocket, then long-polling);
        ``ConnectError`` says why none did."""
        try:
            await self._open_socket(location, timeout, transports)
        except BaseException:  # a failure or a cancellation: nothing of this transport stays open
            await self._http.close()
            raise

    async def _open_socket(self, location: str, timeout: float, transports: Sequence[str]) -> None:
        parts = urlsplit(location)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConnectError(f"{location}: a DCP service URL is http:// or https://")
        path = (parts.path if parts.path.endswith("/") else parts.path + "/") + "dcp5/socketio"
        origin = f"{parts.scheme}://{parts.netloc}"
        failures = []
        for name in transports:
            try:
                await self._client.connect(
                    origin,
                    headers={"X-DCP": f"python-dcp-worker release {__version__}"},
                    transports=[name],
                    socketio_path=path,
                    wait_timeout=timeout,
                )
            except (socketio.exceptions.ConnectionError, OSError, TimeoutError) as error:
                failures.append(f"{name}: {error or type(error).__name__}")
                continue
            self.transport_name = name
            self._writer = asyncio.create_task(self._write_frames(), name=f"dcp-transport-writer {location}")
            self.send_raw(announcement())
            return
        raise ConnectError(f"cannot reach {location} ({'; '.join(failures)})")

    def send(self, message: str) -> None:
        """Queue a whole DCP message; long ones go as fragments within the peer's limit."""
        for frame in split_message(message, next(self._message_ids), self._reader.peer):
            self.send_raw(frame)

    def send_raw(self, frame: str) -> None:
        if not (self._closed or self._lost):
            self._outbox.put_nowait(frame)

    async def close(self) -> None:
        """Close the socket once its queued frames are written (idempotent). The owner calls it,
        also after ``on_lost``; ``on_lost`` is not called for a close the owner asked for."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._outbox.put_nowait(None)
            with contextlib.suppress(TimeoutError):  # wait_for cancels a writer stuck past it
                await asyncio.wait_for(self._writer, 5)
        with contextlib.suppress(Exception):
            await self._client.disconnect()
        # python-engineio's loops may still be at work (after a disconnect by the server they
        # are not awaited); they must end before their HTTP session closes, or they open another.
        engine = self._client.eio
        loops = [task for task in (engine.read_loop_task, engine.write_loop_task) if task is not None]
        if loops:
            await asyncio.wait(loops, timeout=5)
        await self._http.close()

    async def _write_frames(self) -> None:
        while (frame := await self._outbox.get()) is not None:
            try:
                await self._client.send(frame)
            except Exception as error:  # python-socketio raises bare errors on a dead socket
                self._lose(f"cannot send: {error}")
                return

    def _received(self, frame: object) -> None:
        if self._closed or self._lost:
            return
        try:
            message = self._reader.feed(frame)
        except ProtocolError as error:
            log.warning("dropping the connection: the peer sent %s", error)
            self._lose(str(error))
            return
        if isinstance(frame, str) and frame[:1] in "{E" and self._reader.peer.wants_ack and message:
            self.send_raw(TRANSPORT_ACK)
        if message is not None:
            self._on_message(message)

    def _disconnected(self, reason: object = None) -> None:
        self._lose(f"disconnected ({reason})" if reason else "disconnected")

    def _lose(self, reason: str) -> None:
        if self._closed or self._lost:
            return
        self._lost = True
        self._outbox.put_nowait(None)
        self._on_lost(self, reason)
