"""The worker's control socket: ``dcp-worker pause``, ``resume`` and ``status`` talk to a running
worker through it.

A unix socket at ``<resource dir>/dcp-worker/control.sock`` (``~/.dcp/dcp-worker/control.sock``),
in a directory only its owner may enter (0700), itself 0600; a connection from another user
(but root) is refused by its peer credentials as well. One JSON object per line each way:

    -> {"command": "pause"}            <- {"ok": true, "status": {...}}
    -> {"command": "status"}           <- {"ok": true, "status": {...}}
    -> {"command": "nonsense"}         <- {"ok": false, "error": "unknown command 'nonsense'"}

A client may send several commands on one connection. A line that is not a JSON object, an
unknown command or a line over ``MAX_LINE_BYTES`` gets an error answer; the last also closes
the connection. Nothing a client sends can stop the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcp_worker.errors import ControlError
from dcp_worker.governor.governor import Governor
from dcp_worker.protocol.dcp_home import resource_dir

__all__ = [
    "COMMANDS",
    "MAX_LINE_BYTES",
    "ControlHandlers",
    "control_socket_path",
    "governor_handlers",
    "request",
    "serve_control",
]

MAX_LINE_BYTES = 64 * 1024
MAX_CLIENTS = 16
IDLE_CLIENT_SECONDS = 30.0
SETTLE_SECONDS = 5.0
COMMANDS = ("pause", "resume", "status")
# sun_path holds 108 bytes with its terminating NUL.
MAX_SOCKET_PATH_BYTES = 107


def control_socket_path() -> Path:
    return resource_dir() / "dcp-worker" / "control.sock"


@dataclass(frozen=True, slots=True)
class ControlHandlers:
    """What the commands do: ``pause`` and ``resume`` act, ``status`` gives the dict every
    answer carries (it must be JSON-serialisable). ``settled``, if given, is awaited (up to
    ``SETTLE_SECONDS``) after ``pause``/``resume`` so that the answer shows their effect."""

    pause: Callable[[], None]
    resume: Callable[[], None]
    status: Callable[[], dict[str, Any]]
    settled: Callable[[], Awaitable[object]] | None = None


def governor_handlers(governor: Governor, worker_status: Callable[[], dict[str, Any]]) -> ControlHandlers:
    """Commands acting on ``governor``; status is ``{"governor": governor.status(), **worker_status()}``."""
    return ControlHandlers(
        pause=governor.pause,
        resume=governor.resume,
        status=lambda: {"governor": governor.status(), **worker_status()},
        settled=governor.settled,
    )


def _check_length(path: Path) -> None:
    if len(os.fsencode(path)) > MAX_SOCKET_PATH_BYTES:
        raise ControlError(f"control socket path {path} is longer than {MAX_SOCKET_PATH_BYTES} bytes")


# -- the server --------------------------------------------------------------------------------------


async def _answer(handlers: ControlHandlers, line: bytes) -> dict[str, Any]:
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):
        return {"ok": False, "error": "not a JSON line"}
    command = message.get("command") if isinstance(message, dict) else None
    if command not in COMMANDS:
        shown = json.dumps(command)[:40] if isinstance(message, dict) else "(not an object)"
        return {"ok": False, "error": f"unknown command {shown}; expected one of {', '.join(COMMANDS)}"}
    if command in ("pause", "resume"):
        (handlers.pause if command == "pause" else handlers.resume)()
        if handlers.settled is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SETTLE_SECONDS):
                    await handlers.settled()
    return {"ok": True, "status": handlers.status()}


def _peer_allowed(writer: asyncio.StreamWriter) -> bool:
    connection = writer.get_extra_info("socket")
    if connection is None:
        return False
    credentials = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", credentials)
    return uid in (0, os.getuid())


async def _serve_client(
    handlers: ControlHandlers, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        if not _peer_allowed(writer):
            return
        while True:
            try:
                async with asyncio.timeout(IDLE_CLIENT_SECONDS):
                    line = await reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                writer.write(b'{"ok": false, "error": "line too long"}\n')
                await writer.drain()
                return
            except (asyncio.IncompleteReadError, TimeoutError):
                return
            writer.write(json.dumps(await _answer(handlers, line)).encode() + b"\n")
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


def _claim(path: Path) -> None:
    """Make the 0700 directory; remove a socket left by a worker that died; refuse a live one."""
    _check_length(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    if not path.exists() and not path.is_symlink():
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError as error:
        if error.errno not in (errno.ECONNREFUSED, errno.ENOTSOCK, errno.ENOENT):
            raise ControlError(f"control socket {path}: {error.strerror}") from None
        path.unlink(missing_ok=True)
        return
    finally:
        probe.close()
    raise ControlError(f"control socket {path} is in use: another worker is running with this resource dir")


@contextlib.asynccontextmanager
async def serve_control(handlers: ControlHandlers, path: Path | None = None) -> AsyncIterator[Path]:
    """Serve the control socket at ``path`` (default ``control_socket_path()``) while the block
    runs; then close it, end its connections and remove the socket. Yields the path.
    ``ControlError`` if another worker serves it or it cannot be made."""
    path = control_socket_path() if path is None else path
    try:
        _claim(path)
    except OSError as error:
        raise ControlError(f"control socket {path}: {error.strerror}") from None
    clients: set[asyncio.Task[None]] = set()

    def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(clients) >= MAX_CLIENTS:
            writer.close()
            return
        task = asyncio.create_task(_serve_client(handlers, reader, writer))
        clients.add(task)
        task.add_done_callback(clients.discard)

    try:
        server = await asyncio.start_unix_server(connected, str(path), limit=MAX_LINE_BYTES)
    except OSError as error:
        raise ControlError(f"control socket {path}: cannot listen: {error.strerror}") from None
    try:
        os.chmod(path, 0o600)
        yield path
    finally:
        server.close()
        for task in list(clients):
            task.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
        with contextlib.suppress(OSError):
            path.unlink()


# -- the client --------------------------------------------------------------------------------------


def request(command: str, path: Path | None = None, timeout: float = 10.0) -> dict[str, Any]:
    """Send ``command`` to the worker serving ``path`` and return its status dict.
    ``ControlError``, one line, when no worker answers or it refuses the command."""
    path = control_socket_path() if path is None else path
    _check_length(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(timeout)
        try:
            connection.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise ControlError(f"no worker is running (nothing listens on {path})") from None
        except PermissionError:
            raise ControlError(f"{path}: permission denied (is the worker another user's?)") from None
        except OSError as error:
            raise ControlError(f"cannot reach the worker at {path}: {error.strerror}") from None
        try:
            connection.sendall(json.dumps({"command": command}).encode() + b"\n")
            answer = _read_line(connection)
        except TimeoutError:
            raise ControlError(f"the worker at {path} did not answer within {timeout:g} s") from None
        except OSError as error:
            raise ControlError(f"the worker at {path} hung up: {error.strerror or error}") from None
    try:
        reply = json.loads(answer)
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        raise ControlError(f"the worker at {path} answered with something that is not a JSON object")
    if not reply.get("ok"):
        raise ControlError(f"the worker refused {command!r}: {reply.get('error', 'no reason given')}")
    status = reply.get("status")
    return status if isinstance(status, dict) else {}


def _read_line(connection: socket.socket) -> bytes:
    received = bytearray()
    while b"\n" not in received:
        chunk = connection.recv(65536)
        if not chunk:
            raise OSError("the connection closed before an answer")
        received += chunk
        if len(received) > 16 * MAX_LINE_BYTES:
            raise OSError("the answer is too long")
    return bytes(received[: received.index(b"\n")])
