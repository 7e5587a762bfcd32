"""A pool of sandbox hosts that runs the slices of one job in parallel.

Slices go to hosts in batches, so that one round trip to a host serves many fast slices; a
batch grows only while its slices prove fast. A batch that times out or kills its host is run
again one slice at a time, so a slice is only ever failed for a limit it broke alone.

Slices may be added while the pool serves (a worker receives them task by task); hosts wait,
warm, for more until the pool is closed, or until another pool sharing their ``HostBudget``
needs their place. Slices not yet sent to a host can be withdrawn.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dcp_worker.errors import (
    DCPWorkerError,
    MemoryLimitError,
    SandboxCrashError,
    SliceError,
    SliceTimeoutError,
)
from dcp_worker.sandbox.limits import DEFAULT_MEMORY_MB, DEFAULT_SLICE_TIMEOUT_SECONDS
from dcp_worker.supervisor.batch import SliceBatch
from dcp_worker.supervisor.budget import HostBudget
from dcp_worker.supervisor.host_process import HostDied, HostTimeout, SandboxHost
from dcp_worker.supervisor.job import JobSpec
from dcp_worker.supervisor.live_reports import LiveMode, LiveReport, live_reports
from dcp_worker.supervisor.outcomes import (
    BatchOutcome,
    OutcomesHandler,
    SliceOutcome,
    batch_outcome,
    memory_limit_message,
)

TARGET_BATCH_SECONDS = 0.02
MAX_BATCH_SLICES = 8192
PIPELINE_DEPTH = 2


@dataclass(frozen=True)
class SandboxLimits:
    slice_timeout: float = DEFAULT_SLICE_TIMEOUT_SECONDS
    memory_mb: int = DEFAULT_MEMORY_MB
    # Refuse to run (LockdownError) rather than run in a host that lacks one of its walls.
    require_lockdown: bool = False


class BatchPacer:
    """Chooses batch sizes from how long this host's recent slices took."""

    def __init__(self) -> None:
        self._seconds_per_slice: float | None = None

    @property
    def fast(self) -> bool:
        """Whether a batch is short enough that queueing a second one delays no one."""
        return self._seconds_per_slice is not None and self._seconds_per_slice < TARGET_BATCH_SECONDS

    def size(self, remaining: int, workers: int) -> int:
        if self._seconds_per_slice is None:
            return 1
        wanted = int(TARGET_BATCH_SECONDS / max(self._seconds_per_slice, 1e-7))
        fair_share = math.ceil(remaining / workers)
        return max(1, min(wanted, MAX_BATCH_SLICES, fair_share))

    def observe(self, slices: int, seconds: float) -> None:
        latest = seconds / slices
        previous = self._seconds_per_slice
        self._seconds_per_slice = latest if previous is None else (previous + latest) / 2


class SandboxPool:
    """Runs one job's slices on up to ``sandboxes`` hosts at once."""

    def __init__(
        self,
        job: JobSpec,
        *,
        sandboxes: int,
        limits: SandboxLimits,
        on_live: Callable[[list[LiveReport]], None] | None = None,
        budget: HostBudget | None = None,
    ) -> None:
        """``on_live``: what slices that run alone in their batch (slow ones) say as they run,
        their console lines and events; their outcomes then leave those out. ``budget``: the
        places for hosts this pool shares with others (see ``budget``)."""
        if sandboxes < 1:
            raise ValueError("a pool needs at least one sandbox")
        self._job = job
        self._sandboxes = sandboxes
        self._limits = limits
        self._on_live = on_live
        self._budget = budget
        # Slices not yet sent wait in _pending (as the runs they were added in, _queued in all;
        # the first _head_sent of the first run have gone, a run being long and not copied at
        # every batch); batches a lost host never ran wait in _retry, and slices of a batch that
        # broke a limit wait in _alone, to run alone.
        self._pending: collections.deque[SliceBatch] = collections.deque()
        self._head_sent = 0
        self._queued = 0
        self._retry: collections.deque[SliceBatch] = collections.deque()
        self._alone: collections.deque[SliceBatch] = collections.deque()
        self._closed = False
        self._more = asyncio.Event()
        self._hosts_up = 0
        self._hosts: list[SandboxHost] = []  # those started, in the order they started
        self._report: OutcomesHandler = lambda outcome: None

    async def run(
        self,
        numbers: Sequence[int],
        data: Sequence[Any],
        report: OutcomesHandler,
    ) -> None:
        """Run slice ``numbers[i]`` on ``data[i]`` (tagged JSON) for every i; ``report`` outcomes
        as they complete, a batch at a time.

        Raises ``WorkFunctionError`` before any slice runs if the job does not compile: every
        host compiles the job as it starts, and the hosts start together.
        """
        self.add(numbers, data)
        self.close()
        await self.serve(report)

    @property
    def sandboxes_up(self) -> int:
        return self._hosts_up

    @property
    def host_pids(self) -> list[int]:
        return [host.pid for host in self._hosts]

    @property
    def waiting(self) -> int:
        """Slices queued, not yet sent to a host."""
        return self._waiting_slices()

    def add(self, numbers: Sequence[int], data: Sequence[Any]) -> None:
        """Queue slice ``numbers[i]`` on ``data[i]`` (tagged JSON) for every i."""
        if len(numbers) != len(data):
            raise ValueError(f"{len(numbers)} slice numbers for {len(data)} data")
        if self._closed:
            raise RuntimeError("slices added to a closed pool")
        if numbers:
            self._pending.append(SliceBatch(numbers, data))
            self._queued += len(numbers)
            self._more.set()

    def withdraw(self) -> list[int]:
        """Take back every slice not yet sent to a host (to return it); returns their numbers."""
        withdrawn = [number for batch in (*self._alone, *self._retry) for number in batch.numbers]
        for index, batch in enumerate(self._pending):
            withdrawn.extend(batch.numbers[self._head_sent :] if index == 0 else batch.numbers)
        self._alone.clear()
        self._retry.clear()
        self._pending.clear()
        self._head_sent = 0
        self._queued = 0
        return withdrawn

    def close(self) -> None:
        """No more slices will come: ``serve`` returns once those queued have run."""
        self._closed = True
        self._more.set()

    async def serve(self, report: OutcomesHandler) -> None:
        """Run queued slices, and those added meanwhile, until the pool is closed and drained;
        ``report`` outcomes as they complete, a batch at a time."""
        self._report = report
        if self._budget is not None:
            self._budget.join(self)
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(self._sandboxes):
                    group.create_task(self._work())
        except BaseExceptionGroup as failures:
            raise _first_package_error(failures) from None
        finally:
            if self._budget is not None:
                self._budget.leave(self)

    def wake(self) -> None:
        """Make idle hosts look at the budget again (``budget.Member``)."""
        self._more.set()

    def _has_work(self) -> bool:
        return bool(self._alone or self._retry or self._queued)

    def _waiting_slices(self) -> int:
        return self._queued + sum(len(batch) for batch in (*self._retry, *self._alone))

    async def _wait_for_host_work(self) -> bool:
        """For a worker with no host: wait until there is a slice to send (True) or the pool is
        closed and drained (False); wait also while the hosts already up outnumber the slices
        that wait, so that a job of three slices starts three hosts, not one per sandbox allowed.
        """
        while not self._has_work() or self._hosts_up >= self._waiting_slices():
            if self._closed and not self._has_work():
                return False
            self._more.clear()
            await self._more.wait()
        return True

    async def _wait_while_idle(self) -> str:
        """A host with nothing to do waits for "work", or until the pool is closed and drained
        ("done"), or until another pool waits for a place in the budget ("yield")."""
        while not self._has_work():
            if self._closed:
                return "done"
            if self._budget is not None and self._budget.wanted:
                return "yield"
            self._more.clear()
            await self._more.wait()
        return "work"

    def _take_batch(self, pacer: BatchPacer) -> SliceBatch | None:
        """The next batch to send, or None when nothing is queued."""
        if self._alone:
            return self._alone.popleft()
        if self._retry:
            return self._retry.popleft()
        if not self._pending:
            return None
        head, start = self._pending[0], self._head_sent
        size = min(pacer.size(self._queued, self._sandboxes), len(head) - start)
        if size == len(head):
            batch = head
        else:
            batch = SliceBatch(head.numbers[start : start + size], head.data[start : start + size])
        self._head_sent += size
        if self._head_sent == len(head):
            self._pending.popleft()
            self._head_sent = 0
        self._queued -= size
        return batch

    async def _work(self) -> None:
        """Feed one host until no slices are left, replacing it whenever it dies or must retire.

        While slices are fast, a second batch waits in the host's input so that it never sits
        idle while this process handles the first batch's results.
        """
        pacer = BatchPacer()
        in_flight: collections.deque[SliceBatch] = collections.deque()
        host: SandboxHost | None = None
        try:
            while True:
                if host is None:
                    if not await self._wait_for_host_work():
                        break
                    if self._budget is not None:
                        await self._budget.acquire()
                    self._hosts_up += 1
                    try:
                        host = await SandboxHost.start(
                            self._job,
                            self._limits.memory_mb,
                            require_lockdown=self._limits.require_lockdown,
                            live=None if self._on_live is None else LiveMode.REPORTS,
                        )
                    except BaseException:
                        self._host_gone(None)
                        raise
                    self._hosts.append(host)
                depth = PIPELINE_DEPTH if pacer.fast else 1
                while len(in_flight) < depth and (batch := self._take_batch(pacer)):
                    host.send_batch(batch.to_json())
                    in_flight.append(batch)
                if not in_flight:
                    # Idle: the host stays, warm, for slices still to come, unless its place is wanted.
                    idle = await self._wait_while_idle()
                    if idle == "done":
                        break
                    if idle == "yield":
                        self._host_gone(host)
                        await host.close()
                        host = None
                    continue
                batch = in_flight.popleft()
                started = time.perf_counter()
                try:
                    report = await host.batch_report(self._limits.slice_timeout, self._live)
                except (HostTimeout, HostDied) as failure:
                    self._host_gone(host)
                    host = None
                    self._requeue(in_flight)
                    self._failed(batch, failure)
                    continue
                seconds = time.perf_counter() - started
                pacer.observe(len(batch), seconds)
                outcome = batch_outcome(batch.numbers, report, self._limits.memory_mb, seconds)
                self._report(outcome)
                # DCP closes a sandbox that rejected its slice; one that hit the memory cap is spent.
                if outcome.retire:
                    self._requeue(in_flight)
                    await host.kill()
                    self._host_gone(host)
                    host = None
        except BaseException:
            # Cancelled or failed: a host may be deep in a slice, so don't wait for it to exit.
            if host is not None:
                self._host_gone(host)
                await asyncio.shield(host.kill())
            raise
        if host is not None:
            self._host_gone(host)
            await host.close()

    async def _live(self, records: list[Any]) -> None:
        if self._on_live is not None:
            self._on_live(live_reports(records))

    def _host_gone(self, host: SandboxHost | None) -> None:
        """A host ended: a worker waiting for the right to start one may now need to."""
        self._hosts_up -= 1
        if host in self._hosts:
            self._hosts.remove(host)
        if self._budget is not None:
            self._budget.release()
        self._more.set()

    def _requeue(self, batches: collections.deque[SliceBatch]) -> None:
        """Put batches a lost host never ran back at the head of the queue, in order."""
        self._retry.extendleft(reversed(batches))
        batches.clear()

    def _failed(self, batch: SliceBatch, failure: HostTimeout | HostDied) -> None:
        """Fail a slice that broke a limit alone; run a batch's slices again one at a time."""
        if len(batch) > 1:
            self._alone.extendleft(reversed(list(batch.singles())))
            return
        number = batch.numbers[0]
        error: SliceError
        if isinstance(failure, HostTimeout):
            limit = self._limits.slice_timeout
            message = f"the slice exceeded its wall-clock limit of {limit:g} s"
            error = SliceTimeoutError(number, "SliceTimeoutError", message)
        elif failure.out_of_memory:
            message = memory_limit_message(self._limits.memory_mb, failure.reason)
            error = MemoryLimitError(number, "MemoryLimitError", message)
        else:
            error = SandboxCrashError(number, "SandboxCrashError", failure.reason)
        self._report(BatchOutcome.single(SliceOutcome(number=number, error=error)))


def _first_package_error(failures: BaseExceptionGroup[BaseException]) -> BaseException:
    """Unwrap a task group's failure to the one error a caller should see, the package's own
    where there is one (the other hosts' tasks fail with the same error, or are cancelled)."""
    flat: list[BaseException] = []
    pending: list[BaseException] = [failures]
    while pending:
        failure = pending.pop()
        if isinstance(failure, BaseExceptionGroup):
            pending.extend(reversed(failure.exceptions))
        else:
            flat.append(failure)
    own = [failure for failure in flat if isinstance(failure, DCPWorkerError)]
    return (own or flat)[0]
