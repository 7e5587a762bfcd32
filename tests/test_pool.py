"""The sandbox pool fed slice by slice, as the worker feeds it: warm hosts, withdrawing, closing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dcp_worker.supervisor import pool as pool_module
from dcp_worker.supervisor.budget import HostBudget
from dcp_worker.supervisor.job import JobSpec
from dcp_worker.supervisor.outcomes import BatchOutcome
from dcp_worker.supervisor.pool import SandboxLimits, SandboxPool

# Each isolate counts the slices it has run: the count shows which host ran what.
COUNTING = JobSpec(
    "function (datum) { progress(); globalThis.count = (globalThis.count || 0) + 1; return [datum, count]; }"
)
LIMITS = SandboxLimits(slice_timeout=30, memory_mb=256)


def collect(into: dict[int, Any]) -> Any:
    def report(outcome: BatchOutcome) -> None:
        for slice_outcome in outcome:
            assert slice_outcome.error is None, slice_outcome.error
            into[slice_outcome.number] = slice_outcome.value

    return report


def test_slices_added_while_serving_run_on_the_same_warm_host() -> None:
    results: dict[int, Any] = {}

    async def scenario() -> None:
        first_three = asyncio.Event()
        record = collect(results)

        def report(outcome: BatchOutcome) -> None:
            record(outcome)
            if len(results) >= 3:
                first_three.set()

        pool = SandboxPool(COUNTING, sandboxes=1, limits=LIMITS)
        pool.add(range(1, 4), [10, 20, 30])
        serving = asyncio.create_task(pool.serve(report))
        await first_three.wait()
        pool.add(range(4, 6), [40, 50])
        pool.close()
        await serving

    asyncio.run(scenario())
    assert results == {1: [10, 1], 2: [20, 2], 3: [30, 3], 4: [40, 4], 5: [50, 5]}


def test_withdrawn_slices_are_not_run() -> None:
    results: dict[int, Any] = {}

    async def scenario() -> list[int]:
        pool = SandboxPool(COUNTING, sandboxes=1, limits=LIMITS)
        pool.add(range(1, 101), list(range(100)))
        withdrawn = pool.withdraw()
        pool.add([200], [7])
        pool.close()
        await pool.serve(collect(results))
        return withdrawn

    assert asyncio.run(scenario()) == list(range(1, 101))
    assert results == {200: [7, 1]}


def test_withdrawing_mid_run_takes_back_exactly_the_slices_not_yet_sent() -> None:
    results: dict[int, Any] = {}
    withdrawn: list[int] = []

    async def scenario() -> None:
        pool = SandboxPool(COUNTING, sandboxes=1, limits=LIMITS)
        record = collect(results)

        def report(outcome: BatchOutcome) -> None:
            record(outcome)
            if len(results) >= 30 and not withdrawn:
                withdrawn.extend(pool.withdraw())
                pool.close()

        pool.add(range(1, 201), list(range(200)))
        await pool.serve(report)

    asyncio.run(scenario())
    # Part of the one run of 200 had gone out in batches; the rest comes back, once, in order.
    assert withdrawn and withdrawn == list(range(withdrawn[0], 201))
    assert sorted(results) == list(range(1, withdrawn[0]))


def test_a_small_job_starts_no_more_hosts_than_it_has_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[int] = []
    real_start = pool_module.SandboxHost.start

    async def counting_start(job: JobSpec, memory_mb: int, **options: Any) -> Any:
        started.append(1)
        return await real_start(job, memory_mb, **options)

    monkeypatch.setattr(pool_module.SandboxHost, "start", counting_start)
    results: dict[int, Any] = {}
    pool = SandboxPool(COUNTING, sandboxes=6, limits=LIMITS)
    asyncio.run(pool.run(range(1, 3), [1, 2], collect(results)))
    assert sorted(results) == [1, 2]
    assert len(started) <= 2


def test_adding_to_a_closed_pool_is_a_mistake() -> None:
    pool = SandboxPool(COUNTING, sandboxes=1, limits=LIMITS)
    pool.close()
    with pytest.raises(RuntimeError, match="closed pool"):
        pool.add([1], [1])
    with pytest.raises(ValueError, match="2 slice numbers for 1 data"):
        SandboxPool(COUNTING, sandboxes=1, limits=LIMITS).add([1, 2], [1])


def test_an_idle_pool_gives_its_host_up_to_a_pool_that_needs_one() -> None:
    """Two jobs' pools share a budget of one host: the first job's host, idle once its slices are
    done, makes way for the second job's, and takes its place back when more of its slices come."""
    first: dict[int, Any] = {}
    second: dict[int, Any] = {}

    async def scenario() -> tuple[int, int, int]:
        budget = HostBudget(1)
        done = asyncio.Event()
        record_first, record_second = collect(first), collect(second)

        def report_first(outcome: BatchOutcome) -> None:
            record_first(outcome)
            done.set()

        def report_second(outcome: BatchOutcome) -> None:
            record_second(outcome)
            done.set()

        a = SandboxPool(COUNTING, sandboxes=1, limits=LIMITS, budget=budget)
        b = SandboxPool(COUNTING, sandboxes=1, limits=LIMITS, budget=budget)
        a.add([1], [10])
        serving_a = asyncio.create_task(a.serve(report_first))
        await done.wait()
        done.clear()
        b.add([1], [20])
        serving_b = asyncio.create_task(b.serve(report_second))
        await done.wait()
        done.clear()
        hosts_while_b_ran = a.sandboxes_up + b.sandboxes_up
        a_up_after = a.sandboxes_up
        a.add([2], [30])  # the first job again: its pool takes the place back from the idle second
        await done.wait()
        a.close()
        b.close()
        await asyncio.gather(serving_a, serving_b)
        return hosts_while_b_ran, a_up_after, b.sandboxes_up

    hosts_while_b_ran, a_up_after, b_up_at_end = asyncio.run(scenario())
    assert hosts_while_b_ran == 1 and a_up_after == 0 and b_up_at_end == 0
    # Each slice ran first in a fresh isolate: the hosts were new each time.
    assert first == {1: [10, 1], 2: [30, 1]}
    assert second == {1: [20, 1]}
