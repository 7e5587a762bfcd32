"""The governor's conditions. Each reads one signal through a source given to it (so tests fake
the signal, not the condition) and says how many sandboxes it allows now, and why.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from dcp_worker.governor.activity import Idle, IdleSource
from dcp_worker.governor.proc import CpuSample, MemorySample
from dcp_worker.governor.settings import HoursWindow

__all__ = [
    "Battery",
    "Condition",
    "Hours",
    "LoadAverage",
    "Memory",
    "OtherCpu",
    "UserActivity",
    "Verdict",
]

MIB = 1024 * 1024
# One CPU-second of clock ticks, summed over all CPUs: the least time a CPU share is measured over.
MINIMUM_SAMPLE_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Verdict:
    """At most ``limit`` sandboxes (``None``: no limit), because of ``reason``; expected to
    clear in ``clears_in`` seconds when the condition can tell (``None``: cannot)."""

    limit: int | None
    reason: str = ""
    clears_in: float | None = None


NO_LIMIT = Verdict(None)


class Condition(Protocol):
    name: str

    def check(self, hosts: Sequence[int]) -> Verdict:
        """``hosts``: the sandbox hosts' pids, most important first."""
        ...


class LoadAverage:
    """Pause while the 1, 5 or 15-minute load average is above ``maximum``. The load includes
    the worker's own running sandboxes, as the official manager's ``--max-load`` does."""

    name = "load"

    def __init__(self, maximum: float, minutes: int, read: Callable[[], tuple[float, float, float]]) -> None:
        self.maximum = maximum
        self.index = (1, 5, 15).index(minutes)
        self.minutes = minutes
        self.read = read

    def check(self, hosts: Sequence[int]) -> Verdict:
        load = self.read()[self.index]
        if load > self.maximum:
            return Verdict(0, f"{self.minutes}-minute load average {load:.2f} is over {self.maximum:g}")
        return NO_LIMIT


class OtherCpu:
    """Pause while processes other than the worker's use more than ``maximum_percent`` of all
    CPUs' time, measured between one check and the next."""

    name = "other-cpu"

    def __init__(self, maximum_percent: float, read: Callable[[], CpuSample]) -> None:
        self.maximum = maximum_percent
        self.read = read
        self._last: CpuSample | None = None
        self._verdict = NO_LIMIT

    def check(self, hosts: Sequence[int]) -> Verdict:
        sample, last = self.read(), self._last
        if last is None:
            self._last = sample
            return NO_LIMIT
        if sample.total - last.total < MINIMUM_SAMPLE_TICKS:
            # Checked again too soon (a command woke the governor): too few ticks to tell a
            # share, so the last verdict stands and the next check measures from the same start.
            return self._verdict
        self._last = sample
        others = (sample.busy - last.busy) - max(0, sample.ours - last.ours)
        percent = 100 * max(0, others) / (sample.total - last.total)
        self._verdict = NO_LIMIT
        if percent > self.maximum:
            self._verdict = Verdict(
                0, f"other programs use {percent:.0f}% of the CPUs, over {self.maximum:g}%"
            )
        return self._verdict


class Hours:
    """Work only within the given windows of the local clock."""

    name = "hours"

    def __init__(self, windows: Sequence[HoursWindow], now: Callable[[], datetime]) -> None:
        self.windows = tuple(windows)
        self.now = now

    def check(self, hosts: Sequence[int]) -> Verdict:
        moment = self.now()
        if any(window.contains(moment) for window in self.windows):
            return NO_LIMIT
        opening = min(window.next_opening(moment) for window in self.windows)
        return Verdict(
            0,
            f"outside the working hours ({', '.join(map(str, self.windows))}) until {opening:%a %H:%M}",
            (opening - moment).total_seconds(),
        )


class Memory:
    """Keep the worker's resident memory (all its processes) within ``share`` of RAM.

    Allows as many sandboxes as fit: what the worker uses besides its hosts, plus the average
    host's size for each sandbox. With no host to measure, it allows none only when the worker
    is already over the limit.
    """

    name = "memory"

    def __init__(self, share: float, read: Callable[[Sequence[int]], MemorySample]) -> None:
        self.share = share
        self.read = read

    def check(self, hosts: Sequence[int]) -> Verdict:
        sample = self.read(hosts)
        limit = self.share * sample.ram
        over = f"the worker uses {sample.ours / MIB:.0f} MiB; its limit is {limit / MIB:.0f} MiB"
        if not sample.hosts:
            return Verdict(0, over) if sample.ours > limit else NO_LIMIT
        per_host = max(1, sum(sample.hosts)) / len(sample.hosts)
        base = sample.ours - sum(sample.hosts)
        fits = max(0, math.floor((limit - base) / per_host))
        return Verdict(fits, f"{over}, room for {fits} sandbox(es) of {per_host / MIB:.0f} MiB")


class Battery:
    """Pause while the machine runs on battery."""

    name = "battery"

    def __init__(self, read: Callable[[], bool]) -> None:
        self.read = read

    def check(self, hosts: Sequence[int]) -> Verdict:
        return Verdict(0, "running on battery") if self.read() else NO_LIMIT


class UserActivity:
    """Pause until no source has seen input for ``idle_seconds``. A source that cannot tell
    (no terminals, no display) is left out; with none that can, the user counts as away."""

    name = "user"

    def __init__(self, idle_seconds: float, sources: Sequence[IdleSource]) -> None:
        self.idle_seconds = idle_seconds
        self.sources = tuple(sources)

    def check(self, hosts: Sequence[int]) -> Verdict:
        seen = [idle for source in self.sources if (idle := source()) is not None]
        if not seen:
            return NO_LIMIT
        latest: Idle = min(seen, key=lambda idle: idle.seconds)
        if latest.seconds >= self.idle_seconds:
            return NO_LIMIT
        return Verdict(
            0,
            f"the user was active {latest.seconds:.0f} s ago ({latest.source})",
            self.idle_seconds - latest.seconds,
        )
