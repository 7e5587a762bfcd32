"""The evaluator protocol's framing: one message per LF-terminated UTF-8 line.

The supervisor writes bare JSON objects. The evaluator answers with lines tagged ``MSG:`` (a JSON
object), ``LOG:`` (free text, newlines replaced by U+2424) or ``DIE:`` (free text: the sandbox
is gone). Lines can be many megabytes long.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import sys
import threading
from typing import Any

from dcp_worker.errors import UsageError
from dcp_worker.json_dump import dump_json

# A line longer than this is discarded as malformed rather than buffered without bound.
MAX_LINE_BYTES = 1 << 30
NEWLINE_SYMBOL = "\u2424"


class LineTooLong(Exception):
    """A line exceeded ``MAX_LINE_BYTES``; it was skipped."""


class LineChannel:
    """One connection to a supervisor, as lines: ``read_line`` in, ``send_*`` out.

    Lines sent are held until ``drain``, so that an answer's lines leave in one write: each write
    wakes the peer, and on a busy machine a wake-up costs more than the line."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._held: list[bytes] = []

    async def read_line(self) -> bytes | None:
        """The next line without its terminator; None at the end of input (a partial last line
        counts as a line). Raises ``LineTooLong`` after skipping an overlong line."""
        try:
            line = await self._reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as partial:
            return partial.partial or None
        except asyncio.LimitOverrunError:
            await self._skip_line()
            raise LineTooLong(f"a line longer than {MAX_LINE_BYTES} bytes was skipped") from None
        return line[:-1]

    async def _skip_line(self) -> None:
        while True:
            try:
                await self._reader.readuntil(b"\n")
                return
            except asyncio.LimitOverrunError as overrun:
                await self._reader.readexactly(overrun.consumed)
            except asyncio.IncompleteReadError:
                return

    def send_message(self, message: Any) -> None:
        self._write(b"MSG:" + dump_json(message) + b"\n")

    def send_log(self, text: str) -> None:
        self._write(b"LOG:" + text.replace("\n", NEWLINE_SYMBOL).encode("utf-8", "replace") + b"\n")

    def send_die(self, text: str) -> None:
        self._write(b"DIE: " + text.replace("\n", NEWLINE_SYMBOL).encode("utf-8", "replace") + b"\n")

    def _write(self, data: bytes) -> None:
        self._held.append(data)

    def flush(self) -> None:
        """Write the lines held (into the transport's buffer when the peer is not reading)."""
        held, self._held = self._held, []
        if held and not self._writer.is_closing():
            self._writer.write(b"".join(held))

    async def drain(self) -> None:
        """Write the lines held, and wait while the peer is not reading."""
        self.flush()
        with contextlib.suppress(ConnectionError):
            await self._writer.drain()

    @property
    def closed(self) -> bool:
        return self._writer.is_closing()

    async def close(self) -> None:
        if self._writer.is_closing():
            return
        await self.drain()
        self._writer.close()
        # A pipe's writer (standard output) has nothing to wait for and says so.
        with contextlib.suppress(ConnectionError, NotImplementedError):
            await self._writer.wait_closed()


def _pollable(fd: int) -> bool:
    """Whether epoll can watch ``fd``: pipes, sockets and terminals can; files and /dev/null cannot."""
    poller = select.epoll()
    try:
        poller.register(fd, select.EPOLLIN)
    except PermissionError:
        return False
    finally:
        poller.close()
    return True


def _pump(fd: int, reader: asyncio.StreamReader, loop: asyncio.AbstractEventLoop) -> None:
    """Feed ``reader`` from ``fd`` (a file, which never blocks), in a thread of its own."""
    while chunk := os.read(fd, 1 << 20):
        loop.call_soon_threadsafe(reader.feed_data, chunk)
    loop.call_soon_threadsafe(reader.feed_eof)


async def open_stdio() -> LineChannel:
    """A channel on this process's standard input and output."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_LINE_BYTES)
    if _pollable(sys.stdin.fileno()):
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    else:
        threading.Thread(target=_pump, args=(sys.stdin.fileno(), reader, loop), daemon=True).start()
    if not _pollable(sys.stdout.fileno()):
        raise UsageError("--stdio needs standard output to be a pipe, a socket or a terminal, not a file")
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, sys.stdout)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    return LineChannel(reader, writer)
