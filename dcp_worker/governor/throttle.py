"""The throttler: holds sandbox hosts stopped (SIGSTOP) and lets them go on (SIGCONT) to honour
the governor's decision.

Hosts beyond ``decision.sandboxes`` (the last in the ``hosts()`` order) stay stopped. The others
run on a duty cycle when ``decision.cpu_cap`` is under 100: each ``period`` they run for
``cpu_cap`` percent of it and are stopped for the rest. Every process it stopped is continued
when its run ends (cancelled or not) and when ``release(pid)`` is called, so no host is left
stopped: a stopped process does not act on SIGTERM until it is continued.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Iterable, Sequence

from dcp_worker.governor.governor import Decision

__all__ = ["Throttler"]

DEFAULT_PERIOD_SECONDS = 1.0


class Throttler:
    def __init__(self, hosts: Callable[[], Sequence[int]], period: float = DEFAULT_PERIOD_SECONDS) -> None:
        self.hosts = hosts
        self.period = period
        self._sandboxes: int | None = None  # None: no decision yet, every host runs
        self._cpu_cap = 100.0
        self._stopped: set[int] = set()
        self._changed = asyncio.Event()

    @property
    def stopped(self) -> frozenset[int]:
        """The pids this throttler holds stopped now."""
        return frozenset(self._stopped)

    def apply(self, decision: Decision) -> None:
        """Follow ``decision`` from now on (at once, not at the end of the current period)."""
        self._sandboxes, self._cpu_cap = decision.sandboxes, decision.cpu_cap
        self._changed.set()

    def release(self, pid: int) -> None:
        """Continue ``pid`` if it is held stopped, and forget it (call before ending a host)."""
        if pid in self._stopped:
            self._continue([pid])

    def _stop(self, pids: Iterable[int]) -> None:
        for pid in pids:
            if pid not in self._stopped:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGSTOP)
                self._stopped.add(pid)

    def _continue(self, pids: Iterable[int]) -> None:
        for pid in list(pids):
            if pid in self._stopped:
                self._stopped.discard(pid)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGCONT)

    async def _wait(self, seconds: float | None) -> bool:
        """Sleep ``seconds`` (``None``: until a change); True if a new decision came first."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._changed.wait()
                return True
        return False

    async def run(self) -> None:
        """Throttle until cancelled; then continue everything it stopped."""
        try:
            while True:
                self._changed.clear()
                hosts = list(self.hosts())
                # Hosts that left the list are no longer ours to hold.
                self._continue(self._stopped - set(hosts))
                allowed = len(hosts) if self._sandboxes is None else self._sandboxes
                running, held = hosts[:allowed], hosts[allowed:]
                self._stop(held)
                self._continue(running)
                if not running or self._cpu_cap >= 100:
                    # Nothing to cycle: look again when the decision or the hosts may have changed.
                    await self._wait(self.period)
                    continue
                if await self._wait(self.period * self._cpu_cap / 100):
                    continue
                self._stop(running)
                await self._wait(self.period * (1 - self._cpu_cap / 100))
        finally:
            self._continue(self._stopped)
