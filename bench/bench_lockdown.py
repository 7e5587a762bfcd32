"""What a sandbox host's lockdown costs: start-up, per-slice overhead, and work that makes
many system calls, measured on hosts with and without it, taking turns.

Run from the project root::

    .venv/bin/python bench/bench_lockdown.py [--quick]

Hosts without lockdown are started as ``DCP_WORKER_NO_LOCKDOWN=1`` starts them. Taking turns
puts both under the same conditions, which matters on a shared machine whose speed drifts from
one second to the next; the CPU other processes used meanwhile is printed as a measure of noise.
This is a benchmark, not a test: it asserts nothing about timing, but it checks every result.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from dcp_worker.sandbox.lockdown import DISABLING_VARIABLE
from dcp_worker.supervisor.batch import SliceBatch
from dcp_worker.supervisor.host_process import SandboxHost
from dcp_worker.supervisor.job import JobSpec
from dcp_worker.supervisor.lockdown import probe
from dcp_worker.supervisor.outcomes import batch_outcome

MEMORY_MB = 1024
TIMEOUT_SECONDS = 300.0
TRIVIAL = JobSpec("x => { progress(); return x * x; }")
# Garbage: about 2 million short-lived objects a slice, so that V8's collector maps, protects
# and releases memory, the system calls a lockdown filters.
CHURN = JobSpec(
    """function (seed) {
      let kept = 0;
      for (let round = 0; round < 20; round++) {
        const objects = [];
        for (let i = 0; i < 100000; i++) objects.push({ i, seed, tag: [i, round] });
        kept += objects.length;
      }
      progress();
      return kept + seed;
    }"""
)
CHURN_RESULT = 2_000_000


@dataclass(frozen=True)
class Sizes:
    starts: int
    trivial_batches: int
    trivial_batch_slices: int
    churn_slices: int


FULL = Sizes(starts=12, trivial_batches=12, trivial_batch_slices=20_000, churn_slices=12)
QUICK = Sizes(starts=4, trivial_batches=4, trivial_batch_slices=10_000, churn_slices=4)


@contextmanager
def lockdown(on: bool) -> Iterator[None]:
    """Hosts started inside are locked down, or not."""
    if on:
        yield
        return
    os.environ[DISABLING_VARIABLE] = "1"
    try:
        yield
    finally:
        del os.environ[DISABLING_VARIABLE]


def machine_cpu_seconds() -> float:
    """CPU time used on the whole machine so far, in seconds (from /proc/stat)."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    busy = sum(fields) - fields[3] - fields[4]  # less idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU time of this process and of its children (the hosts) once they have exited."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


async def start_host(job: JobSpec, on: bool) -> SandboxHost:
    with lockdown(on):
        return await SandboxHost.start(job, MEMORY_MB)


async def time_start(on: bool) -> float:
    started = time.perf_counter()
    host = await start_host(TRIVIAL, on)
    seconds = time.perf_counter() - started
    await host.close()
    return seconds


async def time_batch(host: SandboxHost, first: int, data: list[int], expected: Callable[[int], int]) -> float:
    batch = SliceBatch(range(first, first + len(data)), data)
    started = time.perf_counter()
    host.send_batch(batch.to_json())
    report = await host.batch_report(TIMEOUT_SECONDS)
    seconds = time.perf_counter() - started
    outcomes = list(batch_outcome(batch.numbers, report, MEMORY_MB))
    if [(outcome.error, outcome.value) for outcome in outcomes] != [
        (None, expected(value)) for value in data
    ]:
        raise SystemExit(f"wrong results from a host: {report!r:.300}")
    return seconds


async def taking_turns(
    count: int, measure: Callable[[bool], Awaitable[float]]
) -> tuple[list[float], list[float]]:
    """``measure(on)`` ``count`` times each way, alternating which goes first."""
    locked: list[float] = []
    unlocked: list[float] = []
    for turn in range(count):
        for on in (True, False) if turn % 2 == 0 else (False, True):
            (locked if on else unlocked).append(await measure(on))
    return locked, unlocked


def row(name: str, samples: tuple[list[float], list[float]], unit: str, scale: float) -> None:
    locked, unlocked = (statistics.median(values) for values in samples)
    print(
        f"{name:<42} {locked * scale:>12,.2f} {unlocked * scale:>12,.2f} {unit:<5} {locked / unlocked:>8.3f}"
    )


async def main(sizes: Sizes) -> None:
    started = time.perf_counter()
    machine_before = machine_cpu_seconds()
    own_before = own_cpu_seconds()
    probe_started = time.perf_counter()
    report = probe()
    probe_seconds = time.perf_counter() - probe_started
    print(report.summary())
    print(f"{'measure (median)':<42} {'locked':>12} {'unlocked':>12} {'unit':<5} {'ratio':>8}")

    starts = await taking_turns(sizes.starts, time_start)
    row("host start-up (spawn to job assigned)", starts, "ms", 1e3)

    hosts = {on: await start_host(TRIVIAL, on) for on in (True, False)}
    data = list(range(sizes.trivial_batch_slices))

    async def trivial(on: bool) -> float:
        return await time_batch(hosts[on], 1, data, lambda x: x * x) / len(data)

    row("trivial slices, per slice", await taking_turns(sizes.trivial_batches, trivial), "µs", 1e6)
    for host in hosts.values():
        await host.close()

    hosts = {on: await start_host(CHURN, on) for on in (True, False)}

    async def churn(on: bool) -> float:
        return await time_batch(hosts[on], 1, [7], lambda seed: CHURN_RESULT + seed)

    row("2 M short-lived objects, per slice", await taking_turns(sizes.churn_slices, churn), "ms", 1e3)
    for host in hosts.values():
        await host.close()

    elapsed = time.perf_counter() - started
    others = machine_cpu_seconds() - machine_before - (own_cpu_seconds() - own_before)
    print(f"{'lockdown probe (once per worker)':<42} {probe_seconds * 1e3:>12,.2f} {'':>12} ms")
    print(f"CPU used by other processes meanwhile (noise): {others:.1f} core-s over {elapsed:.1f} s")


def parse_arguments() -> Sizes:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    return QUICK if parser.parse_args().quick else FULL


if __name__ == "__main__":
    asyncio.run(main(parse_arguments()))
