"""Running a job's slices on this machine: the part the CLI and the Python API share."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dcp_worker.errors import UsageError
from dcp_worker.sandbox.limits import DEFAULT_MEMORY_MB, DEFAULT_SLICE_TIMEOUT_SECONDS
from dcp_worker.supervisor.job import JobSpec
from dcp_worker.supervisor.live_reports import LiveReport
from dcp_worker.supervisor.outcomes import OutcomesHandler
from dcp_worker.supervisor.pool import SandboxLimits, SandboxPool

MINIMUM_MEMORY_MB = 16


@dataclass(frozen=True)
class OptionNames:
    """What the caller calls each option, so that an error names it as the caller wrote it."""

    cores: str = "cores"
    slice_timeout: str = "slice_timeout"
    memory_mb: str = "memory_mb"


def sandbox_count(cores: int | None, names: OptionNames = OptionNames()) -> int:
    if cores is None:
        return os.cpu_count() or 1
    if cores < 1:
        raise UsageError(f"{names.cores} must be at least 1, not {cores}")
    return cores


def sandbox_limits(
    slice_timeout: float | None,
    memory_mb: int | None,
    names: OptionNames = OptionNames(),
    *,
    require_lockdown: bool = False,
) -> SandboxLimits:
    timeout = DEFAULT_SLICE_TIMEOUT_SECONDS if slice_timeout is None else slice_timeout
    memory = DEFAULT_MEMORY_MB if memory_mb is None else memory_mb
    if not timeout > 0:
        raise UsageError(f"{names.slice_timeout} must be a positive number of seconds, not {slice_timeout}")
    if memory < MINIMUM_MEMORY_MB:
        raise UsageError(f"{names.memory_mb} must be at least {MINIMUM_MEMORY_MB} MB, not {memory_mb}")
    return SandboxLimits(slice_timeout=timeout, memory_mb=memory, require_lockdown=require_lockdown)


def run_slices(
    job: JobSpec,
    inputs: Sequence[Any],
    *,
    sandboxes: int,
    limits: SandboxLimits,
    report: OutcomesHandler,
    on_live: Callable[[list[LiveReport]], None] | None = None,
) -> None:
    """Run slice N on ``inputs[N-1]`` (tagged JSON) for every N; ``report`` outcomes as they come,
    and what slow slices say as they run to ``on_live`` (see ``SandboxPool``)."""
    pool = SandboxPool(job, sandboxes=sandboxes, limits=limits, on_live=on_live)
    asyncio.run(pool.run(range(1, len(inputs) + 1), inputs, report))
