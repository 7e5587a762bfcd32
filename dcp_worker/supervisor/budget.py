"""How many sandbox hosts a worker keeps up at once, over every job's pool.

Each job has a pool of its own, and a pool keeps its hosts warm between slices. Without a budget
shared by the pools, the hosts of a job with nothing left to run would hold their places (and the
governor's throttler would stop the newer job's hosts to keep the count), so a second job would
never run. With one, a pool that needs a host while every place is taken asks the pools whose
hosts stand idle to give theirs up; a host that finds someone waiting as it falls idle gives up
its place at once.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

__all__ = ["HostBudget"]


class Member(Protocol):
    def wake(self) -> None:
        """Look again at the budget: an idle host gives up its place if someone waits for one."""


class HostBudget:
    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError("a budget of fewer than no hosts")
        self.limit = limit
        self._up = 0
        self._waiting = 0
        self._members: set[Member] = set()
        self._freed = asyncio.Event()

    @property
    def wanted(self) -> bool:
        """Someone waits for a place."""
        return self._waiting > 0

    def join(self, member: Member) -> None:
        self._members.add(member)

    def leave(self, member: Member) -> None:
        self._members.discard(member)

    async def acquire(self) -> None:
        """A place for one more host; waits, while every place is taken, for one to be given up."""
        self._waiting += 1
        try:
            while self._up >= self.limit:
                self._freed.clear()
                for member in list(self._members):
                    member.wake()
                await self._freed.wait()
        finally:
            self._waiting -= 1
        self._up += 1

    def release(self) -> None:
        """A host is gone: its place is free."""
        self._up -= 1
        self._freed.set()
