"""How long since the machine's user last touched it, from what an unprivileged process can read.

Terminals: the kernel updates a terminal device's access time when input is read from it
(keystrokes in an ssh session, a text console, or a terminal window), as the official
dcp-evaluator-manager and ``w``/fingerd read it. The kernel rounds these updates to 8 seconds.
The terminals of this process's own standard streams are skipped, so typing into the worker's
own terminal (^C) is not "activity".

X11: the MIT-SCREEN-SAVER extension's idle time, asked of ``$DISPLAY`` through a helper process
(``python -m dcp_worker.governor.x_idle``): libX11 ends the process it runs in when the X server
goes away, so the worker never opens a display itself. It needs the session's
``$DISPLAY`` and X authority, which a worker started from the desktop session has and a system
service has not.

Wayland has no idle time a client can query: ext-idle-notify only tells a connected client
after a timeout it registered, and GNOME's Mutter IdleMonitor is a D-Bus call on the session's
bus (again only from inside the session). Neither is read; terminal input still is.
"""

from __future__ import annotations

import contextlib
import os
import select
import stat
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dcp_worker.self_command import program_command

__all__ = ["DEV_PTS", "Idle", "IdleSource", "X11Idle", "terminal_idle"]

DEV_PTS = Path("/dev/pts")
X_HELPER_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True, slots=True)
class Idle:
    """Seconds since the last input, and where it was seen (a terminal's path, ``X11``)."""

    seconds: float
    source: str


IdleSource = Callable[[], "Idle | None"]


def _own_terminals() -> set[tuple[int, int]]:
    """Device numbers of the terminals on our stdin, stdout and stderr."""
    own = set()
    for descriptor in (0, 1, 2):
        try:
            info = os.fstat(descriptor)
        except OSError:
            continue
        if stat.S_ISCHR(info.st_mode):
            own.add((info.st_dev, info.st_rdev))
    return own


def terminal_idle(directory: Path = DEV_PTS, now: Callable[[], float] = time.time) -> Idle | None:
    """The most recently used terminal in ``directory``; ``None`` if there is none (or no
    ``directory``, where the official manager throws)."""
    own = _own_terminals()
    latest: tuple[float, str] | None = None
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return None
    for entry in entries:
        try:
            info = os.stat(entry.path)
        except OSError:
            continue
        if not stat.S_ISCHR(info.st_mode) or (info.st_dev, info.st_rdev) in own:
            continue
        if entry.name == "ptmx":  # the multiplexer, not a terminal
            continue
        if latest is None or info.st_atime > latest[0]:
            latest = (info.st_atime, entry.path)
    if latest is None:
        return None
    return Idle(max(0.0, now() - latest[0]), latest[1])


class X11Idle:
    """The X server's idle time for ``$DISPLAY``, from a helper process kept for the purpose;
    ``None`` without a display we may open. After a failure it waits ``RETRY_SECONDS`` before
    starting the helper again (the display may come back: a new login). ``close()`` ends the
    helper; it also ends by itself when the worker does (its input closes)."""

    RETRY_SECONDS = 60.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._helper: subprocess.Popen[str] | None = None
        self._clock = clock
        self._failed_at: float | None = None

    def __call__(self) -> Idle | None:
        if not os.environ.get("DISPLAY"):
            return None
        if self._failed_at is not None and self._clock() - self._failed_at < self.RETRY_SECONDS:
            return None
        try:
            milliseconds = int(self._ask())
        except (OSError, ValueError, TimeoutError):
            self.close()
            self._failed_at = self._clock()
            return None
        self._failed_at = None
        return Idle(milliseconds / 1000, "X11")

    def _ask(self) -> str:
        helper = self._helper
        if helper is None or helper.poll() is not None:
            helper = self._helper = subprocess.Popen(
                program_command("dcp_worker.governor.x_idle"),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
        assert helper.stdin is not None and helper.stdout is not None
        helper.stdin.write("\n")
        helper.stdin.flush()
        readable, _, _ = select.select([helper.stdout], [], [], X_HELPER_TIMEOUT_SECONDS)
        if not readable:
            raise TimeoutError
        return helper.stdout.readline()

    def close(self) -> None:
        helper, self._helper = self._helper, None
        if helper is None:
            return
        if helper.poll() is None:
            helper.kill()
        helper.wait()
        for stream in (helper.stdin, helper.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
