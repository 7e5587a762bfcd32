"""A pool of sandbox hosts that runs the slices of one job in parallel.

Slices go to hosts in batches, so that one round trip to a host serves many fast slices; a
batch grows only while its slices prove fast. A batch that times out or kills its host is run
again one slice at a time, so a slice is only ever failed for a limit it broke alone.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from dcp_worker.errors import (
    DCPWorkerError,
    MemoryLimitError,
    SandboxCrashError,
    SliceError,
    SliceTimeoutError,
    WorkFunctionException,
    WorkRejectedError,
)
from dcp_worker.supervisor.host_process import HostDied, HostTimeout, SandboxHost
from dcp_worker.supervisor.job import JobSpec

TARGET_BATCH_SECONDS = 0.02
MAX_BATCH_SLICES = 512
REPORT_ERRORS: dict[str, type[SliceError]] = {
    "error": WorkFunctionException,
    "memory": MemoryLimitError,
    "reject": WorkRejectedError,
}


@dataclass(frozen=True)
class SandboxLimits:
    slice_timeout: float = 300.0
    memory_mb: int = 1024


@dataclass
class SliceOutcome:
    """What became of one slice. ``value`` is tagged JSON (see ``dcp_worker.jsvalues``)."""

    number: int
    value: Any = None
    error: SliceError | None = None
    console: list[tuple[str, str]] = field(default_factory=list)
    events: list[tuple[str, Any]] = field(default_factory=list)
    progress_calls: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None


def outcome_from_report(report: dict[str, Any], memory_mb: int) -> SliceOutcome:
    number = report["n"]
    outcome = SliceOutcome(
        number=number,
        console=[(level, text) for level, text in report.get("console", ())],
        events=[(name, payload) for name, payload in report.get("events", ())],
        progress_calls=report.get("progress", 0),
    )
    if report["ok"]:
        outcome.value = report["value"]
    else:
        error = report["error"]
        kind = REPORT_ERRORS.get(report.get("kind", "error"), WorkFunctionException)
        name, message = error["name"], error["message"]
        if kind is MemoryLimitError:
            name, message = "MemoryLimitError", memory_limit_message(memory_mb, f"{name}: {message}")
        outcome.error = kind(number, name, message, error.get("stack"))
    return outcome


def memory_limit_message(memory_mb: int, detail: str) -> str:
    return f"the slice exceeded the sandbox memory limit of {memory_mb} MB ({detail})"


class BatchPacer:
    """Chooses batch sizes from how long this host's recent slices took."""

    def __init__(self) -> None:
        self._seconds_per_slice: float | None = None

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

    def __init__(self, job: JobSpec, *, sandboxes: int, limits: SandboxLimits) -> None:
        if sandboxes < 1:
            raise ValueError("a pool needs at least one sandbox")
        self._job = job
        self._sandboxes = sandboxes
        self._limits = limits
        self._queue: collections.deque[tuple[int, Any]] = collections.deque()
        self._alone: collections.deque[tuple[int, Any]] = collections.deque()
        self._report: Callable[[SliceOutcome], None] = lambda outcome: None

    async def run(self, slices: Iterable[tuple[int, Any]], report: Callable[[SliceOutcome], None]) -> None:
        """Run every slice; call ``report`` once per slice, in completion order.

        Raises ``WorkFunctionError`` before any slice runs if the job does not compile.
        """
        self._queue.extend(slices)
        self._report = report
        if not self._queue:
            return
        first = await SandboxHost.start(self._job, self._limits.memory_mb)
        workers = min(self._sandboxes, len(self._queue))
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._work(first))
                for _ in range(workers - 1):
                    group.create_task(self._work(None))
        except BaseExceptionGroup as failures:
            raise _first_package_error(failures) from None

    def _take_batch(self, pacer: BatchPacer) -> list[tuple[int, Any]]:
        if self._alone:
            return [self._alone.popleft()]
        size = pacer.size(len(self._queue), self._sandboxes)
        return [self._queue.popleft() for _ in range(min(size, len(self._queue)))]

    async def _work(self, host: SandboxHost | None) -> None:
        pacer = BatchPacer()
        try:
            while batch := self._take_batch(pacer):
                if host is None:
                    host = await SandboxHost.start(self._job, self._limits.memory_mb)
                started = time.perf_counter()
                try:
                    reports = await host.run(batch, self._limits.slice_timeout)
                except (HostTimeout, HostDied) as failure:
                    host = None
                    self._failed(batch, failure)
                    continue
                pacer.observe(len(batch), time.perf_counter() - started)
                replace = False
                for report in reports:
                    outcome = outcome_from_report(report, self._limits.memory_mb)
                    replace = replace or isinstance(outcome.error, MemoryLimitError | WorkRejectedError)
                    self._report(outcome)
                if replace:
                    await host.close()
                    host = None
        except BaseException:
            # Cancelled or failed: a host may be deep in a slice, so don't wait for it to exit.
            if host is not None:
                await asyncio.shield(host.kill())
            raise
        if host is not None:
            await host.close()

    def _failed(self, batch: list[tuple[int, Any]], failure: HostTimeout | HostDied) -> None:
        """Fail a slice that broke a limit alone; run a batch's slices again one at a time."""
        if len(batch) > 1:
            self._alone.extendleft(reversed(batch))
            return
        number = batch[0][0]
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
        self._report(SliceOutcome(number=number, error=error))


def _first_package_error(failures: BaseExceptionGroup[BaseException]) -> BaseException:
    """Unwrap a task group's failure to the error a caller should see."""
    for failure in failures.exceptions:
        if isinstance(failure, BaseExceptionGroup):
            return _first_package_error(failure)
        if isinstance(failure, DCPWorkerError):
            return failure
    return failures
