"""Test-only: actions a test asks a locked-down host to try, to prove that its walls stand.

A host loads this module only when started with ``--test-probes``, which the supervisor never
passes. It then answers {"op": "probe", "action": NAME, "argument": ...} with
{"op": "probed", "value": ...} when the action succeeded, or
{"op": "probed", "error": {"type": ..., "errno": ..., "message": ...}} when it failed. A work
function can name an action too, by setting ``globalThis.lockdownProbe`` to
{action: NAME, argument: ...}: the host tries it once the batch has run, before it answers
(to show what a host that dies looks like to its supervisor).

Everything an action uses is imported here, since a locked-down host can import nothing.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable
from typing import Any

import orjson

REQUESTED_BY_JOB = "JSON.stringify(globalThis.lockdownProbe ?? null)"
FORGET_REQUEST = "delete globalThis.lockdownProbe"


def read_file(path: str) -> int:
    with open(path, "rb") as file:
        return len(file.read())


def write_file(path: str) -> int:
    with open(path, "wb") as file:
        return file.write(b"written from a sandbox host")


def create_socket(_: Any) -> None:
    socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()


def connect(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as connection:
        connection.connect(("127.0.0.1", port))


def start_program(path: str) -> int:
    return os.posix_spawn(path, [path], {})


def replace_with_program(path: str) -> None:
    os.execv(path, [path])


def send_signal(pid: int) -> None:
    # SIGCONT does nothing to a process that runs, should the wall fail.
    os.kill(pid, signal.SIGCONT)


def allocate(megabytes: int) -> int:
    return len(bytearray(megabytes << 20))


def environment(_: Any) -> dict[str, str]:
    return dict(os.environ)


ACTIONS: dict[str, Callable[[Any], Any]] = {
    "read-file": read_file,
    "list-directory": os.listdir,
    "write-file": write_file,
    "create-socket": create_socket,
    "connect": connect,
    "start-program": start_program,
    "replace-with-program": replace_with_program,
    "signal": send_signal,
    "allocate": allocate,
    "environment": environment,
}


class Prober:
    def answer(self, message: dict[str, Any]) -> dict[str, Any]:
        action = ACTIONS[message["action"]]
        try:
            value = action(message.get("argument"))
        except Exception as error:
            failure = {
                "type": type(error).__name__,
                "errno": getattr(error, "errno", None),
                "message": str(error),
            }
            return {"op": "probed", "error": failure}
        return {"op": "probed", "value": value}

    def after_batch(self, racer: Any) -> None:
        """Try the action a work function named as ``{action, argument}`` in ``lockdownProbe``."""
        requested = orjson.loads(racer.eval(REQUESTED_BY_JOB))
        if requested is not None:
            racer.eval(FORGET_REQUEST)
            self.answer(requested)
