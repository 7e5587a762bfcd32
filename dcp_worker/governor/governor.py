"""The governor: combines the conditions into one decision, how many sandboxes may run now.

Limits take effect at once (a guest leaves the room when the owner comes in); a rise waits until
the conditions have allowed it for ``resume_after`` seconds without a break, so that a signal
hovering at its threshold does not start and stop the worker every poll. ``resume()`` (the
owner's ``dcp-worker resume``) skips that wait. When sandboxes have been held back for
``resume_within`` seconds, or a condition says it will not clear before then (the working hours
open later), the decision says to give the held slices back to the scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dcp_worker.governor import activity, power, proc
from dcp_worker.governor.activity import IdleSource
from dcp_worker.governor.conditions import (
    Battery,
    Condition,
    Hours,
    LoadAverage,
    Memory,
    OtherCpu,
    UserActivity,
    Verdict,
)
from dcp_worker.governor.proc import CpuSample, MemorySample
from dcp_worker.governor.settings import GovernorSettings

__all__ = ["MANUAL_PAUSE", "Decision", "Governor", "Sources"]

log = logging.getLogger("dcp_worker")

MANUAL_PAUSE = "paused by its owner (dcp-worker pause)"


@dataclass(frozen=True, slots=True)
class Sources:
    """Where each condition reads its signal; the real machine's by default."""

    load: Callable[[], tuple[float, float, float]] = os.getloadavg
    cpu: Callable[[], CpuSample] = proc.read_cpu
    memory: Callable[[Sequence[int]], MemorySample] = proc.read_memory
    on_battery: Callable[[], bool] = power.on_battery
    idle: tuple[IdleSource, ...] = field(default_factory=lambda: (activity.terminal_idle, activity.X11Idle()))
    now: Callable[[], datetime] = datetime.now


def build_conditions(settings: GovernorSettings, sources: Sources) -> list[Condition]:
    """The conditions the settings turn on, in the order their reasons are listed."""
    conditions: list[Condition] = []
    if settings.hours:
        conditions.append(Hours(settings.hours, sources.now))
    if settings.pause_on_battery:
        conditions.append(Battery(sources.on_battery))
    if settings.pause_when_user_active is not None:
        conditions.append(UserActivity(settings.pause_when_user_active, sources.idle))
    if settings.max_load is not None:
        conditions.append(LoadAverage(settings.max_load, settings.load_period, sources.load))
    if settings.max_other_cpu is not None:
        conditions.append(OtherCpu(settings.max_other_cpu, sources.cpu))
    if settings.max_memory_share is not None:
        conditions.append(Memory(settings.max_memory_share, sources.memory))
    return conditions


@dataclass(frozen=True, slots=True)
class Decision:
    """What the worker may do now.

    ``sandboxes``: how many may run (0: paused; the worker's maximum when nothing limits it).
    ``fetch``: whether to ask for work. ``cpu_cap``: percent of the time running sandboxes may
    use (100: no cap). ``reasons``: why fewer than the maximum may run (one line each).
    ``give_back``: return the slices of the sandboxes beyond ``sandboxes`` to the scheduler.
    """

    sandboxes: int
    fetch: bool
    cpu_cap: float
    # The reasons carry figures that change every poll; a decision is news when the conditions
    # behind them (causes) change, not the figures.
    reasons: tuple[str, ...] = field(default=(), compare=False)
    give_back: bool = False
    causes: frozenset[str] = field(default=frozenset(), compare=False)
    limited_for: float = field(default=0.0, compare=False)

    def differs_from(self, other: Decision | None) -> bool:
        return other is None or (self, self.causes) != (other, other.causes)

    def summary(self) -> str:
        if not self.reasons:
            return f"running up to {self.sandboxes} sandbox(es)"
        state = "paused" if self.sandboxes == 0 else f"limited to {self.sandboxes} sandbox(es)"
        returned = "; returning held slices" if self.give_back else ""
        return f"{state}: {'; '.join(self.reasons)}{returned}"

    def as_status(self) -> dict[str, Any]:
        return {
            "sandboxes": self.sandboxes,
            "fetch": self.fetch,
            "cpuCap": self.cpu_cap,
            "paused": self.sandboxes == 0,
            "reasons": list(self.reasons),
            "giveBack": self.give_back,
            "limitedForSeconds": round(self.limited_for, 1),
        }


class Governor:
    """Decides from ``settings`` how many of ``max_sandboxes`` may run. ``hosts()`` gives the
    sandbox hosts' pids, most important first (the memory condition measures them)."""

    def __init__(
        self,
        settings: GovernorSettings,
        max_sandboxes: int,
        hosts: Callable[[], Sequence[int]] = tuple,
        sources: Sources | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.max_sandboxes = max_sandboxes
        self.hosts = hosts
        self.sources = sources or Sources()
        self.conditions = build_conditions(settings, self.sources)
        self.clock = clock
        self._manual_pause = False
        self._resume_now = False
        self._allowed = max_sandboxes
        self._rising_since: float | None = None
        self._limited_since: float | None = None
        self._failing: set[str] = set()
        self._wake = asyncio.Event()
        self._evaluated = asyncio.Event()  # pulsed by run() after each decision
        self._evaluations_started = 0
        self._evaluations_done = 0
        self.decision = Decision(max_sandboxes, max_sandboxes > 0, settings.cpu_cap)

    # -- the owner's commands ------------------------------------------------------------------

    def pause(self) -> None:
        """Pause until ``resume()``, whatever the conditions say."""
        self._manual_pause = True
        self._wake.set()

    def resume(self) -> None:
        """End a ``pause()`` and skip the wait before resuming; the conditions still apply."""
        self._manual_pause = False
        self._resume_now = True
        self._wake.set()

    # -- deciding ------------------------------------------------------------------------------

    def _verdicts(self, hosts: Sequence[int]) -> list[tuple[str, Verdict]]:
        verdicts = [("manual", Verdict(0, MANUAL_PAUSE))] if self._manual_pause else []
        for condition in self.conditions:
            try:
                verdict = condition.check(hosts)
            except (OSError, ValueError, IndexError) as error:
                # A signal that cannot be read limits nothing; say so once, not every poll.
                if condition.name not in self._failing:
                    log.warning(
                        " ! governor: cannot read the %s condition's signal: %s", condition.name, error
                    )
                    self._failing.add(condition.name)
                continue
            self._failing.discard(condition.name)
            verdicts.append((condition.name, verdict))
        return verdicts

    def evaluate(self, hosts: Sequence[int] | None = None) -> Decision:
        """Check every condition once and decide; ``hosts`` defaults to ``self.hosts()``."""
        now = self.clock()
        resume_now, self._resume_now = self._resume_now, False
        binding = [
            (name, verdict)
            for name, verdict in self._verdicts(self.hosts() if hosts is None else hosts)
            if verdict.limit is not None and verdict.limit < self.max_sandboxes
        ]
        target = min(
            (verdict.limit for _, verdict in binding if verdict.limit is not None), default=self.max_sandboxes
        )
        if target < self._allowed:
            self._allowed, self._rising_since = target, None
        elif target > self._allowed:
            if self._rising_since is None:
                self._rising_since = now
            if resume_now or now - self._rising_since >= self.settings.resume_after:
                self._allowed, self._rising_since = target, None
        else:
            self._rising_since = None
        limited = self._allowed < self.max_sandboxes
        if not limited:
            self._limited_since = None
        elif self._limited_since is None:
            self._limited_since = now
        limited_for = now - self._limited_since if self._limited_since is not None else 0.0
        self.decision = Decision(
            sandboxes=self._allowed,
            fetch=self._allowed > 0,
            cpu_cap=self.settings.cpu_cap,
            reasons=tuple(verdict.reason for _, verdict in binding)
            or (("waiting for the conditions to stay clear",) if limited else ()),
            give_back=limited and self._gives_back(binding, limited_for),
            causes=frozenset(name for name, _ in binding),
            limited_for=limited_for,
        )
        return self.decision

    def _gives_back(self, binding: list[tuple[str, Verdict]], limited_for: float) -> bool:
        if limited_for >= self.settings.resume_within:
            return True
        # Known to last past resume_within only if every limiting condition says when it clears.
        clears = [verdict.clears_in for _, verdict in binding]
        return bool(clears) and all(
            seconds is not None and limited_for + seconds > self.settings.resume_within for seconds in clears
        )

    def status(self) -> dict[str, Any]:
        """The governor's state for ``dcp-worker status`` and the worker's reports."""
        return {
            **self.decision.as_status(),
            "manualPause": self._manual_pause,
            "conditions": [condition.name for condition in self.conditions],
            "settings": self.settings.as_options(),
        }

    async def settled(self) -> Decision:
        """The first decision ``run()`` takes after this call (after its ``on_decision``): what
        a ``pause()`` or ``resume()`` just made of the state."""
        wanted = self._evaluations_started + 1
        while self._evaluations_done < wanted:
            await self._evaluated.wait()
        return self.decision

    # -- the loop ------------------------------------------------------------------------------

    async def run(self, on_decision: Callable[[Decision], None]) -> None:
        """Decide every ``poll_interval`` seconds (at once after ``pause()``/``resume()``) and
        call ``on_decision`` with each decision that differs from the last. Runs until cancelled.
        The conditions read their signals in a worker thread, off the event loop; ``hosts()``
        and ``on_decision`` are called on the loop."""
        try:
            await self._decide_forever(on_decision)
        finally:
            for source in self.sources.idle:
                if isinstance(source, activity.X11Idle):
                    source.close()

    async def _decide_forever(self, on_decision: Callable[[Decision], None]) -> None:
        last: Decision | None = None
        while True:
            self._wake.clear()
            self._evaluations_started += 1
            # hosts() is the caller's: read it here, on the event loop, not in the thread.
            decision = await asyncio.to_thread(self.evaluate, tuple(self.hosts()))
            if decision.differs_from(last):
                last = decision
                on_decision(decision)
            self._evaluations_done = self._evaluations_started
            self._evaluated.set()
            self._evaluated.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.poll_interval):
                    await self._wake.wait()
