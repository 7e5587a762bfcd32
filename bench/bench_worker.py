"""End to end through the scheduler double: this worker against dcp-client's own, in one run.

Each worker, in turn, works for a fresh scheduler double (dcp-client 5.6.1's Target, see
tests/scheduler/double.js) serving one job of trivial slices, handed out the same number a task.
Printed: slices per second (from start, and from the first result to the last), and the peak
memory of the worker's whole process tree, as summed RSS (what the target speaks of) and summed
PSS (a library mapped by several processes counted once); then the ratios, against the issue's targets
(at least 30x the official worker's throughput, at most a quarter of its memory).

    .venv/bin/python bench/bench_worker.py [--slices N] [--official-slices N] [--per-task N]

The official worker runs as an unprivileged user (its evaluator refuses root); see
tests/official_worker.py.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

from cli_run import isolated_environment, worker_command  # noqa: E402
from official_worker import OfficialWorker, OfficialWorkerUnavailable, TreeMemory  # noqa: E402
from scheduler_double import SchedulerDouble  # noqa: E402

from dcp_worker.protocol.identity import Identity  # noqa: E402

TRIVIAL = "function (x) { progress(); return x * x; }"


@dataclass(frozen=True)
class Measure:
    slices: int
    seconds_from_start: float
    seconds_first_to_last: float
    peak_rss: int
    peak_pss: int

    @property
    def rate(self) -> float:
        return self.slices / self.seconds_from_start

    @property
    def steady_rate(self) -> float:
        return (
            (self.slices - 1) / self.seconds_first_to_last if self.seconds_first_to_last > 0 else float("nan")
        )


def is_result_of(job: str) -> Callable[[dict[str, Any]], bool]:
    return lambda event: event.get("event") == "result" and event.get("jobId") == job


def result_times(double: SchedulerDouble, job: str, count: int, timeout: float) -> list[float]:
    """When (time.monotonic) each of the first ``count`` results of ``job`` reached the double."""
    double.wait_events(is_result_of(job), count, timeout)
    return [when for when, event in double.timed_events() if is_result_of(job)(event)][:count]


def measure_ours(slices: int, per_task: int, sandboxes: int) -> Measure:
    with SchedulerDouble() as double, tempfile.TemporaryDirectory() as home:
        job = double.add_job(TRIVIAL, list(range(1, slices + 1)), slices_per_task=per_task, delivery="data")
        started = time.monotonic()
        worker = subprocess.Popen(
            worker_command(
                double.url, Identity.generate().private_key.hex(), Identity.generate().address, sandboxes
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=isolated_environment(Path(home)),
        )
        memory = TreeMemory(worker.pid)
        try:
            times = result_times(double, job, slices, timeout=600)
        finally:
            memory.stop()
            worker.terminate()
            worker.wait(timeout=60)
        return Measure(slices, times[-1] - started, times[-1] - times[0], memory.peak_rss, memory.peak_pss)


def measure_official(slices: int, per_task: int, sandboxes: int) -> Measure:
    with SchedulerDouble() as double:
        job = double.add_job(TRIVIAL, list(range(1, slices + 1)), slices_per_task=per_task, delivery="data")
        started = time.monotonic()
        with OfficialWorker(double.url, cores=sandboxes) as worker:
            times = result_times(double, job, slices, timeout=1800)
            rss, pss = worker.peak_rss_bytes, worker.peak_pss_bytes
        return Measure(slices, times[-1] - started, times[-1] - times[0], rss, pss)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--slices", type=int, default=4000, help="slices for this worker")
    parser.add_argument("--official-slices", type=int, default=200, help="slices for the official worker")
    parser.add_argument("--per-task", type=int, default=50, help="slices the double hands out a task")
    parser.add_argument("--sandboxes", type=int, default=2)
    options = parser.parse_args()
    print(
        f"bench_worker: trivial slices through the scheduler double, {options.per_task} a task, "
        f"{options.sandboxes} sandboxes\n"
    )
    ours = measure_ours(options.slices, options.per_task, options.sandboxes)
    try:
        official: Measure | None = measure_official(
            options.official_slices, options.per_task, options.sandboxes
        )
    except OfficialWorkerUnavailable as reason:
        official = None
        print(f"official worker unavailable here: {reason}\n")
    rows = [("this worker", ours)] + (
        [("official dcp-worker (dcp-client 5.6.1)", official)] if official else []
    )
    print(f"{'worker':40} {'slices':>7} {'slices/s':>9} {'steady/s':>9} {'peak RSS':>10} {'peak PSS':>10}")
    for name, measure in rows:
        print(
            f"{name:40} {measure.slices:7d} {measure.rate:9.1f} {measure.steady_rate:9.1f}"
            f" {measure.peak_rss / 2**20:7.0f} MB {measure.peak_pss / 2**20:7.0f} MB"
        )
    if official is not None:
        throughput = ours.rate / official.rate
        memory = ours.peak_rss / official.peak_rss
        print()
        print(
            f"throughput, this / official:   {throughput:6.1f}x   target >= 30x   {verdict(throughput >= 30)}"
        )
        print(f"peak memory, this / official:  {memory:6.2f}    target <= 0.25  {verdict(memory <= 0.25)}")
        proportional = ours.peak_pss / official.peak_pss
        print(f"  (the same with PSS, shared library pages counted once: {proportional:.2f})")


def verdict(met: bool) -> str:
    return "meets" if met else "MISSES"


if __name__ == "__main__":
    main()
